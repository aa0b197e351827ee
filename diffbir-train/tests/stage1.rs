//! Stage-1 training on the tiny config and crops of the real photos in `../shared/images`:
//! the loss decreases, the exported weights load as a stage-1 model, and a run killed with
//! SIGKILL (even while writing a checkpoint) resumes to weights bitwise identical to an
//! uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use diffbir_core::{Checkpoint, Precision};
use diffbir_metrics::Lpips;
use diffbir_train::config::{Stage1TrainConfig, TrainConfig, load_config, resolve};
use diffbir_train::data::{CodeformerDataset, validation_batches};
use diffbir_train::stage1::{train_stage1, validate};
use diffbir_train::state::{latest_state, load_state, read_safetensors};
use diffbir_train::{Error, RunOptions};

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny-stage1.toml")
}

fn tiny() -> Stage1TrainConfig {
    load_config(&config_path()).expect("the shipped tiny config loads")
}

#[test]
fn loss_decreases_and_the_weights_load_as_a_stage1_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny();
    config.train.val_every = 16;
    config.train.image_every = 0;
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(16),
        resume: false,
    };
    let summary = train_stage1(&config, &options, &mut |_| {}).unwrap();
    assert_eq!(summary.losses.len(), 16);
    let first: f64 = summary.losses[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = summary.losses[12..].iter().sum::<f64>() / 4.0;
    assert!(last < first, "loss {first} -> {last}: {:?}", summary.losses);
    let (before, after) = (summary.validations[0], summary.validations[1]);
    assert!(after.loss < before.loss, "{before:?} -> {after:?}");

    // final.safetensors carries the official SwinIR key names: the strict loader of the
    // inference pipeline takes it and reproduces the run's last validation.
    let device = Device::flex();
    let checkpoint = Checkpoint::open(&summary.weights).unwrap();
    let (model, _) = config
        .model
        .load(&checkpoint, config.model.key_map(), Precision::F32, &device)
        .unwrap();
    let val = CodeformerDataset::new(config.dataset.val.as_ref().unwrap(), 0.5).unwrap();
    let batches = validation_batches(&val, config.train.batch_size, config.train.seed).unwrap();
    // The tiny config validates with LPIPS too (the narrow AlexNet of the metric cases).
    let files = config.train.val_lpips.as_ref().unwrap();
    let lpips = Lpips::from_checkpoints(
        files.net,
        &Checkpoint::open(&files.trunk).unwrap(),
        &Checkpoint::open(&files.heads).unwrap(),
        &device,
    )
    .unwrap();
    let again = validate(&model, Some(&lpips), &batches, &device, 16);
    assert!(
        (again.psnr - after.psnr).abs() < 1e-9,
        "{again:?} vs {after:?}"
    );
    let (lpips_again, lpips_after) = (again.lpips.unwrap(), after.lpips.unwrap());
    assert!(
        lpips_after.is_finite() && (lpips_again - lpips_after).abs() < 1e-6,
        "{again:?} vs {after:?}"
    );
    println!("untrained {before:?}\ntrained   {after:?}");
}

