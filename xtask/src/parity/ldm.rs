//! Builders of the Stable Diffusion part cases: the VAE, the UNet, the IRControlNet and
//! `ControlLdm`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::{Device, Tensor};
use diffbir::controlnet::{CONTROLNET_KEYS, ControlLdm, ControlNetConfig};
use diffbir::core::NoiseSource;
use diffbir::core::{Checkpoint, load_into};
use diffbir::ldm::clip::{CLIP_EMBEDDER_KEYS, CLIP_SD21_KEYS};
use diffbir::ldm::sd::StableDiffusionConfig;
use diffbir::ldm::unet::{Control, SD_UNET_KEYS, UNET_KEYS, UnetConfig};
use diffbir::ldm::vae::{Latent, SD_VAE_KEYS, VAE_KEYS, VaeConfig, VaeTiles};
use diffbir::ldm::vae_tiled::{DECODER_PAD, ENCODER_PAD, VaeTile, split_tiles};

use super::{Case, Outputs, weights};

/// `vae_forward`: encode (moments, mean, clamped log-variance, std, mode, a sample with the
/// recorded noise) and decode (of the given latent and of the mode).
pub fn vae(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(VaeConfig::new())?;
    cfg.validate()?;
    let mut vae = cfg.init(device);
    weights::load(case, &mut vae, &VAE_KEYS)?;
    let x = case.float::<4>("input.x", device)?;
    let z = case.float::<4>("input.z", device)?;
    let moments = vae.quant_conv.forward(vae.encoder.forward(x));
    let posterior = diffbir::ldm::vae::DiagonalGaussian::from_moments(moments.clone());
    let mut noise = NoiseSource::replay(case.noise_draws());
    let mut out = Outputs::default();
    out.tensor("output.moments", moments);
    out.tensor("output.mean", posterior.mean.clone());
    out.tensor("output.logvar_clamped", posterior.logvar.clone());
    out.tensor("output.std", posterior.std.clone());
    out.tensor("output.mode", posterior.mode());
    out.tensor("output.sample", posterior.sample(&mut noise));
    out.tensor("output.decoded", vae.decode(z));
    out.tensor("output.decoded_from_mode", vae.decode(posterior.mode()));
    Ok(out)
}

/// `unet_forward`: the UNet with the recorded control residuals, without control, and with
/// only the middle residual.
pub fn unet(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(UnetConfig::new())?;
    cfg.validate()?;
    let mut unet = cfg.init(device);
    weights::load(case, &mut unet, &UNET_KEYS)?;
    let x = case.float::<4>("input.x", device)?;
    let t = case.int::<1>("input.t", device)?.float();
    let context = case.float::<3>("input.context", device)?;
    let controls: Vec<Tensor<4>> = case
        .names_with_prefix("input.control.")
        .iter()
        .map(|name| case.float::<4>(name, device))
        .collect::<Result<_>>()?;
    let mut out = Outputs::default();
    let run = |control| unet.forward(x.clone(), t.clone(), &context, control);
    out.tensor("output.eps_control", run(Control::Residuals(&controls)));
    out.tensor("output.eps_no_control", run(Control::None));
    out.tensor(
        "output.eps_only_mid_control",
        run(Control::OnlyMid(&controls)),
    );
    Ok(out)
}

/// `controlnet_forward`: the IRControlNet's residuals, in order.
pub fn controlnet(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(ControlNetConfig::new())?;
    let mut cn = cfg.init(device)?;
    weights::load(case, &mut cn, &CONTROLNET_KEYS)?;
    let x = case.float::<4>("input.x", device)?;
    let hint = case.float::<4>("input.hint", device)?;
    let t = case.int::<1>("input.t", device)?.float();
    let context = case.float::<3>("input.context", device)?;
    let mut out = Outputs::default();
    for (k, residual) in cn.forward(x, hint, t, &context).into_iter().enumerate() {
        out.tensor(format!("output.control.{k:02}"), residual);
    }
    Ok(out)
}

/// Builds the case's `ControlLdm` (UNet and IRControlNet) from `unet_cfg`/`controlnet_cfg`
/// under the JSON pointer `base`, and its weight files.
pub(super) fn control_ldm_at(case: &Case, base: &str, device: &Device) -> Result<ControlLdm> {
    let unet_cfg = case.config_at(&format!("{base}/unet_cfg"), UnetConfig::new())?;
    let cn_cfg = case.config_at(&format!("{base}/controlnet_cfg"), ControlNetConfig::new())?;
    unet_cfg.validate()?;
    let mut unet = unet_cfg.init(device);
    let mut controlnet = cn_cfg.init(device)?;
    weights::load_part(case, "unet", &mut unet, &UNET_KEYS)?;
    weights::load_part(case, "controlnet", &mut controlnet, &CONTROLNET_KEYS)?;
    Ok(ControlLdm { unet, controlnet })
}

