//! `tidings bench`: an open-loop HTTP load generator against a running server on loopback.
//!
//! Requests are scheduled at fixed rates; each latency is measured from the moment the request
//! was *due*, not when it was sent, so a stalled server shows up in the percentiles instead of
//! silently slowing the generator (coordinated omission). When the in-flight cap is reached a
//! due request is counted as dropped, never queued. Every loop is bounded by the duration.

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
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
    /// Every actor publishes once to their followers (`tidings seed --shape follows`) or to the
    /// circle they own (`--shape follow-circles`), closed loop, then waits until routing is
    /// done: fan-out deliveries per second on the Stream-Framework workload.
    Fanout,
    /// The first token's user (`celebrity`, from `tidings seed --shape celebrity`) publishes to
    /// their followers at `--publish-rate`; each publish is timed, and after each one a random
    /// follower reads their home feed and must see it first.
    Celebrity,
    /// Work queues (the first token must be an admin's): `--jobs` jobs of mixed priorities in
    /// batches of 100, `--workers` consumers (8) leasing 10 and acking, jobs/s; then
    /// enqueue-to-lease latency at `--publish-rate` for `--duration`; durable, then memory.
    Queues,
    /// Uploads of 12-megapixel JPEGs with both derived sizes (closed loop, `--workers`
    /// uploaders, 2 by default): uploads/s, latency, and with `--server-pid` the server's CPU
    /// per image.
    Media,
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
    /// Another node to publish through (push), while the live streams stay on `--target`:
    /// publish-to-client latency across cluster nodes (replication lag included).
    #[arg(long)]
    pub publish_target: Option<String>,
    /// Feeds whose unseen/unread counts every live connection asks for (push), as a badge
    /// would: `notifications`, `all`, … (none by default).
    #[arg(long)]
    pub counts: Option<String>,
    /// Closed loop instead of open: this many workers, each sending its next request as soon
    /// as the last one answered, for `--duration` (rates are ignored; read and publish). Gives
    /// the highest sustainable rate, comparable with pgbench and in-process peers; latency is
    /// then measured from each send. Fanout always runs closed, with 256 workers by default.
    #[arg(long)]
    pub workers: Option<usize>,
    /// PID of the server, to sample its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Jobs in the throughput phase (queues).
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
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
    /// Closed-loop workers, when the run was closed loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// The fan-out figures, for the fanout scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutReport>,
}

/// What the fanout scenario measured.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    /// Activities published (one per actor, plus any extra waiting publishes).
    pub posts: u64,
    /// Inbox entries those posts route to (members of each author's circle but the author).
    pub deliveries: u64,
    /// Seconds from the first publish until every publish was acknowledged (committed).
    pub publish_s: f64,
    /// Seconds from the first publish until routing was done (every entry written).
    pub routed_s: f64,
    /// Acknowledged publishes per second.
    pub posts_per_s: f64,
    /// Deliveries per second, until routing was done.
    pub deliveries_per_s: f64,
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
    /// The first circle this actor owns, if any (its follower circle in follow-circles).
    owned: Option<String>,
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
    let lines: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect();
    // Looked up a few at a time: follow-circles seeds hand over one token per user.
    let actors: Vec<Actor> = futures::stream::iter(lines)
        .map(|(username, token)| async move {
            let circles: Value = client
                .get(format!("{}/api/v1/users/{username}/circles", args.target))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let items = circles["items"].as_array().cloned().unwrap_or_default();
            let active = || items.iter().filter(|m| m["state"] == "active");
            let owned = active()
                .find(|m| m["role"] == "owner")
                .and_then(|m| m["circle"].as_str().map(str::to_owned));
            let circles = active()
                .filter_map(|m| m["circle"].as_str().map(str::to_owned))
                .collect();
            anyhow::Ok(Actor {
                username,
                token,
                circles,
                owned,
            })
        })
        .buffered(32)
        .try_collect()
        .await
        .context("looking up the actors' circles")?;
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

/// Open loop at `rate`, or closed loop when `--workers` is given (nothing when `rate` is 0).
fn drive<F, Fut>(
    args: &BenchArgs,
    rate: u64,
    start: Instant,
    permits: Arc<Semaphore>,
    stats: Arc<OpStats>,
    op: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let duration = Duration::from_secs(args.duration);
    match args.workers {
        _ if rate == 0 => tokio::spawn(async {}),
        Some(workers) => closed(workers, duration, start, stats, op),
        None => schedule(rate, duration, start, permits, stats, op),
    }
}

