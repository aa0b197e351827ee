//! Memory planning: the peak memory of each stage of a restoration, estimated before any
//! model is loaded, and the least tiling that keeps every stage within a budget.
//!
//! ```
//! use burn::tensor::Device;
//! use diffbir::pipeline::{PipelineConfig, Task, Version};
//! use diffbir::plan::Planner;
//!
//! let config = PipelineConfig::new(Task::Sr, Version::V21);
//! let planner = Planner::new(12 << 30, &Device::flex()); // 12 GiB
//! let plan = planner.plan(&config, 1024, 1024)?; // a 1024² photo, 4096² out
//! assert!(plan.peak() <= 12 << 30);
//! let tiled = plan.config(); // run Pipeline::load / with_config with it
//! # Ok::<(), diffbir::Error>(())
//! ```
//!
//! Each stage holds the weights in memory ([`Residency`]: every network's, or only its own
//! when the networks are loaded per stage) and adds its working memory (the model
//! `docs/memory.md` describes). Stages that do not fit untiled are tiled, with the largest
//! tiles that fit: stage 1 in overlapping tiles, the VAE in blended tiles (v2's tiling,
//! bounded by one tile), the diffusion in tiles (mixture of diffusers). The networks stay
//! resident unless loading them per stage needs less tiling. Settings the caller fixed
//! ([`Fixed`]) are kept as they are.

mod estimate;

use std::fmt;

use burn::module::Module;
use burn::tensor::Device;
use diffbir_core::resize::{short_edge_size, upscaled_size};
use diffbir_rm::Stage1Config;
use serde::Serialize;

pub use estimate::Attention;
use estimate::image_volume;

use crate::error::{Error, Result};
use crate::pipeline::{PipelineConfig, Residency, Task};
use crate::stage2::VaeTiling;

/// The short edge every stage-1 result is brought to when it is shorter (the reference's
/// `resize_short_edge_to(…, 512)`).
const SHORT_EDGE: usize = 512;

/// The side of the aligned faces of `unaligned_face` (the helper's `face_size`).
const FACE_SIZE: usize = 512;

/// The short side the face detector's input is raised to (the helper's `resize`).
const DETECT_SHORT_SIDE: usize = 640;

/// Tile sides tried, largest first (pixels).
const TILES: [usize; 4] = [1024, 512, 256, 128];

diffbir_core::named_enum! {
    /// A stage of a restoration.
    pub enum Stage ("stage") {
        /// The face detector on the upscaled photo (`unaligned_face`).
        FaceDetection = "face detection",
        /// The stage-1 network (and the faces' stage 1 for `unaligned_face`).
        Stage1 = "stage 1",
        /// The text encoder on both prompts.
        Text = "text",
        /// The VAE encoding the condition.
        VaeEncode = "VAE encode",
        /// The sampler steps (IRControlNet and UNet, with classifier-free guidance).
        Sampling = "sampling",
        /// The VAE decoding the samples.
        VaeDecode = "VAE decode",
        /// The colour fix and the final resize.
        ColorFix = "colour fix",
        /// The faces pasted onto the background, through their parsing masks
        /// (`unaligned_face`).
        FacePaste = "face paste",
    }
}

/// The estimated peak of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StagePeak {
    /// The stage.
    pub stage: Stage,
    /// How it runs (`untiled`, `tiles 512/256`, …).
    pub tiling: String,
    /// Bytes of the weights in memory during the stage.
    pub weights: u64,
    /// Bytes of the stage's own tensors (activations, images, latents).
    pub working: u64,
}

impl StagePeak {
    /// Weights and working memory.
    pub fn peak(&self) -> u64 {
        self.weights + self.working
    }
}

/// Which tiling settings the caller fixed; the planner leaves those as the configuration has
/// them (tiled or not).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixed {
    /// `cleaner_tile`.
    pub stage1: bool,
    /// `stage2.vae_encoder_tile` (and the VAE tiling mode).
    pub vae_encoder: bool,
    /// `stage2.vae_decoder_tile` (and the VAE tiling mode).
    pub vae_decoder: bool,
    /// `stage2.cldm_tile`.
    pub diffusion: bool,
    /// `residency`.
    pub residency: bool,
}

