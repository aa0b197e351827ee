//! The OpenCLIP text transformer as `FrozenOpenCLIPEmbedder` runs it
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/clip.py`, `diffbir/model/open_clip/model.py`
//! and `transformer.py`).

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor};
use diffbir_core::kernels::{Linear, attention, linear};

use super::config::{ClipActivation, ClipLayer, ClipTextConfig};
use super::tokenizer::ClipTokenizer;

/// `nn.MultiheadAttention` as OpenCLIP uses it: one fused input projection producing
/// `[q | k | v]` (each `width` wide, heads head-major inside each), causal self-attention with
/// scale `head_dim^-0.5`, and an output projection.
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    /// `attn.in_proj_weight`, PyTorch layout `[3·width, width]` (rows: q, then k, then v).
    pub in_proj_weight: Param<Tensor<2>>,
    /// `attn.in_proj_bias`, `[3·width]`.
    pub in_proj_bias: Param<Tensor<1>>,
    /// `attn.out_proj`.
    pub out_proj: Linear,
    num_heads: usize,
}

impl MultiheadAttention {
    /// Causal self-attention.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, width]`; returns `[batch, tokens, width]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let heads = self.num_heads;
        let head_dim = c / heads;
        // The fused projection stays fused: one `[width, 3·width]` matmul, split afterwards.
        let qkv = linear(
            x,
            self.in_proj_weight.val().transpose(),
            Some(self.in_proj_bias.val()),
        )
        .reshape([b, n, 3, heads, head_dim])
        .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, head_dim]);
        let (q, k, v) = (part(0), part(1), part(2));
        // The original adds a `[77, 77]` mask of −inf strictly above the diagonal; the fused
        // op's causal flag masks exactly those positions.
        let options = AttentionModuleOptions {
            scale: Some((head_dim as f64).powf(-0.5)),
            softcap: None,
            is_causal: true,
        };
        let out = attention(q, k, v, None, None, options);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, n, c]))
    }
}

/// The block's MLP (`nn.Sequential(c_fc, GELU, c_proj)`; the GELU has no parameters, so the
/// two linears are named fields).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `mlp.c_fc`: `width → mlp_width`.
    pub c_fc: Linear,
    /// `mlp.c_proj`: `mlp_width → width`.
    pub c_proj: Linear,
    /// The activation between them.
    #[module(skip)]
    pub activation: ClipActivation,
}

impl Mlp {
    /// `c_proj(act(c_fc(x)))`: the exact (erf) GELU of OpenCLIP, or OpenAI's QuickGELU.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, width]`; returns `[batch, tokens, width]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.c_fc.forward(x);
        let x = match self.activation {
            ClipActivation::Gelu => gelu(x),
            ClipActivation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        };
        self.c_proj.forward(x)
    }
}

/// OpenCLIP's `ResidualAttentionBlock` (pre-norm; no layer scale, as `ls_init_value` is
/// `None`).
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock {
    /// Pre-attention LayerNorm (eps 1e-5).
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: MultiheadAttention,
    /// Pre-MLP LayerNorm (eps 1e-5).
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl ResidualAttentionBlock {
    /// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, width]`; returns `[batch, tokens, width]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x));
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// The stack of residual blocks (`model.transformer`).
#[derive(Module, Debug)]
pub struct Transformer {
    /// `transformer.resblocks.N`.
    pub resblocks: Vec<ResidualAttentionBlock>,
}

/// The OpenCLIP text encoder of Stable Diffusion 2.x (`FrozenOpenCLIPEmbedder`): token and
/// position embeddings, a causal transformer, and the final LayerNorm applied to the output
/// of the configured layer.
///
/// Field names mirror the keys of `FrozenOpenCLIPEmbedder.model` (the CLIP model without its
/// vision tower), so checkpoints load through the key maps of [`super::keys`] without rename
/// rules. `text_projection` is stored in every checkpoint and loaded, but the conditioning
/// path does not use it; the scalar `logit_scale` (a 0-d tensor, which burn cannot hold) is
/// dropped by the key maps.
#[derive(Module, Debug)]
pub struct ClipTextEncoder {
    /// `token_embedding`: `[vocab_size, width]`.
    pub token_embedding: Embedding,
    /// `positional_embedding`: `[context_length, width]` (a raw parameter, not transposed).
    pub positional_embedding: Param<Tensor<2>>,
    /// The residual blocks.
    pub transformer: Transformer,
    /// `ln_final` (eps 1e-5).
    pub ln_final: LayerNorm,
    /// `text_projection`: `[width, embed_dim]` (used as `x @ text_projection` by CLIP's pooled
    /// text features; unused here).
    pub text_projection: Param<Tensor<2>>,
    context_length: usize,
    blocks_run: usize,
}

impl ClipTextEncoder {
    /// Builds the module with OpenCLIP's initialisation (normal, std 0.02 for the token
    /// embedding and 0.01 for the position embedding); real weights replace them on loading.
    pub(crate) fn new(config: &ClipTextConfig, device: &Device) -> Self {
        let width = config.width;
        let ln = || LayerNormConfig::new(width).with_epsilon(1e-5).init(device);
        let resblocks = (0..config.layers)
            .map(|_| ResidualAttentionBlock {
                ln_1: ln(),
                attn: MultiheadAttention {
                    in_proj_weight: Initializer::XavierUniform { gain: 1.0 }.init_with(
                        [3 * width, width],
                        Some(width),
                        Some(width),
                        device,
                    ),
                    in_proj_bias: Initializer::Zeros.init([3 * width], device),
                    out_proj: LinearConfig::new(width, width).init(device).into(),
                    num_heads: config.heads,
                },
                ln_2: ln(),
                mlp: Mlp {
                    c_fc: LinearConfig::new(width, config.mlp_width())
                        .init(device)
                        .into(),
                    c_proj: LinearConfig::new(config.mlp_width(), width)
                        .init(device)
                        .into(),
                    activation: ClipActivation::Gelu,
                },
            })
            .collect();
        Self {
            token_embedding: EmbeddingConfig::new(config.vocab_size, width)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            positional_embedding: Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            }
            .init([config.context_length, width], device),
            transformer: Transformer { resblocks },
            ln_final: ln(),
            text_projection: Initializer::Normal {
                mean: 0.0,
                std: (width as f64).powf(-0.5),
            }
            .init([width, config.embed_dim], device),
            context_length: config.context_length,
            blocks_run: config.blocks_run(),
        }
    }

    /// The encoder with another MLP activation: the exact GELU it is built with is OpenCLIP's
    /// (Stable Diffusion 2.x); OpenAI's CLIP models use QuickGELU.
    pub fn with_activation(mut self, activation: ClipActivation) -> Self {
        for block in &mut self.transformer.resblocks {
            block.mlp.activation = activation;
        }
        self
    }

    /// Number of token positions (77 for every released CLIP).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Number of residual blocks [`forward`](Self::forward) runs (all of them for
    /// [`ClipLayer::Last`], one fewer for [`ClipLayer::Penultimate`]).
    pub fn blocks_run(&self) -> usize {
        self.blocks_run
    }

    /// Which layer's output [`forward`](Self::forward) returns.
    pub fn layer(&self) -> ClipLayer {
        if self.blocks_run == self.transformer.resblocks.len() {
            ClipLayer::Last
        } else {
            ClipLayer::Penultimate
        }
    }

    /// The text conditioning: embeddings plus positions, the first
    /// [`blocks_run`](Self::blocks_run) residual blocks with a causal mask, then `ln_final`
    /// (`FrozenOpenCLIPEmbedder.encode_with_transformer`).
    ///
    /// The original requires exactly `context_length` tokens; shorter sequences are accepted
    /// and give the first rows of the full-length result (the mask is causal).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, tokens]` token ids below `vocab_size`, `tokens ≤ context_length`
    ///   (as [`ClipTokenizer::tokenize`] makes them)
    /// - returns `[batch, tokens, width]`
    ///
    /// # Panics
    ///
    /// If there are more tokens than positions.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [_, n] = tokens.dims();
        assert!(
            n <= self.context_length,
            "{n} tokens exceed the CLIP context length {}",
            self.context_length
        );
        let positions = self
            .positional_embedding
            .val()
            .narrow(0, 0, n)
            .unsqueeze_dim::<3>(0);
        let mut x = self.token_embedding.forward(tokens) + positions;
        for block in &self.transformer.resblocks[..self.blocks_run] {
            x = block.forward(x);
        }
        self.ln_final.forward(x)
    }

    /// CLIP's pooled text features (`CLIP.encode_text`): [`forward`](Self::forward)'s output
    /// at each sequence's end-of-text token (its largest id), projected by `text_projection`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, tokens]`, as for [`forward`](Self::forward)
    /// - returns `[batch, embed_dim]`
    pub fn pooled(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [b, _] = tokens.dims();
        let x = self.forward(tokens.clone());
        let [_, _, width] = x.dims();
        let end = tokens.argmax(1).reshape([b, 1, 1]).expand([b, 1, width]);
        x.gather(1, end)
            .reshape([b, width])
            .matmul(self.text_projection.val())
    }

    /// Tokenizes `prompts` to the context length and encodes them
    /// (`FrozenOpenCLIPEmbedder.encode`).
    ///
    /// # Shapes
    /// - returns `[prompts.len(), context_length, width]`
    pub fn encode<S: AsRef<str>>(&self, tokenizer: &ClipTokenizer, prompts: &[S]) -> Tensor<3> {
        let device = self.positional_embedding.lazy_device();
        let tokens = tokenizer.tokenize_batch(prompts, self.context_length, &device);
        self.forward(tokens)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use burn::module::ModuleVisitor;
    use burn::tensor::{Distribution, TensorData};
    use diffbir_core::{Checkpoint, KeyMap, load_into};
    use regex::Regex;

    use super::*;
    use crate::clip::{CLIP_EMBEDDER_KEYS, CLIP_SD21_KEYS};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
    }

    /// Module tensors as PyTorch names them, with their PyTorch shapes (read without
    /// materialising the lazily initialised parameters).
    fn torch_layout(model: &ClipTextEncoder) -> BTreeMap<String, Vec<usize>> {
        #[derive(Default)]
        struct Layout {
            path: Vec<(String, String)>,
            tensors: BTreeMap<String, Vec<usize>>,
        }
        impl ModuleVisitor for Layout {
            fn enter_module(&mut self, name: &str, container_type: &str) {
                self.path
                    .push((name.to_string(), container_type.to_string()));
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                // The innermost entry is the parameter, tagged with its module's type.
                let (name, owner) = self.path.last().cloned().unwrap_or_default();
                let mut shape = param.lazy_shape().to_vec();
                let name = match (owner.as_str(), name.as_str()) {
                    ("Struct:LayerNorm", "gamma") => "weight".to_string(),
                    ("Struct:LayerNorm", "beta") => "bias".to_string(),
                    ("Struct:Linear", "weight") => {
                        shape.reverse();
                        name
                    }
                    _ => name,
                };
                let mut path: Vec<&str> = self.path.iter().map(|(n, _)| n.as_str()).collect();
                path.pop();
                path.push(&name);
                self.tensors.insert(path.join("."), shape);
            }
        }
        let mut layout = Layout::default();
        model.visit(&mut layout);
        layout.tensors
    }

    fn droppable(map: &KeyMap, key: &str) -> bool {
        map.droppable
            .iter()
            .any(|p| Regex::new(p).unwrap().is_match(key))
    }

    #[test]
    fn vit_h14_has_the_layout_and_size_of_the_released_text_tower() {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("manifests/clip.json")).unwrap(),
        )
        .unwrap();
        let mut expected = BTreeMap::new();
        let mut dropped = 0;
        for entry in manifest["keys"].as_array().unwrap() {
            let checkpoint_key = entry["checkpoint_key"].as_str().unwrap();
            let path = CLIP_SD21_KEYS.rename(checkpoint_key).unwrap();
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            if droppable(&CLIP_SD21_KEYS, &path) {
                dropped += shape.iter().product::<usize>();
            } else {
                expected.insert(path, shape);
            }
        }
        let model = ClipTextConfig::vit_h14().init(&Device::flex());
        assert_eq!(torch_layout(&model), expected);
        // Only the scalar logit_scale is left out.
        assert_eq!(dropped, 1);
        let total = manifest["num_parameters"].as_u64().unwrap() as usize;
        assert_eq!(model.num_params(), total - dropped);
        assert_eq!(
            ClipTextConfig::vit_h14().param_count().0,
            model.num_params() as u128
        );
        assert_eq!(
            (model.blocks_run(), model.layer()),
            (23, ClipLayer::Penultimate)
        );
    }

    #[test]
    fn the_sd_checkpoint_and_the_embedder_file_load_the_same_weights() {
        let device = Device::flex();
        let config = ClipTextConfig::tiny();
        let mut from_sd = config.init(&device);
        let report = load_into(
            &mut from_sd,
            &Checkpoint::open(fixtures().join("sd_tiny.sd21_format.ckpt")).unwrap(),
            &CLIP_SD21_KEYS,
        )
        .unwrap();
        assert_eq!(report.dropped, ["cond_stage_model.model.logit_scale"]);
        assert_eq!(report.applied.len(), 41);
        let mut from_embedder = config.init(&device);
        load_into(
            &mut from_embedder,
            &Checkpoint::open(fixtures().join("sd_tiny.clip.weights.safetensors")).unwrap(),
            &CLIP_EMBEDDER_KEYS,
        )
        .unwrap();
        let tokens =
            Tensor::<2, Int>::random([2, 77], Distribution::Uniform(0.0, 49408.0), &device);
        let a = from_sd.forward(tokens.clone());
        let b = from_embedder.forward(tokens);
        assert_eq!(a.dims(), [2, 77, 8]);
        a.into_data().assert_eq(&b.into_data(), true);
    }

    #[test]
    fn attention_is_causal_and_short_inputs_are_prefixes() {
        let device = Device::flex();
        let model = ClipTextConfig::tiny().with_vocab_size(64).init(&device);
        let ids = |last: i64| {
            let mut v: Vec<i64> = (0..77).map(|i| i % 50).collect();
            v[76] = last;
            Tensor::<2, Int>::from_data(TensorData::new(v, [1, 77]), &device)
        };
        let a = model.forward(ids(1));
        let b = model.forward(ids(60));
        let head = |t: Tensor<3>| t.narrow(1, 0, 76).into_data();
        head(a.clone()).assert_approx_eq::<f32>(&head(b.clone()), Default::default());
        let last = |t: Tensor<3>| t.narrow(1, 76, 1);
        let moved: f32 = (last(a.clone()) - last(b)).abs().max().into_scalar();
        assert!(moved > 1e-4, "the last token must see itself");
        let short = model.forward(ids(1).narrow(1, 0, 10));
        short
            .into_data()
            .assert_approx_eq::<f32>(&a.narrow(1, 0, 10).into_data(), Default::default());
    }

    #[test]
    fn penultimate_skips_exactly_the_last_block() {
        let device = Device::flex();
        let last = ClipTextConfig::tiny()
            .with_layer(ClipLayer::Last)
            .with_layers(2)
            .init(&device);
        assert_eq!((last.blocks_run(), last.layer()), (2, ClipLayer::Last));
        let mut penultimate = ClipTextConfig::tiny().with_layers(3).init(&device);
        // Same weights in the first two blocks, a third block that must not matter.
        penultimate.token_embedding = last.token_embedding.clone();
        penultimate.positional_embedding = last.positional_embedding.clone();
        penultimate.ln_final = last.ln_final.clone();
        penultimate.transformer.resblocks[..2].clone_from_slice(&last.transformer.resblocks);
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64; 77], [1, 77]), &device);
        penultimate
            .forward(tokens.clone())
            .into_data()
            .assert_eq(&last.forward(tokens).into_data(), true);
    }

    #[test]
    #[should_panic(expected = "exceed the CLIP context length")]
    fn too_many_tokens_panic() {
        let device = Device::flex();
        let model = ClipTextConfig::tiny().with_context_length(4).init(&device);
        model.forward(Tensor::<2, Int>::zeros([1, 5], &device));
    }

    #[test]
    fn invalid_configs_are_errors() {
        assert!(ClipTextConfig::vit_h14().validate().is_ok());
        for config in [
            ClipTextConfig::tiny().with_heads(3),
            ClipTextConfig::tiny().with_layers(0),
            ClipTextConfig::tiny().with_context_length(0),
            ClipTextConfig::tiny().with_mlp_ratio(0.0),
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        for config in [
            ClipTextConfig::tiny(),
            ClipTextConfig::tiny()
                .with_mlp_ratio(2.5)
                .with_context_length(5),
        ] {
            let built = config.init(&Device::flex()).num_params() as u128;
            assert_eq!(config.param_count().0, built, "{config:?}");
        }
        for config in [
            ClipTextConfig::tiny().with_embed_dim(1_616_777_216),
            ClipTextConfig::tiny().with_vocab_size(usize::MAX),
            ClipTextConfig::tiny().with_layers(usize::MAX),
            ClipTextConfig::tiny().with_mlp_ratio(1e300),
            ClipTextConfig::tiny().with_context_length(1 << 20),
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
