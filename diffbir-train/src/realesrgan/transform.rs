//! [`RealEsrganTransform`] (`RealESRGANBatchTransform`): USM sharpening, two rounds of blur →
//! resize → noise → JPEG, the final sinc filter, and the 256-pair training pool.

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::NoiseSource;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::*;
use crate::checks::{check_jpeg_range, check_probability, check_range, check_weights};
use crate::data::{Batch, rng_for, stream};
use crate::degradation::filter::{UsmSharp, filter2d};
use crate::degradation::jpeg::{DiffJpeg, JpegQuality};
use crate::degradation::kernels::{choose, uniform};
use crate::degradation::noise::{random_add_gaussian_noise_pt, random_add_poisson_noise_pt};
use crate::degradation::read_back;
use crate::degradation::resize::{InterpolateMode, interpolate_scale, interpolate_size};
use crate::error::{Error, Result};
use crate::state::Named;

/// `stage2_scale`: a fixed factor or a range drawn per batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stage2Scale {
    /// One factor (reference: 4).
    Fixed(f64),
    /// `U(low, high)` per batch.
    Range([f64; 2]),
}

/// The parameters of one degradation round's resize and noise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundConfig {
    /// Probabilities of up, down, keep.
    pub resize_prob: [f64; 3],
    /// `[down_min, up_max]` of the scale.
    pub resize_range: [f64; 2],
    /// Probability of Gaussian (else Poisson) noise.
    pub gaussian_noise_prob: f64,
    /// Gaussian σ range (8-bit levels).
    pub noise_range: [f64; 2],
    /// Poisson noise scale range.
    pub poisson_scale_range: [f64; 2],
    /// Per-sample probability of gray noise.
    pub gray_noise_prob: f64,
    /// JPEG quality range.
    pub jpeg_range: [f64; 2],
}

impl RoundConfig {
    fn validate(&self, section: &str) -> Result<()> {
        let field = |name: &str| format!("{section}.{name}");
        check_weights(field("resize_prob"), &self.resize_prob, 3)?;
        check_range(field("resize_range"), self.resize_range, f64::MIN_POSITIVE)?;
        if self.resize_range[0] > 1.0 || self.resize_range[1] < 1.0 {
            return Err(Error::field(
                field("resize_range"),
                "must be [down, up] with down <= 1 <= up",
            ));
        }
        check_probability(field("gaussian_noise_prob"), self.gaussian_noise_prob)?;
        check_range(field("noise_range"), self.noise_range, 0.0)?;
        check_range(field("poisson_scale_range"), self.poisson_scale_range, 0.0)?;
        check_probability(field("gray_noise_prob"), self.gray_noise_prob)?;
        check_jpeg_range(field("jpeg_range"), self.jpeg_range)
    }

    /// `random.choices([up, down, keep], resize_prob)` and the scale of that choice.
    fn draw_scale(&self, rng: &mut impl Rng) -> f64 {
        match choose(rng, &[0u8, 1, 2], &self.resize_prob) {
            0 => uniform(rng, 1.0, self.resize_range[1]),
            1 => uniform(rng, self.resize_range[0], 1.0),
            _ => 1.0,
        }
    }

    /// Gaussian noise with probability `gaussian_noise_prob`, else Poisson; clipped.
    fn add_noise(
        &self,
        x: Tensor<4>,
        rng: &mut ChaCha8Rng,
        noise: &mut NoiseSource,
    ) -> Result<Tensor<4>> {
        Ok(if rng.random::<f64>() < self.gaussian_noise_prob {
            random_add_gaussian_noise_pt(
                x,
                self.noise_range,
                self.gray_noise_prob,
                true,
                false,
                rng,
                noise,
            )?
        } else {
            random_add_poisson_noise_pt(
                x,
                self.poisson_scale_range,
                self.gray_noise_prob,
                true,
                false,
                rng,
            )?
        })
    }

    /// JPEG with a per-sample quality `U(jpeg_range)`, after clamping to `[0, 1]`.
    fn jpeg(&self, x: Tensor<4>, jpeger: &DiffJpeg, rng: &mut impl Rng) -> Result<Tensor<4>> {
        let b = x.dims()[0];
        let q: Vec<f32> = (0..b)
            .map(|_| uniform(rng, self.jpeg_range[0], self.jpeg_range[1]) as f32)
            .collect();
        let q = Tensor::<1>::from_data(TensorData::new(q, [b]), &x.device());
        Ok(jpeger.forward(x.clamp(0.0, 1.0), &JpegQuality::PerSample(q))?)
    }
}

