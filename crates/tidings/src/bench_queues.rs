//! `tidings bench queues`: work-queue throughput and latency against a running server.
//!
//! Two phases per queue kind (durable, then memory as the in-process baseline of the same run):
//! - **throughput**: `--jobs` jobs of mixed priorities (0–9) enqueued in batches of 100 by four
//!   producers, while `--workers` consumers (8 by default) lease batches of 10 and ack them
//!   (one batch ack per lease); jobs per second from the first enqueue to the last ack.
//!   Every job must be acked exactly once, and every lease must come in the discipline's order.
//! - **latency**: one job enqueued every millisecond (`--publish-rate`, 1,000/s by default)
//!   for `--duration` seconds, consumers long-polling; enqueue-to-lease is measured from when
//!   each enqueue was due (open loop) to when its lease answered.
//!
//! The first line of `--tokens` must be an admin's (queues are for admins).

use crate::bench::BenchArgs;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Jobs per enqueue call.
const ENQUEUE_BATCH: usize = 100;
/// Concurrent producers in the throughput phase.
const PRODUCERS: usize = 4;
/// Jobs per lease.
const LEASE_BATCH: u64 = 10;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Bench {
    client: reqwest::Client,
    api: String,
    token: String,
}

impl Bench {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "POST {path}: {status} {body} (is the server running with TIDINGS_RATE_LIMITS=off?)"
            );
        }
        Ok(body)
    }
}

/// Whether a lease's jobs are in priority order (highest first, oldest first within one).
fn in_priority_order(jobs: &[Value]) -> bool {
    let key = |j: &Value| {
        (
            -j["priority"].as_i64().unwrap_or(0),
            j["id"].as_i64().unwrap_or(0),
        )
    };
    jobs.windows(2).all(|w| key(&w[0]) <= key(&w[1]))
}

/// Leases and acks until `stop` says so; returns the acked ids and whether every lease was
/// in order. `latency`: record enqueue-to-lease from the payload's due time.
async fn consume(
    bench: Arc<Bench>,
    queue: String,
    stop: Arc<AtomicU64>,
    latency: Option<Arc<Mutex<Histogram<u64>>>>,
) -> anyhow::Result<(Vec<i64>, bool)> {
    let mut acked = Vec::new();
    let mut ordered = true;
    while stop.load(Ordering::Relaxed) == 0 {
        let leased = bench
            .post(
                &format!("/queues/{queue}/lease"),
                &json!({"max": LEASE_BATCH, "wait_ms": 200}),
            )
            .await?;
        let received = now_micros();
        let jobs = leased["jobs"].as_array().cloned().unwrap_or_default();
        ordered &= in_priority_order(&jobs);
        if let Some(latency) = &latency {
            let mut h = latency.lock().await;
            for job in &jobs {
                let due = job["payload"]["due"].as_u64().unwrap_or(received);
                let _ = h.record(received.saturating_sub(due).max(1));
            }
        }
        if jobs.is_empty() {
            continue;
        }
        // One batch ack per lease: one request and one commit for its jobs.
        let leases: Vec<Value> = jobs
            .iter()
            .map(|j| json!({"id": j["id"], "lease_token": j["lease_token"]}))
            .collect();
        let answer = bench
            .post(&format!("/queues/{queue}/ack"), &json!({"jobs": leases}))
            .await?;
        for result in answer["jobs"].as_array().into_iter().flatten() {
            if result["outcome"] != "acked" {
                bail!(
                    "{queue}: job {} not acked: {}",
                    result["id"],
                    result["outcome"]
                );
            }
            acked.push(result["id"].as_i64().unwrap_or(0));
        }
    }
    Ok((acked, ordered))
}

async fn create_queue(bench: &Bench, name: &str, durable: bool) -> anyhow::Result<()> {
    bench
        .post(
            "/queues",
            &json!({"name": name, "discipline": "priority", "durable": durable}),
        )
        .await
        .map(|_| ())
}

