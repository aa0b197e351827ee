//! The Stable Diffusion 2.1 UNet as DiffBIR uses it (`ControlledUnetModel`), and the blocks the
//! IRControlNet shares with it.
//!
//! Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py`, `controlnet.py`,
//! `attention.py` and `util.py` (the CompVis LDM UNet). Blocks are stored the way the
//! checkpoint nests them: `input_blocks.i.j`, `middle_block.j`, `output_blocks.i.j`, each an
//! [`LdmLayer`]. `nn.Sequential` indices that Rust fields cannot mirror are renamed by
//! [`UNET_RULES`].
//!
//! One file per part: [`config`](UnetConfig) (the settings and how they build the blocks),
//! the residual block, the spatial transformer, the layers of a `TimestepEmbedSequential`,
//! the timestep embedding, the checkpoint key rules, and here the model itself.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use diffbir_core::Precision;
use diffbir_core::kernels::{Conv2d, Linear, silu};

mod config;
mod keys;
mod layer;
mod resblock;
mod time;
mod transformer;
mod validate;

pub use config::{PerLevel, UnetConfig};
pub use keys::{SD_UNET_KEYS, UNET_KEYS, UNET_RULES};
pub use layer::{Downsample, LdmLayer, Upsample, blocks_dtype, cast_block, cast_blocks, run_block};
pub use resblock::{ResBlock, Resample};
pub use time::{embed_time, timestep_embedding};
pub use transformer::{
    BasicTransformerBlock, CrossAttention, FeedForward, Projection, SpatialTransformer,
};

use resblock::gn32;

/// The SD UNet with ControlNet residuals (`ControlledUnetModel`). Field names mirror the
/// checkpoint keys (see [`UNET_RULES`] for the renamed `Sequential` indices).
#[derive(Module, Debug)]
pub struct Unet {
    /// `time_embed.0`, SiLU, `time_embed.2`.
    pub time_embed: Vec<Option<Linear>>,
    /// Encoder blocks.
    pub input_blocks: Vec<Vec<LdmLayer>>,
    /// Middle block.
    pub middle_block: Vec<LdmLayer>,
    /// Decoder blocks.
    pub output_blocks: Vec<Vec<LdmLayer>>,
    /// `out.0`: GroupNorm32.
    pub out_norm: GroupNorm,
    /// `out.2`: 3×3 conv to the prediction.
    pub out_conv: Conv2d,
    model_channels: usize,
}

