//! Bus subscriptions beyond webhooks, over HTTP (decision 0024): pull consumers (long-poll
//! leases that two consumers never share, acks with a reply, unacked events back after their
//! lease), replay and start points by position, `beginning`, `now` or time, SSE streams resumed
//! by `Last-Event-ID`, queue-mode subscriptions feeding a work queue, pause / resume (a paused
//! webhook keeps its backlog), deleting subscriptions and topics, who may do what, and two
//! nodes on one PostgreSQL database never leasing one event twice. Runs on the embedded store,
//! and on PostgreSQL with `TIDINGS_TEST_STORE`.

mod common;

use axum::extract::State;
use common::sse::SseClient;
use common::{Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidings_server::config::ServerConfig;
use tidings_server::integration::WebhookConfig;
use tidings_store::StoreConfig;

/// The bus tuned for tests: loopback webhooks allowed, a quick poll.
fn bus_config() -> ServerConfig {
    ServerConfig {
        webhooks: WebhookConfig {
            allow_networks: vec!["127.0.0.1/32".parse().expect("net")],
            timeout: Duration::from_millis(700),
            retry_base: Duration::from_millis(50),
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
            json!({"name": name, "description": "", "scopes": scopes}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "service: {:?}", r.body);
    r.body["key"].as_str().expect("key").to_owned()
}

async fn topic(s: &TestServer, admin: &str, name: &str) {
    let r = s.post(admin, "/topics", json!({"name": name})).await;
    assert_eq!(r.status, StatusCode::CREATED, "topic: {:?}", r.body);
}

/// Subscribes; returns the subscription's path under `/topics/{topic}/subscriptions/`.
async fn subscribe(s: &TestServer, key: &str, topic: &str, body: Value) -> String {
    let r = s
        .post(key, &format!("/topics/{topic}/subscriptions"), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "subscribe: {:?}", r.body);
    let id = r.body["subscription"]["id"].as_str().expect("id");
    format!("/topics/{topic}/subscriptions/{id}")
}

/// Publishes an order to `topic` as the service; returns the activity's id.
async fn order(s: &TestServer, key: &str, topic: &str, n: i64) -> String {
    let r = s
        .post(
            key,
            "/outbox",
            json!({"object": {"content": format!("order {n}"), "n": n}, "to": [format!("topic:{topic}")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "publish: {:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn pull(s: &TestServer, key: &str, sub: &str, max: i64, wait_ms: i64) -> Vec<Value> {
    let r = s
        .post(
            key,
            &format!("{sub}/pull"),
            json!({"max": max, "wait_ms": wait_ms}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "pull: {:?}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

/// Pulls until `n` events arrived (the matcher runs behind publishes).
async fn pull_n(s: &TestServer, key: &str, sub: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < deadline {
        got.extend(pull(s, key, sub, 100, 1000).await);
    }
    got
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn activities(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["data"]["id"].as_str().expect("activity id").to_owned())
        .collect()
}

async fn ack(s: &TestServer, key: &str, sub: &str, ids: &[String], reply: Option<Value>) -> Resp {
    let mut body = json!({ "ids": ids });
    if let Some(reply) = reply {
        body["reply"] = reply;
    }
    s.post(key, &format!("{sub}/ack"), body).await
}

#[tokio::test]
async fn pull_consumers_lease_ack_and_get_unacked_events_back() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sub = subscribe(
        &s,
        &shop,
        "orders",
        json!({"mode": "pull", "lease_ms": 1000.0}),
    )
    .await;
    let shown = s.get(&shop, &sub).await;
    assert_eq!(shown.body["mode"], "pull");
    assert_eq!(shown.body["lease_ms"], 1000);
    assert!(
        s.post(
            &shop,
            "/topics/orders/subscriptions",
            json!({"mode": "pull"})
        )
        .await
        .body
        .get("secret")
        .is_none(),
        "a pull subscription has no secret"
    );
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(order(&s, &shop, "orders", n).await);
    }

    // Two consumers: one takes two, the other the third; nobody gets one twice.
    let first = pull_n(&s, &shop, &sub, 1).await;
    let mut held = first.clone();
    if held.len() < 3 {
        held.extend(pull_n(&s, &shop, &sub, 3 - held.len()).await);
    }
    assert_eq!(activities(&held), published, "in log order, each once");
    let positions: Vec<i64> = held
        .iter()
        .map(|e| e["position"].as_i64().expect("position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(held[0]["type"], "activity.Create");
    assert_eq!(held[0]["topic"], "orders");
    assert_eq!(held[0]["deliveries"], 1);
    assert!(
        pull(&s, &shop, &sub, 10, 0).await.is_empty(),
        "leased events are nobody else's"
    );

    // Acks answer per id; a reply is kept by event.
    let held_ids = ids(&held);
    let r = ack(
        &s,
        &shop,
        &sub,
        &held_ids[..2],
        Some(json!({"status": "shipped"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["acked"] == true)
    );
    let again = ack(&s, &shop, &sub, &held_ids[..1], None).await;
    assert_eq!(again.body["items"][0]["acked"], false, "acked twice");
    let replies = s
        .store
        .replies_to(published[0].clone())
        .await
        .expect("replies");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].reply, "{\"status\":\"shipped\"}");

    // The unacked third comes back after its lease, under the same id.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = pull(&s, &shop, &sub, 10, 0).await;
    assert_eq!(ids(&back), vec![held_ids[2].clone()]);
    assert_eq!(back[0]["deliveries"], 2);
    assert_eq!(
        ack(&s, &shop, &sub, &held_ids[2..], None).await.body["items"][0]["acked"],
        true
    );

    // A long poll is answered as soon as an event arrives.
    let waiting = {
        let (base, key, sub) = (s.base.clone(), shop.clone(), sub.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = reqwest::Client::new()
                .post(format!("{base}/api/v1{sub}/pull"))
                .bearer_auth(key)
                .json(&json!({"max": 5, "wait_ms": 10000}))
                .send()
                .await
                .expect("pull");
            let body: Value = r.json().await.expect("json");
            (started.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = order(&s, &shop, "orders", 9).await;
    let (took, body) = waiting.await.expect("task");
    assert_eq!(body["items"][0]["data"]["id"], late.as_str());
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Bad input changes nothing.
    for (body, code) in [
        (json!({"max": 0}), "invalid_argument"),
        (json!({"max": 101}), "invalid_argument"),
        (json!({"wait_ms": -1}), "invalid_argument"),
        (json!({"max": 1.5}), "invalid_json"),
    ] {
        let r = s.post(&shop, &format!("{sub}/pull"), body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
    let r = ack(&s, &shop, &sub, &[], None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    for body in [
        json!({"mode": "pull", "url": "http://127.0.0.1:9/x"}),
        json!({"mode": "pull", "queue": "work"}),
        json!({"mode": "webhook"}),
        json!({"mode": "stream", "lease_ms": 5000}),
        json!({"mode": "queue"}),
    ] {
        let r = s
            .post(&shop, "/topics/orders/subscriptions", body.clone())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_json"),
            "fields that do not fit the mode: {body}"
        );
    }
    let r = s
        .post(
            &shop,
            "/topics/orders/subscriptions",
            json!({"mode": "pull", "lease_ms": 10}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    let stream = subscribe(&s, &shop, "orders", json!({"mode": "stream"})).await;
    let r = s.post(&shop, &format!("{stream}/pull"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "wrong_mode"));
    let r = ack(&s, &shop, &stream, &held_ids[..1], None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "wrong_mode"));
}

#[tokio::test]
async fn replay_and_start_points_reach_back_into_the_log() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    topic(&s, &admin, "other").await;
    let hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let hour_ago = hour_ago
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(order(&s, &shop, "orders", n).await);
        order(&s, &shop, "other", n).await;
    }
    s.settle().await;

    // From the beginning: what the topic got before the subscription existed.
    let sub = subscribe(
        &s,
        &shop,
        "orders",
        json!({"mode": "pull", "start": "beginning"}),
    )
    .await;
    let all = pull_n(&s, &shop, &sub, 3).await;
    assert_eq!(activities(&all), published);
    assert!(pull(&s, &shop, &sub, 10, 200).await.is_empty());
    let r = ack(&s, &shop, &sub, &ids(&all), None).await;
    assert_eq!(r.status, StatusCode::OK);

    // From a position (inclusive): acked events are owed again.
    let second = all[1]["position"].as_i64().expect("position");
    let r = s
        .post(&shop, &format!("{sub}/replay"), json!({"from": second}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["owed"], 2);
    let again = pull(&s, &shop, &sub, 10, 0).await;
    assert_eq!(activities(&again), published[1..].to_vec());
    assert_eq!(ids(&again), ids(&all)[1..].to_vec(), "the same event ids");

    // `now` drops what is owed.
    let r = s
        .post(&shop, &format!("{sub}/replay"), json!({"from": "now"}))
        .await;
    assert_eq!((r.status, &r.body["owed"]), (StatusCode::OK, &json!(0)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(pull(&s, &shop, &sub, 10, 0).await.is_empty());

    // A time: the first activity published then or later.
    let r = s
        .post(&shop, &format!("{sub}/replay"), json!({"from": hour_ago}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["owed"], 3);
    assert_eq!(activities(&pull(&s, &shop, &sub, 10, 0).await), published);

    // A new subscription starts now by default, or at a position.
    let fresh = subscribe(&s, &shop, "orders", json!({"mode": "pull"})).await;
    assert!(pull(&s, &shop, &fresh, 10, 300).await.is_empty());
    let third = all[2]["position"].as_i64().expect("position");
    let from_third = subscribe(&s, &shop, "orders", json!({"mode": "pull", "start": third})).await;
    assert_eq!(
        activities(&pull(&s, &shop, &from_third, 10, 0).await),
        published[2..].to_vec()
    );

    // Bad start points are refused, and create nothing.
    for from in [json!("yesterday"), json!(-1), json!(1.5), json!({})] {
        let r = s
            .post(&shop, &format!("{sub}/replay"), json!({ "from": from }))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_position"),
            "{from}"
        );
    }
    // A position past the log's end replays nothing.
    let r = s
        .post(&shop, &format!("{sub}/replay"), json!({"from": 10_000_000}))
        .await;
    assert_eq!((r.status, &r.body["owed"]), (StatusCode::OK, &json!(0)));
    let before = s.get(&shop, "/topics/orders/subscriptions").await;
    let r = s
        .post(
            &shop,
            "/topics/orders/subscriptions",
            json!({"mode": "pull", "start": "then"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_position");
    let after = s.get(&shop, "/topics/orders/subscriptions").await;
    assert_eq!(before.body, after.body);
}

#[tokio::test]
async fn streams_follow_a_subscription_and_resume_by_last_event_id() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sub = subscribe(&s, &shop, "orders", json!({"mode": "stream"})).await;
    let open = |last: Option<String>, query: &str| {
        let mut req = reqwest::Client::new()
            .get(format!("{}/api/v1{sub}/stream{query}", s.base))
            .bearer_auth(&shop);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        req.send()
    };
    let mut live = SseClient::from_response(open(None, "").await.expect("stream"));
    let ready = live.expect("ready").await;
    let start: i64 = ready.id.clone().expect("id").parse().expect("position");
    let a = order(&s, &shop, "orders", 1).await;
    let b = order(&s, &shop, "orders", 2).await;
    let first = live.expect("activity").await;
    let second = live.expect("activity").await;
    assert_eq!(first.json()["data"]["id"], a.as_str());
    assert_eq!(second.json()["data"]["id"], b.as_str());
    let first_position: i64 = first.id.clone().expect("id").parse().expect("position");
    assert!(first_position > start);
    assert_eq!(first.json()["position"], first_position);

    // Resumed after the first: only the second.
    let mut resumed = SseClient::from_response(open(first.id.clone(), "").await.expect("stream"));
    resumed.expect("ready").await;
    let again = resumed.expect("activity").await;
    assert_eq!(again.json()["data"]["id"], b.as_str());
    resumed.assert_quiet().await;
    // `after` works too, and the header wins over it.
    let mut from_query = SseClient::from_response(
        open(None, &format!("?after={start}"))
            .await
            .expect("stream"),
    );
    from_query.expect("ready").await;
    assert_eq!(
        from_query.expect("activity").await.json()["data"]["id"],
        a.as_str()
    );

    // Pausing ends open streams; a paused stream cannot be opened.
    let r = s.post(&shop, &format!("{sub}/pause"), json!({})).await;
    assert_eq!(
        (r.status, &r.body["paused"]),
        (StatusCode::OK, &json!(true))
    );
    let closed = live.expect("closed").await;
    assert_eq!(closed.json()["reason"], "paused");
    let refused = open(None, "").await.expect("stream");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let r = s.post(&shop, &format!("{sub}/resume"), json!({})).await;
    assert_eq!(r.body["paused"], false);
    let bad = open(Some("abc".into()), "").await.expect("stream");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Deleting ends them too.
    let mut doomed = SseClient::from_response(open(None, "").await.expect("stream"));
    doomed.expect("ready").await;
    let r = s.delete(&shop, &sub).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(doomed.expect("closed").await.json()["reason"], "deleted");
}

#[tokio::test]
async fn queue_subscriptions_turn_events_into_jobs() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe", "queues"]).await;
    let plain = service(&s, &admin, "plain", &["subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let r = s
        .post(
            &admin,
            "/queues",
            json!({"name": "work", "discipline": "fifo"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = s
        .post(
            &shop,
            "/topics/orders/subscriptions",
            json!({"mode": "queue", "queue": "nowhere"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_queue")
    );
    let r = s
        .post(
            &plain,
            "/topics/orders/subscriptions",
            json!({"mode": "queue", "queue": "work"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "missing_scope")
    );
    let sub = subscribe(
        &s,
        &shop,
        "orders",
        json!({"mode": "queue", "queue": "work"}),
    )
    .await;
    assert_eq!(s.get(&shop, &sub).await.body["queue"], "work");
    let a = order(&s, &shop, "orders", 1).await;
    let b = order(&s, &shop, "orders", 2).await;
    let mut jobs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while jobs.len() < 2 && Instant::now() < deadline {
        let r = s
            .post(
                &shop,
                "/queues/work/lease",
                json!({"max": 10, "wait_ms": 1000}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        jobs.extend(r.body["jobs"].as_array().expect("jobs").clone());
    }
    let got: Vec<&str> = jobs
        .iter()
        .map(|j| j["payload"]["data"]["id"].as_str().expect("activity"))
        .collect();
    assert_eq!(got, vec![a.as_str(), b.as_str()], "in log order");
    assert_eq!(jobs[0]["payload"]["topic"], "orders");
    // Every feed is logged like a webhook attempt (recorded just after the job is stored).
    let deadline = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let deliveries = s.get(&shop, &format!("{sub}/deliveries")).await;
        let items = deliveries.body["items"].as_array().expect("items").clone();
        if items.iter().all(|d| d["state"] == "delivered") || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{items:?}");
    assert_eq!(items[0]["attempts_log"][0]["outcome"], "enqueued");
}

/// A local endpoint that counts what it receives.
async fn counting_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    async fn receive(
        State(got): State<Arc<Mutex<Vec<Value>>>>,
        body: axum::body::Bytes,
    ) -> &'static str {
        got.lock()
            .expect("sink")
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        "ok"
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn paused_webhooks_keep_their_backlog_and_deletes_are_clear() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    let rival = service(&s, &admin, "rival", &["subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let (url, got) = counting_sink().await;
    let hook = subscribe(&s, &shop, "orders", json!({"mode": "webhook", "url": url})).await;
    let r = s.post(&shop, &format!("{hook}/pause"), json!({})).await;
    assert_eq!(
        (r.status, &r.body["paused"]),
        (StatusCode::OK, &json!(true))
    );
    let a = order(&s, &shop, "orders", 1).await;
    let b = order(&s, &shop, "orders", 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        got.lock().expect("sink").is_empty(),
        "a paused webhook was sent to"
    );
    let pending = s
        .get(&shop, &format!("{hook}/deliveries?state=pending"))
        .await;
    assert_eq!(pending.body["items"].as_array().expect("items").len(), 2);
    s.post(&shop, &format!("{hook}/resume"), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().expect("sink").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent: Vec<String> = got
        .lock()
        .expect("sink")
        .iter()
        .map(|v| v["data"]["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(sent, vec![a, b], "the backlog, in order, once");

    // Another service sees none of it.
    for (method, path) in [
        ("post", format!("{hook}/pause")),
        ("post", format!("{hook}/resume")),
        ("post", format!("{hook}/replay")),
        ("delete", hook.clone()),
    ] {
        let r = if method == "post" {
            s.post(&rival, &path, json!({"from": "now"})).await
        } else {
            s.delete(&rival, &path).await
        };
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A user who is not an admin may not touch the bus.
    let ana = s.user("ana").await;
    let r = s.post(&ana, &format!("{hook}/pause"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A topic with subscriptions is not deleted (no cascade); without them it is.
    let r = s.delete(&admin, "/topics/orders").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "topic_has_subscriptions")
    );
    let r = s.delete(&shop, "/topics/orders").await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "services do not delete topics"
    );
    let r = s.delete(&shop, &hook).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&shop, &hook).await.status, StatusCode::NOT_FOUND);
    let r = s.delete(&admin, "/topics/orders").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&admin, "/topics/orders").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s
        .post(
            &shop,
            "/outbox",
            json!({"object": {"content": "late"}, "to": ["topic:orders"]}),
        )
        .await;
    assert_eq!(r.code(), "unknown_topic");
}

/// Two nodes on one PostgreSQL database pulling one subscription at once never hold the same
/// event (leases are write jobs under the log lock). Skipped on the embedded store.
#[tokio::test]
async fn two_nodes_never_lease_the_same_event() {
    let s = start().await;
    let Some(peer) = s
        .start_peer_configured(bus_config(), StoreConfig::default())
        .await
    else {
        eprintln!("two_nodes_never_lease_the_same_event: embedded store, skipped");
        return;
    };
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sub = subscribe(
        &s,
        &shop,
        "orders",
        json!({"mode": "pull", "lease_ms": 600000}),
    )
    .await;
    let total = 60;
    for n in 0..total {
        order(&s, &shop, "orders", n).await;
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < total as usize && Instant::now() < deadline {
        let (a, b) = tokio::join!(
            pull(&s, &shop, &sub, 7, 200),
            pull(&peer, &shop, &sub, 7, 200)
        );
        seen.extend(ids(&a));
        seen.extend(ids(&b));
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "an event was leased twice");
    assert_eq!(seen.len(), total as usize, "every event was leased");
}
