//! RRDBNet (ESRGAN's generator), used by DiffBIR v2 as "BSRNet": BSRGAN's PSNR-oriented ×4
//! super-resolution weights.
//!
//! Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks" (ECCVW
//! 2018); Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image
//! Super-Resolution" (ICCV 2021). Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/bsrnet.py`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::Conv2d;
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, KeyMap, Result};

use diffbir_core::resize::upsample_nearest2x;

use crate::ops::conv3x3;

/// Configuration of [`RrdbNet`]; names and defaults are the original constructor's.
#[derive(Config, Debug)]
pub struct RrdbNetConfig {
    /// Input channels.
    #[config(default = 3)]
    pub in_nc: usize,
    /// Output channels.
    #[config(default = 3)]
    pub out_nc: usize,
    /// Trunk width.
    #[config(default = 64)]
    pub nf: usize,
    /// Number of RRDB blocks.
    #[config(default = 23)]
    pub nb: usize,
    /// Growth channels of the dense blocks.
    #[config(default = 32)]
    pub gc: usize,
    /// Upscale factor: 4 (two ×2 steps) or anything else for one ×2 step, as the original.
    #[config(default = 4)]
    pub sf: usize,
}

impl RrdbNetConfig {
    /// BSRNet (`configs/inference/bsrnet.yaml`, `BSRNet.pth`): 23 blocks of width 64, ×4.
    pub fn bsrnet() -> Self {
        Self::new()
    }

    /// A small configuration for tests.
    pub fn tiny() -> Self {
        Self::new().with_nf(16).with_nb(1).with_gc(8)
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        if [self.in_nc, self.out_nc, self.nf, self.gc].contains(&0) {
            return Err(Error::InvalidArgument {
                what: "RRDBNet config".into(),
                reason: "channel counts must be positive".into(),
            });
        }
        self.param_count().check("RRDBNet config")
    }

    /// The parameters [`init`](Self::init) creates, saturating.
    fn param_count(&self) -> ParamCount {
        let conv3 = |cin: usize, cout: usize| ParamCount::layer(&[cout, cin, 3, 3], true);
        let (nf, gc) = (self.nf, self.gc);
        let grown = |k: usize| nf.saturating_add(gc.saturating_mul(k));
        let rdb = conv3(nf, gc)
            + conv3(grown(1), gc)
            + conv3(grown(2), gc)
            + conv3(grown(3), gc)
            + conv3(grown(4), nf);
        let trunk_convs = if self.sf == 4 { 4 } else { 3 };
        conv3(self.in_nc, nf)
            + rdb.times(3).times(self.nb)
            + conv3(nf, nf).times(trunk_convs)
            + conv3(nf, self.out_nc)
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> RrdbNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let (nf, gc) = (self.nf, self.gc);
        let rdb = || ResidualDenseBlock {
            conv1: conv3x3(nf, gc, device),
            conv2: conv3x3(nf + gc, gc, device),
            conv3: conv3x3(nf + 2 * gc, gc, device),
            conv4: conv3x3(nf + 3 * gc, gc, device),
            conv5: conv3x3(nf + 4 * gc, nf, device),
        };
        RrdbNet {
            conv_first: conv3x3(self.in_nc, nf, device),
            rrdb_trunk: (0..self.nb)
                .map(|_| Rrdb {
                    rdb1: rdb(),
                    rdb2: rdb(),
                    rdb3: rdb(),
                })
                .collect(),
            trunk_conv: conv3x3(nf, nf, device),
            upconv1: conv3x3(nf, nf, device),
            upconv2: (self.sf == 4).then(|| conv3x3(nf, nf, device)),
            hrconv: conv3x3(nf, nf, device),
            conv_last: conv3x3(nf, self.out_nc, device),
        }
    }
}

/// Residual dense block: five convs over the concatenation of all previous outputs.
#[derive(Module, Debug)]
pub struct ResidualDenseBlock {
    /// `nf → gc`.
    pub conv1: Conv2d,
    /// `nf + gc → gc`.
    pub conv2: Conv2d,
    /// `nf + 2gc → gc`.
    pub conv3: Conv2d,
    /// `nf + 3gc → gc`.
    pub conv4: Conv2d,
    /// `nf + 4gc → nf`.
    pub conv5: Conv2d,
}

impl ResidualDenseBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let lrelu = |t| leaky_relu(t, 0.2);
        let x1 = lrelu(self.conv1.forward(x.clone()));
        let x2 = lrelu(
            self.conv2
                .forward(Tensor::cat(vec![x.clone(), x1.clone()], 1)),
        );
        let x3 = lrelu(
            self.conv3
                .forward(Tensor::cat(vec![x.clone(), x1.clone(), x2.clone()], 1)),
        );
        let x4 = lrelu(self.conv4.forward(Tensor::cat(
            vec![x.clone(), x1.clone(), x2.clone(), x3.clone()],
            1,
        )));
        let x5 = self
            .conv5
            .forward(Tensor::cat(vec![x.clone(), x1, x2, x3, x4], 1));
        x5.mul_scalar(0.2) + x
    }
}

