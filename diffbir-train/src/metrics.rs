//! Validation metrics on host images, channel-first RGB in `[0, 1]`, computed in f64.

/// PSNR as the reference's stage-1 validation computes it: `10·log10(1 / (mse + 1e-8))`.
pub fn psnr(pred: &[f32], gt: &[f32]) -> f64 {
    assert_eq!(pred.len(), gt.len(), "psnr: images of different sizes");
    let mse = pred
        .iter()
        .zip(gt)
        .map(|(a, b)| {
            let d = *a as f64 - *b as f64;
            d * d
        })
        .sum::<f64>()
        / pred.len().max(1) as f64;
    10.0 * (1.0 / (mse + 1e-8)).log10()
}

/// SSIM (Wang et al. 2004): 11×11 Gaussian window with σ = 1.5, `K1 = 0.01`, `K2 = 0.03`,
/// dynamic range 1, valid positions only, averaged over positions and the channels of a
/// `[C, H, W]` image.
pub fn ssim(pred: &[f32], gt: &[f32], channels: usize, height: usize, width: usize) -> f64 {
    assert_eq!(pred.len(), channels * height * width, "ssim: wrong size");
    assert_eq!(gt.len(), pred.len(), "ssim: images of different sizes");
    const K: usize = 11;
    if height < K || width < K {
        return f64::NAN;
    }
    let g: Vec<f64> = (0..K)
        .map(|i| {
            let x = i as f64 - 5.0;
            (-x * x / (2.0 * 1.5 * 1.5)).exp()
        })
        .collect();
    let s: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / s).collect();
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let mut count = 0usize;
    for c in 0..channels {
        let off = c * height * width;
        let x = &pred[off..off + height * width];
        let y = &gt[off..off + height * width];
        for i in 0..=height - K {
            for j in 0..=width - K {
                let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (a, ga) in g.iter().enumerate() {
                    for (b, gb) in g.iter().enumerate() {
                        let w = ga * gb;
                        let p = x[(i + a) * width + j + b] as f64;
                        let q = y[(i + a) * width + j + b] as f64;
                        mx += w * p;
                        my += w * q;
                        xx += w * p * p;
                        yy += w * q * q;
                        xy += w * p * q;
                    }
                }
                let (vx, vy, cov) = (xx - mx * mx, yy - my * my, xy - mx * my);
                total += ((2.0 * mx * my + c1) * (2.0 * cov + c2))
                    / ((mx * mx + my * my + c1) * (vx + vy + c2));
                count += 1;
            }
        }
    }
    total / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_perfectly() {
        let img: Vec<f32> = (0..3 * 16 * 16).map(|i| (i % 17) as f32 / 17.0).collect();
        assert!((ssim(&img, &img, 3, 16, 16) - 1.0).abs() < 1e-9);
        assert!((psnr(&img, &img) - 80.0).abs() < 1e-6);
        let noisy: Vec<f32> = img.iter().map(|v| v + 0.1).collect();
        assert!((psnr(&noisy, &img) - 20.0).abs() < 1e-3);
        assert!(ssim(&noisy, &img, 3, 16, 16) < 1.0);
    }
}
