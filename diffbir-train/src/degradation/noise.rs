//! Gaussian and Poisson noise of the degradation (`add_gaussian_noise_pt`,
//! `add_poisson_noise_pt`), and Real-ESRGAN's wrappers drawing their per-sample parameters.
//!
//! Gaussian draws come from a [`NoiseSource`] (so recorded draws can be replayed); Poisson
//! draws, which burn does not provide, are made on the host from a caller's [`Rng`].
//! Per-sample parameters (σ, scale, gray flag) are `[B]` tensors throughout.

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::{NoiseSource, Result};
use rand::Rng;
use rand_distr::{Distribution, Poisson};

use super::kernels::uniform;
use super::{invalid, read_back};

/// `generate_gaussian_noise_pt`: `randn·σ/255` per sample, mixed with one gray noise map
/// (shared by the batch, scaled by each sample's σ) where `gray_noise > 0`.
///
/// Draws, in the original's order: when any `gray_noise` is positive, one `[H, W]` map first;
/// then the colour noise `[B, C, H, W]`.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` (only its shape and device are used)
/// - `sigma`, `gray_noise`: `[B]` (σ on the 0–255 scale; `gray_noise` 0 or 1, or a blend)
/// - output: `[B, C, H, W]`
pub fn generate_gaussian_noise_pt(
    img: &Tensor<4>,
    sigma: Tensor<1>,
    gray_noise: Tensor<1>,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = img.dims();
    let (sigma, gray, any_gray) = per_sample(b, "sigma", sigma, gray_noise)?;
    let device = img.device();
    let gray_map = any_gray.then(|| {
        let map = noise.randn([h, w], &device).reshape([1, 1, h, w]);
        (map * sigma.clone()).div_scalar(255.0) // [B, 1, H, W]
    });
    let colour = (noise.randn([b, c, h, w], &device) * sigma).div_scalar(255.0);
    Ok(mix_gray(colour, gray_map, gray))
}

/// Checks that `param` and `gray_noise` hold one value per sample of a batch of `b`, and
/// shapes them `[B, 1, 1, 1]`; also says whether any sample asks for gray noise.
fn per_sample(
    b: usize,
    what: &str,
    param: Tensor<1>,
    gray_noise: Tensor<1>,
) -> Result<(Tensor<4>, Tensor<4>, bool)> {
    let [np] = param.dims();
    let [ng] = gray_noise.dims();
    if np != b || ng != b {
        return Err(invalid(
            format!("{what}/gray_noise"),
            format!("{np} {what} and {ng} gray_noise values for a batch of {b}"),
        ));
    }
    let gray = gray_noise.reshape([b, 1, 1, 1]);
    let any_gray = gray.clone().sum().into_scalar::<f32>() > 0.0;
    Ok((param.reshape([b, 1, 1, 1]), gray, any_gray))
}

/// `colour·(1 − g) + gray·g` when there is a gray noise map, else `colour`.
fn mix_gray(colour: Tensor<4>, gray_map: Option<Tensor<4>>, gray: Tensor<4>) -> Tensor<4> {
    match gray_map {
        Some(map) => colour * (gray.clone().neg().add_scalar(1.0)) + map * gray,
        None => colour,
    }
}

