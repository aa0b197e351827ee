//! 8-bit images as the metrics read them: interleaved rows of RGB (or one gray channel)
//! samples, as `cv2.imread` and PIL give them to BasicSR and pyiqa.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::image::{ReadOptions, open_image};
use image::DynamicImage;

use crate::error::{Error, Result};

/// An 8-bit image: `height` rows of `width` pixels of `channels` (1 or 3, RGB order)
/// interleaved samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricImage {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl MetricImage {
    /// An image from its samples; `channels` is 1 (gray) or 3 (RGB).
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Result<Self> {
        if channels != 1 && channels != 3 {
            return Err(Error::InvalidImage(format!(
                "{channels} channels; an image has 1 (gray) or 3 (RGB)"
            )));
        }
        if width == 0 || height == 0 {
            return Err(Error::InvalidImage(format!(
                "the image is {width}×{height}"
            )));
        }
        if data.len() != width * height * channels {
            return Err(Error::InvalidImage(format!(
                "{} samples for a {width}×{height}×{channels} image",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// A decoded image as RGB 8-bit, as `cv2.imread(path)` and PIL's `convert("RGB")` read
    /// it for the metrics: gray is repeated over the three channels, alpha is dropped, and
    /// 16-bit samples are scaled to 8 bits.
    pub fn from_dynamic(image: &DynamicImage) -> Self {
        let rgb = image.to_rgb8();
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        Self {
            width,
            height,
            channels: 3,
            data: rgb.into_raw(),
        }
    }

    /// Reads an image file (PNG, JPEG, WebP, TIFF, BMP; the format is detected from the
    /// content) as [`from_dynamic`](Self::from_dynamic) converts it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = ReadOptions {
            min_side: 1,
            ..ReadOptions::default()
        };
        Ok(Self::from_dynamic(&open_image(path, &options)?))
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Channels per pixel (1 or 3).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The interleaved samples.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// `W×H×C`, for messages.
    pub fn describe(&self) -> String {
        format!("{}×{}×{}", self.width, self.height, self.channels)
    }

    /// The image without `border` pixels on each side (`img[b:-b, b:-b]`), or `None` when
    /// nothing would be left.
    pub(crate) fn cropped(&self, border: usize) -> Option<Self> {
        if border == 0 {
            return Some(self.clone());
        }
        let (w, h) = (
            self.width.checked_sub(2 * border)?,
            self.height.checked_sub(2 * border)?,
        );
        if w == 0 || h == 0 {
            return None;
        }
        let c = self.channels;
        let mut data = Vec::with_capacity(w * h * c);
        for y in border..border + h {
            let row = (y * self.width + border) * c;
            data.extend_from_slice(&self.data[row..row + w * c]);
        }
        Some(Self {
            width: w,
            height: h,
            channels: c,
            data,
        })
    }

    /// The image as a `[1, 3, H, W]` tensor of `v / 255` in `f32` (torchvision's
    /// `ToTensor`); gray is repeated over the three channels.
    ///
    /// # Shapes
    /// - returns `[1, 3, H, W]`
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        let plane = self.width * self.height;
        let mut values = vec![0f32; 3 * plane];
        for (i, px) in self.data.chunks_exact(self.channels).enumerate() {
            for c in 0..3 {
                values[c * plane + i] = f32::from(px[c.min(self.channels - 1)]) / 255.0;
            }
        }
        Tensor::from_data(
            TensorData::new(values, [1, 3, self.height, self.width]),
            device,
        )
    }
}

/// Checks that two images have one size and channel count.
pub(crate) fn check_same_size(restored: &MetricImage, reference: &MetricImage) -> Result<()> {
    if (restored.width, restored.height, restored.channels)
        != (reference.width, reference.height, reference.channels)
    {
        return Err(Error::SizeMismatch {
            restored: restored.describe(),
            reference: reference.describe(),
        });
    }
    Ok(())
}
