//! The sampler choice at the configuration boundary: [`SamplerConfig`] (serialisable, one
//! variant per `--sampler` name of DiffBIR) and the built [`Sampler`].
//!
//! Mirrors the dispatch of `XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py::apply_cldm` and
//! `diffbir/sampler/edm_sampler.py::EDMSampler.TYPE_TO_SOLVER`.

use burn::config::Config;
use burn::tensor::Tensor;
use diffbir_core::{Error, NoiseSource, Result};
use serde::{Deserialize, Serialize};

use crate::cond_fn::SpacedGuidance;
use crate::ddim::{Ddim, DdimConfig};
use crate::denoiser::Denoiser;
use crate::dpm_solver::{DpmSolver, DpmSolverConfig};
use crate::edm::{Edm, EdmAncestralConfig, EdmChurnConfig, EdmConfig, EdmLmsConfig, EdmSolver};
use crate::guidance::CfgRescale;
use crate::observer::SampleObserver;
use crate::schedule::NoiseSchedule;
use crate::spaced::{Spaced, SpacedConfig};

/// Which sampler, with its settings. Serialised with a `sampler` tag holding DiffBIR's name
/// (`{"sampler": "edm_dpm++_3m_sde", "steps": 10, "eta": 1.0, "s_noise": 1.0}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "sampler")]
pub enum SamplerConfig {
    /// `spaced`: IDDPM ancestral sampling on a respaced schedule.
    #[serde(rename = "spaced")]
    Spaced(SpacedConfig),
    /// `ddim`.
    #[serde(rename = "ddim")]
    Ddim(DdimConfig),
    /// `dpm++_m2`: DPM-Solver++ multistep, order 2.
    #[serde(rename = "dpm++_m2")]
    DpmPpM2(DpmSolverConfig),
    /// `edm_euler`.
    #[serde(rename = "edm_euler")]
    EdmEuler(EdmChurnConfig),
    /// `edm_euler_a`.
    #[serde(rename = "edm_euler_a")]
    EdmEulerAncestral(EdmAncestralConfig),
    /// `edm_heun`.
    #[serde(rename = "edm_heun")]
    EdmHeun(EdmChurnConfig),
    /// `edm_dpm_2`.
    #[serde(rename = "edm_dpm_2")]
    EdmDpm2(EdmChurnConfig),
    /// `edm_dpm_2_a`.
    #[serde(rename = "edm_dpm_2_a")]
    EdmDpm2Ancestral(EdmAncestralConfig),
    /// `edm_lms`.
    #[serde(rename = "edm_lms")]
    EdmLms(EdmLmsConfig),
    /// `edm_dpm++_2s_a`.
    #[serde(rename = "edm_dpm++_2s_a")]
    EdmDpmPp2sAncestral(EdmAncestralConfig),
    /// `edm_dpm++_sde`.
    #[serde(rename = "edm_dpm++_sde")]
    EdmDpmPpSde(EdmAncestralConfig),
    /// `edm_dpm++_2m`.
    #[serde(rename = "edm_dpm++_2m")]
    EdmDpmPp2m(EdmConfig),
    /// `edm_dpm++_2m_sde`.
    #[serde(rename = "edm_dpm++_2m_sde")]
    EdmDpmPp2mSde(EdmAncestralConfig),
    /// `edm_dpm++_3m_sde` (DiffBIR v2.1's default).
    #[serde(rename = "edm_dpm++_3m_sde")]
    EdmDpmPp3mSde(EdmAncestralConfig),
}

impl Config for SamplerConfig {}

