//! Runs stage 1 alone (v2.1's SwinIR for `sr`: the degradations removed, no generation) on a
//! photo, with the official checkpoint from the hub:
//!
//! ```text
//! cargo run --release --example stage1_only -- photo.png cleaned.png [STAGE1.json]
//! ```
//!
//! The optional argument names a JSON file of the network's shape (`Stage1Config`).

use diffbir::core::image::{ReadOptions, SaveOptions, read_image, save_image, tensor_to_image};
use diffbir::core::{Checkpoint, Precision, device::DeviceSpec};
use diffbir::hub::{Hub, release_files};
use diffbir::pipeline::PipelineConfig;
use diffbir::rm::{Restorer, Stage1Config};
use diffbir::{Task, Version};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: stage1_only INPUT OUTPUT [STAGE1.json]".into());
    };
    let config: Stage1Config = match rest.first() {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => PipelineConfig::new(Task::Sr, Version::V21).models.stage1,
    };
    let device = DeviceSpec::Flex.device()?;

    let file = release_files(Task::Sr, Version::V21).stage1;
    let checkpoint = Checkpoint::open(Hub::from_env()?.fetch(file.name, &mut ())?)?;
    let (stage1, _report) = config.load(&checkpoint, config.key_map(), Precision::F32, &device)?;

    let (image, meta) = read_image(input, &ReadOptions::default(), &device)?;
    let cleaned = stage1.restore(image);
    let cleaned = tensor_to_image(
        cleaned.squeeze_dim(0),
        meta.alpha.as_ref(),
        &SaveOptions::like(&meta),
    );
    save_image(output, &cleaned)?;
    println!("{output}");
    Ok(())
}
