//! The CodeFormer dataset's OpenCV operations on HWC float32 images (host side, like the
//! original's numpy arrays): `cv2.filter2D` with `BORDER_REFLECT_101` and `cv2.resize` with
//! `INTER_LINEAR`.

use diffbir_core::Result;

use super::invalid;
use super::kernels::Kernel;

/// An interleaved `H × W × C` float32 image (numpy's HWC layout).
#[derive(Debug, Clone, PartialEq)]
pub struct HwcImage {
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Channels.
    pub channels: usize,
    /// `height · width · channels` values, row-major, channels interleaved.
    pub data: Vec<f32>,
}

impl HwcImage {
    /// Wraps `data`, checking its length.
    pub fn new(height: usize, width: usize, channels: usize, data: Vec<f32>) -> Result<Self> {
        if height == 0 || width == 0 || channels == 0 {
            return Err(invalid("image", "must not be empty"));
        }
        if data.len() != height * width * channels {
            return Err(invalid(
                "image",
                format!("{} values for {height}×{width}×{channels}", data.len()),
            ));
        }
        Ok(Self {
            height,
            width,
            channels,
            data,
        })
    }

    fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * self.channels + c]
    }
}

/// OpenCV's `BORDER_REFLECT_101` index (`gfedcb|abcdefgh|gfedcba`).
fn reflect_101(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let last = n as isize - 1;
    let mut i = i;
    loop {
        if i < 0 {
            i = -i;
        } else if i > last {
            i = 2 * last - i;
        } else {
            return i as usize;
        }
    }
}

/// `cv2.filter2D(img, -1, kernel)`: correlation (no flip) with the anchor at the kernel's
/// centre, borders `BORDER_REFLECT_101`. The kernel is cast to float32 as OpenCV does for a
/// float32 image; sums are accumulated in f64.
pub fn filter2d(img: &HwcImage, kernel: &Kernel) -> Result<HwcImage> {
    let k = kernel.size;
    if k == 0 || kernel.values.len() != k * k {
        return Err(invalid("kernel", "must be a non-empty square kernel"));
    }
    let anchor = (k / 2) as isize;
    let weights: Vec<f64> = kernel.values.iter().map(|v| f64::from(*v as f32)).collect();
    let (h, w, c) = (img.height, img.width, img.channels);
    let mut out = vec![0.0f32; h * w * c];
    let mut acc = vec![0.0f64; c];
    for y in 0..h {
        for x in 0..w {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for i in 0..k {
                let sy = reflect_101(y as isize + i as isize - anchor, h);
                for j in 0..k {
                    let sx = reflect_101(x as isize + j as isize - anchor, w);
                    let wgt = weights[i * k + j];
                    for (ch, a) in acc.iter_mut().enumerate() {
                        *a += wgt * f64::from(img.at(sy, sx, ch));
                    }
                }
            }
            for (ch, a) in acc.iter().enumerate() {
                out[(y * w + x) * c + ch] = *a as f32;
            }
        }
    }
    HwcImage::new(h, w, c, out)
}

/// One axis of OpenCV's `INTER_LINEAR` resize: for each output index, the left source index
/// and the two float32 weights.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as isize;
            let mut frac = f - s as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s as usize >= src - 1 {
                s = src as isize - 1;
                frac = 0.0;
            }
            let s = s as usize;
            (s, (s + 1).min(src - 1), 1.0 - frac, frac)
        })
        .collect()
}

