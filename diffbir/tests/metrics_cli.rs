//! `diffbir metrics` on real photos: scores, reports and the refusal of bad pairs. LPIPS runs
//! on the narrow AlexNet of the metric parity cases, written by torch in the official layouts
//! and copied here under the official file names.

#[path = "common/command.rs"]
mod command;
#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/tiny.rs"]
mod tiny;

use std::fs;
use std::path::{Path, PathBuf};

use diffbir::core::Checkpoint;
use diffbir::ldm::clip::ClipTokenizer;
use diffbir::metrics::clip_iqa::ClipIqa;
use diffbir::metrics::{FrOptions, MetricImage, psnr, ssim};
use image::codecs::jpeg::JpegEncoder;
use serde_json::Value;

/// A weights folder with the LPIPS (AlexNet) files of the parity case `lpips_alex_narrow`.
fn lpips_weights(dir: &Path) -> PathBuf {
    let cases = fixtures::repo_fixtures("metrics");
    let weights = dir.join("weights");
    fs::create_dir_all(&weights).unwrap();
    for (case_file, official) in [
        ("lpips_alex_narrow.trunk.pth", "alexnet-owt-7be5be79.pth"),
        ("lpips_alex_narrow.lin.pth", "LPIPS_v0.1_alex-df73285e.pth"),
    ] {
        fs::copy(cases.join(case_file), weights.join(official)).unwrap();
    }
    weights
}

/// References (three real photos, PNG) and restored images: two JPEG copies at quality 40
/// (saved with a `.png` name, as some tools do) and one identical copy.
fn folders(dir: &Path) -> (PathBuf, PathBuf) {
    let (reference, restored) = (dir.join("gt"), dir.join("out"));
    fs::create_dir_all(&reference).unwrap();
    fs::create_dir_all(&restored).unwrap();
    for (i, name) in ["1.jpg", "6.jpg", "11.jpg"].into_iter().enumerate() {
        let photo = image::open(tiny::shared().join("images/real47").join(name)).unwrap();
        let stem = name.trim_end_matches(".jpg");
        photo.save(reference.join(format!("{stem}.png"))).unwrap();
        if i == 2 {
            photo.save(restored.join(format!("{stem}.png"))).unwrap();
        } else {
            let mut jpeg = Vec::new();
            photo
                .write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 40))
                .unwrap();
            fs::write(restored.join(format!("{stem}.png")), jpeg).unwrap();
        }
    }
    (reference, restored)
}

fn diffbir(args: &[&str]) -> (std::process::Output, String, String) {
    command::run_diffbir(args, None, command::NOWHERE)
}

