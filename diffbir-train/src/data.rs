//! Training data: image lists (DiffBIR's file lists or folders), the `CodeformerDataset` crops
//! and degradations (`XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/codeformer.py:L53-L130`), and
//! a loader that prepares the next batches on worker threads while the training step runs.
//!
//! Every random draw is made from a ChaCha8 stream derived from the run's seed and the
//! global sample index, so a batch depends only on `(seed, step)`: a resumed run sees exactly
//! the batches an uninterrupted run sees, however many workers prepare them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use diffbir_core::resize::pil_resize_bicubic;
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::checks::{check_jpeg_range, check_range, check_weights, resolve};
use crate::degradation::cv::{HwcImage, downsampled_size, filter2d, resize_linear};
pub use crate::degradation::kernels::KernelKind;
use crate::degradation::kernels::{KernelRanges, random_mixed_kernel, uniform};
use crate::error::{Error, Result};

/// How training images are brought to `out_size × out_size` (`crop_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CropType {
    /// `center_crop_arr`: BOX-halve, bicubic to the short side, centre crop.
    #[default]
    Center,
    /// `random_crop_arr(min_crop_frac = 0.7)`: a random short side, random crop.
    Random,
    /// The images must already be `out_size²`.
    None,
}

/// `CodeformerDataset`'s parameters, plus where the images are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeformerConfig {
    /// A text file with one image path per line (relative paths are relative to the list);
    /// a tab may follow the path with a caption.
    #[serde(default)]
    pub file_list: Option<PathBuf>,
    /// A folder searched recursively for images (PNG, JPEG, WebP, BMP, TIFF), in name order.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// Use only the first `limit` images of the list.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Side of the square training crop (reference: 512).
    pub out_size: usize,
    /// Cropping rule.
    #[serde(default)]
    pub crop_type: CropType,
    /// Horizontal flips with probability 0.5 (`use_hflip`; off in DiffBIR's configs).
    #[serde(default)]
    pub use_hflip: bool,
    /// Blur kernel side (reference: 41).
    pub blur_kernel_size: usize,
    /// Kernel families (reference: `["iso", "aniso"]`).
    pub kernel_list: Vec<KernelKind>,
    /// Their probabilities (reference: `[0.5, 0.5]`).
    pub kernel_prob: Vec<f64>,
    /// Blur sigma range (reference: `[0.1, 12]`).
    pub blur_sigma: [f64; 2],
    /// Downsampling factor range (reference: `[1, 12]`).
    pub downsample_range: [f64; 2],
    /// Gaussian noise sigma range, in 8-bit levels (reference: `[0, 15]`).
    pub noise_range: [f64; 2],
    /// JPEG quality range (reference: `[30, 100]`).
    pub jpeg_range: [f64; 2],
}

impl CodeformerConfig {
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.file_list, &mut self.folder]
            .into_iter()
            .flatten()
        {
            *p = resolve(base, p);
        }
    }

    /// Checks the values; errors name the field under `section`.
    pub fn validate(&self, section: &str) -> Result<()> {
        let field = |name: &str| format!("{section}.{name}");
        if self.file_list.is_some() == self.folder.is_some() {
            return Err(Error::field(
                field("file_list"),
                "give exactly one of `file_list` and `folder`",
            ));
        }
        if self.out_size < 8 {
            return Err(Error::field(field("out_size"), "must be at least 8"));
        }
        if self.blur_kernel_size.is_multiple_of(2) {
            return Err(Error::field(field("blur_kernel_size"), "must be odd"));
        }
        if self.kernel_list.is_empty() {
            return Err(Error::field(field("kernel_list"), "must not be empty"));
        }
        check_weights(
            field("kernel_prob"),
            &self.kernel_prob,
            self.kernel_list.len(),
        )?;
        check_range(field("blur_sigma"), self.blur_sigma, f64::MIN_POSITIVE)?;
        check_range(field("downsample_range"), self.downsample_range, 1.0)?;
        check_range(field("noise_range"), self.noise_range, 0.0)?;
        check_jpeg_range(field("jpeg_range"), self.jpeg_range)?;
        Ok(())
    }
}

