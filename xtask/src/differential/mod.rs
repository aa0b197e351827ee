//! `cargo xtask differential`: every network family on a device under test against the CPU
//! backend (flex), over randomly drawn small configurations.
//!
//! Each case draws a configuration from the family's own config type (within its validity
//! rules and a parameter budget small enough for a software GPU), builds the model on flex,
//! replaces every float parameter with host-drawn values ([`draw::Draw::weights`]), draws the
//! inputs on the host, and runs the same module on flex in f32 (the reference) and on the
//! device under test (a copy moved with `Module::to_device`, cast to f16 with the project's
//! precision helpers under `--precision f16`). Every output is compared element-wise against
//! a tolerance relative to the reference's scale, raised for ill-conditioned draws to ten
//! times how far the reference itself moves when its weights are jittered by a few ulps
//! ([`Setting::jitter`]). The configurations depend only on the seed, the family and the
//! configuration's index, so a report can be reproduced (and a failing case rerun alone with
//! `--family`).
//!
//! With `--device cpu` flex is compared with itself and must match bit for bit: a self-check
//! of the harness.

mod clip;
mod compare;
mod diffusion;
mod draw;
mod run;
mod stage1;
mod unet;
mod vae;

use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{DType, Device};
use diffbir_core::device::DeviceSpec;
use diffbir_core::{Precision, cast_module};

pub use compare::{Output, OutputDiff, Tolerance, compare, output};
pub use draw::Draw;
pub use run::{CaseReport, Status, Summary, run};

/// The seed used when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 20_240_601;

/// Models larger than this many parameters are drawn again: every case must stay quick on a
/// software GPU.
pub const MAX_PARAMS: usize = 500_000;

/// The same for the networks of the latent space (UNet, IRControlNet; `ControlLdm` gets 1.5
/// times this for both), which run on at most 12×12 latents: their smallest configurations
/// already have ~200 K parameters.
pub const MAX_LATENT_PARAMS: usize = 1_000_000;

/// `cargo xtask differential` options.
#[derive(clap::Args, Debug, Clone)]
pub struct DifferentialArgs {
    /// Device under test: wgpu, vulkan, cuda or cuda:N, or cpu (flex against itself: must match
    /// exactly, a self-check of the harness).
    #[arg(long, default_value = "wgpu")]
    pub device: String,
    /// Seed of the configurations, weights, inputs and sampler noise.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Random configurations per family.
    #[arg(long, default_value_t = 3)]
    pub configs: usize,
    /// Only this family (repeatable; default: all).
    #[arg(long = "family", value_name = "NAME", value_parser = family_names())]
    pub families: Vec<String>,
    /// Precision of the model under test; the reference is always f32 on flex.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub precision: String,
}

fn family_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(FAMILIES.iter().map(|f| f.name))
}

/// What one run compares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The device under test.
    pub device: Device,
    /// Its name, for the report.
    pub device_name: String,
    /// Seed of everything drawn.
    pub seed: u64,
    /// Configurations per family.
    pub configs: usize,
    /// Families to run (empty: all).
    pub families: Vec<String>,
    /// Precision of the model under test.
    pub precision: Precision,
}

impl Options {
    /// Flex against itself, `configs` configurations of every family (the self-check).
    pub fn cpu(seed: u64, configs: usize) -> Self {
        Self {
            device: Device::flex(),
            device_name: "flex".into(),
            seed,
            configs,
            families: Vec::new(),
            precision: Precision::F32,
        }
    }

    /// Whether the device under test is flex itself in f32, which must match bit for bit.
    fn exact(&self) -> bool {
        self.device == Device::flex() && self.precision == Precision::F32
    }

    /// The setting of the reference's perturbed run, whose distance from the reference says
    /// how sensitive the draw is: the weights jittered by a rounding-sized amount in f32
    /// (and for flex itself); for f16 or bf16 on another device, the models run on flex in
    /// that precision, since the draw's own sensitivity to half precision is what any other
    /// set of half-precision kernels (another accumulation order) also meets.
    fn perturbed(&self, jitter_seed: u64) -> Setting {
        if self.precision != Precision::F32 && self.device != Device::flex() {
            Setting {
                precision: self.precision,
                jitter: None,
            }
        } else {
            Setting {
                jitter: Some((jitter_seed, jitter_eps(self.precision))),
                ..Setting::REFERENCE
            }
        }
    }
}

/// How a case is run: the precision of the models under test, and whether the reference's
/// weights are jittered to measure how sensitive its outputs are to rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// Precision of the models (f32 for the reference).
    pub precision: Precision,
    /// `(seed, eps)`: multiply every weight by `1 + eps·N(0, 1)` drawn from the seed.
    pub jitter: Option<(u64, f64)>,
}

/// Relative size of the weight jitter for a model under test in `precision`: 2⁻²⁰ (8 ulps
/// of 1.0) in f32, where rounding is all a device should differ by; a 16th of an ulp in f16
/// (2⁻¹⁴) and bf16 (2⁻¹¹), whose tolerances already cover their own rounding: there the jitter
/// only widens them for draws as ill-conditioned as in f32 (its effect grows linearly with its
/// size).
pub fn jitter_eps(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => 2f64.powi(-20),
        Precision::F16 => 2f64.powi(-14),
        Precision::Bf16 => 2f64.powi(-11),
    }
}

