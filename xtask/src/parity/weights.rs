//! Loading a case's weight files into a module through the model's key map.

use anyhow::{Context, Result, bail};
use burn::store::ModuleSnapshot;
use diffbir_core::{Checkpoint, KeyMap, load_into};
use serde_json::Value;

use super::Case;

/// Loads every weight file of the case (`weights: [{file, module_path}]`) strictly into
/// `module`. Files for a sub-module (non-empty `module_path`) are not handled here.
pub fn load<M: ModuleSnapshot>(case: &Case, module: &mut M, map: &KeyMap) -> Result<()> {
    let entries = case
        .field("/weights")?
        .as_array()
        .context("`weights` is not a list")?;
    if entries.is_empty() {
        bail!("case {} lists no weight file", case.name);
    }
    for entry in entries {
        let file = entry
            .get("file")
            .and_then(Value::as_str)
            .context("weights entry without `file`")?;
        let module_path = entry
            .get("module_path")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !module_path.is_empty() {
            bail!("weights for sub-module `{module_path}` are not supported by this builder");
        }
        let checkpoint = Checkpoint::open(case.dir.join(file))?;
        load_into(module, &checkpoint, map)?;
    }
    Ok(())
}