/// A configuration that fits a budget, with its estimated peaks.
#[derive(Debug, Clone)]
pub struct Plan {
    config: PipelineConfig,
    budget: u64,
    size: (usize, usize),
    stages: Vec<StagePeak>,
}

impl Plan {
    /// The planned settings (the input configuration with the chosen tiling).
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The planned settings, owned.
    pub fn into_config(self) -> PipelineConfig {
        self.config
    }

    /// The estimated peak of every stage, in order.
    pub fn stages(&self) -> &[StagePeak] {
        &self.stages
    }

    /// The estimated peak of the whole restoration.
    pub fn peak(&self) -> u64 {
        self.stages.iter().map(StagePeak::peak).max().unwrap_or(0)
    }

    /// The budget it was planned for.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, w) = self.size;
        let networks = match self.config.residency {
            Residency::Resident => "networks resident",
            Residency::PerStage => "networks loaded per stage",
        };
        writeln!(
            f,
            "{} {} at {}, {w}x{h} out, budget {}, {networks}",
            self.config.task,
            self.config.version,
            self.config.precision,
            bytes(self.budget)
        )?;
        writeln!(
            f,
            "{:<12} {:<22} {:>11} {:>11} {:>11}",
            "stage", "tiling", "weights", "working", "peak"
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "{:<12} {:<22} {:>11} {:>11} {:>11}",
                s.stage.name(),
                s.tiling,
                bytes(s.weights),
                bytes(s.working),
                bytes(s.peak())
            )?;
        }
        write!(
            f,
            "estimated peak {} ({} of the budget kept for the program and its allocator)",
            bytes(self.peak()),
            bytes(reserve(self.budget))
        )
    }
}

/// The part of a budget the stages are not planned into: the program, and the memory its
/// allocator keeps after tensors are freed, which make the resident size of a process exceed
/// its live tensors (by 2 % at 2048² with the official networks, measured).
fn reserve(budget: u64) -> u64 {
    budget / RESERVE_DIVISOR
}

/// One sixteenth of the budget (6 %) is [`reserve`]d.
const RESERVE_DIVISOR: u64 = 16;

/// The smallest budget whose part left after the [`reserve`] holds `needed` bytes.
fn with_reserve(needed: u64) -> u64 {
    needed
        .saturating_mul(RESERVE_DIVISOR)
        .div_ceil(RESERVE_DIVISOR - 1)
}

/// Bytes in binary units (`7.3 GiB`).
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// A budget of at least `n` bytes, as `--max-memory` takes it (tenths of a GiB or MiB,
/// rounded up).
pub fn rounded_up(n: u64) -> String {
    let (unit, name) = if n >= 1 << 30 {
        (1u64 << 30, "GiB")
    } else {
        (1 << 20, "MiB")
    };
    let tenths = (n as f64 * 10.0 / unit as f64).ceil() / 10.0;
    format!("{tenths:.1}{name}")
}

/// Plans restorations for one device and budget.
#[derive(Debug, Clone)]
pub struct Planner {
    budget: u64,
    attention: Attention,
    device: Device,
    fixed: Fixed,
}

/// A tile side and stride in pixels.
type Tile = (usize, usize);

/// One way to run a stage: its tiling setting and estimated working memory.
struct Choice<T> {
    setting: T,
    label: String,
    working: u64,
}

impl Planner {
    /// A planner for `budget` bytes on `device` (whose backend decides how attention is
    /// counted: [`Attention::Blocked`] on the CPU, [`Attention::Whole`] elsewhere).
    pub fn new(budget: u64, device: &Device) -> Self {
        #[cfg(feature = "flex")]
        let attention = if *device == Device::flex() {
            Attention::Blocked
        } else {
            Attention::Whole
        };
        #[cfg(not(feature = "flex"))]
        let attention = Attention::Whole;
        Self {
            budget,
            attention,
            device: device.clone(),
            fixed: Fixed::default(),
        }
    }

