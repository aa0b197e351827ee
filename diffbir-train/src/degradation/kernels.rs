//! Blur kernels of `dataset/degradation.py`, computed in f64 as numpy does.
//!
//! Every kernel is a square [`Kernel`] (row-major, odd size in practice) normalised to sum 1
//! before any zero padding. The grid of a kernel of size `k` is `ax = −⌊k/2⌋ … ⌊k/2⌋` (numpy's
//! `arange(-k // 2 + 1, k // 2 + 1)`), with `x` varying along columns and `y` along rows.

use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::invalid;

/// A square 2-D kernel in f64, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// Side length.
    pub size: usize,
    /// `size × size` values, row-major.
    pub values: Vec<f64>,
}

impl Kernel {
    /// The value at row `i`, column `j`.
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.size + j]
    }

    /// Sum of all values.
    pub fn sum(&self) -> f64 {
        self.values.iter().sum()
    }

    /// Zero-pads the kernel to `target` on each side symmetrically (`(target − size) / 2` on
    /// each side, as `np.pad` is used by the original); unchanged when `target <= size`.
    pub fn pad_to(self, target: usize) -> Self {
        if target <= self.size {
            return self;
        }
        let p = (target - self.size) / 2;
        let n = self.size + 2 * p;
        let mut values = vec![0.0; n * n];
        for i in 0..self.size {
            for j in 0..self.size {
                values[(i + p) * n + j + p] = self.at(i, j);
            }
        }
        Self { size: n, values }
    }

    /// The kernel as a float tensor.
    ///
    /// # Shapes
    ///
    /// - output: `[size, size]`
    pub fn to_tensor(&self, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = self.values.iter().map(|v| *v as f32).collect();
        Tensor::from_data(TensorData::new(values, [self.size, self.size]), device)
    }

    fn normalized(mut self) -> Self {
        let sum = self.sum();
        for v in &mut self.values {
            *v /= sum;
        }
        self
    }
}

/// numpy's `arange(-k // 2 + 1, k // 2 + 1)` (with Python's floor division).
fn axis(kernel_size: usize) -> Vec<f64> {
    let k = kernel_size as i64;
    let start = (-k).div_euclid(2) + 1;
    (0..k).map(|i| (start + i) as f64).collect()
}

/// `mesh_grid(k)`: the `[k, k, 2]` grid of `(x, y)` coordinates, flattened row-major
/// (`xy[i][j] = (ax[j], ax[i])`).
///
/// # Shapes
///
/// - output: `k·k·2` values of a `[k, k, 2]` array
pub fn mesh_grid(kernel_size: usize) -> Vec<f64> {
    let ax = axis(kernel_size);
    let mut out = Vec::with_capacity(kernel_size * kernel_size * 2);
    for y in &ax {
        for x in &ax {
            out.push(*x);
            out.push(*y);
        }
    }
    out
}

/// `sigma_matrix2`: the covariance `U · diag(σx², σy²) · Uᵀ` with `U` the rotation by `theta`
/// (radians), as `[[a, b], [c, d]]`.
pub fn sigma_matrix2(sig_x: f64, sig_y: f64, theta: f64) -> [[f64; 2]; 2] {
    let (s, c) = theta.sin_cos();
    let u = [[c, -s], [s, c]];
    let d = [sig_x * sig_x, sig_y * sig_y];
    // D · Uᵀ, then U · (D · Uᵀ).
    let du = [
        [d[0] * u[0][0], d[0] * u[1][0]],
        [d[1] * u[0][1], d[1] * u[1][1]],
    ];
    let mut out = [[0.0; 2]; 2];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = u[i][0] * du[0][j] + u[i][1] * du[1][j];
        }
    }
    out
}

/// Inverse of a 2×2 matrix.
fn inverse2(m: [[f64; 2]; 2]) -> Result<[[f64; 2]; 2]> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if det == 0.0 || !det.is_finite() {
        return Err(invalid("sigma", "the covariance matrix is singular"));
    }
    Ok([
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ])
}

