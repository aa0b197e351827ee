//! `cv2.estimateAffinePartial2D(from, to, method=cv2.LMEDS)` (OpenCV 4.12, default
//! arguments: confidence 0.99, 2000 iterations at most, 10 refinement iterations) and
//! `cv2.invertAffineTransform`: the similarity transform facexlib aligns faces with.
//!
//! OpenCV's steps, in its arithmetic (`modules/calib3d/src/ptsetreg.cpp`,
//! `levmarq.cpp`, `core/src/lapack.cpp`):
//! 1. the points are rounded to `f32`;
//! 2. least median of squares over 13 pairs of points drawn by `cv::RNG(-1)` (the same pairs
//!    for every call with the same number of points), each pair solved in closed form, the
//!    errors in `f32`, the median the `n/2`-th smallest, the first minimum kept;
//! 3. inliers: error ≤ `(f32)(σ²)`, `σ = 2.5 · 1.4826 · (1 + 5/(n − 2)) · √median`;
//! 4. Levenberg–Marquardt on `(a, b, tx, ty)` over the inliers, with OpenCV's Jacobi
//!    eigen-solver (the normal equations are ill-conditioned, so a different solver moves the
//!    translation by up to 1e-5).

/// A 2 × 3 affine matrix, row-major: `[[a, b, c], [d, e, f]]` maps `(x, y)` to
/// `(a·x + b·y + c, d·x + e·y + f)`.
pub type Affine = [[f64; 3]; 2];

/// `cv::RNG`: multiply-with-carry on a 64-bit state.
struct CvRng(u64);

impl CvRng {
    fn next(&mut self) -> u32 {
        self.0 = u64::from(self.0 as u32) * 4_164_903_690 + (self.0 >> 32);
        self.0 as u32
    }

    /// `uniform(0, n)` for `n > 0`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u32) as usize
    }
}

/// `RANSACUpdateNumIters(p, ep, model_points, max_iters)`.
fn ransac_iterations(p: f64, ep: f64, model_points: i32, max_iters: usize) -> usize {
    let num = (1.0 - p).max(f64::MIN_POSITIVE);
    let denom = 1.0 - (1.0 - ep).powi(model_points);
    if denom < f64::MIN_POSITIVE {
        return 0;
    }
    let (num, denom) = (num.ln(), denom.ln());
    if denom >= 0.0 || -num >= max_iters as f64 * -denom {
        max_iters
    } else {
        (num / denom).round_ties_even() as usize
    }
}

/// `AffinePartial2DEstimatorCallback::runKernel`: the similarity through two point pairs.
fn two_point_model(from: [[f32; 2]; 2], to: [[f32; 2]; 2]) -> Affine {
    let [[x1, y1], [x2, y2]] = from.map(|p| p.map(f64::from));
    let [[tx1, ty1], [tx2, ty2]] = to.map(|p| p.map(f64::from));
    let d = 1.0 / ((x1 - x2) * (x1 - x2) + (y1 - y2) * (y1 - y2));
    let s0 = d * ((tx1 - tx2) * (x1 - x2) + (ty1 - ty2) * (y1 - y2));
    let s1 = d * ((ty1 - ty2) * (x1 - x2) - (tx1 - tx2) * (y1 - y2));
    let s2 = d
        * ((ty1 - ty2) * (x1 * y2 - x2 * y1)
            - (tx1 * y2 - tx2 * y1) * (y1 - y2)
            - (tx1 * x2 - tx2 * x1) * (x1 - x2));
    let s3 = d
        * (-(tx1 - tx2) * (x1 * y2 - x2 * y1)
            - (ty1 * x2 - ty2 * x1) * (x1 - x2)
            - (ty1 * y2 - ty2 * y1) * (y1 - y2));
    [[s0, -s1, s2], [s1, s0, s3]]
}