    /// Keeps the tiling settings `fixed` names as the configuration has them.
    pub fn with_fixed(mut self, fixed: Fixed) -> Self {
        self.fixed = fixed;
        self
    }

    /// The estimated peaks of `config` as it is, on a `width × height` input.
    pub fn estimate(&self, config: &PipelineConfig, width: u32, height: u32) -> Result<Plan> {
        let all = Fixed {
            stage1: true,
            vae_encoder: true,
            vae_decoder: true,
            diffusion: true,
            residency: true,
        };
        let planner = Self {
            budget: u64::MAX,
            fixed: all,
            ..self.clone()
        };
        let mut plan = planner.plan(config, width, height)?;
        plan.budget = self.budget;
        Ok(plan)
    }

    /// The cheapest configuration for a `width × height` input whose every stage fits the
    /// budget: `config` untiled where that fits, otherwise with the largest tiles that do;
    /// the networks resident unless loading them per stage needs less tiling. Fails, before
    /// anything is loaded, when even the smallest tiles do not fit; the error says the
    /// smallest budget that would.
    pub fn plan(&self, config: &PipelineConfig, width: u32, height: u32) -> Result<Plan> {
        config.validate()?;
        let sizes = Sizes::new(config, width, height)?;
        let weights = self.weights(config)?;
        let plan = |residency| self.plan_with(config, &sizes, weights, residency);
        // unaligned_face keeps its networks resident.
        let chosen = if self.fixed.residency || config.task == Task::UnalignedFace {
            plan(config.residency)?
        } else {
            let resident = plan(Residency::Resident)?;
            let per_stage = plan(Residency::PerStage)?;
            match (&resident.short, &per_stage.short) {
                (None, None) if per_stage.tiled < resident.tiled => per_stage,
                (None, _) => resident,
                _ => per_stage,
            }
        };
        if let Some((stage, needed, weights)) = chosen.short {
            return Err(Error::OutOfMemory {
                budget: self.budget,
                needed: with_reserve(needed),
                weights,
                stage: stage.name().into(),
            });
        }
        chosen.plan.config.validate()?;
        Ok(chosen.plan)
    }

    /// The least tiling of `config` with the networks loaded as `residency` says.
    fn plan_with(
        &self,
        config: &PipelineConfig,
        sizes: &Sizes,
        weights: Weights,
        residency: Residency,
    ) -> Result<Planned> {
        let mut config = config.clone();
        config.residency = residency;
        let mut choices = Choices {
            weights,
            residency,
            guidance: config.stage2.guidance.is_some(),
            budget: self.budget - reserve(self.budget),
            stages: Vec::new(),
            short: None,
            tiled: 0,
        };
        let (h, w) = sizes.condition;
        let faces = config.task == Task::UnalignedFace;
        if faces {
            choices.pick(
                Stage::FaceDetection,
                vec![self.face_detection(&config, sizes)],
            );
        }
        config.cleaner_tile = choices.pick(Stage::Stage1, self.stage1(&config, sizes)?);
        choices.pick(Stage::Text, vec![self.text(&config)]);
        let encoder = choices.pick(Stage::VaeEncode, self.vae(&config, h, w, Coder::Encoder));
        let sampling = choices.pick(Stage::Sampling, self.sampling(&config, sizes));
        let decoder = choices.pick(Stage::VaeDecode, self.vae(&config, h, w, Coder::Decoder));
        choices.pick(Stage::ColorFix, vec![self.color_fix(&config, sizes)]);
        if faces {
            choices.pick(Stage::FacePaste, vec![self.face_paste(&config, sizes)]);
        }
        let stage2 = &mut config.stage2;
        stage2.cldm_tile = sampling;
        stage2.vae_encoder_tile = encoder.map(|(tile, _)| tile);
        stage2.vae_decoder_tile = decoder.map(|(tile, _)| tile);
        if let Some((_, mode)) = encoder.or(decoder) {
            stage2.vae_tiling = mode;
        }
        Ok(Planned {
            plan: Plan {
                config,
                budget: self.budget,
                size: sizes.output,
                stages: choices.stages,
            },
            short: choices.short,
            tiled: choices.tiled,
        })
    }

