//! The layers of a `TimestepEmbedSequential`
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py:L34-L110`: it and `Upsample`,
//! `Downsample`), how a block runs, and how blocks are cast.

use burn::module::Module;
use burn::tensor::module::avg_pool2d;
use burn::tensor::{DType, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::resize::upsample_nearest2x;
use diffbir_core::{Precision, cast_module};

use super::resblock::{ResBlock, pool2};
use super::transformer::SpatialTransformer;

/// Stride-2 downsampling (`op`: a 3×3 conv with padding 1, or 2×2 average pooling).
#[derive(Module, Debug)]
pub struct Downsample {
    /// The conv (with `conv_resample`).
    pub op: Option<Conv2d>,
}

/// Nearest ×2 upsampling, then an optional 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    /// The conv (with `conv_resample`).
    pub conv: Option<Conv2d>,
}

/// One entry of a `TimestepEmbedSequential`.
#[derive(Module, Debug)]
pub enum LdmLayer {
    /// The input conv (`input_blocks.0.0`).
    Conv(Conv2d),
    /// A residual block.
    Res(ResBlock),
    /// A spatial transformer.
    Transformer(SpatialTransformer),
    /// Downsampling.
    Down(Downsample),
    /// Upsampling.
    Up(Upsample),
}

/// Casts blocks to `precision` the way DiffBIR's `ControlLDM.cast_dtype` does: everything
/// but the `GroupNorm32` layers of the residual blocks, which stay in f32.
pub fn cast_blocks(blocks: Vec<Vec<LdmLayer>>, precision: Precision) -> Vec<Vec<LdmLayer>> {
    blocks
        .into_iter()
        .map(|block| cast_block(block, precision))
        .collect()
}

/// [`cast_blocks`] for one block.
pub fn cast_block(block: Vec<LdmLayer>, precision: Precision) -> Vec<LdmLayer> {
    block
        .into_iter()
        .map(|layer| match cast_module(layer, precision) {
            LdmLayer::Res(mut res) => {
                res.in_norm = cast_module(res.in_norm, Precision::F32);
                res.out_norm = cast_module(res.out_norm, Precision::F32);
                LdmLayer::Res(res)
            }
            other => other,
        })
        .collect()
}

/// The dtype the blocks compute in (that of the first block's weights).
pub fn blocks_dtype(blocks: &[Vec<LdmLayer>]) -> DType {
    match blocks.first().and_then(|b| b.first()) {
        Some(LdmLayer::Conv(conv)) => conv.weight.val().dtype(),
        _ => DType::F32,
    }
}

/// Runs one `TimestepEmbedSequential`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`; `emb`: `[B, E]`; `context`: `[B, M, D]`
pub fn run_block(
    layers: &[LdmLayer],
    x: Tensor<4>,
    emb: &Tensor<2>,
    context: &Tensor<3>,
) -> Tensor<4> {
    layers.iter().fold(x, |x, layer| match layer {
        LdmLayer::Conv(c) => c.forward(x),
        LdmLayer::Res(r) => r.forward(x, emb),
        LdmLayer::Transformer(t) => t.forward(x, context),
        LdmLayer::Down(d) => match &d.op {
            Some(c) => c.forward(x),
            None => avg_pool2d(x, pool2()),
        },
        LdmLayer::Up(u) => {
            let x = upsample_nearest2x(x);
            match &u.conv {
                Some(c) => c.forward(x),
                None => x,
            }
        }
    })
}
