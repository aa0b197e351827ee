//! The degradations of `cargo xtask eval`: the training crate's two pipelines, applied to one
//! image at a fixed seed, with the parameters of the reference's training configs (embedded
//! from `diffbir-train/configs`).

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use diffbir::image::RgbImage;
use diffbir_train::data::{
    Batch, CodeformerConfig, CodeformerDataset, CropType, crop, rng_for, stream,
};
use diffbir_train::degradation::cv::HwcImage;
use diffbir_train::realesrgan::{
    RealEsrganConfig, RealEsrganTransform, RealEsrganTransformConfig, rgb_to_chw,
};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use std::path::Path;

diffbir::core::named_enum! {
    /// A degradation pipeline of the training crate.
    pub enum Degradation ("degradation") {
        /// `CodeformerDataset`'s blur → downsample → noise → JPEG → resize back (stage 1's
        /// and v2's training data; `train_stage1.toml`'s `[dataset.train]`).
        Codeformer = "codeformer",
        /// Real-ESRGAN's two rounds of blur, resize, noise and JPEG and the final sinc
        /// filter (v2.1's training data; `train_stage2_v2.1.toml`), without the sharpening
        /// of the ground truth, which stays the reference.
        RealEsrgan = "realesrgan",
    }
}

const STAGE1_CONFIG: &str = include_str!("../../../diffbir-train/configs/train_stage1.toml");
const STAGE2_V21_CONFIG: &str =
    include_str!("../../../diffbir-train/configs/train_stage2_v2.1.toml");

/// The table at `path` (`dataset.train`) of an embedded config.
fn table<T: DeserializeOwned>(text: &str, path: &str) -> Result<T> {
    let mut value: toml::Value = toml::from_str(text)?;
    for key in path.split('.') {
        value = value
            .get(key)
            .with_context(|| format!("the embedded config has no [{path}]"))?
            .clone();
    }
    Ok(value.try_into()?)
}

/// The degradations, set up once for a folder of images cropped to `size`.
pub struct Degraders {
    codeformer: CodeformerDataset,
    kernels: RealEsrganConfig,
    transform: RealEsrganTransform,
    size: usize,
    seed: u64,
}

impl std::fmt::Debug for Degraders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Degraders")
            .field("size", &self.size)
            .finish()
    }
}

impl Degraders {
    /// The reference's parameters for images of `dataset` center-cropped to `size`.
    pub fn new(dataset: &Path, size: usize, seed: u64, device: &Device) -> Result<Self> {
        let mut codeformer: CodeformerConfig = table(STAGE1_CONFIG, "dataset.train")?;
        codeformer.file_list = None;
        codeformer.folder = Some(dataset.to_path_buf());
        codeformer.out_size = size;
        codeformer.validate("codeformer")?;
        let codeformer = CodeformerDataset::new(&codeformer, 0.0)?;
        let kernels: RealEsrganConfig = table(STAGE2_V21_CONFIG, "dataset.realesrgan")?;
        let mut transform: RealEsrganTransformConfig = table(STAGE2_V21_CONFIG, "batch_transform")?;
        transform.use_sharpener = false;
        transform.validate("realesrgan", 1, size)?;
        Ok(Self {
            codeformer,
            kernels,
            transform: RealEsrganTransform::new(&transform, 1, device)?,
            size,
            seed,
        })
    }

    /// The random stream of one image and degradation: it depends on the seed and the
    /// names only, so adding or removing images changes no other image's degradation.
    fn rng(&self, degradation: Degradation, name: &str) -> ChaCha8Rng {
        let key = format!("{degradation}/{name}");
        let index = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        rng_for(self.seed, stream::EVAL, index)
    }

    /// The high-quality crop of `image` (`name` seeds the draws) and its degraded copy, both
    /// `size × size`.
    pub fn degrade(
        &self,
        degradation: Degradation,
        name: &str,
        image: RgbImage,
    ) -> Result<(RgbImage, RgbImage)> {
        let mut rng = self.rng(degradation, name);
        let size = self.size;
        let hq = crop(image, size, CropType::Center, &mut rng)?;
        let lq = match degradation {
            Degradation::Codeformer => {
                let gt = HwcImage::new(
                    size,
                    size,
                    3,
                    hq.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect(),
                )?;
                let lq = self.codeformer.degrade(&gt, &mut rng)?;
                to_rgb(size, lq.data.iter().copied())?
            }
            Degradation::RealEsrgan => {
                let batch = Batch {
                    step: 0,
                    size,
                    gt: rgb_to_chw(&hq),
                    lq: Vec::new(),
                    prompts: vec![String::new()],
                    kernels: self.kernels.draw_kernels(&mut rng)?,
                };
                let (_, lq) = self.transform.degrade(&batch, &mut rng)?;
                // Channel-first to interleaved.
                let plane = size * size;
                to_rgb(size, (0..3 * plane).map(|i| lq[(i % 3) * plane + i / 3]))?
            }
        };
        Ok((hq, lq))
    }
}

/// Interleaved RGB values in `[0, 1]` as an 8-bit image, rounded as the pipelines save.
fn to_rgb(size: usize, values: impl Iterator<Item = f32>) -> Result<RgbImage> {
    let data: Vec<u8> = values.map(diffbir::core::image::quantize_u8).collect();
    if data.len() != 3 * size * size {
        bail!("a degraded image of {} values for {size}²", data.len());
    }
    RgbImage::from_raw(size as u32, size as u32, data).context("an image of its own size")
}
