//! Diffusion families: one sampler run on a tiny `ControlLdm`, and stage 2 end to end.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{DType, Device};
use diffbir::controlnet::{ControlCond, ControlDenoiser};
use diffbir::core::NoiseSource;
use diffbir::core::color::ColorFix;
use diffbir::core::resize::postprocess;
use diffbir::ldm::clip::{ClipTextConfig, ClipTokenizer};
use diffbir::ldm::vae::{DdConfig, VaeConfig};
use diffbir::sampler::{
    ClassifierFree, GuidedCond, NoiseScheduleConfig, SamplerConfig, SamplerKind, SamplerOptions,
    StartPoint,
};
use diffbir::stage2::{Stage2, Stage2Options, VaeTiling};

use super::draw::{self, Draw};
use super::unet::{cldm_on, describe_unet, draw_cldm, latent_side};
use super::{Case, MAX_PARAMS, dims, draw_until, moved, output};

/// A sampler with its options, and the training schedule.
struct SamplerChoice {
    config: SamplerConfig,
    schedule: NoiseScheduleConfig,
    cfg_scale: f64,
    rescale: bool,
    start: StartPoint,
    strength: f64,
}

impl SamplerChoice {
    /// A sampler whose tables build for its schedule (DDIM refuses some step counts, as
    /// the reference does).
    fn draw(d: &mut Draw) -> Result<Self> {
        draw_until(d, |d| {
            let name = d.pick(&SamplerKind::ALL);
            let options = SamplerOptions::new()
                .with_eta(d.pick(&[0.0, 1.0]))
                .with_s_churn(d.pick(&[0.0, 0.5]));
            let choice = Self {
                config: SamplerConfig::new(name, d.range(2, 3), &options),
                schedule: if d.coin() {
                    NoiseScheduleConfig::sd_v2()
                } else {
                    NoiseScheduleConfig::sd_v21()
                },
                cfg_scale: d.pick(&[1.0, 4.5]),
                rescale: d.coin(),
                start: d.pick(&[StartPoint::Noise, StartPoint::Cond]),
                strength: d.uniform_f64(0.5, 1.5),
            };
            choice.config.init(&choice.schedule.init()).ok()?;
            Some(choice)
        })
    }

    fn describe(&self) -> String {
        format!(
            "sampler={} steps={} schedule={} cfg={}{} start={:?} strength={:.2}",
            self.config.name(),
            self.config.steps(),
            if self.schedule.zero_snr {
                "v2.1(v, zero-snr)"
            } else {
                "v2(eps)"
            },
            self.cfg_scale,
            if self.rescale { " rescaled" } else { "" },
            self.start,
            self.strength
        )
    }
}

/// One sampler run (any of the 14 samplers, 2–3 steps) over classifier-free guidance of a
/// tiny `ControlLdm`, the start latent and every draw of the sampler from one host-seeded
/// `NoiseSource`, so both devices see the same noise.
pub fn sampler(d: &mut Draw) -> Result<Case> {
    let context_dim = d.pick(&[4, 8, 16]);
    let (model, cfg) = draw_cldm(d, context_dim)?;
    let choice = SamplerChoice::draw(d)?;
    let b = d.range(1, 2);
    let (h, w) = (latent_side(d, &cfg), latent_side(d, &cfg));
    let tokens = d.range(1, 8);
    let txt_shape = [b, tokens, context_dim];
    let c_txt = d.normal_data(&txt_shape);
    let uncond_txt = d.coin().then(|| d.normal_data(&txt_shape));
    let c_img = d.normal_data(&[b, 4, h, w]);
    let noise_seed = d.seed();
    let config = format!(
        "{} | {}{} z={} txt={}",
        describe_unet(&cfg),
        choice.describe(),
        if uncond_txt.is_some() { " uncond" } else { "" },
        dims(&[b, 4, h, w]),
        dims(&txt_shape)
    );
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let cldm = cldm_on(&model, device, setting);
        let schedule = choice.schedule.init();
        let sampler = choice.config.init(&schedule)?;
        let denoiser = ControlDenoiser {
            cldm: &cldm,
            strength: choice.strength,
            parameterization: schedule.parameterization(),
        };
        let guided = ClassifierFree::new(denoiser, choice.cfg_scale)
            .with_rescale(choice.config.cfg_rescale(choice.rescale));
        let c_img = draw::float(&c_img, device, DType::F32);
        let cond = GuidedCond {
            cond: ControlCond {
                c_txt: draw::float(&c_txt, device, DType::F32),
                c_img: c_img.clone(),
            },
            uncond: uncond_txt.as_ref().map(|u| ControlCond {
                c_txt: draw::float(u, device, DType::F32),
                c_img: c_img.clone(),
            }),
        };
        let mut noise = NoiseSource::seeded(noise_seed);
        let x_t = choice.start.latent(&schedule, &c_img, &mut noise);
        let z = sampler.sample(&guided, x_t, &cond, &mut noise, &mut ());
        Ok(vec![output("z", z)?])
    })
    .params(params))
}

