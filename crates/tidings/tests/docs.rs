//! Every command of the documentation runs in a test. Each ```sh block of README.md and the docs
//! pages carries a marker naming what checks it (`MARKERS`), and this file runs the two kinds
//! that concern the binary:
//!
//! - `<!-- doc-run -->`: the page's marked blocks run as written, in order, in one bash (`set -e`,
//!   so any failing command fails the page), with the built `tidings` first on the `PATH`, in a
//!   temporary working directory that links the repository's `bench/`, `crates/`, `e2e/` and
//!   `fuzz/` and has `target/release/tidings` pointing at the binary under test. A `# ok: …`
//!   comment under a command is the output it must print (any number stands for any number, `…`
//!   for anything). A foreground `serve` runs in the background until `/readyz` answers on
//!   `TIDINGS_LISTEN`, which the test sets to a free port. `cargo build --release` does nothing
//!   and `cargo run --release -- ARGS` runs `tidings ARGS`: the binary under test is that build.
//!   What else the test changes in a page (the sizes of runs that take minutes, ports, and
//!   placeholders for other machines) is in `CHANGES`, one row each with the reason; what it
//!   prepares around a page (a seeded store, a server to back up while it runs, stopping it
//!   where the page says "stop the server first") is in `PAGES`. The page's config files
//!   (```toml blocks marked `doc-test`) are written to `config-1.toml`, `config-2.toml`, ….
//! - `<!-- doc-ci -->` and `<!-- doc-syntax -->`: commands CI runs as they are (each is a line of
//!   `.ci/run`, or a `cargo test` that `.ci/run`'s `cargo test --workspace` includes), scripts
//!   that can only be checked here (`bash -n` and `--help`), and install steps (`NOT_RUN`).
//!
//! Pages that need PostgreSQL (their tests are named `…on_postgres`, the PostgreSQL pass of
//! `.ci/run` runs them) say loudly that they did not run without `TIDINGS_TEST_STORE`, and fail
//! under `TIDINGS_REQUIRE_POSTGRES`; a page that needs Node or schemathesis fails under
//! `TIDINGS_REQUIRE_E2E` when they are missing.

mod common;

use common::BIN;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUN: &str = "<!-- doc-run -->";
const CI: &str = "<!-- doc-ci -->";
const SYNTAX: &str = "<!-- doc-syntax -->";

/// Every marker a ```sh block may carry, and the test file that runs the blocks so marked.
const MARKERS: &[(&str, &str)] = &[
    ("<!-- doc-test -->", "crates/tidings-server/tests/docs.rs"),
    (
        "<!-- compat-examples -->",
        "crates/tidings-server/tests/compat.rs",
    ),
    (
        "<!-- accounts-walkthrough -->",
        "crates/tidings-server/tests/accounts.rs",
    ),
    (
        "<!-- limits-examples -->",
        "crates/tidings-server/tests/limits.rs",
    ),
    (RUN, "crates/tidings/tests/docs.rs"),
    (CI, "crates/tidings/tests/docs.rs"),
    (SYNTAX, "crates/tidings/tests/docs.rs"),
];

/// One change the test makes to a page's commands before running them.
struct Change {
    page: &'static str,
    /// Text of the page's `doc-run` blocks; every occurrence is replaced.
    original: &'static str,
    /// What runs instead; `{port}`, `{port2}`, `{port3}` (free ports), `{pg}` (the test's
    /// PostgreSQL server), `{db}`, `{copy}` (databases of the test's own) and `{bus}` are filled in.
    smoke: &'static str,
    why: &'static str,
}

