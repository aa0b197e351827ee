//! RetinaFace (Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild",
//! CVPR 2020), as facexlib ships it: `facexlib/detection/retinaface.py` (`RetinaFace`,
//! `generate_config`) on a ResNet-50 or MobileNet-0.25 backbone.
//!
//! [`RetinaFace::forward`] is the network; [`crate::detect`] turns its outputs into faces.

mod keys;
mod mobilenet;
mod neck;
mod resnet;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, Result};

pub use keys::RETINAFACE_KEYS;
pub use mobilenet::{ConvDw, MobileLayer, MobileNetV1};
pub use neck::{Fpn, Head, Ssh};
pub use resnet::{Bottleneck, ResNet, ResNetLayout};

diffbir_core::named_enum! {
    /// RetinaFace's backbone (`network_name` of facexlib's `RetinaFace`).
    pub enum Backbone ("RetinaFace backbone") {
        /// ResNet-50 (`detection_Resnet50_Final.pth`, DiffBIR's choice).
        ResNet50 = "resnet50" | "retinaface_resnet50",
        /// MobileNet-0.25 (`detection_mobilenet0.25_Final.pth`).
        MobileNet025 = "mobile0.25" | "retinaface_mobile0.25",
    }
}

/// Anchors per position of each level (two sizes).
pub const ANCHORS: usize = 2;

/// Configuration of [`RetinaFace`]: facexlib's `generate_config(network_name)` fields that
/// shape the network.
#[derive(Config, Debug)]
pub struct RetinaFaceConfig {
    /// The backbone.
    pub network_name: Backbone,
    /// The ResNet's blocks when the backbone is a ResNet (ResNet-50's when absent); ignored
    /// for MobileNet.
    #[config(default = "None")]
    pub backbone: Option<ResNetLayout>,
    /// `in_channel`: the FPN reads `2·, 4·, 8·in_channel` channels.
    pub in_channel: usize,
    /// `out_channel`: the width of the FPN, the SSH modules and the heads' input.
    pub out_channel: usize,
}

impl RetinaFaceConfig {
    /// facexlib's `retinaface_resnet50` (`cfg_re50`).
    pub fn resnet50() -> Self {
        Self::new(Backbone::ResNet50, 256, 256)
    }

    /// facexlib's `retinaface_mobile0.25` (`cfg_mnet`).
    pub fn mobilenet025() -> Self {
        Self::new(Backbone::MobileNet025, 32, 64)
    }

    /// The released configuration of a backbone.
    pub fn of(backbone: Backbone) -> Self {
        match backbone {
            Backbone::ResNet50 => Self::resnet50(),
            Backbone::MobileNet025 => Self::mobilenet025(),
        }
    }

    /// A small detector of a backbone, for tests and stand-in weights: for ResNet, a narrow
    /// ResNet (1-2-1-1 blocks, width 16 per group, expansion 1) under an FPN of width 72; for
    /// MobileNet, the released configuration, whose backbone has a fixed shape and is small
    /// already (0.43 M parameters).
    pub fn tiny(backbone: Backbone) -> Self {
        match backbone {
            Backbone::ResNet50 => {
                Self::new(Backbone::ResNet50, 64, 72).with_backbone(Some(ResNetLayout {
                    layers: [1, 2, 1, 1],
                    width_per_group: 16,
                    expansion: 1,
                }))
            }
            Backbone::MobileNet025 => Self::mobilenet025(),
        }
    }

    fn layout(&self) -> ResNetLayout {
        self.backbone.clone().unwrap_or_default()
    }

