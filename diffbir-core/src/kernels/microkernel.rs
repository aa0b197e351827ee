//! Register-blocked GEMM micro-kernels, chosen at run time: f32 on AVX-512 and AVX2 + FMA,
//! and bf16 with f32 accumulation on AVX-512 BF16.
//!
//! A micro-kernel computes one `MR × NR` tile of `C = A · B` over a block of `k` terms into f32:
//! `A` is read through a row stride and a `k` stride (so both a packed panel and a plain
//! row-major matrix work), `B` is a packed panel of `k` rows of `NR` contiguous elements.
//! Columns are the vector lanes: `NR` is two vectors wide and `MR` rows of accumulators fill
//! the register file (24 of 32 zmm registers on AVX-512, 12 of 16 ymm registers on AVX2).
//!
//! The bf16 kernel takes the terms in pairs (`vdpbf16ps` multiplies two bf16 pairs per lane
//! and adds both products to an f32 accumulator): a packed row of `B` interleaves terms `2p`
//! and `2p + 1` of each column, and `A` is read a pair at a time, so the two terms of a pair are
//! adjacent in its rows (`k_stride` 1) and `k` is even.
//!
//! Written by hand because the `gemm` crate behind burn-flex leaves about a third of the FMA
//! throughput unused on the convolution shapes of the UNet and the VAE, and its API cannot
//! pack `B` straight from an image (implicit im2col, see [`super::conv`]).

// The kernels need `unsafe`: SIMD intrinsics and raw tile pointers. Every block states why it is sound.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// The widest tile ([`Isa::nr`]) of any instruction set.
pub const MAX_NR: usize = 32;

/// bfloat16, as burn stores it.
pub use half::bf16;

/// The instruction set the kernels use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 12 × 32 tiles.
    Avx512,
    /// AVX2 with FMA: 6 × 16 tiles.
    Avx2,
}

impl Isa {
    /// The best kernel this CPU runs, or `None` where there is none (then burn's own
    /// operations are used). `DIFFBIR_KERNELS=avx2` forces the AVX2 kernels on an AVX-512 CPU
    /// and `DIFFBIR_KERNELS=off` turns the kernels off, for comparisons.
    pub fn detect() -> Option<Isa> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        *ISA.get_or_init(|| {
            let wanted = std::env::var("DIFFBIR_KERNELS").unwrap_or_default();
            let best = Self::supported();
            match wanted.trim().to_ascii_lowercase().as_str() {
                "off" | "burn" => None,
                "avx2" => best.map(|_| Isa::Avx2),
                _ => best,
            }
        })
    }

    #[cfg(target_arch = "x86_64")]
    fn supported() -> Option<Isa> {
        if is_x86_feature_detected!("avx512f") {
            Some(Isa::Avx512)
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Some(Isa::Avx2)
        } else {
            None
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn supported() -> Option<Isa> {
        None
    }

    /// Whether the bf16 micro-kernel runs: AVX-512 with the BF16 extension.
    pub fn has_bf16(self) -> bool {
        static BF16: OnceLock<bool> = OnceLock::new();
        self == Isa::Avx512 && *BF16.get_or_init(Self::bf16_supported)
    }

    #[cfg(target_arch = "x86_64")]
    fn bf16_supported() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn bf16_supported() -> bool {
        false
    }

    /// Rows of a tile.
    pub const fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
        }
    }

    /// Columns of a tile (two vectors).
    pub const fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }
}

/// Where the `MR` rows of `A` of one tile are: element `(i, p)` is at
/// `ptr + i * row_stride + p * k_stride`.
#[derive(Debug, Clone, Copy)]
pub struct APanel<T> {
    /// Element `(0, 0)`.
    pub ptr: *const T,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between consecutive terms of a row.
    pub k_stride: usize,
}

