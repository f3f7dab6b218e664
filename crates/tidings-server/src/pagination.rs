//! `limit` plus opaque `before`/`after` cursors, shared by every listing.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidings_core::cursor;
use tidings_store::model::{Page, PageFrom};
use utoipa::{IntoParams, ToSchema};

/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Page size when none is given.
pub const DEFAULT_LIMIT: usize = 20;

/// Pagination arguments.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageArgs {
    /// Items per page, 1–100 (default 20).
    pub limit: Option<usize>,
    /// Cursor: items older than this one.
    pub before: Option<String>,
    /// Cursor: items newer than this one.
    pub after: Option<String>,
}

impl PageArgs {
    /// Checks and decodes the arguments.
    pub fn resolve(&self) -> Result<(PageFrom, usize), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let decode = |c: &str| {
            cursor::decode(c).map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))
        };
        let from = match (&self.before, &self.after) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "invalid_cursor",
                    "give before or after, not both",
                ));
            }
            (Some(b), None) => PageFrom::Before(decode(b)?),
            (None, Some(a)) => PageFrom::After(decode(a)?),
            (None, None) => PageFrom::Newest,
        };
        Ok((from, limit))
    }
}

/// One item of a page.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageItemBody {
    /// Cursor of this item.
    pub cursor: String,
    /// Why it is in the inbox (inbox only): `author`, `addressed`, `subscription:ID:EXPR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The activity.
    #[schema(value_type = Object)]
    pub activity: Box<RawValue>,
}

/// A page, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody {
    /// Items, newest first.
    pub items: Vec<PageItemBody>,
    /// Pass as `before` for the next (older) page; absent at the end.
    pub next: Option<String>,
    /// Pass as `after` for newer items (poll with it).
    pub prev: Option<String>,
}

impl PageBody {
    /// Turns a store page into the response body.
    pub fn from_page(page: Page, from: PageFrom) -> Result<PageBody, ApiError> {
        let next = match page.items.last() {
            Some(last) if page.has_older => Some(cursor::encode(last.seq)),
            _ => None,
        };
        let prev = match (page.items.first(), from) {
            (Some(first), _) => Some(cursor::encode(first.seq)),
            (None, PageFrom::After(c)) => Some(cursor::encode(c)),
            (None, PageFrom::Before(_)) => None,
            (None, PageFrom::Newest) => Some(cursor::encode(0)),
        };
        let items = page
            .items
            .into_iter()
            .map(|item| {
                Ok(PageItemBody {
                    cursor: cursor::encode(item.seq),
                    via: item.via,
                    activity: RawValue::from_string(item.activity).map_err(ApiError::internal)?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(PageBody { items, next, prev })
    }
}
