//! The documentation's commands, run as written: every ```sh block marked
//! `<!-- doc-test -->` in README.md and the docs pages runs in bash against a real server (the
//! blocks of one page in one shell, in order, so later blocks use the variables of earlier
//! ones), and every ```toml block so marked must load as a config file.
//!
//! Each `curl` call must answer 2xx, unless its line ends with a comment naming the status the
//! page promises (`# 400, with the position`). A page that stops matching the server fails here.

mod common;

use common::TestServer;
use std::path::{Path, PathBuf};
use tidings_server::config::ServerConfig;

/// The address the docs show; the test server's replaces it.
const DOC_ADDRESS: &str = "http://127.0.0.1:8080";
/// The marker line before a tested block.
const MARKER: &str = "<!-- doc-test -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The marked blocks of a page with the given fence language, in order.
fn marked_blocks(page: &str, language: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(page)).expect("doc page");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.next().unwrap_or_default().trim();
        if fence != format!("```{language}") {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

/// The status each `curl` of a script must answer, in the order they run: the `# NNN` at the
/// end of its command, or any 2xx.
fn expected_statuses(script: &str) -> Vec<(String, Option<u16>)> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        let calls = code.matches("curl ").count();
        let status = promised_status(code);
        for _ in 0..calls {
            out.push((code.to_owned(), status));
        }
    }
    out
}

/// The status a command's trailing comment promises: `# 410 Gone` → 410.
fn promised_status(command: &str) -> Option<u16> {
    let comment = command.rsplit_once(" # ").map(|(_, c)| c.trim_start())?;
    let digits: String = comment.chars().take_while(char::is_ascii_digit).collect();
    let followed_by = comment[digits.len()..].chars().next();
    (digits.len() == 3 && followed_by.is_none_or(|c| !c.is_alphanumeric()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Runs the marked shell blocks of `pages`, in one shell and in order, against the server and
/// checks every call's status.
async fn run_pages(s: &TestServer, pages: &[&str]) {
    run_pages_after(s, pages, "").await;
}

/// Runs the pages' blocks after `prelude` (shell definitions standing in for what the page
/// asks the reader to run outside curl, such as the `tidings` binary).
async fn run_pages_after(s: &TestServer, pages: &[&str], prelude: &str) {
    let mut blocks = Vec::new();
    for page in pages {
        let found = marked_blocks(page, "sh");
        assert!(!found.is_empty(), "{page} has no {MARKER} sh block");
        blocks.extend(found);
    }
    let page = pages.join(" + ");
    let script = blocks.join("\n").replace(DOC_ADDRESS, &s.base);
    let expected = expected_statuses(&script);
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("statuses");
    // Each call's status goes to the log; its body to stdout, as the page's pipes expect. A
    // live stream (`curl -N`) is cut after two seconds: that timeout is its success.
    let wrapper = r#"
curl() {
  local body code rc limit=20 stream=0
  for arg in "$@"; do [ "$arg" = "-N" ] && stream=1 && limit=2; done
  body=$(mktemp)
  code=$(command curl --max-time "$limit" -o "$body" -w '%{http_code}' "$@")
  rc=$?
  if [ "$rc" -ne 0 ] && ! [ "$rc" -eq 28 -a "$stream" -eq 1 ]; then code="failed:$rc"; fi
  printf '%s\n' "$code" >> "$DOC_STATUS_LOG"
  cat "$body"
  rm -f "$body"
}
"#;
    let program = format!("{wrapper}\n{prelude}\n{script}");
    let (log_path, cwd) = (log.clone(), dir.path().to_owned());
    // Off the runtime's thread: the server under test runs on it.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(program)
            .env("DOC_STATUS_LOG", log_path)
            .current_dir(cwd)
            .output()
    })
    .await
    .expect("join")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{page}: the script failed: {stderr}\n{stdout}"
    );
    let statuses: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        statuses.len(),
        expected.len(),
        "{page}: {} curl calls ran, the page has {}\n{stdout}",
        statuses.len(),
        expected.len()
    );
    for ((command, want), got) in expected.iter().zip(&statuses) {
        let ok = match want {
            Some(code) => got == &code.to_string(),
            None => got.len() == 3 && got.starts_with('2'),
        };
        assert!(
            ok,
            "{page}: `{command}` answered {got}, the page promises {}\n{stdout}",
            want.map_or("2xx".to_owned(), |c| c.to_string())
        );
    }
}

#[tokio::test]
async fn the_readme_tour_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["README.md"]).await;
}

#[tokio::test]
async fn the_api_guide_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/api.md"]).await;
}

#[tokio::test]
async fn the_live_channel_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/api.md", "docs/live.md"]).await;
}

#[tokio::test]
async fn the_saved_searches_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/saved-searches.md"]).await;
}

#[tokio::test]
async fn the_bus_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    // As the page says: loopback allowed for webhooks, and an admin named root.
    let mut config = ServerConfig::default();
    config.webhooks.allow_networks = vec!["127.0.0.1/32".parse().expect("net")];
    let s = TestServer::start_with(config, tidings_store::StoreConfig::default()).await;
    s.admin("root").await;
    run_pages(&s, &["docs/bus.md"]).await;
}

#[tokio::test]
async fn the_queue_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    // The page creates its admin with `tidings admin create-user … --admin`, which prints a
    // session token; this binary is not built here, so the same is done through the store.
    let token = s.admin("ops").await;
    let prelude = format!("tidings() {{ printf '%s\\n' '{token}'; }}");
    run_pages_after(&s, &["docs/queues.md"], &prelude).await;
}

#[tokio::test]
async fn the_moderation_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/moderation.md"]).await;
}

#[tokio::test]
async fn the_conversations_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/conversations.md"]).await;
}

#[tokio::test]
async fn the_media_page_runs_as_written() {
    if !curl_available() {
        return;
    }
    let s = TestServer::start().await;
    run_pages(&s, &["docs/media.md"]).await;
}

#[test]
fn documented_config_files_load() {
    let dir = tempfile::tempdir().expect("dir");
    let mut checked = 0;
    for page in [
        "docs/configuration.md",
        "docs/api.md",
        "docs/operations.md",
        "docs/bus.md",
    ] {
        for block in marked_blocks(page, "toml") {
            let path = dir.path().join("tidings.toml");
            std::fs::write(&path, &block).expect("write");
            if let Err(e) = ServerConfig::load(&path) {
                panic!("{page}: a documented config does not load: {e}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the documented config files, found {checked}"
    );
}

/// curl and bash run the pages; CI has both (`TIDINGS_REQUIRE_E2E` makes their absence fatal).
fn curl_available() -> bool {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_E2E").is_none(),
            "curl is required to run the docs' commands"
        );
        eprintln!("!!! curl not found: the documentation's commands did NOT run");
    }
    found
}

/// Every relative link of README.md and the docs pages points at a file or folder that exists.
#[test]
fn every_relative_doc_link_resolves() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    for dir in [root.join("docs"), root.join("docs/decisions")] {
        for entry in std::fs::read_dir(&dir).expect("docs dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("page");
        let base = page.parent().expect("parent");
        for (_, rest) in text.match_indices("](").map(|(i, _)| ((), &text[i + 2..])) {
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.is_empty()
                || target.contains("://")
                || target.starts_with('#')
                || target.starts_with("mailto:")
                || target.contains(' ')
            {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            if !base.join(file).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
