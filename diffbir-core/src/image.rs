//! Images ⇄ tensors: reading PNG, JPEG, WebP, TIFF and BMP files (8 or 16 bits; gray, RGB,
//! with or without alpha) into `[1, 3, H, W]` tensors in `[0, 1]`, and writing results back
//! with the reference's quantisation.
//!
//! The colour channels go through the network; the alpha channel is kept aside in an
//! [`ImageMeta`] and put back at save time (resized when the output is larger). Gray images
//! are expanded to RGB and can be written back as gray. Writes are atomic: the file is encoded
//! into a temporary file beside the target and renamed over it, so a failure never leaves a
//! partial output.

use std::io::{BufRead, BufWriter, Cursor, Seek, Write};
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma};

use crate::error::{Error, Result};

/// Limits applied while decoding, so a hostile or accidental file cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
    /// Smallest accepted side in pixels; smaller images cannot be restored meaningfully.
    pub min_side: u32,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            max_width: 16_384,
            max_height: 16_384,
            max_alloc: 4 << 30,
            min_side: 8,
        }
    }
}

/// The channels an image file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLayout {
    /// One luminance channel.
    Gray,
    /// Luminance and alpha.
    GrayAlpha,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue and alpha.
    Rgba,
}

impl ChannelLayout {
    /// Whether the layout has an alpha channel.
    pub fn has_alpha(self) -> bool {
        matches!(self, Self::GrayAlpha | Self::Rgba)
    }

    /// Whether the layout is gray (with or without alpha).
    pub fn is_gray(self) -> bool {
        matches!(self, Self::Gray | Self::GrayAlpha)
    }
}

/// Bits per channel of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitDepth {
    /// 8 bits per channel.
    Eight,
    /// 16 bits per channel.
    Sixteen,
}

/// An alpha channel kept aside while the colour channels are processed.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaChannel {
    /// 16-bit alpha (8-bit sources are widened exactly: `v * 257`).
    pub values: ImageBuffer<Luma<u16>, Vec<u16>>,
}

impl AlphaChannel {
    /// The alpha channel at `width × height` (bicubic resampling when the size differs).
    pub fn resized(&self, width: u32, height: u32) -> ImageBuffer<Luma<u16>, Vec<u16>> {
        if self.values.dimensions() == (width, height) {
            self.values.clone()
        } else {
            image::imageops::resize(
                &self.values,
                width,
                height,
                image::imageops::FilterType::CatmullRom,
            )
        }
    }
}

/// What a decoded image looked like, so the output can be written the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeta {
    /// Width of the source in pixels.
    pub width: u32,
    /// Height of the source in pixels.
    pub height: u32,
    /// Channels of the source.
    pub layout: ChannelLayout,
    /// Bits per channel of the source.
    pub depth: BitDepth,
    /// The source's alpha channel, if it had one.
    pub alpha: Option<AlphaChannel>,
}

/// Decodes an image file into a `[1, 3, H, W]` tensor with values in `[0, 1]`.
///
/// 8-bit values are divided by 255 and 16-bit values by 65535. Gray images are repeated over
/// the three channels; alpha is returned in the [`ImageMeta`].
pub fn read_image(
    path: impl AsRef<Path>,
    options: &ReadOptions,
    device: &Device,
) -> Result<(Tensor<4>, ImageMeta)> {
    let image = open_image(path, options)?;
    Ok(image_to_tensor(&image, device))
}

/// Decodes an image file within `options`' limits, checking it is not empty, in a supported
/// format and at least `options.min_side` pixels on each side.
pub fn open_image(path: impl AsRef<Path>, options: &ReadOptions) -> Result<DynamicImage> {
    let path = path.as_ref();
    let image = decode_file(path, options)?;
    check_min_side(&image, path, options)?;
    Ok(image)
}

/// [`open_image`] on a file's bytes (an upload, say): the same format detection, limits,
/// empty-file and minimum-size checks and errors, with `name` (only its extension is used
/// to guess the format, before the content) standing in for the path in messages.
pub fn decode_image(bytes: &[u8], name: &Path, options: &ReadOptions) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(empty_file(name));
    }
    // As `ImageReader::open` does for files: the extension first, then the content.
    let mut reader = image::ImageReader::new(Cursor::new(bytes));
    if let Ok(format) = ImageFormat::from_path(name) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?;
    let image = decode_reader(reader, name, options)?;
    check_min_side(&image, name, options)?;
    Ok(image)
}

