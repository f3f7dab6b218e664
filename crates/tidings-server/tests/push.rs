//! The live inbox channel: SSE driven by a Rust client here, Socket.IO driven by the stock
//! `socket.io-client` (Node) in `socketio/scenarios.mjs`.

mod common;

use common::TestServer;
use common::sse::{SseClient, SseEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn contents(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e.json()["activity"]["object"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn sse_sends_live_entries_exactly_as_the_inbox_lists_them() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "eng", "public", "open").await;
    assert!(
        s.put(&bob, "/circles/eng/members/bob")
            .await
            .status
            .is_success()
    );

    let mut all = SseClient::open(&s, "", &bob, None).await;
    let ready = all.expect("ready").await;
    assert_eq!(ready.id.as_deref(), ready.json()["cursor"].as_str());
    let mut releases = SseClient::open(&s, "tags=release", &bob, None).await;
    releases.expect("ready").await;
    let mut direct = SseClient::open(&s, "kind=direct", &bob, None).await;
    direct.expect("ready").await;

    s.note(&ana, "chatter", &["circle:eng"], &[]).await;
    s.note(&ana, "v1 shipped", &["circle:eng"], &["release"])
        .await;
    s.note(&ana, "psst", &["user:bob"], &[]).await;

    let got = all.entries(3).await;
    assert_eq!(contents(&got), ["chatter", "v1 shipped", "psst"]);
    // Byte for byte the REST items, and each id is the item's cursor.
    let page = s.get(&bob, "/inbox?limit=3").await.body;
    let mut listed: Vec<Value> = page["items"].as_array().expect("items").clone();
    listed.reverse();
    for (event, item) in got.iter().zip(&listed) {
        assert_eq!(&event.json(), item);
        assert_eq!(event.id.as_deref(), item["cursor"].as_str());
    }
    assert_eq!(contents(&releases.entries(1).await), ["v1 shipped"]);
    assert_eq!(contents(&direct.entries(1).await), ["psst"]);
    all.assert_quiet().await;
    releases.assert_quiet().await;
    direct.assert_quiet().await;
}

impl SseClient {
    /// Events until a `counts` one arrives (entries before it are skipped); its payload.
    async fn counts(&mut self) -> Value {
        loop {
            let event = self
                .next(Duration::from_secs(10))
                .await
                .expect("a counts event");
            match event.event.as_str() {
                "counts" => {
                    assert_eq!(event.id, None, "counts must not move the resume point");
                    return event.json();
                }
                "entry" | "ready" => continue,
                other => panic!("unexpected {other} event"),
            }
        }
    }

    /// Everything that arrives within a short while is entries: no counts event.
    async fn assert_no_counts(&mut self) {
        while let Some(e) = self.next(Duration::from_millis(400)).await {
            assert_eq!(e.event, "entry", "{e:?}");
        }
    }
}

fn unseen_unread(counts: &Value, feed: &str) -> (i64, i64) {
    (
        counts[feed]["unseen"].as_i64().expect("unseen"),
        counts[feed]["unread"].as_i64().expect("unread"),
    )
}

#[tokio::test]
async fn sse_pushes_feed_counts_when_they_change() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let post = s.note(&bob, "my photo", &["public"], &[]).await;
    let post_id = post["id"].as_str().expect("id").to_owned();
    s.settle().await;

    let mut counted = SseClient::open(&s, "counts=notifications", &bob, None).await;
    counted.expect("ready").await;
    let first = counted.counts().await;
    assert_eq!(unseen_unread(&first, "notifications"), (0, 0));
    assert_eq!(first.as_object().map(|o| o.len()), Some(1), "{first}");
    // A second device without counts never gets any.
    let mut plain = SseClient::open(&s, "", &bob, None).await;
    plain.expect("ready").await;

    // A like raises a notification: pushed at once.
    let liked = s
        .post(&ana, &format!("/activities/{post_id}/like"), json!({}))
        .await;
    assert_eq!(liked.status, StatusCode::CREATED, "{:?}", liked.body);
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (1, 1)
    );
    // A reply too; nothing that does not change them sends counts again.
    s.publish(
        &ana,
        json!({"object": {"type": "Note", "content": "nice"}, "inReplyTo": post_id}),
    )
    .await;
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (2, 2)
    );
    s.note(&ana, "unrelated", &["public"], &[]).await;
    counted.assert_no_counts().await;

    // Seen on another device: the badge clears here too.
    let seen = s.post(&bob, "/feeds/notifications/seen", json!({})).await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (0, 2)
    );
    // An undone like takes its notification with it.
    let unliked = s.delete(&ana, &format!("/activities/{post_id}/like")).await;
    assert!(unliked.status.is_success(), "{:?}", unliked.body);
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (0, 1)
    );
    // Retracting a liked post takes the like's notification with it.
    let second = s.note(&bob, "another photo", &["public"], &[]).await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    s.post(&ana, &format!("/activities/{second_id}/like"), json!({}))
        .await;
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (1, 2)
    );
    let retracted = s
        .post(&bob, &format!("/activities/{second_id}/retract"), json!({}))
        .await;
    assert!(retracted.status.is_success(), "{:?}", retracted.body);
    assert_eq!(
        unseen_unread(&counted.counts().await, "notifications"),
        (0, 1)
    );
    plain.assert_no_counts().await;

    // `all`: every declared feed, home included, which counts new inbox items.
    let mut everything = SseClient::open(&s, "counts=all", &bob, None).await;
    everything.expect("ready").await;
    let all = everything.counts().await;
    let feeds = s.get(&bob, "/feeds").await.body;
    let names: Vec<&str> = feeds
        .as_array()
        .expect("feeds")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    let mut keys: Vec<&str> = all
        .as_object()
        .expect("counts object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    let home_before = unseen_unread(&all, "home");
    s.note(&ana, "for bob", &["user:bob"], &[]).await;
    let home_after = unseen_unread(&everything.counts().await, "home");
    assert_eq!(home_after.0, home_before.0 + 1);
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_without_gaps_or_duplicates() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut first = SseClient::open(&s, "", &ana, None).await;
    let ready = first.expect("ready").await;
    for i in 0..3 {
        s.note(&ana, &format!("before {i}"), &["public"], &[]).await;
    }
    let seen = first.entries(3).await;
    let last = seen.last().and_then(|e| e.id.clone()).expect("id");
    drop(first);
    for i in 0..5 {
        s.note(&ana, &format!("away {i}"), &["public"], &[]).await;
    }
    // Publishing keeps going while the client reconnects.
    let publisher = {
        let base = s.base.clone();
        let token = ana.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..20 {
                let r = client
                    .post(format!("{base}/api/v1/outbox"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "Create", "object": {"type": "Note", "content": format!("during {i}")}, "to": ["public"]}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
    };
    let mut second = SseClient::open(&s, "", &ana, Some(&last)).await;
    assert_eq!(
        second.expect("ready").await.id.as_deref(),
        Some(last.as_str())
    );
    let got = second.entries(25).await;
    publisher.await.expect("publisher");
    let mut expected: Vec<String> = (0..5).map(|i| format!("away {i}")).collect();
    expected.extend((0..20).map(|i| format!("during {i}")));
    assert_eq!(contents(&got), expected);
    second.assert_quiet().await;

    // `after` works the same, and the ready cursor of a client that saw nothing is a resume
    // point too.
    let mut from_ready = SseClient::open(
        &s,
        &format!("after={}", ready.id.as_deref().expect("ready id")),
        &ana,
        None,
    )
    .await;
    from_ready.expect("ready").await;
    assert_eq!(from_ready.entries(28).await.len(), 28);
    from_ready.assert_quiet().await;
}

#[tokio::test]
async fn sse_refuses_bad_credentials_and_bad_arguments() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let root = s.admin("root").await;
    let cases: [(Option<&str>, &str, StatusCode, &str); 6] = [
        (None, "", StatusCode::UNAUTHORIZED, "unauthenticated"),
        (
            Some("tdg_nope"),
            "",
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (
            Some(&ana),
            "after=garbage",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            Some(&ana),
            "kind=loud",
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            Some(&ana),
            "circles=Not%20A%20Slug!",
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            Some(&ana),
            "counts=notifications,nope",
            StatusCode::BAD_REQUEST,
            "unknown_feed",
        ),
    ];
    for (token, query, status, code) in cases {
        let r = SseClient::request(&s, query, token, None).await;
        assert_eq!(r.status(), status, "{query}");
        let body: Value = r.json().await.expect("error body");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    // A token in the query (for EventSource) works; a bad one is refused the same way.
    let r = SseClient::request(&s, &format!("access_token={ana}"), None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    let r = SseClient::request(&s, "access_token=tdg_nope", None, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Suspension revokes the account's tokens: its streams are refused like revoked ones.
    assert!(
        s.post(&root, "/users/ana/suspend", json!({}))
            .await
            .status
            .is_success()
    );
    let r = SseClient::request(&s, "", Some(&ana), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sse_only_ever_carries_the_callers_own_inbox() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let _cat = s.user("cat").await;
    s.circle(&ana, "secret", "private", "invite").await;
    let mut bobs = SseClient::open(&s, "", &bob, None).await;
    bobs.expect("ready").await;
    s.note(&ana, "for cat", &["user:cat"], &[]).await;
    s.note(&ana, "in the private circle", &["circle:secret"], &[])
        .await;
    // Filtering on a circle one cannot read yields nothing from it.
    let mut nosy = SseClient::open(&s, "circles=secret", &bob, None).await;
    nosy.expect("ready").await;
    s.note(&ana, "for bob", &["user:bob"], &[]).await;
    assert_eq!(contents(&bobs.entries(1).await), ["for bob"]);
    bobs.assert_quiet().await;
    nosy.assert_quiet().await;
}

#[tokio::test]
async fn sse_is_cut_within_a_second_of_logout_or_suspension() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let root = s.admin("root").await;
    let mut anas = SseClient::open(&s, "", &ana, None).await;
    anas.expect("ready").await;
    let mut bobs = SseClient::open(&s, "", &bob, None).await;
    bobs.expect("ready").await;

    let started = tokio::time::Instant::now();
    assert!(
        s.delete(&ana, "/sessions/current")
            .await
            .status
            .is_success()
    );
    let closed = anas
        .next(Duration::from_secs(1))
        .await
        .expect("closed in time");
    assert_eq!(closed.event, "closed");
    assert_eq!(closed.json()["reason"], "revoked");
    assert!(
        anas.next(Duration::from_secs(1)).await.is_none(),
        "stream ends"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    assert!(
        s.post(&root, "/users/bob/suspend", json!({}))
            .await
            .status
            .is_success()
    );
    let closed = bobs
        .next(Duration::from_secs(1))
        .await
        .expect("closed in time");
    assert_eq!(closed.json()["reason"], "suspended");
}

#[tokio::test]
async fn sse_clients_are_told_to_resume_when_the_server_stops() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut anas = SseClient::open(&s, "", &ana, None).await;
    let ready = anas.expect("ready").await;
    let stop = tokio::spawn(s.stop());
    let resume = anas.expect("resume").await;
    assert_eq!(resume.json()["reason"], "shutdown");
    assert_eq!(resume.json()["cursor"], ready.json()["cursor"]);
    // The graceful shutdown does not wait on the stream forever.
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .expect("server stops")
        .expect("stop task");
}

#[tokio::test]
async fn a_stalled_client_is_dropped_without_delaying_anyone() {
    let config = ServerConfig {
        stall_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    // The stalled client: a small receive window, and it never reads after asking.
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(
            format!("GET /api/v1/inbox/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {bob}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("request");
    let mut reader = SseClient::open(&s, "", &bob, None).await;
    reader.expect("ready").await;

    // ~6 MB of events: far more than the stalled connection's buffers hold.
    let body = "x".repeat(15_000);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let base = s.base.clone();
        let token = ana.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..50 {
                let r = client
                    .post(format!("{base}/api/v1/outbox"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "Create", "object": {"type": "Note", "content": format!("{worker}-{i} {body}")}, "to": ["user:bob"]}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }));
    }
    let got = reader.entries(400).await;
    for task in tasks {
        task.await.expect("publisher");
    }
    assert_eq!(got.len(), 400);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "publishing and reading took {elapsed:?}"
    );

    // Past the stall timeout the server has given the stalled connection up: reading it now
    // drains what was buffered and then ends, instead of streaming on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut sink = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut total = 0usize;
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the stalled connection was closed by the server");
    assert!(
        drained < 6_000_000,
        "the stalled client was not streamed everything: {drained}"
    );
    // And the healthy client is still live.
    s.note(&ana, "still here", &["user:bob"], &[]).await;
    assert_eq!(contents(&reader.entries(1).await), ["still here"]);
}

/// Runs the Socket.IO scenarios with the stock Node client, when Node and the client are
/// installed (`npm ci --prefix crates/tidings-server/tests/socketio`); CI requires them.
#[tokio::test]
async fn socketio_client_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    let required = std::env::var("TIDINGS_REQUIRE_E2E").is_ok_and(|v| v == "1");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules/socket.io-client").exists() {
        let message = format!(
            "\n\n*** Socket.IO client scenarios DID NOT RUN: install Node and run \
             `npm ci --prefix {}` ***\n",
            dir.display()
        );
        assert!(!required, "{message}");
        eprintln!("{message}");
        return;
    }
    let s = TestServer::start().await;
    let output = tokio::process::Command::new("node")
        .arg("scenarios.mjs")
        .arg(&s.base)
        .current_dir(&dir)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "Socket.IO scenarios failed:\n{stdout}"
    );
    assert_eq!(stdout.matches("ok   ").count(), 9, "every scenario ran");
}

#[tokio::test]
async fn a_user_holds_at_most_64_live_connections_and_closed_ones_free_their_place() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut open = Vec::new();
    for _ in 0..tidings_server::push::MAX_CONNECTIONS_PER_USER {
        let mut stream = SseClient::open(&s, "", &ana, None).await;
        stream.expect("ready").await;
        open.push(stream);
    }
    let r = SseClient::request(&s, "", Some(&ana), None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "too_many_connections");
    // Another user is not affected.
    let bob = s.user("bob").await;
    SseClient::open(&s, "", &bob, None)
        .await
        .expect("ready")
        .await;
    // A closed connection gives its place back.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = SseClient::request(&s, "", Some(&ana), None).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Engine.IO layer's answers to requests the Node client never makes: a wrong protocol
/// version, an unknown session, a second long-poll at once; and a whole polling exchange
/// (handshake, refused `CONNECT`, close) by hand.
#[tokio::test]
async fn engine_io_refuses_bad_requests_and_speaks_polling() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = |query: &str| format!("{}/socket.io/?{query}", s.base);
    let r = http
        .get(url("EIO=3&transport=polling"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], 5);
    let r = http
        .get(url("EIO=4&transport=polling&sid=nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], 1);

    // Handshake.
    let open = http
        .get(url("EIO=4&transport=polling"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let open: Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("open JSON");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    assert_eq!(open["upgrades"], json!(["websocket"]));
    let poll = url(&format!("EIO=4&transport=polling&sid={sid}"));
    // A CONNECT without a token is refused with the reason.
    let r = http
        .post(&poll)
        .body("40{\"token\":\"tdg_nope\"}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let answer = http
        .get(&poll)
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("body");
    let refusal: Value =
        serde_json::from_str(answer.strip_prefix("44").expect("connect_error")).expect("json");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("unauthenticated")),
        "{answer}"
    );
    assert_eq!(refusal["data"]["code"], "unauthenticated", "{answer}");
    // A second long-poll while one waits breaks the protocol: the session ends.
    let waiting = tokio::spawn(http.get(&poll).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = http.get(&poll).send().await.expect("poll");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let released = waiting.await.expect("task").expect("poll");
    assert_eq!(released.text().await.expect("body"), "1");
    let r = http.get(&poll).send().await.expect("poll");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A raw Socket.IO websocket client, past `CONNECT`; `rcvbuf` shrinks its receive window.
async fn sio_client(
    s: &TestServer,
    token: &str,
    rcvbuf: Option<u32>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).expect("rcvbuf");
    }
    let tcp = socket.connect(addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        tcp,
    )
    .await
    .expect("websocket handshake");
    let open = ws.next().await.expect("open").expect("open");
    assert!(open.to_text().expect("text").starts_with("0{"), "{open}");
    ws.send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .expect("connect");
    ws
}

/// The next `42["event", data]` on a raw Socket.IO client, other packets skipped.
async fn sio_event(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> (String, Value) {
    use futures::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("frame");
        let text = message.to_text().expect("text");
        if let Some(event) = text.strip_prefix("42") {
            let mut args: Vec<Value> = serde_json::from_str(event).expect("event JSON");
            let data = args.pop().expect("data");
            let name = args.pop().expect("name");
            return (name.as_str().expect("name").to_owned(), data);
        }
    }
}

#[tokio::test]
async fn socketio_clients_are_told_to_resume_when_the_server_stops() {
    use futures::StreamExt;
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut ws = sio_client(&s, &ana, None).await;
    let (event, ready) = sio_event(&mut ws).await;
    assert_eq!(event, "ready");
    let stop = tokio::spawn(s.stop());
    let (event, resume) = sio_event(&mut ws).await;
    assert_eq!(event, "resume", "{resume}");
    assert_eq!(resume["reason"], "shutdown");
    assert_eq!(resume["cursor"], ready["cursor"]);
    // Then a server-side disconnect, and the socket ends.
    let mut rest = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
    {
        if let Ok(text) = message.to_text() {
            rest.push(text.to_owned());
        }
    }
    assert!(rest.iter().any(|m| m == "41"), "{rest:?}");
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .expect("server stops")
        .expect("stop task");
}

#[tokio::test]
async fn a_stalled_socketio_client_is_dropped_without_delaying_anyone() {
    let config = ServerConfig {
        stall_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let mut stalled = sio_client(&s, &bob, Some(4096)).await;
    let mut reader = sio_client(&s, &bob, None).await;
    assert_eq!(sio_event(&mut reader).await.0, "ready");

    // ~6 MB of events: far more than the stalled connection's buffers hold.
    let body = "x".repeat(15_000);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let base = s.base.clone();
        let token = ana.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..50 {
                let r = client
                    .post(format!("{base}/api/v1/outbox"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "Create", "object": {"type": "Note", "content": format!("{worker}-{i} {body}")}, "to": ["user:bob"]}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }));
    }
    let started = tokio::time::Instant::now();
    for _ in 0..400 {
        assert_eq!(sio_event(&mut reader).await.0, "entry");
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "publishing and reading took {elapsed:?}"
    );

    // The server has given the stalled connection up: reading it now drains what was
    // buffered and then ends, instead of streaming on.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        use futures::StreamExt;
        let mut total = 0usize;
        while let Some(Ok(message)) = stalled.next().await {
            total += message.len();
        }
        total
    })
    .await
    .expect("the stalled connection was closed by the server");
    assert!(
        drained < 6_000_000,
        "the stalled client was not streamed everything: {drained}"
    );
    // And the healthy client is still live.
    s.note(&ana, "still here", &["user:bob"], &[]).await;
    let (event, data) = sio_event(&mut reader).await;
    assert_eq!(event, "entry");
    assert_eq!(data["activity"]["object"]["content"], "still here");
}
