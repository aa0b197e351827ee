//! The IRControlNet and `ControlLdm` of DiffBIR.
//!
//! Lin et al., "DiffBIR: Towards Blind Image Restoration with Generative Diffusion Prior"
//! (ECCV 2024). Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/controlnet.py` and
//! `cldm.py`. The IRControlNet is a trainable copy of the SD UNet encoder whose first conv sees
//! `concat(x_t, condition latent)`; 1×1 zero convs turn each encoder output (and the middle
//! block's) into a residual for the frozen UNet. It is built from the same blocks as
//! [`diffbir_ldm::Unet`].
#![deny(missing_docs)]

mod config;

pub use config::ControlNetConfig;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::Tensor;
use diffbir_core::kernels::{Conv2d, Linear};
use diffbir_core::tiling::TileBox;
use diffbir_core::{Error, KeyMap, Precision, Result, cast_module};
use diffbir_ldm::Unet;
use diffbir_ldm::unet::{
    Control, LdmLayer, UNET_RULES, blocks_dtype, cast_block, cast_blocks, embed_time, run_block,
};
use diffbir_sampler::{Denoiser, ModelTimesteps, Parameterization, TileCond};

/// The IRControlNet. Field names mirror the checkpoint keys.
#[derive(Module, Debug)]
pub struct ControlNet {
    /// Its own time embedding MLP.
    pub time_embed: Vec<Option<Linear>>,
    /// The UNet encoder copy; `input_blocks.0.0` takes `in + hint` channels.
    pub input_blocks: Vec<Vec<LdmLayer>>,
    /// One 1×1 zero conv per input block (`zero_convs.k.0`).
    pub zero_convs: Vec<Vec<Conv2d>>,
    /// The middle block copy.
    pub middle_block: Vec<LdmLayer>,
    /// The middle block's zero conv (`middle_block_out.0`).
    pub middle_block_out: Vec<Conv2d>,
    model_channels: usize,
}

impl ControlNet {
    /// The residuals for the UNet: one per input block, then the middle block's.
    ///
    /// # Shapes
    /// - `x`: `[B, in, h, w]`; `hint`: `[B, hint_channels, h, w]`; `t`: `[B]`;
    ///   `context`: `[B, M, D]`
    /// - returns 13 tensors for SD 2.1, shaped like the input-block outputs and the middle
    pub fn forward(
        &self,
        x: Tensor<4>,
        hint: Tensor<4>,
        t: Tensor<1>,
        context: &Tensor<3>,
    ) -> Vec<Tensor<4>> {
        let dtype = blocks_dtype(&self.input_blocks);
        let emb = embed_time(&self.time_embed, t, self.model_channels).cast(dtype);
        let context = &context.clone().cast(dtype);
        let mut h = Tensor::cat(vec![x, hint], 1).cast(dtype);
        let mut outs = Vec::with_capacity(self.input_blocks.len() + 1);
        for (block, zero_conv) in self.input_blocks.iter().zip(&self.zero_convs) {
            h = run_block(block, h, &emb, context);
            outs.push(zero_conv[0].forward(h.clone()));
        }
        h = run_block(&self.middle_block, h, &emb, context);
        outs.push(self.middle_block_out[0].forward(h));
        outs
    }

    /// Casts the blocks and zero convs to `precision` as the reference does (residual-block
    /// GroupNorms and the time embedding stay in f32). Residuals come out in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.input_blocks = cast_blocks(self.input_blocks, precision);
        self.middle_block = cast_block(self.middle_block, precision);
        self.zero_convs = cast_module(self.zero_convs, precision);
        self.middle_block_out = cast_module(self.middle_block_out, precision);
        self
    }

    /// Initialises this ControlNet from a UNet the way DiffBIR prepares stage-2 training
    /// (`ControlLDM.load_controlnet_from_unet`): every tensor the UNet has with the same path
    /// and shape is copied; a tensor with more input channels (the first conv, which also sees
    /// the hint) gets the UNet's weights followed by zeros; the rest (zero convs, middle zero
    /// conv) keeps its current values.
    pub fn init_from_unet(&mut self, unet: &Unet) -> Result<InitReport> {
        let unet_tensors: BTreeMap<String, _> = unet
            .collect(None, None, true)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let mut report = InitReport::default();
        let mut updates = Vec::new();
        for own in self.collect(None, None, true) {
            let Some(theirs) = unet_tensors.get(&own.name) else {
                report.fresh.push(own.name.clone());
                continue;
            };
            let data = bridge::to_data(theirs).map_err(|e| Error::Unsupported(e.to_string()))?;
            if own.shape == theirs.shape {
                report.copied.push(own.name.clone());
                updates.push(bridge::from_data(data, own.name.clone(), None));
                continue;
            }
            let (ours, source) = (own.shape.to_vec(), theirs.shape.to_vec());
            let pads_input_channels = ours.len() == 4
                && source.len() == 4
                && ours[0] == source[0]
                && ours[1] > source[1]
                && ours[2..] == source[2..];
            if !pads_input_channels {
                return Err(Error::InvalidArgument {
                    what: "ControlNet initialisation".into(),
                    reason: format!(
                        "`{}` is {ours:?} in the ControlNet but {source:?} in the UNet",
                        own.name
                    ),
                });
            }
            let device = unet.devices().into_iter().next().unwrap_or_default();
            let w = Tensor::<4>::from_data(data, &device);
            let zeros =
                Tensor::<4>::zeros([ours[0], ours[1] - source[1], ours[2], ours[3]], &device);
            let padded = Tensor::cat(vec![w, zeros], 1);
            report.padded.push(own.name.clone());
            updates.push(bridge::from_data(
                padded.into_data(),
                own.name.clone(),
                None,
            ));
        }
        let applied = self.apply(updates, None, None, true);
        if !applied.errors.is_empty() {
            return Err(Error::Unsupported(format!(
                "ControlNet initialisation failed: {:?}",
                applied.errors
            )));
        }
        Ok(report)
    }
}

