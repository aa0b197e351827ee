//! Structural similarity (Wang et al. 2004) on an 11×11 Gaussian window of σ = 1.5, as
//! BasicSR (`calculate_ssim`) and pyiqa (`ssim`, `ssimc`) compute it.

use rayon::prelude::*;

use crate::FrOptions;
use crate::color::{Plane, basicsr_planes, pyiqa_planes};
use crate::error::Result;
use crate::image::MetricImage;
use crate::psnr::crop_pair;

/// The window's side.
const WINDOW: usize = 11;
/// The window's σ.
const SIGMA: f64 = 1.5;
/// `(0.01·255)²` and `(0.03·255)²`: both originals compute on 0–255 values.
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// A window of weights, applied as a correlation over the "valid" positions.
enum Window {
    /// `outer(k, k)`: applied as a row pass and a column pass.
    Separable(Vec<f64>),
    /// A full `WINDOW × WINDOW` table, row-major.
    Full(Vec<f64>),
}

impl Window {
    /// BasicSR's `np.outer(k, k)` with `k = cv2.getGaussianKernel(11, 1.5)`.
    fn basicsr() -> Self {
        Self::Separable(diffbir_core::gaussian::gaussian_kernel(WINDOW, SIGMA))
    }

    /// pyiqa's `fspecial(11, 1.5)` (MATLAB's): `exp(−(x² + y²)/2σ²)` on the 2-D grid,
    /// entries under `ε·max` zeroed, normalised, then rounded to `float32` (pyiqa builds it
    /// with `.float()` and casts it to the images' `f64`), which is why it is not separable.
    fn pyiqa() -> Self {
        let m = (WINDOW as f64 - 1.0) / 2.0;
        let mut h: Vec<f64> = (0..WINDOW * WINDOW)
            .map(|i| {
                let (y, x) = ((i / WINDOW) as f64 - m, (i % WINDOW) as f64 - m);
                (-(x * x + y * y) / (2.0 * SIGMA * SIGMA)).exp()
            })
            .collect();
        let max = h.iter().copied().fold(0.0, f64::max);
        for v in &mut h {
            if *v < f64::EPSILON * max {
                *v = 0.0;
            }
        }
        let sum: f64 = h.iter().sum();
        Self::Full(h.iter().map(|v| f64::from((v / sum) as f32)).collect())
    }

    /// The window applied at every valid position of `x` (`filter2(x, w, 'valid')`).
    fn apply(&self, x: &Plane) -> Plane {
        let (w, h) = (x.width - WINDOW + 1, x.height - WINDOW + 1);
        let mut out = vec![0.0; w * h];
        match self {
            Self::Separable(k) => {
                let rows: Vec<f64> = x
                    .data
                    .par_chunks(x.width)
                    .flat_map_iter(|row| {
                        (0..w).map(move |j| k.iter().zip(&row[j..]).map(|(a, b)| a * b).sum())
                    })
                    .collect();
                out.par_chunks_mut(w).enumerate().for_each(|(i, line)| {
                    for (j, o) in line.iter_mut().enumerate() {
                        *o = k
                            .iter()
                            .enumerate()
                            .map(|(a, ka)| ka * rows[(i + a) * w + j])
                            .sum();
                    }
                });
            }
            Self::Full(k) => {
                out.par_chunks_mut(w).enumerate().for_each(|(i, line)| {
                    for (j, o) in line.iter_mut().enumerate() {
                        let mut acc = 0.0;
                        for a in 0..WINDOW {
                            let row = &x.data[(i + a) * x.width + j..][..WINDOW];
                            let ka = &k[a * WINDOW..][..WINDOW];
                            acc += ka.iter().zip(row).map(|(p, q)| p * q).sum::<f64>();
                        }
                        *o = acc;
                    }
                });
            }
        }
        Plane {
            width: w,
            height: h,
            data: out,
        }
    }
}

/// The SSIM map of one pair of planes: the local means, variances and covariance from the
/// window, then `l·cs` per position; `clamp_cs` sets negative `cs` terms to 0 (pyiqa).
fn ssim_map(window: &Window, x: &Plane, y: &Plane, clamp_cs: bool) -> Vec<f64> {
    let product = |f: &dyn Fn(f64, f64) -> f64| Plane {
        width: x.width,
        height: x.height,
        data: x.data.iter().zip(&y.data).map(|(a, b)| f(*a, *b)).collect(),
    };
    let mu1 = window.apply(x);
    let mu2 = window.apply(y);
    let xx = window.apply(&product(&|a, _| a * a));
    let yy = window.apply(&product(&|_, b| b * b));
    let xy = window.apply(&product(&|a, b| a * b));
    (0..mu1.data.len())
        .map(|i| {
            let (m1, m2) = (mu1.data[i], mu2.data[i]);
            let s1 = xx.data[i] - m1 * m1;
            let s2 = yy.data[i] - m2 * m2;
            let s12 = xy.data[i] - m1 * m2;
            let luminance = (2.0 * m1 * m2 + C1) / (m1 * m1 + m2 * m2 + C1);
            let cs = (2.0 * s12 + C2) / (s1 + s2 + C2);
            if clamp_cs {
                luminance * cs.max(0.0)
            } else {
                ((2.0 * m1 * m2 + C1) * (2.0 * s12 + C2))
                    / ((m1 * m1 + m2 * m2 + C1) * (s1 + s2 + C2))
            }
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// BasicSR's SSIM (`basicsr/metrics/psnr_ssim.py`, `calculate_ssim`, `_ssim`): each channel's
/// mean SSIM over the valid positions of the window, in `f64` on 0–255 values, then the mean
/// over the channels; `crop_border` and `y_channel` as for [`psnr`](crate::psnr). Needs 11×11
/// pixels after the crop.
pub fn ssim(restored: &MetricImage, reference: &MetricImage, options: &FrOptions) -> Result<f64> {
    let (a, b) = crop_pair("ssim", WINDOW, restored, reference, options)?;
    let window = Window::basicsr();
    let per_channel: Vec<f64> = basicsr_planes(&a, options.y_channel)
        .iter()
        .zip(&basicsr_planes(&b, options.y_channel))
        .map(|(x, y)| mean(&ssim_map(&window, x, y, false)))
        .collect();
    Ok(mean(&per_channel))
}

/// pyiqa's SSIM (`pyiqa/archs/ssim_arch.py`; metric `ssimc`, and `ssim` with `y_channel`):
/// the planes scaled to 0–255 and rounded, MATLAB's 2-D window, negative contrast-structure
/// terms set to 0, the mean over channels and positions.
pub fn ssim_pyiqa(
    restored: &MetricImage,
    reference: &MetricImage,
    options: &FrOptions,
) -> Result<f64> {
    let (a, b) = crop_pair("ssim-pyiqa", WINDOW, restored, reference, options)?;
    let window = Window::pyiqa();
    let maps: Vec<f64> = pyiqa_planes(&a, options.y_channel, true)
        .iter()
        .zip(&pyiqa_planes(&b, options.y_channel, true))
        .flat_map(|(x, y)| ssim_map(&window, x, y, true))
        .collect();
    Ok(mean(&maps))
}
