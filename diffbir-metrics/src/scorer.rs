//! Scoring images with a set of metrics, the networks loaded once.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor};

use crate::clip_iqa::ClipIqa;
use crate::error::{Error, Result};
use crate::image::{MetricImage, check_same_size};
use crate::lpips::{Lpips, LpipsNet, Trunk};
use crate::{FrOptions, Metric, psnr, psnr_pyiqa, ssim, ssim_pyiqa};

/// The scores of one image, in the order of the scorer's metrics.
pub type Scores = Vec<(Metric, f64)>;

/// Computes a list of metrics on images and their references.
#[derive(Debug)]
pub struct Scorer {
    metrics: Vec<Metric>,
    options: FrOptions,
    lpips: HashMap<LpipsNet, Lpips>,
    clip_iqa: Option<ClipIqa>,
    device: Device,
}

impl Scorer {
    /// A scorer of `metrics` (duplicates removed, order kept); the networks the LPIPS and
    /// CLIP-IQA metrics need are given with [`with_lpips`](Self::with_lpips) and
    /// [`with_clip_iqa`](Self::with_clip_iqa).
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
            clip_iqa: None,
            device: device.clone(),
        }
    }

    /// Gives the scorer a loaded LPIPS network.
    pub fn with_lpips(mut self, net: LpipsNet, model: Lpips) -> Self {
        self.lpips.insert(net, model);
        self
    }

    /// Gives the scorer a loaded CLIP-IQA model.
    pub fn with_clip_iqa(mut self, model: ClipIqa) -> Self {
        self.clip_iqa = Some(model);
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

    /// Whether `clipiqa` is among the metrics and its model has not been given yet.
    pub fn needs_clip_iqa(&self) -> bool {
        self.clip_iqa.is_none() && self.metrics.contains(&Metric::ClipIqa)
    }

    /// Whether some metric compares with a reference.
    pub fn needs_reference(&self) -> bool {
        self.metrics.iter().any(|m| m.needs_reference())
    }

    /// Checks, without computing anything, that every metric can score this image (with its
    /// reference, which the full-reference metrics need): one size, enough pixels after the
    /// crop, at least the networks' minimum side.
    pub fn check(&self, restored: &MetricImage, reference: Option<&MetricImage>) -> Result<()> {
        match reference {
            Some(reference) => check_same_size(restored, reference)?,
            None => {
                if let Some(m) = self.metrics.iter().find(|m| m.needs_reference()) {
                    return Err(Error::InvalidConfig {
                        model: "metrics",
                        reason: format!("{m} compares with a reference image, and none was given"),
                    });
                }
            }
        }
        let (w, h) = (restored.width(), restored.height());
        for &metric in &self.metrics {
            let (needed, crop) = match metric {
                Metric::Lpips => (Trunk::min_side(LpipsNet::Alex), 0),
                Metric::LpipsVgg => (Trunk::min_side(LpipsNet::Vgg), 0),
                Metric::ClipIqa => (ClipIqa::MIN_SIDE, 0),
                Metric::Ssim | Metric::SsimPyiqa => (11, self.options.crop_border),
                Metric::Psnr | Metric::PsnrPyiqa => (1, self.options.crop_border),
            };
            if w < 2 * crop + needed || h < 2 * crop + needed {
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

    /// Scores one image with every metric, the full-reference ones against `reference`.
    pub fn score(&self, restored: &MetricImage, reference: Option<&MetricImage>) -> Result<Scores> {
        self.check(restored, reference)?;
        self.metrics
            .iter()
            .map(|&metric| {
                let value = match (metric, reference) {
                    (Metric::ClipIqa, _) => self.clip_iqa(restored)?,
                    (Metric::Psnr, Some(r)) => psnr(restored, r, &self.options)?,
                    (Metric::Ssim, Some(r)) => ssim(restored, r, &self.options)?,
                    (Metric::PsnrPyiqa, Some(r)) => psnr_pyiqa(restored, r, &self.options)?,
                    (Metric::SsimPyiqa, Some(r)) => ssim_pyiqa(restored, r, &self.options)?,
                    (Metric::Lpips | Metric::LpipsVgg, Some(r)) => {
                        self.lpips(metric, restored, r)?
                    }
                    // `check` refused a full-reference metric without a reference.
                    (_, None) => f64::NAN,
                };
                Ok((metric, value))
            })
            .collect()
    }

    fn clip_iqa(&self, image: &MetricImage) -> Result<f64> {
        let model = self.clip_iqa.as_ref().ok_or_else(|| Error::InvalidConfig {
            model: "CLIP-IQA",
            reason: "clipiqa needs the CLIP model, which was not loaded".into(),
        })?;
        first_value(
            model.forward(image.to_tensor(&self.device)).reshape([-1]),
            "CLIP-IQA",
        )
    }

    fn lpips(
        &self,
        metric: Metric,
        restored: &MetricImage,
        reference: &MetricImage,
    ) -> Result<f64> {
        let net = metric.lpips_net().unwrap_or(LpipsNet::Alex);
        let model = self.lpips.get(&net).ok_or_else(|| Error::InvalidConfig {
            model: "LPIPS",
            reason: format!("{metric} needs the {net} network, which was not loaded"),
        })?;
        let d = model.forward(
            restored.to_tensor(&self.device),
            reference.to_tensor(&self.device),
            true,
        );
        first_value(d.reshape([-1]), "LPIPS")
    }
}

/// The first value of a tensor, read back from the device.
fn first_value(t: Tensor<1>, what: &str) -> Result<f64> {
    let values: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| diffbir_core::Error::DeviceUnavailable {
            name: what.into(),
            reason: format!("reading the score back failed: {e:?}"),
        })?;
    Ok(values.first().copied().map_or(f64::NAN, f64::from))
}
