//! DiffJPEG: JPEG compression and decompression as tensor operations (BasicSR's `DiffJPEG`).
//!
//! The image is zero-padded to a multiple of 16, converted to YCbCr (JPEG matrix), chroma is
//! averaged over 2×2, each plane is cut in 8×8 blocks, DCT-transformed and quantised by the
//! standard luminance/chrominance tables scaled by the quality factor; decompression undoes
//! each step (chroma is repeated 2×2), clamps to `[0, 255]` and crops back.

use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, TensorData};
use diffbir_core::Result;

use super::invalid;

/// The standard JPEG luminance table, as printed (the original uses its transpose).
const Y_TABLE: [[f32; 8]; 8] = [
    [16., 11., 10., 16., 24., 40., 51., 61.],
    [12., 12., 14., 19., 26., 58., 60., 55.],
    [14., 13., 16., 24., 40., 57., 69., 56.],
    [14., 17., 22., 29., 51., 87., 80., 62.],
    [18., 22., 37., 56., 68., 109., 103., 77.],
    [24., 35., 55., 64., 81., 104., 113., 92.],
    [49., 64., 78., 87., 103., 121., 120., 101.],
    [72., 92., 95., 98., 112., 100., 103., 99.],
];

/// The top-left corner of the chrominance table (the rest is 99); it is symmetric.
const C_CORNER: [[f32; 4]; 4] = [
    [17., 18., 24., 47.],
    [18., 21., 26., 66.],
    [24., 26., 56., 99.],
    [47., 66., 99., 99.],
];

/// How the quality is given.
#[derive(Debug, Clone)]
pub enum JpegQuality {
    /// One quality for the whole batch.
    Uniform(f64),
    /// One quality per sample (`[B]`).
    PerSample(Tensor<1>),
}

/// `quality_to_factor`: `q < 50 ? 5000 / q : 200 − 2q`, divided by 100.
pub fn quality_to_factor(quality: f64) -> f64 {
    let q = if quality < 50.0 {
        5000.0 / quality
    } else {
        200.0 - quality * 2.0
    };
    q / 100.0
}

/// [`quality_to_factor`] per sample, in float32 as the original converts its tensor in place.
///
/// # Shapes
///
/// - `quality`: `[B]`
/// - output: `[B]`
pub fn quality_to_factor_tensor(quality: Tensor<1>) -> Tensor<1> {
    let low = quality.clone().lower_elem(50.0);
    let inverse = quality.ones_like().mul_scalar(5000.0) / quality.clone();
    let linear = quality.mul_scalar(2.0).neg().add_scalar(200.0);
    linear.mask_where(low, inverse).div_scalar(100.0)
}

/// DiffJPEG with torch's rounding (`differentiable = false`, as the training pipeline uses it)
/// or the differentiable rounding `round(x) + (x − round(x))³`.
#[derive(Debug, Clone)]
pub struct DiffJpeg {
    differentiable: bool,
    y_table: Tensor<2>,
    c_table: Tensor<2>,
    dct: Tensor<2>,
    dct_scale: Tensor<2>,
    idct: Tensor<2>,
    idct_alpha: Tensor<2>,
    rgb_to_ycbcr: Tensor<2>,
    ycbcr_to_rgb: Tensor<2>,
}

/// `cos((2a + 1)·b·π/16)` in f64.
fn cos_term(a: usize, b: usize) -> f64 {
    (((2 * a + 1) * b) as f64 * std::f64::consts::PI / 16.0).cos()
}

fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

