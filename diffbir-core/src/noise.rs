//! Seeded, backend-independent noise, and replay of recorded noise.
//!
//! Every random draw of the restoration goes through a [`NoiseSource`]. Seeded draws are made
//! on the CPU with ChaCha8 and moved to the device, so a seed gives the same image on every
//! backend. Each sample has its own stream (`seed`, stream = sample index): a batch that
//! starts at sample `k` ([`NoiseSource::begin_batch`]) draws item `b` from stream `k + b`, so
//! sample `i` gets the same noise whatever the batch size, and whatever was restored before
//! with the same source. A parity case instead replays the tensors the reference drew, in
//! order.

use std::collections::VecDeque;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Where random numbers come from.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Seeded {
        seed: u64,
        /// The sample index of batch item 0.
        first: u64,
        streams: Vec<ChaCha8Rng>,
    },
    Replay {
        draws: VecDeque<TensorData>,
        taken: usize,
    },
}

impl NoiseSource {
    /// Fresh draws from a seed.
    pub fn seeded(seed: u64) -> Self {
        Self {
            inner: Inner::Seeded {
                seed,
                first: 0,
                streams: Vec::new(),
            },
        }
    }

    /// Replays recorded tensors, in order (each draw must have the recorded shape).
    pub fn replay(draws: impl IntoIterator<Item = TensorData>) -> Self {
        Self {
            inner: Inner::Replay {
                draws: draws.into_iter().collect(),
                taken: 0,
            },
        }
    }

    /// Starts a batch whose item `b` is sample `first_sample + b`: a seeded source restarts
    /// those samples' streams, so each sample's noise depends only on the seed and its index.
    /// A replaying source goes on in recorded order.
    pub fn begin_batch(&mut self, first_sample: usize) {
        if let Inner::Seeded { first, streams, .. } = &mut self.inner {
            *first = first_sample as u64;
            streams.clear();
        }
    }

    /// Whether this source replays recorded draws.
    pub fn is_replay(&self) -> bool {
        matches!(self.inner, Inner::Replay { .. })
    }

    /// Recorded draws not consumed yet (0 for a seeded source).
    pub fn remaining(&self) -> usize {
        match &self.inner {
            Inner::Seeded { .. } => 0,
            Inner::Replay { draws, .. } => draws.len(),
        }
    }

    /// Standard normal noise of the given shape (dimension 0 is the batch).
    ///
    /// # Panics
    ///
    /// When replaying, if the recorded draws are exhausted or the next one has another shape:
    /// the code under test draws in another order than the reference did.
    pub fn randn<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        let data = match &mut self.inner {
            Inner::Seeded {
                seed,
                first,
                streams,
            } => {
                let batch = shape.first().copied().unwrap_or(1).max(1);
                let per_item: usize = shape.iter().skip(1).product();
                let mut values = Vec::with_capacity(batch * per_item);
                for b in 0..batch {
                    if streams.len() <= b {
                        let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                        rng.set_stream(*first + b as u64);
                        streams.push(rng);
                    }
                    let rng = &mut streams[b];
                    values.extend((0..per_item).map(|_| {
                        let v: f32 = StandardNormal.sample(rng);
                        v
                    }));
                }
                TensorData::new(values, shape)
            }
            Inner::Replay { draws, taken } => {
                let Some(data) = draws.pop_front() else {
                    panic!(
                        "noise replay: draw {taken} of shape {shape:?} requested, but only {taken} draws were recorded"
                    );
                };
                assert_eq!(
                    data.shape().as_slice(),
                    shape.as_slice(),
                    "noise replay: draw {taken} was recorded with shape {:?}, requested {shape:?}",
                    data.shape()
                );
                *taken += 1;
                data.convert::<f32>()
            }
        };
        Tensor::from_data(data, device)
    }

    /// Standard normal noise shaped like `x`, on `x`'s device.
    pub fn randn_like<const D: usize>(&mut self, x: &Tensor<D>) -> Tensor<D> {
        self.randn(x.dims(), &x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    #[test]
    fn seeded_draws_are_reproducible_and_standard_normal() {
        let device = Device::flex();
        let a = values(NoiseSource::seeded(231).randn([1, 4, 32, 32], &device));
        let b = values(NoiseSource::seeded(231).randn([1, 4, 32, 32], &device));
        let c = values(NoiseSource::seeded(232).randn([1, 4, 32, 32], &device));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = a
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.08,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn batch_items_do_not_depend_on_batch_size() {
        let device = Device::flex();
        let one = values(NoiseSource::seeded(7).randn([1, 2, 3, 3], &device));
        let four = values(NoiseSource::seeded(7).randn([4, 2, 3, 3], &device));
        assert_eq!(one, four[..18]);
        assert_ne!(four[..18], four[18..36]);
        // Successive draws continue each item's stream.
        let mut s = NoiseSource::seeded(7);
        let _ = s.randn([2, 2, 3, 3], &device);
        let second = values(s.randn([2, 1, 2, 2], &device));
        let mut t = NoiseSource::seeded(7);
        let _ = t.randn([1, 2, 3, 3], &device);
        assert_eq!(values(t.randn([1, 1, 2, 2], &device)), second[..4]);
    }

    #[test]
    fn a_batch_starting_at_sample_k_draws_from_sample_k_streams() {
        let device = Device::flex();
        // Three samples, one batch of three...
        let mut s = NoiseSource::seeded(9);
        s.begin_batch(0);
        let a1 = values(s.randn([3, 2, 2, 2], &device));
        let a2 = values(s.randn([3, 1, 2, 2], &device));
        // ...or three batches of one: the same draws per sample.
        let mut t = NoiseSource::seeded(9);
        for k in 0..3 {
            t.begin_batch(k);
            assert_eq!(values(t.randn([1, 2, 2, 2], &device)), a1[k * 8..k * 8 + 8]);
            assert_eq!(values(t.randn([1, 1, 2, 2], &device)), a2[k * 4..k * 4 + 4]);
        }
        // Starting over gives the same draws again (what came before does not matter).
        t.begin_batch(1);
        assert_eq!(values(t.randn([2, 2, 2, 2], &device)), a1[8..]);
        // Replays ignore batch boundaries.
        let mut r = NoiseSource::replay([TensorData::new(vec![1.0f32], [1])]);
        r.begin_batch(5);
        assert_eq!(values(r.randn([1], &device)), [1.0]);
    }

    #[test]
    fn replay_returns_recorded_draws_in_order() {
        let device = Device::flex();
        let first = TensorData::new(vec![1.0f32, 2.0], [1, 2]);
        let second = TensorData::new(vec![3.0f32, 4.0, 5.0], [3]);
        let mut s = NoiseSource::replay([first, second]);
        assert!(s.is_replay());
        assert_eq!(values(s.randn([1, 2], &device)), vec![1.0, 2.0]);
        assert_eq!(s.remaining(), 1);
        let like = Tensor::<1>::zeros([3], &device);
        assert_eq!(values(s.randn_like(&like)), vec![3.0, 4.0, 5.0]);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    #[should_panic(expected = "recorded with shape")]
    fn replay_detects_a_draw_of_another_shape() {
        let mut s = NoiseSource::replay([TensorData::new(vec![1.0f32, 2.0], [2])]);
        let _ = s.randn([1, 2], &Device::flex());
    }

    #[test]
    #[should_panic(expected = "only 0 draws were recorded")]
    fn replay_detects_exhaustion() {
        let mut s = NoiseSource::replay(Vec::<TensorData>::new());
        let _ = s.randn([1], &Device::flex());
    }
}
