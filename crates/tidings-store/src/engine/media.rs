//! Media metadata (decision 0026): uploads and their sizes, the activities that attach them,
//! avatars. The bytes live in a blob store the server owns; this is who may read them.
//!
//! `media` and `avatars` are mutable state (alt text, an avatar replaced), written like the
//! queues: on the embedded writer, or on PostgreSQL in short transactions outside the log
//! lock. `media_uses` is a projection of the log, written in the publishing activity's own
//! transaction: which activity attaches which media. A media object is readable by its
//! uploader, by anyone who may read a live (not retracted) activity that attaches it, and by
//! everyone once it is an avatar.

use super::Store;
use super::activities::readable_sql;
use crate::media::{AvatarOf, MediaAccess, MediaVariant, NewMedia, StoredMedia};
use crate::model::{Role, User};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_rfc3339};

const MEDIA_SELECT: &str = "SELECT m.id, m.owner_id, u.username, m.media_type, m.width, m.height,
     m.blurhash, m.alt, m.variants, m.created_at FROM media m JOIN users u ON u.id = m.owner_id";

fn media_from_row(r: &crate::sql::Row<'_>) -> crate::sql::Result<(StoredMedia, String)> {
    Ok((
        StoredMedia {
            id: r.get(0)?,
            owner_id: r.get(1)?,
            owner: r.get(2)?,
            media_type: r.get(3)?,
            width: r.get(4)?,
            height: r.get(5)?,
            blurhash: r.get(6)?,
            alt: r.get(7)?,
            variants: Vec::new(),
            created_at: r.get(9)?,
        },
        r.get(8)?,
    ))
}

fn media_by_id(conn: &Connection, id: &str) -> StoreResult<Option<StoredMedia>> {
    let row = conn
        .prepare_cached(&format!("{MEDIA_SELECT} WHERE m.id = ?1"))?
        .query_row([id], media_from_row)
        .optional()?;
    let Some((mut media, variants)) = row else {
        return Ok(None);
    };
    media.variants = serde_json::from_str::<Vec<MediaVariant>>(&variants)
        .map_err(|e| StoreError::Corrupt(format!("media {id}: variants: {e}")))?;
    Ok(Some(media))
}

/// Refuses a publish that attaches media the actor did not upload (or that does not exist):
/// attaching would widen who may read someone else's image.
pub(crate) fn check_refs(conn: &Connection, actor_id: i64, refs: &[String]) -> StoreResult<()> {
    for id in refs {
        let owner: Option<i64> = conn
            .prepare_cached("SELECT owner_id FROM media WHERE id = ?1")?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()?;
        if owner != Some(actor_id) {
            return Err(StoreError::unprocessable(
                "unknown_media",
                format!("attachment {id} is not a media object you uploaded"),
            ));
        }
    }
    Ok(())
}

/// Records which media the activity at `seq` attaches (in its publish transaction).
pub(crate) fn record_uses(conn: &Connection, seq: i64, refs: &[String]) -> StoreResult<()> {
    for id in refs {
        conn.prepare_cached(
            "INSERT INTO media_uses(media_id, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![id, seq])?;
    }
    Ok(())
}

/// Who, of `viewer` (None: anonymous) and everyone, may read the media; None when `viewer`
/// may not (the caller answers 404: existence does not leak).
fn access(
    conn: &Connection,
    media: &StoredMedia,
    viewer: Option<&User>,
) -> StoreResult<Option<MediaAccess>> {
    let attached_readable = |viewer_id: i64, admin: bool| -> StoreResult<bool> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT EXISTS(SELECT 1 FROM media_uses mu JOIN activities a ON a.seq = mu.seq
                  WHERE mu.media_id = ?1
                    AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq)
                    AND {})",
                readable_sql(2, 3)
            ))?
            .query_row(params![media.id, viewer_id, admin], |r| r.get(0))?)
    };
    let avatar: bool = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM avatars WHERE media_id = ?1)")?
        .query_row([media.id.as_str()], |r| r.get(0))?;
    // No user has id 0: "anonymous" reads what is public and nothing else.
    if avatar || attached_readable(0, false)? {
        return Ok(Some(MediaAccess::Public));
    }
    let Some(viewer) = viewer else {
        return Ok(None);
    };
    if viewer.id == media.owner_id || attached_readable(viewer.id, viewer.is_admin)? {
        return Ok(Some(MediaAccess::Private));
    }
    Ok(None)
}