/// Everything the test changes in the pages it runs. Each original must still be in its page,
/// so a doc edit that drops or rewrites a command fails here until this table follows.
const CHANGES: &[Change] = &[
    Change {
        page: "docs/operations.md",
        original: "PG=postgres://postgres@127.0.0.1:5432 DB=tidings COPY=tidings_restored",
        smoke: "PG={pg} DB={db} COPY={copy}",
        why: "the test's PostgreSQL server and two databases of its own",
    },
    Change {
        page: "docs/operations.md",
        original: "SERVER=https://tidings.example",
        smoke: "SERVER=http://127.0.0.1:{port}",
        why: "a server the test started with the page's metrics_token config",
    },
    Change {
        page: "docs/cluster.md",
        original: "STORE=postgres://tidings@db/tidings BUS=nats://nats:4222",
        smoke: "STORE={pg}/{db} BUS={bus}",
        why: "the test's PostgreSQL (a database of its own) and NATS",
    },
    Change {
        page: "docs/cluster.md",
        original: "8080",
        smoke: "{port}",
        why: "free ports",
    },
    Change {
        page: "docs/cluster.md",
        original: "8081",
        smoke: "{port2}",
        why: "free ports",
    },
    Change {
        page: "docs/cluster.md",
        original: "bench/cluster-lag.sh 1000 10",
        smoke: "bench/cluster-lag.sh 100 1",
        why: "1,000 publishes/s for 10 s per run → 100/s for 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "/tmp/",
        smoke: "./",
        why: "data dirs inside the test's working directory",
    },
    Change {
        page: "docs/performance.md",
        original: "8095",
        smoke: "{port}",
        why: "free ports",
    },
    Change {
        page: "docs/performance.md",
        original: "8732",
        smoke: "{port2}",
        why: "free ports",
    },
    Change {
        page: "docs/performance.md",
        original: "8092",
        smoke: "{port3}",
        why: "free ports",
    },
    Change {
        page: "docs/performance.md",
        original: "--users 10000 --circles 1 --largest 10000 \\\n    --activities 0 --tokens 10000",
        smoke: "--users 30 --circles 1 --largest 30 \\\n    --activities 0 --tokens 30",
        why: "10,000 members with tokens → 30",
    },
    Change {
        page: "docs/performance.md",
        original: "--connections 10000 --circle c0000-release --publish-rate 10 --duration 10",
        smoke: "--connections 30 --circle c0000-release --publish-rate 10 --duration 1",
        why: "10,000 SSE streams for 10 s → 30 for 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "    10000 $SERVER_PID c0000-release",
        smoke: "    30 $SERVER_PID c0000-release",
        why: "10,000 Socket.IO websockets → 30",
    },
    Change {
        page: "docs/performance.md",
        original: "--shape celebrity --users 1000000 --tokens 200",
        smoke: "--shape celebrity --users 300 --tokens 20",
        why: "a million followers → 300",
    },
    Change {
        page: "docs/performance.md",
        original: "--publish-rate 20 --duration 20",
        smoke: "--publish-rate 20 --duration 1",
        why: "20 s → 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "--users 100000 --circles 1000 --largest 50000 \\\n    --activities 1000000 --tokens 2000",
        smoke: "--users 200 --circles 5 --largest 100 \\\n    --activities 300 --tokens 20",
        why: "100k users and 1M activities → 200 and 300",
    },
    Change {
        page: "docs/performance.md",
        original: "--publish-rate 2000 --read-rate 10000 --duration 10",
        smoke: "--publish-rate 100 --read-rate 200 --duration 1",
        why: "the full target load for 10 s → 5% of it for 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "--read-rate 10000 --duration 10",
        smoke: "--read-rate 200 --duration 1",
        why: "10,000 reads/s for 10 s → 200/s for 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "--publish-rate 2000 --duration 10",
        smoke: "--publish-rate 100 --duration 1",
        why: "2,000 publishes/s for 10 s → 100/s for 1 s",
    },
    Change {
        page: "docs/performance.md",
        original: "bench/fanout-storage.sh target/release/tidings",
        smoke: "USERS=200 FOLLOWS=10 bench/fanout-storage.sh target/release/tidings",
        why: "the script's own size knobs: 10,000 users × 100 followers → 200 × 10",
    },
    Change {
        page: "docs/campaigns.md",
        original: "bench/crash-campaign.sh 20",
        smoke: "bench/crash-campaign.sh 1",
        why: "20 kill -9 rounds → 1",
    },
    Change {
        page: "docs/campaigns.md",
        original: "bench/authz-fuzz.sh 100000",
        smoke: "bench/authz-fuzz.sh 300",
        why: "100,000 requests → 300",
    },
    Change {
        page: "docs/campaigns.md",
        original: "bench/authz-fuzz.sh 3000",
        smoke: "bench/authz-fuzz.sh 300",
        why: "3,000 requests → 300",
    },
    Change {
        page: "docs/api-contract.md",
        original: "8080",
        smoke: "{port}",
        why: "a free port",
    },
    Change {
        page: "docs/api-contract.md",
        original: "--max-examples 100",
        smoke: "--max-examples 1 --seed 1",
        why: "100 examples per operation → 1 (the contract test runs 15), and a fixed seed: the smoke checks the recipe runs, the contract test is the seeded gate",
    },
];

