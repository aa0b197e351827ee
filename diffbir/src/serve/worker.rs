//! The workers: threads that take jobs from the queue and restore them with a pipeline
//! loaded once per device, report their progress, stop when cancelled and write the results.
//! A job that fails or panics fails alone; the worker goes on with the next.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::tensor::Tensor;
use diffbir::core::image::{ReadOptions, SaveOptions, decode_image, save_image, tensor_to_image};
use diffbir::pipeline::Pipeline;
use diffbir::{Error, Event, Fault, Observer, Part};

use super::jobs::{Job, JobError, Registry, State, lock, unix_now};
use super::metrics::Metrics;

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    pub registry: Registry,
    pub metrics: Metrics,
    /// Jobs running now.
    pub running: AtomicUsize,
    /// Where results are written (a private folder of the server).
    pub results: PathBuf,
    /// Decoding limits of uploads.
    pub limits: ReadOptions,
}

/// Takes jobs until the registry closes.
pub fn work(shared: &Shared, pipeline: &Pipeline) {
    while let Some(job) = shared.registry.next() {
        if job.cancelled() {
            finish(shared, &job, State::Cancelled, None, None);
            continue;
        }
        shared.metrics.waited(job.submitted.elapsed().as_secs_f64());
        shared.running.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        job.snapshot.send_modify(|s| {
            s.state = State::Running;
            s.position = None;
            s.started = Some(unix_now());
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| run(shared, pipeline, &job)))
            .unwrap_or_else(|_| {
                Err(JobError {
                    code: "internal",
                    message: "the restoration stopped on an internal error; the server's log \
                              has the details"
                        .into(),
                })
            });
        let seconds = Some(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => finish(shared, &job, State::Done, None, seconds),
            Err(_) if job.cancelled() => finish(shared, &job, State::Cancelled, None, seconds),
            Err(error) => finish(shared, &job, State::Failed, Some(error), seconds),
        }
        shared.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Moves `job` to its final state and counts it (`seconds`: how long it ran, if it did).
fn finish(shared: &Shared, job: &Job, state: State, error: Option<JobError>, seconds: Option<f64>) {
    let results = if state == State::Done {
        (0..lock(&job.files).samples.len())
            .map(|i| format!("/v1/jobs/{}/result?sample={i}", job.id))
            .collect()
    } else {
        job.remove_files();
        Vec::new()
    };
    if job.finish(state, error, results) {
        shared.metrics.finished(state.name(), seconds);
    }
}

/// Restores `job` and writes its files.
fn run(shared: &Shared, pipeline: &Pipeline, job: &Job) -> Result<(), JobError> {
    let upload = lock(&job.upload).take().ok_or_else(|| JobError {
        code: "internal",
        message: "the upload is gone".into(),
    })?;
    let image = decode_image(&upload, Path::new(&job.upload_name), &shared.limits)
        .map_err(|e| job_error(&Error::Core(e)))?;
    drop(upload);
    let pipeline = pipeline
        .with_config(job.config.clone())
        .map_err(|e| job_error(&e))?
        .with_seed(job.seed);
    let mut observer = JobObserver {
        job,
        metrics: &shared.metrics,
        stage1: None,
        last_step: Instant::now(),
        parts: 1,
        part: 0,
    };
    let samples = pipeline
        .restore_image_observed(&image, &mut observer)
        .map_err(|e| job_error(&e))?;
    let stem = shared.results.join(job.id.to_string());
    let write = |path: PathBuf, image| {
        save_image(&path, image)
            .map(|()| path)
            .map_err(|e| job_error(&Error::Core(e)))
    };
    let mut files = Vec::with_capacity(samples.len());
    for (i, sample) in samples.iter().enumerate() {
        // Registered one by one, so a failure part way leaves nothing behind.
        let path = write(stem.with_extension(format!("{i}.png")), sample)?;
        files.push(path);
        lock(&job.files).samples.clone_from(&files);
    }
    if let Some(stage1) = observer.stage1 {
        let [_, c, h, w] = stage1.dims();
        let image = tensor_to_image(stage1.reshape([c, h, w]), None, &SaveOptions::default());
        let path = write(stem.with_extension("stage1.png"), &image)?;
        lock(&job.files).stage1 = Some(path);
    }
    Ok(())
}

/// A library error as a job's error: the caller's fault (a setting the image cannot be
/// restored with) or the server's.
fn job_error(error: &Error) -> JobError {
    let code = match error.fault() {
        Fault::Caller => "bad_request",
        _ => "internal",
    };
    JobError {
        code,
        message: error.to_string(),
    }
}

/// Progress and cancellation of one job.
struct JobObserver<'a> {
    job: &'a Job,
    metrics: &'a Metrics,
    /// The latest stage-1 result (`unaligned_face`: the background's, which comes last).
    stage1: Option<Tensor<4>>,
    last_step: Instant,
    /// Parts of the restoration (faces and the background) and the current one.
    parts: usize,
    part: usize,
}

impl Observer for JobObserver<'_> {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        if self.job.cancelled() {
            return ControlFlow::Break(());
        }
        match event {
            Event::Stage1 { condition } => {
                // Kept as a tensor (a cheap clone): only the last becomes an image.
                self.stage1 = Some((*condition).clone());
                self.last_step = Instant::now();
            }
            Event::Step { step, .. } => {
                self.metrics.step(self.last_step.elapsed().as_secs_f64());
                self.last_step = Instant::now();
                let (parts, part) = (self.parts, self.part);
                self.job.snapshot.send_modify(|s| {
                    s.progress.step = step.index + 1;
                    s.progress.total = step.total;
                    let within = (step.index + 1) as f64 / step.total.max(1) as f64;
                    s.progress.fraction = (part as f64 + within) / parts as f64;
                });
            }
            Event::Faces { found } => {
                self.parts = found + 1;
                let parts = self.parts;
                self.job
                    .snapshot
                    .send_modify(|s| s.progress.parts = Some(parts));
            }
            Event::Part(part) => {
                self.part = match part {
                    Part::Face(k) => *k,
                    Part::Background => self.parts - 1,
                };
                let part = self.part + 1;
                self.job.snapshot.send_modify(|s| {
                    s.progress.part = Some(part);
                    s.progress.step = 0;
                });
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Starts `slots` worker threads over `pipeline`.
pub fn spawn(
    shared: &Arc<Shared>,
    pipeline: &Pipeline,
    slots: usize,
    name: &str,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..slots)
        .map(|i| {
            let shared = Arc::clone(shared);
            let pipeline = pipeline.clone();
            std::thread::Builder::new()
                .name(format!("worker {name} {i}"))
                .spawn(move || work(&shared, &pipeline))
        })
        .collect()
}
