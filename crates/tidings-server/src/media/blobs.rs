//! The blob store: a directory (the default, `media/` under the data dir) or an S3-compatible
//! bucket (`s3://BUCKET`, cluster mode: every node reads every blob), through `object_store`.
//!
//! Keys are content-addressed (`sha256/ab/…`, [`tidings_core::media::blob_key`]) and written
//! with create-only puts: a key already present holds the same bytes, so a second writer's
//! "already exists" is success, and nothing is ever overwritten.

use super::MediaError;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::sync::Arc;

/// A blob store handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// What it is, for logs and errors (`s3://bucket`, a directory).
    describe: String,
}

impl Blobs {
    /// Opens `s3://BUCKET` (endpoint, region and credentials from the `AWS_*` environment:
    /// `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`; `settings` win over them) or a directory (created if missing).
    pub fn open(location: &str, settings: &[(String, String)]) -> Result<Blobs, String> {
        if let Some(bucket) = location.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(format!(
                    "media store {location:?}: write s3://BUCKET (a prefix is not supported)"
                ));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env();
            for (key, value) in settings {
                let key: object_store::aws::AmazonS3ConfigKey = key
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|e| format!("media store {location}: setting {key}: {e}"))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("media store {location}: {e}"))?;
            return Ok(Blobs {
                store: Arc::new(s3),
                describe: location.to_owned(),
            });
        }
        std::fs::create_dir_all(location)
            .map_err(|e| format!("media store {location}: cannot create the directory: {e}"))?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(location)
            .map_err(|e| format!("media store {location}: {e}"))?;
        Ok(Blobs {
            store: Arc::new(local),
            describe: location.to_owned(),
        })
    }

    /// What the store is.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Writes a blob under its content-addressed key unless it is there already.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), MediaError> {
        let path = Path::from(key);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(MediaError::Blobs(format!(
                "{}: put {key}: {e}",
                self.describe
            ))),
        }
    }

    /// Reads a blob whole; None if it is missing.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, MediaError> {
        let path = Path::from(key);
        match self.store.get(&path).await {
            Ok(found) => found
                .bytes()
                .await
                .map(Some)
                .map_err(|e| MediaError::Blobs(format!("{}: read {key}: {e}", self.describe))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(MediaError::Blobs(format!(
                "{}: get {key}: {e}",
                self.describe
            ))),
        }
    }

    /// Whether a blob exists.
    pub async fn exists(&self, key: &str) -> Result<bool, MediaError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(MediaError::Blobs(format!(
                "{}: head {key}: {e}",
                self.describe
            ))),
        }
    }
}
