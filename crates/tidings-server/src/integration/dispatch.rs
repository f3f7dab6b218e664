//! Webhook delivery, driven from the log.
//!
//! Two loops per node. The matcher reads the activities after the bus watermark, finds the
//! topics each belongs to (addressed `topic:NAME`, or passed by a topic's filter, through the
//! [`TopicIndex`]) and records one delivery per active webhook of those topics, moving the
//! watermark in the same transaction: an activity is matched once, and what is owed survives a
//! crash. The sender leases due deliveries (a lease taken in a write transaction, so two nodes
//! never send the same attempt), signs and POSTs each, logs the attempt and schedules the next
//! one: exponential backoff with jitter, `Retry-After` honoured on 429 and 503, `410` disables
//! the webhook, too many failures in a row disable it, and out of attempts a delivery is dead
//! (listed, and redeliverable). Delivery is at least once: a node that dies mid-attempt leaves a
//! lease that runs out, and the delivery is sent again with the same `webhook-id`.

use super::WebhookConfig;
use super::outbound::{Answer, NoAnswer, Outbound};
use super::queues::Queues;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_core::filter::{Facts, Filter, TopicIndex};
use tidings_core::webhook::{Secret, signature_header};
use tidings_store::model::{AttemptNext, BusRouting, LeasedDelivery, NewAttempt, Webhook};
use tidings_store::queues::NewJob;
use tidings_store::{Store, StoreError};
use tokio::sync::Notify;

/// Activities matched per transaction.
const MATCH_BATCH: i64 = 500;
/// Added to the attempt timeout for how long a leased delivery is this node's: past the
/// lease, another node (or this one after a restart) may send it again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What the matcher routes with, rebuilt when topics or webhooks change.
#[derive(Default)]
struct Routing {
    generation: Option<i64>,
    filtered: TopicIndex<i64>,
    by_name: HashMap<String, i64>,
    /// Active webhooks of each topic: id and the seq after which they are owed.
    webhooks: HashMap<i64, Vec<(String, i64)>>,
}

impl Routing {
    fn rebuild(routing: tidings_store::model::BusRouting) -> Routing {
        let mut out = Routing {
            generation: Some(routing.generation),
            ..Routing::default()
        };
        for topic in routing.topics {
            if let Some(text) = &topic.filter {
                match Filter::parse(text) {
                    Ok(filter) => out.filtered.insert(topic.id, filter),
                    // Checked at creation; a stored filter that no longer parses is skipped.
                    Err(e) => {
                        tracing::error!(topic = %topic.name, error = %e, "stored filter skipped")
                    }
                }
            }
            out.by_name.insert(topic.name, topic.id);
        }
        for (id, topic, since) in routing.webhooks {
            out.webhooks.entry(topic).or_default().push((id, since));
        }
        out
    }

    /// The deliveries one activity is owed.
    fn owed(&self, seq: i64, record: &Value, out: &mut Vec<(String, i64)>) {
        let facts = Facts::of(record);
        let mut topics = self.filtered.matching(&facts);
        topics.extend(
            facts
                .topics
                .iter()
                .filter_map(|name| self.by_name.get(*name)),
        );
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            for (webhook, since) in self.webhooks.get(&topic).into_iter().flatten() {
                if seq > *since {
                    out.push((webhook.clone(), seq));
                }
            }
        }
    }
}

/// Starts the matcher, the webhook sender and the queue feeder on this node; they stop when
/// the store closes. `news` is rung (every waiter at once) whenever the matcher recorded what
/// subscriptions are owed: waiting pulls and streams look again at once.
pub fn start(store: Store, config: WebhookConfig, queues: Queues, news: Arc<Notify>) {
    let wake = Arc::new(Notify::new());
    let wake_queues = Arc::new(Notify::new());
    tokio::spawn(match_loop(
        store.clone(),
        config.clone(),
        [wake.clone(), wake_queues.clone()],
        news,
    ));
    tokio::spawn(send_loop(store.clone(), config.clone(), wake));
    tokio::spawn(queue_loop(store, config, queues, wake_queues));
}

