//! The routes: jobs (submit, state, events, results, cancel), the models, health, metrics
//! and the page. Every answer that is not a success is a JSON [`ApiError`].

use std::convert::Infallible;
use std::path::{Path as FilePath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use diffbir::core::image::{ReadOptions, decode_image};
use diffbir::pipeline::PipelineConfig;
use diffbir::plan::{Fixed, Planner};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::assets;
use super::errors::{ApiError, rejection};
use super::jobs::{Job, JobId, Refused, Snapshot, State as JobState, lock};
use super::metrics::Gauges;
use super::options::JobOptions;
use super::security::{self, Access};
use super::worker::Shared;

/// The limits on what a job may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest upload in bytes.
    pub max_upload: usize,
    /// Largest output (width × height).
    pub max_output_pixels: u64,
    /// Most samples per job.
    pub max_samples: usize,
}

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    pub shared: Arc<Shared>,
    pub options: JobOptions,
    /// The loaded networks' settings, which jobs start from.
    pub base: PipelineConfig,
    pub limits: Limits,
    /// Jobs that run at once (all devices).
    pub slots: usize,
    /// `GET /v1/models`.
    pub models: Value,
    /// Flips to true when the server stops.
    pub shutdown: watch::Receiver<bool>,
    /// Uploads decoded at once while submitting (decoding is CPU work).
    pub decoding: Semaphore,
    /// Tiles each job to fit a memory budget (`--max-memory`; on the CPU by default).
    pub planner: Option<Planner>,
}

/// The router of a server.
pub fn router(app: Arc<App>, access: Access, cors_origin: Option<&str>) -> Result<Router, String> {
    let upload_limit = app.limits.max_upload + (64 << 10);
    let mut router = Router::new()
        .route(
            "/v1/jobs",
            post(submit).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/jobs/{id}", get(job_state).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/result", get(result))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { assets::page("index.html") }))
        .route("/app.js", get(|| async { assets::page("app.js") }))
        .route("/app.css", get(|| async { assets::page("app.css") }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .with_state(app)
        .layer(security::csrf(cors_origin)?)
        .layer(middleware::from_fn_with_state(access, security::guard));
    if let Some(origin) = cors_origin {
        router = router.layer(security::cors(origin)?);
    }
    Ok(router)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The job named by the path, or 404 (before any lookup when the id is malformed).
fn find(app: &App, path: Result<Path<String>, PathRejection>) -> Result<Arc<Job>, ApiError> {
    let Path(id) = path.map_err(|e| rejection(e.status(), e.body_text()))?;
    JobId::parse(&id)
        .and_then(|id| app.shared.registry.get(id))
        .ok_or_else(|| ApiError::not_found("no such job (it may have expired)"))
}

/// `POST /v1/jobs`.
async fn submit(
    State(app): State<Arc<App>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let result = accept(&app, multipart).await;
    if let Err(error) = &result {
        app.shared.metrics.rejected(error.code);
    }
    result
}

async fn accept(
    app: &Arc<App>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    if *app.shutdown.borrow() {
        return Err(shutting_down());
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            format!(
                "{}: send multipart/form-data with an `image` part",
                e.body_text()
            ),
        )
    })?;
    let mut image: Option<(Vec<u8>, String)> = None;
    let mut options: Option<serde_json::Map<String, Value>> = None;
    let part_error =
        |e: axum::extract::multipart::MultipartError| rejection(e.status(), e.body_text());
    while let Some(field) = multipart.next_field().await.map_err(part_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" if image.is_none() => {
                let file_name = field.file_name().unwrap_or("upload").to_owned();
                let bytes = field.bytes().await.map_err(part_error)?;
                if bytes.len() > app.limits.max_upload {
                    return Err(upload_too_large(app.limits.max_upload));
                }
                image = Some((bytes.to_vec(), file_name));
            }
            "options" if options.is_none() => {
                let bytes = field.bytes().await.map_err(part_error)?;
                if bytes.len() > 64 << 10 {
                    return Err(ApiError::bad_request(
                        "bad_options",
                        "the options part is over 64 KiB",
                    )
                    .with_field("options"));
                }
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(map)) => options = Some(map),
                    Ok(_) => {
                        return Err(ApiError::bad_request(
                            "bad_options",
                            "the options part must be a JSON object",
                        )
                        .with_field("options"));
                    }
                    Err(e) => {
                        return Err(ApiError::bad_request(
                            "bad_options",
                            format!("the options part is not JSON: {e}"),
                        )
                        .with_field("options"));
                    }
                }
            }
            "image" | "options" => {
                return Err(ApiError::bad_request(
                    "duplicate_part",
                    format!("the `{name}` part is given twice"),
                )
                .with_field(&name));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "unknown_part",
                    format!("unknown part `{name}`: send `image` and optionally `options`"),
                )
                .with_field(&name));
            }
        }
    }
    let Some((bytes, file_name)) = image else {
        return Err(ApiError::bad_request(
            "missing_image",
            "no `image` part: send the photo as the multipart part `image`",
        )
        .with_field("image"));
    };
    let restore = app.options.parse(&options.unwrap_or_default())?;
    if restore.n_samples > app.limits.max_samples {
        return Err(ApiError::bad_option(
            "n_samples",
            format!("at most {} samples per job", app.limits.max_samples),
        ));
    }
    let config = restore
        .config(&app.base)
        .map_err(|e| ApiError::bad_request("bad_option", format!("{e:#}")))?;

    // Decode now, so that a bad image is refused at once; the worker decodes again.
    let permit = app.decoding.acquire().await.map_err(|_| shutting_down())?;
    let limits = app.shared.limits;
    let (size, upload) = tokio::task::spawn_blocking(move || {
        let size = check_image(&bytes, &file_name, &limits);
        (size, (bytes, file_name))
    })
    .await
    .map_err(|_| ApiError::internal("decoding the upload failed"))?;
    drop(permit);
    let (width, height) = size?;
    let (out_w, out_h) = config
        .output_size(width, height)
        .map_err(|e| ApiError::bad_request("bad_option", e.to_string()))?;
    if u64::from(out_w) * u64::from(out_h) > app.limits.max_output_pixels {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
            format!(
                "the result would be {out_w}×{out_h} pixels, over this server's limit of {} \
                 pixels: send a smaller image or ask for a smaller upscale",
                app.limits.max_output_pixels
            ),
        )
        .with_field("image"));
    }
    let config = match &app.planner {
        Some(planner) => planner
            .clone()
            // The networks are loaded once, resident.
            .with_fixed(Fixed {
                residency: true,
                ..restore.fixed_tiling()
            })
            .plan(&config, width, height)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "out_of_memory",
                    e.to_string(),
                )
                .with_field("image")
            })?
            .into_config(),
        None => config,
    };
    enqueue(app, config, restore.seed, upload)
}

