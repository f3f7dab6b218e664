//! Sync, ordered and scheduled events of the integration bus over HTTP: `?wait=replied`
//! answered by a webhook's JSON reply (also across two nodes), `503 no_responder` and `504
//! reply_timeout` with the activity kept, ordered subscriptions, `publish_at`, and cron
//! schedules (create, list, next fires, pause, resume, delete; once per cluster). Runs on
//! the embedded store, and on PostgreSQL with `TIDINGS_TEST_STORE`.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use common::{Resp, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidings_server::config::ServerConfig;
use tidings_server::integration::WebhookConfig;
use tidings_store::StoreConfig;

/// What the sink does with the next request: answer this status after this delay.
#[derive(Debug, Clone, Copy)]
struct Answer(u16, Duration);

#[derive(Default)]
struct SinkState {
    script: VecDeque<Answer>,
    /// (activity content, status answered), in arrival order.
    received: Vec<(String, u16)>,
}

/// A local webhook endpoint that replies `{"echo": CONTENT, "n": COUNT}`.
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

    fn script(&self, answers: &[Answer]) {
        self.state.lock().expect("sink").script = answers.iter().copied().collect();
    }

    fn received(&self) -> Vec<(String, u16)> {
        self.state.lock().expect("sink").received.clone()
    }

    async fn wait_for(&self, n: usize, within: Duration) -> Vec<(String, u16)> {
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
    body: Bytes,
) -> axum::response::Response {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content = event["data"]["object"]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let (Answer(status, delay), n) = {
        let mut s = state.lock().expect("sink");
        let answer = s.script.pop_front().unwrap_or(Answer(200, Duration::ZERO));
        s.received.push((content.clone(), answer.0));
        (answer, s.received.len())
    };
    tokio::time::sleep(delay).await;
    (
        AxumStatus::from_u16(status).unwrap_or(AxumStatus::OK),
        axum::Json(json!({"echo": content, "n": n})),
    )
        .into_response()
}

fn bus_config() -> ServerConfig {
    ServerConfig {
        webhooks: WebhookConfig {
            allow_networks: vec!["127.0.0.1/32".parse().expect("net")],
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            poll: Duration::from_millis(20),
            ..WebhookConfig::default()
        },
        ..ServerConfig::default()
    }
}

async fn start() -> TestServer {
    TestServer::start_with(bus_config(), StoreConfig::default()).await
}