    /// Bytes of each network's parameters: stage 1, the IRControlNet and the UNet at the
    /// configured precision, the VAE and the text encoder in f32 (as they run); for
    /// `unaligned_face`, the faces' stage 1 at the precision, the detector and the parser in
    /// f32.
    fn weights(&self, config: &PipelineConfig) -> Result<Weights> {
        // Modules built from a configuration hold their parameters uninitialised until first
        // used, so counting them allocates nothing.
        let m = &config.models;
        let device = &self.device;
        let low = element(config) as u64;
        let unet = m.unet.init(device).num_params() as u64;
        let controlnet = m.controlnet.init(device)?.num_params() as u64;
        let faces = if config.task == Task::UnalignedFace {
            let f = &m.face;
            f.stage1.init(device)?.num_params() as u64 * low
                + (f.detector.init(device).num_params() + f.parser.init(device).num_params()) as u64
                    * 4
        } else {
            0
        };
        Ok(Weights {
            faces,
            stage1: m.stage1.init(device)?.num_params() as u64 * low,
            cldm: (unet + controlnet) * low,
            vae: m.vae.init(device).num_params() as u64 * 4,
            clip: m.clip.init(device).num_params() as u64 * 4,
        })
    }

    fn stage1(&self, config: &PipelineConfig, sizes: &Sizes) -> Result<Vec<Choice<Option<Tile>>>> {
        let model = &config.models.stage1;
        // unaligned_face runs the faces' stage 1, with the same tiles, on the aligned crops.
        let faces = match config.task {
            Task::UnalignedFace => {
                let mut faces = config.clone();
                faces.models.stage1 = config.models.face.stage1.clone();
                faces.upscale = 1.0;
                let side = FACE_SIZE as u32;
                Some((faces.models.stage1.clone(), Sizes::new(&faces, side, side)?))
            }
            _ => None,
        };
        let (ih, iw) = sizes.stage1_input;
        let fits = |t: &usize| {
            *t < ih.min(iw)
                && stage1_tile_ok(model, *t)
                && faces.as_ref().is_none_or(|(m, _)| stage1_tile_ok(m, *t))
        };
        let tiles = TILES.into_iter().filter(fits).map(|t| (t, t / 2));
        Ok(choices(
            self.fixed.stage1,
            config.cleaner_tile,
            tiles,
            |tile| {
                let faces = faces
                    .as_ref()
                    .map_or(0, |(m, sizes)| stage1_working(m, sizes, tile));
                Choice {
                    setting: tile,
                    label: tile_label(tile),
                    working: stage1_working(model, sizes, tile).max(faces),
                }
            },
        ))
    }

    fn face_detection(&self, config: &PipelineConfig, sizes: &Sizes) -> Choice<()> {
        let (ch, cw) = sizes.canvas;
        let scale = (DETECT_SHORT_SIDE as f64 / ch.min(cw) as f64).max(1.0);
        let (dh, dw) = ((ch as f64 * scale) as usize, (cw as f64 * scale) as usize);
        let detector = &config.models.face.detector;
        Choice {
            setting: (),
            label: detector.network_name.name().into(),
            working: estimate::DETECTOR.bytes(estimate::detector_volume(detector, dh, dw), 4)
                + ((ch * cw + dh * dw) * 3) as u64,
        }
    }

    fn face_paste(&self, config: &PipelineConfig, sizes: &Sizes) -> Choice<()> {
        let (ch, cw) = sizes.canvas;
        let parser = &config.models.face.parser;
        let parse = if config.faces.use_parse {
            estimate::PARSER.bytes(estimate::parser_volume(parser), 4)
        } else {
            0
        };
        Choice {
            setting: (),
            label: if config.faces.use_parse {
                "parsing masks".into()
            } else {
                "square masks".into()
            },
            working: (estimate::PASTE_BYTES_PER_PIXEL * (ch * cw) as f64) as u64
                + parse
                + (batch(config) as usize * ch * cw * 3) as u64,
        }
    }