/// Commands of `doc-ci` and `doc-syntax` blocks that no test runs, and why. Each must still be
/// in a block.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "apt-get install -y chromium nodejs",
        "installs system packages; .ci/run installs those of them that are missing",
    ),
    (
        "rustup toolchain install nightly",
        "downloads a toolchain; bench/fuzz.sh is checked with bash -n and --help",
    ),
    (
        "cargo install cargo-fuzz --locked",
        "downloads and builds a tool; bench/fuzz.sh is checked with bash -n and --help",
    ),
    (
        "cargo bench -p tidings-core -- --quick",
        "criterion runs take minutes; .ci/run's clippy --all-targets builds the benches",
    ),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every page under docs/, relative to the repository root.
fn pages() -> Vec<String> {
    let root = repo_root();
    let mut pages = vec!["README.md".to_owned()];
    for dir in ["docs", "docs/decisions"] {
        let mut found: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("docs dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".md"))
            .map(|name| format!("{dir}/{name}"))
            .collect();
        found.sort();
        pages.extend(found);
    }
    pages
}

/// A ```sh block of a page: the marker on the line before it (if any), its text, its line.
struct Block {
    marker: String,
    text: String,
    line: usize,
}

fn sh_blocks(page: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo_root().join(page)).expect("doc page");
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```sh" {
            let marker = if i > 0 { lines[i - 1].trim() } else { "" };
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim() != "```")
                .copied()
                .collect();
            blocks.push(Block {
                marker: marker.to_owned(),
                text: body.join("\n"),
                line: i + 1,
            });
            i += body.len() + 1;
        }
        i += 1;
    }
    blocks
}

/// The ```toml blocks of a page marked `<!-- doc-test -->` (the config files it shows), in order.
fn marked_toml_blocks(page: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(page)).expect("doc page");
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    for (i, pair) in lines.windows(2).enumerate() {
        if pair[0].trim() == "<!-- doc-test -->" && pair[1].trim() == "```toml" {
            let body: Vec<&str> = lines[i + 2..]
                .iter()
                .take_while(|l| l.trim() != "```")
                .copied()
                .collect();
            blocks.push(body.join("\n"));
        }
    }
    blocks
}

/// The logical lines of a script: continuation lines joined, blank lines dropped, indentation
/// trimmed.
fn logical_lines(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if let Some(start) = line.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let joined = std::mem::take(&mut current);
        if !joined.trim().is_empty() {
            out.push(joined.trim().to_owned());
        }
    }
    out
}

