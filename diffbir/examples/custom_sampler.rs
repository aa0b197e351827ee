//! Restores a photo with a sampler other than the release's (DDIM, 20 steps, no classifier-free
//! guidance), printing each step and cancelling after `MAX_STEPS` steps when given:
//!
//! ```text
//! cargo run --release --example custom_sampler -- photo.png restored.png [MODELS.json [MAX_STEPS]]
//! ```

use std::ops::ControlFlow;

use diffbir::pipeline::ModelConfigs;
use diffbir::sampler::{SamplerConfig, SamplerKind, SamplerOptions};
use diffbir::{Error, Event, Pipeline, Task, Version, save_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: custom_sampler INPUT OUTPUT [MODELS.json [MAX_STEPS]]".into());
    };
    let sampler = SamplerConfig::new(SamplerKind::Ddim, 20, &SamplerOptions::new());
    let mut builder = Pipeline::builder(Task::Sr, Version::V21).configure(|config| {
        config.stage2.sampler = sampler;
        config.stage2.cfg_scale = 1.0;
    });
    if let Some(models) = rest.first() {
        let models: ModelConfigs = serde_json::from_str(&std::fs::read_to_string(models)?)?;
        builder = builder.models(models);
    }
    let max_steps: Option<usize> = rest.get(1).map(|n| n.parse()).transpose()?;
    let pipeline = builder.build()?;

    let image = image::open(input)?;
    let mut observer = |event: &Event<'_>| {
        if let Event::Step { step, .. } = event {
            println!("step {}/{}", step.index + 1, step.total);
            if max_steps.is_some_and(|max| step.index + 1 >= max) {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    match pipeline.restore_image_observed(&image, &mut observer) {
        Ok(restored) => {
            save_image(output, &restored[0])?;
            println!("{output}");
        }
        Err(Error::Cancelled) => println!("cancelled"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
