//! The binary as an operator uses it: serve with flags or env, admin commands, verify, and
//! durability across `kill -9`.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, free_port};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(data_dir: &std::path::Path, via_env: bool) -> Server {
    serve_with(data_dir, via_env, &[]).await
}

/// [`serve`] with extra environment variables.
async fn serve_with(data_dir: &std::path::Path, via_env: bool, envs: &[(&str, &str)]) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.envs(envs.iter().copied());
    if via_env {
        cmd.env("TIDINGS_LISTEN", &listen)
            .env("TIDINGS_DATA_DIR", data_dir)
            .arg("serve");
    } else {
        cmd.args(["serve", "--listen", &listen, "--data-dir"])
            .arg(data_dir);
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tidings serve");
    let server = Server {
        child,
        base: format!("http://{listen}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("admin")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run admin")
}

/// Runs an admin command that must succeed and print a token.
fn admin_token(data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = admin(data_dir, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// `GET /api/v1/me` with a token.
async fn me(client: &reqwest::Client, base: &str, token: &str) -> Value {
    client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json")
}

fn verify(data_dir: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("verify")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run verify")
}

#[tokio::test]
async fn admin_token_kill_dash_nine_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = admin(
        dir.path(),
        &[
            "create-user",
            "root",
            "--password",
            "correct horse",
            "--admin",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(token.starts_with("tdg_"));
    let out = admin(
        dir.path(),
        &["create-user", "Bad Name", "--password", "correct horse"],
    );
    assert!(!out.status.success(), "bad username must fail");

    let server = serve(dir.path(), false).await;
    let client = reqwest::Client::new();
    assert_eq!(me(&client, &server.base, &token).await["is_admin"], true);

    // Admin commands and verify work next to the live server; a second server is refused.
    let ops_token = admin_token(
        dir.path(),
        &["create-user", "ops", "--password", "correct horse"],
    );
    let ops = me(&client, &server.base, &ops_token).await;
    assert_eq!(ops["username"], "ops");
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("second serve");
    assert!(
        !second.status.success(),
        "a second server on one data dir must be refused"
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another Tidings process"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let out = verify(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Publish concurrently; every 201 must survive kill -9.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        let url = format!("{}/api/v1/outbox", server.base);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"object": {"content": format!("durable {i}")}, "to": ["public"]}))
                .send()
                .await
                .expect("publish");
            assert_eq!(r.status().as_u16(), 201);
            let body: Value = r.json().await.expect("json");
            body["id"].as_str().expect("id").to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    drop(server); // SIGKILL, no graceful shutdown

    let server = serve(dir.path(), true).await;
    for id in &ids {
        let r = client
            .get(format!("{}/api/v1/activities/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("read");
        assert_eq!(r.status().as_u16(), 200, "activity {id} lost after kill -9");
    }
    // Routing resumes after the crash: the author's inbox ends up with all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inbox: Value = client
            .get(format!("{}/api/v1/inbox?limit=100", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("inbox")
            .json()
            .await
            .expect("json");
        if inbox["items"].as_array().map(Vec::len) == Some(40) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inbox incomplete after restart: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);

    let out = verify(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A fresh token for an existing user.
    assert_ne!(admin_token(dir.path(), &["token", "root"]), token);

    // Tampering makes verify fail with a non-zero exit.
    let conn = rusqlite::Connection::open(dir.path().join("tidings.db")).expect("raw");
    conn.execute_batch(
        "DROP TRIGGER activities_refuse_update;
         UPDATE activities SET body = replace(body, 'durable', 'forged') WHERE seq = 1;",
    )
    .expect("tamper");
    drop(conn);
    let out = verify(dir.path());
    assert!(!out.status.success(), "verify must fail on a tampered log");
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISMATCH"));
}

/// The load tools stay runnable: a tiny seed, then each bench scenario for a second.
#[tokio::test]
async fn seed_and_bench_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bad sizes and non-loopback targets are refused with a message, not a panic.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--users", "0"])
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("seed");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--users >= 2"));
    let out = Command::new(BIN)
        .args([
            "bench",
            "read",
            "--duration",
            "1",
            "--target",
            "http://example.com",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "seed",
            "--users",
            "40",
            "--circles",
            "4",
            "--largest",
            "20",
            "--activities",
            "200",
            "--tokens",
            "10",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = std::fs::read_to_string(dir.path().join("seed-tokens.txt")).expect("tokens");
    assert_eq!(tokens.lines().count(), 10);

    let server = serve(dir.path(), false).await;
    for scenario in ["publish", "read", "mixed"] {
        let out = Command::new(BIN)
            .args(["bench", scenario, "--duration", "1", "--publish-rate", "50"])
            .args([
                "--read-rate",
                "100",
                "--json",
                "--target",
                &server.base,
                "--tokens",
            ])
            .arg(dir.path().join("seed-tokens.txt"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("bench");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
        let ops = report["ops"].as_array().expect("ops");
        assert!(!ops.is_empty());
        for op in ops {
            assert_eq!(op["errors"], 0, "{scenario}: {op}");
            assert!(op["ok"].as_u64().is_some_and(|n| n > 0), "{scenario}: {op}");
        }
    }
    drop(server);
    let out = verify(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The comparison's shape stays runnable: a follower-circle seed, the fanout scenario until
/// routing is done, and closed-loop reads of the inboxes it filled.
#[tokio::test]
async fn follow_circles_fanout_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = |extra: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["seed", "--shape", "follow-circles"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("seed")
    };
    let out = seed(&["--users", "5", "--follows", "5"]);
    assert!(!out.status.success(), "as many follows as users must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--follows < --users"));
    let out = seed(&["--users", "30", "--follows", "8", "--tokens", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens_path = dir.path().join("seed-tokens.txt");
    let tokens = std::fs::read_to_string(&tokens_path).expect("tokens");
    assert_eq!(tokens.lines().count(), 30);

    let server = serve(dir.path(), false).await;
    let client = reqwest::Client::new();
    let (name, token) = tokens
        .lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .expect("a token line");
    let circle: Value = client
        .get(format!("{}/api/v1/circles/f-{name}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("circle")
        .json()
        .await
        .expect("json");
    assert_eq!(circle["member_count"], 9, "{circle}");
    assert_eq!(circle["owner"], name);

    let bench = |args: &[&str]| {
        Command::new(BIN)
            .arg("bench")
            .args(args)
            .args(["--json", "--target", &server.base, "--tokens"])
            .arg(&tokens_path)
            .env("RUST_LOG", "warn")
            .output()
            .expect("bench")
    };
    let out = bench(&["fanout", "--workers", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["fanout"]["posts"], 30, "{report}");
    assert_eq!(report["fanout"]["deliveries"], 30 * 8, "{report}");
    assert_eq!(report["ops"][0]["errors"], 0, "{report}");
    // Every follower's inbox now holds the posts of those it follows.
    let inbox: Value = client
        .get(format!("{}/api/v1/inbox?limit=100", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("inbox")
        .json()
        .await
        .expect("json");
    let items = inbox["items"].as_array().expect("items");
    assert!(items.len() > 1, "{inbox}");

    let out = bench(&["read", "--workers", "2", "--duration", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["workers"], 2);
    assert_eq!(report["ops"][0]["errors"], 0, "{report}");
    assert!(report["ops"][0]["ok"].as_u64().is_some_and(|n| n > 0));
    drop(server);
}

/// The push load tool stays runnable: one circle everyone is in, a few SSE connections, and
/// every published note reaches every connection.
#[tokio::test]
async fn bench_push_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--users", "12", "--circles", "1", "--largest", "12"])
        .args(["--activities", "0", "--tokens", "12"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = std::fs::read_to_string(dir.path().join("seed-tokens.txt")).expect("tokens");
    let token = tokens
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("a token")
        .to_owned();
    let server = serve(dir.path(), false).await;
    let circles: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/circles", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("circles")
        .json()
        .await
        .expect("circles json");
    let circle = circles["items"][0]["name"]
        .as_str()
        .expect("the seeded circle")
        .to_owned();
    let out = Command::new(BIN)
        .args(["bench", "push", "--connections", "12", "--duration", "1"])
        .args(["--publish-rate", "20", "--json", "--circle", &circle])
        .args(["--target", &server.base, "--tokens"])
        .arg(dir.path().join("seed-tokens.txt"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("bench push");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["connections"], 12, "{report}");
    assert_eq!(report["published"], 20, "{report}");
    assert_eq!(report["received_events"], 20 * 12, "{report}");
    assert!(
        report["p99_ms"].as_f64().is_some_and(|p| p > 0.0),
        "{report}"
    );
}

/// `tidings seed --demo` then `serve`: the compat profiles' demo users answer as the README
/// shows, and seeding again changes nothing.
#[tokio::test]
async fn seed_demo_then_serve_compat_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["seed", "--demo"])
            .env("RUST_LOG", "warn")
            .output()
            .expect("seed --demo");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ivan (id 1): X-App-Key abc123"), "{text}");
        assert!(text.contains("eric (id 3): X-App-Key abc125"), "{text}");
    }
    let server = serve(dir.path(), false).await;
    let client = reqwest::Client::new();
    let me: Value = client
        .get(format!("{}/me", server.base))
        .header("X-App-Key", "abc123")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "ivan");
    assert_eq!(me["follow_ids"], json!([2]));
    let published: Value = client
        .post(format!("{}/v1/publish", server.base))
        .body(r#"{"verb":"tweet","producer_id":"joerogan","item_id":"t1"}"#)
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json");
    assert_eq!(published, json!({"ok": true, "published": true}));
    drop(server);
    assert!(verify(dir.path()).status.success());
}

/// The celebrity scenario runs end to end on a small audience: every follower read right after
/// a publish sees it.
#[tokio::test]
async fn celebrity_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "seed",
            "--shape",
            "celebrity",
            "--users",
            "40",
            "--tokens",
            "6",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens_path = dir.path().join("seed-tokens.txt");
    let tokens = std::fs::read_to_string(&tokens_path).expect("tokens");
    assert!(tokens.starts_with("celebrity "), "{tokens}");

    let server = serve(dir.path(), false).await;
    let out = Command::new(BIN)
        .args([
            "bench",
            "celebrity",
            "--duration",
            "1",
            "--publish-rate",
            "20",
            "--json",
        ])
        .args(["--target", &server.base, "--tokens"])
        .arg(&tokens_path)
        .env("RUST_LOG", "warn")
        .output()
        .expect("bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["followers"], 40, "{report}");
    assert_eq!(report["unseen"], 0, "{report}");
    assert_eq!(report["ops"][0]["ok"], 20, "{report}");
    assert_eq!(report["ops"][0]["errors"], 0, "{report}");
    drop(server);
}

/// `tidings store copy` moves a seeded community into PostgreSQL: `verify` passes on both ends
/// and every seeded user reads the same inbox and feeds from a server on either end (the seed's
/// session tokens are copied too).
#[tokio::test]
async fn store_copy_moves_a_seeded_community_into_postgres() {
    let Ok(admin) = std::env::var("TIDINGS_TEST_STORE") else {
        eprintln!("!!! the store copy round trip did NOT run: set TIDINGS_TEST_STORE");
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let seeded = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--users", "30", "--circles", "3", "--largest", "20"])
        .args(["--activities", "150", "--tokens", "30"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed");
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let name = format!(
        "tidings_s_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let url = tidings_store::create_postgres_database(&admin, &name).expect("database");
    let copied = Command::new(BIN)
        .args(["store", "copy", "--from"])
        .arg(dir.path())
        .args(["--to", &url])
        .env("RUST_LOG", "warn")
        .output()
        .expect("copy");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert!(String::from_utf8_lossy(&copied.stdout).contains("activities: "));
    // A second copy into the same (now full) target is refused and changes nothing.
    let again = Command::new(BIN)
        .args(["store", "copy", "--from"])
        .arg(dir.path())
        .args(["--to", &url])
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("copy again");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
    for args in [
        vec!["--data-dir".to_owned(), dir.path().display().to_string()],
        vec!["--store".to_owned(), url.clone()],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .arg("verify")
            .env("RUST_LOG", "warn")
            .output()
            .expect("verify");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let embedded = serve(dir.path(), false).await;
    let port = free_port();
    let cluster = Server {
        child: Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                &url,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve on postgres"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{}/readyz", cluster.base))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the PostgreSQL server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tokens = std::fs::read_to_string(dir.path().join("seed-tokens.txt")).expect("tokens");
    let mut compared = 0;
    let mut items = 0;
    for line in tokens.lines() {
        let token = line.split_whitespace().last().expect("token");
        for path in [
            "/api/v1/inbox?limit=100",
            "/api/v1/feeds",
            "/api/v1/feeds/notifications?limit=100",
        ] {
            let read = |base: String| {
                let client = client.clone();
                async move {
                    let r = client
                        .get(format!("{base}{path}"))
                        .bearer_auth(token)
                        .send()
                        .await
                        .expect("read");
                    assert!(r.status().is_success(), "{path}: {}", r.status());
                    r.json::<Value>().await.expect("json")
                }
            };
            let here = read(embedded.base.clone()).await;
            let there = read(cluster.base.clone()).await;
            assert_eq!(here, there, "{path} differs after the copy");
            compared += 1;
            items += here["items"].as_array().map_or(0, Vec::len);
        }
    }
    assert_eq!(compared, 90);
    assert!(
        items > 100,
        "the seeded inboxes were compared with little in them: {items}"
    );
}

/// Cluster flags with bad values are refused before anything starts, with a message.
#[test]
fn bad_cluster_flags_are_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = |args: &[&str], expected: &str| {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    let listen = format!("127.0.0.1:{}", free_port());
    refused(
        &[
            "--bus",
            "http://127.0.0.1:4222",
            "serve",
            "--listen",
            &listen,
        ],
        "nats://",
    );
    refused(&["serve", "--listen", &listen, "--roles", "api"], "--roles");
    refused(
        &["serve", "--listen", &listen, "--roles", "gateway"],
        "invalid value",
    );
    refused(&["migrate", "--grant-to", "app"], "PostgreSQL");
    let target = tempfile::tempdir().expect("target");
    let target_path = target.path().display().to_string();
    refused(
        &[
            "store",
            "copy",
            "--from",
            "/nonexistent/tidings",
            "--to",
            &target_path,
        ],
        "not found",
    );
    // The refused copy wrote nothing into the target.
    assert!(!target.path().join("tidings.db").exists());
}

/// `serve` has the rate limits on by default (every authenticated answer reports its token's
/// budget); `--rate-limits off` and `TIDINGS_RATE_LIMITS=off` turn them off for load runs.
#[tokio::test]
async fn rate_limits_are_on_by_default_and_the_flag_turns_them_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = admin_token(
        dir.path(),
        &["create-user", "rl", "--password", "correct horse"],
    );
    let client = reqwest::Client::new();
    for (args, env, expected) in [
        (&[][..], None, Some("1200")),
        (&["--rate-limits", "off"][..], None, None),
        (&[][..], Some("off"), None),
    ] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &listen, "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(value) = env {
            cmd.env("TIDINGS_RATE_LIMITS", value);
        }
        let server = Server {
            child: cmd.spawn().expect("spawn serve"),
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let response = loop {
            if let Ok(r) = client
                .get(format!("{}/api/v1/me", server.base))
                .bearer_auth(&token)
                .send()
                .await
            {
                break r;
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(response.status().as_u16(), 200);
        let limit = response
            .headers()
            .get("ratelimit-limit")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            limit, expected,
            "serve {args:?} TIDINGS_RATE_LIMITS={env:?}"
        );
        // The data dir's lock goes with the process: wait for it before the next one.
        let mut server = server;
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}

/// `tidings bench queues` stays runnable: a small run on both queue kinds, every job acked
/// once and every lease in priority order.
#[tokio::test]
async fn bench_queues_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = admin_token(
        dir.path(),
        &[
            "create-user",
            "root",
            "--password",
            "correct horse",
            "--admin",
        ],
    );
    let tokens = dir.path().join("admin-token.txt");
    std::fs::write(&tokens, format!("root {token}\n")).expect("tokens");
    // One token leasing and acking without pause would meet its request budget.
    let server = serve_with(dir.path(), false, &[("TIDINGS_RATE_LIMITS", "off")]).await;
    let out = Command::new(BIN)
        .args(["bench", "queues", "--jobs", "300", "--duration", "1"])
        .args(["--publish-rate", "50", "--target", &server.base, "--tokens"])
        .arg(&tokens)
        .env("RUST_LOG", "warn")
        .output()
        .expect("bench queues");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["durable", "memory"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {kind} |")))
            .unwrap_or_else(|| panic!("no {kind} row in {stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "true", "{kind} leases out of order: {row}");
        // All 50 latency jobs were leased and measured.
        assert_eq!(cells[6], "50", "{row}");
    }
}

/// `tidings seed --shape demo`: named people, circles, posts with replies and likes, a saved
/// search that delivered; realistic text (no "test" or "seeded" strings); the log verifies.
#[tokio::test]
async fn the_demo_seed_is_a_realistic_community() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--shape", "demo"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(verify(dir.path()).status.success());
    let tokens = std::fs::read_to_string(dir.path().join("seed-tokens.txt")).expect("tokens");
    let token = |name: &str| {
        tokens
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .expect("a token")
            .to_owned()
    };
    let server = serve(dir.path(), false).await;
    let client = reqwest::Client::new();
    let get = |path: String, who: String| {
        let client = client.clone();
        let base = server.base.clone();
        async move {
            client
                .get(format!("{base}/api/v1{path}"))
                .bearer_auth(who)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let inbox = get("/inbox?limit=50".into(), token("ana")).await;
    let items = inbox["items"].as_array().expect("items");
    assert!(items.len() >= 10, "ana's inbox is lively: {inbox}");
    let text = inbox.to_string().to_lowercase();
    for unwanted in ["test", "seeded", "lorem"] {
        assert!(!text.contains(unwanted), "{unwanted} in the demo inbox");
    }
    assert!(text.contains("kingfisher") && text.contains("\"likes\""));
    assert_eq!(
        get("/me".into(), token("ana")).await["display_name"],
        "Ana Lima"
    );
    // Ben's saved search brought him the heron photo, saying so.
    let ben = get("/inbox?limit=50".into(), token("ben")).await;
    let heron = ben["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["activity"]["object"]["name"] == "Three herons at dusk")
        .expect("the heron photo reached ben");
    assert!(
        heron["via"]
            .as_str()
            .is_some_and(|v| v.ends_with(":\"heron\"")),
        "{heron}"
    );
    let circles = get("/circles".into(), token("ana")).await.to_string();
    assert!(circles.contains("Lower Valley Birders"));
}

/// `tidings bench media` stays runnable: 12-megapixel uploads for a second, each answered with
/// its sizes, and the server's CPU per image measured.
#[tokio::test]
async fn bench_media_smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = admin_token(
        dir.path(),
        &["create-user", "mia", "--password", "correct horse"],
    );
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, format!("mia {token}\n")).expect("tokens");
    let server = serve_with(dir.path(), false, &[("TIDINGS_RATE_LIMITS", "off")]).await;
    let out = Command::new(BIN)
        .args([
            "bench",
            "media",
            "--duration",
            "1",
            "--target",
            &server.base,
        ])
        .args(["--server-pid", &server.child.id().to_string(), "--tokens"])
        .arg(&tokens)
        .env("RUST_LOG", "warn")
        .output()
        .expect("bench media");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("uploads ("), "{stdout}");
    assert!(stdout.contains("ms per image"), "{stdout}");
    // The uploads' blobs are where the default puts them: media/ in the data dir.
    assert!(dir.path().join("media").join("sha256").is_dir());
}
