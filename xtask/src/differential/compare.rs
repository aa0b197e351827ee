//! Output tensors read back to the host, and their comparison with the reference.

use anyhow::{Result, anyhow};
use burn::tensor::{DType, Tensor};

/// One output of a case, read back as f32.
#[derive(Debug, Clone)]
pub struct Output {
    /// Name within the case (`y`, `moments`, `control.03`, …).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// Reads `t` back (cast to f32 first).
pub fn output<const D: usize>(name: impl Into<String>, t: Tensor<D>) -> Result<Output> {
    let shape = t.dims().to_vec();
    let values = t
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("reading back: {e:?}"))?;
    Ok(Output {
        name: name.into(),
        shape,
        values,
    })
}

/// `|test − reference| ≤ rtol · max|reference| + atol`, element-wise over one output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative to the largest magnitude of the reference output.
    pub rtol: f64,
    /// Absolute floor.
    pub atol: f64,
}

impl Tolerance {
    /// Bit-exact (flex against itself).
    pub const EXACT: Self = Self {
        rtol: 0.0,
        atol: 0.0,
    };
}

/// How one output compared.
#[derive(Debug, Clone)]
pub struct OutputDiff {
    /// Output name.
    pub name: String,
    /// Largest `|test − reference|` (NaN when a value is not finite).
    pub max_abs: f64,
    /// Largest `|reference|`.
    pub max_ref: f64,
    /// Largest difference of the jittered reference from the reference (0 when not run).
    pub jitter: f64,
    /// The allowed difference: `rtol · max_ref + atol`, or `JITTER_FACTOR · jitter` when
    /// that is more.
    pub limit: f64,
    /// Why the output could not be compared (shape mismatch, missing, not finite).
    pub problem: Option<String>,
}

impl OutputDiff {
    /// Within tolerance.
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.max_abs <= self.limit
    }

    /// `max_abs / limit` (how close to failing; infinite for problems).
    pub fn ratio(&self) -> f64 {
        if self.problem.is_some() || self.max_abs.is_nan() {
            f64::INFINITY
        } else if self.limit == 0.0 {
            if self.max_abs == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.max_abs / self.limit
        }
    }
}

impl std::fmt::Display for OutputDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(problem) = &self.problem {
            return write!(f, "{}: {problem}", self.name);
        }
        let op = if self.passed() { "<=" } else { ">" };
        write!(
            f,
            "{}: max|d| {:.2e} {op} tol {:.2e} (max|ref| {:.2e}",
            self.name, self.max_abs, self.limit, self.max_ref
        )?;
        if self.jitter > 0.0 {
            write!(f, ", jitter {:.2e}", self.jitter)?;
        }
        f.write_str(")")
    }
}

/// Largest `|a − b|` over two same-shaped outputs (NaN when a value is not finite).
fn max_abs_diff(a: &Output, b: &Output) -> f64 {
    let mut max = 0f64;
    for (x, y) in a.values.iter().zip(&b.values) {
        let d = f64::from(*x) - f64::from(*y);
        if !d.is_finite() {
            return f64::NAN;
        }
        max = max.max(d.abs());
    }
    max
}

/// Compares every reference output with the same-named test output. With `jittered` (the
/// reference run again with slightly perturbed weights), each output's tolerance is at least
/// `jitter_factor` times the jittered run's difference from the reference.
pub fn compare(
    reference: &[Output],
    test: &[Output],
    tol: Tolerance,
    jittered: Option<(&[Output], f64)>,
) -> Vec<OutputDiff> {
    let mut diffs: Vec<OutputDiff> = reference
        .iter()
        .map(|r| {
            let mut diff = OutputDiff {
                name: r.name.clone(),
                max_abs: f64::NAN,
                max_ref: f64::NAN,
                jitter: 0.0,
                limit: f64::NAN,
                problem: None,
            };
            let Some(t) = test.iter().find(|t| t.name == r.name) else {
                diff.problem = Some("missing from the device under test".into());
                return diff;
            };
            if t.shape != r.shape {
                diff.problem = Some(format!(
                    "shape {:?} on the device under test, {:?} on the reference",
                    t.shape, r.shape
                ));
                return diff;
            }
            if r.values.iter().any(|v| !v.is_finite()) {
                diff.problem = Some("the reference output is not finite".into());
                return diff;
            }
            let max_ref = r.values.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let max_abs = max_abs_diff(t, r);
            diff.max_ref = max_ref;
            diff.max_abs = max_abs;
            diff.limit = tol.rtol * max_ref + tol.atol;
            if let Some((outputs, factor)) = jittered
                && let Some(j) = outputs
                    .iter()
                    .find(|j| j.name == r.name && j.shape == r.shape)
            {
                let jitter = max_abs_diff(j, r);
                if jitter.is_finite() {
                    diff.jitter = jitter;
                    diff.limit = diff.limit.max(factor * jitter);
                }
            }
            if max_abs.is_nan() {
                diff.problem = Some(format!(
                    "not finite on the device under test (max|ref| {max_ref:.2e})"
                ));
            }
            diff
        })
        .collect();
    for t in test {
        if !reference.iter().any(|r| r.name == t.name) {
            diffs.push(OutputDiff {
                name: t.name.clone(),
                max_abs: f64::NAN,
                max_ref: f64::NAN,
                jitter: 0.0,
                limit: f64::NAN,
                problem: Some("missing from the reference".into()),
            });
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, values: &[f32]) -> Output {
        Output {
            name: name.into(),
            shape: vec![values.len()],
            values: values.to_vec(),
        }
    }

    #[test]
    fn judges_relative_to_the_reference_scale() {
        let tol = Tolerance {
            rtol: 1e-3,
            atol: 0.0,
        };
        let reference = [out("y", &[10.0, -20.0])];
        let close = compare(&reference, &[out("y", &[10.01, -20.0])], tol, None);
        assert!(close[0].passed(), "{}", close[0]);
        let far = compare(&reference, &[out("y", &[10.03, -20.0])], tol, None);
        assert!(!far[0].passed());
        assert!(far[0].to_string().contains("> tol"), "{}", far[0]);
        let nan = compare(&reference, &[out("y", &[f32::NAN, -20.0])], tol, None);
        assert!(!nan[0].passed());
        let shape = compare(&reference, &[out("y", &[10.0])], tol, None);
        assert!(!shape[0].passed());
        let missing = compare(&reference, &[out("z", &[10.0, -20.0])], tol, None);
        assert_eq!(missing.len(), 2);
        assert!(missing.iter().all(|d| !d.passed()));
        let exact = compare(&reference, &reference, Tolerance::EXACT, None);
        assert!(exact[0].passed() && exact[0].ratio() == 0.0);
        // An ill-conditioned output: the jittered reference moves by 0.01, so 0.03 passes.
        let jittered = [out("y", &[10.01, -20.0])];
        let loose = compare(
            &reference,
            &[out("y", &[10.03, -20.0])],
            tol,
            Some((&jittered, 10.0)),
        );
        assert!(loose[0].passed(), "{}", loose[0]);
        assert!(
            loose[0].to_string().contains("jitter 1.00e-2"),
            "{}",
            loose[0]
        );
    }
}