/// A printed score is the library's (serde_json's parser may land one unit in the last place
/// away from the shortest representation the program printed).
fn assert_same(printed: &Value, value: f64) {
    let got = printed.as_f64().unwrap();
    assert!(
        (got - value).abs() <= 2.0 * f64::EPSILON * value.abs(),
        "{got} against {value}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn scores_real_photos_with_a_table_json_lines_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, restored) = folders(dir.path());
    let weights = lpips_weights(dir.path());
    let (csv, json) = (dir.path().join("s.csv"), dir.path().join("s.jsonl"));
    let args = [
        "metrics",
        "--restored",
        path(&restored),
        "--reference",
        path(&reference),
        "--metric",
        "psnr,ssim,lpips",
        "--weights-dir",
        path(&weights),
        "--offline",
        "--csv",
        path(&csv),
        "--json-out",
        path(&json),
    ];
    let (out, stdout, stderr) = diffbir(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&str> = rows.iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["1.png", "11.png", "6.png", "mean"]);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{}", rows[0]);
    // The identical pair: PSNR is infinite (null in JSON), SSIM 1, LPIPS 0; the mean PSNR
    // is infinite as well.
    assert_eq!(rows[1]["psnr"], Value::Null);
    assert!((rows[1]["ssim"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(rows[1]["lpips"].as_f64().unwrap(), 0.0);
    assert_eq!(rows[3]["psnr"], Value::Null);
    // The JPEG copies: the library's numbers, a visible loss, a positive distance.
    let open = |dir: &Path, name: &str| MetricImage::open(dir.join(name)).unwrap();
    let options = FrOptions::default();
    for (row, name) in [(&rows[0], "1.png"), (&rows[2], "6.png")] {
        let (a, b) = (open(&restored, name), open(&reference, name));
        assert_same(&row["psnr"], psnr(&a, &b, &options).unwrap());
        assert_same(&row["ssim"], ssim(&a, &b, &options).unwrap());
        let p = row["psnr"].as_f64().unwrap();
        assert!((20.0..40.0).contains(&p), "{row}");
        assert!(row["lpips"].as_f64().unwrap() > 0.0, "{row}");
    }
    let mean_ssim = rows[..3]
        .iter()
        .map(|r| r["ssim"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((rows[3]["ssim"].as_f64().unwrap() - mean_ssim).abs() < 1e-12);
    // The files hold the same rows: JSON lines as printed, CSV with `inf`.
    assert_eq!(fs::read_to_string(&json).unwrap(), stdout);
    let csv_text = fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(lines[0], "file,psnr,ssim,lpips");
    assert!(lines[2].starts_with("11.png,inf,1,0"), "{csv_text}");
    assert!(lines[4].starts_with("mean,inf,"), "{csv_text}");

    // Without --json: an aligned table with the mean last.
    let (out, stdout, stderr) = diffbir(&args);
    assert!(out.status.success(), "{stderr}");
    let table: Vec<&str> = stdout.lines().collect();
    assert!(
        table[0].starts_with("file") && table[0].contains("psnr↑") && table[0].contains("lpips↓")
    );
    assert!(
        table[2].starts_with("11.png") && table[2].contains("inf"),
        "{stdout}"
    );
    assert!(table[4].starts_with("mean"), "{stdout}");
}

#[test]
fn the_luma_and_a_crop_change_the_scores_as_basicsr_does() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, restored) = folders(dir.path());
    let (out, stdout, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&restored),
        "--reference",
        path(&reference),
        "--metric",
        "psnr,ssim-pyiqa",
        "--y-channel",
        "--crop-border",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{stderr}");
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let options = FrOptions {
        crop_border: 4,
        y_channel: true,
    };
    let (a, b) = (
        MetricImage::open(restored.join("1.png")).unwrap(),
        MetricImage::open(reference.join("1.png")).unwrap(),
    );
    assert_same(&first["psnr"], psnr(&a, &b, &options).unwrap());
    assert_same(
        &first["ssim-pyiqa"],
        diffbir::metrics::ssim_pyiqa(&a, &b, &options).unwrap(),
    );
    assert_ne!(
        first["psnr"].as_f64().unwrap(),
        psnr(&a, &b, &FrOptions::default()).unwrap()
    );
}

#[test]
fn bad_pairs_are_all_reported_before_anything_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, restored) = folders(dir.path());
    // An unmatched file on each side, a pair one pixel smaller, an unreadable image and two
    // files of one name.
    fs::copy(restored.join("1.png"), restored.join("extra.png")).unwrap();
    fs::copy(reference.join("1.png"), reference.join("lonely.png")).unwrap();
    let small = image::open(reference.join("6.png")).unwrap();
    small
        .crop_imm(0, 0, small.width() - 1, small.height())
        .save(restored.join("6.png"))
        .unwrap();
    fs::write(restored.join("11.png"), b"not an image").unwrap();
    fs::copy(reference.join("1.png"), reference.join("1.bmp")).unwrap();
    let base = [
        "metrics",
        "--restored",
        path(&restored),
        "--reference",
        path(&reference),
        "--metric",
        "psnr,ssim",
    ];
    let (out, stdout, stderr) = diffbir(&base);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for expected in [
        "5 problem(s)",
        "reference 1.bmp, 1.png: several files of one name",
        "restored extra.png: no reference image of that name",
        "reference lonely.png: no restored image of that name",
        "6.png: the images differ in size: restored 149×113×3, reference 150×113×3",
        "11.png",
        "cannot decode the image",
        "--skip-bad",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }

    // --skip-bad scores what it can, names the rest and exits with 1.
    fs::remove_file(reference.join("1.bmp")).unwrap();
    let (out, stdout, stderr) = diffbir(&[&base[..], &["--skip-bad", "--json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let files: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["file"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(files, ["1.png", "mean"]);
    assert_eq!(stderr.matches("skipped: ").count(), 4, "{stderr}");
}

#[test]
fn crops_and_sizes_the_metrics_cannot_use_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, restored) = folders(dir.path());
    let (out, _, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&restored),
        "--reference",
        path(&reference),
        "--metric",
        "ssim",
        "--crop-border",
        "86",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("ssim needs at least 11×11 pixels after cropping 86 from each side")
            && stderr.contains("use a smaller --crop-border"),
        "{stderr}"
    );
    let (out, _, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&restored),
        "--reference",
        path(&reference),
        "--metric",
        "niqe",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("niqe") && stderr.contains("psnr-pyiqa"),
        "{stderr}"
    );
    let (out, _, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&dir.path().join("none")),
        "--reference",
        path(&reference),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("none: no such folder"), "{stderr}");
}

#[test]
fn clipiqa_scores_images_without_references() {
    let dir = tempfile::tempdir().unwrap();
    let (_, restored) = folders(dir.path());
    // The tiny CLIP of the metric cases under the official file name, and CLIP's merges.
    let weights = dir.path().join("weights");
    fs::create_dir_all(&weights).unwrap();
    fs::copy(
        fixtures::repo_fixtures("metrics").join("clipiqa_tiny.weights.safetensors"),
        weights.join("open_clip_model.safetensors"),
    )
    .unwrap();
    fs::copy(
        fixtures::fixtures().join("bpe_simple_vocab_16e6.txt.gz"),
        weights.join("bpe_simple_vocab_16e6.txt.gz"),
    )
    .unwrap();
    let (out, stdout, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&restored),
        "--metric",
        "clipiqa",
        "--weights-dir",
        path(&weights),
        "--offline",
        "--json",
    ]);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    let device = burn::tensor::Device::flex();
    let model = ClipIqa::load(
        &Checkpoint::open(weights.join("open_clip_model.safetensors")).unwrap(),
        &ClipTokenizer::from_file(weights.join("bpe_simple_vocab_16e6.txt.gz")).unwrap(),
        &device,
    )
    .unwrap();
    for row in &rows[..3] {
        let image = MetricImage::open(restored.join(row["file"].as_str().unwrap())).unwrap();
        let score = model.forward(image.to_tensor(&device)).into_data();
        let score = f64::from(score.try_to_vec::<f32>().unwrap()[0]);
        assert!((0.0..=1.0).contains(&score), "{row}");
        assert_same(&row["clipiqa"], score);
    }

    // A full-reference metric without references is refused, naming it.
    let (out, _, stderr) = diffbir(&[
        "metrics",
        "--restored",
        path(&restored),
        "--metric",
        "clipiqa,psnr",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("reference images: psnr") && stderr.contains("--reference DIR"),
        "{stderr}"
    );
}