/// What [`ControlNet::init_from_unet`] did, by module path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Copied unchanged from the UNet.
    pub copied: Vec<String>,
    /// UNet weights followed by zeros for the extra (hint) input channels.
    pub padded: Vec<String>,
    /// Not in the UNet: kept as initialised.
    pub fresh: Vec<String>,
}

/// The official ControlNet files (`v1_general.pth`, `v1_face.pth`, `v2.pth`,
/// `DiffBIR_v2.1.pt`): flat `controlnet.state_dict()`s with the UNet's naming.
pub const CONTROLNET_KEYS: KeyMap = KeyMap {
    name: "controlnet",
    prefix: "",
    rules: UNET_RULES,
    droppable: &[],
};

/// UNet + IRControlNet with per-residual control scales: DiffBIR's denoiser.
#[derive(Module, Debug)]
pub struct ControlLdm {
    /// The frozen SD UNet.
    pub unet: Unet,
    /// The IRControlNet.
    pub controlnet: ControlNet,
}

impl ControlLdm {
    /// Both networks in `precision`, with the reference's f32 islands.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self {
            unet: self.unet.with_precision(precision),
            controlnet: self.controlnet.with_precision(precision),
        }
    }

    /// Predicts eps or v: the ControlNet's residuals, each multiplied by its control scale
    /// (scales beyond the number of residuals are ignored, missing ones count as 1), are added
    /// to the UNet.
    ///
    /// # Shapes
    /// - `x`: `[B, 4, h, w]`; `t`: `[B]`; `c_txt`: `[B, 77, D]`; `c_img`: `[B, 4, h, w]`
    /// - returns `[B, 4, h, w]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        c_txt: &Tensor<3>,
        c_img: Tensor<4>,
        control_scales: &[f64],
    ) -> Tensor<4> {
        let residuals: Vec<Tensor<4>> = self
            .controlnet
            .forward(x.clone(), c_img, t.clone(), c_txt)
            .into_iter()
            .enumerate()
            .map(|(k, r)| match control_scales.get(k) {
                Some(&s) if s != 1.0 => r.mul_scalar(s),
                _ => r,
            })
            .collect();
        self.unet
            .forward(x, t, c_txt, Control::Residuals(&residuals))
    }
}

/// What `ControlLdm` is conditioned on: the text context and the condition latent.
#[derive(Debug, Clone)]
pub struct ControlCond {
    /// Text-encoder output, `[B, 77, D]`.
    pub c_txt: Tensor<3>,
    /// Scaled condition latent of the stage-1 output, `[B, 4, h, w]`.
    pub c_img: Tensor<4>,
}

impl TileCond for ControlCond {
    /// The text context whole, the condition latent cropped to the tile.
    fn crop(&self, tile: TileBox) -> Self {
        let [b, c, _, _] = self.c_img.dims();
        Self {
            c_txt: self.c_txt.clone(),
            c_img: self.c_img.clone().slice([
                0..b,
                0..c,
                tile.hi..tile.hi_end,
                tile.wi..tile.wi_end,
            ]),
        }
    }
}

/// `ControlLdm` as the samplers see it: every residual scaled by the control `strength`
/// (`--strength`), predicting what the SD checkpoint was trained to predict.
#[derive(Debug, Clone, Copy)]
pub struct ControlDenoiser<'a> {
    /// The networks.
    pub cldm: &'a ControlLdm,
    /// Scale of every ControlNet residual.
    pub strength: f64,
    /// ε for SD 2.1-base (DiffBIR v1, v2), v for the zero-SNR fine-tune (v2.1).
    pub parameterization: Parameterization,
}

