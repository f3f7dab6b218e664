//! The integration bus: how other services plug into Tidings. Registered services publish and
//! subscribe with API keys; topics receive what is addressed to them (`topic:NAME`) or what
//! their filter matches; webhook subscriptions get each matching activity, signed per Standard
//! Webhooks and retried until delivered or dead-lettered.
//!
//! (Not to be confused with [`crate::bus`], the NATS doorbell between cluster nodes.)
//!
//! Layout:
//! - [`auth`] — service API keys and the extractors that tell a service from a user.
//! - [`services`] — `POST/GET /services`, key rotation and revocation.
//! - [`topics`] — topics, webhook subscriptions, their deliveries and redelivery.
//! - [`consume`] — pull (lease, ack with a reply), SSE streams, replay from any log position,
//!   pause / resume / delete of subscriptions, deleting topics.
//! - [`dispatch`] — the background work: matching the log against topics, then leasing,
//!   signing, sending and logging deliveries.
//! - [`queues`] — work queues (FIFO, LIFO, priority; durable in the store or in memory),
//!   their leases, and their routes (`queues::api`).
//! - [`schedules`] — scheduled and cron publishing (`publish_at`, `/schedules`), the loop that
//!   fires them once per cluster, and the sync publish's wait for a reply (`?wait=replied`).
//! - [`outbound`] — SSRF-safe outgoing HTTP (resolve once, refuse private ranges, no
//!   redirects, timeouts, a response-size cap).
//! - [`error`] — [`error::BusError`], mapped to statuses in `crate::error`.
//!
//! The filter language and signatures are pure code in `tidings_core::filter` and
//! `tidings_core::webhook`; the state is behind the store port.

pub mod auth;
pub mod consume;
pub mod dispatch;
pub mod error;
pub mod outbound;
pub mod queues;
pub mod schedules;
pub mod services;
pub mod topics;

use std::time::Duration;

/// An optional JSON body: empty (or `null`) is the default; anything else must be an object
/// (serde would also read a struct from an array).
pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> crate::error::ApiResult<T> {
    use crate::error::ApiError;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body: {e}")))?;
    if !(value.is_object() || value.is_null()) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "body: expected a JSON object",
        ));
    }
    serde_json::from_value::<Option<T>>(value)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body: {e}")))
}

/// An optional whole number as JSON may spell it: `5` or `5.0` (JSON Schema's `integer` allows
/// both, and schema-driven clients send either); a fraction or a number out of range is refused.
pub(crate) fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

/// [`whole`] for a required field.
pub(crate) fn whole_required<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    whole(d)?.ok_or_else(|| D::Error::custom("expected a whole number"))
}

/// [`whole`] for a count of seconds: not negative.
pub(crate) fn whole_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    whole(d)?
        .map(|n| u64::try_from(n).map_err(|_| D::Error::custom("seconds are not negative")))
        .transpose()
}

/// How webhooks are delivered (`[webhooks]` in the config file).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Whether this node delivers webhooks at all.
    pub enabled: bool,
    /// Networks a webhook may reach even though they are loopback, private or link-local
    /// (`allow_networks = ["127.0.0.1/32"]`); none by default.
    pub allow_networks: Vec<ipnet::IpNet>,
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
    /// Attempts before a delivery goes to the dead-letter list.
    pub max_attempts: i64,
    /// Wait before the second attempt; doubled for each further one, with jitter.
    pub retry_base: Duration,
    /// Longest wait between attempts (a `Retry-After` included).
    pub retry_max: Duration,
    /// Failed attempts in a row after which a webhook is disabled.
    pub disable_after: i64,
    /// Bytes of a response read (the rest is dropped).
    pub response_cap: usize,
    /// How often the log and due deliveries are checked when nothing woke the dispatcher.
    pub poll: Duration,
    /// Deliveries sent at once by this node.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enabled: true,
            allow_networks: Vec::new(),
            timeout: Duration::from_secs(15),
            // 5 s doubling to a 6 h cap: twelve attempts span about eleven hours.
            max_attempts: 12,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(6 * 3600),
            disable_after: 50,
            response_cap: 64 * 1024,
            poll: Duration::from_millis(250),
            concurrency: 32,
        }
    }
}