/// [`decode_image`] up to the tensor of [`read_image`]: the `[3, H, W]` planes and the
/// [`ImageMeta`].
///
/// For fuzzing and tests; applications use [`read_image`].
#[doc(hidden)]
pub fn read_image_bytes(
    bytes: &[u8],
    name: &Path,
    options: &ReadOptions,
) -> Result<(Vec<f32>, ImageMeta)> {
    decode_image(bytes, name, options).map(|image| image_to_planes(&image))
}

fn empty_file(path: &Path) -> Error {
    Error::ImageDecode {
        path: path.to_path_buf(),
        reason: "the file is empty".into(),
    }
}

fn check_min_side(image: &DynamicImage, path: &Path, options: &ReadOptions) -> Result<()> {
    let (width, height) = (image.width(), image.height());
    if width < options.min_side || height < options.min_side {
        return Err(Error::ImageSize {
            path: path.to_path_buf(),
            width,
            height,
            reason: format!(
                "both sides must be at least {} pixels to be restored",
                options.min_side
            ),
        });
    }
    Ok(())
}

fn decode_file(path: &Path, options: &ReadOptions) -> Result<DynamicImage> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len == 0 {
        return Err(empty_file(path));
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    decode_reader(reader, path, options)
}

/// Decodes what `reader` holds (files and in-memory bytes alike) within `options`' limits.
fn decode_reader<R: BufRead + Seek>(
    mut reader: image::ImageReader<R>,
    path: &Path,
    options: &ReadOptions,
) -> Result<DynamicImage> {
    let Some(format) = reader.format() else {
        return Err(Error::ImageDecode {
            path: path.to_path_buf(),
            reason: "not a PNG, JPEG, WebP, TIFF or BMP file".into(),
        });
    };
    if !is_supported(format) {
        return Err(Error::ImageDecode {
            path: path.to_path_buf(),
            reason: format!(
                "{format:?} images are not supported; convert it to PNG, JPEG, WebP, TIFF or BMP"
            ),
        });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(options.max_width);
    limits.max_image_height = Some(options.max_height);
    limits.max_alloc = Some(options.max_alloc);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => Error::ImageSize {
            path: path.to_path_buf(),
            width: 0,
            height: 0,
            reason: format!(
                "over the decoding limits ({limit}; at most {}x{} pixels and {} MiB): raise them in ReadOptions if the file is trusted",
                options.max_width,
                options.max_height,
                options.max_alloc >> 20
            ),
        },
        image::ImageError::IoError(io) => Error::io(path, io),
        other => Error::ImageDecode {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

fn is_supported(format: ImageFormat) -> bool {
    matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Tiff
            | ImageFormat::Bmp
    )
}

/// What an image looks like (channels, depth) and its alpha channel, kept to write the result
/// the same way.
pub fn image_meta(image: &DynamicImage) -> ImageMeta {
    let (width, height) = (image.width(), image.height());
    let color = image.color();
    let layout = match (color.has_color(), color.has_alpha()) {
        (false, false) => ChannelLayout::Gray,
        (false, true) => ChannelLayout::GrayAlpha,
        (true, false) => ChannelLayout::Rgb,
        (true, true) => ChannelLayout::Rgba,
    };
    let depth = if color.bytes_per_pixel() / color.channel_count() >= 2 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    let alpha = layout.has_alpha().then(|| {
        let la = image.to_luma_alpha16();
        let values = ImageBuffer::from_fn(width, height, |x, y| Luma([la.get_pixel(x, y)[1]]));
        AlphaChannel { values }
    });
    ImageMeta {
        width,
        height,
        layout,
        depth,
        alpha,
    }
}

/// Converts a decoded image into a `[1, 3, H, W]` tensor in `[0, 1]` and its [`ImageMeta`].
pub fn image_to_tensor(image: &DynamicImage, device: &Device) -> (Tensor<4>, ImageMeta) {
    let (chw, meta) = image_to_planes(image);
    let tensor = Tensor::<4>::from_data(
        TensorData::new(chw, [1, 3, meta.height as usize, meta.width as usize]),
        device,
    );
    (tensor, meta)
}

/// The `[3, H, W]` planes in `[0, 1]` of [`image_to_tensor`], and the [`ImageMeta`].
fn image_to_planes(image: &DynamicImage) -> (Vec<f32>, ImageMeta) {
    let meta = image_meta(image);
    let plane = meta.width as usize * meta.height as usize;
    let mut chw = vec![0f32; 3 * plane];
    match meta.depth {
        BitDepth::Eight => {
            let rgb = image.to_rgb8();
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * plane + i] = f32::from(px[c]) / 255.0;
                }
            }
        }
        BitDepth::Sixteen => {
            let rgb = image.to_rgb16();
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * plane + i] = f32::from(px[c]) / 65535.0;
                }
            }
        }
    }
    (chw, meta)
}

