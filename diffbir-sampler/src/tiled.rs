//! Tiled evaluation of a denoiser: mixture of diffusers with Gaussian tile weights
//! (`--cldm_tiled`; `diffbir/pipeline.py:L130-L144`, `L211-L213`).
//!
//! Jiménez, "Mixture of Diffusers for scene composition and high resolution image generation"
//! (2023). DiffBIR replaces the model's `forward` by `make_tiled_fn` while sampling
//! (`XPixelGroup/DiffBIR@3f8b530:diffbir/sampler/spaced_sampler.py::sample`, same in every
//! sampler; `diffbir/utils/common.py::make_tiled_fn`): every network evaluation runs tile by
//! tile on the shared `x_t`, with the matching crop of the condition latent and the full text
//! context, and the `ε`/`v` outputs of overlapping tiles are blended with Gaussian weights. The
//! sampler update itself runs on the whole latent.

use burn::tensor::Tensor;
use diffbir_core::tiling::{TileBox, TileScale, TileSpec, tiled_apply};
use diffbir_core::{Error, Result};

use crate::denoiser::{Denoiser, ModelTimesteps, Parameterization};

/// A condition that can be cut to one tile: spatial parts (the condition latent) are cropped
/// to the tile, global parts (the text context) are kept whole.
pub trait TileCond {
    /// The condition for the latent region `tile` (latent units).
    fn crop(&self, tile: TileBox) -> Self;
}

/// A condition without spatial parts.
impl TileCond for () {
    fn crop(&self, _tile: TileBox) {}
}

/// A denoiser evaluated tile by tile, its tile outputs blended with Gaussian weights.
///
/// Tile size and stride are in latent units (DiffBIR's `--cldm_tile_size 512` and
/// `--cldm_tile_stride 256` pixels are 64 and 32 latents). A latent smaller than one tile in
/// either dimension is evaluated whole, as the reference pipeline then disables tiling.
#[derive(Debug, Clone)]
pub struct Tiled<D> {
    inner: D,
    size: usize,
    stride: usize,
}

impl<D> Tiled<D> {
    /// Tiles `inner` with `size × size` tiles whose starts are `stride` apart.
    pub fn new(inner: D, size: usize, stride: usize) -> Result<Self> {
        if size == 0 || stride == 0 {
            return Err(Error::InvalidArgument {
                what: "diffusion tile".into(),
                reason: format!("tile size ({size}) and stride ({stride}) must be positive"),
            });
        }
        Ok(Self {
            inner,
            size,
            stride,
        })
    }

    /// The tiled model.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Tile side in latent units.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Distance between tile starts in latent units.
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl<D> Denoiser for Tiled<D>
where
    D: Denoiser,
    D::Cond: TileCond,
{
    type Cond = D::Cond;

    fn parameterization(&self) -> Parameterization {
        self.inner.parameterization()
    }

    fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &Self::Cond) -> Tensor<4> {
        let [_, _, h, w] = x_t.dims();
        if h < self.size || w < self.size {
            return self.inner.predict(x_t, t, cond);
        }
        let spec = TileSpec {
            size: self.size,
            stride: self.stride,
            scale: TileScale::Up(1),
        };
        tiled_apply(x_t, spec, |tile, bx| {
            self.inner.predict(tile, t, &cond.crop(bx))
        })
        .expect("the tile geometry was checked: positive sizes, latent at least one tile")
    }

    /// Both conditions tile by tile, each tile's pair in one inner call; the pair's outputs
    /// are blended side by side as channels.
    fn predict_pair(
        &self,
        x_t: Tensor<4>,
        t: &ModelTimesteps,
        first: &Self::Cond,
        second: &Self::Cond,
    ) -> (Tensor<4>, Tensor<4>) {
        let [_, c, h, w] = x_t.dims();
        if h < self.size || w < self.size {
            return self.inner.predict_pair(x_t, t, first, second);
        }
        let spec = TileSpec {
            size: self.size,
            stride: self.stride,
            scale: TileScale::Up(1),
        };
        let both = tiled_apply(x_t, spec, |tile, bx| {
            let (a, b) = self
                .inner
                .predict_pair(tile, t, &first.crop(bx), &second.crop(bx));
            Tensor::cat(vec![a, b], 1)
        })
        .expect("the tile geometry was checked: positive sizes, latent at least one tile");
        let [n, _, _, _] = both.dims();
        (
            both.clone().slice([0..n, 0..c, 0..h, 0..w]),
            both.slice([0..n, c..2 * c, 0..h, 0..w]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// A condition latent added to a pointwise function of `x` and `t`.
    struct Pointwise;
    impl Denoiser for Pointwise {
        type Cond = Tensor<4>;
        fn parameterization(&self) -> Parameterization {
            Parameterization::V
        }
        fn predict(&self, x_t: Tensor<4>, t: &ModelTimesteps, cond: &Tensor<4>) -> Tensor<4> {
            x_t.tanh().mul_scalar(1.0 - t.value() / 2000.0) + cond.clone().mul_scalar(0.3)
        }
    }
    impl TileCond for Tensor<4> {
        fn crop(&self, tile: TileBox) -> Self {
            let [b, c, _, _] = self.dims();
            self.clone()
                .slice([0..b, 0..c, tile.hi..tile.hi_end, tile.wi..tile.wi_end])
        }
    }

    #[test]
    fn tiles_reproduce_a_pointwise_model() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 2, 10, 13], Distribution::Normal(0.0, 1.0), &device);
        let c = Tensor::<4>::random([1, 2, 10, 13], Distribution::Normal(0.0, 1.0), &device);
        let t = ModelTimesteps::new(500.0, 1);
        let whole = Pointwise.predict(x.clone(), &t, &c);
        let tiled = Tiled::new(Pointwise, 6, 4).unwrap().predict(x, &t, &c);
        let diff: f32 = (whole - tiled).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn a_latent_smaller_than_a_tile_runs_whole() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 1, 4, 8], &device);
        let t = ModelTimesteps::new(0.0, 1);
        let c = Tensor::<4>::zeros([1, 1, 4, 8], &device);
        let out = Tiled::new(Pointwise, 6, 3)
            .unwrap()
            .predict(x.clone(), &t, &c);
        assert_eq!(out.into_data(), Pointwise.predict(x, &t, &c).into_data());
        assert!(Tiled::new(Pointwise, 0, 3).is_err());
    }
}