/// How ControlNet residuals are added.
#[derive(Debug, Clone, Copy)]
pub enum Control<'a> {
    /// No control (plain SD).
    None,
    /// One residual per input block plus one for the middle block (13 for SD 2.1), in
    /// ControlNet output order; the last is added after the middle block, the others to the
    /// skip connections in reverse order.
    Residuals(&'a [Tensor<4>]),
    /// Only the middle-block residual (`only_mid_control`).
    OnlyMid(&'a [Tensor<4>]),
}

impl Unet {
    /// Predicts eps or v for the noisy latent `x` at model timesteps `t`.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, h, w]`, `h` and `w` multiples of `2^(levels-1)`
    /// - `t`: `[B]` (may be fractional); `context`: `[B, M, context_dim]`
    /// - `control`: residuals shaped like the input-block outputs and the middle output
    /// - returns `[B, out_channels, h, w]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        context: &Tensor<3>,
        control: Control<'_>,
    ) -> Tensor<4> {
        let dtype = blocks_dtype(&self.input_blocks);
        let out_dtype = x.dtype();
        let emb = embed_time(&self.time_embed, t, self.model_channels).cast(dtype);
        let context = &context.clone().cast(dtype);
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.cast(dtype);
        for block in &self.input_blocks {
            h = run_block(block, h, &emb, context);
            hs.push(h.clone());
        }
        h = run_block(&self.middle_block, h, &emb, context);
        let residuals = match control {
            Control::None => None,
            Control::Residuals(r) | Control::OnlyMid(r) => Some(r),
        };
        let mut controls: Vec<Tensor<4>> = residuals.map(<[Tensor<4>]>::to_vec).unwrap_or_default();
        if let Some(mid) = residuals.and_then(|_| controls.pop()) {
            h = h + mid;
        }
        let add_skip_controls = matches!(control, Control::Residuals(_));
        for block in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            let skip = match controls.pop().filter(|_| add_skip_controls) {
                Some(c) => skip + c,
                None => skip,
            };
            h = run_block(block, Tensor::cat(vec![h, skip], 1), &emb, context);
        }
        self.out_conv
            .forward(silu(gn32(&self.out_norm, h.cast(out_dtype))))
    }

    /// Casts the blocks to `precision` as the reference does (residual-block GroupNorms,
    /// the time embedding and the output head stay in f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.input_blocks = cast_blocks(self.input_blocks, precision);
        self.middle_block = cast_block(self.middle_block, precision);
        self.output_blocks = cast_blocks(self.output_blocks, precision);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, Distribution};

    #[test]
    fn key_rules_hold() {
        SD_UNET_KEYS.check_examples().unwrap();
        UNET_KEYS.check_examples().unwrap();
    }

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        assert_eq!(
            UnetConfig::sd21().init(&Device::flex()).num_params(),
            865_910_724
        );
    }

    #[test]
    fn tiny_unet_predicts_the_input_shape_with_and_without_control() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let x = Tensor::<4>::random([2, 4, 8, 16], Distribution::Default, &device);
        let t = Tensor::<1>::from_floats([10.0, 500.0], &device);
        let ctx = Tensor::<3>::random([2, 77, 8], Distribution::Default, &device);
        let y = unet.forward(x.clone(), t.clone(), &ctx, Control::None);
        assert_eq!(y.dims(), [2, 4, 8, 16]);
        let zeros: Vec<Tensor<4>> = [
            [2, 32, 8, 16],
            [2, 32, 8, 16],
            [2, 32, 4, 8],
            [2, 32, 4, 8],
            [2, 32, 4, 8],
        ]
        .into_iter()
        .map(|s| Tensor::zeros(s, &device))
        .collect();
        let z = unet.forward(x, t, &ctx, Control::Residuals(&zeros));
        let diff: f32 = (y - z).abs().max().into_scalar();
        assert_eq!(diff, 0.0, "zero residuals change nothing");
    }

    #[test]
    fn variant_knobs_build_and_run() {
        let device = Device::flex();
        let cfg = UnetConfig::tiny()
            .with_use_scale_shift_norm(true)
            .with_resblock_updown(true)
            .with_use_linear_in_transformer(false)
            .with_transformer_depth(2)
            .with_num_heads(2)
            .with_num_head_channels(-1)
            .with_disable_self_attentions(Some(vec![true, false]))
            .with_num_res_blocks(PerLevel::Each(vec![2, 1]))
            .with_num_attention_blocks(Some(vec![1, 1]));
        let unet = cfg.init(&device);
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let ctx = Tensor::<3>::random([1, 5, 8], Distribution::Default, &device);
        let y = unet.forward(x, Tensor::from_floats([3.5], &device), &ctx, Control::None);
        assert_eq!(y.dims(), [1, 4, 8, 8]);
        assert!(
            UnetConfig::tiny()
                .with_use_spatial_transformer(false)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn half_precision_stays_close_to_f32() {
        let device = Device::flex();
        let unet = UnetConfig::tiny().init(&device);
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Default, &device);
        let t = Tensor::<1>::from_floats([250.0], &device);
        let ctx = Tensor::<3>::random([1, 77, 8], Distribution::Default, &device);
        let full = unet.forward(x.clone(), t.clone(), &ctx, Control::None);
        let half = unet.with_precision(Precision::F16);
        let LdmLayer::Res(res) = &half.input_blocks[1][0] else {
            panic!("a residual block")
        };
        assert_eq!(
            res.in_norm.gamma.as_ref().unwrap().val().dtype(),
            DType::F32
        );
        assert_eq!(res.in_conv.weight.val().dtype(), DType::F16);
        let y = half.forward(x, t, &ctx, Control::None);
        assert_eq!(y.dtype(), DType::F32);
        let err: f32 = (y - full.clone()).abs().max().into_scalar();
        let scale: f32 = full.abs().max().into_scalar();
        assert!(err < 2e-2 * scale.max(1.0), "{err} vs {scale}");
    }

    #[test]
    fn timestep_embedding_puts_cos_first() {
        let e: Vec<f32> = timestep_embedding(Tensor::<1>::from_floats([0.0], &Device::flex()), 6)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(e, vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
