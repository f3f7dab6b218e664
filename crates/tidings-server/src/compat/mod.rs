//! Compat profiles: the documented APIs of two seed systems, spoken exactly, on the same
//! engine (`docs/decisions/0009-compat-profiles.md`).
//!
//! - [`feedstream`] — FeedStream's `/v1/subscribe`, `/v1/unsubscribe`, `/v1/publish`,
//!   `/v1/retract`, `/v1/consume`: opaque producer/consumer ids, no authentication (trusted
//!   internal callers), feeds from the same `[[feeds]]` configuration.
//! - [`afs`] — activity-feed-system's `/me`, `/post`, `/activity`, `/feed/my`, `/feed/friends`,
//!   `/follow`, `/unfollow`, authenticated by an `X-App-Key` header.
//!
//! Both are on by default; `[compat] feedstream = false` / `afs = false` turn one off (its routes
//! then answer 404 in the profile's own error shape).

pub mod afs;
pub mod feedstream;

use crate::AppState;
use axum::Router;
use serde::Deserialize;
use std::time::Duration;

/// How long a compat write waits for routing before answering: these APIs have no cursors to
/// poll with, so a caller expects to read its own write right after a 2xx.
const ROUTE_WAIT: Duration = Duration::from_secs(5);

/// Which compat profiles are served (`[compat]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatConfig {
    /// FeedStream's `/v1/*` (no authentication: for trusted internal callers).
    #[serde(default = "on")]
    pub feedstream: bool,
    /// activity-feed-system's `/me`, `/post`, … (`X-App-Key`).
    #[serde(default = "on")]
    pub afs: bool,
}

fn on() -> bool {
    true
}

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig {
            feedstream: true,
            afs: true,
        }
    }
}

/// The routes of both profiles (answering "disabled" when turned off).
pub fn router(state: &AppState) -> Router<AppState> {
    feedstream::register_types(state);
    afs::register_types(state);
    Router::new()
        .merge(feedstream::routes(state.config.compat.feedstream))
        .merge(afs::routes(state.config.compat.afs))
}

/// Waits (bounded) until the activity at `seq` is routed, so the next read sees it. A timeout
/// is not an error: the write is durable either way.
async fn settle(state: &AppState, seq: i64) {
    let _ = tokio::time::timeout(ROUTE_WAIT, state.store.wait_routed(seq)).await;
}

/// A request body as read, or why it could not be (too large, broken connection).
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// Parses a request body as a JSON object without caring about its content type (the seeds'
/// clients do not always send one). `None` when the body is empty; the error carries the
/// status to answer with.
fn json_object(
    body: &Body,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, (axum::http::StatusCode, String)> {
    let bytes = body.as_ref().map_err(|e| (e.status(), e.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let bad = |m: String| (axum::http::StatusCode::BAD_REQUEST, m);
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(bad("the body must be a JSON object".into())),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
    }
}
