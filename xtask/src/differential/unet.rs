//! The latent-space families: the UNet, the IRControlNet and `ControlLdm`, and the drawing
//! of their configurations that the diffusion families share.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};
use diffbir::controlnet::{ControlLdm, ControlNet, ControlNetConfig};
use diffbir::ldm::unet::{Control, PerLevel, Unet, UnetConfig};

use super::draw::{self, Draw};
use super::{Case, MAX_LATENT_PARAMS, Output, Setting, dims, draw_until, output};

fn per_level(cfg: &UnetConfig, level: usize) -> usize {
    match &cfg.num_res_blocks {
        PerLevel::All(n) => *n,
        PerLevel::Each(v) => v[level],
    }
}

/// A UNet of 1 to 3 levels of width 32 or 64: residual blocks (per level), attention
/// levels, head count or head width, transformer depth, linear or conv projections,
/// scale-shift norm, resblock up/down or conv/pool resampling, self-attention switches.
pub(crate) fn unet_config(d: &mut Draw, in_channels: usize, context_dim: usize) -> UnetConfig {
    let levels = d.range(1, 3);
    // The first level at the base width: the output conv takes `model_channels` inputs (as
    // in the original; `UnetConfig::validate` refuses anything else).
    let mult: Vec<usize> = (0..levels)
        .map(|l| if l == 0 { 1 } else { d.pick(&[1, 2]) })
        .collect();
    let num_res_blocks = if d.coin() {
        PerLevel::All(d.range(1, 2))
    } else {
        PerLevel::Each((0..levels).map(|_| d.range(1, 2)).collect())
    };
    let attention_resolutions = [1, 2, 4]
        .into_iter()
        .take(levels)
        .filter(|_| d.chance(0.6))
        .collect();
    let (num_heads, num_head_channels) = if d.coin() {
        (-1, d.pick(&[8, 16, 32]))
    } else {
        (d.pick(&[1, 2, 4]), -1)
    };
    let mut cfg = UnetConfig::new()
        .with_in_channels(in_channels)
        .with_out_channels(in_channels)
        .with_model_channels(d.pick(&[32, 32, 32, 64]))
        .with_channel_mult(mult)
        .with_num_res_blocks(num_res_blocks)
        .with_attention_resolutions(attention_resolutions)
        .with_num_heads(num_heads)
        .with_num_head_channels(num_head_channels)
        .with_transformer_depth(d.range(1, 2))
        .with_context_dim(Some(context_dim))
        .with_use_spatial_transformer(true)
        .with_use_linear_in_transformer(d.coin())
        .with_use_scale_shift_norm(d.chance(0.3))
        .with_resblock_updown(d.chance(0.3))
        .with_conv_resample(d.chance(0.8))
        .with_legacy(d.coin())
        .with_disable_middle_self_attn(d.chance(0.2));
    if d.chance(0.2) {
        cfg.disable_self_attentions = Some((0..levels).map(|_| d.chance(0.5)).collect());
    }
    if d.chance(0.2) {
        cfg.num_attention_blocks = Some(
            (0..levels)
                .map(|l| d.range(0, per_level(&cfg, l)))
                .collect(),
        );
    }
    cfg
}

pub(crate) fn describe_unet(cfg: &UnetConfig) -> String {
    let heads = if cfg.num_head_channels > 0 {
        format!("head_ch={}", cfg.num_head_channels)
    } else {
        format!("heads={}", cfg.num_heads)
    };
    let res = match &cfg.num_res_blocks {
        PerLevel::All(n) => n.to_string(),
        PerLevel::Each(v) => format!("{v:?}"),
    };
    let flag = |on: bool, name: &str| {
        if on {
            format!(" {name}")
        } else {
            String::new()
        }
    };
    let mut text = format!(
        "mc={} mult={:?} res={res} attn@{:?} {heads} depth={} ctx_dim={}",
        cfg.model_channels,
        cfg.channel_mult,
        cfg.attention_resolutions,
        cfg.transformer_depth,
        cfg.context_dim.unwrap_or(0),
    );
    text += &flag(cfg.use_linear_in_transformer, "linear_proj");
    text += &flag(cfg.use_scale_shift_norm, "scale_shift");
    text += &flag(cfg.resblock_updown, "resblock_updown");
    text += &flag(!cfg.conv_resample, "no_conv_resample");
    text += &flag(cfg.legacy, "legacy");
    text += &flag(cfg.disable_middle_self_attn, "no_mid_self_attn");
    if let Some(v) = &cfg.disable_self_attentions {
        text += &format!(" no_self_attn={v:?}");
    }
    if let Some(v) = &cfg.num_attention_blocks {
        text += &format!(" attn_blocks={v:?}");
    }
    text
}

