//! `GET /api/v1/inbox/stream`: the live inbox as Server-Sent Events.
//!
//! Events: `ready` (once, `id:` = the starting cursor, so even a client that received nothing
//! resumes without a gap), `entry` (`id:` = the item's inbox cursor, `data:` = the page item),
//! then at the end either `resume` (`{"cursor","reason"}`: reconnect from the cursor) or
//! `closed` (`{"reason"}`: the token no longer works). Browsers' `EventSource` reconnects on its
//! own and sends `Last-Event-ID`, which resumes exactly after the last item it saw.

use super::{ChannelArgs, CloseReason, Hub, Listener, Next, authenticate_token};
use crate::AppState;
use crate::api::inbox::InboxArgs;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;

/// How often an idle stream carries a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(2);

/// Stream arguments: the inbox filters, a resume cursor, and (for `EventSource`, which cannot
/// send headers) the token.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamArgs {
    /// Comma-separated circle names.
    pub circles: Option<String>,
    /// Comma-separated tags.
    pub tags: Option<String>,
    /// major | minor | direct.
    pub kind: Option<String>,
    /// Resume after this cursor (`Last-Event-ID` wins when both are sent).
    pub after: Option<String>,
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
#[utoipa::path(get, path = "/api/v1/inbox/stream", tag = "inbox", security(("bearer" = [])),
    params(StreamArgs, ("Last-Event-ID" = Option<String>, Header, description = "resume after this cursor")),
    responses((status = 200, content_type = "text/event-stream", description = "events: ready, entry, resume, closed"),
        (status = 400), (status = 401), (status = 403), (status = 429)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(args): ApiQuery<StreamArgs>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(crate::auth::bearer_token);
    let auth = authenticate_token(&state, header_token.or(args.access_token.as_deref())).await?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let inbox_args = InboxArgs {
        circles: args.circles,
        tags: args.tags,
        kind: args.kind,
        limit: None,
        before: None,
        after: None,
    };
    let channel = ChannelArgs::parse(&inbox_args, last_event_id.or(args.after.as_deref()))?;
    let listener = state.hub.open(&state.store, auth, channel)?;
    let ready = Event::default()
        .event("ready")
        .id(listener.cursor_text())
        .retry(RETRY)
        .data(format!("{{\"cursor\":\"{}\"}}", listener.cursor_text()));
    let registration = Registration {
        hub: state.hub.clone(),
        listener,
    };
    let start = StreamState {
        registration,
        store: state.store.clone(),
        pending: VecDeque::from([ready]),
        done: false,
    };
    let events = futures::stream::unfold(start, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            if s.done {
                return None;
            }
            let listener = &s.registration.listener;
            match listener.next(&s.store).await {
                Ok(Next::Items(items)) => {
                    s.pending.extend(items.into_iter().map(|item| {
                        Event::default()
                            .event("entry")
                            .id(item.cursor)
                            .data(item.json)
                    }));
                }
                Ok(Next::Close(reason)) => {
                    s.pending
                        .push_back(close_event(reason, &listener.cursor_text()));
                    s.done = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "live inbox read failed");
                    // Tell the client where to pick up; a fresh connection retries the read.
                    s.pending
                        .push_back(close_event(CloseReason::Lagged, &listener.cursor_text()));
                    s.done = true;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

struct StreamState {
    registration: Registration,
    store: tidings_store::Store,
    pending: VecDeque<Event>,
    done: bool,
}

fn close_event(reason: CloseReason, cursor: &str) -> Event {
    if reason.reconnect() {
        Event::default().event("resume").data(format!(
            "{{\"cursor\":\"{cursor}\",\"reason\":\"{}\"}}",
            reason.as_str()
        ))
    } else {
        Event::default()
            .event("closed")
            .data(format!("{{\"reason\":\"{}\"}}", reason.as_str()))
    }
}
