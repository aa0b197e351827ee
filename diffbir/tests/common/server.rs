//! A `diffbir serve` process on 127.0.0.1 for tests, and a small HTTP client over it
//! (multipart bodies are written here, so that malformed ones can be sent too).
//! Include with `#[path = "common/server.rs"] mod server;`. Each test uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server, stopped (killed) when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `diffbir serve --bind 127.0.0.1:0 ARGS` and waits (at most two minutes) for
    /// its `listening on` line.
    pub fn start(args: &[String]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_diffbir"));
        command
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("DIFFBIR_SERVE_TOKEN")
            .env_remove("DIFFBIR_WEIGHTS_DIR")
            .env("DIFFBIR_HUB_ENDPOINT", "http://127.0.0.1:9")
            .env("DIFFBIR_GITHUB_ENDPOINT", "http://127.0.0.1:9")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the diffbir binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("piped stderr");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not start listening within 2 minutes; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Self {
            child,
            base,
            stderr,
            agent: agent(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits at most `limit` for the exit; returns its status and how
    /// long it took.
    pub fn terminate(mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "the server did not stop within {limit:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(self.agent.get(&self.url(path)).call())
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(&self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.call())
    }

    pub fn delete(&self, path: &str) -> Reply {
        Reply::from(self.agent.delete(&self.url(path)).call())
    }

    /// `POST path` with a multipart body of `parts` (name, file name, bytes) and `headers`.
    pub fn post_parts(
        &self,
        path: &str,
        parts: &[(&str, Option<&str>, &[u8])],
        headers: &[(&str, &str)],
    ) -> Reply {
        let (content_type, body) = multipart(parts);
        self.post_raw(path, &content_type, &body, headers)
    }

    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .agent
            .post(&self.url(path))
            .header("Content-Type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.send(body))
    }

    /// Submits `image` (PNG bytes) with `options` (a JSON object) and returns the job id.
    pub fn submit(&self, image: &[u8], options: &str) -> String {
        let reply = self.post_parts(
            "/v1/jobs",
            &[
                ("image", Some("photo.png"), image),
                ("options", None, options.as_bytes()),
            ],
            &[],
        );
        assert_eq!(reply.status, 202, "{}", reply.text());
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    /// Polls the job until `done(state json)` holds (at most `limit`).
    pub fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let reply = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(reply.status, 200, "{}", reply.text());
            let state = reply.json();
            if done(&state) {
                return state;
            }
            assert!(
                start.elapsed() < limit,
                "job {id} did not get there within {limit:?}: {state}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the job until it is done, failed or cancelled.
    pub fn wait_final(&self, id: &str, limit: Duration) -> serde_json::Value {
        self.wait_for(id, limit, |s| {
            ["done", "failed", "cancelled"].contains(&s["state"].as_str().unwrap_or_default())
        })
    }

    /// The server-sent events of `path` until the stream ends: (event, data) pairs.
    pub fn events(&self, path: &str) -> Vec<(String, serde_json::Value)> {
        let response = self.agent.get(&self.url(path)).call().expect("events");
        assert_eq!(response.status(), 200);
        let reader = BufReader::new(response.into_body().into_reader());
        let mut events = Vec::new();
        let mut name = String::new();
        for line in reader.lines() {
            let line = line.expect("readable stream");
            if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                events.push((name.clone(), serde_json::from_str(data).expect("JSON data")));
            }
        }
        events
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that returns every status as a reply, with bounded waits.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A finished request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<Result<ureq::http::Response<ureq::Body>, ureq::Error>> for Reply {
    fn from(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Self {
        let mut response = result.expect("the server answers");
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .expect("a readable body");
        Self {
            status: response.status().as_u16(),
            headers,
            body,
        }
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a JSON error with `status` and `code`; returns the error object.
    pub fn error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        let error = self.json()["error"].clone();
        assert_eq!(error["code"], code, "{}", self.text());
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text()
        );
        error
    }
}

/// A multipart/form-data body of `parts` (name, file name, bytes).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "diffbir-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file_name, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file_name {
            Some(file) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `image` as PNG bytes.
pub fn png(image: &image::DynamicImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("PNG encoding");
    bytes.into_inner()
}