/// Residual-in-residual dense block (checkpoint names `RDB1..3`).
#[derive(Module, Debug)]
pub struct Rrdb {
    /// `RDB1`.
    pub rdb1: ResidualDenseBlock,
    /// `RDB2`.
    pub rdb2: ResidualDenseBlock,
    /// `RDB3`.
    pub rdb3: ResidualDenseBlock,
}

/// RRDBNet. Field names mirror the checkpoint keys (`RRDB_trunk`, `RDBn` and `HRconv` are
/// renamed by [`BSRNET_KEYS`]).
#[derive(Module, Debug)]
pub struct RrdbNet {
    /// `in_nc → nf`.
    pub conv_first: Conv2d,
    /// `RRDB_trunk`.
    pub rrdb_trunk: Vec<Rrdb>,
    /// Trunk closing conv.
    pub trunk_conv: Conv2d,
    /// First ×2 step.
    pub upconv1: Conv2d,
    /// Second ×2 step (sf = 4).
    pub upconv2: Option<Conv2d>,
    /// `HRconv`.
    pub hrconv: Conv2d,
    /// `nf → out_nc`.
    pub conv_last: Conv2d,
}

impl RrdbNet {
    /// The upscale factor.
    pub fn scale(&self) -> usize {
        if self.upconv2.is_some() { 4 } else { 2 }
    }

    /// # Shapes
    /// - `x`: `[B, in_nc, H, W]`, values in `[0, 1]`
    /// - returns `[B, out_nc, H·s, W·s]` (`s` = [`scale`](Self::scale)), unclamped
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let lrelu = |t| leaky_relu(t, 0.2);
        let fea = self.conv_first.forward(x);
        let trunk = self.rrdb_trunk.iter().fold(fea.clone(), |h, block| {
            let y = block
                .rdb3
                .forward(block.rdb2.forward(block.rdb1.forward(h.clone())));
            y.mul_scalar(0.2) + h
        });
        let fea = fea + self.trunk_conv.forward(trunk);
        let mut fea = lrelu(self.upconv1.forward(upsample_nearest2x(fea)));
        if let Some(up2) = &self.upconv2 {
            fea = lrelu(up2.forward(upsample_nearest2x(fea)));
        }
        self.conv_last.forward(lrelu(self.hrconv.forward(fea)))
    }
}

/// `BSRNet.pth` (and any RRDBNet state dict of this layout): flat keys; the capitalised
/// PyTorch attribute names become snake-case Rust fields.
pub const BSRNET_KEYS: KeyMap = KeyMap {
    name: "bsrnet",
    prefix: "",
    rules: &[
        diffbir_core::KeyRule {
            pattern: r"^RRDB_trunk\.",
            replacement: "rrdb_trunk.",
            why: "Rust field names are snake case",
            example: (
                "RRDB_trunk.0.RDB1.conv1.weight",
                "rrdb_trunk.0.RDB1.conv1.weight",
            ),
        },
        diffbir_core::KeyRule {
            pattern: r"\.RDB([123])\.",
            replacement: ".rdb$1.",
            why: "Rust field names are snake case",
            example: (
                "rrdb_trunk.0.RDB2.conv5.bias",
                "rrdb_trunk.0.rdb2.conv5.bias",
            ),
        },
        diffbir_core::KeyRule {
            pattern: r"^HRconv\.",
            replacement: "hrconv.",
            why: "Rust field names are snake case",
            example: ("HRconv.weight", "hrconv.weight"),
        },
    ],
    droppable: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn key_map_examples_hold() {
        BSRNET_KEYS.check_examples().unwrap();
        assert_eq!(
            BSRNET_KEYS
                .rename("RRDB_trunk.22.RDB3.conv4.weight")
                .unwrap(),
            "rrdb_trunk.22.rdb3.conv4.weight"
        );
    }

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        assert_eq!(
            RrdbNetConfig::bsrnet().init(&Device::flex()).num_params(),
            16_697_987
        );
    }

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        assert_eq!(RrdbNetConfig::bsrnet().param_count().0, 16_697_987);
        let device = Device::flex();
        for config in [
            RrdbNetConfig::tiny(),
            RrdbNetConfig::tiny().with_sf(2).with_nb(2),
        ] {
            let built = config.init(&device).num_params() as u128;
            assert_eq!(config.param_count().0, built, "{config:?}");
        }
        for config in [
            RrdbNetConfig::bsrnet().with_nb(usize::MAX),
            RrdbNetConfig::bsrnet().with_nf(1 << 40),
            RrdbNetConfig::bsrnet().with_gc(usize::MAX),
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn upscales_by_four_or_two() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 3, 5, 7], Distribution::Default, &device);
        let m = RrdbNetConfig::tiny().init(&device);
        assert_eq!(m.forward(x.clone()).dims(), [1, 3, 20, 28]);
        let m = RrdbNetConfig::tiny().with_sf(2).init(&device);
        assert_eq!(m.scale(), 2);
        assert_eq!(m.forward(x).dims(), [1, 3, 10, 14]);
    }
}
