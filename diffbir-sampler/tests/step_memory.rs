//! Samplers keep only the history their algorithm needs: with a denoiser that allocates
//! nothing beyond its output, the peak memory of a run does not grow with the number of steps
//! and stays within a few latents (2 for `spaced`, 6 for `edm_dpm++_3m_sde`, counting the
//! result read back).
//!
//! Peak memory is measured with a counting global allocator, which sees every tensor the
//! flex backend allocates (`testing/counting_alloc.rs`, which needs `unsafe`).
#![allow(unsafe_code)]

use burn::tensor::{Device, Tensor};
use diffbir_core::NoiseSource;
use diffbir_sampler::{
    Denoiser, ModelTimesteps, NoiseScheduleConfig, Parameterization, SamplerConfig, SamplerKind,
    SamplerOptions,
};

#[path = "../../testing/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{SERIAL, peak_during};

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// `ε̂ = x_t / 10`: one output tensor per call, nothing kept.
struct Shrink;

impl Denoiser for Shrink {
    type Cond = ();

    fn parameterization(&self) -> Parameterization {
        Parameterization::Eps
    }

    fn predict(&self, x_t: Tensor<4>, _t: &ModelTimesteps, _cond: &()) -> Tensor<4> {
        x_t.mul_scalar(0.1)
    }
}

const SHAPE: [usize; 4] = [1, 4, 64, 64];
const LATENT_BYTES: usize = 4 * 64 * 64 * 4;

fn peak(name: SamplerKind, steps: usize) -> usize {
    let schedule = NoiseScheduleConfig::sd_v2().init();
    let sampler = SamplerConfig::new(name, steps, &SamplerOptions::new())
        .init(&schedule)
        .unwrap();
    let device = Device::flex();
    let x_t = NoiseSource::seeded(1).randn(SHAPE, &device);
    let mut noise = NoiseSource::seeded(2);
    let (_, peak) = peak_during(|| {
        sampler
            .sample(&Shrink, x_t, &(), &mut noise, &mut ())
            .into_data()
    });
    peak
}

#[test]
fn peak_memory_does_not_grow_with_the_steps() {
    let _guard = SERIAL.lock().unwrap();
    for name in SamplerKind::ALL {
        // Warm up the backend's pools once, then compare short and long runs.
        peak(name, 4);
        let short = peak(name, 4);
        let long = peak(name, 24);
        let latents = |bytes: usize| bytes as f64 / LATENT_BYTES as f64;
        assert!(
            long <= short + LATENT_BYTES,
            "{name}: {:.1} latents at 24 steps against {:.1} at 4",
            latents(long),
            latents(short)
        );
        assert!(
            long <= 8 * LATENT_BYTES,
            "{name}: {:.1} latents at peak",
            latents(long)
        );
    }
}
