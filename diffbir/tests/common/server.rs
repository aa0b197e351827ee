//! A small HTTP/1.1 server on 127.0.0.1 that imitates the Hugging Face hub and GitHub for
//! the download tests: one request per connection, a log of every request, and a few ways
//! to misbehave (redirects, cut-off bodies, corrupted bytes, error statuses, ignored ranges).
//! Include with `#[path = "common/server.rs"] mod server;`.

#![allow(dead_code)] // each test file uses a different part of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers one path.
#[derive(Debug, Clone, Default)]
pub struct Route {
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

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
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
        Self {
            addr,
            routes,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_owned(), route);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

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
    log.lock().unwrap().push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });
    let head = method == "HEAD";
    let mut out = stream;
    let route = {
        let mut routes = routes.lock().unwrap();
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
