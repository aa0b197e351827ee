//! The kernels against plain implementations on odd shapes, and the tensor functions against
//! burn's operations.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::conv::{ConvGeometry, conv2d as conv_kernel};
use super::gemm::{Gemm, KC, MatB};
use super::microkernel::Isa;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
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

#[test]
fn gemm_matches_the_plain_product_on_odd_shapes() {
    for isa in isas() {
        for (m, n, k) in [
            (1, 1, 1),
            (1, 33, 7),
            (13, 31, 5),
            (12, 32, KC),
            (25, 97, KC + 3),
            (7, 200, 2 * KC + 1),
            (40, 5, 300),
            (3, 4, 0),
        ] {
            for with_bias in [false, true] {
                let a = random(m * (k + 2), 1);
                let b = random(k * (n + 3), 2);
                let bias = random(m, 3);
                let mut c = vec![f32::NAN; m * (n + 1)];
                Gemm {
                    m,
                    n,
                    k,
                    a: &a,
                    lda: k + 2,
                    bias: with_bias.then_some(&bias[..]),
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
                        let mut s = if with_bias { bias[i] as f64 } else { 0.0 };
                        for p in 0..k {
                            s += a[i * (k + 2) + p] as f64 * b[p * (n + 3) + j] as f64;
                        }
                        want.push(s);
                        got.push(c[i * (n + 1) + j]);
                    }
                    assert!(c[i * (n + 1) + n].is_nan(), "wrote past a row");
                }
                assert_close(
                    &got,
                    &want,
                    &format!("{isa:?} {m}x{n}x{k} bias {with_bias}"),
                );
            }
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

#[test]
fn conv_kernel_matches_the_plain_convolution() {
    for isa in isas() {
        for (i, case) in CASES.iter().enumerate() {
            let g = geometry(case);
            let (batch, cout) = (case.0, case.2);
            let x = random(batch * g.cin * g.input[0] * g.input[1], 10 + i as u64);
            let w = random(cout * g.k(), 20 + i as u64);
            let bias = random(cout, 30 + i as u64);
            for with_bias in [false, true] {
                let bias = with_bias.then_some(&bias[..]);
                let mut out = vec![f32::NAN; batch * cout * g.n()];
                conv_kernel(isa, &g, &x, &w, bias, &mut out);
                let want = plain_conv(&g, batch, &x, &w, bias);
                assert_close(&out, &want, &format!("{isa:?} case {i} bias {with_bias}"));
            }
        }
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