/// `add_gaussian_noise_pt`: `img + noise`, then `clip` to `[0, 1]` and/or `rounds` to the
/// 8-bit grid (both: `clamp(round(255·x), 0, 255) / 255`).
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]`
/// - `sigma`, `gray_noise`: `[B]`
/// - output: `[B, C, H, W]`
pub fn add_gaussian_noise_pt(
    img: Tensor<4>,
    sigma: Tensor<1>,
    gray_noise: Tensor<1>,
    clip: bool,
    rounds: bool,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let n = generate_gaussian_noise_pt(&img, sigma, gray_noise, noise)?;
    Ok(clip_and_round(img + n, clip, rounds))
}

/// The tail of `add_*_noise_pt`: `clip` to `[0, 1]` and/or `rounds` to the 8-bit grid (both:
/// `clamp(round(255·x), 0, 255) / 255`).
fn clip_and_round(out: Tensor<4>, clip: bool, rounds: bool) -> Tensor<4> {
    match (clip, rounds) {
        (true, true) => out
            .mul_scalar(255.0)
            .round()
            .clamp(0.0, 255.0)
            .div_scalar(255.0),
        (true, false) => out.clamp(0.0, 1.0),
        (false, true) => out.mul_scalar(255.0).round().div_scalar(255.0),
        (false, false) => out,
    }
}

/// `clamp(round(255·x), 0, 255)`, the 8-bit level of a value (rounding half to even, like
/// `torch.round`).
fn level(x: f32) -> u8 {
    (x * 255.0).round_ties_even().clamp(0.0, 255.0) as u8
}

/// `2^ceil(log2(n))` for the number `n` of distinct levels (`vals` of the original; 1 when
/// all pixels are equal, at most 256).
fn poisson_vals(levels: &[u8]) -> f32 {
    let distinct = levels_present(levels).iter().filter(|&&s| s).count();
    distinct.next_power_of_two() as f32
}

/// Which of the 256 levels occur.
fn levels_present(levels: &[u8]) -> [bool; 256] {
    let mut seen = [false; 256];
    for &l in levels {
        seen[usize::from(l)] = true;
    }
    seen
}

/// The Poisson noise of one sample's levels: `x = level/255`, `Poisson(x·vals)/vals − x`
/// (a zero rate draws nothing and gives 0), in float32 like the original.
fn poisson_noise_of<R: Rng + ?Sized>(levels: &[u8], rng: &mut R) -> Result<Vec<f32>> {
    let vals = poisson_vals(levels);
    let value = |l: u8| f32::from(l) / 255.0;
    // At most 256 distinct rates: one distribution per level present.
    let seen = levels_present(levels);
    let mut dists: Vec<Option<Poisson<f64>>> = vec![None; 256];
    for (l, dist) in dists.iter_mut().enumerate() {
        let lambda = value(l as u8) * vals;
        if seen[l] && lambda > 0.0 {
            let poisson = Poisson::new(f64::from(lambda))
                .map_err(|e| invalid("poisson rate", format!("{lambda}: {e}")))?;
            *dist = Some(poisson);
        }
    }
    Ok(levels
        .iter()
        .map(|&l| {
            let count = match &dists[usize::from(l)] {
                Some(poisson) => poisson.sample(rng) as f32,
                None => 0.0,
            };
            count / vals - value(l)
        })
        .collect())
}

/// `generate_poisson_noise_pt` (BasicSR): Poisson noise at the 8-bit levels of the image,
/// whose rate resolution `vals` is the number of distinct levels of each sample rounded up
/// to a power of two, mixed with the noise of the gray image where `gray_noise > 0`, and
/// multiplied by each sample's `scale`.
///
/// Each sample `i` is rounded to `x = clamp(round(255·img), 0, 255)/255`, and its noise is
/// `Poisson(x·vals)/vals − x`. With gray noise, the same is done to torchvision's
/// `rgb_to_grayscale` of the (unrounded) image (`0.2989 r + 0.587 g + 0.114 b`), shared by
/// the three channels, and the colour noise becomes `noise·(1 − g) + gray·g`.
///
/// The Poisson draws are made on the host from `rng`, in the original's order: when any
/// `gray_noise` is positive, the gray maps of the whole batch `[B, 1, H, W]` first; then the
/// colour noise `[B, C, H, W]` (row-major). A zero rate draws nothing.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]` (`C = 3` when gray noise is used)
/// - `scale`, `gray_noise`: `[B]` (`gray_noise` 0 or 1, or a blend)
/// - output: `[B, C, H, W]`, on the device of `img`
///
/// # Errors
///
/// [`diffbir_core::Error::InvalidArgument`] when `scale` or `gray_noise` does not have one
/// value per sample, the image holds non-finite values, or gray noise is asked for an image
/// without 3 channels.
pub fn generate_poisson_noise_pt<R: Rng + ?Sized>(
    img: &Tensor<4>,
    scale: Tensor<1>,
    gray_noise: Tensor<1>,
    rng: &mut R,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = img.dims();
    let (scale, gray, any_gray) = per_sample(b, "scale", scale, gray_noise)?;
    let device = img.device();
    let dtype = img.dtype();
    let values = read_back(img.clone(), "image")?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(invalid(
            "image",
            "holds non-finite values; Poisson noise needs finite ones",
        ));
    }
    let plane = h * w;
    let gray_noise_map = if any_gray {
        if c != 3 {
            return Err(invalid(
                "gray_noise",
                format!("gray Poisson noise needs RGB images, got {c} channels"),
            ));
        }
        let mut map = Vec::with_capacity(b * plane);
        for sample in values.chunks_exact((3 * plane).max(1)) {
            let (r, rest) = sample.split_at(plane);
            let (g, bl) = rest.split_at(plane);
            let levels: Vec<u8> = (0..plane)
                .map(|p| level(0.2989 * r[p] + 0.587 * g[p] + 0.114 * bl[p]))
                .collect();
            map.extend(poisson_noise_of(&levels, rng)?);
        }
        Some(Tensor::<4>::from_data(TensorData::new(map, [b, 1, h, w]), &device).cast(dtype))
    } else {
        None
    };
    let mut colour = Vec::with_capacity(values.len());
    for sample in values.chunks_exact((c * plane).max(1)) {
        let levels: Vec<u8> = sample.iter().map(|&v| level(v)).collect();
        colour.extend(poisson_noise_of(&levels, rng)?);
    }
    let colour = Tensor::<4>::from_data(TensorData::new(colour, [b, c, h, w]), &device).cast(dtype);
    Ok(mix_gray(colour, gray_noise_map, gray) * scale)
}

