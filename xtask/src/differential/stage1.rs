//! Stage-1 families: SwinIR, RRDBNet and SCUNet forward passes.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffbir::rm::swinir::{ResiConnection, Upsampler};
use diffbir::rm::{RrdbNetConfig, ScuNetConfig, SwinIrConfig};

use super::draw::{self, Draw};
use super::{Case, MAX_PARAMS, dims, draw_until, moved, output};

/// SwinIR: every head (none, pixel shuffle, direct, nearest+conv, and DiffBIR's unshuffled
/// stem), window sizes with and without shifted windows, odd input sizes (reflect-padded to
/// the window), the absolute position embedding, 1- and 3-conv residual connections, 1 or 3
/// channels.
pub fn swinir(d: &mut Draw) -> Result<Case> {
    let (cfg, shape) = draw_until(d, |d| {
        let window = d.pick(&[2, 4, 5, 8]);
        let groups = d.range(1, 3);
        let depths: Vec<usize> = (0..groups).map(|_| d.range(1, 2)).collect();
        let heads: Vec<usize> = (0..groups).map(|_| d.pick(&[1, 2, 3, 4])).collect();
        let (upsampler, sf, unshuffle) = match d.range(0, 4) {
            0 => (Upsampler::None, 1, false),
            1 => (Upsampler::PixelShuffle, d.pick(&[2, 3, 4]), false),
            2 => (Upsampler::PixelShuffleDirect, d.pick(&[2, 3]), false),
            3 => (Upsampler::NearestConv, d.pick(&[2, 4]), false),
            _ => (Upsampler::NearestConv, d.pick(&[2, 4]), true),
        };
        // Larger than the window: the blocks alternate plain and shifted windows.
        let img_size = window * d.pick(&[2, 3]);
        let cfg = SwinIrConfig::new()
            .with_img_size(img_size)
            .with_in_chans(d.pick(&[1, 3]))
            .with_embed_dim(d.pick(&[12, 16, 24, 32]))
            .with_depths(depths)
            .with_num_heads(heads)
            .with_window_size(window)
            .with_mlp_ratio(d.pick(&[1.0, 2.0, 4.0]))
            .with_qkv_bias(d.coin())
            .with_ape(d.chance(0.25))
            .with_patch_norm(d.coin())
            .with_sf(sf)
            .with_img_range(d.pick(&[1.0, 255.0]))
            .with_upsampler(upsampler)
            .with_resi_connection(d.pick(&[ResiConnection::OneConv, ResiConnection::ThreeConv]))
            .with_unshuffle(unshuffle)
            .with_unshuffle_scale(unshuffle.then_some(sf));
        cfg.validate().ok()?;
        // The trunk tiles its input into windows: the forward reflect-pads to the window, the
        // unshuffled stem needs multiples of sf·window, the position embedding exactly the
        // training size.
        let side = |d: &mut Draw| match (cfg.ape, unshuffle) {
            (true, true) => img_size * sf,
            (true, false) => d.range(img_size - window + 1, img_size),
            (false, true) => sf * window * d.range(1, 2),
            (false, false) => d.range(window, 20),
        };
        let (h, w) = (side(d), side(d));
        let out = if unshuffle { 1 } else { sf };
        if h.max(w) > 48 || h.max(w) * out > 96 {
            return None;
        }
        if cfg.init(&Device::flex()).num_params() > MAX_PARAMS {
            return None;
        }
        let shape = [d.range(1, 2), cfg.in_chans, h, w];
        Some((cfg, shape))
    })?;
    let config = format!(
        "emb={} depths={:?} heads={:?} win={} img={} mlp={} qkv_bias={} ape={} patch_norm={} resi={:?} up={:?}x{}{} range={} x={}",
        cfg.embed_dim,
        cfg.depths,
        cfg.num_heads,
        cfg.window_size,
        cfg.img_size,
        cfg.mlp_ratio,
        cfg.qkv_bias,
        cfg.ape,
        cfg.patch_norm,
        cfg.resi_connection,
        cfg.upsampler,
        cfg.sf,
        if cfg.unshuffle { " unshuffle" } else { "" },
        cfg.img_range,
        dims(&shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    Ok(image_case(d, config, model, shape, |m, x| m.forward(x)))
}

/// RRDBNet (BSRNet): width, blocks, growth, ×2 or ×4, channels, odd input sizes.
pub fn rrdbnet(d: &mut Draw) -> Result<Case> {
    let (cfg, shape) = draw_until(d, |d| {
        let cfg = RrdbNetConfig::new()
            .with_in_nc(d.pick(&[1, 3]))
            .with_out_nc(d.pick(&[1, 3]))
            .with_nf(d.pick(&[8, 16, 24]))
            .with_nb(d.range(1, 2))
            .with_gc(d.pick(&[4, 8, 12]))
            .with_sf(d.pick(&[2, 4]));
        cfg.validate().ok()?;
        if cfg.init(&Device::flex()).num_params() > MAX_PARAMS {
            return None;
        }
        let side = |d: &mut Draw| d.range(5, 48 / cfg.sf);
        Some((cfg.clone(), [d.range(1, 2), cfg.in_nc, side(d), side(d)]))
    })?;
    let config = format!(
        "nf={} nb={} gc={} sf={} in={} out={} x={}",
        cfg.nf,
        cfg.nb,
        cfg.gc,
        cfg.sf,
        cfg.in_nc,
        cfg.out_nc,
        dims(&shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    Ok(image_case(d, config, model, shape, |m, x| m.forward(x)))
}

/// SCUNet: width, head size, window, blocks per stage, the training resolution (which decides
/// the shifted blocks), odd input sizes (edge-padded to 64 inside).
pub fn scunet(d: &mut Draw) -> Result<Case> {
    let (cfg, shape) = draw_until(d, |d| {
        let cfg = ScuNetConfig::new()
            .with_in_nc(d.pick(&[1, 3]))
            .with_config((0..7).map(|_| d.range(1, 2)).collect())
            .with_dim(d.pick(&[4, 8, 12, 16]))
            .with_head_dim(d.pick(&[1, 2, 3, 4]))
            // Every stage (64² down to 8² inside) must tile into windows.
            .with_window_size(d.pick(&[2, 4, 8]))
            .with_input_resolution(d.pick(&[32, 64, 256]));
        cfg.validate().ok()?;
        if cfg.init(&Device::flex()).num_params() > MAX_PARAMS {
            return None;
        }
        let side = |d: &mut Draw| d.range(9, 48);
        Some((cfg.clone(), [d.range(1, 2), cfg.in_nc, side(d), side(d)]))
    })?;
    let config = format!(
        "dim={} head_dim={} win={} blocks={:?} res={} in={} x={}",
        cfg.dim,
        cfg.head_dim,
        cfg.window_size,
        cfg.config,
        cfg.input_resolution,
        cfg.in_nc,
        dims(&shape)
    );
    let model = d.weights(cfg.init(&Device::flex()));
    Ok(image_case(d, config, model, shape, |m, x| m.forward(x)))
}

/// A case running `forward` of a stage-1 network on an input drawn in `[0, 1]`.
fn image_case<M: Module + 'static>(
    d: &mut Draw,
    config: String,
    model: M,
    shape: [usize; 4],
    forward: fn(&M, Tensor<4>) -> Tensor<4>,
) -> Case {
    let x = d.uniform_data(&shape, 0.0, 1.0);
    let params = model.num_params();
    Case::new(config, move |device, setting| {
        let model = moved(&model, device, setting);
        let y = forward(&model, draw::float(&x, device, setting.dtype()));
        Ok(vec![output("y", y)?])
    })
    .params(params)
}
