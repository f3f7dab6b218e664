//! The web app in a real browser: starts the binary, prepares what the stories need through the
//! API (an admin, a suspended account, the custom `Poll` type), then runs `node e2e/stories.mjs`
//! (Debian's Chromium, headless, two people in two contexts) and asserts it passes.
//!
//! Without `e2e/node_modules` or `/usr/bin/chromium` the browser suite cannot run: the test says
//! so loudly and passes, unless `TIDINGS_REQUIRE_E2E=1` (CI) makes that a failure.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::Killed as Server;
use common::{BIN, free_port};

const PASSWORD: &str = "correct horse";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn admin_token(data_dir: &Path, name: &str, admin: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data_dir).args([
        "admin",
        "create-user",
        name,
        "--password",
        PASSWORD,
    ]);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("run tidings admin");
    assert!(
        out.status.success(),
        "admin create-user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_owned()
}

async fn call(client: &reqwest::Client, token: &str, url: String, body: Value) -> Value {
    let r = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {body}");
    body
}

fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !root.join("e2e/node_modules/playwright-core").is_dir() {
        missing.push("e2e/node_modules (run: npm ci --prefix e2e)".to_owned());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        missing.push("/usr/bin/chromium (run: apt-get install -y chromium)".to_owned());
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (run: apt-get install -y nodejs npm)".to_owned());
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_stories_in_chromium() {
    let root = repo_root();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let banner = "!".repeat(78);
        eprintln!(
            "{banner}\n!! The browser suite (e2e/stories.mjs) did NOT run: missing {}.\n\
             !! Install them and re-run `cargo test --workspace` to test the web app.\n{banner}",
            missing.join(", ")
        );
        assert!(
            std::env::var("TIDINGS_REQUIRE_E2E").as_deref() != Ok("1"),
            "TIDINGS_REQUIRE_E2E=1 but the browser suite cannot run: missing {}",
            missing.join(", ")
        );
        return;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tidings serve");
    let _server = Server(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(client.get(format!("{base}/healthz")).send().await, Ok(r) if r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What the stories cannot make from the browser: an admin's doings.
    let root_token = admin_token(&data, "root", true);
    admin_token(&data, "mallory", false);
    let api = format!("{base}/api/v1");
    call(
        &client,
        &root_token,
        format!("{api}/users/mallory/suspend"),
        json!({}),
    )
    .await;
    call(
        &client,
        &root_token,
        format!("{api}/types"),
        json!({
            "name": "Poll",
            "kind": "object",
            "schema": {"type": "object", "required": ["question"], "properties": {
                "question": {"type": "string"},
                "options": {"type": "array", "items": {"type": "string"}}}},
            "actions": []
        }),
    )
    .await;

    let artifacts = root.join("target/e2e-artifacts");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking({
        let root = root.clone();
        let base = base.clone();
        move || {
            Command::new("node")
                .arg("e2e/stories.mjs")
                .current_dir(&root)
                .env("TIDINGS_BASE_URL", &base)
                .env("TIDINGS_E2E_ARTIFACTS", &artifacts)
                .env("TIDINGS_E2E_SUSPENDED", format!("mallory:{PASSWORD}"))
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run node e2e/stories.mjs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!(
        "browser suite took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "the browser stories failed");
}
