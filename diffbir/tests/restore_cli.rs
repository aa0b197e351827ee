//! `diffbir restore` end to end: real photos (RGB, plus RGBA and gray copies), tiny
//! random-weight models under the official file names in a --weights-dir, offline; and the
//! bad settings, inputs, outputs and checkpoints that must fail with a clear one-line error.

#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/tiny.rs"]
mod tiny;

#[path = "common/command.rs"]
mod command;

use std::path::{Path, PathBuf};

use diffbir::hub::release_files;
use diffbir::pipeline::{ModelConfigs, Task, Version};
use diffbir_train::RunOptions;
use diffbir_train::config::{Stage1TrainConfig, load_config};
use diffbir_train::stage1::train_stage1;

use tiny::shared;

/// A weights folder holding the fixtures' tiny models under the official v2.1 SR names, and
/// a model-config file describing their shapes (`tiny.json` beside it).
fn tiny_weights(dir: &Path) -> PathBuf {
    tiny::tiny_models_file(dir);
    tiny::weights_dir(Task::Sr, dir)
}

/// Runs the command; the caller's hub settings are ignored, and nothing can be downloaded by
/// accident.
fn diffbir(args: &[&str]) -> (i32, String, String) {
    let (out, stdout, stderr) = command::run_diffbir(args, None, command::NOWHERE);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn restores_rgb_rgba_and_gray_photos_and_skips_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_weights(dir.path());
    let inputs = tiny::rgb_rgba_gray_inputs(dir.path());
    std::fs::write(inputs.join("d_corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let output = dir.path().join("out");
    let config = dir.path().join("tiny.json");
    let args = tiny::tiny_restore_args(&weights, &config, &inputs, &output, &["--upscale", "2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = diffbir(&args);
    assert_eq!(code, 1, "one input is corrupt: {stderr}");
    assert!(stderr.contains("d_corrupt.png"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let rgb = image::open(output.join("a_rgb.png")).unwrap();
    assert_eq!((rgb.width(), rgb.height()), (240, 160));
    assert_eq!(rgb.color(), image::ColorType::Rgb8);
    let rgba = image::open(output.join("b_rgba.png")).unwrap();
    assert_eq!(rgba.color(), image::ColorType::Rgba8);
    assert_eq!((rgba.width(), rgba.height()), (240, 160));
    let gray = image::open(output.join("c_gray.png")).unwrap();
    assert_eq!(gray.color(), image::ColorType::L8);
    assert!(!output.join("d_corrupt.png").exists());
    // The prompts of every restored image, as the reference records them.
    let mut prompts = csv::Reader::from_path(output.join("prompt.csv")).unwrap();
    assert_eq!(
        prompts.headers().unwrap(),
        vec!["file_name", "pos_prompt", "neg_prompt"]
    );
    let names: Vec<String> = prompts
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(names, ["a_rgb", "b_rgba", "c_gray"]);

    // Existing outputs are kept unless --overwrite is given.
    let (code, _, stderr) = diffbir(&args);
    assert_ne!(code, 0);
    assert!(stderr.contains("--overwrite"), "{stderr}");
}

#[test]
fn a_stage1_model_trained_by_diffbir_train_restores_as_a_custom_model() {
    let dir = tempfile::tempdir().unwrap();
    let config_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../diffbir-train/configs/tiny-stage1.toml");
    let mut config: Stage1TrainConfig = load_config(&config_path).unwrap();
    config.train.val_every = 0;
    config.train.image_every = 0;
    let options = RunOptions {
        out: dir.path().join("run"),
        steps: Some(2),
        resume: false,
    };
    let trained = train_stage1(&config, &options, &mut |_| {})
        .unwrap()
        .weights;
    // The model-config file of the tiny weights describes the trained network's shape.
    let weights = tiny_weights(dir.path());
    let models: ModelConfigs =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tiny.json")).unwrap())
            .unwrap();
    assert_eq!(
        serde_json::to_value(&models.stage1).unwrap(),
        serde_json::to_value(&config.model).unwrap()
    );

    let input = dir.path().join("photo.png");
    let photo = image::open(shared().join("images/demo/bsr/49.jpg")).unwrap();
    photo.crop_imm(20, 8, 64, 64).save(&input).unwrap();
    let output = dir.path().join("out");
    let config_file = dir.path().join("tiny.json");
    let (code, _, stderr) = diffbir(&[
        "restore",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--model-config",
        config_file.to_str().unwrap(),
        "--weights-dir",
        weights.to_str().unwrap(),
        "--stage1-ckpt",
        trained.to_str().unwrap(),
        "--offline",
        "--sampler",
        "edm_euler",
        "--steps",
        "1",
        "--upscale",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let restored = image::open(output.join("photo.png")).unwrap();
    assert_eq!((restored.width(), restored.height()), (64, 64));
}

#[test]
fn bad_settings_fail_before_any_model_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let photo = shared().join("images/demo/bsr/49.jpg");
    let out = dir.path().join("out");
    let base = [
        "restore",
        "--input",
        photo.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--offline",
    ];
    for (extra, expected) in [
        (vec!["--sampler", "dpm++_s2"], "dpm++_s2"),
        (
            vec!["--vae-decoder-tiled", "--vae-decoder-tile-size", "100"],
            "multiple of 8",
        ),
        (
            vec!["--vae-encoder-tiled", "--vae-encoder-tile-size", "100"],
            "multiple of 8",
        ),
        (
            vec![
                "--cldm-tiled",
                "--cldm-tile-size",
                "512",
                "--cldm-tile-stride",
                "100",
            ],
            "multiple of 8",
        ),
        (vec!["--upscale", "1000"], "limit"),
        (vec!["--task", "colorize"], "unknown task"),
        (
            vec!["--cleaner-tiled", "--cleaner-tile-size", "100"],
            "multiple of 64",
        ),
        (vec!["--steps", "0"], "steps"),
        (
            vec!["--sampler", "spaced", "--steps", "1"],
            "at least 2 steps",
        ),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let (code, _, stderr) = diffbir(&args);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        // One line per problem: a per-input error, then the run's summary when no input is left.
        assert!(
            stderr.lines().count() <= 2 && stderr.lines().all(|l| l.starts_with("error: ")),
            "{stderr}"
        );
        assert!(
            files_in(&out).is_empty(),
            "{expected}: {:?}",
            files_in(&out)
        );
    }
    let missing = dir.path().join("missing.png");
    let (code, _, stderr) = diffbir(&[
        "restore",
        "--input",
        missing.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.png"), "{stderr}");
}

/// The files under `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                files_in(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Bad inputs, outputs and checkpoints: a clear `error:` line (plus the run's summary when no
/// input is left), a non-zero exit, no panic, and no file written.
#[test]
fn bad_inputs_outputs_and_checkpoints_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = tiny_weights(d);
    let fixtures = shared().join("fixtures");
    let config = d.join("tiny.json");
    let photo = d.join("photo.png");
    image::open(shared().join("images/demo/bsr/49.jpg"))
        .unwrap()
        .resize_exact(32, 32, image::imageops::FilterType::Triangle)
        .save(&photo)
        .unwrap();
    let corrupt = d.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let missing = d.join("missing.png");
    // A regular file where the output folder (or its parent) should be.
    let blocker = d.join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let under_blocker = blocker.join("out");
    // A weights folder whose official stage-1 file holds the ControlNet.
    let files = release_files(Task::Sr, Version::V21);
    let wrong = d.join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    for entry in std::fs::read_dir(&weights).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, wrong.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        fixtures.join("sd_tiny.controlnet_format.pth"),
        wrong.join(files.stage1.file_name),
    )
    .unwrap();
    // A checkpoint cut short, as an interrupted copy leaves it.
    let truncated = d.join("truncated.ckpt");
    let sd = std::fs::read(fixtures.join("sd_tiny.sd21_format.ckpt")).unwrap();
    std::fs::write(&truncated, &sd[..sd.len() / 2]).unwrap();
    let controlnet = fixtures.join("sd_tiny.controlnet_format.pth");
    let no_checkpoint = d.join("no_such.pt");

    let check = |case: &str, input: &Path, output: &Path, extra: &[&str], expected: &[&str]| {
        let mut args = vec![
            "restore",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--model-config",
            config.to_str().unwrap(),
            "--offline",
            "--sampler",
            "edm_euler",
            "--steps",
            "1",
        ];
        args.extend(extra);
        let (code, stdout, stderr) = diffbir(&args);
        assert_eq!(code, 2, "{case}: {stderr}");
        assert!(stdout.is_empty(), "{case}: {stdout}");
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        // Besides the weight files found on the way, only `error:` lines: the problem, then
        // the run's summary when no input is left.
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("using "))
            .collect();
        assert!(
            (1..=2).contains(&errors.len()) && errors.iter().all(|l| l.starts_with("error: ")),
            "{case}: {stderr}"
        );
        for needle in expected {
            assert!(errors[0].contains(needle), "{case}: `{needle}` in {stderr}");
        }
        assert!(
            files_in(output).is_empty(),
            "{case}: {:?}",
            files_in(output)
        );
    };
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let weights = s(&weights);
    let good = ["--weights-dir", weights.as_str()];
    check(
        "missing input",
        &missing,
        &d.join("out1"),
        &good,
        &[&s(&missing), "No such file"],
    );
    check(
        "corrupt image",
        &corrupt,
        &d.join("out2"),
        &good,
        &[&s(&corrupt), "cannot decode the image"],
    );
    check("output is a file", &photo, &blocker, &good, &[&s(&blocker)]);
    check(
        "output under a file",
        &photo,
        &under_blocker,
        &good,
        &[&s(&under_blocker)],
    );
    check(
        "stage 1 given the ControlNet",
        &photo,
        &d.join("out3"),
        &[good[0], good[1], "--stage1-ckpt", &s(&controlnet)],
        &[&s(&controlnet), "does not match"],
    );
    check(
        "official name, wrong model",
        &photo,
        &d.join("out4"),
        &["--weights-dir", &s(&wrong)],
        &[&s(&wrong.join(files.stage1.file_name)), "does not match"],
    );
    check(
        "truncated checkpoint",
        &photo,
        &d.join("out5"),
        &[good[0], good[1], "--sd-ckpt", &s(&truncated)],
        &[&s(&truncated), "not a readable checkpoint"],
    );
    // Reported before any official file is looked up (or downloaded).
    check(
        "missing checkpoint",
        &photo,
        &d.join("out6"),
        &["--controlnet-ckpt", &s(&no_checkpoint)],
        &["--controlnet-ckpt", &s(&no_checkpoint), "no such file"],
    );
    // The file in the way is left as it was.
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a folder");
}

#[test]
fn shards_split_a_folder_into_disjoint_parts_that_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_weights(dir.path());
    let inputs = tiny::rgb_rgba_gray_inputs(dir.path());
    let config = dir.path().join("tiny.json");
    let mut restored = Vec::new();
    for shard in ["1/2", "2/2"] {
        let output = dir.path().join(format!("out{}", &shard[..1]));
        let args = tiny::tiny_restore_args(
            &weights,
            &config,
            &inputs,
            &output,
            &["--upscale", "1", "--shard", shard],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = diffbir(&args);
        assert_eq!(code, 0, "{stderr}");
        let mut names: Vec<String> = stdout
            .lines()
            .map(|l| {
                Path::new(l)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        restored.push(names);
    }
    // Round robin over the sorted names: a and c, then b.
    assert_eq!(
        restored,
        [vec!["a_rgb.png", "c_gray.png"], vec!["b_rgba.png"]]
    );

    // A share with nothing in it is not an error.
    let single = dir.path().join("single");
    std::fs::create_dir(&single).unwrap();
    std::fs::copy(inputs.join("a_rgb.png"), single.join("a.png")).unwrap();
    let (code, stdout, stderr) = diffbir(&[
        "restore",
        "--input",
        single.to_str().unwrap(),
        "--output",
        dir.path().join("none").to_str().unwrap(),
        "--shard",
        "2/2",
        "--offline",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("empty"), "{stderr}");

    for bad in ["0/2", "3/2", "1/0", "a/b", "2"] {
        let (code, _, stderr) = diffbir(&[
            "restore", "--input", "x.png", "--output", "out", "--shard", bad,
        ]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("--shard"), "{bad}: {stderr}");
    }
}

#[test]
fn plan_prints_the_tiling_and_peaks_without_loading_and_a_small_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // No weights: --plan must not need them.
    let weights = dir.path().join("no-weights");
    tiny::tiny_models_file(dir.path());
    let inputs = tiny::rgb_rgba_gray_inputs(dir.path());
    let output = dir.path().join("out");
    let config = dir.path().join("tiny.json");
    let run = |extra: &[&str]| {
        let args = tiny::tiny_restore_args(&weights, &config, &inputs, &output, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        diffbir(&args)
    };
    let (code, stdout, stderr) = run(&["--plan", "--max-memory", "2GiB"]);
    assert_eq!(code, 0, "{stderr}");
    for stage in [
        "stage 1",
        "VAE encode",
        "sampling",
        "VAE decode",
        "colour fix",
    ] {
        assert!(stdout.contains(stage), "{stdout}");
    }
    assert_eq!(stdout.matches("estimated peak").count(), 3, "{stdout}");
    assert!(stdout.contains("budget 2.0 GiB"), "{stdout}");
    assert!(!output.join("a_rgb.png").exists());

    // Without --max-memory, the budget is the RAM available.
    let (code, stdout, stderr) = run(&["--plan"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches("estimated peak").count(), 3, "{stdout}");
    assert!(stdout.contains(", budget "), "{stdout}");

    let (code, _, stderr) = run(&["--plan", "--max-memory", "1MiB"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no plan fits in 1.0 MiB"), "{stderr}");
    assert!(stderr.contains("--max-memory"), "{stderr}");

    let (code, _, stderr) = run(&["--plan", "--max-memory", "lots"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("lots"), "{stderr}");
}

#[test]
fn networks_loaded_per_stage_write_the_same_images_as_resident_ones() {
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_weights(dir.path());
    let inputs = tiny::rgb_rgba_gray_inputs(dir.path());
    let input = inputs.join("a_rgb.png");
    let config = dir.path().join("tiny.json");
    let run = |output: &Path, extra: &[&str]| {
        let args = tiny::tiny_restore_args(&weights, &config, &input, output, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        diffbir(&args)
    };
    let mut images = Vec::new();
    for residency in ["resident", "per-stage"] {
        let output = dir.path().join(residency);
        let (code, _, stderr) = run(
            &output,
            &[
                "--upscale",
                "2",
                "--residency",
                residency,
                "--max-memory",
                "4GiB",
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        images.push(std::fs::read(output.join("a_rgb.png")).unwrap());
    }
    assert!(
        images[0] == images[1],
        "the two residencies wrote different images"
    );

    let (code, stdout, stderr) = run(
        &dir.path().join("plan"),
        &["--plan", "--residency", "per-stage", "--max-memory", "2GiB"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("networks loaded per stage"), "{stdout}");
    let (code, _, stderr) = run(&dir.path().join("plan"), &["--residency", "sometimes"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
}
