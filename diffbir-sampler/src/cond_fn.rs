//! Restoration guidance (DiffBIR's "latent image guidance", `cond_fn`;
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/utils/cond_fn.py:L6-L111`).
//!
//! After the spaced sampler predicts `x̂₀`, the guidance pulls it towards the stage-1 result:
//! it takes the gradient of an MSE loss between `x̂₀` and the target (in latent space, or in
//! RGB space through the VAE decoder) and adds it, scaled, to `x̂₀`. Port of the v2 release
//! (`XPixelGroup/DiffBIR@9fb2107:utils/cond_fn.py` and `SpacedSampler.apply_cond_fn` of
//! `utils/sampler.py`) and of v1's variant (`7bd5675:model/cond_fn.py`,
//! `model/spaced_sampler.py`), see [`GuidanceVariant`]; v2.1 keeps the loss classes but no
//! sampler calls them (`3f8b530:diffbir/pipeline.py:L169-L170` only loads the target), so v2.1
//! runs use the v2 definition.
//!
//! The losses' gradients are analytic (`−∂L/∂pred` of a weighted mean of squares), so they need
//! no autodiff. RGB-space guidance backpropagates through the decoder: it needs this crate's
//! `autodiff` feature and fails with [`Error::Unsupported`] without it.

use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};
use serde::{Deserialize, Serialize};

use crate::denoiser::Denoiser;
use crate::observer::SampleObserver;
use crate::spaced::Spaced;

/// The multiplier v2 applies to the configured scale (`self.scale = scale * 3000`).
const SCALE_MULTIPLIER: f64 = 3000.0;

diffbir_core::named_enum! {
    /// The guidance loss (`--g_loss`).
    pub enum GuidanceLoss ("guidance loss") {
        /// `L = Σ_b mean_{c,h,w}(pred − target)²` (`MSEGuidance`).
        Mse = "mse",
        /// The squared error weighted by `1 − tanh` of 2×2 block sums of the target's Sobel
        /// magnitude, so flat regions weigh more than edges (`WeightedMSEGuidance`). RGB only.
        WeightedMse = "w_mse",
    }
}

diffbir_core::named_enum! {
    /// Where the loss is computed (`--g_space`).
    pub enum GuidanceDomain ("guidance space") {
        /// On the scaled latent; the target is re-encoded (a posterior sample) every
        /// repetition.
        Latent = "latent",
        /// On the decoded image in `[-1, 1]`; the gradient is backpropagated through the
        /// decoder.
        Rgb = "rgb",
    }
}

/// How the guidance gradient enters the sampler step: the two releases differ
/// (`XPixelGroup/DiffBIR@9fb2107:utils/sampler.py:L163-L210` and
/// `7bd5675:model/spaced_sampler.py:L274-L336`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuidanceVariant {
    /// v1: the gradient is `scale · (−∂L/∂pred)`; the posterior mean is computed from the
    /// unguided `x̂₀`, then every repetition adds its gradient `Δ` to `x̂₀` and `Δ/2` to the
    /// mean.
    #[serde(rename = "v1")]
    V1,
    /// v2 (and v2.1): the gradient is `3000 · scale · (−∂L/∂pred)`; every repetition adds
    /// `Δ / posterior_mean_coef1` to `x̂₀` and the mean is computed from the guided `x̂₀`, so
    /// it moves by `Δ` itself.
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// What restoration guidance needs from the autoencoder, so this crate does not depend on it.
pub trait GuidanceSpace {
    /// The scaled latent of an image, sampled from the posterior with `noise`
    /// (`ControlLDM.vae_encode(image, sample=True)`).
    ///
    /// # Shapes
    /// - `image`: `[B, 3, H, W]` in `[-1, 1]`; returns `[B, C, H/f, W/f]`
    fn encode(&self, image: Tensor<4>, noise: &mut NoiseSource) -> Result<Tensor<4>>;

    /// The image of a scaled latent (`ControlLDM.vae_decode`: divide by the scale factor, then
    /// decode). Must be made of tensor operations only, so that autodiff can differentiate it
    /// with respect to `latent` (parameters may stay constants).
    ///
    /// # Shapes
    /// - `latent`: `[B, C, h, w]`; returns `[B, 3, h·f, w·f]`
    fn decode(&self, latent: Tensor<4>) -> Result<Tensor<4>>;
}

/// Configuration of [`RestorationGuidance`] (v2's `--g_*` options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorationGuidanceConfig {
    /// The loss.
    pub loss: GuidanceLoss,
    /// Where the loss is computed.
    pub space: GuidanceDomain,
    /// Gradient scale `s` (multiplied by 3000, as v2 does).
    pub scale: f64,
    /// Guidance is active while `t_stop < t + 1 < t_start` (`t` the model timestep).
    pub t_start: i64,
    /// See [`t_start`](Self::t_start).
    pub t_stop: i64,
    /// Updates per sampler step.
    pub repeat: usize,
    /// Which release's update rule.
    #[serde(default)]
    pub variant: GuidanceVariant,
}

impl RestorationGuidanceConfig {
    /// v2's CLI defaults for a loss and space: always on (`t_start` 1001, `t_stop` −1), one
    /// repetition, the given scale.
    pub fn new(loss: GuidanceLoss, space: GuidanceDomain, scale: f64) -> Self {
        Self {
            loss,
            space,
            scale,
            t_start: 1001,
            t_stop: -1,
            repeat: 1,
            variant: GuidanceVariant::V2,
        }
    }

    /// v1's CLI defaults: always on, five repetitions, the raw scale, v1's update rule.
    pub fn v1(loss: GuidanceLoss, space: GuidanceDomain, scale: f64) -> Self {
        Self {
            repeat: 5,
            variant: GuidanceVariant::V1,
            ..Self::new(loss, space, scale)
        }
    }

    /// Fails when this build cannot run the configuration: RGB space differentiates the VAE
    /// decoder, which needs this crate's `autodiff` feature. Callers check it before loading
    /// models, so the run stops at once.
    pub fn check_supported(&self) -> Result<()> {
        if self.space == GuidanceDomain::Rgb && !cfg!(feature = "autodiff") {
            return Err(Error::Unsupported(
                "RGB-space restoration guidance differentiates the VAE decoder: build \
                 diffbir-sampler with its `autodiff` feature (or use latent space)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks the configuration. `w_mse` needs 3-channel inputs, so it is refused in latent
    /// space (where the original raises on the 4-channel latent;
    /// `XPixelGroup/DiffBIR@9fb2107:utils/cond_fn.py:L57-L60`, `WeightedMSEGuidance._get_weight`).
    pub fn init(&self) -> Result<RestorationGuidance> {
        if !self.scale.is_finite() {
            return Err(invalid(
                "guidance scale",
                format!("{} is not finite", self.scale),
            ));
        }
        if self.loss == GuidanceLoss::WeightedMse && self.space == GuidanceDomain::Latent {
            return Err(invalid(
                "guidance",
                "the `w_mse` loss needs an RGB target (3 channels); use it with `space = rgb` \
                 (the original raises on the 4-channel latent)"
                    .into(),
            ));
        }
        Ok(RestorationGuidance {
            config: self.clone(),
        })
    }
}

/// What one guidance application did (v2's `sampler.context`).
#[derive(Debug, Clone)]
pub struct GuidanceStep {
    /// The guided `x̂₀`.
    ///
    /// # Shapes
    /// - `[B, C, h, w]`
    pub pred_x0: Tensor<4>,
    /// Whether the time window let the guidance run (`g_apply`).
    pub applied: bool,
    /// The loss of each repetition (empty when not applied); `g_loss` is their mean.
    pub losses: Vec<f64>,
}

/// Restoration guidance, ready to apply.
#[derive(Debug, Clone)]
pub struct RestorationGuidance {
    config: RestorationGuidanceConfig,
}

impl RestorationGuidance {
    /// The configuration.
    pub fn config(&self) -> &RestorationGuidanceConfig {
        &self.config
    }

    /// The effective gradient multiplier (`scale · 3000` for v2, `scale` for v1).
    pub fn effective_scale(&self) -> f64 {
        match self.config.variant {
            GuidanceVariant::V1 => self.config.scale,
            GuidanceVariant::V2 => self.config.scale * SCALE_MULTIPLIER,
        }
    }

    /// Whether the guidance runs at model timestep `t`: `t_stop < t + 1 < t_start`.
    pub fn is_active(&self, t: usize) -> bool {
        let now = t as i64 + 1;
        self.config.t_stop < now && now < self.config.t_start
    }

    /// The guidance gradient and the loss: `(−∂L/∂pred · effective scale, L)`.
    ///
    /// # Shapes
    /// - `target`, `pred`: `[B, C, H, W]` (`C = 3` and even `H`, `W` for `w_mse`);
    ///   returns `[B, C, H, W]`
    pub fn loss_gradient(&self, target: Tensor<4>, pred: Tensor<4>) -> Result<(Tensor<4>, f64)> {
        let (grad, loss) = match self.config.loss {
            GuidanceLoss::Mse => mse_loss_grad(target, pred, None)?,
            GuidanceLoss::WeightedMse => {
                let weight = sobel_weight_map(target.clone().add_scalar(1.0).div_scalar(2.0))?;
                mse_loss_grad(target, pred, Some(weight))?
            }
        };
        Ok((grad.mul_scalar(-self.effective_scale()), loss))
    }

    /// Applies the guidance to `x̂₀` (`SpacedSampler.apply_cond_fn`): `repeat` times, the loss
    /// gradient (in latent space, or backpropagated through the decoder from RGB space) is
    /// added to `x̂₀` times `grad_rescale` (v2: `1/posterior_mean_coef1`, so the posterior mean
    /// moves by the gradient itself; v1: 1).
    ///
    /// `t` is the model timestep; outside the time window `pred_x0` is returned unchanged.
    /// Latent space draws one posterior sample of the target per repetition from `noise`.
    ///
    /// # Shapes
    /// - `target`: `[B, 3, H, W]` in `[-1, 1]` (the condition image `·2 − 1`)
    /// - `pred_x0`: `[B, C, H/f, W/f]`
    pub fn apply(
        &self,
        space: &(impl GuidanceSpace + ?Sized),
        target: Tensor<4>,
        pred_x0: Tensor<4>,
        t: usize,
        grad_rescale: f32,
        noise: &mut NoiseSource,
    ) -> Result<GuidanceStep> {
        if !self.is_active(t) {
            return Ok(GuidanceStep {
                pred_x0,
                applied: false,
                losses: Vec::new(),
            });
        }
        if !grad_rescale.is_finite() {
            return Err(invalid(
                "guidance",
                "the posterior mean coefficient of x̂₀ is zero at this step".into(),
            ));
        }
        let mut pred_x0 = pred_x0;
        let mut losses = Vec::with_capacity(self.config.repeat);
        for _ in 0..self.config.repeat {
            let (delta, loss) = match self.config.space {
                GuidanceDomain::Latent => {
                    let target = space.encode(target.clone(), noise)?;
                    self.loss_gradient(target, pred_x0.clone())?
                }
                GuidanceDomain::Rgb => self.rgb_gradient(space, target.clone(), pred_x0.clone())?,
            };
            pred_x0 = pred_x0 + delta.mul_scalar(grad_rescale);
            losses.push(loss);
        }
        Ok(GuidanceStep {
            pred_x0,
            applied: true,
            losses,
        })
    }

    /// The RGB-space gradient pulled back to the latent: `Jᵀ·g`, `J` the decoder's Jacobian at
    /// `pred_x0` and `g` the loss gradient on the decoded image.
    #[cfg(feature = "autodiff")]
    fn rgb_gradient(
        &self,
        space: &(impl GuidanceSpace + ?Sized),
        target: Tensor<4>,
        pred_x0: Tensor<4>,
    ) -> Result<(Tensor<4>, f64)> {
        let z = pred_x0.detach().autodiff().require_grad();
        let rgb = space.decode(z.clone())?;
        if !rgb.is_tracked() {
            return Err(Error::Unsupported(
                "RGB-space guidance: the decoder output does not depend on the latent".into(),
            ));
        }
        let (delta, loss) = self.loss_gradient(target, rgb.clone().detach().without_autodiff())?;
        // ⟨rgb, g⟩ has the gradient Jᵀ·g with respect to z (`pred.backward(delta_pred)`).
        let grads = (rgb * delta).sum().backward();
        let dz = z.grad(&grads).ok_or_else(|| {
            Error::Unsupported("RGB-space guidance: no gradient reached the latent".into())
        })?;
        Ok((dz.without_autodiff(), loss))
    }

    #[cfg(not(feature = "autodiff"))]
    fn rgb_gradient(
        &self,
        _space: &(impl GuidanceSpace + ?Sized),
        _target: Tensor<4>,
        _pred_x0: Tensor<4>,
    ) -> Result<(Tensor<4>, f64)> {
        Err(Error::Unsupported(
            "RGB-space restoration guidance differentiates the VAE decoder: build \
             diffbir-sampler with its `autodiff` feature"
                .into(),
        ))
    }
}

/// Restoration guidance as the spaced sampler runs it: the guidance, the autoencoder it
/// differentiates or encodes with, and the target (the stage-1 result in `[-1, 1]`).
#[derive(Clone, Copy)]
pub struct SpacedGuidance<'a> {
    /// The guidance.
    pub guidance: &'a RestorationGuidance,
    /// The autoencoder.
    pub space: &'a dyn GuidanceSpace,
    /// The target image.
    ///
    /// # Shapes
    /// - `[B, 3, H, W]` in `[-1, 1]`, `H×W` the decoded size of the sampled latent
    pub target: &'a Tensor<4>,
}

impl std::fmt::Debug for SpacedGuidance<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpacedGuidance")
            .field("guidance", self.guidance)
            .field("target", &self.target.dims())
            .finish_non_exhaustive()
    }
}

impl Spaced {
    /// [`RestorationGuidance::apply`] at respaced step `k` of this sampler: model timestep
    /// `τ_k`, and for v2 `grad_rescale = 1/posterior_mean_coef1[k]` (computed in `f32`, as
    /// the reference; v1 adds the gradient as it is).
    ///
    /// # Shapes
    /// - `target`: `[B, 3, H, W]` in `[-1, 1]`; `pred_x0`: `[B, C, H/f, W/f]`
    pub fn apply_guidance(
        &self,
        guidance: &RestorationGuidance,
        space: &(impl GuidanceSpace + ?Sized),
        target: Tensor<4>,
        pred_x0: Tensor<4>,
        k: usize,
        noise: &mut NoiseSource,
    ) -> Result<GuidanceStep> {
        let (Some(&t), Some(&coef1)) = (
            self.timesteps().get(k),
            self.tables().posterior_mean_coef1.get(k),
        ) else {
            return Err(invalid(
                "guidance step",
                format!("step {k} is outside the {} steps", self.steps()),
            ));
        };
        let grad_rescale = match guidance.config().variant {
            GuidanceVariant::V1 => 1.0,
            GuidanceVariant::V2 => 1.0 / coef1,
        };
        guidance.apply(space, target, pred_x0, t, grad_rescale, noise)
    }

    /// [`sample`](Self::sample) with restoration guidance applied to every step's `x̂₀`
    /// before the posterior mean is formed (v2), or to the mean afterwards (v1). The guidance
    /// draws its posterior samples of the target (latent space) from `noise` before the
    /// step's own draw, as the reference does.
    ///
    /// Fails when the guidance fails (RGB space without the `autodiff` feature, a target
    /// whose size does not match the latent).
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`; returns `[B, C, H, W]`
    pub fn sample_guided<D: Denoiser>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        guidance: SpacedGuidance<'_>,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Result<Tensor<4>> {
        let g = guidance;
        self.run(model, x_t, cond, noise, observer, |x, x0, k, noise| {
            let step =
                self.apply_guidance(g.guidance, g.space, g.target.clone(), x0.clone(), k, noise)?;
            let mean = match g.guidance.config().variant {
                GuidanceVariant::V2 => self.posterior_mean(step.pred_x0.clone(), x, k),
                GuidanceVariant::V1 => {
                    let delta = step.pred_x0.clone() - x0.clone();
                    self.posterior_mean(x0, x, k) + delta.mul_scalar(0.5)
                }
            };
            Ok((step.pred_x0, mean))
        })
    }
}

