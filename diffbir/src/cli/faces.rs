//! `diffbir restore --task unaligned_face`: one photo's restoration and the files the
//! reference writes for it (`XPixelGroup/DiffBIR@3f8b530:diffbir/inference/unaligned_bfr_loop.py:L142-L206`):
//! `{stem}_{i}.png`, `restored_backgrounds/{stem}_{i}.png`,
//! `restored_faces/{stem}_face_{k}_{i}.png`, `cropped_faces/…` and the `prompt.csv` rows.

use std::path::Path;

use anyhow::{Context, Result};
use diffbir::Observer;
use diffbir::core::NoiseSource;
use diffbir::core::image::{image_meta, rgb8_to_image, save_image};
use diffbir::image::DynamicImage;
use diffbir::pipeline::Pipeline;

use crate::cli::restore::{Job, record_prompt_row};

/// The output folders of `unaligned_face`.
const FOLDERS: [&str; 3] = ["cropped_faces", "restored_faces", "restored_backgrounds"];

/// Restores `job` and writes its files; the prompt rows of its faces are recorded here, the
/// photo's by the caller.
pub(crate) fn restore(
    pipeline: &Pipeline,
    job: &Job,
    output: &Path,
    observer: &mut impl Observer,
) -> Result<()> {
    for folder in FOLDERS {
        let dir = output.join(folder);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = image_meta(&job.image);
    let mut noise = NoiseSource::seeded(pipeline.seed());
    let restored = pipeline.restore_faces(&job.image, None, &mut noise, observer)?;
    if restored.faces.is_empty() {
        eprintln!(
            "note: {}: no face found; restored as background only",
            job.source.display()
        );
    }
    let stem = job
        .source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stage2 = &pipeline.config().stage2;
    for (k, (samples, crop)) in restored
        .restored_faces
        .iter()
        .zip(&restored.cropped)
        .enumerate()
    {
        for (i, face) in samples.iter().enumerate() {
            let path = output
                .join("restored_faces")
                .join(format!("{stem}_face_{k}_{i}.png"));
            save_image(&path, &DynamicImage::ImageRgb8(face.clone()))?;
        }
        // The reference saves the crop under the last restored face's name.
        let last = samples.len().saturating_sub(1);
        let path = output
            .join("cropped_faces")
            .join(format!("{stem}_face_{k}_{last}.png"));
        save_image(&path, &DynamicImage::ImageRgb8(crop.clone()))?;
        record_prompt_row(
            output,
            &format!("{stem}_face_{k}"),
            &stage2.pos_prompt,
            &stage2.neg_prompt,
        )?;
    }
    for (i, (background, image)) in restored
        .backgrounds
        .iter()
        .zip(&restored.images)
        .enumerate()
    {
        let path = output
            .join("restored_backgrounds")
            .join(format!("{stem}_{i}.png"));
        save_image(&path, &DynamicImage::ImageRgb8(background.clone()))?;
        save_image(&job.outputs[i], &rgb8_to_image(image.clone(), &meta))?;
    }
    Ok(())
}
