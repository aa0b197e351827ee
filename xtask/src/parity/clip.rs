//! Builders of the text-encoder cases: `clip_forward` (the OpenCLIP text tower, from token
//! ids and, where the case lists prompts, from text) and `tokenizer` (the BPE tokenizer).

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor};
use diffbir::ldm::clip::{BPE_VOCAB_FILE, CLIP_EMBEDDER_KEYS, ClipTextConfig, ClipTokenizer};
use serde_json::Value;

use super::{Case, Outputs, weights};

/// The case's `FrozenOpenCLIPEmbedder` arguments at `base` (`/config`, or
/// `/config/clip_cfg` inside a `ControlLDM` config) laid over the original's defaults:
/// `text_cfg` (keys this port does not model are ignored), `embed_dim` and `layer`;
/// `vision_cfg` describes the deleted vision tower and is ignored.
pub(super) fn config_at(case: &Case, base: &str) -> Result<ClipTextConfig> {
    let mut cfg = case.config_at(&format!("{base}/text_cfg"), ClipTextConfig::new())?;
    if let Some(v) = case.json.pointer(&format!("{base}/embed_dim")) {
        cfg.embed_dim = serde_json::from_value(v.clone()).context("`embed_dim`")?;
    }
    if let Some(v) = case.json.pointer(&format!("{base}/layer")) {
        cfg.layer = serde_json::from_value(v.clone()).context("`layer`")?;
    }
    Ok(cfg)
}

fn config(case: &Case) -> Result<ClipTextConfig> {
    config_at(case, "/config")
}

/// The merges file: the case's `vocab_file`, else the one shipped next to the cases.
pub(super) fn tokenizer(case: &Case) -> Result<ClipTokenizer> {
    let file = case
        .json
        .get("vocab_file")
        .and_then(Value::as_str)
        .unwrap_or(BPE_VOCAB_FILE);
    Ok(ClipTokenizer::from_file(case.dir.join(file))?)
}

/// A list of strings of the case's JSON.
fn strings<'a>(case: &'a Case, pointer: &str) -> Result<Vec<&'a str>> {
    case.field(pointer)?
        .as_array()
        .with_context(|| format!("`{pointer}` is not a list"))?
        .iter()
        .map(|s| {
            s.as_str()
                .with_context(|| format!("`{pointer}` holds a non-string"))
        })
        .collect()
}

fn record_ids(out: &mut Outputs, name: &str, ids: Tensor<2, Int>) -> Result<()> {
    let shape = ids.dims().to_vec();
    let values = ids
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_iter()
        .map(|v| v as f64)
        .collect();
    out.values(name, shape, values);
    Ok(())
}

/// `clip_forward`: `z = model(tokens)` on the recorded ids; with `prompts`, also the
/// tokenizer's ids for them and `model.encode(prompts)`.
pub fn clip_forward(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = config(case)?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &CLIP_EMBEDDER_KEYS)?;
    let mut out = Outputs::default();
    let tokens = case.int::<2>("input.tokens", device)?;
    out.tensor("output.z", model.forward(tokens));
    if case.json.get("prompts").is_some() {
        let prompts = strings(case, "/prompts")?;
        let tokenizer = tokenizer(case)?;
        let ids = tokenizer.tokenize_batch(&prompts, model.context_length(), device);
        record_ids(&mut out, "output.tokens_from_prompts", ids)?;
        out.tensor("output.encode_prompts", model.encode(&tokenizer, &prompts));
    }
    Ok(out)
}

/// `tokenizer`: `tokenize(strings, context_length)`; the raw BPE ids of every string and the
/// special-token ids the case records are checked on the way.
pub fn tokenizer_case(case: &Case, device: &Device) -> Result<Outputs> {
    let tokenizer = tokenizer(case)?;
    let texts = strings(case, "/strings")?;
    for (key, actual) in [
        ("sot_token", tokenizer.start_of_text()),
        ("eot_token", tokenizer.end_of_text()),
    ] {
        if let Some(expected) = case.json.get(key).and_then(Value::as_u64)
            && expected != u64::from(actual)
        {
            bail!("{key} is {actual}, the case records {expected}");
        }
    }
    if let Some(recorded) = case.json.get("bpe_ids").and_then(Value::as_array) {
        if recorded.len() != texts.len() {
            bail!(
                "{} strings but {} bpe_ids lists",
                texts.len(),
                recorded.len()
            );
        }
        for (text, ids) in texts.iter().zip(recorded) {
            let expected: Vec<u64> = ids
                .as_array()
                .context("a bpe_ids entry is not a list")?
                .iter()
                .map(|v| v.as_u64().context("a bpe id is not an unsigned integer"))
                .collect::<Result<_>>()?;
            let actual: Vec<u64> = tokenizer.encode(text).into_iter().map(u64::from).collect();
            if actual != expected {
                bail!("encode({text:?}) gives {actual:?}, the case records {expected:?}");
            }
        }
    }
    let context_length = case
        .json
        .get("context_length")
        .and_then(Value::as_u64)
        .map_or(77, |n| n as usize);
    let mut out = Outputs::default();
    record_ids(
        &mut out,
        "output.tokens",
        tokenizer.tokenize_batch(&texts, context_length, device),
    )?;
    Ok(out)
}
