//! `cargo xtask bench`: one-shot timings of every network at its official size (random
//! weights), for a quick look; the criterion benches in `benches/` give the careful numbers.
//!
//! Each component runs once to warm up, then `runs` times; the fastest run is reported. Results
//! are read back to the host before the clock stops.

use std::time::{Duration, Instant};

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use diffbir::controlnet::{ControlLdm, controlnet_sd21, init_controlnet};
use diffbir::ldm::clip::ClipTextConfig;
use diffbir::ldm::unet::Control;
use diffbir::ldm::{UnetConfig, VaeConfig};
use diffbir::rm::{Restorer, RrdbNetConfig, ScuNetConfig, Stage1, SwinIrConfig};

/// One measured component.
#[derive(Debug, Clone)]
pub struct Timing {
    /// What ran, with its input size.
    pub name: String,
    /// The fastest run.
    pub best: Duration,
}

fn time(name: &str, runs: usize, mut f: impl FnMut()) -> Timing {
    f();
    let best = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    Timing {
        name: name.to_string(),
        best,
    }
}

/// Times the components whose name contains `filter` (all when empty).
pub fn run(device: &Device, runs: usize, filter: &str, mut report: impl FnMut(&Timing)) {
    let wanted = |name: &str| filter.is_empty() || name.contains(filter);
    let image =
        |side: usize| Tensor::<4>::random([1, 3, side, side], Distribution::Default, device);
    let stage1 = [
        ("stage1/swinir/512x512", 512, "swinir"),
        ("stage1/bsrnet/128x128", 128, "bsrnet"),
        ("stage1/scunet/512x512", 512, "scunet"),
    ];
    for (name, side, kind) in stage1 {
        if !wanted(name) {
            continue;
        }
        let model = match kind {
            "swinir" => Stage1::SwinIr(SwinIrConfig::diffbir().init(device)),
            "bsrnet" => Stage1::RrdbNet(RrdbNetConfig::bsrnet().init(device)),
            _ => Stage1::ScuNet(ScuNetConfig::scunet_psnr().init(device)),
        };
        let x = image(side);
        report(&time(name, runs, || {
            let _ = model.restore(x.clone()).into_data();
        }));
    }
    if wanted("vae/") {
        let vae = VaeConfig::sd21().init(device);
        let x = image(512);
        let z = Tensor::<4>::random([1, 4, 64, 64], Distribution::Default, device);
        report(&time("vae/encode/512x512", runs, || {
            let _ = vae.encode(x.clone()).mode().into_data();
        }));
        report(&time("vae/decode/64x64", runs, || {
            let _ = vae.decode(z.clone()).into_data();
        }));
    }
    if wanted("text_encoder/") {
        let clip = ClipTextConfig::vit_h14().init(device);
        let ids: Vec<i64> = (0..2 * 77).map(|i| (i * 37 % 49_000) as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 77]), device);
        report(&time("text_encoder/2x77", runs, || {
            let _ = clip.forward(tokens.clone()).into_data();
        }));
    }
    if wanted("unet/") || wanted("controlldm/") {
        let cldm = ControlLdm {
            unet: UnetConfig::sd21().init(device),
            controlnet: init_controlnet(&controlnet_sd21(), device).expect("valid preset"),
        };
        for batch in [1, 2] {
            let x = Tensor::<4>::random([batch, 4, 64, 64], Distribution::Default, device);
            let hint = Tensor::<4>::random([batch, 4, 64, 64], Distribution::Default, device);
            let t = Tensor::<1>::full([batch], 500.0, device);
            let ctx = Tensor::<3>::random([batch, 77, 1024], Distribution::Default, device);
            let unet_name = format!("unet/64x64/b{batch}");
            if wanted(&unet_name) {
                report(&time(&unet_name, runs, || {
                    let _ = cldm
                        .unet
                        .forward(x.clone(), t.clone(), &ctx, Control::None)
                        .into_data();
                }));
            }
            let cldm_name = format!("controlldm/64x64/b{batch}");
            if wanted(&cldm_name) {
                report(&time(&cldm_name, runs, || {
                    let _ = cldm
                        .forward(x.clone(), t.clone(), &ctx, hint.clone(), &[1.0; 13])
                        .into_data();
                }));
            }
        }
    }
}
