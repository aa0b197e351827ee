//! The Real-ESRGAN second-order degradation of DiffBIR v2.1:
//! [`RealEsrganDataset`] (`RealESRGANDataset`,
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/realesrgan.py:L17-L226`: images with long/short
//! captions from parquet lists, the three random kernels per sample) and [`RealEsrganTransform`]
//! (`RealESRGANBatchTransform`, `diffbir/dataset/batch_transform.py:L27-L285`: USM sharpening,
//! two rounds of blur → resize → noise → JPEG, the final sinc filter, and the 256-pair training
//! pool), on tensors of any device.
//!
//! As everywhere in this crate, the random draws come from ChaCha8 streams derived from the
//! run's seed: a sample's from its global sample number (so workers can prepare it anywhere),
//! a batch transform's from the step and the data-parallel shard. The draws follow the
//! reference's order; the generators are not PyTorch's or NumPy's, so the same seed gives
//! different (equally distributed) degradations than the reference.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{check_probability, check_range, check_weights, resolve};
use crate::data::{CropType, ImageEntry, Sample, TrainingSet, crop, scan_folder, with_retries};
use crate::degradation::kernels::{
    Kernel, KernelKind, KernelRanges, circular_lowpass_kernel, random_mixed_kernel, uniform,
};
use crate::error::{Error, Result};

/// Side every kernel is zero-padded to, and the largest kernel drawn (the reference's fixed
/// `kernel_range = [7, 9, …, 21]`).
pub const KERNEL_SIZE: usize = 21;
/// The smallest kernel drawn.
const MIN_KERNEL: usize = 7;

/// One parquet list of `file_metas`: the file and the names of its columns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeta {
    /// The parquet file (relative image paths in it are relative to its folder).
    pub file_list: PathBuf,
    /// Column of the image paths (reference: `image_path`).
    pub image_path_key: String,
    /// Column of the short captions (reference: `llava_short`).
    pub short_prompt_key: String,
    /// Column of the long captions (reference: `llava_long`).
    pub long_prompt_key: String,
}

/// An image with both of its captions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionedImage {
    /// The image file.
    pub path: PathBuf,
    /// Short caption.
    pub short_prompt: String,
    /// Long caption.
    pub long_prompt: String,
}

/// Reads one parquet list (`load_file_metas`): every row's image path and both captions.
/// Missing captions (nulls) read as empty.
pub fn read_parquet_list(meta: &FileMeta) -> Result<Vec<CaptionedImage>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let path = &meta.file_list;
    let bad = |reason: String| Error::Data(format!("{}: {reason}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(e.to_string()))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    for key in [
        &meta.image_path_key,
        &meta.short_prompt_key,
        &meta.long_prompt_key,
    ] {
        if !names.contains(key) {
            return Err(bad(format!(
                "has no column `{key}` (its columns: {})",
                names.join(", ")
            )));
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let rows = reader.get_row_iter(None).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
        let mut image = None;
        let (mut short, mut long) = (String::new(), String::new());
        for (name, field) in row.get_column_iter() {
            let text = match field {
                Field::Str(s) => Some(s.clone()),
                Field::Null => None,
                other => {
                    if name == &meta.image_path_key
                        || name == &meta.short_prompt_key
                        || name == &meta.long_prompt_key
                    {
                        return Err(bad(format!(
                            "row {i}: column `{name}` holds {other}, not text"
                        )));
                    }
                    continue;
                }
            };
            if name == &meta.image_path_key {
                image = text;
            } else if name == &meta.short_prompt_key {
                short = text.unwrap_or_default();
            } else if name == &meta.long_prompt_key {
                long = text.unwrap_or_default();
            }
        }
        let image = image.ok_or_else(|| bad(format!("row {i} has no image path")))?;
        let file = Path::new(&image);
        out.push(CaptionedImage {
            path: if file.is_absolute() {
                file.to_path_buf()
            } else {
                dir.join(file)
            },
            short_prompt: short,
            long_prompt: long,
        });
    }
    Ok(out)
}

/// The blur-kernel parameters of one degradation round.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// Kernel families.
    pub kernel_list: Vec<KernelKind>,
    /// Their probabilities.
    pub kernel_prob: Vec<f64>,
    /// σ range.
    pub blur_sigma: [f64; 2],
    /// β range of the generalized Gaussians.
    pub betag_range: [f64; 2],
    /// β range of the plateaus.
    pub betap_range: [f64; 2],
    /// Probability of a sinc kernel instead.
    pub sinc_prob: f64,
}

/// `RealESRGANDataset`'s parameters (the `dataset.train` part of `train_stage2_v2.1.yaml`),
/// plus where the images are. The second round's kernel settings carry the suffix `2` in
/// the reference; here they are the `[… .kernel2]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealEsrganConfig {
    /// Parquet lists with captions (`file_metas`).
    #[serde(default)]
    pub file_metas: Vec<FileMeta>,
    /// Or a folder searched recursively for images (no captions).
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// Use only the first `limit` images.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Probability of the long caption (reference: 0.2).
    #[serde(default)]
    pub p_long_prompt: f64,
    /// Probability that the caption is dropped (reference: 0.2).
    #[serde(default)]
    pub p_empty_prompt: f64,
    /// Image side (reference: 512).
    pub out_size: usize,
    /// Cropping rule (reference: `none`, the images are already `out_size²`).
    #[serde(default)]
    pub crop_type: CropType,
    /// Horizontal flips with probability ½.
    #[serde(default)]
    pub use_hflip: bool,
    /// Vertical flips and transposes with probability ½ each.
    #[serde(default)]
    pub use_rot: bool,
    /// The reference's `blur_kernel_size` (21; the kernels are always padded to 21).
    #[serde(default = "default_kernel_size")]
    pub blur_kernel_size: usize,
    /// The first round's kernels (reference: six families, σ `[0.2, 3]`, sinc 0.1).
    pub kernel1: KernelConfig,
    /// The second round's kernels (reference: σ `[0.2, 1.5]`).
    pub kernel2: KernelConfig,
    /// Probability of the final sinc filter (reference: 0.8; otherwise a pulse).
    pub final_sinc_prob: f64,
}

