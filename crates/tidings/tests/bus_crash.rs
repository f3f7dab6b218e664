//! Webhook deliveries are driven from the log and survive `kill -9`: a server owes deliveries
//! to an endpoint that keeps failing, is killed, and once restarted (with the endpoint healed)
//! delivers every one of them, each under the `webhook-id` it had before.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::Killed as Server;
use common::{BIN, free_port};

/// Activities owed when the kill lands.
const OWED: usize = 12;

/// A bare HTTP endpoint: records each request's `webhook-id` and answers `status`.
#[derive(Clone, Default)]
struct Sink {
    status: Arc<AtomicU16>,
    /// webhook-id → the statuses answered to it.
    seen: Arc<Mutex<BTreeMap<String, Vec<u16>>>>,
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

fn serve(dir: &std::path::Path, config: &std::path::Path, port: u16) -> Server {
    Server(
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("TIDINGS_RATE_LIMITS", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tidings serve"),
    )
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(30)).await;
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
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "admin",
            "create-user",
            "root",
            "--admin",
            "--password",
            "correct horse",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let sink = Sink::default();
    sink.status.store(500, Ordering::SeqCst);
    let hook = sink.start().await;
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let mut server = serve(&data, &config, port);
    wait_up(&client, &base).await;
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
    let _server = serve(&data, &config, port);
    wait_up(&client, &base).await;
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