/// The (weighted) MSE loss and its gradient `∂L/∂pred`, `L = Σ_b mean_{c,h,w}(w·(pred − target)²)`.
///
/// # Shapes
/// - `target`, `pred`: `[B, C, H, W]`; `weight`: `[B, 1, H, W]` (broadcast over channels);
///   returns `[B, C, H, W]`
fn mse_loss_grad(
    target: Tensor<4>,
    pred: Tensor<4>,
    weight: Option<Tensor<4>>,
) -> Result<(Tensor<4>, f64)> {
    let dims = pred.dims();
    if target.dims() != dims {
        return Err(invalid(
            "guidance loss",
            format!(
                "prediction {dims:?} and target {:?} differ in shape",
                target.dims()
            ),
        ));
    }
    let [b, c, h, w] = dims;
    let per_sample = (c * h * w) as f32;
    let diff = pred - target;
    let weighted = match weight {
        Some(weight) => diff.clone() * weight.expand([b, c, h, w]),
        None => diff.clone(),
    };
    let loss = (diff * weighted.clone())
        .reshape([b, c * h * w])
        .mean_dim(1)
        .sum()
        .try_into_scalar::<f32>()
        .map_err(|e| Error::Unsupported(format!("cannot read the guidance loss: {e:?}")))?;
    let loss = f64::from(loss);
    Ok((weighted.mul_scalar(2.0 / per_sample), loss))
}