fn insert(conn: &Connection, owner: &User, id: String, new: NewMedia) -> StoreResult<StoredMedia> {
    let created_at = now_rfc3339();
    let variants = serde_json::to_string(&new.variants)
        .map_err(|e| StoreError::Corrupt(format!("media variants: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO media(id, owner_id, media_type, width, height, blurhash, alt, variants, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        owner.id,
        new.media_type,
        new.width,
        new.height,
        new.blurhash,
        new.alt,
        variants,
        created_at
    ])?;
    Ok(StoredMedia {
        id,
        owner_id: owner.id,
        owner: owner.username.clone(),
        media_type: new.media_type,
        width: new.width,
        height: new.height,
        blurhash: new.blurhash,
        alt: new.alt,
        variants: new.variants,
        created_at,
    })
}

/// The avatars row key of a subject; the circle's keepers alone may set a circle's.
fn avatar_subject(conn: &Connection, of: &AvatarOf, by: Option<&User>) -> StoreResult<String> {
    match of {
        AvatarOf::User(name) => {
            let user = super::users::user_by_name(conn, name)?;
            if let Some(by) = by
                && by.id != user.id
            {
                return Err(StoreError::forbidden(
                    "not_yours",
                    "only its owner sets a person's avatar",
                ));
            }
            Ok(format!("user:{}", user.id))
        }
        AvatarOf::Circle(name) => {
            let circle = super::circles::circle_by_name(conn, name)?;
            if let Some(by) = by {
                let role = super::circles::membership(conn, circle.id, by.id)?
                    .filter(|m| m.state == crate::model::MembershipState::Active)
                    .map(|m| m.role);
                if !by.is_admin && !matches!(role, Some(Role::Owner | Role::Moderator)) {
                    return Err(StoreError::forbidden(
                        "not_a_keeper",
                        "only the circle's owner and moderators set its avatar",
                    ));
                }
            }
            Ok(format!("circle:{}", circle.id))
        }
    }
}

impl Store {
    /// Stores a media object uploaded by `owner` (its blobs are written already).
    pub async fn create_media(&self, owner: &User, new: NewMedia) -> StoreResult<StoredMedia> {
        let owner = owner.clone();
        let id = uuid::Uuid::now_v7().to_string();
        self.queue_write(move |conn| insert(conn, &owner, id, new))
            .await
    }

    /// A media object and who may read it, if `viewer` (None: anonymous) may; None when it
    /// does not exist or `viewer` may not read it (the two look the same).
    pub async fn readable_media(
        &self,
        id: &str,
        viewer: Option<&User>,
    ) -> StoreResult<Option<(StoredMedia, MediaAccess)>> {
        let id = id.to_owned();
        let viewer = viewer.cloned();
        self.read(move |conn| {
            let Some(media) = media_by_id(conn, &id)? else {
                return Ok(None);
            };
            Ok(access(conn, &media, viewer.as_ref())?.map(|a| (media, a)))
        })
        .await
    }

    /// Sets (Some) or clears (None) the avatar of a person or circle; `by` must be that
    /// person, or a keeper of that circle, and must have uploaded the media.
    pub async fn set_avatar(
        &self,
        of: AvatarOf,
        media_id: Option<String>,
        by: &User,
    ) -> StoreResult<Option<StoredMedia>> {
        let by = by.clone();
        self.queue_write(move |conn| {
            let subject = avatar_subject(conn, &of, Some(&by))?;
            let Some(media_id) = media_id else {
                conn.prepare_cached("DELETE FROM avatars WHERE subject = ?1")?
                    .execute([subject.as_str()])?;
                return Ok(None);
            };
            check_refs(conn, by.id, std::slice::from_ref(&media_id))?;
            conn.prepare_cached(
                "INSERT INTO avatars(subject, media_id) VALUES (?1, ?2)
                 ON CONFLICT (subject) DO UPDATE SET media_id = excluded.media_id",
            )?
            .execute(params![subject, media_id])?;
            media_by_id(conn, &media_id)
        })
        .await
    }

    /// The avatar of a person or circle, if one is set; `not_found` when the person or
    /// circle does not exist (a private circle's avatar is public, like its name).
    pub async fn avatar(&self, of: AvatarOf) -> StoreResult<Option<StoredMedia>> {
        self.read(move |conn| {
            let subject = avatar_subject(conn, &of, None)?;
            let media_id: Option<String> = conn
                .prepare_cached("SELECT media_id FROM avatars WHERE subject = ?1")?
                .query_row([subject.as_str()], |r| r.get(0))
                .optional()?;
            match media_id {
                Some(id) => media_by_id(conn, &id),
                None => Ok(None),
            }
        })
        .await
    }
}
