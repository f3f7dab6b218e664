//! The embedded web app as HTTP: content types, the Content-Security-Policy, revalidation, and
//! an SPA fallback that never answers for the API or the docs.

mod common;

use common::TestServer;
use reqwest::StatusCode;

async fn get(server: &TestServer, path: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{}", server.base, path));
    if let Some(etag) = etag {
        req = req.header("if-none-match", etag);
    }
    req.send().await.expect("request")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn serves_the_app_with_types_csp_and_etags() {
    let server = TestServer::start().await;
    let index = get(&server, "/", None).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    let csp = header(&index, "content-security-policy").to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    assert!(index.text().await.expect("body").contains("/js/app.js"));

    for (path, ty) in [
        ("/js/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let r = get(&server, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, "content-type"), ty, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        let etag = header(&r, "etag").to_owned();
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let again = get(&server, path, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
}

#[tokio::test]
async fn app_routes_fall_back_to_index_but_never_shadow_api_or_docs() {
    let server = TestServer::start().await;
    for path in ["/circles/eng", "/a/some-id", "/login?next=/"] {
        let r = get(&server, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    }
    for path in ["/js/missing.js", "/docs/missing", "/js/../../Cargo.toml"] {
        let r = get(&server, path, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/api/v1/no-such-route", "/api/other"] {
        let r = get(&server, path, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "no_such_route", "{path}");
    }
    let docs = get(&server, "/docs/", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(!docs.text().await.expect("body").contains("/js/app.js"));
    let api = get(&server, "/api/v1/me", None).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}