/// `WeightedMSEGuidance._get_weight`: `1 − tanh(Σ_{2×2 block} |Sobel(gray)|)`, broadcast back
/// to the block; `gray = 0.2989R + 0.5870G + 0.1140B`, replicate padding.
///
/// # Shapes
/// - `image`: `[B, 3, H, W]` in `[0, 1]`, `H` and `W` even; returns `[B, 1, H, W]`
pub fn sobel_weight_map(image: Tensor<4>) -> Result<Tensor<4>> {
    let [b, c, h, w] = image.dims();
    if c != 3 {
        return Err(invalid(
            "weighted MSE guidance",
            format!("the target must have 3 (RGB) channels, got {c}"),
        ));
    }
    if h % 2 != 0 || w % 2 != 0 || h == 0 || w == 0 {
        return Err(invalid(
            "weighted MSE guidance",
            format!("the target size must be even and non-zero, got {h}×{w}"),
        ));
    }
    let channel = |i: usize, k: f32| {
        image
            .clone()
            .slice([0..b, i..i + 1, 0..h, 0..w])
            .mul_scalar(k)
    };
    let gray = channel(0, 0.2989) + channel(1, 0.5870) + channel(2, 0.1140);
    let padded = replicate_pad1(gray);
    let at = |dy: usize, dx: usize| padded.clone().slice([0..b, 0..1, dy..dy + h, dx..dx + w]);
    // Cross-correlation with Gx = [[1,0,−1],[2,0,−2],[1,0,−1]] and Gy = Gxᵀ.
    let gx = (at(0, 0) - at(0, 2)) + (at(1, 0) - at(1, 2)).mul_scalar(2.0) + (at(2, 0) - at(2, 2));
    let gy = (at(0, 0) - at(2, 0)) + (at(0, 1) - at(2, 1)).mul_scalar(2.0) + (at(0, 2) - at(2, 2));
    let mag = (gx.clone() * gx + gy.clone() * gy).sqrt();
    let blocks = mag
        .reshape([b, h / 2, 2, w / 2, 2])
        .sum_dim(4)
        .sum_dim(2)
        .tanh()
        .expand([b, h / 2, 2, w / 2, 2])
        .reshape([b, 1, h, w]);
    Ok(blocks.neg().add_scalar(1.0))
}

