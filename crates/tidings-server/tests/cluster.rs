//! Cluster mode over HTTP: several nodes (servers in this process) on one PostgreSQL database
//! answer alike, keep live clients current with what other nodes publish, and turn the
//! database going away into 503s they recover from. These need `TIDINGS_TEST_STORE`; without
//! it they say loudly that they did not run (and fail under `TIDINGS_REQUIRE_POSTGRES`).
//! The process-level campaign (kill -9, NATS stopped, a late fourth node) is in
//! `crates/tidings/tests/cluster.rs`.

mod common;

use common::TestServer;
use common::sse::SseClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tidings_server::config::{ServedRoles, ServerConfig};
use tidings_store::StoreConfig;

/// Two nodes on one fresh database, or None (said loudly) on the embedded store.
async fn two_nodes() -> Option<(TestServer, TestServer)> {
    let a = TestServer::start().await;
    match a.start_peer().await {
        Some(b) => Some((a, b)),
        None => {
            eprintln!(
                "!!! cluster HTTP tests did NOT run: set TIDINGS_TEST_STORE to a PostgreSQL \
                 database (e.g. postgres://postgres@127.0.0.1/test)"
            );
            assert!(
                std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
                "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
            );
            None
        }
    }
}

/// Every item of an inbox walked in pages of `limit`, each page from the next node in turn.
async fn walk(nodes: &[&TestServer], token: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/inbox?limit={limit}");
    for turn in 0.. {
        let node = nodes[turn % nodes.len()];
        let page = node.get(token, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        ids.extend(TestServer::ids(&page.body));
        match page.body["next"].as_str() {
            Some(next) => path = format!("/inbox?limit={limit}&before={next}"),
            None => break,
        }
    }
    ids
}

#[tokio::test]
async fn every_node_answers_the_same_page_and_cursors_walk_across_nodes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let ana = a.user("ana").await;
    let bo = a.user("bo").await;
    // A session made on one node works on the other.
    let bo_on_b = b.login("bo", "correct horse").await;
    for i in 0..12 {
        let (node, token) = if i % 2 == 0 {
            (&a, &ana)
        } else {
            (&b, &bo_on_b)
        };
        let to = if i % 2 == 0 { "user:bo" } else { "user:ana" };
        node.note(token, &format!("n{i}"), &[to], &[]).await;
    }
    a.settle().await;
    b.settle().await;
    let on_a = a.get(&bo, "/inbox?limit=5").await;
    let on_b = b.get(&bo, "/inbox?limit=5").await;
    assert_eq!(on_a.status, StatusCode::OK);
    assert_eq!(on_a.body, on_b.body, "the same page, byte for byte");
    let full = a.get(&bo, "/inbox?limit=100").await;
    let all = TestServer::ids(&full.body);
    assert_eq!(all.len(), 12);
    assert_eq!(
        walk(&[&a, &b], &bo, 5).await,
        all,
        "a walk hopping nodes sees each item once"
    );
    assert_eq!(
        a.get(&bo, "/feeds").await.body,
        b.get(&bo, "/feeds").await.body,
        "the same counts"
    );
    a.assert_verified().await;
    b.assert_verified().await;
}

#[tokio::test]
async fn a_live_client_on_one_node_receives_what_another_node_publishes() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let ana = a.user("ana").await;
    let bo = a.user("bo").await;
    let mut live = SseClient::open(&b, "", &bo, None).await;
    live.expect("ready").await;
    a.note(&ana, "from node a", &["user:bo"], &[]).await;
    let first = live.entries(1).await;
    assert_eq!(
        first[0].json()["activity"]["object"]["content"],
        json!("from node a")
    );
    let resume_from = first[0].id.clone().expect("event id");
    drop(live);
    // Published while the client is away; it resumes on the other node without a gap.
    a.note(&ana, "while away 1", &["user:bo"], &[]).await;
    b.note(&ana, "while away 2", &["user:bo"], &[]).await;
    let mut resumed = SseClient::open(&a, "", &bo, Some(&resume_from)).await;
    resumed.expect("ready").await;
    let missed = resumed.entries(2).await;
    let contents: Vec<Value> = missed
        .iter()
        .map(|e| e.json()["activity"]["object"]["content"].clone())
        .collect();
    assert_eq!(contents, vec![json!("while away 1"), json!("while away 2")]);
    resumed.assert_quiet().await;
}

