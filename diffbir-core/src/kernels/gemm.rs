//! A blocked, multi-threaded GEMM, `C = A · B (+ bias per row or per column)`, on the
//! micro-kernels of [`super::microkernel`], in f32 or in bf16 with f32 accumulation.
//!
//! `A` is a plain row-major matrix (the weights of a convolution, the activations of a linear
//! layer), read in place: packing it would cost as much as the product on the low-resolution
//! layers, where `N` is small. `B` is anything that can write its blocks row by row ([`PackB`]):
//! a plain matrix, its transpose, or an image seen through im2col ([`super::conv::Im2col`]),
//! so a convolution never materialises its im2col matrix.
//!
//! The work is a grid of (row range, column range) items run on rayon's pool. Each item walks
//! `K` in blocks of [`KC`]: it packs its `KC × columns` block of `B` (kept in L2), then runs the
//! micro-kernel over every tile, column panel outside and row panel inside, so each packed panel
//! of `B` (`KC × NR`, 32 KiB in f32) stays in L1 while the rows of `A` stream past it. A bf16
//! item accumulates its rectangle in f32 and rounds it to bf16 once, at the end.

// The kernels need `unsafe`: the work items write disjoint rectangles of one output through a shared pointer. Every block states why it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;

use rayon::prelude::*;

use super::microkernel::{APanel, CTile, Isa, TileBias, bf16, tile, tile_bf16};

/// Rows of `B` (terms of the sum) per block.
pub const KC: usize = 384;
/// Column panels of `B` per work item.
const PANELS_PER_ITEM: usize = 12;
/// Work items per thread the grid aims at, for load balance.
const ITEMS_PER_THREAD: usize = 4;

/// A `K × N` right-hand side that writes its blocks for the micro-kernel.
pub trait PackB<T>: Sync {
    /// Writes rows `k0..k0 + kc` and columns `n0..n0 + nc` as `nc.div_ceil(nr)` consecutive
    /// panels of `kc × nr` elements (row `p` of panel `q` holds columns `n0 + q·nr ..`), with
    /// zeros past column `n0 + nc`. `out` holds exactly that many elements.
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [T]);
}

/// A plain row-major `K × N` matrix with row stride `ld`.
#[derive(Debug, Clone, Copy)]
pub struct MatB<'a, T> {
    /// The elements.
    pub data: &'a [T],
    /// Row stride (≥ N).
    pub ld: usize,
}

impl<T: Element> PackB<T> for MatB<'_, T> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [T]) {
        for (q, panel) in out.chunks_exact_mut(kc * nr).enumerate() {
            let col = n0 + q * nr;
            let width = nr.min(n0 + nc - col);
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                let src = (k0 + p) * self.ld + col;
                dst[..width].copy_from_slice(&self.data[src..src + width]);
                dst[width..].fill(T::default());
            }
        }
    }
}

/// The transpose of a row-major `N × K` matrix with row stride `ld`, as a `K × N` right-hand
/// side (the keys of attention, a linear layer's weight as PyTorch stores it).
#[derive(Debug, Clone, Copy)]
pub struct TransposedB<'a, T> {
    /// The elements of the `N × K` matrix.
    pub data: &'a [T],
    /// Its row stride (≥ K).
    pub ld: usize,
}

impl<T: Element> PackB<T> for TransposedB<'_, T> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, nr: usize, out: &mut [T]) {
        for (q, panel) in out.chunks_exact_mut(kc * nr).enumerate() {
            let col = n0 + q * nr;
            let width = nr.min(n0 + nc - col);
            for j in 0..nr {
                if j < width {
                    let row = &self.data[(col + j) * self.ld + k0..][..kc];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * nr + j] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * nr + j] = T::default();
                    }
                }
            }
        }
    }
}