/// `Affine2DEstimatorCallback::computeError`: squared distances in `f32`.
fn errors(from: &[[f32; 2]], to: &[[f32; 2]], m: &Affine) -> Vec<f32> {
    let f = [m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2]].map(|v| v as f32);
    from.iter()
        .zip(to)
        .map(|(&[x, y], &[tx, ty])| {
            let a = ((f[0] * x + f[1] * y) + f[2]) - tx;
            let b = ((f[3] * x + f[4] * y) + f[5]) - ty;
            a * a + b * b
        })
        .collect()
}

/// The robust stage (`LMeDSPointSetRegistrator::run`): the best minimal model and the
/// inlier mask, or `None` when no model was found.
fn lmeds(from: &[[f32; 2]], to: &[[f32; 2]]) -> Option<(Affine, Vec<bool>)> {
    const MODEL_POINTS: usize = 2;
    let count = from.len();
    if count < MODEL_POINTS {
        return None;
    }
    if count == MODEL_POINTS {
        return Some((
            two_point_model([from[0], from[1]], [to[0], to[1]]),
            vec![true; count],
        ));
    }
    let mut rng = CvRng(u64::MAX);
    let iterations = ransac_iterations(0.99, 0.45, MODEL_POINTS as i32, 2000).max(3);
    let mut min_median = f64::MAX;
    let mut best: Option<Affine> = None;
    for _ in 0..iterations {
        // getSubset: two distinct indices; the collinearity check never rejects two points.
        let i = rng.below(count);
        let mut j = rng.below(count);
        while j == i {
            j = rng.below(count);
        }
        let model = two_point_model([from[i], from[j]], [to[i], to[j]]);
        let mut err = errors(from, to, &model);
        // nth_element on the bit patterns as i32 (the float order for errors ≥ 0, NaN last).
        err.sort_by_key(|e| e.to_bits() as i32);
        let median = f64::from(err[count / 2]);
        if median < min_median {
            min_median = median;
            best = Some(model);
        }
    }
    let (median, model) = (min_median, best?);
    let sigma =
        (2.5 * 1.4826 * (1.0 + 5.0 / (count - MODEL_POINTS) as f64) * median.sqrt()).max(0.001);
    let threshold = (sigma * sigma) as f32;
    let mask: Vec<bool> = errors(from, to, &model)
        .into_iter()
        .map(|e| e <= threshold)
        .collect();
    (mask.iter().filter(|&&m| m).count() >= MODEL_POINTS).then_some((model, mask))
}

/// `norm(r, NORM_L2SQR)` for `f64` as OpenCV's AVX2 build computes it: blocks of 16 with
/// fused multiply-adds into 4 × 4 accumulators, then groups of four summed plainly and the
/// last `len % 4` terms fused.
fn norm_l2sqr(r: &[f64]) -> f64 {
    let n = r.len();
    let mut s = 0.0;
    let mut j = 0;
    if n >= 16 {
        let mut acc = [[0.0f64; 4]; 4];
        while j + 16 <= n {
            for (q, lanes) in acc.iter_mut().enumerate() {
                for (l, a) in lanes.iter_mut().enumerate() {
                    let v = r[j + 4 * q + l];
                    *a = v.mul_add(v, *a);
                }
            }
            j += 16;
        }
        let tot: [f64; 4] =
            std::array::from_fn(|l| ((acc[0][l] + acc[1][l]) + acc[2][l]) + acc[3][l]);
        s += (tot[0] + tot[1]) + (tot[2] + tot[3]);
    }
    let vec_end = j + (n - j) / 4 * 4;
    for (k, &v) in r.iter().enumerate().skip(j) {
        s = if k >= vec_end {
            v.mul_add(v, s)
        } else {
            s + v * v
        };
    }
    s
}

/// OpenCV's `hypot`.
fn cv_hypot(a: f64, b: f64) -> f64 {
    let (a, b) = (a.abs(), b.abs());
    if a > b {
        let r = b / a;
        a * (1.0 + r * r).sqrt()
    } else if b > 0.0 {
        let r = a / b;
        b * (1.0 + r * r).sqrt()
    } else {
        0.0
    }
}

