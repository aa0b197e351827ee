//! SCUNet, used by DiffBIR v2 for blind denoising (`scunet_color_real_psnr.pth`).
//!
//! Zhang et al., "Practical Blind Denoising via Swin-Conv-UNet and Data Synthesis" (MIR 2023).
//! Port of `XPixelGroup/DiffBIR@3f8b530:diffbir/model/scunet.py`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::module::attention;
use burn::tensor::ops::{AttentionModuleOptions, PadMode};
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};
use diffbir_core::kernels::{Conv2d, Linear};
use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, KeyMap, Result};

use crate::ops::{self, conv};

/// Configuration of [`ScuNet`]; names and defaults are the original constructor's.
#[derive(Config, Debug)]
pub struct ScuNetConfig {
    /// Input and output channels.
    #[config(default = 3)]
    pub in_nc: usize,
    /// Conv-transformer blocks per stage: down1, down2, down3, body, up3, up2, up1.
    #[config(default = "vec![2, 2, 2, 2, 2, 2, 2]")]
    pub config: Vec<usize>,
    /// Width of the first stage.
    #[config(default = 64)]
    pub dim: usize,
    /// Training resolution: a stage whose resolution is at most the window size uses no
    /// shifted windows.
    #[config(default = 256)]
    pub input_resolution: usize,
    /// Attention head width (hard-coded to 32 by the original constructor).
    #[config(default = 32)]
    pub head_dim: usize,
    /// Attention window side (hard-coded to 8 by the original).
    #[config(default = 8)]
    pub window_size: usize,
}

impl ScuNetConfig {
    /// SCUNet-PSNR (`configs/inference/scunet.yaml`, `scunet_color_real_psnr.pth`): four
    /// blocks per stage, width 64.
    pub fn scunet_psnr() -> Self {
        Self::new().with_config(vec![4; 7])
    }

    /// A small configuration for tests.
    pub fn tiny() -> Self {
        Self::new()
            .with_config(vec![2, 1, 1, 1, 1, 1, 2])
            .with_dim(8)
            .with_head_dim(4)
    }