/// The covariance of a kernel: isotropic uses `sig_x` only.
fn covariance(sig_x: f64, sig_y: f64, theta: f64, isotropic: bool) -> [[f64; 2]; 2] {
    if isotropic {
        [[sig_x * sig_x, 0.0], [0.0, sig_x * sig_x]]
    } else {
        sigma_matrix2(sig_x, sig_y, theta)
    }
}

/// The quadratic form `pᵀ Σ⁻¹ p` at every grid point, then `f` of it, normalised.
fn from_quadratic_form(
    kernel_size: usize,
    sigma: [[f64; 2]; 2],
    f: impl Fn(f64) -> f64,
) -> Result<Kernel> {
    check_size(kernel_size)?;
    let inv = inverse2(sigma)?;
    let ax = axis(kernel_size);
    let mut values = Vec::with_capacity(kernel_size * kernel_size);
    for y in &ax {
        for x in &ax {
            // (p · Σ⁻¹) · p, as `np.sum(np.dot(grid, inv) * grid, 2)`.
            let a = x * inv[0][0] + y * inv[1][0];
            let b = x * inv[0][1] + y * inv[1][1];
            values.push(f(a * x + b * y));
        }
    }
    Ok(Kernel {
        size: kernel_size,
        values,
    }
    .normalized())
}

fn check_size(kernel_size: usize) -> Result<()> {
    if kernel_size == 0 {
        return Err(invalid("kernel_size", "must be at least 1"));
    }
    Ok(())
}

fn check_sigma(sig_x: f64, sig_y: f64, isotropic: bool) -> Result<()> {
    let ok = sig_x > 0.0 && (isotropic || sig_y > 0.0);
    if !ok {
        return Err(invalid(
            "sigma",
            format!("must be > 0, got ({sig_x}, {sig_y})"),
        ));
    }
    Ok(())
}

/// `bivariate_Gaussian`: `exp(−½ pᵀΣ⁻¹p)`, normalised. Isotropic kernels use `sig_x` only.
pub fn bivariate_gaussian(
    kernel_size: usize,
    sig_x: f64,
    sig_y: f64,
    theta: f64,
    isotropic: bool,
) -> Result<Kernel> {
    check_sigma(sig_x, sig_y, isotropic)?;
    let sigma = covariance(sig_x, sig_y, theta, isotropic);
    from_quadratic_form(kernel_size, sigma, |q| (-0.5 * q).exp())
}

/// `bivariate_generalized_Gaussian`: `exp(−½ (pᵀΣ⁻¹p)^β)`, normalised.
pub fn bivariate_generalized_gaussian(
    kernel_size: usize,
    sig_x: f64,
    sig_y: f64,
    theta: f64,
    beta: f64,
    isotropic: bool,
) -> Result<Kernel> {
    check_sigma(sig_x, sig_y, isotropic)?;
    let sigma = covariance(sig_x, sig_y, theta, isotropic);
    from_quadratic_form(kernel_size, sigma, |q| (-0.5 * q.powf(beta)).exp())
}

/// `bivariate_plateau`: `1 / ((pᵀΣ⁻¹p)^β + 1)`, normalised.
pub fn bivariate_plateau(
    kernel_size: usize,
    sig_x: f64,
    sig_y: f64,
    theta: f64,
    beta: f64,
    isotropic: bool,
) -> Result<Kernel> {
    check_sigma(sig_x, sig_y, isotropic)?;
    let sigma = covariance(sig_x, sig_y, theta, isotropic);
    from_quadratic_form(kernel_size, sigma, |q| 1.0 / (q.powf(beta) + 1.0))
}

/// `circular_lowpass_kernel`: the 2-D "sinc" `cutoff · J₁(cutoff·r) / (2π r)` (centre
/// `cutoff² / 4π`), normalised, then zero-padded to `pad_to` when that is larger.
pub fn circular_lowpass_kernel(cutoff: f64, kernel_size: usize, pad_to: usize) -> Result<Kernel> {
    if kernel_size % 2 != 1 {
        return Err(invalid(
            "kernel_size",
            format!("must be odd, got {kernel_size}"),
        ));
    }
    let c = (kernel_size as f64 - 1.0) / 2.0;
    let mut values = Vec::with_capacity(kernel_size * kernel_size);
    for i in 0..kernel_size {
        for j in 0..kernel_size {
            let (dx, dy) = (i as f64 - c, j as f64 - c);
            let r = (dx * dx + dy * dy).sqrt();
            values.push(cutoff * bessel_j1(cutoff * r) / (2.0 * std::f64::consts::PI * r));
        }
    }
    let centre = (kernel_size - 1) / 2;
    values[centre * kernel_size + centre] = cutoff * cutoff / (4.0 * std::f64::consts::PI);
    let kernel = Kernel {
        size: kernel_size,
        values,
    }
    .normalized();
    Ok(if pad_to > kernel_size {
        kernel.pad_to(pad_to)
    } else {
        kernel
    })
}

