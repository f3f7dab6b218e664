//! The live inbox over Socket.IO (protocol v5, what the stock `socket.io-client` speaks).
//!
//! Handshake: `io(url, { auth: { token, after?, circles?, tags?, kind?, counts? } })`; a bad
//! token or filter is refused with a `connect_error` whose message says why. Server → client
//! events: `ready` (`{"cursor"}`), `entry` (a page item, exactly as in `GET /api/v1/inbox`),
//! `counts` (with `auth.counts`: `{"FEED":{"unseen","unread"}}`, after the backlog and on each
//! change), and before the server ends the connection `resume` (`{"cursor","reason"}`:
//! reconnect with `auth.after = cursor`) or `closed` (`{"reason"}`: the token no longer
//! works). Client → server: `filter` (`{circles?, tags?, kind?}`, acknowledged with
//! `{"ok":true}` or an error object) changes the filters of the one channel without
//! reconnecting.

use super::engineio::{EmitError, SioSocket};
use super::{ChannelArgs, CloseReason, Listener, Next, authenticate_token};
use crate::AppState;
use crate::api::inbox::{InboxArgs, parse_filter};
use crate::auth::AuthUser;
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may leave its send buffer full before it is told to resume and dropped.
const LAG_DEADLINE: Duration = Duration::from_secs(5);
/// Packets buffered per connection before a send has to wait.
const SEND_BUFFER: usize = 64;

/// A list given either as an array or as a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Names {
    /// `["a", "b"]`
    List(Vec<String>),
    /// `"a,b"`
    Text(String),
}

impl Names {
    fn joined(names: Option<Names>) -> Option<String> {
        names.map(|n| match n {
            Names::List(list) => list.join(","),
            Names::Text(text) => text,
        })
    }
}

/// Filters, as the handshake or a `filter` event sends them.
#[derive(Debug, Default, Deserialize)]
struct FilterArgs {
    circles: Option<Names>,
    tags: Option<Names>,
    kind: Option<String>,
}

impl FilterArgs {
    fn into_inbox_args(self) -> InboxArgs {
        InboxArgs {
            circles: Names::joined(self.circles),
            tags: Names::joined(self.tags),
            kind: self.kind,
            from: None,
            limit: None,
            before: None,
            after: None,
        }
    }
}

/// The handshake `auth` object.
#[derive(Debug, Default, Deserialize)]
struct HandshakeAuth {
    token: Option<String>,
    after: Option<String>,
    counts: Option<Names>,
    #[serde(flatten)]
    filter: FilterArgs,
}

/// A refused handshake: the client's `connect_error` carries this text.
#[derive(Debug)]
pub(super) struct Refused(ApiError);

