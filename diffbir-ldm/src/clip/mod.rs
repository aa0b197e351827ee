//! The OpenCLIP ViT-H/14 text encoder of Stable Diffusion 2.x and its BPE tokenizer: prompts
//! become the `[batch, 77, 1024]` cross-attention context of the U-Net and the ControlNet.
//!
//! Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
//! (ICML 2021), as trained by OpenCLIP (Cherti et al., "Reproducible scaling laws for
//! contrastive language-image learning", CVPR 2023) and used by DiffBIR
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/clip.py`, `FrozenOpenCLIPEmbedder` with
//! `layer = "penultimate"`; `diffbir/model/open_clip/`).
//!
//! ```no_run
//! use diffbir_core::{Checkpoint, load_into, device::parse_device};
//! use diffbir_ldm::clip::{ClipTextConfig, ClipTokenizer, CLIP_SD21_KEYS};
//!
//! let device = parse_device("cpu")?;
//! let tokenizer = ClipTokenizer::from_file("bpe_simple_vocab_16e6.txt.gz")?;
//! let mut encoder = ClipTextConfig::vit_h14().init(&device);
//! load_into(&mut encoder, &Checkpoint::open("v2-1_512-ema-pruned.ckpt")?, &CLIP_SD21_KEYS)?;
//! let context = encoder.encode(&tokenizer, &["a photo of a cat", ""]); // [2, 77, 1024]
//! # Ok::<(), diffbir_core::Error>(())
//! ```

pub mod clean;
mod config;
pub mod keys;
mod text_encoder;
mod tokenizer;

pub use config::{ClipActivation, ClipLayer, ClipTextConfig};
pub use keys::{CLIP_CONTROL_LDM_KEYS, CLIP_EMBEDDER_KEYS, CLIP_SD21_KEYS};
pub use text_encoder::{
    ClipTextEncoder, Mlp, MultiheadAttention, ResidualAttentionBlock, Transformer,
};
pub use tokenizer::{BPE_VOCAB_FILE, CLIP_VOCAB_SIZE, ClipTokenizer, END_OF_TEXT, START_OF_TEXT};