/// Bessel function of the first kind of order 1 (Miller's backward recurrence, normalised by
/// `J₀ + 2 Σ J₂ₖ = 1`): accurate to a few ulps of the largest `|Jₙ(x)|`.
pub fn bessel_j1(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    if !x.is_finite() {
        return if x.is_nan() { f64::NAN } else { 0.0 };
    }
    let ax = x.abs();
    // Start well above the order where Jₙ(ax) becomes negligible.
    let start = ax as usize + 40 + (10.0 * ax.cbrt()) as usize;
    let start = start + start % 2;
    let (mut j_next, mut j) = (0.0f64, 1e-30f64);
    let mut sum = 2.0 * j; // `start` is even
    let mut j1 = 0.0;
    for k in (1..=start).rev() {
        let j_prev = (2.0 * k as f64 / ax) * j - j_next;
        j_next = j;
        j = j_prev;
        let order = k - 1;
        if order == 1 {
            j1 = j;
        }
        if order % 2 == 0 {
            sum += if order == 0 { j } else { 2.0 * j };
        }
        if j.abs() > 1e200 {
            j *= 1e-200;
            j_next *= 1e-200;
            j1 *= 1e-200;
            sum *= 1e-200;
        }
    }
    let value = j1 / sum;
    if x < 0.0 { -value } else { value }
}

/// OpenCV's `getGaussianKernel(ksize, sigma)` in f64: `sigma <= 0` means
/// `0.3·((ksize − 1)·0.5 − 1) + 0.8`, and odd sizes up to 7 then use OpenCV's fixed tables.
pub fn cv_gaussian_kernel(ksize: usize, sigma: f64) -> Result<Vec<f64>> {
    const SMALL: [&[f64]; 4] = [
        &[1.0],
        &[0.25, 0.5, 0.25],
        &[0.0625, 0.25, 0.375, 0.25, 0.0625],
        &[
            0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
        ],
    ];
    check_size(ksize)?;
    if ksize % 2 == 1 && ksize <= 7 && sigma <= 0.0 {
        return Ok(SMALL[ksize / 2].to_vec());
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        ((ksize as f64 - 1.0) * 0.5 - 1.0) * 0.3 + 0.8
    };
    let scale = -0.5 / (sigma * sigma);
    let centre = (ksize as f64 - 1.0) * 0.5;
    let mut values: Vec<f64> = (0..ksize)
        .map(|i| {
            let x = i as f64 - centre;
            (scale * x * x).exp()
        })
        .collect();
    let inv = 1.0 / values.iter().sum::<f64>();
    for v in &mut values {
        *v *= inv;
    }
    Ok(values)
}

/// `USMSharp`'s kernel: the outer product of `getGaussianKernel(radius, sigma)` with itself,
/// the radius made odd first (50 → 51).
pub fn usm_kernel(radius: usize, sigma: f64) -> Result<Kernel> {
    let size = if radius.is_multiple_of(2) {
        radius + 1
    } else {
        radius
    };
    let g = cv_gaussian_kernel(size, sigma)?;
    let values = g
        .iter()
        .flat_map(|a| g.iter().map(move |b| a * b))
        .collect();
    Ok(Kernel { size, values })
}

/// A blur-kernel family of `random_mixed_kernels` (the names of DiffBIR's configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// Isotropic Gaussian.
    Iso,
    /// Anisotropic Gaussian.
    Aniso,
    /// Isotropic generalized Gaussian.
    GeneralizedIso,
    /// Anisotropic generalized Gaussian.
    GeneralizedAniso,
    /// Isotropic plateau.
    PlateauIso,
    /// Anisotropic plateau.
    PlateauAniso,
}