fn default_kernel_size() -> usize {
    KERNEL_SIZE
}

impl KernelConfig {
    fn validate(&self, section: &str) -> Result<()> {
        let field = |name: &str| format!("{section}.{name}");
        if self.kernel_list.is_empty() {
            return Err(Error::field(field("kernel_list"), "must not be empty"));
        }
        check_weights(
            field("kernel_prob"),
            &self.kernel_prob,
            self.kernel_list.len(),
        )?;
        check_range(field("blur_sigma"), self.blur_sigma, f64::MIN_POSITIVE)?;
        check_range(field("betag_range"), self.betag_range, f64::MIN_POSITIVE)?;
        check_range(field("betap_range"), self.betap_range, f64::MIN_POSITIVE)?;
        check_probability(field("sinc_prob"), self.sinc_prob)
    }

    fn ranges(&self) -> KernelRanges {
        KernelRanges {
            sigma: self.blur_sigma,
            betag: self.betag_range,
            betap: self.betap_range,
        }
    }

    /// A kernel of a random size in `7..=21` (odd), sinc with probability `sinc_prob`
    /// (cut-off `U(π/3, π)` below size 13, `U(π/5, π)` from 13 on), zero-padded to 21.
    fn draw(&self, rng: &mut impl Rng) -> Result<Kernel> {
        let size = kernel_size(rng);
        let kernel = if rng.random::<f64>() < self.sinc_prob {
            let low = if size < 13 { PI / 3.0 } else { PI / 5.0 };
            circular_lowpass_kernel(uniform(rng, low, PI), size, 0)?
        } else {
            random_mixed_kernel(
                rng,
                &self.kernel_list,
                &self.kernel_prob,
                size,
                &self.ranges(),
            )?
        };
        Ok(kernel.pad_to(KERNEL_SIZE))
    }
}

/// `random.choice([7, 9, …, 21])`.
fn kernel_size(rng: &mut impl Rng) -> usize {
    MIN_KERNEL + 2 * rng.random_range(0..=(KERNEL_SIZE - MIN_KERNEL) / 2)
}

