//! The model architectures, at their official sizes, that a checkpoint can be verified
//! against (`diffbir weights verify FILE --model NAME`).
//!
//! Each entry builds its architecture and loads the checkpoint through the model's key map,
//! returning the [`LoadReport`]. Model crates register their architectures here as they
//! are added.

use burn::tensor::Device;
use diffbir_controlnet::{CONTROLNET_KEYS, ControlNetConfig};
use diffbir_core::{Checkpoint, Error, KeyMap, LoadReport, Result, apply_checkpoint};
use diffbir_face::{PARSENET_KEYS, ParseNetConfig, RETINAFACE_KEYS, RetinaFaceConfig};
use diffbir_ldm::sd::StableDiffusionConfig;
use diffbir_metrics::clip_iqa::{CLIP_IQA_KEYS, ClipIqaConfig};
use diffbir_metrics::{LPIPS_LIN_KEYS, LPIPS_TRUNK_KEYS, LpipsConfig, LpipsNet};
use diffbir_rm::rrdbnet::BSRNET_KEYS;
use diffbir_rm::scunet::SCUNET_KEYS;
use diffbir_rm::swinir::{SWINIR_FACE_KEYS, SWINIR_GENERAL_KEYS, SWINIR_REALESRGAN_KEYS};
use diffbir_rm::{RrdbNetConfig, ScuNetConfig, SwinIrConfig};

/// One verifiable model architecture.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    /// The name `--model` takes.
    pub name: &'static str,
    /// What the architecture is and which official files use it.
    pub description: &'static str,
    /// Builds the architecture on `device` and applies the checkpoint (not strictly: the
    /// report says what matched).
    pub apply: fn(&Checkpoint, &Device) -> Result<LoadReport>,
}

fn swinir(checkpoint: &Checkpoint, device: &Device, map: &KeyMap) -> Result<LoadReport> {
    apply_checkpoint(&mut SwinIrConfig::diffbir().init(device), checkpoint, map)
}

fn sd21(checkpoint: &Checkpoint, device: &Device) -> Result<LoadReport> {
    StableDiffusionConfig::sd21()
        .init(device)?
        .apply(checkpoint)
}

fn controlnet(checkpoint: &Checkpoint, device: &Device) -> Result<LoadReport> {
    apply_checkpoint(
        &mut ControlNetConfig::sd21().init(device)?,
        checkpoint,
        &CONTROLNET_KEYS,
    )
}

fn lpips_trunk(checkpoint: &Checkpoint, device: &Device, net: LpipsNet) -> Result<LoadReport> {
    let mut model = LpipsConfig::released(net).init(device);
    apply_checkpoint(&mut model.trunk, checkpoint, &LPIPS_TRUNK_KEYS)
}

fn lpips_lin(checkpoint: &Checkpoint, device: &Device, net: LpipsNet) -> Result<LoadReport> {
    let mut model = LpipsConfig::released(net).init(device);
    apply_checkpoint(&mut model.lin, checkpoint, &LPIPS_LIN_KEYS)
}

