//! Restores a photo with DiffBIR v2.1's `sr` task (×4), downloading the official weights into
//! the cache on first use:
//!
//! ```text
//! cargo run --release --example restore_photo -- photo.png restored.png
//! ```
//!
//! A third argument names a JSON file of network shapes (`ModelConfigs`) for checkpoints
//! trained with other settings.

use diffbir::pipeline::ModelConfigs;
use diffbir::{Pipeline, Task, Version, save_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: restore_photo INPUT OUTPUT [MODELS.json]".into());
    };
    let mut builder = Pipeline::builder(Task::Sr, Version::V21).seed(231);
    if let Some(models) = rest.first() {
        let models: ModelConfigs = serde_json::from_str(&std::fs::read_to_string(models)?)?;
        builder = builder.models(models);
    }

    let pipeline = builder.build()?;
    let restored = pipeline.restore_path(input)?;
    save_image(output, &restored[0])?;
    println!("{output}");
    Ok(())
}
