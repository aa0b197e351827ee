//! The `unaligned_face` task: every face of a photo detected, aligned, restored with the face
//! models and pasted back onto the background restored as `sr`, as DiffBIR's
//! `UnAlignedBFRInferenceLoop` runs it
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/inference/unaligned_bfr_loop.py:L112-L206`,
//! `diffbir/utils/face.py`).

use std::path::PathBuf;

use burn::tensor::Device;
use diffbir_core::resize::{pil_upscale, to_rgb8_images};
use diffbir_core::{Checkpoint, NoiseSource, load_into};
use diffbir_face::cv::Mat;
use diffbir_face::helper::{self, HelperOptions};
use diffbir_face::paste::paste_faces;
use diffbir_face::{
    Backbone, Face, FaceSelection, PARSENET_KEYS, ParseNet, ParseNetConfig, RETINAFACE_KEYS,
    RetinaFace, RetinaFaceConfig,
};
use diffbir_rm::{Stage1, Stage1Config, SwinIrConfig};
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::observe::{Event, Observer, Part, proceed};
use crate::pipeline::{Pipeline, PipelineConfig};
use diffbir_hub::{FaceFiles, files, release_files};

/// The shapes of the face models of `unaligned_face` (the official ones by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaceModelConfigs {
    /// Stage 1 of the aligned faces (`swinir_face`).
    pub stage1: Stage1Config,
    /// The face detector.
    pub detector: RetinaFaceConfig,
    /// The face-parsing network of the paste-back.
    pub parser: ParseNetConfig,
}

impl Default for FaceModelConfigs {
    fn default() -> Self {
        Self {
            stage1: Stage1Config::SwinIr(SwinIrConfig::diffbir()),
            detector: RetinaFaceConfig::resnet50(),
            parser: ParseNetConfig::released(),
        }
    }
}

impl FaceModelConfigs {
    /// Checks the three configurations.
    pub fn validate(&self) -> Result<()> {
        self.stage1.validate()?;
        self.detector.validate()?;
        Ok(self.parser.validate()?)
    }
}

/// How faces are found and pasted (`FaceRestoreHelper`'s settings; DiffBIR's by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceOptions {
    /// Which faces to restore.
    pub selection: FaceSelection,
    /// Mask each pasted face with its ParseNet parsing (`use_parse`, on in DiffBIR).
    pub use_parse: bool,
    /// The detector's score threshold (0.8).
    pub conf_threshold: f32,
}

impl Default for FaceOptions {
    fn default() -> Self {
        Self {
            selection: FaceSelection::All,
            use_parse: true,
            conf_threshold: 0.8,
        }
    }
}

/// Where the face models' checkpoints are.
#[derive(Debug, Clone)]
pub struct FaceWeightFiles {
    /// Stage 1 of the faces (`face_swinir_v1.ckpt`).
    pub stage1: PathBuf,
    /// The detector (`detection_Resnet50_Final.pth` or `detection_mobilenet0.25_Final.pth`).
    pub detector: PathBuf,
    /// The parser (`parsing_parsenet.pth`).
    pub parser: PathBuf,
}

/// The official file name of a detector backbone's weights.
pub fn detector_file_name(backbone: Backbone) -> &'static str {
    match backbone {
        Backbone::ResNet50 => "detection_Resnet50_Final.pth",
        Backbone::MobileNet025 => "detection_mobilenet0.25_Final.pth",
    }
}

/// The official files of `config`'s face models (`None` unless the task is
/// `unaligned_face`): the face stage 1, the detector of the configured backbone and the
/// parser.
pub fn face_files(config: &PipelineConfig) -> Result<Option<FaceFiles>> {
    let Some(face) = release_files(config.task, config.version).face else {
        return Ok(None);
    };
    let name = detector_file_name(config.models.face.detector.network_name);
    let detector = files()
        .iter()
        .find(|f| f.file_name == name)
        .ok_or_else(|| {
            Error::Core(diffbir_core::Error::Unsupported(format!(
                "the registry has no file {name}"
            )))
        })?;
    Ok(Some(FaceFiles { detector, ..face }))
}

/// The loaded face models of a pipeline.
#[derive(Debug)]
pub(crate) struct FaceModels {
    stage1: Stage1,
    detector: RetinaFace,
    parser: ParseNet,
}

impl FaceModels {
    /// Loads the three checkpoints strictly.
    pub(crate) fn load(
        configs: &FaceModelConfigs,
        files: &FaceWeightFiles,
        precision: diffbir_core::Precision,
        device: &Device,
    ) -> Result<Self> {
        let (stage1, _) = configs.stage1.load(
            &Checkpoint::open(&files.stage1)?,
            configs.stage1.key_map(),
            precision,
            device,
        )?;
        let mut detector = configs.detector.init(device);
        load_into(
            &mut detector,
            &Checkpoint::open(&files.detector)?,
            &RETINAFACE_KEYS,
        )?;
        let mut parser = configs.parser.init(device);
        load_into(
            &mut parser,
            &Checkpoint::open(&files.parser)?,
            &PARSENET_KEYS,
        )?;
        Ok(Self {
            stage1,
            detector,
            parser,
        })
    }
}

/// Everything an `unaligned_face` restoration produces, as the reference writes it.
#[derive(Debug, Clone)]
pub struct FaceRestoration {
    /// The faces found, in canvas pixels, with their alignment.
    pub faces: Vec<Face>,
    /// The aligned low-quality crops (`cropped_faces/`).
    pub cropped: Vec<RgbImage>,
    /// The restored crops, `[face][sample]` (`restored_faces/`).
    pub restored_faces: Vec<Vec<RgbImage>>,
    /// The restored backgrounds, one per sample (`restored_backgrounds/`).
    pub backgrounds: Vec<RgbImage>,
    /// The results, one per sample: the faces pasted onto the background, at the canvas size
    /// (the upscaled photo, enlarged to a 512-pixel short side if it was smaller).
    pub images: Vec<RgbImage>,
}

fn to_mat(image: &RgbImage) -> Result<Mat<u8>> {
    Ok(Mat::new(
        image.height() as usize,
        image.width() as usize,
        3,
        image.as_raw().clone(),
    )?)
}

fn to_rgb(mat: Mat<u8>) -> Result<RgbImage> {
    let (w, h) = (mat.cols as u32, mat.rows as u32);
    RgbImage::from_raw(w, h, mat.data).ok_or_else(|| {
        Error::Core(diffbir_core::Error::invalid(
            "image buffer",
            format!("not a {w}x{h} RGB image"),
        ))
    })
}

impl Pipeline {
    /// Restores a photo with faces anywhere (`unaligned_face`): the faces found on the
    /// upscaled photo are aligned to 512 × 512, restored with the face models (stage 1 of
    /// faces, no upscaling) and pasted back onto the background restored as `sr`. Without
    /// faces the result is the background. `detections`, when given, replace the detector's
    /// (landmarks in the pixels of the canvas: the photo upscaled by the pipeline's upscale,
    /// then enlarged to a 512-pixel short side if smaller).
    ///
    /// Every part is restored with `noise` restarted at sample 0, so sample `i` of each
    /// depends only on the seed and `i`.
    ///
    /// # Errors
    ///
    /// If the pipeline is not an `unaligned_face` one, or a restoration fails.
    pub fn restore_faces(
        &self,
        image: &DynamicImage,
        detections: Option<&[diffbir_face::Detection]>,
        noise: &mut NoiseSource,
        observer: &mut impl Observer,
    ) -> Result<FaceRestoration> {
        let (background, models) = self.face_networks().ok_or_else(|| {
            Error::Core(diffbir_core::Error::invalid(
                "task",
                format!(
                    "restore_faces needs an unaligned_face pipeline, this one is {}",
                    self.config().task
                ),
            ))
        })?;
        let options = self.config().faces;
        let device = self.device();
        let canvas = helper::canvas(&to_mat(&pil_upscale(image, self.config().upscale)?)?)?;
        let helper_options = HelperOptions {
            selection: options.selection,
            detect: diffbir_face::DetectOptions {
                conf_threshold: options.conf_threshold,
                ..Default::default()
            },
            ..HelperOptions::default()
        };
        let found = match detections {
            Some(given) => given.to_vec(),
            None => helper::find_faces(&models.detector, &canvas, &helper_options, device)?,
        };
        let aligned: Vec<(Face, Mat<u8>)> = found
            .iter()
            .filter_map(|d| helper::align(&canvas, d, helper_options.face_size))
            .collect();
        proceed(observer.on_event(&Event::Faces {
            found: aligned.len(),
        }))?;
        let mut restored_faces = Vec::with_capacity(aligned.len());
        let mut cropped = Vec::with_capacity(aligned.len());
        for (i, (_, crop)) in aligned.iter().enumerate() {
            proceed(observer.on_event(&Event::Part(Part::Face(i))))?;
            let crop = to_rgb(crop.clone())?;
            let samples = self.restore_with(
                &models.stage1,
                1.0,
                &DynamicImage::ImageRgb8(crop.clone()),
                noise,
                observer,
            )?;
            restored_faces.push(quantize(samples)?);
            cropped.push(crop);
        }
        proceed(observer.on_event(&Event::Part(Part::Background)))?;
        let backgrounds = quantize(self.restore_with(
            background,
            self.config().upscale,
            image,
            noise,
            observer,
        )?)?;
        let faces: Vec<Face> = aligned.into_iter().map(|(f, _)| f).collect();
        let parser = options.use_parse.then_some(&models.parser);
        let images = backgrounds
            .iter()
            .enumerate()
            .map(|(s, background)| {
                let crops = restored_faces
                    .iter()
                    .map(|samples| to_mat(&samples[s]))
                    .collect::<Result<Vec<_>>>()?;
                let pasted = paste_faces(
                    &to_mat(background)?,
                    (canvas.rows, canvas.cols),
                    &faces,
                    &crops,
                    parser,
                    device,
                )?;
                to_rgb(pasted)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FaceRestoration {
            faces,
            cropped,
            restored_faces,
            backgrounds,
            images,
        })
    }
}

/// Quantises restored samples as the reference saves them (truncation).
fn quantize(samples: Vec<burn::tensor::Tensor<4>>) -> Result<Vec<RgbImage>> {
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        out.extend(to_rgb8_images(s)?);
    }
    Ok(out)
}