/// A merges file of six merges: a 520-token vocabulary.
const TINY_MERGES: &str = "#version: 0.2\nt h\nth e</w>\na n\nan d</w>\ni n\nin g</w>\n";

const WORDS: &[&str] = &[
    "the", "and", "sharp", "photo", "of", "a", "cat", "blurry", "noisy", "detailed", "ing",
];

/// Stage 2 end to end (`Stage2::apply`, then the colour fix): VAE encoding of the padded
/// condition image, the prompts through the tokenizer and the text encoder, a sampler over
/// classifier-free guidance of a tiny `ControlLdm`, decoding, and a wavelet or AdaIN colour
/// fix. Under f16 only `ControlLdm` is cast, as the pipeline does.
pub fn stage2(d: &mut Draw) -> Result<Case> {
    let tokenizer = ClipTokenizer::from_merges(TINY_MERGES)?;
    let clip_cfg = draw_until(d, |d| {
        let cfg = ClipTextConfig::new()
            .with_context_length(d.pick(&[8, 16, 77]))
            .with_vocab_size(tokenizer.vocab_size() + d.range(0, 40))
            .with_width(d.pick(&[8, 16]))
            .with_heads(d.pick(&[1, 2, 4]))
            .with_layers(d.range(1, 2))
            .with_embed_dim(8);
        cfg.validate().ok().map(|()| cfg)
    })?;
    // The pipeline pads the image to 64 and the latent to 8: an 8-times VAE (4 levels).
    let vae_cfg = draw_until(d, |d| {
        let cfg = VaeConfig::new().with_embed_dim(4).with_ddconfig(
            DdConfig::new()
                .with_z_channels(d.range(1, 4))
                .with_ch(32)
                .with_ch_mult(vec![1, 1, 1, d.pick(&[1, 2])])
                .with_num_res_blocks(1),
        );
        cfg.validate().ok()?;
        (cfg.init(&Device::flex()).num_params() <= MAX_PARAMS).then_some(cfg)
    })?;
    let (cldm, cfg) = draw_cldm(d, clip_cfg.width)?;
    let device = Device::flex();
    let vae = d.weights(vae_cfg.init(&device));
    let clip = d.weights(clip_cfg.init(&device));
    let choice = SamplerChoice::draw(d)?;
    let prompt = |d: &mut Draw| {
        (0..d.range(0, 4))
            .map(|_| d.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (pos_prompt, neg_prompt) = (prompt(d), prompt(d));
    let noise_aug = d.pick(&[0, 0, 100]);
    let color_fix = d.pick(&[ColorFix::Wavelet, ColorFix::AdaIn, ColorFix::None]);
    let shape = [d.range(1, 2), 3, d.range(8, 40), d.range(8, 40)];
    let image = d.uniform_data(&shape, 0.0, 1.0);
    let noise_seed = d.seed();
    let config = format!(
        "{} | clip width={} layers={} ctx={} | vae z={} mult={:?} | {} noise_aug={noise_aug} \
         prompts={pos_prompt:?}/{neg_prompt:?} fix={color_fix:?} image={}",
        describe_unet(&cfg),
        clip_cfg.width,
        clip_cfg.layers,
        clip_cfg.context_length,
        vae_cfg.ddconfig.z_channels,
        vae_cfg.ddconfig.ch_mult,
        choice.describe(),
        dims(&shape)
    );
    let params = cldm.num_params() + vae.num_params() + clip.num_params();
    Ok(Case::new(config, move |device, setting| {
        let stage2 = Stage2 {
            cldm: cldm_on(&cldm, device, setting),
            vae: moved(&vae, device, &setting.in_f32()),
            clip: moved(&clip, device, &setting.in_f32()),
            tokenizer: tokenizer.clone(),
            schedule: choice.schedule.init(),
        };
        let options = Stage2Options {
            sampler: choice.config.clone(),
            strength: choice.strength,
            cfg_scale: choice.cfg_scale,
            rescale_cfg: choice.rescale,
            start_point: choice.start,
            noise_aug,
            pos_prompt: pos_prompt.clone(),
            neg_prompt: neg_prompt.clone(),
            vae_encoder_tile: None,
            vae_decoder_tile: None,
            vae_tiling: VaeTiling::Synced,
            cldm_tile: None,
            guidance: None,
        };
        let cond_img = draw::float::<4>(&image, device, DType::F32);
        let mut noise = NoiseSource::seeded(noise_seed);
        let x = stage2.apply(cond_img.clone(), &options, &mut noise, &mut ())?;
        let [_, _, h, w] = x.dims();
        let fixed = postprocess(x.clone(), cond_img, color_fix, h, w)?;
        Ok(vec![output("x", x)?, output("fixed", fixed)?])
    })
    .params(params))
}