/// A latent side the UNet accepts: a multiple of `2^(levels−1)` (odd for one level).
pub(crate) fn latent_side(d: &mut Draw, cfg: &UnetConfig) -> usize {
    let factor = 1 << (cfg.channel_mult.len() - 1);
    if factor == 1 {
        d.range(3, 9)
    } else {
        factor * d.range(1, 12 / factor)
    }
}

/// A UNet config (and, with `hint`, the IRControlNet config of the same shape) within the
/// parameter budget, both networks together.
pub(crate) fn draw_unet(
    d: &mut Draw,
    in_channels: usize,
    context_dim: usize,
    hint: Option<usize>,
    budget: usize,
) -> Result<(UnetConfig, Option<ControlNetConfig>)> {
    draw_until(d, |d| {
        let cfg = unet_config(d, in_channels, context_dim);
        cfg.validate().ok()?;
        let device = Device::flex();
        let mut params = cfg.init(&device).num_params();
        let cn = match hint {
            Some(h) => {
                let cn = ControlNetConfig::encoder_of(&cfg, h);
                params += cn.init(&device).ok()?.num_params();
                Some(cn)
            }
            None => None,
        };
        (params <= budget).then_some((cfg, cn))
    })
}

/// Shapes of the ControlNet residuals for a `[b, ·, h, w]` latent: one per input block,
/// then the middle block's.
fn residual_shapes(cfg: &UnetConfig, b: usize, h: usize, w: usize) -> Vec<[usize; 4]> {
    let mc = cfg.model_channels;
    let mut shapes = vec![[b, mc, h, w]];
    let (mut h, mut w) = (h, w);
    let levels = cfg.channel_mult.len();
    for (level, mult) in cfg.channel_mult.iter().enumerate() {
        for _ in 0..per_level(cfg, level) {
            shapes.push([b, mult * mc, h, w]);
        }
        if level != levels - 1 {
            (h, w) = (h / 2, w / 2);
            shapes.push([b, mult * mc, h, w]);
        }
    }
    shapes.push([b, mc * cfg.channel_mult[levels - 1], h, w]);
    shapes
}

/// Host inputs of a UNet-shaped network.
struct UnetInputs {
    x: burn::tensor::TensorData,
    t: burn::tensor::TensorData,
    context: burn::tensor::TensorData,
    shapes: String,
}

fn unet_inputs(d: &mut Draw, cfg: &UnetConfig, b: usize, h: usize, w: usize) -> UnetInputs {
    let x_shape = [b, cfg.in_channels, h, w];
    let ctx_shape = [b, d.range(1, 10), cfg.context_dim.unwrap_or(8)];
    UnetInputs {
        x: d.normal_data(&x_shape),
        t: d.uniform_data(&[b], 0.0, 1000.0),
        context: d.normal_data(&ctx_shape),
        shapes: format!("x={} ctx={}", dims(&x_shape), dims(&ctx_shape)),
    }
}

fn unet_on(unet: &Unet, device: &Device, setting: &Setting) -> Unet {
    setting
        .jittered(unet)
        .to_device(device)
        .with_precision(setting.precision)
}

fn controlnet_on(cn: &ControlNet, device: &Device, setting: &Setting) -> ControlNet {
    setting
        .jittered(cn)
        .to_device(device)
        .with_precision(setting.precision)
}

/// The UNet (`Unet::with_precision` under f16): without control, with a residual per input
/// block and the middle block, and with the middle residual only.
pub fn unet(d: &mut Draw) -> Result<Case> {
    let in_channels = d.range(1, 4);
    let context_dim = d.pick(&[4, 8, 12, 16]);
    let (cfg, _) = draw_unet(d, in_channels, context_dim, None, MAX_LATENT_PARAMS)?;
    let b = d.range(1, 2);
    let (h, w) = (latent_side(d, &cfg), latent_side(d, &cfg));
    let inputs = unet_inputs(d, &cfg, b, h, w);
    let residuals: Vec<_> = residual_shapes(&cfg, b, h, w)
        .iter()
        .map(|s| d.normal_data(s))
        .collect();
    let config = format!("{} {}", describe_unet(&cfg), inputs.shapes);
    let model = d.weights(cfg.init(&Device::flex()));
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let unet = unet_on(&model, device, setting);
        let x = draw::float::<4>(&inputs.x, device, DType::F32);
        let t = draw::float::<1>(&inputs.t, device, DType::F32);
        let context = draw::float::<3>(&inputs.context, device, DType::F32);
        // Residuals come from a ControlNet of the same precision.
        let controls: Vec<Tensor<4>> = residuals
            .iter()
            .map(|r| draw::float(r, device, setting.dtype()))
            .collect();
        let run = |control| unet.forward(x.clone(), t.clone(), &context, control);
        Ok(vec![
            output("eps", run(Control::None))?,
            output("eps_control", run(Control::Residuals(&controls)))?,
            output("eps_only_mid", run(Control::OnlyMid(&controls)))?,
        ])
    })
    .params(params))
}