/// The per-thread buffers of the work items.
#[derive(Debug)]
pub struct Buffers<T> {
    /// The packed block of `B`.
    packed: Vec<T>,
    /// The block of `B` row by row, before bf16 interleaves its pairs.
    rows: Vec<T>,
    /// The item's rectangle of `C` in f32, where `C` is not f32.
    c: Vec<f32>,
}

impl<T> Buffers<T> {
    const fn new() -> Self {
        Self {
            packed: Vec::new(),
            rows: Vec::new(),
            c: Vec::new(),
        }
    }
}

/// An element type of the GEMM: `f32`, or `bf16` (products summed in f32).
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// Terms per packed row of `B`: 2 where the micro-kernel takes them in pairs.
    const PAIR: usize;

    /// Whether the micro-kernel of this type runs on `isa`.
    fn runs_on(isa: Isa) -> bool;

    /// Rounds an f32 to this type.
    fn from_f32(v: f32) -> Self;

    /// `c` as an f32 pointer when this type is f32, so items write `C` in place.
    fn as_f32(c: *mut Self) -> Option<*mut f32>;

    /// Runs `f` on this thread's buffers.
    fn with_buffers<R>(f: impl FnOnce(&mut Buffers<Self>) -> R) -> R;

    /// Writes the block of `b` for the micro-kernel into `buffers.packed`: rows `k0..k0 + kc`
    /// (`kc` rounded up to [`Self::PAIR`] with zeros) and columns `n0..n0 + nc`.
    fn pack(
        b: &impl PackB<Self>,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        buffers: &mut Buffers<Self>,
    );

    /// Computes one tile ([`tile`], [`tile_bf16`]).
    ///
    /// # Safety
    ///
    /// As the micro-kernel's.
    unsafe fn tile(isa: Isa, k: usize, a: APanel<Self>, b: *const Self, c: CTile);
}

impl Element for f32 {
    const PAIR: usize = 1;

    fn runs_on(_: Isa) -> bool {
        true
    }

    fn from_f32(v: f32) -> Self {
        v
    }

    fn as_f32(c: *mut Self) -> Option<*mut f32> {
        Some(c)
    }

    fn with_buffers<R>(f: impl FnOnce(&mut Buffers<Self>) -> R) -> R {
        thread_local! {
            static BUFFERS: RefCell<Buffers<f32>> = const { RefCell::new(Buffers::new()) };
        }
        BUFFERS.with_borrow_mut(f)
    }

    fn pack(
        b: &impl PackB<Self>,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        buffers: &mut Buffers<Self>,
    ) {
        buffers.packed.resize(nc.div_ceil(nr) * kc * nr, 0.0);
        b.pack(k0, kc, n0, nc, nr, &mut buffers.packed);
    }

    unsafe fn tile(isa: Isa, k: usize, a: APanel<Self>, b: *const Self, c: CTile) {
        // SAFETY: forwarded from the caller.
        unsafe { tile(isa, k, a, b, c) }
    }
}

impl Element for bf16 {
    const PAIR: usize = 2;