/// `JacobiImpl_<double>` on a symmetric 4 × 4 matrix: eigenvalues (descending) and
/// eigenvectors (rows). The rotations index rows and columns as OpenCV's loops do.
#[allow(clippy::needless_range_loop)]
fn jacobi(s: &[[f64; 4]; 4]) -> ([f64; 4], [[f64; 4]; 4]) {
    const N: usize = 4;
    let mut a = *s;
    let mut v = [[0.0; N]; N];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let mut w = [0.0; N];
    let (mut ind_r, mut ind_c) = ([0usize; N], [0usize; N]);
    let row_max = |a: &[[f64; N]; N], k: usize| {
        let (mut m, mut mv) = (k + 1, a[k][k + 1].abs());
        for (i, x) in a[k].iter().enumerate().skip(k + 2) {
            if mv < x.abs() {
                (mv, m) = (x.abs(), i);
            }
        }
        m
    };
    let col_max = |a: &[[f64; N]; N], k: usize| {
        let (mut m, mut mv) = (0, a[0][k].abs());
        for (i, row) in a.iter().enumerate().take(k).skip(1) {
            if mv < row[k].abs() {
                (mv, m) = (row[k].abs(), i);
            }
        }
        m
    };
    for k in 0..N {
        w[k] = a[k][k];
        if k < N - 1 {
            ind_r[k] = row_max(&a, k);
        }
        if k > 0 {
            ind_c[k] = col_max(&a, k);
        }
    }
    for _ in 0..N * N * 30 {
        let (mut k, mut mv) = (0, a[0][ind_r[0]].abs());
        for (i, &r) in ind_r.iter().enumerate().take(N - 1).skip(1) {
            if mv < a[i][r].abs() {
                (mv, k) = (a[i][r].abs(), i);
            }
        }
        let mut l = ind_r[k];
        for (i, &c) in ind_c.iter().enumerate().skip(1) {
            if mv < a[c][i].abs() {
                (mv, k, l) = (a[c][i].abs(), c, i);
            }
        }
        let p = a[k][l];
        if p.abs() <= f64::EPSILON {
            break;
        }
        let y = (w[l] - w[k]) * 0.5;
        let mut t = y.abs() + cv_hypot(p, y);
        let mut s = cv_hypot(p, t);
        let c = t / s;
        s = p / s;
        t = (p / t) * p;
        if y < 0.0 {
            s = -s;
            t = -t;
        }
        a[k][l] = 0.0;
        w[k] -= t;
        w[l] += t;
        let rotate = |x: f64, y: f64| (x * c - y * s, x * s + y * c);
        for i in 0..k {
            (a[i][k], a[i][l]) = rotate(a[i][k], a[i][l]);
        }
        for i in k + 1..l {
            (a[k][i], a[i][l]) = rotate(a[k][i], a[i][l]);
        }
        for i in l + 1..N {
            (a[k][i], a[l][i]) = rotate(a[k][i], a[l][i]);
        }
        for i in 0..N {
            (v[k][i], v[l][i]) = rotate(v[k][i], v[l][i]);
        }
        for idx in [k, l] {
            if idx < N - 1 {
                ind_r[idx] = row_max(&a, idx);
            }
            if idx > 0 {
                ind_c[idx] = col_max(&a, idx);
            }
        }
    }
    for k in 0..N - 1 {
        let mut m = k;
        for i in k + 1..N {
            if w[m] < w[i] {
                m = i;
            }
        }
        if k != m {
            w.swap(m, k);
            v.swap(m, k);
        }
    }
    (w, v)
}

