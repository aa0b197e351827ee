//! Value checks of config sections (the error names the field) and the resolution of their
//! relative paths, shared by the configs and the dataset sections.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `path` if absolute; else the first of `base/path`, `base/../path`, … that exists; else
/// `base/path`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    base.ancestors()
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| base.join(path))
}

/// A probability in `[0, 1]`.
pub(crate) fn check_probability(field: String, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::field(field, format!("must lie in [0, 1], got {p}")))
    }
}

/// `n` non-negative weights with a positive sum (`random.choices` weights).
pub(crate) fn check_weights(field: String, weights: &[f64], n: usize) -> Result<()> {
    if weights.len() != n
        || weights.iter().any(|p| !(p.is_finite() && *p >= 0.0))
        || weights.iter().sum::<f64>() <= 0.0
    {
        return Err(Error::field(
            field,
            format!("needs {n} non-negative weights with a positive sum"),
        ));
    }
    Ok(())
}

/// A finite `[low, high]` with `min <= low <= high`.
pub(crate) fn check_range(field: String, [lo, hi]: [f64; 2], min: f64) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && lo >= min && lo <= hi {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!("must be [low, high] with {min} <= low <= high, got [{lo}, {hi}]"),
        ))
    }
}

/// A JPEG quality range: `[low, high]` within `[1, 100]`.
pub(crate) fn check_jpeg_range(field: String, range: [f64; 2]) -> Result<()> {
    check_range(field.clone(), range, 1.0)?;
    if range[1] > 100.0 {
        return Err(Error::field(field, "qualities go up to 100"));
    }
    Ok(())
}
