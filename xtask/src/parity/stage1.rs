//! Builders of the stage-1 cases: SwinIR, RRDBNet and SCUNet forward passes, the SwinIR
//! pipeline padding, and tiled stage-1 inference.

use anyhow::{Result, bail};
use burn::tensor::Device;
use diffbir::rm::rrdbnet::BSRNET_KEYS;
use diffbir::rm::scunet::SCUNET_KEYS;
use diffbir::rm::swinir::SWINIR_GENERAL_KEYS;
use diffbir::rm::{Restorer, RrdbNetConfig, ScuNetConfig, Stage1, SwinIrConfig};
use serde_json::Value;

use super::{Case, Outputs, weights};

/// Runs the case's `call` on the network and records `output.y`.
fn run(case: &Case, model: Stage1, device: &Device) -> Result<Outputs> {
    let x = case.float::<4>("input.x", device)?;
    let call = case.field("/call")?.as_str().unwrap_or_default();
    let y = match call {
        "y = model(x)" => match &model {
            Stage1::SwinIr(m) => m.forward(x),
            Stage1::RrdbNet(m) => m.forward(x),
            Stage1::ScuNet(m) => m.forward(x),
        },
        // SwinIRPipeline: zero-pad to the trunk multiple, run, crop back.
        "pipeline_pad64" => model.restore(x),
        "tiled" => {
            let size = case.usize_field("/tile/size")?;
            let stride = case.usize_field("/tile/stride")?;
            let scale = case.json.pointer("/tile/scale").and_then(Value::as_u64);
            if let Some(scale) = scale.filter(|s| *s as usize != model.scale()) {
                bail!(
                    "the case tiles with scale {scale}, the network upscales by {}",
                    model.scale()
                );
            }
            model.restore_tiled(x, size, stride)?
        }
        other => bail!("unknown call `{other}`"),
    };
    let mut out = Outputs::default();
    out.tensor("output.y", y);
    Ok(out)
}

/// `swinir_forward`.
pub fn swinir(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(SwinIrConfig::new())?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &SWINIR_GENERAL_KEYS)?;
    run(case, Stage1::SwinIr(model), device)
}

/// `rrdbnet_forward`.
pub fn rrdbnet(case: &Case, device: &Device) -> Result<Outputs> {
    let cfg = case.config(RrdbNetConfig::new())?;
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &BSRNET_KEYS)?;
    run(case, Stage1::RrdbNet(model), device)
}

/// `scunet_forward`. The case may build the original with `head_dim_override` (its
/// constructor hard-codes 32); that is this port's `head_dim`.
pub fn scunet(case: &Case, device: &Device) -> Result<Outputs> {
    let mut cfg = case.config(ScuNetConfig::new())?;
    if let Some(h) = case
        .json
        .pointer("/config/head_dim_override")
        .and_then(Value::as_u64)
    {
        cfg.head_dim = h as usize;
    }
    cfg.validate()?;
    let mut model = cfg.init(device);
    weights::load(case, &mut model, &SCUNET_KEYS)?;
    run(case, Stage1::ScuNet(model), device)
}
