//! Media attachments, the pure part (decision 0026): what a file is (sniffed from its bytes,
//! never from its name or a declared type), whether its size and pixel count are acceptable,
//! the dimensions of its derived sizes, its content-addressed blob key, and which media an
//! activity references.
//!
//! Decoding and encoding images is the server's business (`tidings-server::media`); the
//! store keeps the metadata and the links between media and activities.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The image formats accepted, as their bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (its 8-byte signature).
    Png,
    /// GIF (`GIF87a` / `GIF89a`).
    Gif,
    /// WebP (`RIFF....WEBP`).
    Webp,
}

impl ImageFormat {
    /// The IANA media type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// The format of a stored media type (the reverse of [`ImageFormat::mime`]).
    pub fn from_mime(mime: &str) -> Option<ImageFormat> {
        [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::Webp,
        ]
        .into_iter()
        .find(|f| f.mime() == mime)
    }
}

/// What the first bytes of a file say it is; None for anything that is not one of the four
/// accepted image formats (the caller answers 415).
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// Why an upload is refused before any pixel is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No bytes.
    #[error("the upload is empty")]
    Empty,
    /// More bytes than the configured limit.
    #[error("the upload is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Bytes sent.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not JPEG, PNG, GIF or WebP.
    #[error("the file is not a JPEG, PNG, GIF or WebP image (its type is read from its bytes)")]
    UnsupportedType,
    /// Width × height above the cap (a decompression bomb, or just too big).
    #[error("the image is {width}×{height} pixels; at most {limit} pixels are accepted")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The cap.
        limit: u64,
    },
    /// A zero dimension.
    #[error("the image declares no pixels")]
    NoPixels,
    /// Alt text over the limit.
    #[error("alt text is at most {limit} characters")]
    AltTooLong {
        /// The limit.
        limit: usize,
    },
}

/// Longest alt text kept (Mastodon's description limit).
pub const MAX_ALT_CHARS: usize = 1500;

/// Checks an upload's size and type before anything else is done with it.
pub fn check_upload(bytes: &[u8], max_bytes: u64) -> Result<ImageFormat, MediaError> {
    let size = bytes.len() as u64;
    if size == 0 {
        return Err(MediaError::Empty);
    }
    if size > max_bytes {
        return Err(MediaError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    sniff(bytes).ok_or(MediaError::UnsupportedType)
}

/// Checks the dimensions a header declares, before decoding: the pixel cap refuses
/// decompression bombs (a few KiB that decode to gigabytes).
pub fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::NoPixels);
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}

/// Trims alt text and checks its length; None when empty.
pub fn normalize_alt(alt: Option<&str>) -> Result<Option<String>, MediaError> {
    let Some(alt) = alt.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    if alt.chars().count() > MAX_ALT_CHARS {
        return Err(MediaError::AltTooLong {
            limit: MAX_ALT_CHARS,
        });
    }
    Ok(Some(alt.to_owned()))
}