#[test]
fn bad_configs_name_the_field() {
    let text = std::fs::read_to_string(config_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expected) in [
        ("batch_size = 4", "batch_size = 0", "train.batch_size"),
        (
            "learning_rate = 2e-4",
            "learning_rate = -1.0",
            "train.learning_rate",
        ),
        (
            "blur_kernel_size = 21",
            "blur_kernel_size = 20",
            "blur_kernel_size",
        ),
        ("seed = 231", "seeed = 231", "seeed"),
        ("train_steps = 300", "", "train_steps"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let err = load_config::<Stage1TrainConfig>(&path).unwrap_err();
        assert!(
            matches!(err, Error::Field { .. } | Error::Config { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
}

/// A copy of the tiny config with absolute data paths, a batch of 2 and a checkpoint every
/// 3 steps.
fn kill_config(dir: &Path) -> PathBuf {
    let mut config = tiny();
    config.train.batch_size = 2;
    config.train.ckpt_every = 3;
    config.train.val_every = 0;
    config.train.image_every = 0;
    config.dataset.val = None;
    let train = config.dataset.train.as_mut().unwrap();
    let folder = train.folder.clone().unwrap();
    train.folder = Some(resolve(Path::new("."), &folder));
    let path = dir.join("kill.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    path
}

fn spawn(config: &Path, out: &Path, steps: u64, resume: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffbir-train"));
    cmd.args(["stage1", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--steps", &steps.to_string()]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the diffbir-train binary runs")
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every checkpoint present is complete: states parse, weights open.
fn assert_checkpoints_intact(out: &Path) -> usize {
    let dir = out.join("checkpoints");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".state.safetensors") {
            load_state(&path).unwrap_or_else(|e| panic!("{name} is corrupt: {e}"));
            n += 1;
        } else if name.ends_with(".safetensors") {
            Checkpoint::open(&path).unwrap_or_else(|e| panic!("{name} is corrupt: {e}"));
        }
    }
    n
}

/// Whether a checkpoint file is being written (an atomic write's `.part` file exists).
fn writing(out: &Path) -> bool {
    std::fs::read_dir(out.join("checkpoints")).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".diffbir-") && name.ends_with(".part")
        })
    })
}

fn latest_step(out: &Path) -> Option<u64> {
    latest_state(&out.join("checkpoints"))
        .unwrap()
        .map(|(step, _)| step)
}

/// Waits until `ready` holds, checking every millisecond that the run is still going.
fn wait_for(child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "the run made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_and_resume_give_bitwise_identical_weights() {
    // Checkpoints every 3 steps: each kill below lands at most one checkpoint after the
    // previous one, so three kills stay well before the end.
    const STEPS: u64 = 15;
    let dir = tempfile::tempdir().unwrap();
    let config = kill_config(dir.path());

    let straight = dir.path().join("straight");
    finish(spawn(&config, &straight, STEPS, false));

    let killed = dir.path().join("killed");
    // Kill as soon as the first checkpoint is complete (mid-training), then twice in resumed
    // runs as soon as their next checkpoint is being written (or, if the write was too quick
    // to be seen, once it is complete).
    let mut child = spawn(&config, &killed, STEPS, false);
    wait_for(&mut child, || latest_step(&killed).is_some());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(assert_checkpoints_intact(&killed) >= 1);
    for _ in 0..2 {
        let before = latest_step(&killed);
        let mut child = spawn(&config, &killed, STEPS, true);
        wait_for(&mut child, || {
            writing(&killed) || latest_step(&killed) > before
        });
        child.kill().unwrap();
        child.wait().unwrap();
        assert_checkpoints_intact(&killed);
    }
    let step = latest_step(&killed).unwrap();
    assert!(
        step < STEPS,
        "the kills must land before the end (at step {step})"
    );
    finish(spawn(&config, &killed, STEPS, true));

    let a = std::fs::read(straight.join("final.safetensors")).unwrap();
    let b = std::fs::read(killed.join("final.safetensors")).unwrap();
    assert!(a == b, "final weights differ after kill + resume");
    let last = format!("checkpoints/{STEPS:07}.state.safetensors");
    let (sa, _) = read_safetensors(&straight.join(&last)).unwrap();
    let (sb, _) = read_safetensors(&killed.join(&last)).unwrap();
    assert_eq!(sa.len(), sb.len());
    for ((na, da), (nb, db)) in sa.iter().zip(&sb) {
        assert_eq!(na, nb);
        assert!(
            da.as_bytes() == db.as_bytes(),
            "{na} differs (optimiser state included)"
        );
    }
}

#[test]
fn reference_size_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let s1: Stage1TrainConfig = load_config(&dir.join("train_stage1.toml")).unwrap();
    assert_eq!(s1.train.batch_size, 96);
    assert_eq!(s1.dataset.out_size(), 512);
    // Stage 2 parses, then asks for the SD checkpoint it names.
    let err =
        load_config::<diffbir_train::config::Stage2TrainConfig>(&dir.join("train_stage2.toml"))
            .unwrap_err();
    assert!(err.to_string().contains("train.sd_path"), "{err}");
}

/// The losses and final weights of a short run of the tiny config on `device`, resumed
/// from the state of step `resume_at` (written by a run on `first_device`) when given.
fn short_run(device: &str, steps: u64, resume_from: Option<(&str, u64)>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny();
    config.train.val_every = 0;
    config.train.image_every = 2;
    config.train.ckpt_every = 100;
    config.dataset.val = None;
    let mut losses = Vec::new();
    if let Some((first_device, at)) = resume_from {
        let mut first = config.clone();
        first.train.device = first_device.into();
        let options = RunOptions {
            out: dir.path().to_path_buf(),
            steps: Some(at),
            resume: false,
        };
        losses = train_stage1(&first, &options, &mut |_| {}).unwrap().losses;
    }
    config.train.device = device.into();
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(steps),
        resume: resume_from.is_some(),
    };
    let summary = train_stage1(&config, &options, &mut |_| {}).unwrap();
    losses.extend(summary.losses);
    assert!(dir.path().join("images/0000002.png").exists() || resume_from.is_some());
    let (tensors, _) = read_safetensors(&summary.weights).unwrap();
    let weights = tensors
        .into_iter()
        .map(|(n, d)| (n, d.convert::<f32>().try_to_vec::<f32>().unwrap()))
        .collect();
    (losses, weights)
}

