//! Image files as `diffbir restore` and the training data loaders read them: format
//! detection, the PNG/JPEG/WebP/TIFF/BMP decoders under the decoding limits, the empty-file
//! and minimum-size checks, and the conversion to `[3, H, W]` planes in `[0, 1]`.
#![no_main]

use std::path::Path;

use diffbir_core::image::{ReadOptions, read_image_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Smaller limits than the defaults (16384², 4 GiB): everything the limits allow fits far
    // under libFuzzer's -malloc_limit_mb=2048, so a decoder that allocates past `max_alloc`
    // shows up as an out-of-memory finding; and small images keep the executions fast.
    let options = ReadOptions {
        max_width: 1024,
        max_height: 1024,
        max_alloc: 4 << 20,
        min_side: 8,
    };
    let Ok((planes, meta)) = read_image_bytes(data, Path::new("fuzz-input"), &options) else {
        return;
    };
    let (w, h) = (meta.width as usize, meta.height as usize);
    assert!(
        w >= 8 && h >= 8 && w <= 1024 && h <= 1024,
        "{w}x{h} passed the limits"
    );
    assert_eq!(planes.len(), 3 * w * h);
    assert!(planes.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(meta.alpha.is_some(), meta.layout.has_alpha());
    if let Some(alpha) = &meta.alpha {
        assert_eq!(alpha.values.dimensions(), (meta.width, meta.height));
    }
});
