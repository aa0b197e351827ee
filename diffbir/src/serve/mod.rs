//! `diffbir serve`: an HTTP API and a web page over pipelines loaded once per device (see
//! `docs/serve.md`). Jobs wait in a bounded queue and run on worker threads, a few at a time
//! per device; results stay in a private folder until their time to live ends.

mod api;
mod assets;
mod errors;
mod jobs;
mod metrics;
mod options;
mod security;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use diffbir::core::color::ColorFix;
use diffbir::core::device::{DeviceSpec, available_memory};
use diffbir::core::image::ReadOptions;
use diffbir::core::named::Named;
use diffbir::pipeline::Pipeline;
use diffbir::plan::Planner;
use diffbir::sampler::SamplerKind;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::cli::args::{ModelArgs, RestoreOptions};
use api::{App, Limits};
use jobs::Registry;
use metrics::Metrics;
use options::JobOptions;
use security::Access;
use worker::Shared;

/// Options of `diffbir serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs a token; port 0 picks a free port
    /// (the address is printed as `listening on http://ADDR/`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Bearer token every API call must carry (`Authorization: Bearer TOKEN`), at least 16
    /// characters. Prefer DIFFBIR_SERVE_TOKEN or --token-file: the command line is visible
    /// to other users of the machine.
    #[arg(long, env = "DIFFBIR_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the token (its first line).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Allow this origin (e.g. https://app.example.com) to call the API from its pages
    /// (CORS); none by default.
    #[arg(long, value_name = "ORIGIN")]
    cors_origin: Option<String>,
    /// Devices to run on (repeatable: one copy of the models per device).
    #[arg(long = "device", default_value = "cpu", value_parser = DeviceSpec::from_str)]
    devices: Vec<DeviceSpec>,
    /// Jobs that run at once on each device (each needs the memory of one restoration).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs_per_device: u16,
    /// Jobs that may wait; a full queue answers 429 with Retry-After.
    #[arg(long, default_value_t = 8)]
    queue_size: usize,
    /// Largest upload in MiB.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_upload_mb: u64,
    /// Largest result in pixels (width × height).
    #[arg(long, default_value_t = 2048 * 2048)]
    max_output_pixels: u64,
    /// Most samples one job may ask for (`n_samples`).
    #[arg(long, default_value_t = 4)]
    max_samples: usize,
    /// Folder in which the server makes its private results folder (default: the system's
    /// temporary folder). The results folder is removed when the server stops.
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Seconds a finished job and its results are kept.
    #[arg(long, default_value_t = 3600)]
    result_ttl: u64,
    /// Memory budget of one job (8GiB, 500MiB): stages that would not fit untiled are tiled,
    /// and an image no tiling fits is refused with 413. Default: the memory the smallest
    /// device has when the server starts (available RAM on cpu, the adapter's memory on
    /// vulkan and cuda), divided among --jobs-per-device; on wgpu, whose runtime reports no
    /// memory size, jobs are planned only with this option. A job's own *_tiled options are
    /// kept; the networks stay resident (loaded once for every job).
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::restore::parse_size)]
    max_memory: Option<u64>,
    #[command(flatten)]
    model: ModelArgs,
    /// Job defaults: the options of `diffbir restore`; a job's `options` JSON overrides them.
    #[command(flatten)]
    options: RestoreOptions,
}

impl ServeArgs {
    fn token(&self) -> Result<Option<String>> {
        match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token from {}", path.display()))?;
                let token = text.lines().next().unwrap_or_default().trim().to_owned();
                Ok(Some(token))
            }
            None => Ok(self.token.clone()),
        }
    }
}