/// `add_poisson_noise_pt`: `img + generate_poisson_noise_pt(img, …)` (the original, unrounded
/// image plus the noise), then `clip` to `[0, 1]` and/or `rounds` to the 8-bit grid as
/// [`add_gaussian_noise_pt`] does.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]`
/// - `scale`, `gray_noise`: `[B]`
/// - output: `[B, C, H, W]`
///
/// # Errors
///
/// As [`generate_poisson_noise_pt`].
pub fn add_poisson_noise_pt<R: Rng + ?Sized>(
    img: Tensor<4>,
    scale: Tensor<1>,
    gray_noise: Tensor<1>,
    clip: bool,
    rounds: bool,
    rng: &mut R,
) -> Result<Tensor<4>> {
    let n = generate_poisson_noise_pt(&img, scale, gray_noise, rng)?;
    Ok(clip_and_round(img + n, clip, rounds))
}

/// Draws Real-ESRGAN's per-sample noise parameters on `device`: `b` values uniform in
/// `range` first, then `b` gray flags (`U(0, 1) < gray_prob` as 0 or 1), like its two
/// `torch.rand(b)`.
fn draw_parameters<R: Rng + ?Sized>(
    b: usize,
    what: &str,
    range: [f64; 2],
    gray_prob: f64,
    rng: &mut R,
    device: &Device,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let [lo, hi] = range;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(invalid(
            what,
            format!("[{lo}, {hi}] is not a finite range with low <= high"),
        ));
    }
    if gray_prob.is_nan() {
        return Err(invalid("gray_prob", "is NaN"));
    }
    let values: Vec<f32> = (0..b).map(|_| uniform(rng, lo, hi) as f32).collect();
    let gray: Vec<f32> = (0..b)
        .map(|_| f32::from(u8::from(rng.random::<f64>() < gray_prob)))
        .collect();
    let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), device);
    Ok((tensor(values), tensor(gray)))
}