    /// Checks the configuration; [`init`](Self::init) requires it to hold.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "SCUNet config".into(),
                reason,
            })
        };
        if self.config.len() != 7 {
            return bad(format!("config needs 7 stage sizes, got {:?}", self.config));
        }
        if self.dim < 2
            || !self.dim.is_multiple_of(2)
            || self.head_dim == 0
            || !(self.dim / 2).is_multiple_of(self.head_dim)
        {
            return bad(format!(
                "dim ({}) must be even and dim/2 a multiple of head_dim ({})",
                self.dim, self.head_dim
            ));
        }
        if self.window_size < 2 || 64 % self.window_size != 0 {
            return bad(format!("window_size {} must divide 64", self.window_size));
        }
        self.param_count().check("SCUNet config")
    }

    /// The parameters [`init`](Self::init) creates, saturating.
    fn param_count(&self) -> ParamCount {
        let d = self.dim;
        let span = self.window_size.saturating_mul(2).saturating_sub(1);
        let block = |half: usize| {
            let wide = half.saturating_mul(2);
            ParamCount::of(&[4, half])
                + ParamCount::layer(&[half.saturating_mul(3), half], true)
                + ParamCount::of(&[half / self.head_dim.max(1), span, span])
                + ParamCount::layer(&[half, half], true)
                + ParamCount::layer(&[half.saturating_mul(4), half], true)
                + ParamCount::layer(&[half, half.saturating_mul(4)], true)
                + ParamCount::layer(&[wide, wide, 1, 1], true).times(2)
                + ParamCount::layer(&[half, half, 3, 3], false).times(2)
        };
        let times = |k: usize| d.saturating_mul(k);
        let halves = [d / 2, d, times(2), times(4), times(2), d, d / 2];
        let blocks: ParamCount = self
            .config
            .iter()
            .zip(halves)
            .map(|(&n, half)| block(half).times(n))
            .sum();
        // Down and up: 2×2 (transposed) convs without bias between d, 2d, 4d and 8d.
        let resample = ParamCount::of(&[d, times(2), 2, 2])
            + ParamCount::of(&[times(2), times(4), 2, 2])
            + ParamCount::of(&[times(4), times(8), 2, 2]);
        ParamCount::layer(&[d, self.in_nc, 3, 3], false).times(2) + blocks + resample.times(2)
    }

    /// Builds the network with random weights.
    ///
    /// # Panics
    ///
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> ScuNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let d = self.dim;
        let ir = self.input_resolution;
        let blocks = |n: usize, half: usize, resolution: usize| -> Vec<ScuLayer> {
            (0..n)
                .map(|i| {
                    ScuLayer::Block(self.block(
                        half,
                        i % 2 == 1 && resolution > self.window_size,
                        device,
                    ))
                })
                .collect()
        };
        let down =
            |cin: usize, cout: usize| ScuLayer::Down(conv(cin, cout, 2, 2, 0, false, device));
        let up = |cin: usize, cout: usize| {
            ScuLayer::Up(
                ConvTranspose2dConfig::new([cin, cout], [2, 2])
                    .with_stride([2, 2])
                    .with_bias(false)
                    .init(device),
            )
        };
        let with_down = |mut v: Vec<ScuLayer>, layer| {
            v.push(layer);
            v
        };
        let with_up = |layer, v: Vec<ScuLayer>| std::iter::once(layer).chain(v).collect::<Vec<_>>();
        let c = &self.config;
        ScuNet {
            m_head: vec![conv(self.in_nc, d, 3, 1, 1, false, device)],
            m_down1: with_down(blocks(c[0], d / 2, ir), down(d, 2 * d)),
            m_down2: with_down(blocks(c[1], d, ir / 2), down(2 * d, 4 * d)),
            m_down3: with_down(blocks(c[2], 2 * d, ir / 4), down(4 * d, 8 * d)),
            m_body: blocks(c[3], 4 * d, ir / 8),
            m_up3: with_up(up(8 * d, 4 * d), blocks(c[4], 2 * d, ir / 4)),
            m_up2: with_up(up(4 * d, 2 * d), blocks(c[5], d, ir / 2)),
            m_up1: with_up(up(2 * d, d), blocks(c[6], d / 2, ir)),
            m_tail: vec![conv(d, self.in_nc, 3, 1, 1, false, device)],
        }
    }

    /// A conv-transformer block with `half` conv and `half` transformer channels.
    fn block(&self, half: usize, shifted: bool, device: &Device) -> ConvTransBlock {
        let heads = half / self.head_dim;
        let span = 2 * self.window_size - 1;
        ConvTransBlock {
            trans_block: TransBlock {
                ln1: LayerNormConfig::new(half).init(device),
                msa: Wmsa {
                    embedding_layer: LinearConfig::new(half, 3 * half).init(device).into(),
                    relative_position_params: Param::from_tensor(Tensor::random(
                        [heads, span, span],
                        Distribution::Normal(0.0, 0.02),
                        device,
                    )),
                    linear: LinearConfig::new(half, half).init(device).into(),
                    head_dim: self.head_dim,
                    window_size: self.window_size,
                    shifted,
                },
                ln2: LayerNormConfig::new(half).init(device),
                mlp: vec![
                    Some(LinearConfig::new(half, 4 * half).init(device).into()),
                    None,
                    Some(LinearConfig::new(4 * half, half).init(device).into()),
                ],
            },
            conv1_1: conv(2 * half, 2 * half, 1, 1, 0, true, device),
            conv1_2: conv(2 * half, 2 * half, 1, 1, 0, true, device),
            conv_block: vec![
                Some(conv(half, half, 3, 1, 1, false, device)),
                None,
                Some(conv(half, half, 3, 1, 1, false, device)),
            ],
            conv_dim: half,
        }
    }
}

/// Window multi-head self-attention (`W`, or shifted `SW`) with relative position bias.
#[derive(Module, Debug)]
pub struct Wmsa {
    /// `C → 3C`, output grouped as `3·heads` groups of `head_dim` (q, then k, then v).
    pub embedding_layer: Linear,
    /// `[heads, 2ws − 1, 2ws − 1]`.
    pub relative_position_params: Param<Tensor<3>>,
    /// Output projection.
    pub linear: Linear,
    head_dim: usize,
    window_size: usize,
    shifted: bool,
}

