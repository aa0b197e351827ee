//! Builders of the resizing cases: short-edge resize, padding, antialiased bicubic, PIL
//! bicubic upscaling, and the pipeline's post-processing.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::color::ColorFix;
use diffbir_core::resize;
use serde_json::Value;

use super::{Case, Outputs};

/// The unsigned integers of a JSON list.
fn usizes(v: &Value, what: &str) -> Result<Vec<usize>> {
    v.as_array()
        .with_context(|| format!("`{what}` is not a list"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as usize)
                .with_context(|| format!("`{what}` holds a non-integer"))
        })
        .collect()
}

/// `resize_ops`: `resize_short_edge_to` per size, `pad_to_multiples_of` per multiple, the
/// antialiased bicubic resize per size, and PIL's bicubic upscaling of an 8-bit image.
pub fn resize_ops(case: &Case, device: &Device) -> Result<Outputs> {
    let img = case.float::<4>("input.img", device)?;
    let mut out = Outputs::default();
    for size in usizes(case.field("/short_edge_sizes")?, "short_edge_sizes")? {
        out.tensor(
            format!("output.resize_short_edge_to_{size}"),
            resize::resize_short_edge_to(img.clone(), size)?,
        );
    }
    for multiple in usizes(case.field("/pad_multiples")?, "pad_multiples")? {
        let (padded, padding) = resize::pad_to_multiples_of(img.clone(), multiple)?;
        let back = padding.unpad(padded.clone())?;
        if back.dims() != img.dims() {
            bail!(
                "unpadding {:?} gave {:?}, not the input's {:?}",
                padded.dims(),
                back.dims(),
                img.dims()
            );
        }
        out.tensor(format!("output.pad_to_multiples_of_{multiple}"), padded);
    }
    let sizes = case
        .field("/bicubic_aa_sizes")?
        .as_array()
        .context("`bicubic_aa_sizes` is not a list")?;
    for size in sizes {
        let [h, w] = usizes(size, "bicubic_aa_sizes entry")?[..] else {
            bail!("a `bicubic_aa_sizes` entry must be [height, width]");
        };
        out.tensor(
            format!("output.bicubic_antialias_{h}x{w}"),
            resize::resize_bicubic_antialias(img.clone(), h, w)?,
        );
    }

    // PIL: Image.resize((int(w·upscale), int(h·upscale)), BICUBIC) on the uint8 RGB input.
    let lq = case.stored("input.lq_uint8_hwc")?;
    let [h, w, c] = lq.shape[..] else {
        bail!("`input.lq_uint8_hwc` must be [H, W, C]");
    };
    let pixels: Vec<u8> = lq.values.iter().map(|v| *v as u8).collect();
    let upscale = case
        .field("/pil_upscale")?
        .as_f64()
        .context("`pil_upscale` is not a number")?;
    let (out_w, out_h) = resize::upscaled_size(
        u32::try_from(w).context("input width")?,
        u32::try_from(h).context("input height")?,
        upscale,
    )?;
    let (out_w, out_h) = (out_w as usize, out_h as usize);
    let upscaled = resize::pil_resize_bicubic_interleaved(&pixels, w, h, c, out_w, out_h)?;
    out.values(
        "output.pil_bicubic_uint8_hwc",
        vec![out_h, out_w, c],
        upscaled.iter().map(|v| f64::from(*v)).collect(),
    );
    // Pipeline.run: float32 / 255, clamp to [0, 1], NHWC → NCHW.
    let hwc: Vec<f32> = upscaled.iter().map(|v| f32::from(*v) / 255.0).collect();
    let lq_tensor = Tensor::<4>::from_data(TensorData::new(hwc, [1, out_h, out_w, c]), device)
        .clamp(0.0, 1.0)
        .permute([0, 3, 1, 2]);
    out.tensor("output.lq_tensor", lq_tensor);
    Ok(out)
}

/// `pipeline_postprocess`: the wavelet colour fix of `(sample + 1)/2` against the condition,
/// the antialiased bicubic resize to `output_size`, and the truncating uint8 quantisation
/// (NHWC).
pub fn pipeline_postprocess(case: &Case, device: &Device) -> Result<Outputs> {
    let sample = case.float::<4>("input.sample", device)?;
    let cond_img = case.float::<4>("input.cond_img", device)?;
    let [out_h, out_w] = usizes(case.field("/output_size")?, "output_size")?[..] else {
        bail!("`output_size` must be [height, width]");
    };
    let resized = resize::postprocess(sample, cond_img, ColorFix::Wavelet, out_h, out_w)?;

    // The float result before quantisation is recorded as an intermediate: check it too, so
    // a quantisation mismatch can be told apart from a resampling one.
    if let Ok(expected) = case.stored("inter.resized") {
        let tol = case.tolerance();
        let actual: Vec<f32> = resized.clone().into_data().try_into_vec_as::<f32>()?;
        if expected.shape != resized.dims() {
            bail!(
                "inter.resized: shape {:?}, expected {:?}",
                resized.dims(),
                expected.shape
            );
        }
        for (i, (a, e)) in actual.iter().zip(&expected.values).enumerate() {
            let diff = (f64::from(*a) - e).abs();
            if diff.is_nan() || diff > tol.atol + tol.rtol * e.abs() {
                bail!("inter.resized: |diff| {diff:.3e} at flat index {i} (got {a}, expected {e})");
            }
        }
    }

    let images = resize::to_rgb8_images(resized)?;
    let values = images
        .iter()
        .flat_map(|img| img.as_raw().iter().map(|v| f64::from(*v)))
        .collect();
    let mut out = Outputs::default();
    out.values(
        "output.uint8_nhwc",
        vec![images.len(), out_h, out_w, 3],
        values,
    );
    Ok(out)
}