/// The output tile: `rows × cols` floats at `ptr` with row stride `ldc`, and what to combine
/// the product with.
#[derive(Debug, Clone, Copy)]
pub struct CTile {
    /// Element `(0, 0)` of the tile.
    pub ptr: *mut f32,
    /// Row stride of `C`.
    pub ldc: usize,
    /// Rows to write (≤ `MR`).
    pub rows: usize,
    /// Columns to write (≤ `NR`).
    pub cols: usize,
    /// Add the product to what `C` holds (a later block of `k`) instead of overwriting it.
    pub accumulate: bool,
    /// When overwriting: the bias added to the product.
    pub bias: TileBias,
}

/// The bias of a tile: one value per row or per column of `C`.
#[derive(Debug, Clone, Copy)]
pub enum TileBias {
    /// No bias.
    None,
    /// `C[i][j] += bias[i]`, from the tile's first row.
    Rows(*const f32),
    /// `C[i][j] += bias[j]`, from the tile's first column.
    Cols(*const f32),
}

/// Computes one f32 tile.
///
/// # Safety
///
/// `isa` must be supported by the CPU ([`Isa::detect`]); `a` must address `c.rows ≥ 1` rows
/// of `k` floats (the missing rows of an edge tile repeat the last one and are dropped); `b`
/// must hold `k * isa.nr()` floats; `c` must address `c.rows × c.cols` writable floats
/// (`c.rows ≤ mr`, `c.cols ≤ nr`) and, with a bias, `c.rows` (rows) or `c.cols` (columns)
/// readable biases.
pub unsafe fn tile(isa: Isa, k: usize, a: APanel<f32>, b: *const f32, c: CTile) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            Isa::Avx512 => tile_avx512(k, a, b, c),
            Isa::Avx2 => tile_avx2(k, a, b, c),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k, a, b, c);
        unreachable!("no micro-kernel is detected on this architecture");
    }
}

/// Computes one bf16 tile: the product in f32 of bf16 operands, `b` holding `k / 2` packed rows
/// of `isa.nr()` interleaved pairs.
///
/// # Safety
///
/// As [`tile`], and `isa.has_bf16()`, `k` even, `a.k_stride == 1`; `b` holds `k * isa.nr()`
/// elements.
pub unsafe fn tile_bf16(isa: Isa, k: usize, a: APanel<bf16>, b: *const bf16, c: CTile) {
    debug_assert!(isa.has_bf16() && k.is_multiple_of(2) && a.k_stride == 1);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        tile_avx512_bf16(k, a, b, c)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k, a, b, c);
        unreachable!("no bf16 micro-kernel is detected on this architecture");
    }
}

/// The value written to `C[i][j]` given the product `v`.
///
/// # Safety
///
/// `c.ptr + i * c.ldc + j` must be valid; with a bias, its element `i` (rows) or `j` (columns).
#[inline(always)]
unsafe fn combine(c: &CTile, i: usize, j: usize, v: f32) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let dst = c.ptr.add(i * c.ldc + j);
        *dst = if c.accumulate {
            *dst + v
        } else {
            match c.bias {
                TileBias::None => v,
                TileBias::Rows(bias) => v + *bias.add(i),
                TileBias::Cols(bias) => v + *bias.add(j),
            }
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(k: usize, a: APanel<f32>, b: *const f32, c: CTile) {
    const MR: usize = Isa::Avx512.mr();
    const NR: usize = Isa::Avx512.nr();
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: the caller guarantees the extents of `a`, `b` and `c`.
    unsafe {
        let mut rows = [a.ptr; MR];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = a.ptr.add(i.min(c.rows - 1) * a.row_stride);
        }
        for p in 0..k {
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            let off = p * a.k_stride;
            for i in 0..MR {
                let ai = _mm512_set1_ps(*rows[i].add(off));
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
        store_avx512(acc, &c);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_avx512_bf16(k: usize, a: APanel<bf16>, b: *const bf16, c: CTile) {
    const MR: usize = Isa::Avx512.mr();
    const NR: usize = Isa::Avx512.nr();
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: the caller guarantees the extents of `a`, `b` and `c`; a pair of bf16 is read as
    // one unaligned 32-bit word, and `__m512i` and `__m512bh` are the same 64 bytes.
    unsafe {
        let mut rows = [a.ptr; MR];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = a.ptr.add(i.min(c.rows - 1) * a.row_stride);
        }
        for p in 0..k / 2 {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * 2 * NR).cast()));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(p * 2 * NR + NR).cast()));
            for i in 0..MR {
                let pair = rows[i].add(2 * p).cast::<i32>().read_unaligned();
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            }
        }
        store_avx512(acc, &c);
    }
}

