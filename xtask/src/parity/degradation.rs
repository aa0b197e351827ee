//! Builders of the training-degradation cases: blur kernels, `filter2D` and USM sharpening,
//! DiffJPEG, the CodeFormer dataset's OpenCV ops and `add_gaussian_noise_pt`.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use diffbir_core::NoiseSource;
use diffbir_train::degradation::cv::{self, HwcImage};
use diffbir_train::degradation::filter::{UsmSharp, filter2d};
use diffbir_train::degradation::jpeg::{DiffJpeg, JpegQuality};
use diffbir_train::degradation::kernels::{self, Kernel};
use diffbir_train::degradation::noise::add_gaussian_noise_pt;
use serde_json::Value;

use super::{Case, Outputs};

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("`{key}` is missing or not a number"))
}

fn uint(v: &Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .with_context(|| format!("`{key}` is missing or not an unsigned integer"))
}

fn flag(v: &Value, key: &str) -> Result<bool> {
    v.get(key)
        .and_then(Value::as_bool)
        .with_context(|| format!("`{key}` is missing or not a boolean"))
}

fn kernel_values(out: &mut Outputs, name: &str, k: Kernel) {
    out.values(format!("output.{name}"), vec![k.size, k.size], k.values);
}

/// `degradation_kernels`: every kernel listed in `kernels`, by its `fn` and `args`.
pub fn degradation_kernels(case: &Case, _device: &Device) -> Result<Outputs> {
    let mut out = Outputs::default();
    let list = case
        .field("/kernels")?
        .as_array()
        .context("`kernels` is not a list")?;
    for entry in list {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .context("a kernel entry has no `name`")?;
        let func = entry
            .get("fn")
            .and_then(Value::as_str)
            .context("a kernel entry has no `fn`")?;
        let args = entry.get("args").context("a kernel entry has no `args`")?;
        let pad_to_21 = entry
            .get("pad_to_21")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let pad = |k: Kernel| if pad_to_21 { k.pad_to(21) } else { k };
        match func {
            "mesh_grid" => {
                let k = uint(args, "kernel_size")?;
                out.values(
                    format!("output.{name}"),
                    vec![k, k, 2],
                    kernels::mesh_grid(k),
                );
            }
            "sigma_matrix2" => {
                let m = kernels::sigma_matrix2(
                    num(args, "sig_x")?,
                    num(args, "sig_y")?,
                    num(args, "theta")?,
                );
                out.values(format!("output.{name}"), vec![2, 2], m.concat());
            }
            "bivariate_Gaussian" => {
                let k = kernels::bivariate_gaussian(
                    uint(args, "kernel_size")?,
                    num(args, "sig_x")?,
                    num(args, "sig_y")?,
                    num(args, "theta")?,
                    flag(args, "isotropic")?,
                )?;
                kernel_values(&mut out, name, pad(k));
            }
            "bivariate_generalized_Gaussian" => {
                let k = kernels::bivariate_generalized_gaussian(
                    uint(args, "kernel_size")?,
                    num(args, "sig_x")?,
                    num(args, "sig_y")?,
                    num(args, "theta")?,
                    num(args, "beta")?,
                    flag(args, "isotropic")?,
                )?;
                kernel_values(&mut out, name, pad(k));
            }
            "bivariate_plateau" => {
                let k = kernels::bivariate_plateau(
                    uint(args, "kernel_size")?,
                    num(args, "sig_x")?,
                    num(args, "sig_y")?,
                    num(args, "theta")?,
                    num(args, "beta")?,
                    flag(args, "isotropic")?,
                )?;
                kernel_values(&mut out, name, pad(k));
            }
            "circular_lowpass_kernel" => {
                let k = kernels::circular_lowpass_kernel(
                    num(args, "cutoff")?,
                    uint(args, "kernel_size")?,
                    uint(args, "pad_to")?,
                )?;
                kernel_values(&mut out, name, pad(k));
            }
            other => bail!("unknown kernel function `{other}`"),
        }
    }
    Ok(out)
}

