//! The bridge between burn-flex tensors and the kernels: taking a tensor's buffer when it is a
//! plain (untracked, f32 or bf16) flex tensor, and wrapping a result back.
//!
//! The functions hand their operands back (`Err`) when the kernels do not apply, for burn's
//! operation; those tensors are large values, but boxing them would allocate on every call.
#![allow(clippy::result_large_err)]

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape, Tensor};

use super::activation::{silu_bf16_in_place, silu_in_place};
use super::attention::{Strided, attention as attention_kernel};
use super::conv::{ConvGeometry, conv2d as conv2d_kernel};
use super::gemm::Element;
use super::linear::{Weight, linear as linear_kernel};
use super::microkernel::{Isa, bf16};

/// An element type of flex tensors that the kernels compute in.
trait FlexFloat: Element {
    /// Its burn dtype.
    const DTYPE: DType;

    /// The elements of a contiguous tensor of this dtype.
    fn slice(t: &FlexTensor) -> Option<&[Self]>;

    /// Widens to f32.
    fn to_f32(self) -> f32;

    /// A contiguous tensor of `shape` holding `data`.
    fn wrap(data: Vec<Self>, shape: Shape) -> FlexTensor;
}

impl FlexFloat for f32 {
    const DTYPE: DType = DType::F32;

    fn slice(t: &FlexTensor) -> Option<&[Self]> {
        t.as_slice()
    }

    fn to_f32(self) -> f32 {
        self
    }

    fn wrap(data: Vec<Self>, shape: Shape) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(shape),
            Self::DTYPE,
        )
    }
}

impl FlexFloat for bf16 {
    const DTYPE: DType = DType::BF16;

    fn slice(t: &FlexTensor) -> Option<&[Self]> {
        t.as_slice()
    }

    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }

    fn wrap(data: Vec<Self>, shape: Shape) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(shape),
            Self::DTYPE,
        )
    }
}

/// Whether the kernels compute in `dtype` on `isa`.
fn computes_in(isa: Isa, dtype: DType) -> bool {
    match dtype {
        DType::F32 => true,
        DType::BF16 => isa.has_bf16(),
        _ => false,
    }
}

/// The flex tensor inside `t`, when `t` is a flex tensor that autodiff does not track;
/// otherwise `t` back.
fn take<const D: usize>(t: Tensor<D>) -> Result<FlexTensor, Tensor<D>> {
    match t.into_dispatch() {
        DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(flex)),
            autodiff: DispatchAutodiffContext::Disabled,
        } => Ok(flex),
        other => Err(Tensor::from_dispatch(other)),
    }
}

/// A contiguous copy of `t` unless it already is one.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The elements of a contiguous tensor.
fn elements<T: FlexFloat>(t: &FlexTensor) -> &[T] {
    T::slice(t).expect("a contiguous tensor of the kernel's dtype")
}

/// The elements of a contiguous tensor widened to f32 (biases).
fn widened<T: FlexFloat>(t: &FlexTensor) -> Vec<f32> {
    elements::<T>(t).iter().map(|&v| v.to_f32()).collect()
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

/// Takes `a`, `b` and an optional `c`, or gives all three back if one is not a plain flex
/// tensor.
#[allow(clippy::type_complexity)]
fn take3<const A: usize, const B: usize, const C: usize>(
    a: Tensor<A>,
    b: Tensor<B>,
    c: Option<Tensor<C>>,
) -> Result<(FlexTensor, FlexTensor, Option<FlexTensor>), (Tensor<A>, Tensor<B>, Option<Tensor<C>>)>
{
    match (take(a), take(b), c.map(take).transpose()) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => {
            let c = match c {
                Ok(c) => c.map(from_flex),
                Err(c) => Some(c),
            };
            Err((back(a), back(b), c))
        }
    }
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
    let dtype = x.dtype();
    if wcin != cin
        || bias
            .as_ref()
            .is_some_and(|b| b.dims() != [cout] || b.dtype() != dtype)
        || weight.dtype() != dtype
        || !computes_in(isa, dtype)
    {
        return Err((x, weight, bias));
    }
    let (x, weight, bias) = take3(x, weight, bias)?;
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
    let shape = Shape::new([batch, cout, output[0], output[1]]);
    fn run<T: FlexFloat>(
        isa: Isa,
        g: &ConvGeometry,
        x: &FlexTensor,
        weight: &FlexTensor,
        bias: Option<&FlexTensor>,
        shape: Shape,
    ) -> FlexTensor {
        let bias = bias.map(widened::<T>);
        let mut out = vec![T::default(); shape.num_elements()];
        conv2d_kernel(
            isa,
            g,
            elements(x),
            elements(weight),
            bias.as_deref(),
            &mut out,
        );
        T::wrap(out, shape)
    }
    let out = match dtype {
        DType::BF16 => run::<bf16>(isa, &geometry, &x, &weight, bias.as_ref(), shape),
        _ => run::<f32>(isa, &geometry, &x, &weight, bias.as_ref(), shape),
    };
    Ok(from_flex(out))
}

