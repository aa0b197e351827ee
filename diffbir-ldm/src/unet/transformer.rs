//! The spatial transformer and its blocks (`CrossAttention`, `FeedForward`,
//! `BasicTransformerBlock`, `SpatialTransformer` of
//! `XPixelGroup/DiffBIR@3f8b530:diffbir/model/attention.py:L19-L353`).

use burn::module::Module;
use burn::nn::{GroupNorm, LayerNorm};
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use burn::tensor::ops::AttentionModuleOptions;
use diffbir_core::kernels::{Conv2d, Linear, attention};

/// Multi-head attention with bias-free q/k/v projections (`to_out.0` has a bias).
#[derive(Module, Debug)]
pub struct CrossAttention {
    /// Query projection.
    pub to_q: Linear,
    /// Key projection (from the context in cross-attention).
    pub to_k: Linear,
    /// Value projection.
    pub to_v: Linear,
    /// `to_out.0` (`to_out.1` is a dropout).
    pub to_out: Vec<Linear>,
    pub(super) heads: usize,
}

impl CrossAttention {
    /// # Shapes
    /// - `x`: `[B, N, C]`; `context`: `[B, M, D]`; returns `[B, N, C]`
    pub fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let heads = self.heads;
        let split = |t: Tensor<3>| {
            let [b, l, inner] = t.dims();
            t.reshape([b, l, heads, inner / heads]).swap_dims(1, 2)
        };
        let q = split(self.to_q.forward(x));
        let k = split(self.to_k.forward(context.clone()));
        let v = split(self.to_v.forward(context));
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        let [_, _, _, d] = out.dims();
        self.to_out[0].forward(out.swap_dims(1, 2).reshape([b, n, heads * d]))
    }
}

/// GEGLU feed-forward: `[a | g] = geglu(x)`, `out(a · GELU(g))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `net.0.proj`: `C → 8C` (value half first, then the gate half).
    pub geglu: Linear,
    /// `net.2`: `4C → C`.
    pub out: Linear,
}

/// Self-attention, cross-attention and feed-forward, each pre-normed with a residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    /// Self-attention (or cross-attention when self-attention is disabled).
    pub attn1: CrossAttention,
    /// Feed-forward.
    pub ff: FeedForward,
    /// Cross-attention over the context.
    pub attn2: CrossAttention,
    /// Before `attn1`.
    pub norm1: LayerNorm,
    /// Before `attn2`.
    pub norm2: LayerNorm,
    /// Before `ff`.
    pub norm3: LayerNorm,
    pub(super) self_attn: bool,
}

impl BasicTransformerBlock {
    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let kv = if self.self_attn {
            h.clone()
        } else {
            context.clone()
        };
        let x = self.attn1.forward(h, kv) + x;
        let x = self
            .attn2
            .forward(self.norm2.forward(x.clone()), context.clone())
            + x;
        let h = self.ff.geglu.forward(self.norm3.forward(x.clone()));
        let [b, n, c8] = h.dims();
        let value = h.clone().slice([0..b, 0..n, 0..c8 / 2]);
        let gate = h.slice([0..b, 0..n, c8 / 2..c8]);
        self.ff.out.forward(value * gelu(gate)) + x
    }
}

/// A projection into or out of a spatial transformer.
#[derive(Module, Debug)]
pub enum Projection {
    /// `use_linear_in_transformer`.
    Linear(Linear),
    /// 1×1 conv.
    Conv(Conv2d),
}

/// Transformer over the pixels of a feature map, with cross-attention to the context.
#[derive(Module, Debug)]
pub struct SpatialTransformer {
    /// GroupNorm(32, eps 1e-6) (a plain GroupNorm, not the f32 one).
    pub norm: GroupNorm,
    /// Projection in.
    pub proj_in: Projection,
    /// Transformer blocks.
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    /// Projection out.
    pub proj_out: Projection,
}

impl SpatialTransformer {
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; `context`: `[B, M, D]`; returns `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let hn = self.norm.forward(x.clone());
        let to_tokens = |t: Tensor<4>| {
            let [_, ch, _, _] = t.dims();
            t.reshape([b, ch, h * w]).swap_dims(1, 2)
        };
        let mut tokens = match &self.proj_in {
            Projection::Linear(l) => l.forward(to_tokens(hn)),
            Projection::Conv(cv) => to_tokens(cv.forward(hn)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Linear(l) => {
                let t = l.forward(tokens);
                t.swap_dims(1, 2).reshape([b, c, h, w])
            }
            Projection::Conv(cv) => {
                let [_, _, inner] = tokens.dims();
                cv.forward(tokens.swap_dims(1, 2).reshape([b, inner, h, w]))
            }
        };
        out + x
    }
}
