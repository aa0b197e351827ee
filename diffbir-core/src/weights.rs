//! Key maps and strict loading of checkpoints into burn modules.
//!
//! Module fields mirror the checkpoint keys wherever Rust allows, so most keys load as they
//! are. What cannot be mirrored is written down per model as a [`KeyMap`]: a prefix that
//! selects the model's keys in a larger file, a short list of commented regex rename rules
//! (each with an example pair that a unit test checks), and the keys the model is allowed to
//! drop. Loading is strict: a missing, unused or mis-shaped tensor is an
//! [`Error::WeightsMismatch`] that lists the keys.
//!
//! burn's `PyTorchToBurnAdapter` is always applied, so `Linear` weights are transposed and
//! norm `weight`/`bias` become `gamma`/`beta` without rules; f16/bf16/f64 tensors are cast to
//! f32.

use std::collections::BTreeMap;
use std::fmt;

use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::DType;
use regex::Regex;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// One rename rule: a regex applied to checkpoint keys, with an example the tests check.
#[derive(Debug, Clone, Copy)]
pub struct KeyRule {
    /// Regex matched against the key (after the map's prefix is removed).
    pub pattern: &'static str,
    /// Replacement (`$1`-style groups allowed).
    pub replacement: &'static str,
    /// Why the rule exists.
    pub why: &'static str,
    /// A checkpoint key and the module path it must become.
    pub example: (&'static str, &'static str),
}

/// A piece of a rule's pattern or replacement.
#[derive(Debug, PartialEq)]
enum Piece {
    /// Literal text.
    Text(String),
    /// A capture group's regex (in a pattern) or a `$n` reference (in a replacement).
    Group(String),
}

/// Splits a pattern made of escaped literals, one optional leading `^` and unnested
/// capture groups; `None` for anything else.
fn pattern_pieces(pattern: &str) -> Option<(bool, Vec<Piece>)> {
    let (anchored, mut rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let mut pieces = Vec::new();
    let mut text = String::new();
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                let e = rest.chars().next()?;
                if e.is_alphanumeric() {
                    return None;
                }
                text.push(e);
                rest = &rest[e.len_utf8()..];
            }
            '(' => {
                let end = rest.find(')')?;
                if rest[..end].contains(['(', '\\']) {
                    return None;
                }
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(Piece::Group(rest[..end].to_string()));
                rest = &rest[end + 1..];
            }
            '.' | '*' | '+' | '?' | '[' | ']' | '{' | '}' | '|' | '$' | '^' | ')' => return None,
            other => text.push(other),
        }
    }
    pieces.push(Piece::Text(text));
    Some((anchored, pieces))
}

/// Splits a replacement into literal text and `$n` references.
fn replacement_pieces(replacement: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            if digits.is_empty() {
                return None;
            }
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Group(digits));
        } else {
            text.push(c);
        }
    }
    pieces.push(Piece::Text(text));
    Some(pieces)
}

impl KeyRule {
    /// The rule the other way round (module path to checkpoint key) as a regex pattern and
    /// a replacement, for rules whose pattern is escaped literal text with an optional
    /// leading `^` and capture groups that the replacement uses once each, in order (such as
    /// `\.RDB([123])\.` → `.rdb$1.`); `None` for other rules.
    pub fn inverse(&self) -> Option<(String, String)> {
        let (anchored, pattern) = pattern_pieces(self.pattern)?;
        let replacement = replacement_pieces(self.replacement)?;
        let groups: Vec<&String> = pattern
            .iter()
            .filter_map(|p| match p {
                Piece::Group(g) => Some(g),
                Piece::Text(_) => None,
            })
            .collect();
        let mut inverse_pattern = String::from(if anchored { "^" } else { "" });
        let mut used = 0;
        for piece in &replacement {
            match piece {
                Piece::Text(t) => inverse_pattern.push_str(&regex::escape(t)),
                Piece::Group(n) => {
                    used += 1;
                    if n.parse::<usize>().ok()? != used {
                        return None;
                    }
                    inverse_pattern.push_str(&format!("({})", groups.get(used - 1)?));
                }
            }
        }
        if used != groups.len() {
            return None;
        }
        let mut inverse_replacement = String::new();
        let mut group = 0;
        for piece in &pattern {
            match piece {
                Piece::Text(t) => inverse_replacement.push_str(&t.replace('$', "$$")),
                Piece::Group(_) => {
                    group += 1;
                    inverse_replacement.push_str(&format!("${{{group}}}"));
                }
            }
        }
        Some((inverse_pattern, inverse_replacement))
    }
}

