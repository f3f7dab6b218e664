//! The cluster campaign with real processes: three `tidings serve` nodes on one PostgreSQL
//! database and a private NATS server, clients publishing through every node while nodes are
//! killed with `kill -9` (the router among them) and NATS is stopped and started again; then
//! every acknowledged publish must be in the log exactly once, `tidings verify` must pass, a
//! live client must have seen every entry once and in order, and a fourth node started late must
//! report ready only once it serves the same pages.
//!
//! Needs `TIDINGS_TEST_STORE` (a PostgreSQL database beside which a fresh one is created) and
//! `/usr/sbin/nats-server`; without them it says loudly that it did not run (and fails under
//! `TIDINGS_REQUIRE_POSTGRES`). `TIDINGS_CLUSTER_ROUNDS` (default 3) sets how many kill rounds
//! it runs: CI runs the default, `bench/cluster-campaign.sh` runs 20.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Killed as Proc;
use common::{BIN, free_port};

const NATS: &str = "/usr/sbin/nats-server";

/// One `tidings serve` node.
struct Node {
    proc: Proc,
    base: String,
    port: u16,
}

fn start_node(store: &str, bus: &str, port: u16) -> Node {
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--store", store, "--bus", bus])
        // Four publishers on one token as fast as they can: far beyond a person's budget.
        .env("TIDINGS_RATE_LIMITS", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tidings serve");
    Node {
        proc: Proc(child),
        base: format!("http://127.0.0.1:{port}"),
        port,
    }
}

/// Waits until `node` says it is ready; returns its `/readyz` body.
async fn ready(client: &reqwest::Client, node: &Node) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", node.base)).send().await
            && r.status().is_success()
        {
            return r.json().await.expect("readyz body");
        }
        assert!(
            Instant::now() < deadline,
            "{} never became ready",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_nats(port: u16) -> Proc {
    Proc(
        Command::new(NATS)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server"),
    )
}

fn admin_token(store: &str, name: &str) -> String {
    let out = Command::new(BIN)
        .args(["--store", store, "admin", "create-user", name])
        .args(["--password", "correct horse"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What the clients saw: acknowledged publishes by idempotency key.
type Acked = Arc<Mutex<HashMap<String, String>>>;

/// Publish attempts that failed (a killed node, a 503) and were retried elsewhere.
static RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Publishes `count` notes from `token` to `to`, key `prefix-N`, round-robin over the nodes
/// listed in `nodes` (ports; a dead node is skipped by retrying the same key on the next
/// one). Records every acknowledged id.
async fn publisher(
    client: reqwest::Client,
    ports: Arc<Mutex<Vec<u16>>>,
    token: String,
    to: String,
    prefix: String,
    count: usize,
    acked: Acked,
) {
    for n in 0..count {
        let key = format!("{prefix}-{n}");
        let body = json!({"object": {"content": key}, "to": [to]});
        let mut attempt = 0usize;
        loop {
            let port = {
                let ports = ports.lock().expect("ports");
                ports[(n + attempt) % ports.len()]
            };
            attempt += 1;
            let sent = client
                .post(format!("http://127.0.0.1:{port}/api/v1/outbox"))
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                    let doc: Value = r.json().await.expect("json");
                    let id = doc["id"].as_str().expect("id").to_owned();
                    acked.lock().expect("acked").insert(key.clone(), id);
                    break;
                }
                // Killed node, refused connection, 503 while the database or a node restarts:
                // retry the same key elsewhere.
                _ => {
                    RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    assert!(attempt < 200, "publish {key} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

async fn get(client: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    let r = client
        .get(format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

/// Every item id of an inbox, newest first, walked in pages.
async fn inbox_ids(client: &reqwest::Client, base: &str, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = "/inbox?limit=100".to_owned();
    loop {
        let page = get(client, base, token, &path).await;
        for item in page["items"].as_array().expect("items") {
            ids.push(item["activity"]["id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/inbox?limit=100&before={next}"),
            None => return ids,
        }
    }
}

/// Reads SSE entries from `base` for `token` into `seen` until dropped.
async fn live_client(base: String, token: String, seen: Arc<Mutex<Vec<String>>>) {
    let client = reqwest::Client::new();
    let mut response = client
        .get(format!("{base}/api/v1/inbox/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: entry")
                && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
            {
                let doc: Value = serde_json::from_str(data).expect("entry json");
                if let Some(id) = doc["activity"]["id"].as_str() {
                    seen.lock().expect("seen").push(id.to_owned());
                }
            }
        }
    }
}

#[tokio::test]
async fn three_nodes_lose_nothing_through_kills_and_a_nats_outage() {
    let Ok(admin) = std::env::var("TIDINGS_TEST_STORE") else {
        eprintln!("!!! the process cluster campaign did NOT run: set TIDINGS_TEST_STORE");
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
        );
        return;
    };
    assert!(
        std::path::Path::new(NATS).exists(),
        "{NATS} is needed for the cluster campaign"
    );
    let rounds: usize = std::env::var("TIDINGS_CLUSTER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let name = format!("tidings_k_{}", uuid_like());
    let store = tidings_store::create_postgres_database(&admin, &name).expect("database");
    let nats_port = free_port();
    let mut nats = Some(start_nats(nats_port));
    let bus = format!("nats://127.0.0.1:{nats_port}");
    let client = reqwest::Client::new();

    let mut nodes: Vec<Node> = (0..3)
        .map(|_| start_node(&store, &bus, free_port()))
        .collect();
    for node in &nodes {
        ready(&client, node).await;
    }
    let ana = admin_token(&store, "ana");
    let bo = admin_token(&store, "bo");
    // Bo watches live on the node that is never killed (the last one).
    let watched = nodes[2].base.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let live = tokio::spawn(live_client(watched.clone(), bo.clone(), seen.clone()));

    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let ports = Arc::new(Mutex::new(nodes.iter().map(|n| n.port).collect::<Vec<_>>()));
    for round in 0..rounds {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(publisher(
                    client.clone(),
                    ports.clone(),
                    ana.clone(),
                    "user:bo".into(),
                    format!("r{round}w{w}"),
                    25,
                    acked.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Kill the router (or, if the watched node routes, the first node) mid-load.
        let mut victim = 0;
        for (i, node) in nodes.iter().enumerate().take(2) {
            let state: Value = match client.get(format!("{}/readyz", node.base)).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if state["router"] == json!(true) {
                victim = i;
            }
        }
        let port = nodes[victim].port;
        // kill -9: no shutdown, no goodbye to clients or to PostgreSQL.
        let _ = nodes[victim].proc.0.kill();
        let _ = nodes[victim].proc.0.wait();
        if round % 2 == 1 {
            // NATS goes away too; nodes fall back to polling PostgreSQL.
            nats.take();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes[victim] = start_node(&store, &bus, port);
        if nats.is_none() {
            nats = Some(start_nats(nats_port));
        }
        for writer in writers {
            writer.await.expect("publisher");
        }
        ready(&client, &nodes[victim]).await;
    }

    // The kills hit publishes in flight (else this campaign proved little).
    let retries = RETRIES.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "cluster campaign: {rounds} rounds, {retries} publish attempts retried on another node"
    );
    assert!(
        retries > 0,
        "no publish was in flight when a node was killed"
    );
    // Every acknowledged publish is in the log exactly once.
    let acked = acked.lock().expect("acked").clone();
    assert_eq!(acked.len(), rounds * 4 * 25);
    let unique: HashSet<&String> = acked.values().collect();
    assert_eq!(
        unique.len(),
        acked.len(),
        "two keys acknowledged with one id"
    );
    let outbox_total = {
        let mut total = 0;
        let mut ids = HashSet::new();
        let mut path = "/users/ana/outbox?limit=100".to_owned();
        loop {
            let page = get(&client, &nodes[2].base, &ana, &path).await;
            for item in page["items"].as_array().expect("items") {
                assert!(ids.insert(item["activity"]["id"].as_str().expect("id").to_owned()));
                total += 1;
            }
            match page["next"].as_str() {
                Some(next) => path = format!("/users/ana/outbox?limit=100&before={next}"),
                None => break,
            }
        }
        for id in acked.values() {
            assert!(ids.contains(id), "acknowledged {id} is missing");
        }
        total
    };
    assert_eq!(
        outbox_total,
        acked.len(),
        "an unacknowledged or duplicate publish got in"
    );

    // Every node serves the same inbox; the live client saw each entry once, in log order.
    let reference = inbox_ids(&client, &nodes[2].base, &bo).await;
    assert_eq!(reference.len(), acked.len());
    for node in &nodes {
        ready(&client, node).await;
        assert_eq!(
            inbox_ids(&client, &node.base, &bo).await,
            reference,
            "{}",
            node.base
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("seen").len() < reference.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    live.abort();
    let mut live_order = seen.lock().expect("seen").clone();
    live_order.reverse();
    assert_eq!(
        live_order, reference,
        "the live client saw each entry once, in order"
    );

    // A fourth node started now catches up and only then says ready, with the same pages.
    let late = start_node(&store, &bus, free_port());
    let state = ready(&client, &late).await;
    assert!(state["lag"].as_i64().expect("lag") <= 100);
    assert_eq!(inbox_ids(&client, &late.base, &bo).await, reference);

    let verify = Command::new(BIN)
        .args(["--store", &store, "verify"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// A unique suffix for database names.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}