/// The perturbed reference's difference from the reference (`Options::perturbed`), times
/// this, is the least a device's difference may be: an ill-conditioned draw (saturated
/// softmax, long residual chains, GroupNorm over a few pixels) amplifies rounding that much.
pub const JITTER_FACTOR: f64 = 10.0;

impl Setting {
    /// The reference: f32, no jitter.
    pub const REFERENCE: Self = Self {
        precision: Precision::F32,
        jitter: None,
    };

    /// The dtype of inputs to modules cast by `moved`.
    pub fn dtype(&self) -> DType {
        self.precision.dtype()
    }

    /// The same jitter in f32 (for the parts the pipeline keeps in f32).
    pub fn in_f32(&self) -> Self {
        Self {
            precision: Precision::F32,
            ..*self
        }
    }

    /// A copy of `module`, with jittered weights when this setting says so.
    pub fn jittered<M: Module>(&self, module: &M) -> M {
        match self.jitter {
            Some((seed, eps)) => draw::jitter(module.clone(), seed, eps),
            None => module.clone(),
        }
    }
}

/// Runs a case's computation on a device, in a setting, returning its outputs.
pub(crate) type Runner = Box<dyn Fn(&Device, &Setting) -> Result<Vec<Output>>>;

/// A drawn case: its configuration, compactly, and how to run it.
pub(crate) struct Case {
    config: String,
    params: usize,
    run: Runner,
}

impl Case {
    pub(crate) fn new(
        config: String,
        run: impl Fn(&Device, &Setting) -> Result<Vec<Output>> + 'static,
    ) -> Self {
        Self {
            config,
            params: 0,
            run: Box::new(run),
        }
    }

    /// The number of parameters of the models under test, for the report.
    pub(crate) fn params(mut self, params: usize) -> Self {
        self.params = params;
        self
    }
}

/// A network family: how to draw one case, and its tolerances.
struct Family {
    name: &'static str,
    draw: fn(&mut Draw) -> Result<Case>,
    /// Against the f32 reference when the model under test is f32.
    f32_tol: Tolerance,
    /// When it is f16.
    f16_tol: Tolerance,
}

const fn tol(rtol: f64, atol: f64) -> Tolerance {
    Tolerance { rtol, atol }
}

/// Single forward passes: a few f32 roundings apart (each case's weight-jitter floor covers
/// ill-conditioned draws).
const FORWARD: Tolerance = tol(1e-4, 1e-5);
/// A few sampler steps compound the per-step differences (the weight jitter does not reach
/// the timestep embedding's `sin`/`cos` or the sampler's own arithmetic).
const SAMPLING: Tolerance = tol(5e-4, 1e-5);
/// f16 models against the f32 reference: flex in f16 stays within ~1 % on most draws; this
/// catches garbage (wrong kernels, unsupported types), not f16's own sensitivity, which some
/// draws exceed even on flex (GroupNorm over a few latent pixels, head width 1): compare
/// with `--device cpu --precision f16` before reading a device's f16 failure as its own.
const HALF: Tolerance = tol(5e-2, 1e-3);
/// The same after a few sampler steps.
const HALF_SAMPLING: Tolerance = tol(1e-1, 1e-2);

/// Every family, in report order.
const FAMILIES: &[Family] = &[
    Family {
        name: "swinir",
        draw: stage1::swinir,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "rrdbnet",
        draw: stage1::rrdbnet,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "scunet",
        draw: stage1::scunet,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "vae",
        draw: vae::vae,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "vae-tiled",
        draw: vae::vae_tiled,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "clip",
        draw: clip::clip,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "unet",
        draw: unet::unet,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "controlnet",
        draw: unet::controlnet,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "cldm",
        draw: unet::cldm,
        f32_tol: FORWARD,
        f16_tol: HALF,
    },
    Family {
        name: "sampler",
        draw: diffusion::sampler,
        f32_tol: SAMPLING,
        f16_tol: HALF_SAMPLING,
    },
    Family {
        name: "stage2",
        draw: diffusion::stage2,
        f32_tol: SAMPLING,
        f16_tol: HALF_SAMPLING,
    },
];

/// The names of every family, in report order.
pub fn families() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name).collect()
}

/// A module (jittered when the setting says so) copied to `device` and cast to the
/// setting's precision with [`cast_module`] (stage 1, the VAE, the text encoder).
pub(crate) fn moved<M: Module>(module: &M, device: &Device, setting: &Setting) -> M {
    cast_module(
        setting.jittered(module).to_device(device),
        setting.precision,
    )
}

/// A shape as `2x3x17x13`.
pub(crate) fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Draws configurations until `attempt` returns one (it checks the config's `validate` and
/// the parameter budget), failing after many tries.
pub(crate) fn draw_until<T>(
    d: &mut Draw,
    mut attempt: impl FnMut(&mut Draw) -> Option<T>,
) -> Result<T> {
    for _ in 0..1000 {
        if let Some(found) = attempt(d) {
            return Ok(found);
        }
    }
    bail!("no valid configuration in 1000 draws")
}

/// `cargo xtask differential`.
pub fn main(args: DifferentialArgs) -> Result<ExitCode> {
    let spec = args.device.parse::<DeviceSpec>()?;
    let options = Options {
        device: spec.device()?,
        device_name: spec.to_string(),
        seed: args.seed,
        configs: args.configs,
        families: args.families,
        precision: args.precision.parse()?,
    };
    let summary = run(&options, &mut std::io::stdout())?;
    // A case not run (f16 on a device without it) is not a pass.
    Ok(if summary.failed() == 0 && summary.skipped() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