/// Runs `diffbir serve` until Ctrl-C or SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let token = args.token()?;
    // Checked before anything loads; the `Host` allow-list needs the bound port, later.
    Access::new(args.bind, token.as_deref()).map_err(anyhow::Error::msg)?;
    if args.queue_size == 0 {
        bail!("--queue-size 0 would refuse every job");
    }
    let base = args.model.base_config()?;
    // The defaults must make a valid job on their own.
    let defaults = args
        .options
        .config(&base)
        .context("the job defaults given on the command line")?;
    let options = JobOptions::new(&args.options)?;
    let max_upload = usize::try_from(args.max_upload_mb << 20)?;
    let limits = Limits {
        max_upload,
        max_output_pixels: args.max_output_pixels,
        max_samples: args.max_samples,
    };

    let mut devices = Vec::new();
    for spec in &args.devices {
        devices.push((spec, spec.device()?));
    }
    // Taken before the models load: the smallest memory of the devices, shared by the jobs
    // that run side by side on each.
    let budget = args.max_memory.or_else(|| {
        let memory: Option<Vec<u64>> = devices.iter().map(|(_, d)| available_memory(d)).collect();
        let smallest = memory?.into_iter().min()?;
        Some(smallest / u64::from(args.jobs_per_device))
    });
    let loading = Instant::now();
    let files = args.model.weight_files(&base)?;
    let mut pipelines = Vec::new();
    for (spec, device) in devices {
        let pipeline = Pipeline::load(base.clone(), &files, &device)
            .with_context(|| format!("loading the models on {spec}"))?;
        pipelines.push((spec.to_string(), pipeline));
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    // Planned for the first device (they all run the same models); the budget was taken
    // before the models were loaded.
    let planner = budget
        .zip(pipelines.first())
        .map(|(budget, (_, pipeline))| Planner::new(budget, pipeline.device()));

    let mut folder = tempfile::Builder::new();
    folder.prefix("diffbir-serve-");
    // Readable by the server's user alone.
    #[cfg(unix)]
    folder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let results = match &args.results_dir {
        Some(dir) => folder.tempdir_in(dir),
        None => folder.tempdir(),
    }
    .context("creating the results folder")?;
    let shared = Arc::new(Shared {
        registry: Registry::new(args.queue_size),
        metrics: Metrics::new(load_seconds),
        running: AtomicUsize::new(0),
        results: results.path().to_path_buf(),
        limits: ReadOptions {
            // Decoding may take a few times the largest result, never gigabytes.
            max_alloc: (args.max_output_pixels * 8).max(256 << 20),
            ..ReadOptions::default()
        },
    });
    let slots = usize::from(args.jobs_per_device);
    let mut workers = Vec::new();
    for (name, pipeline) in &pipelines {
        workers.extend(worker::spawn(&shared, pipeline, slots, name)?);
    }
    let models = json!({
        "task": base.task.name(),
        "version": base.version.name(),
        "precision": base.precision.name(),
        "devices": pipelines.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "jobs_per_device": slots,
        "defaults": resolved_defaults(&options, &defaults),
        "samplers": SamplerKind::values().iter().map(|k| k.name()).collect::<Vec<_>>(),
        "color_fixes": ColorFix::values().iter().map(|k| k.name()).collect::<Vec<_>>(),
        "limits": {
            "max_upload_bytes": max_upload,
            "max_output_pixels": args.max_output_pixels,
            "max_samples": args.max_samples,
            "queue_size": args.queue_size,
        },
        "token_required": token.is_some(),
    });
    drop(pipelines);

    let (stop, stopping) = watch::channel(false);
    let app = Arc::new(App {
        shared: Arc::clone(&shared),
        options,
        base,
        limits,
        slots: slots * args.devices.len(),
        models,
        shutdown: stopping,
        decoding: Semaphore::new(2),
        planner,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ttl = Duration::from_secs(args.result_ttl);
    let served: Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("listening on {}", args.bind))?;
        let addr = listener.local_addr()?;
        let access = Access::new(addr, token.as_deref()).map_err(anyhow::Error::msg)?;
        let router =
            api::router(app, access, args.cors_origin.as_deref()).map_err(anyhow::Error::msg)?;
        println!("listening on http://{addr}/");
        let sweeper = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    shared.registry.expire(ttl);
                }
            })
        };
        let shutdown = {
            let shared = Arc::clone(&shared);
            async move {
                stop_signal().await;
                eprintln!("stopping: cancelling the jobs");
                // Streams end, waiting jobs are cancelled and running ones stop at their
                // next step.
                let _ = stop.send(true);
                shared.registry.close();
            }
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        sweeper.abort();
        Ok(())
    });
    // The workers see the closed registry; a running job stops at its next sampler step.
    shared.registry.close();
    for worker in workers {
        // A worker that panicked outside a job has nothing left to clean up.
        let _ = worker.join();
    }
    drop(runtime);
    results.close().context("removing the results folder")?;
    served.map(|()| ExitCode::SUCCESS)
}

/// The job defaults with the release's values where the command line left them out (`null`
/// in the options), as the page shows them.
fn resolved_defaults(
    options: &JobOptions,
    config: &diffbir::PipelineConfig,
) -> serde_json::Map<String, serde_json::Value> {
    let stage2 = &config.stage2;
    let release = [
        ("upscale", json!(config.upscale)),
        ("sampler", json!(stage2.sampler.kind().name())),
        ("steps", json!(stage2.sampler.steps())),
        ("cfg_scale", json!(stage2.cfg_scale)),
        ("pos_prompt", json!(stage2.pos_prompt)),
        ("neg_prompt", json!(stage2.neg_prompt)),
    ];
    let mut defaults = options.defaults().clone();
    for (key, value) in release {
        if defaults.get(key).is_none_or(serde_json::Value::is_null) {
            defaults.insert(key.to_owned(), value);
        }
    }
    defaults
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