/// How one model's tensors are found in a checkpoint and renamed to its module paths.
#[derive(Debug, Clone, Copy)]
pub struct KeyMap {
    /// The model's name (as `diffbir weights verify --model` spells it).
    pub name: &'static str,
    /// Only keys starting with this prefix belong to the model; it is removed before the
    /// rules run. Keys without it are left alone (other models in the same file).
    pub prefix: &'static str,
    /// Rename rules, applied in order.
    pub rules: &'static [KeyRule],
    /// Regexes of keys (after the prefix) that the model knowingly does not use.
    pub droppable: &'static [&'static str],
}

impl KeyMap {
    /// The module path a checkpoint key maps to, or `None` when the key lacks the prefix.
    pub fn rename(&self, key: &str) -> Option<String> {
        let stripped = key.strip_prefix(self.prefix)?;
        let mut name = stripped.to_string();
        for rule in self.rules {
            let re = Regex::new(rule.pattern).expect("key rule patterns are valid regexes");
            name = re.replace_all(&name, rule.replacement).into_owned();
        }
        Some(name)
    }

    /// Checks every rule's example (and that the patterns compile). Each map's unit tests
    /// call this.
    pub fn check_examples(&self) -> std::result::Result<(), String> {
        for rule in self.rules {
            let re = Regex::new(rule.pattern).map_err(|e| {
                format!("{}: rule `{}` is not a regex: {e}", self.name, rule.pattern)
            })?;
            let got = re.replace_all(rule.example.0, rule.replacement);
            if got != rule.example.1 {
                return Err(format!(
                    "{}: rule `{}` maps `{}` to `{got}`, its example says `{}`",
                    self.name, rule.pattern, rule.example.0, rule.example.1
                ));
            }
            let back = rule.inverse().and_then(|(p, r)| {
                Some(
                    Regex::new(&p)
                        .ok()?
                        .replace_all(rule.example.1, r.as_str())
                        .into_owned(),
                )
            });
            if back.as_deref() != Some(rule.example.0) {
                return Err(format!(
                    "{}: rule `{}` does not invert: `{}` goes back to {back:?}",
                    self.name, rule.pattern, rule.example.1
                ));
            }
        }
        for pattern in self.droppable {
            Regex::new(pattern)
                .map_err(|e| format!("{}: droppable `{pattern}` is not a regex: {e}", self.name))?;
        }
        Ok(())
    }

    /// The checkpoint key of a module path: [`rename`](Self::rename) undone (the rules
    /// inverted, in reverse order) and the prefix put back. Used to write weights under the
    /// official names.
    ///
    /// # Errors
    ///
    /// A rule that [`KeyRule::inverse`] cannot invert (every rule of the official maps can;
    /// [`check_examples`](Self::check_examples) checks it).
    pub fn official_key(&self, path: &str) -> Result<String> {
        let mut key = path.to_string();
        for rule in self.rules.iter().rev() {
            let (pattern, replacement) = rule.inverse().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: key rule `{}` cannot be inverted",
                    self.name, rule.pattern
                ))
            })?;
            let re = Regex::new(&pattern).expect("inverted patterns are valid regexes");
            key = re.replace_all(&key, replacement.as_str()).into_owned();
        }
        Ok(format!("{}{key}", self.prefix))
    }

    fn is_droppable(&self, key: &str) -> bool {
        self.droppable
            .iter()
            .any(|p| Regex::new(p).is_ok_and(|re| re.is_match(key)))
    }
}

/// What loading a checkpoint into a module did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// The key map's name.
    pub model: String,
    /// Module paths that received a tensor.
    pub applied: Vec<String>,
    /// Module paths for which the checkpoint had no tensor.
    pub missing: Vec<String>,
    /// Checkpoint keys (renamed) that no module path took.
    pub unused: Vec<String>,
    /// Tensors that could not be applied (wrong shape, unreadable data), one line each.
    pub mismatched: Vec<String>,
    /// Checkpoint keys the key map knowingly drops.
    pub dropped: Vec<String>,
    /// Keys outside the map's prefix (other models in the same file), not considered.
    pub outside_prefix: usize,
}