impl Refused {
    /// The refusal as `{"code", "details"}` (details only when there are some).
    pub(super) fn data(&self) -> serde_json::Value {
        let mut data = serde_json::json!({"code": self.0.code});
        if let Some(details) = &self.0.details {
            data["details"] = details.clone();
        }
        data
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

/// Handshake: authenticates and checks the filters of a `CONNECT`'s `auth` object (None when
/// the client sent none).
pub(super) async fn authorize(state: &AppState, auth: Option<&str>) -> Result<Pending, Refused> {
    let auth = match auth {
        Some(auth) => serde_json::from_str::<HandshakeAuth>(auth).map_err(|e| {
            Refused(ApiError::bad_request(
                "invalid_handshake",
                format!("the handshake auth must be an object: {e}"),
            ))
        })?,
        None => HandshakeAuth::default(),
    };
    let caller = authenticate_token(state, auth.token.as_deref())
        .await
        .map_err(Refused)?;
    // A handshake is a read of the token's budget, like any other.
    crate::limits::charge_as(&axum::http::Method::GET, None, state, &caller.token_hash)
        .map_err(Refused)?;
    let args = ChannelArgs::parse(&auth.filter.into_inbox_args(), auth.after.as_deref())
        .and_then(|args| {
            args.with_counts(&state.config.feeds, Names::joined(auth.counts).as_deref())
        })
        .map_err(Refused)?;
    state.hub.check_room(&caller).map_err(Refused)?;
    // The channel opens once the client has been told it is connected.
    Ok(Pending { caller, args })
}

/// What the handshake established, for the connect handler.
pub(super) struct Pending {
    caller: AuthUser,
    args: ChannelArgs,
}

/// Opens the channel of a connected socket and starts its sender; the listener is returned
/// for the client's events and its disconnect.
pub(super) fn on_connect(
    socket: SioSocket,
    state: &AppState,
    pending: Pending,
) -> Option<Arc<Listener>> {
    let Pending { caller, args } = pending;
    let listener = match state.hub.open(&state.store, caller, args) {
        Ok(listener) => listener,
        Err(e) => {
            socket.emit_final("closed", &serde_json::json!({"reason": e.code}));
            socket.disconnect();
            return None;
        }
    };
    let ready = serde_json::json!({"cursor": listener.cursor_text()});
    if socket.emit("ready", &ready, SEND_BUFFER).is_err() {
        state.hub.release(&listener);
        return None;
    }
    tokio::spawn(send_loop(socket, state.clone(), listener.clone()));
    Some(listener)
}

/// A client event: `filter` changes the channel's filters and answers `{"ok":true}` or an
/// error object; other events are ignored (None: nothing to acknowledge).
pub(super) fn on_event(
    listener: &Listener,
    event: &str,
    args: Vec<serde_json::Value>,
) -> Option<serde_json::Value> {
    if event != "filter" {
        return None;
    }
    let args = args.into_iter().next().unwrap_or_default();
    let parsed = serde_json::from_value::<FilterArgs>(args)
        .map_err(|e| ApiError::bad_request("invalid_filter", e.to_string()))
        .and_then(|f| parse_filter(&f.into_inbox_args()));
    Some(match parsed {
        Ok(filter) => {
            listener.set_filter(filter);
            serde_json::json!({"ok": true})
        }
        Err(e) => serde_json::json!({"error": {"code": e.code, "message": e.message}}),
    })
}

/// Sends the channel's items until it closes, then releases it.
async fn send_loop(socket: SioSocket, state: AppState, listener: Arc<Listener>) {
    // Where a resume must start: after the last item actually handed to the socket.
    let mut sent = listener.cursor_text();
    let reason = loop {
        match listener.next(&state.store).await {
            Ok(Next::Items(items)) => {
                let mut lagged = false;
                for item in items {
                    let Ok(raw) = RawValue::from_string(item.json) else {
                        continue;
                    };
                    if !emit_patiently(&socket, "entry", &raw).await {
                        lagged = true;
                        break;
                    }
                    sent = item.cursor;
                }
                if lagged {
                    break CloseReason::Lagged;
                }
            }
            Ok(Next::Counts(payload)) => {
                let Ok(raw) = RawValue::from_string(payload) else {
                    continue;
                };
                // Sent only when they change: a dropped one could leave the badge wrong for
                // good, so it waits like an entry (and a client that stays full is lagged).
                if !emit_patiently(&socket, "counts", &raw).await {
                    break CloseReason::Lagged;
                }
            }
            Ok(Next::Close(reason)) => break reason,
            Err(e) => {
                tracing::warn!(error = %e.message, "live inbox read failed");
                break CloseReason::Lagged;
            }
        }
    };
    if reason != CloseReason::Disconnected {
        let (event, data) = if reason.reconnect() {
            (
                "resume",
                serde_json::json!({"cursor": sent, "reason": reason.as_str()}),
            )
        } else {
            ("closed", serde_json::json!({"reason": reason.as_str()}))
        };
        socket.emit_final(event, &data);
        socket.disconnect();
    }
    state.hub.release(&listener);
}

/// Emits one event, waiting while the client's buffer is full; false once it has been full
/// for longer than [`LAG_DEADLINE`] or the socket is gone.
async fn emit_patiently(socket: &SioSocket, event: &str, data: &RawValue) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        match socket.emit(event, data, SEND_BUFFER) {
            Ok(()) => return true,
            Err(EmitError::Full) => {
                if started.elapsed() > LAG_DEADLINE {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(EmitError::Closed) => return false,
        }
    }
}
