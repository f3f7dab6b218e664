//! The crash campaign on the embedded store (the default): one `tidings serve` over a data dir,
//! writers publishing without pause, and the server killed with `kill -9` at a random moment of
//! every round. Each publish carries an `Idempotency-Key`; a publish cut off by the kill is
//! retried with the same key once the server is back, and some acknowledged publishes are
//! retried on purpose. A client-side log records every acknowledged publish (key → id). After
//! every restart `tidings verify` must pass and every publish acknowledged so far must be
//! readable; at the end the outbox must hold each key exactly once (zero lost, zero
//! duplicates) and the reader's inbox must hold every one of them (routing resumed).
//!
//! `TIDINGS_CRASH_ROUNDS` (default 2) sets the rounds: the default test command runs the short
//! smoke, `bench/crash-campaign.sh` runs 20. `TIDINGS_CRASH_LOG` names a file for the client
//! log (JSON lines); by default it goes to the test's temporary dir.

use rand::Rng;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, create_user, free_port, serve, wait_ready};

/// Publishes each writer makes per round (the kill lands somewhere among them).
const PER_WRITER: usize = 40;
/// Concurrent writers: enough that several publishes share a group commit when the kill lands.
const WRITERS: usize = 4;

fn verify(dir: &std::path::Path) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("verify")
        .env("RUST_LOG", "warn")
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "tidings verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client-side log: every acknowledged publish, in memory and as JSON lines on disk.
struct AckLog {
    acked: Mutex<HashMap<String, String>>,
    file: Mutex<std::fs::File>,
}

impl AckLog {
    fn record(&self, key: &str, id: &str) {
        let mut acked = self.acked.lock().expect("acked");
        if let Some(first) = acked.get(key) {
            assert_eq!(first, id, "key {key} acknowledged with two ids");
            return;
        }
        acked.insert(key.to_owned(), id.to_owned());
        let mut file = self.file.lock().expect("log file");
        writeln!(file, "{}", json!({"key": key, "id": id})).expect("write ack log");
    }
}

/// Counters the campaign reports.
#[derive(Default)]
struct Tally {
    /// Attempts that got no answer or a non-201 (the server was down or dying): retried.
    cut_off: AtomicUsize,
    /// Deliberate re-sends of acknowledged publishes, answered as replays.
    replays: AtomicUsize,
    /// Cut-off publishes whose retry was answered as a replay: committed before the kill but
    /// never acknowledged, the case the key keeps from becoming a duplicate.
    committed_unacked: AtomicUsize,
}

