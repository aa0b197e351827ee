//! `cargo xtask eval` end to end on the tiny models of `fake-checkpoint --tiny` and a real
//! photo: both degradations, the table and the per-image scores, an interrupted run resumed
//! to the same results, and a folder refused for other settings. An ignored test runs the
//! official weights.

#[path = "../../testing/fixtures.rs"]
mod fixtures;

use std::fs;
use std::path::{Path, PathBuf};

use xtask::eval::{EvalArgs, main as eval};
use xtask::fake_checkpoint::tiny;

fn dataset(dir: &Path, names: &[&str]) -> PathBuf {
    let images = fixtures::fixtures().join("../images/real47");
    let out = dir.join("dataset");
    fs::create_dir_all(&out).unwrap();
    for name in names {
        fs::copy(images.join(name), out.join(name)).unwrap();
    }
    out
}

fn args(dataset: &Path, out: &Path, weights: &Path) -> EvalArgs {
    EvalArgs {
        dataset: dataset.to_path_buf(),
        out: out.to_path_buf(),
        weights_dir: weights.to_path_buf(),
        model_config: Some(weights.join("model-config.json")),
        degradation: vec!["codeformer".into(), "realesrgan".into()],
        task: "sr".into(),
        version: "v2.1".into(),
        size: 96,
        seed: 231,
        limit: None,
        metric: vec![
            "psnr".into(),
            "ssim".into(),
            "lpips".into(),
            "clipiqa".into(),
        ],
        steps: Some(2),
        device: "cpu".into(),
        stop_after: None,
    }
}

#[test]
fn a_table_from_tiny_models_and_an_interrupted_run_resumes_to_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights");
    tiny::write(&weights, 0).unwrap();
    let data = dataset(dir.path(), &["6.jpg"]);

    let whole = dir.path().join("whole");
    eval(args(&data, &whole, &weights)).unwrap();
    for file in [
        "eval.json",
        "per_image.csv",
        "table.md",
        "hq/6.png",
        "lq/codeformer/6.png",
        "lq/realesrgan/6.png",
        "restored/codeformer/stage1/6.png",
        "restored/codeformer/diffbir/6.png",
        "restored/realesrgan/stage1/6.png",
        "restored/realesrgan/diffbir/6.png",
    ] {
        assert!(whole.join(file).is_file(), "{file} missing");
    }
    let hq = diffbir::image::open(whole.join("hq/6.png")).unwrap();
    assert_eq!((hq.width(), hq.height()), (96, 96));
    let csv = fs::read_to_string(whole.join("per_image.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "image,degradation,method,psnr,ssim,lpips,clipiqa");
    assert_eq!(lines.len(), 5, "{csv}");
    for line in &lines[1..] {
        let scores: Vec<f64> = line
            .split(',')
            .skip(3)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(scores.iter().all(|v| v.is_finite()), "{line}");
        assert!((5.0..60.0).contains(&scores[0]), "{line}");
    }
    let table = fs::read_to_string(whole.join("table.md")).unwrap();
    for expected in [
        "## codeformer (1 images)",
        "## realesrgan (1 images)",
        "| metric | Stage 1 (SwinIR) | DiffBIR v2.1 |",
        "| PSNR↑ |",
        "| LPIPS↓ |",
        "| CLIPIQA↑ |",
        "**",
    ] {
        assert!(table.contains(expected), "missing `{expected}` in\n{table}");
    }

    // Stopped after one restoration, then run again: the same files as the whole run.
    let resumed = dir.path().join("resumed");
    let mut first = args(&data, &resumed, &weights);
    first.stop_after = Some(1);
    eval(first).unwrap();
    let partial = fs::read_to_string(resumed.join("per_image.csv")).unwrap();
    assert_eq!(partial.lines().count(), 3, "{partial}");
    assert!(!resumed.join("table.md").exists());
    eval(args(&data, &resumed, &weights)).unwrap();
    for file in [
        "per_image.csv",
        "table.md",
        "restored/realesrgan/diffbir/6.png",
    ] {
        assert_eq!(
            fs::read(whole.join(file)).unwrap(),
            fs::read(resumed.join(file)).unwrap(),
            "{file} differs after resuming"
        );
    }

    // A folder started with other settings is refused, and left as it was.
    let mut other = args(&data, &whole, &weights);
    other.seed = 1;
    let err = eval(other).unwrap_err().to_string();
    assert!(err.contains("was started with other settings"), "{err}");
    assert_eq!(
        fs::read_to_string(whole.join("per_image.csv")).unwrap(),
        csv
    );
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["6.jpg"]);
    let out = dir.path().join("out");
    let mut small = args(&data, &out, &dir.path().join("no-weights"));
    small.degradation = vec!["fog".into()];
    let err = eval(small).unwrap_err().to_string();
    assert!(err.contains("fog") && err.contains("realesrgan"), "{err}");
    let err = eval(args(&data, &out, &dir.path().join("no-weights")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-weights"), "{err}");
    // Two images whose outputs would share a name.
    fs::copy(data.join("6.jpg"), data.join("6.png")).unwrap();
    let err = eval(args(&data, &out, &dir.path().join("no-weights")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("6.jpg") && err.contains("6.png"), "{err}");
    assert!(!out.join("eval.json").exists());
}

/// The official v2.1 weights on two 512² crops of real photos (minutes on a CPU). Needs the
/// official files, LPIPS' included, in the folder named by `DIFFBIR_WEIGHTS_DIR` (a
/// `diffbir download` cache: `diffbir download --version v2.1 --task sr alexnet lpips-alex
/// clip-rn50`).
#[test]
#[ignore = "needs the official weights in DIFFBIR_WEIGHTS_DIR; minutes on a CPU"]
fn official_weights_give_a_table_with_plausible_scores() {
    let weights = PathBuf::from(
        std::env::var_os("DIFFBIR_WEIGHTS_DIR")
            .expect("set DIFFBIR_WEIGHTS_DIR to a folder with the official v2.1 and LPIPS files"),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &["6.jpg", "11.jpg"]);
    let out = dir.path().join("out");
    let mut a = args(&data, &out, &weights);
    a.model_config = None;
    a.size = 512;
    a.steps = None;
    eval(a).unwrap();
    let table = fs::read_to_string(out.join("table.md")).unwrap();
    println!("{table}");
    let csv = fs::read_to_string(out.join("per_image.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let scores: Vec<f64> = line
            .split(',')
            .skip(3)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(
            scores[0] > 15.0 && scores[1] > 0.2 && scores[2] < 0.8,
            "{line}"
        );
    }
}