/// The commands of a block, for comparison: its logical lines without comments, each with
/// single spaces.
fn commands(block: &str) -> Vec<String> {
    logical_lines(block)
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            without_comment(&l)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A command line without its trailing `  # comment`.
fn without_comment(line: &str) -> &str {
    line.split_once(" # ")
        .map_or(line, |(code, _)| code)
        .trim_end()
}

#[test]
fn every_shell_block_says_which_test_runs_it() {
    let mut unmarked = Vec::new();
    for page in pages() {
        for block in sh_blocks(&page) {
            if !MARKERS.iter().any(|(marker, _)| *marker == block.marker) {
                unmarked.push(format!("{page}:{}", block.line));
            }
        }
    }
    assert!(
        unmarked.is_empty(),
        "```sh blocks without a marker naming the test that runs them ({}):\n{}",
        MARKERS
            .iter()
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(", "),
        unmarked.join("\n")
    );
    for (marker, test) in MARKERS {
        let source = std::fs::read_to_string(repo_root().join(test)).expect("test file");
        let name = marker.trim_start_matches("<!-- ").trim_end_matches(" -->");
        assert!(source.contains(name), "{test} does not read `{marker}`");
    }
}

#[test]
fn every_change_the_runs_make_is_still_in_its_page() {
    for change in CHANGES {
        let script: String = sh_blocks(change.page)
            .into_iter()
            .filter(|b| b.marker == RUN)
            .map(|b| b.text + "\n")
            .collect();
        assert!(
            script.contains(change.original),
            "{}: the doc-run blocks no longer contain `{}` (changed by the test: {}); update \
             CHANGES",
            change.page,
            change.original,
            change.why
        );
    }
    for (command, why) in NOT_RUN {
        let found = pages().iter().any(|page| {
            sh_blocks(page).iter().any(|b| {
                (b.marker == CI || b.marker == SYNTAX)
                    && commands(&b.text).contains(&command.to_string())
            })
        });
        assert!(
            found,
            "`{command}` ({why}) is in no doc-ci or doc-syntax block any more"
        );
    }
}

/// `doc-ci` blocks: each command is a line of .ci/run, or a plain `cargo test` that its `cargo
/// test --workspace` includes, or an install step of `NOT_RUN`.
#[test]
fn ci_runs_the_commands_the_pages_say_it_runs() {
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    let ci_lines = commands(&ci);
    assert!(ci_lines.iter().any(|l| l == "cargo test --workspace"));
    let mut checked = 0;
    for page in pages() {
        for block in sh_blocks(&page).into_iter().filter(|b| b.marker == CI) {
            for command in commands(&block.text) {
                let in_ci = ci_lines.contains(&command);
                let in_workspace_run = command.starts_with("cargo test -p ");
                let not_run = NOT_RUN.iter().any(|(c, _)| *c == command);
                assert!(
                    in_ci || in_workspace_run || not_run,
                    "{page}:{}: `{command}` is not a line of .ci/run",
                    block.line
                );
                checked += 1;
            }
        }
    }
    for package in ["chromium", "nodejs"] {
        assert!(ci.contains(package), ".ci/run does not install {package}");
    }
    assert!(checked >= 10, "only {checked} doc-ci commands found");
}

/// `doc-syntax` blocks: each script parses (`bash -n`) and answers `--help`; every other command
/// is in `NOT_RUN`.
#[test]
fn scripts_that_cannot_run_here_parse_and_answer_help() {
    let mut scripts = 0;
    for page in pages() {
        for block in sh_blocks(&page).into_iter().filter(|b| b.marker == SYNTAX) {
            for command in commands(&block.text) {
                let program = command.split_whitespace().next().unwrap_or_default();
                if program.starts_with("bench/") && program.ends_with(".sh") {
                    let path = repo_root().join(program);
                    let parsed = Command::new("bash")
                        .arg("-n")
                        .arg(&path)
                        .output()
                        .expect("bash");
                    assert!(parsed.status.success(), "{page}: {program} does not parse");
                    let help = Command::new("bash")
                        .arg(&path)
                        .arg("--help")
                        .output()
                        .expect("bash");
                    let text = String::from_utf8_lossy(&help.stdout);
                    assert!(
                        help.status.success() && text.contains("usage"),
                        "{page}: `{program} --help` does not print its usage: {text}"
                    );
                    scripts += 1;
                } else {
                    assert!(
                        NOT_RUN.iter().any(|(c, _)| *c == command),
                        "{page}:{}: `{command}` is in a doc-syntax block but neither a bench \
                         script nor in NOT_RUN",
                        block.line
                    );
                }
            }
        }
    }
    assert!(scripts >= 3, "only {scripts} scripts checked");
}

/// What one page's run needs beyond bash, curl and the binary.
#[derive(Clone, Copy)]
struct Needs {
    /// A PostgreSQL server (`TIDINGS_TEST_STORE`) and its client tools.
    postgres: bool,
    /// Programs that must answer `--version`.
    tools: &'static [&'static str],
    /// The stock Socket.IO client the Node scripts import.
    socketio_client: bool,
}

/// How one page runs: set-up before its blocks, and shell run before a given block.
struct Page {
    page: &'static str,
    needs: Needs,
    setup: &'static str,
    before_block: &'static [(usize, &'static str)],
}

/// Values filled into `CHANGES` and the set-up scripts.
struct Values {
    ports: [u16; 3],
    pg: String,
    db: String,
    copy: String,
    bus: String,
}

