//! `cv2.resize` of 8-bit images with `INTER_LINEAR` and `INTER_LANCZOS4`, as OpenCV 4.12
//! computes them (`modules/imgproc/src/resize.cpp`, `resizeGeneric_` with
//! `HResizeLinear`/`VResizeLinear` and `HResizeLanczos4`/`VResizeLanczos4`): coefficients in
//! `f32` rounded to 11-bit fixed point, integer passes, OpenCV's own final rounding. Not
//! `INTER_LINEAR_EXACT`, which rounds differently.

use super::Mat;

/// Fixed-point scale of the coefficients (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

/// The destination size of `cv2.resize(src, (0, 0), fx=f, fy=f)`: `round(w·f)`, `round(h·f)`
/// (half to even).
pub fn scaled_size(rows: usize, cols: usize, f: f64) -> (usize, usize) {
    (
        (rows as f64 * f).round_ties_even() as usize,
        (cols as f64 * f).round_ties_even() as usize,
    )
}

/// The source position of destination index `d` for a source/destination scale, as OpenCV's
/// tables compute it: `(f32)((d + 0.5)·scale − 0.5)`, split into index and fraction.
fn source_position(d: usize, scale: f64) -> (i64, f32) {
    let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
    let s = f.floor();
    (s as i64, f - s)
}

/// `saturate_cast<short>(v)` of a float (half to even).
fn fixed(v: f32) -> i32 {
    v.round_ties_even().clamp(-32768.0, 32767.0) as i32
}

/// How `resize` maps destination to source along one axis.
#[derive(Clone, Copy)]
struct Axis {
    src: usize,
    dst: usize,
    /// `1 / inv_scale`.
    scale: f64,
}

/// `cv2.resize(src, (width, height), interpolation=INTER_LINEAR)` of an 8-bit image. With
/// `factor = Some(f)` it is `cv2.resize(src, (0, 0), fx=f, fy=f)`: the size from
/// [`scaled_size`] and the coordinates mapped with `1/f` (not `w/width`), as OpenCV does.
pub fn resize_linear(src: &Mat<u8>, size: (usize, usize), factor: Option<f64>) -> Mat<u8> {
    let (axes, same) = axes(src, size, factor);
    if same {
        return src.clone();
    }
    let [ay, ax] = axes;
    if is_two(ax.scale) && is_two(ay.scale) {
        return area_half(src, ax.dst, ay.dst);
    }
    let cn = src.channels;
    // x: clamped taps; y: unclamped weights over replicated rows.
    let xs: Vec<(usize, [i32; 2])> = (0..ax.dst)
        .map(|d| {
            let (mut s, mut f) = source_position(d, ax.scale);
            if s < 0 {
                (s, f) = (0, 0.0);
            }
            if s >= ax.src as i64 - 1 {
                (s, f) = (ax.src as i64 - 1, 0.0);
            }
            (
                s as usize,
                [fixed((1.0 - f) * COEF_SCALE), fixed(f * COEF_SCALE)],
            )
        })
        .collect();
    let row = |y: usize| -> Vec<i32> {
        let line = &src.data[y * src.cols * cn..(y + 1) * src.cols * cn];
        let mut out = Vec::with_capacity(ax.dst * cn);
        for &(sx, [a0, a1]) in &xs {
            let next = (sx + 1).min(src.cols - 1);
            for c in 0..cn {
                out.push(i32::from(line[sx * cn + c]) * a0 + i32::from(line[next * cn + c]) * a1);
            }
        }
        out
    };
    let rows: Vec<Vec<i32>> = (0..src.rows).map(row).collect();
    let clip = |y: i64| y.clamp(0, src.rows as i64 - 1) as usize;
    let mut dst = Mat::zeros(ay.dst, ax.dst, cn);
    for dy in 0..ay.dst {
        let (sy, f) = source_position(dy, ay.scale);
        let (b0, b1) = (fixed((1.0 - f) * COEF_SCALE), fixed(f * COEF_SCALE));
        let (t0, t1) = (&rows[clip(sy)], &rows[clip(sy + 1)]);
        let out = &mut dst.data[dy * ax.dst * cn..(dy + 1) * ax.dst * cn];
        for (o, (&v0, &v1)) in out.iter_mut().zip(t0.iter().zip(t1)) {
            let v = (((b0 * (v0 >> 4)) >> 16) + ((b1 * (v1 >> 4)) >> 16) + 2) >> 2;
            *o = v.clamp(0, 255) as u8;
        }
    }
    dst
}

