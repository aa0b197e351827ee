//! `diffbir metrics`: scores a folder of restored images against a folder of references, the
//! pairs matched by name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::Args;
use diffbir::core::device::DeviceSpec;
use diffbir::metrics::pairs::{Pair, pair_folders};
use diffbir::metrics::report::{self, Row};
use diffbir::metrics::{FrOptions, Metric, MetricImage, Scorer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::HubArgs;
use crate::Progress;
use crate::cli::values::named;

/// What `diffbir metrics` takes.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// The folder of restored images.
    #[arg(long, value_name = "DIR")]
    restored: PathBuf,
    /// The folder of reference (ground-truth) images. Files pair by name whatever their
    /// extension (`3.png` with `3.jpg`); a restored `NAME_i` (the samples `restore` writes)
    /// pairs with `NAME`. Needed by every metric but clipiqa.
    #[arg(long, value_name = "DIR")]
    reference: Option<PathBuf>,
    /// The metrics, comma-separated: psnr and ssim (BasicSR's), psnr-pyiqa and ssim-pyiqa
    /// (pyiqa's), lpips (AlexNet) and lpips-vgg, and clipiqa (no reference). LPIPS and
    /// CLIP-IQA download their official weights once.
    #[arg(
        long = "metric",
        value_name = "METRIC",
        value_delimiter = ',',
        default_value = "psnr,ssim,lpips",
        value_parser = named::<Metric>()
    )]
    metrics: Vec<Metric>,
    /// Pixels cut from each side before PSNR and SSIM (often the upscaling factor).
    #[arg(long, default_value_t = 0, value_name = "N")]
    crop_border: usize,
    /// Compute PSNR and SSIM on the luma only (BT.601 for BasicSR's, YIQ's Y for pyiqa's).
    #[arg(long)]
    y_channel: bool,
    /// Print one JSON object per pair, and a last one with `"file": "mean"`, instead of the
    /// table.
    #[arg(long)]
    json: bool,
    /// Also write the scores and the mean as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also write the JSON lines to a file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Score the pairs that can be scored, list the others on stderr and exit with 1, instead
    /// of refusing the run when any pair is bad.
    #[arg(long)]
    skip_bad: bool,
    /// Device for LPIPS and CLIP-IQA (cpu, wgpu, vulkan, cuda or cuda:N).
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::from_str)]
    device: DeviceSpec,
    #[command(flatten)]
    hub: HubArgs,
}

/// A pair that can be scored, its images decoded.
struct Loaded {
    restored: MetricImage,
    reference: Option<MetricImage>,
}

/// Decodes a pair and checks that every metric can score it.
fn load(pair: &Pair, scorer: &Scorer) -> Result<Loaded> {
    let restored = MetricImage::open(&pair.restored)?;
    let reference = pair.reference.as_ref().map(MetricImage::open).transpose()?;
    scorer
        .check(&restored, reference.as_ref())
        .with_context(|| pair.name.clone())?;
    Ok(Loaded {
        restored,
        reference,
    })
}

/// Runs `diffbir metrics`.
pub fn metrics(args: &MetricsArgs) -> Result<ExitCode> {
    let options = FrOptions {
        crop_border: args.crop_border,
        y_channel: args.y_channel,
    };
    let checker = Scorer::new(&args.metrics, options, &args.device.device()?);
    if args.reference.is_none() && checker.needs_reference() {
        let full: Vec<&str> = checker
            .metrics()
            .iter()
            .filter(|m| m.needs_reference())
            .map(|m| m.name())
            .collect();
        bail!(
            "these metrics compare with reference images: {}; give them with --reference DIR \
             (only clipiqa scores without)",
            full.join(", ")
        );
    }
    let folders = std::iter::once(("--restored", &args.restored))
        .chain(args.reference.iter().map(|r| ("--reference", r)));
    for (what, dir) in folders {
        if !dir.is_dir() {
            bail!("{what} {}: no such folder", dir.display());
        }
    }
    let pairing = pair_folders(&args.restored, args.reference.as_deref())?;
    let mut problems: Vec<String> = pairing.problems.iter().map(ToString::to_string).collect();
    // Every image is decoded and checked before any network is loaded or any score computed,
    // so that one run reports every bad pair at once.
    let mut good = Vec::new();
    for pair in &pairing.pairs {
        match load(pair, &checker) {
            Ok(_) => good.push(pair),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() && !args.skip_bad {
        bail!(
            "{} problem(s) with the images of {}; fix them or pass --skip-bad to score the \
             rest:\n  {}",
            problems.len(),
            args.restored.display(),
            problems.join("\n  ")
        );
    }
    for p in &problems {
        eprintln!("skipped: {p}");
    }
    if good.is_empty() {
        bail!("no image to score in {}", args.restored.display());
    }

    let device = args.device.device()?;
    let hub = args.hub.hub()?;
    let scorer = diffbir::scoring::scorer(
        &args.metrics,
        options,
        &hub,
        &mut Progress::default(),
        &device,
    )?;
    let bar = ProgressBar::new(good.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} images {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("scoring");
    // Written with errors returned, not `println!`'s panic, so a closed pipe (`| head`) ends
    // the run with a message.
    let mut stdout = std::io::stdout().lock();
    let mut rows = Vec::with_capacity(good.len() + 1);
    for pair in good {
        let loaded = load(pair, &scorer)?;
        let scores = scorer
            .score(&loaded.restored, loaded.reference.as_ref())
            .with_context(|| pair.name.clone())?;
        let row = Row {
            file: pair.name.clone(),
            scores,
        };
        if args.json {
            bar.suspend(|| writeln!(stdout, "{}", report::json_line(&row)))?;
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mean = report::mean(scorer.metrics(), &rows);
    rows.push(mean);
    if args.json {
        writeln!(
            stdout,
            "{}",
            report::json_line(rows.last().expect("the mean"))
        )?;
    } else {
        write!(stdout, "{}", report::table(scorer.metrics(), &rows))?;
    }
    stdout.flush()?;
    if let Some(path) = &args.csv {
        let mut csv = Vec::new();
        report::write_csv(&mut csv, scorer.metrics(), &rows)?;
        write_file(path, &csv)?;
    }
    if let Some(path) = &args.json_out {
        let lines: String = rows.iter().map(|r| report::json_line(r) + "\n").collect();
        write_file(path, lines.as_bytes())?;
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes a report file through a temporary file renamed into place, so that a failure
/// leaves no partial file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let context = || format!("writing {}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(context)?;
    tmp.write_all(bytes).with_context(context)?;
    tmp.persist(path).with_context(context)?;
    Ok(())
}
