//! The integration bus's state: registered services and their keys, topics, webhook
//! subscriptions, and the deliveries the log owes them with every attempt.
//!
//! Deliveries are driven from the log: a matcher reads the activities after `meta.bus_seq`,
//! and [`Store::bus_enqueue`] records what each webhook is owed and moves `bus_seq` in one
//! transaction, so an activity is matched once and a delivery owed survives a crash. Every
//! change here runs on the writer (in PostgreSQL inside the log lock), which is what makes a
//! lease exclusive across nodes: two nodes never lease the same due delivery.

use super::Store;
use super::users::{insert_user, last_seq};
use crate::model::{
    AttemptNext, BusActivity, BusRouting, Delivery, DeliveryAttempt, LeasedDelivery, NewAttempt,
    Service, ServiceKey, Topic, Webhook,
};
use crate::sql::{Connection, OptionalExtension, Row, params};
use crate::{StoreError, StoreResult, now_ms, now_rfc3339, rfc3339_after};
use std::sync::Arc;

const SERVICE_COLUMNS: &str = "id, name, description, scopes, user_id, created_at";

fn service_from_row(r: &Row<'_>) -> crate::sql::Result<Service> {
    let scopes: String = r.get(3)?;
    Ok(Service {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        user_id: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn service_by_name(conn: &Connection, name: &str) -> StoreResult<Service> {
    conn.prepare_cached(&format!(
        "SELECT {SERVICE_COLUMNS} FROM bus_services WHERE name = ?1"
    ))?
    .query_row([name], service_from_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("service"))
}

fn insert_key(
    conn: &Connection,
    service_id: i64,
    key_hash: &str,
    key_id: &str,
) -> StoreResult<ServiceKey> {
    let created_at = now_rfc3339();
    conn.prepare_cached(
        "INSERT INTO bus_service_keys(key_hash, id, service_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key_hash, key_id, service_id, created_at])?;
    Ok(ServiceKey {
        id: key_id.to_owned(),
        created_at,
        expires_at: None,
        revoked_at: None,
    })
}

const TOPIC_COLUMNS: &str = "id, name, filter, description, created_at";

fn topic_from_row(r: &Row<'_>) -> crate::sql::Result<Topic> {
    Ok(Topic {
        id: r.get(0)?,
        name: r.get(1)?,
        filter: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// A topic by name.
pub(crate) fn topic_by_name(conn: &Connection, name: &str) -> StoreResult<Topic> {
    conn.prepare_cached(&format!(
        "SELECT {TOPIC_COLUMNS} FROM bus_topics WHERE name = ?1"
    ))?
    .query_row([name], topic_from_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("topic"))
}

const WEBHOOK_COLUMNS: &str = "w.id, t.name, s.name, w.url, w.status, w.disabled_reason, \
     w.failures, w.created_at, w.service_id, w.secret, w.old_secret, w.old_secret_until_ms, \
     w.mode, w.queue, w.lease_ms, w.paused, w.in_order";

const WEBHOOK_FROM: &str = "bus_webhooks w JOIN bus_topics t ON t.id = w.topic_id \
     LEFT JOIN bus_services s ON s.id = w.service_id";

pub(crate) fn webhook_from_row(r: &Row<'_>) -> crate::sql::Result<Webhook> {
    let mode: String = r.get(12)?;
    let lease_ms: i64 = r.get(14)?;
    let paused: i64 = r.get(15)?;
    Ok(Webhook {
        id: r.get(0)?,
        topic: r.get(1)?,
        owner: r.get(2)?,
        lease_ms: (mode == "pull").then_some(lease_ms),
        mode,
        queue: r.get(13)?,
        paused: paused != 0,
        url: r.get(3)?,
        status: r.get(4)?,
        disabled_reason: r.get(5)?,
        failures: r.get(6)?,
        created_at: r.get(7)?,
        service_id: r.get(8)?,
        secret: r.get(9)?,
        old_secret: r.get(10)?,
        old_secret_until_ms: r.get(11)?,
        ordered: r.get::<_, i64>(16)? != 0,
    })
}

pub(crate) fn webhook_by_id(conn: &Connection, id: &str) -> StoreResult<Webhook> {
    conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM {WEBHOOK_FROM} WHERE w.id = ?1"
    ))?
    .query_row([id], webhook_from_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("subscription"))
}

/// Tells every node's matcher that topics or webhooks changed.
pub(crate) fn bump_generation(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'bus_generation'",
    )?
    .execute([])?;
    Ok(())
}

pub(crate) fn meta_int(conn: &Connection, key: &str) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))?)
}