/// The IRControlNet (`hint_channels` 1–4, `ControlNet::with_precision` under f16): every
/// residual, zero convs given random weights.
pub fn controlnet(d: &mut Draw) -> Result<Case> {
    let in_channels = d.range(1, 4);
    let context_dim = d.pick(&[4, 8, 12, 16]);
    let hint = d.range(1, 4);
    let (unet, _) = draw_unet(d, in_channels, context_dim, None, MAX_LATENT_PARAMS)?;
    let cfg = ControlNetConfig::encoder_of(&unet, hint);
    let b = d.range(1, 2);
    let (h, w) = (latent_side(d, &unet), latent_side(d, &unet));
    let inputs = unet_inputs(d, &unet, b, h, w);
    let hint_data = d.normal_data(&[b, hint, h, w]);
    let config = format!("{} hint={hint} {}", describe_unet(&unet), inputs.shapes);
    let model = d.weights(cfg.init(&Device::flex())?);
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let cn = controlnet_on(&model, device, setting);
        let residuals = cn.forward(
            draw::float(&inputs.x, device, DType::F32),
            draw::float(&hint_data, device, DType::F32),
            draw::float(&inputs.t, device, DType::F32),
            &draw::float(&inputs.context, device, DType::F32),
        );
        residuals
            .into_iter()
            .enumerate()
            .map(|(k, r)| output(format!("control.{k:02}"), r))
            .collect::<Result<Vec<Output>>>()
    })
    .params(params))
}

/// A `ControlLdm` (UNet and an IRControlNet of the same shape, 4 latent and hint channels
/// as DiffBIR's) with random weights, on flex, within the parameter budget; and the UNet's
/// config (the IRControlNet copies its encoder).
pub(crate) fn draw_cldm(d: &mut Draw, context_dim: usize) -> Result<(ControlLdm, UnetConfig)> {
    let (cfg, cn_cfg) = draw_unet(d, 4, context_dim, Some(4), 3 * MAX_LATENT_PARAMS / 2)?;
    let cn_cfg = cn_cfg.expect("a ControlNet config was asked for");
    let device = Device::flex();
    let cldm = ControlLdm {
        unet: d.weights(cfg.init(&device)),
        controlnet: d.weights(cn_cfg.init(&device)?),
    };
    Ok((cldm, cfg))
}

/// `ControlLdm` on a device, cast with `ControlLdm::with_precision`.
pub(crate) fn cldm_on(cldm: &ControlLdm, device: &Device, setting: &Setting) -> ControlLdm {
    setting
        .jittered(cldm)
        .to_device(device)
        .with_precision(setting.precision)
}

/// `ControlLdm.forward`: ControlNet residuals scaled per residual (all 1, or random scales),
/// then the UNet.
pub fn cldm(d: &mut Draw) -> Result<Case> {
    let context_dim = d.pick(&[4, 8, 16]);
    let (model, cfg) = draw_cldm(d, context_dim)?;
    let b = d.range(1, 2);
    let (h, w) = (latent_side(d, &cfg), latent_side(d, &cfg));
    let inputs = unet_inputs(d, &cfg, b, h, w);
    let c_img = d.normal_data(&[b, 4, h, w]);
    let residuals = model.controlnet.zero_convs.len() + 1;
    let scales: Vec<f64> = if d.coin() {
        Vec::new()
    } else {
        (0..residuals).map(|_| d.uniform_f64(0.0, 2.0)).collect()
    };
    let config = format!(
        "{} {} scales={}",
        describe_unet(&cfg),
        inputs.shapes,
        if scales.is_empty() {
            "default"
        } else {
            "random"
        }
    );
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let cldm = cldm_on(&model, device, setting);
        let eps = cldm.forward(
            draw::float(&inputs.x, device, DType::F32),
            draw::float(&inputs.t, device, DType::F32),
            &draw::float(&inputs.context, device, DType::F32),
            draw::float(&c_img, device, DType::F32),
            &scales,
        );
        Ok(vec![output("eps", eps)?])
    })
    .params(params))
}
