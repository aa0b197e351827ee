//! Random-weight checkpoints in the official on-disk layouts load completely into the
//! official architectures (the path behind `diffbir weights verify`).

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use xtask::fake_checkpoint::{self, Layout};

fn manifests() -> PathBuf {
    fixtures::fixtures().join("manifests")
}

fn verify(manifest: &str, layout: Layout, model: &str, file: &str) -> String {
    verify_manifest(&manifests().join(manifest), layout, model, file)
}

/// Writes a checkpoint from `manifest` in `layout` and verifies it loads completely.
fn verify_manifest(manifest: &Path, layout: Layout, model: &str, file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(file);
    let written = fake_checkpoint::write(&[manifest], layout, &out, 7).unwrap();
    let report = diffbir::zoo::verify(&out, model, &Device::flex()).unwrap();
    assert!(report.is_complete(), "{model} from {file}: {report:?}");
    assert_eq!(
        report.applied.len() + report.dropped.len(),
        written,
        "{model}"
    );
    report.to_string()
}

#[test]
fn swinir_checkpoints_in_their_official_layouts() {
    // 660 parameters; the 72 buffers (relative position indices, shift masks) are recomputed.
    let expected = "mapped 660 tensors, 0 missing, 0 unused";
    assert_eq!(
        verify(
            "swinir.json",
            Layout::Lightning,
            "swinir-general",
            "general_swinir_v1.ckpt"
        ),
        expected
    );
    assert_eq!(
        verify(
            "swinir.json",
            Layout::Lightning,
            "swinir-face",
            "face_swinir_v1.ckpt"
        ),
        expected
    );
    assert_eq!(
        verify(
            "swinir.json",
            Layout::StateDict,
            "swinir-realesrgan",
            "realesrgan_s4_swinir_100k.pth"
        ),
        expected
    );
}

#[test]
fn bsrnet_and_scunet_checkpoints_in_their_official_layouts() {
    assert_eq!(
        verify("bsrnet.json", Layout::StateDict, "bsrnet", "BSRNet.pth"),
        "mapped 702 tensors, 0 missing, 0 unused"
    );
    assert_eq!(
        verify(
            "scunet.json",
            Layout::StateDict,
            "scunet",
            "scunet_color_real_psnr.pth"
        ),
        "mapped 540 tensors, 0 missing, 0 unused"
    );
    // DataParallel prefixes and safetensors copies load the same way.
    verify(
        "bsrnet.json",
        Layout::DataParallel,
        "bsrnet",
        "bsrnet_dp.pth",
    );
    verify(
        "scunet.json",
        Layout::Safetensors,
        "scunet",
        "scunet.safetensors",
    );
}

#[test]
fn a_checkpoint_of_another_model_is_reported_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("BSRNet.pth");
    fake_checkpoint::write(
        &[manifests().join("bsrnet.json")],
        Layout::StateDict,
        &out,
        1,
    )
    .unwrap();
    let report = diffbir::zoo::verify(&out, "scunet", &Device::flex()).unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.missing.len(), 540);
    assert_eq!(report.unused.len(), 702);
}

/// Full-size stage-2 files: 1.45 GB (ControlNet) and 5.2 GB (SD) of random weights, so these
/// run on demand: `cargo test -p xtask --test fake_checkpoints -- --ignored`.
#[test]
#[ignore = "writes and loads multi-gigabyte checkpoints"]
fn controlnet_checkpoints_in_their_official_layout() {
    let expected = "mapped 324 tensors, 0 missing, 0 unused";
    for (model, file) in [
        ("controlnet-v1", "v1_general.pth"),
        ("controlnet-v2", "v2.pth"),
        ("controlnet-v2.1", "DiffBIR_v2.1.pt"),
    ] {
        assert_eq!(
            verify("controlnet.json", Layout::StateDict, model, file),
            expected
        );
    }
}

#[test]
#[ignore = "writes and loads multi-gigabyte checkpoints"]
fn sd_checkpoint_in_its_official_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v2-1_512-ema-pruned.ckpt");
    let parts = ["unet.json", "vae.json", "clip.json"].map(|m| manifests().join(m));
    let written = fake_checkpoint::write(&parts, Layout::Lightning, &out, 3).unwrap();
    for model in ["sd21", "sd21-zsnr"] {
        let report = diffbir::zoo::verify(&out, model, &Device::flex()).unwrap();
        assert!(report.is_complete(), "{model}: {report:?}");
        // `logit_scale`, a scalar no DiffBIR path reads, is the one dropped tensor.
        assert_eq!(report.dropped, ["cond_stage_model.model.logit_scale"]);
        assert_eq!(report.applied.len() + 1, written);
    }
}

/// The facexlib models of `unaligned_face`, from the manifests the face generator writes.
fn verify_face(manifest: &str, layout: Layout, model: &str, file: &str) -> String {
    let manifest = fixtures::repo_fixtures("face")
        .join("manifests")
        .join(manifest);
    verify_manifest(&manifest, layout, model, file)
}

#[test]
fn facexlib_checkpoints_in_their_official_layouts() {
    // Batch norms' `num_batches_tracked` are dropped; facexlib strips a `module.` prefix.
    assert_eq!(
        verify_face(
            "retinaface_resnet50.json",
            Layout::DataParallel,
            "retinaface-resnet50",
            "detection_Resnet50_Final.pth"
        ),
        verify_face(
            "retinaface_resnet50.json",
            Layout::StateDict,
            "retinaface-resnet50",
            "resnet50_plain.pth"
        ),
    );
    verify_face(
        "retinaface_mobilenet025.json",
        Layout::StateDict,
        "retinaface-mobilenet0.25",
        "detection_mobilenet0.25_Final.pth",
    );
    verify_face(
        "parsenet.json",
        Layout::StateDict,
        "parsenet",
        "parsing_parsenet.pth",
    );
}