impl DiffJpeg {
    /// Builds the tables on `device`.
    pub fn new(differentiable: bool, device: &Device) -> Self {
        // Transposed, as the original's `y_table`.
        let y_table: Vec<f32> = (0..64).map(|i| Y_TABLE[i % 8][i / 8]).collect();
        let mut c_table = vec![99.0f32; 64];
        for (u, row) in C_CORNER.iter().enumerate() {
            for (v, value) in row.iter().enumerate() {
                c_table[u * 8 + v] = *value;
            }
        }
        // DCT: out[u, v] = Σ_{x, y} img[x, y]·cos((2x+1)uπ/16)·cos((2y+1)vπ/16), rows (x, y).
        // iDCT: out[u, v] = Σ_{x, y} img[x, y]·cos((2u+1)xπ/16)·cos((2v+1)yπ/16).
        let mut dct = vec![0.0f32; 64 * 64];
        let mut idct = vec![0.0f32; 64 * 64];
        for x in 0..8 {
            for y in 0..8 {
                for u in 0..8 {
                    for v in 0..8 {
                        let (row, col) = (x * 8 + y, u * 8 + v);
                        dct[row * 64 + col] = (cos_term(x, u) * cos_term(y, v)) as f32;
                        idct[row * 64 + col] = (cos_term(u, x) * cos_term(v, y)) as f32;
                    }
                }
            }
        }
        let alpha = |i: usize| if i == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
        let mut dct_scale = vec![0.0f32; 64];
        let mut idct_alpha = vec![0.0f32; 64];
        for u in 0..8 {
            for v in 0..8 {
                dct_scale[u * 8 + v] = (alpha(u) * alpha(v) * 0.25) as f32;
                idct_alpha[u * 8 + v] = (alpha(u) * alpha(v)) as f32;
            }
        }
        // Matrices applied as `pixel · M` (M is the transpose of the colour matrix).
        let forward: [[f32; 3]; 3] = [
            [0.299, 0.587, 0.114],
            [-0.168736, -0.331264, 0.5],
            [0.5, -0.418688, -0.081312],
        ];
        let backward: [[f32; 3]; 3] =
            [[1., 0., 1.402], [1., -0.344136, -0.714136], [1., 1.772, 0.]];
        let transpose = |m: [[f32; 3]; 3]| -> Vec<f32> {
            (0..3).flat_map(|i| (0..3).map(move |j| m[j][i])).collect()
        };
        Self {
            differentiable,
            y_table: tensor2(y_table, [8, 8], device),
            c_table: tensor2(c_table, [8, 8], device),
            dct: tensor2(dct, [64, 64], device),
            dct_scale: tensor2(dct_scale, [8, 8], device),
            idct: tensor2(idct, [64, 64], device),
            idct_alpha: tensor2(idct_alpha, [8, 8], device),
            rgb_to_ycbcr: tensor2(transpose(forward), [3, 3], device),
            ycbcr_to_rgb: tensor2(transpose(backward), [3, 3], device),
        }
    }