impl Wmsa {
    /// # Shapes
    /// - `x`: `[B, H, W, C]` with `H`, `W` multiples of the window; returns the same
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let ws = self.window_size;
        let half = (ws / 2) as i64;
        let x = if self.shifted {
            x.roll(&[-half, -half], &[1, 2])
        } else {
            x
        };
        let windows = ops::window_partition(x, ws);
        let [bn, n, _] = windows.dims();
        let heads = c / self.head_dim;
        let qkv = self
            .embedding_layer
            .forward(windows)
            .reshape([bn, n, 3, heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([bn, heads, n, self.head_dim])
        };
        let device = qkv.device();
        let span = 2 * ws - 1;
        let bias = self
            .relative_position_params
            .val()
            .reshape([heads, span * span])
            .select(1, ops::relative_position_index(ws, &device))
            .reshape([1, heads, n, n])
            .expand([bn, heads, n, n]);
        let mask = self.shifted.then(|| {
            let nw = (h / ws) * (w / ws);
            sw_mask(h / ws, w / ws, ws, &device)
                .reshape([1, nw, 1, n, n])
                .expand([b, nw, heads, n, n])
                .reshape([bn, heads, n, n])
        });
        let options = AttentionModuleOptions {
            scale: Some((self.head_dim as f64).powf(-0.5)),
            softcap: None,
            is_causal: false,
        };
        let out = attention(part(0), part(1), part(2), mask, Some(bias), options);
        let out = self.linear.forward(out.swap_dims(1, 2).reshape([bn, n, c]));
        let out = ops::window_reverse(out, ws, h, w);
        if self.shifted {
            out.roll(&[half, half], &[1, 2])
        } else {
            out
        }
    }
}

/// SCUNet's shifted-window mask (`true` = excluded): in the last window row, queries and keys
/// on different sides of row `ws/2` are separated; likewise for columns in the last window
/// column.
///
/// # Shapes
/// - returns `[nH·nW, ws², ws²]`
fn sw_mask(n_rows: usize, n_cols: usize, ws: usize, device: &Device) -> Tensor<3, Bool> {
    let s = ws / 2;
    let n = ws * ws;
    let mut mask = Vec::with_capacity(n_rows * n_cols * n * n);
    for w1 in 0..n_rows {
        for w2 in 0..n_cols {
            for p in 0..n {
                for q in 0..n {
                    let (p1, p2, p3, p4) = (p / ws, p % ws, q / ws, q % ws);
                    let rows = w1 == n_rows - 1 && ((p1 < s) != (p3 < s));
                    let cols = w2 == n_cols - 1 && ((p2 < s) != (p4 < s));
                    mask.push(rows || cols);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [n_rows * n_cols, n, n]), device)
}

/// The transformer half of a [`ConvTransBlock`].
#[derive(Module, Debug)]
pub struct TransBlock {
    /// Pre-attention norm.
    pub ln1: LayerNorm,
    /// Window attention.
    pub msa: Wmsa,
    /// Pre-MLP norm.
    pub ln2: LayerNorm,
    /// `Linear(C, 4C)`, GELU, `Linear(4C, C)` (indices 0 and 2).
    pub mlp: Vec<Option<Linear>>,
}

impl TransBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = x.clone() + self.msa.forward(self.ln1.forward(x));
        let mut linears = self.mlp.iter().flatten();
        let (fc1, fc2) = (
            linears.next().expect("mlp.0"),
            linears.next().expect("mlp.2"),
        );
        x.clone() + fc2.forward(gelu(fc1.forward(self.ln2.forward(x))))
    }
}

/// Swin-conv block: a 1×1 conv splits the channels between a residual conv branch and a
/// transformer branch; a second 1×1 conv merges them, with a skip connection.
#[derive(Module, Debug)]
pub struct ConvTransBlock {
    /// Transformer branch.
    pub trans_block: TransBlock,
    /// Split conv.
    pub conv1_1: Conv2d,
    /// Merge conv.
    pub conv1_2: Conv2d,
    /// `Conv3×3`, ReLU, `Conv3×3` (indices 0 and 2), no bias.
    pub conv_block: Vec<Option<Conv2d>>,
    conv_dim: usize,
}

impl ConvTransBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let cd = self.conv_dim;
        let y = self.conv1_1.forward(x.clone());
        let conv_x = y.clone().slice([0..b, 0..cd, 0..h, 0..w]);
        let trans_x = y.slice([0..b, cd..c, 0..h, 0..w]);
        let mut convs = self.conv_block.iter().flatten();
        let (c1, c2) = (
            convs.next().expect("conv_block.0"),
            convs.next().expect("conv_block.2"),
        );
        let conv_x = c2.forward(relu(c1.forward(conv_x.clone()))) + conv_x;
        let trans_x = self
            .trans_block
            .forward(trans_x.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2]);
        x + self.conv1_2.forward(Tensor::cat(vec![conv_x, trans_x], 1))
    }
}

