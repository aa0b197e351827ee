//! Tiled VAE encoding and decoding for large images (`ControlLDM.vae_encode`/`vae_decode`,
//! `diffbir/model/cldm.py:L92-L141`), after the Tiled-VAE algorithm DiffBIR uses
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/utils/tilevae/tilevae.py`).
//!
//! The input is cut into tiles with a margin (`pad`: 32 pixels for the encoder, 11 latents for
//! the decoder). Every tile runs through the network, but at each GroupNorm the statistics of
//! all tiles are merged (pixel-weighted means of the per-tile means and of the per-tile
//! variances) and applied to every tile, so the tiles are normalised alike. The attention of
//! the middle block sees one tile only. Each tile contributes its valid region (without the
//! margin) to the result; nothing is blended. The result is close to, but not equal to, the
//! untiled one. Tiles advance in lockstep from one GroupNorm to the next; between operations
//! they can be parked on another device (the host, when computing on a GPU) so that the
//! compute device holds about one tile. The parked tiles together hold about one full-size
//! activation (more, counting the margins), so on the CPU backend this tiling bounds nothing:
//! it exists for GPU memory.
//!
//! [`encode_blended`](AutoencoderKl::encode_blended) and
//! [`decode_blended`](AutoencoderKl::decode_blended) are the v2 release's tiling instead
//! (`XPixelGroup/DiffBIR@9fb2107`, `vae_encode_tiled`/`vae_decode_tiled`): every tile runs the
//! whole network on its own and the overlapping outputs are blended with Gaussian weights.
//! Tiles are normalised independently, so the result differs more from the untiled one, but
//! memory is bounded on every backend: one tile's activations plus the output.
//!
//! As in the reference, attention layers inside the resolution levels (`attn_resolutions`,
//! empty for SD) are not part of the tiled network.

use burn::nn::GroupNorm;
use burn::tensor::ops::PadMode;
use burn::tensor::{DType, Device, Tensor, TensorData};
use diffbir_core::kernels::silu;

use crate::vae::{AttnBlock, AutoencoderKl, Decoder, DiagonalGaussian, Encoder, Mid, ResnetBlock};
use diffbir_core::resize::upsample_nearest2x;
use diffbir_core::tiling::{TileScale, TileSpec, tiled_apply};
use diffbir_core::{Error, Result};

/// Margin of encoder tiles, in pixels.
pub const ENCODER_PAD: usize = 32;
/// Margin of decoder tiles, in latent pixels.
pub const DECODER_PAD: usize = 11;

/// One tile: the box read from the input (with its margin) and the box written to the output,
/// both `[x1, x2, y1, y2]`, in input and output units respectively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeTile {
    /// Input region, margin included.
    pub input: [usize; 4],
    /// Output region it fills.
    pub output: [usize; 4],
}

/// Rounds a tile side up to a multiple of 32 (else 16, 8, 4, 2) when that stays within
/// `upper`, as the reference does.
fn best_tile_size(lower: usize, upper: usize) -> usize {
    let mut divider = 32;
    while divider >= 2 {
        let rem = lower % divider;
        if rem == 0 {
            return lower;
        }
        let candidate = lower - rem + divider;
        if candidate <= upper {
            return candidate;
        }
        divider /= 2;
    }
    lower
}

/// The tiles of an `h × w` input (`split_tiles` of the reference). `scale` converts input to
/// output units: `×8` for the decoder, `÷8` for the encoder.
pub fn split_tiles(
    h: usize,
    w: usize,
    tile_size: usize,
    pad: usize,
    decoder: bool,
) -> Vec<VaeTile> {
    let span = |n: usize| n.saturating_sub(2 * pad);
    let rows = span(h).div_ceil(tile_size).max(1);
    let cols = span(w).div_ceil(tile_size).max(1);
    let tile_h = best_tile_size(span(h).div_ceil(rows), tile_size);
    let tile_w = best_tile_size(span(w).div_ceil(cols), tile_size);
    let to_out = |v: usize| if decoder { v * 8 } else { v / 8 };
    let mut tiles = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let core = [
                pad + j * tile_w,
                (pad + (j + 1) * tile_w).min(w),
                pad + i * tile_h,
                (pad + (i + 1) * tile_h).min(h),
            ];
            let output = [
                if core[0] > pad { core[0] } else { 0 },
                if core[1] < w.saturating_sub(pad) {
                    core[1]
                } else {
                    w
                },
                if core[2] > pad { core[2] } else { 0 },
                if core[3] < h.saturating_sub(pad) {
                    core[3]
                } else {
                    h
                },
            ]
            .map(to_out);
            let input = [
                core[0].saturating_sub(pad),
                (core[1] + pad).min(w),
                core[2].saturating_sub(pad),
                (core[3] + pad).min(h),
            ];
            tiles.push(VaeTile { input, output });
        }
    }
    tiles
}

/// Where tiles compute and where they wait: between operations every tile is parked on
/// `park` (host memory when computing on a GPU, as the reference parks tiles on the CPU), and
/// only the tile being processed is on `compute`.
struct Tiler {
    compute: Device,
    park: Device,
}

impl Tiler {
    fn map(&self, tiles: Vec<Tensor<4>>, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Vec<Tensor<4>> {
        tiles
            .into_iter()
            .map(|t| f(t.to_device(&self.compute)).to_device(&self.park))
            .collect()
    }

    fn zip(
        &self,
        a: Vec<Tensor<4>>,
        b: Vec<Tensor<4>>,
        f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
    ) -> Vec<Tensor<4>> {
        a.into_iter()
            .zip(b)
            .map(|(a, b)| {
                f(a.to_device(&self.compute), b.to_device(&self.compute)).to_device(&self.park)
            })
            .collect()
    }

    /// GroupNorm over all tiles with statistics merged across them.
    ///
    /// The statistics and the normalisation are computed in f32 whatever the tiles' precision
    /// (the reference falls back to f32 when an f16 variance overflows, and merges and
    /// normalises with f32 statistics); the result is in the tiles' precision.
    fn group_norm(&self, norm: &GroupNorm, tiles: &[Tensor<4>]) -> Vec<Tensor<4>> {
        const GROUPS: usize = 32;
        const EPS: f64 = 1e-6;
        let stats: Vec<(Tensor<2>, Tensor<2>, usize)> = tiles
            .iter()
            .map(|t| {
                let [b, c, h, w] = t.dims();
                let t = t.clone().to_device(&self.compute).cast(DType::F32);
                let (var, mean) = t
                    .reshape([b * GROUPS, (c / GROUPS) * h * w])
                    .var_mean_bias(1);
                (var, mean, h * w)
            })
            .collect();
        // Pixel weights normalised as the reference does (by the largest tile, then the sum).
        let max = stats.iter().map(|s| s.2).max().unwrap_or(1) as f32;
        let scaled: Vec<f32> = stats.iter().map(|s| s.2 as f32 / max).collect();
        let total: f32 = scaled.iter().sum();
        let mut merged: Option<(Tensor<2>, Tensor<2>)> = None;
        for ((v, m, _), weight) in stats.into_iter().zip(scaled) {
            let p = f64::from(weight / total);
            let (v, m) = (v.mul_scalar(p), m.mul_scalar(p));
            merged = Some(match merged {
                Some((av, am)) => (av + v, am + m),
                None => (v, m),
            });
        }
        let (var, mean) = merged.expect("at least one tile");
        let inv_std = var.add_scalar(EPS).sqrt().recip();
        self.map(tiles.to_vec(), |t| {
            let [b, c, h, w] = t.dims();
            let dtype = t.dtype();
            let normed = (t
                .cast(DType::F32)
                .reshape([b * GROUPS, (c / GROUPS) * h * w])
                - mean.clone())
                * inv_std.clone();
            let mut out = normed.reshape([b, c, h, w]).cast(dtype);
            if let Some(gamma) = &norm.gamma {
                out = out * gamma.val().reshape([1, c, 1, 1]);
            }
            if let Some(beta) = &norm.beta {
                out = out + beta.val().reshape([1, c, 1, 1]);
            }
            out
        })
    }

    fn resnet(&self, block: &ResnetBlock, tiles: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let residual = match &block.nin_shortcut {
            Some(conv) => self.map(tiles.clone(), |t| conv.forward(t)),
            None => tiles.clone(),
        };
        let h = self.map(self.group_norm(&block.norm1, &tiles), |t| {
            block.conv1.forward(silu(t))
        });
        let h = self.map(self.group_norm(&block.norm2, &h), |t| {
            block.conv2.forward(silu(t))
        });
        self.zip(h, residual, |h, r| r + h)
    }

    fn attn(&self, attn: &AttnBlock, tiles: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let normed = self.group_norm(&attn.norm, &tiles);
        self.zip(tiles, normed, |x, n| x + attn.attend(n))
    }

    fn mid(&self, mid: &Mid, tiles: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let tiles = self.resnet(&mid.block_1, tiles);
        let tiles = self.attn(&mid.attn_1, tiles);
        self.resnet(&mid.block_2, tiles)
    }

    fn encoder(&self, encoder: &Encoder, tiles: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let mut tiles = self.map(tiles, |t| encoder.conv_in.forward(t));
        for level in &encoder.down {
            for block in &level.block {
                tiles = self.resnet(block, tiles);
            }
            if let Some(down) = &level.downsample {
                tiles = self.map(tiles, |t| {
                    down.conv
                        .forward(t.pad((0, 1, 0, 1), PadMode::Constant(0.0)))
                });
            }
        }
        let tiles = self.mid(&encoder.mid, tiles);
        self.map(self.group_norm(&encoder.norm_out, &tiles), |t| {
            encoder.conv_out.forward(silu(t))
        })
    }

    fn decoder(&self, decoder: &Decoder, tiles: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let tiles = self.map(tiles, |t| decoder.conv_in.forward(t));
        let mut tiles = self.mid(&decoder.mid, tiles);
        for level in decoder.up.iter().rev() {
            for block in &level.block {
                tiles = self.resnet(block, tiles);
            }
            if let Some(up) = &level.upsample {
                tiles = self.map(tiles, |t| up.conv.forward(upsample_nearest2x(t)));
            }
        }
        self.map(self.group_norm(&decoder.norm_out, &tiles), |t| {
            decoder.conv_out.forward(silu(t))
        })
    }
}

/// Runs `net` tile by tile over `x` and assembles the valid regions.
fn run_tiled(
    x: Tensor<4>,
    tile_size: usize,
    pad: usize,
    decoder: bool,
    park: Option<&Device>,
    net: impl Fn(&Tiler, Vec<Tensor<4>>) -> Vec<Tensor<4>>,
) -> Tensor<4> {
    let compute = x.device();
    let tiler = Tiler {
        park: park.cloned().unwrap_or_else(|| compute.clone()),
        compute,
    };
    let [b, _, h, w] = x.dims();
    let boxes = split_tiles(h, w, tile_size, pad, decoder);
    let tiles: Vec<Tensor<4>> = boxes
        .iter()
        .map(|t| {
            let [x1, x2, y1, y2] = t.input;
            let [_, c, _, _] = x.dims();
            x.clone()
                .slice([0..b, 0..c, y1..y2, x1..x2])
                .to_device(&tiler.park)
        })
        .collect();
    let outputs = net(&tiler, tiles);
    let to_out = |v: usize| if decoder { v * 8 } else { v / 8 };
    let [_, c, _, _] = outputs[0].dims();
    let shape = [b, c, to_out(h), to_out(w)];
    let mut result = Tensor::<4>::zeros(shape, (&x.device(), outputs[0].dtype()));
    for (tile, out) in boxes.iter().zip(outputs) {
        let padded = tile.input.map(to_out);
        let [ox1, ox2, oy1, oy2] = tile.output;
        // The tile's output covers `padded`; keep the part inside the output box.
        let (dy, dx) = (oy1 - padded[2], ox1 - padded[0]);
        let valid = out.to_device(&tiler.compute).slice([
            0..b,
            0..c,
            dy..dy + (oy2 - oy1),
            dx..dx + (ox2 - ox1),
        ]);
        result = result.slice_assign([0..b, 0..c, oy1..oy2, ox1..ox2], valid);
    }
    result
}

impl AutoencoderKl {
    /// The posterior of an image, encoded in tiles of `tile_size` pixels (a multiple of 8).
    /// Small images (at most `tile_size + 64` on the longer side) are encoded untiled, as in
    /// the reference. With `park`, tiles wait there between operations (pass the CPU device
    /// when computing on a GPU to bound GPU memory to about one tile).
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[-1, 1]`, `H` and `W` multiples of 8
    pub fn encode_tiled(
        &self,
        x: Tensor<4>,
        tile_size: usize,
        park: Option<&Device>,
    ) -> DiagonalGaussian {
        let [_, _, h, w] = x.dims();
        let moments = if h.max(w) <= 2 * ENCODER_PAD + tile_size {
            self.encoder.forward(x)
        } else {
            run_tiled(x, tile_size, ENCODER_PAD, false, park, |tiler, t| {
                tiler.encoder(&self.encoder, t)
            })
        };
        DiagonalGaussian::from_moments(self.quant_conv.forward(moments))
    }

    /// Decodes an (unscaled) latent in tiles of `tile_size` latent pixels. Small latents (at
    /// most `tile_size + 22` on the longer side) are decoded untiled, as in the reference.
    /// `park` as for [`encode_tiled`](Self::encode_tiled).
    ///
    /// # Shapes
    /// - `z`: `[B, embed_dim, h, w]`; returns `[B, 3, 8h, 8w]`
    pub fn decode_tiled(&self, z: Tensor<4>, tile_size: usize, park: Option<&Device>) -> Tensor<4> {
        let z = self.post_quant_conv.forward(z);
        let [_, _, h, w] = z.dims();
        if h.max(w) <= 2 * DECODER_PAD + tile_size {
            self.decoder.forward(z)
        } else {
            run_tiled(z, tile_size, DECODER_PAD, true, park, |tiler, t| {
                tiler.decoder(&self.decoder, t)
            })
        }
    }
}