impl Values {
    fn fill(&self, text: &str) -> String {
        text.replace("{port}", &self.ports[0].to_string())
            .replace("{port2}", &self.ports[1].to_string())
            .replace("{port3}", &self.ports[2].to_string())
            .replace("{pg}", &self.pg)
            .replace("{db}", &self.db)
            .replace("{copy}", &self.copy)
            .replace("{bus}", &self.bus)
    }
}

/// One `# ok: …` line: the output its command must print.
struct Expected {
    page: String,
    command: String,
    output: String,
}

/// The bash program for a page: helpers, set-up, then its blocks with `CHANGES` applied,
/// foreground servers backgrounded and outputs captured; and the outputs to check.
fn program(run: &Page, values: &Values) -> (String, Vec<Expected>) {
    let mut script = String::from(HELPERS);
    script.push_str(&values.fill(run.setup));
    let mut expected = Vec::new();
    let blocks: Vec<Block> = sh_blocks(run.page)
        .into_iter()
        .filter(|b| b.marker == RUN)
        .collect();
    assert!(!blocks.is_empty(), "{} has no {RUN} block", run.page);
    for (index, block) in blocks.iter().enumerate() {
        let mut text = block.text.clone();
        for change in CHANGES.iter().filter(|c| c.page == run.page) {
            text = text.replace(change.original, &values.fill(change.smoke));
        }
        script.push_str(&format!(
            "\necho \"== {}:{} at ${{SECONDS}} s\" >&2\n",
            run.page, block.line
        ));
        if let Some((_, hook)) = run.before_block.iter().find(|(i, _)| *i == index) {
            script.push_str(&values.fill(hook));
            script.push('\n');
        }
        let lines = logical_lines(&text);
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let output = lines
                .get(i + 1)
                .filter(|next| next.starts_with("# ok: "))
                .and_then(|next| next.strip_prefix("# "));
            let code = without_comment(line);
            if let Some(output) = output {
                let n = expected.len();
                script.push_str(&format!("{{\n{line}\n}} 2>&1 | tee \"$DOC_OUT/{n}\"\n"));
                expected.push(Expected {
                    page: run.page.to_owned(),
                    command: code.to_owned(),
                    output: output.to_owned(),
                });
            } else if foreground_server(code) {
                script.push_str(&format!("{code} &\ndoc_wait_ready\n"));
            } else {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    (script, expected)
}

/// Whether a command serves in the foreground (it would never return).
fn foreground_server(code: &str) -> bool {
    code.split_whitespace().any(|w| w == "serve") && !code.ends_with('&')
}

/// What every page's shell starts with.
const HELPERS: &str = r#"set -eo pipefail
# The binary under test is the build `cargo build --release` would make.
cargo() {
  case "$*" in
    "build --release") echo "(doc run: the binary under test stands in for the release build)" >&2 ;;
    "run --release -- "*) shift 3; tidings "$@" ;;
    *) command cargo "$@" ;;
  esac
}
doc_wait_ready() {
  for _ in $(seq 1 600); do
    curl -fs "http://$TIDINGS_LISTEN/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "no server became ready at $TIDINGS_LISTEN" >&2
  return 1
}
"#;

/// Whether `output` has a line of the shape `expected`: any number stands for any number, `…`
/// for anything.
fn prints(output: &str, expected: &str) -> bool {
    output
        .lines()
        .any(|line| shape_matches(line.trim_end(), expected.trim_end()))
}

fn shape_matches(text: &str, shape: &str) -> bool {
    let Some(first) = shape.chars().next() else {
        return text.is_empty();
    };
    let rest = &shape[first.len_utf8()..];
    if first == '…' {
        return (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| shape_matches(&text[i..], rest));
    }
    if first.is_ascii_digit() {
        let shape_rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        return (1..=digits).any(|n| shape_matches(&text[n..], shape_rest));
    }
    text.starts_with(first) && shape_matches(&text[first.len_utf8()..], rest)
}

