//! How the UNet's checkpoint keys map to its fields: the `nn.Sequential` indices of the
//! original (`XPixelGroup/DiffBIR@3f8b530:diffbir/model/unet.py`) renamed, and the two places a
//! UNet is found (inside an SD checkpoint, or as a bare state dict).

use diffbir_core::{KeyMap, KeyRule};

/// Renames the `nn.Sequential` indices of residual blocks, feed-forwards and the output head
/// that Rust fields cannot mirror. Shared by the UNet and the IRControlNet.
pub const UNET_RULES: &[KeyRule] = &[
    KeyRule {
        pattern: r"\.in_layers\.0\.",
        replacement: ".in_norm.",
        why: "in_layers = Sequential(GroupNorm32, SiLU, Conv)",
        example: (
            "input_blocks.1.0.in_layers.0.weight",
            "input_blocks.1.0.in_norm.weight",
        ),
    },
    KeyRule {
        pattern: r"\.in_layers\.2\.",
        replacement: ".in_conv.",
        why: "in_layers = Sequential(GroupNorm32, SiLU, Conv)",
        example: (
            "middle_block.0.in_layers.2.bias",
            "middle_block.0.in_conv.bias",
        ),
    },
    KeyRule {
        pattern: r"\.emb_layers\.1\.",
        replacement: ".emb_linear.",
        why: "emb_layers = Sequential(SiLU, Linear)",
        example: (
            "output_blocks.0.0.emb_layers.1.weight",
            "output_blocks.0.0.emb_linear.weight",
        ),
    },
    KeyRule {
        pattern: r"\.out_layers\.0\.",
        replacement: ".out_norm.",
        why: "out_layers = Sequential(GroupNorm32, SiLU, Dropout, Conv)",
        example: (
            "input_blocks.1.0.out_layers.0.bias",
            "input_blocks.1.0.out_norm.bias",
        ),
    },
    KeyRule {
        pattern: r"\.out_layers\.3\.",
        replacement: ".out_conv.",
        why: "out_layers = Sequential(GroupNorm32, SiLU, Dropout, Conv)",
        example: (
            "input_blocks.1.0.out_layers.3.weight",
            "input_blocks.1.0.out_conv.weight",
        ),
    },
    KeyRule {
        pattern: r"\.ff\.net\.0\.proj\.",
        replacement: ".ff.geglu.",
        why: "ff.net = Sequential(GEGLU(proj), Dropout, Linear)",
        example: (
            "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight",
            "input_blocks.1.1.transformer_blocks.0.ff.geglu.weight",
        ),
    },
    KeyRule {
        pattern: r"\.ff\.net\.2\.",
        replacement: ".ff.out.",
        why: "ff.net = Sequential(GEGLU(proj), Dropout, Linear)",
        example: (
            "middle_block.1.transformer_blocks.0.ff.net.2.bias",
            "middle_block.1.transformer_blocks.0.ff.out.bias",
        ),
    },
    KeyRule {
        pattern: r"^out\.0\.",
        replacement: "out_norm.",
        why: "out = Sequential(GroupNorm32, SiLU, Conv)",
        example: ("out.0.weight", "out_norm.weight"),
    },
    KeyRule {
        pattern: r"^out\.2\.",
        replacement: "out_conv.",
        why: "out = Sequential(GroupNorm32, SiLU, Conv)",
        example: ("out.2.bias", "out_conv.bias"),
    },
];

/// The UNet inside an SD 2.x checkpoint (`model.diffusion_model.*`).
pub const SD_UNET_KEYS: KeyMap = KeyMap {
    name: "sd21-unet",
    prefix: "model.diffusion_model.",
    rules: UNET_RULES,
    droppable: &[],
};

/// A bare UNet state dict (DiffBIR's `ControlLDM.unet`).
pub const UNET_KEYS: KeyMap = KeyMap {
    name: "unet",
    prefix: "",
    rules: UNET_RULES,
    droppable: &[],
};
