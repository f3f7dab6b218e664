//! The integration bus over HTTP: services and their keys, topics and their filters, webhook
//! subscriptions delivered to a local sink that verifies every signature, counts duplicates
//! and answers as each test scripts it (500, a timeout, 429 + Retry-After, 410), deliveries,
//! dead letters and redelivery, SSRF refusals, and who may see what. Runs on the embedded
//! store, and on PostgreSQL with `TIDINGS_TEST_STORE`.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use common::{Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidings_core::webhook::Secret;
use tidings_server::config::ServerConfig;
use tidings_server::integration::WebhookConfig;
use tidings_store::StoreConfig;

/// What the sink answers next.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// 429 with `Retry-After: 1`.
    Throttle,
    /// Answers after the server's attempt timeout.
    Hang,
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    verified: bool,
    at: Instant,
}

#[derive(Default)]
struct SinkState {
    secret: Option<Secret>,
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// A local webhook endpoint.
#[derive(Clone)]
struct Sink {
    url: String,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    async fn start() -> Sink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn trust(&self, secret: &str) {
        self.state.lock().expect("sink").secret = Some(Secret::parse(secret).expect("secret"));
    }

    fn script(&self, replies: &[Reply]) {
        self.state.lock().expect("sink").script = replies.iter().copied().collect();
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().expect("sink").received.clone()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(state): State<Arc<Mutex<SinkState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let signature = header("webhook-signature");
    let reply = {
        let mut s = state.lock().expect("sink");
        let verified = s
            .secret
            .as_ref()
            .is_some_and(|k| k.verify(&id, timestamp, &body, &signature));
        s.received.push(Received {
            id,
            timestamp,
            signature,
            body: body.to_vec(),
            verified,
            at: Instant::now(),
        });
        s.script.pop_front().unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(code) => (
            AxumStatus::from_u16(code).unwrap_or(AxumStatus::OK),
            format!("sink says {code}"),
        )
            .into_response(),
        Reply::Throttle => (
            AxumStatus::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (AxumStatus::OK, "too late").into_response()
        }
    }
}

/// Webhooks tuned for tests: 127.0.0.1 allowed, quick retries, short timeouts.
fn bus_config() -> ServerConfig {
    ServerConfig {
        webhooks: WebhookConfig {
            allow_networks: vec!["127.0.0.1/32".parse().expect("net")],
            timeout: Duration::from_millis(700),
            max_attempts: 5,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            disable_after: 20,
            poll: Duration::from_millis(20),
            ..WebhookConfig::default()
        },
        ..ServerConfig::default()
    }
}

async fn start() -> TestServer {
    TestServer::start_with(bus_config(), StoreConfig::default()).await
}

/// Registers a service; returns its key.
async fn service(s: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> String {
    let r = s
        .post(
            admin,
            "/services",
            json!({"name": name, "description": format!("the {name} service"), "scopes": scopes}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "service {name}: {:?}",
        r.body
    );
    let key = r.body["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("tds_"));
    key
}

async fn topic(s: &TestServer, admin: &str, name: &str, filter: Option<&str>) {
    let r = s
        .post(admin, "/topics", json!({"name": name, "filter": filter}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "topic {name}: {:?}", r.body);
}

/// Subscribes the sink; returns the subscription id (the sink now trusts its secret).
async fn subscribe(s: &TestServer, token: &str, topic: &str, sink: &Sink) -> String {
    let r = s
        .post(
            token,
            &format!("/topics/{topic}/subscriptions"),
            json!({"mode": "webhook", "url": sink.url}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "subscribe: {:?}", r.body);
    let secret = r.body["secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"));
    sink.trust(secret);
    r.body["subscription"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn deliveries(s: &TestServer, token: &str, topic: &str, id: &str, query: &str) -> Resp {
    s.get(
        token,
        &format!("/topics/{topic}/subscriptions/{id}/deliveries{query}"),
    )
    .await
}

/// Polls a subscription's deliveries until `done` holds for the list (or fails after `within`).
async fn wait_deliveries(
    s: &TestServer,
    token: &str,
    topic: &str,
    id: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = deliveries(s, token, topic, id, "").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never settled: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{:?}", r.body);
}

#[tokio::test]
async fn services_are_registered_by_admins_and_their_keys_rotate_and_revoke() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;

    // Bad input: a clear 400 and nothing stored; non-admins and service keys are refused.
    for (body, code) in [
        (json!({"name": "Bad Name", "scopes": []}), "invalid_name"),
        (
            json!({"name": "shop", "scopes": ["publish", "fly"]}),
            "invalid_scope",
        ),
        (
            json!({"name": "shop", "scopes": [], "description": "x".repeat(2001)}),
            "invalid_description",
        ),
        (json!({"name": "shop"}), "invalid_json"),
    ] {
        let r = s.post(&admin, "/services", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    let r = s
        .post(&ana, "/services", json!({"name": "shop", "scopes": []}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "admin_only");
    let r = s.get(&admin, "/services").await;
    assert_eq!(
        r.body["items"],
        json!([]),
        "a refused registration stored nothing"
    );

    let key = service(&s, &admin, "shop", &["publish"]).await;
    let r = s
        .post(&admin, "/services", json!({"name": "shop", "scopes": []}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "name_taken");
    let r = s
        .post(&admin, "/services", json!({"name": "ana", "scopes": []}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "name_taken");
    assert!(!s.stored_contains(&key), "only the key's hash is stored");

    // A service key is not a user's session, and a user is not a service.
    let r = s.get(&key, "/me").await;
    assert_error(&r, StatusCode::FORBIDDEN, "service_key_not_allowed");
    let r = s
        .post(&key, "/services", json!({"name": "x", "scopes": []}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "service_key_not_allowed");
    let r = s.get(&ana, "/topics").await;
    assert_error(&r, StatusCode::FORBIDDEN, "admin_only");
    assert_eq!(s.get(&key, "/topics").await.status, StatusCode::OK);

    // Suspending the user a service acts as stops its publishing.
    let note = json!({"object": {"content": "from the shop"}, "to": ["public"]});
    assert_eq!(
        s.post(&key, "/outbox", note.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post(&admin, "/users/shop/suspend", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_error(
        &s.post(&key, "/outbox", note.clone()).await,
        StatusCode::FORBIDDEN,
        "account_suspended",
    );
    assert_eq!(
        s.post(&admin, "/users/shop/unsuspend", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.post(&key, "/outbox", note).await.status,
        StatusCode::CREATED
    );

    // Rotation with an overlap: both keys work until it ends.
    let r = s
        .post(
            &admin,
            "/services/shop/keys",
            json!({"previous_valid_seconds": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let second = r.body["key"].as_str().expect("key").to_owned();
    assert_eq!(s.get(&key, "/topics").await.status, StatusCode::OK);
    assert_eq!(s.get(&second, "/topics").await.status, StatusCode::OK);
    let r = s
        .post(
            &admin,
            "/services/shop/keys",
            json!({"previous_valid_seconds": 9999999}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_time");
    // No overlap: the old keys stop at once.
    let r = s
        .post(
            &admin,
            "/services/shop/keys",
            json!({"previous_valid_seconds": 0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let third = r.body["key"].as_str().expect("key").to_owned();
    let third_id = r.body["key_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_error(
        &s.get(&key, "/topics").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_error(
        &s.get(&second, "/topics").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(s.get(&third, "/topics").await.status, StatusCode::OK);
    // Revocation is immediate.
    let r = s
        .delete(&admin, &format!("/services/shop/keys/{third_id}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get(&third, "/topics").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(
        s.delete(&admin, &format!("/services/shop/keys/{third_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = s.get(&admin, "/services/shop").await;
    assert_eq!(
        r.body["keys"].as_array().map(Vec::len),
        Some(3),
        "{:?}",
        r.body
    );
    assert!(r.body["keys"].to_string().find("tds_").is_none());
    assert_eq!(
        s.get(&admin, "/services/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn topic_filters_are_checked_at_creation_with_the_position() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    for (filter, position) in [
        ("paid@sales and", 14),
        ("$.object.amount > \"x\"", 18),
        ("colour == red", 0),
        ("$.object.[", 9),
    ] {
        let r = s
            .post(
                &admin,
                "/topics",
                json!({"name": "orders", "filter": filter}),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_filter");
        assert_eq!(
            r.body["error"]["details"]["position"],
            json!(position),
            "{filter}: {:?}",
            r.body
        );
    }
    let r = s.post(&admin, "/topics", json!({"name": "Orders!"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_name");
    let r = s.post(&ana, "/topics", json!({"name": "orders"})).await;
    assert_error(&r, StatusCode::FORBIDDEN, "admin_only");
    assert_eq!(
        s.get(&admin, "/topics").await.body["items"],
        json!([]),
        "nothing stored"
    );

    topic(&s, &admin, "orders", None).await;
    topic(&s, &admin, "big", Some("paid@* and $.object.amount >= 100")).await;
    let r = s.post(&admin, "/topics", json!({"name": "orders"})).await;
    assert_error(&r, StatusCode::CONFLICT, "topic_exists");
    let r = s.get(&admin, "/topics/big").await;
    assert_eq!(r.body["filter"], json!("paid@* and $.object.amount >= 100"));
    assert_eq!(
        s.get(&admin, "/topics/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // Addressing a topic that does not exist is refused; one that does is accepted.
    let r = s
        .post(
            &ana,
            "/outbox",
            json!({"object": {"content": "x"}, "to": ["topic:nope"]}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_topic");
    let r = s
        .post(
            &ana,
            "/outbox",
            json!({"object": {"content": "x"}, "to": ["topic:orders"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn a_service_publishes_as_itself_and_subscribers_get_signed_deliveries() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let shop = service(&s, &admin, "shop", &["publish"]).await;
    let books = service(&s, &admin, "books", &["subscribe"]).await;
    topic(&s, &admin, "orders", None).await;
    topic(&s, &admin, "big", Some("paid@* and $.object.amount >= 100")).await;
    let orders_sink = Sink::start().await;
    let big_sink = Sink::start().await;

    // Scopes are enforced both ways.
    let r = s
        .post(
            &books,
            "/outbox",
            json!({"object": {"content": "x"}, "to": ["topic:orders"]}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "missing_scope");
    let r = s
        .post(
            &shop,
            "/topics/orders/subscriptions",
            json!({"mode": "webhook", "url": orders_sink.url}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "missing_scope");

    let orders = subscribe(&s, &books, "orders", &orders_sink).await;
    let big = subscribe(&s, &admin, "big", &big_sink).await;

    // Addressed: the shop's order reaches the orders topic, authored by the shop.
    let r = s
        .post(&shop, "/outbox", json!({"object": {"content": "order 1", "amount": 250}, "to": ["topic:orders"], "tag": ["paid"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["actor"], json!("user:shop"));
    let order_id = r.body["id"].as_str().expect("id").to_owned();
    // Content-routed: Ana never names the topic; the small one does not match.
    s.note(&ana, "cheap", &["public"], &["paid"]).await;
    s.publish(
        &ana,
        json!({"object": {"content": "pricey", "amount": 500}, "to": ["public"], "tag": ["paid"]}),
    )
    .await;

    let got = orders_sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let first = &got[0];
    assert!(first.verified, "signature: {first:?}");
    assert!(first.id.starts_with("msg_"));
    assert!((first.timestamp - chrono_now()).abs() < 60);
    let body: Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(body["type"], json!("activity.Create"));
    assert_eq!(body["topic"], json!("orders"));
    assert_eq!(body["data"]["id"], json!(order_id));
    assert_eq!(body["data"]["actor"], json!("user:shop"));
    // The negative cases: an empty or truncated signature never verifies.
    let secret_of = |sink: &Sink| {
        sink.state
            .lock()
            .expect("sink")
            .secret
            .clone()
            .expect("secret")
    };
    let secret = secret_of(&orders_sink);
    let truncated = &first.signature[..first.signature.len() - 4];
    for header in ["v1,", "v1", truncated, ""] {
        assert!(
            !secret.verify(&first.id, first.timestamp, &first.body, header),
            "{header:?}"
        );
    }

    // Content routing: the shop's order (250, paid) and Ana's pricey one; not the cheap one.
    let got = big_sink.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = big_sink.received();
    assert_eq!(got_all.len(), 2, "{got:?}");
    assert!(got_all.iter().all(|r| r.verified));
    let mut contents: Vec<String> = got_all
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json");
            body["data"]["object"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    contents.sort();
    assert_eq!(contents, vec!["order 1", "pricey"]);

    // The attempt log.
    let items = wait_deliveries(
        &s,
        &books,
        "orders",
        &orders,
        Duration::from_secs(5),
        |items| items.len() == 1 && items[0]["state"] == "delivered",
    )
    .await;
    let attempt = &items[0]["attempts_log"][0];
    assert_eq!(attempt["status"], json!(200));
    assert_eq!(attempt["outcome"], json!("delivered"));
    assert_eq!(attempt["excerpt"], json!("sink says 200"));
    assert!(attempt["latency_ms"].as_i64().is_some());
    assert_eq!(items[0]["id"], json!(first.id));
    assert_eq!(items[0]["activity"], json!(order_id));
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"tidings_webhook_attempts_total{outcome="delivered"}"#),
        "{metrics}"
    );

    // Who sees what: the admin sees every subscription; a service only its own.
    let r = s.get(&admin, "/topics/big/subscriptions").await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    let r = s.get(&books, "/topics/big/subscriptions").await;
    assert_eq!(
        r.body["items"],
        json!([]),
        "books cannot list the admin's subscription"
    );
    for path in [
        format!("/topics/big/subscriptions/{big}"),
        format!("/topics/big/subscriptions/{big}/deliveries"),
    ] {
        assert_error(
            &s.get(&books, &path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    let r = s
        .post(
            &books,
            &format!("/topics/big/subscriptions/{big}/enable"),
            json!({}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    // A subscription is found under its own topic only.
    assert_eq!(
        s.get(&books, &format!("/topics/big/subscriptions/{orders}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let _ = secret_of(&big_sink);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn retries_back_off_honour_retry_after_and_keep_the_webhook_id() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    sink.script(&[
        Reply::Status(500),
        Reply::Throttle,
        Reply::Hang,
        Reply::Status(200),
    ]);
    s.note(&ana, "hello", &["public"], &[]).await;

    let items = wait_deliveries(&s, &admin, "all", &id, Duration::from_secs(20), |items| {
        items.first().is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    let log = items[0]["attempts_log"].as_array().expect("log");
    let statuses: Vec<Value> = log.iter().map(|a| a["status"].clone()).collect();
    assert_eq!(
        statuses,
        vec![json!(500), json!(429), Value::Null, json!(200)],
        "{log:#?}"
    );
    let outcomes: Vec<&str> = log.iter().filter_map(|a| a["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        vec!["failed", "throttled", "timeout", "delivered"]
    );

    let got = sink.received();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().all(|r| r.verified && r.id == got[0].id),
        "one webhook-id across retries"
    );
    // Retry-After: 1 was honoured between the 429 and the next attempt.
    let waited = got[2].at.duration_since(got[1].at);
    assert!(
        waited >= Duration::from_millis(900),
        "waited only {waited:?} after Retry-After: 1"
    );
    let r = s
        .get(&admin, &format!("/topics/all/subscriptions/{id}"))
        .await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["failures"].as_i64()),
        (Some("active"), Some(0))
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_redelivered_and_410_disables() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    // Five attempts (max_attempts) all fail: the delivery is dead.
    sink.script(&[Reply::Status(500); 5]);
    s.note(&ana, "doomed", &["public"], &[]).await;
    let items = wait_deliveries(&s, &admin, "all", &id, Duration::from_secs(20), |items| {
        items.first().is_some_and(|d| d["state"] == "dead")
    })
    .await;
    assert_eq!(items[0]["attempts"], json!(5));
    let dead = deliveries(&s, &admin, "all", &id, "?state=dead").await;
    assert_eq!(dead.body["items"].as_array().map(Vec::len), Some(1));
    let pending = deliveries(&s, &admin, "all", &id, "?state=pending").await;
    assert_eq!(pending.body["items"], json!([]));
    assert_error(
        &deliveries(&s, &admin, "all", &id, "?state=lost").await,
        StatusCode::BAD_REQUEST,
        "invalid_state",
    );
    assert_error(
        &deliveries(&s, &admin, "all", &id, "?limit=0").await,
        StatusCode::BAD_REQUEST,
        "invalid_limit",
    );

    // Redelivered: it goes out again, same webhook-id, and lands.
    let delivery = items[0]["id"].as_str().expect("id").to_owned();
    let r = s
        .post(
            &admin,
            &format!("/topics/all/subscriptions/{id}/deliveries/{delivery}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = s
        .post(
            &admin,
            &format!("/topics/all/subscriptions/{id}/deliveries/msg_nope/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let items = wait_deliveries(&s, &admin, "all", &id, Duration::from_secs(10), |items| {
        items.first().is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(items[0]["attempts"], json!(6));
    let got = sink.received();
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|r| r.id == delivery));

    // 410 Gone disables the endpoint at once; later activities wait for it.
    sink.script(&[Reply::Status(410)]);
    s.note(&ana, "gone", &["public"], &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s
            .get(&admin, &format!("/topics/all/subscriptions/{id}"))
            .await;
        if r.body["status"] == "disabled" {
            assert!(
                r.body["disabled_reason"]
                    .as_str()
                    .is_some_and(|t| t.contains("410"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "never disabled: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.note(&ana, "while disabled", &["public"], &[]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sink.received().len(),
        7,
        "a disabled webhook is sent nothing"
    );
    // Enabled again: what is owed (the one after the 410) goes out.
    let r = s
        .post(
            &admin,
            &format!("/topics/all/subscriptions/{id}/enable"),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let got = sink.wait_for(8, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 8);
    let last: Value = serde_json::from_slice(&got[7].body).expect("json");
    assert_eq!(last["data"]["object"]["content"], json!("while disabled"));
}

#[tokio::test]
async fn failing_past_the_threshold_disables_the_endpoint() {
    let mut config = bus_config();
    config.webhooks.disable_after = 3;
    config.webhooks.max_attempts = 2;
    // One at a time, so the count of attempts before the threshold is exact.
    config.webhooks.concurrency = 1;
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    sink.script(&[Reply::Status(500); 10]);
    s.note(&ana, "one", &["public"], &[]).await;
    s.note(&ana, "two", &["public"], &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s
            .get(&admin, &format!("/topics/all/subscriptions/{id}"))
            .await;
        if r.body["status"] == "disabled" {
            assert_eq!(r.body["failures"], json!(3), "{:?}", r.body);
            break;
        }
        assert!(Instant::now() < deadline, "never disabled: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.received().len(),
        3,
        "nothing is sent past the threshold"
    );
}

#[tokio::test]
async fn webhook_urls_that_reach_inside_are_refused_and_nothing_is_stored() {
    let s = start().await;
    let admin = s.admin("root").await;
    topic(&s, &admin, "all", None).await;
    for (url, code) in [
        ("http://169.254.169.254/latest/meta-data", "url_not_allowed"),
        ("http://10.0.0.1/hook", "url_not_allowed"),
        ("http://127.0.0.2:9/hook", "url_not_allowed"),
        ("http://[::1]:9/hook", "url_not_allowed"),
        ("ftp://example.com/x", "invalid_url"),
        ("http://user:pw@127.0.0.1/x", "invalid_url"),
        ("not a url", "invalid_url"),
    ] {
        let r = s
            .post(
                &admin,
                "/topics/all/subscriptions",
                json!({"mode": "webhook", "url": url}),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    let r = s
        .post(
            &admin,
            "/topics/all/subscriptions",
            json!({"mode": "pigeon", "url": "http://127.0.0.1/"}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    // A URL belongs to webhooks only.
    let r = s
        .post(
            &admin,
            "/topics/all/subscriptions",
            json!({"mode": "pull", "url": "http://127.0.0.1/"}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = s
        .post(
            &admin,
            "/topics/nope/subscriptions",
            json!({"mode": "webhook", "url": "http://127.0.0.1:9/"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&admin, "/topics/all/subscriptions").await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_for_the_overlap() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    let old = sink
        .state
        .lock()
        .expect("sink")
        .secret
        .clone()
        .expect("secret");
    let r = s
        .post(
            &admin,
            &format!("/topics/all/subscriptions/{id}/secret"),
            json!({"previous_valid_seconds": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let new = Secret::parse(r.body["secret"].as_str().expect("secret")).expect("parse");
    s.note(&ana, "rotating", &["public"], &[]).await;
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let first = &got[0];
    assert_eq!(first.signature.split(' ').count(), 2, "{}", first.signature);
    assert!(old.verify(&first.id, first.timestamp, &first.body, &first.signature));
    assert!(new.verify(&first.id, first.timestamp, &first.body, &first.signature));
    // Without an overlap only the new secret signs.
    let r = s
        .post(
            &admin,
            &format!("/topics/all/subscriptions/{id}/secret"),
            json!({"previous_valid_seconds": 0}),
        )
        .await;
    let newest = Secret::parse(r.body["secret"].as_str().expect("secret")).expect("parse");
    s.note(&ana, "rotated", &["public"], &[]).await;
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    let second = &got[1];
    assert_eq!(second.signature.split(' ').count(), 1);
    assert!(newest.verify(
        &second.id,
        second.timestamp,
        &second.body,
        &second.signature
    ));
    assert!(!new.verify(
        &second.id,
        second.timestamp,
        &second.body,
        &second.signature
    ));
}

#[tokio::test]
async fn deliveries_owed_survive_a_restart() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    // The endpoint is down (every attempt times out) while the server stops.
    sink.script(&[Reply::Hang; 2]);
    s.note(&ana, "owed", &["public"], &[]).await;
    sink.wait_for(1, Duration::from_secs(10)).await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, bus_config(), StoreConfig::default()).await;
    let items = wait_deliveries(&s, &admin, "all", &id, Duration::from_secs(60), |items| {
        items.first().is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(items.len(), 1);
    let got = sink.received();
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "the same webhook-id after the restart"
    );
}

/// Cluster mode: two nodes deliver from one PostgreSQL database, and each delivery is sent by
/// one of them once (leases are taken in write transactions, which hold the log lock).
#[tokio::test]
async fn two_nodes_never_send_the_same_delivery_twice() {
    let s = start().await;
    let Some(peer) = s
        .start_peer_configured(bus_config(), StoreConfig::default())
        .await
    else {
        eprintln!("!!! the two-node webhook test did NOT run: set TIDINGS_TEST_STORE");
        return;
    };
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    topic(&s, &admin, "all", Some("type == Create")).await;
    let sink = Sink::start().await;
    let id = subscribe(&s, &admin, "all", &sink).await;
    let total = 40;
    for i in 0..total {
        // Half published on each node.
        let node = if i % 2 == 0 { &s } else { &peer };
        node.note(&ana, &format!("n{i}"), &["public"], &[]).await;
    }
    let got = sink.wait_for(total, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = sink.received();
    assert_eq!(got.len(), total);
    let mut ids: Vec<&str> = got_all.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (ids.len(), got_all.len()),
        (total, total),
        "no delivery twice, none lost"
    );
    assert!(got_all.iter().all(|r| r.verified));
    let items = wait_deliveries(&s, &admin, "all", &id, Duration::from_secs(10), |items| {
        items.len() == total && items.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(items.iter().all(|d| d["attempts"] == json!(1)));
}

/// Whole numbers of seconds arrive as `60` or `60.0` (JSON Schema's `integer` allows both; the
/// contract run sends the second); a fraction or a negative is a 400 and rotates nothing.
#[tokio::test]
async fn key_overlaps_take_whole_seconds_however_json_spells_them() {
    let s = start().await;
    let admin = s.admin("root").await;
    let old = service(&s, &admin, "shop", &["publish"]).await;
    for bad in [json!(1.5), json!(-1), json!("60")] {
        let r = s
            .post(
                &admin,
                "/services/shop/keys",
                json!({"previous_valid_seconds": bad}),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    }
    // Nothing rotated: the first key is the only one and still works.
    let keys = s.get(&admin, "/services/shop").await;
    assert_eq!(
        keys.body["keys"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        keys.body
    );
    let r = s
        .post(
            &admin,
            "/services/shop/keys",
            json!({"previous_valid_seconds": 60.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["previous_valid_seconds"], 60);
    let published = s
        .post(
            &old,
            "/outbox",
            json!({"object": {"content": "still mine"}, "to": ["public"]}),
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::CREATED,
        "{:?}",
        published.body
    );
}