/// The eigenvalues above OpenCV's `SVBkSb` threshold (`2ε · Σ w`), with their vectors.
fn significant(w: &[f64; 4]) -> impl Iterator<Item = (usize, f64)> + '_ {
    let threshold = w.iter().fold(0.0, |s, x| s + x) * (f64::EPSILON * 2.0);
    w.iter()
        .enumerate()
        .filter(move |(_, x)| x.abs() > threshold)
        .map(|(i, x)| (i, 1.0 / x))
}

/// `cv::solve(a, b, DECOMP_EIG)`.
fn solve_eig(a: &[[f64; 4]; 4], b: &[f64; 4]) -> [f64; 4] {
    let (w, v) = jacobi(a);
    let mut x = [0.0; 4];
    for (i, wi) in significant(&w) {
        let s = v[i].iter().zip(b).fold(0.0, |s, (vij, bj)| s + vij * bj) * wi;
        for (xj, vij) in x.iter_mut().zip(&v[i]) {
            *xj += s * vij;
        }
    }
    x
}

/// The diagonal of `cv::invert(a, DECOMP_EIG)`.
fn inverse_diagonal(a: &[[f64; 4]; 4]) -> [f64; 4] {
    let (w, v) = jacobi(a);
    let mut x = [[0.0; 4]; 4];
    for (i, wi) in significant(&w) {
        let buf = v[i].map(|vij| vij * wi);
        for r in 0..4 {
            let s = v[i][r];
            for j in 0..4 {
                x[r][j] += s * buf[j];
            }
        }
    }
    std::array::from_fn(|i| x[i][i])
}

/// The residuals `[x0, y0, x1, y1, …]` of `h = (a, b, tx, ty)` and their Jacobian rows
/// (`AffinePartial2DRefineCallback::compute`).
fn residuals(h: &[f64; 4], from: &[[f32; 2]], to: &[[f32; 2]]) -> (Vec<f64>, Vec<[f64; 4]>) {
    let mut r = Vec::with_capacity(2 * from.len());
    let mut jac = Vec::with_capacity(2 * from.len());
    for (&[mx, my], &[tx, ty]) in from.iter().zip(to) {
        let (mx, my) = (f64::from(mx), f64::from(my));
        r.push(h[0] * mx - h[1] * my + h[2] - f64::from(tx));
        r.push(h[1] * mx + h[0] * my + h[3] - f64::from(ty));
        jac.push([mx, -my, 1.0, 0.0]);
        jac.push([my, mx, 0.0, 1.0]);
    }
    (r, jac)
}

/// `JᵀJ` (`mulTransposed`, sequential sums) and `Jᵀr` (`GEMMSingleMul`: four accumulators).
fn normal_equations(jac: &[[f64; 4]], r: &[f64]) -> ([[f64; 4]; 4], [f64; 4]) {
    let a = std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let (i, j) = (i.min(j), i.max(j));
            jac.iter().fold(0.0, |s, row| s + row[i] * row[j])
        })
    });
    let v = std::array::from_fn(|i| {
        let mut s = [0.0f64; 4];
        let full = r.len() / 4 * 4;
        for k in 0..full {
            s[k % 4] += jac[k][i] * r[k];
        }
        for k in full..r.len() {
            s[0] += jac[k][i] * r[k];
        }
        ((s[0] + s[1]) + s[2]) + s[3]
    });
    (a, v)
}

/// `Mat::dot` on four values: `((p0q0 + p1q1) + p2q2) + p3q3`.
fn dot4(p: &[f64; 4], q: &[f64; 4]) -> f64 {
    ((p[0] * q[0] + p[1] * q[1]) + p[2] * q[2]) + p[3] * q[3]
}

