//! The PyTorch side of `cargo xtask bench --compare-torch`: a virtual environment with a pinned
//! CPU PyTorch, diffusers and transformers, the script `xtask/torch/bench_torch.py` that times
//! the same shapes, and the recorded figures of the original code for what the script lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::components::Timing;
use super::record::{Record, Source, TORCH};

/// The folder of the PyTorch files (`xtask/torch`).
pub fn torch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("torch")
}

/// The pinned requirements (`xtask/torch/requirements.txt`).
pub const REQUIREMENTS: &str = include_str!("../../torch/requirements.txt");

/// The recorded PyTorch figures (`xtask/torch/recorded.jsonl`).
pub const RECORDED: &str = include_str!("../../torch/recorded.jsonl");

/// PyTorch's own index of CPU-only wheels, tried before PyPI (whose Linux wheel brings the CUDA
/// libraries along).
pub const TORCH_CPU_INDEX: &str = "https://download.pytorch.org/whl/cpu";

/// File in the environment holding the requirements it was installed from.
const MARKER: &str = "diffbir-bench-requirements.txt";

/// The default environment: `<target dir>/bench-venv`.
pub fn default_venv() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("bench-venv")
}

/// The pinned torch requirement (`torch==X`) of [`REQUIREMENTS`].
pub fn torch_pin(requirements: &str) -> Option<&str> {
    requirements
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("torch==") || l.starts_with("torch>=") || *l == "torch")
}

/// The recorded figures, one record per line (lines starting with `#` are comments).
pub fn recorded() -> Result<Vec<Record>> {
    parse_records(RECORDED)
}

/// Parses JSON lines, skipping blank and `#` lines.
pub fn parse_records(text: &str) -> Result<Vec<Record>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Record::from_json_line)
        .collect()
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The installed version of a distribution in the environment of `py`.
fn installed_version(py: &Path, distribution: &str) -> Option<String> {
    let out = Command::new(py)
        .args([
            "-c",
            "import sys, importlib.metadata as m; print(m.version(sys.argv[1]))",
        ])
        .arg(distribution)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run_status(cmd: &mut Command) -> Result<bool> {
    eprintln!("+ {cmd:?}");
    Ok(cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?
        .success())
}

/// Creates the environment at `venv` with `python` (unless there) and installs the pinned
/// requirements into it (unless it was installed from the same ones). Returns its Python.
pub fn ensure_venv(venv: &Path, python: &str) -> Result<PathBuf> {
    let py = venv_python(venv);
    let marker = venv.join(MARKER);
    if py.exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m == REQUIREMENTS) {
        return Ok(py);
    }
    if !py.exists() {
        eprintln!("creating the PyTorch environment in {}", venv.display());
        if !run_status(Command::new(python).arg("-m").arg("venv").arg(venv))? {
            bail!("`{python} -m venv {}` failed", venv.display());
        }
    }
    let pip = |args: &[&str]| {
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(args);
        run_status(&mut cmd)
    };
    let requirements = torch_dir().join("requirements.txt");
    let torch = torch_pin(REQUIREMENTS).context("requirements.txt pins no torch")?;
    let from = if installed_version(&py, "torch").is_some_and(|v| {
        Some(v.split('+').next().unwrap_or_default()) == torch.strip_prefix("torch==")
    }) {
        "already installed"
    } else if pip(&[
        // CPU-only wheels first (~200 MB); PyPI's wheel pulls the CUDA libraries (several GB).
        "--timeout",
        "15",
        "--retries",
        "1",
        "--index-url",
        TORCH_CPU_INDEX,
        torch,
    ])? {
        TORCH_CPU_INDEX
    } else {
        eprintln!("{TORCH_CPU_INDEX} failed; installing {torch} from the default index instead");
        if !pip(&[torch])? {
            bail!("cannot install {torch}");
        }
        "the default index"
    };
    let req = requirements.to_string_lossy();
    if !pip(&["-r", &req])? {
        bail!("cannot install {}", requirements.display());
    }
    std::fs::write(&marker, REQUIREMENTS)
        .with_context(|| format!("cannot write {}", marker.display()))?;
    eprintln!("PyTorch environment ready ({torch}: {from})");
    Ok(py)
}

