//! CLIP-IQA (Wang et al., AAAI 2023), the no-reference metric `clipiqa` as pyiqa computes it
//! (`pyiqa/archs/clipiqa_arch.py`, the metric papers quote): OpenAI's CLIP RN50 scores an
//! image against five pairs of opposite prompts ("Good image" / "bad image", …); the score
//! is the mean over the pairs of the positive prompt's softmax probability, in `[0, 1]`,
//! higher is better. The image is normalised with CLIP's mean and standard deviation and
//! seen at its own size, without positional embedding (pyiqa's `pos_embedding=False`).
//!
//! The weights are OpenAI's RN50 as OpenCLIP publishes them, a plain state dict
//! (`timm/resnet50_clip.openai`, `open_clip_model.safetensors`): the same values pyiqa uses
//! once its loader has cast OpenAI's half-precision file to `float32`.

mod resnet;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use diffbir_core::{Checkpoint, KeyMap, KeyRule, load_into};
use diffbir_ldm::clip::{
    ClipActivation, ClipLayer, ClipTextConfig, ClipTextEncoder, ClipTokenizer,
};
use serde::{Deserialize, Serialize};

pub use resnet::{AttentionPool, Bottleneck, Downsample, ModifiedResNet, ModifiedResNetConfig};

use crate::error::{Error, Result};

/// pyiqa's prompt pairs for `clipiqa`, positive first.
pub const PROMPTS: [&str; 10] = [
    "Good image",
    "bad image",
    "Sharp image",
    "blurry image",
    "sharp edges",
    "blurry edges",
    "High resolution image",
    "low resolution image",
    "Noise-free image",
    "noisy image",
];

/// OpenAI CLIP's normalisation (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`), written as the
/// original writes them and rounded to `f32` as `torch.Tensor` rounds them.
#[allow(clippy::excessive_precision)]
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// The shapes of the CLIP that CLIP-IQA runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipIqaConfig {
    /// The image tower.
    pub visual: ModifiedResNetConfig,
    /// The text tower (the last layer, pooled at the end-of-text token; built with QuickGELU).
    pub text: ClipTextConfig,
}

fn invalid(reason: String) -> Error {
    Error::InvalidConfig {
        model: "CLIP-IQA",
        reason,
    }
}

impl ClipIqaConfig {
    /// OpenAI's RN50.
    pub fn rn50() -> Self {
        Self {
            visual: ModifiedResNetConfig {
                layers: [3, 4, 6, 3],
                width: 64,
                heads: 32,
                output_dim: 1024,
                positions: 50,
            },
            text: openai_text(512, 8, 12, 1024, 77, 49408),
        }
    }

    /// A small CLIP of the same layout for tests and `fake-checkpoint --tiny`: one bottleneck
    /// per stage at width 8, a one-block text tower 16 wide over CLIP's whole vocabulary,
    /// 32 features. Its heads follow CLIP's rules, so [`from_checkpoint`](Self::from_checkpoint)
    /// finds it again.
    pub fn tiny() -> Self {
        Self {
            visual: ModifiedResNetConfig {
                layers: [1, 1, 1, 1],
                width: 8,
                heads: 4,
                output_dim: 32,
                positions: 5,
            },
            text: openai_text(16, 1, 1, 32, 77, 49408),
        }
    }

    /// The shapes a checkpoint in OpenAI's layout describes, with CLIP's own rules for the
    /// heads (`width · 32 / 64` for the image tower, `width / 64` for the text tower), as
    /// OpenAI's `build_model` derives them.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        let infos = checkpoint.infos();
        let shape = |key: &str| -> Result<Vec<usize>> {
            infos
                .iter()
                .find(|i| i.key == key)
                .map(|i| i.shape.clone())
                .ok_or_else(|| {
                    invalid(format!(
                        "{} has no `{key}`: not a ResNet CLIP in OpenAI's layout",
                        checkpoint.path().display()
                    ))
                })
        };
        let width = shape("visual.conv3.weight")?[0];
        let mut layers = [0usize; 4];
        for (i, n) in layers.iter_mut().enumerate() {
            *n = (0..)
                .take_while(|b| {
                    infos
                        .iter()
                        .any(|info| info.key == format!("visual.layer{}.{b}.conv1.weight", i + 1))
                })
                .count();
        }
        let text_width = shape("ln_final.weight")?[0];
        let [context, _] = shape("positional_embedding")?[..] else {
            return Err(invalid("`positional_embedding` is not a matrix".into()));
        };
        let config = Self {
            visual: ModifiedResNetConfig {
                layers,
                width,
                heads: (width * 32 / 64).max(1),
                output_dim: shape("visual.attnpool.c_proj.weight")?[0],
                positions: shape("visual.attnpool.positional_embedding")?[0],
            },
            text: openai_text(
                text_width,
                (text_width / 64).max(1),
                (0..)
                    .take_while(|l| {
                        infos
                            .iter()
                            .any(|i| i.key == format!("transformer.resblocks.{l}.ln_1.weight"))
                    })
                    .count(),
                shape("text_projection")?[1],
                context,
                shape("token_embedding.weight")?[0],
            ),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the shapes.
    pub fn validate(&self) -> Result<()> {
        let v = &self.visual;
        if v.width < 2
            || v.layers.contains(&0)
            || v.heads == 0
            || !(v.width * 32).is_multiple_of(v.heads)
        {
            return Err(invalid(format!(
                "image tower of width {} with {} heads and stages {:?}",
                v.width, v.heads, v.layers
            )));
        }
        self.text.validate()?;
        Ok(())
    }

    /// Builds the model with random weights.
    ///
    /// # Panics
    /// When the configuration fails [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> ClipIqaModel {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        ClipIqaModel {
            visual: self.visual.init(device),
            text: self
                .text
                .init(device)
                .with_activation(ClipActivation::QuickGelu),
        }
    }
}

