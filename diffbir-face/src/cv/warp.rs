//! `cv2.warpAffine(src, M, dsize, flags=INTER_LINEAR, borderMode=BORDER_CONSTANT,
//! borderValue)` as OpenCV 4.12 computes it (`modules/imgproc/src/imgwarp.cpp`,
//! `WarpAffineInvoker` → `remapBilinear`): the inverse map in fixed point (1/1024 px, rounded
//! half to even), sampled on a 1/32-px grid, bilinear weights from OpenCV's tables (integer
//! for `u8`, exact multiples of 1/1024 for floats), and the border value substituted per tap
//! outside the image. `INTER_AREA` (`flags=3`) is the same in `warpAffine`.

use super::Mat;
use super::affine::Affine;

/// Element types `warp_affine` handles.
pub trait WarpPixel: Copy + Default {
    /// `saturate_cast<T>(border value)`.
    fn border(v: f64) -> Self;
    /// The bilinear blend of four taps with the table entry for `(fx, fy)` in 1/32 px.
    fn blend(taps: [Self; 4], fx: u32, fy: u32) -> Self;
}

impl WarpPixel for u8 {
    fn border(v: f64) -> Self {
        v.round_ties_even().clamp(0.0, 255.0) as u8
    }

    fn blend(taps: [Self; 4], fx: u32, fy: u32) -> Self {
        // BilinearTab_i: (32 − fy)(32 − fx)·32 … (sums to 32768; entry 0's saturated 32767 +
        // 1 on the last tap gives the same results for 8-bit values).
        let w = weights_int(fx, fy);
        let s: i32 = taps.iter().zip(w).map(|(&p, w)| i32::from(p) * w).sum();
        ((s + (1 << 14)) >> 15).clamp(0, 255) as u8
    }
}

impl WarpPixel for f32 {
    fn border(v: f64) -> Self {
        v as f32
    }

    fn blend(t: [Self; 4], fx: u32, fy: u32) -> Self {
        let w = weights_f32(fx, fy);
        ((t[0] * w[0] + t[1] * w[1]) + t[2] * w[2]) + t[3] * w[3]
    }
}

impl WarpPixel for f64 {
    fn border(v: f64) -> Self {
        v
    }

    fn blend(t: [Self; 4], fx: u32, fy: u32) -> Self {
        let w = weights_f32(fx, fy).map(f64::from);
        ((t[0] * w[0] + t[1] * w[1]) + t[2] * w[2]) + t[3] * w[3]
    }
}

fn weights_int(fx: u32, fy: u32) -> [i32; 4] {
    let (fx, fy) = (fx as i32, fy as i32);
    [
        (32 - fy) * (32 - fx) * 32,
        (32 - fy) * fx * 32,
        fy * (32 - fx) * 32,
        fy * fx * 32,
    ]
}

fn weights_f32(fx: u32, fy: u32) -> [f32; 4] {
    let t = |i: u32| [1.0 - i as f32 * (1.0 / 32.0), i as f32 * (1.0 / 32.0)];
    let (tx, ty) = (t(fx), t(fy));
    [ty[0] * tx[0], ty[0] * tx[1], ty[1] * tx[0], ty[1] * tx[1]]
}

/// `cvRound` of a double into `i32`: half to even; NaN and out-of-range give `i32::MIN`.
fn cv_round(v: f64) -> i64 {
    let r = v.round_ties_even();
    if r.abs() <= f64::from(i32::MAX) {
        r as i64
    } else {
        i64::from(i32::MIN)
    }
}

/// `cv::warpAffine`'s inversion of `M` (double, in its operation order).
fn inverse_for_warp(m: &Affine) -> [f64; 6] {
    let mut m = [m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2]];
    let d = m[0] * m[4] - m[1] * m[3];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22) = (m[4] * d, m[0] * d);
    m[0] = a11;
    m[1] *= -d;
    m[3] *= -d;
    m[4] = a22;
    let b1 = -m[0] * m[2] - m[1] * m[5];
    let b2 = -m[3] * m[2] - m[4] * m[5];
    m[2] = b1;
    m[5] = b2;
    m
}

/// `cv2.warpAffine(src, m, (width, height), INTER_LINEAR, BORDER_CONSTANT, border)`:
/// `dst(x, y) = src(m⁻¹ · (x, y))`. `border` is per channel (OpenCV's `Scalar`; a channel
/// `k` takes `border[k % 4]`).
pub fn warp_affine<T: WarpPixel>(
    src: &Mat<T>,
    m: &Affine,
    (width, height): (usize, usize),
    border: [f64; 4],
) -> Mat<T> {
    const AB_SCALE: f64 = 1024.0;
    let cn = src.channels;
    let cval: Vec<T> = (0..cn).map(|k| T::border(border[k % 4])).collect();
    let mut dst = Mat::zeros(height, width, cn);
    let mi = inverse_for_warp(m);
    let adelta: Vec<i64> = (0..width)
        .map(|x| cv_round((mi[0] * x as f64) * AB_SCALE))
        .collect();
    let bdelta: Vec<i64> = (0..width)
        .map(|x| cv_round((mi[3] * x as f64) * AB_SCALE))
        .collect();
    let (sw, sh) = (src.cols as i64, src.rows as i64);
    let inside = |x: i64, y: i64| x >= 0 && x < sw && y >= 0 && y < sh;
    for y in 0..height {
        let x0 = cv_round((mi[1] * y as f64 + mi[2]) * AB_SCALE) + 16;
        let y0 = cv_round((mi[4] * y as f64 + mi[5]) * AB_SCALE) + 16;
        for x in 0..width {
            let (xx, yy) = ((x0 + adelta[x]) >> 5, (y0 + bdelta[x]) >> 5);
            let ix = (xx >> 5).clamp(-32768, 32767);
            let iy = (yy >> 5).clamp(-32768, 32767);
            let (fx, fy) = ((xx & 31) as u32, (yy & 31) as u32);
            let out = &mut dst.data[(y * width + x) * cn..(y * width + x + 1) * cn];
            if ix >= sw || ix + 1 < 0 || iy >= sh || iy + 1 < 0 {
                out.copy_from_slice(&cval);
                continue;
            }
            let tap = |tx: i64, ty: i64, k: usize| {
                if inside(tx, ty) {
                    src.data[((ty * sw + tx) as usize) * cn + k]
                } else {
                    cval[k]
                }
            };
            for (k, o) in out.iter_mut().enumerate() {
                let taps = [
                    tap(ix, iy, k),
                    tap(ix + 1, iy, k),
                    tap(ix, iy + 1, k),
                    tap(ix + 1, iy + 1, k),
                ];
                *o = T::blend(taps, fx, fy);
            }
        }
    }
    dst
}
