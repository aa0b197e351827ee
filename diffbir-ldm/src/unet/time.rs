//! The sinusoidal timestep embedding
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/util.py:L128-L148`) and the time MLP.

use burn::tensor::{Int, Tensor};
use diffbir_core::kernels::{Linear, silu};

/// The sinusoidal timestep embedding (cos first, then sin), `t` possibly fractional.
///
/// # Shapes
/// - `t`: `[B]`; returns `[B, dim]`
pub fn timestep_embedding(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let device = t.device();
    let freqs = Tensor::<1, Int>::arange(0..half as i64, &device)
        .float()
        .div_scalar(half as f64)
        .mul_scalar(-(10000f64.ln()))
        .exp();
    let [b] = t.dims();
    let args = t.reshape([b, 1]) * freqs.reshape([1, half]);
    let emb = Tensor::cat(vec![args.clone().cos(), args.sin()], 1);
    if dim % 2 == 1 {
        Tensor::cat(vec![emb, Tensor::zeros([b, 1], &device)], 1)
    } else {
        emb
    }
}

/// Applies `time_embed` to the sinusoidal embedding of `t`.
pub fn embed_time(time_embed: &[Option<Linear>], t: Tensor<1>, model_channels: usize) -> Tensor<2> {
    let mut layers = time_embed.iter().flatten();
    let (l0, l2) = (
        layers.next().expect("time_embed.0"),
        layers.next().expect("time_embed.2"),
    );
    l2.forward(silu(l0.forward(timestep_embedding(t, model_channels))))
}