impl LoadReport {
    /// No missing, unused or mismatched tensor.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unused.is_empty() && self.mismatched.is_empty()
    }

    /// The report when it is complete, else [`Error::WeightsMismatch`] listing the keys.
    pub fn strict(self, checkpoint: &Checkpoint) -> Result<Self> {
        if self.is_complete() {
            return Ok(self);
        }
        Err(Error::WeightsMismatch {
            path: checkpoint.path().to_path_buf(),
            model: self.model.clone(),
            summary: self.summary(),
            report: Box::new(self),
        })
    }

    fn summary(&self) -> String {
        const SHOWN: usize = 8;
        let list = |what: &str, keys: &[String]| -> Option<String> {
            (!keys.is_empty()).then(|| {
                let shown: Vec<&str> = keys.iter().take(SHOWN).map(String::as_str).collect();
                let more = keys.len().saturating_sub(SHOWN);
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{} {what} ({}{tail})", keys.len(), shown.join(", "))
            })
        };
        [
            list("missing", &self.missing),
            list("unused", &self.unused),
            list("mismatched", &self.mismatched),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mapped {} tensors, {} missing, {} unused",
            self.applied.len(),
            self.missing.len(),
            self.unused.len() + self.mismatched.len()
        )
    }
}

/// Applies a checkpoint's tensors to a module through a key map and reports what happened,
/// without judging the result (see [`load_into`] for the strict version).
///
/// Fails only when the map renames two keys onto the same path.
pub fn apply_checkpoint<M: ModuleSnapshot>(
    module: &mut M,
    checkpoint: &Checkpoint,
    map: &KeyMap,
) -> Result<LoadReport> {
    let mut report = LoadReport {
        model: map.name.to_string(),
        ..LoadReport::default()
    };
    let mut renamed: BTreeMap<String, (String, burn::store::burn_pack::Tensor)> = BTreeMap::new();
    for (key, tensor) in checkpoint.snapshots() {
        let Some(target) = map.rename(key) else {
            report.outside_prefix += 1;
            continue;
        };
        if map.is_droppable(&key[map.prefix.len()..]) {
            report.dropped.push(key.clone());
            continue;
        }
        let mut tensor = tensor.clone();
        tensor.name = target.clone();
        if let Some((first, _)) = renamed.insert(target.clone(), (key.clone(), tensor)) {
            return Err(Error::KeyCollision {
                path: checkpoint.path().to_path_buf(),
                map: map.name.to_string(),
                first,
                second: key.clone(),
                target,
            });
        }
    }
    let tensors = renamed.into_values().map(|(_, t)| t).collect();
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let result = module.apply(tensors, None, Some(Box::new(adapter)), true);
    report.applied = result.applied;
    report.missing = result.missing.into_iter().map(|(path, _)| path).collect();
    report.unused = result.unused;
    report.mismatched = result.errors.iter().map(ToString::to_string).collect();
    for list in [
        &mut report.applied,
        &mut report.missing,
        &mut report.unused,
        &mut report.mismatched,
    ] {
        list.sort();
    }
    Ok(report)
}

/// Loads a checkpoint into a module strictly: every module tensor must be found, every
/// checkpoint tensor under the map's prefix used (or listed as droppable), and every shape
/// must match.
pub fn load_into<M: ModuleSnapshot>(
    module: &mut M,
    checkpoint: &Checkpoint,
    map: &KeyMap,
) -> Result<LoadReport> {
    apply_checkpoint(module, checkpoint, map)?.strict(checkpoint)
}

/// The most parameters one network built from a configuration may have: 2³², 16 GiB of f32
/// weights (the SD 2.1 UNet has 0.87 G). Configurations come from users' files
/// (`--model-config`, training configs); each config's `validate` counts the parameters its
/// `init` would create and refuses more than this, instead of letting `init` try to allocate
/// terabytes.
pub const MAX_PARAMS: u64 = 1 << 32;

/// A parameter count computed from an untrusted configuration: additions and
/// multiplications saturate instead of overflowing, so any count past [`MAX_PARAMS`] is
/// refused by [`check`](Self::check) however large the configuration's numbers are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParamCount(pub u128);

impl ParamCount {
    /// The number of elements of a tensor of shape `dims`.
    pub fn of(dims: &[usize]) -> Self {
        Self(dims.iter().fold(1u128, |n, d| n.saturating_mul(*d as u128)))
    }

    /// A weight of shape `dims` with a bias of `dims[0]` elements (when `bias`), as
    /// `[out, in, k, k]` convs and `[out, in]` linears have.
    pub fn layer(dims: &[usize], bias: bool) -> Self {
        let bias = if bias {
            dims.first().copied().unwrap_or(0)
        } else {
            0
        };
        Self::of(dims) + Self::of(&[bias])
    }

