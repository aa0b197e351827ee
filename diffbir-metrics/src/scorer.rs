//! Scoring pairs of images with a set of metrics, the networks loaded once.

use std::collections::HashMap;

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::image::{MetricImage, check_same_size};
use crate::lpips::{Lpips, LpipsNet};
use crate::{FrOptions, Metric, psnr, psnr_pyiqa, ssim, ssim_pyiqa};

/// The scores of one pair, in the order of the scorer's metrics.
pub type Scores = Vec<(Metric, f64)>;

/// Computes a list of metrics on pairs of images.
#[derive(Debug)]
pub struct Scorer {
    metrics: Vec<Metric>,
    options: FrOptions,
    lpips: HashMap<LpipsNet, Lpips>,
    device: Device,
}

impl Scorer {
    /// A scorer of `metrics` (duplicates removed, order kept); the networks the LPIPS
    /// metrics need are given with [`with_lpips`](Self::with_lpips).
    pub fn new(metrics: &[Metric], options: FrOptions, device: &Device) -> Self {
        let mut unique = Vec::new();
        for &m in metrics {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        Self {
            metrics: unique,
            options,
            lpips: HashMap::new(),
            device: device.clone(),
        }
    }

    /// Gives the scorer a loaded LPIPS network.
    pub fn with_lpips(mut self, net: LpipsNet, model: Lpips) -> Self {
        self.lpips.insert(net, model);
        self
    }

    /// The metrics, in order.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// The LPIPS networks the metrics need that have not been given yet.
    pub fn missing_networks(&self) -> Vec<LpipsNet> {
        let mut nets: Vec<LpipsNet> = self
            .metrics
            .iter()
            .filter_map(|m| m.lpips_net())
            .filter(|n| !self.lpips.contains_key(n))
            .collect();
        nets.dedup();
        nets
    }

    /// Checks, without computing anything, that every metric can score this pair: one size,
    /// enough pixels after the crop, at least the LPIPS trunk's minimum side.
    pub fn check(&self, restored: &MetricImage, reference: &MetricImage) -> Result<()> {
        check_same_size(restored, reference)?;
        let (w, h) = (restored.width(), restored.height());
        let cropped = |needed: usize| {
            w >= 2 * self.options.crop_border + needed && h >= 2 * self.options.crop_border + needed
        };
        for &metric in &self.metrics {
            let (needed, crop) = match metric.lpips_net() {
                Some(net) => (crate::lpips::Trunk::min_side(net), 0),
                None if matches!(metric, Metric::Ssim | Metric::SsimPyiqa) => {
                    (11, self.options.crop_border)
                }
                None => (1, self.options.crop_border),
            };
            let ok = if crop == 0 {
                w >= needed && h >= needed
            } else {
                cropped(needed)
            };
            if !ok {
                return Err(Error::TooSmall {
                    metric: metric.name(),
                    needed,
                    crop_border: crop,
                    width: w,
                    height: h,
                });
            }
        }
        Ok(())
    }

    /// Scores one pair with every metric.
    pub fn score(&self, restored: &MetricImage, reference: &MetricImage) -> Result<Scores> {
        self.check(restored, reference)?;
        self.metrics
            .iter()
            .map(|&metric| {
                let value = match metric {
                    Metric::Psnr => psnr(restored, reference, &self.options)?,
                    Metric::Ssim => ssim(restored, reference, &self.options)?,
                    Metric::PsnrPyiqa => psnr_pyiqa(restored, reference, &self.options)?,
                    Metric::SsimPyiqa => ssim_pyiqa(restored, reference, &self.options)?,
                    Metric::Lpips | Metric::LpipsVgg => self.lpips(metric, restored, reference)?,
                };
                Ok((metric, value))
            })
            .collect()
    }

    fn lpips(
        &self,
        metric: Metric,
        restored: &MetricImage,
        reference: &MetricImage,
    ) -> Result<f64> {
        let net = metric.lpips_net().expect("an LPIPS metric");
        let model = self.lpips.get(&net).ok_or_else(|| Error::InvalidConfig {
            model: "LPIPS",
            reason: format!("{metric} needs the {net} network, which was not loaded"),
        })?;
        let d = model.forward(
            restored.to_tensor(&self.device),
            reference.to_tensor(&self.device),
            true,
        );
        let value: Vec<f32> = d
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| diffbir_core::Error::DeviceUnavailable {
                name: "LPIPS".into(),
                reason: format!("reading the distance back failed: {e:?}"),
            })?;
        Ok(f64::from(value[0]))
    }
}
