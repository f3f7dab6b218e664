//! HTTP-level tests: users, sessions, admin moderation, circles, memberships, subscriptions.

mod common;

use common::{Resp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

/// POST /users without a token.
async fn signup(s: &TestServer, body: Value) -> Resp {
    s.request(Method::POST, "/users", None, Some(body), &[])
        .await
}

/// POST /sessions without a token.
async fn try_login(s: &TestServer, username: &str, password: &str) -> Resp {
    s.request(
        Method::POST,
        "/sessions",
        None,
        Some(json!({"username": username, "password": password})),
        &[],
    )
    .await
}

/// PUT a membership with a JSON body.
async fn put_body(s: &TestServer, token: &str, path: &str, body: Value) -> Resp {
    s.request(Method::PUT, path, Some(token), Some(body), &[])
        .await
}

/// Sends a raw body with the given content type (no token); returns status and JSON body.
async fn raw(
    s: &TestServer,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/api/v1{}", s.base, path))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A server where every circle with a subscriber is merged into inboxes at read time.
/// Declares a routing test twice: with circles fanned out on write (the default server) and
/// with every circle merged at read time; both must pass the same assertions.
macro_rules! both_strategies {
    ($fan_out:ident, $merged:ident, $body:ident) => {
        #[tokio::test]
        async fn $fan_out() {
            $body(TestServer::start().await).await;
        }

        #[tokio::test]
        async fn $merged() {
            $body(merged_server().await).await;
        }
    };
}

async fn merged_server() -> TestServer {
    TestServer::start_with(
        ServerConfig::default(),
        StoreConfig {
            merge_threshold: 0,
            ..Default::default()
        },
    )
    .await
}

/// GET /inbox, asserting 200.
async fn inbox(s: &TestServer, token: &str) -> Value {
    let r = s.get(token, "/inbox?limit=100").await;
    assert_eq!(r.status, StatusCode::OK, "inbox: {:?}", r.body);
    r.body
}

/// (content, via) pairs of an inbox page, newest first.
fn vias(page: &Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["activity"]["object"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                i["via"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The caller's subscription expressions.
async fn sub_exprs(s: &TestServer, token: &str) -> Vec<String> {
    let r = s.get(token, "/subscriptions").await;
    assert_eq!(r.status, StatusCode::OK, "subscriptions: {:?}", r.body);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["expr"].as_str().expect("expr").to_owned())
        .collect()
}

/// Usernames listed in a membership list body, with their role and state.
fn members(body: &Value) -> Vec<(String, String, String)> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap_or("").to_owned(),
                m["role"].as_str().unwrap_or("").to_owned(),
                m["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Circle names in a circle list or membership list body.
fn names(body: &Value, field: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c[field].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Asserts the error body shape and the code/status.
fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}: {:?}", r.body);
    assert_eq!(r.code(), code, "body: {:?}", r.body);
    let error = r.body["error"].as_object().expect("error object");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message: {:?}",
        r.body
    );
    assert!(
        error
            .keys()
            .all(|k| ["code", "message", "details"].contains(&k.as_str())),
        "unexpected error keys: {:?}",
        r.body
    );
    if let Some(details) = error.get("details") {
        assert!(
            details.is_object(),
            "details must be an object: {details:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Users and sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn signup_login_me_logout() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    let me = s.get(&token, "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "ana");
    assert_eq!(
        s.delete(&token, "/sessions/current").await.status,
        StatusCode::NO_CONTENT
    );
    let after = s.get(&token, "/me").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "unauthenticated");
}

#[tokio::test]
async fn signup_returns_profile_without_secrets_and_login_returns_token_and_user() {
    let s = TestServer::start().await;
    let r = signup(
        &s,
        json!({"username": "ana", "password": "correct horse", "display_name": "Ana Lima"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["username"], "ana");
    assert_eq!(r.body["display_name"], "Ana Lima");
    assert_eq!(r.body["is_admin"], false);
    assert_eq!(r.body["status"], "active");
    let text = r.body.to_string();
    assert!(!text.contains("correct horse"), "{text}");
    assert!(!text.contains("argon2"), "{text}");

    // display_name is optional and defaults to the username.
    let r = signup(&s, json!({"username": "bob", "password": "correct horse"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["display_name"], "bob");

    let login = try_login(&s, "ana", "correct horse").await;
    assert_eq!(login.status, StatusCode::CREATED, "{:?}", login.body);
    let token = login.body["token"].as_str().expect("token");
    assert!(token.len() >= 32, "token too short: {token}");
    assert_eq!(login.body["user"]["username"], "ana");
    assert!(!login.body.to_string().contains("correct horse"));

    // Two logins give different tokens.
    let again = try_login(&s, "ana", "correct horse").await;
    assert_ne!(again.body["token"], login.body["token"]);

    // Another user's profile.
    let bob = s.login("bob", "correct horse").await;
    let profile = s.get(&bob, "/users/ana").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.body["username"], "ana");
    assert_eq!(profile.body["display_name"], "Ana Lima");
    assert_error(
        &s.get(&bob, "/users/nobody").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn passwords_are_argon2_hashed_and_tokens_stored_hashed() {
    let s = TestServer::start().await;
    let password = "zebra-quartz-4711";
    let r = signup(&s, json!({"username": "ana", "password": password})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = s.login("ana", password).await;

    let (_, hash) = s.store.user_with_password("ana").await.expect("user");
    let hash = hash.expect("a password hash is stored");
    assert!(hash.starts_with("$argon2"), "not argon2: {hash}");
    assert!(!hash.contains(password));
    // Salted: the same password hashes differently for another user.
    let r = signup(&s, json!({"username": "bob", "password": password})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (_, other) = s.store.user_with_password("bob").await.expect("user");
    assert_ne!(other.expect("hash"), hash);

    // Nothing stored holds the password or the token in clear; the token's hash is stored.
    assert!(!s.stored_contains(password));
    assert!(!s.stored_contains(&token));
    let token_hash = tidings_server::auth::token_hash(&token);
    assert!(s.stored_contains(&token_hash));
}

#[tokio::test]
async fn sessions_are_independent_and_logout_revokes_only_the_current_one() {
    let s = TestServer::start().await;
    let first = s.user("ana").await;
    let second = s.login("ana", "correct horse").await;
    assert_ne!(first, second);
    assert_eq!(
        s.delete(&first, "/sessions/current").await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&first, "/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    // Logging out again with the revoked token is 401, not a second 204.
    assert_error(
        &s.delete(&first, "/sessions/current").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let me = s.get(&second, "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "ana");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_the_same_401() {
    let s = TestServer::start().await;
    s.user("ana").await;
    let wrong = try_login(&s, "ana", "incorrect horse").await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    let unknown = try_login(&s, "nobody", "correct horse").await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_credentials");
    // No user enumeration through the message either.
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.body.get("token").is_none());
}

#[tokio::test]
async fn missing_or_garbage_bearer_is_401() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    for path in ["/me", "/inbox", "/subscriptions", "/circles"] {
        let none = s.request(Method::GET, path, None, None, &[]).await;
        assert_error(&none, StatusCode::UNAUTHORIZED, "unauthenticated");
        let garbage = s.get("garbage", path).await;
        assert_error(&garbage, StatusCode::UNAUTHORIZED, "unauthenticated");
        // A token that looks real but is not one.
        let forged = s.get(&format!("{token}0"), path).await;
        assert_error(&forged, StatusCode::UNAUTHORIZED, "unauthenticated");
        for header in ["Bearer ", "Basic YW5hOmNvcnJlY3QgaG9yc2U=", &token] {
            let r = s
                .request(Method::GET, path, None, None, &[("authorization", header)])
                .await;
            assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
        }
    }
    // Writes too: nothing is created without a token.
    let r = s
        .request(
            Method::POST,
            "/circles",
            None,
            Some(json!({"name": "eng"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_error(
        &s.get(&token, "/circles/eng").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn bad_usernames_are_400_and_create_nothing() {
    let s = TestServer::start().await;
    let long = "a".repeat(64);
    for bad in [
        "Ana",
        "ANA",
        "ana bob",
        " ana",
        "ana ",
        "",
        "   ",
        long.as_str(),
        "-ana",
        "_ana",
        "ana!",
        "an@a",
        "ána",
        "ana/../bob",
    ] {
        let r = signup(&s, json!({"username": bad, "password": "correct horse"})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_username");
    }
    assert_eq!(s.store.user_count().await.unwrap(), 0);
    // Neither the raw nor the lowercased/trimmed form was created.
    assert_error(
        &try_login(&s, "ana", "correct horse").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );

    // The limits themselves are fine: 63 characters, digits, '-' and '_'.
    let max = "b".repeat(63);
    for good in [max.as_str(), "0day", "a-b_c"] {
        let r = signup(&s, json!({"username": good, "password": "correct horse"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{good}: {:?}", r.body);
    }
}

#[tokio::test]
async fn bad_passwords_and_display_names_are_400_and_create_nothing() {
    let s = TestServer::start().await;
    let huge = "x".repeat(1025);
    for bad in ["", "short", "1234567", huge.as_str()] {
        let r = signup(&s, json!({"username": "ana", "password": bad})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_password");
    }
    let long_name = "N".repeat(101);
    // Checked as sent, as the document's maxLength and pattern say: blanks around a long name
    // or a trailing newline are not trimmed into shape first.
    let padded = format!(" {} ", "N".repeat(99));
    for bad in [
        long_name.as_str(),
        "Ana\nLima",
        "Ana\u{7}",
        "Ana\n",
        padded.as_str(),
    ] {
        let r = signup(
            &s,
            json!({"username": "ana", "password": "correct horse", "display_name": bad}),
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_display_name");
    }
    assert_eq!(s.store.user_count().await.unwrap(), 0);
    // Eight characters is enough.
    let r = signup(&s, json!({"username": "ana", "password": "12345678"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    s.login("ana", "12345678").await;
}

#[tokio::test]
async fn unknown_fields_malformed_json_and_wrong_content_type_are_clear_errors() {
    let s = TestServer::start().await;

    // An unknown field, notably an attempt to self-grant admin.
    let r = signup(
        &s,
        json!({"username": "ana", "password": "correct horse", "is_admin": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r);
    assert_eq!(r.code(), "invalid_json", "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("is_admin"),
        "message should name the field: {:?}",
        r.body
    );

    // A missing required field.
    let r = signup(&s, json!({"username": "ana"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r);
    assert_eq!(r.code(), "invalid_json");

    // A field of the wrong type.
    let r = signup(&s, json!({"username": 42, "password": "correct horse"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r);
    assert_eq!(r.code(), "invalid_json");

    // Malformed JSON.
    let (status, body) = raw(
        &s,
        Method::POST,
        "/users",
        Some("application/json"),
        r#"{"username": "ana", "password": "#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    assert_eq!(body["error"]["code"], "invalid_json");

    // Right JSON, wrong content type, and no content type at all.
    let valid = r#"{"username": "ana", "password": "correct horse"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let (status, body) = raw(&s, Method::POST, "/users", ct, valid).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct:?}: {body:?}"
        );
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }

    // An empty body, and a body over the size limit.
    let (status, body) = raw(&s, Method::POST, "/users", Some("application/json"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    assert_eq!(body["error"]["code"], "invalid_json");
    let r = signup(
        &s,
        json!({"username": "ana", "password": "x".repeat(300_000)}),
    )
    .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    // Login validates its body the same way.
    let r = s
        .request(
            Method::POST,
            "/sessions",
            None,
            Some(json!({"username": "ana", "password": "correct horse", "remember": true})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_json");
    let (status, body) = raw(
        &s,
        Method::POST,
        "/sessions",
        Some("application/json"),
        "not json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    assert_eq!(body["error"]["code"], "invalid_json");

    // Nothing was created by any of it.
    assert_eq!(s.store.user_count().await.unwrap(), 0);

    // A JSON content type with parameters is fine.
    let (status, body) = raw(
        &s,
        Method::POST,
        "/users",
        Some("application/json; charset=utf-8"),
        valid,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
}

#[tokio::test]
async fn taken_username_is_409_and_leaves_the_original_alone() {
    let s = TestServer::start().await;
    s.user("ana").await;
    let r = signup(
        &s,
        json!({"username": "ana", "password": "another password", "display_name": "Impostor"}),
    )
    .await;
    assert_error(&r, StatusCode::CONFLICT, "username_taken");
    assert_eq!(s.store.user_count().await.unwrap(), 1);
    // The original keeps its password and profile.
    assert_error(
        &try_login(&s, "ana", "another password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    let token = s.login("ana", "correct horse").await;
    assert_eq!(s.get(&token, "/me").await.body["display_name"], "ANA");
}

#[tokio::test]
async fn closed_registration_is_403_and_creates_nothing() {
    let config = ServerConfig {
        registration_open: false,
        ..Default::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let r = signup(&s, json!({"username": "ana", "password": "correct horse"})).await;
    assert_error(&r, StatusCode::FORBIDDEN, "registration_closed");
    assert_eq!(s.store.user_count().await.unwrap(), 0);
    assert_error(
        &try_login(&s, "ana", "correct horse").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    // Accounts created by an operator still work.
    let admin = s.admin("root").await;
    assert_eq!(s.get(&admin, "/me").await.body["is_admin"], true);
    s.login("root", "correct horse").await;
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    for (method, path) in [
        (Method::PATCH, "/me"),
        (Method::POST, "/me"),
        (Method::GET, "/subscriptions/1"),
        (Method::PUT, "/users/ana"),
        (Method::GET, "/sessions"),
    ] {
        let r = s
            .request(method.clone(), path, Some(&token), None, &[])
            .await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(
            r.headers.contains_key("allow"),
            "{method} {path}: no Allow header"
        );
    }
    // Nothing was changed by the attempt.
    assert_eq!(s.get(&token, "/me").await.status, StatusCode::OK);
}

#[tokio::test]
async fn undecodable_path_segment_is_a_json_400() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    // Each path with a method its route accepts: a GET on a PUT/DELETE-only route is a 405
    // before any segment is decoded.
    for (method, path) in [
        (Method::GET, "/users/%FF"),
        (Method::GET, "/circles/%FF"),
        (Method::DELETE, "/circles/%FF/members/%FE"),
        (Method::PUT, "/circles/eng/members/%FE"),
        (Method::POST, "/activities/x/actions/%FF"),
        (Method::DELETE, "/subscriptions/%FF"),
    ] {
        let r = s
            .request(method.clone(), path, Some(&token), None, &[])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}: {r:?}");
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_path");
        assert!(
            r.body["error"]["details"]["param"].is_string(),
            "{method} {path}: the parameter is named: {r:?}"
        );
    }
}

#[tokio::test]
async fn unknown_api_route_is_a_json_404() {
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    assert_error(
        &s.get(&token, "/no/such/thing").await,
        StatusCode::NOT_FOUND,
        "no_such_route",
    );
}

// ---------------------------------------------------------------------------------------------
// Admin moderation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn non_admins_get_403_admin_only_and_change_nothing() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    for path in ["/users/bob/suspend", "/users/bob/unsuspend"] {
        let r = s.post(&ana, path, json!({})).await;
        assert_error(&r, StatusCode::FORBIDDEN, "admin_only");
    }
    assert_error(
        &s.delete(&ana, "/users/bob").await,
        StatusCode::FORBIDDEN,
        "admin_only",
    );
    // Registering custom types is an admin route too.
    let r = s
        .post(
            &ana,
            "/types",
            json!({"name": "Poll", "kind": "object", "schema": {"type": "object"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "admin_only");
    let me = s.get(&bob, "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["status"], "active");
}

#[tokio::test]
async fn suspension_revokes_sessions_and_blocks_login_publish_and_read() {
    let s = TestServer::start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let ana2 = s.login("ana", "correct horse").await;
    s.note(&ana, "before", &["public"], &[]).await;

    let r = s.post(&admin, "/users/ana/suspend", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "suspended");

    for token in [&ana, &ana2] {
        assert_error(
            &s.get(token, "/me").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
        assert_error(
            &s.get(token, "/inbox").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
        let publish = s
            .post(
                token,
                "/outbox",
                json!({"type": "Create", "object": {"type": "Note", "content": "x"}, "to": ["public"]}),
            )
            .await;
        assert_error(&publish, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    assert_error(
        &try_login(&s, "ana", "correct horse").await,
        StatusCode::FORBIDDEN,
        "account_suspended",
    );
    // A wrong password does not reveal the suspension.
    assert_error(
        &try_login(&s, "ana", "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    // Others see the status, and cannot enrol a suspended user.
    assert_eq!(
        s.get(&admin, "/users/ana").await.body["status"],
        "suspended"
    );
    s.circle(&admin, "eng", "public", "invite").await;
    assert_error(
        &s.put(&admin, "/circles/eng/members/ana").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "user_inactive",
    );
}

#[tokio::test]
async fn unsuspended_user_can_log_in_again_but_old_tokens_stay_dead() {
    let s = TestServer::start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    assert_eq!(
        s.post(&admin, "/users/ana/suspend", json!({})).await.status,
        StatusCode::OK
    );
    let r = s.post(&admin, "/users/ana/unsuspend", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "active");
    assert_error(
        &s.get(&ana, "/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let fresh = s.login("ana", "correct horse").await;
    assert_eq!(s.get(&fresh, "/me").await.body["status"], "active");
    s.note(&fresh, "back again", &["public"], &[]).await;
}

#[tokio::test]
async fn admin_moderation_edge_cases() {
    let s = TestServer::start().await;
    let admin = s.admin("root").await;
    assert_error(
        &s.post(&admin, "/users/nobody/suspend", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.delete(&admin, "/users/nobody").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post(&admin, "/users/root/suspend", json!({})).await,
        StatusCode::CONFLICT,
        "cannot_suspend_self",
    );
    assert_eq!(s.get(&admin, "/me").await.status, StatusCode::OK);
    // An admin can suspend another admin.
    let other = s.admin("root2").await;
    assert_eq!(
        s.post(&admin, "/users/root2/suspend", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(s.get(&other, "/me").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deleted_user_is_revoked_but_its_activities_stay_readable() {
    let s = TestServer::start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    let note = s
        .note(&ana, "my last words", &["circle:eng"], &["farewell"])
        .await;
    let id = note["id"].as_str().expect("id").to_owned();
    assert_eq!(note["tidings"]["actor"]["deleted"], false);

    assert_eq!(
        s.delete(&admin, "/users/ana").await.status,
        StatusCode::NO_CONTENT
    );

    // Sessions revoked, login refused.
    assert_error(
        &s.get(&ana, "/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(
        try_login(&s, "ana", "correct horse").await.status,
        StatusCode::UNAUTHORIZED
    );

    // The activity is unchanged, but its actor shows as deleted.
    let r = s.get(&bob, &format!("/activities/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["object"]["content"], "my last words");
    assert_eq!(r.body["digest"], note["digest"]);
    assert_eq!(r.body["actor"], note["actor"]);
    assert_eq!(r.body["tidings"]["actor"]["deleted"], true);
    let stream = s.get(&bob, "/circles/eng/stream").await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(TestServer::ids(&stream.body), vec![id.clone()]);
    assert_eq!(
        stream.body["items"][0]["activity"]["tidings"]["actor"]["deleted"],
        true
    );

    // The profile says deleted; the name stays taken; the state is final.
    assert_eq!(s.get(&bob, "/users/ana").await.body["status"], "deleted");
    assert_error(
        &signup(&s, json!({"username": "ana", "password": "correct horse"})).await,
        StatusCode::CONFLICT,
        "username_taken",
    );
    assert_error(
        &s.post(&admin, "/users/ana/unsuspend", json!({})).await,
        StatusCode::CONFLICT,
        "user_deleted",
    );
}

// ---------------------------------------------------------------------------------------------
// Own account: devices, expiry, password change, self-deletion
// ---------------------------------------------------------------------------------------------

/// Logs in from a device that sends `agent` as its User-Agent; returns the login body.
async fn login_from(s: &TestServer, username: &str, password: &str, agent: &str) -> Value {
    let r = s
        .request(
            Method::POST,
            "/sessions",
            None,
            Some(json!({"username": username, "password": password})),
            &[("user-agent", agent)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

fn token_of(login: &Value) -> String {
    login["token"].as_str().expect("token").to_owned()
}

/// The caller's sessions as (id, current, user agent), in the order listed.
async fn my_sessions(s: &TestServer, token: &str) -> Vec<(String, bool, String)> {
    let r = s.get(token, "/me/sessions").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_owned(),
                i["current"].as_bool().expect("current"),
                i["user_agent"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// DELETE with a JSON body.
async fn delete_body(s: &TestServer, token: &str, path: &str, body: Value) -> Resp {
    s.request(Method::DELETE, path, Some(token), Some(body), &[])
        .await
}

/// A server whose sessions expire after `ttl` unused and are refreshed at most every `refresh`.
async fn server_with_sessions(
    ttl: std::time::Duration,
    refresh: std::time::Duration,
) -> TestServer {
    TestServer::start_with(
        ServerConfig {
            sessions: tidings_server::config::SessionConfig {
                ttl,
                refresh,
                ..Default::default()
            },
            ..ServerConfig::default()
        },
        StoreConfig::default(),
    )
    .await
}

#[tokio::test]
async fn each_device_is_listed_and_can_be_signed_out_alone() {
    let s = TestServer::start().await;
    s.user("ana").await;
    let bob = s.user("bob").await;
    let laptop = login_from(&s, "ana", "correct horse", "Laptop Firefox").await;
    let phone = login_from(&s, "ana", "correct horse", "Phone Safari").await;
    let (laptop_token, phone_token) = (token_of(&laptop), token_of(&phone));
    // The login answer names the session and says when it expires.
    let laptop_id = laptop["session"]["id"].as_str().expect("id").to_owned();
    assert!(
        laptop["session"]["expires_at"]
            .as_str()
            .is_some_and(|t| t > "2026")
    );

    let listed = s.get(&phone_token, "/me/sessions").await;
    assert_eq!(listed.status, StatusCode::OK);
    let text = listed.body.to_string();
    assert!(
        !text.contains(&laptop_token) && !text.contains(&phone_token),
        "no tokens: {text}"
    );
    let items = listed.body["items"].as_array().expect("items");
    // The signup helper's session, the laptop, the phone.
    assert_eq!(items.len(), 3, "{text}");
    let laptop_row = items
        .iter()
        .find(|i| i["id"] == laptop_id.as_str())
        .expect("laptop");
    assert_eq!(laptop_row["user_agent"], "Laptop Firefox");
    assert_eq!(laptop_row["ip"], "127.0.0.1");
    assert_eq!(laptop_row["current"], false);
    for key in ["created_at", "last_used_at", "expires_at"] {
        assert!(laptop_row[key].is_string(), "{key}: {laptop_row}");
    }
    let current: Vec<_> = my_sessions(&s, &phone_token)
        .await
        .into_iter()
        .filter(|(_, current, _)| *current)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].2, "Phone Safari");

    // Another user cannot see or end ana's sessions: her ids are unknown to him.
    assert!(
        my_sessions(&s, &bob)
            .await
            .iter()
            .all(|(id, _, _)| *id != laptop_id)
    );
    assert_error(
        &s.delete(&bob, &format!("/me/sessions/{laptop_id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(s.get(&laptop_token, "/me").await.status, StatusCode::OK);

    // The phone signs the laptop out; the phone stays signed in.
    assert_eq!(
        s.delete(&phone_token, &format!("/me/sessions/{laptop_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&laptop_token, "/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(s.get(&phone_token, "/me").await.status, StatusCode::OK);
    assert!(
        my_sessions(&s, &phone_token)
            .await
            .iter()
            .all(|(id, _, _)| *id != laptop_id)
    );
    assert_error(
        &s.delete(&phone_token, &format!("/me/sessions/{laptop_id}"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.delete(&phone_token, "/me/sessions/no-such-session").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A device may sign itself out by its own id too.
    let phone_id = phone["session"]["id"].as_str().expect("id");
    assert_eq!(
        s.delete(&phone_token, &format!("/me/sessions/{phone_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&phone_token, "/me/sessions").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
}

#[tokio::test]
async fn an_unused_session_expires_with_a_clear_401_and_use_keeps_one_alive() {
    let s = server_with_sessions(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(500),
    )
    .await;
    let used = s.user("ana").await;
    let idle = s.login("ana", "correct horse").await;
    // Used every 400 ms for well past the 2 s lifetime.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(3200) {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let r = s.get(&used, "/me").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "after {:?}: {:?}",
            started.elapsed(),
            r.body
        );
    }
    let expired = s.get(&idle, "/me").await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "session_expired");
    assert!(
        expired.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("log in"))
    );
    // Everything that takes a token says the same.
    assert_error(
        &s.get(&idle, "/inbox").await,
        StatusCode::UNAUTHORIZED,
        "session_expired",
    );
    // Only the used session is listed; logging in again works.
    assert_eq!(my_sessions(&s, &used).await.len(), 1);
    let fresh = s.login("ana", "correct horse").await;
    assert_eq!(s.get(&fresh, "/me").await.status, StatusCode::OK);
}

/// The node prunes the rows of ended sessions on its own (here every 300 ms, keeping none):
/// an expired token turns from `session_expired` into an unknown one, a revoked one stays
/// refused, and the session in use is never touched.
#[tokio::test]
async fn ended_sessions_are_pruned_and_their_tokens_stay_refused() {
    let s = TestServer::start_with(
        ServerConfig {
            sessions: tidings_server::config::SessionConfig {
                ttl: std::time::Duration::from_secs(2),
                refresh: std::time::Duration::from_millis(500),
                prune_interval: std::time::Duration::from_millis(300),
                keep_ended: std::time::Duration::ZERO,
            },
            ..ServerConfig::default()
        },
        StoreConfig::default(),
    )
    .await;
    let used = s.user("ana").await;
    let idle = s.login("ana", "correct horse").await;
    let revoked = s.login("ana", "correct horse").await;
    assert_eq!(
        s.delete(&revoked, "/sessions/current").await.status,
        StatusCode::NO_CONTENT
    );
    // Wide margin: the idle session expires after 2 s, and is pruned within 300 ms of that
    // on an idle machine; the used one is used every 400 ms throughout.
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let r = s.get(&used, "/me").await;
        assert_eq!(r.status, StatusCode::OK, "the live session: {:?}", r.body);
        let r = s.get(&revoked, "/me").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        // The idle session was signed in before `started`: expired by now.
        if started.elapsed() < std::time::Duration::from_millis(2500) {
            continue;
        }
        let r = s.get(&idle, "/me").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        codes.push(r.code().to_owned());
        if r.code() == "unauthenticated" {
            break;
        }
        assert_eq!(r.code(), "session_expired", "{:?}", r.body);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the expired session was never pruned: {codes:?}"
        );
    }
    // Nothing ended is left for another pruner; the live session is still listed.
    assert_eq!(
        s.store
            .prune_sessions(std::time::Duration::ZERO)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(my_sessions(&s, &used).await.len(), 1);
    for token in [&idle, &revoked] {
        assert_error(
            &s.get(token, "/me").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
    }
}

#[tokio::test]
async fn a_session_is_refreshed_at_most_once_per_interval_not_on_every_request() {
    // The default interval (5 minutes): requests do not move `last_used_at`.
    let s = TestServer::start().await;
    let token = s.user("ana").await;
    let before = s.get(&token, "/me/sessions").await.body["items"][0].clone();
    for _ in 0..5 {
        assert_eq!(s.get(&token, "/me").await.status, StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = s.get(&token, "/me/sessions").await.body["items"][0].clone();
    assert_eq!(before["last_used_at"], after["last_used_at"]);
    assert_eq!(before["expires_at"], after["expires_at"]);

    // With a short interval, use after it moves both forward.
    let s = server_with_sessions(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_millis(300),
    )
    .await;
    let token = s.user("ana").await;
    let before = s.get(&token, "/me/sessions").await.body["items"][0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(s.get(&token, "/me").await.status, StatusCode::OK);
    // The refresh is written off the request's path: give it a moment.
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = s.get(&token, "/me/sessions").await.body["items"][0].clone();
        if after["last_used_at"] != before["last_used_at"] {
            break;
        }
    }
    assert!(
        after["last_used_at"].as_str() > before["last_used_at"].as_str(),
        "{after}"
    );
    assert!(
        after["expires_at"].as_str() > before["expires_at"].as_str(),
        "{after}"
    );
}

#[tokio::test]
async fn a_password_change_signs_out_every_other_device_and_keeps_this_one() {
    let s = TestServer::start().await;
    let here = s.user("ana").await;
    let other_1 = s.login("ana", "correct horse").await;
    let other_2 = s.login("ana", "correct horse").await;
    let bob = s.user("bob").await;

    // A wrong current password is refused and changes nothing.
    let wrong = s
        .request(
            Method::PUT,
            "/me/password",
            Some(&here),
            Some(json!({"current_password": "wrong horse", "new_password": "battery staple"})),
            &[],
        )
        .await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "wrong_password");
    // So are a new password that breaks the sign-up rules, and bodies of the wrong shape.
    for (body, code) in [
        (
            json!({"current_password": "correct horse", "new_password": "short"}),
            "invalid_password",
        ),
        (json!({"current_password": "correct horse"}), "invalid_json"),
        (
            json!({"current_password": "correct horse", "new_password": "battery staple", "extra": 1}),
            "invalid_json",
        ),
    ] {
        let r = s
            .request(Method::PUT, "/me/password", Some(&here), Some(body), &[])
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    for token in [&here, &other_1, &other_2] {
        assert_eq!(s.get(token, "/me").await.status, StatusCode::OK);
    }
    assert_eq!(
        try_login(&s, "ana", "correct horse").await.status,
        StatusCode::CREATED
    );
    let before = my_sessions(&s, &here).await.len();
    assert_eq!(before, 4);

    let changed = s
        .request(
            Method::PUT,
            "/me/password",
            Some(&here),
            Some(json!({"current_password": "correct horse", "new_password": "battery staple"})),
            &[],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["revoked_sessions"], 3);
    assert_eq!(s.get(&here, "/me").await.status, StatusCode::OK);
    for token in [&other_1, &other_2] {
        assert_error(
            &s.get(token, "/me").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
    }
    assert_eq!(my_sessions(&s, &here).await.len(), 1);
    assert_error(
        &try_login(&s, "ana", "correct horse").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert_eq!(
        try_login(&s, "ana", "battery staple").await.status,
        StatusCode::CREATED
    );
    // Nobody else was touched.
    assert_eq!(s.get(&bob, "/me").await.status, StatusCode::OK);
    assert_eq!(
        try_login(&s, "bob", "correct horse").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_person_deletes_their_own_account_as_an_admin_would() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let ana_phone = s.login("ana", "correct horse").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    let note = s
        .note(&ana, "my last words", &["circle:eng"], &["farewell"])
        .await;
    let id = note["id"].as_str().expect("id").to_owned();

    // Without the right password, or without a body, nothing happens.
    assert_error(
        &delete_body(&s, &ana, "/me", json!({"password": "wrong horse"})).await,
        StatusCode::FORBIDDEN,
        "wrong_password",
    );
    let (status, body) = raw(&s, Method::DELETE, "/me", Some("application/json"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token: {body}");
    let no_body = s.delete(&ana, "/me").await;
    assert!(no_body.status.is_client_error(), "{:?}", no_body.body);
    assert_eq!(s.get(&ana, "/me").await.body["status"], "active");

    assert_eq!(
        delete_body(&s, &ana, "/me", json!({"password": "correct horse"}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Every device is signed out; the password no longer logs in.
    for token in [&ana, &ana_phone] {
        assert_error(
            &s.get(token, "/me").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
    }
    assert_error(
        &try_login(&s, "ana", "correct horse").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    // What stays in the log shows as from a deleted account, exactly as after admin deletion.
    let r = s.get(&bob, &format!("/activities/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["object"]["content"], "my last words");
    assert_eq!(r.body["digest"], note["digest"]);
    assert_eq!(r.body["tidings"]["actor"]["deleted"], true);
    let stream = s.get(&bob, "/circles/eng/stream").await;
    assert_eq!(TestServer::ids(&stream.body), vec![id]);
    assert_eq!(
        stream.body["items"][0]["activity"]["tidings"]["actor"]["deleted"],
        true
    );
    assert_eq!(s.get(&bob, "/users/ana").await.body["status"], "deleted");
    // The name stays taken.
    assert_error(
        &signup(&s, json!({"username": "ana", "password": "correct horse"})).await,
        StatusCode::CONFLICT,
        "username_taken",
    );
    s.assert_verified().await;
}

#[tokio::test]
async fn account_routes_are_in_the_openapi_document_with_their_errors() {
    let s = TestServer::start().await;
    let doc = s
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await;
    let paths = &doc.body["paths"];
    for (path, method, statuses) in [
        (
            "/api/v1/me/sessions",
            "get",
            // 400: a malformed Tidings-Position header.
            &["200", "400", "401", "403", "421", "429", "503"][..],
        ),
        (
            "/api/v1/me/sessions/{id}",
            "delete",
            &["204", "400", "401", "403", "404", "421", "429", "503"][..],
        ),
        (
            "/api/v1/me/password",
            "put",
            &[
                "200", "400", "401", "403", "408", "413", "415", "421", "429", "503",
            ][..],
        ),
        (
            "/api/v1/me",
            "delete",
            &[
                "204", "400", "401", "403", "408", "413", "415", "421", "429", "503",
            ][..],
        ),
    ] {
        let responses = paths[path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"));
        let mut listed: Vec<&str> = responses.keys().map(String::as_str).collect();
        listed.sort();
        assert_eq!(listed, statuses, "{method} {path}");
        for (status, response) in responses {
            if status.starts_with('4') {
                // The shared error body, or (429) the same shape inline with its details.
                let schema = &response["content"]["application/json"]["schema"];
                assert!(
                    schema["$ref"] == "#/components/schemas/ErrorBody"
                        || schema["properties"]["error"]["properties"]["code"].is_object(),
                    "{method} {path} {status}: {schema}"
                );
            }
        }
    }
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc.body["components"]["schemas"]["SessionInfo"].is_object());
}

// ---------------------------------------------------------------------------------------------
// Circles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_circle_makes_the_creator_a_subscribed_owner() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let r = s
        .post(
            &ana,
            "/circles",
            json!({"name": "eng", "display_name": "Engineering", "description": "builders",
                   "visibility": "public", "join_policy": "approval"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["name"], "eng");
    assert_eq!(r.body["display_name"], "Engineering");
    assert_eq!(r.body["description"], "builders");
    assert_eq!(r.body["visibility"], "public");
    assert_eq!(r.body["join_policy"], "approval");
    assert_eq!(r.body["owner"], "ana");
    assert_eq!(r.body["member_count"], 1);
    assert_eq!(r.body["my_membership"]["role"], "owner");
    assert_eq!(r.body["my_membership"]["state"], "active");
    assert!(r.body["archived_at"].is_null());

    assert_eq!(sub_exprs(&s, &ana).await, vec!["*@eng".to_owned()]);
    let m = s.get(&ana, "/circles/eng/members").await;
    assert_eq!(
        members(&m.body),
        vec![("ana".into(), "owner".into(), "active".into())]
    );
    let mine = s.get(&ana, "/users/ana/circles").await;
    assert_eq!(names(&mine.body, "circle"), vec!["eng".to_owned()]);
}

#[tokio::test]
async fn circle_creation_validates_and_refuses_duplicates() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "private", "invite").await;
    // Taken, even by someone who cannot see the private circle.
    let r = s.post(&bob, "/circles", json!({"name": "eng"})).await;
    assert_error(&r, StatusCode::CONFLICT, "circle_name_taken");
    for bad in ["Eng", "", "e n g", "-eng", "eng!"] {
        let r = s.post(&bob, "/circles", json!({"name": bad})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_circle_name");
    }
    let r = s
        .post(
            &bob,
            "/circles",
            json!({"name": "ops", "visibility": "secret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r);
    assert_eq!(r.code(), "invalid_json");
    let r = s
        .post(&bob, "/circles", json!({"name": "ops", "owner": "ana"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r);
    assert_eq!(r.code(), "invalid_json");
    let r = s
        .post(
            &bob,
            "/circles",
            json!({"name": "ops", "description": "d".repeat(2001)}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_description");
    assert_error(
        &s.get(&bob, "/circles/ops").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Defaults: public, open.
    let r = s.post(&bob, "/circles", json!({"name": "ops"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["visibility"], "public");
    assert_eq!(r.body["join_policy"], "open");
    assert_eq!(r.body["display_name"], "ops");
}

#[tokio::test]
async fn search_finds_public_and_own_circles_never_others_private_ones() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "eng", "public", "open").await;
    s.circle(&ana, "secret-eng", "private", "invite").await;
    s.circle(&bob, "design", "public", "open").await;
    assert_eq!(
        s.put(&ana, "/circles/secret-eng/members/carol")
            .await
            .status,
        StatusCode::CREATED
    );

    let search = |token: String, q: &'static str| {
        let s = &s;
        async move {
            let r = s.get(&token, &format!("/circles?q={q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            let mut found = names(&r.body, "name");
            found.sort();
            found
        }
    };
    // Matched on the name…
    assert_eq!(search(bob.clone(), "eng").await, vec!["eng"]);
    assert_eq!(search(ana.clone(), "eng").await, vec!["eng", "secret-eng"]);
    assert_eq!(
        search(carol.clone(), "eng").await,
        vec!["eng", "secret-eng"]
    );
    // …and on the description ("the design circle").
    assert_eq!(search(ana.clone(), "the%20design").await, vec!["design"]);
    // No query lists everything visible; private circles of others never appear.
    assert_eq!(search(bob.clone(), "").await, vec!["design", "eng"]);
    assert!(search(bob.clone(), "secret").await.is_empty());
    // LIKE wildcards are matched literally.
    assert!(search(bob.clone(), "%25").await.is_empty());
}

#[tokio::test]
async fn private_circles_are_invisible_to_non_members() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "secret", "private", "open").await;
    assert_eq!(
        s.put(&ana, "/circles/secret/members/carol").await.status,
        StatusCode::CREATED
    );
    s.note(&ana, "hush", &["circle:secret"], &[]).await;

    // Everything about it is "not found" to an outsider, exactly like a missing circle.
    for path in [
        "/circles/secret",
        "/circles/secret/members",
        "/circles/secret/stream",
    ] {
        assert_error(&s.get(&bob, path).await, StatusCode::NOT_FOUND, "not_found");
        let missing = path.replace("secret", "missing");
        assert_error(
            &s.get(&bob, &missing).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    // Even an open private circle cannot be joined from outside.
    assert_error(
        &s.put(&bob, "/circles/secret/members/bob").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post(&bob, "/subscriptions", json!({"expr": "*@secret"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let publish = s
        .post(
            &bob,
            "/outbox",
            json!({"type": "Create", "object": {"type": "Note", "content": "x"}, "to": ["circle:secret"]}),
        )
        .await;
    assert_eq!(publish.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(publish.code(), "unknown_circle");
    // Enrolments of members do not leak it.
    for user in ["ana", "carol"] {
        let r = s.get(&bob, &format!("/users/{user}/circles")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(names(&r.body, "circle").is_empty(), "{:?}", r.body);
    }
    assert!(
        !s.get(&bob, "/inbox")
            .await
            .body
            .to_string()
            .contains("hush")
    );

    // Members see all of it.
    let r = s.get(&carol, "/circles/secret").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["my_membership"]["role"], "member");
    assert_eq!(
        TestServer::contents(&s.get(&carol, "/circles/secret/stream").await.body),
        vec!["hush"]
    );
    assert_eq!(
        names(&s.get(&carol, "/users/ana/circles").await.body, "circle"),
        vec!["secret"]
    );
    assert_eq!(
        members(&s.get(&carol, "/circles/secret/members").await.body).len(),
        2
    );
}

#[tokio::test]
async fn open_circle_self_join_and_leave() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;

    let r = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["username"], "bob");
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["state"], "active");
    // Joining again changes nothing.
    let again = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["state"], "active");
    assert_eq!(s.get(&bob, "/circles/eng").await.body["member_count"], 2);
    assert_eq!(sub_exprs(&s, &bob).await, vec!["*@eng".to_owned()]);
    assert_eq!(
        names(&s.get(&ana, "/users/bob/circles").await.body, "circle"),
        vec!["eng"]
    );

    // A member cannot join for someone else, even in an open circle.
    s.user("carol").await;
    assert_error(
        &s.put(&bob, "/circles/eng/members/carol").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );

    assert_eq!(
        s.delete(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&bob, "/circles/eng").await.body["member_count"], 1);
    assert!(sub_exprs(&s, &bob).await.is_empty());
    assert_error(
        &s.delete(&bob, "/circles/eng/members/bob").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn approval_circle_requests_wait_for_a_moderator() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let dave = s.user("dave").await;
    s.circle(&ana, "eng", "public", "approval").await;

    let r = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["state"], "requested");
    assert_eq!(r.body["role"], "member");
    // A request is not membership: no subscription, no publishing, not counted.
    assert!(sub_exprs(&s, &bob).await.is_empty());
    assert_eq!(s.get(&bob, "/circles/eng").await.body["member_count"], 1);
    let publish = s
        .post(
            &bob,
            "/outbox",
            json!({"type": "Create", "object": {"type": "Note", "content": "x"}, "to": ["circle:eng"]}),
        )
        .await;
    assert_error(&publish, StatusCode::FORBIDDEN, "not_circle_member");
    // Requesting again is idempotent.
    let again = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["state"], "requested");
    // The requester cannot approve itself with a role either.
    let r = put_body(
        &s,
        &bob,
        "/circles/eng/members/bob",
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.body["state"], "requested", "{:?}", r.body);

    // Moderators see the request; outsiders do not.
    assert!(
        members(&s.get(&ana, "/circles/eng/members").await.body).contains(&(
            "bob".into(),
            "member".into(),
            "requested".into()
        ))
    );
    let seen_by_dave = members(&s.get(&dave, "/circles/eng/members").await.body);
    assert!(
        seen_by_dave.iter().all(|(u, _, _)| u != "bob"),
        "{seen_by_dave:?}"
    );

    // The owner approves with a PUT.
    let r = s.put(&ana, "/circles/eng/members/bob").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "active");
    assert_eq!(sub_exprs(&s, &bob).await, vec!["*@eng".to_owned()]);
    let sub_id = s.get(&bob, "/subscriptions").await.body["items"][0]["id"]
        .as_i64()
        .expect("subscription id");
    s.note(&ana, "welcome", &["circle:eng"], &[]).await;
    assert_eq!(
        vias(&inbox(&s, &bob).await),
        vec![("welcome".into(), format!("subscription:{sub_id}:*@eng"))]
    );
    s.note(&bob, "thanks", &["circle:eng"], &[]).await;
}

#[tokio::test]
async fn membership_put_rejects_bad_bodies_and_unknown_targets() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "invite").await;
    for body in [
        json!({"rol": "member"}),
        json!({"role": "admin"}),
        json!({"role": 1}),
        json!("member"),
    ] {
        let r = put_body(&s, &ana, "/circles/eng/members/bob", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    }
    assert_eq!(
        members(&s.get(&ana, "/circles/eng/members").await.body).len(),
        1
    );
    assert!(sub_exprs(&s, &bob).await.is_empty());
    for path in [
        "/circles/missing/members/bob",
        "/circles/eng/members/nobody",
    ] {
        assert_error(&s.put(&ana, path).await, StatusCode::NOT_FOUND, "not_found");
        assert_error(
            &s.delete(&ana, path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_error(
        &s.get(&ana, "/users/nobody/circles").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn moderator_can_reject_a_request() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "approval").await;
    assert_eq!(
        s.put(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.delete(&ana, "/circles/eng/members/bob").await.status,
        StatusCode::NO_CONTENT
    );
    let m = members(&s.get(&ana, "/circles/eng/members").await.body);
    assert_eq!(m, vec![("ana".into(), "owner".into(), "active".into())]);
}

#[tokio::test]
async fn invite_circle_refuses_self_join_but_a_moderator_can_add() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "invite").await;
    assert_error(
        &s.put(&bob, "/circles/eng/members/bob").await,
        StatusCode::FORBIDDEN,
        "invite_only",
    );
    assert_eq!(
        members(&s.get(&ana, "/circles/eng/members").await.body).len(),
        1
    );
    let r = s.put(&ana, "/circles/eng/members/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["state"], "active");
    assert_eq!(sub_exprs(&s, &bob).await, vec!["*@eng".to_owned()]);
    // Adding an unknown user is 404.
    assert_error(
        &s.put(&ana, "/circles/eng/members/nobody").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn only_the_owner_appoints_moderators_and_moderators_manage_members() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    let dave = s.user("dave").await;
    s.circle(&ana, "eng", "public", "invite").await;
    assert_eq!(
        s.put(&ana, "/circles/eng/members/bob").await.status,
        StatusCode::CREATED
    );
    let r = put_body(
        &s,
        &ana,
        "/circles/eng/members/bob",
        json!({"role": "moderator"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "moderator");

    // The moderator adds members but cannot appoint moderators.
    let r = s.put(&bob, "/circles/eng/members/carol").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["role"], "member");
    let r = put_body(
        &s,
        &bob,
        "/circles/eng/members/carol",
        json!({"role": "moderator"}),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "owner_only");
    // Nobody can be made owner.
    let r = put_body(
        &s,
        &ana,
        "/circles/eng/members/carol",
        json!({"role": "owner"}),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "owner_is_fixed");

    // A member cannot add others, promote itself, or remove anyone.
    assert_error(
        &s.put(&carol, "/circles/eng/members/dave").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );
    let r = put_body(
        &s,
        &carol,
        "/circles/eng/members/carol",
        json!({"role": "moderator"}),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "not_circle_moderator");
    assert_error(
        &s.delete(&carol, "/circles/eng/members/bob").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );
    // An outsider cannot either.
    assert_error(
        &s.delete(&dave, "/circles/eng/members/carol").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );
    let roles = members(&s.get(&ana, "/circles/eng/members").await.body);
    assert_eq!(
        roles,
        vec![
            ("ana".into(), "owner".into(), "active".into()),
            ("bob".into(), "moderator".into(), "active".into()),
            ("carol".into(), "member".into(), "active".into()),
        ]
    );

    // The moderator removes the member.
    assert_eq!(
        s.delete(&bob, "/circles/eng/members/carol").await.status,
        StatusCode::NO_CONTENT
    );
    let r = s.get(&carol, "/circles/eng").await;
    assert!(r.body["my_membership"].is_null(), "{:?}", r.body);
}

#[tokio::test]
async fn moderators_cannot_remove_or_demote_other_moderators() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.user("carol").await;
    s.circle(&ana, "eng", "public", "invite").await;
    for who in ["bob", "carol"] {
        let r = put_body(
            &s,
            &ana,
            &format!("/circles/eng/members/{who}"),
            json!({"role": "moderator"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["role"], "moderator");
    }
    assert_error(
        &s.delete(&bob, "/circles/eng/members/carol").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );
    let r = put_body(
        &s,
        &bob,
        "/circles/eng/members/carol",
        json!({"role": "member"}),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "owner_only");
    // The owner can demote.
    let r = put_body(
        &s,
        &ana,
        "/circles/eng/members/carol",
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["role"], "member");
}

#[tokio::test]
async fn the_owner_cannot_leave_or_be_removed() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    assert_eq!(
        put_body(
            &s,
            &ana,
            "/circles/eng/members/bob",
            json!({"role": "moderator"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_error(
        &s.delete(&ana, "/circles/eng/members/ana").await,
        StatusCode::CONFLICT,
        "owner_cannot_leave",
    );
    let r = s.delete(&bob, "/circles/eng/members/ana").await;
    assert!(
        r.status == StatusCode::CONFLICT || r.status == StatusCode::FORBIDDEN,
        "{r:?}"
    );
    // The owner's role cannot be changed either.
    let r = put_body(
        &s,
        &ana,
        "/circles/eng/members/ana",
        json!({"role": "member"}),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "owner_is_fixed");
    let c = s.get(&ana, "/circles/eng").await;
    assert_eq!(c.body["owner"], "ana");
    assert_eq!(c.body["my_membership"]["role"], "owner");
}

#[tokio::test]
async fn archiving_is_owner_only_and_makes_the_circle_read_only() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "eng", "public", "open").await;
    assert_eq!(
        put_body(
            &s,
            &ana,
            "/circles/eng/members/bob",
            json!({"role": "moderator"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    s.note(&ana, "history", &["circle:eng"], &[]).await;

    // Neither a moderator nor an outsider can archive.
    for token in [&bob, &carol] {
        assert_error(
            &s.post(token, "/circles/eng/archive", json!({})).await,
            StatusCode::FORBIDDEN,
            "not_circle_owner",
        );
    }
    assert!(s.get(&carol, "/circles/eng").await.body["archived_at"].is_null());

    let r = s.post(&ana, "/circles/eng/archive", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["archived_at"].is_string());

    // Read-only: no publishing, no joining, no adding; reading still works.
    for token in [&ana, &bob] {
        let publish = s
            .post(
                token,
                "/outbox",
                json!({"type": "Create", "object": {"type": "Note", "content": "late"}, "to": ["circle:eng"]}),
            )
            .await;
        assert_error(
            &publish,
            StatusCode::UNPROCESSABLE_ENTITY,
            "circle_archived",
        );
    }
    assert_error(
        &s.put(&carol, "/circles/eng/members/carol").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "circle_archived",
    );
    assert_error(
        &s.put(&ana, "/circles/eng/members/carol").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "circle_archived",
    );
    assert_eq!(
        TestServer::contents(&s.get(&carol, "/circles/eng/stream").await.body),
        vec!["history"]
    );
    assert_error(
        &s.post(&ana, "/circles/eng/archive", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "circle_archived",
    );
}

#[tokio::test]
async fn admins_can_archive_any_circle_and_outsiders_cannot_see_private_ones() {
    let s = TestServer::start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "secret", "private", "invite").await;
    assert_error(
        &s.post(&bob, "/circles/secret/archive", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = s.post(&admin, "/circles/secret/archive", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["archived_at"].is_string());
}

#[tokio::test]
async fn outsiders_cannot_manage_private_circle_members() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "secret", "private", "invite").await;
    assert_eq!(
        s.put(&ana, "/circles/secret/members/carol").await.status,
        StatusCode::CREATED
    );
    assert_error(
        &s.delete(&bob, "/circles/secret/members/carol").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.put(&bob, "/circles/secret/members/bob").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        s.get(&carol, "/circles/secret").await.status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subscriptions_create_list_dedupe_and_delete() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;

    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "release@eng"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["expr"], "release@eng");
    let id = r.body["id"].as_i64().expect("id");

    // The same expression, however written, returns the existing one.
    for same in ["release@eng", "#Release@ENG", "  release@eng "] {
        let r = s.post(&bob, "/subscriptions", json!({"expr": same})).await;
        assert_eq!(r.status, StatusCode::OK, "{same}: {:?}", r.body);
        assert_eq!(r.body["id"], id);
    }
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "urgent@*"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let urgent = r.body["id"].as_i64().unwrap();
    assert_eq!(sub_exprs(&s, &bob).await, vec!["release@eng", "urgent@*"]);

    // Nobody else can delete them, and bad ids are 404.
    for path in [
        format!("/subscriptions/{id}"),
        "/subscriptions/999999".to_owned(),
        "/subscriptions/abc".to_owned(),
    ] {
        assert_error(
            &s.delete(&ana, &path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_eq!(sub_exprs(&s, &ana).await, vec!["*@eng"]);
    assert_eq!(sub_exprs(&s, &bob).await.len(), 2);

    assert_eq!(
        s.delete(&bob, &format!("/subscriptions/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.delete(&bob, &format!("/subscriptions/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(sub_exprs(&s, &bob).await, vec!["urgent@*"]);
    // Subscribing again after a delete creates a new one.
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "release@eng"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(r.body["id"], id);
    assert_ne!(r.body["id"], urgent);
}

#[tokio::test]
async fn subscription_parse_errors_report_the_position() {
    let s = TestServer::start().await;
    let bob = s.user("bob").await;
    for (expr, position) in [
        ("release", 7),
        ("", 0),
        ("@eng", 0),
        ("  @eng", 2),
        ("eng@", 4),
        ("a@b@c", 3),
        ("re!ease@eng", 2),
        ("release@en!g", 10),
        ("release @eng", 7),
        ("sys:reply@eng", 0),
        ("ééé!@eng", 3),
    ] {
        let r = s.post(&bob, "/subscriptions", json!({"expr": expr})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_expression");
        assert_eq!(
            r.body["error"]["details"]["position"], position,
            "{expr:?}: {:?}",
            r.body
        );
    }
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "x".repeat(201)}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_expression");
    assert_eq!(r.body["error"]["details"]["position"], 200, "{:?}", r.body);
    let r = s
        .post(&bob, "/subscriptions", json!({"exp": "*@eng"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_json");
    assert!(sub_exprs(&s, &bob).await.is_empty());
}

#[tokio::test]
async fn subscribing_needs_a_readable_circle_but_not_membership() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "invite").await;
    s.circle(&ana, "secret", "private", "invite").await;
    // Public (even invite-only): no membership needed.
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "*@eng"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(
        s.get(&bob, "/circles/eng").await.body["my_membership"].is_null(),
        "subscribing must not enrol"
    );
    // Private: as if it did not exist.
    for expr in ["*@secret", "release@secret", "*@missing"] {
        let r = s.post(&bob, "/subscriptions", json!({"expr": expr})).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(sub_exprs(&s, &bob).await, vec!["*@eng"]);
}

both_strategies!(
    tag_subscription_receives_only_matching_activities,
    tag_subscription_receives_only_matching_activities_merged_at_read,
    tag_subscription_receives_only_matching_activities_on
);

async fn tag_subscription_receives_only_matching_activities_on(s: TestServer) {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    s.circle(&ana, "ops", "public", "open").await;
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "release@eng"}))
        .await;
    let id = r.body["id"].as_i64().unwrap();

    s.note(&ana, "eng release", &["circle:eng"], &["release"])
        .await;
    s.note(&ana, "eng chatter", &["circle:eng"], &["misc"])
        .await;
    s.note(&ana, "eng untagged", &["circle:eng"], &[]).await;
    s.note(&ana, "ops release", &["circle:ops"], &["release"])
        .await;
    s.note(&ana, "public release", &["public"], &["release"])
        .await;

    assert_eq!(
        vias(&inbox(&s, &bob).await),
        vec![(
            "eng release".to_owned(),
            format!("subscription:{id}:release@eng")
        )]
    );
}

both_strategies!(
    wildcard_circle_subscription_skips_private_circles_it_cannot_read,
    wildcard_circle_subscription_skips_private_circles_it_cannot_read_merged_at_read,
    wildcard_circle_subscription_skips_private_circles_it_cannot_read_on
);

async fn wildcard_circle_subscription_skips_private_circles_it_cannot_read_on(s: TestServer) {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    s.circle(&ana, "secret", "private", "invite").await;
    s.circle(&ana, "inner", "private", "invite").await;
    assert_eq!(
        s.put(&ana, "/circles/inner/members/bob").await.status,
        StatusCode::CREATED
    );
    // Only keep the wildcard subscription, so `via` proves how things arrived.
    let subs = s.get(&bob, "/subscriptions").await;
    let inner_sub = subs.body["items"][0]["id"].as_i64().unwrap();
    assert_eq!(
        s.delete(&bob, &format!("/subscriptions/{inner_sub}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "urgent@*"}))
        .await;
    let id = r.body["id"].as_i64().unwrap();
    let via = format!("subscription:{id}:urgent@*");

    s.note(&ana, "eng urgent", &["circle:eng"], &["urgent"])
        .await;
    s.note(&ana, "secret urgent", &["circle:secret"], &["urgent"])
        .await;
    s.note(&ana, "inner urgent", &["circle:inner"], &["urgent"])
        .await;
    s.note(&ana, "eng calm", &["circle:eng"], &["calm"]).await;

    assert_eq!(
        vias(&inbox(&s, &bob).await),
        vec![
            ("inner urgent".to_owned(), via.clone()),
            ("eng urgent".to_owned(), via.clone()),
        ]
    );
}

both_strategies!(
    deleting_a_subscription_stops_new_deliveries,
    deleting_a_subscription_stops_new_deliveries_merged_at_read,
    deleting_a_subscription_stops_new_deliveries_on
);

async fn deleting_a_subscription_stops_new_deliveries_on(s: TestServer) {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "release@eng"}))
        .await;
    let id = r.body["id"].as_i64().unwrap();
    s.note(&ana, "v1", &["circle:eng"], &["release"]).await;
    assert_eq!(
        TestServer::contents(&inbox(&s, &bob).await),
        vec!["v1".to_owned()]
    );
    assert_eq!(
        s.delete(&bob, &format!("/subscriptions/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    s.note(&ana, "v2", &["circle:eng"], &["release"]).await;
    assert!(
        !TestServer::contents(&inbox(&s, &bob).await).contains(&"v2".to_owned()),
        "delivered after unsubscribe"
    );
}

both_strategies!(
    leaving_a_circle_stops_delivery,
    leaving_a_circle_stops_delivery_merged_at_read,
    leaving_a_circle_stops_delivery_on
);

async fn leaving_a_circle_stops_delivery_on(s: TestServer) {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    assert_eq!(
        s.put(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::CREATED
    );
    s.note(&ana, "while in", &["circle:eng"], &[]).await;
    assert_eq!(
        TestServer::contents(&inbox(&s, &bob).await),
        vec!["while in".to_owned()]
    );
    assert_eq!(
        s.delete(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::NO_CONTENT
    );
    s.note(&ana, "after leaving", &["circle:eng"], &[]).await;
    let got = TestServer::contents(&inbox(&s, &bob).await);
    assert!(!got.contains(&"after leaving".to_owned()), "{got:?}");
}

both_strategies!(
    removed_member_of_a_private_circle_stops_receiving_and_reading_it,
    removed_member_of_a_private_circle_stops_receiving_and_reading_it_merged_at_read,
    removed_member_of_a_private_circle_stops_receiving_and_reading_it_on
);

async fn removed_member_of_a_private_circle_stops_receiving_and_reading_it_on(s: TestServer) {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "secret", "private", "invite").await;
    assert_eq!(
        s.put(&ana, "/circles/secret/members/bob").await.status,
        StatusCode::CREATED
    );
    let r = s
        .post(&bob, "/subscriptions", json!({"expr": "urgent@*"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    s.note(&ana, "in", &["circle:secret"], &["urgent"]).await;
    assert_eq!(
        TestServer::contents(&inbox(&s, &bob).await),
        vec!["in".to_owned()]
    );
    assert_eq!(
        s.delete(&ana, "/circles/secret/members/bob").await.status,
        StatusCode::NO_CONTENT
    );
    s.note(&ana, "out", &["circle:secret"], &["urgent"]).await;
    let got = TestServer::contents(&inbox(&s, &bob).await);
    assert!(!got.contains(&"out".to_owned()), "{got:?}");
    assert_error(
        &s.get(&bob, "/circles/secret/stream").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(sub_exprs(&s, &bob).await, vec!["urgent@*"]);
}

// ---------------------------------------------------------------------------------------------
// Authorization: nobody acts as someone else
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn nobody_reads_another_users_inbox() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.user("carol").await;
    s.note(&ana, "for carol only", &["user:carol"], &[]).await;
    s.note(&ana, "ana's own", &[], &[]).await;

    for path in [
        "/inbox?user=carol",
        "/inbox?username=carol",
        "/inbox?as=carol",
    ] {
        let r = s.get(&bob, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        assert!(TestServer::ids(&r.body).is_empty(), "{path}: {:?}", r.body);
    }
    for path in ["/users/carol/inbox", "/users/ana/inbox", "/inbox/carol"] {
        let r = s.get(&bob, path).await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {r:?}"
        );
        assert!(!r.body.to_string().contains("carol only"));
    }
    let carol = s.login("carol", "correct horse").await;
    assert_eq!(
        TestServer::contents(&inbox(&s, &carol).await),
        vec!["for carol only".to_owned()]
    );
}

#[tokio::test]
async fn members_cannot_act_for_others_or_on_others_circles() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "eng", "public", "open").await;
    assert_eq!(
        s.put(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.put(&carol, "/circles/eng/members/carol").await.status,
        StatusCode::CREATED
    );
    // bob cannot remove carol, archive ana's circle, or delete ana's account.
    assert_error(
        &s.delete(&bob, "/circles/eng/members/carol").await,
        StatusCode::FORBIDDEN,
        "not_circle_moderator",
    );
    assert_error(
        &s.post(&bob, "/circles/eng/archive", json!({})).await,
        StatusCode::FORBIDDEN,
        "not_circle_owner",
    );
    assert_error(
        &s.delete(&bob, "/users/ana").await,
        StatusCode::FORBIDDEN,
        "admin_only",
    );
    // A publish cannot claim another actor.
    let r = s
        .publish(
            &bob,
            json!({"type": "Create", "actor": "user:ana", "object": {"type": "Note", "content": "spoof"}, "to": ["circle:eng"]}),
        )
        .await;
    assert_eq!(r["actor"], "user:bob", "{r:?}");
    assert_eq!(r["tidings"]["actor"]["username"], "bob");

    let m = members(&s.get(&ana, "/circles/eng/members").await.body);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(s.get(&ana, "/circles/eng").await.body["archived_at"].is_null());
    assert_eq!(s.get(&ana, "/me").await.status, StatusCode::OK);
}

#[tokio::test]
async fn publishing_to_a_public_circle_requires_membership() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"type": "Create", "object": {"type": "Note", "content": "drive-by"}, "to": ["circle:eng"]}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "not_circle_member");
    let stream = s.get(&ana, "/circles/eng/stream").await;
    assert!(TestServer::ids(&stream.body).is_empty());
}

/// The OpenAPI document is generated from the handlers and the docs UI is served from the
/// binary itself (no CDN: the page must work offline).
#[tokio::test]
async fn openapi_document_and_offline_docs_are_served() {
    let s = TestServer::start().await;
    let doc = s
        .request(reqwest::Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/users",
        "/api/v1/sessions",
        "/api/v1/circles/{name}/members/{username}",
        "/api/v1/outbox",
        "/api/v1/activities/{id}/retract",
        "/api/v1/inbox",
        "/api/v1/subscriptions",
        "/api/v1/types",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/docs/", s.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger"), "{html}");
    assert!(!html.contains("cdn."), "docs must not load from a CDN");
    let config = client
        .get(format!("{}/docs/swagger-initializer.js", s.base))
        .send()
        .await
        .expect("initializer");
    assert_eq!(config.status(), StatusCode::OK);
    let js = config.text().await.expect("js");
    assert!(js.contains("/api/v1/openapi.json"), "{js}");
    let bundle = client
        .get(format!("{}/docs/swagger-ui-bundle.js", s.base))
        .send()
        .await
        .expect("bundle");
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.expect("bytes").len() > 100_000);
}

/// The shell script between the `accounts-walkthrough` markers of docs/accounts.md.
fn accounts_walkthrough() -> String {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/accounts.md"
    ))
    .expect("docs/accounts.md");
    let start = page
        .find("<!-- accounts-walkthrough -->")
        .expect("start marker");
    let end = page
        .find("<!-- /accounts-walkthrough -->")
        .expect("end marker");
    page[start..end]
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn accounts_walkthrough_runs_verbatim() {
    let s = TestServer::start().await;
    let script = accounts_walkthrough().replace("http://127.0.0.1:8080", &s.base);
    assert!(script.contains("/me/sessions"), "{script}");
    // Off the runtime's thread: the server under test runs on it.
    let run = script.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-eu")
            .arg("-c")
            .arg(&run)
            .output()
    })
    .await
    .expect("join")
    .expect("run sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"Ana phone\""), "{stdout}");
    assert!(stdout.contains("\"current\": true"), "{stdout}");
    assert!(stdout.contains("\"revoked_sessions\":0"), "{stdout}");
    assert_eq!(
        stdout.matches("\"code\":\"unauthenticated\"").count(),
        2,
        "the signed-out laptop and the deleted account are refused: {stdout}"
    );
    let ana = s.store.user("ana").await.expect("ana");
    assert_eq!(ana.status.as_str(), "deleted");
}

#[tokio::test]
async fn signing_a_device_out_closes_its_live_stream_and_no_other() {
    let s = TestServer::start().await;
    s.user("ana").await;
    let laptop = login_from(&s, "ana", "correct horse", "Laptop").await;
    let phone = token_of(&login_from(&s, "ana", "correct horse", "Phone").await);
    let laptop_token = token_of(&laptop);
    let mut laptop_live = common::sse::SseClient::open(&s, "", &laptop_token, None).await;
    laptop_live.expect("ready").await;
    let mut phone_live = common::sse::SseClient::open(&s, "", &phone, None).await;
    phone_live.expect("ready").await;
    let laptop_id = laptop["session"]["id"].as_str().expect("id");
    assert_eq!(
        s.delete(&phone, &format!("/me/sessions/{laptop_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let closed = laptop_live
        .next(std::time::Duration::from_secs(2))
        .await
        .expect("the laptop's stream is closed in time");
    assert_eq!(closed.event, "closed");
    assert_eq!(closed.json()["reason"], "revoked");
    // The phone's stream stays open and quiet.
    phone_live.assert_quiet().await;
}