fn attempts_of(conn: &Connection, delivery_id: &str) -> StoreResult<Vec<DeliveryAttempt>> {
    Ok(conn
        .prepare_cached(
            "SELECT attempt, at, status, latency_ms, outcome, excerpt FROM bus_attempts
             WHERE delivery_id = ?1 ORDER BY attempt",
        )?
        .query_map([delivery_id], |r| {
            Ok(DeliveryAttempt {
                attempt: r.get(0)?,
                at: r.get(1)?,
                status: r.get(2)?,
                latency_ms: r.get(3)?,
                outcome: r.get(4)?,
                excerpt: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

impl Store {
    /// Registers a service: the user it acts as (named like it, without a password), the
    /// service and its first key (stored hashed). 409 `name_taken` when a user or service
    /// already has the name.
    pub async fn create_service(
        &self,
        name: String,
        description: String,
        scopes: Vec<String>,
        key_hash: String,
        key_id: String,
    ) -> StoreResult<(Service, ServiceKey)> {
        self.write(move |conn, fx| {
            let user = insert_user(conn, fx, &name, &name, None, false).map_err(|e| match e {
                StoreError::Conflict { .. } => StoreError::conflict(
                    "name_taken",
                    format!("a user or service is already named {name:?}"),
                ),
                other => other,
            })?;
            let created_at = now_rfc3339();
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO bus_services(name, description, scopes, user_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )?
                .query_row(
                    params![name, description, scopes.join(","), user.id, created_at],
                    |r| r.get(0),
                )?;
            let key = insert_key(conn, id, &key_hash, &key_id)?;
            Ok((
                Service {
                    id,
                    name,
                    description,
                    scopes,
                    user_id: user.id,
                    created_at,
                },
                key,
            ))
        })
        .await
    }

    /// The service a key belongs to, if the key is live (neither revoked nor past the end of
    /// its overlap).
    pub async fn service_by_key(&self, key_hash: String) -> StoreResult<Option<Service>> {
        self.read(move |conn| {
            let now = now_rfc3339();
            Ok(conn
                .prepare_cached(
                    "SELECT s.id, s.name, s.description, s.scopes, s.user_id, s.created_at
                     FROM bus_service_keys k JOIN bus_services s ON s.id = k.service_id
                     WHERE k.key_hash = ?1 AND k.revoked_at IS NULL
                       AND (k.expires_at IS NULL OR k.expires_at > ?2)",
                )?
                .query_row(params![key_hash, now], service_from_row)
                .optional()?)
        })
        .await
    }

    /// Every registered service, by name.
    pub async fn services(&self) -> StoreResult<Vec<Service>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SERVICE_COLUMNS} FROM bus_services ORDER BY name"
                ))?
                .query_map([], service_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One service and its keys (newest first; never the keys themselves).
    pub async fn service(&self, name: String) -> StoreResult<(Service, Vec<ServiceKey>)> {
        self.read(move |conn| {
            let service = service_by_name(conn, &name)?;
            let keys = conn
                .prepare_cached(
                    "SELECT id, created_at, expires_at, revoked_at FROM bus_service_keys
                     WHERE service_id = ?1 ORDER BY created_at DESC, id",
                )?
                .query_map([service.id], |r| {
                    Ok(ServiceKey {
                        id: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                        revoked_at: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((service, keys))
        })
        .await
    }

    /// Adds a key to a service; its other live keys keep working for `overlap` more (and no
    /// longer than they already would).
    pub async fn rotate_service_key(
        &self,
        name: String,
        key_hash: String,
        key_id: String,
        overlap: std::time::Duration,
    ) -> StoreResult<ServiceKey> {
        self.write(move |conn, _fx| {
            let service = service_by_name(conn, &name)?;
            let until = rfc3339_after(overlap);
            conn.prepare_cached(
                "UPDATE bus_service_keys SET expires_at = ?2
                 WHERE service_id = ?1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .execute(params![service.id, until])?;
            insert_key(conn, service.id, &key_hash, &key_id)
        })
        .await
    }

    /// Revokes one of a service's keys at once.
    pub async fn revoke_service_key(&self, name: String, key_id: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let service = service_by_name(conn, &name)?;
            let changed = conn
                .prepare_cached(
                    "UPDATE bus_service_keys SET revoked_at = ?3
                     WHERE service_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![service.id, key_id, now_rfc3339()])?;
            if changed == 0 {
                return Err(StoreError::not_found("key"));
            }
            Ok(())
        })
        .await
    }

    /// Creates a topic (the filter already checked by the caller). 409 `topic_exists`.
    pub async fn create_topic(
        &self,
        name: String,
        filter: Option<String>,
        description: String,
    ) -> StoreResult<Topic> {
        self.write(move |conn, _fx| {
            if topic_by_name(conn, &name).is_ok() {
                return Err(StoreError::conflict(
                    "topic_exists",
                    format!("a topic is already named {name:?}"),
                ));
            }
            let created_at = now_rfc3339();
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO bus_topics(name, filter, description, created_at)
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                )?
                .query_row(params![name, filter, description, created_at], |r| r.get(0))?;
            bump_generation(conn)?;
            Ok(Topic {
                id,
                name,
                filter,
                description,
                created_at,
            })
        })
        .await
    }

    /// Every topic, by name.
    pub async fn topics(&self) -> StoreResult<Vec<Topic>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {TOPIC_COLUMNS} FROM bus_topics ORDER BY name"
                ))?
                .query_map([], topic_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One topic.
    pub async fn topic(&self, name: String) -> StoreResult<Topic> {
        self.read(move |conn| topic_by_name(conn, &name)).await
    }

    /// Subscribes a webhook to a topic; it is owed the activities published from now on.
    /// `service_id` owns it (None: an admin's).
    pub async fn create_webhook(
        &self,
        topic: String,
        service_id: Option<i64>,
        id: String,
        url: String,
        secret: String,
        ordered: bool,
    ) -> StoreResult<Webhook> {
        let spec = crate::model::NewSubscription {
            mode: "webhook".into(),
            url,
            secret,
            queue: None,
            lease_ms: 30_000,
            ordered,
        };
        self.create_subscription(topic, service_id, id, spec).await
    }

    /// Subscribes to a topic in any mode; it is owed the activities published from now on
    /// (a replay reaches further back). `service_id` owns it (None: an admin's).
    pub async fn create_subscription(
        &self,
        topic: String,
        service_id: Option<i64>,
        id: String,
        spec: crate::model::NewSubscription,
    ) -> StoreResult<Webhook> {
        self.write(move |conn, _fx| {
            let topic = topic_by_name(conn, &topic)?;
            let since = last_seq(conn)?;
            conn.prepare_cached(
                "INSERT INTO bus_webhooks(id, topic_id, service_id, url, secret, since_seq, status, created_at,
                                          mode, queue, lease_ms, in_order)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                id,
                topic.id,
                service_id,
                spec.url,
                spec.secret,
                since,
                now_rfc3339(),
                spec.mode,
                spec.queue,
                spec.lease_ms,
                i64::from(spec.ordered)
            ])?;
            bump_generation(conn)?;
            webhook_by_id(conn, &id)
        })
        .await
    }

    /// A topic's webhooks, oldest first; only those `owner` owns when it is given.
    pub async fn webhooks(&self, topic: String, owner: Option<i64>) -> StoreResult<Vec<Webhook>> {
        self.read(move |conn| {
            let topic = topic_by_name(conn, &topic)?;
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM {WEBHOOK_FROM}
                     WHERE w.topic_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR w.service_id = ?2)
                     ORDER BY w.created_at, w.id"
                ))?
                .query_map(params![topic.id, owner], webhook_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One webhook of a topic.
    pub async fn webhook(&self, topic: String, id: String) -> StoreResult<Webhook> {
        self.read(move |conn| {
            let hook = webhook_by_id(conn, &id)?;
            if hook.topic != topic {
                return Err(StoreError::not_found("subscription"));
            }
            Ok(hook)
        })
        .await
    }

    /// Replaces a webhook's secret; the old one keeps signing too until `old_until_ms`.
    pub async fn rotate_webhook_secret(
        &self,
        id: String,
        secret: String,
        old_until_ms: i64,
    ) -> StoreResult<Webhook> {
        self.write(move |conn, _fx| {
            conn.prepare_cached(
                "UPDATE bus_webhooks SET old_secret = secret, old_secret_until_ms = ?3, secret = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, secret, old_until_ms])?;
            webhook_by_id(conn, &id)
        })
        .await
    }

    /// Turns a disabled webhook back on; its owed deliveries resume.
    pub async fn enable_webhook(&self, id: String) -> StoreResult<Webhook> {
        self.write(move |conn, _fx| {
            conn.prepare_cached(
                "UPDATE bus_webhooks SET status = 'active', disabled_reason = NULL, failures = 0
                 WHERE id = ?1",
            )?
            .execute([id.as_str()])?;
            bump_generation(conn)?;
            webhook_by_id(conn, &id)
        })
        .await
    }

    /// What the matcher needs to route (filters and webhooks), unless the generation is still
    /// `known`. Disabled webhooks are routed too: what they are owed waits until they are
    /// enabled again (leasing skips them), so nothing is lost while an endpoint is down.
    pub async fn bus_routing(&self, known: Option<i64>) -> StoreResult<Option<BusRouting>> {
        self.read(move |conn| {
            let generation = meta_int(conn, "bus_generation")?;
            if known == Some(generation) {
                return Ok(None);
            }
            let topics = conn
                .prepare_cached(&format!(
                    "SELECT {TOPIC_COLUMNS} FROM bus_topics ORDER BY id"
                ))?
                .query_map([], topic_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let webhooks = conn
                .prepare_cached("SELECT id, topic_id, since_seq FROM bus_webhooks ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(BusRouting {
                generation,
                topics,
                webhooks,
            }))
        })
        .await
    }

    /// How far the log has been matched against topics.
    pub async fn bus_seq(&self) -> StoreResult<i64> {
        self.read(|conn| meta_int(conn, "bus_seq")).await
    }

    /// Up to `limit` activities after `after`, in log order, as stored.
    pub async fn bus_activities(&self, after: i64, limit: i64) -> StoreResult<Vec<BusActivity>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, body FROM activities WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![after, limit], |r| {
                    Ok(BusActivity {
                        seq: r.get(0)?,
                        body: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Records the deliveries owed for the activities in `(from, upto]` and moves the bus
    /// watermark to `upto`, in one transaction. False (and nothing written) when the watermark
    /// is no longer `from` (another node matched them first) or topics and webhooks are no
    /// longer at `generation` (the match used a stale list: a webhook made meanwhile would miss
    /// what it is owed).
    pub async fn bus_enqueue(
        &self,
        from: i64,
        upto: i64,
        generation: i64,
        owed: Vec<(String, i64)>,
    ) -> StoreResult<bool> {
        self.write(move |conn, fx| {
            if meta_int(conn, "bus_seq")? != from || meta_int(conn, "bus_generation")? != generation
            {
                return Ok(false);
            }
            // A sync publish waiting on one of these activities learns it was matched.
            fx.push(crate::hot::Effect::BusNews);
            let now = now_ms();
            let created_at = now_rfc3339();
            let mut insert = conn.prepare_cached(
                "INSERT INTO bus_deliveries(id, webhook_id, seq, state, next_at_ms, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5) ON CONFLICT DO NOTHING",
            )?;
            for (webhook, seq) in &owed {
                let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
                insert.execute(params![id, webhook, seq, now, created_at])?;
            }
            conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'bus_seq'")?
                .execute([upto.to_string()])?;
            Ok(true)
        })
        .await
    }

    /// Whether any delivery of an active webhook is due now (a read: the sender asks before
    /// taking a write transaction to lease).
    pub async fn deliveries_due(&self) -> StoreResult<bool> {
        self.deliveries_due_for("webhook").await
    }

    /// Whether any delivery of an active, unpaused subscription in `mode` (`webhook` or
    /// `queue`: the modes this node pushes) is due now.
    pub async fn deliveries_due_for(&self, mode: &'static str) -> StoreResult<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM bus_deliveries d JOIN bus_webhooks w ON w.id = d.webhook_id
                     WHERE d.state = 'pending' AND d.next_at_ms <= ?1 AND d.lease_until_ms <= ?1
                       AND w.status = 'active' AND w.paused = 0 AND w.mode = ?2
                       AND (w.in_order = 0 OR NOT EXISTS (
                           SELECT 1 FROM bus_deliveries p
                           WHERE p.webhook_id = d.webhook_id AND p.state = 'pending' AND p.seq < d.seq)))",
                )?
                .query_row(params![now_ms(), mode], |r| r.get(0))?)
        })
        .await
    }

    /// Leases up to `max` due deliveries of active webhooks for `lease`, oldest due first.
    pub async fn lease_deliveries(
        &self,
        max: i64,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<LeasedDelivery>> {
        self.lease_deliveries_for("webhook", max, lease).await
    }

    /// [`Store::lease_deliveries`] for the subscriptions of one pushed mode (`webhook` or
    /// `queue`); paused ones are skipped.
    pub async fn lease_deliveries_for(
        &self,
        mode: &'static str,
        max: i64,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<LeasedDelivery>> {
        self.write(move |conn, _fx| {
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            let due: Vec<String> = conn
                .prepare_cached(
                    "SELECT d.id FROM bus_deliveries d JOIN bus_webhooks w ON w.id = d.webhook_id
                     WHERE d.state = 'pending' AND d.next_at_ms <= ?1 AND d.lease_until_ms <= ?1
                       AND w.status = 'active' AND w.paused = 0 AND w.mode = ?3
                       AND (w.in_order = 0 OR NOT EXISTS (
                           SELECT 1 FROM bus_deliveries p
                           WHERE p.webhook_id = d.webhook_id AND p.state = 'pending' AND p.seq < d.seq))
                     ORDER BY d.next_at_ms, d.seq LIMIT ?2",
                )?
                .query_map(params![now, max, mode], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut leased = Vec::with_capacity(due.len());
            for id in due {
                conn.prepare_cached("UPDATE bus_deliveries SET lease_until_ms = ?2 WHERE id = ?1")?
                    .execute(params![id, until])?;
                let (webhook, seq, attempts): (String, i64, i64) = conn
                    .prepare_cached(
                        "SELECT webhook_id, seq, attempts - round_start FROM bus_deliveries
                         WHERE id = ?1",
                    )?
                    .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let hook = webhook_by_id(conn, &webhook)?;
                let body: Arc<str> = conn
                    .prepare_cached("SELECT body FROM activities WHERE seq = ?1")?
                    .query_row([seq], |r| r.get(0))?;
                leased.push(LeasedDelivery {
                    id,
                    seq,
                    attempts,
                    webhook: hook,
                    body,
                });
            }
            Ok(leased)
        })
        .await
    }

    /// Logs one attempt and applies its outcome: delivered, retried at a time, dead, or dead
    /// with the webhook disabled. A failure that makes `disable_after` failures in a row
    /// disables the webhook too; a success resets the count. Returns the webhook when this
    /// attempt disabled it (its owner is to be told).
    pub async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: NewAttempt,
        next: AttemptNext,
        disable_after: i64,
    ) -> StoreResult<Option<Webhook>> {
        self.write(move |conn, fx| {
            let (webhook, attempts, state): (String, i64, String) = conn
                .prepare_cached("SELECT webhook_id, attempts, state FROM bus_deliveries WHERE id = ?1")?
                .query_row([delivery_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
                .ok_or_else(|| StoreError::not_found("delivery"))?;
            if state != "pending" {
                // Redelivered or settled meanwhile: this attempt's outcome is stale.
                return Ok(None);
            }
            let number = attempts + 1;
            conn.prepare_cached(
                "INSERT INTO bus_attempts(delivery_id, attempt, at, status, latency_ms, outcome, excerpt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                delivery_id,
                number,
                now_rfc3339(),
                attempt.status,
                attempt.latency_ms,
                attempt.outcome,
                attempt.excerpt
            ])?;
            let (state, next_at) = match &next {
                AttemptNext::Delivered => ("delivered", 0),
                AttemptNext::Retry { at_ms } => ("pending", *at_ms),
                AttemptNext::Dead | AttemptNext::Disable { .. } => ("dead", 0),
            };
            conn.prepare_cached(
                "UPDATE bus_deliveries SET attempts = ?2, state = ?3, next_at_ms = ?4, lease_until_ms = 0
                 WHERE id = ?1",
            )?
            .execute(params![delivery_id, number, state, next_at])?;
            if let (AttemptNext::Delivered, Some(body)) = (&next, &attempt.reply) {
                let seq: i64 = conn
                    .prepare_cached("SELECT seq FROM bus_deliveries WHERE id = ?1")?
                    .query_row([delivery_id.as_str()], |r| r.get(0))?;
                if super::schedules::insert_reply(conn, seq, &delivery_id, attempt.status, body)? {
                    fx.push(crate::hot::Effect::BusNews);
                }
            }
            let disable = match next {
                AttemptNext::Delivered => {
                    conn.prepare_cached("UPDATE bus_webhooks SET failures = 0 WHERE id = ?1")?
                        .execute([webhook.as_str()])?;
                    None
                }
                AttemptNext::Disable { reason } => Some(reason),
                AttemptNext::Retry { .. } | AttemptNext::Dead => {
                    let failures: i64 = conn
                        .prepare_cached(
                            "UPDATE bus_webhooks SET failures = failures + 1 WHERE id = ?1
                             RETURNING failures",
                        )?
                        .query_row([webhook.as_str()], |r| r.get(0))?;
                    (failures >= disable_after).then(|| {
                        format!("{failures} failed attempts in a row")
                    })
                }
            };
            if let Some(reason) = disable {
                tracing::warn!(webhook = %webhook, %reason, "webhook disabled");
                let changed = conn
                    .prepare_cached(
                        "UPDATE bus_webhooks SET status = 'disabled', disabled_reason = ?2
                         WHERE id = ?1 AND status = 'active'",
                    )?
                    .execute(params![webhook, reason])?;
                bump_generation(conn)?;
                // Only the attempt that disabled it reports it (once, however many were out).
                if changed > 0 {
                    return Ok(Some(webhook_by_id(conn, &webhook)?));
                }
            }
            Ok(None)
        })
        .await
    }

    /// A webhook's deliveries, newest first, with their attempts; `state` narrows them
    /// (`dead` is the dead-letter list).
    pub async fn deliveries(
        &self,
        webhook: String,
        state: Option<String>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        self.read(move |conn| {
            let rows: Vec<(String, i64, String, String, i64, i64, String)> = conn
                .prepare_cached(
                    "SELECT d.id, d.seq, a.id, d.state, d.attempts, d.next_at_ms, d.created_at
                     FROM bus_deliveries d JOIN activities a ON a.seq = d.seq
                     WHERE d.webhook_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR d.state = ?2)
                     ORDER BY d.seq DESC LIMIT ?3",
                )?
                .query_map(params![webhook, state, limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, seq, activity, state, attempts, next_at_ms, created_at) in rows {
                let log = attempts_of(conn, &id)?;
                out.push(Delivery {
                    next_attempt_ms: (state == "pending").then_some(next_at_ms),
                    id,
                    seq,
                    activity,
                    state,
                    attempts,
                    created_at,
                    attempts_log: log,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Sends a delivery again (a dead letter, or one delivered) with a fresh retry budget; its
    /// attempt log goes on numbering from where it was.
    pub async fn redeliver(&self, webhook: String, delivery_id: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let changed = conn
                .prepare_cached(
                    "UPDATE bus_deliveries SET state = 'pending', next_at_ms = ?3, lease_until_ms = 0,
                                               round_start = attempts
                     WHERE id = ?1 AND webhook_id = ?2",
                )?
                .execute(params![delivery_id, webhook, now_ms()])?;
            if changed == 0 {
                return Err(StoreError::not_found("delivery"));
            }
            Ok(())
        })
        .await
    }

    /// The usernames of the admins, by name: who hears of a disabled subscription.
    pub async fn admin_usernames(&self) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT username FROM users WHERE is_admin AND status = 'active' ORDER BY username",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Whether a topic of this name exists.
    pub async fn topic_exists(&self, name: String) -> StoreResult<bool> {
        self.read(move |conn| Ok(topic_by_name(conn, &name).is_ok()))
            .await
    }
}
