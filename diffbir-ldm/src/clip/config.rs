//! Configuration of the OpenCLIP text tower ([`ClipTextConfig`]).

use burn::config::Config;
use burn::tensor::Device;
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::text_encoder::ClipTextEncoder;

/// Which transformer output [`ClipTextEncoder::forward`] returns (the `layer` argument of
/// `FrozenOpenCLIPEmbedder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClipLayer {
    /// `"last"`: every residual block runs.
    #[default]
    Last,
    /// `"penultimate"`: the last residual block is skipped (Stable Diffusion 2.x and DiffBIR).
    Penultimate,
}

/// The activation of the transformer's MLPs ([`ClipTextEncoder::with_activation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    /// The exact (erf) GELU of OpenCLIP's models (Stable Diffusion 2.x).
    #[default]
    Gelu,
    /// `x·σ(1.702·x)`, the GELU approximation of OpenAI's CLIP models (`QuickGELU`).
    QuickGelu,
}

impl ClipLayer {
    /// How many blocks at the end of the tower are skipped (`layer_idx` in the original).
    pub fn skipped_blocks(self) -> usize {
        match self {
            Self::Last => 0,
            Self::Penultimate => 1,
        }
    }
}

/// Configuration of [`ClipTextEncoder`]: OpenCLIP's `CLIPTextCfg` knobs, the model's
/// `embed_dim` (width of the stored `text_projection`) and `FrozenOpenCLIPEmbedder`'s `layer`.
///
/// Defaults are the original's (`open_clip/model.py: CLIPTextCfg`, `transformer.py:
/// TextTransformer`); [`vit_h14`](Self::vit_h14) is what DiffBIR builds.
#[derive(Config, Debug)]
pub struct ClipTextConfig {
    /// Number of token positions (the length of `positional_embedding`).
    #[config(default = 77)]
    pub context_length: usize,
    /// Number of token ids (rows of `token_embedding`).
    #[config(default = 49408)]
    pub vocab_size: usize,
    /// Transformer width.
    #[config(default = 512)]
    pub width: usize,
    /// Attention heads per block (`width` must be a multiple).
    #[config(default = 8)]
    pub heads: usize,
    /// Number of residual attention blocks.
    #[config(default = 12)]
    pub layers: usize,
    /// MLP hidden width as a multiple of `width` (`int(width * mlp_ratio)`).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Output width of `text_projection` (CLIP's joint embedding size; stored but unused).
    #[config(default = 512)]
    pub embed_dim: usize,
    /// Which transformer output is returned.
    #[config(default = "ClipLayer::Last")]
    pub layer: ClipLayer,
}

impl ClipTextConfig {
    /// OpenCLIP ViT-H/14's text tower as Stable Diffusion 2.1 and DiffBIR use it
    /// (`XPixelGroup/DiffBIR@3f8b530:configs/inference/cldm.yaml`, `clip_cfg`): width 1024,
    /// 24 blocks of 16 heads, 49408 tokens, 77 positions, `embed_dim` 1024, penultimate layer.
    pub fn vit_h14() -> Self {
        Self::new()
            .with_context_length(77)
            .with_vocab_size(49408)
            .with_width(1024)
            .with_heads(16)
            .with_layers(24)
            .with_embed_dim(1024)
            .with_layer(ClipLayer::Penultimate)
    }

    /// A small configuration of the same shape (full vocabulary, so real token ids work), for
    /// tests.
    pub fn tiny() -> Self {
        Self::vit_h14()
            .with_width(8)
            .with_heads(2)
            .with_layers(3)
            .with_embed_dim(16)
    }

    /// Width of the MLP hidden layer (`int(width * mlp_ratio)`, as the original truncates).
    pub fn mlp_width(&self) -> usize {
        (self.width as f64 * self.mlp_ratio) as usize
    }

    /// Number of residual blocks [`ClipTextEncoder::forward`] runs.
    pub fn blocks_run(&self) -> usize {
        self.layers.saturating_sub(self.layer.skipped_blocks())
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "CLIP text config".into(),
                reason,
            })
        };
        if self.width == 0 || self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return bad(format!(
                "width {} must be a positive multiple of heads {}",
                self.width, self.heads
            ));
        }
        if self.context_length == 0 || self.vocab_size == 0 || self.embed_dim == 0 {
            return bad("context_length, vocab_size and embed_dim must be positive".into());
        }
        if self.layers == 0 {
            return bad("layers must be positive".into());
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_width() > 0) {
            return bad(format!("mlp_ratio {} gives no MLP width", self.mlp_ratio));
        }
        // Every prompt becomes a row of this many tokens, and attention a square of them.
        if self.context_length > Self::MAX_CONTEXT_LENGTH {
            return bad(format!(
                "context_length {} is more than {} tokens (CLIP uses 77)",
                self.context_length,
                Self::MAX_CONTEXT_LENGTH
            ));
        }
        self.param_count().check("CLIP text config")
    }

    /// At most this many token positions.
    pub const MAX_CONTEXT_LENGTH: usize = 4096;

    /// The parameters [`init`](Self::init) creates, saturating.
    pub(crate) fn param_count(&self) -> ParamCount {
        let (w, mlp) = (self.width, self.mlp_width());
        let block = ParamCount::of(&[4, w])
            + ParamCount::layer(&[w.saturating_mul(3), w], true)
            + ParamCount::layer(&[w, w], true)
            + ParamCount::layer(&[mlp, w], true)
            + ParamCount::layer(&[w, mlp], true);
        ParamCount::of(&[self.vocab_size, w])
            + ParamCount::of(&[self.context_length, w])
            + block.times(self.layers)
            + ParamCount::of(&[2, w])
            + ParamCount::of(&[w, self.embed_dim])
    }

    /// Builds the text encoder with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> ClipTextEncoder {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        ClipTextEncoder::new(self, device)
    }
}