    fn text(&self, config: &PipelineConfig) -> Choice<()> {
        let batch = batch(config);
        Choice {
            setting: (),
            label: "untiled".into(),
            working: estimate::CLIP
                .bytes(2.0 * batch * estimate::clip_volume(&config.models.clip), 4),
        }
    }

    fn vae(
        &self,
        config: &PipelineConfig,
        h: usize,
        w: usize,
        coder: Coder,
    ) -> Vec<Choice<Option<(usize, VaeTiling)>>> {
        let batch = batch(config);
        let vae = &config.models.vae;
        let fit = match coder {
            Coder::Encoder => estimate::VAE_ENCODER,
            Coder::Decoder => estimate::VAE_DECODER,
        };
        // Whole images: the stage-1 output the pipeline keeps for the colour fix, and in
        // blended tiles the canvases beside the tile's own images: the encoder's input in
        // [-1, 1]; the decoder's f32 accumulator, its normaliser and the normalised result.
        let images = |blended: bool| {
            let canvases = match (blended, coder) {
                (false, _) => 0.0,
                (true, Coder::Encoder) => 1.0,
                (true, Coder::Decoder) => 3.0,
            };
            estimate::IMAGE.bytes(batch * (1.0 + canvases) * image_volume(h, w), 4)
        };
        let run = |th: usize, tw: usize| {
            fit.bytes(batch * estimate::vae_volume(vae, th, tw, self.attention), 4)
        };
        let stage2 = &config.stage2;
        let (fixed, tile) = match coder {
            Coder::Encoder => (self.fixed.vae_encoder, stage2.vae_encoder_tile),
            Coder::Decoder => (self.fixed.vae_decoder, stage2.vae_decoder_tile),
        };
        // One mode serves both halves: the caller's when it tiled either half itself,
        // blended otherwise. Synced tiles hold every tile at once: counted as untiled.
        let mode = if self.fixed.vae_encoder || self.fixed.vae_decoder {
            stage2.vae_tiling
        } else {
            VaeTiling::Blended
        };
        let choice = |tile: Option<(usize, VaeTiling)>| Choice {
            setting: tile,
            label: match tile {
                Some((t, mode)) => format!("{} tiles {t}", mode.name()),
                None => "untiled".into(),
            },
            working: match tile {
                Some((t, VaeTiling::Blended)) => run(t.min(h), t.min(w)) + images(true),
                _ => run(h, w) + images(false),
            },
        };
        // Tiles larger than the short side are not used (the VAE then runs untiled).
        let tiles = TILES
            .into_iter()
            .filter(|t| *t < h.min(w))
            .map(|t| (t, mode));
        choices(fixed, tile.map(|t| (t, mode)), tiles, choice)
    }

    fn sampling(&self, config: &PipelineConfig, sizes: &Sizes) -> Vec<Choice<Option<Tile>>> {
        let m = &config.models;
        let stage2 = &config.stage2;
        let cfg = if stage2.cfg_scale != 1.0 { 2.0 } else { 1.0 };
        let batch = batch(config);
        let (h, w) = sizes.condition;
        let (lh, lw) = (h / 8, w / 8);
        let latents = estimate::IMAGE.bytes(batch * 8.0 * (lh * lw * 4) as f64 / 3.0, 4);
        // The stage-1 output the pipeline keeps, and restoration guidance's target.
        let guidance = if stage2.guidance.is_some() { 1.0 } else { 0.0 };
        let images = estimate::IMAGE.bytes(batch * (1.0 + guidance) * image_volume(h, w), 4);
        let run = |th: usize, tw: usize| {
            estimate::CONTROL_LDM.bytes(
                cfg * batch
                    * estimate::control_ldm_volume(&m.unet, &m.controlnet, th, tw, self.attention),
                element(config),
            )
        };
        let tiles = TILES
            .into_iter()
            .filter(|t| *t >= 256 && *t < h.min(w))
            .map(|t| (t, t / 2));
        choices(self.fixed.diffusion, stage2.cldm_tile, tiles, |tile| {
            Choice {
                setting: tile,
                label: tile_label(tile),
                working: match tile {
                    Some((t, _)) => run((t / 8).min(lh), (t / 8).min(lw)),
                    None => run(lh, lw),
                } + latents
                    + images,
            }
        })
    }

