//! The model architectures, at their official sizes, that a checkpoint can be verified
//! against (`diffbir weights verify FILE --model NAME`).
//!
//! Each entry builds its architecture and loads the checkpoint through the model's key map,
//! returning the [`LoadReport`]. Model crates register their architectures here as they
//! are added.

use burn::tensor::Device;
use diffbir_core::{Checkpoint, Error, LoadReport, Result};

/// One verifiable model architecture.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    /// The name `--model` takes.
    pub name: &'static str,
    /// What the architecture is and which official files use it.
    pub description: &'static str,
    /// Builds the architecture on `device` and applies the checkpoint (not strictly: the
    /// report says what matched).
    pub apply: fn(&Checkpoint, &Device) -> Result<LoadReport>,
}

/// Every architecture this build can verify.
pub fn models() -> &'static [ModelEntry] {
    &[]
}

/// Looks a model up by name.
pub fn find_model(name: &str) -> Result<&'static ModelEntry> {
    models().iter().find(|m| m.name == name).ok_or_else(|| {
        let known: Vec<&str> = models().iter().map(|m| m.name).collect();
        Error::InvalidArgument {
            what: "model".into(),
            reason: if known.is_empty() {
                format!("`{name}` is not known: this build has no model architecture yet")
            } else {
                format!(
                    "`{name}` is not known; this build has: {}",
                    known.join(", ")
                )
            },
        }
    })
}

/// Opens a checkpoint and applies it to the named architecture; the report says how many
/// tensors were mapped and which were missing or unused.
pub fn verify(path: &std::path::Path, model: &str, device: &Device) -> Result<LoadReport> {
    let entry = find_model(model)?;
    let checkpoint = Checkpoint::open(path)?;
    (entry.apply)(&checkpoint, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_are_caller_errors() {
        let err = find_model("no-such-model").unwrap_err();
        assert_eq!(err.fault(), diffbir_core::Fault::Caller);
        assert!(err.to_string().contains("no-such-model"));
    }

    #[test]
    fn model_names_are_unique() {
        let mut names: Vec<&str> = models().iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), models().len());
    }
}