/// Runs `op` back to back on `workers` tasks from `start` until `duration` has passed.
fn closed<F, Fut>(
    workers: usize,
    duration: Duration,
    start: Instant,
    stats: Arc<OpStats>,
    op: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let op = Arc::new(op);
        let counter = Arc::new(AtomicU64::new(0));
        let end = start + duration;
        let tasks: Vec<_> = (0..workers.max(1))
            .map(|_| {
                let (op, counter, stats) = (op.clone(), counter.clone(), stats.clone());
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        let ok = op(i).await;
                        stats.record(sent, ok).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Most seconds the fanout scenario keeps publishing, whatever the number of actors.
const FANOUT_CAP: Duration = Duration::from_secs(900);
/// Most extra `?wait=routed` publishes while waiting for routing (each waits up to 30 s).
const FANOUT_WAITS: usize = 20;

/// Where a fanout post goes: an owned circle, or the author's followers.
#[derive(Debug, Clone)]
enum Audience {
    Circle(String),
    Followers,
}

fn note(i: u64, actor: &Actor, audience: &Audience) -> Value {
    let to = match audience {
        Audience::Circle(circle) => format!("circle:{circle}"),
        Audience::Followers => "followers".to_owned(),
    };
    json!({
        "type": "Create",
        "object": {"type": "Note", "content": format!("bench {i} from {}", actor.username)},
        "to": [to],
        "tag": ["bench"],
    })
}

/// Every actor that owns a circle publishes once to it, in a fixed shuffled order, with
/// `workers` publishes in flight; the last one waits for routing, which runs in log order, so
/// when it returns every earlier delivery is written too.
async fn fanout(
    client: &reqwest::Client,
    args: &BenchArgs,
    actors: Vec<Actor>,
) -> anyhow::Result<(Report, usize)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let target = args.target.clone();
    // Owners of a circle post to it (follow-circles); everyone else to their followers.
    let mut authors: Vec<(Actor, Audience)> = actors
        .into_iter()
        .map(|a| {
            let audience = match a.owned.clone() {
                Some(circle) => Audience::Circle(circle),
                None => Audience::Followers,
            };
            (a, audience)
        })
        .collect();
    if authors.is_empty() {
        bail!("fanout needs actors: seed with `--shape follows` or `--shape follow-circles`");
    }
    authors.shuffle(&mut rand::rngs::StdRng::seed_from_u64(42));
    // Deliveries per post: the circle's members but the author (whose copy is not an entry),
    // or the author's followers.
    let audience: Vec<u64> = futures::stream::iter(&authors)
        .map(|(actor, audience)| {
            let request = match audience {
                Audience::Circle(circle) => client.get(format!("{target}/api/v1/circles/{circle}")),
                Audience::Followers => client.get(format!(
                    "{target}/api/v1/users/{}/followers?limit=1",
                    actor.username
                )),
            }
            .bearer_auth(&actor.token);
            let circle_post = matches!(audience, Audience::Circle(_));
            async move {
                let answer: Value = request.send().await?.error_for_status()?.json().await?;
                anyhow::Ok(if circle_post {
                    answer["member_count"]
                        .as_u64()
                        .unwrap_or(1)
                        .saturating_sub(1)
                } else {
                    answer["total"].as_u64().unwrap_or(0)
                })
            }
        })
        .buffered(32)
        .try_collect()
        .await
        .context("looking up circle sizes")?;
    let authors = Arc::new(authors);
    let workers = args.workers.unwrap_or(256).max(1);
    let stats = OpStats::new()?;
    let next = Arc::new(AtomicU64::new(0));
    let last = authors.len() as u64 - 1;
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (authors, next, stats) = (authors.clone(), next.clone(), stats.clone());
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while start.elapsed() < FANOUT_CAP {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((actor, circle)) = authors.get(i as usize).filter(|_| i < last) else {
                        break;
                    };
                    let begun = Instant::now();
                    let response = client
                        .post(format!("{target}/api/v1/outbox"))
                        .bearer_auth(&actor.token)
                        .json(&note(i, actor, circle))
                        .send()
                        .await;
                    let ok = matches!(response, Ok(r) if r.status().as_u16() == 201);
                    stats.record(begun, ok).await;
                    sent += u64::from(ok);
                }
                sent
            })
        })
        .collect();
    let mut posts = 0u64;
    let mut deliveries = 0u64;
    for t in tasks {
        posts += t.await?;
    }
    // Every post up to `last` was acknowledged or failed; count what was committed.
    let sent_upto = next.load(Ordering::Relaxed).min(last) as usize;
    let errors = stats.errors.load(Ordering::Relaxed);
    if errors == 0 {
        deliveries += audience[..sent_upto].iter().sum::<u64>();
    } else {
        // Which ones failed is not tracked; assume the average audience for the ones that did not.
        let avg = audience.iter().sum::<u64>() as f64 / audience.len() as f64;
        deliveries += (posts as f64 * avg) as u64;
    }
    let publish_s = start.elapsed().as_secs_f64();
    // The waiting publish: the last author's post, repeated (bounded) if routing takes longer
    // than the server's 30 s wait.
    let (actor, circle) = &authors[last as usize];
    let mut routed = false;
    for attempt in 0..FANOUT_WAITS {
        let begun = Instant::now();
        let response = client
            .post(format!("{target}/api/v1/outbox?wait=routed"))
            .bearer_auth(&actor.token)
            .timeout(Duration::from_secs(60))
            .json(&note(last + attempt as u64, actor, circle))
            .send()
            .await
            .context("the waiting publish")?;
        let ok = response.status().as_u16() == 201;
        stats.record(begun, ok).await;
        if !ok {
            bail!("the waiting publish failed: {}", response.status());
        }
        posts += 1;
        deliveries += audience[last as usize];
        if response
            .headers()
            .get("routing")
            .and_then(|v| v.to_str().ok())
            == Some("routed")
        {
            routed = true;
            break;
        }
    }
    if !routed {
        bail!("routing was not done after {FANOUT_WAITS} waits of 30 s");
    }
    let routed_s = start.elapsed().as_secs_f64();
    let publish = report("publish", &stats, publish_s).await;
    let n_authors = authors.len();
    Ok((
        Report {
            scenario: Scenario::Fanout,
            duration_s: routed_s.ceil() as u64,
            ops: vec![publish],
            server_rss_max_mib: None,
            workers: Some(workers),
            fanout: Some(FanoutReport {
                posts,
                deliveries,
                publish_s,
                routed_s,
                posts_per_s: posts as f64 / publish_s,
                deliveries_per_s: deliveries as f64 / routed_s,
            }),
        },
        n_authors,
    ))
}

