//! CPU kernels for the operations that dominate the networks, with burn's operations as the
//! fallback.
//!
//! burn-flex, burn's CPU backend, computes convolutions through the `gemm` crate on NHWC
//! im2col tiles. The functions here take the flex tensors' host buffers (no copy: burn's
//! `extension` API hands out the backend primitive) and run this module's own kernels on them:
//!
//! - [`conv2d`]: an implicit-GEMM convolution on NCHW data ([`conv`]) over register-blocked
//!   AVX-512 / AVX2 micro-kernels chosen at run time ([`microkernel`], [`gemm`]);
//! - [`linear()`]: a linear layer as one GEMM with a bias per column ([`linear`](mod@linear));
//! - [`attention()`]: scaled dot-product attention on the same GEMM with a vectorised softmax
//!   ([`attention`](mod@attention));
//! - [`silu`]: SiLU with a vectorised `exp`, in place when the tensor is not shared
//!   ([`activation`]).
//!
//! They compute in f32, and in bf16 (f32 accumulation) on CPUs with AVX-512 BF16: a model
//! cast to bf16 runs its convolutions and linear layers on the bf16 micro-kernel, its attention
//! and SiLU widened to f32.
//!
//! Anything else (masks, biases or other options of attention, another backend such as wgpu or
//! CUDA, a tensor tracked by autodiff, f16, bf16 without AVX-512 BF16, grouped convolutions, a
//! CPU without AVX2 + FMA) goes to burn's own operation, so a model calls these functions
//! unconditionally. [`Conv2d`] and [`Linear`] are drop-ins for burn's modules that do so. `DIFFBIR_KERNELS=off` turns the kernels off (and `=avx2` picks the AVX2 ones on an
//! AVX-512 CPU), for comparisons.

pub mod activation;
pub mod attention;
pub mod conv;
pub mod gemm;
pub mod linear;
pub mod microkernel;
mod module;

pub use module::{Conv2d, Linear};

use burn::tensor::Tensor;
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};

/// `burn::tensor::module::conv2d`, on this module's kernels where they apply.
///
/// # Shapes
///
/// - `x`: `[batch, cin, h, w]`; `weight`: `[cout, cin / groups, kh, kw]`; `bias`: `[cout]`
/// - output: `[batch, cout, oh, ow]`
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::conv2d(x, weight, bias, &options) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// `burn::tensor::module::linear` (`x · weight + bias`, the weight `[d_input, d_output]`), on
/// this module's kernels where they apply.
///
/// # Shapes
///
/// - `x`: `[..., d_input]`; `weight`: `[d_input, d_output]`; `bias`: `[d_output]`
/// - output: `[..., d_output]`
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::linear(x, weight, bias) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    burn::tensor::module::linear(x, weight, bias)
}

/// `burn::tensor::module::attention`, on this module's kernels where they apply (no mask, no
/// bias, no softcap, not causal, a positive scale).
///
/// # Shapes
///
/// - `q`: `[batch, heads, queries, dim]`; `k`: `[batch, heads, keys, dim]`;
///   `v`: `[batch, heads, keys, value_dim]`
/// - output: `[batch, heads, queries, value_dim]`
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, burn::tensor::Bool>>,
    bias: Option<Tensor<4>>,
    options: AttentionModuleOptions,
) -> Tensor<4> {
    let [_, _, _, dim] = q.dims();
    let scale = options.scale.unwrap_or(1.0 / (dim as f64).sqrt());
    let plain = mask.is_none()
        && bias.is_none()
        && options.softcap.is_none()
        && !options.is_causal
        && scale > 0.0
        && k.dims()[2] > 0;
    #[cfg(feature = "flex")]
    let (q, k, v) = if plain {
        match flex::attention(q, k, v, scale as f32) {
            Ok(out) => return out,
            Err(operands) => operands,
        }
    } else {
        (q, k, v)
    };
    #[cfg(not(feature = "flex"))]
    let _ = plain;
    burn::tensor::module::attention(q, k, v, mask, bias, options)
}

/// `burn::tensor::activation::silu`, on this module's kernel where it applies.
///
/// # Shapes
///
/// - `x` and the output: any shape
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    let x = match flex::silu(x) {
        Ok(out) => return out,
        Err(x) => x,
    };
    burn::tensor::activation::silu(x)
}

#[cfg(feature = "flex")]
mod flex;

#[cfg(test)]
mod tests;