/// One image of a list, with its caption (empty when the list has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// The image file.
    pub path: PathBuf,
    /// Its caption.
    pub prompt: String,
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

/// Reads a file list: one path per line, optionally followed by a tab and a caption; blank
/// lines and lines starting with `#` are skipped; relative paths are relative to the list.
pub fn read_file_list(path: &Path) -> Result<Vec<ImageEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (file, prompt) = line.split_once('\t').unwrap_or((line, ""));
            let file = Path::new(file.trim());
            ImageEntry {
                path: if file.is_absolute() {
                    file.to_path_buf()
                } else {
                    dir.join(file)
                },
                prompt: prompt.trim().to_string(),
            }
        })
        .collect())
}

/// Every image below `dir` (recursively), sorted by path, without captions.
pub fn scan_folder(dir: &Path) -> Result<Vec<ImageEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(ImageEntry {
                    path,
                    prompt: String::new(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A prepared training pair, channel-first RGB.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Ground truth, `[3, S, S]` in `[0, 1]` (the reference's `(gt + 1) / 2`).
    pub gt: Vec<f32>,
    /// Degraded input, `[3, S, S]` in `[0, 1]`.
    pub lq: Vec<f32>,
    /// The caption (possibly emptied).
    pub prompt: String,
    /// Per-sample blur kernels for a batch transform (Real-ESRGAN: `kernel1`, `kernel2` and
    /// the final sinc, `[3, 21, 21]`); empty when `lq` is ready.
    pub kernels: Vec<f32>,
}

/// A source of training samples: an image list with its crop and degradation rules.
pub trait TrainingSet: Send + Sync + std::fmt::Debug {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Side of the square samples.
    fn out_size(&self) -> usize;
    /// Prepares image `index` with draws from `rng`.
    fn sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample>;
}

/// A batch of samples, channel-first.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The optimisation step this batch is for.
    pub step: u64,
    /// Crop side.
    pub size: usize,
    /// `B · 3 · S · S` ground-truth values in `[0, 1]`.
    pub gt: Vec<f32>,
    /// `B · 3 · S · S` degraded values in `[0, 1]`.
    pub lq: Vec<f32>,
    /// One caption per sample.
    pub prompts: Vec<String>,
    /// The samples' kernels (see [`Sample::kernels`]), empty when `lq` is ready.
    pub kernels: Vec<f32>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether the batch has no samples.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The samples `range` of this batch (a data-parallel replica's part), borrowed when
    /// it is the whole batch.
    ///
    /// # Panics
    ///
    /// If `range` reaches past the batch.
    pub fn shard(&self, range: std::ops::Range<usize>) -> std::borrow::Cow<'_, Batch> {
        if range == (0..self.len()) {
            return std::borrow::Cow::Borrowed(self);
        }
        let (start, end) = (range.start, range.end);
        let part = |v: &[f32]| {
            let per = v.len() / self.len().max(1);
            v[start * per..end * per].to_vec()
        };
        std::borrow::Cow::Owned(Batch {
            step: self.step,
            size: self.size,
            gt: part(&self.gt),
            lq: part(&self.lq),
            prompts: self.prompts[range].to_vec(),
            kernels: part(&self.kernels),
        })
    }
}

/// Domain-separation constants of the random streams ([`rng_for`]'s `purpose`).
pub mod stream {
    /// Per training sample (crop, degradation, prompt drop).
    pub const SAMPLE: u64 = 1;
    /// Per epoch (the shuffle).
    pub const EPOCH: u64 = 2;
    /// Per validation sample.
    pub const VAL: u64 = 3;
    /// Per training step (stage-2 timesteps and noise).
    pub const STEP: u64 = 4;
    /// Per training step and data-parallel shard (the Real-ESRGAN batch transform).
    pub const TRANSFORM: u64 = 5;
    /// Per image of an evaluation set (`cargo xtask eval`'s degradations).
    pub const EVAL: u64 = 6;
}

/// A ChaCha8 generator for `(seed, purpose, index)`.
pub fn rng_for(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(index);
    rng
}

/// `CodeformerDataset`: images, crops and the blur → downsample → noise → JPEG → resize
/// degradation.
#[derive(Debug, Clone)]
pub struct CodeformerDataset {
    entries: Vec<ImageEntry>,
    config: CodeformerConfig,
    p_empty_prompt: f64,
}

impl CodeformerDataset {
    /// Lists the images of `config` (which must be validated). `p_empty_prompt` is the
    /// probability that a caption is dropped (0.5 in the reference dataset).
    pub fn new(config: &CodeformerConfig, p_empty_prompt: f64) -> Result<Self> {
        let mut entries = match (&config.file_list, &config.folder) {
            (Some(list), _) => read_file_list(list)?,
            (None, Some(dir)) => scan_folder(dir)?,
            (None, None) => return Err(Error::Data("no file_list or folder given".into())),
        };
        if let Some(limit) = config.limit {
            entries.truncate(limit);
        }
        if entries.is_empty() {
            let source = config.file_list.as_ref().or(config.folder.as_ref());
            return Err(Error::Data(format!(
                "no images in {}",
                source.map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        Ok(Self {
            entries,
            config: config.clone(),
            p_empty_prompt,
        })
    }

    /// The images.
    pub fn entries(&self) -> &[ImageEntry] {
        &self.entries
    }

    /// Prepares image `index` with draws from `rng`. An unreadable image is replaced by
    /// another one drawn from `rng` (up to five tries), as the reference does.
    pub fn sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        with_retries(self.entries.len(), index, rng, |i, rng| {
            let entry = &self.entries[i];
            image::open(&entry.path)
                .map(|img| self.prepare(img.to_rgb8(), &entry.prompt, rng))
                .map_err(|e| format!("{}: {e}", entry.path.display()))
        })
    }

    fn prepare(&self, img: RgbImage, prompt: &str, rng: &mut ChaCha8Rng) -> Result<Sample> {
        let c = &self.config;
        let out = c.out_size;
        let mut img = crop(img, out, c.crop_type, rng)?;
        if c.use_hflip && rng.random::<f64>() < 0.5 {
            image::imageops::flip_horizontal_in_place(&mut img);
        }
        let prompt = if rng.random::<f64>() < self.p_empty_prompt {
            String::new()
        } else {
            prompt.to_string()
        };
        let gt = HwcImage::new(
            out,
            out,
            3,
            img.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        )?;
        let lq = self.degrade(&gt, rng)?;
        Ok(Sample {
            gt: to_chw(&gt),
            lq: to_chw(&lq),
            prompt,
            kernels: Vec::new(),
        })
    }

    /// The degradation of `CodeformerDataset.__getitem__`
    /// (`XPixelGroup/DiffBIR@3f8b530:diffbir/dataset/codeformer.py:L98-L123`) on an HWC image
    /// in `[0, 1]`.
    pub fn degrade(&self, gt: &HwcImage, rng: &mut ChaCha8Rng) -> Result<HwcImage> {
        let c = &self.config;
        let (w, h) = (gt.width, gt.height);
        // 1. Blur with a random kernel (the reference's default β ranges, unused by its
        //    iso/aniso configs).
        let ranges = KernelRanges {
            sigma: c.blur_sigma,
            betag: [0.5, 8.0],
            betap: [0.5, 8.0],
        };
        let kernel = random_mixed_kernel(
            rng,
            &c.kernel_list,
            &c.kernel_prob,
            c.blur_kernel_size,
            &ranges,
        )?;
        let img = filter2d(gt, &kernel)?;
        // 2. Downsample.
        let scale = uniform(rng, c.downsample_range[0], c.downsample_range[1]);
        let (dw, dh) = downsampled_size(w, h, scale).unwrap_or((1, 1));
        let mut img = resize_linear(&img, dw.max(1), dh.max(1))?;
        // 3. Gaussian noise.
        let sigma = uniform(rng, c.noise_range[0], c.noise_range[1]) as f32 / 255.0;
        for v in &mut img.data {
            let n: f32 = StandardNormal.sample(rng);
            *v = (*v + n * sigma).clamp(0.0, 1.0);
        }
        // 4. JPEG.
        let quality = uniform(rng, c.jpeg_range[0], c.jpeg_range[1]) as u8;
        let img = jpeg_round_trip(&img, quality.clamp(1, 100))?;
        // 5. Back to the original size.
        resize_linear(&img, w, h).map_err(Error::from)
    }
}

pub(crate) fn to_chw(img: &HwcImage) -> Vec<f32> {
    let (h, w) = (img.height, img.width);
    let mut out = vec![0.0; 3 * h * w];
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for (c, v) in px.iter().enumerate() {
            out[c * h * w + i] = *v;
        }
    }
    out
}

impl TrainingSet for CodeformerDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn out_size(&self) -> usize {
        self.config.out_size
    }

    fn sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        CodeformerDataset::sample(self, index, rng)
    }
}

/// Runs `attempt` on image `index`; when the image cannot be read (`Err` with the reason),
/// on another one drawn from `rng`, up to five tries in all, as the reference's datasets do.
pub(crate) fn with_retries<T>(
    len: usize,
    index: usize,
    rng: &mut ChaCha8Rng,
    mut attempt: impl FnMut(usize, &mut ChaCha8Rng) -> std::result::Result<Result<T>, String>,
) -> Result<T> {
    let mut index = index;
    let mut last_error = String::new();
    for _ in 0..5 {
        match attempt(index, rng) {
            Ok(result) => return result,
            Err(e) => {
                last_error = e;
                index = rng.random_range(0..len);
            }
        }
    }
    Err(Error::Data(format!(
        "five images in a row could not be read, the last: {last_error}"
    )))
}

/// Encodes to JPEG at `quality` and decodes again (OpenCV's `imencode`/`imdecode` in the
/// reference; values are saturated and rounded to 8 bits first).
fn jpeg_round_trip(img: &HwcImage, quality: u8) -> Result<HwcImage> {
    let bytes: Vec<u8> = img
        .data
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut encoded = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, quality);
    let fail = |e: image::ImageError| Error::Data(format!("JPEG degradation failed: {e}"));
    image::ImageEncoder::write_image(
        encoder,
        &bytes,
        img.width as u32,
        img.height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(fail)?;
    let decoded = image::load_from_memory_with_format(&encoded, image::ImageFormat::Jpeg)
        .map_err(fail)?
        .to_rgb8();
    Ok(HwcImage::new(
        img.height,
        img.width,
        3,
        decoded.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
    )?)
}

/// PIL's `resize(size, Image.BOX)` for 8-bit RGB (coefficients as PIL computes them, the
/// sum in floating point, rounded).
fn resize_box(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let coeffs = |in_size: u32, out_size: u32| -> Vec<(usize, Vec<f64>)> {
        let scale = in_size as f64 / out_size as f64;
        let support = 0.5 * scale.max(1.0);
        let inv = 1.0 / scale.max(1.0);
        (0..out_size)
            .map(|x| {
                let center = (x as f64 + 0.5) * scale;
                let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
                let xmax = ((center + support + 0.5).floor() as usize).min(in_size as usize);
                let mut w: Vec<f64> = (xmin..xmax)
                    .map(|j| {
                        let t = (j as f64 - center + 0.5) * inv;
                        if t > -0.5 && t <= 0.5 { 1.0 } else { 0.0 }
                    })
                    .collect();
                let sum: f64 = w.iter().sum();
                if sum > 0.0 {
                    w.iter_mut().for_each(|v| *v /= sum);
                }
                (xmin, w)
            })
            .collect()
    };
    let (iw, ih) = img.dimensions();
    let cx = coeffs(iw, out_w);
    let cy = coeffs(ih, out_h);
    // Horizontal pass (rounded to 8 bits as PIL does between passes), then vertical.
    let mut tmp = RgbImage::new(out_w, ih);
    for y in 0..ih {
        for (x, (x0, w)) in cx.iter().enumerate() {
            let mut acc = [0.0f64; 3];
            for (k, wk) in w.iter().enumerate() {
                let p = img.get_pixel((x0 + k) as u32, y);
                for c in 0..3 {
                    acc[c] += wk * p[c] as f64;
                }
            }
            tmp.put_pixel(
                x as u32,
                y,
                image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    let mut out = RgbImage::new(out_w, out_h);
    for (y, (y0, w)) in cy.iter().enumerate() {
        for x in 0..out_w {
            let mut acc = [0.0f64; 3];
            for (k, wk) in w.iter().enumerate() {
                let p = tmp.get_pixel(x, (y0 + k) as u32);
                for c in 0..3 {
                    acc[c] += wk * p[c] as f64;
                }
            }
            out.put_pixel(
                x,
                y as u32,
                image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    out
}

/// Halves with BOX while the short side is at least `2·target`, then resizes (bicubic) so
/// the short side is `target` (`round(x · scale)`).
fn shrink_to_short_side(mut img: RgbImage, target: usize) -> Result<RgbImage> {
    while img.width().min(img.height()) as usize >= 2 * target {
        let (w, h) = (img.width() / 2, img.height() / 2);
        img = resize_box(&img, w, h);
    }
    let scale = target as f64 / img.width().min(img.height()) as f64;
    let w = ((img.width() as f64 * scale).round() as u32).max(target as u32);
    let h = ((img.height() as f64 * scale).round() as u32).max(target as u32);
    Ok(pil_resize_bicubic(&img, w, h)?)
}

/// Brings an image to `out × out` with the reference's rules for `crop_type`.
pub fn crop(
    img: RgbImage,
    out: usize,
    crop_type: CropType,
    rng: &mut ChaCha8Rng,
) -> Result<RgbImage> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == out && h == out {
        return Ok(img);
    }
    let (img, x, y) = match crop_type {
        CropType::None => {
            return Err(Error::Data(format!(
                "crop_type none needs {out}×{out} images, got {w}×{h}"
            )));
        }
        CropType::Center => {
            let img = shrink_to_short_side(img, out)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            (img, (w - out) / 2, (h - out) / 2)
        }
        CropType::Random => {
            let lo = out;
            let hi = (out as f64 / 0.7).ceil() as usize;
            let side = rng.random_range(lo..=hi);
            let img = shrink_to_short_side(img, side)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            let x = rng.random_range(0..=w - out);
            let y = rng.random_range(0..=h - out);
            (img, x, y)
        }
    };
    Ok(image::imageops::crop_imm(&img, x as u32, y as u32, out as u32, out as u32).to_image())
}

/// Which images make up the batch of `step` (shuffled per epoch, the last partial batch of
/// each epoch dropped, as `DataLoader(shuffle=True, drop_last=True)`), with their global
/// sample numbers.
pub fn batch_indices(len: usize, batch: usize, seed: u64, step: u64) -> Vec<(usize, u64)> {
    let per_epoch = (len / batch).max(1) as u64;
    let epoch = step / per_epoch;
    let within = (step % per_epoch) as usize;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng_for(seed, stream::EPOCH, epoch));
    (0..batch)
        .map(|i| {
            let k = within * batch + i;
            (order[k % len], step * batch as u64 + i as u64)
        })
        .collect()
}

/// Builds the batch of `step` using up to `workers` threads.
pub fn make_batch(
    dataset: &dyn TrainingSet,
    batch: usize,
    seed: u64,
    step: u64,
    workers: usize,
) -> Result<Batch> {
    let picks = batch_indices(dataset.len(), batch, seed, step);
    let workers = workers.clamp(1, batch);
    let chunk = batch.div_ceil(workers);
    let samples: Vec<Result<Sample>> = std::thread::scope(|scope| {
        let handles: Vec<_> = picks
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(index, k)| {
                            dataset.sample(index, &mut rng_for(seed, stream::SAMPLE, k))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(Error::Loader("a sample worker panicked".into()))])
            })
            .collect()
    });
    collate(step, dataset.out_size(), samples)
}

fn collate(step: u64, size: usize, samples: Vec<Result<Sample>>) -> Result<Batch> {
    let mut batch = Batch {
        step,
        size,
        gt: Vec::with_capacity(samples.len() * 3 * size * size),
        lq: Vec::with_capacity(samples.len() * 3 * size * size),
        prompts: Vec::with_capacity(samples.len()),
        kernels: Vec::new(),
    };
    for s in samples {
        let s = s?;
        batch.gt.extend(s.gt);
        batch.lq.extend(s.lq);
        batch.prompts.push(s.prompt);
        batch.kernels.extend(s.kernels);
    }
    Ok(batch)
}

/// The held-out set: every image of `dataset`, degraded with draws that depend only on the
/// seed and the image's position, in batches of `batch`.
pub fn validation_batches(
    dataset: &CodeformerDataset,
    batch: usize,
    seed: u64,
) -> Result<Vec<Batch>> {
    let samples: Vec<Result<Sample>> = (0..dataset.len())
        .map(|i| dataset.sample(i, &mut rng_for(seed, stream::VAL, i as u64)))
        .collect();
    let mut out = Vec::new();
    let mut it = samples.into_iter().peekable();
    while it.peek().is_some() {
        let part: Vec<_> = it.by_ref().take(batch.max(1)).collect();
        out.push(collate(0, dataset.out_size(), part)?);
    }
    Ok(out)
}

/// Prepares batches `start..end` on a background thread, `prefetch` ahead of the consumer.
#[derive(Debug)]
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts preparing the batches of steps `start..end`.
    pub fn spawn(
        dataset: Arc<dyn TrainingSet>,
        batch: usize,
        seed: u64,
        start: u64,
        end: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let (tx, rx): (SyncSender<Result<Batch>>, _) = sync_channel(prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("diffbir-train-loader".into())
            .spawn(move || {
                for step in start..end {
                    let b = make_batch(dataset.as_ref(), batch, seed, step, workers);
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        break;
                    }
                }
            })
            .ok();
        Self {
            rx: Some(rx),
            handle,
        }
    }

    /// The next batch, in step order.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let rx = self
            .rx
            .as_ref()
            .ok_or_else(|| Error::Loader("already stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Loader("no thread or no more batches".into()))?
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver makes a blocked `send` fail, so the thread ends.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_an_epoch_without_repeats_and_depend_only_on_the_step() {
        let a = batch_indices(10, 3, 7, 0);
        let b = batch_indices(10, 3, 7, 1);
        let c = batch_indices(10, 3, 7, 2);
        let mut seen: Vec<usize> = a.iter().chain(&b).chain(&c).map(|p| p.0).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert_eq!(batch_indices(10, 3, 7, 1), b);
        assert_ne!(batch_indices(10, 3, 7, 3), a, "a new epoch is reshuffled");
    }

    #[test]
    fn box_halving_averages_two_by_two() {
        let img = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 10) as u8, 0, 255]));
        let half = resize_box(&img, 2, 1);
        assert_eq!(half.get_pixel(0, 0).0, [5, 0, 255]);
        assert_eq!(half.get_pixel(1, 0).0, [25, 0, 255]);
    }

    #[test]
    fn center_crop_keeps_the_middle() {
        let img = RgbImage::from_fn(40, 20, |x, _| image::Rgb([x as u8, 0, 0]));
        let out = crop(img, 20, CropType::Center, &mut rng_for(0, 0, 0)).unwrap();
        assert_eq!(out.dimensions(), (20, 20));
        assert_eq!(out.get_pixel(0, 0)[0], 10);
    }
}
