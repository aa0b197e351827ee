//! The bridge between burn-flex tensors and the kernels: taking a tensor's f32 buffer when it
//! is a plain (untracked, f32) flex tensor, and wrapping a result back.
//!
//! The functions hand their operands back (`Err`) when the kernels do not apply, for burn's
//! operation; those tensors are large values, but boxing them would allocate on every call.
#![allow(clippy::result_large_err)]

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape, Tensor};

use super::activation::silu_in_place;
use super::attention::{Strided, attention as attention_kernel};
use super::conv::{ConvGeometry, conv2d as conv2d_kernel};
use super::microkernel::Isa;

/// The flex tensor inside `t`, when `t` is an f32 flex tensor that autodiff does not track;
/// otherwise `t` back.
fn flex_f32<const D: usize>(t: Tensor<D>) -> Result<FlexTensor, Tensor<D>> {
    match t.into_dispatch() {
        DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(flex)),
            autodiff: DispatchAutodiffContext::Disabled,
        } if flex.dtype() == DType::F32 => Ok(flex),
        other => Err(Tensor::from_dispatch(other)),
    }
}

/// A contiguous copy of `t` unless it already is one.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// A flex tensor as a tensor.
fn from_flex<const D: usize>(flex: FlexTensor) -> Tensor<D> {
    Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(BackendTensor::Float(flex)),
        autodiff: DispatchAutodiffContext::Disabled,
    })
}

/// The tensor back, whether it was taken apart or not.
fn back<const D: usize>(t: Result<FlexTensor, Tensor<D>>) -> Tensor<D> {
    t.map_or_else(|t| t, from_flex)
}

/// Wraps `data` as an f32 flex tensor of `shape`.
fn wrap<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    from_flex(FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::new(shape)),
        DType::F32,
    ))
}

type Operands = (Tensor<4>, Tensor<4>, Option<Tensor<1>>);

/// The convolution on the kernels, or the operands back when they do not apply.
pub(super) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
) -> Result<Tensor<4>, Operands> {
    let Some(isa) = Isa::detect() else {
        return Err((x, weight, bias));
    };
    let [batch, cin, h, w] = x.dims();
    let [cout, wcin, kh, kw] = weight.dims();
    let output = ConvGeometry::output_size(
        [h, w],
        [kh, kw],
        options.stride,
        options.padding,
        options.dilation,
    );
    let (Some(output), 1) = (output, options.groups) else {
        return Err((x, weight, bias));
    };
    // A 1×1, stride-1, unpadded convolution is a plain GEMM on the image, which flex runs
    // without packing it, faster than packing it for ours (benchmarks.md, `unet-1x1-320`).
    if [kh, kw] == [1, 1] && options.stride == [1, 1] && options.padding == [(0, 0); 2] {
        return Err((x, weight, bias));
    }
    if wcin != cin || bias.as_ref().is_some_and(|b| b.dims() != [cout]) {
        return Err((x, weight, bias));
    }
    // Take the buffers, giving every operand back if one is not a plain f32 flex tensor.
    let (x, weight, bias) = match (
        flex_f32(x),
        flex_f32(weight),
        bias.map(flex_f32).transpose(),
    ) {
        (Ok(x), Ok(weight), Ok(bias)) => (x, weight, bias),
        (x, weight, bias) => {
            let bias = match bias {
                Ok(bias) => bias.map(from_flex),
                Err(bias) => Some(bias),
            };
            return Err((back(x), back(weight), bias));
        }
    };
    let geometry = ConvGeometry {
        cin,
        input: [h, w],
        kernel: [kh, kw],
        stride: options.stride,
        pad_before: [options.padding[0].0, options.padding[1].0],
        dilation: options.dilation,
        output,
    };
    let (x, weight, bias) = (contiguous(x), contiguous(weight), bias.map(contiguous));
    let mut out = vec![0f32; batch * cout * output[0] * output[1]];
    conv2d_kernel(
        isa,
        &geometry,
        x.as_slice().expect("contiguous"),
        weight.as_slice().expect("contiguous"),
        bias.as_ref().map(|b| b.as_slice().expect("contiguous")),
        &mut out,
    );
    Ok(wrap(out, [batch, cout, output[0], output[1]]))
}

/// The shape, strides and offset of an operand of [`attention`], when the kernel can read it
/// in place (its last dimension contiguous, no negative strides).
fn strided(t: &FlexTensor) -> Option<([usize; 4], [usize; 3], usize)> {
    let layout = t.layout();
    let shape: [usize; 4] = layout.shape().dims::<4>();
    let strides = layout.strides();
    (strides.len() == 4
        && (strides[3] == 1 || shape[3] <= 1)
        && strides[..3].iter().all(|&s| s >= 0))
    .then(|| {
        let s = [
            strides[0] as usize,
            strides[1] as usize,
            strides[2] as usize,
        ];
        (shape, s, layout.start_offset())
    })
}

/// Attention on the kernels, or the operands back when they do not apply.
pub(super) fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f32,
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>, Tensor<4>)> {
    let Some(isa) = Isa::detect() else {
        return Err((q, k, v));
    };
    let (q, k, v) = match (flex_f32(q), flex_f32(k), flex_f32(v)) {
        (Ok(q), Ok(k), Ok(v)) => (q, k, v),
        (q, k, v) => return Err((back(q), back(k), back(v))),
    };
    let operand = |t: FlexTensor| match strided(&t) {
        Some(_) => t,
        None => t.to_contiguous(),
    };
    let (q, k, v) = (operand(q), operand(k), operand(v));
    fn view(t: &FlexTensor) -> Strided<'_> {
        let (shape, strides, offset) = strided(t).expect("contiguous in the last dimension");
        Strided {
            data: t.storage::<f32>(),
            shape,
            strides,
            offset,
        }
    }
    let (qv, kv, vv) = (view(&q), view(&k), view(&v));
    let [batch, heads, lq, _] = qv.shape;
    let dv = vv.shape[3];
    let mut out = vec![0f32; batch * heads * lq * dv];
    attention_kernel(isa, qv, kv, vv, scale, &mut out);
    Ok(wrap(out, [batch, heads, lq, dv]))
}

/// SiLU on the kernel (in place when `x` owns its buffer), or `x` back.
pub(super) fn silu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    let Some(isa) = Isa::detect() else {
        return Err(x);
    };
    let mut x = contiguous(flex_f32(x)?);
    let shape = x.layout().shape().clone();
    if let Some(buffer) = x.try_storage_mut::<f32>()
        && buffer.len() == shape.num_elements()
    {
        silu_in_place(isa, buffer);
        return Ok(from_flex(x));
    }
    let mut out = x.as_slice::<f32>().expect("contiguous").to_vec();
    silu_in_place(isa, &mut out);
    Ok(from_flex(FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )))
}
