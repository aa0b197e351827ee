//! What the fuzz targets share: scratch files for the APIs that take a path, the fixtures
//! folder, and the size oracle of network configurations.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod model_size;

/// A file in this process's scratch folder (`/dev/shm` when there is one: no disk writes per
/// execution), for the APIs that read a path.
pub fn scratch_file(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("diffbir-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch folder");
        dir
    });
    dir.join(name)
}

/// Writes `data` to the scratch file `name` and returns its path.
pub fn write_scratch(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_file(name);
    std::fs::write(&path, data).expect("writing the fuzz scratch file");
    path
}

/// The reference fixtures: `DIFFBIR_FIXTURES`, else `../shared/fixtures` beside the
/// repository.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("DIFFBIR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}