/// One entry of an SCUNet stage (`nn.Sequential` entries keep their indices in the keys).
#[derive(Module, Debug)]
pub enum ScuLayer {
    /// A conv-transformer block.
    Block(ConvTransBlock),
    /// A stride-2 downsampling conv.
    Down(Conv2d),
    /// A stride-2 transposed conv.
    Up(ConvTranspose2d),
}

impl ScuLayer {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Block(block) => block.forward(x),
            Self::Down(conv) => conv.forward(x),
            Self::Up(conv) => conv.forward(x),
        }
    }
}

/// SCUNet. Field names mirror the checkpoint keys.
#[derive(Module, Debug)]
pub struct ScuNet {
    /// Head conv (`m_head.0`).
    pub m_head: Vec<Conv2d>,
    /// Encoder stage 1 (blocks, then the downsampling conv).
    pub m_down1: Vec<ScuLayer>,
    /// Encoder stage 2.
    pub m_down2: Vec<ScuLayer>,
    /// Encoder stage 3.
    pub m_down3: Vec<ScuLayer>,
    /// Bottleneck blocks.
    pub m_body: Vec<ScuLayer>,
    /// Decoder stage 3 (transposed conv, then blocks).
    pub m_up3: Vec<ScuLayer>,
    /// Decoder stage 2.
    pub m_up2: Vec<ScuLayer>,
    /// Decoder stage 1.
    pub m_up1: Vec<ScuLayer>,
    /// Tail conv (`m_tail.0`).
    pub m_tail: Vec<Conv2d>,
}

fn run(stage: &[ScuLayer], x: Tensor<4>) -> Tensor<4> {
    stage.iter().fold(x, |x, layer| layer.forward(x))
}

impl ScuNet {
    /// Replicate-pads bottom/right to a multiple of 64, runs the U-Net, crops back.
    ///
    /// # Shapes
    /// - `x`: `[B, in_nc, H, W]`, values in `[0, 1]`; returns `[B, in_nc, H, W]`, unclamped
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let (ph, pw) = (h.div_ceil(64) * 64 - h, w.div_ceil(64) * 64 - w);
        let x0 = if ph > 0 || pw > 0 {
            x.pad((0, pw, 0, ph), PadMode::Edge)
        } else {
            x
        };
        let x1 = self.m_head[0].forward(x0);
        let x2 = run(&self.m_down1, x1.clone());
        let x3 = run(&self.m_down2, x2.clone());
        let x4 = run(&self.m_down3, x3.clone());
        let x = run(&self.m_body, x4.clone());
        let x = run(&self.m_up3, x + x4);
        let x = run(&self.m_up2, x + x3);
        let x = run(&self.m_up1, x + x2);
        let x = self.m_tail[0].forward(x + x1);
        let [b, c, _, _] = x.dims();
        x.slice([0..b, 0..c, 0..h, 0..w])
    }
}

/// `scunet_color_real_psnr.pth`: a flat state dict whose keys the module mirrors.
pub const SCUNET_KEYS: KeyMap = KeyMap {
    name: "scunet",
    prefix: "",
    rules: &[],
    droppable: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_size_has_the_reference_parameter_count() {
        SCUNET_KEYS.check_examples().unwrap();
        assert_eq!(
            ScuNetConfig::scunet_psnr()
                .init(&Device::flex())
                .num_params(),
            17_946_072
        );
    }

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        assert_eq!(ScuNetConfig::scunet_psnr().param_count().0, 17_946_072);
        let built = ScuNetConfig::tiny().init(&Device::flex()).num_params() as u128;
        assert_eq!(ScuNetConfig::tiny().param_count().0, built);
        for config in [
            ScuNetConfig::scunet_psnr().with_dim(1 << 40),
            ScuNetConfig::scunet_psnr().with_config(vec![usize::MAX; 7]),
        ] {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn keeps_the_size_of_unaligned_inputs() {
        let device = Device::flex();
        let m = ScuNetConfig::tiny().init(&device);
        let x = Tensor::<4>::random([1, 3, 50, 44], Distribution::Default, &device);
        assert_eq!(m.forward(x).dims(), [1, 3, 50, 44]);
    }

    #[test]
    fn the_shift_mask_only_touches_the_last_window_row_and_column() {
        let m: Vec<bool> = sw_mask(2, 2, 8, &Device::flex())
            .into_data()
            .try_to_vec()
            .unwrap();
        let n = 64 * 64;
        assert!(m[..n].iter().all(|v| !v));
        assert!(m[3 * n..].iter().any(|v| *v));
    }
}
