//! The image tower of OpenAI's ResNet CLIP models (`clip/model.py`: `ModifiedResNet`,
//! `Bottleneck`, `AttentionPool2d`), as pyiqa's CLIP-IQA runs it
//! (`pyiqa/archs/clip_model.py`): a three-convolution stem with an average pool,
//! anti-aliased bottlenecks (an average pool before every strided step), and attention
//! pooling whose query is the mean of the feature map. With `pos_embedding=False`, pyiqa's
//! setting for `clipiqa`, no positional embedding is added, so any input size works.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AttentionModuleOptions, AvgPoolOptions};
use burn::tensor::{Device, Tensor};
use diffbir_core::kernels::{Conv2d, Linear, attention};
use serde::{Deserialize, Serialize};

/// The shape of a [`ModifiedResNet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifiedResNetConfig {
    /// Bottlenecks per stage (RN50: 3, 4, 6, 3).
    pub layers: [usize; 4],
    /// Channels after the stem (RN50: 64); the stages have 4, 8, 16 and 32 times as many.
    pub width: usize,
    /// Heads of the attention pool (`width · 32 / 64` in CLIP).
    pub heads: usize,
    /// Output features (RN50: 1024).
    pub output_dim: usize,
    /// Rows of the (unused) positional embedding: `(input_resolution / 32)² + 1`.
    pub positions: usize,
}

fn conv(cin: usize, cout: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
        .into()
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// `nn.AvgPool2d(k)`: kernel and stride `k`, floor mode.
fn avg_pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    let mut options = AvgPoolOptions::new([k, k]);
    options.stride = [k, k];
    avg_pool2d(x, options)
}

/// The shortcut of a bottleneck that changes the size or the width (`downsample`: an
/// average pool, then `0` the 1×1 convolution and `1` its batch norm).
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

/// An anti-aliased bottleneck: 1×1, 3×3, an average pool when strided, 1×1 to four times
/// the width, each with a batch norm; the shortcut added before the last ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1.
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// 3×3.
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm,
    /// 1×1 to `4·planes`.
    pub conv3: Conv2d,
    /// Its batch norm.
    pub bn3: BatchNorm,
    /// The shortcut's projection, when the size or width changes.
    pub downsample: Option<Downsample>,
    /// The average pool's size (1: none).
    #[module(skip)]
    pub stride: usize,
}

impl Bottleneck {
    fn new(inplanes: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out = planes * 4;
        Self {
            conv1: conv(inplanes, planes, 1, 1, device),
            bn1: bn(planes, device),
            conv2: conv(planes, planes, 3, 1, device),
            bn2: bn(planes, device),
            conv3: conv(planes, out, 1, 1, device),
            bn3: bn(out, device),
            downsample: (stride > 1 || inplanes != out).then(|| Downsample {
                conv: conv(inplanes, out, 1, 1, device),
                bn: bn(out, device),
            }),
            stride,
        }
    }

    /// # Shapes
    /// - `x`: `[B, inplanes, H, W]`; returns `[B, 4·planes, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let mut out = relu(self.bn2.forward(self.conv2.forward(out)));
        if self.stride > 1 {
            out = avg_pool(out, self.stride);
        }
        let out = self.bn3.forward(self.conv3.forward(out));
        let identity = match &self.downsample {
            Some(d) => {
                let x = if self.stride > 1 {
                    avg_pool(x, self.stride)
                } else {
                    x
                };
                d.bn.forward(d.conv.forward(x))
            }
            None => x,
        };
        relu(out + identity)
    }
}

/// `AttentionPool2d`: multi-head attention over the feature vectors and their mean, keeping
/// the mean's token.
#[derive(Module, Debug)]
pub struct AttentionPool {
    /// `positional_embedding`, loaded with the file but not added (pyiqa's `clipiqa`).
    pub positional_embedding: Param<Tensor<2>>,
    /// `q_proj`.
    pub q_proj: Linear,
    /// `k_proj`.
    pub k_proj: Linear,
    /// `v_proj`.
    pub v_proj: Linear,
    /// `c_proj`: the output projection.
    pub c_proj: Linear,
    /// Heads.
    #[module(skip)]
    pub heads: usize,
}

