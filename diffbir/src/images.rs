//! Restoring images and image files: [`Pipeline::restore`] between decoding and the output
//! image, kept as the `diffbir` command keeps it (alpha resized and reattached, gray stays
//! gray, 16-bit stays 16-bit).

use std::path::Path;

use diffbir_core::NoiseSource;
use diffbir_core::image::{
    ReadOptions, SaveOptions, image_meta, open_image, rgb8_to_image, tensor_to_image,
};
use diffbir_core::resize::upscaled_size;
use image::DynamicImage;

use crate::error::{Error, Result};
use crate::observe::Observer;
use crate::pipeline::{Pipeline, PipelineConfig, Task};

impl PipelineConfig {
    /// The output size `(width, height)` of a `width × height` input, or an error when it
    /// exceeds the decoder's limits ([`ReadOptions::default`]) or the input is too small.
    pub fn output_size(&self, width: u32, height: u32) -> Result<(u32, u32)> {
        let limits = ReadOptions::default();
        let invalid =
            |reason: String| Error::Core(diffbir_core::Error::invalid("image size", reason));
        if width.min(height) < limits.min_side {
            return Err(invalid(format!(
                "{width}x{height} is too small to restore (at least {} pixels per side)",
                limits.min_side
            )));
        }
        let (w, h) = upscaled_size(width, height, self.upscale)?;
        if w > limits.max_width || h > limits.max_height {
            return Err(invalid(format!(
                "upscaling {width}x{height} by {} gives {w}x{h}, over the {}x{} limit; \
                 restore a smaller image or use a smaller upscale",
                self.upscale, limits.max_width, limits.max_height
            )));
        }
        Ok((w, h))
    }
}

impl Pipeline {
    /// Restores one image: the pipeline's `n_samples` results, each the output size, seeded
    /// with the pipeline's seed (the same image gives the same results). For `unaligned_face`
    /// the results are [`Self::restore_faces`]' images (8-bit, at the canvas size).
    pub fn restore_image(&self, image: &DynamicImage) -> Result<Vec<DynamicImage>> {
        self.restore_image_observed(image, &mut ())
    }

    /// [`Self::restore_image`], reporting progress to `observer`, which can cancel it.
    pub fn restore_image_observed(
        &self,
        image: &DynamicImage,
        observer: &mut impl Observer,
    ) -> Result<Vec<DynamicImage>> {
        self.config().output_size(image.width(), image.height())?;
        let meta = image_meta(image);
        let mut noise = NoiseSource::seeded(self.seed());
        if self.config().task == Task::UnalignedFace {
            let restored = self.restore_faces(image, None, &mut noise, observer)?;
            return Ok(restored
                .images
                .into_iter()
                .map(|rgb| rgb8_to_image(rgb, &meta))
                .collect());
        }
        let samples = self.restore(image, &mut noise, observer)?;
        let options = SaveOptions::like(&meta);
        Ok(samples
            .into_iter()
            .map(|sample| tensor_to_image(sample.squeeze_dim(0), meta.alpha.as_ref(), &options))
            .collect())
    }

    /// Decodes an image file (PNG, JPEG, WebP, TIFF, BMP) and restores it.
    pub fn restore_path(&self, path: impl AsRef<Path>) -> Result<Vec<DynamicImage>> {
        let image = open_image(path, &ReadOptions::default())?;
        self.restore_image(&image)
    }

    /// Restores several images, one after the other; one image's error does not stop the
    /// others. Each result is [`Self::restore_image`]'s.
    pub fn restore_batch<'a>(
        &self,
        images: impl IntoIterator<Item = &'a DynamicImage>,
    ) -> Vec<Result<Vec<DynamicImage>>> {
        images
            .into_iter()
            .map(|image| self.restore_image(image))
            .collect()
    }
}