    fn color_fix(&self, config: &PipelineConfig, sizes: &Sizes) -> Choice<()> {
        let batch = batch(config);
        let (h, w) = sizes.condition;
        let (oh, ow) = sizes.output;
        let planes = match config.color_fix {
            diffbir_core::color::ColorFix::Wavelet => 12.0,
            _ => 4.0,
        };
        Choice {
            setting: (),
            label: config.color_fix.name().into(),
            working: estimate::IMAGE.bytes(
                batch * (planes * image_volume(h, w) + image_volume(oh, ow)),
                4,
            ),
        }
    }
}

/// Stage 1's working memory on `sizes`, untiled or in `tile`s.
fn stage1_working(model: &Stage1Config, sizes: &Sizes, tile: Option<Tile>) -> u64 {
    let fit = estimate::stage1_fit(model);
    // Stage 1's activations stay mostly f32 at any precision (measured).
    let element = 4;
    let (ih, iw) = sizes.stage1_input;
    let images = estimate::IMAGE.bytes(
        image_volume(ih, iw) + image_volume(sizes.condition.0, sizes.condition.1),
        4,
    );
    let run = |h: usize, w: usize| fit.bytes(estimate::stage1_volume(model, h, w), element);
    images
        + match tile {
            Some((t, _)) => run(t.min(ih), t.min(iw)),
            None => run(sizes.untiled_stage1.0, sizes.untiled_stage1.1),
        }
}

/// The ways to run a stage, cheapest first: the caller's `current` setting alone when it is
/// `fixed`, otherwise untiled and then each of `tiles`.
fn choices<T: Copy>(
    fixed: bool,
    current: Option<T>,
    tiles: impl Iterator<Item = T>,
    choice: impl Fn(Option<T>) -> Choice<Option<T>>,
) -> Vec<Choice<Option<T>>> {
    if fixed {
        return vec![choice(current)];
    }
    std::iter::once(None)
        .chain(tiles.map(Some))
        .map(choice)
        .collect()
}

/// Bytes of each network's weights.
#[derive(Debug, Clone, Copy)]
struct Weights {
    /// The face models of `unaligned_face` (stage 1, detector, parser).
    faces: u64,
    stage1: u64,
    /// UNet and IRControlNet.
    cldm: u64,
    vae: u64,
    clip: u64,
}

impl Weights {
    /// The weights in memory during `stage`: every network's when they are resident, else
    /// the stage's own (sampling with restoration guidance also holds the VAE).
    fn during(self, stage: Stage, residency: Residency, guidance: bool) -> u64 {
        match (residency, stage) {
            (Residency::Resident, _) => self.faces + self.stage1 + self.cldm + self.vae + self.clip,
            (Residency::PerStage, Stage::Stage1) => self.stage1,
            (Residency::PerStage, Stage::Text) => self.clip,
            (Residency::PerStage, Stage::VaeEncode | Stage::VaeDecode) => self.vae,
            (Residency::PerStage, Stage::Sampling) => {
                self.cldm + if guidance { self.vae } else { 0 }
            }
            (Residency::PerStage, Stage::ColorFix) => 0,
            // unaligned_face is planned resident.
            (Residency::PerStage, Stage::FaceDetection | Stage::FacePaste) => self.faces,
        }
    }
}

/// A plan and whether it fits.
struct Planned {
    plan: Plan,
    /// The stage that fits worst when one does not: the budget it needs and the weights
    /// part of it.
    short: Option<(Stage, u64, u64)>,
    /// How much tiling it has: the sum, over the stages, of the chosen option's rank.
    tiled: usize,
}

/// The stages chosen so far, and the stage that fits worst when one does not.
struct Choices {
    weights: Weights,
    residency: Residency,
    guidance: bool,
    budget: u64,
    stages: Vec<StagePeak>,
    short: Option<(Stage, u64, u64)>,
    tiled: usize,
}