/// `cv2.resize(src, (width, height), interpolation=INTER_LANCZOS4)` of an 8-bit image
/// (`factor` as in [`resize_linear`]).
pub fn resize_lanczos4(src: &Mat<u8>, size: (usize, usize), factor: Option<f64>) -> Mat<u8> {
    let (axes, same) = axes(src, size, factor);
    if same {
        return src.clone();
    }
    let [ay, ax] = axes;
    let cn = src.channels;
    let table = |axis: Axis| -> Vec<(i64, [i32; 8])> {
        (0..axis.dst)
            .map(|d| {
                let (s, f) = source_position(d, axis.scale);
                (s, lanczos4(f).map(|c| fixed(c * COEF_SCALE)))
            })
            .collect()
    };
    let (xs, ys) = (table(ax), table(ay));
    let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
    let rows: Vec<Vec<i32>> = (0..src.rows)
        .map(|y| {
            let line = &src.data[y * src.cols * cn..(y + 1) * src.cols * cn];
            let mut out = Vec::with_capacity(ax.dst * cn);
            for (sx, w) in &xs {
                for c in 0..cn {
                    let acc = (0..8).fold(0i32, |acc, k| {
                        let x = clamp(sx - 3 + k as i64, src.cols);
                        acc + i32::from(line[x * cn + c]) * w[k]
                    });
                    out.push(acc);
                }
            }
            out
        })
        .collect();
    let mut dst = Mat::zeros(ay.dst, ax.dst, cn);
    for (dy, (sy, w)) in ys.iter().enumerate() {
        let taps: [&Vec<i32>; 8] =
            std::array::from_fn(|k| &rows[clamp(sy - 3 + k as i64, src.rows)]);
        let out = &mut dst.data[dy * ax.dst * cn..(dy + 1) * ax.dst * cn];
        for (i, o) in out.iter_mut().enumerate() {
            let acc = (0..8).fold(0i64, |acc, k| acc + i64::from(taps[k][i]) * i64::from(w[k]));
            *o = ((acc + (1 << 21)) >> 22).clamp(0, 255) as u8;
        }
    }
    dst
}

/// The per-axis mappings of a resize and whether it is a plain copy.
fn axes(src: &Mat<u8>, (width, height): (usize, usize), factor: Option<f64>) -> ([Axis; 2], bool) {
    let (dst_h, dst_w, inv_y, inv_x) = match factor {
        Some(f) => {
            let (h, w) = scaled_size(src.rows, src.cols, f);
            (h, w, f, f)
        }
        None => (
            height,
            width,
            height as f64 / src.rows as f64,
            width as f64 / src.cols as f64,
        ),
    };
    let same = (dst_h, dst_w) == (src.rows, src.cols);
    (
        [
            Axis {
                src: src.rows,
                dst: dst_h,
                scale: 1.0 / inv_y,
            },
            Axis {
                src: src.cols,
                dst: dst_w,
                scale: 1.0 / inv_x,
            },
        ],
        same,
    )
}

fn is_two(scale: f64) -> bool {
    (scale - scale.round_ties_even()).abs() < f64::EPSILON && scale.round_ties_even() == 2.0
}

/// `INTER_LINEAR` at exactly half the size runs OpenCV's fast area path: 2 × 2 means
/// `(sum + 2) >> 2`, and cells cut by an odd edge `round((f32)sum / count)`.
fn area_half(src: &Mat<u8>, w: usize, h: usize) -> Mat<u8> {
    let cn = src.channels;
    let mut dst = Mat::zeros(h, w, cn);
    for dy in 0..h {
        for dx in 0..w {
            for c in 0..cn {
                let cells: Vec<i32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(oy, ox)| (2 * dy + oy, 2 * dx + ox))
                    .filter(|&(y, x)| y < src.rows && x < src.cols)
                    .map(|(y, x)| i32::from(src.data[(y * src.cols + x) * cn + c]))
                    .collect();
                let sum: i32 = cells.iter().sum();
                dst.data[(dy * w + dx) * cn + c] = if cells.len() == 4 {
                    ((sum + 2) >> 2) as u8
                } else {
                    (sum as f32 / cells.len() as f32)
                        .round_ties_even()
                        .clamp(0.0, 255.0) as u8
                };
            }
        }
    }
    dst
}

/// `interpolateLanczos4(x, coeffs)`: the eight `f32` taps for fraction `x`, normalised in
/// `f32` (sines in `f64`).
fn lanczos4(x: f32) -> [f32; 8] {
    const S45: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const CS: [[f64; 2]; 8] = [
        [1.0, 0.0],
        [-S45, -S45],
        [0.0, 1.0],
        [S45, -S45],
        [-1.0, 0.0],
        [S45, S45],
        [0.0, -1.0],
        [-S45, S45],
    ];
    let xp3 = x + 3.0;
    let y0 = -f64::from(xp3) * std::f64::consts::PI * 0.25;
    let (s0, c0) = (y0.sin(), y0.cos());
    let mut coeffs = [0f32; 8];
    let mut sum = 0f32;
    for (i, c) in coeffs.iter_mut().enumerate() {
        let yi = xp3 - i as f32;
        *c = if yi.abs() >= 1e-6 {
            let y = -f64::from(yi) * std::f64::consts::PI * 0.25;
            ((CS[i][0] * s0 + CS[i][1] * c0) / (y * y)) as f32
        } else {
            1e30
        };
        sum += *c;
    }
    let sum = 1.0 / sum;
    coeffs.map(|c| c * sum)
}
