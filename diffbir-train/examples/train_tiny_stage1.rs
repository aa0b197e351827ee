//! Trains the tiny stage-1 SwinIR of `configs/tiny-stage1.toml` (64×64 crops of real photos
//! with DiffBIR's degradations) for a few steps, then loads the exported weights as a stage-1
//! model, as `diffbir restore --stage1-ckpt` would:
//!
//! ```text
//! cargo run --release -p diffbir-train --example train_tiny_stage1 -- runs/tiny [STEPS]
//! ```

use burn::tensor::Device;
use diffbir_core::{Checkpoint, Precision};
use diffbir_train::config::{Stage1TrainConfig, load_config};
use diffbir_train::stage1::train_stage1;
use diffbir_train::{Event, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, rest @ ..] = args.as_slice() else {
        return Err("usage: train_tiny_stage1 OUT_DIR [STEPS]".into());
    };
    let steps: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let config_file = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny-stage1.toml");
    let mut config: Stage1TrainConfig = load_config(config_file.as_ref())?;
    config.train.image_every = 0;

    let options = RunOptions {
        out: out.into(),
        steps: Some(steps),
        resume: true,
    };
    let summary = train_stage1(&config, &options, &mut |event: &Event| {
        if let Event::Step { step, loss } = event {
            println!("step {step}: loss {loss:.5}");
        }
    })?;
    println!("weights: {}", summary.weights.display());

    let checkpoint = Checkpoint::open(&summary.weights)?;
    let (_model, report) = config.model.load(
        &checkpoint,
        config.model.key_map(),
        Precision::F32,
        &Device::flex(),
    )?;
    println!("loaded: {report:?}");
    Ok(())
}
