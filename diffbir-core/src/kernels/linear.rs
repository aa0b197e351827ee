//! A linear layer, `y = x · W + b`, as one GEMM: the rows of `x` (tokens) are `A`, read in
//! place, the weight is `B`, and the bias is a bias per column of `C`.

use super::gemm::{Bias, Element, Gemm, MatB, TransposedB};
use super::microkernel::Isa;

/// How a linear layer's weight is stored.
#[derive(Debug, Clone, Copy)]
pub enum Weight<'a, T> {
    /// `[d_input, d_output]`, row-major (burn's layout).
    InOut(&'a [T]),
    /// `[d_output, d_input]`, row-major (PyTorch's layout, and a transposed view of burn's).
    OutIn(&'a [T]),
}

/// `out = x · W (+ bias)` for `x` of `rows × d_input` and `out` of `rows × d_output`, both
/// row-major and contiguous.
///
/// # Panics
///
/// When a buffer does not match its shape, or `T`'s micro-kernel does not run on `isa` (bugs of
/// the caller).
pub fn linear<T: Element>(
    isa: Isa,
    x: &[T],
    weight: Weight<'_, T>,
    [d_input, d_output]: [usize; 2],
    bias: Option<&[f32]>,
    out: &mut [T],
) {
    if d_output == 0 {
        return;
    }
    let rows = out.len() / d_output;
    assert_eq!(x.len(), rows * d_input, "input size");
    assert_eq!(out.len(), rows * d_output, "output size");
    let gemm = Gemm {
        m: rows,
        n: d_output,
        k: d_input,
        a: x,
        lda: d_input,
        bias: bias.map_or(Bias::None, Bias::Cols),
    };
    match weight {
        Weight::InOut(data) => gemm.run(isa, &MatB { data, ld: d_output }, out, d_output),
        Weight::OutIn(data) => gemm.run(isa, &TransposedB { data, ld: d_input }, out, d_output),
    }
}