    /// The channels of the three backbone maps, as the FPN expects them.
    fn fpn_in(&self) -> [usize; 3] {
        [2, 4, 8].map(|k| self.in_channel.saturating_mul(k))
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "RetinaFace config".into(),
            reason,
        };
        if self.out_channel == 0 || !self.out_channel.is_multiple_of(4) {
            return Err(invalid(format!(
                "out_channel must be a positive multiple of 4 (the SSH splits it in halves and quarters), got {}",
                self.out_channel
            )));
        }
        let produced = match self.network_name {
            Backbone::MobileNet025 => MobileNetV1::OUT_CHANNELS,
            Backbone::ResNet50 => {
                let layout = self.layout();
                if layout.layers.contains(&0) || layout.expansion == 0 {
                    return Err(invalid(
                        "every ResNet layer needs a block and the expansion must be positive"
                            .into(),
                    ));
                }
                if [64, 128, 256, 512]
                    .iter()
                    .any(|p| p * layout.width_per_group < 64)
                {
                    return Err(invalid(
                        "width_per_group leaves a block without channels".into(),
                    ));
                }
                layout.out_channels()
            }
        };
        if produced != self.fpn_in() {
            return Err(invalid(format!(
                "the backbone produces {produced:?} channels, in_channel {} makes the FPN read {:?}",
                self.in_channel,
                self.fpn_in()
            )));
        }
        self.param_count().check("RetinaFace config")
    }

    fn param_count(&self) -> ParamCount {
        let c = self.out_channel;
        let conv_bn = |cin: usize, cout: usize, k: usize| {
            ParamCount::of(&[cout, cin, k, k]) + ParamCount::of(&[4, cout])
        };
        let backbone = match self.network_name {
            Backbone::MobileNet025 => MobileNetV1::param_count(),
            Backbone::ResNet50 => self.layout().param_count(),
        };
        let fpn = self
            .fpn_in()
            .iter()
            .fold(conv_bn(c, c, 3).times(2), |a, &cin| a + conv_bn(cin, c, 1));
        let ssh = conv_bn(c, c / 2, 3) + conv_bn(c, c / 4, 3) + conv_bn(c / 4, c / 4, 3).times(3);
        let heads = [2, 4, 10].iter().fold(ParamCount::default(), |a, &v| {
            a + ParamCount::layer(&[ANCHORS * v, c, 1, 1], true)
        });
        backbone + fpn + ssh.times(3) + heads.times(3)
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> RetinaFace {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let c = self.out_channel;
        let heads = |values: usize| {
            (0..3)
                .map(|_| Head::new(c, ANCHORS, values, device))
                .collect()
        };
        RetinaFace {
            body: match self.network_name {
                Backbone::ResNet50 => Body::ResNet(self.layout().init(device)),
                Backbone::MobileNet025 => Body::MobileNet(MobileNetV1::init(device)),
            },
            fpn: Fpn::new(self.fpn_in(), c, device),
            ssh1: Ssh::new(c, c, device),
            ssh2: Ssh::new(c, c, device),
            ssh3: Ssh::new(c, c, device),
            class_head: heads(2),
            bbox_head: heads(4),
            landmark_head: heads(10),
        }
    }
}

/// The backbone (`body`, an `IntermediateLayerGetter` over the three stride-8/16/32 maps).
#[derive(Module, Debug)]
pub enum Body {
    /// torchvision's ResNet.
    ResNet(ResNet),
    /// MobileNet-0.25.
    MobileNet(MobileNetV1),
}

/// The network's outputs for every prior, in the priors' order ([`crate::detect::priors`]).
#[derive(Debug, Clone)]
pub struct RawDetections {
    /// `[B, P, 4]` box offsets (centre x, y, log-width, log-height, before the variances).
    pub loc: Tensor<3>,
    /// `[B, P, 2]` softmaxed scores (background, face).
    pub conf: Tensor<3>,
    /// `[B, P, 10]` landmark offsets (five x, y pairs).
    pub landmarks: Tensor<3>,
}

/// RetinaFace: backbone, FPN, three SSH context modules and per-level heads.
#[derive(Module, Debug)]
pub struct RetinaFace {
    /// The backbone.
    pub body: Body,
    /// The feature pyramid.
    pub fpn: Fpn,
    /// Context module of the stride-8 level.
    pub ssh1: Ssh,
    /// Context module of the stride-16 level.
    pub ssh2: Ssh,
    /// Context module of the stride-32 level.
    pub ssh3: Ssh,
    /// `ClassHead`: two scores per anchor, per level.
    pub class_head: Vec<Head>,
    /// `BboxHead`: four box offsets per anchor, per level.
    pub bbox_head: Vec<Head>,
    /// `LandmarkHead`: ten landmark offsets per anchor, per level.
    pub landmark_head: Vec<Head>,
}

/// The per-channel mean RetinaFace subtracts (`mean_tensor`, BGR order in the original;
/// DiffBIR feeds RGB images, so it lands on R, G, B as written).
pub const MEAN: [f32; 3] = [104.0, 117.0, 123.0];

impl RetinaFace {
    /// The network in inference mode (`phase='test'`: the scores are softmaxed).
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]`, pixel values minus [`MEAN`]
    /// - returns [`RawDetections`] over `P = 2·Σ ⌈H/s⌉·⌈W/s⌉` priors (`s` = 8, 16, 32)
    pub fn forward(&self, x: Tensor<4>) -> RawDetections {
        let maps = match &self.body {
            Body::ResNet(m) => m.forward(x),
            Body::MobileNet(m) => m.forward(x),
        };
        let [f1, f2, f3] = self.fpn.forward(maps);
        let features = [
            self.ssh1.forward(f1),
            self.ssh2.forward(f2),
            self.ssh3.forward(f3),
        ];
        let run = |heads: &[Head]| {
            Tensor::cat(
                heads
                    .iter()
                    .zip(&features)
                    .map(|(h, f)| h.forward(f.clone()))
                    .collect(),
                1,
            )
        };
        RawDetections {
            loc: run(&self.bbox_head),
            conf: softmax(run(&self.class_head), 2),
            landmarks: run(&self.landmark_head),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_detectors_are_valid_for_both_backbones() {
        for backbone in [Backbone::ResNet50, Backbone::MobileNet025] {
            let tiny = RetinaFaceConfig::tiny(backbone);
            tiny.validate().unwrap();
            assert_eq!(tiny.network_name, backbone);
        }
        assert!(
            RetinaFaceConfig::tiny(Backbone::ResNet50).param_count()
                < RetinaFaceConfig::resnet50().param_count()
        );
    }
}