/// How to write a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveOptions {
    /// Put the source's alpha channel back (when there is one). With `false` it is dropped.
    pub keep_alpha: bool,
    /// Write a gray image (luminance of the result).
    pub gray: bool,
    /// Bits per channel of the output (formats that only store 8 bits get 8).
    pub depth: BitDepth,
}

impl SaveOptions {
    /// Write the output like the source: same channels, same bit depth, alpha kept.
    pub fn like(meta: &ImageMeta) -> Self {
        Self {
            keep_alpha: true,
            gray: meta.layout.is_gray(),
            depth: meta.depth,
        }
    }
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            keep_alpha: true,
            gray: false,
            depth: BitDepth::Eight,
        }
    }
}

/// Quantises a value in `[0, 1]` like the reference: `(x * 255).clamp(0, 255)` truncated
/// toward zero (not rounded). NaN becomes 0.
pub fn quantize_u8(x: f32) -> u8 {
    (x * 255.0).clamp(0.0, 255.0) as u8
}

/// The 16-bit counterpart of [`quantize_u8`]: `(x * 65535).clamp(0, 65535)`, truncated.
pub fn quantize_u16(x: f32) -> u16 {
    (x * 65535.0).clamp(0.0, 65535.0) as u16
}

/// Converts a `[3, H, W]` (or `[1, 3, H, W]`) tensor in `[0, 1]` into an image, quantising
/// like the reference and adding `alpha` (resized to the output size) when given.
///
/// # Shapes
/// - `rgb`: `[3, H, W]`, values in `[0, 1]` (values outside are clamped)
pub fn tensor_to_image(
    rgb: Tensor<3>,
    alpha: Option<&AlphaChannel>,
    options: &SaveOptions,
) -> DynamicImage {
    let [c, h, w] = rgb.dims();
    assert_eq!(c, 3, "tensor_to_image expects 3 channels, got {c}");
    let values: Vec<f32> = rgb
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32 data after convert");
    let plane = h * w;
    let (width, height) = (w as u32, h as u32);
    let alpha = alpha
        .filter(|_| options.keep_alpha)
        .map(|a| a.resized(width, height));
    let at = |c: usize, x: u32, y: u32| values[c * plane + (y * width + x) as usize];
    let rgb16 = ImageBuffer::from_fn(width, height, |x, y| {
        image::Rgb([0, 1, 2].map(|c| quantize_u16(at(c, x, y))))
    });
    let rgb8 = ImageBuffer::from_fn(width, height, |x, y| {
        image::Rgb([0, 1, 2].map(|c| quantize_u8(at(c, x, y))))
    });
    let image = match options.depth {
        BitDepth::Eight => DynamicImage::ImageRgb8(rgb8),
        // The 16-bit image quantises each channel with the 16-bit rule directly.
        BitDepth::Sixteen => DynamicImage::ImageRgb16(rgb16),
    };
    let image = match (options.gray, options.depth) {
        (false, _) => image,
        (true, BitDepth::Eight) => DynamicImage::ImageLuma8(image.to_luma8()),
        (true, BitDepth::Sixteen) => DynamicImage::ImageLuma16(image.to_luma16()),
    };
    match alpha {
        None => image,
        Some(alpha) => attach_alpha(image, &alpha),
    }
}

/// An 8-bit RGB result (a path that computes in 8 bits, such as `unaligned_face`'s
/// paste-back) written like its source as far as 8 bits allow: gray stays gray and the
/// source's alpha, resized to the result, is put back.
pub fn rgb8_to_image(rgb: image::RgbImage, meta: &ImageMeta) -> DynamicImage {
    let (width, height) = rgb.dimensions();
    let image = DynamicImage::ImageRgb8(rgb);
    let image = if meta.layout.is_gray() {
        DynamicImage::ImageLuma8(image.to_luma8())
    } else {
        image
    };
    match &meta.alpha {
        None => image,
        Some(alpha) => attach_alpha(image, &alpha.resized(width, height)),
    }
}