/// Pads the last two dimensions by one, repeating the edge values.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; returns `[B, C, H+2, W+2]`
fn replicate_pad1(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let rows = Tensor::cat(
        vec![
            x.clone().slice([0..b, 0..c, 0..1, 0..w]),
            x.clone(),
            x.slice([0..b, 0..c, h - 1..h, 0..w]),
        ],
        2,
    );
    Tensor::cat(
        vec![
            rows.clone().slice([0..b, 0..c, 0..h + 2, 0..1]),
            rows.clone(),
            rows.slice([0..b, 0..c, 0..h + 2, w - 1..w]),
        ],
        3,
    )
}

fn invalid(what: &str, reason: String) -> Error {
    Error::InvalidArgument {
        what: what.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values, shape), &Device::default())
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic values in [-1, 1].
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn loss_of(
        guidance: &RestorationGuidance,
        target: &[f32],
        pred: &[f32],
        shape: [usize; 4],
    ) -> f64 {
        let (_, loss) = guidance
            .loss_gradient(tensor(target.to_vec(), shape), tensor(pred.to_vec(), shape))
            .unwrap();
        loss
    }

    /// `−∂L/∂pred · scale · 3000` against a central finite difference of the loss.
    fn check_gradient(loss: GuidanceLoss) {
        let shape = [2, 3, 4, 6];
        let n = shape.iter().product();
        let target = pseudo_random(n, 7);
        let pred = pseudo_random(n, 11);
        let guidance = RestorationGuidanceConfig::new(loss, GuidanceDomain::Rgb, 0.05)
            .init()
            .unwrap();
        let (grad, _) = guidance
            .loss_gradient(tensor(target.clone(), shape), tensor(pred.clone(), shape))
            .unwrap();
        let grad: Vec<f32> = grad.into_data().try_to_vec().unwrap();
        let h = 1e-2f32;
        for i in (0..n).step_by(5) {
            let mut plus = pred.clone();
            plus[i] += h;
            let mut minus = pred.clone();
            minus[i] -= h;
            let fd = (loss_of(&guidance, &target, &plus, shape)
                - loss_of(&guidance, &target, &minus, shape))
                / (2.0 * f64::from(h));
            let expected = -fd * guidance.effective_scale();
            let got = f64::from(grad[i]);
            assert!(
                (got - expected).abs() <= 2e-2 * expected.abs().max(1.0),
                "{loss:?} element {i}: analytic {got}, finite difference {expected}"
            );
        }
    }

    #[test]
    fn mse_gradient_matches_finite_differences() {
        check_gradient(GuidanceLoss::Mse);
    }

    #[test]
    fn weighted_mse_gradient_matches_finite_differences() {
        check_gradient(GuidanceLoss::WeightedMse);
    }

    #[test]
    fn mse_loss_is_the_batch_sum_of_means() {
        let shape = [2, 1, 1, 2];
        let guidance =
            RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0)
                .init()
                .unwrap();
        // Sample 0: mean(1², 3²) = 5; sample 1: mean(0, 2²) = 2.
        let loss = loss_of(&guidance, &[0.0; 4], &[1.0, 3.0, 0.0, 2.0], shape);
        assert!((loss - 7.0).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn flat_target_has_unit_weight() {
        let map = sobel_weight_map(tensor(vec![0.5; 3 * 4 * 4], [1, 3, 4, 4])).unwrap();
        let values: Vec<f32> = map.into_data().try_to_vec().unwrap();
        assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-6), "{values:?}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(sobel_weight_map(tensor(vec![0.0; 4 * 4 * 4], [1, 4, 4, 4])).is_err());
        assert!(sobel_weight_map(tensor(vec![0.0; 3 * 3 * 4], [1, 3, 3, 4])).is_err());
        let w_latent =
            RestorationGuidanceConfig::new(GuidanceLoss::WeightedMse, GuidanceDomain::Latent, 1.0);
        assert!(w_latent.init().is_err());
        let mse = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0)
            .init()
            .unwrap();
        let r = mse.loss_gradient(
            tensor(vec![0.0; 4], [1, 1, 2, 2]),
            tensor(vec![0.0; 2], [1, 1, 1, 2]),
        );
        assert!(r.is_err());
        assert!("l1".parse::<GuidanceLoss>().is_err());
        assert!("pixel".parse::<GuidanceDomain>().is_err());
    }

    #[test]
    fn time_window_is_exclusive() {
        let mut config =
            RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0);
        config.t_start = 200;
        config.t_stop = 10;
        let g = config.init().unwrap();
        assert!(!g.is_active(199)); // t + 1 = 200
        assert!(g.is_active(198));
        assert!(g.is_active(10));
        assert!(!g.is_active(9)); // t + 1 = 10
    }

    /// A linear "autoencoder": the image is the latent's first 3 channels times 2.
    struct Linear;

    impl GuidanceSpace for Linear {
        fn encode(&self, image: Tensor<4>, _noise: &mut NoiseSource) -> Result<Tensor<4>> {
            Ok(image)
        }

        fn decode(&self, latent: Tensor<4>) -> Result<Tensor<4>> {
            let [b, _, h, w] = latent.dims();
            Ok(latent.slice([0..b, 0..3, 0..h, 0..w]).mul_scalar(2.0))
        }
    }

    #[cfg(feature = "autodiff")]
    #[test]
    fn rgb_gradient_is_pulled_back_through_the_decoder() {
        let shape = [1, 4, 2, 2];
        let pred = pseudo_random(16, 3);
        let target = pseudo_random(12, 5);
        let guidance = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Rgb, 0.01)
            .init()
            .unwrap();
        let step = guidance
            .apply(
                &Linear,
                tensor(target.clone(), [1, 3, 2, 2]),
                tensor(pred.clone(), shape),
                500,
                1.0,
                &mut NoiseSource::seeded(0),
            )
            .unwrap();
        let got: Vec<f32> = step.pred_x0.into_data().try_to_vec().unwrap();
        // rgb = 2·z[:3]; g = −2(rgb − target)/12 · 30; Jᵀg = 2·g on the first 3 channels.
        for i in 0..16 {
            let delta = if i < 12 {
                2.0 * (-2.0 * (2.0 * pred[i] - target[i]) / 12.0 * 30.0)
            } else {
                0.0
            };
            assert!((got[i] - (pred[i] + delta)).abs() < 1e-4, "element {i}");
        }
    }

    #[cfg(not(feature = "autodiff"))]
    #[test]
    fn rgb_guidance_needs_autodiff() {
        let config = RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Rgb, 0.01);
        assert!(matches!(
            config.check_supported(),
            Err(Error::Unsupported(_))
        ));
        let guidance = config.init().unwrap();
        let r = guidance.apply(
            &Linear,
            tensor(vec![0.0; 12], [1, 3, 2, 2]),
            tensor(vec![0.0; 16], [1, 4, 2, 2]),
            500,
            1.0,
            &mut NoiseSource::seeded(0),
        );
        assert!(matches!(r, Err(Error::Unsupported(_))));
    }

    #[test]
    fn latent_guidance_outside_the_window_is_a_no_op() {
        let mut config =
            RestorationGuidanceConfig::new(GuidanceLoss::Mse, GuidanceDomain::Latent, 1.0);
        config.t_start = 100;
        let g = config.init().unwrap();
        let step = g
            .apply(
                &Linear,
                tensor(vec![0.0; 16], [1, 4, 2, 2]),
                tensor(vec![1.0; 16], [1, 4, 2, 2]),
                500,
                1.0,
                &mut NoiseSource::seeded(0),
            )
            .unwrap();
        assert!(!step.applied && step.losses.is_empty());
    }
}