impl AutoencoderKl {
    /// The posterior of an image, encoded in independent `tile × tile` pixel tiles `stride`
    /// pixels apart whose moments are blended with Gaussian weights (v2's tiled encoding;
    /// see the [module documentation](self)). Images smaller than a tile are encoded whole.
    ///
    /// Fails unless `tile` and `stride` are positive multiples of 8.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, H, W]` in `[-1, 1]`, `H` and `W` multiples of 8
    pub fn encode_blended(
        &self,
        x: Tensor<4>,
        tile: usize,
        stride: usize,
    ) -> Result<DiagonalGaussian> {
        check_blend("encoder", tile, stride, 8)?;
        let [_, _, h, w] = x.dims();
        let moments = |x: Tensor<4>| self.quant_conv.forward(self.encoder.forward(x));
        let moments = if h < tile || w < tile {
            moments(x)
        } else {
            let spec = TileSpec {
                size: tile,
                stride,
                scale: TileScale::Down(8),
            };
            tiled_apply(x, spec, |t, _| moments(t))?
        };
        Ok(DiagonalGaussian::from_moments(moments))
    }

    /// Decodes an (unscaled) latent in independent `tile × tile` latent tiles `stride`
    /// latents apart, blending the images with Gaussian weights (v2's tiled decoding; see the
    /// [module documentation](self)). Latents smaller than a tile are decoded whole.
    ///
    /// Fails unless `tile` and `stride` are positive.
    ///
    /// # Shapes
    /// - `z`: `[B, embed_dim, h, w]`; returns `[B, 3, 8h, 8w]`
    pub fn decode_blended(&self, z: Tensor<4>, tile: usize, stride: usize) -> Result<Tensor<4>> {
        check_blend("decoder", tile, stride, 1)?;
        let [_, _, h, w] = z.dims();
        if h < tile || w < tile {
            return Ok(self.decode(z));
        }
        let spec = TileSpec {
            size: tile,
            stride,
            scale: TileScale::Up(8),
        };
        tiled_apply(z, spec, |t, _| self.decode(t))
    }
}

