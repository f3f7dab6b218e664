//! What the binary's process-level tests share: the binary, a free port, a child process that
//! dies with the test.
#![allow(dead_code)] // each test file uses its own part

use std::process::Child;

/// The `tidings` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tidings");

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed with SIGKILL (and reaped) when dropped, however the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tidings serve` on `dir` and a loopback `port`, with an optional config file; logs at warn,
/// rate limits off (campaigns publish without pause on a few tokens), output discarded.
pub fn serve(dir: &std::path::Path, port: u16, config: Option<&std::path::Path>) -> Killed {
    let mut command = std::process::Command::new(BIN);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    Killed(
        command
            .env("RUST_LOG", "warn")
            .env("TIDINGS_RATE_LIMITS", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn tidings serve"),
    )
}

/// Waits (up to 30 s) until `base` answers `/readyz` with a success.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{base} never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
}

/// `tidings admin create-user NAME` on `dir` (an admin if asked); returns the session token
/// it prints.
pub fn create_user(dir: &std::path::Path, name: &str, admin: bool) -> String {
    let mut command = std::process::Command::new(BIN);
    command.arg("--data-dir").arg(dir).args([
        "admin",
        "create-user",
        name,
        "--password",
        "correct horse",
    ]);
    if admin {
        command.arg("--admin");
    }
    let out = command
        .env("RUST_LOG", "warn")
        .output()
        .expect("tidings admin create-user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
