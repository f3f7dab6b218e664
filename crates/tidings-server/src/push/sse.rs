//! `GET /api/v1/inbox/stream`: the live inbox as Server-Sent Events.
//!
//! Events: `ready` (once, `id:` = the starting cursor, so even a client that received nothing
//! resumes without a gap), `entry` (`id:` = the item's inbox cursor, `data:` = the page item),
//! with `counts=FEEDS` also `counts` (no `id:`; `data:` = `{"FEED":{"unseen","unread"}}`, sent
//! after the backlog and whenever one of them changes),
//! then at the end either `resume` (`{"cursor","reason"}`: reconnect from the cursor) or
//! `closed` (`{"reason"}`: the token no longer works). Browsers' `EventSource` reconnects on its
//! own and sends `Last-Event-ID`, which resumes exactly after the last item it saw.

use super::{ChannelArgs, CloseReason, Hub, Listener, NextPage, authenticate_token};
use crate::AppState;
use crate::api::inbox::InboxArgs;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::render_item;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use tidings_core::cursor;
use tidings_store::model::PageItem;
use utoipa::IntoParams;

/// How long a browser waits before reconnecting, in milliseconds.
const RETRY_MS: u32 = 2000;
/// A keep-alive: an empty comment (sent every [`super::KEEP_ALIVE`] by the hub's one timer).
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// Stream arguments: the inbox filters, a resume cursor, and (for `EventSource`, which cannot
/// send headers) the token.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamArgs {
    /// Comma-separated circle names.
    pub circles: Option<String>,
    /// Comma-separated tags.
    pub tags: Option<String>,
    /// major | minor | direct.
    pub kind: Option<String>,
    /// Resume after this cursor (`Last-Event-ID` wins when both are sent).
    pub after: Option<String>,
    /// Feeds whose unseen / unread counts are pushed as `counts` events (comma-separated
    /// names, or `all`).
    pub counts: Option<String>,
    /// Bearer token, when an `Authorization` header cannot be sent.
    pub access_token: Option<String>,
}

/// Keeps the hub's registry in step with the stream's life.
struct Registration {
    hub: Hub,
    listener: Arc<Listener>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.release(&self.listener);
    }
}

/// The caller's inbox, live: everything after the cursor, then each new entry as it is routed.
///
/// Events are written straight into one buffer per read (every item a woken connection
/// gets goes out as one body frame, so one write): `event`, `id`, then `data` (the page item,
/// exactly as `GET /api/v1/inbox` renders it), in the order axum's SSE builder would write
/// them, without building an intermediate event per item.
#[utoipa::path(get, path = "/api/v1/inbox/stream", operation_id = "inbox_stream", tag = "inbox", security(("bearer" = [])),
    params(StreamArgs, ("Last-Event-ID" = Option<String>, Header, description = "resume after this cursor")),
    responses((status = 200, content_type = "text/event-stream", description = "events: ready, entry, counts, resume, closed"),
        (status = 400), (status = 401), (status = 403)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    slot: Option<axum::Extension<crate::limits::BudgetSlot>>,
    ApiQuery(args): ApiQuery<StreamArgs>,
) -> Result<Response, ApiError> {
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(crate::auth::bearer_token);
    let auth = authenticate_token(&state, header_token.or(args.access_token.as_deref())).await?;
    // Opening a stream is a read of the token's budget, like any other.
    crate::limits::charge_as(
        &axum::http::Method::GET,
        slot.as_ref().map(|axum::Extension(slot)| slot),
        &state,
        &auth.token_hash,
    )?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let inbox_args = InboxArgs {
        circles: args.circles,
        tags: args.tags,
        kind: args.kind,
        from: None,
        limit: None,
        before: None,
        after: None,
    };
    let channel = ChannelArgs::parse(&inbox_args, last_event_id.or(args.after.as_deref()))?
        .with_counts(&state.config.feeds, args.counts.as_deref())?;
    let listener = state.hub.open(&state.store, auth, channel)?;
    let start = listener.cursor_text();
    let ready = format!(
        "event: ready\nid: {start}\nretry: {RETRY_MS}\ndata: {{\"cursor\":\"{start}\"}}\n\n"
    );
    let registration = Registration {
        hub: state.hub.clone(),
        listener,
    };
    let first = StreamState {
        registration,
        store: state.store.clone(),
        ready: Some(Bytes::from(ready)),
        done: false,
    };
    let events = futures::stream::unfold(first, |mut s| async move {
        if let Some(ready) = s.ready.take() {
            return Some((Ok::<_, Infallible>(ready), s));
        }
        if s.done {
            return None;
        }
        let listener = &s.registration.listener;
        let frame = match listener.next_page(&s.store).await {
            Ok(NextPage::Items(items)) => entries(&items),
            Ok(NextPage::KeepAlive) => Bytes::from_static(KEEP_ALIVE_COMMENT),
            // No `id:`: the resume point stays the last entry's cursor.
            Ok(NextPage::Counts(payload)) => {
                Bytes::from(format!("event: counts\ndata: {payload}\n\n"))
            }
            Ok(NextPage::Close(reason)) => {
                s.done = true;
                close_event(reason, &listener.cursor_text())
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "live inbox read failed");
                // Tell the client where to pick up; a fresh connection retries the read.
                s.done = true;
                close_event(CloseReason::Lagged, &listener.cursor_text())
            }
        };
        Some((Ok(frame), s))
    });
    let mut response = Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

