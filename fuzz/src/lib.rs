//! The invariants the fuzz targets check, one function per target. Each takes the raw input
//! and panics when an invariant breaks. Shared by the cargo-fuzz targets (`fuzz_targets/`)
//! and, on stable, by `crates/tidings-server/tests/fuzz_corpus.rs`, which replays every file
//! under `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/` through them.
//!
//! The pure targets (`expr`, `search_query`, `canonical_json`, `cursor`, `activity`) call `tidings-core`
//! directly. The wire targets (`compat_bodies`, `engineio`) drive the whole HTTP surface
//! in-process (`tidings_server::api::router` over a temporary embedded store, called with
//! `tower::ServiceExt::oneshot`): the compat bodies and Engine.IO packets are parsed inside
//! their handlers, so that is where they are fuzzed. A 5xx or a panic there is a finding.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use std::sync::LazyLock;
use tidings_core::activity::{ACTIVITY_TYPES, Limits, OBJECT_TYPES, TypeStatus, normalize};
use tidings_core::canonical::{self, activity_digest, digest_hex, verify_activity};
use tidings_core::{cursor, expr as subscription};
use tower::ServiceExt;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `tag@circle`: parsing never panics, and what parses prints back to the same expression.
pub fn expr(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let _ = subscription::normalize_tag(input);
    let _ = subscription::normalize_slug(input);
    if let Ok(parsed) = subscription::parse(input) {
        let printed = parsed.to_string();
        let again = subscription::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again, parsed, "{input:?} → {printed:?} changed meaning");
        let _ = parsed.matches(&["a".into(), input.into()], input);
    }
}

/// Search queries: parsing never panics; a parsed query holds only words the index could
/// hold (letters and digits, lowercase-stable, at most 64 characters) and filters that are
/// valid names; a snippet of the input highlighted by it contains no markup but the marks.
pub fn search_query(data: &[u8]) {
    use tidings_core::search;
    let Some(input) = text(data) else { return };
    let marks = match search::parse(input) {
        Ok(query) => {
            for term in query.include.iter().chain(&query.exclude) {
                assert!(!term.words.is_empty(), "{input:?}: an empty term");
                for word in &term.words {
                    assert!(
                        !word.is_empty()
                            && word.chars().count() <= search::MAX_WORD_CHARS
                            && word.chars().all(char::is_alphanumeric)
                            && search::words(word) == [word.clone()],
                        "{input:?}: word {word:?} is not one the index holds"
                    );
                }
            }
            for name in query.from.iter().chain(&query.circles) {
                assert!(
                    subscription::is_valid_slug(name),
                    "{input:?}: name {name:?}"
                );
            }
            query.marks()
        }
        Err(e) => {
            assert!(!e.to_string().is_empty() && !e.code().is_empty());
            Vec::new()
        }
    };
    let snippet = search::highlight(input, &marks, 120);
    let bare = snippet
        .replace(search::MARK_OPEN, "")
        .replace(search::MARK_CLOSE, "");
    assert!(
        !bare.contains(['<', '>', '"', '\'']),
        "{input:?}: snippet {snippet:?} carries markup"
    );
}

/// Canonical JSON: a fixed point (canonical text parses back to a value with the same
/// canonical text), and the activity digest is the digest of the canonical text.
pub fn canonical_json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let canonical = canonical::canonical_json(&value);
    let reparsed: Value = serde_json::from_str(&canonical)
        .unwrap_or_else(|e| panic!("canonical text {canonical:?} is not JSON: {e}"));
    assert_eq!(
        canonical::canonical_json(&reparsed),
        canonical,
        "canonical JSON is not a fixed point"
    );
    if !value.as_object().is_some_and(|m| m.contains_key("digest")) {
        assert_eq!(activity_digest(&value), digest_hex(canonical.as_bytes()));
    }
    let _ = verify_activity(&value);
}

/// Cursors: decoding never panics; a cursor that decodes is the one spelling of its value;
/// every non-negative position round-trips and a negative one is refused.
pub fn cursor(data: &[u8]) {
    if let Some(input) = text(data)
        && let Ok(seq) = cursor::decode(input)
    {
        assert_eq!(
            cursor::encode(seq),
            input,
            "two spellings of position {seq}"
        );
    }
    if let Some(bytes) = data.get(..8) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        let seq = i64::from_be_bytes(raw);
        let decoded = cursor::decode(&cursor::encode(seq));
        if seq >= 0 {
            assert_eq!(decoded, Ok(seq));
        } else {
            assert_eq!(decoded, Err(cursor::CursorError::OutOfRange));
        }
    }
}

fn builtin_types(name: &str) -> TypeStatus {
    if ACTIVITY_TYPES.contains(&name) || OBJECT_TYPES.contains(&name) {
        TypeStatus::BuiltIn
    } else if name == "Poll" {
        // One registered custom type, so that path is taken too.
        TypeStatus::Custom
    } else {
        TypeStatus::Unknown
    }
}

/// Activity normalisation: never panics; what it accepts keeps the limits and becomes a
/// record whose canonical JSON is valid JSON.
pub fn activity(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let limits = Limits::default();
    let Ok(draft) = normalize(&value, &limits, &builtin_types) else {
        return;
    };
    assert!(
        draft.to.len() <= limits.max_audience,
        "audience over the limit"
    );
    assert!(draft.tags.len() <= limits.max_tags, "tags over the limit");
    assert!(
        draft.actions.len() <= limits.max_actions,
        "actions over the limit"
    );
    let _ = draft.system_tags();
    let record = draft.into_record(
        "0190a000-0000-7000-8000-000000000000",
        "user:fuzz",
        "2026-12-01T00:00:00Z",
    );
    let stored = canonical::canonical_json(&record);
    let _: Value = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("record {stored:?} is not JSON: {e}"));
    let _ = tidings_core::activity::record_tags(&record);
}