/// Whether a tool answers `--version`.
fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the page can run here; says loudly why not, and fails where CI requires it.
fn can_run(run: &Page) -> Option<String> {
    let store = std::env::var("TIDINGS_TEST_STORE").ok();
    let mut missing = Vec::new();
    if run.needs.postgres && store.is_none() {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_POSTGRES").is_none(),
            "{}: TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not",
            run.page
        );
        missing.push("TIDINGS_TEST_STORE (PostgreSQL)");
    }
    let mut tools = vec!["curl"];
    if run.needs.postgres {
        tools.extend(["psql", "pg_dump", "pg_restore"]);
    }
    tools.extend(run.needs.tools);
    let mut absent: Vec<&str> = tools.into_iter().filter(|t| !has(t)).collect();
    let socketio = repo_root().join("crates/tidings-server/tests/socketio/node_modules");
    if run.needs.socketio_client && !socketio.exists() {
        absent.push("socket.io-client (npm ci --prefix crates/tidings-server/tests/socketio)");
    }
    if !absent.is_empty() {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_E2E").is_none(),
            "{}: TIDINGS_REQUIRE_E2E is set but these are missing: {}",
            run.page,
            absent.join(", ")
        );
    }
    missing.extend(absent);
    if missing.is_empty() {
        return Some(store.unwrap_or_default());
    }
    eprintln!(
        "!!! the commands of {} did NOT run: missing {}",
        run.page,
        missing.join(", ")
    );
    None
}

/// A name no other run uses: `tidings_docs_<nanos>`.
fn unique_database(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("tidings_docs_{prefix}_{nanos}")
}

/// Drops the page's databases when the run ends, however it ends.
struct Databases {
    admin: String,
    names: Vec<String>,
}

impl Drop for Databases {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("psql")
                .args([&self.admin, "-qc"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output();
        }
    }
}

/// Runs one page's `doc-run` blocks; panics with the shell's output when a command fails or
/// prints something other than its `# ok:` line.
fn run_page(run: &Page) {
    let Some(admin) = can_run(run) else { return };
    let started = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let cwd = work.path().join("run");
    let bin_dir = work.path().join("bin");
    let out_dir = work.path().join("out");
    let tmp = work.path().join("tmp");
    for dir in [&cwd, &bin_dir, &out_dir, &tmp, &cwd.join("target/release")] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let bin = Path::new(BIN);
    std::os::unix::fs::symlink(bin, bin_dir.join("tidings")).expect("link");
    std::os::unix::fs::symlink(bin, cwd.join("target/release/tidings")).expect("link");
    for dir in ["bench", "crates", "e2e", "fuzz"] {
        std::os::unix::fs::symlink(repo_root().join(dir), cwd.join(dir)).expect("link");
    }
    let mut values = Values {
        ports: [
            common::free_port(),
            common::free_port(),
            common::free_port(),
        ],
        pg: String::new(),
        db: String::new(),
        copy: String::new(),
        bus: std::env::var("TIDINGS_TEST_BUS")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
    };
    let mut databases = Databases {
        admin: admin.clone(),
        names: Vec::new(),
    };
    if run.needs.postgres {
        values.db = unique_database("live");
        values.copy = unique_database("copy");
        tidings_store::create_postgres_database(&admin, &values.db).expect("database");
        databases.names = vec![values.db.clone(), values.copy.clone()];
        values.pg = admin
            .rsplit_once('/')
            .map_or(admin.clone(), |(base, _)| base.to_owned());
    }
    // The page's config files, for set-up that starts a server the way the page configures one.
    for (n, config) in marked_toml_blocks(run.page).iter().enumerate() {
        std::fs::write(cwd.join(format!("config-{}.toml", n + 1)), config).expect("config");
    }
    let (script, expected) = program(run, &values);
    std::fs::write(work.path().join("script.sh"), &script).expect("script");
    // The binary's target dir, so that a script's nested `cargo test` reuses this build.
    let target_dir = bin
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = std::fs::File::create(work.path().join("stdout")).expect("stdout");
    let stderr = std::fs::File::create(work.path().join("stderr")).expect("stderr");
    // Its own process group: every server and script it starts is stopped with it.
    let mut bash = Command::new("bash");
    // Without the variables cargo set for this test (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …):
    // build scripts rerun when they change, so a script's nested `cargo test` would rebuild.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME") || name == "OUT_DIR" {
            bash.env_remove(name.as_ref());
        }
    }
    let mut child = bash
        .arg(work.path().join("script.sh"))
        .current_dir(&cwd)
        .env("PATH", path)
        .env("TIDINGS_LISTEN", format!("127.0.0.1:{}", values.ports[0]))
        .env("RUST_LOG", "warn")
        .env("TMPDIR", &tmp)
        .env("DOC_OUT", &out_dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("TIDINGS_BIN", bin)
        .env("TIDINGS_BENCH_RESULTS", work.path().join("RESULTS.md"))
        .env("PGADMIN", &admin)
        .env_remove("TIDINGS_DATA_DIR")
        .env_remove("TIDINGS_STORE")
        .env_remove("TIDINGS_CONFIG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("bash");
    let deadline = started + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop_group(child.id());
    let _ = child.wait();
    let read = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap_or_default();
    let shown = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        tail(&read("stdout")),
        tail(&read("stderr"))
    );
    let Some(status) = status else {
        panic!(
            "{}: the commands did not finish within 300 s\n{shown}",
            run.page
        );
    };
    assert!(
        status.success(),
        "{}: a command failed ({status})\n{shown}",
        run.page
    );
    for (n, want) in expected.iter().enumerate() {
        let got = std::fs::read_to_string(out_dir.join(n.to_string())).unwrap_or_default();
        assert!(
            prints(&got, &want.output),
            "{}: `{}` printed\n{got}\nand the page says it prints `{}`",
            want.page,
            want.command,
            want.output
        );
    }
    if run.page == "docs/cluster.md" {
        let results = read("RESULTS.md");
        assert!(
            results.contains("cluster-lag.sh 100/s"),
            "bench/cluster-lag.sh appended no table: {results}"
        );
    }
    drop(databases);
    let blocks: Vec<String> = read("stderr")
        .lines()
        .filter(|l| l.starts_with("== "))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "{}: the commands ran in {:.1} s\n{}",
        run.page,
        started.elapsed().as_secs_f64(),
        blocks.join("\n")
    );
}

