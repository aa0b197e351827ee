//! The CLIP text encoder family.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use diffbir::ldm::clip::{ClipLayer, ClipTextConfig};

use super::draw::{self, Draw};
use super::{Case, MAX_PARAMS, dims, draw_until, moved, output};

/// The CLIP text tower: width, heads, layers, MLP ratio, vocabulary, context length, last
/// or penultimate layer, random token ids (shorter rows than the context too).
pub fn clip(d: &mut Draw) -> Result<Case> {
    let cfg = draw_until(d, |d| {
        let layers = d.range(1, 3);
        let cfg = ClipTextConfig::new()
            .with_context_length(d.range(4, 20))
            .with_vocab_size(d.range(64, 1000))
            .with_width(d.pick(&[8, 16, 24, 32]))
            .with_heads(d.pick(&[1, 2, 4, 8]))
            .with_layers(layers)
            .with_mlp_ratio(d.pick(&[1.0, 2.0, 4.0]))
            .with_embed_dim(d.pick(&[8, 16]))
            .with_layer(if layers > 1 && d.coin() {
                ClipLayer::Penultimate
            } else {
                ClipLayer::Last
            });
        cfg.validate().ok()?;
        (cfg.init(&Device::flex()).num_params() <= MAX_PARAMS).then_some(cfg)
    })?;
    let shape = [d.range(1, 2), d.range(1, cfg.context_length)];
    let config = format!(
        "width={} heads={} layers={} mlp={} vocab={} ctx={} layer={:?} tokens={}",
        cfg.width,
        cfg.heads,
        cfg.layers,
        cfg.mlp_ratio,
        cfg.vocab_size,
        cfg.context_length,
        cfg.layer,
        dims(&shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    let tokens = d.int_data(&shape, cfg.vocab_size);
    let params = model.num_params();
    Ok(Case::new(config, move |device, setting| {
        let clip = moved(&model, device, setting);
        Ok(vec![output("x", clip.forward(draw::int(&tokens, device)))?])
    })
    .params(params))
}
