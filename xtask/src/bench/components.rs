//! The benchmarked components and how each one is timed in this process.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use diffbir::controlnet::{ControlLdm, ControlNetConfig};
use diffbir::core::{Precision, cast_module};
use diffbir::ldm::clip::ClipTextConfig;
use diffbir::ldm::unet::Control;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::rm::{Restorer, RrdbNetConfig, ScuNetConfig, Stage1, SwinIrConfig};
use diffbir_train::optim::{AdamW, AdamWConfig, trainable};
use diffbir_train::stage1::sum_mse;

/// Tile side of `vae-decode-tiled`, in latent pixels: DiffBIR's default
/// `--vae_decoder_tile_size 256` (pixels) divided by 8.
pub const DECODER_TILE: usize = 32;

/// One benchmarked component.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// Stable name (`--component`, the `name` of the JSON records).
    pub name: &'static str,
    /// Batch sizes it is timed at.
    pub batches: &'static [usize],
    /// What runs, at the official size.
    pub about: &'static str,
    /// Extrapolated from other components instead of timed.
    pub extrapolated: bool,
}

const fn timed(name: &'static str, batches: &'static [usize], about: &'static str) -> Component {
    Component {
        name,
        batches,
        about,
        extrapolated: false,
    }
}

/// Every component, in the order they run.
pub const COMPONENTS: &[Component] = &[
    timed(
        "swinir",
        &[1],
        "stage-1 SwinIR (DiffBIR config) on a 512x512 image",
    ),
    timed(
        "bsrnet",
        &[1],
        "stage-1 BSRNet (RRDBNet, x4): 128x128 -> 512x512",
    ),
    timed("scunet", &[1], "stage-1 SCUNet-PSNR on a 512x512 image"),
    timed(
        "text-encoder",
        &[2],
        "OpenCLIP ViT-H/14 text tower (23 of 24 blocks): 2 prompts x 77 tokens",
    ),
    timed(
        "vae-encode",
        &[1],
        "SD VAE encoder + quant_conv (posterior mode): 512x512 image -> 64x64 latent",
    ),
    timed(
        "vae-decode",
        &[1],
        "post_quant_conv + SD VAE decoder: 64x64 latent -> 512x512 image",
    ),
    timed(
        "unet",
        &[1, 2],
        "SD 2.1 UNet alone (no control) on a 64x64 latent, context 77x1024",
    ),
    timed(
        "controlnet",
        &[1, 2],
        "IRControlNet alone (13 residuals) on a 64x64 latent + 64x64 condition latent",
    ),
    timed(
        "controlldm-step",
        &[1, 2],
        "one denoiser call: IRControlNet + UNet on a 64x64 latent (b2 = batched CFG)",
    ),
    timed(
        "vae-decode-tiled",
        &[1],
        "tiled VAE decode (tiles of 32 latents, GroupNorm statistics shared): \
         256x256 latent -> 2048x2048 image",
    ),
    timed(
        "train-stage1-step",
        &[1],
        "one stage-1 training step per sample: SwinIR forward on a 512x512 image, sum-MSE, \
         backward, AdamW update (the reference's batch is 96)",
    ),
    timed(
        "train-stage2-step",
        &[1],
        "one stage-2 training step per sample, the ControlNet's part: IRControlNet + frozen \
         UNet on a 64x64 latent, MSE, backward into the ControlNet, AdamW update (the frozen \
         encodes cost vae-encode x2 + swinir + text-encoder on top)",
    ),
    Component {
        name: "pipeline-10",
        batches: &[1],
        about: "512x512 v2.1 pipeline, 10 steps, extrapolated: swinir + text-encoder b2 + \
                vae-encode + 10 x controlldm-step b2 + vae-decode",
        extrapolated: true,
    },
    Component {
        name: "pipeline-50",
        batches: &[1],
        about: "same, 50 steps",
        extrapolated: true,
    },
];

/// The component called `name`.
pub fn find(name: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// Every component name, in order.
pub fn names() -> Vec<&'static str> {
    COMPONENTS.iter().map(|c| c.name).collect()
}