/// SIGTERM to the run's process group (servers shut down cleanly), then SIGKILL.
fn stop_group(pid: u32) {
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).output();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").args(["-KILL", "--", &group]).output();
}

/// The last 60 lines of a run's output.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A small embedded store in ./data, as the pages' commands expect one.
const SEED_DATA: &str = "tidings --data-dir ./data seed --users 30 --circles 3 --largest 10 \
                         --activities 60 --tokens 5 >/dev/null\n";

const NO_NEEDS: Needs = Needs {
    postgres: false,
    tools: &[],
    socketio_client: false,
};

/// Every page with `doc-run` blocks, and how it runs.
const PAGES: &[Page] = &[
    Page {
        page: "README.md",
        needs: NO_NEEDS,
        setup: "",
        before_block: &[],
    },
    Page {
        page: "docs/configuration.md",
        needs: NO_NEEDS,
        setup: "",
        before_block: &[],
    },
    Page {
        page: "docs/compat.md",
        needs: NO_NEEDS,
        setup: "",
        before_block: &[],
    },
    Page {
        page: "docs/operations.md",
        needs: Needs {
            postgres: true,
            ..NO_NEEDS
        },
        // The embedded store serves while it is backed up; the PostgreSQL one holds a community.
        setup: concat!(
            "tidings --data-dir ./data seed --users 30 --circles 3 --largest 10 --activities 60 \
             --tokens 5 >/dev/null\n",
            "tidings --store {pg}/{db} --data-dir ./pg-seed seed --users 20 --circles 2 \
             --largest 8 --activities 40 --tokens 1 >/dev/null\n",
            "tidings --data-dir ./data serve --listen 127.0.0.1:{port2} &\n",
            "DOC_SERVER=$!\n",
            "TIDINGS_LISTEN=127.0.0.1:{port2} doc_wait_ready\n",
        ),
        before_block: &[
            // "Stop the server (or every node) first."
            (2, "kill $DOC_SERVER; wait $DOC_SERVER || true"),
            // The metrics example asks a server configured with the page's metrics_token block.
            (
                3,
                "grep -q metrics_token config-2.toml\n\
                 tidings --data-dir ./data serve --config config-2.toml &\n\
                 doc_wait_ready",
            ),
        ],
    },
    Page {
        page: "docs/cluster.md",
        needs: Needs {
            postgres: true,
            tools: &["python3"],
            ..NO_NEEDS
        },
        setup: SEED_DATA,
        before_block: &[],
    },
    Page {
        page: "docs/performance.md",
        needs: Needs {
            tools: &["node", "sqlite3", "python3"],
            socketio_client: true,
            ..NO_NEEDS
        },
        setup: "",
        before_block: &[],
    },
    Page {
        page: "docs/campaigns.md",
        needs: NO_NEEDS,
        setup: "",
        before_block: &[],
    },
    Page {
        page: "docs/api-contract.md",
        needs: Needs {
            tools: &["schemathesis", "python3"],
            ..NO_NEEDS
        },
        setup: "",
        before_block: &[],
    },
];