impl RealEsrganConfig {
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for meta in &mut self.file_metas {
            meta.file_list = resolve(base, &meta.file_list);
        }
        if let Some(folder) = &mut self.folder {
            *folder = resolve(base, folder);
        }
    }

    /// Checks the values; errors name the field under `section`.
    pub fn validate(&self, section: &str) -> Result<()> {
        let field = |name: &str| format!("{section}.{name}");
        if self.file_metas.is_empty() == self.folder.is_none() {
            return Err(Error::field(
                field("file_metas"),
                "give exactly one of `file_metas` (parquet lists) and `folder`",
            ));
        }
        if self.out_size < 8 {
            return Err(Error::field(field("out_size"), "must be at least 8"));
        }
        if self.blur_kernel_size != KERNEL_SIZE {
            return Err(Error::field(
                field("blur_kernel_size"),
                format!(
                    "the kernels are drawn with sizes 7 to 21 and padded to 21, as in the \
                     reference; set {KERNEL_SIZE}"
                ),
            ));
        }
        check_probability(field("p_long_prompt"), self.p_long_prompt)?;
        check_probability(field("p_empty_prompt"), self.p_empty_prompt)?;
        check_probability(field("final_sinc_prob"), self.final_sinc_prob)?;
        self.kernel1.validate(&field("kernel1"))?;
        self.kernel2.validate(&field("kernel2"))
    }
}

/// `RealESRGANDataset`: images (parquet lists with captions, or a folder), the crop, a long
/// or short caption, and the three kernels the batch transform applies.
#[derive(Debug, Clone)]
pub struct RealEsrganDataset {
    entries: Vec<CaptionedImage>,
    config: RealEsrganConfig,
}

impl RealEsrganDataset {
    /// Lists the images of `config` (which must be validated).
    pub fn new(config: &RealEsrganConfig) -> Result<Self> {
        let mut entries = match &config.folder {
            Some(dir) => scan_folder(dir)?
                .into_iter()
                .map(|ImageEntry { path, prompt }| CaptionedImage {
                    path,
                    short_prompt: prompt.clone(),
                    long_prompt: prompt,
                })
                .collect(),
            None => {
                let mut all = Vec::new();
                for meta in &config.file_metas {
                    all.extend(read_parquet_list(meta)?);
                }
                all
            }
        };
        if let Some(limit) = config.limit {
            entries.truncate(limit);
        }
        if entries.is_empty() {
            return Err(Error::Data(
                "the Real-ESRGAN dataset lists no images (check `file_metas` or `folder`)".into(),
            ));
        }
        Ok(Self {
            entries,
            config: config.clone(),
        })
    }

    /// The images.
    pub fn entries(&self) -> &[CaptionedImage] {
        &self.entries
    }

    fn prepare(&self, img: RgbImage, prompt: String, rng: &mut ChaCha8Rng) -> Result<Sample> {
        let c = &self.config;
        let mut img = crop(img, c.out_size, c.crop_type, rng)?;
        let prompt = if rng.random::<f64>() < c.p_empty_prompt {
            String::new()
        } else {
            prompt
        };
        // BasicSR's `augment`: hflip, vflip, transpose, each drawn only when enabled.
        let hflip = c.use_hflip && rng.random::<f64>() < 0.5;
        let vflip = c.use_rot && rng.random::<f64>() < 0.5;
        let transpose = c.use_rot && rng.random::<f64>() < 0.5;
        if hflip {
            image::imageops::flip_horizontal_in_place(&mut img);
        }
        if vflip {
            image::imageops::flip_vertical_in_place(&mut img);
        }
        if transpose {
            img = image::imageops::flip_horizontal(&image::imageops::rotate90(&img));
        }
        let kernels = c.draw_kernels(rng)?;
        Ok(Sample {
            gt: rgb_to_chw(&img),
            lq: Vec::new(),
            prompt,
            kernels,
        })
    }
}

