//! AdamW with PyTorch's update rule, its state keyed by module path (so it can be saved
//! in a checkpoint and loaded into a freshly built module), and the module conversions
//! training needs.
//!
//! PyTorch `torch.optim.AdamW` (decoupled weight decay):
//!
//! ```text
//! p ← p·(1 − lr·λ)
//! m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! The gradients come from any [`GradientSource`]: burn's autodiff [`Gradients`] of one
//! backward pass, burn's [`GradientsParams`] (keyed by parameter id, as burn's own optimisers
//! take them), or burn's [`MultiGradientsParams`], which sums the gradients several replicas
//! computed on their devices (data parallelism, see [`crate::parallel`]).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::Gradients;
use burn::tensor::{Tensor, TensorData};

/// Where [`AdamW::step`] takes each parameter's gradient from.
pub trait GradientSource {
    /// Removes and returns the gradient of the parameter `id` whose current value is `param`
    /// (on `param`'s device), or `None` when it has none (a frozen parameter).
    fn take<const D: usize>(&mut self, id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>>;
}

impl GradientSource for Gradients {
    fn take<const D: usize>(&mut self, _id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
        param.grad_remove(self)
    }
}

impl GradientSource for GradientsParams {
    fn take<const D: usize>(&mut self, id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
        self.remove::<D>(id).map(|g| g.to_device(&param.device()))
    }
}

/// The sum of the gradients every replica computed for the parameter (burn accumulates them
/// on one of the devices; the result is moved to the parameter's device).
impl GradientSource for MultiGradientsParams {
    fn take<const D: usize>(&mut self, id: ParamId, param: &Tensor<D>) -> Option<Tensor<D>> {
        self.remove::<D>(id)
            .map(|(g, _)| g.to_device(&param.device()))
    }
}

/// AdamW hyper-parameters (PyTorch's names and defaults, except the learning rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// `(β₁, β₂)`.
    pub betas: (f64, f64),
    /// `ε`.
    pub eps: f64,
    /// Decoupled weight decay `λ`.
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// PyTorch's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01) at `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// The same with another weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// The optimiser: hyper-parameters, the step count and the two moments per parameter path.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

impl AdamW {
    /// A fresh optimiser.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Updates steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    /// Applies one update to every parameter of `module` that has a gradient in `grads`
    /// (parameters without one, such as frozen ones, are left as they are).
    pub fn step<M: Module, G: GradientSource>(&mut self, module: M, grads: &mut G) -> M {
        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let mut mapper = StepMapper {
            path: Vec::new(),
            grads,
            moments: &mut self.moments,
            decay: 1.0 - c.lr * c.weight_decay,
            step_size: c.lr / (1.0 - c.betas.0.powi(t)),
            bias2_sqrt: (1.0 - c.betas.1.powi(t)).sqrt(),
            config: c,
        };
        module.map(&mut mapper)
    }

    /// The moments as named host tensors (`<path>.exp_avg`, `<path>.exp_avg_sq`).
    pub fn state_tensors(&self) -> Vec<(String, TensorData)> {
        self.moments
            .iter()
            .flat_map(|(path, (m, v))| {
                [
                    (format!("{path}.exp_avg"), m.to_data()),
                    (format!("{path}.exp_avg_sq"), v.to_data()),
                ]
            })
            .collect()
    }

    /// Restores the state written by [`state_tensors`](Self::state_tensors) after `step`
    /// updates; the moments go to `device`.
    pub fn load_state(
        &mut self,
        step: u64,
        tensors: impl IntoIterator<Item = (String, TensorData)>,
        device: &burn::tensor::Device,
    ) -> Result<(), String> {
        let mut m: BTreeMap<String, Tensor<1>> = BTreeMap::new();
        let mut v: BTreeMap<String, Tensor<1>> = BTreeMap::new();
        for (name, data) in tensors {
            let t = Tensor::<1>::from_data(data, device);
            if let Some(p) = name.strip_suffix(".exp_avg_sq") {
                v.insert(p.to_string(), t);
            } else if let Some(p) = name.strip_suffix(".exp_avg") {
                m.insert(p.to_string(), t);
            } else {
                return Err(format!("unexpected optimiser tensor `{name}`"));
            }
        }
        let mut moments = BTreeMap::new();
        for (path, m) in m {
            let v = v
                .remove(&path)
                .ok_or_else(|| format!("`{path}` has exp_avg but no exp_avg_sq"))?;
            moments.insert(path, (m, v));
        }
        if let Some(path) = v.keys().next() {
            return Err(format!("`{path}` has exp_avg_sq but no exp_avg"));
        }
        self.moments = moments;
        self.step = step;
        Ok(())
    }
}

struct StepMapper<'a, G> {
    path: Vec<String>,
    grads: &'a mut G,
    moments: &'a mut BTreeMap<String, (Tensor<1>, Tensor<1>)>,
    config: AdamWConfig,
    decay: f64,
    step_size: f64,
    bias2_sqrt: f64,
}