/// Runs the page of `PAGES` named `page`.
fn run(page: &str) {
    let found = PAGES.iter().find(|p| p.page == page);
    run_page(found.unwrap_or_else(|| panic!("{page} is not in PAGES")));
}

#[test]
fn every_page_with_doc_run_blocks_is_run() {
    for page in pages() {
        if sh_blocks(&page).iter().any(|b| b.marker == RUN) {
            assert!(
                PAGES.iter().any(|p| p.page == page),
                "{page} has {RUN} blocks but no entry in PAGES"
            );
        }
    }
}

#[test]
fn the_readme_serves_as_written() {
    run("README.md");
}

#[test]
fn the_configuration_page_serves_as_written() {
    run("docs/configuration.md");
}

#[test]
fn the_compat_page_seeds_as_written() {
    run("docs/compat.md");
}

#[test]
fn the_operations_page_runs_as_written_on_postgres() {
    run("docs/operations.md");
}

#[test]
fn the_cluster_page_runs_as_written_on_postgres() {
    run("docs/cluster.md");
}

#[test]
fn the_performance_page_runs_at_smoke_scale() {
    run("docs/performance.md");
}

#[test]
fn the_campaigns_run_at_smoke_scale() {
    run("docs/campaigns.md");
}

#[test]
fn the_deep_contract_run_runs_at_smoke_scale() {
    run("docs/api-contract.md");
}

#[test]
fn output_shapes_match_numbers_and_ellipses() {
    let shape = "ok: backed up 29997 activities into ./backups/2026-12-01; run `x` …";
    assert!(prints(
        "noise\nok: backed up 3 activities into ./backups/1-2-3; run `x` any time\n",
        shape
    ));
    assert!(!prints(
        "ok: backed up some activities into ./backups/1-2-3; run `x`",
        shape
    ));
    assert!(!prints(
        "ok: restored 3 activities",
        "ok: backed up 3 activities"
    ));
    assert!(prints(
        "ok: every digest and chain verifies",
        "ok: every digest and chain verifies"
    ));
}

/// The runner itself: a page passes only when every command succeeds and prints its `# ok:` line.
#[test]
fn a_command_that_fails_or_prints_otherwise_fails_its_page() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        (
            "tidings --version\necho 'ok: 12 rows copied'\n# ok: 3 rows copied",
            None,
        ),
        (
            "echo 'ok: 12 rows copied'\n# ok: 3 rows moved",
            Some("the page says it prints"),
        ),
        ("tidings no-such-command", Some("a command failed")),
        ("false | cat\necho never", Some("a command failed")),
        ("tidings --data-dir ./d serve  # in the foreground", None),
    ];
    for (n, (commands, failure)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("page{n}.md"));
        std::fs::write(
            &path,
            format!("# A page\n\n{RUN}\n```sh\n{commands}\n```\n"),
        )
        .expect("page");
        let page: &'static str = Box::leak(path.display().to_string().into_boxed_str());
        let result = std::panic::catch_unwind(|| {
            run_page(&Page {
                page,
                needs: NO_NEEDS,
                setup: "",
                before_block: &[],
            })
        });
        match (failure, result) {
            (None, Ok(())) => {}
            (Some(expected), Err(panic)) => {
                let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(message.contains(expected), "{commands}: {message}");
            }
            (None, Err(_)) => panic!("`{commands}` should pass"),
            (Some(_), Ok(())) => panic!("`{commands}` should fail its page"),
        }
    }
}
