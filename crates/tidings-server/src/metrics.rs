//! Prometheus `/metrics`: what the server counts and who may read it.
//!
//! Recorded as requests pass ([`track`]): `tidings_http_requests_total{method,route,status}`
//! and `tidings_http_request_duration_seconds{method,route}` (a histogram). `route` is the
//! route's template (`/api/v1/users/{username}`), never the raw path, so the number of series
//! stays bounded whatever clients send; requests no route matched count as `unmatched`.
//!
//! Sampled when scraped ([`render`]): the log (`tidings_log_last_seq`, `tidings_routed_seq`,
//! `tidings_routing_backlog`: activities published and not yet routed), a PostgreSQL node's
//! change-log lag (`tidings_change_log_lag`), live push connections
//! (`tidings_push_connections`), and the store's size on disk (`tidings_store_bytes`).
//!
//! Who may read it ([`authorize`]): a peer on the loopback interface that came directly (no
//! `Forwarded`/`X-Forwarded-For` header, so a reverse proxy on the same machine does not make
//! the internet local), or anyone presenting the bearer token configured as
//! `[operations] metrics_token`. Metrics name routes, volumes and timings: useful to an
//! attacker sizing a target, so they are not public by default.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets in seconds: a millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed once (metrics are process-wide; several servers in one
/// test process share it).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder if it is not yet; None if another recorder was installed
/// first (then nothing is recorded here).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tidings_http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tidings_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "tidings_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_gauge!("tidings_log_last_seq", "Newest seq in the log");
    describe_gauge!("tidings_routed_seq", "Newest seq routed into inboxes");
    describe_gauge!(
        "tidings_routing_backlog",
        "Activities published and not yet routed"
    );
    describe_gauge!(
        "tidings_change_log_lag",
        "PostgreSQL change records this node has yet to apply"
    );
    describe_gauge!(
        "tidings_push_connections",
        "Live SSE and Socket.IO connections on this node"
    );
    describe_counter!(
        "tidings_webhook_attempts_total",
        "Webhook delivery attempts made by this node, by outcome (delivered, failed, \
         throttled, gone, timeout, refused, error)"
    );
    describe_histogram!(
        "tidings_webhook_attempt_duration_seconds",
        Unit::Seconds,
        "Webhook delivery attempt latency"
    );
    describe_gauge!(
        "tidings_store_bytes",
        Unit::Bytes,
        "Bytes the store takes on disk"
    );
}

/// Middleware: counts each request by method, route template and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route)];
    metrics::histogram!("tidings_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    let [method, route] = labels;
    metrics::counter!(
        "tidings_http_requests_total",
        &[method, route, ("status", status)]
    )
    .increment(1);
    response
}

/// Whether the caller may read the metrics: a direct loopback peer, or the configured token.
pub fn authorize(
    config_token: Option<&str>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let forwarded = headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for");
    if peer.is_some_and(|p| p.ip().is_loopback()) && !forwarded {
        return Ok(());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (config_token, presented) {
        (Some(expected), Some(given)) if constant_time_eq(expected, given) => Ok(()),
        (Some(_), _) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "metrics_token_required",
            "metrics need the bearer token configured as [operations] metrics_token",
        )),
        (None, _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "metrics_loopback_only",
            "metrics are served to loopback clients only unless [operations] metrics_token is set",
        )),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn render(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    authorize(
        state.config.metrics_token.as_deref(),
        peer,
        request.headers(),
    )?;
    sample(&state).await;
    let body = install().map(|h| {
        h.run_upkeep();
        h.render()
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body.unwrap_or_default(),
    )
        .into_response())
}

/// Reads the gauges that are cheaper to sample at scrape time than to keep current.
async fn sample(state: &AppState) {
    let store = &state.store;
    let routed = store.routed_seq();
    metrics::gauge!("tidings_routed_seq").set(routed as f64);
    match store.last_seq().await {
        Ok(last) => {
            metrics::gauge!("tidings_log_last_seq").set(last as f64);
            metrics::gauge!("tidings_routing_backlog").set((last - routed).max(0) as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the log head"),
    }
    if let Ok(lag) = store.lag().await {
        metrics::gauge!("tidings_change_log_lag").set(lag as f64);
    }
    metrics::gauge!("tidings_push_connections").set(state.hub.connections() as f64);
    match store.size_bytes().await {
        Ok(bytes) => metrics::gauge!("tidings_store_bytes").set(bytes as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the store's size"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn loopback_direct_or_the_token_may_read_and_nobody_else() {
        let local: Option<SocketAddr> = "127.0.0.1:5000".parse().ok();
        let local6: Option<SocketAddr> = "[::1]:5000".parse().ok();
        let remote: Option<SocketAddr> = "203.0.113.9:5000".parse().ok();
        let token = Some("0123456789abcdef");
        let none = headers(&[]);
        let proxied = headers(&[("x-forwarded-for", "198.51.100.1")]);
        let forwarded = headers(&[("forwarded", "for=198.51.100.1")]);
        let bearer = headers(&[("authorization", "Bearer 0123456789abcdef")]);
        let wrong = headers(&[("authorization", "Bearer 0123456789abcdeX")]);
        let status = |r: Result<(), ApiError>| r.err().map(|e| e.status.as_u16());
        assert_eq!(status(authorize(None, local, &none)), None);
        assert_eq!(status(authorize(None, local6, &none)), None);
        assert_eq!(status(authorize(None, local, &proxied)), Some(403));
        assert_eq!(status(authorize(None, local, &forwarded)), Some(403));
        assert_eq!(status(authorize(None, remote, &none)), Some(403));
        assert_eq!(status(authorize(None, remote, &bearer)), Some(403));
        assert_eq!(status(authorize(None, None, &none)), Some(403));
        assert_eq!(status(authorize(token, remote, &bearer)), None);
        assert_eq!(status(authorize(token, remote, &wrong)), Some(401));
        assert_eq!(status(authorize(token, remote, &none)), Some(401));
        assert_eq!(status(authorize(token, local, &proxied)), Some(401));
    }

    #[test]
    fn token_comparison_needs_the_whole_token() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(!constant_time_eq("", "a"));
    }
}
