//! Media uploads (decision 0026): checking, processing and storing images.
//!
//! Layout:
//! - this file — [`MediaConfig`] (`[media]`), [`Media`] (the blob store and the bounded
//!   worker pool every upload is processed in), [`MediaError`] (typed failures, mapped to HTTP
//!   once).
//! - `process` — the CPU work: decode (pixel cap first), orientation, re-encoding without
//!   metadata, the two derived sizes, the blurhash.
//! - `blobs` — the blob store: a directory under the data dir, or an S3-compatible bucket.
//!
//! An upload is processed while its request waits, in a pool of `workers` blocking threads;
//! at most `queue` more uploads wait for a worker, and any beyond that are answered
//! `503 media_busy` with `Retry-After` at once (back-pressure instead of an unbounded
//! backlog). The answer therefore carries the finished object: no `processing` state to poll.

pub mod blobs;
pub mod process;

use crate::error::ApiError;
use axum::http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// `[media]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Where blobs go: a directory, or `s3://BUCKET` (credentials and endpoint from the
    /// `AWS_*` environment). None: `media/` under the data dir (the binary fills it in).
    pub store: Option<String>,
    /// Largest upload accepted, in bytes.
    pub max_bytes: u64,
    /// Largest image accepted, in pixels (width × height), checked from the header before
    /// anything is decoded: decompression bombs are refused.
    pub max_pixels: u64,
    /// Uploads processed at once (blocking threads).
    pub workers: usize,
    /// Uploads that may wait for a worker; more are answered `503 media_busy`.
    pub queue: usize,
    /// Settings of an `s3://` store given here rather than in the environment (`aws_endpoint`,
    /// `aws_allow_http`, …; they win over `AWS_*` variables): tests point a server at their
    /// own S3 server without touching the process environment.
    pub s3_settings: Vec<(String, String)>,
}

/// Default upload limit: 16 MiB (Mastodon's image limit; a 12-megapixel phone JPEG is 3–6).
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Default pixel cap: 50 megapixels (a 12 MP photo passes; Zulip's bomb cap is 90 MP).
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

impl Default for MediaConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        MediaConfig {
            store: None,
            max_bytes: DEFAULT_MAX_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            // Leave a core for publishing and reads: image work is all CPU.
            workers: cores.saturating_sub(1).max(1),
            queue: 16,
            s3_settings: Vec::new(),
        }
    }
}

/// Why an upload or a media read failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Refused before decoding (size, type, pixels, alt text).
    #[error(transparent)]
    Rejected(#[from] tidings_core::media::MediaError),
    /// The bytes say JPEG/PNG/GIF/WebP but do not decode (truncated, corrupt).
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    /// Every worker is busy and the wait list is full.
    #[error("too many uploads are being processed; retry shortly")]
    Busy,
    /// No blob store is configured on this server.
    #[error("media are not configured on this server")]
    Unconfigured,
    /// The blob store failed (logged; not the caller's fault).
    #[error("blob store: {0}")]
    Blobs(String),
    /// A multipart body without a file part, or a malformed one.
    #[error("{0}")]
    BadForm(String),
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        use tidings_core::media::MediaError as Reject;
        let message = e.to_string();
        match e {
            MediaError::Rejected(reject) => match reject {
                // 422, not 400: the request is well formed, it just holds no image.
                Reject::Empty => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_upload", message)
                }
                Reject::TooLarge { size, limit } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "media_too_large", message)
                        .with_details(serde_json::json!({ "bytes": size, "limit": limit }))
                }
                Reject::UnsupportedType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    message,
                ),
                Reject::TooManyPixels {
                    width,
                    height,
                    limit,
                } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels", message)
                    .with_details(
                        serde_json::json!({ "width": width, "height": height, "limit": limit }),
                    ),
                Reject::NoPixels => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "undecodable_image",
                    message,
                ),
                Reject::AltTooLong { limit } => ApiError::bad_request("alt_too_long", message)
                    .with_details(serde_json::json!({ "limit": limit })),
            },
            MediaError::Undecodable(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable_image",
                message,
            ),
            MediaError::Busy => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "media_busy", message)
                    .with_details(serde_json::json!({ "retry_after": 1 }))
            }
            MediaError::Unconfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media_unconfigured",
                message,
            ),
            MediaError::Blobs(cause) => {
                tracing::error!(error = %cause, "blob store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "blob_store_unavailable",
                    "the media store cannot be reached right now; retry shortly",
                )
            }
            MediaError::BadForm(_) => ApiError::bad_request("bad_multipart", message),
        }
    }
}

/// The media service of a node: cheap to clone.
#[derive(Clone)]
pub struct Media {
    inner: Arc<Inner>,
}

struct Inner {
    config: MediaConfig,
    blobs: blobs::Blobs,
    /// One permit per worker.
    workers: Arc<Semaphore>,
    /// Uploads holding or waiting for a permit, to refuse beyond `workers + queue`.
    admitted: AtomicUsize,
}

/// Releases an admission slot when an upload ends, however it ends.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Media {
    /// Opens the blob store the configuration names.
    pub fn open(config: MediaConfig) -> Result<Media, String> {
        let location = config
            .store
            .clone()
            .ok_or_else(|| "no media store configured".to_owned())?;
        let blobs = blobs::Blobs::open(&location, &config.s3_settings)?;
        Ok(Media {
            inner: Arc::new(Inner {
                workers: Arc::new(Semaphore::new(config.workers.max(1))),
                admitted: AtomicUsize::new(0),
                config,
                blobs,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &MediaConfig {
        &self.inner.config
    }

    /// The blob store.
    pub fn blobs(&self) -> &blobs::Blobs {
        &self.inner.blobs
    }

    /// Checks and processes an upload in the worker pool, then writes its blobs. Refused
    /// uploads store nothing.
    pub async fn ingest(&self, bytes: bytes::Bytes) -> Result<process::Processed, MediaError> {
        let config = &self.inner.config;
        // Cheap checks first, on the request's task: size and type need no worker.
        let format = tidings_core::media::check_upload(&bytes, config.max_bytes)?;
        let limit = config.workers.max(1) + config.queue;
        if self.inner.admitted.fetch_add(1, Ordering::AcqRel) >= limit {
            self.inner.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(MediaError::Busy);
        }
        let _admission = Admission(&self.inner.admitted);
        let permit = self
            .inner
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MediaError::Busy)?;
        let max_pixels = config.max_pixels;
        let processed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            process::process(&bytes, format, max_pixels)
        })
        .await
        .map_err(|e| MediaError::Undecodable(format!("the image worker failed: {e}")))??;
        for blob in processed.blobs() {
            self.inner.blobs.put(&blob.key, blob.bytes.clone()).await?;
        }
        Ok(processed)
    }
}
