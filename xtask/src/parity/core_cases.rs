//! Builders of the diffbir-core cases: colour fixes and tiling.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use diffbir_core::color;
use diffbir_core::tiling::{self, TileScale, TileSpec};
use serde_json::Value;

use super::{Case, Outputs, standin};

/// `colorfix`: wavelet blur per radius, decomposition, reconstruction, and AdaIN.
pub fn colorfix(case: &Case, device: &Device) -> Result<Outputs> {
    let content = case.float::<4>("input.content", device)?;
    let style = case.float::<4>("input.style", device)?;
    let mut out = Outputs::default();
    for name in case.output_names() {
        if let Some(radius) = name.strip_prefix("output.wavelet_blur_r") {
            let radius: usize = radius
                .parse()
                .with_context(|| format!("`{name}` does not end in a radius"))?;
            out.tensor(name.clone(), color::wavelet_blur(content.clone(), radius));
        }
    }
    let (high, low) = color::wavelet_decomposition(content.clone());
    out.tensor("output.content_high_freq", high);
    out.tensor("output.content_low_freq", low);
    out.tensor(
        "output.wavelet_reconstruction",
        color::wavelet_reconstruction(content.clone(), style.clone()),
    );
    let (style_mean, style_std) = color::channel_mean_std(style.clone(), 1e-5);
    out.tensor("output.style_mean", style_mean);
    out.tensor("output.style_std", style_std);
    out.tensor(
        "output.adain",
        color::adaptive_instance_normalization(content, style),
    );
    Ok(out)
}

fn dims(v: &Value, what: &str) -> Result<Vec<usize>> {
    v.as_array()
        .with_context(|| format!("{what} is not a list"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as usize)
                .with_context(|| format!("{what} holds a non-integer"))
        })
        .collect()
}

/// `tiled_windows`: sliding windows, Gaussian weights and tiled evaluation of the stand-in.
pub fn tiled_windows(case: &Case, device: &Device) -> Result<Outputs> {
    let mut out = Outputs::default();
    let windows = case
        .field("/windows")?
        .as_array()
        .context("`windows` is not a list")?;
    for (j, args) in windows.iter().enumerate() {
        let get = |k: &str| {
            args.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .with_context(|| format!("windows[{j}] has no `{k}`"))
        };
        let boxes =
            tiling::sliding_windows(get("h")?, get("w")?, get("tile_size")?, get("tile_stride")?)?;
        let coords = boxes
            .iter()
            .flat_map(|b| [b.hi, b.hi_end, b.wi, b.wi_end].map(|v| v as f64))
            .collect();
        out.values(
            format!("output.windows{j}.coords"),
            vec![boxes.len(), 4],
            coords,
        );
    }
    let weights = case
        .field("/gaussian_weights")?
        .as_array()
        .context("`gaussian_weights` is not a list")?;
    for (j, args) in weights.iter().enumerate() {
        let wh = dims(args, "gaussian_weights entry")?;
        let [w, h] = wh[..] else {
            bail!("gaussian_weights[{j}] must be [tile_width, tile_height]");
        };
        out.values(
            format!("output.gaussian_weights{j}"),
            vec![h, w],
            tiling::gaussian_weights(w, h),
        );
    }

    let formula = case.field("/standin_formula")?.as_str().unwrap_or_default();
    if formula != standin::TILED_FORMULA {
        bail!("unknown stand-in formula `{formula}`");
    }
    let x = case.float::<4>("input.x", device)?;
    let t = case.int::<1>("input.t", device)?;
    let c_txt = case.float::<3>("input.c_txt", device)?;
    let c_img = case.float::<4>("input.c_img", device)?;
    let spec = TileSpec {
        size: case.usize_field("/tiled_model/tile_size")?,
        stride: case.usize_field("/tiled_model/tile_stride")?,
        scale: TileScale::Up(1),
    };
    let [b, c, _, _] = c_img.dims();
    let tiled = tiling::tiled_apply(x.clone(), spec, |tile, bx| {
        let crop = c_img
            .clone()
            .slice([0..b, 0..c, bx.hi..bx.hi_end, bx.wi..bx.wi_end]);
        standin::tiled_standin(tile, &t, &c_txt, crop)
    })?;
    out.tensor("output.tiled_model_out", tiled);
    out.tensor(
        "output.untiled_model_out",
        standin::tiled_standin(x, &t, &c_txt, c_img),
    );
    Ok(out)
}
