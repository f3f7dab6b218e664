//! Conversations (decision 0027): direct messages grouped by the people they are between,
//! with a read marker per person and conversation. Only participants see a conversation;
//! to anyone else it does not exist (404).

use crate::AppState;
use crate::api::feeds::MarkBody;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{PageArgs, PageBody, page_cursors};
use crate::response::RawJson;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Serialize;
use tidings_core::conversations::CONVERSATION_PREFIX;
use tidings_core::cursor;
use tidings_store::model::ConversationSummary;
use utoipa::ToSchema;

/// One conversation as its participant sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationBody {
    /// Conversation id (`cv_` and 32 hex digits; the same for everyone in it).
    pub id: String,
    /// Everyone in it (the reader included), by username.
    pub participants: Vec<String>,
    /// The newest message, as a page item's activity.
    #[schema(value_type = Object)]
    pub last_message: serde_json::Value,
    /// Cursor of the newest message (also this conversation's position in the list).
    pub cursor: String,
    /// Messages from the others newer than the reader's read marker.
    pub unread: i64,
    /// The reader's read marker (a message cursor), absent when nothing was read yet.
    pub read_cursor: Option<String>,
}

impl ConversationBody {
    fn from_summary(summary: ConversationSummary) -> ApiResult<ConversationBody> {
        let last_message = serde_json::from_str(&summary.last_message)
            .map_err(|e| ApiError::internal(format!("stored activity: {e}")))?;
        Ok(ConversationBody {
            id: summary.id,
            participants: summary.participants,
            last_message,
            cursor: cursor::encode(summary.last_seq),
            unread: summary.unread,
            read_cursor: (summary.read_seq > 0).then(|| cursor::encode(summary.read_seq)),
        })
    }
}

/// A page of conversations, newest message first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    /// Conversations.
    pub items: Vec<ConversationBody>,
    /// Pass as `before` for the next (older) page; absent at the end.
    pub next: Option<String>,
    /// Pass as `after` for conversations with newer messages.
    pub prev: Option<String>,
}

/// A conversation id is `cv_` and 32 lowercase hex digits; anything else cannot exist.
fn check_id(id: &str) -> ApiResult<&str> {
    let ok = id.strip_prefix(CONVERSATION_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(id)
    } else {
        Err(ApiError::not_found("conversation"))
    }
}

/// The caller's conversations, the one with the newest message first.
#[utoipa::path(get, path = "/api/v1/conversations", operation_id = "list_conversations", tag = "conversations",
    security(("bearer" = [])), params(PageArgs),
    responses((status = 200, body = ConversationList), (status = 400), (status = 401)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<Json<ConversationList>> {
    let (from, limit) = args.resolve()?;
    let page = state.store.conversations(auth.user, from, limit).await?;
    let (next, prev) = page_cursors(
        page.items.first().map(|c| c.last_seq),
        page.items.last().map(|c| c.last_seq),
        page.has_older,
        from,
    );
    let items = page
        .items
        .into_iter()
        .map(ConversationBody::from_summary)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ConversationList { items, next, prev }))
}

/// A conversation's messages, newest first (cursor paging as everywhere; each item carries
/// its `conversation`).
#[utoipa::path(get, path = "/api/v1/conversations/{id}", operation_id = "conversation_messages", tag = "conversations",
    security(("bearer" = [])), params(("id" = String, Path, description = "conversation id"), PageArgs),
    responses((status = 200, body = PageBody), (status = 400), (status = 401), (status = 404)))]
pub async fn messages(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<RawJson> {
    let (from, limit) = args.resolve()?;
    let page = state
        .store
        .conversation_messages(check_id(&id)?, auth.user, from, limit)
        .await?;
    Ok(PageBody::render(page, from))
}

/// Move the caller's read marker: up to a message cursor, or (without one) everything so far.
/// A marker never moves back.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", operation_id = "read_conversation", tag = "conversations",
    security(("bearer" = [])), params(("id" = String, Path, description = "conversation id")),
    request_body(content = Option<MarkBody>, description = "optional"),
    responses((status = 200, body = ConversationBody), (status = 400), (status = 401), (status = 404)))]
pub async fn mark_read(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<ConversationBody>> {
    let upto = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // JSON `null` is no body too: the body is optional.
        serde_json::from_slice::<Option<MarkBody>>(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("body: {e}")))?
            .and_then(|b| b.cursor)
    };
    let upto = match upto {
        Some(c) => Some(
            cursor::decode(c.trim())
                .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
        ),
        None => None,
    };
    let summary = state
        .store
        .mark_conversation_read(check_id(&id)?, auth.user, upto)
        .await?;
    Ok(Json(ConversationBody::from_summary(summary)?))
}