/// `random.choice(["area", "bilinear", "bicubic"])`.
fn draw_mode(rng: &mut impl Rng) -> InterpolateMode {
    [
        InterpolateMode::Area,
        InterpolateMode::Bilinear,
        InterpolateMode::Bicubic,
    ][rng.random_range(0..3)]
}

/// `RealESRGANBatchTransform`'s parameters (the `batch_transform` part of
/// `train_stage2_v2.1.yaml`; the reference's `…2` settings are the `second` table).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealEsrganTransformConfig {
    /// USM-sharpen the ground truth first (reference: true).
    pub use_sharpener: bool,
    /// Pairs in each training pool (reference: 256; a multiple of the per-device batch).
    pub queue_size: usize,
    /// The first round.
    pub first: RoundConfig,
    /// Probability of the second blur (reference: 0.8).
    pub second_blur_prob: f64,
    /// The second round works at `size / stage2_scale` (reference: 4).
    pub stage2_scale: Stage2Scale,
    /// The second round.
    pub second: RoundConfig,
}

impl RealEsrganTransformConfig {
    /// Checks the values against a global batch split into `shard` samples per device and
    /// images of side `size`; errors name the field under `section`.
    pub fn validate(&self, section: &str, shard: usize, size: usize) -> Result<()> {
        let field = |name: &str| format!("{section}.{name}");
        if self.queue_size == 0 || !self.queue_size.is_multiple_of(shard.max(1)) {
            return Err(Error::field(
                field("queue_size"),
                format!(
                    "must be a positive multiple of the per-device batch ({shard}), got {}",
                    self.queue_size
                ),
            ));
        }
        self.first.validate(&field("first"))?;
        self.second.validate(&field("second"))?;
        check_probability(field("second_blur_prob"), self.second_blur_prob)?;
        let (s_lo, s_hi) = match self.stage2_scale {
            Stage2Scale::Fixed(s) => (s, s),
            Stage2Scale::Range([a, b]) => (a, b),
        };
        if !(s_lo.is_finite() && s_hi.is_finite() && s_lo >= 1.0 && s_lo <= s_hi) {
            return Err(Error::field(
                field("stage2_scale"),
                "must be a factor >= 1 or a range [low, high] with 1 <= low <= high",
            ));
        }
        // The reflect padding of the 21×21 kernels needs more than 10 pixels per side
        // wherever a kernel is applied.
        let pad = KERNEL_SIZE / 2;
        let first_min = (size as f64 * self.first.resize_range[0]).floor() as usize;
        let stage2_min = (size as f64 / s_hi) as usize;
        if size <= pad || stage2_min <= pad || (self.second_blur_prob > 0.0 && first_min <= pad) {
            return Err(Error::field(
                field("first.resize_range"),
                format!(
                    "images of {size}² shrink to {first_min}² (first round) and {stage2_min}² \
                     (second round), but the 21×21 kernels need more than {pad} pixels: use \
                     larger images (the reference uses 512) or milder ranges"
                ),
            ));
        }
        Ok(())
    }
}

/// One data-parallel shard's training-pair pool.
#[derive(Debug, Clone, Default)]
struct Pool {
    /// Pairs held.
    filled: usize,
    gt: Vec<f32>,
    lq: Vec<f32>,
    prompts: Vec<String>,
}

/// `RealESRGANBatchTransform` with one training pool per data-parallel shard (the
/// reference keeps one per process).
#[derive(Debug)]
pub struct RealEsrganTransform {
    config: RealEsrganTransformConfig,
    usm: UsmSharp,
    jpeger: DiffJpeg,
    pools: Vec<Pool>,
    device: Device,
}