diffbir_core::named_enum! {
    /// DiffBIR's sampler names (`--sampler`): which [`SamplerConfig`] variant to build.
    pub enum SamplerKind ("sampler") {
        /// `spaced`.
        Spaced = "spaced",
        /// `ddim`.
        Ddim = "ddim",
        /// `dpm++_m2`.
        DpmPpM2 = "dpm++_m2",
        /// `edm_euler`.
        EdmEuler = "edm_euler",
        /// `edm_euler_a`.
        EdmEulerAncestral = "edm_euler_a",
        /// `edm_heun`.
        EdmHeun = "edm_heun",
        /// `edm_dpm_2`.
        EdmDpm2 = "edm_dpm_2",
        /// `edm_dpm_2_a`.
        EdmDpm2Ancestral = "edm_dpm_2_a",
        /// `edm_lms`.
        EdmLms = "edm_lms",
        /// `edm_dpm++_2s_a`.
        EdmDpmPp2sAncestral = "edm_dpm++_2s_a",
        /// `edm_dpm++_sde`.
        EdmDpmPpSde = "edm_dpm++_sde",
        /// `edm_dpm++_2m`.
        EdmDpmPp2m = "edm_dpm++_2m",
        /// `edm_dpm++_2m_sde`.
        EdmDpmPp2mSde = "edm_dpm++_2m_sde",
        /// `edm_dpm++_3m_sde` (DiffBIR v2.1's default).
        EdmDpmPp3mSde = "edm_dpm++_3m_sde",
    }
}

/// The sampler settings of DiffBIR's command line, of which each sampler takes its own
/// (`--s_churn --s_tmin --s_tmax --s_noise --eta --order`; defaults as there).
#[derive(Config, Debug)]
pub struct SamplerOptions {
    /// `--s_churn`.
    #[config(default = 0.0)]
    pub s_churn: f64,
    /// `--s_tmin`.
    #[config(default = 0.0)]
    pub s_tmin: f64,
    /// `--s_tmax`.
    #[config(default = 300.0)]
    pub s_tmax: f64,
    /// `--s_noise`.
    #[config(default = 1.0)]
    pub s_noise: f64,
    /// `--eta` (not passed to `ddim`, which DiffBIR always runs with `η = 0`).
    #[config(default = 1.0)]
    pub eta: f64,
    /// `--order` (`edm_lms`).
    #[config(default = 1)]
    pub order: usize,
}

impl SamplerConfig {
    /// The sampler DiffBIR's pipeline builds for `--sampler`, `steps` and the command line's
    /// sampler options (each sampler keeps the options it takes).
    pub fn new(kind: SamplerKind, steps: usize, options: &SamplerOptions) -> Self {
        let churn = || EdmChurnConfig {
            steps,
            s_churn: options.s_churn,
            s_tmin: options.s_tmin,
            s_tmax: options.s_tmax,
            s_noise: options.s_noise,
        };
        let ancestral = || EdmAncestralConfig {
            steps,
            eta: options.eta,
            s_noise: options.s_noise,
        };
        match kind {
            SamplerKind::Spaced => Self::Spaced(SpacedConfig::new(steps)),
            SamplerKind::Ddim => Self::Ddim(DdimConfig::new(steps)),
            SamplerKind::DpmPpM2 => Self::DpmPpM2(DpmSolverConfig::new(steps)),
            SamplerKind::EdmEuler => Self::EdmEuler(churn()),
            SamplerKind::EdmEulerAncestral => Self::EdmEulerAncestral(ancestral()),
            SamplerKind::EdmHeun => Self::EdmHeun(churn()),
            SamplerKind::EdmDpm2 => Self::EdmDpm2(churn()),
            SamplerKind::EdmDpm2Ancestral => Self::EdmDpm2Ancestral(ancestral()),
            SamplerKind::EdmLms => Self::EdmLms(EdmLmsConfig::new(steps).with_order(options.order)),
            SamplerKind::EdmDpmPp2sAncestral => Self::EdmDpmPp2sAncestral(ancestral()),
            SamplerKind::EdmDpmPpSde => Self::EdmDpmPpSde(ancestral()),
            SamplerKind::EdmDpmPp2m => Self::EdmDpmPp2m(EdmConfig::new(steps)),
            SamplerKind::EdmDpmPp2mSde => Self::EdmDpmPp2mSde(ancestral()),
            SamplerKind::EdmDpmPp3mSde => Self::EdmDpmPp3mSde(ancestral()),
        }
    }

