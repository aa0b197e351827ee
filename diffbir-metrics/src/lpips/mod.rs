//! LPIPS v0.1 (Zhang et al., CVPR 2018), as the `lpips` package 0.1.4 computes it
//! (`lpips/lpips.py`, `LPIPS(net, version='0.1')`), on the official files unchanged:
//! torchvision's AlexNet or VGG16 weights for the trunk and the package's linear heads
//! (`weights/v0.1/{alex,vgg}.pth`).

mod trunk;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::weights::ParamCount;
use diffbir_core::{Checkpoint, KeyMap, KeyRule, load_into, named_enum};

pub use trunk::Trunk;

use crate::error::{Error, Result};

named_enum! {
    /// The trunk LPIPS compares features of.
    pub enum LpipsNet ("LPIPS network") {
        /// torchvision's AlexNet (`lpips`' default, and the paper's headline numbers).
        Alex = "alex",
        /// torchvision's VGG16.
        Vgg = "vgg" | "vgg16",
    }
}

/// Configuration of [`Lpips`]: the trunk and the channels of its five taps.
#[derive(Config, Debug)]
pub struct LpipsConfig {
    /// The trunk.
    pub net: LpipsNet,
    /// Channels at each tap; the released trunks' when `None` (alex 64, 192, 384, 256, 256;
    /// vgg 64, 128, 256, 512, 512).
    #[config(default = "None")]
    pub widths: Option<[usize; 5]>,
}

impl LpipsConfig {
    /// The released network: torchvision's trunk and the v0.1 heads.
    pub fn released(net: LpipsNet) -> Self {
        Self::new(net)
    }

    /// A small network for tests and `fake-checkpoint --tiny`: the trunk's layers at a few
    /// channels each.
    pub fn tiny(net: LpipsNet) -> Self {
        Self::new(net).with_widths(Some([4, 8, 8, 8, 8]))
    }

    /// The configuration a file of linear heads describes: the taps' widths are the heads'
    /// input channels (`lin{k}.model.1.weight` is `[1, C_k, 1, 1]`).
    pub fn from_heads(net: LpipsNet, heads: &Checkpoint) -> Result<Self> {
        let infos = heads.infos();
        let mut widths = [0usize; 5];
        for (k, w) in widths.iter_mut().enumerate() {
            let key = format!("lin{k}.model.1.weight");
            let info = infos
                .iter()
                .find(|i| i.key == key)
                .ok_or_else(|| Error::InvalidConfig {
                    model: "LPIPS",
                    reason: format!(
                        "{} has no `{key}`: not a file of LPIPS v0.1 heads",
                        heads.path().display()
                    ),
                })?;
            match info.shape[..] {
                [1, c, 1, 1] => *w = c,
                _ => {
                    return Err(Error::InvalidConfig {
                        model: "LPIPS",
                        reason: format!(
                            "{}: `{key}` has shape {:?}, a head is [1, C, 1, 1]",
                            heads.path().display(),
                            info.shape
                        ),
                    });
                }
            }
        }
        let config = Self::new(net).with_widths(Some(widths));
        config.validate()?;
        Ok(config)
    }

    /// The tap widths.
    pub fn tap_widths(&self) -> [usize; 5] {
        self.widths.unwrap_or(match self.net {
            LpipsNet::Alex => [64, 192, 384, 256, 256],
            LpipsNet::Vgg => [64, 128, 256, 512, 512],
        })
    }

    /// Checks the widths and the parameter count.
    pub fn validate(&self) -> Result<()> {
        let widths = self.tap_widths();
        if widths.contains(&0) {
            return Err(Error::InvalidConfig {
                model: "LPIPS",
                reason: format!("tap widths {widths:?} include 0"),
            });
        }
        let heads = widths
            .iter()
            .map(|&c| ParamCount::of(&[1, c, 1, 1]))
            .fold(ParamCount::default(), |a, b| a + b);
        (trunk::param_count(self.net, &widths) + heads).check("LPIPS")?;
        Ok(())
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    /// When the configuration fails [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> Lpips {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let widths = self.tap_widths();
        Lpips {
            trunk: Trunk::new(self.net, &widths, device),
            lin: widths
                .iter()
                .map(|&c| {
                    Conv2dConfig::new([c, 1], [1, 1])
                        .with_bias(false)
                        .init(device)
                        .into()
                })
                .collect(),
        }
    }
}

impl Lpips {
    /// The network of a trunk file (torchvision's `features`) and a heads file (`lpips`'
    /// `weights/v0.1/*.pth`), its widths read from the heads; both load strictly.
    pub fn from_checkpoints(
        net: LpipsNet,
        trunk: &Checkpoint,
        heads: &Checkpoint,
        device: &Device,
    ) -> Result<Self> {
        let mut model = LpipsConfig::from_heads(net, heads)?.init(device);
        load_into(&mut model.trunk, trunk, &LPIPS_TRUNK_KEYS)?;
        load_into(&mut model.lin, heads, &LPIPS_LIN_KEYS)?;
        Ok(model)
    }
}