/// Runs SQL on the server of `url` as the test database's owner would.
fn admin_sql(url: &str, sql: String) {
    let admin = std::env::var("TIDINGS_TEST_STORE").expect("TIDINGS_TEST_STORE");
    let _ = url;
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("admin");
        client.batch_execute(&sql).expect("admin sql");
    })
    .join()
    .expect("admin thread");
}

#[tokio::test]
async fn the_database_going_away_is_a_503_and_the_node_recovers_by_itself() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    drop(b);
    let ana = a.user("ana").await;
    a.user("bo").await;
    a.note(&ana, "before", &["user:bo"], &[]).await;
    let url = a.postgres_url().expect("postgres");
    let db = url.rsplit('/').next().expect("db name").to_owned();
    admin_sql(
        &url,
        format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}';"
        ),
    );
    let login = a
        .request(
            reqwest::Method::POST,
            "/sessions",
            None,
            Some(json!({"username": "bo", "password": "correct horse"})),
            &[],
        )
        .await;
    assert_eq!(
        login.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        login.body
    );
    assert_eq!(login.code(), "store_unavailable");
    assert_eq!(login.headers["retry-after"], "1");
    let publish = a
        .post(
            &ana,
            "/outbox",
            json!({"object": {"content": "during"}, "to": ["user:bo"]}),
        )
        .await;
    assert_eq!(
        publish.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        publish.body
    );
    let ready = a
        .request(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    admin_sql(&url, format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = a
            .request(reqwest::Method::GET, "/readyz", None, None, &[])
            .await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready again: {:?}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bo = a.login("bo", "correct horse").await;
    a.note(&ana, "after", &["user:bo"], &[]).await;
    a.settle().await;
    let inbox = a.get(&bo, "/inbox").await;
    assert_eq!(TestServer::contents(&inbox.body), vec!["after", "before"]);
    a.assert_verified().await;
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_every_store() {
    let s = TestServer::start().await;
    let health = s
        .request(reqwest::Method::GET, "/healthz", None, None, &[])
        .await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = s
        .request(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["status"], json!("ready"));
    assert_eq!(ready.body["lag"], json!(0));
}

#[tokio::test]
async fn the_nats_doorbell_tells_other_nodes_at_once() {
    let Ok(bus) = std::env::var("TIDINGS_TEST_BUS") else {
        eprintln!(
            "!!! the NATS doorbell test did NOT run: set TIDINGS_TEST_BUS (nats://127.0.0.1:4222)"
        );
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_BUS is not"
        );
        return;
    };
    // Nodes that poll the change log only every 20 s: anything sooner came by the doorbell.
    let slow = tidings_store::StoreConfig {
        tail_poll: Duration::from_secs(20),
        ..tidings_store::StoreConfig::default()
    };
    let a = TestServer::start_with(
        tidings_server::config::ServerConfig::default(),
        slow.clone(),
    )
    .await;
    let Some(b) = a.start_peer_with(slow).await else {
        eprintln!("!!! the NATS doorbell test did NOT run: it needs TIDINGS_TEST_STORE");
        return;
    };
    tidings_server::bus::nats::attach(&bus, &a.store)
        .await
        .expect("bus on a");
    tidings_server::bus::nats::attach(&bus, &b.store)
        .await
        .expect("bus on b");
    // Let both subscriptions reach the server before the first ring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ana = a.user("ana").await;
    let bo = b.user("bo").await;
    for round in 0..3 {
        let published = a
            .post(
                &ana,
                "/outbox?wait=routed",
                json!({"object": {"content": format!("r{round}")}, "to": ["user:bo"]}),
            )
            .await;
        assert_eq!(published.status, StatusCode::CREATED);
        let seq = b.store.last_seq().await.expect("seq");
        tokio::time::timeout(Duration::from_secs(3), b.store.wait_routed(seq))
            .await
            .expect("node b learned of node a's publish through the doorbell")
            .expect("routed");
    }
    let inbox = b.get(&bo, "/inbox").await;
    assert_eq!(TestServer::contents(&inbox.body), vec!["r2", "r1", "r0"]);
}

#[tokio::test]
async fn every_operation_documents_the_503_any_node_can_answer() {
    let s = TestServer::start().await;
    let doc = s
        .request(reqwest::Method::GET, "/openapi.json", None, None, &[])
        .await;
    let mut operations = 0;
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations += 1;
                assert!(
                    operation["responses"]["503"]["headers"]["Retry-After"].is_object(),
                    "{method} {path} does not document its 503"
                );
                assert!(
                    operation["responses"]["421"].is_object(),
                    "{method} {path} does not document the 421 of a node without its role"
                );
            }
        }
    }
    assert!(operations > 40, "{operations} operations");
}

