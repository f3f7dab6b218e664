//! `tidings bench`: an open-loop HTTP load generator against a running server on loopback.
//!
//! Requests are scheduled at fixed rates; each latency is measured from the moment the request
//! was *due*, not when it was sent, so a stalled server shows up in the percentiles instead of
//! silently slowing the generator (coordinated omission). When the in-flight cap is reached a
//! due request is counted as dropped, never queued. Every loop is bounded by the duration.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Which load to apply.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Publishes only.
    Publish,
    /// Inbox reads only.
    Read,
    /// Publishes and reads together (the core issue's target).
    Mixed,
    /// Live SSE connections: memory per idle connection, publish-to-client latency.
    Push,
}

/// Load parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// `username token` lines, as written by `tidings seed`.
    #[arg(long, default_value = "./data/seed-tokens.txt")]
    pub tokens: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Publishes per second (publish, mixed).
    #[arg(long, default_value_t = 2_000)]
    pub publish_rate: u64,
    /// Inbox reads per second (read, mixed).
    #[arg(long, default_value_t = 10_000)]
    pub read_rate: u64,
    /// One publish in this many waits for routing, to measure delivery latency.
    #[arg(long, default_value_t = 20)]
    pub delivery_sample: u64,
    /// Most requests in flight; due requests beyond it are dropped and counted.
    #[arg(long, default_value_t = 4_096)]
    pub max_in_flight: usize,
    /// Live connections to hold open (push).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Circle to publish to (push): every token's user should be a member.
    #[arg(long)]
    pub circle: Option<String>,
    /// PID of the server, to sample its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