fn attach_alpha(image: DynamicImage, alpha: &ImageBuffer<Luma<u16>, Vec<u16>>) -> DynamicImage {
    let a8 = |x: u32, y: u32| ((u32::from(alpha.get_pixel(x, y)[0]) + 128) / 257) as u8;
    let a16 = |x: u32, y: u32| alpha.get_pixel(x, y)[0];
    match image {
        DynamicImage::ImageLuma8(g) => {
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(g.width(), g.height(), |x, y| {
                image::LumaA([g.get_pixel(x, y)[0], a8(x, y)])
            }))
        }
        DynamicImage::ImageLuma16(g) => {
            DynamicImage::ImageLumaA16(ImageBuffer::from_fn(g.width(), g.height(), |x, y| {
                image::LumaA([g.get_pixel(x, y)[0], a16(x, y)])
            }))
        }
        DynamicImage::ImageRgb16(c) => {
            DynamicImage::ImageRgba16(ImageBuffer::from_fn(c.width(), c.height(), |x, y| {
                let [r, g, b] = c.get_pixel(x, y).0;
                image::Rgba([r, g, b, a16(x, y)])
            }))
        }
        other => {
            let c = other.to_rgb8();
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(c.width(), c.height(), |x, y| {
                let [r, g, b] = c.get_pixel(x, y).0;
                image::Rgba([r, g, b, a8(x, y)])
            }))
        }
    }
}

/// Writes `image` to `path` atomically, in the format its extension names.
///
/// Formats that store fewer bits or channels get a converted copy: JPEG, WebP and BMP are
/// written with 8 bits; WebP stores gray as RGB. JPEG cannot store alpha: an image with alpha
/// is refused with [`Error::UnsupportedOutput`] rather than silently flattened.
pub fn save_image(path: impl AsRef<Path>, image: &DynamicImage) -> Result<()> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path)
        .ok()
        .filter(|f| is_supported(*f))
        .ok_or_else(|| Error::UnsupportedOutput {
            path: path.to_path_buf(),
            reason: "the extension names no supported format: use .png, .jpg, .webp, .tiff or .bmp"
                .into(),
        })?;
    let fitted = fit_to_format(image, format).map_err(|reason| Error::UnsupportedOutput {
        path: path.to_path_buf(),
        reason,
    })?;
    write_atomically(path, |out| {
        fitted
            .write_to(out, format)
            .map_err(|e| Error::ImageEncode {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    })
}

fn fit_to_format(
    image: &DynamicImage,
    format: ImageFormat,
) -> std::result::Result<DynamicImage, String> {
    let color = image.color();
    let sixteen = color.bytes_per_pixel() / color.channel_count() >= 2;
    let eight_bit_only = matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Bmp
    );
    Ok(match format {
        ImageFormat::Jpeg if color.has_alpha() => {
            return Err("JPEG cannot store an alpha channel: save as .png, .webp or .tiff, or drop the alpha channel".into());
        }
        ImageFormat::WebP if color.has_alpha() => DynamicImage::ImageRgba8(image.to_rgba8()),
        ImageFormat::WebP => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ if eight_bit_only && sixteen => match (color.has_color(), color.has_alpha()) {
            (true, true) => DynamicImage::ImageRgba8(image.to_rgba8()),
            (true, false) => DynamicImage::ImageRgb8(image.to_rgb8()),
            (false, true) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
            (false, false) => DynamicImage::ImageLuma8(image.to_luma8()),
        },
        _ => image.clone(),
    })
}

