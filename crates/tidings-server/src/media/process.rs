//! The CPU work of an upload, run on a worker thread: decode (after the pixel cap is checked
//! against the header), apply the EXIF orientation, re-encode the original without any
//! metadata (EXIF, GPS, XMP and ICC never leave the server: nothing is copied from the input
//! but pixels), derive two smaller sizes and a blurhash.
//!
//! Output formats: JPEG (quality 90 for the original, 82 for the derived sizes) for opaque
//! images, PNG for images with transparency. A GIF keeps only its first frame.

use super::MediaError;
use bytes::Bytes;
use fast_image_resize::{ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader};
use std::io::Cursor;
use tidings_core::media::{ImageFormat, blob_key, check_pixels, fit_within};

/// Long edge of the `medium` size (what a timeline shows full-width).
pub const MEDIUM_EDGE: u32 = 1280;
/// Long edge of the `small` size (thumbnails, avatars on cards).
pub const SMALL_EDGE: u32 = 400;
/// JPEG quality of the re-encoded original.
const ORIGINAL_QUALITY: u8 = 90;
/// JPEG quality of the derived sizes.
const DERIVED_QUALITY: u8 = 82;
/// Blurhash components (Mastodon uses 4 × 4; 4 × 3 suits landscape photos as well).
const BLURHASH_X: u32 = 4;
const BLURHASH_Y: u32 = 3;
/// Long edge the blurhash is computed from (its cost is per pixel; the hash is blurry anyway).
const BLURHASH_EDGE: u32 = 32;

/// One encoded size.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `original`, `medium` or `small`.
    pub name: &'static str,
    /// Its content-addressed key.
    pub key: String,
    /// Media type.
    pub media_type: &'static str,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// The bytes.
    pub bytes: Bytes,
}

/// A processed upload.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The original, medium and small sizes, in that order. A size no smaller than the one
    /// before it shares that one's blob.
    pub sizes: Vec<Encoded>,
    /// The blurhash placeholder.
    pub blurhash: String,
}

impl Processed {
    /// The distinct blobs to write.
    pub fn blobs(&self) -> Vec<&Encoded> {
        let mut out: Vec<&Encoded> = Vec::new();
        for size in &self.sizes {
            if !out.iter().any(|b| b.key == size.key) {
                out.push(size);
            }
        }
        out
    }
}

fn undecodable(e: impl std::fmt::Display) -> MediaError {
    MediaError::Undecodable(e.to_string())
}

fn image_format(format: ImageFormat) -> image::ImageFormat {
    match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
    }
}

/// Decodes `bytes` (already sniffed as `format`), refusing more than `max_pixels` before any
/// pixel is decoded, and applies the orientation its metadata asks for.
pub fn decode(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<DynamicImage, MediaError> {
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(MediaError::Undecodable(
            "the JPEG data ends before its end-of-image marker (a truncated file?)".into(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    // The decoder's own allocation cap backs the pixel cap up (4 bytes a pixel, RGBA, plus
    // slack for a decoder's working buffers).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    let orientation = decoder.orientation().map_err(undecodable)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Whether a JPEG's entropy-coded data reaches its end-of-image marker (`FF D9`). The JPEG
/// decoder fills a truncated scan with grey rather than failing, and a half-grey photo stored
/// forever is worse than a clear 422. Cameras may append data after the marker, so it is
/// looked for near the end, not only at it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Encodes `image` as JPEG (opaque) or PNG (with transparency), with no metadata.
fn encode(name: &'static str, image: &DynamicImage, quality: u8) -> Result<Encoded, MediaError> {
    let mut out = Vec::new();
    let media_type = if image.color().has_alpha() {
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(undecodable)?;
        "image/png"
    } else {
        let rgb = image.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&rgb)
            .map_err(undecodable)?;
        "image/jpeg"
    };
    Ok(Encoded {
        name,
        key: blob_key(&out),
        media_type,
        width: image.width(),
        height: image.height(),
        bytes: Bytes::from(out),
    })
}

/// `image` scaled to fit `edge` on its long side (Lanczos3, SIMD where the CPU has it).
fn shrink(
    resizer: &mut Resizer,
    image: &DynamicImage,
    edge: u32,
) -> Result<DynamicImage, MediaError> {
    let (width, height) = fit_within(image.width(), image.height(), edge);
    let mut out = DynamicImage::new(width, height, image.color());
    resizer
        .resize(image, &mut out, &ResizeOptions::new())
        .map_err(undecodable)?;
    Ok(out)
}

/// Normalises the pixel layout to 8-bit RGB or RGBA (what both encoders and the resizer
/// take): 16-bit PNGs and grey images become 8-bit colour.
fn to_8bit(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

/// The whole job: decode, orient, re-encode, derive, hash.
pub fn process(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<Processed, MediaError> {
    let image = to_8bit(decode(bytes, format, max_pixels)?);
    let mut resizer = Resizer::new();
    let original = encode("original", &image, ORIGINAL_QUALITY)?;
    let mut sizes = vec![original];
    let medium_image = if image.width().max(image.height()) > MEDIUM_EDGE {
        Some(shrink(&mut resizer, &image, MEDIUM_EDGE)?)
    } else {
        None
    };
    // Each size is made from the next larger one: a 400 px image from a 1280 px one costs a
    // tenth of one from 12 megapixels and looks the same.
    let from = medium_image.as_ref().unwrap_or(&image);
    match &medium_image {
        Some(medium) => sizes.push(encode("medium", medium, DERIVED_QUALITY)?),
        None => sizes.push(Encoded {
            name: "medium",
            ..sizes[0].clone()
        }),
    }
    let small_image = if from.width().max(from.height()) > SMALL_EDGE {
        Some(shrink(&mut resizer, from, SMALL_EDGE)?)
    } else {
        None
    };
    match &small_image {
        Some(small) => sizes.push(encode("small", small, DERIVED_QUALITY)?),
        None => {
            let bigger = sizes[1].clone();
            sizes.push(Encoded {
                name: "small",
                ..bigger
            });
        }
    }
    let basis = small_image.as_ref().unwrap_or(from);
    let tiny = shrink(&mut resizer, basis, BLURHASH_EDGE)?.to_rgba8();
    let blurhash = blurhash::encode(
        BLURHASH_X,
        BLURHASH_Y,
        tiny.width(),
        tiny.height(),
        tiny.as_raw(),
    )
    .map_err(undecodable)?;
    Ok(Processed { sizes, blurhash })
}