    /// Compresses and decompresses `x` at `quality` (1–100).
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, 3, H, W]`, RGB in `[0, 1]`
    /// - `quality`: a number, or `[B]`
    /// - output: `[B, 3, H, W]` in `[0, 1]`
    pub fn forward(&self, x: Tensor<4>, quality: &JpegQuality) -> Result<Tensor<4>> {
        let [b, c, h, w] = x.dims();
        if c != 3 {
            return Err(invalid(
                "image",
                format!("DiffJPEG needs 3 channels, got {c}"),
            ));
        }
        let factor = self.factor(quality, b, &x.device())?;
        let hp = h.div_ceil(16) * 16;
        let wp = w.div_ceil(16) * 16;
        let x = x.pad((0, wp - w, 0, hp - h), PadMode::Constant(0.0));

        // Compression.
        let ycbcr = self.to_ycbcr(x.mul_scalar(255.0)); // [B, 3, Hp, Wp]
        let y = ycbcr.clone().slice([0..b, 0..1]);
        let cb = subsample(ycbcr.clone().slice([0..b, 1..2]));
        let cr = subsample(ycbcr.slice([0..b, 2..3]));
        let planes = [
            (y.reshape([b, hp, wp]), &self.y_table, hp, wp),
            (
                cb.reshape([b, hp / 2, wp / 2]),
                &self.c_table,
                hp / 2,
                wp / 2,
            ),
            (
                cr.reshape([b, hp / 2, wp / 2]),
                &self.c_table,
                hp / 2,
                wp / 2,
            ),
        ];
        let mut decoded = Vec::with_capacity(3);
        for (plane, table, ph, pw) in planes {
            let table =
                table.clone().unsqueeze::<3>().repeat_dim(0, b) * factor.clone().reshape([b, 1, 1]); // [B, 8, 8]
            let table = table.unsqueeze_dim::<4>(1); // [B, 1, 8, 8]
            let blocks = self.dct(split_blocks(plane));
            let quantised = self.round(blocks / table.clone());
            // Decompression.
            let blocks = self.idct(quantised * table);
            decoded.push(merge_blocks(blocks, ph, pw));
        }
        let [y, cb, cr]: [Tensor<3>; 3] = decoded
            .try_into()
            .map_err(|_| invalid("image", "three planes expected"))?;
        let ycbcr = Tensor::cat(
            vec![
                y.unsqueeze_dim(1),
                upsample(cb).unsqueeze_dim(1),
                upsample(cr).unsqueeze_dim(1),
            ],
            1,
        );
        let rgb = self.to_rgb(ycbcr).clamp(0.0, 255.0).div_scalar(255.0);
        Ok(rgb.slice([0..b, 0..3, 0..h, 0..w]))
    }

    fn factor(&self, quality: &JpegQuality, b: usize, device: &Device) -> Result<Tensor<1>> {
        match quality {
            JpegQuality::Uniform(q) => {
                if q.is_nan() || *q <= 0.0 {
                    return Err(invalid("quality", format!("must be > 0, got {q}")));
                }
                Ok(Tensor::full([b], quality_to_factor(*q) as f32, device))
            }
            JpegQuality::PerSample(q) => {
                let [n] = q.dims();
                if n != b {
                    return Err(invalid(
                        "quality",
                        format!("{n} qualities for a batch of {b}"),
                    ));
                }
                Ok(quality_to_factor_tensor(q.clone()))
            }
        }
    }

    fn round<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let r = x.clone().round();
        if self.differentiable {
            let d = x - r.clone();
            r + d.clone() * d.clone() * d
        } else {
            r
        }
    }

    /// `[B, 3, H, W]` RGB → YCbCr, `pixel · M + (0, 128, 128)`.
    fn to_ycbcr(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let device = x.device();
        let pixels = x.permute([0, 2, 3, 1]).reshape([b * h * w, 3]);
        let shift = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 128., 128.], [3]), &device);
        let out = pixels.matmul(self.rgb_to_ycbcr.clone()) + shift.unsqueeze();
        out.reshape([b, h, w, 3]).permute([0, 3, 1, 2])
    }

    /// `[B, 3, H, W]` YCbCr → RGB, `(pixel + (0, −128, −128)) · M`.
    fn to_rgb(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let device = x.device();
        let shift =
            Tensor::<1>::from_data(TensorData::new(vec![0.0f32, -128., -128.], [3]), &device);
        let pixels = x.permute([0, 2, 3, 1]).reshape([b * h * w, 3]) + shift.unsqueeze();
        let out = pixels.matmul(self.ycbcr_to_rgb.clone());
        out.reshape([b, h, w, 3]).permute([0, 3, 1, 2])
    }

    /// `scale · Σ (img − 128)·cos·cos` per block.
    fn dct(&self, blocks: Tensor<4>) -> Tensor<4> {
        let [b, n, _, _] = blocks.dims();
        let flat = blocks.sub_scalar(128.0).reshape([b * n, 64]);
        let out = flat.matmul(self.dct.clone()).reshape([b, n, 8, 8]);
        out * self.dct_scale.clone().unsqueeze()
    }

    /// `0.25 · Σ (img·α)·cos·cos + 128` per block.
    fn idct(&self, blocks: Tensor<4>) -> Tensor<4> {
        let [b, n, _, _] = blocks.dims();
        let scaled = (blocks * self.idct_alpha.clone().unsqueeze()).reshape([b * n, 64]);
        let out = scaled.matmul(self.idct.clone()).reshape([b, n, 8, 8]);
        out.mul_scalar(0.25).add_scalar(128.0)
    }
}

/// 2×2 average pooling of a `[B, 1, H, W]` plane.
fn subsample(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new([2, 2]).with_stride([2, 2]))
}

/// `[B, H, W]` → `[B, H/8·W/8, 8, 8]`, blocks in row-major order.
fn split_blocks(x: Tensor<3>) -> Tensor<4> {
    let [b, h, w] = x.dims();
    x.reshape([b, h / 8, 8, w / 8, 8])
        .permute([0, 1, 3, 2, 4])
        .reshape([b, (h / 8) * (w / 8), 8, 8])
}

/// The inverse of [`split_blocks`].
fn merge_blocks(x: Tensor<4>, h: usize, w: usize) -> Tensor<3> {
    let [b, _, _, _] = x.dims();
    x.reshape([b, h / 8, w / 8, 8, 8])
        .permute([0, 1, 3, 2, 4])
        .reshape([b, h, w])
}

/// Nearest 2× upsampling of a `[B, H, W]` plane.
fn upsample(x: Tensor<3>) -> Tensor<3> {
    let [b, h, w] = x.dims();
    x.reshape([b, h, 1, w, 1])
        .repeat_dim(2, 2)
        .repeat_dim(4, 2)
        .reshape([b, 2 * h, 2 * w])
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn factor_follows_the_original() {
        assert!((quality_to_factor(55.0) - 0.9).abs() < 1e-12);
        assert!((quality_to_factor(25.0) - 2.0).abs() < 1e-12);
        let device = Device::flex();
        let q = Tensor::<1>::from_data(TensorData::new(vec![25.0f32, 80.0], [2]), &device);
        let f: Vec<f32> = quality_to_factor_tensor(q)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(f, vec![2.0, 0.4]);
    }

    #[test]
    fn shape_is_kept_and_high_quality_is_close() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 13, 21], Distribution::Default, &device);
        let jpeg = DiffJpeg::new(false, &device);
        let out = jpeg
            .forward(x.clone(), &JpegQuality::Uniform(95.0))
            .unwrap();
        assert_eq!(out.dims(), [2, 3, 13, 21]);
        let lo: f32 = out.clone().min().into_scalar();
        let hi: f32 = out.max().into_scalar();
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
        // A constant grey image survives any quality (only the DC coefficient is non-zero).
        let grey = Tensor::<4>::full([1, 3, 16, 16], 0.5, &device);
        let out = jpeg
            .forward(grey.clone(), &JpegQuality::Uniform(10.0))
            .unwrap();
        let diff: f32 = (out - grey).abs().max().into_scalar();
        assert!(diff < 0.02, "{diff}");
        assert!(jpeg.forward(x, &JpegQuality::Uniform(0.0)).is_err());
    }
}
