//! `tidings bench push`: live connections under load, over SSE.
//!
//! 1. Opens `--connections` SSE streams (tokens from the seed file, round robin) and measures
//!    the server's resident memory before and after, idle: bytes per connection.
//! 2. Publishes `--publish-rate` notes per second to `--circle` for `--duration` seconds and
//!    records, on every stream, the time from when each publish was *due* to when its event
//!    arrived (coordinated omission accounted for): publish-to-client latency and events/s.
//!
//! The seed for the target: `tidings seed --users 10000 --circles 1 --largest 10000
//! --activities 0 --tokens 10000` puts every user in one circle.

use crate::bench::{BenchArgs, rss_mib};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Marker put in each published note, followed by its index.
const MARKER: &str = "pushbench:";
/// Histogram shards shared by the stream readers (one per reader would cost too much memory).
const SHARDS: usize = 64;
/// Streams opened at once while ramping up.
const RAMP_BATCH: usize = 500;

/// What the push scenario measured.
#[derive(Debug, Serialize)]
pub struct PushReport {
    /// Streams that reached `ready`.
    pub connections: usize,
    /// Streams that failed to open.
    pub failed_connections: usize,
    /// Server RSS growth per idle connection, in bytes.
    pub bytes_per_connection: Option<f64>,
    /// Server RSS with every connection open and idle.
    pub server_rss_idle_mib: Option<f64>,
    /// Publishes sent / accepted.
    pub published: u64,
    /// Events expected (accepted publishes × connections).
    pub expected_events: u64,
    /// Events received.
    pub received_events: u64,
    /// Received events per second, from the first arrival to the last.
    pub events_per_s: f64,
    /// Fastest publish-to-client latency, milliseconds (the publish path alone, roughly).
    pub min_ms: f64,
    /// Publish-to-client latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Publish acknowledgement latency (from when each publish was due to its 201),
    /// milliseconds, median: what of the publish-to-client time is spent before the commit
    /// is acknowledged.
    pub publish_p50_ms: f64,
    /// 99th percentile of the acknowledgement latency.
    pub publish_p99_ms: f64,
    /// Server CPU time (user + system) spent during the load phase, seconds.
    pub server_cpu_s: Option<f64>,
    /// This load tool's CPU time during the load phase (it shares the machine), seconds.
    pub client_cpu_s: Option<f64>,
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`. Its times are
/// in USER_HZ ticks, which Linux fixes at 100 per second for this interface.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn tokens(args: &BenchArgs) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(&args.tokens).with_context(|| {
        format!(
            "reading {} (run `tidings seed` first)",
            args.tokens.display()
        )
    })?;
    let tokens: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    if tokens.is_empty() {
        bail!("no tokens in {}", args.tokens.display());
    }
    Ok(tokens)
}

/// Reads one stream until `end`, recording each marked event's latency.
async fn read_stream(
    mut response: reqwest::Response,
    start: Instant,
    interval: Duration,
    end: Instant,
    shard: Arc<std::sync::Mutex<Histogram<u64>>>,
    received: Arc<AtomicU64>,
    window: Arc<(AtomicU64, AtomicU64)>,
) {
    // Markers may straddle chunks: keep a short tail of the previous one.
    let mut carry = String::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(end.into(), response.chunk()).await {
        let now = Instant::now();
        carry.push_str(&String::from_utf8_lossy(&chunk));
        let mut rest = carry.as_str();
        let mut consumed = 0;
        while let Some(pos) = rest.find(MARKER) {
            let digits: String = rest[pos + MARKER.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let after = pos + MARKER.len() + digits.len();
            if after >= rest.len() {
                // The number may continue in the next chunk.
                break;
            }
            if let Ok(i) = digits.parse::<u32>() {
                let due = start + interval * i;
                let micros = now
                    .saturating_duration_since(due)
                    .as_micros()
                    .clamp(1, 120_000_000);
                received.fetch_add(1, Ordering::Relaxed);
                let at = now.saturating_duration_since(start).as_micros() as u64;
                window.0.fetch_min(at, Ordering::Relaxed);
                window.1.fetch_max(at, Ordering::Relaxed);
                if let Ok(mut h) = shard.lock() {
                    let _ = h.record(micros as u64);
                }
            }
            consumed += after;
            rest = &rest[after..];
        }
        // Keep only what may hold the start of a marker.
        let keep_from = carry.len().saturating_sub(MARKER.len() + 12).max(consumed);
        let keep_from = (keep_from..=carry.len())
            .find(|&i| carry.is_char_boundary(i))
            .unwrap_or(carry.len());
        carry.drain(..keep_from);
    }
}

/// Runs the push scenario.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let circle = args
        .circle
        .clone()
        .context("bench push needs --circle NAME (a circle every token's user belongs to)")?;
    let tokens = tokens(args)?;
    let connections = args.connections;
    if connections == 0 || connections > 100_000 {
        bail!("--connections must be between 1 and 100000");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let rss_before = args.server_pid.and_then(rss_mib);

    // Ramp up: open every stream and wait for its `ready`.
    let mut streams = Vec::with_capacity(connections);
    let mut failed = 0usize;
    let mut next = 0usize;
    while next < connections {
        let batch: Vec<_> = (next..(next + RAMP_BATCH).min(connections))
            .map(|i| {
                let mut request = client
                    .get(format!("{}/api/v1/inbox/stream", args.target))
                    .bearer_auth(&tokens[i % tokens.len()]);
                if let Some(counts) = &args.counts {
                    request = request.query(&[("counts", counts)]);
                }
                async move {
                    let mut response = request.send().await.ok()?;
                    if !response.status().is_success() {
                        return None;
                    }
                    // The first chunk carries `ready`.
                    let first = response.chunk().await.ok()??;
                    String::from_utf8_lossy(&first)
                        .contains("event: ready")
                        .then_some(response)
                }
            })
            .collect();
        next += batch.len();
        for opened in futures::future::join_all(batch).await {
            match opened {
                Some(response) => streams.push(response),
                None => failed += 1,
            }
        }
    }
    if streams.is_empty() {
        bail!("no stream could be opened ({failed} failed)");
    }
    // Let the server settle, then sample its memory with everything idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = args.server_pid.and_then(rss_mib);
    let bytes_per_connection = match (rss_before, rss_idle) {
        (Some(before), Some(idle)) => {
            Some((idle - before) * 1024.0 * 1024.0 / streams.len() as f64)
        }
        _ => None,
    };

    // On stderr, so a profiler can be attached for exactly the load phase.
    eprintln!("push: {} streams open and idle; load starts", streams.len());

    // Load: publish to the circle at a fixed rate; every stream records arrivals.
    let rate = args.publish_rate.max(1);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = rate * args.duration;
    if total > u64::from(u32::MAX) {
        bail!("too many publishes");
    }
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(args.duration) + Duration::from_secs(2);
    let shards: Vec<_> = (0..SHARDS)
        .map(|_| {
            Histogram::new_with_bounds(1, 120_000_000, 3)
                .map(|h| Arc::new(std::sync::Mutex::new(h)))
        })
        .collect::<Result<_, _>>()?;
    let received = Arc::new(AtomicU64::new(0));
    // First and last arrival, in microseconds after `start`.
    let window = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(0)));
    let opened = streams.len();
    let readers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, response)| {
            tokio::spawn(read_stream(
                response,
                start,
                interval,
                end,
                shards[i % SHARDS].clone(),
                received.clone(),
                window.clone(),
            ))
        })
        .collect();
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_cpu_start = server_pid.as_deref().and_then(cpu_seconds);
    let client_cpu_start = cpu_seconds("self");
    let accepted = Arc::new(AtomicU64::new(0));
    let publisher_token = tokens[0].clone();
    let publish_base = args.publish_target.as_deref().unwrap_or(&args.target);
    if !(publish_base.starts_with("http://127.") || publish_base.starts_with("http://localhost")) {
        bail!("bench only targets loopback addresses");
    }
    let acks = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let mut publishes = Vec::new();
    for i in 0..total {
        let due = start + interval * (i as u32);
        tokio::time::sleep_until(due.into()).await;
        let request = client
            .post(format!("{publish_base}/api/v1/outbox"))
            .bearer_auth(&publisher_token)
            .json(&json!({
                "type": "Create",
                "object": {"type": "Note", "content": format!("{MARKER}{i} push bench")},
                "to": [format!("circle:{circle}")],
            }));
        let (accepted, acks) = (accepted.clone(), acks.clone());
        publishes.push(tokio::spawn(async move {
            if matches!(request.send().await, Ok(r) if r.status().as_u16() == 201) {
                accepted.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Ok(mut h) = acks.lock() {
                    let _ = h.record(micros.max(1));
                }
            }
        }));
    }
    for p in publishes {
        let _ = p.await;
    }
    for r in readers {
        let _ = r.await;
    }
    let cpu_used = |start: Option<f64>, pid: Option<&str>| match (start, pid.and_then(cpu_seconds))
    {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let server_cpu_s = cpu_used(server_cpu_start, server_pid.as_deref());
    let client_cpu_s = cpu_used(client_cpu_start, Some("self"));
    let mut merged = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for shard in &shards {
        if let Ok(h) = shard.lock() {
            merged.add(&*h)?;
        }
    }
    let ms = |q: f64| merged.value_at_quantile(q) as f64 / 1000.0;
    let (publish_p50_ms, publish_p99_ms) = match acks.lock() {
        Ok(h) => (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ),
        Err(_) => (0.0, 0.0),
    };
    let accepted = accepted.load(Ordering::Relaxed);
    let received = received.load(Ordering::Relaxed);
    let (first, last) = (
        window.0.load(Ordering::Relaxed),
        window.1.load(Ordering::Relaxed),
    );
    let span_s = if last > first {
        (last - first) as f64 / 1e6
    } else {
        args.duration as f64
    };
    let report = PushReport {
        connections: opened,
        failed_connections: failed,
        bytes_per_connection,
        server_rss_idle_mib: rss_idle,
        published: accepted,
        expected_events: accepted * opened as u64,
        received_events: received,
        events_per_s: received as f64 / span_s,
        min_ms: merged.min() as f64 / 1000.0,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: merged.max() as f64 / 1000.0,
        publish_p50_ms,
        publish_p99_ms,
        server_cpu_s,
        client_cpu_s,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "push: {} SSE connections ({} failed) on {}, {} publishes/s to circle:{circle} through {} for {} s",
            report.connections,
            report.failed_connections,
            args.target,
            rate,
            publish_base,
            args.duration
        );
        if let Some(b) = report.bytes_per_connection {
            println!(
                "idle: server RSS {:.1} MiB, {:.0} bytes ({:.1} KiB) per connection",
                report.server_rss_idle_mib.unwrap_or(0.0),
                b,
                b / 1024.0
            );
        }
        println!(
            "events: {} received of {} expected, {:.0}/s",
            report.received_events, report.expected_events, report.events_per_s
        );
        println!(
            "publish-to-client ms: min {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            report.min_ms, report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms
        );
        println!(
            "publish acknowledged ms: p50 {:.2}  p99 {:.2}",
            report.publish_p50_ms, report.publish_p99_ms
        );
        if let (Some(server), Some(client)) = (report.server_cpu_s, report.client_cpu_s) {
            let per_event = |s: f64| s * 1e6 / report.received_events.max(1) as f64;
            println!(
                "CPU during the load: server {server:.2} s ({:.1} µs/event), load tool {client:.2} s ({:.1} µs/event)",
                per_event(server),
                per_event(client)
            );
        }
    }
    Ok(())
}