const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "swinir-general",
        description: "stage-1 SwinIR of DiffBIR v1 (general_swinir_v1.ckpt)",
        apply: |c, d| swinir(c, d, &SWINIR_GENERAL_KEYS),
    },
    ModelEntry {
        name: "swinir-face",
        description: "stage-1 SwinIR for faces (face_swinir_v1.ckpt)",
        apply: |c, d| swinir(c, d, &SWINIR_FACE_KEYS),
    },
    ModelEntry {
        name: "swinir-realesrgan",
        description: "stage-1 SwinIR of DiffBIR v2.1 (realesrgan_s4_swinir_100k.pth)",
        apply: |c, d| swinir(c, d, &SWINIR_REALESRGAN_KEYS),
    },
    ModelEntry {
        name: "bsrnet",
        description: "stage-1 BSRNet / RRDBNet x4 of DiffBIR v2 (BSRNet.pth)",
        apply: |c, d| apply_checkpoint(&mut RrdbNetConfig::bsrnet().init(d), c, &BSRNET_KEYS),
    },
    ModelEntry {
        name: "scunet",
        description: "stage-1 SCUNet-PSNR of DiffBIR v2 (scunet_color_real_psnr.pth)",
        apply: |c, d| apply_checkpoint(&mut ScuNetConfig::scunet_psnr().init(d), c, &SCUNET_KEYS),
    },
    ModelEntry {
        name: "sd21",
        description: "Stable Diffusion 2.1 base: UNet, VAE, OpenCLIP text encoder (v2-1_512-ema-pruned.ckpt)",
        apply: sd21,
    },
    ModelEntry {
        name: "sd21-zsnr",
        description: "DiffBIR v2.1's zero-SNR SD 2.1 fine-tune (sd2.1-base-zsnr-laionaes5.ckpt)",
        apply: sd21,
    },
    ModelEntry {
        name: "controlnet-v1",
        description: "IRControlNet of DiffBIR v1 (v1_general.pth, v1_face.pth)",
        apply: controlnet,
    },
    ModelEntry {
        name: "controlnet-v2",
        description: "IRControlNet of DiffBIR v2 (v2.pth)",
        apply: controlnet,
    },
    ModelEntry {
        name: "controlnet-v2.1",
        description: "IRControlNet of DiffBIR v2.1 (DiffBIR_v2.1.pt)",
        apply: controlnet,
    },
    ModelEntry {
        name: "retinaface-resnet50",
        description: "face detector of unaligned_face: RetinaFace, ResNet-50 (detection_Resnet50_Final.pth)",
        apply: |c, d| {
            apply_checkpoint(
                &mut RetinaFaceConfig::resnet50().init(d),
                c,
                &RETINAFACE_KEYS,
            )
        },
    },
    ModelEntry {
        name: "retinaface-mobilenet0.25",
        description: "face detector: RetinaFace, MobileNet-0.25 (detection_mobilenet0.25_Final.pth)",
        apply: |c, d| {
            apply_checkpoint(
                &mut RetinaFaceConfig::mobilenet025().init(d),
                c,
                &RETINAFACE_KEYS,
            )
        },
    },
    ModelEntry {
        name: "parsenet",
        description: "face parsing of unaligned_face's paste-back: ParseNet (parsing_parsenet.pth)",
        apply: |c, d| apply_checkpoint(&mut ParseNetConfig::released().init(d), c, &PARSENET_KEYS),
    },
    ModelEntry {
        name: "alexnet",
        description: "the trunk of metric lpips: torchvision's AlexNet features (alexnet-owt-7be5be79.pth)",
        apply: |c, d| lpips_trunk(c, d, LpipsNet::Alex),
    },
    ModelEntry {
        name: "vgg16",
        description: "the trunk of metric lpips-vgg: torchvision's VGG16 features (vgg16-397923af.pth)",
        apply: |c, d| lpips_trunk(c, d, LpipsNet::Vgg),
    },
    ModelEntry {
        name: "lpips-alex",
        description: "the heads of metric lpips: LPIPS v0.1 on AlexNet (LPIPS_v0.1_alex-df73285e.pth)",
        apply: |c, d| lpips_lin(c, d, LpipsNet::Alex),
    },
    ModelEntry {
        name: "lpips-vgg",
        description: "the heads of metric lpips-vgg: LPIPS v0.1 on VGG16 (LPIPS_v0.1_vgg-a78928a0.pth)",
        apply: |c, d| lpips_lin(c, d, LpipsNet::Vgg),
    },
    ModelEntry {
        name: "clip-rn50",
        description: "the model of metric clipiqa: OpenAI's CLIP RN50 (open_clip_model.safetensors)",
        apply: |c, d| apply_checkpoint(&mut ClipIqaConfig::rn50().init(d), c, &CLIP_IQA_KEYS),
    },
];

/// Every architecture this build can verify.
pub fn models() -> &'static [ModelEntry] {
    MODELS
}

/// Looks a model up by name.
pub fn find_model(name: &str) -> Result<&'static ModelEntry> {
    models().iter().find(|m| m.name == name).ok_or_else(|| {
        let known: Vec<&str> = models().iter().map(|m| m.name).collect();
        Error::InvalidArgument {
            what: "model".into(),
            reason: if known.is_empty() {
                format!("`{name}` is not known: this build has no model architecture yet")
            } else {
                format!(
                    "`{name}` is not known; this build has: {}",
                    known.join(", ")
                )
            },
        }
    })
}

/// Opens a checkpoint and applies it to the named architecture; the report says how many
/// tensors were mapped and which were missing or unused.
pub fn verify(path: &std::path::Path, model: &str, device: &Device) -> Result<LoadReport> {
    let entry = find_model(model)?;
    let checkpoint = Checkpoint::open(path)?;
    (entry.apply)(&checkpoint, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_are_caller_errors() {
        let err = find_model("no-such-model").unwrap_err();
        assert_eq!(err.fault(), diffbir_core::Fault::Caller);
        assert!(err.to_string().contains("no-such-model"));
    }

    #[test]
    fn model_names_are_unique() {
        let mut names: Vec<&str> = models().iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), models().len());
    }
}