async fn service(s: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> String {
    let r = s
        .post(admin, "/services", json!({"name": name, "scopes": scopes}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "service {name}: {:?}",
        r.body
    );
    r.body["key"].as_str().expect("key").to_owned()
}

async fn topic(s: &TestServer, admin: &str, name: &str) {
    let r = s.post(admin, "/topics", json!({"name": name})).await;
    assert_eq!(r.status, StatusCode::CREATED, "topic {name}: {:?}", r.body);
}

async fn subscribe(s: &TestServer, token: &str, topic: &str, sink: &Sink, ordered: bool) -> Value {
    let r = s
        .post(
            token,
            &format!("/topics/{topic}/subscriptions"),
            json!({"mode": "webhook", "url": sink.url, "ordered": ordered}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "subscribe: {:?}", r.body);
    r.body["subscription"].clone()
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{:?}", r.body);
}

fn order(content: &str, topic: &str) -> Value {
    json!({"object": {"content": content}, "to": [format!("topic:{topic}")]})
}

/// Contents of a user's outbox, newest first.
async fn outbox(s: &TestServer, token: &str, user: &str) -> Vec<String> {
    let r = s
        .get(token, &format!("/users/{user}/outbox?limit=100"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["object"]["content"]
                .as_str()
                .or_else(|| i["activity"]["object"]["content"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

fn in_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms);
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[tokio::test]
async fn a_sync_publish_answers_with_the_first_reply() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    topic(&s, &admin, "quiet").await;

    // No subscription anywhere: 503 at once, the activity kept.
    let started = Instant::now();
    let r = s
        .post(&shop, "/outbox?wait=replied", order("nobody", "orders"))
        .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "no_responder");
    assert!(started.elapsed() < Duration::from_secs(2), "not at once");
    let id = r.body["error"]["details"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        s.get(&admin, &format!("/activities/{id}")).await.status,
        StatusCode::OK
    );

    let sink = Sink::start().await;
    let sub = subscribe(&s, &shop, "orders", &sink, false).await;
    let r = s
        .post(
            &shop,
            "/outbox?wait=replied&timeout_ms=5000",
            order("order 7", "orders"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["reply"]["echo"], "order 7");
    assert_eq!(r.body["status"], 200);
    assert_eq!(r.body["activity"]["object"]["content"], "order 7");
    assert!(
        r.body["replied_by"]
            .as_str()
            .expect("source")
            .starts_with("msg_")
    );
    let location = r.headers["location"].to_str().expect("location");
    assert!(location.ends_with(r.body["activity"]["id"].as_str().expect("id")));
    // timeout_ms as a float-spelled whole number is the same number.
    let r = s
        .post(
            &shop,
            "/outbox?wait=replied&timeout_ms=5000.0",
            order("order 8", "orders"),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["reply"]["echo"]),
        (StatusCode::OK, &json!("order 8"))
    );

    // A topic with no subscription while others have some: 503 once matched.
    let r = s
        .post(&shop, "/outbox?wait=replied", order("hush", "quiet"))
        .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "no_responder");

    // Past the deadline: 504 with the id; the delivery goes on and is answered later.
    sink.script(&[Answer(200, Duration::from_millis(1500))]);
    let r = s
        .post(
            &shop,
            "/outbox?wait=replied&timeout_ms=300",
            order("slow", "orders"),
        )
        .await;
    assert_error(&r, StatusCode::GATEWAY_TIMEOUT, "reply_timeout");
    let slow = r.body["error"]["details"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let got = sink.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.last().map(|g| g.0.as_str()), Some("slow"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s
            .get(
                &shop,
                &format!(
                    "/topics/orders/subscriptions/{}/deliveries?state=delivered",
                    sub["id"].as_str().expect("id")
                ),
            )
            .await;
        let delivered: Vec<&Value> = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["activity"] == json!(slow))
            .collect();
        if !delivered.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late delivery never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad arguments: 400 and nothing stored.
    let before = outbox(&s, &admin, "shop").await.len();
    for query in [
        "?wait=replied&timeout_ms=0",
        "?wait=replied&timeout_ms=60001",
        "?wait=replied&timeout_ms=1.5",
        "?wait=later",
    ] {
        let r = s
            .post(&shop, &format!("/outbox{query}"), order("bad", "orders"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {:?}", r.body);
    }
    assert_eq!(outbox(&s, &admin, "shop").await.len(), before);
}

#[tokio::test]
async fn an_ordered_subscription_waits_for_each_success() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sink = Sink::start().await;
    // The first attempt fails twice; the others must not overtake it.
    sink.script(&[Answer(500, Duration::ZERO), Answer(503, Duration::ZERO)]);
    let sub = subscribe(&s, &shop, "orders", &sink, true).await;
    assert_eq!(sub["ordered"], true);
    for n in 1..=4 {
        let r = s
            .post(&shop, "/outbox", order(&format!("o{n}"), "orders"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let got = sink.wait_for(6, Duration::from_secs(15)).await;
    let seen: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(seen, ["o1", "o1", "o1", "o2", "o3", "o4"], "{got:?}");
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        [500, 503, 200, 200, 200, 200]
    );

    // Unordered (the default) says so.
    let other = subscribe(&s, &shop, "orders", &Sink::start().await, false).await;
    assert_eq!(other["ordered"], false);
}

#[tokio::test]
async fn publish_at_publishes_once_later_and_only_for_admins_and_services() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let shop = service(&s, &admin, "shop", &["publish"]).await;
    let mute = service(&s, &admin, "mute", &["subscribe"]).await;

    let later = |content: &str, at: String| json!({"object": {"content": content}, "to": ["public"], "publish_at": at});
    // Refused: a user, a past or unreadable time, a bad activity, a wait; nothing stored.
    assert_error(
        &s.post(&ana, "/outbox", later("mine", in_ms(60_000))).await,
        StatusCode::FORBIDDEN,
        "schedule_not_allowed",
    );
    assert_error(
        &s.post(&mute, "/outbox", later("mute", in_ms(60_000))).await,
        StatusCode::FORBIDDEN,
        "missing_scope",
    );
    for at in ["tomorrow".to_owned(), "2026-12-24T18:00:00".to_owned()] {
        assert_error(
            &s.post(&admin, "/outbox", later("x", at)).await,
            StatusCode::BAD_REQUEST,
            "invalid_time",
        );
    }
    let r = s
        .post(
            &admin,
            "/outbox",
            json!({"type": "Like", "publish_at": in_ms(60_000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(s.get(&admin, "/schedules").await.body["items"], json!([]));

    let r = s.post(&shop, "/outbox", later("soon", in_ms(1200))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let name = r.body["name"].as_str().expect("name").to_owned();
    assert_eq!(
        (r.body["status"].as_str(), r.body["cron"].as_str()),
        (Some("active"), None)
    );
    assert_eq!(r.body["next_fires"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["owner"], "shop");
    assert!(!r.body["activity"].to_string().contains("publish_at"));
    assert!(
        outbox(&s, &admin, "shop").await.is_empty(),
        "published too early"
    );
    // A time already past is due at once.
    let r = s
        .post(&admin, "/outbox", later("overdue", in_ms(-60_000)))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);

    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let r = s.get(&shop, &format!("/schedules/{name}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if r.body["status"] == "done" {
            break r.body;
        }
        assert!(Instant::now() < deadline, "never fired: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["fired"], 1);
    assert_eq!(done["next_fires"], json!([]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        outbox(&s, &admin, "shop").await,
        ["soon"],
        "fired once, by the service"
    );
    assert_eq!(outbox(&s, &admin, "root").await, ["overdue"]);
    let r = s
        .get(
            &admin,
            &format!(
                "/activities/{}",
                done["last_activity"].as_str().expect("id")
            ),
        )
        .await;
    assert_eq!(r.body["actor"], "user:shop");
    s.assert_verified().await;
}

#[tokio::test]
async fn cron_schedules_fire_pause_resume_and_are_deleted() {
    let s = start().await;
    let admin = s.admin("root").await;
    let ana = s.user("ana").await;
    let shop = service(&s, &admin, "shop", &["publish"]).await;
    let other = service(&s, &admin, "other", &["publish"]).await;
    let mute = service(&s, &admin, "mute", &["subscribe"]).await;
    let tick = |name: &str, cron: &str, tz: Option<&str>| {
        json!({"name": name, "cron": cron, "timezone": tz,
               "activity": {"object": {"content": format!("tick {name}")}, "to": ["public"]}})
    };

    // Refused, with nothing stored.
    for (body, code) in [
        (tick("Bad Name", "* * * * *", None), "invalid_name"),
        (tick("bad", "* * * *", None), "invalid_cron"),
        (tick("bad", "61 * * * *", None), "invalid_cron"),
        (tick("bad", "0 0 30 2 *", None), "invalid_cron"),
        (
            tick("bad", "0 9 * * *", Some("Mars/Olympus")),
            "invalid_timezone",
        ),
        (
            json!({"name": "bad", "cron": "* * * * *", "activity": {"type": "Like"}}),
            "invalid_content",
        ),
    ] {
        let r = s.post(&shop, "/schedules", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        if code != "invalid_content" {
            assert_eq!(r.code(), code, "{body}: {:?}", r.body);
        }
    }
    assert_error(
        &s.post(&ana, "/schedules", tick("a", "* * * * *", None))
            .await,
        StatusCode::FORBIDDEN,
        "admin_only",
    );
    assert_error(
        &s.post(&mute, "/schedules", tick("m", "* * * * *", None))
            .await,
        StatusCode::FORBIDDEN,
        "missing_scope",
    );
    assert_eq!(s.get(&admin, "/schedules").await.body["items"], json!([]));

    // Every second (six fields: seconds first), in Paris.
    let r = s
        .post(
            &shop,
            "/schedules",
            tick("every-second", "* * * * * *", Some("Europe/Paris")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let fires: Vec<&str> = r.body["next_fires"]
        .as_array()
        .expect("fires")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(fires.len(), 5);
    assert!(fires.iter().all(|f| f.ends_with("+01:00")), "{fires:?}");
    assert_eq!(r.body["timezone"], "Europe/Paris");
    assert_error(
        &s.post(
            &admin,
            "/schedules",
            tick("every-second", "0 9 * * *", None),
        )
        .await,
        StatusCode::CONFLICT,
        "schedule_exists",
    );
    // Weekday mornings in New York: five fires, each at 09:00 local.
    let r = s
        .post(
            &admin,
            "/schedules",
            tick("standup", "0 9 * * 1-5", Some("America/New_York")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for fire in r.body["next_fires"].as_array().expect("fires") {
        assert!(
            fire.as_str().expect("fire").contains("T09:00:00-0"),
            "{fire}"
        );
    }

    // Who sees what: admins all, a service its own.
    let names = |r: Resp| -> Vec<String> {
        r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(s.get(&admin, "/schedules").await),
        ["every-second", "standup"]
    );
    assert_eq!(names(s.get(&shop, "/schedules").await), ["every-second"]);
    assert_eq!(
        names(s.get(&other, "/schedules").await),
        Vec::<String>::new()
    );
    assert_error(
        &s.get(&other, "/schedules/every-second").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.post(&other, "/schedules/every-second/pause", json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // It fires, once a second, as the service.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = s
        .post(&shop, "/schedules/every-second/pause", json!({}))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("paused")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["next_fires"], json!([]));
    // A fire in flight when the pause landed still completes and counts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = s.get(&shop, "/schedules/every-second").await;
    let fired = r.body["fired"].as_i64().expect("fired");
    assert!((2..=4).contains(&fired), "fired {fired} times in 2.6 s");
    let published = outbox(&s, &admin, "shop").await;
    assert_eq!(published.len() as i64, fired, "{published:?}");
    assert!(published.iter().all(|c| c == "tick every-second"));

    // Paused: nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(outbox(&s, &admin, "shop").await.len() as i64, fired);
    let r = s
        .post(&shop, "/schedules/every-second/resume", json!({}))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("active")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["next_fires"].as_array().map(Vec::len), Some(5));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        outbox(&s, &admin, "shop").await.len() as i64 > fired,
        "resumed"
    );

    // Deleted: gone, and what it published stays.
    assert_eq!(
        s.delete(&shop, "/schedules/every-second").await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&shop, "/schedules/every-second").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.delete(&shop, "/schedules/every-second").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let kept = outbox(&s, &admin, "shop").await.len();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        outbox(&s, &admin, "shop").await.len(),
        kept,
        "a deleted schedule fired"
    );
    s.assert_verified().await;
}

#[tokio::test]
async fn two_nodes_fire_a_schedule_once_and_a_reply_wakes_the_other_node() {
    let s = start().await;
    // Node b delivers webhooks; node a does not, so a's waiter hears of b's reply through
    // the store.
    let quiet = ServerConfig {
        webhooks: WebhookConfig {
            enabled: false,
            ..WebhookConfig::default()
        },
        ..ServerConfig::default()
    };
    let Some(a) = s.start_peer_configured(quiet, StoreConfig::default()).await else {
        eprintln!("two nodes need PostgreSQL (TIDINGS_TEST_STORE): skipped");
        return;
    };
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sink = Sink::start().await;
    subscribe(&s, &shop, "orders", &sink, false).await;
    let r = a
        .post(
            &shop,
            "/outbox?wait=replied&timeout_ms=10000",
            order("via b", "orders"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["reply"]["echo"], "via b");

    // A schedule every second with both nodes' loops running: one activity per fire.
    let r = a
        .post(
            &shop,
            "/schedules",
            json!({"name": "beat", "cron": "* * * * * *",
            "activity": {"object": {"content": "beat"}, "to": ["public"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = s.post(&shop, "/schedules/beat/pause", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fired = s.get(&shop, "/schedules/beat").await.body["fired"]
        .as_i64()
        .expect("fired");
    let beats = outbox(&a, &admin, "shop")
        .await
        .into_iter()
        .filter(|c| c == "beat")
        .count() as i64;
    assert!(fired >= 2, "fired {fired}");
    assert_eq!(
        beats, fired,
        "a fire published twice (or a publish not counted)"
    );
}

#[tokio::test]
async fn a_disabled_subscription_is_reported_to_the_admins() {
    let s = start().await;
    let admin = s.admin("root").await;
    let shop = service(&s, &admin, "shop", &["publish", "subscribe"]).await;
    topic(&s, &admin, "orders").await;
    let sink = Sink::start().await;
    sink.script(&[Answer(410, Duration::ZERO)]);
    let sub = subscribe(&s, &shop, "orders", &sink, false).await;
    let id = sub["id"].as_str().expect("id").to_owned();
    let r = s.post(&shop, "/outbox", order("gone?", "orders")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(10);
    let notice = loop {
        let r = s.get(&admin, "/inbox?limit=20").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let found = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["activity"]["object"]["bus_event"] == "subscription.disabled")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no notice: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let activity = &notice["activity"];
    assert_eq!(activity["actor"], "user:shop");
    assert_eq!(activity["object"]["subscription"], json!(id));
    assert_eq!(activity["object"]["topic"], "orders");
    assert!(
        activity["object"]["reason"]
            .as_str()
            .expect("reason")
            .contains("410")
    );
    let r = s
        .get(&shop, &format!("/topics/orders/subscriptions/{id}"))
        .await;
    assert_eq!(r.body["status"], "disabled");
}
