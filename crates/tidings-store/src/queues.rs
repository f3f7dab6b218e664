//! Work queues: what a queue is (its discipline, lease and retry policy), what a job looks like
//! to its consumers, and the counts a queue reports. A job is work with a state (ready, delayed,
//! leased, dead), not part of the immutable log: its rows change and go away when acknowledged.
//!
//! The durable queues' SQL is in `engine::queues`; the edge keeps memory queues with the same
//! records.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Which ready job a lease takes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Discipline {
    /// Oldest first.
    Fifo,
    /// Newest first.
    Lifo,
    /// Highest priority first; oldest first within a priority.
    Priority,
}

impl Discipline {
    /// Stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Discipline::Fifo => "fifo",
            Discipline::Lifo => "lifo",
            Discipline::Priority => "priority",
        }
    }

    /// Parses the stored text form (FIFO for anything unknown).
    pub fn from_db(text: &str) -> Discipline {
        match text {
            "lifo" => Discipline::Lifo,
            "priority" => Discipline::Priority,
            _ => Discipline::Fifo,
        }
    }
}

/// How long a nacked job waits before it is ready again, when the nack names no delay:
/// `initial_ms × factor^(attempts − 1)`, at most `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt (0–86,400,000 ms).
    #[schema(minimum = 0, maximum = 86_400_000)]
    #[serde(deserialize_with = "whole")]
    pub initial_ms: i64,
    /// Growth per further attempt (1–10).
    #[schema(minimum = 1, maximum = 10)]
    pub factor: f64,
    /// Longest delay (0–86,400,000 ms).
    #[schema(minimum = 0, maximum = 86_400_000)]
    #[serde(deserialize_with = "whole")]
    pub max_ms: i64,
}

/// An integer that JSON may write as `5` or `5.0` (JSON Schema's `integer` allows both).
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        })
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 1000,
            factor: 2.0,
            max_ms: 60_000,
        }
    }
}

impl Backoff {
    /// The delay before a job that failed its `attempts`-th attempt is ready again.
    pub fn delay_ms(&self, attempts: i64) -> i64 {
        let exponent = i32::try_from(attempts.saturating_sub(1).clamp(0, 1000)).unwrap_or(1000);
        let delay = self.initial_ms as f64 * self.factor.powi(exponent);
        if !delay.is_finite() || delay >= self.max_ms as f64 {
            self.max_ms.max(0)
        } else {
            (delay as i64).max(0)
        }
    }
}

/// A queue's definition.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueSpec {
    /// Its name, unique among queues (durable and memory).
    pub name: String,
    /// Which ready job a lease takes first.
    pub discipline: Discipline,
    /// How long a lease lasts before the job is ready again.
    pub visibility_timeout_ms: i64,
    /// Deliveries before a job that keeps failing (or whose lease keeps expiring) moves to the
    /// dead-letter list.
    pub max_attempts: i64,
    /// Delay of a nack that names none.
    pub backoff: Backoff,
    /// Most jobs leased per second from this queue (per node), if limited.
    pub rate_limit: Option<i64>,
}

/// A durable queue with the time it was created.
#[derive(Debug, Clone)]
pub struct StoredQueue {
    /// Its definition.
    pub spec: QueueSpec,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// How many jobs a queue holds in each state, and what it has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueStats {
    /// Jobs a lease would take now.
    pub ready: i64,
    /// Jobs waiting for their delay (or a nack's backoff) to pass.
    pub delayed: i64,
    /// Jobs leased to a consumer whose lease has not expired.
    pub leased: i64,
    /// Jobs in the dead-letter list.
    pub dead: i64,
    /// Age of the oldest ready job, in milliseconds (none when nothing is ready).
    pub oldest_ready_age_ms: Option<i64>,
    /// Jobs ever enqueued (idempotent repeats not counted).
    pub enqueued: i64,
    /// Jobs acknowledged.
    pub acked: i64,
    /// Jobs moved to the dead-letter list.
    pub failed: i64,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The payload, as JSON text.
    pub payload: String,
    /// Higher is served first by a priority queue; ignored by the others.
    pub priority: i64,
    /// Not ready before this many milliseconds from now.
    pub delay_ms: i64,
    /// A retried enqueue with the same key stores nothing and answers the first job's id.
    pub idempotency_key: Option<String>,
    /// The job's group (ordering) key, kept with the job.
    pub group: Option<String>,
}

/// What enqueuing one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Enqueued {
    /// The job's id.
    pub id: i64,
    /// True when the idempotency key was seen before: nothing was stored and `id` is the
    /// first job's.
    pub duplicate: bool,
}

/// A job as its consumer (leased) or an operator (dead) sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueJob {
    /// The job's id.
    pub id: i64,
    /// The payload, as enqueued (any JSON).
    pub payload: Value,
    /// Its priority.
    pub priority: i64,
    /// Its group key, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Deliveries so far, this one included.
    pub attempts: i64,
    /// When it was enqueued (unix milliseconds).
    pub enqueued_at_ms: i64,
    /// The lease's token (leased jobs): ack and nack must show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    /// When the lease expires and the job is ready again (unix milliseconds; leased jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at_ms: Option<i64>,
    /// Why its last attempt failed (a nack's reason, or an expired lease), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What acknowledging one job of a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Done and gone.
    Acked,
    /// The token no longer holds the lease (expired, leased again, already acked or nacked).
    LeaseLost,
    /// No such job in this queue.
    NotFound,
}

/// Where a nacked job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NackedTo {
    /// Ready again at once.
    Ready,
    /// Ready again after a delay.
    Delayed,
    /// Out of attempts: in the dead-letter list.
    Dead,
}

/// The outcome of a nack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Nacked {
    /// The job's id.
    pub id: i64,
    /// Where it went.
    pub state: NackedTo,
    /// When it is ready again (unix milliseconds; not for a dead job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<i64>,
}

/// The error a nack records when it gives no reason, and an expired lease's.
pub const LEASE_EXPIRED: &str = "lease expired";

/// Longest an idempotency key is remembered after its job was enqueued.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial_ms: 100,
            factor: 2.0,
            max_ms: 1000,
        };
        assert_eq!(b.delay_ms(1), 100);
        assert_eq!(b.delay_ms(2), 200);
        assert_eq!(b.delay_ms(4), 800);
        assert_eq!(b.delay_ms(5), 1000);
        assert_eq!(b.delay_ms(i64::MAX), 1000);
        assert_eq!(b.delay_ms(0), 100);
    }
}
