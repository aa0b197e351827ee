//! Loading a case's weight files into a module through the model's key map.

use anyhow::{Context, Result, bail};
use burn::store::ModuleSnapshot;
use diffbir_core::{Checkpoint, KeyMap, load_into};
use serde_json::Value;

use super::Case;

/// Loads the case's weight files (`weights: [{file, module_path}]`) strictly into a module
/// that is the case's whole module (every entry must have an empty `module_path`).
pub fn load<M: ModuleSnapshot>(case: &Case, module: &mut M, map: &KeyMap) -> Result<()> {
    let entries = entries(case)?;
    if let Some((_, path)) = entries.iter().find(|(_, path)| !path.is_empty()) {
        bail!("weights for sub-module `{path}` need a builder that knows that sub-module");
    }
    load_part(case, "", module, map)
}

/// Loads the weight files the case lists for the sub-module at `module_path` strictly into
/// `module`; at least one must exist.
pub fn load_part<M: ModuleSnapshot>(
    case: &Case,
    module_path: &str,
    module: &mut M,
    map: &KeyMap,
) -> Result<()> {
    let files: Vec<String> = entries(case)?
        .into_iter()
        .filter(|(_, path)| path == module_path)
        .map(|(file, _)| file)
        .collect();
    if files.is_empty() {
        bail!(
            "case {} lists no weight file for `{module_path}`",
            case.name
        );
    }
    for file in files {
        let checkpoint = Checkpoint::open(case.dir.join(&file))?;
        load_into(module, &checkpoint, map)?;
    }
    Ok(())
}

fn entries(case: &Case) -> Result<Vec<(String, String)>> {
    let list = case
        .field("/weights")?
        .as_array()
        .context("`weights` is not a list")?;
    if list.is_empty() {
        bail!("case {} lists no weight file", case.name);
    }
    list.iter()
        .map(|entry| {
            let file = entry
                .get("file")
                .and_then(Value::as_str)
                .context("weights entry without `file`")?;
            let path = entry
                .get("module_path")
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok((file.to_string(), path.to_string()))
        })
        .collect()
}
