//! The web app: static files from `web/` at the repository root, embedded in the binary.
//!
//! Release builds carry the files inside the binary (rust-embed); debug builds read them from
//! `web/` on disk so editing the UI needs no rebuild (see `docs/decisions/0007-web-ui-build-free.md`).
//! Every path that is not an asset and not under `/api/` or `/docs/` gets `index.html`, so the
//! app's own URLs (`/circles/eng`, `/a/ID`) survive a reload. Every response carries a strict
//! Content-Security-Policy: scripts only from this origin, never inline.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Assets;

/// What the browser may load: only this origin's scripts, styles and connections; images also
/// from the web because photo objects point at them (an image cannot run script), and `blob:`
/// for this server's media, fetched with the session's token.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob: https: http:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Routes of the web app, merged beside the API router (they use no state).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).fallback(fallback)
}

async fn index(headers: HeaderMap) -> Response {
    asset("index.html", &headers).unwrap_or_else(|| not_found("index.html is missing"))
}

async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    // Never shadow the API or the docs: an unknown path there is a real 404, not the app.
    if path.starts_with("/api/") || path == "/api" {
        return crate::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_route",
            "no such API route; see /api/v1/openapi.json",
        )
        .into_response();
    }
    if path.starts_with("/docs/") || path == "/docs" {
        return not_found("not found");
    }
    if method != Method::GET && method != Method::HEAD {
        return with_security(
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response(),
        );
    }
    let file = path.trim_start_matches('/');
    if file.split('/').any(|part| part == "..") {
        return not_found("not found");
    }
    if let Some(found) = asset(file, &headers) {
        return found;
    }
    // A missing file (anything with an extension) is a 404; other paths are the app's routes.
    let last = file.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return not_found("not found");
    }
    index(headers).await
}

/// Serves one embedded file with its content type, an ETag and revalidation caching.
fn asset(path: &str, headers: &HeaderMap) -> Option<Response> {
    let file = Assets::get(path)?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(path)));
    // File names carry no content hash, so the browser revalidates each time; a 304 is cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Some(with_security(response))
}

fn not_found(message: &'static str) -> Response {
    with_security((StatusCode::NOT_FOUND, message).into_response())
}

fn with_security(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Content type by extension: the handful of kinds `web/` holds.
fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::mime;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(mime("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime("index.html"), "text/html; charset=utf-8");
        assert_eq!(mime("style.css"), "text/css; charset=utf-8");
        assert_eq!(mime("x"), "application/octet-stream");
    }
}