/// `cldm_forward`: `ControlLDM.forward` with the default (all 1) and the case's control scales.
pub fn cldm(case: &Case, device: &Device) -> Result<Outputs> {
    let cldm = control_ldm_at(case, "/config", device)?;
    let x = case.float::<4>("input.x", device)?;
    let t = case.int::<1>("input.t", device)?.float();
    let c_txt = case.float::<3>("input.c_txt", device)?;
    let c_img = case.float::<4>("input.c_img", device)?;
    let scales: Vec<f64> = serde_json::from_value(case.field("/control_scales")?.clone())?;
    let mut out = Outputs::default();
    out.tensor(
        "output.eps_default_scales",
        cldm.forward(x.clone(), t.clone(), &c_txt, c_img.clone(), &[]),
    );
    out.tensor(
        "output.eps_custom_scales",
        cldm.forward(x, t, &c_txt, c_img, &scales),
    );
    Ok(out)
}

/// `cldm_controlnet_from_unet`: a fresh IRControlNet initialised from the UNet. The outputs
/// are the tensors that are not plain copies; the case's key lists are checked too.
pub fn controlnet_from_unet(case: &Case, device: &Device) -> Result<Outputs> {
    let unet_cfg = case.config_at("/config/unet_cfg", UnetConfig::new())?;
    let cn_cfg = case.config_at("/config/controlnet_cfg", ControlNetConfig::new())?;
    unet_cfg.validate()?;
    let mut unet = unet_cfg.init(device);
    weights::load_part(case, "unet", &mut unet, &UNET_KEYS)?;
    let mut cn = cn_cfg.init(device)?;
    let report = cn.init_from_unet(&unet)?;
    let list = |name: &str| -> Result<Vec<String>> {
        let v = case.field(&format!("/result/{name}"))?.clone();
        Ok(serde_json::from_value(v)?)
    };
    let module_path = |key: &str| CONTROLNET_KEYS.rename(key).unwrap_or_default();
    let expect = |name: &str, got: &[String]| -> Result<()> {
        let mut want: Vec<String> = list(name)?.iter().map(|k| module_path(k)).collect();
        let mut got: Vec<String> = got
            .iter()
            .map(|k| k.replace(".gamma", ".weight").replace(".beta", ".bias"))
            .collect();
        want.sort();
        got.sort();
        if want != got {
            bail!(
                "`{name}`: the case lists {} keys, the port {} ({:?} vs {:?})",
                want.len(),
                got.len(),
                want.first(),
                got.first()
            );
        }
        Ok(())
    };
    expect("copied_from_unet", &report.copied)?;
    expect("init_with_new_zero", &report.padded)?;
    expect("init_with_scratch", &report.fresh)?;
    let tensors: BTreeMap<String, _> = cn
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut out = Outputs::default();
    for name in case.names_with_prefix("output.controlnet.") {
        let key = &name["output.controlnet.".len()..];
        let path = module_path(key);
        let snapshot = tensors
            .get(&path)
            .with_context(|| format!("the ControlNet has no `{path}`"))?;
        let data = bridge::to_data(snapshot).map_err(|e| anyhow::anyhow!("{e}"))?;
        let shape = data.shape().to_vec();
        let values = data
            .convert::<f64>()
            .try_into_vec::<f64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        out.values(name, shape, values);
    }
    Ok(out)
}

/// `vae_tiled`: tiled encoding or decoding (whichever tile size the case gives), with the
/// tile boxes checked against the case's `result`.
pub fn vae_tiled(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config_at("/cldm/config/vae_cfg", VaeConfig::new())?;
    cfg.validate()?;
    let mut vae = cfg.init(device);
    weights::load_part(case, "vae", &mut vae, &VAE_KEYS)?;
    let check_boxes = |pointer: &str, tiles: &[VaeTile]| -> Result<()> {
        let expected: Vec<Vec<usize>> = serde_json::from_value(case.field(pointer)?.clone())?;
        let input: Vec<Vec<usize>> = tiles.iter().map(|t| t.input.to_vec()).collect();
        let output: Vec<Vec<usize>> = tiles.iter().map(|t| t.output.to_vec()).collect();
        let got = if pointer.ends_with("input_bboxes_xxyy") {
            input
        } else {
            output
        };
        if got != expected {
            bail!("{pointer}: the port tiles as {got:?}, the case as {expected:?}");
        }
        Ok(())
    };
    let mut out = Outputs::default();
    if let Ok(tile) = case.usize_field("/decoder_tile_size") {
        let z = case.float::<4>("input.z", device)?;
        let [_, _, h, w] = z.dims();
        let tiles = split_tiles(h, w, tile, DECODER_PAD, true);
        check_boxes("/result/decoder_tiles/input_bboxes_xxyy", &tiles)?;
        check_boxes("/result/decoder_tiles/output_bboxes_xxyy", &tiles)?;
        out.tensor(
            "output.decoded_tiled",
            vae.decode_latent(&Latent(z), Some(VaeTiles::Synced(tile)))?,
        );
    } else {
        let tile = case.usize_field("/encoder_tile_size")?;
        let image = case.float::<4>("input.image", device)?;
        let [_, _, h, w] = image.dims();
        let tiles = split_tiles(h, w, tile, ENCODER_PAD, false);
        check_boxes("/result/encoder_tiles/input_bboxes_xxyy", &tiles)?;
        check_boxes("/result/encoder_tiles/output_bboxes_xxyy", &tiles)?;
        out.tensor(
            "output.latent_tiled",
            vae.encode_latent(image.clone(), Some(VaeTiles::Synced(tile)), None)?
                .0,
        );
        out.tensor(
            "output.latent_untiled",
            vae.encode_latent(image, None, None)?.0,
        );
    }
    Ok(out)
}

