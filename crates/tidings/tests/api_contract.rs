//! The OpenAPI document is the tested contract: Schemathesis (pinned below) generates requests
//! from `/api/v1/openapi.json` against a real server holding a seeded community, with every
//! check on (`--checks all`: undocumented statuses, response shapes, valid requests refused,
//! invalid ones accepted, links between operations), and the run must find nothing.
//!
//! Without the pinned Schemathesis on the PATH the test says so loudly and passes, unless
//! `TIDINGS_REQUIRE_E2E=1` (CI) makes that a failure. `docs/api-contract.md` has the deeper run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tidings");
/// The Schemathesis release this contract is checked with (`.ci/run` installs it).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Examples per operation in the default suite: enough for every phase to reach every
/// operation in a few minutes on two cores. The deep run raises it (docs/api-contract.md).
const MAX_EXAMPLES: &str = "15";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed Schemathesis version, if any.
fn schemathesis_version() -> Option<String> {
    let out = Command::new("schemathesis")
        .arg("--version")
        .output()
        .ok()?;
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

fn config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api_contract/schemathesis.toml")
}

#[test]
fn the_openapi_document_holds_against_a_seeded_server() {
    let version = schemathesis_version();
    if !version
        .as_deref()
        .is_some_and(|v| v.ends_with(SCHEMATHESIS_VERSION))
    {
        let found = version.unwrap_or_else(|| "nothing".to_owned());
        eprintln!(
            "!!! API CONTRACT NOT CHECKED: schemathesis {SCHEMATHESIS_VERSION} is not on the PATH \
             (found {found}); install it with `python3 -m pip install schemathesis=={SCHEMATHESIS_VERSION}`"
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
    let tokens = std::fs::read_to_string(data.join("seed-tokens.txt")).expect("seed tokens");
    let token = tokens
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .expect("a seeded token")
        .to_owned();

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
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let out = Command::new("schemathesis")
        .arg("--config-file")
        .arg(config_file())
        .args(["run", &format!("{base}/api/v1/openapi.json"), "--url", &base])
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--header", "X-App-Key: abc123"])
        // Logging out would revoke the token every other operation runs with; the live inbox
        // is an endless event stream. Both have their own tests in tidings-server.
        .args(["--exclude-path", "/api/v1/sessions/current"])
        .args(["--exclude-path", "/api/v1/inbox/stream"])
        .args(["--request-timeout", "30", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "schemathesis ran in {:.0?}:\n{}",
        started.elapsed(),
        report.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found contract failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
