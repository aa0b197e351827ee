//! `cv2.erode(src, np.ones((k, k), np.uint8))` on `f32` images (OpenCV 4.12,
//! `modules/imgproc/src/morph.dispatch.cpp`): the minimum over a `k × k` window anchored at
//! `(k/2, k/2)` (so an even window reaches one pixel further up and left), pixels outside the
//! image counting as `FLT_MAX`.

use super::Mat;

/// Erosion of a one-channel `f32` image by a `k × k` square. OpenCV replaces an empty kernel
/// (`k = 0`) by a 3 × 3 square.
pub fn erode(src: &Mat<f32>, k: usize) -> Mat<f32> {
    let k = if k == 0 { 3 } else { k };
    if k == 1 {
        return src.clone();
    }
    let (h, w) = (src.rows, src.cols);
    let anchor = k / 2;
    let window = |i: usize, n: usize| {
        let lo = i.saturating_sub(anchor);
        let hi = (i + k - anchor).min(n);
        (lo, hi, i < anchor || i + k - anchor > n)
    };
    // Rows, then columns (a square window is separable).
    let mut rows = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let (lo, hi, edge) = window(x, w);
            let m = src.data[y * w + lo..y * w + hi]
                .iter()
                .fold(f32::INFINITY, |m, &v| m.min(v));
            rows[y * w + x] = if edge { m.min(f32::MAX) } else { m };
        }
    }
    let mut out = Mat::zeros(h, w, 1);
    for x in 0..w {
        for y in 0..h {
            let (lo, hi, edge) = window(y, h);
            let m = (lo..hi).fold(f32::INFINITY, |m, r| m.min(rows[r * w + x]));
            out.data[y * w + x] = if edge { m.min(f32::MAX) } else { m };
        }
    }
    out
}
