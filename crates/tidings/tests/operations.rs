//! Operating a store, as an operator does it with the binary: an online backup while the
//! server publishes, restore (and what it refuses), rebuild (refused while served, then the
//! same reads as before), graceful shutdown on SIGTERM (an in-flight request completes, exit
//! code 0, verify clean; a request held open past the grace is cut), `/metrics` and request
//! ids over a real socket, and the PostgreSQL `pg_dump` recipe of docs/operations.md.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, free_port};

/// A `tidings serve` child, killed if a test ends without stopping it.
struct Server {
    child: Child,
    base: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sends SIGTERM (what `systemctl stop` and `docker stop` send).
    fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
    }

    /// Waits for the process to exit; its status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `tidings serve` with the global args `store` (e.g. `--data-dir DIR`) and waits for it.
async fn serve(store: &[&str], config: Option<&Path>) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args(store).args(["serve", "--listen", &addr]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tidings serve");
    let server = Server {
        child,
        base: format!("http://{addr}"),
        addr,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.base)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary with `args`.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run tidings")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the binary, which must succeed; its stdout.
fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary, which must fail saying `expected`.
fn run_refused(args: &[&str], expected: &str) {
    let out = run(args);
    assert!(
        !out.status.success(),
        "{args:?} should fail: {}",
        text(&out)
    );
    assert!(
        text(&out).contains(expected),
        "{args:?} should say {expected:?}: {}",
        text(&out)
    );
}

/// `tidings verify`'s count of activities (and that it passed).
fn verified_activities(store: &[&str]) -> u64 {
    let mut args = store.to_vec();
    args.push("verify");
    let out = run_ok(&args);
    assert!(out.contains("ok: every digest and chain verifies"), "{out}");
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("checked N activities")
}

fn dir_arg(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn admin_token(store: &[&str], name: &str) -> String {
    let mut args = store.to_vec();
    args.extend(["admin", "create-user", name, "--password", "correct horse"]);
    run_ok(&args).trim().to_owned()
}

#[tokio::test]
async fn backup_while_publishing_restore_and_what_restore_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_args = dir_arg(&data);
    let data_args: Vec<&str> = data_args.iter().map(String::as_str).collect();
    let token = admin_token(&data_args, "ann");
    let server = serve(&data_args, None).await;
    // Publishers keep writing for the whole backup.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (base, token, stop) = (server.base.clone(), token.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acknowledged = 0u64;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || acknowledged < 20 {
                n += 1;
                let r = client
                    .post(format!("{base}/api/v1/outbox"))
                    .bearer_auth(&token)
                    .json(&json!({"object": {"content": format!("p{p} n{n}")}, "to": ["public"]}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), 201);
                acknowledged += 1;
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup = dir.path().join("backup");
    let backup_arg = backup.display().to_string();
    let mut args = data_args.clone();
    args.extend(["backup", &backup_arg]);
    let said = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_ok(&args)
        }
    })
    .await
    .expect("backup");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = 0;
    for p in publishers {
        acknowledged += p.await.expect("publisher");
    }
    let backed_up: u64 = said
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("backed up N activities: {said}"));
    assert!(backed_up > 0, "{said}");
    assert!(
        backed_up < acknowledged,
        "the backup was taken while publishing went on ({backed_up} of {acknowledged})"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("backup.json")).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest["activities"], backed_up);
    // One self-contained file: no WAL beside it.
    assert!(!backup.join("tidings.db-wal").exists());

    // A second backup into the same directory is refused.
    run_refused(&args, "not empty");
    // Restoring over the live store is refused while the server holds it, even with --force.
    let mut over_live = data_args.clone();
    over_live.extend(["restore", &backup_arg, "--force"]);
    run_refused(&over_live, "stop it first");

    // Into a new directory: the restored store verifies and holds what the backup held.
    let restored = dir.path().join("restored");
    let restored_args = dir_arg(&restored);
    let restored_args: Vec<&str> = restored_args.iter().map(String::as_str).collect();
    let mut restore = restored_args.clone();
    restore.extend(["restore", &backup_arg]);
    run_ok(&restore);
    assert_eq!(verified_activities(&restored_args), backed_up);
    // Again without --force: refused, and the store is left as it was.
    run_refused(&restore, "already holds a store");
    assert_eq!(verified_activities(&restored_args), backed_up);
    // With --force: replaced, the old one kept beside it.
    let mut forced = restore.clone();
    forced.push("--force");
    let out = run_ok(&forced);
    assert!(out.contains("tidings.db.before-restore"), "{out}");
    assert!(restored.join("tidings.db.before-restore").is_file());
    assert_eq!(verified_activities(&restored_args), backed_up);
    // A served restored store answers with the backed-up activities.
    let again = serve(&restored_args, None).await;
    let outbox: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/users/ann/outbox?limit=100", again.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("outbox")
        .json()
        .await
        .expect("json");
    let items = outbox["items"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(items, backed_up.min(100), "{outbox}");

    // Not a backup, and the wrong store kind, are refused with a message.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let empty_arg = empty.display().to_string();
    let mut bad = dir_arg(&dir.path().join("other"));
    bad.extend(["restore".into(), empty_arg]);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    run_refused(&bad, "not a Tidings backup");
    run_refused(
        &[
            "--store",
            "postgres://postgres@127.0.0.1:1/nowhere",
            "backup",
            &dir.path().join("pg").display().to_string(),
        ],
        "pg_dump",
    );
    drop(server);
}

