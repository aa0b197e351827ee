//! The kernels against plain implementations on odd shapes, and the tensor functions against
//! burn's operations.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::conv::{ConvGeometry, conv2d as conv_kernel};
use super::gemm::{Bias, Element, Gemm, KC, MatB};
use super::linear::{Weight, linear as linear_kernel};
use super::microkernel::{Isa, bf16};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// The instruction set with the bf16 micro-kernel, or `None` on CPUs without AVX-512 BF16,
/// where the micro-kernel cannot run. The tensor-level bf16 test below runs everywhere: on
/// such CPUs it checks burn's operations, which bf16 tensors take there.
fn bf16_isa() -> Option<Isa> {
    Isa::detect().filter(|isa| isa.has_bf16())
}

/// An element type under test: its values, and the tolerance of its results relative to the
/// exact product of those values.
trait Testing: Element {
    fn round(v: f32) -> Self;
    fn widen(self) -> f32;
    /// (absolute, relative) tolerance.
    const TOLERANCE: (f64, f64);
}

impl Testing for f32 {
    fn round(v: f32) -> Self {
        v
    }
    fn widen(self) -> f32 {
        self
    }
    const TOLERANCE: (f64, f64) = (8e-5, 8e-5);
}

impl Testing for bf16 {
    fn round(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn widen(self) -> f32 {
        self.to_f32()
    }
    // The result is rounded to bf16 (8 significant bits); the sums are f32.
    const TOLERANCE: (f64, f64) = (2e-3, 8e-3);
}

/// `values` rounded to `T`, and the rounded values as f32.
fn rounded<T: Testing>(values: &[f32]) -> (Vec<T>, Vec<f32>) {
    let r: Vec<T> = values.iter().map(|&v| T::round(v)).collect();
    let f = r.iter().map(|&v| v.widen()).collect();
    (r, f)
}

fn assert_within(got: &[f32], want: &[f64], (atol, rtol): (f64, f64), what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

/// Every instruction set this CPU runs.
fn isas() -> Vec<Isa> {
    let best = Isa::detect();
    let mut all: Vec<Isa> = best.into_iter().collect();
    if best == Some(Isa::Avx512) {
        all.push(Isa::Avx2);
    }
    all
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * (1.0 + w.abs()) * 8.0;
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

fn gemm_case<T: Testing>(isa: Isa, (m, n, k): (usize, usize, usize), bias_kind: usize) {
    let (a, af) = rounded::<T>(&random(m * (k + 2), 1));
    let (b, bf) = rounded::<T>(&random(k * (n + 3), 2));
    let bias = random(m.max(n), 3);
    let bias_of = |i: usize, j: usize| match bias_kind {
        1 => bias[i] as f64,
        2 => bias[j] as f64,
        _ => 0.0,
    };
    let mut c = vec![T::round(f32::NAN); m * (n + 1)];
    Gemm {
        m,
        n,
        k,
        a: &a,
        lda: k + 2,
        bias: match bias_kind {
            1 => Bias::Rows(&bias),
            2 => Bias::Cols(&bias),
            _ => Bias::None,
        },
    }
    .run(
        isa,
        &MatB {
            data: &b,
            ld: n + 3,
        },
        &mut c,
        n + 1,
    );
    let mut want = Vec::new();
    let mut got = Vec::new();
    for i in 0..m {
        for j in 0..n {
            let mut s = bias_of(i, j);
            for p in 0..k {
                s += af[i * (k + 2) + p] as f64 * bf[p * (n + 3) + j] as f64;
            }
            want.push(s);
            got.push(c[i * (n + 1) + j].widen());
        }
        assert!(c[i * (n + 1) + n].widen().is_nan(), "wrote past a row");
    }
    assert_within(
        &got,
        &want,
        T::TOLERANCE,
        &format!("{isa:?} {m}x{n}x{k} bias {bias_kind}"),
    );
}

const GEMM_SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 33, 7),
    (13, 31, 5),
    (12, 32, KC),
    (25, 97, KC + 3),
    (7, 200, 2 * KC + 1),
    (40, 5, 300),
    (3, 4, 0),
    (30, 64, 2),
];

#[test]
fn gemm_matches_the_plain_product_on_odd_shapes() {
    for isa in isas() {
        for shape in GEMM_SHAPES {
            for bias in 0..3 {
                gemm_case::<f32>(isa, shape, bias);
            }
        }
    }
}

#[test]
fn bf16_gemm_matches_the_plain_product_on_odd_shapes() {
    let Some(isa) = bf16_isa() else { return };
    for shape in GEMM_SHAPES {
        for bias in 0..3 {
            gemm_case::<bf16>(isa, shape, bias);
        }
    }
}

/// The convolution summed term by term.
fn plain_conv(
    g: &ConvGeometry,
    batch: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f64> {
    let [h, wd] = g.input;
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.output;
    let cout = w.len() / g.k();
    let mut out = Vec::with_capacity(batch * cout * oh * ow);
    for b in 0..batch {
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map_or(0.0, |bias| bias[co] as f64);
                    for ci in 0..g.cin {
                        for ty in 0..kh {
                            for tx in 0..kw {
                                let iy = (oy * g.stride[0] + ty * g.dilation[0]) as isize
                                    - g.pad_before[0] as isize;
                                let ix = (ox * g.stride[1] + tx * g.dilation[1]) as isize
                                    - g.pad_before[1] as isize;
                                if (0..h as isize).contains(&iy) && (0..wd as isize).contains(&ix) {
                                    let xv =
                                        x[((b * g.cin + ci) * h + iy as usize) * wd + ix as usize];
                                    let wv = w[((co * g.cin + ci) * kh + ty) * kw + tx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                    }
                    out.push(s);
                }
            }
        }
    }
    out
}

/// (batch, cin, cout, input, kernel, stride, padding, dilation)
type Case = (
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [(usize, usize); 2],
    [usize; 2],
);

const CASES: &[Case] = &[
    (1, 3, 5, [7, 9], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
    (2, 4, 13, [1, 1], [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
    (1, 17, 33, [6, 40], [1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]),
    (2, 5, 7, [9, 11], [3, 3], [2, 2], [(0, 1), (0, 1)], [1, 1]),
    (1, 6, 3, [10, 10], [3, 3], [1, 1], [(2, 2), (2, 2)], [2, 2]),
    (1, 2, 4, [5, 33], [4, 4], [2, 2], [(1, 1), (1, 1)], [1, 1]),
    (1, 3, 2, [8, 3], [3, 5], [1, 2], [(2, 0), (1, 3)], [1, 1]),
    (
        1,
        30,
        14,
        [12, 12],
        [3, 3],
        [1, 1],
        [(1, 1), (1, 1)],
        [1, 1],
    ),
    (1, 1, 1, [1, 70], [1, 3], [1, 1], [(0, 0), (1, 1)], [1, 1]),
    // A 5×5 kernel with padding 2 (LPIPS' AlexNet): runs that start at a row's last output
    // column lie wholly in the right padding for the last taps.
    (1, 2, 3, [4, 33], [5, 5], [1, 1], [(2, 2), (2, 2)], [1, 1]),
    (1, 2, 3, [3, 17], [5, 5], [1, 1], [(2, 2), (2, 2)], [1, 1]),
];

fn geometry(case: &Case) -> ConvGeometry {
    let &(_, cin, _, input, kernel, stride, pad, dilation) = case;
    ConvGeometry {
        cin,
        input,
        kernel,
        stride,
        pad_before: [pad[0].0, pad[1].0],
        dilation,
        output: ConvGeometry::output_size(input, kernel, stride, pad, dilation).unwrap(),
    }
}

fn conv_cases<T: Testing>(isa: Isa) {
    for (i, case) in CASES.iter().enumerate() {
        let g = geometry(case);
        let (batch, cout) = (case.0, case.2);
        let (x, xf) = rounded::<T>(&random(
            batch * g.cin * g.input[0] * g.input[1],
            10 + i as u64,
        ));
        let (w, wf) = rounded::<T>(&random(cout * g.k(), 20 + i as u64));
        let bias = random(cout, 30 + i as u64);
        for with_bias in [false, true] {
            let bias = with_bias.then_some(&bias[..]);
            let mut out = vec![T::round(f32::NAN); batch * cout * g.n()];
            conv_kernel(isa, &g, &x, &w, bias, &mut out);
            let out: Vec<f32> = out.iter().map(|v| v.widen()).collect();
            let want = plain_conv(&g, batch, &xf, &wf, bias);
            assert_within(
                &out,
                &want,
                T::TOLERANCE,
                &format!("{isa:?} case {i} bias {with_bias}"),
            );
        }
    }
}

#[test]
fn conv_kernel_matches_the_plain_convolution() {
    for isa in isas() {
        conv_cases::<f32>(isa);
    }
}

#[test]
fn bf16_conv_kernel_matches_the_plain_convolution() {
    if let Some(isa) = bf16_isa() {
        conv_cases::<bf16>(isa);
    }
}

fn linear_cases<T: Testing>(isa: Isa) {
    // (rows, d_input, d_output)
    for (i, &(rows, d_in, d_out)) in [
        (1, 1, 1),
        (5, 3, 7),
        (77, 64, 33),
        (300, 129, 65),
        (13, KC + 1, 40),
    ]
    .iter()
    .enumerate()
    {
        let (x, xf) = rounded::<T>(&random(rows * d_in, 40 + i as u64));
        let (w, wf) = rounded::<T>(&random(d_in * d_out, 50 + i as u64));
        let bias = random(d_out, 60 + i as u64);
        // The same matrix stored `[d_output, d_input]`.
        let wt: Vec<T> = (0..d_out * d_in)
            .map(|idx| w[(idx % d_in) * d_out + idx / d_in])
            .collect();
        for with_bias in [false, true] {
            let bias = with_bias.then_some(&bias[..]);
            let mut want = Vec::new();
            for r in 0..rows {
                for o in 0..d_out {
                    let mut s = bias.map_or(0.0, |b| b[o] as f64);
                    for p in 0..d_in {
                        s += xf[r * d_in + p] as f64 * wf[p * d_out + o] as f64;
                    }
                    want.push(s);
                }
            }
            for (layout, weight) in [
                ("in-out", Weight::InOut(&w[..])),
                ("out-in", Weight::OutIn(&wt[..])),
            ] {
                let mut out = vec![T::round(f32::NAN); rows * d_out];
                linear_kernel(isa, &x, weight, [d_in, d_out], bias, &mut out);
                let out: Vec<f32> = out.iter().map(|v| v.widen()).collect();
                assert_within(
                    &out,
                    &want,
                    T::TOLERANCE,
                    &format!("{isa:?} linear case {i} {layout} bias {with_bias}"),
                );
            }
        }
    }
}

#[test]
fn linear_kernel_matches_the_plain_product() {
    for isa in isas() {
        linear_cases::<f32>(isa);
    }
}

#[test]
fn bf16_linear_kernel_matches_the_plain_product() {
    if let Some(isa) = bf16_isa() {
        linear_cases::<bf16>(isa);
    }
}

/// `ours` equals `burn`'s result within `assert_close`'s tolerance.
fn assert_same<const D: usize>(ours: Tensor<D>, burn: Tensor<D>, what: &str) {
    let values = |t: Tensor<D>| t.into_data().try_to_vec::<f32>().unwrap();
    let want: Vec<f64> = values(burn).into_iter().map(f64::from).collect();
    assert_close(&values(ours), &want, what);
}

fn tensor(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

#[test]
fn conv2d_matches_burn_on_flex_and_falls_back_elsewhere() {
    let device = Device::flex();
    for (i, case) in CASES.iter().enumerate() {
        let &(batch, cin, cout, input, kernel, stride, padding, dilation) = case;
        let x = tensor(
            random(batch * cin * input[0] * input[1], i as u64),
            [batch, cin, input[0], input[1]],
            &device,
        );
        let w = tensor(
            random(cout * cin * kernel[0] * kernel[1], 50 + i as u64),
            [cout, cin, kernel[0], kernel[1]],
            &device,
        );
        let b = Tensor::<1>::from_data(
            TensorData::new(random(cout, 90 + i as u64), [cout]),
            &device,
        );
        let options = ConvOptions::new_with_padding(stride, padding, dilation, 1);
        let ours = super::conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone());
        let burn =
            burn::tensor::module::conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone());
        assert_eq!(ours.dims(), burn.dims(), "case {i}");
        assert_same(ours, burn, &format!("case {i}"));
        // f16 operands go to burn's operation.
        let half = super::conv2d(
            x.clone().cast(DType::F16),
            w.clone().cast(DType::F16),
            None,
            options,
        );
        assert_eq!(half.dtype(), DType::F16);
    }
}

#[test]
fn linear_matches_burn_on_flex_with_either_weight_layout() {
    let device = Device::flex();
    let x = Tensor::<3>::from_data(TensorData::new(random(2 * 5 * 7, 1), [2, 5, 7]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(random(7 * 9, 2), [7, 9]), &device);
    let b = Tensor::<1>::from_data(TensorData::new(random(9, 3), [9]), &device);
    // The same weight as a transposed view of a `[9, 7]` matrix, as checkpoints load.
    let wt = Tensor::<2>::from_data(w.clone().transpose().into_data(), &device).transpose();
    // A strided input.
    let xs = Tensor::<3>::from_data(x.clone().swap_dims(0, 1).into_data(), &device).swap_dims(0, 1);
    for (name, x, w, b) in [
        ("plain", x.clone(), w.clone(), Some(b.clone())),
        ("no bias", x.clone(), w.clone(), None),
        ("transposed weight", x.clone(), wt, Some(b.clone())),
        ("strided input", xs, w.clone(), Some(b.clone())),
    ] {
        let ours = super::linear(x.clone(), w.clone(), b.clone());
        let burn = burn::tensor::module::linear(x, w, b);
        assert_eq!(ours.dims(), [2, 5, 9], "{name}");
        assert_same(ours, burn, name);
    }
    // Tracked tensors take burn's operation and get gradients.
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(random(3 * 4, 4), [3, 4]), &device);
    let w =
        Tensor::<2>::from_data(TensorData::new(random(4 * 2, 5), [4, 2]), &device).require_grad();
    let grads = super::linear(x, w.clone(), None).sum().backward();
    assert!(w.grad(&grads).is_some());
}

/// A bf16 copy of `t` and an f32 tensor of the same (rounded) values.
fn bf16_pair<const D: usize>(t: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let half = t.cast(DType::BF16);
    let wide = half.clone().cast(DType::F32);
    (half, wide)
}

/// `ours` (bf16) equals `reference` (f32 on the same rounded values) within bf16's tolerance.
fn assert_bf16<const D: usize>(ours: Tensor<D>, reference: Tensor<D>, what: &str) {
    assert_eq!(ours.dtype(), DType::BF16, "{what}: dtype");
    let got = ours
        .cast(DType::F32)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want: Vec<f64> = reference
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    assert_within(&got, &want, <bf16 as Testing>::TOLERANCE, what);
}

#[test]
fn bf16_tensors_match_f32_on_the_rounded_values() {
    use burn::tensor::ops::AttentionModuleOptions;
    let device = Device::flex();
    let (x, xw) = bf16_pair(tensor(random(2 * 5 * 9 * 11, 1), [2, 5, 9, 11], &device));
    let (w, ww) = bf16_pair(tensor(random(7 * 5 * 9, 2), [7, 5, 3, 3], &device));
    let (b, bw) = bf16_pair(Tensor::<1>::from_data(
        TensorData::new(random(7, 3), [7]),
        &device,
    ));
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    assert_bf16(
        super::conv2d(x.clone(), w, Some(b), options.clone()),
        burn::tensor::module::conv2d(xw.clone(), ww, Some(bw), options),
        "conv2d",
    );
    let (lw, lww) = bf16_pair(Tensor::<2>::from_data(
        TensorData::new(random(11 * 6, 4), [11, 6]),
        &device,
    ));
    assert_bf16(
        super::linear(x.clone(), lw, None),
        burn::tensor::module::linear(xw.clone(), lww, None),
        "linear",
    );
    let (k, kw) = bf16_pair(tensor(random(2 * 5 * 4 * 11, 5), [2, 5, 4, 11], &device));
    let options = AttentionModuleOptions::default();
    assert_bf16(
        super::attention(x.clone(), k.clone(), k, None, None, options),
        burn::tensor::module::attention(xw.clone(), kw.clone(), kw, None, None, options),
        "attention",
    );
    assert_bf16(
        super::silu(x.clone() * 4.0),
        burn::tensor::activation::silu(xw * 4.0),
        "silu",
    );
}

#[test]
fn tracked_tensors_take_burns_path_and_get_gradients() {
    let device = Device::flex().autodiff();
    let x = tensor(random(2 * 3 * 5 * 5, 1), [2, 3, 5, 5], &device).require_grad();
    let w = tensor(random(4 * 3 * 3 * 3, 2), [4, 3, 3, 3], &device).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let y = super::conv2d(x.clone(), w.clone(), None, options);
    let grads = y.sum().backward();
    assert!(w.grad(&grads).is_some() && x.grad(&grads).is_some());
}

#[test]
fn grouped_convolutions_take_burns_path() {
    let device = Device::flex();
    let x = tensor(random(4 * 3 * 3, 1), [1, 4, 3, 3], &device);
    let w = tensor(random(4 * 2 * 3 * 3, 2), [4, 2, 3, 3], &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
    let ours = super::conv2d(x.clone(), w.clone(), None, options.clone());
    let burn = burn::tensor::module::conv2d(x, w, None, options);
    ours.into_data().assert_eq(&burn.into_data(), true);
}

#[test]
fn the_module_keeps_burns_parameter_paths() {
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::flex();
    let theirs = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
    let ours = super::Conv2d::from(theirs.clone());
    let mut paths = Vec::new();
    ours.visit(&mut Paths(&mut paths, Vec::new()));
    let mut theirs_paths = Vec::new();
    theirs.visit(&mut Paths(&mut theirs_paths, Vec::new()));
    assert_eq!(paths, theirs_paths);
    let x = tensor(random(3 * 6 * 6, 3), [1, 3, 6, 6], &device);
    assert_same(ours.forward(x.clone()), theirs.forward(x), "module");
}

/// Collects parameter paths.
struct Paths<'a>(&'a mut Vec<String>, Vec<String>);

impl burn::module::ModuleVisitor for Paths<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
        self.0.push(self.1.join("."));
    }
}

#[test]
fn the_linear_module_keeps_burns_parameter_paths() {
    use burn::module::Module;
    use burn::nn::LinearConfig;
    let device = Device::flex();
    let theirs = LinearConfig::new(5, 3).init(&device);
    let ours = super::Linear::from(theirs.clone());
    let mut paths = Vec::new();
    ours.visit(&mut Paths(&mut paths, Vec::new()));
    let mut theirs_paths = Vec::new();
    theirs.visit(&mut Paths(&mut theirs_paths, Vec::new()));
    assert_eq!(paths, theirs_paths);
    let x = Tensor::<2>::from_data(TensorData::new(random(4 * 5, 6), [4, 5]), &device);
    assert_same(ours.forward(x.clone()), theirs.forward(x), "module");
}

#[test]
fn attention_matches_burn_on_odd_and_strided_shapes() {
    use burn::tensor::ops::AttentionModuleOptions;
    let device = Device::flex();
    // (batch, heads, queries, keys, dim, value dim)
    for (i, &(b, h, lq, lk, d, dv)) in [
        (1, 1, 1, 1, 1, 1),
        (2, 3, 17, 5, 8, 8),
        (1, 2, 300, 77, 64, 64),
        (1, 1, 260, 33, 19, 7),
        (2, 5, 64, 64, 16, 16),
    ]
    .iter()
    .enumerate()
    {
        // q and k come from [b, len, h, d] buffers with the heads swapped in, as the networks
        // build them; v is contiguous.
        let swapped = |len: usize, dim: usize, seed: u64| {
            tensor(random(b * len * h * dim, seed), [b, len, h, dim], &device).swap_dims(1, 2)
        };
        let q = swapped(lq, d, 100 + i as u64) * 3.0;
        let k = swapped(lk, d, 200 + i as u64);
        let v = tensor(
            random(b * h * lk * dv, 300 + i as u64),
            [b, h, lk, dv],
            &device,
        );
        for scale in [None, Some(0.3)] {
            let options = AttentionModuleOptions {
                scale,
                ..Default::default()
            };
            let ours = super::attention(q.clone(), k.clone(), v.clone(), None, None, options);
            let burn = burn::tensor::module::attention(
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                None,
                options,
            );
            assert_eq!(ours.dims(), [b, h, lq, dv]);
            assert_same(ours, burn, &format!("attention case {i} scale {scale:?}"));
        }
    }
}

#[test]
fn attention_with_a_mask_takes_burns_path() {
    use burn::tensor::ops::AttentionModuleOptions;
    let device = Device::flex();
    let q = tensor(random(2 * 4 * 3, 1), [1, 2, 4, 3], &device);
    let k = tensor(random(2 * 5 * 3, 2), [1, 2, 5, 3], &device);
    let v = tensor(random(2 * 5 * 3, 3), [1, 2, 5, 3], &device);
    let options = AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    let ours = super::attention(q.clone(), k.clone(), v.clone(), None, None, options);
    let burn = burn::tensor::module::attention(q, k, v, None, None, options);
    ours.into_data().assert_eq(&burn.into_data(), true);
}

#[test]
fn silu_matches_burn_and_leaves_shared_buffers_alone() {
    let device = Device::flex();
    for (i, len) in [1usize, 15, 17, 100_003, 3 * (1 << 16) + 5]
        .into_iter()
        .enumerate()
    {
        let mut data = random(len, 400 + i as u64);
        data[0] = -100.0;
        if len > 2 {
            data[1] = 100.0;
            data[2] = 0.0;
        }
        let x = Tensor::<1>::from_data(TensorData::new(data.clone(), [len]), &device) * 8.0;
        let kept = x.clone();
        let ours = super::silu(x.clone());
        let burn = burn::tensor::activation::silu(x);
        assert_same(ours, burn, &format!("silu {len}"));
        // The clone still holds the input.
        let kept: Vec<f32> = kept.into_data().try_to_vec::<f32>().unwrap();
        assert!(
            kept.iter().zip(&data).all(|(k, d)| *k == d * 8.0),
            "silu changed a shared buffer"
        );
        // An unshared tensor is computed in place, with the same values.
        let owned = Tensor::<1>::from_data(TensorData::new(data.clone(), [len]), &device);
        let again = super::silu(owned).into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f64> = data
            .iter()
            .map(|&x| x as f64 / (1.0 + (-x as f64).exp()))
            .collect();
        assert_close(&again, &want, &format!("silu in place {len}"));
    }
    // A strided view.
    let x = tensor(random(2 * 3 * 5 * 7, 9), [2, 3, 5, 7], &device).swap_dims(1, 3);
    assert_same(
        super::silu(x.clone()),
        burn::tensor::activation::silu(x),
        "strided silu",
    );
}