fn check_blend(what: &str, tile: usize, stride: usize, multiple: usize) -> Result<()> {
    if tile == 0
        || stride == 0
        || !tile.is_multiple_of(multiple)
        || !stride.is_multiple_of(multiple)
    {
        return Err(Error::InvalidArgument {
            what: format!("blended VAE {what} tiles"),
            reason: format!(
                "tile {tile} and stride {stride} must be positive multiples of {multiple}"
            ),
        });
    }
    Ok(())
}

/// The tile boxes as a `[N, 4]` table (for reports and tests).
pub fn boxes_data(tiles: &[VaeTile], output: bool) -> TensorData {
    let values: Vec<i64> = tiles
        .iter()
        .flat_map(|t| if output { t.output } else { t.input })
        .map(|v| v as i64)
        .collect();
    TensorData::new(values, [tiles.len(), 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vae::VaeConfig;
    use burn::tensor::Distribution;

    #[test]
    fn tiles_cover_the_input_like_the_reference() {
        // Reference boxes of the decoder case: a 12×27 latent, tile 4, pad 11.
        let tiles = split_tiles(12, 27, 4, DECODER_PAD, true);
        assert_eq!(tiles.len(), 2);
        assert_eq!(tiles[0].input, [0, 26, 0, 12]);
        assert_eq!(tiles[1].input, [4, 27, 0, 12]);
        assert_eq!(tiles[0].output, [0, 120, 0, 96]);
        assert_eq!(tiles[1].output, [120, 216, 0, 96]);
        assert_eq!(best_tile_size(33, 64), 64);
        assert_eq!(best_tile_size(20, 24), 24);
    }

    #[test]
    fn a_side_shorter_than_the_padding_is_one_tile() {
        // Long thin inputs: the short side is below (or within) the padding on both sides.
        for (h, w) in [(3, 60), (15, 60), (22, 60), (60, 5)] {
            let tiles = split_tiles(h, w, 8, DECODER_PAD, true);
            assert!(tiles.len() > 1, "{h}x{w}");
            for t in &tiles {
                if h < w {
                    assert_eq!((t.input[2], t.input[3]), (0, h), "{h}x{w}");
                    assert_eq!((t.output[2], t.output[3]), (0, 8 * h), "{h}x{w}");
                } else {
                    assert_eq!((t.input[0], t.input[1]), (0, w), "{h}x{w}");
                    assert_eq!((t.output[0], t.output[1]), (0, 8 * w), "{h}x{w}");
                }
            }
        }
        let device = Device::flex();
        let vae = VaeConfig::tiny().init(&device);
        let z = Tensor::<4>::random([1, 4, 2, 48], Distribution::Default, &device);
        assert_eq!(vae.decode_tiled(z, 8, None).dims(), [1, 3, 16, 384]);
    }

    #[test]
    fn tiles_keep_a_half_precision_network_in_half_precision() {
        let device = Device::flex();
        let vae = VaeConfig::tiny().init(&device);
        // Activations of a few hundred: their variance overflows f16 (65 504).
        let z = Tensor::<4>::random([1, 4, 6, 40], Distribution::Default, &device).mul_scalar(400);
        let full = vae.decode_tiled(z.clone(), 8, None);
        let half = diffbir_core::cast_module(vae, diffbir_core::Precision::F16).decode_tiled(
            z.cast(DType::F16),
            8,
            None,
        );
        assert_eq!(half.dtype(), DType::F16);
        let diff: f32 = (half.cast(DType::F32) - full.clone())
            .abs()
            .max()
            .into_scalar();
        let scale: f32 = full.abs().max().into_scalar();
        assert!(diff < 2e-2 * scale, "{diff} (of {scale})");
    }

    #[test]
    fn one_tile_covering_everything_equals_the_untiled_network() {
        let device = Device::flex();
        let vae = VaeConfig::tiny().init(&device);
        let z = Tensor::<4>::random([1, 4, 6, 6], Distribution::Default, &device);
        let tiled = run_tiled(
            vae.post_quant_conv.forward(z.clone()),
            64,
            0,
            true,
            None,
            |tiler, t| tiler.decoder(&vae.decoder, t),
        );
        let plain = vae.decode(z);
        let diff: f32 = (tiled - plain).abs().max().into_scalar();
        assert!(diff < 1e-4, "{diff}");
    }
}