async fn throughput(
    bench: &Arc<Bench>,
    queue: &str,
    jobs: usize,
    consumers: usize,
) -> anyhow::Result<(f64, bool)> {
    let stop = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..consumers {
        workers.push(tokio::spawn(consume(
            bench.clone(),
            queue.to_owned(),
            stop.clone(),
            None,
        )));
    }
    let batches = jobs.div_ceil(ENQUEUE_BATCH);
    let next = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let (bench, next, queue) = (bench.clone(), next.clone(), queue.to_owned());
        producers.push(tokio::spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed) as usize;
                if batch >= batches {
                    return anyhow::Ok(());
                }
                let items: Vec<Value> = (0..ENQUEUE_BATCH)
                    .map(|i| {
                        let n = batch * ENQUEUE_BATCH + i;
                        json!({"payload": {"n": n}, "priority": n % 10})
                    })
                    .collect();
                bench
                    .post(&format!("/queues/{queue}/jobs"), &json!({"jobs": items}))
                    .await?;
            }
        }));
    }
    for producer in producers {
        producer.await??;
    }
    // Consumers stop once everything enqueued was acked (or one of them failed).
    let total = (batches * ENQUEUE_BATCH) as i64;
    loop {
        let r = bench
            .client
            .get(format!("{}/queues/{queue}", bench.api))
            .bearer_auth(&bench.token)
            .send()
            .await?;
        let status = r.status();
        let info: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "GET /queues/{queue}: {status} {info} (is the server running with TIDINGS_RATE_LIMITS=off?)"
            );
        }
        if info["stats"]["acked"].as_i64() >= Some(total) || workers.iter().any(|w| w.is_finished())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(1, Ordering::Relaxed);
    let mut acked = HashSet::new();
    let mut ordered = true;
    let mut count = 0;
    for worker in workers {
        let (ids, in_order) = worker.await??;
        count += ids.len();
        acked.extend(ids);
        ordered &= in_order;
    }
    if count != total as usize || acked.len() != total as usize {
        bail!(
            "{queue}: {total} jobs enqueued, {count} acks, {} distinct jobs",
            acked.len()
        );
    }
    Ok((total as f64 / secs, ordered))
}

async fn latency(
    bench: &Arc<Bench>,
    queue: &str,
    rate: u64,
    secs: u64,
    consumers: usize,
) -> anyhow::Result<(f64, f64, u64)> {
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let stop = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..consumers {
        workers.push(tokio::spawn(consume(
            bench.clone(),
            queue.to_owned(),
            stop.clone(),
            Some(histogram.clone()),
        )));
    }
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let start = Instant::now() + Duration::from_millis(100);
    let total = rate * secs;
    let mut sends = Vec::new();
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let late = Instant::now().saturating_duration_since(due).as_micros() as u64;
        let due_micros = now_micros().saturating_sub(late);
        let (bench, queue) = (bench.clone(), queue.to_owned());
        sends.push(tokio::spawn(async move {
            bench
                .post(
                    &format!("/queues/{queue}/jobs"),
                    &json!({"payload": {"due": due_micros}, "priority": i % 10}),
                )
                .await
        }));
    }
    for send in sends {
        send.await??;
    }
    // Let the consumers drain what is left.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while histogram.lock().await.len() < total
        && Instant::now() < drain_until
        && !workers.iter().any(|w| w.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(1, Ordering::Relaxed);
    for worker in workers {
        worker.await??;
    }
    let h = histogram.lock().await;
    Ok((
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.len(),
    ))
}

/// Runs the queue benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.tokens)
        .with_context(|| format!("reading {}", args.tokens.display()))?;
    let token = text
        .lines()
        .find_map(|l| l.split_whitespace().nth(1))
        .context("no token in the tokens file")?
        .to_owned();
    let bench = Arc::new(Bench {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?,
        api: format!("{}/api/v1", args.target.trim_end_matches('/')),
        token,
    });
    let consumers = args.workers.unwrap_or(8);
    let suffix = now_micros();
    println!(
        "queues: {} jobs (priorities 0-9) in batches of {ENQUEUE_BATCH} by {PRODUCERS} producers; {consumers} consumers leasing {LEASE_BATCH} and acking them in one call; then {} jobs/s for {} s",
        args.jobs, args.publish_rate, args.duration
    );
    println!("| queue | jobs/s | in order | p50 enqueue-to-lease ms | p99 ms | measured |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for durable in [true, false] {
        let kind = if durable { "durable" } else { "memory" };
        let name = format!("bench-{kind}-{suffix}");
        create_queue(&bench, &name, durable).await?;
        let (rate, ordered) = throughput(&bench, &name, args.jobs, consumers).await?;
        let name = format!("bench-{kind}-latency-{suffix}");
        create_queue(&bench, &name, durable).await?;
        let (p50, p99, measured) =
            latency(&bench, &name, args.publish_rate, args.duration, consumers).await?;
        println!("| {kind} | {rate:.0} | {ordered} | {p50:.2} | {p99:.2} | {measured} |");
    }
    Ok(())
}