/// An 8-bit RGB image as channel-first values in `[0, 1]`, as the dataset hands images to the
/// batch transform.
pub fn rgb_to_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut chw = vec![0.0f32; 3 * h * w];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            chw[ch * h * w + i] = (f64::from(*v) / 255.0) as f32;
        }
    }
    chw
}

impl RealEsrganConfig {
    /// The three kernels of one sample, drawn as `RealESRGANDataset.__getitem__` draws them
    /// after the flips: the first and second blurs and the final sinc filter (an identity
    /// when it is not drawn); `3 × 21 × 21` values.
    pub fn draw_kernels(&self, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let kernel1 = self.kernel1.draw(rng)?;
        let kernel2 = self.kernel2.draw(rng)?;
        let sinc = if rng.random::<f64>() < self.final_sinc_prob {
            let size = kernel_size(rng);
            circular_lowpass_kernel(uniform(rng, PI / 3.0, PI), size, KERNEL_SIZE)?
        } else {
            let mut values = vec![0.0; KERNEL_SIZE * KERNEL_SIZE];
            values[(KERNEL_SIZE / 2) * KERNEL_SIZE + KERNEL_SIZE / 2] = 1.0;
            Kernel {
                size: KERNEL_SIZE,
                values,
            }
        };
        Ok([kernel1, kernel2, sinc]
            .iter()
            .flat_map(|k| k.values.iter().map(|v| *v as f32))
            .collect())
    }
}

impl TrainingSet for RealEsrganDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn out_size(&self) -> usize {
        self.config.out_size
    }

    /// The caption (long with probability `p_long_prompt`), the image, the caption drop,
    /// the flips, and the three kernels, in the reference's order. An unreadable image is
    /// replaced by another one drawn from `rng` (up to five tries).
    fn sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        with_retries(self.entries.len(), index, rng, |i, rng| {
            let entry = &self.entries[i];
            let prompt = if rng.random::<f64>() < self.config.p_long_prompt {
                &entry.long_prompt
            } else {
                &entry.short_prompt
            };
            image::open(&entry.path)
                .map(|img| self.prepare(img.to_rgb8(), prompt.clone(), rng))
                .map_err(|e| format!("{}: {e}", entry.path.display()))
        })
    }
}