impl RealEsrganTransform {
    /// A transform running on `device` with `shards` empty pools.
    pub fn new(config: &RealEsrganTransformConfig, shards: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            config: config.clone(),
            usm: UsmSharp::new(50, 0.0, device)?,
            jpeger: DiffJpeg::new(false, device),
            pools: vec![Pool::default(); shards.max(1)],
            device: device.clone(),
        })
    }

    /// Degrades `batch` (ground truth and kernels from [`RealEsrganDataset`]) and passes
    /// every shard through its pool: the returned batch holds the sharpened ground truth in
    /// `gt`, the degraded images in `lq` (8-bit levels in `[0, 1]`), their captions, and no
    /// kernels. The draws depend on `(seed, step, shard)` only.
    pub fn apply(
        &mut self,
        batch: &Batch,
        shards: &[Range<usize>],
        seed: u64,
        step: u64,
    ) -> Result<Batch> {
        if shards.len() != self.pools.len() {
            return Err(Error::Data(format!(
                "the batch is split in {} shards but the transform has {} pools",
                shards.len(),
                self.pools.len()
            )));
        }
        let mut out = Batch {
            step: batch.step,
            size: batch.size,
            gt: Vec::with_capacity(batch.gt.len()),
            lq: Vec::with_capacity(batch.gt.len()),
            prompts: Vec::with_capacity(batch.len()),
            kernels: Vec::new(),
        };
        for (r, range) in shards.iter().enumerate() {
            let part = batch.shard(range.clone());
            let index = step.wrapping_mul(shards.len() as u64) + r as u64;
            let mut rng = rng_for(seed, stream::TRANSFORM, index);
            let (gt, lq) = self.degrade(&part, &mut rng)?;
            let (gt, lq, prompts) = self.pools[r].exchange(
                gt,
                lq,
                part.prompts.clone(),
                self.config.queue_size,
                &mut rng,
            );
            out.gt.extend(gt);
            out.lq.extend(lq);
            out.prompts.extend(prompts);
        }
        Ok(out)
    }

    /// The synthesis of `RealESRGANBatchTransform.__call__` (before the pool), on the
    /// transform's device: returns the ground truth (sharpened when the config says so) and
    /// the degraded images, at the batch's size, channel-first. The batch needs the dataset's
    /// kernels ([`RealEsrganConfig::draw_kernels`](crate::realesrgan::RealEsrganConfig::draw_kernels)).
    pub fn degrade(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<(Vec<f32>, Vec<f32>)> {
        let want = 3 * KERNEL_SIZE * KERNEL_SIZE * batch.len();
        if batch.kernels.len() != want {
            return Err(Error::Data(
                "the batch carries no Real-ESRGAN kernels: the batch transform needs the \
                 Real-ESRGAN dataset"
                    .into(),
            ));
        }
        let c = &self.config;
        let (b, size) = (batch.len(), batch.size);
        let device = &self.device;
        let mut noise = NoiseSource::seeded(rng.random::<u64>());
        let mut hq = Tensor::<4>::from_data(
            TensorData::new(batch.gt.clone(), [b, 3, size, size]),
            device,
        );
        if c.use_sharpener {
            hq = self.usm.forward(hq, 0.5, 10.0)?;
        }
        let kernels = Tensor::<4>::from_data(
            TensorData::new(batch.kernels.clone(), [b, 3, KERNEL_SIZE, KERNEL_SIZE]),
            device,
        );
        let kernel = |i: usize| {
            kernels
                .clone()
                .narrow(1, i, 1)
                .reshape([b, KERNEL_SIZE, KERNEL_SIZE])
        };
        // The first round.
        let mut out = filter2d(hq.clone(), kernel(0))?;
        let scale = c.first.draw_scale(rng);
        out = interpolate_scale(out, scale, draw_mode(rng))?;
        out = c.first.add_noise(out, rng, &mut noise)?;
        out = c.first.jpeg(out, &self.jpeger, rng)?;
        // The second round.
        if rng.random::<f64>() < c.second_blur_prob {
            out = filter2d(out, kernel(1))?;
        }
        let stage2_scale = match c.stage2_scale {
            Stage2Scale::Fixed(s) => s,
            Stage2Scale::Range([lo, hi]) => uniform(rng, lo, hi),
        };
        let s2 = ((size as f64 / stage2_scale) as usize).max(1);
        let scale = c.second.draw_scale(rng);
        let resized = ((s2 as f64 * scale) as usize).max(1);
        out = interpolate_size(out, resized, resized, draw_mode(rng))?;
        out = c.second.add_noise(out, rng, &mut noise)?;
        // [resize back + sinc] and JPEG, in either order.
        if rng.random::<f64>() < 0.5 {
            out = interpolate_size(out, s2, s2, draw_mode(rng))?;
            out = filter2d(out, kernel(2))?;
            out = c.second.jpeg(out, &self.jpeger, rng)?;
        } else {
            out = c.second.jpeg(out, &self.jpeger, rng)?;
            out = interpolate_size(out, s2, s2, draw_mode(rng))?;
            out = filter2d(out, kernel(2))?;
        }
        if stage2_scale != 1.0 {
            out = interpolate_size(out, size, size, InterpolateMode::Bicubic)?;
        }
        let lq = out
            .mul_scalar(255.0)
            .round()
            .clamp(0.0, 255.0)
            .div_scalar(255.0);
        Ok((
            read_back(hq, "ground truth")?,
            read_back(lq, "degraded batch")?,
        ))
    }

    /// The pools as named tensors (`pool<r>.gt`, `pool<r>.lq` as 8-bit levels) and a JSON
    /// text with their fill levels and captions, for a training state.
    pub fn state(&self, size: usize) -> Result<(Vec<Named>, String)> {
        let mut tensors = Vec::new();
        let mut meta = Vec::new();
        for (r, pool) in self.pools.iter().enumerate() {
            let n = pool.gt.len() / (3 * size * size).max(1);
            if n > 0 {
                let shape = vec![n, 3, size, size];
                tensors.push((
                    format!("pool{r}.gt"),
                    TensorData::new(pool.gt.clone(), shape.clone()),
                ));
                let levels: Vec<u8> = pool
                    .lq
                    .iter()
                    .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect();
                tensors.push((format!("pool{r}.lq"), TensorData::new(levels, shape)));
            }
            meta.push(serde_json::json!({"filled": pool.filled, "prompts": pool.prompts}));
        }
        let text =
            serde_json::to_string(&meta).map_err(|e| Error::Data(format!("pool state: {e}")))?;
        Ok((tensors, text))
    }

    /// Restores the pools saved by [`state`](Self::state).
    pub fn restore(&mut self, tensors: Vec<Named>, meta: &str) -> Result<()> {
        let bad = |reason: String| Error::Data(format!("training pool in the state: {reason}"));
        let meta: Vec<serde_json::Value> =
            serde_json::from_str(meta).map_err(|e| bad(e.to_string()))?;
        if meta.len() != self.pools.len() {
            return Err(bad(format!(
                "saved for {} devices, this run has {}; resume with the same device count",
                meta.len(),
                self.pools.len()
            )));
        }
        let mut pools: Vec<Pool> = meta
            .iter()
            .map(|m| {
                let filled = m["filled"]
                    .as_u64()
                    .ok_or_else(|| bad("no fill level".into()))?
                    as usize;
                let prompts = m["prompts"]
                    .as_array()
                    .ok_or_else(|| bad("no captions".into()))?
                    .iter()
                    .map(|p| p.as_str().unwrap_or_default().to_string())
                    .collect();
                Ok(Pool {
                    filled,
                    prompts,
                    ..Pool::default()
                })
            })
            .collect::<Result<_>>()?;
        for (name, data) in tensors {
            let (r, part) = name
                .strip_prefix("pool")
                .and_then(|n| n.split_once('.'))
                .and_then(|(r, part)| Some((r.parse::<usize>().ok()?, part)))
                .ok_or_else(|| bad(format!("unexpected tensor `{name}`")))?;
            let pool = pools
                .get_mut(r)
                .ok_or_else(|| bad(format!("tensor `{name}` of a pool that is not listed")))?;
            match part {
                "gt" => {
                    pool.gt = data
                        .try_to_vec::<f32>()
                        .map_err(|e| bad(format!("{name}: {e:?}")))?
                }
                "lq" => {
                    pool.lq = data
                        .try_to_vec::<u8>()
                        .map_err(|e| bad(format!("{name}: {e:?}")))?
                        .into_iter()
                        .map(|v| f32::from(v) / 255.0)
                        .collect()
                }
                other => return Err(bad(format!("unexpected tensor part `{other}`"))),
            }
        }
        for (r, p) in pools.iter().enumerate() {
            if p.gt.len() != p.lq.len() || p.prompts.len() != p.filled {
                return Err(bad(format!("pool {r} is inconsistent")));
            }
        }
        self.pools = pools;
        Ok(())
    }
}

