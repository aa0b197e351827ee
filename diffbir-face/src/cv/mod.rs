//! The OpenCV operations of facexlib's face helper, reproduced to OpenCV's own arithmetic
//! (fixed-point where OpenCV computes in fixed point) on interleaved `H × W × C` buffers.
//!
//! Written by hand: the helper's results depend on OpenCV's exact rounding (its 1/32-pixel
//! warp tables, its fixed-point resize coefficients, LMEDS' random sampling), which no Rust
//! crate reproduces, and binding OpenCV itself would put a C++ toolchain and library in
//! every build.

mod affine;
mod blur;
mod morph;
mod resize;
mod warp;

pub use affine::{Affine, estimate_affine_partial_lmeds, invert_affine};
pub use blur::{BlurPixel, gaussian_blur};
pub use diffbir_core::gaussian::gaussian_kernel;
pub use morph::erode;
pub use resize::{resize_lanczos4, resize_linear, scaled_size};
pub use warp::{WarpPixel, warp_affine};

use diffbir_core::{Error, Result};

/// An interleaved `rows × cols × channels` image (OpenCV's `Mat` of one depth).
#[derive(Debug, Clone, PartialEq)]
pub struct Mat<T> {
    /// Height.
    pub rows: usize,
    /// Width.
    pub cols: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// `rows · cols · channels` values, row-major, channels interleaved.
    pub data: Vec<T>,
}

impl<T: Copy + Default> Mat<T> {
    /// A matrix filled with `T::default()`.
    pub fn zeros(rows: usize, cols: usize, channels: usize) -> Self {
        Self {
            rows,
            cols,
            channels,
            data: vec![T::default(); rows * cols * channels],
        }
    }
}

impl<T> Mat<T> {
    /// Wraps `data`, checking its length.
    ///
    /// # Errors
    ///
    /// If `data` does not hold `rows · cols · channels` values.
    pub fn new(rows: usize, cols: usize, channels: usize, data: Vec<T>) -> Result<Self> {
        if rows.checked_mul(cols).and_then(|n| n.checked_mul(channels)) != Some(data.len()) {
            return Err(Error::InvalidArgument {
                what: "image buffer".into(),
                reason: format!("{} values for {rows} × {cols} × {channels}", data.len()),
            });
        }
        Ok(Self {
            rows,
            cols,
            channels,
            data,
        })
    }

    /// Fails unless the image has `channels` channels.
    pub(crate) fn expect_channels(&self, channels: usize, what: &str) -> Result<()> {
        if self.channels == channels {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: what.into(),
                reason: format!("expected {channels} channels, got {}", self.channels),
            })
        }
    }

    /// The values of pixel `(y, x)`.
    pub fn pixel(&self, y: usize, x: usize) -> &[T] {
        let at = (y * self.cols + x) * self.channels;
        &self.data[at..at + self.channels]
    }
}
