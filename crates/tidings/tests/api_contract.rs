//! The OpenAPI document is the tested contract: Schemathesis (pinned below) generates requests
//! from `/api/v1/openapi.json` against a real server holding a seeded community, with every
//! check on (`--checks all`: undocumented statuses, response shapes, valid requests refused,
//! invalid ones accepted, links between operations), and the run must find nothing.
//!
//! Without the pinned Schemathesis on the PATH the test says so loudly and passes, unless
//! `TIDINGS_REQUIRE_E2E=1` (CI) makes that a failure. `docs/api-contract.md` has the deeper run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::Killed as Server;
use common::{BIN, free_port};

/// The Schemathesis release this contract is checked with (`.ci/run` installs it).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Examples per operation in the default suite: enough for every phase to reach every
/// operation in a few minutes on two cores. The deep run raises it (docs/api-contract.md).
const MAX_EXAMPLES: &str = "15";

/// Schemathesis as the `python3` that `python3 -m pip` installed it into (no reliance on a
/// console script being on the PATH).
fn schemathesis() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli"]);
    cmd
}

/// The installed Schemathesis version, if any.
fn schemathesis_version() -> Option<String> {
    let out = schemathesis().arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success().then(|| text.trim().to_owned())
}

fn run_tidings(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tidings");
    assert!(
        out.status.success(),
        "tidings {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the Schemathesis configuration and hooks live.
fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api_contract")
}

#[tokio::test]
async fn the_openapi_document_holds_against_a_seeded_server() {
    let version = schemathesis_version();
    if !version
        .as_deref()
        .is_some_and(|v| v.ends_with(SCHEMATHESIS_VERSION))
    {
        let found = version.unwrap_or_else(|| "nothing".to_owned());
        eprintln!(
            "!!! API CONTRACT NOT CHECKED: schemathesis {SCHEMATHESIS_VERSION} is not installed \
             for python3 (found {found}); install it with `python3 -m pip install schemathesis=={SCHEMATHESIS_VERSION}`"
        );
        assert!(
            std::env::var("TIDINGS_REQUIRE_E2E").as_deref() != Ok("1"),
            "TIDINGS_REQUIRE_E2E=1 but schemathesis {SCHEMATHESIS_VERSION} is missing (found {found})"
        );
        return;
    }

    // A small community: users, circles, subscriptions, follows, activities with replies and
    // likes, so listings have items and links have ids to follow; plus activity-feed-system's
    // demo users for the compat routes (ivan's key is abc123).
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    run_tidings(
        &data,
        &[
            "seed",
            "--users",
            "30",
            "--circles",
            "6",
            "--largest",
            "12",
            "--activities",
            "200",
            "--tokens",
            "1",
            "--follow-degree",
            "3",
        ],
    );
    run_tidings(&data, &["seed", "--demo"]);
    // The run's caller is an admin, so admin operations are exercised too; logging out and
    // deleting one's own account each get a user of their own (see schemathesis.toml).
    let token = |name: &str, admin: bool| {
        let mut args = vec!["admin", "create-user", name, "--password", "correct horse"];
        if admin {
            args.push("--admin");
        }
        run_tidings(&data, &args).trim().to_owned()
    };
    let main_token = token("contract", true);
    let logout_token = token("leaving", false);
    let leaver_token = token("deleting", false);

    // Webhook subscriptions the run makes point at 127.0.0.1 (see hooks.py), which the
    // default config refuses.
    let config = dir.path().join("tidings.toml");
    std::fs::write(&config, "[webhooks]\nallow_networks = [\"127.0.0.1/32\"]\n")
        .expect("write config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        // Thousands of generated requests on one token would mostly meet its budget (429s
        // are documented, but they would hide the operations behind them).
        .env("TIDINGS_RATE_LIMITS", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tidings serve");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cursors = real_cursors(&base, &main_token).await;

    let started = Instant::now();
    let out = schemathesis()
        // Schemathesis keeps a cache where it runs: not in the repository.
        .current_dir(dir.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(contract_dir().join("schemathesis.toml"))
        .args([
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--url",
            &base,
        ])
        .args([
            "--checks",
            "all",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
        ])
        // The live inbox is an endless event stream (tidings-server's push tests cover it).
        .args(["--exclude-path", "/api/v1/inbox/stream"])
        // So is a stream subscription (tidings-server's bus_pull tests cover it).
        .args([
            "--exclude-path",
            "/api/v1/topics/{topic}/subscriptions/{id}/stream",
        ])
        .args(["--request-timeout", "30"])
        .env("TIDINGS_CONTRACT_TOKEN", &main_token)
        .env("TIDINGS_CONTRACT_LOGOUT_TOKEN", &logout_token)
        .env("TIDINGS_CONTRACT_LEAVER_TOKEN", &leaver_token)
        .env("TIDINGS_CONTRACT_APP_KEY", "abc123")
        .env("TIDINGS_CONTRACT_CURSORS", cursors.join(","))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", contract_dir())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    // TIDINGS_CONTRACT_REPORT=full prints the whole report (warnings name their operations).
    let keep = if std::env::var("TIDINGS_CONTRACT_REPORT").as_deref() == Ok("full") {
        usize::MAX
    } else {
        14
    };
    let summary: Vec<&str> = report.lines().rev().take(keep).collect();
    eprintln!(
        "schemathesis ran in {:.0?}:\n{}",
        started.elapsed(),
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found contract failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Tested: ") && !report.contains("No tests were run"),
        "schemathesis tested nothing:\n{report}"
    );
}

/// Cursors the server handed out (an inbox page's items, `prev` and `next`), for the hooks to
/// use where a request needs one.
async fn real_cursors(base: &str, token: &str) -> Vec<String> {
    // A seeded circle's stream has items whoever reads it.
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/circles/c0000-release/stream?limit=30"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("read a circle's stream")
        .json()
        .await
        .expect("a page of JSON");
    let mut cursors: Vec<String> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["cursor"].as_str().map(str::to_owned))
        .collect();
    cursors.extend(
        ["prev", "next"]
            .iter()
            .filter_map(|k| page[*k].as_str().map(str::to_owned)),
    );
    assert!(cursors.len() > 5, "too few cursors from {page}");
    cursors
}