mod transform;
pub use transform::*;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;
    use crate::data::{Batch, make_batch, rng_for};
    use crate::degradation::filter::UsmSharp;
    use crate::degradation::read_back;
    use crate::parallel::shards;
    use burn::tensor::{Device, Tensor, TensorData};

    fn kernels(sigma: [f64; 2]) -> KernelConfig {
        KernelConfig {
            kernel_list: KernelKind::ALL.to_vec(),
            kernel_prob: vec![0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
            blur_sigma: sigma,
            betag_range: [0.5, 4.0],
            betap_range: [1.0, 2.0],
            sinc_prob: 0.1,
        }
    }

    pub(super) fn dataset_config(folder: &Path, size: usize) -> RealEsrganConfig {
        RealEsrganConfig {
            file_metas: Vec::new(),
            folder: Some(folder.to_path_buf()),
            limit: None,
            p_long_prompt: 0.2,
            p_empty_prompt: 0.2,
            out_size: size,
            crop_type: CropType::None,
            use_hflip: false,
            use_rot: false,
            blur_kernel_size: KERNEL_SIZE,
            kernel1: kernels([0.2, 3.0]),
            kernel2: kernels([0.2, 1.5]),
            final_sinc_prob: 0.8,
        }
    }

    fn round(noise: [f64; 2], poisson: [f64; 2], prob: [f64; 3], range: [f64; 2]) -> RoundConfig {
        RoundConfig {
            resize_prob: prob,
            resize_range: range,
            gaussian_noise_prob: 0.5,
            noise_range: noise,
            poisson_scale_range: poisson,
            gray_noise_prob: 0.4,
            jpeg_range: [30.0, 95.0],
        }
    }

    /// `train_stage2_v2.1.yaml`'s batch transform with a smaller pool.
    pub(super) fn transform_config(queue_size: usize) -> RealEsrganTransformConfig {
        RealEsrganTransformConfig {
            use_sharpener: true,
            queue_size,
            first: round([1.0, 30.0], [0.05, 3.0], [0.2, 0.7, 0.1], [0.15, 1.5]),
            second_blur_prob: 0.8,
            stage2_scale: Stage2Scale::Fixed(4.0),
            second: round([1.0, 25.0], [0.05, 2.5], [0.3, 0.4, 0.3], [0.3, 1.2]),
        }
    }

    /// `n` distinct `size²` images in a fresh folder.
    pub(super) fn image_folder(n: usize, size: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let img = RgbImage::from_fn(size, size, |x, y| {
                let v = ((x * 7 + y * 3 + i as u32 * 40) % 256) as u8;
                image::Rgb([v, (x * 255 / size) as u8, ((i * 60) % 256) as u8])
            });
            img.save(dir.path().join(format!("{i:02}.png"))).unwrap();
        }
        dir
    }

    /// Writes the two-row list of the parquet test with `compression`.
    fn write_parquet(path: &Path, compression: Compression) {
        let schema = Arc::new(
            parse_message_type(
                "message schema { REQUIRED BYTE_ARRAY image_path (UTF8); \
                 REQUIRED INT32 width; OPTIONAL BYTE_ARRAY llava_short (UTF8); \
                 REQUIRED BYTE_ARRAY llava_long (UTF8); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(compression)
                .build(),
        );
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let bytes = |v: &[&str]| v.iter().map(|s| ByteArray::from(*s)).collect::<Vec<_>>();
        let mut column = 0;
        while let Some(mut col) = group.next_column().unwrap() {
            match column {
                0 => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&bytes(&["a/1.png", "/abs/2.png"]), None, None)
                        .unwrap();
                }
                1 => {
                    col.typed::<Int32Type>()
                        .write_batch(&[512, 512], None, None)
                        .unwrap();
                }
                2 => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&bytes(&["a cat"]), Some(&[1, 0]), None)
                        .unwrap();
                }
                _ => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&bytes(&["a grey cat on a mat", "a dog"]), None, None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            column += 1;
        }
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn parquet_lists_give_paths_and_both_captions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        let meta = FileMeta {
            file_list: path.clone(),
            image_path_key: "image_path".into(),
            short_prompt_key: "llava_short".into(),
            long_prompt_key: "llava_long".into(),
        };
        // pyarrow's default codec, polars', and the other common ones.
        for compression in [
            Compression::SNAPPY,
            Compression::ZSTD(Default::default()),
            Compression::GZIP(Default::default()),
            Compression::LZ4_RAW,
        ] {
            write_parquet(&path, compression);
            let rows = read_parquet_list(&meta).unwrap();
            assert_eq!(
                rows,
                vec![
                    CaptionedImage {
                        path: dir.path().join("a/1.png"),
                        short_prompt: "a cat".into(),
                        long_prompt: "a grey cat on a mat".into(),
                    },
                    CaptionedImage {
                        path: "/abs/2.png".into(),
                        short_prompt: String::new(),
                        long_prompt: "a dog".into(),
                    },
                ],
                "{compression:?}"
            );
        }
        let wrong = FileMeta {
            long_prompt_key: "caption".into(),
            ..meta.clone()
        };
        let err = read_parquet_list(&wrong).unwrap_err().to_string();
        assert!(err.contains("no column `caption`"), "{err}");
        let numbers = FileMeta {
            image_path_key: "width".into(),
            ..meta
        };
        let err = read_parquet_list(&numbers).unwrap_err().to_string();
        assert!(err.contains("not text"), "{err}");
    }

    #[test]
    fn samples_carry_the_image_the_caption_and_three_normalised_kernels() {
        let dir = image_folder(2, 32);
        let mut config = dataset_config(dir.path(), 32);
        let set = RealEsrganDataset::new(&config).unwrap();
        let s = set.sample(1, &mut rng_for(0, 0, 0)).unwrap();
        assert_eq!(s.gt.len(), 3 * 32 * 32);
        let img = image::open(dir.path().join("01.png")).unwrap().to_rgb8();
        assert_eq!(s.gt[3], f32::from(img.get_pixel(3, 0)[0]) / 255.0);
        assert!(s.lq.is_empty());
        assert_eq!(s.kernels.len(), 3 * KERNEL_SIZE * KERNEL_SIZE);
        for k in s.kernels.chunks(KERNEL_SIZE * KERNEL_SIZE) {
            let sum: f32 = k.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        }
        // Captions: the long one always, then dropped always.
        let set = RealEsrganDataset {
            entries: vec![CaptionedImage {
                path: dir.path().join("00.png"),
                short_prompt: "short".into(),
                long_prompt: "long".into(),
            }],
            config: RealEsrganConfig {
                p_long_prompt: 1.0,
                p_empty_prompt: 0.0,
                ..config.clone()
            },
        };
        assert_eq!(set.sample(0, &mut rng_for(0, 0, 1)).unwrap().prompt, "long");
        config.p_empty_prompt = 1.0;
        let set = RealEsrganDataset { config, ..set };
        assert_eq!(set.sample(0, &mut rng_for(0, 0, 1)).unwrap().prompt, "");
        // Images of another size are refused with crop_type none.
        let other = image_folder(1, 40);
        let set = RealEsrganDataset::new(&dataset_config(other.path(), 32)).unwrap();
        let err = set
            .sample(0, &mut rng_for(0, 0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("32×32"), "{err}");
    }

    #[test]
    fn the_transform_sharpens_the_truth_and_quantises_the_input() {
        let device = Device::flex();
        let dir = image_folder(2, 96);
        let set = RealEsrganDataset::new(&dataset_config(dir.path(), 96)).unwrap();
        let batch = make_batch(&set, 2, 5, 0, 1).unwrap();
        let config = transform_config(4);
        config.validate("batch_transform", 2, 96).unwrap();
        let mut t = RealEsrganTransform::new(&config, 1, &device).unwrap();
        let out = t.apply(&batch, &shards(2, 1).unwrap(), 5, 0).unwrap();
        assert_eq!(out.lq.len(), batch.gt.len());
        assert!(out.kernels.is_empty());
        for v in &out.lq {
            assert!((0.0..=1.0).contains(v));
            let level = v * 255.0;
            assert!(
                (level - level.round()).abs() < 1e-3,
                "{v} is not an 8-bit level"
            );
        }
        let hq = Tensor::<4>::from_data(TensorData::new(batch.gt.clone(), [2, 3, 96, 96]), &device);
        let sharp = read_back(
            UsmSharp::new(50, 0.0, &device)
                .unwrap()
                .forward(hq, 0.5, 10.0)
                .unwrap(),
            "sharpened",
        )
        .unwrap();
        assert_eq!(out.gt, sharp);
        // The same (seed, step) degrades the same way; another step differently.
        let mut again = RealEsrganTransform::new(&config, 1, &device).unwrap();
        assert_eq!(
            again
                .apply(&batch, &shards(2, 1).unwrap(), 5, 0)
                .unwrap()
                .lq,
            out.lq
        );
        let mut other = RealEsrganTransform::new(&config, 1, &device).unwrap();
        assert_ne!(
            other
                .apply(&batch, &shards(2, 1).unwrap(), 5, 1)
                .unwrap()
                .lq,
            out.lq
        );
        // A batch without kernels is refused.
        let plain = Batch {
            kernels: Vec::new(),
            ..batch
        };
        assert!(t.apply(&plain, &shards(2, 1).unwrap(), 5, 1).is_err());
    }

    #[test]
    fn configs_too_small_for_the_kernels_or_the_batch_are_refused() {
        let config = transform_config(256);
        config.validate("batch_transform", 8, 512).unwrap();
        let err = config
            .validate("batch_transform", 8, 64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("21×21"), "{err}");
        let err = config
            .validate("batch_transform", 96, 512)
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue_size"), "{err}");
        let mut bad = dataset_config(Path::new("x"), 512);
        bad.kernel2.kernel_prob.pop();
        let err = bad.validate("dataset.realesrgan").unwrap_err().to_string();
        assert!(
            err.contains("dataset.realesrgan.kernel2.kernel_prob"),
            "{err}"
        );
    }
}