impl KernelKind {
    /// Every family, in the order of DiffBIR's Real-ESRGAN configs.
    pub const ALL: [KernelKind; 6] = [
        KernelKind::Iso,
        KernelKind::Aniso,
        KernelKind::GeneralizedIso,
        KernelKind::GeneralizedAniso,
        KernelKind::PlateauIso,
        KernelKind::PlateauAniso,
    ];
}

/// `random.choices(items, weights)[0]`: one uniform draw scaled by the total weight, the first
/// item whose cumulative weight exceeds it. `weights` must be non-negative with a positive
/// sum and as long as `items` (not checked here: configs validate it).
pub fn choose<T: Copy>(rng: &mut impl Rng, items: &[T], weights: &[f64]) -> T {
    let total: f64 = weights.iter().sum();
    let mut pick = rng.random::<f64>() * total;
    for (item, w) in items.iter().zip(weights) {
        if pick < *w {
            return *item;
        }
        pick -= w;
    }
    items[items.len() - 1]
}

/// A uniform draw in `[lo, hi)` (`np.random.uniform(lo, hi)`; `lo` when they are equal).
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// The parameter ranges of [`random_mixed_kernel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelRanges {
    /// σ range of both axes.
    pub sigma: [f64; 2],
    /// β range of the generalized Gaussians.
    pub betag: [f64; 2],
    /// β range of the plateaus.
    pub betap: [f64; 2],
}

