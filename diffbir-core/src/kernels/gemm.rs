//! A blocked, multi-threaded f32 GEMM, `C = A · B (+ bias per row)`, on the micro-kernels of
//! [`super::microkernel`].
//!
//! `A` is a plain row-major matrix (the weights, read in place: packing them would cost as much
//! as the product on the low-resolution layers, where `N` is small). `B` is anything that can
//! write its blocks as packed panels ([`PackB`]): a plain matrix, or an image seen through
//! im2col ([`super::conv::Im2col`]), so a convolution never materialises its im2col matrix.
//!
//! The work is a grid of (row range, column range) items run on rayon's pool. Each item walks
//! `K` in blocks of [`KC`]: it packs its `KC × columns` block of `B` (kept in L2), then runs the
//! micro-kernel over every tile, column panel outside and row panel inside, so each packed panel
//! of `B` (`KC × NR`, 32 KiB) stays in L1 while the rows of `A` stream past it.

// The kernels need `unsafe`: the work items write disjoint rectangles of one output through a shared pointer. Every block states why it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;

use rayon::prelude::*;

use super::microkernel::{APanel, CTile, Isa, tile};

/// Rows of `B` (terms of the sum) per block.
pub const KC: usize = 384;
/// Column panels of `B` per work item.
const PANELS_PER_ITEM: usize = 12;
/// Work items per thread the grid aims at, for load balance.
const ITEMS_PER_THREAD: usize = 4;

/// A `K × N` right-hand side that packs its blocks for the micro-kernel.
pub trait PackB: Sync {
    /// Writes rows `k0..k0 + kc` and columns `n0..n0 + nc` as `nc.div_ceil(nr)` consecutive
    /// panels of `kc × nr` floats (row `p` of panel `q` holds columns `n0 + q·nr ..`), with
    /// zeros past column `n0 + nc`. `out` holds exactly that many floats.
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [f32]);
}

/// A plain row-major `K × N` matrix with row stride `ld`.
#[derive(Debug, Clone, Copy)]
pub struct MatB<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Row stride (≥ N).
    pub ld: usize,
}

impl PackB for MatB<'_> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [f32]) {
        for (q, panel) in out.chunks_exact_mut(kc * nr).enumerate() {
            let col = n0 + q * nr;
            let width = nr.min(n0 + nc - col);
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let src = (k0 + p) * self.ld + col;
                dst[..width].copy_from_slice(&self.data[src..src + width]);
                dst[width..].fill(0.0);
            }
        }
    }
}

/// The shapes and operands of one product.
#[derive(Debug, Clone, Copy)]
pub struct Gemm<'a> {
    /// Rows of `A` and `C`.
    pub m: usize,
    /// Columns of `B` and `C`.
    pub n: usize,
    /// Columns of `A`, rows of `B`.
    pub k: usize,
    /// `A`, row-major with row stride `lda`.
    pub a: &'a [f32],
    /// Row stride of `A` (≥ k).
    pub lda: usize,
    /// One value per row of `C`, added to the product.
    pub bias: Option<&'a [f32]>,
}

/// A pointer to `C` that the work items share; each item writes its own rectangle.
#[derive(Clone, Copy)]
struct SharedC(*mut f32);
// SAFETY: items write disjoint rectangles of `C` and the caller's `&mut` outlives the scope.
unsafe impl Send for SharedC {}
// SAFETY: as above.
unsafe impl Sync for SharedC {}

impl SharedC {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Each thread's packed block of `B`, reused between items and calls.
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Gemm<'_> {
    /// Computes `C = A · B (+ bias)` into the row-major `m × n` matrix `c` (row stride `ldc`).
    ///
    /// # Panics
    ///
    /// When an operand is smaller than its shape says (a bug of the caller, not user input).
    pub fn run(&self, isa: Isa, b: &impl PackB, c: &mut [f32], ldc: usize) {
        let Gemm { m, n, k, .. } = *self;
        if m == 0 || n == 0 {
            return;
        }
        assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too small");
        assert!(
            k == 0 || (self.lda >= k && self.a.len() >= (m - 1) * self.lda + k),
            "A is too small"
        );
        assert!(
            self.bias.is_none_or(|bias| bias.len() >= m),
            "bias too short"
        );
        if k == 0 {
            for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
                row[..n].fill(self.bias.map_or(0.0, |bias| bias[i]));
            }
            return;
        }
        let (mr, nr) = (isa.mr(), isa.nr());
        let item_cols = nr * PANELS_PER_ITEM;
        let col_items = n.div_ceil(item_cols);
        let wanted = ITEMS_PER_THREAD * rayon::current_num_threads();
        let row_split = if col_items >= wanted {
            1
        } else {
            wanted.div_ceil(col_items).min(m.div_ceil(mr))
        };
        let item_rows = m.div_ceil(row_split).next_multiple_of(mr);
        let row_items = m.div_ceil(item_rows);
        let shared = SharedC(c.as_mut_ptr());
        (0..row_items * col_items).into_par_iter().for_each(|item| {
            let rows = (item / col_items) * item_rows..((item / col_items + 1) * item_rows).min(m);
            let cols = (item % col_items) * item_cols..((item % col_items + 1) * item_cols).min(n);
            PACKED_B.with_borrow_mut(|packed| {
                // SAFETY: the item's rectangle lies inside `c` (checked above) and no other
                // item writes it.
                unsafe { self.item(isa, b, shared.ptr(), ldc, rows, cols, packed) }
            });
        });
    }

    /// One work item: rows `rows` and columns `cols` of `C`, over all of `K`.
    ///
    /// # Safety
    ///
    /// `c` must address the rectangle with row stride `ldc`, written by no one else meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn item(
        &self,
        isa: Isa,
        b: &impl PackB,
        c: *mut f32,
        ldc: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        packed: &mut Vec<f32>,
    ) {
        let (mr, nr) = (isa.mr(), isa.nr());
        let panels = cols.len().div_ceil(nr);
        for k0 in (0..self.k).step_by(KC) {
            let kc = KC.min(self.k - k0);
            packed.resize(panels * kc * nr, 0.0);
            b.pack(k0, kc, cols.start, cols.len(), nr, packed);
            for row in rows.clone().step_by(mr) {
                for q in 0..panels {
                    let col = cols.start + q * nr;
                    let b_panel = packed[q * kc * nr..].as_ptr();
                    let c_tile = CTile {
                        // SAFETY: (row, col) lies in the item's rectangle.
                        ptr: unsafe { c.add(row * ldc + col) },
                        ldc,
                        rows: mr.min(rows.end - row),
                        cols: nr.min(cols.end - col),
                        accumulate: k0 > 0,
                        row_bias: self
                            .bias
                            .map_or(std::ptr::null(), |bias| bias[row..].as_ptr()),
                    };
                    let a_panel = APanel {
                        ptr: self.a[row * self.lda + k0..].as_ptr(),
                        row_stride: self.lda,
                        k_stride: 1,
                    };
                    // SAFETY: `isa` was detected; `a_panel` addresses `c_tile.rows` rows of
                    // `kc` floats of A, `b_panel` `kc × nr` packed floats, `c_tile` the
                    // rectangle's part, and the bias has a value per row (checked in `run`).
                    unsafe { tile(isa, kc, a_panel, b_panel, c_tile) };
                }
            }
        }
    }
}
