//! `limit` plus opaque `before`/`after` cursors, shared by every listing.

use crate::error::ApiError;
use crate::response::RawJson;
use serde::{Deserialize, Serialize};
use tidings_core::cursor;
use tidings_store::model::{Page, PageFrom, PageItem};
use utoipa::{IntoParams, ToSchema};

/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Page size when none is given.
pub const DEFAULT_LIMIT: usize = 20;

/// Pagination arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageArgs {
    /// Items per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// Cursor: items older than this one (give `before` or `after`, not both).
    #[param(schema_with = cursor_schema)]
    pub before: Option<String>,
    /// Cursor: items newer than this one (give `before` or `after`, not both).
    #[param(schema_with = cursor_schema)]
    pub after: Option<String>,
}

/// A cursor as the server hands them out (`next`, `prev`, an item's `cursor`): 15 base64url
/// characters with a checksum inside, so only cursors the server gave are accepted (`format:
/// cursor`; any other is a 400 `invalid_cursor`).
pub fn cursor_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("cursor".to_owned())))
        .pattern(Some("^[A-Za-z0-9_-]{15}$"))
        .build()
}

/// [`cursor_schema`], or `null`.
pub fn optional_cursor_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut schema = cursor_schema();
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
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

/// One item of a page (documents the shape [`PageBody::render`] writes).
#[derive(Debug, Serialize, ToSchema)]
pub struct PageItemBody {
    /// Cursor of this item.
    pub cursor: String,
    /// Why it is in the inbox (inbox only): `author`, `addressed`, `subscription:ID:EXPR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The conversation a direct message belongs to (`cv_…`), when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// The activity.
    #[schema(value_type = Object)]
    pub activity: serde_json::Value,
}

/// A page, newest first (documents the shape [`PageBody::render`] writes).
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
    /// Writes a store page as the response body. Activities are spliced in as the JSON text
    /// the store produced (stored bytes plus derived state), never parsed again.
    pub fn render(page: Page, from: PageFrom) -> RawJson {
        let (next, prev) = page_cursors(
            page.items.first().map(|i| i.seq),
            page.items.last().map(|i| i.seq),
            page.has_older,
            from,
        );
        let size: usize = page.items.iter().map(|i| i.activity.len() + 96).sum();
        let mut out = String::with_capacity(size + 96);
        out.push_str("{\"items\":[");
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            render_item(&mut out, item);
        }
        out.push_str("],\"next\":");
        out.push_str(&next.map_or_else(|| "null".to_owned(), |c| json_string(&c)));
        out.push_str(",\"prev\":");
        out.push_str(&prev.map_or_else(|| "null".to_owned(), |c| json_string(&c)));
        out.push('}');
        RawJson(out)
    }
}

/// The `next` and `prev` cursors of a page whose newest and oldest positions are `first` and
/// `last`: `next` walks to older items when there are any; `prev` polls for newer ones (an empty
/// first page polls from the start, an empty forward page from where it was asked).
pub fn page_cursors(
    first: Option<i64>,
    last: Option<i64>,
    has_older: bool,
    from: PageFrom,
) -> (Option<String>, Option<String>) {
    let next = last.filter(|_| has_older).map(cursor::encode);
    let prev = match (first, from) {
        (Some(first), _) => Some(cursor::encode(first)),
        (None, PageFrom::After(c)) => Some(cursor::encode(c)),
        (None, PageFrom::Before(_)) => None,
        (None, PageFrom::Newest) => Some(cursor::encode(0)),
    };
    (next, prev)
}

/// Appends one page item as JSON: `{"cursor", "via"?, "activity"}`. The push channels send
/// exactly this, so a live event and a page item never differ.
pub fn render_item(out: &mut String, item: &PageItem) {
    // Cursors are base64url and vias are escaped by serde, so both are safe to splice.
    out.push_str("{\"cursor\":\"");
    out.push_str(&cursor::encode(item.seq));
    out.push('"');
    if let Some(via) = &item.via {
        out.push_str(",\"via\":");
        out.push_str(&json_string(via));
    }
    if let Some(id) = conversation_of_item(item) {
        out.push_str(",\"conversation\":\"");
        out.push_str(&id);
        out.push('"');
    }
    out.push_str(",\"activity\":");
    out.push_str(&item.activity);
    out.push('}');
}

/// The conversation a page item's message belongs to (decision 0027), so a live event tells
/// a chat view where the message goes. Only items that can be direct messages (written for
/// the author or an addressee) are looked into, and only their `type`, `actor` and `to`.
fn conversation_of_item(item: &PageItem) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        actor: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        to: Vec<std::borrow::Cow<'a, str>>,
    }
    if !matches!(item.via.as_deref(), None | Some("addressed" | "author")) {
        return None;
    }
    // Activities are stored as compact canonical JSON: one whose `to` does not start with a
    // person is no direct message, and is not parsed at all (the common inbox item).
    if !item.activity.contains("\"to\":[\"user:") {
        return None;
    }
    let peek: Peek<'_> = serde_json::from_str(&item.activity).ok()?;
    let to: Vec<&str> = peek.to.iter().map(|t| t.as_ref()).collect();
    let people = tidings_core::conversations::participants_of(&peek.kind, &peek.actor, &to)?;
    tidings_core::conversations::conversation_id(people.iter().map(String::as_str))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
