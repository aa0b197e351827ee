//! SiLU (`x · sigmoid(x)`) in place, vectorised, and the AVX-512 `exp` it shares with the
//! attention softmax. burn-flex computes SiLU with a scalar libm `exp` per element in one
//! thread, 8 % of a VAE decode.

// The vectorised `exp` needs `unsafe` for its intrinsics; the safe wrappers check the CPU.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::microkernel::{Isa, bf16};

/// Elements per parallel work item.
const CHUNK: usize = 1 << 16;

/// `x ← x · sigmoid(x)` over `xs`, on rayon's pool.
pub fn silu_in_place(isa: Isa, xs: &mut [f32]) {
    xs.par_chunks_mut(CHUNK).for_each(|chunk| {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512F.
            unsafe { silu_avx512(chunk) };
            return;
        }
        let _ = isa;
        for x in chunk {
            *x /= 1.0 + (-*x).exp();
        }
    });
}

/// [`silu_in_place`] on bf16 elements, computed in f32.
pub fn silu_bf16_in_place(isa: Isa, xs: &mut [bf16]) {
    xs.par_chunks_mut(CHUNK).for_each(|chunk| {
        let mut wide: Vec<f32> = chunk.iter().map(|x| x.to_f32()).collect();
        silu_in_place(isa, &mut wide);
        for (x, &w) in chunk.iter_mut().zip(&wide) {
            *x = bf16::from_f32(w);
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_avx512(xs: &mut [f32]) {
    let one = _mm512_set1_ps(1.0);
    let silu = |x: __m512| {
        // SAFETY: called only inside this AVX-512 function.
        let e = unsafe { exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x)) };
        _mm512_div_ps(x, _mm512_add_ps(one, e))
    };
    let mut chunks = xs.chunks_exact_mut(16);
    for chunk in chunks.by_ref() {
        // SAFETY: the chunk holds 16 floats.
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), silu(_mm512_loadu_ps(chunk.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    let mask: __mmask16 = (1u32 << rest.len()).wrapping_sub(1) as __mmask16;
    // SAFETY: the mask covers only the `rest.len()` floats of `rest`.
    unsafe {
        let x = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, silu(x));
    }
}

/// `exp` of 16 lanes: Cephes' `expf` (range reduction by ln 2 in two parts, a degree-6
/// polynomial, the power of two applied with `scalef`; about 1 ulp). Inputs below −87.3 give
/// the exponential of −87.3 (≈ 1e-38); large inputs give infinity.
///
/// # Safety
///
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn exp_avx512(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.336_55));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(
        p,
        _mm512_mul_ps(r, r),
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(y, n)
}