impl<G: GradientSource> ModuleMapper for StepMapper<'_, G> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.take(id, &tensor) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let strategy = tensor.gradient_checkpointing_strategy();
        let shape = tensor.dims();
        let n: usize = shape.iter().product();
        let p = tensor.inner().reshape([n]);
        let g = grad.reshape([n]);
        let c = self.config;
        let key = self.path.join(".");
        let (m, v) = match self.moments.remove(&key) {
            Some((m, v)) => (
                m.mul_scalar(c.betas.0) + g.clone().mul_scalar(1.0 - c.betas.0),
                v.mul_scalar(c.betas.1) + g.clone().mul(g).mul_scalar(1.0 - c.betas.1),
            ),
            None => (
                g.clone().mul_scalar(1.0 - c.betas.0),
                g.clone().mul(g).mul_scalar(1.0 - c.betas.1),
            ),
        };
        let p = if self.decay == 1.0 {
            p
        } else {
            p.mul_scalar(self.decay)
        };
        let denom = v
            .clone()
            .sqrt()
            .div_scalar(self.bias2_sqrt)
            .add_scalar(c.eps);
        let p = p - m.clone().div(denom).mul_scalar(self.step_size);
        self.moments.insert(key, (m, v));
        let mut p = Tensor::<D>::from_inner(p.reshape(shape));
        if let Some(s) = strategy {
            p = p.with_gradient_checkpointing_strategy(s);
        }
        Param::from_mapped_value(id, p.require_grad(), mapper)
    }
}

/// Makes every float parameter of `module` a tracked autodiff leaf (for training).
pub fn trainable<M: Module>(module: M) -> M {
    struct Track;
    impl ModuleMapper for Track {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, _) = param.consume();
            Param::initialized(id, tensor.inner().autodiff().require_grad())
        }
    }
    module.map(&mut Track)
}

/// Drops the autodiff association of every parameter (for inference and saving).
pub fn frozen<M: Module>(module: M) -> M {
    struct Untrack;
    impl ModuleMapper for Untrack {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, _) = param.consume();
            Param::initialized(id, tensor.inner())
        }
    }
    module.map(&mut Untrack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn matches_pytorch_adamw_on_a_quadratic() {
        // One scalar parameter p=1, loss = p² → g = 2p. PyTorch AdamW(lr=0.1, wd=0.01):
        // step 1: p = 1·(1−0.001) − 0.1·(0.2/0.1)/(√(0.004/0.001·…)…) computed in f64 below.
        let device = Device::flex();
        let lin: Linear = LinearConfig::new(1, 1).with_bias(false).init(&device);
        let lin = Linear {
            weight: Param::from_tensor(Tensor::<2>::ones([1, 1], &device)),
            ..lin
        };
        let mut lin = trainable(lin);
        let mut opt = AdamW::new(AdamWConfig::new(0.1));
        let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for t in 1..=3 {
            let w = lin.weight.val();
            let loss = w.clone().mul(w).sum();
            let mut grads = loss.backward();
            lin = opt.step(lin, &mut grads);
            let g = 2.0 * p;
            p *= 1.0 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let bc1 = 1.0 - 0.9f64.powi(t);
            let bc2 = 1.0 - 0.999f64.powi(t);
            p -= 0.1 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
        }
        let got: f32 = lin.weight.val().into_data().try_to_vec::<f32>().unwrap()[0];
        assert!((got as f64 - p).abs() < 1e-5, "{got} vs {p}");
    }
}