impl Choices {
    /// The first of `options` (cheapest first) that fits, or the last when none does (the
    /// shortfall is remembered).
    fn pick<T>(&mut self, stage: Stage, options: Vec<Choice<T>>) -> T {
        let weights = self.weights.during(stage, self.residency, self.guidance);
        let fits = options
            .iter()
            .position(|o| weights + o.working <= self.budget);
        let chosen = fits.unwrap_or_else(|| {
            let needed = weights + options.iter().map(|o| o.working).min().unwrap_or(0);
            if self.short.is_none_or(|(_, worst, _)| needed > worst) {
                self.short = Some((stage, needed, weights));
            }
            options.len() - 1
        });
        self.tiled += chosen;
        let option = options
            .into_iter()
            .nth(chosen)
            .expect("one option at least");
        self.stages.push(StagePeak {
            stage,
            tiling: option.label,
            weights,
            working: option.working,
        });
        option.setting
    }
}

/// The VAE's two halves.
#[derive(Debug, Clone, Copy)]
enum Coder {
    Encoder,
    Decoder,
}

/// Samples per diffusion batch.
fn batch(config: &PipelineConfig) -> f64 {
    config.batch_size.min(config.n_samples) as f64
}

/// Bytes per element of the networks that run at the configured precision.
fn element(config: &PipelineConfig) -> usize {
    match config.precision {
        diffbir_core::Precision::F32 => 4,
        _ => 2,
    }
}

fn tile_label(tile: Option<Tile>) -> String {
    match tile {
        Some((size, stride)) => format!("tiles {size}/{stride}"),
        None => "untiled".into(),
    }
}

/// Whether stage 1 can run in tiles of `tile` pixels (SwinIR's window rule).
fn stage1_tile_ok(model: &Stage1Config, tile: usize) -> bool {
    match model {
        Stage1Config::SwinIr(s) => {
            tile.is_multiple_of(s.window_size * if s.unshuffle { s.sf } else { 1 })
        }
        _ => true,
    }
}

/// The sizes `(h, w)` a restoration works at, as [`crate::pipeline::Pipeline`] computes
/// them.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// What stage 1 is given when it runs tiled.
    stage1_input: (usize, usize),
    /// What stage 1 is given untiled (SwinIR resizes before the network).
    untiled_stage1: (usize, usize),
    /// The condition: stage 1's result at the working size (short edge at least 512).
    condition: (usize, usize),
    /// The final output.
    output: (usize, usize),
    /// `unaligned_face`'s canvas: the output, enlarged to a 512-pixel short side if smaller.
    canvas: (usize, usize),
}