/// `usm_filter2d`: the USM kernel, USM sharpening, and `filter2D` with per-sample kernels and
/// with the first kernel for the whole batch.
pub fn usm_filter2d(case: &Case, device: &Device) -> Result<Outputs> {
    let img = case.float::<4>("input.img", device)?;
    let kernels = case.float::<3>("input.kernels", device)?;
    let radius = case.usize_field("/usm_ctor/radius")?;
    let sigma = case
        .field("/usm_ctor/sigma")?
        .as_f64()
        .context("`usm_ctor.sigma` is not a number")?;
    let weight = case
        .field("/usm_call/weight")?
        .as_f64()
        .context("`usm_call.weight` is not a number")?;
    let threshold = case
        .field("/usm_call/threshold")?
        .as_f64()
        .context("`usm_call.threshold` is not a number")?;
    let usm = UsmSharp::new(radius, sigma, device)?;
    let mut out = Outputs::default();
    out.tensor("output.usm_kernel", usm.kernel());
    out.tensor(
        "output.usm_sharp",
        usm.forward(img.clone(), weight, threshold)?,
    );
    out.tensor(
        "output.filter2d_batch_kernels",
        filter2d(img.clone(), kernels.clone())?,
    );
    let [_, k, _] = kernels.dims();
    out.tensor(
        "output.filter2d_single_kernel",
        filter2d(img, kernels.slice([0..1, 0..k, 0..k]))?,
    );
    Ok(out)
}

/// `diffjpeg`: per-sample qualities with both roundings, and one scalar quality.
pub fn diffjpeg(case: &Case, device: &Device) -> Result<Outputs> {
    let img = case.float::<4>("input.img", device)?;
    let quality = case.float::<1>("input.quality", device)?;
    let scalar = case
        .field("/scalar_quality")?
        .as_f64()
        .context("`scalar_quality` is not a number")?;
    let mut out = Outputs::default();
    for (differentiable, name) in [
        (false, "output.jpeg_differentiable_false"),
        (true, "output.jpeg_differentiable_true"),
    ] {
        let jpeg = DiffJpeg::new(differentiable, device);
        let q = JpegQuality::PerSample(quality.clone());
        out.tensor(name, jpeg.forward(img.clone(), &q)?);
    }
    // The scalar call of the original uses the training configuration (torch rounding).
    let jpeg = DiffJpeg::new(false, device);
    out.tensor(
        "output.jpeg_scalar_quality",
        jpeg.forward(img, &JpegQuality::Uniform(scalar))?,
    );
    Ok(out)
}

fn hwc(case: &Case, name: &str) -> Result<HwcImage> {
    let t = case.stored(name)?;
    let [h, w, c] = t.shape[..] else {
        bail!("`{name}` must be [H, W, C]");
    };
    let data = t.values.iter().map(|v| *v as f32).collect();
    Ok(HwcImage::new(h, w, c, data)?)
}

fn put_hwc(out: &mut Outputs, name: &str, img: HwcImage) {
    out.values(
        name,
        vec![img.height, img.width, img.channels],
        img.data.into_iter().map(f64::from).collect(),
    );
}

/// `codeformer_ops`: `cv2.filter2D` blur, `INTER_LINEAR` downscale by `downsample_scale`, and
/// back to the original size.
pub fn codeformer_ops(case: &Case, _device: &Device) -> Result<Outputs> {
    let img = hwc(case, "input.img_gt_bgr_hwc")?;
    let k = case.stored("input.kernel")?;
    let [kh, kw] = k.shape[..] else {
        bail!("`input.kernel` must be [k, k]");
    };
    if kh != kw {
        bail!("`input.kernel` must be square");
    }
    let kernel = Kernel {
        size: kh,
        values: k.values.clone(),
    };
    let scale = case
        .field("/downsample_scale")?
        .as_f64()
        .context("`downsample_scale` is not a number")?;
    let blurred = cv::filter2d(&img, &kernel)?;
    let (w, h) = cv::downsampled_size(img.width, img.height, scale)?;
    let small = cv::resize_linear(&blurred, w, h)?;
    let back = cv::resize_linear(&small, img.width, img.height)?;
    let mut out = Outputs::default();
    put_hwc(&mut out, "output.blurred", blurred);
    put_hwc(&mut out, "output.downsampled", small);
    put_hwc(&mut out, "output.resized_back", back);
    Ok(out)
}

/// `gaussian_noise_pt`: `add_gaussian_noise_pt(img, sigma, gray_noise)` (clip, no rounding)
/// with the recorded draws replayed.
pub fn gaussian_noise_pt(case: &Case, device: &Device) -> Result<Outputs> {
    let img = case.float::<4>("input.img", device)?;
    let sigma = case.float::<1>("input.sigma", device)?;
    let gray = case.float::<1>("input.gray_noise", device)?;
    let mut noise = NoiseSource::replay(case.noise_draws());
    let noisy = add_gaussian_noise_pt(img, sigma, gray, true, false, &mut noise)?;
    if noise.remaining() != 0 {
        bail!("{} recorded draws were not used", noise.remaining());
    }
    let mut out = Outputs::default();
    out.tensor::<4>("output.noisy", noisy);
    Ok(out)
}