/// `x · weight + bias` on the kernels, or the operands back when they do not apply.
pub(super) fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Result<Tensor<D>, (Tensor<D>, Tensor<2>, Option<Tensor<1>>)> {
    let Some(isa) = Isa::detect() else {
        return Err((x, weight, bias));
    };
    let [d_input, d_output] = weight.dims();
    let dtype = x.dtype();
    if D == 0
        || x.dims()[D - 1] != d_input
        || bias
            .as_ref()
            .is_some_and(|b| b.dims() != [d_output] || b.dtype() != dtype)
        || weight.dtype() != dtype
        || !computes_in(isa, dtype)
    {
        return Err((x, weight, bias));
    }
    let (x, weight, bias) = take3(x, weight, bias)?;
    let (x, bias) = (contiguous(x), bias.map(contiguous));
    // A transposed view of a `[d_output, d_input]` matrix is read as it is stored.
    let weight = if weight.is_contiguous() {
        Ok(weight)
    } else {
        let stored = weight.transpose(0, 1);
        if stored.is_contiguous() {
            Err(stored)
        } else {
            Ok(weight.to_contiguous())
        }
    };
    let mut shape = x.layout().shape().clone();
    shape[D - 1] = d_output;
    fn run<T: FlexFloat>(
        isa: Isa,
        x: &FlexTensor,
        weight: &Result<FlexTensor, FlexTensor>,
        bias: Option<&FlexTensor>,
        dims: [usize; 2],
        shape: Shape,
    ) -> FlexTensor {
        let bias = bias.map(widened::<T>);
        let weight = match weight {
            Ok(in_out) => Weight::InOut(elements(in_out)),
            Err(out_in) => Weight::OutIn(elements(out_in)),
        };
        let mut out = vec![T::default(); shape.num_elements()];
        linear_kernel(isa, elements(x), weight, dims, bias.as_deref(), &mut out);
        T::wrap(out, shape)
    }
    let dims = [d_input, d_output];
    let out = match dtype {
        DType::BF16 => run::<bf16>(isa, &x, &weight, bias.as_ref(), dims, shape),
        _ => run::<f32>(isa, &x, &weight, bias.as_ref(), dims, shape),
    };
    Ok(from_flex(out))
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

/// An f32 tensor with the values of `t` (f32 or bf16): `t` itself, or a contiguous widened
/// copy.
fn widen(t: FlexTensor) -> FlexTensor {
    if t.dtype() == DType::BF16 {
        let t = contiguous(t);
        f32::wrap(widened::<bf16>(&t), t.layout().shape().clone())
    } else {
        t
    }
}

/// Attention on the kernels (bf16 operands are widened to f32: the products are a small part
/// of the model's), or the operands back when they do not apply.
pub(super) fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f32,
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>, Tensor<4>)> {
    let Some(isa) = Isa::detect() else {
        return Err((q, k, v));
    };
    let dtype = q.dtype();
    if !matches!(dtype, DType::F32 | DType::BF16) || k.dtype() != dtype || v.dtype() != dtype {
        return Err((q, k, v));
    }
    let (q, k, v) = match (take(q), take(k), take(v)) {
        (Ok(q), Ok(k), Ok(v)) => (q, k, v),
        (q, k, v) => return Err((back(q), back(k), back(v))),
    };
    let operand = |t: FlexTensor| {
        let t = widen(t);
        if strided(&t).is_some() {
            t
        } else {
            t.to_contiguous()
        }
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
    let shape = Shape::new([batch, heads, lq, dv]);
    Ok(from_flex(if dtype == DType::BF16 {
        bf16::wrap(out.into_iter().map(bf16::from_f32).collect(), shape)
    } else {
        f32::wrap(out, shape)
    }))
}

/// SiLU on the kernel (in place when `x` owns its buffer), or `x` back.
pub(super) fn silu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    let Some(isa) = Isa::detect() else {
        return Err(x);
    };
    let dtype = x.dtype();
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(x);
    }
    let mut x = contiguous(take(x)?);
    let shape = x.layout().shape().clone();
    if dtype == DType::BF16 {
        if let Some(buffer) = x.try_storage_mut::<bf16>()
            && buffer.len() == shape.num_elements()
        {
            silu_bf16_in_place(isa, buffer);
            return Ok(from_flex(x));
        }
        let mut out = elements::<bf16>(&x).to_vec();
        silu_bf16_in_place(isa, &mut out);
        return Ok(from_flex(bf16::wrap(out, shape)));
    }
    if let Some(buffer) = x.try_storage_mut::<f32>()
        && buffer.len() == shape.num_elements()
    {
        silu_in_place(isa, buffer);
        return Ok(from_flex(x));
    }
    let mut out = elements::<f32>(&x).to_vec();
    silu_in_place(isa, &mut out);
    Ok(from_flex(f32::wrap(out, shape)))
}
