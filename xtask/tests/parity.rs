//! The parity runner over the reference fixtures, and over altered copies of them.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use fixtures::fixtures;
use std::path::Path;

use burn::tensor::Device;
use xtask::parity::{self, Status};

fn status_of(reports: &[parity::CaseReport], name: &str) -> Status {
    reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no report for {name}"))
        .status
        .clone()
}

#[test]
fn every_case_runs_and_none_fails() {
    let reports = parity::run_dir(&fixtures(), &[], &Device::flex()).unwrap();
    let cases = parity::discover(&fixtures()).unwrap();
    assert_eq!(reports.len(), cases.len());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| matches!(r.status, Status::Fail(_)))
        .map(ToString::to_string)
        .collect();
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
    // The cases of every module implemented so far must pass.
    for implemented in [
        "colorfix",
        "tiled_windows",
        "swinir_aligned",
        "swinir_multiple_of_64",
        "swinir_reflect_pad",
        "swinir_pipeline_pad64",
        "rrdbnet_forward",
        "rrdbnet_tiled",
        "scunet_forward",
        "sd_vae_forward",
        "sd_vae_tiled_decode",
        "sd_vae_tiled_encode",
        "sd_unet_forward",
        "sd_controlnet_forward",
        "sd_cldm_forward",
        "sd_controlnet_from_unet",
        "sd_checkpoint_load",
        "clip_tokenizer",
        "clip_small_forward",
        "sd_clip_forward",
        "diffusion_schedule_v2_eps",
        "diffusion_schedule_v21_v_zsnr",
        "sampler_schedules_v2_eps",
        "sampler_schedules_v21_v_zsnr",
        "sampler_spaced_v_4_cond_start",
        "sampler_ddim_eps_4",
        "sampler_ddim_v_3_index_error",
        "sampler_dpmpp_m2_v_4_rescale_cfg",
        "sampler_edm_euler_v_4_churn",
        "sampler_edm_euler_a_v_4_eta0p5",
        "sampler_edm_heun_eps_4_churn",
        "sampler_edm_dpm_2_v_4_churn",
        "sampler_edm_dpm_2_a_v_10",
        "sampler_edm_lms_eps_10_order3",
        "sampler_edm_dpmpp_2s_a_v_10",
        "sampler_edm_dpmpp_sde_v_10",
        "sampler_edm_dpmpp_2m_v_10",
        "sampler_edm_dpmpp_2m_sde_v_4_eta0p5",
        "sampler_edm_dpmpp_3m_sde_v_4_eta0",
        "sampler_spaced_v_3_tiled",
        "guidance_loss_fns",
        "guidance_mse_latent",
        "guidance_mse_rgb",
        "guidance_w_mse_latent",
        "guidance_w_mse_rgb",
        "sampler_ddim_v_4_tiled",
        "sampler_edm_dpmpp_3m_sde_v_3_tiled",
        "cldm_tiled_sampling",
        "resize_ops",
        "pipeline_postprocess",
        "degradation_kernels",
        "usm_filter2d",
        "diffjpeg",
        "codeformer_ops",
        "gaussian_noise_pt",
    ] {
        assert_eq!(
            status_of(&reports, implemented),
            Status::Pass,
            "{implemented}"
        );
    }
}

/// Copies a case (JSON and io file) into `dir` under a new name, letting `edit` change the
/// JSON and the io tensors.
fn copy_case(
    from: &str,
    to: &str,
    dir: &Path,
    edit_json: impl FnOnce(&mut serde_json::Value),
    edit_tensor: impl Fn(&str, &mut Vec<f32>),
) {
    let src = fixtures();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(format!("{from}.json"))).unwrap())
            .unwrap();
    json["case"] = to.into();
    json["io_file"] = format!("{to}.io.safetensors").into();
    edit_json(&mut json);
    std::fs::write(dir.join(format!("{to}.json")), json.to_string()).unwrap();

    let bytes = std::fs::read(src.join(format!("{from}.io.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if view.dtype() == safetensors::Dtype::F32 {
            let mut v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            edit_tensor(&name, &mut v);
            data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        }
        owned.push((name.to_string(), view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join(format!("{to}.io.safetensors"))).unwrap();
}

#[test]
fn a_renamed_copy_passes_and_a_perturbed_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    copy_case("colorfix", "renamed_fix", dir.path(), |_| {}, |_, _| {});
    copy_case(
        "colorfix",
        "perturbed_fix",
        dir.path(),
        |_| {},
        |name, v| {
            if name == "output.adain" {
                v[17] += 1e-3;
            }
        },
    );
    copy_case(
        "colorfix",
        "no_such_builder",
        dir.path(),
        |j| j["builder"] = "frobnicate".into(),
        |_, _| {},
    );
    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    assert_eq!(status_of(&reports, "renamed_fix"), Status::Pass);
    let Status::Fail(why) = status_of(&reports, "perturbed_fix") else {
        panic!("the perturbed case passed");
    };
    assert!(
        why.contains("output.adain") && why.contains("index 17"),
        "{why}"
    );
    assert_eq!(status_of(&reports, "no_such_builder"), Status::Unsupported);
    let totals = parity::totals(&reports);
    assert_eq!(
        (totals.passed, totals.failed, totals.unsupported),
        (1, 1, 1)
    );
    assert_eq!(
        totals.to_string(),
        "parity: 1 passed, 1 failed, 1 unsupported"
    );
}

#[test]
fn the_tiling_case_follows_its_own_json() {
    // Other window arguments than the recorded ones give other coordinates: a FAIL, not a
    // silent pass, shows the geometry is taken from the case.
    let dir = tempfile::tempdir().unwrap();
    copy_case(
        "tiled_windows",
        "tiles_other_stride",
        dir.path(),
        |j| j["windows"][0]["tile_stride"] = 5.into(),
        |_, _| {},
    );
    copy_case(
        "tiled_windows",
        "tiles_other_tiling",
        dir.path(),
        |j| j["tiled_model"]["tile_size"] = 30.into(),
        |_, _| {},
    );
    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    let Status::Fail(why) = status_of(&reports, "tiles_other_stride") else {
        panic!("a changed stride still matched");
    };
    assert!(why.contains("output.windows0.coords"), "{why}");
    // The stand-in is pointwise, so any valid tiling reproduces it; a tile larger than the
    // 24-row input must be refused rather than silently run.
    let Status::Fail(why) = status_of(&reports, "tiles_other_tiling") else {
        panic!("an impossible tiling passed");
    };
    assert!(why.contains("smaller than one 30x30 tile"), "{why}");
}

#[test]
fn broken_cases_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not_json.json"), "{ this is not json").unwrap();
    std::fs::write(
        dir.path().join("no_io.json"),
        r#"{"builder": "colorfix", "case": "no_io", "io_file": "missing.io.safetensors"}"#,
    )
    .unwrap();
    copy_case("colorfix", "output_removed", dir.path(), |_| {}, |_, _| {});
    // Drop one expected output from the io file: the builder then produces an unrecorded one.
    let io = dir.path().join("output_removed.io.safetensors");
    let bytes = std::fs::read(&io).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "output.adain")
        .collect();
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&io, out).unwrap();

    let reports = parity::run_dir(dir.path(), &[], &Device::flex()).unwrap();
    for r in &reports {
        assert!(matches!(r.status, Status::Fail(_)), "{r}");
    }
    let text: Vec<String> = reports.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.contains("missing.io.safetensors")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("output.adain produced but not recorded")),
        "{text:?}"
    );
    assert!(parity::run_dir(&dir.path().join("nope"), &[], &Device::flex()).is_err());
}