/// The id of the session a login answered with.
async fn login_session(node: &TestServer, username: &str) -> (String, String) {
    let r = node
        .request(
            reqwest::Method::POST,
            "/sessions",
            None,
            Some(json!({"username": username, "password": "correct horse"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (
        r.body["token"].as_str().expect("token").to_owned(),
        r.body["session"]["id"].as_str().expect("id").to_owned(),
    )
}

#[tokio::test]
async fn signing_a_device_out_on_one_node_ends_it_on_every_node() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    a.user("ana").await;
    let (laptop, laptop_id) = login_session(&a, "ana").await;
    let (phone, _) = login_session(&b, "ana").await;
    let (tablet, _) = login_session(&a, "ana").await;
    // Both nodes have every token cached.
    for node in [&a, &b] {
        for token in [&laptop, &phone, &tablet] {
            assert_eq!(node.get(token, "/me").await.status, StatusCode::OK);
        }
    }
    // The laptop holds a live stream on node a.
    let mut live = SseClient::open(&a, "", &laptop, None).await;
    live.expect("ready").await;

    // The phone, on node b, signs the laptop out.
    assert_eq!(
        b.delete(&phone, &format!("/me/sessions/{laptop_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let closed = live
        .next(Duration::from_secs(2))
        .await
        .expect("the laptop's stream on node a is closed in time");
    assert_eq!(closed.event, "closed");
    assert_eq!(closed.json()["reason"], "revoked");
    a.settle().await;
    assert_eq!(
        a.get(&laptop, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "node a no longer accepts the laptop's token"
    );

    // A password change on node a signs the phone out of node b, keeps the tablet.
    let changed = a
        .request(
            reqwest::Method::PUT,
            "/me/password",
            Some(&tablet),
            Some(json!({"current_password": "correct horse", "new_password": "battery staple"})),
            &[],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    b.settle().await;
    assert_eq!(b.get(&phone, "/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get(&tablet, "/me").await.status, StatusCode::OK);
    let listed = b.get(&tablet, "/me/sessions").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
}

/// `serve --roles` on one node: without `push`, live channels (SSE, Socket.IO) answer 421
/// `role_not_served` while the API works; health and readiness always answer.
#[tokio::test]
async fn a_node_without_push_refuses_live_channels_with_421() {
    let config = ServerConfig {
        roles: ServedRoles {
            api: true,
            push: false,
        },
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    assert_eq!(s.get(&ana, "/me").await.status, StatusCode::OK);
    let stream = SseClient::request(&s, "", Some(&ana), None).await;
    assert_eq!(stream.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: Value = stream.json().await.expect("json");
    assert_eq!(body["error"]["code"], "role_not_served");
    assert_eq!(body["error"]["details"]["role"], "push");
    let polling = reqwest::get(format!("{}/socket.io/?EIO=4&transport=polling", s.base))
        .await
        .expect("socket.io");
    assert_eq!(polling.status(), StatusCode::MISDIRECTED_REQUEST);
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{}{path}", s.base)).await.expect(path);
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

/// `serve --roles push` beside an api node: the push node keeps a live client current with
/// what the api node publishes, and answers API requests 421.
#[tokio::test]
async fn a_push_only_node_serves_live_clients_and_refuses_the_api() {
    let a = TestServer::start().await;
    let config = ServerConfig {
        roles: ServedRoles {
            api: false,
            push: true,
        },
        ..ServerConfig::default()
    };
    let no_router = StoreConfig {
        router: false,
        ..StoreConfig::default()
    };
    let Some(push) = a.start_peer_configured(config, no_router).await else {
        eprintln!("!!! the push-only node test did NOT run: set TIDINGS_TEST_STORE");
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
        );
        return;
    };
    let ana = a.user("ana").await;
    let me = push.get(&ana, "/me").await;
    assert_eq!(me.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(me.code(), "role_not_served");
    assert_eq!(me.body["error"]["details"]["role"], "api");
    let page = reqwest::get(format!("{}/", push.base))
        .await
        .expect("web app");
    assert_eq!(page.status(), StatusCode::MISDIRECTED_REQUEST);
    let mut stream = SseClient::open(&push, "", &ana, None).await;
    stream.expect("ready").await;
    a.note(&ana, "from the api node", &["public"], &[]).await;
    let entries = stream.entries(1).await;
    assert!(entries[0].data.contains("from the api node"), "{entries:?}");
}

/// Read-your-writes across nodes: every response carries the answering node's change-log
/// position; a request to another node carrying it is served once that node has applied the
/// log that far (it catches up at once), even when its own tailer would take much longer.
#[tokio::test]
async fn a_client_reads_its_own_write_on_another_node_with_its_position() {
    let a = TestServer::start().await;
    // B's tailer polls every 30 s and there is no bus: left alone, B stays behind.
    let slow = StoreConfig {
        tail_poll: Duration::from_secs(30),
        ..StoreConfig::default()
    };
    let Some(b) = a.start_peer_with(slow).await else {
        eprintln!("!!! the read-your-writes test did NOT run: set TIDINGS_TEST_STORE");
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
        );
        return;
    };
    let ana = a.user("ana").await;
    let published = a
        .request(
            reqwest::Method::POST,
            "/outbox?wait=routed",
            Some(&ana),
            Some(json!({"object": {"content": "read me anywhere"}, "to": ["public"]})),
            &[],
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::CREATED,
        "{:?}",
        published.body
    );
    let position = published.headers["tidings-position"]
        .to_str()
        .expect("position")
        .to_owned();
    let id = published.body["id"].as_str().expect("id").to_owned();
    let has_post = |page: &Value| TestServer::ids(page).contains(&id);
    // Without the position, B answers from where it is: not there yet.
    let stale = b.get(&ana, "/inbox").await;
    assert_eq!(stale.status, StatusCode::OK);
    assert!(
        !has_post(&stale.body),
        "B caught up by itself: the test shows nothing"
    );
    // With it, B catches up first.
    let fresh = b
        .request(
            reqwest::Method::GET,
            "/inbox",
            Some(&ana),
            None,
            &[("tidings-position", &position)],
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(has_post(&fresh.body), "{:?}", fresh.body);
    let at: i64 = fresh.headers["tidings-position"]
        .to_str()
        .expect("position")
        .parse()
        .expect("integer");
    assert!(at >= position.parse::<i64>().expect("integer"));
    // A position this cluster never reached, or not a number, is refused and changes nothing.
    for bad in ["999999999", "-1", "soon"] {
        let r = b
            .request(
                reqwest::Method::GET,
                "/inbox",
                Some(&ana),
                None,
                &[("tidings-position", bad)],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "invalid_position", "{bad}");
    }
}
