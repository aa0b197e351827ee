//! `cv2.GaussianBlur(src, (k, k), sigma)` on one-channel `f32` and `f64` images, as OpenCV
//! 4.12 computes it on CPUs with AVX2 (`modules/imgproc/src/smooth.dispatch.cpp`,
//! `filter.simd.hpp`): the kernel from `getGaussianKernelBitExact` (its own `exp`), a row pass
//! then a column pass with fused multiply-adds in OpenCV's order, reflect-101 borders, the
//! intermediate rows in the image's type.

use diffbir_core::gaussian::gaussian_kernel;

use super::Mat;

/// Element types `gaussian_blur` handles.
pub trait BlurPixel:
    Copy + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self>
{
    /// `v` rounded to this type.
    fn from_f64(v: f64) -> Self;
    /// `a · b + c` with one rounding.
    fn fma(a: Self, b: Self, c: Self) -> Self;
    /// Whether this is `f32` (whose 3- and 5-tap row filters OpenCV computes differently).
    const F32: bool;
}

impl BlurPixel for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }

    fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }

    const F32: bool = true;
}

impl BlurPixel for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }

    fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }

    const F32: bool = false;
}

/// `borderInterpolate(p, n, BORDER_REFLECT_101)`.
fn reflect101(mut p: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    while p < 0 || p >= n {
        p = if p < 0 { -p } else { 2 * n - 2 - p };
    }
    p as usize
}

/// `cv2.GaussianBlur(src, (k, k), sigma)` of a one-channel image (`k` odd; `sigma ≤ 0`
/// derives it from `k`), reflect-101 border.
pub fn gaussian_blur<T: BlurPixel>(src: &Mat<T>, k: usize, sigma: f64) -> Mat<T> {
    let (h, w) = (src.rows, src.cols);
    let kx = if w == 1 { 1 } else { k };
    let ky = if h == 1 { 1 } else { k };
    if kx == 1 && ky == 1 {
        return src.clone();
    }
    let kernel = |n: usize| -> Vec<T> {
        gaussian_kernel(n, sigma)
            .into_iter()
            .map(T::from_f64)
            .collect()
    };
    let (kxv, kyv) = (kernel(kx), kernel(ky));
    let (rx, ry) = (kx / 2, ky / 2);
    let mut rows = vec![T::default(); h * w];
    let mut padded = vec![T::default(); w + 2 * rx];
    for y in 0..h {
        let line = &src.data[y * w..(y + 1) * w];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = line[reflect101(i as i64 - rx as i64, w)];
        }
        let out = &mut rows[y * w..(y + 1) * w];
        row_pass(&padded, &kxv, out);
    }
    let mut dst = Mat::zeros(h, w, 1);
    let c = ry;
    for y in 0..h {
        let at = |j: i64| reflect101(y as i64 + j, h);
        let out = &mut dst.data[y * w..(y + 1) * w];
        let centre = &rows[at(0) * w..(at(0) + 1) * w];
        for (o, &v) in out.iter_mut().zip(centre) {
            *o = kyv[c] * v;
        }
        for j in 1..=c {
            let (up, down) = (at(-(j as i64)), at(j as i64));
            for (x, o) in out.iter_mut().enumerate() {
                let pair = rows[down * w + x] + rows[up * w + x];
                *o = T::fma(kyv[c + j], pair, *o);
            }
        }
    }
    dst
}

/// One row of the horizontal pass over `padded` (the row with `k/2` reflected pixels each
/// side).
fn row_pass<T: BlurPixel>(padded: &[T], k: &[T], out: &mut [T]) {
    let n = k.len();
    let r = n / 2;
    let w = out.len();
    if T::F32 && (n == 3 || n == 5) {
        // SymmRowSmallFilter: the centre first, symmetric pairs; the last pixel of a row
        // whose length leaves an odd remainder after blocks of 8 takes the scalar order.
        let odd_tail = (w - w / 8 * 8) % 2 == 1;
        for (x, o) in out.iter_mut().enumerate() {
            let s = |j: i64| padded[(x as i64 + r as i64 + j) as usize];
            let s1 = s(-1) + s(1);
            let mut acc = if odd_tail && x == w - 1 {
                T::fma(k[r + 1], s1, s(0) * k[r])
            } else {
                T::fma(s(0), k[r], s1 * k[r + 1])
            };
            if n == 5 {
                acc = T::fma(s(-2) + s(2), k[r + 2], acc);
            }
            *o = acc;
        }
        return;
    }
    for (x, o) in out.iter_mut().enumerate() {
        let taps = &padded[x..x + n];
        let mut acc = k[0] * taps[0];
        for j in 1..n {
            acc = T::fma(k[j], taps[j], acc);
        }
        *o = acc;
    }
}
