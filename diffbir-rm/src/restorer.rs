//! The stage-1 contract ([`Restorer`]), the closed set of networks ([`Stage1`]) chosen by a
//! serialisable [`Stage1Config`], and tiled stage-1 inference.

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};
use diffbir_core::tiling::{self, TileScale, TileSpec};
use diffbir_core::{Checkpoint, Error, KeyMap, LoadReport, Precision, Result, cast_module};
use serde::{Deserialize, Serialize};

use crate::rrdbnet::{BSRNET_KEYS, RrdbNet, RrdbNetConfig};
use crate::scunet::{SCUNET_KEYS, ScuNet, ScuNetConfig};
use crate::swinir::{SWINIR_GENERAL_KEYS, SwinIr, SwinIrConfig};

/// Stage-1 restoration: removes degradations before the diffusion stage.
pub trait Restorer {
    /// Spatial upscale factor (1 for SwinIR and SCUNet as DiffBIR uses them, 4 for BSRNet).
    fn scale(&self) -> usize;

    /// Restores a batch the way DiffBIR's pipelines call the network (padding the input where
    /// the network needs it and cropping the result back).
    ///
    /// # Shapes
    /// - `lq`: `[B, 3, H, W]`, values in `[0, 1]`
    /// - returns `[B, 3, H·s, W·s]` (`s` = [`scale`](Self::scale)), unclamped like the
    ///   reference
    fn restore(&self, lq: Tensor<4>) -> Tensor<4>;
}

/// Which stage-1 network, with its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "config", rename_all = "lowercase")]
pub enum Stage1Config {
    /// SwinIR.
    SwinIr(SwinIrConfig),
    /// RRDBNet (BSRNet).
    RrdbNet(RrdbNetConfig),
    /// SCUNet.
    ScuNet(ScuNetConfig),
}

impl Stage1Config {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::SwinIr(c) => c.validate(),
            Self::RrdbNet(c) => c.validate(),
            Self::ScuNet(c) => c.validate(),
        }
    }

    /// Builds the network with random weights (after [`validate`](Self::validate)).
    pub fn init(&self, device: &Device) -> Result<Stage1> {
        self.validate()?;
        Ok(match self {
            Self::SwinIr(c) => Stage1::SwinIr(c.init(device)),
            Self::RrdbNet(c) => Stage1::RrdbNet(c.init(device)),
            Self::ScuNet(c) => Stage1::ScuNet(c.init(device)),
        })
    }

    /// The key map of the network's official checkpoints.
    pub fn key_map(&self) -> &'static KeyMap {
        match self {
            Self::SwinIr(_) => &SWINIR_GENERAL_KEYS,
            Self::RrdbNet(_) => &BSRNET_KEYS,
            Self::ScuNet(_) => &SCUNET_KEYS,
        }
    }

    /// Builds the network and loads a checkpoint strictly through `map`, then casts it to
    /// `precision`.
    pub fn load(
        &self,
        checkpoint: &Checkpoint,
        map: &KeyMap,
        precision: Precision,
        device: &Device,
    ) -> Result<(Stage1, LoadReport)> {
        precision.check(device)?;
        let mut model = self.init(device)?;
        let report = diffbir_core::load_into(&mut model, checkpoint, map)?;
        Ok((cast_module(model, precision), report))
    }
}

/// One of DiffBIR's stage-1 networks.
#[derive(Module, Debug)]
pub enum Stage1 {
    /// SwinIR (general v1, face, Real-ESRGAN-trained for v2.1).
    SwinIr(SwinIr),
    /// BSRNet (v2 super-resolution).
    RrdbNet(RrdbNet),
    /// SCUNet-PSNR (v2 denoising).
    ScuNet(ScuNet),
}

/// The dtype of a module's first float parameter (its compute precision).
fn module_dtype(model: &Stage1) -> DType {
    let mut dtype = DType::F32;
    let mut visitor = FirstFloat(&mut dtype);
    model.visit(&mut visitor);
    dtype
}

struct FirstFloat<'a>(&'a mut DType);

impl burn::module::ModuleVisitor for FirstFloat<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        *self.0 = param.val().dtype();
    }
}

impl Restorer for Stage1 {
    fn scale(&self) -> usize {
        match self {
            Self::SwinIr(m) => m.scale(),
            Self::RrdbNet(m) => m.scale(),
            Self::ScuNet(_) => 1,
        }
    }

    fn restore(&self, lq: Tensor<4>) -> Tensor<4> {
        let dtype = module_dtype(self);
        let lq = if dtype == DType::F32 {
            lq
        } else {
            lq.cast(dtype)
        };
        let out = match self {
            Self::SwinIr(m) => {
                // SwinIRPipeline: zero-pad bottom/right to the trunk's multiple, crop back.
                let [b, c, h, w] = lq.dims();
                let (padded, _) = diffbir_core::resize::pad_to_multiples_of(lq, m.input_multiple())
                    .expect("the trunk multiple is positive");
                let s = m.scale();
                m.forward(padded).slice([0..b, 0..c, 0..h * s, 0..w * s])
            }
            Self::RrdbNet(m) => m.forward(lq),
            Self::ScuNet(m) => m.forward(lq),
        };
        if dtype == DType::F32 {
            out
        } else {
            out.cast(DType::F32)
        }
    }
}

impl Stage1 {
    /// Restores tile by tile with Gaussian blending, as DiffBIR's `--cleaner_tiled` does
    /// (`apply_cleaner` in `XPixelGroup/DiffBIR@3f8b530:diffbir/pipeline.py:L342-L420`):
    /// `tile_size × tile_size` input tiles every `tile_stride` pixels. Memory is bounded by one
    /// tile's activations plus the output. An input smaller than a tile runs untiled, as in the
    /// reference.
    ///
    /// SwinIR needs tiles that are multiples of its trunk multiple (64 for DiffBIR).
    pub fn restore_tiled(
        &self,
        lq: Tensor<4>,
        tile_size: usize,
        tile_stride: usize,
    ) -> Result<Tensor<4>> {
        if let Self::SwinIr(m) = self {
            let multiple = m.input_multiple();
            if !tile_size.is_multiple_of(multiple) {
                return Err(Error::InvalidArgument {
                    what: "stage-1 tile size".into(),
                    reason: format!(
                        "SwinIR tiles must be a multiple of {multiple} pixels, got {tile_size}"
                    ),
                });
            }
        }
        let [_, _, h, w] = lq.dims();
        if h < tile_size || w < tile_size {
            return Ok(self.restore(lq));
        }
        let spec = TileSpec {
            size: tile_size,
            stride: tile_stride,
            scale: TileScale::Up(self.scale()),
        };
        tiling::tiled_apply(lq, spec, |tile, _| self.restore(tile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn every_network_restores_in_half_precision() {
        let device = Device::flex();
        let lq = Tensor::<4>::random([1, 3, 24, 20], Distribution::Default, &device);
        for config in [
            Stage1Config::SwinIr(SwinIrConfig::tiny()),
            Stage1Config::RrdbNet(RrdbNetConfig::tiny()),
            Stage1Config::ScuNet(ScuNetConfig::tiny()),
        ] {
            let model = config.init(&device).unwrap();
            let full = model.restore(lq.clone());
            let half = cast_module(model, Precision::F16).restore(lq.clone());
            assert_eq!(half.dtype(), DType::F32, "{config:?}");
            let diff: f32 = (half - full.clone()).abs().max().into_scalar();
            let scale: f32 = full.abs().max().into_scalar();
            assert!(diff <= 1e-2 * scale.max(1.0), "{config:?}: {diff}");
        }
    }
}