/// The dimensions of an image scaled to fit `edge` on its longer side, keeping its aspect
/// ratio; an image already smaller keeps its own size (never scaled up). Neither side is
/// ever below 1.
pub fn fit_within(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= edge || long == 0 {
        return (width.max(1), height.max(1));
    }
    let scale = |side: u32| -> u32 {
        let scaled = (u64::from(side) * u64::from(edge) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(scaled).unwrap_or(edge).max(1)
    };
    (scale(width), scale(height))
}

/// The content-addressed key of a blob: `sha256/ab/<64 hex digits>`, so equal bytes share one
/// blob and a key is never written with other bytes (nothing is overwritten).
pub fn blob_key(bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    format!("sha256/{}/{}", &digest[..2], digest)
}

/// Whether `id` has the shape of a media id (a UUID in lower-case hex), so a reference in an
/// attachment's URL is recognised without a lookup.
pub fn is_media_id(id: &str) -> bool {
    id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// Where this server serves media; attachments may reference it by this relative path.
pub const MEDIA_PATH: &str = "/api/v1/media/";

/// Whether `url` is a path to this server's media: `/api/v1/media/{id}` or
/// `/api/v1/media/{id}/{size}`, nothing else (no other path, no query, no `..`).
pub fn is_media_path(url: &str) -> bool {
    let Some(rest) = url.strip_prefix(MEDIA_PATH) else {
        return false;
    };
    let mut parts = rest.split('/');
    let id_ok = parts.next().is_some_and(is_media_id);
    let size_ok = match parts.next() {
        None => true,
        Some(size) => matches!(size, "original" | "medium" | "small"),
    };
    id_ok && size_ok && parts.next().is_none()
}

/// The media id in a URL that points at this server's media (`…/media/{id}` or
/// `…/media/{id}/{size}`, absolute or relative).
fn media_id_in(url: &str) -> Option<&str> {
    let (_, rest) = url
        .rsplit_once("/media/")
        .or_else(|| url.strip_prefix("media/").map(|rest| ("", rest)))?;
    let id = rest.split(['/', '?', '#']).next()?;
    is_media_id(id).then_some(id)
}

/// Every media id an activity references in its attachments (`attachment` of the activity or
/// of its inline object; an attachment's `url` or `href`, a string, a Link object or a list of
/// them), in order, without repeats. These are the media whose visibility follows the
/// activity's.
pub fn media_refs(record: &Value) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut push = |url: &str| {
        if let Some(id) = media_id_in(url)
            && !found.iter().any(|f| f == id)
        {
            found.push(id.to_owned());
        }
    };
    let holders = [Some(record), record.get("object")];
    for holder in holders.into_iter().flatten() {
        let Some(attachment) = holder.get("attachment") else {
            continue;
        };
        let entries: Vec<&Value> = match attachment {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for entry in entries {
            for url in urls_of(entry) {
                push(url);
            }
        }
    }
    found
}

/// The URLs an attachment entry carries.
fn urls_of(entry: &Value) -> Vec<&str> {
    let mut urls = Vec::new();
    match entry {
        Value::String(s) => urls.push(s.as_str()),
        Value::Object(map) => {
            for key in ["url", "href"] {
                match map.get(key) {
                    Some(Value::String(s)) => urls.push(s.as_str()),
                    Some(Value::Array(items)) => {
                        for item in items {
                            match item {
                                Value::String(s) => urls.push(s.as_str()),
                                Value::Object(link) => {
                                    if let Some(href) = link.get("href").and_then(Value::as_str) {
                                        urls.push(href);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    Some(Value::Object(link)) => {
                        if let Some(href) = link.get("href").and_then(Value::as_str) {
                            urls.push(href);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0192f0a4-7c1e-7d3a-9b2f-0a1b2c3d4e5f";

    #[test]
    fn sniffs_by_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(sniff(b"GIF89a...."), Some(ImageFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn upload_checks() {
        assert_eq!(check_upload(b"", 10), Err(MediaError::Empty));
        assert!(matches!(
            check_upload(&[0xFF, 0xD8, 0xFF, 0, 0], 4),
            Err(MediaError::TooLarge { size: 5, limit: 4 })
        ));
        assert_eq!(check_upload(b"hello", 10), Err(MediaError::UnsupportedType));
        assert_eq!(check_upload(&[0xFF, 0xD8, 0xFF], 10), Ok(ImageFormat::Jpeg));
    }

    #[test]
    fn pixel_cap() {
        assert!(check_pixels(4000, 3000, 12_000_000).is_ok());
        assert!(matches!(
            check_pixels(4001, 3000, 12_000_000),
            Err(MediaError::TooManyPixels { .. })
        ));
        // No overflow on the largest dimensions a header can declare.
        assert!(check_pixels(u32::MAX, u32::MAX, u64::MAX / 2).is_err());
        assert_eq!(check_pixels(0, 10, 100), Err(MediaError::NoPixels));
    }

    #[test]
    fn fits_long_edge() {
        assert_eq!(fit_within(4000, 3000, 400), (400, 300));
        assert_eq!(fit_within(3000, 4000, 1280), (960, 1280));
        assert_eq!(fit_within(100, 50, 400), (100, 50));
        assert_eq!(fit_within(10_000, 1, 400), (400, 1));
    }

    #[test]
    fn keys_are_content_addressed() {
        let key = blob_key(b"abc");
        assert_eq!(
            key,
            "sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(blob_key(b"abd"), key);
    }

    #[test]
    fn alt_text() {
        assert_eq!(normalize_alt(Some("  ")), Ok(None));
        assert_eq!(normalize_alt(Some(" a cat ")), Ok(Some("a cat".into())));
        assert!(normalize_alt(Some(&"x".repeat(MAX_ALT_CHARS + 1))).is_err());
    }

    #[test]
    fn finds_references() {
        let record = json!({
            "type": "Create",
            "object": {"type": "Note", "attachment": [
                {"type": "Image", "url": format!("/media/{ID}")},
                {"type": "Image", "url": [{"type": "Link", "href": format!("https://x.example/media/{ID}/small")}]},
                {"type": "Link", "href": "https://example.com/media/not-an-id"},
            ]},
        });
        assert_eq!(media_refs(&record), vec![ID.to_owned()]);
        let single = json!({"attachment": {"url": format!("media/{ID}")}});
        assert_eq!(media_refs(&single), vec![ID.to_owned()]);
        assert!(media_refs(&json!({"object": {"content": "/media/x"}})).is_empty());
        assert!(!is_media_id("0192F0A4-7c1e-7d3a-9b2f-0a1b2c3d4e5f"));
        assert!(is_media_path(&format!("/api/v1/media/{ID}")));
        assert!(is_media_path(&format!("/api/v1/media/{ID}/small")));
        assert!(!is_media_path(&format!("/api/v1/media/{ID}/../../x")));
        assert!(!is_media_path("/api/v1/media/javascript:alert(1)"));
        assert!(!is_media_path("/logout"));
    }
}