/// Publishes `PER_WRITER` notes keyed `prefix-N`, each retried with its key until acknowledged;
/// one in five acknowledged publishes is sent again and must replay the same id.
async fn writer(
    client: reqwest::Client,
    base: String,
    token: String,
    prefix: String,
    log: Arc<AckLog>,
    tally: Arc<Tally>,
) {
    for n in 0..PER_WRITER {
        let key = format!("{prefix}-{n}");
        let body = json!({"object": {"content": key}, "to": ["user:bo"]});
        let deadline = Instant::now() + Duration::from_secs(60);
        let resend = rand::rng().random_ratio(1, 5);
        let mut sends = 0;
        loop {
            let sent = client
                .post(format!("{base}/api/v1/outbox"))
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let answer = match sent {
                Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                    let replayed = r.headers().contains_key("idempotent-replayed");
                    r.json::<Value>().await.ok().map(|doc| (doc, replayed))
                }
                _ => None,
            };
            match answer {
                Some((doc, replayed)) => {
                    let id = doc["id"].as_str().expect("id").to_owned();
                    if sends == 0 && replayed {
                        tally.committed_unacked.fetch_add(1, Ordering::Relaxed);
                    }
                    log.record(&key, &id);
                    sends += 1;
                    if sends == 2 {
                        assert!(replayed, "a re-sent key {key} was not answered as a replay");
                        tally.replays.fetch_add(1, Ordering::Relaxed);
                    }
                    if resend && sends < 2 {
                        continue;
                    }
                    break;
                }
                None => {
                    tally.cut_off.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < deadline,
                        "publish {key} never acknowledged"
                    );
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

/// Every item of a paged listing (`/inbox`, `/users/ana/outbox`): (id, content), newest first.
async fn walk(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut page_path = format!("{path}?limit=100");
    loop {
        let page = get(client, base, token, &page_path).await;
        for item in page["items"].as_array().expect("items") {
            items.push((
                item["activity"]["id"].as_str().expect("id").to_owned(),
                item["activity"]["object"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => page_path = format!("{path}?limit=100&before={next}"),
            None => return items,
        }
    }
}

#[tokio::test]
async fn kill_dash_nine_under_sustained_publishing_loses_and_duplicates_nothing() {
    let rounds: usize = std::env::var("TIDINGS_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log_path = std::env::var("TIDINGS_CRASH_LOG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("acked.jsonl"));
    let log = Arc::new(AckLog {
        acked: Mutex::new(HashMap::new()),
        file: Mutex::new(std::fs::File::create(&log_path).expect("ack log")),
    });
    let tally = Arc::new(Tally::default());
    let ana = create_user(&data, "ana", false);
    let bo = create_user(&data, "bo", false);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut server = serve(&data, port, None);
    wait_ready(&client, &base).await;
    let started = Instant::now();

    for round in 0..rounds {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    client.clone(),
                    base.clone(),
                    ana.clone(),
                    format!("r{round}w{w}"),
                    log.clone(),
                    tally.clone(),
                ))
            })
            .collect();
        // Kill at a random moment while the writers are busy (after a random number of this
        // round's publishes were acknowledged): no shutdown, no flush.
        let before = log.acked.lock().expect("acked").len();
        let at = rand::rng().random_range(5..WRITERS * PER_WRITER / 2);
        let wait = Instant::now();
        while log.acked.lock().expect("acked").len() < before + at {
            assert!(
                wait.elapsed() < Duration::from_secs(60),
                "the writers stalled"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let cut_before = tally.cut_off.load(Ordering::Relaxed);
        drop(server);
        tokio::time::sleep(Duration::from_millis(100)).await;
        server = serve(&data, port, None);
        wait_ready(&client, &base).await;
        // The store must verify after every restart (next to the live server).
        verify(&data);
        for handle in writers {
            handle.await.expect("writer");
        }
        // Everything acknowledged so far is still there.
        let acked = log.acked.lock().expect("acked").clone();
        for (key, id) in &acked {
            let r = client
                .get(format!("{base}/api/v1/activities/{id}"))
                .bearer_auth(&ana)
                .send()
                .await
                .expect("get activity");
            assert_eq!(
                r.status(),
                reqwest::StatusCode::OK,
                "acknowledged {key} ({id}) lost"
            );
        }
        eprintln!(
            "crash round {round}: killed after {at} acknowledged publishes, {} publishes cut off, {} acknowledged",
            tally.cut_off.load(Ordering::Relaxed) - cut_before,
            acked.len()
        );
    }

    let keys = rounds * WRITERS * PER_WRITER;
    let acked = log.acked.lock().expect("acked").clone();
    assert_eq!(acked.len(), keys, "every key acknowledged once");
    let ids: HashSet<&String> = acked.values().collect();
    assert_eq!(ids.len(), keys, "two keys acknowledged with one id");

    // Zero lost, zero duplicates: each key's note is in the outbox exactly once, with the id
    // the client was given, and nothing else is there.
    let outbox = walk(&client, &base, &ana, "/users/ana/outbox").await;
    let mut by_content: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, content) in &outbox {
        by_content.entry(content).or_default().push(id);
    }
    for (key, id) in &acked {
        assert_eq!(
            by_content.get(key.as_str()),
            Some(&vec![id.as_str()]),
            "key {key}: acknowledged as {id}, stored as {:?}",
            by_content.get(key.as_str())
        );
    }
    assert_eq!(
        outbox.len(),
        keys,
        "an unacknowledged or duplicate publish got in"
    );

    // Routing resumed after every crash: the reader's inbox holds every note once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let inbox = loop {
        let inbox = walk(&client, &base, &bo, "/inbox").await;
        if inbox.len() >= keys || Instant::now() > deadline {
            break inbox;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let inbox_ids: HashSet<&String> = inbox.iter().map(|(id, _)| id).collect();
    assert_eq!(inbox.len(), keys, "inbox entries");
    assert_eq!(
        inbox_ids, ids,
        "the inbox holds exactly the acknowledged notes"
    );
    drop(server);
    verify(&data);

    let cut_off = tally.cut_off.load(Ordering::Relaxed);
    eprintln!(
        "crash campaign: {rounds} rounds of kill -9, {keys} acknowledged publishes (log {}), \
         {} attempts cut off and retried ({} had committed unacknowledged and were replayed), \
         {} deliberate replays, 0 lost, 0 duplicates, \
         verify clean after every restart; {:.1} s",
        log_path.display(),
        cut_off,
        tally.committed_unacked.load(Ordering::Relaxed),
        tally.replays.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        cut_off > 0,
        "no publish was in flight when the server was killed"
    );
}