/// How a component is timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs.
    pub runs: usize,
    /// Shrunken configurations and inputs (plumbing checks only).
    pub tiny: bool,
    /// Float precision of the inference components (models and inputs cast to it).
    pub precision: Precision,
}

/// The components that train (in f32 only).
pub const TRAINING: &[&str] = &["train-stage1-step", "train-stage2-step"];

/// What one in-process measurement gives.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Wall time of each timed run.
    pub times: Vec<Duration>,
    /// Peak RSS while the timed runs ran (`VmHWM`, reset after the model was built when the
    /// kernel allows), in MiB.
    pub peak_rss_mib: Option<u64>,
}

/// Reads a `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.div_ceil(1024))
}

/// Resets the peak-RSS mark (`VmHWM`) to the current RSS; false where the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak RSS (`VmHWM`) in MiB, where `/proc` has it.
pub fn peak_rss_mib() -> Option<u64> {
    status_mib("VmHWM")
}

/// Builds nothing itself: runs `f` `warmup` times, then times it `runs` times (at least once),
/// with the peak RSS of the timed part.
fn time_runs(timing: Timing, mut f: impl FnMut()) -> Measurement {
    for _ in 0..timing.warmup {
        f();
    }
    reset_peak_rss();
    let times = (0..timing.runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    Measurement {
        times,
        peak_rss_mib: peak_rss_mib(),
    }
}

fn image(batch: usize, side: usize, device: &Device) -> Tensor<4> {
    Tensor::<4>::random([batch, 3, side, side], Distribution::Default, device)
}

fn latent(batch: usize, side: usize, device: &Device) -> Tensor<4> {
    Tensor::<4>::random([batch, 4, side, side], Distribution::Default, device)
}

/// Reads one parameter of an updated module back, so the update has run when the clock
/// stops.
fn first_param<M: Module>(module: &Option<M>) -> Option<f32> {
    let mut first = None;
    struct First<'a>(&'a mut Option<f32>);
    impl ModuleVisitor for First<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0.is_none() {
                *self.0 = param
                    .val()
                    .flatten::<1>(0, D - 1)
                    .slice(0..1)
                    .into_data()
                    .iter::<f32>()
                    .next();
            }
        }
    }
    module.as_ref()?.visit(&mut First(&mut first));
    first
}

/// The stage-2 inputs: latent, condition latent, timestep and text context, in f32 as the
/// pipeline passes them (`with_precision` models cast them inside).
struct Stage2Inputs {
    x: Tensor<4>,
    hint: Tensor<4>,
    t: Tensor<1>,
    ctx: Tensor<3>,
}

fn stage2_inputs(batch: usize, tiny: bool, device: &Device) -> Stage2Inputs {
    let (side, ctx_dim) = if tiny { (16, 8) } else { (64, 1024) };
    Stage2Inputs {
        x: latent(batch, side, device),
        hint: latent(batch, side, device),
        t: Tensor::<1>::full([batch], 500.0, device),
        ctx: Tensor::<3>::random([batch, 77, ctx_dim], Distribution::Default, device),
    }
}

fn unet_config(tiny: bool) -> UnetConfig {
    if tiny {
        UnetConfig::tiny()
    } else {
        UnetConfig::sd21()
    }
}

fn controlnet_config(tiny: bool) -> ControlNetConfig {
    if tiny {
        ControlNetConfig::tiny()
    } else {
        ControlNetConfig::sd21()
    }
}

fn vae_config(tiny: bool) -> VaeConfig {
    if tiny {
        VaeConfig::tiny()
    } else {
        VaeConfig::sd21()
    }
}

