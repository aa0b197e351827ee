//! The analytic stand-in models the reference cases use instead of a network.

use burn::tensor::{Int, Tensor};

/// The stand-in of the tiling case, as its JSON states it.
pub const TILED_FORMULA: &str = "out = 0.8*tanh(x)*(1 - 0.5*tt) + 0.3*c_img + 0.2*ctx + 0.1*tt, tt = float32(t)/1000 reshaped [B,1,1,1], ctx = mean(c_txt over dims 1,2) reshaped [B,1,1,1]";

/// `0.8·tanh(x)·(1 − 0.5·tt) + 0.3·c_img + 0.2·ctx + 0.1·tt`, with `tt = t/1000` and `ctx` the
/// mean of the text context per batch item.
///
/// # Shapes
/// - `x`, `c_img`: `[B, C, H, W]`; `t`: `[B]`; `c_txt`: `[B, L, D]`
pub fn tiled_standin(
    x: Tensor<4>,
    t: &Tensor<1, Int>,
    c_txt: &Tensor<3>,
    c_img: Tensor<4>,
) -> Tensor<4> {
    let [b, _, _, _] = x.dims();
    let tt = t.clone().float().div_scalar(1000.0).reshape([b, 1, 1, 1]);
    let ctx = c_txt.clone().mean_dim(2).mean_dim(1).reshape([b, 1, 1, 1]);
    let one_minus = tt.clone().mul_scalar(-0.5).add_scalar(1.0);
    x.tanh().mul_scalar(0.8) * one_minus
        + c_img.mul_scalar(0.3)
        + ctx.mul_scalar(0.2)
        + tt.mul_scalar(0.1)
}