impl Denoiser for ControlDenoiser<'_> {
    type Cond = ControlCond;

    fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &ControlCond) -> Tensor<4> {
        let scales = vec![self.strength; self.cldm.controlnet.zero_convs.len() + 1];
        let t = t.tensor(&x_t.device());
        self.cldm
            .forward(x_t, t, &cond.c_txt, cond.c_img.clone(), &scales)
    }

    /// Both conditions as one doubled batch: one pass through the networks instead of two.
    fn predict_pair(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        first: &ControlCond,
        second: &ControlCond,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, c, h, w] = x_t.dims();
        let both = ControlCond {
            c_txt: Tensor::cat(vec![first.c_txt.clone(), second.c_txt.clone()], 0),
            c_img: Tensor::cat(vec![first.c_img.clone(), second.c_img.clone()], 0),
        };
        let t = ModelTimesteps::new(t.value(), 2 * b);
        let out = self.predict(Tensor::cat(vec![x_t.clone(), x_t], 0), &t, &both);
        (
            out.clone().slice([0..b, 0..c, 0..h, 0..w]),
            out.slice([b..2 * b, 0..c, 0..h, 0..w]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};
    use diffbir_core::NoiseSource;
    use diffbir_ldm::UnetConfig;

    fn tiny() -> ControlNetConfig {
        ControlNetConfig::tiny()
    }

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        CONTROLNET_KEYS.check_examples().unwrap();
        let cn = ControlNetConfig::sd21().init(&Device::flex()).unwrap();
        assert_eq!(cn.num_params(), 363_153_280);
    }

    #[test]
    fn a_fresh_controlnet_leaves_the_unet_unchanged() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let cn = tiny().init(&device).unwrap();
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let hint = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let t = Tensor::<1>::from_floats([42.0], &device);
        let ctx = Tensor::<3>::random([1, 77, 8], Distribution::Default, &device);
        let plain = unet.forward(x.clone(), t.clone(), &ctx, Control::None);
        let cldm = ControlLdm {
            unet,
            controlnet: cn,
        };
        let controlled = cldm.forward(x, t, &ctx, hint, &[1.0; 13]);
        let diff: f32 = (plain - controlled).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn a_pair_of_conditions_in_one_batch_equals_two_calls() {
        let device = Device::flex();
        let cldm = ControlLdm {
            unet: UnetConfig::tiny().init(&device),
            controlnet: tiny().init(&device).unwrap(),
        };
        let model = ControlDenoiser {
            cldm: &cldm,
            strength: 1.0,
            parameterization: Parameterization::Eps,
        };
        let cond = |seed: u64| ControlCond {
            c_txt: NoiseSource::seeded(seed).randn([2, 77, 8], &device),
            c_img: NoiseSource::seeded(seed + 1).randn([2, 4, 8, 8], &device),
        };
        let (a, b) = (cond(1), cond(3));
        let x = Tensor::<4>::random([2, 4, 8, 8], Distribution::Default, &device);
        let t = ModelTimesteps::new(420.0, 2);
        let (pa, pb) = model.predict_pair(x.clone(), &t, &a, &b);
        for (paired, single) in [
            (pa, model.predict(x.clone(), &t, &a)),
            (pb, model.predict(x, &t, &b)),
        ] {
            let diff: f32 = (paired - single).abs().max().into_scalar();
            assert!(diff < 1e-5, "{diff}");
        }
    }

    #[test]
    fn initialisation_from_the_unet_copies_pads_and_keeps_zero_convs() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let mut cn = tiny().init(&device).unwrap();
        let report = cn.init_from_unet(&unet).unwrap();
        assert_eq!(report.padded, ["input_blocks.0.0.weight"]);
        assert!(
            report
                .fresh
                .iter()
                .all(|k| k.starts_with("zero_convs.") || k.starts_with("middle_block_out."))
        );
        assert!(report.copied.iter().any(|k| k == "time_embed.0.weight"));
        let w = cn.input_blocks[0][0].clone();
        let LdmLayer::Conv(conv) = w else {
            panic!("input conv")
        };
        let extra: f32 = conv
            .weight
            .val()
            .slice([0..32, 4..8, 0..3, 0..3])
            .abs()
            .max()
            .into_scalar();
        assert_eq!(extra, 0.0);
        let mismatched = UnetConfig::tiny().with_model_channels(64).init(&device);
        assert!(cn.init_from_unet(&mismatched).is_err());
    }
}