/// The celebrity scenario: open-loop publishes by the first actor to their followers, each
/// followed by a home read of a random follower that must show it.
async fn celebrity(
    client: &reqwest::Client,
    args: &BenchArgs,
    actors: Vec<Actor>,
) -> anyhow::Result<()> {
    let mut actors = actors.into_iter();
    let Some(star) = actors.next() else {
        bail!("no tokens");
    };
    let fans: Vec<Actor> = actors.collect();
    if fans.is_empty() {
        bail!("celebrity needs follower tokens after the celebrity's: seed with --tokens >= 2");
    }
    let target = args.target.clone();
    let baseline_token = fans[fans.len() - 1].token.clone();
    let profile: Value = client
        .get(format!(
            "{target}/api/v1/users/{}/followers?limit=1",
            star.username
        ))
        .bearer_auth(&star.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let followers = profile["total"].as_i64().unwrap_or(0);
    let publish_stats = OpStats::new()?;
    let round_stats = OpStats::new()?;
    let read_stats = OpStats::new()?;
    let unseen = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(200);
    let star = Arc::new(star);
    let fans = Arc::new(fans);
    let publisher = {
        let client = client.clone();
        let target = target.clone();
        let read_stats = read_stats.clone();
        let publish_stats = publish_stats.clone();
        let unseen = unseen.clone();
        schedule(
            args.publish_rate,
            Duration::from_secs(args.duration),
            start,
            Arc::new(Semaphore::new(args.max_in_flight)),
            round_stats.clone(),
            move |i| {
                let client = client.clone();
                let target = target.clone();
                let star = star.clone();
                let fans = fans.clone();
                let read_stats = read_stats.clone();
                let publish_stats = publish_stats.clone();
                let unseen = unseen.clone();
                async move {
                    // Spawned when due (open loop), so this start includes any queueing.
                    let due = Instant::now();
                    let body = json!({"type": "Create", "to": ["followers"],
                        "object": {"type": "Note", "content": format!("celebrity post {i}")}});
                    let Ok(r) = client
                        .post(format!("{target}/api/v1/outbox?wait=routed"))
                        .bearer_auth(&star.token)
                        .json(&body)
                        .send()
                        .await
                    else {
                        return false;
                    };
                    let created = r.status().as_u16() == 201;
                    let posted = match r.json::<Value>().await {
                        Ok(posted) if created => posted,
                        _ => {
                            publish_stats.record(due, false).await;
                            return false;
                        }
                    };
                    publish_stats.record(due, true).await;
                    // The publish is answered; now a follower's next read must show it.
                    let fan = &fans[(i as usize * 7919) % fans.len()];
                    let read_started = Instant::now();
                    let page = client
                        .get(format!("{target}/api/v1/feeds/home?limit=20"))
                        .bearer_auth(&fan.token)
                        .send()
                        .await;
                    let seen = match page {
                        Ok(p) => p.json::<Value>().await.ok().is_some_and(|page| {
                            page["items"].as_array().is_some_and(|items| {
                                items.iter().any(|it| it["activity"]["id"] == posted["id"])
                            })
                        }),
                        Err(_) => false,
                    };
                    if !seen {
                        unseen.fetch_add(1, Ordering::Relaxed);
                    }
                    read_stats.record(read_started, seen).await;
                    true
                }
            },
        )
    };
    // Baseline in the same run: a follower with no followers publishes the same way at the
    // same rate, so the celebrity's cost reads as a ratio on this noisy machine.
    let baseline_stats = OpStats::new()?;
    let baseline = {
        let client = client.clone();
        let target = target.clone();
        let token = baseline_token.clone();
        schedule(
            args.publish_rate,
            Duration::from_secs(args.duration),
            start + Duration::from_millis(7),
            Arc::new(Semaphore::new(args.max_in_flight)),
            baseline_stats.clone(),
            move |i| {
                let request = client
                    .post(format!("{target}/api/v1/outbox?wait=routed"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "Create", "to": ["followers"],
                        "object": {"type": "Note", "content": format!("baseline post {i}")}}));
                async move { matches!(request.send().await, Ok(r) if r.status().as_u16() == 201) }
            },
        )
    };
    publisher.await?;
    baseline.await?;
    let secs = args.duration as f64;
    let ops = vec![
        report("publish", &publish_stats, secs).await,
        report("baseline-publish", &baseline_stats, secs).await,
        report("follower-read", &read_stats, secs).await,
        report("publish+read", &round_stats, secs).await,
    ];
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "scenario": "celebrity", "followers": followers, "ops": ops,
                "unseen": unseen.load(Ordering::Relaxed),
                "server_rss_mib": args.server_pid.and_then(rss_mib),
            }))?
        );
    } else {
        println!(
            "scenario celebrity: {followers} followers, {} publishes/s for {} s, target {target}",
            args.publish_rate, args.duration
        );
        print_ops(&ops);
        println!(
            "follower reads missing the post just published: {}",
            unseen.load(Ordering::Relaxed)
        );
        println!(
            "(publish = ?wait=routed, so the post is readable by every follower on return; \
             baseline-publish = the same by a user nobody follows, in the same run)"
        );
    }
    Ok(())
}

