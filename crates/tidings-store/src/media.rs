//! What the store keeps about media (decision 0026): one row per upload with its derived
//! sizes (whose bytes live in a blob store, under content-addressed keys), the activities that
//! attach it (its visibility follows theirs), and the avatars of people and circles.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One stored size of a media object: its blob and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaVariant {
    /// `original` (the upload, re-encoded without its metadata), `medium` or `small`.
    pub name: String,
    /// The blob's content-addressed key (`sha256/ab/…`): also its `ETag`.
    pub key: String,
    /// Its media type (`image/jpeg`, …).
    #[serde(rename = "type")]
    pub media_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

/// A media object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    /// Its id (a UUID), the `{id}` of `/media/{id}`.
    pub id: String,
    /// The uploader's internal id.
    pub owner_id: i64,
    /// The uploader's user name.
    pub owner: String,
    /// The original's media type.
    pub media_type: String,
    /// The original's width, after orientation was applied.
    pub width: u32,
    /// The original's height, after orientation was applied.
    pub height: u32,
    /// The blurhash placeholder.
    pub blurhash: String,
    /// Alt text.
    pub alt: Option<String>,
    /// The stored sizes, the original first.
    pub variants: Vec<MediaVariant>,
    /// When it was uploaded (RFC 3339).
    pub created_at: String,
}

impl StoredMedia {
    /// A size by name.
    pub fn variant(&self, name: &str) -> Option<&MediaVariant> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// A media object to store (its blobs are already written).
#[derive(Debug, Clone)]
pub struct NewMedia {
    /// The original's media type.
    pub media_type: String,
    /// Width after orientation.
    pub width: u32,
    /// Height after orientation.
    pub height: u32,
    /// The blurhash placeholder.
    pub blurhash: String,
    /// Alt text (trimmed, checked).
    pub alt: Option<String>,
    /// The stored sizes, the original first.
    pub variants: Vec<MediaVariant>,
}

/// Who may read a media object, as the store decides it for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaAccess {
    /// Anyone, signed in or not: it is an avatar, or attached to an activity everyone may
    /// read (cacheable by shared caches).
    Public,
    /// This viewer, not everyone: its uploader, or a reader of an activity that attaches it.
    Private,
}

/// Whose avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvatarOf {
    /// A person, by user name.
    User(String),
    /// A circle, by name.
    Circle(String),
}