    /// Which sampler this is.
    pub fn kind(&self) -> SamplerKind {
        match self {
            Self::Spaced(_) => SamplerKind::Spaced,
            Self::Ddim(_) => SamplerKind::Ddim,
            Self::DpmPpM2(_) => SamplerKind::DpmPpM2,
            Self::EdmEuler(_) => SamplerKind::EdmEuler,
            Self::EdmEulerAncestral(_) => SamplerKind::EdmEulerAncestral,
            Self::EdmHeun(_) => SamplerKind::EdmHeun,
            Self::EdmDpm2(_) => SamplerKind::EdmDpm2,
            Self::EdmDpm2Ancestral(_) => SamplerKind::EdmDpm2Ancestral,
            Self::EdmLms(_) => SamplerKind::EdmLms,
            Self::EdmDpmPp2sAncestral(_) => SamplerKind::EdmDpmPp2sAncestral,
            Self::EdmDpmPpSde(_) => SamplerKind::EdmDpmPpSde,
            Self::EdmDpmPp2m(_) => SamplerKind::EdmDpmPp2m,
            Self::EdmDpmPp2mSde(_) => SamplerKind::EdmDpmPp2mSde,
            Self::EdmDpmPp3mSde(_) => SamplerKind::EdmDpmPp3mSde,
        }
    }

    /// DiffBIR's name of the sampler.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The requested number of steps.
    pub fn steps(&self) -> usize {
        match self {
            Self::Spaced(c) => c.steps,
            Self::Ddim(c) => c.steps,
            Self::DpmPpM2(c) => c.steps,
            Self::EdmEuler(c) | Self::EdmHeun(c) | Self::EdmDpm2(c) => c.steps,
            Self::EdmEulerAncestral(c)
            | Self::EdmDpm2Ancestral(c)
            | Self::EdmDpmPp2sAncestral(c)
            | Self::EdmDpmPpSde(c)
            | Self::EdmDpmPp2mSde(c)
            | Self::EdmDpmPp3mSde(c) => c.steps,
            Self::EdmLms(c) => c.steps,
            Self::EdmDpmPp2m(c) => c.steps,
        }
    }

    /// The guidance-scale rule this sampler applies for `--rescale_cfg`: DPM-Solver's model
    /// wrapper rescales also scales below 1, in `f32`; the other samplers follow
    /// `Sampler.get_cfg_scale`.
    pub fn cfg_rescale(&self, rescale: bool) -> CfgRescale {
        match (rescale, self) {
            (false, _) => CfgRescale::Off,
            (true, Self::DpmPpM2(_)) => CfgRescale::CosineAlways,
            (true, _) => CfgRescale::Cosine,
        }
    }

    /// Builds the sampler's tables for `schedule`.
    ///
    /// Fails on step counts the sampler cannot run (see each sampler's `init`).
    pub fn init(&self, schedule: &NoiseSchedule) -> Result<Sampler> {
        let edm = |steps, solver| Ok(Sampler::Edm(Edm::new(schedule, steps, solver)?));
        match self {
            Self::Spaced(c) => Ok(Sampler::Spaced(c.init(schedule)?)),
            Self::Ddim(c) => Ok(Sampler::Ddim(c.init(schedule)?)),
            Self::DpmPpM2(c) => Ok(Sampler::DpmSolver(c.init(schedule)?)),
            Self::EdmEuler(c) => edm(c.steps, EdmSolver::Euler(c.into())),
            Self::EdmEulerAncestral(c) => edm(c.steps, EdmSolver::EulerAncestral(c.into())),
            Self::EdmHeun(c) => edm(c.steps, EdmSolver::Heun(c.into())),
            Self::EdmDpm2(c) => edm(c.steps, EdmSolver::Dpm2(c.into())),
            Self::EdmDpm2Ancestral(c) => edm(c.steps, EdmSolver::Dpm2Ancestral(c.into())),
            Self::EdmLms(c) => edm(c.steps, EdmSolver::Lms(c.order)),
            Self::EdmDpmPp2sAncestral(c) => edm(c.steps, EdmSolver::DpmPp2sAncestral(c.into())),
            Self::EdmDpmPpSde(c) => edm(c.steps, EdmSolver::DpmPpSde(c.into())),
            Self::EdmDpmPp2m(c) => edm(c.steps, EdmSolver::DpmPp2m),
            Self::EdmDpmPp2mSde(c) => edm(c.steps, EdmSolver::DpmPp2mSde(c.into())),
            Self::EdmDpmPp3mSde(c) => edm(c.steps, EdmSolver::DpmPp3mSde(c.into())),
        }
    }
}

