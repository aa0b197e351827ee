//! Scaled dot-product attention, `softmax(Q·Kᵀ·scale)·V`, on the GEMM of [`super::gemm`].
//!
//! Per (batch, head) and block of `QUERY_BLOCK` queries: the scores `Q·Kᵀ` (K packed as
//! `Kᵀ` panels), a row softmax with a vectorised `exp` (burn-flex calls libm's scalar `expf`
//! per score, a fifth of a UNet step), then `P·V`, each row divided by its sum at the end.
//! The scores of one block (at most `QUERY_BLOCK × keys` floats) are the only buffer.

// The vectorised `exp` needs `unsafe` for its intrinsics; the safe wrapper checks the CPU.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::activation::exp_avx512;
use super::gemm::{Bias, Gemm, MatB, TransposedB};
use super::microkernel::Isa;

/// Queries per block.
const QUERY_BLOCK: usize = 256;

/// One operand `[batch, heads, len, dim]` in a buffer: element `(b, h, i, c)` is at
/// `offset + b·strides[0] + h·strides[1] + i·strides[2] + c` (the last dimension contiguous).
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// The buffer.
    pub data: &'a [f32],
    /// `[batch, heads, len, dim]`.
    pub shape: [usize; 4],
    /// Strides of the first three dimensions.
    pub strides: [usize; 3],
    /// Position of element `(0, 0, 0, 0)`.
    pub offset: usize,
}

impl Strided<'_> {
    fn start(&self, b: usize, h: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1]
    }
}

/// Computes attention into `out`, `[batch, heads, queries, value dim]` contiguous.
///
/// # Panics
///
/// When the shapes disagree or `out` has the wrong size (a bug of the caller).
pub fn attention(isa: Isa, q: Strided, k: Strided, v: Strided, scale: f32, out: &mut [f32]) {
    let [batch, heads, lq, d] = q.shape;
    let [_, _, lk, dv] = v.shape;
    assert_eq!(k.shape, [batch, heads, lk, d], "key shape");
    assert_eq!(v.shape[..2], [batch, heads], "value shape");
    assert_eq!(out.len(), batch * heads * lq * dv, "output size");
    if lk == 0 {
        out.fill(f32::NAN);
        return;
    }
    let mut scores = vec![0f32; QUERY_BLOCK.min(lq) * lk];
    for b in 0..batch {
        for h in 0..heads {
            let (qs, ks, vs) = (q.start(b, h), k.start(b, h), v.start(b, h));
            let out = &mut out[(b * heads + h) * lq * dv..][..lq * dv];
            for (block, out) in out.chunks_mut(QUERY_BLOCK * dv).enumerate() {
                let rows = out.len() / dv;
                let first = qs + block * QUERY_BLOCK * q.strides[2];
                let scores = &mut scores[..rows * lk];
                Gemm {
                    m: rows,
                    n: lk,
                    k: d,
                    a: &q.data[first..],
                    lda: q.strides[2],
                    bias: Bias::None,
                }
                .run(
                    isa,
                    &TransposedB {
                        data: &k.data[ks..],
                        ld: k.strides[2],
                    },
                    scores,
                    lk,
                );
                let sums: Vec<f32> = scores
                    .par_chunks_mut(lk)
                    .map(|row| softmax_numerator(isa, row, scale))
                    .collect();
                Gemm {
                    m: rows,
                    n: dv,
                    k: lk,
                    a: scores,
                    lda: lk,
                    bias: Bias::None,
                }
                .run(
                    isa,
                    &MatB {
                        data: &v.data[vs..],
                        ld: v.strides[2],
                    },
                    out,
                    dv,
                );
                for (row, sum) in out.chunks_exact_mut(dv).zip(sums) {
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|x| *x *= inv);
                }
            }
        }
    }
}

/// Replaces `row` by `exp(row·scale − max)` and returns its sum.
fn softmax_numerator(isa: Isa, row: &mut [f32], scale: f32) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * scale;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512F.
        return unsafe { exp_row_avx512(row, scale, max) };
    }
    let _ = isa;
    // A non-positive scale would need the minimum instead of the maximum.
    debug_assert!(scale > 0.0);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x * scale - max).exp();
        sum += *x;
    }
    sum
}

/// `exp(x·scale − max)` over `row`, 16 lanes at a time ([`exp_avx512`]), returning the sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_row_avx512(row: &mut [f32], scale: f32, max: f32) -> f32 {
    // SAFETY (both uses): this function runs only on AVX-512F CPUs.
    let exp = |x: __m512| unsafe { exp_avx512(x) };
    let (vscale, vmax) = (_mm512_set1_ps(scale), _mm512_set1_ps(max));
    let mut acc = _mm512_setzero_ps();
    let mut chunks = row.chunks_exact_mut(16);
    for chunk in chunks.by_ref() {
        // SAFETY: the chunk holds 16 floats.
        unsafe {
            let x = _mm512_loadu_ps(chunk.as_ptr());
            let e = exp(_mm512_fmsub_ps(x, vscale, vmax));
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
            acc = _mm512_add_ps(acc, e);
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mask: __mmask16 = (1u32 << rest.len()).wrapping_sub(1) as __mmask16;
        // SAFETY: the mask covers only the `rest.len()` floats of `rest`.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
            let e = exp(_mm512_fmsub_ps(x, vscale, vmax));
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, e);
            acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(mask, e));
        }
    }
    _mm512_reduce_add_ps(acc)
}