/// LPIPS: the distance between two images' normalised trunk features, weighted per channel
/// by the linear heads, averaged over positions and summed over the five taps.
#[derive(Module, Debug)]
pub struct Lpips {
    /// The feature trunk.
    pub trunk: Trunk,
    /// The linear head of each tap (`lin{k}.model.1`, a bias-free 1×1 conv to one channel).
    pub lin: Vec<Conv2d>,
}

/// `ScalingLayer`'s shift and scale (`lpips/lpips.py`), per RGB channel.
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];

impl Lpips {
    /// The distance of each pair and its five per-tap terms.
    ///
    /// `normalize`: the inputs are in `[0, 1]` and are mapped to `[−1, 1]` first (`lpips`'
    /// `normalize=True`, as DiffBIR and pyiqa call it); otherwise they already are in
    /// `[−1, 1]`.
    ///
    /// # Shapes
    /// - `in0`, `in1`: `[B, 3, H, W]`, each side at least [`Lpips::min_side`]
    /// - returns `[B, 1, 1, 1]` and five `[B, 1, 1, 1]`
    pub fn forward_layers(
        &self,
        in0: Tensor<4>,
        in1: Tensor<4>,
        normalize: bool,
    ) -> (Tensor<4>, Vec<Tensor<4>>) {
        let [b, ..] = in0.dims();
        let prepare = |x: Tensor<4>| {
            let x = if normalize { x * 2.0 - 1.0 } else { x };
            let device = x.device();
            let shift = Tensor::<1>::from_floats(SHIFT, &device).reshape([1, 3, 1, 1]);
            let scale = Tensor::<1>::from_floats(SCALE, &device).reshape([1, 3, 1, 1]);
            (x - shift) / scale
        };
        // Both images go through the trunk as one batch, so one walk yields both taps.
        let x = Tensor::cat(vec![prepare(in0), prepare(in1)], 0);
        let mut layers = Vec::with_capacity(5);
        self.trunk.walk(x, |k, f| {
            let f = unit_channels(f);
            let f0 = f.clone().narrow(0, 0, b);
            let f1 = f.narrow(0, b, b);
            let d = (f0 - f1).powi_scalar(2);
            let r = self.lin[k].forward(d).mean_dim(2).mean_dim(3);
            layers.push(r);
        });
        let total = layers
            .iter()
            .cloned()
            .reduce(|a, b| a + b)
            .expect("a trunk has five taps");
        (total, layers)
    }

    /// The distance of each pair; see [`forward_layers`](Self::forward_layers).
    ///
    /// # Shapes
    /// - `in0`, `in1`: `[B, 3, H, W]`; returns `[B, 1, 1, 1]`
    pub fn forward(&self, in0: Tensor<4>, in1: Tensor<4>, normalize: bool) -> Tensor<4> {
        self.forward_layers(in0, in1, normalize).0
    }

    /// The smallest side of an input this network accepts (31 for AlexNet, 16 for VGG16).
    pub fn min_side(&self) -> usize {
        Trunk::min_side(self.trunk.net)
    }
}

/// `normalize_tensor`: each position's feature vector divided by its norm plus 10⁻¹⁰.
fn unit_channels(f: Tensor<4>) -> Tensor<4> {
    let norm = f.clone().powi_scalar(2).sum_dim(1).sqrt();
    f / (norm + 1e-10)
}

/// torchvision's `alexnet-owt-7be5be79.pth` and `vgg16-397923af.pth` into [`Lpips::trunk`]:
/// the keys are the trunk's own; the classifier is not used.
pub const LPIPS_TRUNK_KEYS: KeyMap = KeyMap {
    name: "lpips-trunk",
    prefix: "",
    rules: &[],
    droppable: &[r"^classifier\."],
};

/// The `lpips` package's heads (`weights/v0.1/{alex,vgg}.pth`) into [`Lpips::lin`].
pub const LPIPS_LIN_KEYS: KeyMap = KeyMap {
    name: "lpips-lin",
    prefix: "",
    rules: &[KeyRule {
        pattern: r"^lin([0-9]+)\.model\.1\.",
        replacement: "$1.",
        why: "each head is `Sequential(Dropout, Conv2d)`; the heads are one list here",
        example: ("lin3.model.1.weight", "3.weight"),
    }],
    droppable: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules_map_their_examples() {
        LPIPS_TRUNK_KEYS.check_examples().unwrap();
        LPIPS_LIN_KEYS.check_examples().unwrap();
    }

    #[test]
    fn minimum_sides_are_the_trunks_receptive_needs() {
        assert_eq!(Trunk::min_side(LpipsNet::Alex), 31);
        assert_eq!(Trunk::min_side(LpipsNet::Vgg), 16);
    }

    #[test]
    fn released_parameter_counts_are_torchvisions() {
        // torchvision's features: AlexNet 2 469 696, VGG16 14 714 688; heads 1 152 / 1 472.
        let count = |net| {
            let cfg = LpipsConfig::released(net);
            trunk::param_count(net, &cfg.tap_widths()).0
        };
        assert_eq!(count(LpipsNet::Alex), 2_469_696);
        assert_eq!(count(LpipsNet::Vgg), 14_714_688);
    }

    #[test]
    fn a_zero_width_is_refused() {
        let cfg = LpipsConfig::new(LpipsNet::Vgg).with_widths(Some([8, 0, 8, 8, 8]));
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("include 0")
        );
    }
}