/// `random_mixed_kernels(kinds, probs, k, sigma, sigma, [−π, π], betag, betap, None)`: picks a
/// family, then draws, in the reference's order, σx, (σy and θ for anisotropic families), and
/// β (from `[β_min, 1)` or `[1, β_max)` with probability ½ each).
pub fn random_mixed_kernel(
    rng: &mut impl Rng,
    kinds: &[KernelKind],
    probs: &[f64],
    kernel_size: usize,
    ranges: &KernelRanges,
) -> Result<Kernel> {
    use std::f64::consts::PI;
    let kind = choose(rng, kinds, probs);
    let isotropic = matches!(
        kind,
        KernelKind::Iso | KernelKind::GeneralizedIso | KernelKind::PlateauIso
    );
    let [s0, s1] = ranges.sigma;
    let sx = uniform(rng, s0, s1);
    let (sy, theta) = if isotropic {
        (sx, 0.0)
    } else {
        (uniform(rng, s0, s1), uniform(rng, -PI, PI))
    };
    let mut beta = |[lo, hi]: [f64; 2]| {
        if rng.random::<f64>() < 0.5 {
            uniform(rng, lo, 1.0)
        } else {
            uniform(rng, 1.0, hi)
        }
    };
    match kind {
        KernelKind::Iso | KernelKind::Aniso => {
            bivariate_gaussian(kernel_size, sx, sy, theta, isotropic)
        }
        KernelKind::GeneralizedIso | KernelKind::GeneralizedAniso => {
            let b = beta(ranges.betag);
            bivariate_generalized_gaussian(kernel_size, sx, sy, theta, b, isotropic)
        }
        KernelKind::PlateauIso | KernelKind::PlateauAniso => {
            let b = beta(ranges.betap);
            bivariate_plateau(kernel_size, sx, sy, theta, b, isotropic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn kernels_sum_to_one() {
        let ks = [
            bivariate_gaussian(21, 2.3, 2.3, 0.0, true).unwrap(),
            bivariate_gaussian(15, 3.1, 1.2, 0.7, false).unwrap(),
            bivariate_generalized_gaussian(13, 1.7, 0.9, 0.3, 0.75, false).unwrap(),
            bivariate_plateau(9, 1.3, 1.3, 0.0, 1.5, true).unwrap(),
            circular_lowpass_kernel(1.2, 13, 0).unwrap(),
            usm_kernel(50, 0.0).unwrap(),
        ];
        for k in ks {
            assert!(close(k.sum(), 1.0, 1e-12), "{}", k.sum());
        }
    }

    #[test]
    fn padding_keeps_the_sum_and_centres() {
        let k = bivariate_gaussian(15, 3.1, 1.2, 0.7, false).unwrap();
        let p = k.clone().pad_to(21);
        assert_eq!(p.size, 21);
        assert!(close(p.sum(), k.sum(), 1e-15));
        assert_eq!(p.at(10, 10), k.at(7, 7));
        assert_eq!(p.at(0, 0), 0.0);
        let s = circular_lowpass_kernel(2.0, 7, 21).unwrap();
        assert_eq!(s.size, 21);
    }

    #[test]
    fn isotropic_gaussian_is_symmetric_and_peaks_at_the_centre() {
        let k = bivariate_gaussian(9, 1.5, 0.0, 0.0, true).unwrap();
        for i in 0..9 {
            for j in 0..9 {
                assert!(close(k.at(i, j), k.at(j, i), 1e-18));
                assert!(close(k.at(i, j), k.at(8 - i, j), 1e-18));
                assert!(k.at(i, j) <= k.at(4, 4));
            }
        }
    }

    #[test]
    fn grid_follows_numpy() {
        assert_eq!(axis(5), vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
        assert_eq!(axis(4), vec![-1.0, 0.0, 1.0, 2.0]);
        let g = mesh_grid(3);
        // xy[0][2] = (x = 1, y = −1)
        assert_eq!(&g[4..6], &[1.0, -1.0]);
    }

    #[test]
    fn bessel_j1_known_values() {
        for (x, want) in [
            (1.0, 0.440_050_585_744_933_5),
            (5.0, -0.327_579_137_591_465_2),
            (10.0, 0.043_472_746_168_861_44),
            (-2.0, -0.576_724_807_756_873_4),
            (30.0, -0.118_751_062_616_623),
        ] {
            assert!(
                close(bessel_j1(x), want, 1e-14),
                "J1({x}) = {}",
                bessel_j1(x)
            );
        }
    }

    #[test]
    fn opencv_gaussian() {
        assert_eq!(cv_gaussian_kernel(3, 0.0).unwrap(), vec![0.25, 0.5, 0.25]);
        let g = cv_gaussian_kernel(51, 0.0).unwrap();
        assert!(close(g.iter().sum::<f64>(), 1.0, 1e-14));
        assert!(close(g[25] / g[33], (32.0f64 / 64.0).exp(), 1e-12));
    }

    #[test]
    fn singular_or_zero_sigma_is_an_error() {
        assert!(bivariate_gaussian(5, 0.0, 1.0, 0.0, true).is_err());
        assert!(circular_lowpass_kernel(1.0, 4, 0).is_err());
    }

    #[test]
    fn random_kernels_follow_their_family_and_ranges() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let ranges = KernelRanges {
            sigma: [0.2, 3.0],
            betag: [0.5, 4.0],
            betap: [1.0, 2.0],
        };
        for kind in KernelKind::ALL {
            for size in [7, 21] {
                let k = random_mixed_kernel(&mut rng, &[kind], &[1.0], size, &ranges).unwrap();
                assert_eq!(k.size, size);
                assert!(close(k.sum(), 1.0, 1e-12));
                let c = size / 2;
                let symmetric = (0..size).all(|i| close(k.at(i, c), k.at(c, i), 1e-15));
                let iso = matches!(
                    kind,
                    KernelKind::Iso | KernelKind::GeneralizedIso | KernelKind::PlateauIso
                );
                if iso {
                    assert!(symmetric, "{kind:?} must be isotropic");
                }
            }
        }
        // The same draws reproduce the same kernel; the family follows the weights.
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let kinds = [KernelKind::Iso, KernelKind::PlateauAniso];
        assert_eq!(
            random_mixed_kernel(&mut a, &kinds, &[0.5, 0.5], 11, &ranges).unwrap(),
            random_mixed_kernel(&mut b, &kinds, &[0.5, 0.5], 11, &ranges).unwrap()
        );
        let picks: Vec<usize> = (0..2000)
            .map(|_| choose(&mut rng, &[0usize, 1, 2], &[0.7, 0.0, 0.3]))
            .collect();
        let count = |v: usize| picks.iter().filter(|&&p| p == v).count();
        assert_eq!(count(1), 0);
        assert!((1300..1500).contains(&count(0)), "{}", count(0));
    }
}