/// Builds component `name` at `batch` with random weights on `device` and times it. Results are
/// read back to the host before each run's clock stops.
pub fn measure(name: &str, batch: usize, device: &Device, timing: Timing) -> Result<Measurement> {
    let Some(component) = find(name) else {
        bail!("unknown component `{name}`");
    };
    if component.extrapolated {
        bail!("`{name}` is extrapolated from other components, not timed");
    }
    if !component.batches.contains(&batch) {
        bail!(
            "`{name}` is timed at batch {:?}, not {batch}",
            component.batches
        );
    }
    let tiny = timing.tiny;
    let precision = timing.precision;
    if precision != Precision::F32 && TRAINING.contains(&name) {
        bail!("`{name}` trains in f32 only: time it without --precision");
    }
    // The model and its float inputs in the timed precision.
    fn cast<M: Module>(model: M, precision: Precision) -> M {
        cast_module(model, precision)
    }
    let input = |t: Tensor<4>| t.cast(precision.dtype());
    let m = match name {
        "swinir" | "bsrnet" | "scunet" => {
            let (model, side) = match (name, tiny) {
                ("swinir", false) => (Stage1::SwinIr(SwinIrConfig::diffbir().init(device)), 512),
                ("swinir", true) => (Stage1::SwinIr(SwinIrConfig::tiny().init(device)), 64),
                ("bsrnet", false) => (Stage1::RrdbNet(RrdbNetConfig::bsrnet().init(device)), 128),
                ("bsrnet", true) => (Stage1::RrdbNet(RrdbNetConfig::tiny().init(device)), 16),
                (_, false) => (
                    Stage1::ScuNet(ScuNetConfig::scunet_psnr().init(device)),
                    512,
                ),
                (_, true) => (Stage1::ScuNet(ScuNetConfig::tiny().init(device)), 64),
            };
            let model = cast(model, precision);
            let x = image(batch, side, device);
            time_runs(timing, || {
                let _ = model.restore(x.clone()).into_data();
            })
        }
        "text-encoder" => {
            let config = if tiny {
                ClipTextConfig::tiny()
            } else {
                ClipTextConfig::vit_h14()
            };
            let clip = cast(config.init(device), precision);
            let ids: Vec<i64> = (0..batch * 77).map(|i| (i * 37 % 49_000) as i64).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 77]), device);
            time_runs(timing, || {
                let _ = clip.forward(tokens.clone()).into_data();
            })
        }
        "vae-encode" => {
            let vae = cast(vae_config(tiny).init(device), precision);
            let x = input(
                image(batch, if tiny { 64 } else { 512 }, device)
                    .mul_scalar(2.0)
                    .sub_scalar(1.0),
            );
            time_runs(timing, || {
                let _ = vae.encode(x.clone()).mode().into_data();
            })
        }
        "vae-decode" => {
            let vae = cast(vae_config(tiny).init(device), precision);
            let z = input(latent(batch, if tiny { 8 } else { 64 }, device));
            time_runs(timing, || {
                let _ = vae.decode(z.clone()).into_data();
            })
        }
        "vae-decode-tiled" => {
            let vae = cast(vae_config(tiny).init(device), precision);
            let (side, tile) = if tiny { (32, 8) } else { (256, DECODER_TILE) };
            let z = input(latent(batch, side, device));
            time_runs(timing, || {
                let _ = vae.decode_tiled(z.clone(), tile, None).into_data();
            })
        }
        "unet" => {
            let unet = unet_config(tiny).init(device).with_precision(precision);
            let i = stage2_inputs(batch, tiny, device);
            time_runs(timing, || {
                let _ = unet
                    .forward(i.x.clone(), i.t.clone(), &i.ctx, Control::None)
                    .into_data();
            })
        }
        "controlnet" => {
            let controlnet = controlnet_config(tiny)
                .init(device)?
                .with_precision(precision);
            let i = stage2_inputs(batch, tiny, device);
            time_runs(timing, || {
                for r in controlnet.forward(i.x.clone(), i.hint.clone(), i.t.clone(), &i.ctx) {
                    let _ = r.into_data();
                }
            })
        }
        "controlldm-step" => {
            // Cast as the pipeline casts it (time embeddings and output head in f32).
            let cldm = ControlLdm {
                unet: unet_config(tiny).init(device),
                controlnet: controlnet_config(tiny).init(device)?,
            }
            .with_precision(precision);
            let i = stage2_inputs(batch, tiny, device);
            time_runs(timing, || {
                let _ = cldm
                    .forward(i.x.clone(), i.t.clone(), &i.ctx, i.hint.clone(), &[1.0; 13])
                    .into_data();
            })
        }
        "train-stage1-step" => {
            let config = if tiny {
                SwinIrConfig::tiny()
            } else {
                SwinIrConfig::diffbir()
            };
            let side = if tiny { 64 } else { 512 };
            let (lq, gt) = (image(batch, side, device), image(batch, side, device));
            let mut optim = AdamW::new(AdamWConfig::new(1e-4));
            let mut model = Some(trainable(Stage1::SwinIr(config.init(device))));
            time_runs(timing, || {
                let Some(m) = model.take() else { return };
                let loss = sum_mse(m.restore(lq.clone()), gt.clone());
                let mut grads = loss.backward();
                model = Some(optim.step(m, &mut grads));
                let _ = first_param(&model);
            })
        }
        "train-stage2-step" => {
            let unet = unet_config(tiny).init(device);
            let i = stage2_inputs(batch, tiny, device);
            let target = latent(batch, i.x.dims()[2], device);
            let mut optim = AdamW::new(AdamWConfig::new(1e-5).with_weight_decay(0.01));
            let mut controlnet = Some(trainable(controlnet_config(tiny).init(device)?));
            time_runs(timing, || {
                let Some(cn) = controlnet.take() else { return };
                let cldm = ControlLdm {
                    unet: unet.clone(),
                    controlnet: cn,
                };
                let pred =
                    cldm.forward(i.x.clone(), i.t.clone(), &i.ctx, i.hint.clone(), &[1.0; 13]);
                let loss = (pred - target.clone()).powi_scalar(2).mean();
                let mut grads = loss.backward();
                controlnet = Some(optim.step(cldm.controlnet, &mut grads));
                let _ = first_param(&controlnet);
            })
        }
        other => bail!("component `{other}` has no timing code"),
    };
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_pipelines_need_only_timed_parts() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for c in COMPONENTS.iter().filter(|c| c.extrapolated) {
            let steps = super::super::record::pipeline_steps(c.name).expect("pipeline-N");
            for (part, batch, _) in super::super::record::pipeline_parts(steps) {
                let p = find(part).expect("part exists");
                assert!(
                    !p.extrapolated && p.batches.contains(&batch),
                    "{part} b{batch}"
                );
            }
        }
    }

    #[test]
    fn peak_rss_is_readable_and_resettable() {
        // A touched 512 MiB block (above glibc's mmap threshold, so freeing it unmaps it)
        // raises the peak; once it is gone, a reset brings the peak down by most of it, even
        // with other tests allocating in parallel.
        let block = vec![1u8; 512 << 20];
        let with_block = peak_rss_mib().expect("VmHWM in /proc/self/status");
        assert!(with_block >= 512, "{with_block} MiB");
        drop(std::hint::black_box(block));
        if reset_peak_rss() {
            let after = peak_rss_mib().unwrap();
            assert!(
                after + 256 < with_block,
                "{after} MiB after a reset, {with_block} before"
            );
        }
    }

    #[test]
    fn tiny_components_run() {
        let device = diffbir::core::device::DeviceSpec::Flex.device().unwrap();
        let timing = Timing {
            warmup: 0,
            runs: 1,
            tiny: true,
            precision: Precision::F32,
        };
        for name in [
            "text-encoder",
            "vae-decode",
            "controlnet",
            "train-stage1-step",
            "train-stage2-step",
        ] {
            let batch = find(name).unwrap().batches[0];
            let m = measure(name, batch, &device, timing).unwrap();
            assert_eq!(m.times.len(), 1);
        }
        assert!(measure("pipeline-10", 1, &device, timing).is_err());
        assert!(measure("unet", 3, &device, timing).is_err());
    }
}