/// `sd_checkpoint_load`: the SD checkpoint through the three parts' key maps and the raw
/// ControlNet file strictly; the loaded tensors must equal the case's weight files, and the
/// keys left over must be the ones the original reports as unused.
pub fn sd_checkpoint_load(case: &Case, device: &Device) -> Result<Outputs> {
    let config = StableDiffusionConfig {
        unet: case.config_at("/config/unet_cfg", UnetConfig::new())?,
        vae: case.config_at("/config/vae_cfg", VaeConfig::new())?,
        clip: super::clip::config_at(case, "/config/clip_cfg")?,
    };
    let cn_cfg = case.config_at("/config/controlnet_cfg", ControlNetConfig::new())?;
    let sd_file = case
        .field("/sd_checkpoint")?
        .as_str()
        .context("`sd_checkpoint`")?;
    let cn_file = case
        .field("/controlnet_checkpoint")?
        .as_str()
        .context("`controlnet_checkpoint`")?;

    let sd_ckpt = Checkpoint::open(case.dir.join(sd_file))?;
    let mut sd = config.init(device)?;
    let report = sd.apply(&sd_ckpt)?;
    let mut controlnet = cn_cfg.init(device)?;
    let cn_report = load_into(
        &mut controlnet,
        &Checkpoint::open(case.dir.join(cn_file))?,
        &CONTROLNET_KEYS,
    )?;

    // What the original reports: keys of the file no part took, and part keys it lacked.
    let prefixes = [
        SD_UNET_KEYS.prefix,
        SD_VAE_KEYS.prefix,
        CLIP_SD21_KEYS.prefix,
    ];
    let mut unused: Vec<String> = report
        .unused
        .iter()
        .chain(
            report
                .dropped
                .iter()
                .filter(|k| !prefixes.iter().any(|p| k.starts_with(p))),
        )
        .cloned()
        .collect();
    unused.sort();
    let mut expected_unused: Vec<String> =
        serde_json::from_value(case.field("/result/unused")?.clone())?;
    expected_unused.sort();
    if unused != expected_unused {
        bail!("unused keys {unused:?}, the original reports {expected_unused:?}");
    }
    let expected_missing: Vec<String> =
        serde_json::from_value(case.field("/result/missing")?.clone())?;
    if report.missing.len() != expected_missing.len() || !report.mismatched.is_empty() {
        bail!(
            "missing {:?} / mismatched {:?}, the original misses {expected_missing:?}",
            report.missing,
            report.mismatched
        );
    }

    // The loaded parts equal the same weights loaded from the case's weight files.
    let mut reference = config.init(device)?;
    weights::load_part(case, "unet", &mut reference.unet, &UNET_KEYS)?;
    weights::load_part(case, "vae", &mut reference.vae, &VAE_KEYS)?;
    weights::load_part(case, "clip", &mut reference.clip, &CLIP_EMBEDDER_KEYS)?;
    let mut reference_cn = cn_cfg.init(device)?;
    weights::load_part(case, "controlnet", &mut reference_cn, &CONTROLNET_KEYS)?;
    same_tensors(&sd, &reference)?;
    same_tensors(&controlnet, &reference_cn)?;

    // The original counts every tensor of the loaded ControlLDM state dict; the port recomputes
    // the scalar it cannot hold (`logit_scale`) and counts it as the original loads it.
    let dropped_inside = report
        .dropped
        .iter()
        .filter(|k| prefixes.iter().any(|p| k.starts_with(p)))
        .count();
    let loaded = report.applied.len() + dropped_inside + cn_report.applied.len();
    let mut out = Outputs::default();
    out.values("output.num_loaded_tensors", vec![], vec![loaded as f64]);
    Ok(out)
}

fn same_tensors<M: ModuleSnapshot>(a: &M, b: &M) -> Result<()> {
    let b: BTreeMap<String, _> = b
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    for t in a.collect(None, None, true) {
        let other = b
            .get(&t.name)
            .with_context(|| format!("`{}` missing from the reference", t.name))?;
        let (x, y) = (bridge::to_data(&t), bridge::to_data(other));
        let (x, y) = (
            x.map_err(|e| anyhow::anyhow!("{e}"))?,
            y.map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        if x.as_bytes() != y.as_bytes() {
            bail!("`{}` differs from the case's weight file", t.name);
        }
    }
    Ok(())
}
