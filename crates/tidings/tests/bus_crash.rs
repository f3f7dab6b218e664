//! Webhook deliveries are driven from the log and survive `kill -9`: a server owes deliveries
//! to an endpoint that keeps failing, is killed, and once restarted (with the endpoint healed)
//! delivers every one of them, each under the `webhook-id` it had before. The campaign version
//! kills the server at a random moment of every round while clients publish without pause:
//! every acknowledged publish reaches the endpoint, under one `webhook-id`.
//! `TIDINGS_CRASH_ROUNDS` (default 2) sets its rounds, as for `crash.rs` (bench/crash-campaign.sh).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{create_user, free_port, serve, wait_ready};

/// Activities owed when the kill lands.
const OWED: usize = 12;

/// A bare HTTP endpoint: records each request's `webhook-id` and answers `status`.
#[derive(Clone, Default)]
struct Sink {
    status: Arc<AtomicU16>,
    /// webhook-id → the statuses answered to it.
    seen: Arc<Mutex<BTreeMap<String, Vec<u16>>>>,
    /// activity id (`data.id` of the body) → the webhook-ids it came under.
    activities: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Sink {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    // Head, then as much body as Content-Length says.
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let id = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("webhook-id")
                                .then(|| value.trim().to_owned())
                        })
                        .unwrap_or_default();
                    let status = sink.status.load(Ordering::SeqCst);
                    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or_default();
                    if let Some(activity) = body["data"]["id"].as_str() {
                        sink.activities
                            .lock()
                            .expect("sink")
                            .entry(activity.to_owned())
                            .or_default()
                            .insert(id.clone());
                    }
                    sink.seen
                        .lock()
                        .expect("sink")
                        .entry(id)
                        .or_default()
                        .push(status);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/hook")
    }
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test]
async fn deliveries_owed_survive_kill_dash_nine() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        "[webhooks]\nallow_networks = [\"127.0.0.1/32\"]\nretry_base_ms = 100\nretry_max_ms = 300\n\
         poll_ms = 20\ntimeout_seconds = 2\nmax_attempts = 100\ndisable_after = 1000\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let admin = create_user(&data, "root", true);

    let sink = Sink::default();
    sink.status.store(500, Ordering::SeqCst);
    let hook = sink.start().await;
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let mut server = serve(&data, port, Some(&config));
    wait_ready(&client, &base).await;
    post(
        &client,
        format!("{api}/topics"),
        &admin,
        json!({"name": "all", "filter": "type == Create"}),
    )
    .await;
    post(
        &client,
        format!("{api}/topics/all/subscriptions"),
        &admin,
        json!({"mode": "webhook", "url": hook}),
    )
    .await;
    for i in 0..OWED {
        post(
            &client,
            format!("{api}/outbox"),
            &admin,
            json!({"object": {"content": format!("owed {i}")}, "to": ["public"]}),
        )
        .await;
    }
    // Every delivery has failed at least once (so each is owed and has its id) when the kill lands.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.seen.lock().expect("sink").len() < OWED {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: BTreeSet<String> = sink.seen.lock().expect("sink").keys().cloned().collect();
    server.0.kill().expect("kill -9");
    let _ = server.0.wait();

    sink.status.store(200, Ordering::SeqCst);
    let _server = serve(&data, port, Some(&config));
    wait_ready(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: BTreeSet<String> = sink
            .seen
            .lock()
            .expect("sink")
            .iter()
            .filter(|(_, statuses)| statuses.contains(&200))
            .map(|(id, _)| id.clone())
            .collect();
        if delivered.len() >= OWED {
            assert_eq!(
                delivered, before,
                "every owed delivery landed under the id it had"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {OWED} delivered after the restart",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sink.seen.lock().expect("sink").len(),
        OWED,
        "no delivery was owed twice"
    );
}

/// Writers publishing without pause through each round.
const CAMPAIGN_WRITERS: usize = 3;

/// `kill -9` at a random moment of each round while writers publish (each publish retried with
/// its Idempotency-Key until acknowledged) and the endpoint receives: afterwards every
/// acknowledged activity was delivered with a 200, each under exactly one `webhook-id`
/// (redelivery of one attempt reuses its id; a second id would be a second delivery owed).
#[tokio::test]
async fn webhooks_under_sustained_publishing_survive_kill_dash_nine_rounds() {
    let rounds: usize = std::env::var("TIDINGS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        "[webhooks]\nallow_networks = [\"127.0.0.1/32\"]\nretry_base_ms = 100\nretry_max_ms = 500\n\
         poll_ms = 20\ntimeout_seconds = 2\nmax_attempts = 100\ndisable_after = 1000\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let admin = create_user(&data, "root", true);
    let sink = Sink::default();
    sink.status.store(200, Ordering::SeqCst);
    let hook = sink.start().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let mut server = serve(&data, port, Some(&config));
    wait_ready(&client, &base).await;
    post(
        &client,
        format!("{api}/topics"),
        &admin,
        json!({"name": "all", "filter": "type == Create"}),
    )
    .await;
    post(
        &client,
        format!("{api}/topics/all/subscriptions"),
        &admin,
        json!({"mode": "webhook", "url": hook}),
    )
    .await;

    // activity id → its key, for every acknowledged publish.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut keys_sent = 0usize;
    for round in 0..rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..CAMPAIGN_WRITERS)
            .map(|w| {
                let (client, api, admin, acked, stop) = (
                    client.clone(),
                    api.clone(),
                    admin.clone(),
                    acked.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut i = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let key = format!("r{round}-w{w}-{i}");
                        // Until acknowledged: a refused connection or a cut response is retried
                        // with the same key, which stores the activity once.
                        let deadline = Instant::now() + Duration::from_secs(60);
                        loop {
                            let sent = client
                                .post(format!("{api}/outbox"))
                                .bearer_auth(&admin)
                                .header("idempotency-key", &key)
                                .json(&json!({"object": {"content": key}, "to": ["public"]}))
                                .send()
                                .await;
                            if let Ok(r) = sent
                                && r.status().is_success()
                                && let Ok(body) = r.json::<Value>().await
                                && let Some(id) = body["id"].as_str()
                            {
                                acked
                                    .lock()
                                    .expect("acked")
                                    .insert(id.to_owned(), key.clone());
                                break;
                            }
                            assert!(Instant::now() < deadline, "{key} never acknowledged");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    i
                })
            })
            .collect();
        // The kill lands while writers publish and deliveries are in flight.
        let pause = 200 + (round as u64 * 137) % 600;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.0.kill().expect("kill -9");
        let _ = server.0.wait();
        server = serve(&data, port, Some(&config));
        wait_ready(&client, &base).await;
        // Writers go on against the restarted server a moment, then the round ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            keys_sent += writer.await.expect("writer");
        }
    }

    let acked = acked.lock().expect("acked").clone();
    // Every key was acknowledged once (a retried key answers the same id).
    assert_eq!(acked.len(), keys_sent);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<&String> = {
            let seen = sink.seen.lock().expect("sink");
            let activities = sink.activities.lock().expect("sink");
            acked
                .keys()
                .filter(|id| {
                    !activities.get(*id).is_some_and(|ids| {
                        ids.iter()
                            .any(|w| seen.get(w).is_some_and(|s| s.contains(&200)))
                    })
                })
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged activities never delivered, e.g. {:?}",
            missing.len(),
            acked.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let activities = sink.activities.lock().expect("sink");
    for (id, webhook_ids) in activities.iter() {
        assert_eq!(webhook_ids.len(), 1, "{id} was owed twice: {webhook_ids:?}");
    }
    let redelivered = sink
        .seen
        .lock()
        .expect("sink")
        .values()
        .filter(|s| s.len() > 1)
        .count();
    eprintln!(
        "webhook campaign: {rounds} rounds, {} acknowledged publishes, all delivered, each under one webhook-id ({redelivered} sent more than once, as at-least-once allows)",
        acked.len()
    );
    drop(server);
}

/// Contents of a user's outbox (up to 100), newest first.
async fn outbox_contents(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    user: &str,
) -> Vec<String> {
    let r = client
        .get(format!("{api}/users/{user}/outbox?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.unwrap_or(Value::Null);
    body["items"]
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

/// A one-shot `publish_at` falls due while the server is dead (`kill -9`) and a cron schedule
/// fires every second across the kill: after the restart the one-shot is published exactly
/// once, and every recorded cron fire is exactly one activity (a fire published before the kill
/// but not yet recorded is published again under the same idempotency key: stored once).
#[tokio::test]
async fn a_due_schedule_fires_once_after_kill_dash_nine() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let admin = create_user(&data, "root", true);
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let mut server = serve(&data, port, None);
    wait_ready(&client, &base).await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    post(
        &client,
        format!("{api}/outbox"),
        &admin,
        json!({"object": {"content": "once"}, "to": ["public"], "publish_at": at}),
    )
    .await;
    post(
        &client,
        format!("{api}/schedules"),
        &admin,
        json!({"name": "beat", "cron": "* * * * * *",
               "activity": {"object": {"content": "beat"}, "to": ["public"]}}),
    )
    .await;
    // Let the cron fire a little, then kill before the one-shot is due.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let early = outbox_contents(&client, &api, &admin, "root").await;
    server.0.kill().expect("kill -9");
    let _ = server.0.wait();
    assert!(
        !early.iter().any(|c| c == "once"),
        "the one-shot fired before it was due"
    );
    // It falls due while nothing runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _server = serve(&data, port, None);
    wait_ready(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let contents = outbox_contents(&client, &api, &admin, "root").await;
        if contents.iter().any(|c| c == "once") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the one-shot never fired: {contents:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pause the cron and compare its recorded fires with what is in the log.
    let r = client
        .post(format!("{api}/schedules/beat/pause"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("pause");
    assert!(r.status().is_success());
    // A fire in flight when the pause landed still completes and counts.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let paused: Value = client
        .get(format!("{api}/schedules/beat"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let contents = outbox_contents(&client, &api, &admin, "root").await;
    assert_eq!(
        contents.iter().filter(|c| *c == "once").count(),
        1,
        "{contents:?}"
    );
    let beats = contents.iter().filter(|c| *c == "beat").count() as i64;
    let fired = paused["fired"].as_i64().expect("fired");
    assert!(fired >= 2, "{paused}");
    assert_eq!(
        beats, fired,
        "cron fires recorded vs published: {contents:?}"
    );
    let r = client
        .get(format!("{api}/schedules"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    let list: Value = r.json().await.expect("json");
    let once = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["cron"].is_null())
        .expect("the one-shot");
    assert_eq!(
        (once["status"].as_str(), once["fired"].as_i64()),
        (Some("done"), Some(1))
    );
}