    /// `self` repeated `n` times.
    pub fn times(self, n: usize) -> Self {
        Self(self.0.saturating_mul(n as u128))
    }

    /// An error naming `what` when the count exceeds [`MAX_PARAMS`].
    pub fn check(self, what: &str) -> Result<()> {
        if self.0 > u128::from(MAX_PARAMS) {
            let shown = if self.0 == u128::MAX {
                "an overflowing number of".to_string()
            } else {
                format!("{}", self.0)
            };
            return Err(Error::InvalidArgument {
                what: what.into(),
                reason: format!(
                    "the network would have {shown} parameters, more than the {MAX_PARAMS} \
                     (16 GiB as f32) a configuration may ask for"
                ),
            });
        }
        Ok(())
    }
}

impl std::ops::Add for ParamCount {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl std::ops::AddAssign for ParamCount {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl std::iter::Sum for ParamCount {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self(0), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::write_safetensors;
    use burn::module::Module;
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

    #[test]
    fn rules_invert_to_the_official_keys() {
        let rule = |pattern, replacement, example| KeyRule {
            pattern,
            replacement,
            why: "test",
            example,
        };
        let map = KeyMap {
            name: "test",
            prefix: "model.",
            rules: &[],
            droppable: &[],
        };
        for (r, path, key) in [
            (
                rule(
                    r"\.in_layers\.0\.",
                    ".in_norm.",
                    ("a.in_layers.0.w", "a.in_norm.w"),
                ),
                "b.in_norm.bias",
                "model.b.in_layers.0.bias",
            ),
            (
                rule(r"^out\.2\.", "out_conv.", ("out.2.w", "out_conv.w")),
                "out_conv.w",
                "model.out.2.w",
            ),
            (
                rule(r"\.RDB([123])\.", ".rdb$1.", ("t.0.RDB2.c", "t.0.rdb2.c")),
                "t.4.rdb3.conv1.weight",
                "model.t.4.RDB3.conv1.weight",
            ),
        ] {
            let rules = Box::leak(Box::new([r]));
            let map = KeyMap { rules, ..map };
            map.check_examples().unwrap();
            assert_eq!(map.official_key(path).unwrap(), key);
            assert_eq!(map.rename(key).unwrap(), path);
        }
        for (pattern, replacement) in [
            (r"\.a.*\.", ".b."),
            (r"\.(x)(y)\.", ".$2$1."),
            (r"\.a\.", "$x"),
        ] {
            let r = rule(pattern, replacement, ("", ""));
            assert_eq!(r.inverse(), None, "{pattern} → {replacement}");
        }
    }

    #[derive(Module, Debug)]
    struct Block {
        in_norm: GroupNorm,
        in_conv: Conv2d,
    }

    #[derive(Module, Debug)]
    struct Tiny {
        blocks: Vec<Block>,
        proj: Linear,
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            blocks: vec![Block {
                in_norm: GroupNormConfig::new(2, 4).init(device),
                in_conv: Conv2dConfig::new([4, 4], [3, 3]).init(device),
            }],
            proj: LinearConfig::new(4, 3).init(device),
        }
    }

    const RULES: &[KeyRule] = &[
        KeyRule {
            pattern: r"\.in_layers\.0\.",
            replacement: ".in_norm.",
            why: "Sequential index 0 of in_layers is the GroupNorm",
            example: ("blocks.0.in_layers.0.weight", "blocks.0.in_norm.weight"),
        },
        KeyRule {
            pattern: r"\.in_layers\.2\.",
            replacement: ".in_conv.",
            why: "Sequential index 2 of in_layers is the conv (1 is the SiLU)",
            example: ("blocks.0.in_layers.2.bias", "blocks.0.in_conv.bias"),
        },
    ];

    const MAP: KeyMap = KeyMap {
        name: "tiny",
        prefix: "model.",
        rules: RULES,
        droppable: &[r"^ema_decay$"],
    };

