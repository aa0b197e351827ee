//! Memory of tiled VAE decoding. The blended tiling (v2's) keeps one tile's activations and
//! the output, so its peak grows only with the output image, while the untiled decoder's grows
//! with every full-size activation. The reference's synced tiling keeps every tile between
//! GroupNorms (it bounds GPU memory by parking them on the host, not the total).
//!
//! Peak memory is measured with a counting global allocator, which sees every tensor the
//! flex backend allocates (`testing/counting_alloc.rs`, which needs `unsafe`).
#![allow(unsafe_code)]

use burn::tensor::{Device, Distribution, Tensor};
use diffbir_ldm::VaeConfig;
use diffbir_ldm::vae::AutoencoderKl;

#[path = "../../testing/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{SERIAL, peak_during};

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

fn latent(side: usize, device: &Device) -> Tensor<4> {
    Tensor::random([1, 4, side, side], Distribution::Default, device)
}

#[test]
fn one_blended_tile_covering_the_latent_equals_the_untiled_decoder() {
    let device = Device::flex();
    let vae = VaeConfig::tiny().init(&device);
    let z = latent(12, &device);
    let blended = vae.decode_blended(z.clone(), 12, 6).unwrap();
    let plain = vae.decode(z);
    let diff: f32 = (blended - plain).abs().max().into_scalar();
    assert!(diff < 1e-5, "{diff}");
    assert!(vae.decode_blended(latent(12, &device), 0, 6).is_err());
    assert!(
        vae.encode_blended(Tensor::zeros([1, 3, 64, 64], &device), 20, 8)
            .is_err()
    );
}

struct Peaks {
    untiled: usize,
    synced: usize,
    blended: usize,
}

fn peaks(vae: &AutoencoderKl, side: usize, device: &Device) -> Peaks {
    let z = latent(side, device);
    let peak = |f: &dyn Fn() -> Tensor<4>| peak_during(|| f().into_data()).1;
    Peaks {
        untiled: peak(&|| vae.decode(z.clone())),
        synced: peak(&|| vae.decode_tiled(z.clone(), 16, None)),
        blended: peak(&|| vae.decode_blended(z.clone(), 16, 8).unwrap()),
    }
}

#[test]
fn blended_decoding_peak_grows_only_with_the_output() {
    let _guard = SERIAL.lock().unwrap();
    let output_bytes = |side: usize| 3 * (8 * side) * (8 * side) * 4;
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let device = Device::flex();
    let vae = VaeConfig::tiny().init(&device);
    peaks(&vae, 16, &device);
    let small = peaks(&vae, 16, &device);
    let large = peaks(&vae, 48, &device);

    // 9× the area: the untiled peak follows it, the blended one adds a few output images.
    assert!(
        large.blended <= small.blended + 4 * output_bytes(48),
        "blended: {:.1} MiB at 48² against {:.1} MiB at 16²",
        mib(large.blended),
        mib(small.blended)
    );
    assert!(
        large.blended * 4 < large.untiled,
        "blended {:.1} MiB, untiled {:.1} MiB",
        mib(large.blended),
        mib(large.untiled)
    );
    // The synced tiles (each with its margin) are all alive at every GroupNorm.
    assert!(
        large.synced > large.untiled,
        "synced {:.1} MiB, untiled {:.1} MiB",
        mib(large.synced),
        mib(large.untiled)
    );
}
