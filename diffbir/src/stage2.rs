//! Stage 2 of DiffBIR: from a stage-1 result to the generated image
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py:L71-L233`, `Pipeline.apply_cldm`). It wires
//! the components together and holds no maths of its own.

use burn::tensor::Tensor;
use diffbir_controlnet::{ControlCond, ControlDenoiser, ControlLdm};
use diffbir_core::resize::pad_to_multiples_of;
use diffbir_core::{Error, NoiseSource, Result};
use diffbir_ldm::clip::{ClipTextEncoder, ClipTokenizer};
use diffbir_ldm::vae::{AutoencoderKl, Latent, VaeTiles};
use diffbir_sampler::{
    ClassifierFree, Denoiser, GuidanceSpace, GuidedCond, NoiseSchedule, RestorationGuidanceConfig,
    SampleObserver, Sampler, SamplerConfig, SamplerKind, SpacedGuidance, StartPoint, Tiled,
    noise_augment,
};

/// The networks and schedule of stage 2.
#[derive(Debug)]
pub struct Stage2 {
    /// UNet + IRControlNet.
    pub cldm: ControlLdm,
    /// The SD autoencoder.
    pub vae: AutoencoderKl,
    /// The text encoder.
    pub clip: ClipTextEncoder,
    /// Its tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The training schedule of the SD checkpoint (its parameterisation included).
    pub schedule: NoiseSchedule,
}

/// The settings of one stage-2 run (`apply_cldm`'s arguments).
#[derive(Debug, Clone)]
pub struct Stage2Options {
    /// The sampler and its steps.
    pub sampler: SamplerConfig,
    /// Scale of every ControlNet residual (`--strength`).
    pub strength: f64,
    /// Classifier-free guidance scale (`--cfg_scale`).
    pub cfg_scale: f64,
    /// Vary the guidance scale over time (`--rescale_cfg`).
    pub rescale_cfg: bool,
    /// Start from noise or from the noised condition (`--start_point_type`).
    pub start_point: StartPoint,
    /// Noise-augmentation timestep of the condition latent (`--noise_aug`, 0 = off).
    pub noise_aug: usize,
    /// Positive prompt.
    pub pos_prompt: String,
    /// Negative prompt.
    pub neg_prompt: String,
    /// Tiled VAE encoding with this tile side in pixels (`--vae_encoder_tile_size`).
    pub vae_encoder_tile: Option<usize>,
    /// Tiled VAE decoding with this tile side in pixels (`--vae_decoder_tile_size`).
    pub vae_decoder_tile: Option<usize>,
    /// How the VAE tiles are processed.
    pub vae_tiling: VaeTiling,
    /// Tiled diffusion with this tile side and stride in pixels (`--cldm_tile_size`,
    /// `--cldm_tile_stride`).
    pub cldm_tile: Option<(usize, usize)>,
    /// Restoration guidance towards the stage-1 result (`--guidance`, `--g_*`); the `spaced`
    /// sampler only, untiled.
    pub guidance: Option<RestorationGuidanceConfig>,
}

diffbir_core::named_enum! {
    /// How tiled VAE encoding and decoding process their tiles (`--vae-tiling`).
    #[derive(Default)]
    pub enum VaeTiling ("VAE tiling") {
        /// The reference's Tiled VAE (v2.1): GroupNorm statistics merged across tiles, closest
        /// to the untiled result; all tiles stay in memory between GroupNorms.
        #[default]
        Synced = "synced",
        /// v2's tiling: independent tiles half a tile apart, blended with Gaussian weights;
        /// memory bounded by one tile and the output on every backend.
        Blended = "blended",
    }
}

impl VaeTiling {
    /// The encoder's tiles for a tile side in pixels.
    fn encoder(self, tile: usize) -> VaeTiles {
        match self {
            Self::Synced => VaeTiles::Synced(tile),
            Self::Blended => VaeTiles::Blended {
                tile,
                stride: (tile / 2 / 8 * 8).max(8),
            },
        }
    }

    /// The decoder's tiles for a tile side in pixels.
    fn decoder(self, tile: usize) -> VaeTiles {
        match self {
            Self::Synced => VaeTiles::Synced(tile / 8),
            Self::Blended => VaeTiles::Blended {
                tile: tile / 8,
                stride: (tile / 16).max(1),
            },
        }
    }
}

impl Stage2Options {
    /// Checks what the reference checks (tile sizes) and what this port needs.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(Error::InvalidArgument {
                what: what.into(),
                reason,
            })
        };
        if let Some((size, stride)) = self.cldm_tile
            && (size == 0 || !size.is_multiple_of(64) || stride == 0 || !stride.is_multiple_of(8))
        {
            return bad(
                "diffusion tile",
                format!(
                    "size {size} must be a positive multiple of 64 and stride {stride} a positive multiple of 8"
                ),
            );
        }
        for (what, tile) in [
            ("VAE encoder tile", self.vae_encoder_tile),
            ("VAE decoder tile", self.vae_decoder_tile),
        ] {
            if let Some(t) = tile.filter(|t| *t == 0 || !t.is_multiple_of(8)) {
                return bad(what, format!("{t} must be a positive multiple of 8"));
            }
        }
        if let Some(guidance) = &self.guidance {
            guidance.init()?;
            guidance.check_supported()?;
            if self.sampler.kind() != SamplerKind::Spaced {
                return bad(
                    "restoration guidance",
                    format!(
                        "it runs with the `spaced` sampler only, as in the original, not `{}`",
                        self.sampler.name()
                    ),
                );
            }
            if self.cldm_tile.is_some() {
                return bad(
                    "restoration guidance",
                    "it cannot be combined with tiled diffusion, as in the original".into(),
                );
            }
        }
        if self.noise_aug >= 1000 {
            return bad(
                "noise augmentation",
                format!("timestep {} must be below 1000", self.noise_aug),
            );
        }
        Ok(())
    }
}

/// Where stage 2 finds its networks for each of its phases: held in memory ([`Stage2`]), or
/// loaded for the phase that needs them and dropped after it (a pipeline loaded
/// [`crate::pipeline::Residency::PerStage`]).
pub(crate) trait Stage2Networks {
    /// The training schedule of the SD checkpoint.
    fn schedule(&self) -> &NoiseSchedule;

    /// The text contexts of `prompts`, each repeated over a batch of `batch`.
    fn texts(&self, prompts: [&str; 2], batch: usize) -> Result<[Tensor<3>; 2]>;

    /// Runs `f` with the autoencoder.
    fn with_vae<R>(&self, f: impl FnOnce(&AutoencoderKl) -> Result<R>) -> Result<R>;

    /// Runs `f` with UNet + IRControlNet, and the autoencoder when `vae` (restoration
    /// guidance decodes and encodes while sampling).
    fn with_cldm<R>(
        &self,
        vae: bool,
        f: impl FnOnce(&ControlLdm, Option<&AutoencoderKl>) -> Result<R>,
    ) -> Result<R>;
}

impl Stage2Networks for Stage2 {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn texts(&self, prompts: [&str; 2], batch: usize) -> Result<[Tensor<3>; 2]> {
        Ok(prompts.map(|prompt| encode_text(&self.clip, &self.tokenizer, prompt, batch)))
    }

    fn with_vae<R>(&self, f: impl FnOnce(&AutoencoderKl) -> Result<R>) -> Result<R> {
        f(&self.vae)
    }

    fn with_cldm<R>(
        &self,
        vae: bool,
        f: impl FnOnce(&ControlLdm, Option<&AutoencoderKl>) -> Result<R>,
    ) -> Result<R> {
        f(&self.cldm, vae.then_some(&self.vae))
    }
}

/// The text context of a prompt, repeated over the batch.
pub(crate) fn encode_text(
    clip: &ClipTextEncoder,
    tokenizer: &ClipTokenizer,
    prompt: &str,
    batch: usize,
) -> Tensor<3> {
    clip.encode(tokenizer, &vec![prompt; batch])
}

impl Stage2 {
    /// Generates the restored image from the stage-1 result `cond_img`, drawing the start
    /// latent, the noise augmentation and the sampler's noise from `noise` in that order.
    ///
    /// # Shapes
    /// - `cond_img`: `[B, 3, H, W]` in `[0, 1]`
    /// - returns `[B, 3, H, W]`, nominally in `[-1, 1]` (not clamped)
    pub fn apply(
        &self,
        cond_img: Tensor<4>,
        options: &Stage2Options,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Result<Tensor<4>> {
        apply(self, cond_img, options, noise, observer)
    }
}

/// [`Stage2::apply`] with the networks of `networks`, used one phase at a time: the text
/// encoder, the VAE's encoder, UNet + IRControlNet, the VAE's decoder.
pub(crate) fn apply(
    networks: &impl Stage2Networks,
    cond_img: Tensor<4>,
    options: &Stage2Options,
    noise: &mut NoiseSource,
    observer: &mut impl SampleObserver,
) -> Result<Tensor<4>> {
    options.validate()?;
    let [b, _, h0, w0] = cond_img.dims();
    let [c_txt, uc_txt] = networks.texts([&options.pos_prompt, &options.neg_prompt], b)?;
    let encoder_tile = options.vae_encoder_tile;
    // The VAE needs multiples of 8; untiled runs pad to 64 as the reference does.
    let multiple = if encoder_tile.is_none() && options.cldm_tile.is_none() {
        64
    } else {
        8
    };
    let (image, _) = pad_to_multiples_of(cond_img, multiple)?;
    let [_, _, hp, wp] = image.dims();
    let encoder_tiles = encoder_tile
        .filter(|t| hp >= *t && wp >= *t)
        .map(|t| options.vae_tiling.encoder(t));
    let image = image.mul_scalar(2.0).sub_scalar(1.0);
    let c_img =
        networks.with_vae(|vae| Ok(vae.encode_latent(image.clone(), encoder_tiles, None)?.0))?;
    // Restoration guidance's target; without guidance the image is freed before sampling.
    let target = options.guidance.is_some().then_some(image);
    let [_, _, h1, w1] = c_img.dims();
    let c_img = if options.cldm_tile.is_none() {
        pad_to_multiples_of(c_img, 8)?.0
    } else {
        c_img
    };

    let schedule = networks.schedule();
    let x_t = options.start_point.latent(schedule, &c_img, noise);
    let c_img = if options.noise_aug > 0 {
        noise_augment(schedule, c_img, options.noise_aug, noise)
    } else {
        c_img
    };
    let cond = GuidedCond {
        cond: ControlCond {
            c_txt,
            c_img: c_img.clone(),
        },
        uncond: Some(ControlCond {
            c_txt: uc_txt,
            c_img,
        }),
    };
    let sampler = options.sampler.init(schedule)?;
    let rescale = options.sampler.cfg_rescale(options.rescale_cfg);
    let guidance = options
        .guidance
        .as_ref()
        .map(RestorationGuidanceConfig::init)
        .transpose()?;
    let z = networks.with_cldm(guidance.is_some(), |cldm, vae| {
        let model = ControlDenoiser {
            cldm,
            strength: options.strength,
            parameterization: schedule.parameterization(),
        };
        let space = vae.map(VaeGuidance);
        let guidance = guidance
            .as_ref()
            .zip(space.as_ref())
            .zip(target.as_ref())
            .map(|((guidance, space), target)| SpacedGuidance {
                guidance,
                space,
                target,
            });
        match options.cldm_tile {
            Some((size, stride)) => {
                let tiled = Tiled::new(model, size / 8, stride / 8)?;
                run(
                    &sampler,
                    ClassifierFree::new(tiled, options.cfg_scale).with_rescale(rescale),
                    x_t,
                    &cond,
                    guidance,
                    noise,
                    observer,
                )
            }
            None => run(
                &sampler,
                ClassifierFree::new(model, options.cfg_scale).with_rescale(rescale),
                x_t,
                &cond,
                guidance,
                noise,
                observer,
            ),
        }
    })?;
    let [_, c, _, _] = z.dims();
    let z = z.slice([0..b, 0..c, 0..h1, 0..w1]);
    let decoder_tiles = options
        .vae_decoder_tile
        .filter(|t| h1 >= t / 8 && w1 >= t / 8)
        .map(|t| options.vae_tiling.decoder(t));
    let x = networks.with_vae(|vae| vae.decode_latent(&Latent(z), decoder_tiles))?;
    Ok(x.slice([0..b, 0..3, 0..h0, 0..w0]))
}

fn run<D: Denoiser<Cond = GuidedCond<ControlCond>>>(
    sampler: &Sampler,
    model: D,
    x_t: Tensor<4>,
    cond: &GuidedCond<ControlCond>,
    guidance: Option<SpacedGuidance<'_>>,
    noise: &mut NoiseSource,
    observer: &mut impl SampleObserver,
) -> Result<Tensor<4>> {
    match guidance {
        Some(guidance) => sampler.sample_guided(&model, x_t, cond, guidance, noise, observer),
        None => Ok(sampler.sample(&model, x_t, cond, noise, observer)),
    }
}

/// The SD autoencoder as restoration guidance uses it: scaled latents, a posterior sample per
/// encoding (`ControlLDM.vae_encode(sample=True)`, `vae_decode`).
#[derive(Debug, Clone, Copy)]
pub struct VaeGuidance<'a>(pub &'a AutoencoderKl);

impl GuidanceSpace for VaeGuidance<'_> {
    fn encode(&self, image: Tensor<4>, noise: &mut NoiseSource) -> Result<Tensor<4>> {
        Ok(self.0.encode_latent(image, None, Some(noise))?.0)
    }

    fn decode(&self, latent: Tensor<4>) -> Result<Tensor<4>> {
        self.0.decode_latent(&Latent(latent), None)
    }
}