/// A sampler with its tables, ready to run.
#[derive(Debug, Clone)]
pub enum Sampler {
    /// `spaced`.
    Spaced(Spaced),
    /// `ddim`.
    Ddim(Ddim),
    /// `dpm++_m2`.
    DpmSolver(DpmSolver),
    /// The `edm_*` family.
    Edm(Edm),
}

impl Sampler {
    /// Number of steps the run takes (DDIM may take more than requested).
    pub fn steps(&self) -> usize {
        match self {
            Self::Spaced(s) => s.steps(),
            Self::Ddim(s) => s.steps(),
            Self::DpmSolver(s) => s.steps(),
            Self::Edm(s) => s.steps(),
        }
    }

    /// Samples a clean latent from the start latent `x_t` (from
    /// [`StartPoint::latent`](crate::StartPoint::latent)), drawing the sampler's randomness
    /// from `noise` in the reference's order and reporting every step to `observer`.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, unit variance; returns `[B, C, H, W]`
    pub fn sample<D: Denoiser>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Tensor<4> {
        match self {
            Self::Spaced(s) => s.sample(model, x_t, cond, noise, observer),
            Self::Ddim(s) => s.sample(model, x_t, cond, noise, observer),
            Self::DpmSolver(s) => s.sample(model, x_t, cond, noise, observer),
            Self::Edm(s) => s.sample(model, x_t, cond, noise, observer),
        }
    }

    /// [`sample`](Self::sample) with restoration guidance, which the reference applies in
    /// the `spaced` sampler only; the other samplers refuse it.
    ///
    /// # Shapes
    /// - `x_t`: `[B, C, H, W]`, unit variance; returns `[B, C, H, W]`
    pub fn sample_guided<D: Denoiser>(
        &self,
        model: &D,
        x_t: Tensor<4>,
        cond: &D::Cond,
        guidance: SpacedGuidance<'_>,
        noise: &mut NoiseSource,
        observer: &mut impl SampleObserver,
    ) -> Result<Tensor<4>> {
        match self {
            Self::Spaced(s) => s.sample_guided(model, x_t, cond, guidance, noise, observer),
            _ => Err(Error::Unsupported(
                "restoration guidance runs with the `spaced` sampler only, as in the original"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        let options = SamplerOptions::new();
        for kind in SamplerKind::ALL {
            let name = kind.name();
            let config = SamplerConfig::new(name.parse().unwrap(), 10, &options);
            assert_eq!(config.kind(), kind);
            assert_eq!(config.steps(), 10);
            let json = serde_json::to_string(&config).unwrap();
            assert!(json.contains(&format!("\"sampler\":\"{name}\"")), "{json}");
            let back: SamplerConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back.name(), name);
        }
        let err = "dpm++_s2".parse::<SamplerKind>().unwrap_err();
        assert!(err.to_string().contains("edm_dpm++_3m_sde"), "{err}");
    }

    #[test]
    fn ddim_ignores_eta_and_lms_keeps_its_order() {
        let options = SamplerOptions::new().with_eta(0.7).with_order(3);
        let SamplerConfig::Ddim(ddim) = SamplerConfig::new(SamplerKind::Ddim, 10, &options) else {
            panic!("not ddim");
        };
        assert_eq!(ddim.eta, 0.0);
        let SamplerConfig::EdmLms(lms) = SamplerConfig::new(SamplerKind::EdmLms, 10, &options)
        else {
            panic!("not lms");
        };
        assert_eq!(lms.order, 3);
    }
}