impl AttentionPool {
    /// The output at the mean token. Only that token's query is computed: the other tokens'
    /// outputs are discarded by the original, so the result is the same.
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; returns `[B, output_dim]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let tokens = x.reshape([b, c, h * w]).swap_dims(1, 2); // [B, HW, C]
        let mean = tokens.clone().mean_dim(1); // [B, 1, C]
        let tokens = Tensor::cat(vec![mean.clone(), tokens], 1); // [B, HW+1, C]
        let n = h * w + 1;
        let heads = self.heads;
        let d = c / heads;
        let q = self
            .q_proj
            .forward(mean)
            .reshape([b, 1, heads, d])
            .swap_dims(1, 2);
        let split = |t: Tensor<3>| t.reshape([b, n, heads, d]).swap_dims(1, 2);
        let k = split(self.k_proj.forward(tokens.clone()));
        let v = split(self.v_proj.forward(tokens));
        let options = AttentionModuleOptions {
            scale: Some((d as f64).powf(-0.5)),
            softcap: None,
            is_causal: false,
        };
        let out = attention(q, k, v, None, None, options).reshape([b, 1, c]);
        let out = self.c_proj.forward(out);
        let [_, _, dim] = out.dims();
        out.reshape([b, dim])
    }
}

/// `ModifiedResNet`.
#[derive(Module, Debug)]
pub struct ModifiedResNet {
    /// Stem: 3×3 stride 2 to `width/2`.
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// 3×3 to `width/2`.
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm,
    /// 3×3 to `width`.
    pub conv3: Conv2d,
    /// Its batch norm.
    pub bn3: BatchNorm,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Bottleneck>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Bottleneck>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Bottleneck>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<Bottleneck>,
    /// The attention pool.
    pub attnpool: AttentionPool,
}

impl ModifiedResNetConfig {
    /// Builds the tower with random weights.
    pub fn init(&self, device: &Device) -> ModifiedResNet {
        let w = self.width;
        let mut inplanes = w;
        let mut stage = |planes: usize, blocks: usize, stride: usize| -> Vec<Bottleneck> {
            (0..blocks)
                .map(|i| {
                    let block =
                        Bottleneck::new(inplanes, planes, if i == 0 { stride } else { 1 }, device);
                    inplanes = planes * 4;
                    block
                })
                .collect()
        };
        let layer1 = stage(w, self.layers[0], 1);
        let layer2 = stage(w * 2, self.layers[1], 2);
        let layer3 = stage(w * 4, self.layers[2], 2);
        let layer4 = stage(w * 8, self.layers[3], 2);
        let embed = w * 32;
        let linear = |i: usize, o: usize| -> Linear { LinearConfig::new(i, o).init(device).into() };
        ModifiedResNet {
            conv1: conv(3, w / 2, 3, 2, device),
            bn1: bn(w / 2, device),
            conv2: conv(w / 2, w / 2, 3, 1, device),
            bn2: bn(w / 2, device),
            conv3: conv(w / 2, w, 3, 1, device),
            bn3: bn(w, device),
            layer1,
            layer2,
            layer3,
            layer4,
            attnpool: AttentionPool {
                positional_embedding: Initializer::Normal {
                    mean: 0.0,
                    std: (embed as f64).powf(-0.5),
                }
                .init([self.positions, embed], device),
                q_proj: linear(embed, embed),
                k_proj: linear(embed, embed),
                v_proj: linear(embed, embed),
                c_proj: linear(embed, self.output_dim),
                heads: self.heads,
            },
        }
    }
}

impl ModifiedResNet {
    /// The image features.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` normalised with CLIP's mean and std, `H`, `W` ≥ 32; returns
    ///   `[B, output_dim]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        let x = relu(self.bn3.forward(self.conv3.forward(x)));
        let mut x = avg_pool(x, 2);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        self.attnpool.forward(x)
    }
}