fn closed(e: &StoreError) -> bool {
    matches!(e, StoreError::Closed)
}

async fn match_loop(
    store: Store,
    config: WebhookConfig,
    senders: [Arc<Notify>; 2],
    news: Arc<Notify>,
) {
    let mut routing = Routing::default();
    let mut notices = store.routed_notices();
    loop {
        match match_once(&store, &mut routing).await {
            Ok(true) => {
                for sender in &senders {
                    sender.notify_one();
                }
                news.notify_waiters();
                continue;
            }
            Ok(false) => {}
            Err(e) if closed(&e) => return,
            Err(e) => tracing::warn!(error = %e, "webhook matching failed; will retry"),
        }
        if routing.webhooks.is_empty() {
            // Nobody to deliver to: only keep the watermark near the log's end, at the poll's
            // pace, so publishing pays nothing for an unused bus.
            tokio::time::sleep(config.poll).await;
            continue;
        }
        // New activities ring through routing notices; the poll covers other nodes' and lags.
        tokio::select! {
            _ = notices.recv() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
}

/// Matches one batch of the log; true when there were activities to match (there may be
/// more).
async fn match_once(store: &Store, routing: &mut Routing) -> Result<bool, StoreError> {
    if let Some(fresh) = store.bus_routing(routing.generation).await? {
        *routing = Routing::rebuild(fresh);
    }
    let from = store.bus_seq().await?;
    if routing.webhooks.is_empty() {
        // Nothing is owed to anyone: move the watermark without reading the activities.
        let last = store.last_seq().await?;
        if last > from {
            store
                .bus_enqueue(from, last, routing.generation.unwrap_or(-1), Vec::new())
                .await?;
        }
        return Ok(false);
    }
    let activities = store.bus_activities(from, MATCH_BATCH).await?;
    let Some(upto) = activities.last().map(|a| a.seq) else {
        return Ok(false);
    };
    let mut owed = Vec::new();
    for activity in &activities {
        match serde_json::from_str::<Value>(&activity.body) {
            Ok(record) => routing.owed(activity.seq, &record, &mut owed),
            Err(e) => tracing::error!(seq = activity.seq, error = %e, "stored activity unreadable"),
        }
    }
    // Refused when another node matched first or the topics changed meanwhile: either way,
    // look again at once (with fresh routing).
    store
        .bus_enqueue(from, upto, routing.generation.unwrap_or(-1), owed)
        .await?;
    Ok(true)
}

async fn send_loop(store: Store, config: WebhookConfig, wake: Arc<Notify>) {
    let outbound = Outbound::new(&config);
    let max = i64::try_from(config.concurrency.max(1)).unwrap_or(32);
    loop {
        let lease = config.timeout * 2 + LEASE_MARGIN;
        let leased = match store.deliveries_due().await {
            Ok(true) => store.lease_deliveries(max, lease).await,
            Ok(false) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        match leased {
            Ok(batch) if !batch.is_empty() => {
                let full = batch.len() as i64 >= max;
                futures::stream::iter(batch)
                    .for_each_concurrent(config.concurrency.max(1), |delivery| {
                        let (store, outbound, config) = (&store, &outbound, &config);
                        async move { deliver(store, outbound, config, delivery).await }
                    })
                    .await;
                if full {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) if closed(&e) => return,
            Err(e) => tracing::warn!(error = %e, "leasing deliveries failed; will retry"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
}

/// How many queue-mode deliveries one pass turns into jobs.
const QUEUE_BATCH: i64 = 100;

/// Feeds queue-mode subscriptions: leases their due deliveries like webhooks and enqueues each
/// as a job whose idempotency key is the delivery's id, so a delivery retried after a crash
/// (its lease ran out before the outcome was recorded) stores one job, not two, for the
/// queue's idempotency window (a day).
async fn queue_loop(store: Store, config: WebhookConfig, queues: Queues, wake: Arc<Notify>) {
    loop {
        let lease = config.timeout * 2 + LEASE_MARGIN;
        let leased = match store.deliveries_due_for("queue").await {
            Ok(true) => {
                store
                    .lease_deliveries_for("queue", QUEUE_BATCH, lease)
                    .await
            }
            Ok(false) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        match leased {
            Ok(batch) if !batch.is_empty() => {
                for delivery in batch {
                    feed(&store, &config, &queues, delivery).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) if closed(&e) => return,
            Err(e) => tracing::warn!(error = %e, "leasing queue deliveries failed; will retry"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
}

/// Turns one leased queue-mode delivery into a job and records the outcome (a queue that is
/// gone or full is retried with the webhooks' backoff, then dead-lettered).
async fn feed(store: &Store, config: &WebhookConfig, queues: &Queues, delivery: LeasedDelivery) {
    let started = Instant::now();
    let queue = delivery.webhook.queue.clone().unwrap_or_default();
    let job = NewJob {
        payload: event_body(
            &delivery.webhook.topic,
            &delivery.id,
            delivery.seq,
            &delivery.body,
        )
        .to_string(),
        priority: 0,
        delay_ms: 0,
        idempotency_key: Some(delivery.id.clone()),
        group: None,
    };
    let result = queues.enqueue(store, &queue, vec![job]).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let made = delivery.attempts + 1;
    let (attempt, next) = match result {
        Ok(done) => (
            NewAttempt {
                status: None,
                latency_ms,
                outcome: "enqueued".into(),
                excerpt: done
                    .first()
                    .map(|j| format!("job {} in {queue}", j.id))
                    .unwrap_or_default(),
                // A queue feed answers nothing a sync publish could wait for.
                reply: None,
            },
            AttemptNext::Delivered,
        ),
        Err(e) => {
            let next = if made >= config.max_attempts {
                AttemptNext::Dead
            } else {
                let wait = i64::try_from(backoff(config, made).as_millis()).unwrap_or(i64::MAX);
                AttemptNext::Retry {
                    at_ms: now_ms().saturating_add(wait),
                }
            };
            (
                NewAttempt {
                    status: None,
                    latency_ms,
                    outcome: "failed".into(),
                    excerpt: format!("{}: {}", e.code, e.message)
                        .chars()
                        .take(512)
                        .collect(),
                    reply: None,
                },
                next,
            )
        }
    };
    if let Err(e) = store
        .record_attempt(delivery.id.clone(), attempt, next, config.disable_after)
        .await
    {
        tracing::warn!(delivery = %delivery.id, error = %e, "could not record a queue feed");
    }
}

/// What a pull consumer, a stream and a queue job get for one event: its id (the delivery's,
/// stable across redeliveries: drop duplicates by it), its log position, the topic, the
/// activity's type and time, and the activity as stored.
pub fn event_body(topic: &str, id: &str, seq: i64, body: &str) -> Value {
    let record: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = record
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Activity")
        .to_owned();
    json!({
        "id": id,
        "position": seq,
        "topic": topic,
        "type": format!("activity.{kind}"),
        "timestamp": record.get("published").cloned().unwrap_or(Value::Null),
        "data": record,
    })
}

/// Replays the log from position `from` (inclusive) to its end to one subscription: what its
/// topic got there is owed to it again (delivered or not), and what it was never owed (it did
/// not exist yet) is added. Matched here, batch by batch, with the matcher's own rules; each
/// batch is one write. Returns how many events of the stretch it is owed now.
pub async fn replay(store: &Store, hook: &Webhook, from: i64) -> Result<i64, StoreError> {
    let topic = store.topic(hook.topic.clone()).await?;
    let topic_id = topic.id;
    let routing = Routing::rebuild(BusRouting {
        generation: 0,
        topics: vec![topic],
        webhooks: vec![(hook.id.clone(), topic_id, i64::MIN)],
    });
    let upto = store.last_seq().await?;
    let mut after = from.saturating_sub(1).max(0);
    let mut owed_total = 0;
    while after < upto {
        let batch = store.bus_activities(after, MATCH_BATCH).await?;
        let batch: Vec<_> = batch.into_iter().take_while(|a| a.seq <= upto).collect();
        let Some(hi) = batch.last().map(|a| a.seq) else {
            break;
        };
        let mut owed = Vec::new();
        for activity in &batch {
            match serde_json::from_str::<Value>(&activity.body) {
                Ok(record) => routing.owed(activity.seq, &record, &mut owed),
                Err(e) => {
                    tracing::error!(seq = activity.seq, error = %e, "stored activity unreadable")
                }
            }
        }
        let seqs = owed.into_iter().map(|(_, seq)| seq).collect();
        owed_total += store
            .replay_range(hook.id.clone(), after + 1, hi, seqs)
            .await?;
        after = hi;
    }
    Ok(owed_total)
}

/// The body a webhook receives: Standard Webhooks' `{type, timestamp, data}`, plus the topic.
fn payload(delivery: &LeasedDelivery) -> Vec<u8> {
    let record: Value = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
    let kind = record
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Activity");
    let published = record.get("published").cloned().unwrap_or(Value::Null);
    let body = json!({
        "type": format!("activity.{kind}"),
        "timestamp": published,
        "topic": delivery.webhook.topic,
        "data": record,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The wait before attempt `made + 1`: `base · 2^(made-1)`, capped, ±20% jitter.
pub fn backoff(config: &WebhookConfig, made: i64) -> Duration {
    let exponent = u32::try_from(made.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let wait = config
        .retry_base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(config.retry_max);
    wait.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn signed_headers(delivery: &LeasedDelivery, body: &[u8]) -> reqwest::header::HeaderMap {
    use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
    let timestamp = now_ms() / 1000;
    let hook = &delivery.webhook;
    let mut secrets = Vec::new();
    match Secret::parse(&hook.secret) {
        Ok(s) => secrets.push(s),
        Err(_) => tracing::error!(webhook = %hook.id, "stored secret unreadable"),
    }
    if let (Some(old), Some(until)) = (&hook.old_secret, hook.old_secret_until_ms)
        && until > now_ms()
        && let Ok(old) = Secret::parse(old)
    {
        secrets.push(old);
    }
    let refs: Vec<&Secret> = secrets.iter().collect();
    let signature = signature_header(&refs, &delivery.id, timestamp, body);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static("Tidings-Webhooks/1"));
    for (name, value) in [
        ("webhook-id", delivery.id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Sends one leased delivery and records the attempt.
async fn deliver(
    store: &Store,
    outbound: &Outbound,
    config: &WebhookConfig,
    delivery: LeasedDelivery,
) {
    let body = payload(&delivery);
    let headers = signed_headers(&delivery, &body);
    let started = Instant::now();
    let result = outbound.post(&delivery.webhook.url, headers, body).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let made = delivery.attempts + 1;
    let out_of_attempts = made >= config.max_attempts;
    let retry = |wait: Duration| {
        if out_of_attempts {
            AttemptNext::Dead
        } else {
            let wait = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            AttemptNext::Retry {
                at_ms: now_ms().saturating_add(wait),
            }
        }
    };
    let (attempt, next) = match result {
        Ok(Answer {
            status,
            retry_after,
            excerpt,
            body,
        }) => {
            let (outcome, next) = match status {
                200..=299 => ("delivered", AttemptNext::Delivered),
                410 => (
                    "gone",
                    AttemptNext::Disable {
                        reason: "the endpoint answered 410 Gone".into(),
                    },
                ),
                429 | 503 => {
                    let wait = retry_after
                        .map(Duration::from_secs)
                        .unwrap_or_else(|| backoff(config, made))
                        .min(config.retry_max);
                    ("throttled", retry(wait))
                }
                _ => ("failed", retry(backoff(config, made))),
            };
            (
                NewAttempt {
                    status: Some(i64::from(status)),
                    latency_ms,
                    outcome: outcome.into(),
                    excerpt,
                    // A 2xx body is the consumer's reply (the first one recorded answers a
                    // `?wait=replied` publish).
                    reply: (200..=299).contains(&status).then_some(body),
                },
                next,
            )
        }
        Err(NoAnswer { outcome, message }) => (
            NewAttempt {
                status: None,
                latency_ms,
                outcome: outcome.into(),
                excerpt: message.chars().take(512).collect(),
                reply: None,
            },
            retry(backoff(config, made)),
        ),
    };
    tracing::debug!(delivery = %delivery.id, webhook = %delivery.webhook.id, outcome = %attempt.outcome, "webhook attempt");
    metrics::counter!("tidings_webhook_attempts_total", "outcome" => attempt.outcome.clone())
        .increment(1);
    metrics::histogram!("tidings_webhook_attempt_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match store
        .record_attempt(delivery.id.clone(), attempt, next, config.disable_after)
        .await
    {
        Ok(Some(disabled)) => {
            if let Err(e) = disable_notice(store, &disabled).await {
                tracing::warn!(webhook = %disabled.id, error = %e, "could not send the disable notice");
            }
        }
        Ok(None) => {}
        // The lease runs out and the delivery is sent again: at least once.
        Err(e) => {
            tracing::warn!(delivery = %delivery.id, error = %e, "could not record a webhook attempt")
        }
    }
}

/// Tells a disabled subscription's owner: an activity from the owning service's user to every
/// admin (services have no inbox of their own, admins manage them), which reaches the admins'
/// inboxes and notification feeds like any activity addressed to them. An admin's own
/// subscription is reported in its listing and the log only (there is no one else to send it
/// from). The idempotency key makes a retried notice store once.
async fn disable_notice(store: &Store, hook: &tidings_store::model::Webhook) -> Result<(), String> {
    use tidings_core::activity::{Limits, TypeStatus, normalize};
    let Some(service) = &hook.owner else {
        return Ok(());
    };
    let admins = store.admin_usernames().await.map_err(|e| e.to_string())?;
    if admins.is_empty() {
        return Ok(());
    }
    let author = store.user(service).await.map_err(|e| e.to_string())?;
    let reason = hook.disabled_reason.clone().unwrap_or_default();
    let doc = json!({
        "object": {
            "type": "Note",
            "content": format!(
                "Webhook subscription {} of topic {} ({}) was disabled: {}. Fix the endpoint, then \
                 POST /api/v1/topics/{}/subscriptions/{}/enable; what it is owed goes out then.",
                hook.id, hook.topic, hook.url, reason, hook.topic, hook.id
            ),
            "bus_event": "subscription.disabled",
            "subscription": hook.id,
            "topic": hook.topic,
            "reason": reason,
        },
        // An activity names at most 64 addressees.
        "to": admins.iter().take(64).map(|a| format!("user:{a}")).collect::<Vec<_>>(),
        "tag": ["bus"],
    });
    let draft =
        normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn).map_err(|e| e.message)?;
    let key = format!("disabled:{}:{}", hook.id, now_ms() / 1000);
    store
        .publish(tidings_store::model::PublishInput {
            actor: author,
            draft,
            idempotency_key: Some(key),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let config = WebhookConfig {
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
            ..WebhookConfig::default()
        };
        for (made, nominal) in [
            (1, 5.0),
            (2, 10.0),
            (3, 20.0),
            (4, 40.0),
            (5, 60.0),
            (40, 60.0),
        ] {
            let got = backoff(&config, made).as_secs_f64();
            assert!(
                got >= nominal * 0.8 - 1e-9 && got <= nominal * 1.2 + 1e-9,
                "{made}: {got}"
            );
        }
    }
}
