//! Abuse limits over HTTP: login backoff and buckets, sign-ups per address, per-token budgets
//! with their headers, slow request heads, and the 413 that a client sending its whole body
//! first still reads. Clients on other addresses bind to other loopback addresses (127.0.0.N).

mod common;

use common::{Resp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};
use tidings_server::config::ServerConfig;
use tidings_server::limits::{Bucket, RateLimits};

/// A request from `127.0.0.{from}`.
async fn call(
    s: &TestServer,
    from: u8,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)))
        .build()
        .expect("client");
    let mut req = client.request(method, format!("{}/api/v1{path}", s.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

async fn login_from(s: &TestServer, from: u8, username: &str, password: &str) -> Resp {
    call(
        s,
        from,
        Method::POST,
        "/sessions",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn signup_from(s: &TestServer, from: u8, username: &str) -> Resp {
    call(
        s,
        from,
        Method::POST,
        "/users",
        None,
        Some(json!({"username": username, "password": "correct horse"})),
    )
    .await
}

/// A 429 with `Retry-After` (at least 1 s, and as the body says), returning the wait.
fn assert_limited(r: &Resp, code: &str) -> u64 {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.code(), code, "{:?}", r.body);
    let header: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(header >= 1);
    assert_eq!(r.body["error"]["details"]["retry_after"], header);
    header
}

fn header_u64(r: &Resp, name: &str) -> u64 {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", r.headers))
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number")
}

fn limited(change: impl FnOnce(&mut RateLimits)) -> ServerConfig {
    let mut config = ServerConfig::default();
    change(&mut config.rate_limits);
    config
}

/// The issue's measurement, on the default limits: 30 wrong passwords in a row from one
/// address are slowed down (429 after five), while the real user on another address logs in
/// at once.
#[tokio::test]
async fn wrong_passwords_in_a_row_are_slowed_and_the_real_user_is_not() {
    let s = TestServer::start_limited(ServerConfig::default()).await;
    assert_eq!(signup_from(&s, 1, "ana").await.status, StatusCode::CREATED);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(login_from(&s, 66, "ana", "guess").await.status.as_u16());
    }
    assert_eq!(
        statuses[..6],
        [401; 6],
        "five free failures, then the backoff starts"
    );
    let refused = statuses.iter().filter(|&&code| code == 429).count();
    assert!(refused >= 20, "most of the burst is refused: {statuses:?}");
    let r = login_from(&s, 66, "ana", "guess").await;
    let wait = assert_limited(&r, "login_backoff");
    assert!(wait <= 300, "the backoff is capped: {wait}");
    // The attacker's address backs off; the real user elsewhere is not held back.
    let r = login_from(&s, 1, "ana", "correct horse").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// The backoff doubles per failure, covers the right password too while it runs (else it
/// would tell a guesser which guess was right), and ends: the same address then logs in.
#[tokio::test]
async fn the_backoff_ends_and_a_success_forgives() {
    let s = TestServer::start_limited(limited(|l| {
        l.login.free_failures = 1;
        l.login.backoff_base = Duration::from_secs(1);
        l.login.backoff_max = Duration::from_secs(2);
    }))
    .await;
    assert_eq!(signup_from(&s, 1, "bo").await.status, StatusCode::CREATED);
    assert_eq!(
        login_from(&s, 7, "bo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&s, 7, "bo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = login_from(&s, 7, "bo", "correct horse").await;
    assert_eq!(assert_limited(&r, "login_backoff"), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login_from(&s, 7, "bo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = login_from(&s, 7, "bo", "x").await;
    assert_eq!(
        assert_limited(&r, "login_backoff"),
        2,
        "doubled, capped at 2 s"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = login_from(&s, 7, "bo", "correct horse").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The success forgave the address: one more failure is free again.
    assert_eq!(
        login_from(&s, 7, "bo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&s, 7, "bo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A guesser spread over many addresses runs out of the account's bucket; an address the
/// user logged in from before is not counted and still works.
#[tokio::test]
async fn a_distributed_guesser_is_limited_per_account_but_known_addresses_are_not() {
    let s = TestServer::start_limited(limited(|l| {
        l.login.per_account = Bucket::per(3, 600);
    }))
    .await;
    assert_eq!(signup_from(&s, 1, "cy").await.status, StatusCode::CREATED);
    // The real user's usual address (its success counts against the new-address budget).
    assert_eq!(
        login_from(&s, 1, "cy", "correct horse").await.status,
        StatusCode::CREATED
    );
    for from in [21, 22] {
        assert_eq!(
            login_from(&s, from, "cy", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login_from(&s, 23, "cy", "guess").await;
    let wait = assert_limited(&r, "login_rate");
    assert!(wait <= 200, "one attempt comes back every 200 s: {wait}");
    // Not even the right password from a new address while the bucket is empty...
    assert_eq!(
        login_from(&s, 24, "cy", "correct horse").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...but the known address is untouched, and other accounts are unaffected.
    assert_eq!(
        login_from(&s, 1, "cy", "correct horse").await.status,
        StatusCode::CREATED
    );
    assert_eq!(signup_from(&s, 1, "dee").await.status, StatusCode::CREATED);
    assert_eq!(
        login_from(&s, 25, "dee", "correct horse").await.status,
        StatusCode::CREATED
    );
}

/// One address trying many accounts (credential stuffing) runs out of its own bucket.
#[tokio::test]
async fn one_address_trying_many_accounts_is_limited() {
    let s = TestServer::start_limited(limited(|l| {
        l.login.per_ip = Bucket::per(3, 60);
    }))
    .await;
    for name in ["u1", "u2", "u3"] {
        assert_eq!(
            login_from(&s, 9, name, "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login_from(&s, 9, "u4", "guess").await;
    assert!(assert_limited(&r, "login_rate") <= 20);
    assert_eq!(
        login_from(&s, 10, "u4", "guess").await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Sign-ups are limited per address, and the refused one creates nothing.
#[tokio::test]
async fn signups_are_limited_per_address() {
    let s = TestServer::start_limited(limited(|l| {
        l.signup_per_ip = Bucket::per(2, 3600);
    }))
    .await;
    assert_eq!(signup_from(&s, 30, "e1").await.status, StatusCode::CREATED);
    assert_eq!(signup_from(&s, 30, "e2").await.status, StatusCode::CREATED);
    let r = signup_from(&s, 30, "e3").await;
    let wait = assert_limited(&r, "signup_rate");
    assert!((1..=1800).contains(&wait), "{wait}");
    let token = s.login("e1", "correct horse").await;
    assert_eq!(
        s.get(&token, "/users/e3").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(signup_from(&s, 31, "e3").await.status, StatusCode::CREATED);
}

/// Each token has a read and a write budget, reported on every authenticated response; an
/// empty budget answers 429 with `Retry-After`; another token has its own.
#[tokio::test]
async fn tokens_have_separate_read_and_write_budgets_in_headers() {
    let s = TestServer::start_limited(limited(|l| {
        l.reads_per_token = Bucket::per(3, 60);
        l.writes_per_token = Bucket::per(2, 60);
    }))
    .await;
    let token = s.user("fay").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = s.get(&token, "/me").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header_u64(&r, "ratelimit-limit"), 3);
        remaining.push(header_u64(&r, "ratelimit-remaining"));
        assert!(header_u64(&r, "ratelimit-reset") <= 60);
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let r = s.get(&token, "/me").await;
    let wait = assert_limited(&r, "rate_limited");
    assert!(
        (1..=20).contains(&wait),
        "one read comes back every 20 s: {wait}"
    );
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 0);

    // Writes have their own budget.
    let note = json!({"object": {"content": "hi"}, "to": ["public"]});
    let r = s.post(&token, "/outbox", note.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(header_u64(&r, "ratelimit-limit"), 2);
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 1);
    assert_eq!(
        s.post(&token, "/outbox", note.clone()).await.status,
        StatusCode::CREATED
    );
    let r = s.post(&token, "/outbox", note.clone()).await;
    assert_limited(&r, "rate_limited");

    // Another session of the same user has a budget of its own; the refused publish made
    // nothing.
    let other = s.login("fay", "correct horse").await;
    let outbox = s.get(&other, "/users/fay/outbox").await;
    assert_eq!(outbox.status, StatusCode::OK);
    assert_eq!(outbox.body["items"].as_array().map(Vec::len), Some(2));
    // Requests without a valid token carry no budget.
    let r = s.get("made-up", "/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("ratelimit-limit").is_none());
}

/// With the limits off nothing is limited and no budget headers are sent.
#[tokio::test]
async fn limits_can_be_turned_off() {
    let s = TestServer::start_limited(ServerConfig {
        rate_limits: RateLimits::off(),
        ..ServerConfig::default()
    })
    .await;
    assert_eq!(signup_from(&s, 1, "gil").await.status, StatusCode::CREATED);
    for _ in 0..40 {
        assert_eq!(
            login_from(&s, 1, "gil", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let token = s.login("gil", "correct horse").await;
    let r = s.get(&token, "/me").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("ratelimit-limit").is_none());
}

/// `[limits]` in the config file sets every limit; a bucket of burst 0 is off; nonsense is
/// refused.
#[test]
fn the_config_file_sets_the_limits() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidings.toml");
    std::fs::write(
        &path,
        r#"
[limits]
header_read_timeout_seconds = 5
body_read_seconds = 20
live_connections_per_user = 9
client_ip_header = "X-Forwarded-For"
max_discard_bytes = 1048576
[limits.login]
free_failures = 3
backoff_base_seconds = 2
backoff_max_seconds = 60
known_ip_days = 7
per_ip = { burst = 50, period_seconds = 300 }
per_account = { burst = 10, period_seconds = 600 }
[limits.signup]
burst = 5
period_seconds = 3600
[limits.reads]
burst = 0
period_seconds = 60
[limits.writes]
burst = 30
period_seconds = 60
[limits.anonymous]
burst = 7
period_seconds = 70
"#,
    )
    .expect("write");
    let config = ServerConfig::load(&path).expect("load");
    let l = &config.rate_limits;
    assert!(l.enabled);
    assert_eq!(config.header_read_timeout, Duration::from_secs(5));
    assert_eq!(config.body_read_timeout, Duration::from_secs(20));
    assert_eq!(
        l.client_ip_header.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-for")
    );
    assert_eq!(l.max_discard_bytes, 1 << 20);
    assert_eq!(l.login.free_failures, 3);
    assert_eq!(l.login.backoff_max, Duration::from_secs(60));
    assert_eq!(l.login.known_ip_ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(l.login.per_account, Bucket::per(10, 600));
    assert_eq!(l.signup_per_ip, Bucket::per(5, 3600));
    assert_eq!(l.reads_per_token, Bucket::per(0, 60));
    assert_eq!(l.writes_per_token, Bucket::per(30, 60));
    assert_eq!(l.anonymous_per_ip, Bucket::per(7, 70));
    assert_eq!(config.live_connections_per_user, 9);

    std::fs::write(&path, "[limits]\nrate_limits = false\n").expect("write");
    assert!(!ServerConfig::load(&path).expect("load").rate_limits.enabled);
    for bad in [
        "[limits.reads]\nburst = 5\nperiod_seconds = 0\n",
        "[limits]\nheader_read_timeout_seconds = 0\n",
        "[limits]\nbody_read_seconds = 0\n",
        "[limits]\nlive_connections_per_user = 0\n",
        "[limits.login]\nbackoff_base_seconds = 10\nbackoff_max_seconds = 1\n",
        "[limits]\nclient_ip_header = \"no spaces\"\n",
        "[limits.writes]\nburst = 5\n",
        "[limits.reads]\nburst = 5\nperiod_seconds = 60\nper = 3\n",
    ] {
        std::fs::write(&path, bad).expect("write");
        assert!(ServerConfig::load(&path).is_err(), "accepted: {bad}");
    }
}

fn short_heads() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

fn connect(s: &TestServer) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp
}

/// Sends the first `at_once` bytes of `head`, then one byte every 200 ms from another thread,
/// and reports how long the server kept the connection open (it closes it, or the test
/// fails after 10 s).
async fn drip(s: &TestServer, head: &'static [u8], at_once: usize) -> Duration {
    let mut tcp = connect(s);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut writer = tcp.try_clone().expect("clone");
        let (first, rest) = head.split_at(at_once);
        writer.write_all(first).expect("first bytes");
        let dripper = std::thread::spawn(move || {
            for byte in rest {
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let mut buf = [0u8; 256];
        // EOF or a reset both mean the server gave up on the connection.
        let closed = loop {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(_) => continue,
            }
        };
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        let _ = dripper.join();
        closed
    })
    .await
    .expect("drip")
}

/// Slowloris: a head sent a byte at a time is cut at the deadline, on the API and on the
/// live-stream path; an idle keep-alive connection is closed too; a normal client meanwhile
/// is served.
#[tokio::test]
async fn slow_request_heads_are_cut_at_the_deadline() {
    let s = TestServer::start_with(short_heads(), tidings_store::StoreConfig::default()).await;
    let api = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    let stream = b"GET /api/v1/inbox/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    // The request lines go at once (so each connection reaches its own parser: hyper's, or
    // the live stream's), the rest a byte at a time.
    let (api_held, stream_held, served) =
        tokio::join!(drip(&s, api, 25), drip(&s, stream, 35), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.request(Method::GET, "/healthz", None, None, &[])
                .await
                .status
        });
    assert_eq!(served, StatusCode::OK);
    for held in [api_held, stream_held] {
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_secs(5),
            "held {held:?}"
        );
    }
    // A finished request, then silence: the idle connection is closed after the deadline.
    let mut tcp = connect(&s);
    let idle = tokio::task::spawn_blocking(move || {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let started = Instant::now();
        loop {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("idle");
    assert!(idle < Duration::from_secs(5), "idle for {idle:?}");
}

/// Writes a whole request (head and body) before reading anything, as Python's urllib does,
/// then reads the answer's status line and body.
fn send_whole_then_read(tcp: &mut TcpStream, head: &str, body: &[u8]) -> (String, Vec<u8>) {
    tcp.write_all(head.as_bytes()).expect("head");
    tcp.write_all(body)
        .expect("the server reads the body instead of hanging up");
    read_response(tcp)
}

fn read_response(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before a full answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().expect("length"))
            })
            .expect("content-length");
        if got.len() >= end + 4 + length {
            let status = text.lines().next().unwrap_or("").to_owned();
            return (status, got[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// A 3 MiB body sent whole before reading gets the 413 (not a broken pipe), as does the 401
/// when its token is bad; it publishes nothing, and the connection still serves the next
/// request.
#[tokio::test]
async fn an_oversized_body_sent_whole_still_gets_its_413() {
    let s = TestServer::start().await;
    let token = s.user("hal").await;
    let mut tcp = connect(&s);
    let auth = format!("Bearer {token}");
    let (status, body, next_status) = tokio::task::spawn_blocking(move || {
        let mut body = br#"{"object": {"content": ""#.to_vec();
        body.resize(3 * 1024 * 1024, b'a');
        body.extend_from_slice(br#""}, "to": ["public"]}"#);
        let head = format!(
            "POST /api/v1/outbox HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Refused before its body is looked at (no valid token): the answer still arrives.
        let (unauthenticated, _) =
            send_whole_then_read(&mut tcp, &head.replace(&auth, "Bearer made-up"), &body);
        assert!(
            unauthenticated.starts_with("HTTP/1.1 401"),
            "{unauthenticated}"
        );
        let (status, answer) = send_whole_then_read(&mut tcp, &head, &body);
        let (next, _) = send_whole_then_read(
            &mut tcp,
            &format!("GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"),
            b"",
        );
        (status, answer, next)
    })
    .await
    .expect("raw client");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(next_status.starts_with("HTTP/1.1 200"), "{next_status}");
    let outbox = s.get(&token, "/users/hal/outbox").await;
    assert_eq!(outbox.body["items"], json!([]));
}

/// Sends `head`, then the first `at_once` bytes of `body`, then the rest a byte every 200 ms
/// from another thread (none when `drip` is false: the client stalls), and reads the answer:
/// its status line, its body, and how long it took.
async fn slow_body(
    s: &TestServer,
    head: String,
    body: Vec<u8>,
    at_once: usize,
    drip: bool,
) -> (String, Value, Duration) {
    let mut tcp = connect(s);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut writer = tcp.try_clone().expect("clone");
        writer.write_all(head.as_bytes()).expect("head");
        let (first, rest) = body.split_at(at_once);
        writer.write_all(first).expect("first bytes");
        let rest = if drip { rest.to_vec() } else { Vec::new() };
        let dripper = std::thread::spawn(move || {
            for byte in rest {
                if writer.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let (status, answer) = read_response(&mut tcp);
        let took = started.elapsed();
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        let _ = dripper.join();
        let answer = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        (status, answer, took)
    })
    .await
    .expect("slow body")
}

/// Slowloris on the body: half a body and then silence, or a body dripped a byte at a time,
/// gets `408 body_timeout` at the deadline (a total one: the drip never pauses long) and
/// publishes nothing; a body sent at once is served as usual.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_changes_nothing() {
    let s = TestServer::start_with(
        ServerConfig {
            body_read_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
        tidings_store::StoreConfig::default(),
    )
    .await;
    let token = s.user("ivy").await;
    let body = br#"{"object": {"content": "slow"}, "to": ["public"]}"#.to_vec();
    let head = format!(
        "POST /api/v1/outbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chunked_head = format!(
        "POST /api/v1/outbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let half = body.len() / 2;
    let (stalled, dripped, chunked_stalled) = tokio::join!(
        slow_body(&s, head.clone(), body.clone(), half, false),
        slow_body(&s, head.clone(), body.clone(), half, true),
        slow_body(&s, chunked_head, chunked.clone(), chunked.len() / 2, false),
    );
    for (status, answer, took) in [stalled, dripped, chunked_stalled] {
        assert!(status.starts_with("HTTP/1.1 408"), "{status} {answer}");
        assert_eq!(answer["error"]["code"], "body_timeout", "{answer}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(8),
            "answered after {took:?}"
        );
    }
    let outbox = s.get(&token, "/users/ivy/outbox").await;
    assert_eq!(
        outbox.body["items"],
        json!([]),
        "a timed-out body published"
    );
    // A body sent at once is not affected.
    let (status, answer, _) = slow_body(&s, head, body.clone(), body.len(), false).await;
    assert!(status.starts_with("HTTP/1.1 201"), "{status} {answer}");
}

/// The OpenAPI document lists the limits' answers where they apply, with their headers.
#[tokio::test]
async fn the_openapi_document_lists_429_413_and_408() {
    let s = TestServer::start().await;
    let doc = s
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .body;
    let response = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status].clone()
    };
    let login = response("/api/v1/sessions", "post", "429");
    assert!(login["headers"]["Retry-After"].is_object(), "{login}");
    let codes = &login["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    assert_eq!(codes, &json!(["login_backoff", "login_rate"]));
    let signup = response("/api/v1/users", "post", "429");
    assert!(
        signup["description"]
            .as_str()
            .unwrap_or("")
            .contains("signup_rate")
    );
    for (path, method) in [("/api/v1/me", "get"), ("/api/v1/outbox", "post")] {
        let budget = response(path, method, "429");
        for header in [
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ] {
            assert!(
                budget["headers"][header].is_object(),
                "{path} {header}: {budget}"
            );
        }
    }
    assert!(response("/api/v1/outbox", "post", "413").is_object());
    let timeout = response("/api/v1/outbox", "post", "408");
    assert_eq!(
        timeout["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
            ["enum"],
        json!(["body_timeout"]),
        "{timeout}"
    );
    assert!(
        response("/api/v1/me", "get", "408").is_null(),
        "no body, no 408"
    );
    // Live streams: the read budget and the cap on connections.
    let stream = response("/api/v1/inbox/stream", "get", "429");
    assert_eq!(
        stream["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
            ["enum"],
        json!(["rate_limited", "too_many_connections"]),
        "{stream}"
    );
    assert!(stream["headers"]["Retry-After"].is_object(), "{stream}");
    // The compat profiles: by app key, or (FeedStream) by address, in their own shapes.
    for (path, method, shape) in [
        ("/me", "get", "AfsError"),
        ("/post", "post", "AfsError"),
        ("/v1/consume", "get", "FeedStreamError"),
        ("/v1/publish", "post", "FeedStreamError"),
    ] {
        let limited = response(path, method, "429");
        assert!(
            limited["headers"]["Retry-After"].is_object(),
            "{path}: {limited}"
        );
        assert_eq!(
            limited["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{shape}"),
            "{path}: {limited}"
        );
    }
    assert!(
        response("/api/v1/me", "get", "413").is_null(),
        "no body, no 413"
    );
}

/// The fenced block of `docs/security.md` after `<!-- {marker} -->`, and the one after it.
fn security_doc_blocks(marker: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/security.md"
    ))
    .expect("docs/security.md");
    let start = doc.find(&format!("<!-- {marker} -->")).expect("marker");
    let end = doc[start..]
        .find(&format!("<!-- /{marker} -->"))
        .expect("closing marker")
        + start;
    doc[start..end]
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            block
                .split_once('\n')
                .map(|(_, body)| body)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The configuration shown in docs/security.md is valid and is exactly the defaults.
#[test]
fn the_documented_config_is_the_default() {
    let blocks = security_doc_blocks("limits-config");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidings.toml");
    std::fs::write(&path, &blocks[0]).expect("write");
    let loaded = ServerConfig::load(&path).expect("the documented config loads");
    let defaults = ServerConfig::default();
    assert_eq!(loaded.rate_limits, defaults.rate_limits);
    assert_eq!(loaded.header_read_timeout, defaults.header_read_timeout);
    assert_eq!(loaded.body_read_timeout, defaults.body_read_timeout);
    assert_eq!(
        loaded.live_connections_per_user,
        defaults.live_connections_per_user
    );
    assert_eq!(loaded.max_body_bytes, defaults.max_body_bytes);
}

/// The shell example in docs/security.md, run with curl against a server with the default
/// limits, prints what the page says.
#[tokio::test]
async fn the_documented_login_example_runs() {
    let s = TestServer::start_limited(ServerConfig::default()).await;
    assert_eq!(signup_from(&s, 1, "ana").await.status, StatusCode::CREATED);
    let blocks = security_doc_blocks("limits-examples");
    let script = blocks[0].replace("http://127.0.0.1:8080", &s.base);
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .expect("sh (curl must be installed)");
    let stdout = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with(&"401\n".repeat(6)), "{stdout}");
    let shown = &blocks[1];
    let status_line = shown.lines().next().expect("status line");
    assert!(stdout.contains(status_line), "{stdout}");
    assert!(stdout.contains("retry-after: 1\n"), "{stdout}");
    let body = |text: &str| -> Value {
        serde_json::from_str(
            text.lines()
                .rfind(|l| l.starts_with('{'))
                .expect("json line"),
        )
        .expect("json")
    };
    assert_eq!(body(&stdout), body(shown));
}

/// The same with a chunked body (no `Content-Length`): the handler finds it too large, the
/// rest is drained, and the 413 is read by a client that sent everything first.
#[tokio::test]
async fn an_oversized_chunked_body_sent_whole_still_gets_its_413() {
    let s = TestServer::start().await;
    let token = s.user("ida").await;
    let mut tcp = connect(&s);
    let auth = format!("Bearer {token}");
    let (status, next_status) = tokio::task::spawn_blocking(move || {
        let mut body = Vec::new();
        let mut json = br#"{"object": {"content": ""#.to_vec();
        json.resize(3 * 1024 * 1024, b'a');
        json.extend_from_slice(br#""}, "to": ["public"]}"#);
        for chunk in json.chunks(64 * 1024) {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let head = format!(
            "POST /api/v1/outbox HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let (status, _) = send_whole_then_read(&mut tcp, &head, &body);
        let (next, _) = send_whole_then_read(
            &mut tcp,
            &format!("GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"),
            b"",
        );
        (status, next)
    })
    .await
    .expect("raw client");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(next_status.starts_with("HTTP/1.1 200"), "{next_status}");
    let outbox = s.get(&token, "/users/ida/outbox").await;
    assert_eq!(outbox.body["items"], json!([]));
}

/// A request from `127.0.0.{from}` to any path (not only `/api/v1`), with extra headers.
async fn raw_from(
    s: &TestServer,
    from: u8,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)))
        .build()
        .expect("client");
    let mut req = client.request(method, format!("{}{path}", s.base));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?} {:?}", r.headers, r.body))
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

/// Requests without a token spend their address's budget: API reads without a bearer token
/// and FeedStream's unauthenticated `/v1` (refused in its own error shape). Other addresses,
/// requests with a token, health checks and the web app's files are not counted.
#[tokio::test]
async fn requests_without_a_token_have_a_budget_per_address() {
    let s = TestServer::start_limited(limited(|l| {
        l.anonymous_per_ip = Bucket::per(3, 60);
    }))
    .await;
    let token = s.user("jo").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = raw_from(&s, 40, Method::GET, "/api/v1/openapi.json", &[], None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header_u64(&r, "ratelimit-limit"), 3);
        remaining.push(header_u64(&r, "ratelimit-remaining"));
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let r = raw_from(&s, 40, Method::GET, "/api/v1/openapi.json", &[], None).await;
    let wait = assert_limited(&r, "rate_limited");
    assert!((1..=20).contains(&wait), "one request every 20 s: {wait}");
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 0);
    // An unauthenticated read of a protected route is counted (and refused) the same way.
    let r = raw_from(&s, 40, Method::GET, "/api/v1/inbox", &[], None).await;
    assert_limited(&r, "rate_limited");
    // FeedStream's /v1 has no tokens at all: refused too, in FeedStream's shape.
    let r = raw_from(
        &s,
        40,
        Method::GET,
        "/v1/consume?event_name=x&consumer_id=y",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.body["ok"], false, "{:?}", r.body);
    assert!(retry_after(&r) >= 1);
    // Not counted: requests with a token (their own budget), health, the web app.
    let auth = format!("Bearer {token}");
    let r = raw_from(
        &s,
        40,
        Method::GET,
        "/api/v1/me",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for path in ["/healthz", "/"] {
        let r = raw_from(&s, 40, Method::GET, path, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.headers.get("ratelimit-limit").is_none(), "{path}");
    }
    // Another address has its own budget.
    let r = raw_from(&s, 41, Method::GET, "/api/v1/openapi.json", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header_u64(&r, "ratelimit-remaining"), 2);
}

/// activity-feed-system's `X-App-Key` spends the same read and write budgets as a token
/// (keyed by the key), refused in that profile's shape; a refused post creates nothing.
#[tokio::test]
async fn an_app_key_spends_the_token_budgets() {
    let s = TestServer::start_limited(limited(|l| {
        l.reads_per_token = Bucket::per(2, 60);
        l.writes_per_token = Bucket::per(2, 60);
    }))
    .await;
    let token = s.user("kim").await;
    let r = s.post(&token, "/me/app-key", json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key = r.body["app_key"].as_str().expect("key").to_owned();
    let with_key = [("x-app-key", key.as_str())];
    for left in [1, 0] {
        let r = raw_from(&s, 1, Method::GET, "/me", &with_key, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(header_u64(&r, "ratelimit-limit"), 2);
        assert_eq!(header_u64(&r, "ratelimit-remaining"), left);
    }
    let r = raw_from(&s, 1, Method::GET, "/me", &with_key, None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.body["error"], true, "the profile's shape: {:?}", r.body);
    assert!(retry_after(&r) >= 1);
    // Writes: two posts, then a refusal that posts nothing.
    let post = json!({"type": "post", "content": "hello"});
    for _ in 0..2 {
        let r = raw_from(&s, 1, Method::POST, "/post", &with_key, Some(post.clone())).await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }
    let r = raw_from(&s, 1, Method::POST, "/post", &with_key, Some(post.clone())).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    let outbox = s.get(&token, "/users/kim/outbox").await;
    assert_eq!(
        outbox.status,
        StatusCode::OK,
        "the token's budget is its own"
    );
    assert_eq!(outbox.body["items"].as_array().map(Vec::len), Some(2));
}

/// Opening a live stream spends a read of the token's budget, reported in the stream's
/// headers; with the budget empty the stream is refused with 429 and `Retry-After`.
#[tokio::test]
async fn opening_a_live_stream_spends_the_read_budget() {
    let s = TestServer::start_limited(limited(|l| {
        l.reads_per_token = Bucket::per(2, 60);
    }))
    .await;
    let token = s.user("lu").await;
    let first = common::sse::SseClient::request(&s, "", Some(&token), None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-remaining"], "1");
    assert_eq!(s.get(&token, "/me").await.status, StatusCode::OK);
    let refused = common::sse::SseClient::request(&s, "", Some(&token), None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // The token in the query (EventSource) is charged the same.
    let refused =
        common::sse::SseClient::request(&s, &format!("access_token={token}"), None, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(first);
}

/// A Socket.IO handshake spends a read too: refused with `connect_error` naming the code and
/// the wait.
#[tokio::test]
async fn a_socket_io_handshake_spends_the_read_budget() {
    let s = TestServer::start_limited(limited(|l| {
        l.reads_per_token = Bucket::per(1, 60);
    }))
    .await;
    let token = s.user("mo").await;
    assert_eq!(s.get(&token, "/me").await.status, StatusCode::OK);
    let http = reqwest::Client::new();
    let url = |query: &str| format!("{}/socket.io/?{query}", s.base);
    let open = http
        .get(url("EIO=4&transport=polling"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let open: Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("open JSON");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    let poll = url(&format!("EIO=4&transport=polling&sid={sid}"));
    let r = http
        .post(&poll)
        .body(format!("40{}", json!({"token": token})))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let answer = http
        .get(&poll)
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("body");
    let error: Value =
        serde_json::from_str(answer.strip_prefix("44").expect("connect_error")).expect("json");
    assert_eq!(error["data"]["code"], "rate_limited", "{answer}");
    assert!(error["data"]["details"]["retry_after"].as_u64() >= Some(1));
}

/// The cap on live connections per user is configurable, holds with the rate limits off, and
/// answers 429 with `Retry-After`; a closed connection frees its place.
#[tokio::test]
async fn live_connections_per_user_are_capped_as_configured() {
    let config = ServerConfig {
        live_connections_per_user: 2,
        ..ServerConfig::default()
    };
    // `start_with` turns the rate limits off: the cap is not one of them.
    let s = TestServer::start_with(config, tidings_store::StoreConfig::default()).await;
    let token = s.user("ned").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = common::sse::SseClient::open(&s, "", &token, None).await;
        stream.expect("ready").await;
        open.push(stream);
    }
    let r = common::sse::SseClient::request(&s, "", Some(&token), None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert_eq!(body["error"]["details"]["retry_after"], 5);
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::sse::SseClient::request(&s, "", Some(&token), None).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