/// Largest difference between two sets of weights, absolute and relative to each tensor's
/// largest magnitude.
fn weight_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut abs, mut rel) = (0.0f64, 0.0f64);
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let scale = va
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs() as f64))
            .max(1e-12);
        // The key bias of an attention layer has no gradient in exact arithmetic (the softmax
        // over keys ignores a constant added to every logit), so what it gets is rounding
        // noise, which Adam scales to ±lr whatever its size: left out.
        let skip = if na.ends_with("attn.qkv.bias") {
            va.len() / 3..2 * va.len() / 3
        } else {
            0..0
        };
        for (i, (x, y)) in va.iter().zip(vb).enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let d = (*x as f64 - *y as f64).abs();
            abs = abs.max(d);
            rel = rel.max(d / scale);
        }
    }
    (abs, rel)
}

fn loss_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
        .fold(0.0, f64::max)
}

/// Whether two runs agree up to the rounding of the gradient sums: the losses to 1e-6
/// relative, every weight to 1 % of the learning rate (the size of one Adam update) and to
/// 1e-4 of its tensor's largest magnitude. (Adam divides each gradient by its running
/// magnitude, so an element whose gradient is tiny gets its rounding noise amplified; the
/// measured differences are far below these bounds.)
fn assert_close(what: &str, (l1, w1): &Run, (l2, w2): &Run) {
    let (abs, rel) = weight_difference(w1, w2);
    let dl = loss_difference(l1, l2);
    println!(
        "{what}: weights max |Δ| {abs:.3e} ({rel:.3e} of the tensor's scale), losses {dl:.3e}"
    );
    let lr = tiny().train.learning_rate;
    assert!(
        abs < 0.01 * lr && rel < 1e-4 && dl < 1e-6,
        "{what}: {abs} {rel} {dl}"
    );
}

type Run = (Vec<f64>, Vec<(String, Vec<f32>)>);

#[test]
fn two_replicas_match_one_device_and_resume_across_device_counts() {
    const STEPS: u64 = 2;
    let one = short_run("cpu", STEPS, None);
    assert_close("1 vs 2 replicas", &one, &short_run("cpu, cpu", STEPS, None));

    // A state written on one device resumes on two.
    let resumed = short_run("cpu,cpu", STEPS, Some(("cpu", 1)));
    assert_close("1 replica, resumed on 2", &one, &resumed);
}

#[test]
fn a_batch_not_divisible_by_the_devices_is_refused() {
    let mut config = tiny();
    config.train.batch_size = 3;
    config.train.device = "cpu,cpu".into();
    let err = config.validate().unwrap_err();
    assert!(matches!(err, Error::Field { .. }), "{err:?}");
    assert!(err.to_string().contains("train.batch_size"), "{err}");
    assert!(err.to_string().contains("2 devices"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(1),
        resume: false,
    };
    let err = train_stage1(&config, &options, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("train.batch_size"), "{err}");

    config.train.batch_size = 4;
    config.train.device = "cpu,".into();
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("train.device"), "{err}");
    config.train.device = "cpu,gpu".into();
    let err = train_stage1(&config, &options, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("train.device"), "{err}");
}

#[test]
fn the_command_takes_a_device_list() {
    let dir = tempfile::tempdir().unwrap();
    let config = kill_config(dir.path());
    let run = |devices: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffbir-train"));
        cmd.args(["stage1", "--quiet", "--steps", "1", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(dir.path().join(devices.join("_")));
        for d in devices {
            cmd.args(["--device", d]);
        }
        cmd.output().unwrap()
    };
    // kill_config's global batch is 2: three devices cannot share it.
    let out = run(&["cpu", "cpu,cpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.batch_size") && err.contains("3 devices"),
        "{err}"
    );
    let out = run(&["cpu", "cpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