/// Every seeded user's inbox, notifications and feed list, read over HTTP.
async fn reads(base: &str, tokens: &[String]) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    for token in tokens {
        for path in [
            "/api/v1/inbox?limit=100",
            "/api/v1/feeds",
            "/api/v1/feeds/notifications?limit=100",
            "/api/v1/feeds/home?limit=100",
        ] {
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("read");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            all.push(r.json::<Value>().await.expect("json"));
        }
    }
    all
}

#[tokio::test]
async fn rebuild_is_refused_while_served_then_rederives_what_was_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_args = dir_arg(dir.path());
    let data_args: Vec<&str> = data_args.iter().map(String::as_str).collect();
    let mut seed = data_args.clone();
    seed.extend([
        "seed",
        "--users",
        "25",
        "--circles",
        "3",
        "--largest",
        "15",
        "--activities",
        "150",
        "--tokens",
        "25",
    ]);
    run_ok(&seed);
    let tokens: Vec<String> = std::fs::read_to_string(dir.path().join("seed-tokens.txt"))
        .expect("tokens")
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert_eq!(tokens.len(), 25);
    let mut server = serve(&data_args, None).await;
    let before = reads(&server.base, &tokens).await;
    let items: usize = before
        .iter()
        .map(|v| v["items"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(items > 100, "the seeded reads hold little: {items}");
    let mut rebuild = data_args.clone();
    rebuild.push("rebuild");
    run_refused(&rebuild, "stop it first");
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let said = run_ok(&rebuild);
    assert!(said.contains("ok: routed"), "{said}");
    let server = serve(&data_args, None).await;
    let after = reads(&server.base, &tokens).await;
    assert_eq!(before, after, "the rebuilt store reads differently");
    drop(server);
    verified_activities(&data_args);
}

/// Sends a publish whose body arrives in two parts; returns the open connection after the
/// first part.
fn start_slow_publish(addr: &str, token: &str) -> (std::net::TcpStream, Vec<u8>) {
    let body =
        json!({"object": {"content": "in flight at shutdown"}, "to": ["public"]}).to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST /api/v1/outbox HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(first).expect("first half");
    stream.flush().expect("flush");
    (stream, rest.to_vec())
}

fn config_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("tidings.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_args = dir_arg(&data);
    let data_args: Vec<&str> = data_args.iter().map(String::as_str).collect();
    let token = admin_token(&data_args, "ann");
    let config = config_file(dir.path(), "[operations]\nshutdown_grace_seconds = 10\n");
    let mut server = serve(&data_args, Some(&config)).await;
    let (mut stream, rest) = start_slow_publish(&server.addr, &token);
    // The server has the request head; the handler is waiting for the rest of the body.
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    // It stops accepting at once...
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&server.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "new connections are still accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and is still running, waiting for the request in flight.
    assert!(server.child.try_wait().expect("try_wait").is_none());
    stream.write_all(&rest).expect("rest of the body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("in flight at shutdown"), "{answer}");
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // The acknowledged publish is in the store, and the store verifies.
    assert_eq!(verified_activities(&data_args), 1);
}

#[tokio::test]
async fn sigterm_cuts_a_request_held_open_past_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_args = dir_arg(dir.path());
    let data_args: Vec<&str> = data_args.iter().map(String::as_str).collect();
    let token = admin_token(&data_args, "ann");
    let config = config_file(dir.path(), "[operations]\nshutdown_grace_seconds = 1\n");
    let mut server = serve(&data_args, Some(&config)).await;
    // The rest of this body never comes.
    let (_stream, _rest) = start_slow_publish(&server.addr, &token);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "the grace was not given: {:?}",
        asked.elapsed()
    );
    assert_eq!(verified_activities(&data_args), 0);
}