    fn runs_on(isa: Isa) -> bool {
        isa.has_bf16()
    }

    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }

    fn as_f32(_: *mut Self) -> Option<*mut f32> {
        None
    }

    fn with_buffers<R>(f: impl FnOnce(&mut Buffers<Self>) -> R) -> R {
        thread_local! {
            static BUFFERS: RefCell<Buffers<bf16>> = const { RefCell::new(Buffers::new()) };
        }
        BUFFERS.with_borrow_mut(f)
    }

    fn pack(
        b: &impl PackB<Self>,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        buffers: &mut Buffers<Self>,
    ) {
        let panels = nc.div_ceil(nr);
        let pairs = kc.div_ceil(2);
        buffers.rows.resize(panels * kc * nr, bf16::ZERO);
        b.pack(k0, kc, n0, nc, nr, &mut buffers.rows);
        buffers.packed.resize(panels * pairs * 2 * nr, bf16::ZERO);
        // Row `p` of a packed panel holds, for each column `j`, terms `2p` and `2p + 1`.
        for (rows, packed) in buffers
            .rows
            .chunks_exact(kc * nr)
            .zip(buffers.packed.chunks_exact_mut(pairs * 2 * nr))
        {
            for (p, dst) in packed.chunks_exact_mut(2 * nr).enumerate() {
                let even = &rows[2 * p * nr..][..nr];
                if 2 * p + 1 < kc {
                    let odd = &rows[(2 * p + 1) * nr..][..nr];
                    for ((d, &e), &o) in dst.chunks_exact_mut(2).zip(even).zip(odd) {
                        d[0] = e;
                        d[1] = o;
                    }
                } else {
                    for (d, &e) in dst.chunks_exact_mut(2).zip(even) {
                        d[0] = e;
                        d[1] = bf16::ZERO;
                    }
                }
            }
        }
    }

    unsafe fn tile(isa: Isa, k: usize, a: APanel<Self>, b: *const Self, c: CTile) {
        // SAFETY: forwarded from the caller.
        unsafe { tile_bf16(isa, k, a, b, c) }
    }
}

/// The bias of a product.
#[derive(Debug, Clone, Copy)]
pub enum Bias<'a> {
    /// None.
    None,
    /// One value per row of `C` (a convolution's output channels).
    Rows(&'a [f32]),
    /// One value per column of `C` (a linear layer's outputs).
    Cols(&'a [f32]),
}

/// The shapes and operands of one product.
#[derive(Debug, Clone, Copy)]
pub struct Gemm<'a, T> {
    /// Rows of `A` and `C`.
    pub m: usize,
    /// Columns of `B` and `C`.
    pub n: usize,
    /// Columns of `A`, rows of `B`.
    pub k: usize,
    /// `A`, row-major with row stride `lda`.
    pub a: &'a [T],
    /// Row stride of `A` (≥ k).
    pub lda: usize,
    /// Added to the product.
    pub bias: Bias<'a>,
}

/// A pointer to `C` that the work items share; each item writes its own rectangle.
struct SharedC<T>(*mut T);
impl<T> Clone for SharedC<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedC<T> {}
// SAFETY: items write disjoint rectangles of `C` and the caller's `&mut` outlives the scope.
unsafe impl<T> Send for SharedC<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedC<T> {}

impl<T> SharedC<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    fn ptr(self) -> *mut T {
        self.0
    }
}