impl Pool {
    /// `_dequeue_and_enqueue`: fills the pool with the first batches (returning them
    /// unchanged); once full, hands out `b` pairs drawn at random without repetition and
    /// keeps the new ones in their slots. (The reference permutes the whole pool and takes
    /// its first `b`: the same draw, without copying every pair each step.)
    fn exchange(
        &mut self,
        mut gt: Vec<f32>,
        mut lq: Vec<f32>,
        mut prompts: Vec<String>,
        capacity: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<f32>, Vec<String>) {
        let b = prompts.len();
        if self.filled < capacity {
            self.gt.extend_from_slice(&gt);
            self.lq.extend_from_slice(&lq);
            self.prompts.extend(prompts.iter().cloned());
            self.filled += b;
            return (gt, lq, prompts);
        }
        let per = gt.len() / b.max(1);
        for (k, slot) in rand::seq::index::sample(rng, capacity, b)
            .into_iter()
            .enumerate()
        {
            let (pool, new) = (slot * per..(slot + 1) * per, k * per..(k + 1) * per);
            self.gt[pool.clone()].swap_with_slice(&mut gt[new.clone()]);
            self.lq[pool].swap_with_slice(&mut lq[new]);
            std::mem::swap(&mut self.prompts[slot], &mut prompts[k]);
        }
        (gt, lq, prompts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::make_batch;
    use crate::realesrgan::tests::{dataset_config, image_folder, transform_config};

    #[test]
    fn the_pool_hands_out_stored_pairs_and_resumes_exactly() {
        let mut pool = Pool::default();
        let mut rng = rng_for(1, 2, 3);
        let pair = |k: usize| {
            (
                vec![k as f32; 2],
                vec![k as f32 + 0.5; 2],
                vec![k.to_string()],
            )
        };
        // Filling (capacity 3, batch 1): the batch comes back as it is.
        for k in 0..3 {
            let (g, l, p) = pair(k);
            assert_eq!(pool.exchange(g.clone(), l, p, 3, &mut rng).0, g);
        }
        // Full: a stored pair comes out, the new one stays, captions travel with images.
        let mut seen = Vec::new();
        for k in 3..30 {
            let (g, l, p) = pair(k);
            let (og, ol, op) = pool.exchange(g, l, p, 3, &mut rng);
            let id = op[0].parse::<usize>().unwrap();
            assert!(id < k);
            assert_eq!(og, vec![id as f32; 2]);
            assert_eq!(ol, vec![id as f32 + 0.5; 2]);
            seen.push(id);
        }
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10, "the pool hands out many different pairs");

        // Saving and restoring the pools continues on the same trajectory.
        let device = Device::flex();
        let dir = image_folder(4, 96);
        let set = RealEsrganDataset::new(&dataset_config(dir.path(), 96)).unwrap();
        let config = transform_config(2);
        let shards = [0..1, 1..2];
        let mut a = RealEsrganTransform::new(&config, 2, &device).unwrap();
        for step in 0..2 {
            a.apply(&make_batch(&set, 2, 9, step, 1).unwrap(), &shards, 9, step)
                .unwrap();
        }
        let (tensors, meta) = a.state(96).unwrap();
        let mut b = RealEsrganTransform::new(&config, 2, &device).unwrap();
        b.restore(tensors.clone(), &meta).unwrap();
        for step in 2..4 {
            let batch = make_batch(&set, 2, 9, step, 1).unwrap();
            let x = a.apply(&batch, &shards, 9, step).unwrap();
            let y = b.apply(&batch, &shards, 9, step).unwrap();
            assert_eq!((x.gt, x.lq, x.prompts), (y.gt, y.lq, y.prompts));
        }
        let mut one = RealEsrganTransform::new(&config, 1, &device).unwrap();
        let err = one.restore(tensors, &meta).unwrap_err().to_string();
        assert!(err.contains("same device count"), "{err}");
    }
}