fn print_ops(ops: &[OpReport]) {
    println!(
        "{:<9} {:>9} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "op", "ok", "errors", "dropped", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for r in ops {
        println!(
            "{:<9} {:>9} {:>7} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            r.op, r.ok, r.errors, r.dropped, r.throughput, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
        );
    }
}

/// Runs a scenario and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Scenario::Push = args.scenario {
        check_loopback(&args.target)?;
        return crate::bench_push::run(&args).await;
    }
    if let Scenario::Queues = args.scenario {
        check_loopback(&args.target)?;
        return crate::bench_queues::run(&args).await;
    }
    if let Scenario::Media = args.scenario {
        check_loopback(&args.target)?;
        return crate::bench_media::run(&args).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    let actors = load_actors(&client, &args).await?;
    if let Scenario::Celebrity = args.scenario {
        return celebrity(&client, &args, actors).await;
    }
    if let Scenario::Fanout = args.scenario {
        let (mut result, authors) = fanout(&client, &args, actors).await?;
        result.server_rss_max_mib = args.server_pid.and_then(rss_mib);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else if let Some(f) = &result.fanout {
            println!(
                "scenario fanout, {authors} authors, {} workers, target {}",
                result.workers.unwrap_or(0),
                args.target
            );
            print_ops(&result.ops);
            println!(
                "{} posts -> {} deliveries; acknowledged in {:.2} s ({:.0} posts/s), routed in {:.2} s: {:.0} deliveries/s",
                f.posts, f.deliveries, f.publish_s, f.posts_per_s, f.routed_s, f.deliveries_per_s
            );
            if let Some(rss) = result.server_rss_max_mib {
                println!("server RSS after: {rss:.1} MiB");
            }
        }
        return Ok(());
    }
    let actors = Arc::new(actors);
    let (publish_rate, read_rate) = match args.scenario {
        Scenario::Publish => (args.publish_rate, 0),
        Scenario::Read => (0, args.read_rate),
        Scenario::Mixed => (args.publish_rate, args.read_rate),
        Scenario::Push
        | Scenario::Fanout
        | Scenario::Celebrity
        | Scenario::Queues
        | Scenario::Media => (0, 0),
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
        drive(
            &args,
            publish_rate,
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
        drive(
            &args,
            read_rate,
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
    // Closed-loop workers finish the request in flight at the end, so count the real time.
    let secs = match args.workers {
        Some(_) => start.elapsed().as_secs_f64(),
        None => duration.as_secs_f64(),
    };
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
        workers: args.workers,
        fanout: None,
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
        if let Some(workers) = result.workers {
            println!("closed loop: {workers} workers, latency from each send");
        }
        print_ops(&result.ops);
        if let Some(rss) = result.server_rss_max_mib {
            println!("server RSS peak: {rss:.1} MiB");
        }
        println!("(delivery = publish with ?wait=routed: until every inbox entry is visible)");
    }
    Ok(())
}
