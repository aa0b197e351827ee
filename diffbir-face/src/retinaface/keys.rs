//! The checkpoint keys of RetinaFace (`detection_*_Final.pth`).

use diffbir_core::{KeyMap, KeyRule};

/// Rules shared by facexlib's networks: `nn.Sequential` children are numbered, Rust fields
/// cannot be.
pub(crate) const SEQUENTIAL_RULE: KeyRule = KeyRule {
    pattern: r"\.([0-9]+)\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    replacement: ".l$1.$2",
    why: "the layers of an nn.Sequential are fields `l0`, `l1`, … (Rust fields cannot be numbers)",
    example: ("fpn.output1.1.running_mean", "fpn.output1.l1.running_mean"),
};

/// RetinaFace, either backbone. facexlib strips a leading `module.` (the released files
/// were saved from `DataParallel`), so the map accepts keys with or without it.
pub const RETINAFACE_KEYS: KeyMap = KeyMap {
    name: "retinaface",
    prefix: "",
    rules: &[
        KeyRule {
            pattern: r"^module\.",
            replacement: "",
            why: "files saved from DataParallel prefix every key with `module.`",
            example: ("module.body.conv1.weight", "body.conv1.weight"),
        },
        SEQUENTIAL_RULE,
        KeyRule {
            pattern: r"\.conv3X3\.",
            replacement: ".conv3x3.",
            why: "Rust field names are snake case",
            example: ("ssh1.conv3X3.l0.weight", "ssh1.conv3x3.l0.weight"),
        },
        KeyRule {
            pattern: r"\.conv5X5_([12])\.",
            replacement: ".conv5x5_$1.",
            why: "Rust field names are snake case",
            example: ("ssh2.conv5X5_1.l1.bias", "ssh2.conv5x5_1.l1.bias"),
        },
        KeyRule {
            pattern: r"\.conv7X7_2\.",
            replacement: ".conv7x7_2.",
            why: "Rust field names are snake case",
            example: ("ssh3.conv7X7_2.l0.weight", "ssh3.conv7x7_2.l0.weight"),
        },
        KeyRule {
            pattern: r"^ClassHead\.",
            replacement: "class_head.",
            why: "Rust field names are snake case",
            example: ("ClassHead.0.conv1x1.weight", "class_head.0.conv1x1.weight"),
        },
        KeyRule {
            pattern: r"^BboxHead\.",
            replacement: "bbox_head.",
            why: "Rust field names are snake case",
            example: ("BboxHead.2.conv1x1.bias", "bbox_head.2.conv1x1.bias"),
        },
        KeyRule {
            pattern: r"^LandmarkHead\.",
            replacement: "landmark_head.",
            why: "Rust field names are snake case",
            example: (
                "LandmarkHead.1.conv1x1.weight",
                "landmark_head.1.conv1x1.weight",
            ),
        },
    ],
    droppable: &[r"num_batches_tracked$"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_their_examples_and_invert() {
        RETINAFACE_KEYS.check_examples().unwrap();
    }

    #[test]
    fn keys_with_and_without_the_dataparallel_prefix_map_alike() {
        for key in ["body.stage1.0.0.weight", "module.body.stage1.0.0.weight"] {
            assert_eq!(
                RETINAFACE_KEYS.rename(key).as_deref(),
                Some("body.stage1.0.l0.weight")
            );
        }
        assert_eq!(
            RETINAFACE_KEYS
                .rename("body.layer1.0.downsample.1.running_var")
                .as_deref(),
            Some("body.layer1.0.downsample.l1.running_var")
        );
        assert_eq!(
            RETINAFACE_KEYS.rename("ssh1.conv7x7_3.0.weight").as_deref(),
            Some("ssh1.conv7x7_3.l0.weight")
        );
    }
}
