//! What a sampler needs from a model: the [`Denoiser`] contract.
//!
//! DiffBIR's samplers call `model(x, t, cond)` on a `ControlLDM` and read `eps` or `v` from it
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/sampler.py`). Here that call is a trait whose
//! conditioning is an associated type, so samplers never learn the model's conditioning layout;
//! classifier-free guidance ([`ClassifierFree`](crate::ClassifierFree)) and tiling
//! ([`Tiled`](crate::Tiled)) are wrappers that implement the same trait.

use burn::tensor::{Device, Tensor, TensorData};

diffbir_core::named_enum! {
    /// What the network predicts; samplers convert it with the schedule.
    pub enum Parameterization ("parameterization") {
        /// The added noise `ε` (SD 2.1-base, DiffBIR v1 and v2).
        Eps = "eps",
        /// The velocity `v = √ᾱ·ε − √(1−ᾱ)·x₀` (the zero-terminal-SNR SD 2.1 of DiffBIR
        /// v2.1).
        V = "v",
    }
}

/// The network's time input for one evaluation: one **model timestep** shared by the whole
/// batch (an index of the 1000-step training schedule, not a sampler step index).
///
/// Every DiffBIR sampler evaluates the whole batch at one time. The value is fractional for
/// DPM-Solver (`1000·(t − 1/N)`), an integer otherwise; it is kept in `f32`, the precision in
/// which the reference feeds it to the sinusoidal embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelTimesteps {
    value: f32,
    batch: usize,
}

impl ModelTimesteps {
    /// `batch` copies of the model timestep `value`.
    pub fn new(value: f32, batch: usize) -> Self {
        Self { value, batch }
    }

    /// The timestep shared by the batch.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The timesteps as a tensor.
    ///
    /// # Shapes
    /// - returns `[batch]`
    pub fn tensor(&self, device: &Device) -> Tensor<1> {
        Tensor::from_data(
            TensorData::new(vec![self.value; self.batch], [self.batch]),
            device,
        )
    }
}

/// A model that samplers can denoise with: it predicts `ε` or `v` for a noisy latent.
///
/// This is the k-diffusion `external.py` contract made typed. Implementors are the network
/// (`ControlLdm`), the guidance and tiling wrappers, and analytic test models.
pub trait Denoiser {
    /// Everything besides `x_t` and `t` that the model reads (text context, condition latent,
    /// ...). Samplers only pass it through.
    type Cond;

    /// Whether [`predict`](Self::predict) returns `ε` or `v`.
    fn parameterization(&self) -> Parameterization;

    /// Predicts `ε` or `v` (per [`parameterization`](Self::parameterization)).
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, the noisy latent
    /// - `t`: `B` model timesteps
    /// - returns `[B, C, H, W]`
    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &Self::Cond) -> Tensor<4>;

    /// Predicts as [`predict`](Self::predict) and maps the prediction through `then`.
    ///
    /// `then` must be affine in the prediction (the EDM denoiser `c_out·out + c_skip·x`, the
    /// DPM-Solver `v → ε` conversion). Guidance wrappers apply it to each branch before they
    /// combine them, which is where the reference combines them: the result is then the
    /// reference's to the last bit, not only mathematically. The default maps the prediction.
    fn predict_then(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        cond: &Self::Cond,
        then: &dyn Fn(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        then(self.predict(x_t, t, cond))
    }

    /// Predicts for the same `x_t` under two conditions (the two branches of classifier-free
    /// guidance). The default makes two calls; a model that runs a doubled batch faster
    /// overrides it, and must then return what two calls return up to float rounding.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`; returns two `[B, C, H, W]`
    fn predict_pair(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        first: &Self::Cond,
        second: &Self::Cond,
    ) -> (Tensor<4>, Tensor<4>) {
        (
            self.predict(x_t.clone(), t, first),
            self.predict(x_t, t, second),
        )
    }
}

impl<D: Denoiser + ?Sized> Denoiser for &D {
    type Cond = D::Cond;

    fn parameterization(&self) -> Parameterization {
        (**self).parameterization()
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &Self::Cond) -> Tensor<4> {
        (**self).predict(x_t, t, cond)
    }

    fn predict_then(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        cond: &Self::Cond,
        then: &dyn Fn(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        (**self).predict_then(x_t, t, cond, then)
    }

    fn predict_pair(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        first: &Self::Cond,
        second: &Self::Cond,
    ) -> (Tensor<4>, Tensor<4>) {
        (**self).predict_pair(x_t, t, first, second)
    }
}

/// A `[B, 1, 1, 1]` tensor of per-item scalars (the reference's `extract_into_tensor`).
pub(crate) fn per_item(values: &[f32], device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_fill_the_batch() {
        let t = ModelTimesteps::new(998.5, 3);
        let values: Vec<f32> = t
            .tensor(&Device::flex())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(values, vec![998.5; 3]);
        assert_eq!((t.value(), t.batch()), (998.5, 3));
    }

    #[test]
    fn parameterization_names_round_trip() {
        for p in [Parameterization::Eps, Parameterization::V] {
            assert_eq!(p.name().parse::<Parameterization>().unwrap(), p);
        }
        assert!("x0".parse::<Parameterization>().is_err());
    }
}
