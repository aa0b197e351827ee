//! The web page of `diffbir serve` in headless Chromium over WebDriver (Debian's `chromium`
//! and `chromium-driver`; `.ci/run` installs them): a real photo is picked and restored with
//! tiny models, the progress bar moves, the before/after slider and the download appear, a
//! second job is cancelled, a dropped file is taken, the page fits a phone's width, and the
//! screenshot is not blank.
//!
//! Without a `chromedriver` on the PATH the test says so and passes, except under CI
//! (`CI` set), where a missing driver fails it.

#[path = "../../testing/fixtures.rs"]
mod fixtures;
#[path = "common/server.rs"]
mod server;
#[path = "common/tiny.rs"]
mod tiny;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diffbir::pipeline::Task;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use server::Server;

/// A chromedriver on a free port, killed (and reaped) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts `chromedriver --port=0`; `None` when there is none.
    fn start() -> Option<Self> {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            let rest = line.split("started successfully on port ").nth(1)?;
            rest.trim_end_matches('.').trim().parse().ok()
        });
        // The driver keeps writing; drain its output so it never blocks.
        std::thread::spawn(move || lines.for_each(drop));
        match port {
            Some(port) => Some(Self { child, port }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver started but did not print its port");
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Evaluates `script` (a function body) in the page.
async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits (at most `limit`) until `script` returns true.
async fn until(client: &Client, server: &Server, script: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if js(client, script).await == json!(true) {
            return;
        }
        if start.elapsed() > limit {
            let status = js(
                client,
                "return document.getElementById('status').textContent",
            )
            .await;
            panic!(
                "waited {limit:?} for `{script}`; status: {status}; server:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets an option's input to `value`, as typing would.
async fn set(client: &Client, id: &str, value: &str) {
    client
        .execute(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); \
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![json!(id), json!(value)],
        )
        .await
        .unwrap();
}

/// Clicks the element `id`.
async fn click(client: &Client, id: &str) -> Result<(), String> {
    let element = client
        .find(Locator::Id(id))
        .await
        .map_err(|e| format!("#{id}: {e}"))?;
    element.click().await.map_err(|e| format!("#{id}: {e}"))
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve_browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Saves a screenshot and checks it is not blank: many colours, not one flat page.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    let path = screenshot_path(name);
    std::fs::write(&path, &png).unwrap();
    let image = image::load_from_memory(&png).unwrap().to_rgb8();
    let mut colours = std::collections::HashSet::new();
    for pixel in image.pixels() {
        colours.insert(pixel.0);
    }
    assert!(
        colours.len() > 500,
        "{} looks blank ({} colours)",
        path.display(),
        colours.len()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_restores_a_photo_shows_progress_compares_and_cancels() {
    let Some(driver) = Driver::start() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no chromedriver on the PATH: install Debian's chromium and chromium-driver"
        );
        eprintln!("skipped: no chromedriver on the PATH (install chromium and chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let models = tiny::tiny_models_file(dir.path());
    let weights = tiny::weights_dir(Task::Sr, dir.path());
    let server = Server::start(&tiny::tiny_model_args(&weights, &models));
    // The shared folder's 120×80 photo, as a file the browser can pick.
    let photo = dir.path().join("photo.png");
    image::open(tiny::shared().join("images/demo/bsr/49.jpg"))
        .unwrap()
        .save(&photo)
        .unwrap();

    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1200,1000"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");
    let outcome = run(&client, &server, &photo).await;
    client.close().await.ok();
    drop(driver);
    outcome.unwrap_or_else(|e| panic!("{e}"));
}

async fn run(client: &Client, server: &Server, photo: &Path) -> Result<(), String> {
    let limit = Duration::from_secs(90);
    client
        .goto(&format!("{}/", server.base))
        .await
        .map_err(|e| e.to_string())?;
    until(
        client,
        server,
        "return document.getElementById('sampler').options.length > 5",
        limit,
    )
    .await;
    assert_eq!(
        js(client, "return document.getElementById('task').value").await,
        "sr"
    );

    // Pick the photo, ask for 2× with 3 steps, run.
    let file = client
        .find(Locator::Id("file"))
        .await
        .map_err(|e| e.to_string())?;
    file.send_keys(&photo.display().to_string())
        .await
        .map_err(|e| e.to_string())?;
    until(
        client,
        server,
        "return document.getElementById('preview').naturalWidth === 120",
        limit,
    )
    .await;
    set(client, "upscale", "2").await;
    set(client, "steps", "3").await;
    set(client, "sampler", "edm_euler").await;
    click(client, "run").await?;
    until(
        client,
        server,
        "return document.getElementById('progress').value > 0",
        limit,
    )
    .await;
    until(
        client,
        server,
        "const a = document.getElementById('after'); \
         return a.complete && a.naturalWidth === 240 && a.naturalHeight === 160",
        limit,
    )
    .await;
    assert_eq!(
        js(client, "return document.getElementById('progress').value").await,
        json!(1)
    );
    // The slider moves the clip between before and after.
    until(
        client,
        server,
        "return !document.getElementById('slider').hidden",
        limit,
    )
    .await;
    set(client, "slider", "20").await;
    let clip = js(
        client,
        "return getComputedStyle(document.getElementById('after')).clipPath",
    )
    .await;
    assert!(clip.as_str().is_some_and(|c| c.contains("20%")), "{clip}");
    let href = js(client, "return document.getElementById('download').href").await;
    assert!(
        href.as_str().is_some_and(|h| h.starts_with("blob:")),
        "{href}"
    );
    let shot = screenshot(client, "result.png").await;
    eprintln!("screenshot: {}", shot.display());

    // A long job, cancelled while it runs.
    set(client, "steps", "1000").await;
    click(client, "run").await?;
    until(
        client,
        server,
        "return /step \\d+/.test(document.getElementById('status').textContent)",
        limit,
    )
    .await;
    click(client, "cancel").await?;
    until(
        client,
        server,
        "return /cancelled/i.test(document.getElementById('status').textContent)",
        Duration::from_secs(30),
    )
    .await;

    // A dropped file is taken like a picked one.
    js(
        client,
        "const c = document.createElement('canvas'); c.width = 64; c.height = 48; \
         const g = c.getContext('2d'); g.fillStyle = '#c33'; g.fillRect(0, 0, 64, 48); \
         return new Promise((done) => c.toBlob((blob) => { \
             const data = new DataTransfer(); \
             data.items.add(new File([blob], 'dropped.png', {type: 'image/png'})); \
             document.getElementById('drop').dispatchEvent( \
                 new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})); \
             done(true); \
         }, 'image/png'));",
    )
    .await;
    until(
        client,
        server,
        "return document.getElementById('preview').naturalWidth === 64",
        limit,
    )
    .await;

    // A phone's width: nothing sticks out sideways.
    client
        .set_window_size(375, 812)
        .await
        .map_err(|e| e.to_string())?;
    until(client, server, "return window.innerWidth <= 400", limit).await;
    let fits = js(
        client,
        "return document.documentElement.scrollWidth <= window.innerWidth && \
         [...document.querySelectorAll('button, input, select, textarea')] \
           .filter((e) => e.offsetParent !== null) \
           .every((e) => e.getBoundingClientRect().right <= window.innerWidth + 1)",
    )
    .await;
    assert_eq!(fits, json!(true), "the page is wider than a phone's screen");
    screenshot(client, "phone.png").await;
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