impl Sizes {
    fn new(config: &PipelineConfig, width: u32, height: u32) -> Result<Self> {
        let (ow, oh) = upscaled_size(width, height, config.upscale)?;
        let output = (oh as usize, ow as usize);
        let model = &config.models.stage1;
        let short = |(h, w): (usize, usize)| -> Result<(usize, usize)> {
            Ok(if h.min(w) < SHORT_EDGE {
                short_edge_size(h, w, SHORT_EDGE)?
            } else {
                (h, w)
            })
        };
        let canvas = short(output)?;
        Ok(match model {
            Stage1Config::RrdbNet(_) => {
                let input = (height as usize, width as usize);
                let y = estimate::stage1_output(model, input.0, input.1);
                let condition = if output.0.min(output.1) < SHORT_EDGE {
                    short_edge_size(y.0, y.1, SHORT_EDGE)?
                } else {
                    output
                };
                Self {
                    stage1_input: input,
                    untiled_stage1: input,
                    condition,
                    output,
                    canvas,
                }
            }
            Stage1Config::SwinIr(_) => {
                let resized = short(output)?;
                Self {
                    stage1_input: output,
                    untiled_stage1: resized,
                    condition: resized,
                    output,
                    canvas,
                }
            }
            Stage1Config::ScuNet(_) => Self {
                stage1_input: output,
                untiled_stage1: output,
                condition: canvas,
                output,
                canvas,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Version;

    fn planner(budget: u64) -> Planner {
        Planner::new(budget, &Device::flex())
    }

    #[test]
    fn a_large_budget_leaves_everything_untiled_and_the_error_names_a_budget_that_fits() {
        let config = PipelineConfig::new(Task::Sr, Version::V21);
        let plan = planner(u64::MAX).plan(&config, 512, 512).unwrap();
        assert!(
            plan.stages()
                .iter()
                .all(|s| s.tiling == "untiled" || s.tiling == "wavelet")
        );
        assert_eq!(plan.config().cleaner_tile, None);
        assert_eq!(plan.config().stage2.cldm_tile, None);

        let Err(Error::OutOfMemory { needed, .. }) = planner(1 << 30).plan(&config, 512, 512)
        else {
            panic!("1 GiB cannot hold the weights");
        };
        // Loaded per stage, the UNet and the IRControlNet alone are 4.6 GiB in f32.
        assert!(needed > 4 << 30, "{}", bytes(needed));
        let plan = planner(needed).plan(&config, 512, 512).unwrap();
        assert!(plan.peak() <= needed);
        assert_eq!(plan.config().residency, Residency::PerStage, "{plan}");
        assert_eq!(untiled_plan_residency(&config), Residency::Resident);
        // What the suggestion prints parses back to at least the need.
        let hint: bytesize::ByteSize = rounded_up(needed).parse().unwrap();
        assert!(hint.as_u64() >= needed);
    }

    fn untiled_plan_residency(config: &PipelineConfig) -> Residency {
        planner(u64::MAX)
            .plan(config, 512, 512)
            .unwrap()
            .config()
            .residency
    }

    #[test]
    fn faces_anywhere_are_planned_with_their_detection_and_paste_resident() {
        let config = PipelineConfig::new(Task::UnalignedFace, Version::V21);
        let plan = planner(u64::MAX).plan(&config, 1024, 768).unwrap();
        let stages: Vec<Stage> = plan.stages().iter().map(|s| s.stage).collect();
        assert_eq!(stages.first(), Some(&Stage::FaceDetection), "{plan}");
        assert_eq!(stages.last(), Some(&Stage::FacePaste), "{plan}");
        let sr = planner(u64::MAX)
            .plan(&PipelineConfig::new(Task::Sr, Version::V21), 1024, 768)
            .unwrap();
        // The face models' weights come on top of the background's.
        assert!(
            plan.stages()[1].weights > sr.stages()[0].weights,
            "{plan}\n{sr}"
        );
        // A budget short of the whole keeps them resident and tiles instead.
        let budget = plan.peak() - (1 << 30);
        let tiled = planner(budget).plan(&config, 1024, 768).unwrap();
        assert_eq!(tiled.config().residency, Residency::Resident, "{tiled}");
        assert!(tiled.peak() <= budget, "{tiled}");
    }

    #[test]
    fn smaller_budgets_tile_more_and_fixed_settings_are_kept() {
        let config = PipelineConfig::new(Task::Sr, Version::V21);
        let untiled = planner(u64::MAX).plan(&config, 512, 512).unwrap();
        let budget = untiled.stages()[0].weights + (2 << 30);
        let resident = Fixed {
            residency: true,
            ..Fixed::default()
        };
        let tiled = planner(budget)
            .with_fixed(resident)
            .plan(&config, 512, 512)
            .unwrap();
        assert!(tiled.peak() <= budget && tiled.peak() < untiled.peak());
        assert!(tiled.config().stage2.vae_decoder_tile.is_some(), "{tiled}");
        assert_eq!(tiled.config().stage2.vae_tiling, VaeTiling::Blended);

        let mut fixed = config.clone();
        fixed.stage2.cldm_tile = Some((512, 256));
        let keep = Fixed {
            diffusion: true,
            ..Fixed::default()
        };
        let plan = planner(u64::MAX)
            .with_fixed(keep)
            .plan(&fixed, 512, 512)
            .unwrap();
        assert_eq!(plan.config().stage2.cldm_tile, Some((512, 256)));
        // Estimating a configuration changes none of its settings.
        let estimate = planner(budget).estimate(&fixed, 512, 512).unwrap();
        assert_eq!(estimate.config().stage2.cldm_tile, Some((512, 256)));
        assert_eq!(estimate.config().stage2.vae_decoder_tile, None);
    }
}
