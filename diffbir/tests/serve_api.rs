//! `diffbir serve` end to end on 127.0.0.1: tiny random-weight models under the official file
//! names, a real photo, every route, the error answers, cancellation, the bounded queue,
//! tokens, expiry and shutdown. Every wait is bounded.

#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/server.rs"]
mod server;
#[path = "common/tiny.rs"]
mod tiny;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diffbir::pipeline::Task;
use server::{Server, png};

const MINUTE: Duration = Duration::from_secs(60);

/// Tiny SR weights under the official names and the JSON of their shapes.
fn tiny_server_args(dir: &Path, more: &[&str]) -> Vec<String> {
    let models = tiny::tiny_models_file(dir);
    let weights = tiny::weights_dir(Task::Sr, dir);
    let mut args = tiny::tiny_model_args(&weights, &models);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args
}

/// The shared folder's 120×80 photo as PNG.
fn photo() -> Vec<u8> {
    png(&image::open(tiny::shared().join("images/demo/bsr/49.jpg")).unwrap())
}

fn assert_no_panic(server: &Server) {
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_job_runs_from_upload_to_result_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_server_args(dir.path(), &[]));

    assert_eq!(server.get("/healthz").json()["status"], "ok");
    let models = server.get("/v1/models").json();
    assert_eq!(models["task"], "sr");
    assert_eq!(models["version"], "v2.1");
    assert_eq!(models["defaults"]["steps"], 1);
    assert_eq!(models["defaults"]["sampler"], "edm_euler");
    assert!(models["samplers"].as_array().unwrap().len() > 5);
    assert_eq!(models["token_required"], false);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"));
    assert!(page.header("content-security-policy").is_some());
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    for asset in ["/app.js", "/app.css"] {
        assert_eq!(server.get(asset).status, 200, "{asset}");
    }

    let id = server.submit(&photo(), r#"{"upscale": 2, "seed": 5, "steps": 3}"#);
    assert_eq!(id.len(), 32);
    let events = server.events(&format!("/v1/jobs/{id}/events"));
    let (last, data) = events.last().expect("events");
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(data["progress"]["fraction"], 1.0);
    assert_eq!(data["seed"], 5);
    assert!(
        events
            .iter()
            .any(|(name, d)| name == "progress" && d["progress"]["total"] == 3),
        "{events:?}"
    );
    // A late subscriber gets the final state at once.
    let late = server.events(&format!("/v1/jobs/{id}/events"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0, "done");

    let state = server.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(state["state"], "done");
    let results = state["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let result = server.get(results[0].as_str().unwrap());
    assert_eq!(result.status, 200);
    assert_eq!(result.header("content-type"), Some("image/png"));
    assert_eq!(result.header("cache-control"), Some("no-store"));
    let restored = image::load_from_memory(&result.body).unwrap();
    assert_eq!((restored.width(), restored.height()), (240, 160));
    let stage1 = server.get(&format!("/v1/jobs/{id}/result?stage=1"));
    assert_eq!(stage1.status, 200);
    let stage1 = image::load_from_memory(&stage1.body).unwrap();
    // The condition at the reference's working size (short side 512).
    assert_eq!(stage1.height().min(stage1.width()), 512);
    server
        .get(&format!("/v1/jobs/{id}/result?stage=2"))
        .error(400, "bad_query");

    // Forgetting a finished job removes it.
    assert_eq!(server.delete(&format!("/v1/jobs/{id}")).status, 204);
    server
        .get(&format!("/v1/jobs/{id}"))
        .error(404, "not_found");

    let metrics = server.get("/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    assert!(
        text.contains("diffbir_jobs_finished_total{state=\"done\"} 1"),
        "{text}"
    );
    assert!(text.contains("diffbir_step_seconds_count 3"), "{text}");
    assert_no_panic(&server);
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_server_args(
        dir.path(),
        &["--max-upload-mb", "1", "--max-output-pixels", "300000"],
    ));
    let photo = photo();
    let jobs = "/v1/jobs";
    let post = |parts: &[(&str, Option<&str>, &[u8])]| server.post_parts(jobs, parts, &[]);
    let image = ("image", Some("a.png"), photo.as_slice());
    let options = |json: &'static str| ("options", None, json.as_bytes());

    server
        .post_raw(jobs, "application/json", b"{}", &[])
        .error(415, "not_multipart");
    post(&[]).error(400, "missing_image");
    post(&[options("{}")]).error(400, "missing_image");
    let e = post(&[image, image]).error(400, "duplicate_part");
    assert_eq!(e["field"], "image");
    let e = post(&[image, ("mask", None, b"x")]).error(400, "unknown_part");
    assert_eq!(e["field"], "mask");
    post(&[image, options("[1]")]).error(400, "bad_options");
    post(&[image, options("{nope")]).error(400, "bad_options");
    for (json, field) in [
        (r#"{"stepz": 2}"#, "stepz"),
        (r#"{"steps": "many"}"#, "steps"),
        (r#"{"sampler": "fastest"}"#, "sampler"),
        (r#"{"task": "face"}"#, "task"),
        (r#"{"n_samples": 5}"#, "n_samples"),
    ] {
        let e = post(&[image, options(json)]).error(400, "bad_option");
        assert_eq!(e["field"], field, "{json}: {e}");
    }
    // Validated as `restore` validates: no field, the library's message.
    let e = post(&[image, options(r#"{"upscale": 0}"#)]).error(400, "bad_option");
    assert!(e["message"].as_str().unwrap().contains("upscale"), "{e}");

    post(&[("image", Some("a.png"), b"not an image")]).error(400, "undecodable_image");
    post(&[("image", Some("a.png"), b"")]).error(400, "undecodable_image");
    let tiny_image = png(&image::DynamicImage::new_rgb8(4, 4));
    post(&[("image", Some("a.png"), &tiny_image)]).error(400, "image_too_small");
    // 120×80 × 8 = 960×640 pixels, over the 300 000 allowed.
    post(&[image, options(r#"{"upscale": 8}"#)]).error(413, "image_too_large");
    // Over the limit by a little (refused after reading) and by more than the slack of the
    // body limit (refused while reading; small enough for the socket buffers, so that
    // this client reads the answer rather than a reset).
    for size in [(1 << 20) + 1, (1 << 20) + (200 << 10)] {
        let big = vec![7u8; size];
        post(&[("image", Some("a.png"), &big)]).error(413, "upload_too_large");
    }

    // Routes, methods and ids.
    server.get("/nowhere").error(404, "not_found");
    for id in [
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "..%2F..%2Fetc%2Fpasswd",
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcdef",
    ] {
        server
            .get(&format!("/v1/jobs/{id}"))
            .error(404, "not_found");
        server
            .get(&format!("/v1/jobs/{id}/result"))
            .error(404, "not_found");
    }
    server
        .post_raw("/healthz", "text/plain", b"", &[])
        .error(405, "method_not_allowed");

    // Cross-site requests and foreign hosts are refused; no CORS without --cors-origin.
    let (content_type, body) = server::multipart(&[image]);
    server
        .post_raw(
            jobs,
            &content_type,
            &body,
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .error(403, "cross_site");
    server
        .post_raw(
            jobs,
            &content_type,
            &body,
            &[("Origin", "http://evil.example")],
        )
        .error(403, "cross_site");
    server
        .get_with("/v1/models", &[("Host", "evil.example:80")])
        .error(403, "bad_host");
    let models = server.get_with("/v1/models", &[("Origin", "http://evil.example")]);
    assert_eq!(models.status, 200);
    assert_eq!(models.header("access-control-allow-origin"), None);

    // Still serving after all of that.
    let id = server.submit(&photo, "{}");
    assert_eq!(server.wait_final(&id, MINUTE)["state"], "done");
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("diffbir_jobs_rejected_total{reason=\"bad_option\"} 6"),
        "{metrics}"
    );
    assert_no_panic(&server);
}

#[test]
fn jobs_are_cancelled_waiting_or_running_and_a_full_queue_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_server_args(dir.path(), &["--queue-size", "2"]));
    let photo = photo();
    // Long enough to be caught running.
    let long = r#"{"steps": 1000}"#;
    let running = server.submit(&photo, long);
    server.wait_for(&running, MINUTE, |s| {
        s["progress"]["step"].as_u64() >= Some(1)
    });
    let waiting = server.submit(&photo, long);
    let last = server.submit(&photo, "{}");
    let state = server.get(&format!("/v1/jobs/{last}")).json();
    assert_eq!(
        (state["state"].as_str(), state["position"].as_u64()),
        (Some("queued"), Some(1))
    );
    let full = server.post_parts("/v1/jobs", &[("image", Some("a.png"), &photo)], &[]);
    full.error(429, "queue_full");
    let retry: u64 = full.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
    server
        .get(&format!("/v1/jobs/{last}/result"))
        .error(409, "not_ready");

    // A waiting job is cancelled at once; the one behind it moves up.
    let reply = server.delete(&format!("/v1/jobs/{waiting}"));
    assert_eq!(
        (reply.status, reply.json()["state"].as_str()),
        (200, Some("cancelled"))
    );
    let state = server.get(&format!("/v1/jobs/{last}")).json();
    assert_eq!(state["position"], 0);
    // A running one at its next step.
    let reply = server.delete(&format!("/v1/jobs/{running}"));
    assert_eq!(
        (reply.status, reply.json()["state"].as_str()),
        (202, Some("cancelling"))
    );
    let state = server.wait_final(&running, Duration::from_secs(20));
    assert_eq!(state["state"], "cancelled");
    assert!(state["progress"]["step"].as_u64().unwrap() < 1000);
    server
        .get(&format!("/v1/jobs/{running}/result"))
        .error(409, "no_result");
    // The next job runs.
    assert_eq!(server.wait_final(&last, MINUTE)["state"], "done");
    assert_eq!(
        server.get(&format!("/v1/jobs/{waiting}")).json()["state"],
        "cancelled"
    );
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("diffbir_jobs_finished_total{state=\"cancelled\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("diffbir_jobs_rejected_total{reason=\"queue_full\"} 1"),
        "{metrics}"
    );
    assert_no_panic(&server);
}

#[test]
fn a_token_guards_the_api_results_expire_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef-test-token";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let results: PathBuf = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let server = Server::start(&tiny_server_args(
        dir.path(),
        &[
            "--token-file",
            &token_file.display().to_string(),
            "--result-ttl",
            "2",
            "--results-dir",
            &results.display().to_string(),
        ],
    ));
    let auth = format!("Bearer {token}");
    let with_token = [("Authorization", auth.as_str())];
    for path in [
        "/v1/models",
        "/metrics",
        "/v1/jobs/0123456789abcdef0123456789abcdef",
    ] {
        let reply = server.get(path);
        reply.error(401, "unauthorized");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        server
            .get_with(
                path,
                &[("Authorization", "Bearer wrong-token-of-some-length")],
            )
            .error(401, "unauthorized");
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
    assert_eq!(
        server.get_with("/v1/models", &with_token).json()["token_required"],
        true
    );

    let photo = photo();
    let submitted = server.post_parts("/v1/jobs", &[("image", Some("a.png"), &photo)], &with_token);
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    let id = submitted.json()["id"].as_str().unwrap().to_owned();
    let state_path = format!("/v1/jobs/{id}");
    let done = || {
        let state = server.get_with(&state_path, &with_token).json();
        state["state"] == "done"
    };
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < MINUTE, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let files = || {
        std::fs::read_dir(&results)
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .count()
    };
    assert_eq!(files(), 2, "the result and the stage-1 image");
    #[cfg(unix)]
    for folder in std::fs::read_dir(&results).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = folder.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the results folder is private");
    }
    // Gone after the time to live, files included.
    let start = std::time::Instant::now();
    while server.get_with(&state_path, &with_token).status != 404 {
        assert!(start.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files(), 0);

    // SIGTERM with a job running and its event stream open: the stream ends, the job is
    // cancelled, the process exits and the results folder is removed.
    let long = server.post_parts(
        "/v1/jobs",
        &[
            ("image", Some("a.png"), &photo),
            ("options", None, br#"{"steps": 1000}"#),
        ],
        &with_token,
    );
    let id = long.json()["id"].as_str().unwrap().to_owned();
    let start = std::time::Instant::now();
    while server
        .get_with(&format!("/v1/jobs/{id}"), &with_token)
        .json()["progress"]["step"]
        .as_u64()
        < Some(1)
    {
        assert!(start.elapsed() < MINUTE, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, took) = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(std::fs::read_dir(&results).unwrap().count(), 0);
}

#[test]
fn listening_beyond_loopback_needs_a_token() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args(["serve", "--bind", "0.0.0.0:0", "--offline"])
        .env_remove("DIFFBIR_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffbir"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--token",
            "short",
            "--offline",
        ])
        .env_remove("DIFFBIR_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}

/// `requests` jobs from `clients` threads against a queue of 2: each client sends images of
/// its own sizes, retries refused submissions after a pause, and checks that every accepted
/// job ends done with a result of its own image's size. Returns the figures.
fn load(requests: usize, clients: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_server_args(
        dir.path(),
        &["--queue-size", "2", "--upscale", "1"],
    ));
    let source = image::open(tiny::shared().join("images/demo/bsr/49.jpg")).unwrap();
    let start = std::time::Instant::now();
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for client in 0..clients {
            let (server, source, refused, done) = (&server, &source, &refused, &done);
            s.spawn(move || {
                for k in (client..requests).step_by(clients) {
                    // A size that says which request this is (nearly square, so that the
                    // working size stays near 512×512).
                    let (w, h) = (64 + (k % 16) as u32, 64 + (k / 16) as u32);
                    let bytes = png(&source.resize_exact(w, h, image::imageops::Triangle));
                    let id = loop {
                        let reply =
                            server.post_parts("/v1/jobs", &[("image", Some("a.png"), &bytes)], &[]);
                        if reply.status == 202 {
                            break reply.json()["id"].as_str().unwrap().to_owned();
                        }
                        reply.error(429, "queue_full");
                        assert!(reply.header("retry-after").is_some());
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        assert!(start.elapsed() < 20 * MINUTE, "the load never drained");
                        std::thread::sleep(Duration::from_millis(200));
                    };
                    let state = server.wait_final(&id, 10 * MINUTE);
                    assert_eq!(state["state"], "done", "{state}");
                    let result = server.get(&format!("/v1/jobs/{id}/result"));
                    let result = image::load_from_memory(&result.body).unwrap();
                    assert_eq!((result.width(), result.height()), (w, h), "request {k}");
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let metrics = server.get("/metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let done = done.into_inner();
    assert_eq!(done, requests);
    assert_eq!(value("diffbir_jobs_submitted_total "), requests as f64);
    assert_eq!(
        value("diffbir_jobs_finished_total{state=\"done\"} "),
        requests as f64
    );
    assert_eq!(value("diffbir_queue_length "), 0.0);
    let peak = value("diffbir_peak_resident_memory_bytes ");
    // Tiny models, one job at a time: far below this whatever the load.
    assert!(peak < 2e9, "peak resident memory {peak} bytes");
    assert_no_panic(&server);
    format!(
        "{requests} requests from {clients} clients: all done, {} refused with 429 and \
         retried, {seconds:.1} s ({:.2} jobs/s), mean job {:.2} s, peak RSS {:.0} MiB",
        refused.into_inner(),
        requests as f64 / seconds,
        value("diffbir_job_seconds_sum ") / requests as f64,
        peak / (1 << 20) as f64
    )
}

#[test]
fn a_small_load_is_served_without_losing_or_mixing_up_jobs() {
    eprintln!("{}", load(8, 4));
}

/// The load of the closing note: `cargo test -p diffbir --test serve_api -- --ignored`.
#[test]
#[ignore = "minutes: 200 jobs"]
fn a_load_of_200_requests_from_16_clients() {
    eprintln!("{}", load(200, 16));
}

#[test]
fn a_failed_job_fails_alone_and_cors_answers_only_the_named_origin() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let app = "http://app.example";
    let server = Server::start(&tiny_server_args(
        dir.path(),
        &[
            "--cors-origin",
            app,
            "--results-dir",
            &results.display().to_string(),
        ],
    ));
    let allowed = server.get_with("/v1/models", &[("Origin", app)]);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(app));
    let other = server.get_with("/v1/models", &[("Origin", "http://evil.example")]);
    assert_eq!(other.header("access-control-allow-origin"), None);
    // The named origin may submit; others may not.
    let photo = photo();
    let (content_type, body) = server::multipart(&[
        ("image", Some("a.png"), &photo),
        ("options", None, br#"{"steps": 20}"#),
    ]);
    server
        .post_raw(
            "/v1/jobs",
            &content_type,
            &body,
            &[("Origin", "http://evil.example")],
        )
        .error(403, "cross_site");
    let submitted = server.post_raw("/v1/jobs", &content_type, &body, &[("Origin", app)]);
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    assert_eq!(submitted.header("access-control-allow-origin"), Some(app));
    let id = submitted.json()["id"].as_str().unwrap().to_owned();

    // The results folder disappears under a running job: the job fails with an error that
    // says why, and the server goes on serving.
    server.wait_for(&id, MINUTE, |s| s["progress"]["step"].as_u64() >= Some(1));
    std::fs::remove_dir_all(&results).unwrap();
    let state = server.wait_final(&id, 2 * MINUTE);
    assert_eq!(state["state"], "failed", "{state}");
    assert_eq!(state["error"]["code"], "internal", "{state}");
    assert!(
        state["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{state}"
    );
    assert!(state["results"].as_array().unwrap().is_empty());
    server
        .get(&format!("/v1/jobs/{id}/result"))
        .error(409, "no_result");
    assert_eq!(server.get("/healthz").status, 200);
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("diffbir_jobs_finished_total{state=\"failed\"} 1"),
        "{metrics}"
    );
    assert_no_panic(&server);
}

#[test]
fn a_job_no_tiling_fits_in_the_memory_budget_is_refused_with_the_budget_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_server_args(dir.path(), &["--max-memory", "1MiB"]));
    let photo = photo();
    let e = server
        .post_parts(
            "/v1/jobs",
            &[("image", Some("a.png"), photo.as_slice())],
            &[],
        )
        .error(413, "out_of_memory");
    assert_eq!(e["field"], "image");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("--max-memory"), "{e}");
    assert_no_panic(&server);
}
