//! Builders of the metric cases (`testing/fixtures/metrics`, written by
//! `xtask/reference/gen_metric_cases.py`): BasicSR's and pyiqa's PSNR and SSIM, LPIPS,
//! CLIP-IQA.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use diffbir::core::Checkpoint;
use diffbir::ldm::clip::{ClipLayer, ClipTextConfig};
use diffbir::metrics::clip_iqa::{ClipIqa, ClipIqaConfig, ModifiedResNetConfig};
use diffbir::metrics::{
    FrOptions, LPIPS_LIN_KEYS, LPIPS_TRUNK_KEYS, LpipsConfig, LpipsNet, Metric, MetricImage, Scorer,
};

use super::{Case, Outputs, weights};

/// A stored `[H, W, C]` uint8 image.
fn image(case: &Case, name: &str) -> Result<MetricImage> {
    let t = case.stored(name)?;
    let [h, w, c] = t.shape[..] else {
        bail!("`{name}` is not an [H, W, C] image: shape {:?}", t.shape);
    };
    Ok(MetricImage::new(
        w,
        h,
        c,
        t.values.iter().map(|&v| v as u8).collect(),
    )?)
}

/// `metric_scores`: the case's metrics on each pair, with its crop and luma setting.
pub fn scores(case: &Case, device: &Device) -> Result<Outputs> {
    let metrics: Vec<Metric> = case
        .field("/metrics")?
        .as_array()
        .context("`metrics` is not a list")?
        .iter()
        .map(|m| {
            m.as_str()
                .context("a metric is not a string")?
                .parse::<Metric>()
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<_>>()?;
    let options = FrOptions {
        crop_border: case.usize_field("/crop_border")?,
        y_channel: case
            .field("/y_channel")?
            .as_bool()
            .context("`y_channel` is not a boolean")?,
    };
    let scorer = Scorer::new(&metrics, options, device);
    let mut out = Outputs::default();
    for i in 0..case.usize_field("/pairs")? {
        let restored = image(case, &format!("input.{i}.restored"))?;
        let reference = image(case, &format!("input.{i}.reference"))?;
        for (metric, value) in scorer.score(&restored, Some(&reference))? {
            out.values(format!("output.{i}.{metric}"), vec![1], vec![value]);
        }
    }
    Ok(out)
}

/// `lpips_forward`: the distance and its per-tap terms for each pair of batches.
pub fn lpips(case: &Case, device: &Device) -> Result<Outputs> {
    let net: LpipsNet = case
        .field("/net")?
        .as_str()
        .context("`net` is not a string")?
        .parse()
        .map_err(anyhow::Error::msg)?;
    let widths: [usize; 5] = serde_json::from_value(case.field("/widths")?.clone())
        .context("`widths` is not a list of five integers")?;
    let cfg = LpipsConfig::new(net).with_widths(Some(widths));
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load_part(case, "trunk", &mut model.trunk, &LPIPS_TRUNK_KEYS)?;
    weights::load_part(case, "lin", &mut model.lin, &LPIPS_LIN_KEYS)?;
    let normalize = case.field("/normalize")?.as_bool().unwrap_or(false);
    let mut out = Outputs::default();
    for i in 0..case.usize_field("/pairs")? {
        let in0 = case.float::<4>(&format!("input.{i}.in0"), device)?;
        let in1 = case.float::<4>(&format!("input.{i}.in1"), device)?;
        let (total, layers) = model.forward_layers(in0, in1, normalize);
        out.tensor(format!("output.{i}.lpips"), total);
        for (k, r) in layers.into_iter().enumerate() {
            out.tensor(format!("output.{i}.res{k}"), r);
        }
    }
    Ok(out)
}

/// `clipiqa_forward`: the prompts' features, and each image's features, logits and score.
pub fn clipiqa(case: &Case, device: &Device) -> Result<Outputs> {
    let c = |key: &str| case.usize_field(&format!("/clip_config/{key}"));
    let layers: [usize; 4] =
        serde_json::from_value(case.field("/clip_config/vision_layers")?.clone())
            .context("`vision_layers` is not a list of four integers")?;
    let spatial = c("attnpool_spacial_dim")?;
    let config = ClipIqaConfig {
        visual: ModifiedResNetConfig {
            layers,
            width: c("vision_width")?,
            heads: c("vision_heads")?,
            output_dim: c("embed_dim")?,
            positions: spatial * spatial + 1,
        },
        text: ClipTextConfig::new()
            .with_width(c("transformer_width")?)
            .with_heads(c("transformer_heads")?)
            .with_layers(c("transformer_layers")?)
            .with_embed_dim(c("embed_dim")?)
            .with_context_length(c("context_length")?)
            .with_vocab_size(c("vocab_size")?)
            .with_layer(ClipLayer::Last),
    };
    let file = case
        .field("/weights/0/file")?
        .as_str()
        .context("the weights entry has no file")?;
    let checkpoint = Checkpoint::open(case.dir.join(file))?;
    let tokens = case.int::<2>("input.tokens", device)?;
    let model = ClipIqa::from_parts(&config, &checkpoint, tokens, device)?;
    let mut out = Outputs::default();
    out.tensor("output.text_features", model.text_features());
    let images = case.names_with_prefix("input.").len() - 1;
    for i in 0..images {
        let x = case.float::<4>(&format!("input.{i}.image"), device)?;
        let (features, logits) = model.features(x.clone());
        out.tensor(format!("output.{i}.image_features"), features);
        out.tensor(format!("output.{i}.logits"), logits);
        out.tensor(format!("output.{i}.score"), model.forward(x));
    }
    Ok(out)
}
