//! Where the reference fixtures are, for tests: `DIFFBIR_FIXTURES`, else `../shared/fixtures`
//! beside the repository. Include with `#[path = "../../testing/fixtures.rs"] mod fixtures;`.

use std::path::{Path, PathBuf};

/// The fixtures folder; a clear failure when it is missing.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DIFFBIR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    assert!(
        dir.join("index.json").is_file(),
        "the reference fixtures are missing: expected them at {} (set DIFFBIR_FIXTURES)",
        dir.display()
    );
    dir
}

/// A folder of the cases generated into this repository (`testing/fixtures/<set>`); a clear
/// failure when it is missing.
#[allow(dead_code)]
pub fn repo_fixtures(set: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testing/fixtures")
        .join(set);
    assert!(
        dir.join("index.json").is_file(),
        "the generated `{set}` cases are missing: expected them at {}",
        dir.display()
    );
    dir
}