    fn full_checkpoint() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        vec![
            ("model.blocks.0.in_layers.0.weight", vec![4], vec![2.0; 4]),
            ("model.blocks.0.in_layers.0.bias", vec![4], vec![0.5; 4]),
            (
                "model.blocks.0.in_layers.2.weight",
                vec![4, 4, 3, 3],
                vec![0.1; 144],
            ),
            ("model.blocks.0.in_layers.2.bias", vec![4], vec![0.0; 4]),
            // PyTorch Linear layout [out, in]; the adapter transposes it.
            (
                "model.proj.weight",
                vec![3, 4],
                (0..12).map(|i| i as f32).collect(),
            ),
            ("model.proj.bias", vec![3], vec![1.0, 2.0, 3.0]),
            ("model.ema_decay", vec![1], vec![0.999]),
            ("first_stage_model.other", vec![2], vec![0.0; 2]),
        ]
    }

    fn open(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> (tempfile::TempDir, Checkpoint) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        write_safetensors(&p, tensors);
        let ckpt = Checkpoint::open(&p).unwrap();
        (dir, ckpt)
    }

    #[test]
    fn rule_examples_hold() {
        MAP.check_examples().unwrap();
        assert_eq!(
            MAP.rename("model.blocks.0.in_layers.2.weight").as_deref(),
            Some("blocks.0.in_conv.weight")
        );
        assert_eq!(MAP.rename("first_stage_model.x"), None);
    }

    #[test]
    fn a_broken_example_is_reported() {
        const BAD: KeyMap = KeyMap {
            name: "bad",
            prefix: "",
            rules: &[KeyRule {
                pattern: "a",
                replacement: "b",
                why: "test",
                example: ("a", "c"),
            }],
            droppable: &[],
        };
        assert!(
            BAD.check_examples()
                .unwrap_err()
                .contains("its example says")
        );
    }

    #[test]
    fn strict_load_applies_everything() {
        let device = Device::flex();
        let (_dir, ckpt) = open(&full_checkpoint());
        let mut m = tiny(&device);
        let report = load_into(&mut m, &ckpt, &MAP).unwrap();
        assert_eq!(report.applied.len(), 6);
        assert_eq!(report.dropped, ["model.ema_decay"]);
        assert_eq!(report.outside_prefix, 1);
        assert_eq!(report.to_string(), "mapped 6 tensors, 0 missing, 0 unused");
        let gamma: Vec<f32> = m.blocks[0]
            .in_norm
            .gamma
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(gamma, vec![2.0; 4]);
        // Linear weights are stored [in, out] in burn: the transpose of the file's [out, in].
        let w = m.proj.weight.val();
        assert_eq!(w.dims(), [4, 3]);
        let x = Tensor::<2>::from_floats([[1.0, 0.0, 0.0, 0.0]], &device);
        let y: Vec<f32> = m.proj.forward(x).into_data().try_to_vec().unwrap();
        assert_eq!(y, vec![0.0 + 1.0, 4.0 + 2.0, 8.0 + 3.0]);
    }

    #[test]
    fn missing_unused_and_misshaped_tensors_fail_with_their_keys() {
        let device = Device::flex();
        let mut tensors = full_checkpoint();
        tensors.retain(|(k, _, _)| *k != "model.proj.bias");
        tensors.push(("model.extra.weight", vec![2], vec![0.0; 2]));
        tensors[2].1 = vec![4, 4, 1, 1];
        tensors[2].2 = vec![0.1; 16];
        let (_dir, ckpt) = open(&tensors);
        let err = load_into(&mut tiny(&device), &ckpt, &MAP).unwrap_err();
        let Error::WeightsMismatch { report, .. } = &err else {
            panic!("unexpected error {err}");
        };
        assert_eq!(report.missing, ["proj.bias"]);
        assert_eq!(report.unused, ["extra.weight"]);
        assert_eq!(report.mismatched.len(), 1);
        assert!(
            report.mismatched[0].contains("blocks.0.in_conv.weight"),
            "{:?}",
            report.mismatched
        );
        let text = err.to_string();
        assert!(
            text.contains("proj.bias") && text.contains("extra.weight"),
            "{text}"
        );
    }

    #[test]
    fn colliding_renames_are_refused() {
        const COLLIDE: KeyMap = KeyMap {
            name: "collide",
            prefix: "",
            rules: &[KeyRule {
                pattern: r"^(a|b)$",
                replacement: "c",
                why: "test",
                example: ("a", "c"),
            }],
            droppable: &[],
        };
        let (_dir, ckpt) = open(&[("a", vec![1], vec![0.0]), ("b", vec![1], vec![0.0])]);
        let err = apply_checkpoint(&mut tiny(&Device::flex()), &ckpt, &COLLIDE).unwrap_err();
        assert!(matches!(err, Error::KeyCollision { .. }), "{err}");
    }
}
