//! Extracts the README's "Restoring a photo from Rust" example into a function, so that this
//! crate compiles exactly what the README shows.

use std::path::Path;

const README: &str = "../../README.md";
const MARKER: &str = "Restoring a photo from Rust";

fn main() {
    println!("cargo:rerun-if-changed={README}");
    let text = std::fs::read_to_string(README)
        .unwrap_or_else(|e| panic!("{README} cannot be read ({e}); it holds the example"));
    let after = text
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("{README} has no paragraph starting `{MARKER}`"))
        .1;
    let code = after
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("{README}: no ```rust block after `{MARKER}`"))
        .0;
    let (uses, body): (Vec<&str>, Vec<&str>) =
        code.lines().partition(|line| line.starts_with("use "));
    let source = format!(
        "{}\n\n/// The README's example, as written there.\npub fn readme_example() -> \
         Result<(), diffbir::Error> {{\n{}\n    Ok(())\n}}\n",
        uses.join("\n"),
        body.iter()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("readme_example.rs"), source).expect("OUT_DIR is writable");
}