fn openai_text(
    width: usize,
    heads: usize,
    layers: usize,
    embed_dim: usize,
    context: usize,
    vocab: usize,
) -> ClipTextConfig {
    ClipTextConfig::new()
        .with_width(width)
        .with_heads(heads)
        .with_layers(layers)
        .with_embed_dim(embed_dim)
        .with_context_length(context)
        .with_vocab_size(vocab)
        .with_layer(ClipLayer::Last)
}

/// The two towers.
#[derive(Module, Debug)]
pub struct ClipIqaModel {
    /// `visual.*`.
    pub visual: ModifiedResNet,
    /// The text tower (`transformer.*`, `token_embedding`, `positional_embedding`,
    /// `ln_final`, `text_projection`).
    pub text: ClipTextEncoder,
}

/// OpenAI's CLIP state dict (and OpenCLIP's copy of it) into [`ClipIqaModel`]. `logit_scale`
/// is read apart (burn holds no 0-d tensor).
pub const CLIP_IQA_KEYS: KeyMap = KeyMap {
    name: "clip-iqa",
    prefix: "",
    rules: &[
        KeyRule {
            pattern: r"^(token_embedding|positional_embedding|transformer|ln_final|text_projection)",
            replacement: "text.$1",
            why: "the text tower is one field; its keys are the text encoder's own",
            example: ("ln_final.weight", "text.ln_final.weight"),
        },
        KeyRule {
            pattern: r"\.downsample\.0\.",
            replacement: ".downsample.conv.",
            why: "the shortcut's Sequential(AvgPool2d '-1', Conv2d '0', BatchNorm2d '1') has named fields",
            example: (
                "visual.layer2.0.downsample.0.weight",
                "visual.layer2.0.downsample.conv.weight",
            ),
        },
        KeyRule {
            pattern: r"\.downsample\.1\.",
            replacement: ".downsample.bn.",
            why: "the shortcut's Sequential(AvgPool2d '-1', Conv2d '0', BatchNorm2d '1') has named fields",
            example: (
                "visual.layer2.0.downsample.1.running_var",
                "visual.layer2.0.downsample.bn.running_var",
            ),
        },
    ],
    droppable: &[
        r"^logit_scale$",
        r"num_batches_tracked$",
        r"^(input_resolution|context_length|vocab_size)$",
    ],
};

/// CLIP-IQA: the model, its `logit_scale` and the prompts' features, computed once.
#[derive(Debug)]
pub struct ClipIqa {
    model: ClipIqaModel,
    /// `exp(logit_scale)`.
    scale: f32,
    /// The prompts' normalised features, `[10, embed_dim]`.
    text_features: Tensor<2>,
}

impl ClipIqa {
    /// Loads CLIP from a checkpoint in OpenAI's layout (its shapes read from the file) and
    /// encodes the prompts with `tokenizer` (CLIP's BPE, `bpe_simple_vocab_16e6.txt.gz`).
    pub fn load(
        checkpoint: &Checkpoint,
        tokenizer: &ClipTokenizer,
        device: &Device,
    ) -> Result<Self> {
        let config = ClipIqaConfig::from_checkpoint(checkpoint)?;
        let context = config.text.context_length;
        let tokens = tokenizer.tokenize_batch(&PROMPTS, context, device);
        Self::from_parts(&config, checkpoint, tokens, device)
    }

    /// Loads the model of `config` from `checkpoint` and encodes the prompts' `tokens`
    /// (`[10, context]`, as `clip.tokenize` makes them).
    pub fn from_parts(
        config: &ClipIqaConfig,
        checkpoint: &Checkpoint,
        tokens: Tensor<2, Int>,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut model = config.init(device);
        load_into(&mut model, checkpoint, &CLIP_IQA_KEYS)?;
        let logit_scale = checkpoint
            .tensor_data("logit_scale")?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .ok()
            .and_then(|v| v.first().copied())
            .ok_or_else(|| invalid("`logit_scale` holds no value".into()))?;
        let text_features = unit_rows(model.text.pooled(tokens));
        Ok(Self {
            model,
            scale: logit_scale.exp(),
            text_features,
        })
    }

    /// The prompts' normalised text features.
    ///
    /// # Shapes
    /// - returns `[10, embed_dim]`
    pub fn text_features(&self) -> Tensor<2> {
        self.text_features.clone()
    }

    /// The normalised image features and the logits against the prompts.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[0, 1]`, `H`, `W` ≥ 32; returns `[B, embed_dim]` and
    ///   `[B, 10]`
    pub fn features(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let device = x.device();
        let mean = Tensor::<1>::from_data(TensorData::from(MEAN), &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<1>::from_data(TensorData::from(STD), &device).reshape([1, 3, 1, 1]);
        let image = unit_rows(self.model.visual.forward((x - mean) / std));
        let logits = image
            .clone()
            .matmul(self.text_features.clone().transpose())
            .mul_scalar(self.scale);
        (image, logits)
    }

    /// The CLIP-IQA score of each image.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[0, 1]`, `H`, `W` ≥ 32; returns `[B, 1]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let (_, logits) = self.features(x);
        let [b, n] = logits.dims();
        let pairs = softmax(logits.reshape([b, n / 2, 2]), 2);
        pairs.narrow(2, 0, 1).reshape([b, n / 2]).mean_dim(1)
    }

    /// The smallest side an image may have (the tower downsamples 32 times).
    pub const MIN_SIDE: usize = 32;
}

/// Each row divided by its L2 norm.
fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules_map_their_examples() {
        CLIP_IQA_KEYS.check_examples().unwrap();
    }
}
