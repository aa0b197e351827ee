//! 2-D convolution as an implicit GEMM on NCHW data: per image, `out[co, pixel] =
//! Σ_(ci, kh, kw) weight[co, ci, kh, kw] · x[ci, pixel shifted by (kh, kw)] + bias[co]`.
//!
//! `A` is the weight tensor as it is stored (`cout × cin·kh·kw`, row-major), `C` is the
//! output image as it is stored (`cout × oh·ow`), and `B` is the im2col matrix, which is never
//! built: [`Im2col`] packs each block of it straight from the input, copying runs of
//! consecutive pixels of an output row (a 1×1 convolution is thus a plain GEMM on the image).

use super::gemm::{Bias, Element, Gemm, PackB};
use super::microkernel::{Isa, MAX_NR};

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub cin: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (vertical, horizontal).
    pub stride: [usize; 2],
    /// Zero padding before the first row and column (the padding after only changes the
    /// output size).
    pub pad_before: [usize; 2],
    /// Spacing of kernel taps.
    pub dilation: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl ConvGeometry {
    /// The output size of a convolution with `pad` = `[(top, bottom), (left, right)]`, or
    /// `None` when the (dilated) kernel does not fit the padded input or a stride is 0.
    pub fn output_size(
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [(usize, usize); 2],
        dilation: [usize; 2],
    ) -> Option<[usize; 2]> {
        let side = |d: usize| {
            let span = dilation[d].checked_mul(kernel[d].checked_sub(1)?)? + 1;
            let padded = input[d] + pad[d].0 + pad[d].1;
            (stride[d] > 0 && padded >= span).then(|| (padded - span) / stride[d] + 1)
        };
        Some([side(0)?, side(1)?])
    }

    /// Terms per output value (`cin · kh · kw`).
    pub fn k(&self) -> usize {
        self.cin * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per image.
    pub fn n(&self) -> usize {
        self.output[0] * self.output[1]
    }
}

/// One input image (`cin × h × w`, contiguous) seen as the `K × N` im2col matrix.
#[derive(Debug, Clone, Copy)]
pub struct Im2col<'a, T> {
    /// The image.
    pub x: &'a [T],
    /// The convolution.
    pub geometry: ConvGeometry,
}

impl<T: Element> PackB<T> for Im2col<'_, T> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [T]) {
        let zero = T::default();
        let g = &self.geometry;
        let [h, w] = g.input;
        let [kh, kw] = g.kernel;
        let ow = g.output[1];
        for (q, panel) in out.chunks_exact_mut(kc * nr).enumerate() {
            let col = n0 + q * nr;
            let width = nr.min(n0 + nc - col);
            // The panel's columns as runs within one output row: (first column in the panel,
            // output row, first output column, length); at most one per column.
            let mut runs = [(0usize, 0usize, 0usize, 0usize); MAX_NR];
            let mut n_runs = 0;
            let mut j = 0;
            while j < width {
                let (oy, ox) = ((col + j) / ow, (col + j) % ow);
                let len = (ow - ox).min(width - j);
                runs[n_runs] = (j, oy, ox, len);
                n_runs += 1;
                j += len;
            }
            // The term `k = (ci · kh + ty) · kw + tx`, stepped without divisions.
            let (mut ci, mut ty, mut tx) = (k0 / (kh * kw), (k0 / kw) % kh, k0 % kw);
            for dst in panel.chunks_exact_mut(nr) {
                let plane = &self.x[ci * h * w..(ci + 1) * h * w];
                for &(j, oy, ox, len) in &runs[..n_runs] {
                    let dst = &mut dst[j..j + len];
                    // Input row of this run; a row in the padding contributes zeros.
                    let iy = (oy * g.stride[0] + ty * g.dilation[0]).checked_sub(g.pad_before[0]);
                    let Some(iy) = iy.filter(|&iy| iy < h) else {
                        dst.fill(zero);
                        continue;
                    };
                    let row = &plane[iy * w..(iy + 1) * w];
                    // Input column of output column `ox + t`: ox·s + tx·d − pad + t·s.
                    let x0 =
                        (ox * g.stride[1] + tx * g.dilation[1]) as isize - g.pad_before[1] as isize;
                    let sx = g.stride[1] as isize;
                    if sx == 1 {
                        // Columns t with 0 ≤ x0 + t < w are copied, the rest are padding.
                        let lo = (-x0).clamp(0, len as isize) as usize;
                        let hi = (w as isize - x0).clamp(lo as isize, len as isize) as usize;
                        // (The fills are guarded: most runs have none, and an empty `fill`
                        // still costs a `memset` call.)
                        if lo > 0 {
                            dst[..lo].fill(zero);
                        }
                        // A run wholly in the right padding (a kernel wider than 2·pad + 1
                        // reaches past the row's end by more than one column) copies nothing.
                        if hi > lo {
                            let start = (x0 + lo as isize) as usize;
                            copy(&mut dst[lo..hi], &row[start..start + (hi - lo)]);
                        }
                        if hi < len {
                            dst[hi..].fill(zero);
                        }
                    } else {
                        for (t, v) in dst.iter_mut().enumerate() {
                            let ix = x0 + t as isize * sx;
                            *v = if (0..w as isize).contains(&ix) {
                                row[ix as usize]
                            } else {
                                zero
                            };
                        }
                    }
                }
                if width < nr {
                    dst[width..].fill(zero);
                }
                tx += 1;
                if tx == kw {
                    tx = 0;
                    ty += 1;
                    if ty == kh {
                        ty = 0;
                        ci += 1;
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of packing, in 16-element blocks the
/// compiler turns into vector moves (a `memcpy` call per run costs more than the copy).
#[inline(always)]
fn copy<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in d.by_ref().zip(s.by_ref()) {
        let d: &mut [T; 16] = d.try_into().expect("16 elements");
        *d = *<&[T; 16]>::try_from(s).expect("16 elements");
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Convolves a batch: `x` is `batch × cin × h × w`, `weight` `cout × cin × kh × kw`, `out`
/// `batch × cout × oh × ow`, all contiguous.
///
/// # Panics
///
/// When a buffer does not match its shape, or `T`'s micro-kernel does not run on `isa` (bugs of
/// the caller).
pub fn conv2d<T: Element>(
    isa: Isa,
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[f32]>,
    out: &mut [T],
) {
    let cout = if g.k() == 0 { 0 } else { weight.len() / g.k() };
    let in_len = g.cin * g.input[0] * g.input[1];
    let out_len = cout * g.n();
    assert_eq!(weight.len(), cout * g.k(), "weight size");
    if in_len == 0 || out_len == 0 {
        return;
    }
    assert_eq!(
        x.len() / in_len,
        out.len() / out_len,
        "batch of input and output"
    );
    let gemm = Gemm {
        m: cout,
        n: g.n(),
        k: g.k(),
        a: weight,
        lda: g.k(),
        bias: bias.map_or(Bias::None, Bias::Rows),
    };
    for (x, out) in x.chunks_exact(in_len).zip(out.chunks_exact_mut(out_len)) {
        gemm.run(isa, &Im2col { x, geometry: *g }, out, g.n());
    }
}