struct OpStats {
    histogram: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

impl OpStats {
    fn new() -> anyhow::Result<Arc<OpStats>> {
        Ok(Arc::new(OpStats {
            histogram: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    async fn record(&self, due: Instant, ok: bool) {
        let micros = due.elapsed().as_micros().clamp(1, 120_000_000) as u64;
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let _ = self.histogram.lock().await.record(micros);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One row of the report.
#[derive(Debug, Serialize)]
pub struct OpReport {
    /// Operation name.
    pub op: String,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (non-2xx or transport errors).
    pub errors: u64,
    /// Due requests not sent because the in-flight cap was reached.
    pub dropped: u64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Scenario.
    pub scenario: Scenario,
    /// Seconds of load.
    pub duration_s: u64,
    /// Rows.
    pub ops: Vec<OpReport>,
    /// Peak server RSS in MiB, when a PID was given.
    pub server_rss_max_mib: Option<f64>,
}

async fn report(op: &str, stats: &OpStats, secs: f64) -> OpReport {
    let h = stats.histogram.lock().await;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    OpReport {
        op: op.to_owned(),
        ok: stats.ok.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        dropped: stats.dropped.load(Ordering::Relaxed),
        throughput: stats.ok.load(Ordering::Relaxed) as f64 / secs,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    }
}

pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Actor {
    username: String,
    token: String,
    circles: Vec<String>,
}

/// Refuses anything but a loopback target: load runs never leave the machine.
fn check_loopback(target: &str) -> anyhow::Result<()> {
    if !(target.starts_with("http://127.") || target.starts_with("http://localhost")) {
        bail!("bench only targets loopback addresses");
    }
    Ok(())
}

async fn load_actors(client: &reqwest::Client, args: &BenchArgs) -> anyhow::Result<Vec<Actor>> {
    check_loopback(&args.target)?;
    let text = std::fs::read_to_string(&args.tokens).with_context(|| {
        format!(
            "reading {} (run `tidings seed` first)",
            args.tokens.display()
        )
    })?;
    let mut actors = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(username), Some(token)) = (parts.next(), parts.next()) else {
            continue;
        };
        let circles: Value = client
            .get(format!("{}/api/v1/users/{username}/circles", args.target))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let circles = circles["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|m| m["state"] == "active")
                    .filter_map(|m| m["circle"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        actors.push(Actor {
            username: username.to_owned(),
            token: token.to_owned(),
            circles,
        });
    }
    if actors.is_empty() {
        bail!("no tokens in {}", args.tokens.display());
    }
    Ok(actors)
}

/// Schedules `rate` operations per second for `duration`, open loop.
#[allow(clippy::too_many_arguments)]
fn schedule<F, Fut>(
    rate: u64,
    duration: Duration,
    start: Instant,
    permits: Arc<Semaphore>,
    stats: Arc<OpStats>,
    op: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    tokio::spawn(async move {
        if rate == 0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let total = rate * duration.as_secs();
        let mut tasks = Vec::new();
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let fut = op(i);
            let stats = stats.clone();
            tasks.push(tokio::spawn(async move {
                let ok = fut.await;
                stats.record(due, ok).await;
                drop(permit);
            }));
            if tasks.len() > 10_000 {
                tasks.retain(|t| !t.is_finished());
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Runs a scenario and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Scenario::Push = args.scenario {
        check_loopback(&args.target)?;
        return crate::bench_push::run(&args).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    let actors = Arc::new(load_actors(&client, &args).await?);
    let (publish_rate, read_rate) = match args.scenario {
        Scenario::Publish => (args.publish_rate, 0),
        Scenario::Read => (0, args.read_rate),
        Scenario::Mixed => (args.publish_rate, args.read_rate),
        Scenario::Push => (0, 0),
    };
    let duration = Duration::from_secs(args.duration);
    let permits = Arc::new(Semaphore::new(args.max_in_flight));
    let publish_stats = OpStats::new()?;
    let delivery_stats = OpStats::new()?;
    let read_stats = OpStats::new()?;
    let start = Instant::now() + Duration::from_millis(200);

    let sampler = args.server_pid.map(|pid| {
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            let end = Instant::now() + duration + Duration::from_secs(2);
            while Instant::now() < end {
                if let Some(rss) = rss_mib(pid) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    });

    let publisher = {
        let client = client.clone();
        let actors = actors.clone();
        let target = args.target.clone();
        let sample = args.delivery_sample.max(1);
        let delivery_stats = delivery_stats.clone();
        schedule(
            publish_rate,
            duration,
            start,
            permits.clone(),
            publish_stats.clone(),
            move |i| {
                let actor = &actors[(i as usize * 7919) % actors.len()];
                let to = match actor.circles.len() {
                    0 => json!(["public"]),
                    n => json!([format!("circle:{}", actor.circles[(i as usize) % n])]),
                };
                let waits = i % sample == 0;
                let url = if waits {
                    format!("{target}/api/v1/outbox?wait=routed")
                } else {
                    format!("{target}/api/v1/outbox")
                };
                let request = client.post(url).bearer_auth(&actor.token).json(&json!({
                "type": "Create",
                "object": {"type": "Note", "content": format!("bench {i} from {}", actor.username)},
                "to": to,
                "tag": ["bench"],
            }));
                let delivery_stats = delivery_stats.clone();
                async move {
                    let due = Instant::now();
                    let ok = matches!(request.send().await, Ok(r) if r.status().as_u16() == 201);
                    if waits {
                        delivery_stats.record(due, ok).await;
                    }
                    ok
                }
            },
        )
    };
    let reader = {
        let client = client.clone();
        let actors = actors.clone();
        let target = args.target.clone();
        schedule(
            read_rate,
            duration,
            start,
            permits.clone(),
            read_stats.clone(),
            move |i| {
                let actor = &actors[(i as usize * 104_729) % actors.len()];
                let request = client
                    .get(format!("{target}/api/v1/inbox?limit=20"))
                    .bearer_auth(&actor.token);
                async move {
                    match request.send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            },
        )
    };
    publisher.await?;
    reader.await?;
    let secs = duration.as_secs_f64();
    let mut ops = Vec::new();
    if publish_rate > 0 {
        ops.push(report("publish", &publish_stats, secs).await);
        ops.push(report("delivery", &delivery_stats, secs).await);
    }
    if read_rate > 0 {
        ops.push(report("read", &read_stats, secs).await);
    }
    let server_rss_max_mib = match sampler {
        Some(handle) => Some(handle.await?),
        None => None,
    };
    let result = Report {
        scenario: args.scenario,
        duration_s: args.duration,
        ops,
        server_rss_max_mib,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "scenario {:?}, {} s, target {} ({} actors)",
            args.scenario,
            args.duration,
            args.target,
            actors.len()
        );
        println!(
            "{:<9} {:>9} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "op", "ok", "errors", "dropped", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for r in &result.ops {
            println!(
                "{:<9} {:>9} {:>7} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                r.op,
                r.ok,
                r.errors,
                r.dropped,
                r.throughput,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms
            );
        }
        if let Some(rss) = result.server_rss_max_mib {
            println!("server RSS peak: {rss:.1} MiB");
        }
        println!("(delivery = publish with ?wait=routed: until every inbox entry is visible)");
    }
    Ok(())
}