/// Writes the accumulators of an AVX-512 tile to `C`.
///
/// # Safety
///
/// As [`tile`] for `c`.
// The accumulators come by value and the function inlines: taking their address would keep
// them in memory, and the kernels' loops would store all 24 on every term.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_avx512(acc: [[__m512; 2]; 12], c: &CTile) {
    const MR: usize = Isa::Avx512.mr();
    const NR: usize = Isa::Avx512.nr();
    // SAFETY: forwarded from the caller.
    unsafe {
        if c.cols == NR && c.rows == MR {
            let col_bias = match c.bias {
                TileBias::Cols(bias) if !c.accumulate => {
                    Some([_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))])
                }
                _ => None,
            };
            for (i, acc) in acc.iter().enumerate() {
                let dst = c.ptr.add(i * c.ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if c.accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(dst));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(dst.add(16)));
                } else if let TileBias::Rows(bias) = c.bias {
                    let bias = _mm512_set1_ps(*bias.add(i));
                    v0 = _mm512_add_ps(v0, bias);
                    v1 = _mm512_add_ps(v1, bias);
                } else if let Some([b0, b1]) = col_bias {
                    v0 = _mm512_add_ps(v0, b0);
                    v1 = _mm512_add_ps(v1, b1);
                }
                _mm512_storeu_ps(dst, v0);
                _mm512_storeu_ps(dst.add(16), v1);
            }
        } else {
            let mut tmp = [0f32; MR * NR];
            for (i, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(tmp.as_mut_ptr().add(i * NR), acc[0]);
                _mm512_storeu_ps(tmp.as_mut_ptr().add(i * NR + 16), acc[1]);
            }
            for i in 0..c.rows {
                for j in 0..c.cols {
                    combine(c, i, j, tmp[i * NR + j]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(k: usize, a: APanel<f32>, b: *const f32, c: CTile) {
    const MR: usize = Isa::Avx2.mr();
    const NR: usize = Isa::Avx2.nr();
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // SAFETY: the caller guarantees the extents of `a`, `b` and `c`.
    unsafe {
        let mut rows = [a.ptr; MR];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = a.ptr.add(i.min(c.rows - 1) * a.row_stride);
        }
        for p in 0..k {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            let off = p * a.k_stride;
            for i in 0..MR {
                let ai = _mm256_set1_ps(*rows[i].add(off));
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
            }
        }
        if c.cols == NR && c.rows == MR {
            let col_bias = match c.bias {
                TileBias::Cols(bias) if !c.accumulate => {
                    Some([_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))])
                }
                _ => None,
            };
            for (i, acc) in acc.iter().enumerate() {
                let dst = c.ptr.add(i * c.ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if c.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(dst));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8)));
                } else if let TileBias::Rows(bias) = c.bias {
                    let bias = _mm256_set1_ps(*bias.add(i));
                    v0 = _mm256_add_ps(v0, bias);
                    v1 = _mm256_add_ps(v1, bias);
                } else if let Some([b0, b1]) = col_bias {
                    v0 = _mm256_add_ps(v0, b0);
                    v1 = _mm256_add_ps(v1, b1);
                }
                _mm256_storeu_ps(dst, v0);
                _mm256_storeu_ps(dst.add(8), v1);
            }
        } else {
            let mut tmp = [0f32; MR * NR];
            for (i, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR), acc[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR + 8), acc[1]);
            }
            for i in 0..c.rows {
                for j in 0..c.cols {
                    combine(&c, i, j, tmp[i * NR + j]);
                }
            }
        }
    }
}
