//! `filter2D` (BasicSR's PyTorch version of `cv2.filter2D`) and USM sharpening, on tensors.

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, Tensor};
use diffbir_core::Result;

use super::invalid;
use super::kernels::{Kernel, usm_kernel};

/// Correlates every channel of every image with a `k × k` kernel (no flip), after reflect
/// padding by `k / 2` (PyTorch's `reflect`, i.e. OpenCV's `BORDER_REFLECT_101`).
///
/// `kernel` holds either one kernel for the whole batch or one per sample.
///
/// # Shapes
///
/// - `img`: `[B, C, H, W]`
/// - `kernel`: `[1, k, k]` or `[B, k, k]`, `k` odd and `k / 2 < min(H, W)`
/// - output: `[B, C, H, W]`
pub fn filter2d(img: Tensor<4>, kernel: Tensor<3>) -> Result<Tensor<4>> {
    let [b, c, h, w] = img.dims();
    let [kb, kh, kw] = kernel.dims();
    if kh != kw || kh % 2 != 1 {
        return Err(invalid(
            "kernel",
            format!("must be square with an odd size, got {kh}×{kw}"),
        ));
    }
    let k = kh;
    let p = k / 2;
    if p >= h || p >= w {
        return Err(invalid(
            "kernel",
            format!("reflect padding by {p} needs an image larger than {h}×{w}"),
        ));
    }
    let padded = img.pad((p, p, p, p), PadMode::Reflect);
    let [_, _, ph, pw] = padded.dims();
    if kb == 1 {
        let x = padded.reshape([b * c, 1, ph, pw]);
        let weight = kernel.reshape([1, 1, k, k]);
        let out = conv2d(x, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        Ok(out.reshape([b, c, h, w]))
    } else if kb == b {
        let x = padded.reshape([1, b * c, ph, pw]);
        let weight = kernel
            .reshape([b, 1, k, k])
            .repeat_dim(1, c)
            .reshape([b * c, 1, k, k]);
        let out = conv2d(
            x,
            weight,
            None,
            ConvOptions::new([1, 1], [0, 0], [1, 1], b * c),
        );
        Ok(out.reshape([b, c, h, w]))
    } else {
        Err(invalid(
            "kernel",
            format!("{kb} kernels for a batch of {b}: give one, or one per sample"),
        ))
    }
}

/// Unsharp masking (`USMSharp`): a Gaussian blur's residual, added where it exceeds a
/// threshold (softened by the same blur).
#[derive(Debug, Clone)]
pub struct UsmSharp {
    kernel: Tensor<3>,
}

impl UsmSharp {
    /// `USMSharp(radius, sigma)`: the kernel is OpenCV's Gaussian of size `radius` (made odd)
    /// and `sigma` (`<= 0`: OpenCV's default for the size), outer-multiplied in f64.
    pub fn new(radius: usize, sigma: f64, device: &Device) -> Result<Self> {
        let kernel: Kernel = usm_kernel(radius, sigma)?;
        Ok(Self {
            kernel: kernel.to_tensor(device).unsqueeze_dim(0),
        })
    }

    /// The float32 kernel (the module's buffer).
    ///
    /// # Shapes
    ///
    /// - output: `[1, k, k]`
    pub fn kernel(&self) -> Tensor<3> {
        self.kernel.clone()
    }

    /// Sharpens: `mask = |img − blur|·255 > threshold`, `soft = filter2D(mask)`,
    /// `out = soft·clip(img + weight·(img − blur), 0, 1) + (1 − soft)·img`.
    ///
    /// # Shapes
    ///
    /// - `img`: `[B, C, H, W]` in `[0, 1]`
    /// - output: `[B, C, H, W]`
    pub fn forward(&self, img: Tensor<4>, weight: f64, threshold: f64) -> Result<Tensor<4>> {
        let blur = filter2d(img.clone(), self.kernel.clone())?;
        let residual = img.clone() - blur;
        let mask = residual
            .clone()
            .abs()
            .mul_scalar(255.0)
            .greater_elem(threshold)
            .float();
        let soft = filter2d(mask, self.kernel.clone())?;
        let sharp = (img.clone() + residual.mul_scalar(weight)).clamp(0.0, 1.0);
        Ok(soft.clone() * sharp + (soft.neg().add_scalar(1.0)) * img)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;

    #[test]
    fn identity_kernel_keeps_the_image() {
        let device = Device::flex();
        let img = Tensor::<4>::random([2, 3, 9, 7], Distribution::Default, &device);
        let mut values = vec![0.0f32; 25];
        values[12] = 1.0;
        let id = Tensor::<3>::from_data(TensorData::new(values, [1, 5, 5]), &device);
        let out = filter2d(img.clone(), id.clone()).unwrap();
        assert_eq!(out.dims(), [2, 3, 9, 7]);
        let diff: f32 = (out - img.clone()).abs().max().into_scalar();
        assert!(diff < 1e-6);
        let per_sample = filter2d(img.clone(), id.repeat_dim(0, 2)).unwrap();
        let diff: f32 = (per_sample - img).abs().max().into_scalar();
        assert!(diff < 1e-6);
    }

    #[test]
    fn constant_image_stays_constant_and_bad_kernels_are_refused() {
        let device = Device::flex();
        let img = Tensor::<4>::full([1, 2, 8, 8], 0.3, &device);
        let usm = UsmSharp::new(6, 0.0, &device).unwrap();
        assert_eq!(usm.kernel().dims(), [1, 7, 7]);
        let out = usm.forward(img.clone(), 0.5, 10.0).unwrap();
        let diff: f32 = (out - img.clone()).abs().max().into_scalar();
        assert!(diff < 1e-6);
        let even = Tensor::<3>::ones([1, 4, 4], &device);
        assert!(filter2d(img.clone(), even).is_err());
        let three = Tensor::<3>::ones([3, 3, 3], &device);
        assert!(filter2d(img, three).is_err());
    }
}