/// `LMSolverImpl::run` (OpenCV 4.x, Fletcher's variant) on `(a, b, tx, ty)`.
fn refine(h0: [f64; 4], from: &[[f32; 2]], to: &[[f32; 2]], max_iters: usize) -> [f64; 4] {
    let eps = f64::from(f32::EPSILON);
    let mut x = h0;
    let (mut r, jac) = residuals(&x, from, to);
    let mut s = norm_l2sqr(&r);
    let (mut a, mut v) = normal_equations(&jac, &r);
    let d_diag: [f64; 4] = std::array::from_fn(|i| a[i][i]);
    let (r_lo, r_hi) = (0.25, 0.75);
    let (mut lambda, mut lc) = (1.0f64, 0.75f64);
    let mut iter = 0;
    loop {
        let mut ap = a;
        for i in 0..4 {
            ap[i][i] += lambda * d_diag[i];
        }
        let d = solve_eig(&ap, &v);
        let xd: [f64; 4] = std::array::from_fn(|i| x[i] - d[i]);
        let (rd, _) = residuals(&xd, from, to);
        let sd = norm_l2sqr(&rd);
        let temp: [f64; 4] = std::array::from_fn(|i| -dot4(&a[i], &d) + v[i] * 2.0);
        let ds = dot4(&d, &temp);
        let ratio = (s - sd) / if ds.abs() > f64::EPSILON { ds } else { 1.0 };
        if ratio > r_hi {
            lambda *= 0.5;
            if lambda < lc {
                lambda = 0.0;
            }
        } else if ratio < r_lo {
            let t = dot4(&d, &v);
            let mut nu =
                ((sd - s) / if t.abs() > f64::EPSILON { t } else { 1.0 } + 2.0).clamp(2.0, 10.0);
            if lambda == 0.0 {
                let max = inverse_diagonal(&a)
                    .iter()
                    .fold(f64::EPSILON, |m, x| m.max(x.abs()));
                lambda = 1.0 / max;
                lc = lambda;
                nu *= 0.5;
            }
            lambda *= nu;
        }
        if sd < s {
            s = sd;
            x = xd;
            let (r2, jac) = residuals(&x, from, to);
            (a, v) = normal_equations(&jac, &r2);
            r = r2;
        }
        iter += 1;
        let d_max = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let r_max = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if !(iter < max_iters && d_max >= eps && r_max >= eps) {
            break;
        }
    }
    x
}

/// `cv2.estimateAffinePartial2D(from, to, method=cv2.LMEDS)`: the similarity transform
/// (rotation, uniform scale, translation) mapping `from` onto `to`, and the inlier mask;
/// `None` when OpenCV finds none (fewer than two points, or all pairs degenerate).
pub fn estimate_affine_partial_lmeds(
    from: &[[f64; 2]],
    to: &[[f64; 2]],
) -> Option<(Affine, Vec<bool>)> {
    let round =
        |p: &[[f64; 2]]| -> Vec<[f32; 2]> { p.iter().map(|q| q.map(|v| v as f32)).collect() };
    let (from, to) = (round(from), round(to));
    if from.len() != to.len() {
        return None;
    }
    let (mut model, mask) = lmeds(&from, &to)?;
    if from.len() > 2 {
        let pick = |p: &[[f32; 2]]| -> Vec<[f32; 2]> {
            p.iter()
                .zip(&mask)
                .filter(|(_, m)| **m)
                .map(|(q, _)| *q)
                .collect()
        };
        let h = refine(
            [model[0][0], model[1][0], model[0][2], model[1][2]],
            &pick(&from),
            &pick(&to),
            10,
        );
        model = [[h[0], -h[1], h[2]], [h[1], h[0], h[3]]];
    }
    Some((model, mask))
}

/// `cv2.invertAffineTransform` for a `f64` matrix.
pub fn invert_affine(m: &Affine) -> Affine {
    let d = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let a11 = m[1][1] * d;
    let a22 = m[0][0] * d;
    let a12 = -m[0][1] * d;
    let a21 = -m[1][0] * d;
    let b1 = -a11 * m[0][2] - a12 * m[1][2];
    let b2 = -a21 * m[0][2] - a22 * m[1][2];
    [[a11, a12, b1], [a21, a22, b2]]
}