/// Real-ESRGAN's `random_add_gaussian_noise_pt`: per sample, σ uniform in `sigma_range`
/// (0–255 scale) and a gray flag with probability `gray_prob`, drawn from `rng` (all σ first,
/// then all flags); then [`add_gaussian_noise_pt`], whose normal draws come from `noise`.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]`
/// - output: `[B, C, H, W]`
///
/// # Errors
///
/// [`diffbir_core::Error::InvalidArgument`] when `sigma_range` is not a finite ordered range
/// or `gray_prob` is NaN.
pub fn random_add_gaussian_noise_pt<R: Rng + ?Sized>(
    img: Tensor<4>,
    sigma_range: [f64; 2],
    gray_prob: f64,
    clip: bool,
    rounds: bool,
    rng: &mut R,
    noise: &mut NoiseSource,
) -> Result<Tensor<4>> {
    let [b, ..] = img.dims();
    let (sigma, gray) =
        draw_parameters(b, "sigma_range", sigma_range, gray_prob, rng, &img.device())?;
    add_gaussian_noise_pt(img, sigma, gray, clip, rounds, noise)
}

/// Real-ESRGAN's `random_add_poisson_noise_pt`: per sample, a scale uniform in `scale_range`
/// and a gray flag with probability `gray_prob`, drawn from `rng` (all scales first, then all
/// flags); then [`add_poisson_noise_pt`], whose Poisson draws continue on `rng`.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]` in `[0, 1]`
/// - output: `[B, C, H, W]`
///
/// # Errors
///
/// [`diffbir_core::Error::InvalidArgument`] when `scale_range` is not a finite ordered range,
/// `gray_prob` is NaN, or as [`generate_poisson_noise_pt`].
pub fn random_add_poisson_noise_pt<R: Rng + ?Sized>(
    img: Tensor<4>,
    scale_range: [f64; 2],
    gray_prob: f64,
    clip: bool,
    rounds: bool,
    rng: &mut R,
) -> Result<Tensor<4>> {
    let [b, ..] = img.dims();
    let (scale, gray) =
        draw_parameters(b, "scale_range", scale_range, gray_prob, rng, &img.device())?;
    add_poisson_noise_pt(img, scale, gray, clip, rounds, rng)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn zero_sigma_adds_nothing_and_gray_noise_is_shared_by_channels() {
        let device = Device::flex();
        let img = Tensor::<4>::full([2, 3, 4, 5], 0.5, &device);
        let mut noise = NoiseSource::seeded(7);
        let zero = Tensor::<1>::zeros([2], &device);
        let out = add_gaussian_noise_pt(img.clone(), zero.clone(), zero, true, false, &mut noise)
            .unwrap();
        let diff: f32 = (out - img.clone()).abs().max().into_scalar();
        assert_eq!(diff, 0.0);

        let sigma = Tensor::<1>::from_data(TensorData::new(vec![10.0f32, 10.0], [2]), &device);
        let gray = Tensor::<1>::ones([2], &device);
        let n = generate_gaussian_noise_pt(&img, sigma, gray, &mut noise).unwrap();
        let r = n.clone().slice([0..2, 0..1]);
        let g = n.slice([0..2, 1..2]);
        let diff: f32 = (r - g).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }

    fn per_sample(values: &[f32], device: &Device) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn host(x: Tensor<4>) -> Vec<f32> {
        x.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn poisson_vals_count_distinct_levels() {
        assert_eq!(poisson_vals(&[7, 7, 7]), 1.0);
        assert_eq!(poisson_vals(&[0, 255, 0, 128, 255]), 4.0);
        assert_eq!(poisson_vals(&[1, 2, 3, 4]), 4.0);
        assert_eq!(poisson_vals(&[1, 2, 3, 4, 5]), 8.0);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(poisson_vals(&all), 256.0);
        // torch.round rounds half to even: 127.5 → 128, 0.5 → 0; out of range clamps.
        assert_eq!(level(0.5), 128);
        assert_eq!(level(0.5 / 255.0), 0);
        assert_eq!(level(-0.2), 0);
        assert_eq!(level(1.3), 255);
    }

    #[test]
    fn poisson_noise_has_the_expected_mean_and_variance() {
        // Sample 0: scale 1; sample 1: scale 0.5. Left half 0.2 (level 51), right half 0.8
        // (level 204): two levels, so vals = 2 and the noise at x has variance scale²·x/2.
        let device = Device::flex();
        let (h, w) = (100, 120);
        let mut data = Vec::new();
        for _ in 0..2 * 3 * h {
            data.extend((0..w).map(|j| if j < w / 2 { 0.2f32 } else { 0.8 }));
        }
        let img = Tensor::<4>::from_data(TensorData::new(data, [2, 3, h, w]), &device);
        let scales = [1.0f32, 0.5];
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = generate_poisson_noise_pt(
            &img,
            per_sample(&scales, &device),
            per_sample(&[0.0, 0.0], &device),
            &mut rng,
        )
        .unwrap();
        let n = host(n);
        for (i, scale) in scales.iter().enumerate() {
            for (half, level) in [(0, 51.0f32), (1, 204.0)] {
                let x = level / 255.0;
                let samples: Vec<f32> = n[i * 3 * h * w..(i + 1) * 3 * h * w]
                    .chunks_exact(w)
                    .flat_map(|row| row[half * w / 2..(half + 1) * w / 2].to_vec())
                    .collect();
                let count = samples.len() as f32;
                let mean = samples.iter().sum::<f32>() / count;
                let var = samples.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / count;
                let expected = scale * scale * x / 2.0;
                assert!(mean.abs() < 0.01, "sample {i}, x = {x}: mean {mean}");
                assert!(
                    (var / expected - 1.0).abs() < 0.06,
                    "sample {i}, x = {x}: variance {var}, expected {expected}"
                );
                // Counts are integers: the noise sits on the grid k/(2·255)·scale − x·scale.
                let off = samples[0] / scale + x;
                assert!((off * 2.0 - (off * 2.0).round()).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn zero_scale_and_black_images_get_no_poisson_noise() {
        let device = Device::flex();
        let img = Tensor::<4>::random([2, 3, 8, 9], Distribution::Default, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zero = Tensor::<1>::zeros([2], &device);
        let gray = per_sample(&[1.0, 0.0], &device);
        let out =
            add_poisson_noise_pt(img.clone(), zero, gray.clone(), false, false, &mut rng).unwrap();
        out.into_data().assert_eq(&img.into_data(), true);
        // A zero rate (black) draws exactly zero.
        let black = Tensor::<4>::zeros([2, 3, 8, 9], &device);
        let ones = Tensor::<1>::ones([2], &device);
        let out = add_poisson_noise_pt(black.clone(), ones, gray, false, false, &mut rng).unwrap();
        out.into_data().assert_eq(&black.into_data(), true);
    }

    #[test]
    fn gray_poisson_noise_is_shared_by_channels() {
        let device = Device::flex();
        let img = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let ones = Tensor::<1>::ones([2], &device);
        let n = generate_poisson_noise_pt(&img, ones.clone(), ones.clone(), &mut rng).unwrap();
        assert!(n.clone().abs().max().into_scalar::<f32>() > 0.0);
        for ch in 1..3 {
            let r = n.clone().slice([0..2, 0..1]);
            let other = n.clone().slice([0..2, ch..ch + 1]);
            assert_eq!((r - other).abs().max().into_scalar::<f32>(), 0.0);
        }
        // Without gray noise the channels differ.
        let zeros = Tensor::<1>::zeros([2], &device);
        let n = generate_poisson_noise_pt(&img, ones, zeros, &mut rng).unwrap();
        let r = n.clone().slice([0..2, 0..1]);
        let g = n.slice([0..2, 1..2]);
        assert!((r - g).abs().max().into_scalar::<f32>() > 0.0);
    }

    #[test]
    fn poisson_noise_is_deterministic_for_a_seed() {
        let device = Device::flex();
        let img = Tensor::<4>::random([2, 3, 10, 12], Distribution::Default, &device);
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            host(
                random_add_poisson_noise_pt(img.clone(), [0.05, 3.0], 0.4, true, true, &mut rng)
                    .unwrap(),
            )
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn random_wrappers_draw_parameters_then_gray_flags() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let device = Device::flex();
        let (values, gray) =
            draw_parameters(4, "range", [2.0, 6.0], 0.5, &mut rng, &device).unwrap();
        let (values, gray) = (
            values.try_into_vec_as::<f32>().unwrap(),
            gray.try_into_vec_as::<f32>().unwrap(),
        );
        let mut again = ChaCha8Rng::seed_from_u64(9);
        let expected: Vec<f32> = (0..4)
            .map(|_| (2.0 + 4.0 * again.random::<f64>()) as f32)
            .collect();
        let flags: Vec<f32> = (0..4)
            .map(|_| f32::from(u8::from(again.random::<f64>() < 0.5)))
            .collect();
        assert_eq!(values, expected);
        assert_eq!(gray, flags);
        assert!(values.iter().all(|v| (2.0..=6.0).contains(v)));
        assert!(draw_parameters(1, "range", [3.0, 1.0], 0.5, &mut rng, &device).is_err());
        assert!(draw_parameters(1, "range", [0.0, f64::NAN], 0.5, &mut rng, &device).is_err());

        // gray_prob = 1: the Gaussian noise of a constant image is the same in every channel.
        let img = Tensor::<4>::full([2, 3, 6, 7], 0.5, &device);
        let mut noise = NoiseSource::seeded(3);
        let out = random_add_gaussian_noise_pt(
            img.clone(),
            [5.0, 10.0],
            1.0,
            false,
            false,
            &mut rng,
            &mut noise,
        )
        .unwrap();
        assert!((out.clone() - img.clone()).abs().max().into_scalar::<f32>() > 0.0);
        let r = out.clone().slice([0..2, 0..1]);
        let b = out.slice([0..2, 2..3]);
        assert_eq!((r - b).abs().max().into_scalar::<f32>(), 0.0);
        // A zero scale range leaves the image alone.
        let out = random_add_poisson_noise_pt(img.clone(), [0.0, 0.0], 0.5, false, false, &mut rng)
            .unwrap();
        out.into_data().assert_eq(&img.into_data(), true);
    }

    #[test]
    fn bad_poisson_arguments_are_refused() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let img = Tensor::<4>::zeros([2, 3, 4, 5], &device);
        let two = Tensor::<1>::ones([2], &device);
        let three = Tensor::<1>::ones([3], &device);
        assert!(generate_poisson_noise_pt(&img, three.clone(), two.clone(), &mut rng).is_err());
        assert!(generate_poisson_noise_pt(&img, two.clone(), three, &mut rng).is_err());
        let one_channel = Tensor::<4>::zeros([2, 1, 4, 5], &device);
        assert!(
            generate_poisson_noise_pt(&one_channel, two.clone(), two.clone(), &mut rng).is_err()
        );
        let nan = Tensor::<4>::full([2, 3, 4, 5], f32::NAN, &device);
        assert!(generate_poisson_noise_pt(&nan, two.clone(), two, &mut rng).is_err());
    }

    #[test]
    fn mismatched_sigma_is_refused() {
        let device = Device::flex();
        let img = Tensor::<4>::zeros([2, 3, 4, 5], &device);
        let s = Tensor::<1>::zeros([3], &device);
        let g = Tensor::<1>::zeros([2], &device);
        let mut noise = NoiseSource::seeded(0);
        assert!(generate_gaussian_noise_pt(&img, s, g, &mut noise).is_err());
    }
}