/// Writes a file through a temporary file in the same directory and renames it into place, so
/// readers never see a partial file and a failure leaves any previous file untouched.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".diffbir-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    {
        let mut out = BufWriter::new(tmp.as_file_mut());
        write(&mut out)?;
        out.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, Rgba};

    fn device() -> Device {
        Device::flex()
    }

    fn gradient_rgb8(w: u32, h: u32) -> image::RgbImage {
        ImageBuffer::from_fn(w, h, |x, y| {
            Rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 3) as u8])
        })
    }

    fn round_trip(image: DynamicImage, name: &str) -> (DynamicImage, ImageMeta) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(name);
        image.save(&src).unwrap();
        let (tensor, meta) = read_image(&src, &ReadOptions::default(), &device()).unwrap();
        let [_, c, h, w] = tensor.dims();
        assert_eq!((c, h as u32, w as u32), (3, image.height(), image.width()));
        let out = tensor_to_image(
            tensor.squeeze_dim(0),
            meta.alpha.as_ref(),
            &SaveOptions::like(&meta),
        );
        let dst = dir.path().join(format!("out_{name}"));
        save_image(&dst, &out).unwrap();
        (image::open(&dst).unwrap(), meta)
    }

    #[test]
    fn rgb8_round_trip_is_exact() {
        let src = DynamicImage::ImageRgb8(gradient_rgb8(20, 12));
        let (back, meta) = round_trip(src.clone(), "a.png");
        assert_eq!(meta.layout, ChannelLayout::Rgb);
        assert_eq!(meta.depth, BitDepth::Eight);
        // x/255*255 can land just below the integer; truncation then loses one level at most.
        let (a, b) = (src.to_rgb8(), back.to_rgb8());
        let worst = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (i16::from(*x) - i16::from(*y)).abs())
            .max()
            .unwrap();
        assert!(worst <= 1, "max difference {worst}");
    }

    #[test]
    fn rgba_keeps_alpha() {
        let src = DynamicImage::ImageRgba8(ImageBuffer::from_fn(16, 10, |x, y| {
            Rgba([x as u8 * 10, y as u8 * 10, 100, (x * 16) as u8])
        }));
        let (back, meta) = round_trip(src.clone(), "a.png");
        assert_eq!(meta.layout, ChannelLayout::Rgba);
        let back = back.to_rgba8();
        for (x, y, px) in src.to_rgba8().enumerate_pixels() {
            assert_eq!(back.get_pixel(x, y)[3], px[3], "alpha at {x},{y}");
        }
    }

    #[test]
    fn alpha_is_resized_for_larger_outputs_and_can_be_dropped() {
        let alpha = AlphaChannel {
            values: ImageBuffer::from_pixel(8, 8, Luma([65535])),
        };
        let rgb = Tensor::<3>::ones([3, 16, 24], &device()).mul_scalar(0.5);
        let out = tensor_to_image(rgb.clone(), Some(&alpha), &SaveOptions::default());
        assert_eq!(out.color(), image::ColorType::Rgba8);
        assert_eq!((out.width(), out.height()), (24, 16));
        assert!(out.to_rgba8().pixels().all(|p| p[3] == 255 && p[0] == 127));
        let dropped = SaveOptions {
            keep_alpha: false,
            ..SaveOptions::default()
        };
        let out = tensor_to_image(rgb, Some(&alpha), &dropped);
        assert_eq!(out.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn gray_is_expanded_and_written_back_as_gray() {
        let src = DynamicImage::ImageLuma8(ImageBuffer::from_fn(12, 9, |x, y| {
            Luma([(x * 20 + y) as u8])
        }));
        let (back, meta) = round_trip(src.clone(), "g.png");
        assert_eq!(meta.layout, ChannelLayout::Gray);
        assert_eq!(back.color(), image::ColorType::L8);
        for (a, b) in src.to_luma8().as_raw().iter().zip(back.to_luma8().as_raw()) {
            assert!((i16::from(*a) - i16::from(*b)).abs() <= 1);
        }
    }

    #[test]
    fn sixteen_bit_round_trip_keeps_depth() {
        let src = DynamicImage::ImageRgb16(ImageBuffer::from_fn(10, 10, |x, y| {
            Rgb([(x * 6000) as u16, (y * 5000 + 3) as u16, 65535])
        }));
        let (back, meta) = round_trip(src.clone(), "d.png");
        assert_eq!(meta.depth, BitDepth::Sixteen);
        assert_eq!(back.color(), image::ColorType::Rgb16);
        for (a, b) in src.to_rgb16().as_raw().iter().zip(back.to_rgb16().as_raw()) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 1);
        }
        // A 16-bit gray TIFF stays 16-bit gray.
        let gray =
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(9, 9, |x, _| Luma([(x * 7000) as u16])));
        let (back, _) = round_trip(gray, "g.tiff");
        assert_eq!(back.color(), image::ColorType::L16);
    }

    #[test]
    fn every_supported_format_reads() {
        let src = DynamicImage::ImageRgb8(gradient_rgb8(16, 16));
        for ext in ["png", "jpg", "webp", "tiff", "bmp"] {
            let (back, meta) = round_trip(src.clone(), &format!("f.{ext}"));
            assert_eq!((back.width(), back.height()), (16, 16), "{ext}");
            assert_eq!(meta.layout, ChannelLayout::Rgb, "{ext}");
        }
    }

    #[test]
    fn quantisation_truncates_like_the_reference() {
        assert_eq!(quantize_u8(0.999), 254);
        assert_eq!(quantize_u8(1.5), 255);
        assert_eq!(quantize_u8(-0.2), 0);
        assert_eq!(quantize_u8(f32::NAN), 0);
        assert_eq!(quantize_u8(100.9 / 255.0), 100);
        assert_eq!(quantize_u16(1.0), 65535);
    }

    fn read_err(bytes: &[u8], name: &str) -> Error {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        read_image(&p, &ReadOptions::default(), &device()).unwrap_err()
    }

    #[test]
    fn bad_images_give_clear_errors() {
        let err = read_err(b"", "empty.png");
        assert!(err.to_string().contains("empty"), "{err}");

        let err = read_err(b"this is not an image at all", "text.png");
        assert!(matches!(err, Error::ImageDecode { .. }), "{err}");

        let mut png = Vec::new();
        DynamicImage::ImageRgb8(gradient_rgb8(64, 64))
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let err = read_err(&png[..png.len() / 2], "truncated.png");
        assert!(
            matches!(err, Error::ImageDecode { .. } | Error::Io { .. }),
            "{err}"
        );

        let mut tiny = Vec::new();
        DynamicImage::ImageRgb8(gradient_rgb8(1, 1))
            .write_to(&mut std::io::Cursor::new(&mut tiny), ImageFormat::Png)
            .unwrap();
        let err = read_err(&tiny, "one.png");
        assert!(
            matches!(
                err,
                Error::ImageSize {
                    width: 1,
                    height: 1,
                    ..
                }
            ),
            "{err}"
        );

        let missing = read_image("/nonexistent/x.png", &ReadOptions::default(), &device());
        assert!(matches!(missing, Err(Error::Io { .. })));
    }

    #[test]
    fn bytes_decode_like_files() {
        // `read_image_bytes` (the fuzz target's entry point) is `read_image` on a slice.
        let dir = tempfile::tempdir().unwrap();
        let src = DynamicImage::ImageRgba16(ImageBuffer::from_fn(9, 11, |x, y| {
            Rgba([
                (x * 7000) as u16,
                (y * 5000) as u16,
                3,
                (x * y * 600) as u16,
            ])
        }));
        for name in ["a.png", "a.tiff"] {
            let path = dir.path().join(name);
            src.save(&path).unwrap();
            let (tensor, meta) = read_image(&path, &ReadOptions::default(), &device()).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let (planes, meta_b) =
                read_image_bytes(&bytes, Path::new(name), &ReadOptions::default()).unwrap();
            assert_eq!(meta_b, meta, "{name}");
            assert_eq!(
                tensor.into_data().try_to_vec::<f32>().unwrap(),
                planes,
                "{name}"
            );
        }
        let name = Path::new("x.png");
        let empty = read_image_bytes(b"", name, &ReadOptions::default()).unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        let text = read_image_bytes(b"not an image", name, &ReadOptions::default());
        assert!(matches!(text, Err(Error::ImageDecode { .. })));
    }

    #[test]
    fn decompression_bombs_are_refused() {
        // A valid PNG header claiming 100000 x 100000 pixels.
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(gradient_rgb8(8, 8))
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = read_err(&png, "bomb.png");
        assert!(
            matches!(err, Error::ImageSize { .. } | Error::ImageDecode { .. }),
            "{err}"
        );
        let small = ReadOptions {
            max_width: 4,
            ..ReadOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.png");
        gradient_rgb8(8, 8).save(&p).unwrap();
        let err = read_image(&p, &small, &device()).unwrap_err();
        assert!(matches!(err, Error::ImageSize { .. }), "{err}");
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(4, 4, Rgba([1, 2, 3, 4])));
        let err = save_image(dir.path().join("x.jpg"), &rgba).unwrap_err();
        assert!(matches!(err, Error::UnsupportedOutput { .. }), "{err}");
        let err = save_image(dir.path().join("x.gif"), &rgba).unwrap_err();
        assert!(matches!(err, Error::UnsupportedOutput { .. }), "{err}");
        let err = write_atomically(&dir.path().join("y.png"), |_| {
            Err(Error::invalid("test", "fails on purpose"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
