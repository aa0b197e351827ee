//! Seeded host randomness: configuration choices, input tensors and the random weights that
//! replace every float parameter of a model, all drawn on the CPU so that every device sees
//! the same numbers.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The random source of one (family, configuration) case.
#[derive(Debug)]
pub struct Draw {
    rng: ChaCha8Rng,
}

/// FNV-1a, for a family's stream number: stable across builds and platforms.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Draw {
    /// The stream of configuration `index` of `family` under `seed`: independent of which
    /// other families run and of how many configurations each draws.
    pub fn for_case(seed: u64, family: &str, index: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(family));
        rng.set_stream(index as u64);
        Self { rng }
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.random_range(lo..=hi)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.rng.random_bool(0.5)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// One of `options`, uniformly.
    pub fn pick<T: Clone>(&mut self, options: &[T]) -> T {
        options[self.rng.random_range(0..options.len())].clone()
    }

    /// A uniform float in `[lo, hi)`.
    pub fn uniform_f64(&mut self, lo: f64, hi: f64) -> f64 {
        self.rng.random_range(lo..hi)
    }

    /// A seed for a [`NoiseSource`](diffbir_core::NoiseSource) both devices replay.
    pub fn seed(&mut self) -> u64 {
        self.rng.random()
    }

    fn normal(&mut self) -> f32 {
        StandardNormal.sample(&mut self.rng)
    }

    /// Standard normal values of `shape`, on the host.
    pub fn normal_data(&mut self, shape: &[usize]) -> TensorData {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| self.normal()).collect();
        TensorData::new(values, shape.to_vec())
    }

    /// Uniform values in `[lo, hi)` of `shape`, on the host.
    pub fn uniform_data(&mut self, shape: &[usize], lo: f32, hi: f32) -> TensorData {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        TensorData::new(values, shape.to_vec())
    }

    /// Integers in `0..hi` of `shape` (token ids), on the host.
    pub fn int_data(&mut self, shape: &[usize], hi: usize) -> TensorData {
        let n = shape.iter().product();
        let values: Vec<i64> = (0..n)
            .map(|_| self.rng.random_range(0..hi) as i64)
            .collect();
        TensorData::new(values, shape.to_vec())
    }

    /// Replaces every float parameter of `module` with host-drawn values (see
    /// `RandomWeights`); the module stays on its device.
    pub fn weights<M: Module>(&mut self, module: M) -> M {
        module.map(&mut RandomWeights {
            draw: self,
            path: Vec::new(),
        })
    }
}

/// A [`ModuleMapper`] that gives every float parameter new values from the host RNG, so that
/// nothing is zero (fresh ControlNet zero convs would hide differences) and activations stay
/// of order one:
///
/// - weights of rank ≥ 2: `N(0, 1) / √fan_in`, the fan-in read from the layer type (burn's
///   `Linear` stores `[in, out]`, convolutions `[out, in/groups, k, k]`, transposed ones
///   `[in, out/groups, k, k]` (stride = kernel here: one tap per input channel); anything
///   else is taken as `[out, in…]`);
/// - rank-1 gains (`gamma`, the norms' scales): `1 + 0.1·N(0, 1)`;
/// - other rank-1 parameters (biases, `beta`): `0.1·N(0, 1)`, so that a missing or misplaced
///   bias shows without a common offset inflating every activation (and with it the
///   tolerance, which is relative to the output's scale).
struct RandomWeights<'a> {
    draw: &'a mut Draw,
    /// `(field or index, container type)` from the root to the current parameter.
    path: Vec<(String, String)>,
}

impl RandomWeights<'_> {
    fn fan_in(&self, dims: &[usize]) -> usize {
        let container = self.path.last().map(|(_, c)| c.as_str()).unwrap_or("");
        let fan = match container {
            // A transposed conv of stride k adds one kernel tap per input channel.
            "Struct:Linear" | "Struct:ConvTranspose2d" | "Struct:ConvTranspose1d" => dims[0],
            _ => dims[1..].iter().product(),
        };
        fan.max(1)
    }
}

impl ModuleMapper for RandomWeights<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if D == 1 {
            let gain = self.path.last().is_some_and(|(name, _)| name == "gamma");
            (0..n)
                .map(|_| {
                    let z = 0.1 * self.draw.normal();
                    if gain { 1.0 + z } else { z }
                })
                .collect()
        } else {
            let scale = (self.fan_in(&dims) as f32).sqrt().recip();
            (0..n).map(|_| scale * self.draw.normal()).collect()
        };
        param.map(|t| {
            let device = t.device();
            Tensor::from_data(TensorData::new(values, dims), &device)
        })
    }
}

/// Every float parameter of `module` multiplied by `1 + eps·N(0, 1)` (host draws from
/// `seed`): the reference's sensitivity to rounding-sized changes.
pub fn jitter<M: Module>(module: M, seed: u64, eps: f64) -> M {
    module.map(&mut Jitter {
        draw: Draw {
            rng: ChaCha8Rng::seed_from_u64(seed),
        },
        eps: eps as f32,
    })
}

struct Jitter {
    draw: Draw,
    eps: f32,
}

impl ModuleMapper for Jitter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        let factors: Vec<f32> = (0..n)
            .map(|_| 1.0 + self.eps * self.draw.normal())
            .collect();
        param.map(|t| {
            let device = t.device();
            let dtype = t.dtype();
            t * Tensor::<D>::from_data(TensorData::new(factors, dims), &device).cast(dtype)
        })
    }
}

/// A host float tensor on `device`, in `dtype`.
pub fn float<const D: usize>(data: &TensorData, device: &Device, dtype: DType) -> Tensor<D> {
    let t = Tensor::<D>::from_data(data.clone(), device);
    if dtype == DType::F32 {
        t
    } else {
        t.cast(dtype)
    }
}

/// A host integer tensor on `device`.
pub fn int<const D: usize>(data: &TensorData, device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(data.clone(), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{GroupNormConfig, LinearConfig};

    #[test]
    fn streams_are_stable_and_independent() {
        let a: Vec<usize> = (0..8)
            .map(|_| Draw::for_case(7, "unet", 1).range(0, 1000))
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Draw::for_case(7, "unet", 1);
        let mut y = Draw::for_case(7, "unet", 2);
        let mut z = Draw::for_case(7, "vae", 1);
        let (x, y, z) = (x.seed(), y.seed(), z.seed());
        assert!(x != y && x != z && y != z);
    }

    #[test]
    fn weights_are_replaced_and_nothing_is_zero() {
        let device = Device::flex();
        let mut draw = Draw::for_case(0, "test", 0);
        let linear = draw.weights(LinearConfig::new(64, 8).init(&device));
        let w = linear.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.125).abs() < 0.03, "{std}");
        let bias = linear
            .bias
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(bias.iter().all(|b| *b != 0.0 && b.abs() < 1.0));
        let norm = draw.weights(GroupNormConfig::new(2, 4).init(&device));
        let gamma = norm
            .gamma
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(gamma.iter().all(|g| (g - 1.0).abs() < 0.5 && *g != 1.0));
    }
}
