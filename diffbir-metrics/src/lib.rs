//! Image-quality metrics for restoration, computed as the implementations papers quote:
//!
//! - `psnr`, `ssim`: BasicSR's `calculate_psnr` / `calculate_ssim` (8-bit images, `f64`,
//!   OpenCV's Gaussian window, BT.601 luma with `--y-channel`), the numbers of DiffBIR's and
//!   most restoration papers' tables;
//! - `psnr-pyiqa`, `ssim-pyiqa`: pyiqa's `psnr`/`psnry` and `ssimc`/`ssim` (YIQ luma, MATLAB's
//!   window, contrast-structure terms clamped at 0);
//! - `lpips`, `lpips-vgg`: LPIPS v0.1 with AlexNet or VGG16 on the official weights;
//! - `clipiqa`: CLIP-IQA as pyiqa computes it (no reference), on OpenAI's CLIP RN50.
//!
//! ```
//! use diffbir_metrics::{FrOptions, MetricImage, psnr, ssim};
//!
//! let a = MetricImage::new(16, 16, 3, (0..768).map(|i| (i % 251) as u8).collect()).unwrap();
//! let b = MetricImage::new(16, 16, 3, (0..768).map(|i| (i % 251) as u8 ^ 1).collect()).unwrap();
//! let options = FrOptions::default();
//! assert!((psnr(&a, &b, &options).unwrap() - 48.13).abs() < 0.01);
//! assert_eq!(psnr(&a, &a, &options).unwrap(), f64::INFINITY);
//! assert!(ssim(&a, &b, &options).unwrap() > 0.99);
//! ```
#![deny(missing_docs)]

pub mod clip_iqa;
mod color;
mod error;
mod image;
pub mod lpips;
pub mod pairs;
mod psnr;
pub mod report;
mod scorer;
mod ssim;

use diffbir_core::named_enum;

pub use error::{Error, Result};
pub use image::MetricImage;
pub use lpips::{LPIPS_LIN_KEYS, LPIPS_TRUNK_KEYS, Lpips, LpipsConfig, LpipsNet};
pub use psnr::{psnr, psnr_pyiqa};
pub use scorer::{Scorer, Scores};
pub use ssim::{ssim, ssim_pyiqa};

named_enum! {
    /// A metric, by the name the command line, CSV and JSON use.
    pub enum Metric ("metric") {
        /// BasicSR's PSNR (dB, higher is better).
        Psnr = "psnr",
        /// BasicSR's SSIM (higher is better).
        Ssim = "ssim",
        /// pyiqa's PSNR (dB, higher is better).
        PsnrPyiqa = "psnr-pyiqa",
        /// pyiqa's SSIM (higher is better).
        SsimPyiqa = "ssim-pyiqa",
        /// LPIPS v0.1 on AlexNet (lower is better).
        Lpips = "lpips" | "lpips-alex",
        /// LPIPS v0.1 on VGG16 (lower is better).
        LpipsVgg = "lpips-vgg",
        /// CLIP-IQA (no reference; higher is better).
        ClipIqa = "clipiqa" | "clip-iqa",
    }
}

impl Metric {
    /// Whether a higher score is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Self::Lpips | Self::LpipsVgg)
    }

    /// The LPIPS network the metric needs, if any.
    pub fn lpips_net(self) -> Option<LpipsNet> {
        match self {
            Self::Lpips => Some(LpipsNet::Alex),
            Self::LpipsVgg => Some(LpipsNet::Vgg),
            _ => None,
        }
    }

    /// Whether `crop_border` and `y_channel` apply (PSNR and SSIM; LPIPS and CLIP-IQA see the
    /// whole RGB image, as the originals do).
    pub fn uses_fr_options(self) -> bool {
        matches!(
            self,
            Self::Psnr | Self::Ssim | Self::PsnrPyiqa | Self::SsimPyiqa
        )
    }

    /// Whether the metric compares with a reference (all but CLIP-IQA).
    pub fn needs_reference(self) -> bool {
        self != Self::ClipIqa
    }
}

/// How PSNR and SSIM compare a pair: BasicSR's and pyiqa's `crop_border` and
/// `test_y_channel`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrOptions {
    /// Pixels cut from each side of both images first (often the upscaling factor).
    pub crop_border: usize,
    /// Compare the luma only: BT.601 (16–235) for BasicSR's metrics, YIQ's Y for pyiqa's.
    pub y_channel: bool,
}