impl<T: Element> Gemm<'_, T> {
    /// Computes `C = A · B (+ bias)` into the row-major `m × n` matrix `c` (row stride `ldc`).
    ///
    /// # Panics
    ///
    /// When an operand is smaller than its shape says, or `T`'s micro-kernel does not run on
    /// `isa` ([`Element::runs_on`]): bugs of the caller, not user input.
    pub fn run(&self, isa: Isa, b: &impl PackB<T>, c: &mut [T], ldc: usize) {
        let Gemm { m, n, k, .. } = *self;
        if m == 0 || n == 0 {
            return;
        }
        assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too small");
        assert!(
            k == 0 || (self.lda >= k && self.a.len() >= (m - 1) * self.lda + k),
            "A is too small"
        );
        assert!(T::runs_on(isa), "no micro-kernel for this type on {isa:?}");
        let bias_at = |i: usize, j: usize| match self.bias {
            Bias::None => 0.0,
            Bias::Rows(bias) => bias[i],
            Bias::Cols(bias) => bias[j],
        };
        match self.bias {
            Bias::None => {}
            Bias::Rows(bias) => assert!(bias.len() >= m, "bias too short"),
            Bias::Cols(bias) => assert!(bias.len() >= n, "bias too short"),
        }
        if k == 0 {
            for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
                for (j, v) in row[..n].iter_mut().enumerate() {
                    *v = T::from_f32(bias_at(i, j));
                }
            }
            return;
        }
        if k % T::PAIR != 0 {
            // The pairs of the last term read one column past each row of `A`: a copy of `A`
            // with a zero column there (the packed `B` has a zero row there).
            let padded = k.next_multiple_of(T::PAIR);
            let mut a = vec![T::default(); m * padded];
            for (dst, src) in a.chunks_exact_mut(padded).zip(self.a.chunks(self.lda)) {
                dst[..k].copy_from_slice(&src[..k]);
            }
            let gemm = Gemm {
                a: &a,
                lda: padded,
                ..*self
            };
            return gemm.run_items(isa, b, c, ldc);
        }
        self.run_items(isa, b, c, ldc);
    }

    /// [`Self::run`] once `A`'s rows can be read in pairs.
    fn run_items(&self, isa: Isa, b: &impl PackB<T>, c: &mut [T], ldc: usize) {
        let Gemm { m, n, .. } = *self;
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
            T::with_buffers(|buffers| {
                // SAFETY: the item's rectangle lies inside `c` (checked above) and no other
                // item writes it.
                unsafe { self.item(isa, b, shared.ptr(), ldc, rows, cols, buffers) }
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
        b: &impl PackB<T>,
        c: *mut T,
        ldc: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        buffers: &mut Buffers<T>,
    ) {
        let (mr, nr) = (isa.mr(), isa.nr());
        let panels = cols.len().div_ceil(nr);
        // Where the f32 tiles go: `C` itself, or the item's f32 rectangle.
        let (origin, ld) = match T::as_f32(c) {
            // SAFETY: the rectangle's corner lies inside `c`.
            Some(c) => (unsafe { c.add(rows.start * ldc + cols.start) }, ldc),
            None => {
                buffers.c.resize(rows.len() * cols.len(), 0.0);
                (buffers.c.as_mut_ptr(), cols.len())
            }
        };
        for k0 in (0..self.k).step_by(KC) {
            let kc = KC.min(self.k - k0);
            T::pack(b, k0, kc, cols.start, cols.len(), nr, buffers);
            let kp = kc.next_multiple_of(T::PAIR);
            for row in rows.clone().step_by(mr) {
                for q in 0..panels {
                    let col = cols.start + q * nr;
                    let b_panel = buffers.packed[q * kp * nr..].as_ptr();
                    let c_tile = CTile {
                        // SAFETY: (row, col) lies in the item's rectangle.
                        ptr: unsafe { origin.add((row - rows.start) * ld + (col - cols.start)) },
                        ldc: ld,
                        rows: mr.min(rows.end - row),
                        cols: nr.min(cols.end - col),
                        accumulate: k0 > 0,
                        bias: match self.bias {
                            Bias::None => TileBias::None,
                            Bias::Rows(bias) => TileBias::Rows(bias[row..].as_ptr()),
                            Bias::Cols(bias) => TileBias::Cols(bias[col..].as_ptr()),
                        },
                    };
                    let a_panel = APanel {
                        ptr: self.a[row * self.lda + k0..].as_ptr(),
                        row_stride: self.lda,
                        k_stride: 1,
                    };
                    // SAFETY: `isa` runs `T`'s kernel (checked in `run`); `a_panel` addresses
                    // `c_tile.rows` rows of `kp` elements of A (`run` pads odd pairs),
                    // `b_panel` `kp × nr` packed elements, `c_tile` the rectangle's part, and
                    // the bias has a value per row or column (checked in `run`).
                    unsafe { T::tile(isa, kp, a_panel, b_panel, c_tile) };
                }
            }
        }
        if T::as_f32(c).is_none() {
            for (i, src) in buffers.c.chunks_exact(cols.len()).enumerate() {
                // SAFETY: row `rows.start + i` of the rectangle lies inside `c`.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        c.add((rows.start + i) * ldc + cols.start),
                        cols.len(),
                    )
                };
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = T::from_f32(s);
                }
            }
        }
    }
}