/// One in-process server for the wire targets: the whole router over a temporary embedded
/// store, with a user who has a session token and an activity-feed-system app key.
struct Wire {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
    app_key: String,
    _dir: tempfile::TempDir,
}

static WIRE: LazyLock<Wire> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, token) = runtime.block_on(async {
        let location = tidings_store::StoreLocation::Embedded(dir.path().into());
        let store = tidings_store::Store::open(&location, tidings_store::StoreConfig::default())
            .expect("store");
        let user = store
            .create_user("fuzz".into(), "fuzz".into(), None, false)
            .await
            .expect("user");
        let (token, token_hash) = tidings_server::auth::new_token();
        store
            .create_session(user.id, token_hash)
            .await
            .expect("session");
        let state =
            tidings_server::AppState::new(store, tidings_server::config::ServerConfig::default())
                .await
                .expect("state");
        (tidings_server::api::router(state), token)
    });
    let mut wire = Wire {
        runtime,
        app,
        token,
        app_key: String::new(),
        _dir: dir,
    };
    let bearer = format!("Bearer {}", wire.token);
    let (status, body) = wire.call(
        Method::POST,
        "/api/v1/me/app-key",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        b"{}".to_vec(),
    );
    assert_eq!(status, StatusCode::CREATED, "app key: {body:?}");
    let doc: Value = serde_json::from_slice(&body).expect("app key body");
    wire.app_key = doc["app_key"].as_str().expect("app key").to_owned();
    wire
});

impl Wire {
    fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body)).expect("request");
        self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            // Bounded: a long-poll or a stream must not hang the fuzzer.
            let body = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                axum::body::to_bytes(response.into_body(), 1 << 20),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_vec())
            .unwrap_or_default();
            assert!(
                !status.is_server_error(),
                "{method} {uri}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            (status, body)
        })
    }
}

/// Escapes what a URI cannot carry, keeping `=`, `&` and `%` so the query structure (and
/// percent-decoding) is still what is fuzzed.
fn query_text(data: &[u8]) -> String {
    let mut out = String::new();
    for b in data {
        if b.is_ascii_alphanumeric() || b"=&%-_.~+".contains(b) {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The compat profiles' request bodies: the first byte picks the route, the rest is the body
/// (or the query for FeedStream's consume). No input gets a 5xx.
pub fn compat_bodies(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let wire = &*WIRE;
    let json = ("content-type", "application/json");
    let key = ("x-app-key", wire.app_key.as_str());
    let routes: [(Method, &str, bool); 10] = [
        (Method::POST, "/v1/subscribe", false),
        (Method::POST, "/v1/unsubscribe", false),
        (Method::POST, "/v1/publish", false),
        (Method::POST, "/v1/retract", false),
        (Method::GET, "/v1/consume", false),
        (Method::POST, "/post", true),
        (Method::POST, "/activity", true),
        (Method::POST, "/follow", true),
        (Method::POST, "/unfollow", true),
        (Method::GET, "/feed/friends", true),
    ];
    let (method, path, afs) = routes[usize::from(pick) % routes.len()].clone();
    let headers: Vec<(&str, &str)> = if afs { vec![json, key] } else { vec![json] };
    if method == Method::GET {
        let uri = format!("{path}?{}", query_text(body));
        wire.call(method, &uri, &headers, Vec::new());
    } else {
        wire.call(method, path, &headers, body.to_vec());
    }
}

/// Engine.IO / Socket.IO packets posted on a polling session: no input gets a 5xx or a
/// panic. `TOKEN` in the input is replaced with a real session token, so the authenticated
/// connect and the events after it are reached too.
pub fn engineio(data: &[u8]) {
    let wire = &*WIRE;
    let (status, open) = wire.call(
        Method::GET,
        "/socket.io/?EIO=4&transport=polling",
        &[],
        Vec::new(),
    );
    assert_eq!(status, StatusCode::OK);
    let open = String::from_utf8_lossy(&open);
    let Some(sid) = open
        .strip_prefix('0')
        .and_then(|doc| serde_json::from_str::<Value>(doc).ok())
        .and_then(|doc| doc["sid"].as_str().map(str::to_owned))
    else {
        panic!("no session in the open packet {open:?}");
    };
    let payload = replace_token(data, wire.token.as_bytes());
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    wire.call(
        Method::POST,
        &uri,
        &[("content-type", "text/plain;charset=UTF-8")],
        payload,
    );
    // Close the session (if the packets did not) so sessions do not pile up.
    let _ = wire.call(
        Method::POST,
        &uri,
        &[("content-type", "text/plain;charset=UTF-8")],
        b"1".to_vec(),
    );
}

fn replace_token(data: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        if rest.starts_with(b"TOKEN") {
            out.extend_from_slice(token);
            rest = &rest[5..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// One target's check: panics when its invariant breaks.
pub type Check = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("expr", expr),
    ("search_query", search_query),
    ("canonical_json", canonical_json),
    ("cursor", cursor),
    ("activity", activity),
    ("compat_bodies", compat_bodies),
    ("engineio", engineio),
];