#[tokio::test]
async fn metrics_and_request_ids_over_a_real_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_args = dir_arg(dir.path());
    let data_args: Vec<&str> = data_args.iter().map(String::as_str).collect();
    let token = admin_token(&data_args, "ann");
    let secret = "a-metrics-token-of-some-length";
    let config = config_file(
        dir.path(),
        &format!("[operations]\nmetrics_token = \"{secret}\"\n"),
    );
    let server = serve(&data_args, Some(&config)).await;
    let client = reqwest::Client::new();
    let published = client
        .post(format!("{}/api/v1/outbox", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-42")
        .json(&json!({"object": {"content": "counted"}, "to": ["public"]}))
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 201);
    assert_eq!(published.headers()["x-request-id"], "trace-me-42");
    // Errors, unknown routes and the web app get one too; an id out of bounds is replaced.
    let long = "x".repeat(129);
    for (path, id) in [
        ("/api/v1/me", "two words"),
        ("/api/v1/nowhere", long.as_str()),
        ("/", "fine-id"),
    ] {
        let r = client
            .get(format!("{}{path}", server.base))
            .header("x-request-id", id)
            .send()
            .await
            .expect("get");
        let got = r.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        if id == "fine-id" {
            assert_eq!(got, id);
        } else {
            assert_ne!(got, id, "{path}");
            assert_eq!(got.len(), 36, "a fresh UUID for {path}: {got}");
        }
    }
    let metrics = |headers: Vec<(&'static str, String)>| {
        let client = client.clone();
        let url = format!("{}/metrics", server.base);
        async move {
            let mut request = client.get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.expect("metrics")
        }
    };
    // Loopback, directly: served.
    let direct = metrics(vec![]).await;
    assert_eq!(direct.status(), 200);
    let body = direct.text().await.expect("text");
    assert!(
        body.contains(
            r#"tidings_http_requests_total{method="POST",route="/api/v1/outbox",status="201"} 1"#
        ),
        "{body}"
    );
    assert!(body.contains("tidings_log_last_seq 1"), "{body}");
    assert!(body.contains("tidings_store_bytes"), "{body}");
    // Through a proxy: the token is needed, and it works.
    let proxied = vec![("x-forwarded-for", "203.0.113.9".to_owned())];
    assert_eq!(metrics(proxied.clone()).await.status(), 401);
    let mut wrong = proxied.clone();
    wrong.push((
        "authorization",
        "Bearer a-metrics-token-of-some-lengtH".into(),
    ));
    assert_eq!(metrics(wrong).await.status(), 401);
    let mut right = proxied;
    right.push(("authorization", format!("Bearer {secret}")));
    assert_eq!(metrics(right).await.status(), 200);
}

/// Whether the PostgreSQL recipe can run here; says loudly when it cannot.
fn pg_tools() -> Option<String> {
    let store = std::env::var("TIDINGS_TEST_STORE").ok();
    let tools = ["pg_dump", "pg_restore"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if let (Some(store), true) = (&store, tools) {
        return Some(store.clone());
    }
    eprintln!(
        "!!! the pg_dump round trip did NOT run: it needs TIDINGS_TEST_STORE and pg_dump and \
         pg_restore (apt-get install postgresql-client)"
    );
    assert!(
        std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err() || store.is_none(),
        "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
    );
    assert!(
        std::env::var("TIDINGS_REQUIRE_E2E").is_err() || tools,
        "TIDINGS_REQUIRE_E2E is set but pg_dump or pg_restore is missing"
    );
    None
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// docs/operations.md's PostgreSQL recipe: `pg_dump --format=custom` of a live cluster store,
/// `pg_restore --no-owner` into a new database, then `tidings verify` and the same reads.
#[tokio::test]
async fn pg_dump_and_pg_restore_round_trip_a_cluster_store() {
    let Some(admin) = pg_tools() else { return };
    let source =
        tidings_store::create_postgres_database(&admin, &unique("tidings_dump")).expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_args = dir_arg(dir.path());
    let mut seed: Vec<&str> = vec!["--store", &source];
    seed.extend(["--data-dir", &dir_args[1]]);
    seed.extend([
        "seed",
        "--users",
        "20",
        "--circles",
        "3",
        "--largest",
        "10",
        "--activities",
        "100",
        "--tokens",
        "20",
    ]);
    run_ok(&seed);
    let tokens: Vec<String> = std::fs::read_to_string(dir.path().join("seed-tokens.txt"))
        .expect("tokens")
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    // Dumped while a node serves it: pg_dump reads one snapshot.
    let node = serve(&["--store", &source], None).await;
    let dump = dir.path().join("tidings.dump");
    let dumped = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&source)
        .output()
        .expect("pg_dump");
    assert!(dumped.status.success(), "{}", text(&dumped));
    let before = reads(&node.base, &tokens).await;
    drop(node);
    let target = tidings_store::create_postgres_database(&admin, &unique("tidings_restored"))
        .expect("database");
    let restored = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &target])
        .arg(&dump)
        .output()
        .expect("pg_restore");
    assert!(restored.status.success(), "{}", text(&restored));
    assert_eq!(
        verified_activities(&["--store", &target]),
        verified_activities(&["--store", &source])
    );
    let node = serve(&["--store", &target], None).await;
    let after = reads(&node.base, &tokens).await;
    assert_eq!(before, after, "the restored database reads differently");
    // The append-only guards came back with it.
    let guarded = Command::new("psql")
        .args([&target, "-Atqc", "DELETE FROM activities"])
        .output()
        .expect("psql");
    assert!(!guarded.status.success(), "{}", text(&guarded));
}
