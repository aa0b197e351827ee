//! [`PipelineBuilder`]: a [`Pipeline`] from a task and a version, with the release's defaults,
//! its official weights (downloaded and cached by the hub unless given) and a device.

use burn::tensor::Device;
use diffbir_core::Precision;
use diffbir_core::device::DeviceSpec;

use crate::error::Result;
#[cfg(feature = "download")]
use crate::faces::{FaceWeightFiles, face_files};
#[cfg(feature = "download")]
use crate::hub::{DownloadObserver, Hub, release_files};
use crate::pipeline::{ModelConfigs, Pipeline, PipelineConfig, Task, Version, WeightFiles};

/// The seed of the `diffbir` command and of a builder that is given none.
pub const DEFAULT_SEED: u64 = 231;

/// Builds a [`Pipeline`]; [`Pipeline::builder`] starts one.
///
/// ```no_run
/// use diffbir::{Pipeline, Task, Version};
///
/// let pipeline = Pipeline::builder(Task::Sr, Version::V21).seed(231).build()?;
/// let restored = pipeline.restore_path("photo.png")?;
/// restored[0].save("restored.png").expect("writable");
/// # Ok::<(), diffbir::Error>(())
/// ```
#[derive(Debug)]
pub struct PipelineBuilder {
    config: PipelineConfig,
    device: Option<Device>,
    seed: u64,
    files: Option<WeightFiles>,
    #[cfg(feature = "download")]
    hub: Option<Hub>,
}

impl Pipeline {
    /// A builder with the release's defaults for `task` at `version`
    /// ([`PipelineConfig::new`]), seed [`DEFAULT_SEED`], on the CPU.
    pub fn builder(task: Task, version: Version) -> PipelineBuilder {
        PipelineBuilder {
            config: PipelineConfig::new(task, version),
            device: None,
            seed: DEFAULT_SEED,
            files: None,
            #[cfg(feature = "download")]
            hub: None,
        }
    }
}

impl PipelineBuilder {
    /// The device to run on (default: the CPU backend, `cpu`).
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// The float precision of stage 1 and the diffusion networks (default f32).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.config.precision = precision;
        self
    }

    /// The seed of every restoration: sample `i` of an image depends only on it and `i`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Network shapes other than the official ones (a model trained with other settings).
    pub fn models(mut self, models: ModelConfigs) -> Self {
        self.config.models = models;
        self
    }

    /// Changes any other setting of the release's defaults (sampler, steps, prompts,
    /// guidance, tiling, upscale, samples per image, …); [`Self::build`] validates them all.
    pub fn configure(mut self, change: impl FnOnce(&mut PipelineConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Checkpoints to load instead of the official files.
    pub fn weight_files(mut self, files: WeightFiles) -> Self {
        self.files = Some(files);
        self
    }

    /// The hub that finds or downloads the official files (default: [`Hub::from_env`]).
    #[cfg(feature = "download")]
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Validates the settings, finds or downloads the weights, and loads them.
    pub fn build(self) -> Result<Pipeline> {
        #[cfg(feature = "download")]
        {
            self.build_observed(&mut ())
        }
        #[cfg(not(feature = "download"))]
        {
            let files = self.files.clone().ok_or_else(|| {
                crate::Error::Core(diffbir_core::Error::invalid(
                    "weight files",
                    "this build has no downloads (feature `download`): give the checkpoints \
                     with `PipelineBuilder::weight_files`",
                ))
            })?;
            self.load(&files)
        }
    }

    /// [`Self::build`], reporting the downloads to `observer` (which can cancel them).
    #[cfg(feature = "download")]
    pub fn build_observed(self, observer: &mut impl DownloadObserver) -> Result<Pipeline> {
        // Settings are checked before anything is downloaded.
        self.config.validate()?;
        let files = match &self.files {
            Some(files) => files.clone(),
            None => {
                let hub = match &self.hub {
                    Some(hub) => hub.clone(),
                    None => Hub::from_env()?,
                };
                let official = release_files(self.config.task, self.config.version);
                let face = match face_files(&self.config)? {
                    Some(face) => Some(FaceWeightFiles {
                        stage1: hub.fetch_file(face.stage1, observer)?,
                        detector: hub.fetch_file(face.detector, observer)?,
                        parser: hub.fetch_file(face.parser, observer)?,
                    }),
                    None => None,
                };
                WeightFiles {
                    stage1: hub.fetch_file(official.stage1, observer)?,
                    sd: hub.fetch_file(official.sd, observer)?,
                    controlnet: hub.fetch_file(official.controlnet, observer)?,
                    bpe_vocab: hub.fetch_file(official.bpe_vocab, observer)?,
                    face,
                }
            }
        };
        self.load(&files)
    }

    fn load(self, files: &WeightFiles) -> Result<Pipeline> {
        let device = match self.device {
            Some(device) => device,
            None => DeviceSpec::Flex.device()?,
        };
        Pipeline::load(self.config, files, &device).map(|p| p.with_seed(self.seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn invalid_settings_fail_before_any_download() {
        let builder = Pipeline::builder(Task::Sr, Version::V21).configure(|c| c.upscale = -1.0);
        #[cfg(feature = "download")]
        let builder = builder.hub(Hub::new("/nonexistent/diffbir-cache").offline(true));
        let err = builder.build().unwrap_err();
        assert!(
            matches!(&err, Error::Core(diffbir_core::Error::InvalidArgument { what, .. }) if what == "upscale"),
            "{err}"
        );
    }
}