/// Decodes `bytes` as the worker will; returns the size or the error to answer.
fn check_image(bytes: &[u8], name: &str, limits: &ReadOptions) -> Result<(u32, u32), ApiError> {
    decode_image(bytes, FilePath::new(name), limits)
        .map(|image| (image.width(), image.height()))
        .map_err(|e| match e {
            // Over the decoding limits (the size is not known then).
            diffbir::core::Error::ImageSize {
                width: 0,
                height: 0,
                ..
            } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "image_too_large",
                e.to_string(),
            )
            .with_field("image"),
            diffbir::core::Error::ImageSize { .. } => {
                ApiError::bad_request("image_too_small", e.to_string()).with_field("image")
            }
            _ => ApiError::bad_request("undecodable_image", e.to_string()).with_field("image"),
        })
}

fn enqueue(
    app: &App,
    config: PipelineConfig,
    seed: u64,
    (bytes, name): (Vec<u8>, String),
) -> Result<Response, ApiError> {
    let id = JobId::random().map_err(|e| ApiError::internal(format!("no random id: {e}")))?;
    let job = Arc::new(Job::new(id, config, seed, bytes, name));
    match app.shared.registry.submit(job) {
        Ok(position) => {
            app.shared.metrics.submitted();
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, format!("/v1/jobs/{id}"))],
                Json(json!({"id": id.to_string(), "state": "queued", "position": position})),
            )
                .into_response())
        }
        Err(Refused::Full) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!(
                "the queue holds {} jobs already; try again later",
                app.shared.registry.capacity()
            ),
        )
        .with_retry_after(retry_after(app))),
        Err(Refused::ShuttingDown) => Err(shutting_down()),
    }
}

