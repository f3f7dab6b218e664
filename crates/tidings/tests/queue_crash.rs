//! Durable queues across `kill -9` (embedded store): producers enqueue batches with
//! idempotency keys and a consumer leases and acks while the server is killed at a random
//! moment of every round. An enqueue cut off by the kill is retried with the same keys once
//! the server is back. At the end, every acknowledged enqueue is either acknowledged as done
//! by the consumer or still in the queue (none lost), no job acked as done comes back, and
//! each key was stored once (the queue counted exactly one enqueue per key).
//!
//! `TIDINGS_CRASH_ROUNDS` (default 2) sets the rounds, as for `crash.rs`.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{create_user, free_port, serve, wait_ready};

/// Batches each producer sends per round.
const BATCHES: usize = 30;
/// Jobs per batch.
const BATCH: usize = 5;
/// Concurrent producers.
const PRODUCERS: usize = 3;

/// What the clients saw acknowledged.
#[derive(Default)]
struct Seen {
    /// Idempotency key → job id, for every enqueue answered 2xx.
    enqueued: HashMap<String, i64>,
    /// Jobs whose ack was answered 200.
    done: HashSet<i64>,
    /// Jobs whose ack was cut off by the kill: it may or may not have committed.
    maybe_done: HashSet<i64>,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Sends one batch until the server answers it (retrying across the kill with the same keys).
async fn enqueue_batch(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    keys: &[String],
    seen: &Mutex<Seen>,
) -> bool {
    let jobs: Vec<Value> = keys
        .iter()
        .map(|k| json!({"payload": {"key": k}, "idempotency_key": k}))
        .collect();
    let url = format!("{base}/api/v1/queues/work/jobs");
    match post(client, &url, token, &json!({"jobs": jobs})).await {
        Some((200 | 201, body)) => {
            let mut seen = seen.lock().expect("seen");
            for (key, job) in keys
                .iter()
                .zip(body["jobs"].as_array().into_iter().flatten())
            {
                let id = job["id"].as_i64().expect("id");
                if let Some(first) = seen.enqueued.insert(key.clone(), id) {
                    assert_eq!(first, id, "key {key} answered with two ids");
                }
            }
            true
        }
        _ => false,
    }
}

async fn consume(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    seen: &Mutex<Seen>,
    until: Instant,
) {
    let lease = format!("{base}/api/v1/queues/work/lease");
    while Instant::now() < until {
        let Some((200, body)) =
            post(client, &lease, token, &json!({"max": 10, "wait_ms": 100})).await
        else {
            return;
        };
        for job in body["jobs"].as_array().into_iter().flatten() {
            let id = job["id"].as_i64().expect("id");
            let url = format!("{base}/api/v1/queues/work/jobs/{id}/ack");
            match post(
                client,
                &url,
                token,
                &json!({"lease_token": job["lease_token"]}),
            )
            .await
            {
                Some((200, _)) => {
                    let fresh = seen.lock().expect("seen").done.insert(id);
                    assert!(fresh, "job {id} acked as done twice");
                }
                Some(_) => {}
                None => {
                    seen.lock().expect("seen").maybe_done.insert(id);
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_enqueue_is_lost_across_kill_9() {
    let rounds: usize = std::env::var("TIDINGS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = create_user(dir.path(), "root", true);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port, None);
    wait_ready(&client, &base).await;
    let created = post(
        &client,
        &format!("{base}/api/v1/queues"),
        &token,
        &json!({"name": "work", "visibility_timeout_ms": 2000, "max_attempts": 1000}),
    )
    .await;
    assert_eq!(created.map(|c| c.0), Some(201));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut pending: Vec<Vec<String>> = Vec::new();
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for producer in 0..PRODUCERS {
            let (client, base, token, seen) =
                (client.clone(), base.clone(), token.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut unanswered = Vec::new();
                for batch in 0..BATCHES {
                    let keys: Vec<String> = (0..BATCH)
                        .map(|n| format!("r{round}-p{producer}-b{batch}-{n}"))
                        .collect();
                    if !enqueue_batch(&client, &base, &token, &keys, &seen).await {
                        unanswered.push(keys);
                    }
                }
                unanswered
            }));
        }
        let consumer = {
            let (client, base, token, seen) =
                (client.clone(), base.clone(), token.clone(), seen.clone());
            tokio::spawn(async move {
                consume(
                    &client,
                    &base,
                    &token,
                    &seen,
                    Instant::now() + Duration::from_secs(10),
                )
                .await
            })
        };
        // The kill lands somewhere in the round's traffic.
        let pause = 50 + rand::random::<u64>() % 250;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        drop(server);
        for task in tasks {
            pending.extend(task.await.expect("producer"));
        }
        consumer.await.expect("consumer");
        server = serve(dir.path(), port, None);
        wait_ready(&client, &base).await;
        // Every batch cut off by the kill is sent again with the same keys.
        for keys in std::mem::take(&mut pending) {
            assert!(
                enqueue_batch(&client, &base, &token, &keys, &seen).await,
                "retry after restart"
            );
        }
    }
    // Drain: expired leases come back, so everything not acked as done is leased (and acked)
    // now.
    let mut drained = HashSet::new();
    let lease = format!("{base}/api/v1/queues/work/lease");
    let mut empty = 0;
    while empty < 2 {
        let (status, body) = post(
            &client,
            &lease,
            &token,
            &json!({"max": 100, "wait_ms": 700}),
        )
        .await
        .expect("lease");
        assert_eq!(status, 200);
        let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            empty += 1;
        }
        for job in jobs {
            let id = job["id"].as_i64().expect("id");
            drained.insert(id);
            let url = format!("{base}/api/v1/queues/work/jobs/{id}/ack");
            let acked = post(
                &client,
                &url,
                &token,
                &json!({"lease_token": job["lease_token"]}),
            )
            .await;
            // 409: its lease ran out first (a slow machine); it comes back and is drained again.
            assert!(
                matches!(acked.map(|a| a.0), Some(200 | 409)),
                "drain ack of {id}"
            );
        }
    }
    // Nothing should be dead (a thousand attempts), but a dead job is kept, not lost.
    let dead = client
        .get(format!("{base}/api/v1/queues/work/dead?limit=100"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("dead")
        .json::<Value>()
        .await
        .expect("dead body");
    let dead: Vec<i64> = dead["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_i64())
        .collect();
    assert!(dead.is_empty(), "dead jobs: {dead:?}");
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    assert!(!seen.enqueued.is_empty());
    for (key, id) in &seen.enqueued {
        let kept = seen.done.contains(id) || drained.contains(id) || seen.maybe_done.contains(id);
        assert!(kept, "acknowledged job {id} ({key}) lost");
    }
    let back: Vec<&i64> = seen.done.intersection(&drained).collect();
    assert!(back.is_empty(), "jobs acked as done came back: {back:?}");
    let stats = client
        .get(format!("{base}/api/v1/queues/work"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stats")
        .json::<Value>()
        .await
        .expect("stats body");
    // One stored job per key: retried batches stored nothing twice.
    assert_eq!(
        stats["stats"]["enqueued"].as_u64(),
        Some(seen.enqueued.len() as u64)
    );
    eprintln!(
        "queue crash: {rounds} rounds, {} jobs acknowledged, {} done before the end, {} drained",
        seen.enqueued.len(),
        seen.done.len(),
        drained.len()
    );
}
