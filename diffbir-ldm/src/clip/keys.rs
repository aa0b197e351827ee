//! Where the text encoder's tensors sit in the files that carry it.
//!
//! [`ClipTextEncoder`](super::ClipTextEncoder)'s fields mirror `FrozenOpenCLIPEmbedder.model`
//! (`token_embedding.weight`, `positional_embedding`, `transformer.resblocks.N.…`,
//! `ln_final.*`, `text_projection`), so no rename rule is needed: each map only selects the
//! prefix the encoder is stored under and lists the keys it drops. burn's PyTorch adapter transposes the
//! `Linear` weights (`out_proj`, `c_fc`, `c_proj`) and renames the LayerNorm
//! `weight`/`bias`; the raw parameters (`in_proj_weight`, `positional_embedding`,
//! `text_projection`) keep their stored layout, which is the one the module uses.

use diffbir_core::KeyMap;

/// Keys the text encoder knowingly does not load:
/// - `logit_scale`, CLIP's contrastive temperature: a 0-d tensor (burn tensors have rank ≥ 1)
///   that the conditioning path never reads;
/// - CLIP's vision tower (`visual.*`; OpenCLIP builds it and DiffBIR deletes it, so released
///   Stable Diffusion files do not have it, but full OpenCLIP exports do);
/// - the causal mask buffer `attn_mask` (not persistent in OpenCLIP, stored by some older
///   exports; the encoder's attention is causal by construction).
const CLIP_DROPPABLE: &[&str] = &[r"^logit_scale$", r"^visual\.", r"^attn_mask$"];

/// The text encoder in a Stable Diffusion 2.x checkpoint (`v2-1_512-ema-pruned.ckpt`,
/// `sd2.1-base-zsnr-laionaes5.ckpt`): `state_dict` keys `cond_stage_model.model.*`
/// (`ControlLDM.load_pretrained_sd`). The U-Net, VAE, schedule buffers and EMA bookkeeping of
/// the same file lie outside the prefix.
pub const CLIP_SD21_KEYS: KeyMap = KeyMap {
    name: "clip-sd21",
    prefix: "cond_stage_model.model.",
    rules: &[],
    droppable: CLIP_DROPPABLE,
};

/// `FrozenOpenCLIPEmbedder.state_dict()` saved on its own (keys `model.*`), as the reference
/// fixtures store it.
pub const CLIP_EMBEDDER_KEYS: KeyMap = KeyMap {
    name: "clip-embedder",
    prefix: "model.",
    rules: &[],
    droppable: CLIP_DROPPABLE,
};

/// The text encoder inside a whole `ControlLDM.state_dict()` (keys `clip.model.*`).
pub const CLIP_CONTROL_LDM_KEYS: KeyMap = KeyMap {
    name: "clip-controlldm",
    prefix: "clip.model.",
    rules: &[],
    droppable: CLIP_DROPPABLE,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_are_consistent() {
        for map in [CLIP_SD21_KEYS, CLIP_EMBEDDER_KEYS, CLIP_CONTROL_LDM_KEYS] {
            map.check_examples().unwrap();
        }
    }

    #[test]
    fn prefixes_select_the_text_tower() {
        let block = "transformer.resblocks.22.attn.in_proj_weight";
        for (map, key) in [
            (CLIP_SD21_KEYS, format!("cond_stage_model.model.{block}")),
            (CLIP_EMBEDDER_KEYS, format!("model.{block}")),
            (CLIP_CONTROL_LDM_KEYS, format!("clip.model.{block}")),
        ] {
            assert_eq!(map.rename(&key).as_deref(), Some(block), "{}", map.name);
        }
        assert_eq!(
            CLIP_SD21_KEYS.rename("model.diffusion_model.out.0.weight"),
            None
        );
        assert_eq!(
            CLIP_SD21_KEYS.rename("first_stage_model.encoder.conv_in.weight"),
            None
        );
    }
}