/// `cv2.resize(img, (width, height), interpolation=INTER_LINEAR)` for float32 images:
/// half-pixel centres, edge clamping, a horizontal then a vertical pass in float32.
///
/// (OpenCV switches an exact 2× downscale to `INTER_AREA`; that switch is reproduced.)
pub fn resize_linear(img: &HwcImage, width: usize, height: usize) -> Result<HwcImage> {
    if width == 0 || height == 0 {
        return Err(invalid("size", "the output size must not be empty"));
    }
    let (h, w, c) = (img.height, img.width, img.channels);
    if width * 2 == w && height * 2 == h {
        return Ok(area_half(img));
    }
    let xs = linear_taps(w, width);
    let ys = linear_taps(h, height);
    // Horizontal pass on every source row.
    let mut rows = vec![0.0f32; h * width * c];
    for y in 0..h {
        for (dx, &(s0, s1, a0, a1)) in xs.iter().enumerate() {
            for ch in 0..c {
                rows[(y * width + dx) * c + ch] = img.at(y, s0, ch) * a0 + img.at(y, s1, ch) * a1;
            }
        }
    }
    let mut out = vec![0.0f32; height * width * c];
    for (dy, &(r0, r1, b0, b1)) in ys.iter().enumerate() {
        for i in 0..width * c {
            out[dy * width * c + i] = rows[r0 * width * c + i] * b0 + rows[r1 * width * c + i] * b1;
        }
    }
    HwcImage::new(height, width, c, out)
}

/// `INTER_AREA` for an exact 2× downscale: the mean of each 2×2 block.
fn area_half(img: &HwcImage) -> HwcImage {
    let (h, w, c) = (img.height / 2, img.width / 2, img.channels);
    let mut out = vec![0.0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let s = img.at(2 * y, 2 * x, ch)
                    + img.at(2 * y, 2 * x + 1, ch)
                    + img.at(2 * y + 1, 2 * x, ch)
                    + img.at(2 * y + 1, 2 * x + 1, ch);
                out[(y * w + x) * c + ch] = s * 0.25;
            }
        }
    }
    HwcImage {
        height: h,
        width: w,
        channels: c,
        data: out,
    }
}

/// Python's `a // b` for positive floats (`fmod`-based, like CPython's `float.__floordiv__`).
fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let div = (a - m) / b;
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

/// The CodeFormer dataset's downsampled size `(int(w // scale), int(h // scale))`, as
/// `(width, height)`.
pub fn downsampled_size(width: usize, height: usize, scale: f64) -> Result<(usize, usize)> {
    if scale.is_nan() || scale <= 0.0 || scale.is_infinite() {
        return Err(invalid("scale", format!("must be > 0, got {scale}")));
    }
    let w = py_floordiv(width as f64, scale);
    let h = py_floordiv(height as f64, scale);
    if w < 1.0 || h < 1.0 {
        return Err(invalid(
            "scale",
            format!("{width}×{height} downscaled by {scale} is empty"),
        ));
    }
    Ok((w as usize, h as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize, c: usize) -> HwcImage {
        let data = (0..h * w * c).map(|i| (i % 97) as f32 / 97.0).collect();
        HwcImage::new(h, w, c, data).unwrap()
    }

    #[test]
    fn identity_kernel_and_identity_resize() {
        let img = ramp(7, 5, 3);
        let mut values = vec![0.0; 9];
        values[4] = 1.0;
        let id = Kernel { size: 3, values };
        assert_eq!(filter2d(&img, &id).unwrap(), img);
        assert_eq!(resize_linear(&img, 5, 7).unwrap(), img);
    }

    #[test]
    fn reflect_101_mirrors_without_the_edge() {
        let idx: Vec<usize> = (-3..8).map(|i| reflect_101(i, 5)).collect();
        assert_eq!(idx, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
    }

    #[test]
    fn constant_image_resizes_to_constant() {
        let img = HwcImage::new(6, 9, 1, vec![0.25; 54]).unwrap();
        let out = resize_linear(&img, 4, 3).unwrap();
        assert_eq!((out.height, out.width), (3, 4));
        assert!(out.data.iter().all(|v| (*v - 0.25).abs() < 1e-7));
        let up = resize_linear(&out, 13, 11).unwrap();
        assert!(up.data.iter().all(|v| (*v - 0.25).abs() < 1e-7));
    }

    #[test]
    fn downsampled_size_uses_python_floor_division() {
        assert_eq!(downsampled_size(40, 48, 2.7).unwrap(), (14, 17));
        assert!(downsampled_size(4, 4, 0.0).is_err());
    }
}
