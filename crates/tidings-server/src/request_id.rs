//! The request id: `x-request-id` on every response and in every log line of its request.
//!
//! A caller's own id is kept when it is 1–128 visible ASCII characters from a safe set
//! (letters, digits, `-`, `_`, `.`, `:`, `/`, `+`, `=`), so a proxy's or client's id can be
//! followed through our logs; anything else (too long, spaces, control characters that could
//! forge log lines) is replaced by a fresh UUIDv7. tower-http's layers set and echo the header;
//! this module decides what is acceptable and names the tracing span every log line of the
//! request is written in.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The header that carries the id both ways.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a caller.
pub const MAX_LEN: usize = 128;

/// Whether a caller's id may be kept as it is.
pub fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// Drops an incoming id outside the bounds, so a fresh one is made for the request.
pub fn drop_unacceptable(mut request: Request) -> Request {
    let bad = request
        .headers()
        .get_all(&HEADER)
        .iter()
        .enumerate()
        .any(|(i, v)| i > 0 || !acceptable(v));
    if bad {
        request.headers_mut().remove(&HEADER);
    }
    request
}

/// Makes fresh ids: UUIDv7, so they sort by time like the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeUuidV7;

impl MakeRequestId for MakeUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The span each request's log lines are written in, carrying its id.
pub fn span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        uri = %request.uri().path(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_within_bounds_are_kept_and_others_are_not() {
        let ok = |s: &str| acceptable(&HeaderValue::from_str(s).expect("header"));
        assert!(ok("abc-123"));
        assert!(ok("01a23112-d8d7-7723-99f4-c16111065152"));
        assert!(ok("trace:span/1+2=3_4.5"));
        assert!(ok(&"x".repeat(MAX_LEN)));
        assert!(!ok(&"x".repeat(MAX_LEN + 1)));
        assert!(!ok(""));
        assert!(!ok("two words"));
        assert!(!ok("quote\"d"));
        assert!(!acceptable(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header")
        ));
    }

    #[test]
    fn an_unacceptable_or_repeated_id_is_dropped() {
        let with = |values: &[&str]| {
            let mut request = Request::new(axum::body::Body::empty());
            for v in values {
                request
                    .headers_mut()
                    .append(&HEADER, HeaderValue::from_str(v).expect("header"));
            }
            drop_unacceptable(request)
                .headers()
                .get_all(&HEADER)
                .iter()
                .count()
        };
        assert_eq!(with(&["good-1"]), 1);
        assert_eq!(with(&["bad id"]), 0);
        assert_eq!(with(&["good-1", "good-2"]), 0);
        assert_eq!(with(&[]), 0);
    }
}