/// Seconds until a slot is likely free: the waiting and running jobs times the mean job
/// time over the slots (30 s before any job finished), within 1 s and 1 h.
fn retry_after(app: &App) -> u64 {
    let busy = app.shared.registry.queued() + app.shared.running.load(Ordering::Relaxed);
    match app.shared.metrics.mean_job_seconds() {
        Some(mean) => ((busy as f64 * mean / app.slots.max(1) as f64).ceil() as u64).clamp(1, 3600),
        None => 30,
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is stopping",
    )
    .with_retry_after(30)
}

fn upload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!(
            "the upload is over this server's limit of {} MiB",
            limit >> 20
        ),
    )
    .with_field("image")
}

/// `GET /v1/jobs/{id}`.
async fn job_state(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Snapshot>, ApiError> {
    let job = find(&app, path)?;
    let snapshot = job.snapshot.borrow().clone();
    Ok(Json(snapshot))
}

/// The event name of a snapshot.
fn event_name(snapshot: &Snapshot) -> &'static str {
    match snapshot.state {
        JobState::Running if snapshot.progress.step > 0 => "progress",
        JobState::Queued | JobState::Running => "state",
        final_state => final_state.name(),
    }
}

/// `GET /v1/jobs/{id}/events`: the current snapshot, then every change, until a final state
/// (or the server stops).
async fn events(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let job = find(&app, path)?;
    let receiver = job.snapshot.subscribe();
    let stream = futures_util::stream::unfold(
        (receiver, true, false, 0u64),
        |(mut receiver, first, ended, sequence)| async move {
            if ended || (!first && receiver.changed().await.is_err()) {
                return None;
            }
            let snapshot = receiver.borrow_and_update().clone();
            let event = Event::default()
                .event(event_name(&snapshot))
                .id(sequence.to_string())
                .retry(Duration::from_secs(2))
                .json_data(&snapshot)
                .unwrap_or_else(|_| Event::default().comment("unserialisable"));
            let ended = snapshot.state.is_final();
            Some((
                Ok::<_, Infallible>(event),
                (receiver, false, ended, sequence + 1),
            ))
        },
    );
    let mut shutdown = app.shutdown.clone();
    let stream = stream.take_until(async move {
        // A closed sender means the server is stopping too.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ResultQuery {
    /// `1` for the stage-1 image.
    stage: Option<u8>,
    /// Which sample (0 by default).
    sample: Option<usize>,
}

/// `GET /v1/jobs/{id}/result`.
async fn result(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ResultQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let job = find(&app, path)?;
    let Query(query) = query.map_err(|e| rejection(e.status(), e.body_text()))?;
    let snapshot = job.snapshot.borrow().clone();
    match snapshot.state {
        JobState::Done => {}
        JobState::Queued | JobState::Running => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!("the job is {}; wait for `done`", snapshot.state.name()),
            ));
        }
        other => {
            let reason = snapshot
                .error
                .map_or_else(String::new, |e| format!(": {}", e.message));
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_result",
                format!("the job {}{reason}", other.name()),
            ));
        }
    }
    let path: Option<PathBuf> = {
        let files = lock(&job.files);
        match query.stage {
            Some(1) => files.stage1.clone(),
            Some(other) => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("stage={other}: only stage=1 (the stage-1 image) is kept"),
                ));
            }
            None => files.samples.get(query.sample.unwrap_or(0)).cloned(),
        }
    };
    let path = path.ok_or_else(|| ApiError::not_found("the job has no such result"))?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("the result has expired"))?;
    let id = job.id.to_string();
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"restored-{}.png\"", &id[..8]),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `DELETE /v1/jobs/{id}`: a waiting job is cancelled at once, a running one at its next
/// sampler step; a finished one is forgotten with its files.
async fn cancel(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let job = find(&app, path)?;
    let registry = &app.shared.registry;
    if registry.unqueue(job.id) {
        job.cancel.store(true, Ordering::Relaxed);
        if job.finish(JobState::Cancelled, None, Vec::new()) {
            app.shared
                .metrics
                .finished(JobState::Cancelled.name(), None);
        }
        return Ok((StatusCode::OK, Json(json!({"state": "cancelled"}))).into_response());
    }
    if job.state().is_final() {
        registry.remove(job.id);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    job.cancel.store(true, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(json!({"state": "cancelling"}))).into_response())
}

/// `GET /v1/models`.
async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.models.clone())
}

/// `GET /metrics`.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let shared = &app.shared;
    let text = shared.metrics.render(Gauges {
        queued: shared.registry.queued(),
        capacity: shared.registry.capacity(),
        running: shared.running.load(Ordering::Relaxed),
        slots: app.slots,
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
