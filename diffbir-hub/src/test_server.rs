//! A small HTTP/1.1 server on 127.0.0.1 that imitates the Hugging Face hub and GitHub, for
//! tests of downloads (feature `test-server`): one request per connection, a log of every
//! request, and a few ways to misbehave (redirects, cut-off bodies, corrupted bytes, error
//! statuses, ignored ranges). No internet is involved.
//!
//! ```
//! # #[cfg(feature = "download")] {
//! use diffbir_hub::test_server::{Route, Server};
//! use diffbir_hub::{Host, Hub, ModelFile, Source};
//!
//! const TINY: ModelFile = ModelFile {
//!     name: "tiny",
//!     aliases: &[],
//!     file_name: "tiny.pth",
//!     sources: &[Source {
//!         host: Host::GitHub,
//!         path: "/acme/tiny/releases/download/v1/tiny.pth",
//!     }],
//!     size: 7,
//!     sha256: None,
//!     description: "a test file",
//! };
//!
//! let server = Server::start()?;
//! let path = TINY.sources[0].path;
//! server.route(path, Route { body: b"weights".to_vec(), ..Route::default() });
//! let cache = tempfile::tempdir()?;
//! let hub = Hub::new(cache.path()).with_endpoint(Host::GitHub, &server.url())?;
//! let file = hub.fetch_file(&TINY, &mut ())?;
//! assert_eq!(std::fs::read(file)?, b"weights");
//! assert_eq!(server.gets(path).len(), 1);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers one path.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// The file served.
    pub body: Vec<u8>,
    /// Sent as `X-Linked-Etag` (quoted), as Hugging Face does for LFS files.
    pub linked_etag: Option<String>,
    /// Answer GET and HEAD with a 302 to this path (keeping the etag), like Hugging Face's
    /// `resolve` URLs redirecting to the CDN.
    pub redirect: Option<String>,
    /// Answer with this status and no body.
    pub status: Option<u16>,
    /// Cut the next `.1` GET bodies off after `.0` bytes (the full length is announced).
    pub cut: Option<(usize, usize)>,
    /// Flip a byte in the middle of what is served.
    pub corrupt: bool,
    /// Answer range requests with the whole file (200).
    pub ignore_range: bool,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path asked for.
    pub path: String,
    /// The `Range` header's value, if any.
    pub range: Option<String>,
}

/// The server; it stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on a free port of 127.0.0.1, serving from a thread of its own.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let routes = Arc::new(Mutex::new(HashMap::<String, Route>::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, log, stop) = (routes.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // One request per connection; errors only drop that connection.
                        let _ = serve(stream, addr, &routes, &log);
                    }
                }
            })
        };
        Ok(Self {
            addr,
            routes,
            log,
            stop,
            thread: Some(thread),
        })
    }

    /// The endpoint to give a [`Hub`](crate::Hub): `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `path` as `route` says, from now on; other paths answer 404.
    pub fn route(&self, path: &str, route: Route) {
        lock(&self.routes).insert(path.to_owned(), route);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.log).clone()
    }

    /// The `GET` requests of `path` so far.
    pub fn gets(&self, path: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Locks `mutex`; a thread that panicked while holding it leaves data that is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    routes: &Mutex<HashMap<String, Route>>,
    log: &Mutex<Vec<Logged>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    lock(log).push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });
    let head = method == "HEAD";
    let mut out = stream;
    let route = {
        let mut routes = lock(routes);
        let Some(route) = routes.get_mut(&path) else {
            return respond(&mut out, "404 Not Found", &[], b"", head);
        };
        let snapshot = route.clone();
        if !head && let Some((_, times)) = &mut route.cut {
            *times = times.saturating_sub(1);
        }
        snapshot
    };
    let etag = route
        .linked_etag
        .as_ref()
        .map(|e| ("X-Linked-Etag".to_owned(), format!("\"{e}\"")));
    if let Some(status) = route.status {
        let reason = format!("{status} Test");
        return respond(&mut out, &reason, &[], b"", head);
    }
    if let Some(target) = &route.redirect {
        let mut headers = vec![("Location".to_owned(), format!("http://{addr}{target}"))];
        headers.extend(etag);
        return respond(&mut out, "302 Found", &headers, b"", head);
    }
    let mut body = route.body.clone();
    if route.corrupt && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0x55;
    }
    let len = body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|_| !route.ignore_range);
    let mut headers: Vec<(String, String)> = etag.into_iter().collect();
    let (status, slice) = match start {
        Some(s) if s >= len => {
            headers.push(("Content-Range".into(), format!("bytes */{len}")));
            return respond(&mut out, "416 Range Not Satisfiable", &headers, b"", head);
        }
        Some(s) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {s}-{}/{len}", len - 1),
            ));
            ("206 Partial Content", &body[s..])
        }
        None => ("200 OK", &body[..]),
    };
    match route.cut {
        Some((after, times)) if times > 0 && !head => {
            let mut text = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                slice.len()
            );
            for (k, v) in &headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            out.write_all(text.as_bytes())?;
            out.write_all(&slice[..after.min(slice.len())])?;
            out.flush()?;
            out.shutdown(Shutdown::Both)
        }
        _ => respond(&mut out, status, &headers, slice, head),
    }
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}

/// `len` deterministic pseudo-random bytes for a fake weight file (`seed` picks the bytes).
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The SHA-256 of `bytes` in lower-case hex, as the registry and the hash records write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names of the files in `dir` (download locks aside), sorted: what a download left.
pub fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