struct StreamState {
    registration: Registration,
    store: tidings_store::Store,
    /// The `ready` event, until sent.
    ready: Option<Bytes>,
    done: bool,
}

/// `entry` events for page items (oldest first), in one buffer.
fn entries(items: &[PageItem]) -> Bytes {
    let size: usize = items.iter().map(|i| i.activity.len() + 160).sum();
    let mut out = String::with_capacity(size);
    let mut data = String::new();
    for item in items {
        out.push_str("event: entry\nid: ");
        out.push_str(&cursor::encode(item.seq));
        let mark = out.len();
        out.push_str("\ndata: ");
        render_item(&mut out, item);
        // JSON text has no raw line breaks, but a `data` field must never carry one: if one
        // ever appears, write the lines as `data` fields of their own, as SSE requires.
        if out
            .get(mark + 7..)
            .is_some_and(|d| d.contains(['\n', '\r']))
        {
            data.clear();
            data.push_str(out.get(mark + 7..).unwrap_or_default());
            out.truncate(mark);
            for line in data.split(['\n', '\r']).filter(|l| !l.is_empty()) {
                out.push_str("\ndata: ");
                out.push_str(line);
            }
        }
        out.push_str("\n\n");
    }
    Bytes::from(out)
}

fn close_event(reason: CloseReason, cursor: &str) -> Bytes {
    let text = if reason.reconnect() {
        format!(
            "event: resume\ndata: {{\"cursor\":\"{cursor}\",\"reason\":\"{}\"}}\n\n",
            reason.as_str()
        )
    } else {
        format!(
            "event: closed\ndata: {{\"reason\":\"{}\"}}\n\n",
            reason.as_str()
        )
    };
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_as_axum_would_and_never_split_a_data_line() {
        let item = PageItem {
            seq: 7,
            via: Some("author".into()),
            activity: "{\"a\":1}".into(),
        };
        let c = cursor::encode(7);
        let expected = format!(
            "event: entry\nid: {c}\ndata: {{\"cursor\":\"{c}\",\"via\":\"author\",\"activity\":{{\"a\":1}}}}\n\n"
        );
        assert_eq!(entries(std::slice::from_ref(&item)), Bytes::from(expected));
        let spaced = PageItem {
            activity: "{\n\"a\":1}".into(),
            ..item
        };
        let text = entries(&[spaced]);
        assert!(text.ends_with(b"\ndata: \"a\":1}}\n\n"), "{text:?}");
    }
}