/// The PyTorch script, run by a Python that has its requirements.
#[derive(Debug, Clone)]
pub struct TorchBench {
    python: PathBuf,
    script: PathBuf,
    /// The components the script times.
    pub supported: Vec<String>,
    /// Library versions, as the script reports them.
    pub versions: serde_json::Value,
}

/// What `bench_torch.py --list` prints.
#[derive(serde::Deserialize)]
struct Listing {
    components: Vec<String>,
    #[serde(default)]
    versions: serde_json::Value,
}

impl TorchBench {
    /// Asks the script (with `python`) which components it times.
    pub fn new(python: PathBuf) -> Result<Self> {
        let script = torch_dir().join("bench_torch.py");
        let out = Command::new(&python)
            .arg(&script)
            .arg("--list")
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        if !out.status.success() {
            bail!("`{} --list` failed", script.display());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let listing: Listing = serde_json::from_str(line)
            .with_context(|| format!("unexpected `--list` output: {text}"))?;
        Ok(Self {
            python,
            script,
            supported: listing.components,
            versions: listing.versions,
        })
    }

    /// Whether the script times `name`.
    pub fn supports(&self, name: &str) -> bool {
        self.supported.iter().any(|s| s == name)
    }

    /// Times `name` at `batch` in a fresh Python process.
    pub fn measure(
        &self,
        name: &str,
        batch: usize,
        timing: Timing,
        threads: usize,
    ) -> Result<Record> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script)
            .args(["--component", name])
            .args(["--batch", &batch.to_string()])
            .args(["--runs", &timing.runs.to_string()])
            .args(["--warmup", &timing.warmup.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--precision", timing.precision.name()])
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("MKL_NUM_THREADS", threads.to_string())
            .stderr(Stdio::inherit());
        if timing.tiny {
            cmd.arg("--tiny");
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "PyTorch `{name}` b{batch} failed ({}): {stdout}",
                out.status
            );
        }
        let record = Record::last_in(&stdout)?;
        if record.framework != TORCH || record.name != name || record.batch != batch {
            bail!("PyTorch script answered for another component: {stdout}");
        }
        Ok(record)
    }
}

/// The recorded figure of `name` at `batch`, if any.
pub fn recorded_for<'a>(recorded: &'a [Record], name: &str, batch: usize) -> Option<&'a Record> {
    recorded
        .iter()
        .find(|r| r.name == name && r.batch == batch && r.source == Source::Recorded)
}

#[cfg(test)]
mod tests {
    use super::super::components;
    use super::*;

    #[test]
    fn recorded_figures_parse_and_name_known_components() {
        let records = recorded().unwrap();
        assert!(!records.is_empty());
        for r in &records {
            let c = components::find(&r.name).unwrap_or_else(|| panic!("unknown {}", r.name));
            assert!(c.batches.contains(&r.batch), "{} b{}", r.name, r.batch);
            assert_eq!(r.framework, TORCH);
            assert_eq!(r.source, Source::Recorded);
            assert!(r.min_s <= r.median_s);
        }
        for name in ["swinir", "bsrnet", "scunet"] {
            assert!(recorded_for(&records, name, 1).is_some(), "{name}");
        }
    }

    #[test]
    fn requirements_pin_torch() {
        assert!(torch_pin(REQUIREMENTS).unwrap().starts_with("torch=="));
        assert_eq!(torch_pin("numpy\ntorch==2.1.0\n"), Some("torch==2.1.0"));
        assert_eq!(torch_pin("numpy\n"), None);
        let text = "# comment\n\n{\"name\":\"unet\",\"device\":\"cpu\",\"dtype\":\"f32\",\"batch\":1,\"min_s\":1,\"median_s\":2,\"peak_rss_mib\":null}\n";
        assert_eq!(parse_records(text).unwrap().len(), 1);
    }
}
