//! Durable work queues (decision 0023). A job is a row with a state: waiting (ready once its
//! `visible_at` passed), leased (until `visible_at`, the lease's expiry; an expired lease is
//! ready again) or dead. One column, `visible_at`, says when a job can be leased next, so a
//! lease is one ordered scan: `state < 2 AND visible_at <= now`, in the queue's discipline.
//!
//! These tables are work state, not the log: rows are updated and deleted. On the embedded
//! store the statements run on the writer (group commit, like every write); on PostgreSQL
//! they run in short transactions of their own on pooled connections, outside the log lock,
//! and a lease takes its rows with `FOR UPDATE SKIP LOCKED`, so two nodes never lease the same
//! job and consumers never wait for each other.

use super::Store;
use crate::adapters::Backend;
use crate::queues::{
    AckOutcome, Discipline, Enqueued, IDEMPOTENCY_WINDOW_MS, LEASE_EXPIRED, Nacked, NackedTo,
    NewJob, QueueJob, QueueSpec, QueueStats, StoredQueue,
};
use crate::sql::{Connection, Engine, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_ms, now_rfc3339};

/// `state` of a leased job (ready again once `visible_at`, the lease's expiry, passed). A
/// waiting job is 0, a dead one 2 (the statements below write them as literals).
const LEASED: i64 = 1;

/// Counter shards per queue on PostgreSQL: acks of concurrent consumers update different rows
/// instead of queueing on one.
const COUNTER_SHARDS: i64 = 16;

fn spec_columns() -> &'static str {
    "name, discipline, visibility_timeout_ms, max_attempts, backoff_initial_ms, backoff_factor,
     backoff_max_ms, rate_limit, created_at"
}

fn read_queue(r: &crate::sql::Row<'_>) -> crate::sql::Result<StoredQueue> {
    Ok(StoredQueue {
        spec: QueueSpec {
            name: r.get(0)?,
            discipline: Discipline::from_db(&r.get::<_, String>(1)?),
            visibility_timeout_ms: r.get(2)?,
            max_attempts: r.get(3)?,
            backoff: crate::queues::Backoff {
                initial_ms: r.get(4)?,
                factor: r.get(5)?,
                max_ms: r.get(6)?,
            },
            rate_limit: r.get(7)?,
        },
        created_at: r.get(8)?,
    })
}

fn queue_by_name(conn: &Connection, name: &str) -> StoreResult<StoredQueue> {
    conn.prepare_cached(&format!(
        "SELECT {} FROM queues WHERE name = ?1",
        spec_columns()
    ))?
    .query_row(params![name], read_queue)
    .optional()?
    .ok_or(StoreError::not_found("queue"))
}

/// Adds to a queue's counters (a random shard on PostgreSQL).
fn count(
    conn: &Connection,
    queue: &str,
    enqueued: i64,
    acked: i64,
    failed: i64,
) -> StoreResult<()> {
    if enqueued == 0 && acked == 0 && failed == 0 {
        return Ok(());
    }
    let shard = match conn.engine() {
        Engine::Sqlite => 0,
        Engine::Postgres => rand_shard(),
    };
    conn.prepare_cached(
        "INSERT INTO queue_counters(queue, shard, enqueued, acked, failed)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (queue, shard) DO UPDATE SET
             enqueued = queue_counters.enqueued + excluded.enqueued,
             acked = queue_counters.acked + excluded.acked,
             failed = queue_counters.failed + excluded.failed",
    )?
    .execute(params![queue, shard, enqueued, acked, failed])?;
    Ok(())
}

fn rand_shard() -> i64 {
    // The low bits of a v4 uuid are random enough to spread writers over the shards.
    let bits = uuid::Uuid::new_v4().as_u128();
    i64::try_from(bits % COUNTER_SHARDS as u128).unwrap_or(0)
}

fn create(conn: &Connection, spec: &QueueSpec) -> StoreResult<StoredQueue> {
    let created_at = now_rfc3339();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO queues(name, discipline, visibility_timeout_ms, max_attempts,
                 backoff_initial_ms, backoff_factor, backoff_max_ms, rate_limit, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            spec.name,
            spec.discipline.as_str(),
            spec.visibility_timeout_ms,
            spec.max_attempts,
            spec.backoff.initial_ms,
            spec.backoff.factor,
            spec.backoff.max_ms,
            spec.rate_limit,
            created_at
        ])?;
    if inserted == 0 {
        return Err(StoreError::conflict(
            "queue_exists",
            format!("a queue named {} exists", spec.name),
        ));
    }
    Ok(StoredQueue {
        spec: spec.clone(),
        created_at,
    })
}

fn stats(conn: &Connection, queue: &str, now: i64) -> StoreResult<QueueStats> {
    let mut stats = conn
        .prepare_cached(
            "SELECT
                 COUNT(CASE WHEN state < 2 AND visible_at <= ?2 THEN 1 END),
                 COUNT(CASE WHEN state = 0 AND visible_at > ?2 THEN 1 END),
                 COUNT(CASE WHEN state = 1 AND visible_at > ?2 THEN 1 END),
                 COUNT(CASE WHEN state = 2 THEN 1 END),
                 MIN(CASE WHEN state < 2 AND visible_at <= ?2 THEN enqueued_at END)
             FROM queue_jobs WHERE queue = ?1",
        )?
        .query_row(params![queue, now], |r| {
            Ok(QueueStats {
                ready: r.get(0)?,
                delayed: r.get(1)?,
                leased: r.get(2)?,
                dead: r.get(3)?,
                oldest_ready_age_ms: r.get::<_, Option<i64>>(4)?.map(|at| (now - at).max(0)),
                ..QueueStats::default()
            })
        })?;
    let (enqueued, acked, failed) = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(enqueued), 0) AS BIGINT),
                    CAST(COALESCE(SUM(acked), 0) AS BIGINT),
                    CAST(COALESCE(SUM(failed), 0) AS BIGINT)
             FROM queue_counters WHERE queue = ?1",
        )?
        .query_row(params![queue], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    stats.enqueued = enqueued;
    stats.acked = acked;
    stats.failed = failed;
    Ok(stats)
}

fn enqueue(conn: &Connection, queue: &str, jobs: &[NewJob]) -> StoreResult<Vec<Enqueued>> {
    queue_by_name(conn, queue)?;
    let now = now_ms();
    if jobs.iter().any(|j| j.idempotency_key.is_some()) {
        // Forget keys past the window; the index on created_ms makes this cheap when there
        // is nothing to forget.
        conn.prepare_cached("DELETE FROM queue_keys WHERE created_ms < ?1")?
            .execute(params![now - IDEMPOTENCY_WINDOW_MS])?;
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut created = 0;
    for job in jobs {
        if let Some(key) = &job.idempotency_key {
            let first: Option<i64> = conn
                .prepare_cached("SELECT job_id FROM queue_keys WHERE queue = ?1 AND key = ?2")?
                .query_row(params![queue, key], |r| r.get(0))
                .optional()?;
            if let Some(id) = first {
                out.push(Enqueued {
                    id,
                    duplicate: true,
                });
                continue;
            }
        }
        let id: i64 = conn
            .prepare_cached(
                "INSERT INTO queue_jobs(queue, payload, priority, group_key, state, visible_at,
                     attempts, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, ?6) RETURNING id",
            )?
            .query_row(
                params![
                    queue,
                    job.payload,
                    job.priority,
                    job.group,
                    now.saturating_add(job.delay_ms.max(0)),
                    now
                ],
                |r| r.get(0),
            )?;
        if let Some(key) = &job.idempotency_key {
            let kept = conn
                .prepare_cached(
                    "INSERT INTO queue_keys(queue, key, job_id, created_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![queue, key, id, now])?;
            if kept == 0 {
                // Another transaction stored this key first (PostgreSQL, concurrent retries):
                // its job stands, this one goes.
                conn.prepare_cached("DELETE FROM queue_jobs WHERE id = ?1")?
                    .execute(params![id])?;
                let first: i64 = conn
                    .prepare_cached("SELECT job_id FROM queue_keys WHERE queue = ?1 AND key = ?2")?
                    .query_row(params![queue, key], |r| r.get(0))?;
                out.push(Enqueued {
                    id: first,
                    duplicate: true,
                });
                continue;
            }
        }
        created += 1;
        out.push(Enqueued {
            id,
            duplicate: false,
        });
    }
    count(conn, queue, created, 0, 0)?;
    Ok(out)
}

fn read_job(r: &crate::sql::Row<'_>) -> crate::sql::Result<QueueJob> {
    let payload: String = r.get(1)?;
    Ok(QueueJob {
        id: r.get(0)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        priority: r.get(2)?,
        group: r.get(3)?,
        attempts: r.get(4)?,
        enqueued_at_ms: r.get(5)?,
        lease_token: r.get(6)?,
        lease_expires_at_ms: None,
        last_error: r.get(7)?,
    })
}

const JOB_COLUMNS: &str =
    "id, payload, priority, group_key, attempts, enqueued_at, lease_token, last_error";

fn order_by(discipline: Discipline) -> &'static str {
    match discipline {
        Discipline::Fifo => "id",
        Discipline::Lifo => "id DESC",
        Discipline::Priority => "priority DESC, id",
    }
}

fn lock_suffix(conn: &Connection) -> &'static str {
    match conn.engine() {
        Engine::Sqlite => "",
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

/// Jobs whose last lease expired after their last attempt move to the dead-letter list.
fn bury_expired(conn: &Connection, spec: &QueueSpec, now: i64) -> StoreResult<i64> {
    let buried = conn
        .prepare_cached(&format!(
            "UPDATE queue_jobs SET state = 2, lease_token = NULL, last_error = ?4
             WHERE id IN (SELECT id FROM queue_jobs
                          WHERE queue = ?1 AND state = 1 AND visible_at <= ?2 AND attempts >= ?3
                          LIMIT 1000{})",
            lock_suffix(conn)
        ))?
        .execute(params![spec.name, now, spec.max_attempts, LEASE_EXPIRED])?;
    let buried = i64::try_from(buried).unwrap_or(0);
    count(conn, &spec.name, 0, 0, buried)?;
    Ok(buried)
}

fn lease(
    conn: &Connection,
    queue: &str,
    max: i64,
    token: &str,
) -> StoreResult<(QueueSpec, Vec<QueueJob>)> {
    let spec = queue_by_name(conn, queue)?.spec;
    let now = now_ms();
    bury_expired(conn, &spec, now)?;
    let expires = now.saturating_add(spec.visibility_timeout_ms);
    // An expired lease's job is ready again: its error says why it came back.
    let mut jobs: Vec<QueueJob> = conn
        .prepare_cached(&format!(
            "UPDATE queue_jobs SET state = 1, attempts = attempts + 1, visible_at = ?4,
                 lease_token = ?5,
                 last_error = CASE WHEN state = 1 THEN ?6 ELSE last_error END
             WHERE id IN (SELECT id FROM queue_jobs
                          WHERE queue = ?1 AND state < 2 AND visible_at <= ?2
                                AND attempts < ?7
                          ORDER BY {} LIMIT ?3{})
             RETURNING {JOB_COLUMNS}",
            order_by(spec.discipline),
            lock_suffix(conn)
        ))?
        .query_map(
            params![
                queue,
                now,
                max,
                expires,
                token,
                LEASE_EXPIRED,
                spec.max_attempts
            ],
            read_job,
        )?
        .collect::<Result<_, _>>()?;
    // RETURNING promises no order: put the jobs back in the discipline's.
    match spec.discipline {
        Discipline::Fifo => jobs.sort_by_key(|j| j.id),
        Discipline::Lifo => jobs.sort_by_key(|j| std::cmp::Reverse(j.id)),
        Discipline::Priority => jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id)),
    }
    for job in &mut jobs {
        job.lease_expires_at_ms = Some(expires);
    }
    Ok((spec, jobs))
}

/// The job's attempts if `token` holds its live lease; otherwise why not.
fn check_lease(conn: &Connection, queue: &str, id: i64, token: &str) -> StoreResult<i64> {
    let row: Option<(i64, Option<String>, i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT state, lease_token, visible_at, attempts FROM queue_jobs
             WHERE id = ?1 AND queue = ?2{}",
            match conn.engine() {
                Engine::Sqlite => "",
                Engine::Postgres => " FOR UPDATE",
            }
        ))?
        .query_row(params![id, queue], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((state, held, visible_at, attempts)) = row else {
        return Err(StoreError::not_found("job"));
    };
    if state != LEASED || held.as_deref() != Some(token) || visible_at <= now_ms() {
        return Err(StoreError::conflict(
            "lease_lost",
            "this lease is no longer held: it expired, the job was leased again, or it was \
             already acked or nacked",
        ));
    }
    Ok(attempts)
}

fn ack(conn: &Connection, queue: &str, id: i64, token: &str) -> StoreResult<()> {
    queue_by_name(conn, queue)?;
    check_lease(conn, queue, id, token)?;
    conn.prepare_cached("DELETE FROM queue_jobs WHERE id = ?1")?
        .execute(params![id])?;
    count(conn, queue, 0, 1, 0)
}

fn ack_many(
    conn: &Connection,
    queue: &str,
    leases: &[(i64, String)],
) -> StoreResult<Vec<AckOutcome>> {
    queue_by_name(conn, queue)?;
    let mut out = Vec::with_capacity(leases.len());
    let mut acked = 0;
    for (id, token) in leases {
        let outcome = match check_lease(conn, queue, *id, token) {
            Ok(_) => {
                conn.prepare_cached("DELETE FROM queue_jobs WHERE id = ?1")?
                    .execute(params![id])?;
                acked += 1;
                AckOutcome::Acked
            }
            Err(StoreError::NotFound { .. }) => AckOutcome::NotFound,
            Err(StoreError::Conflict { .. }) => AckOutcome::LeaseLost,
            Err(e) => return Err(e),
        };
        out.push(outcome);
    }
    count(conn, queue, 0, acked, 0)?;
    Ok(out)
}

fn nack(
    conn: &Connection,
    queue: &str,
    id: i64,
    token: &str,
    delay_ms: Option<i64>,
    error: Option<&str>,
) -> StoreResult<Nacked> {
    let spec = queue_by_name(conn, queue)?.spec;
    let attempts = check_lease(conn, queue, id, token)?;
    let error = error.unwrap_or("nacked");
    if attempts >= spec.max_attempts {
        conn.prepare_cached(
            "UPDATE queue_jobs SET state = 2, lease_token = NULL, last_error = ?2 WHERE id = ?1",
        )?
        .execute(params![id, error])?;
        count(conn, queue, 0, 0, 1)?;
        return Ok(Nacked {
            id,
            state: NackedTo::Dead,
            ready_at_ms: None,
        });
    }
    let delay = delay_ms
        .unwrap_or_else(|| spec.backoff.delay_ms(attempts))
        .max(0);
    let ready_at = now_ms().saturating_add(delay);
    conn.prepare_cached(
        "UPDATE queue_jobs SET state = 0, lease_token = NULL, visible_at = ?2, last_error = ?3
         WHERE id = ?1",
    )?
    .execute(params![id, ready_at, error])?;
    Ok(Nacked {
        id,
        state: if delay > 0 {
            NackedTo::Delayed
        } else {
            NackedTo::Ready
        },
        ready_at_ms: Some(ready_at),
    })
}

fn dead(conn: &Connection, queue: &str, after: i64, limit: i64) -> StoreResult<Vec<QueueJob>> {
    queue_by_name(conn, queue)?;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM queue_jobs
             WHERE queue = ?1 AND state = 2 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?
        .query_map(params![queue, after, limit], read_job)?
        .collect::<Result<_, _>>()?)
}

fn retry_dead(conn: &Connection, queue: &str, id: Option<i64>) -> StoreResult<i64> {
    queue_by_name(conn, queue)?;
    let now = now_ms();
    let moved = match id {
        Some(id) => conn
            .prepare_cached(
                "UPDATE queue_jobs SET state = 0, attempts = 0, visible_at = ?3
                 WHERE queue = ?1 AND id = ?2 AND state = 2",
            )?
            .execute(params![queue, id, now])?,
        None => conn
            .prepare_cached(
                "UPDATE queue_jobs SET state = 0, attempts = 0, visible_at = ?2
                 WHERE queue = ?1 AND state = 2",
            )?
            .execute(params![queue, now])?,
    };
    if id.is_some() && moved == 0 {
        return Err(StoreError::not_found("dead job"));
    }
    Ok(i64::try_from(moved).unwrap_or(0))
}

fn delete(conn: &Connection, queue: &str) -> StoreResult<i64> {
    queue_by_name(conn, queue)?;
    let jobs = conn
        .prepare_cached("DELETE FROM queue_jobs WHERE queue = ?1")?
        .execute(params![queue])?;
    conn.prepare_cached("DELETE FROM queue_keys WHERE queue = ?1")?
        .execute(params![queue])?;
    conn.prepare_cached("DELETE FROM queue_counters WHERE queue = ?1")?
        .execute(params![queue])?;
    conn.prepare_cached("DELETE FROM queues WHERE name = ?1")?
        .execute(params![queue])?;
    Ok(i64::try_from(jobs).unwrap_or(0))
}

impl Store {
    /// Runs a write of mutable state (queues, media): on the embedded writer (group commit),
    /// or on PostgreSQL in a transaction of its own outside the log lock.
    pub(super) async fn queue_write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        match &self.shared.backend {
            Backend::Sqlite(_) => self.write(move |conn, _fx| f(conn)).await,
            Backend::Postgres(_) => {
                self.read(move |conn| {
                    conn.execute_batch("BEGIN")?;
                    match f(conn) {
                        Ok(value) => match conn.execute_batch("COMMIT") {
                            Ok(()) => Ok(value),
                            Err(e) => {
                                let _ = conn.execute_batch("ROLLBACK");
                                Err(e.into())
                            }
                        },
                        Err(e) => {
                            let _ = conn.execute_batch("ROLLBACK");
                            Err(e)
                        }
                    }
                })
                .await
            }
        }
    }

    /// Creates a durable queue; `queue_exists` (409) if the name is taken.
    pub async fn create_queue(&self, spec: QueueSpec) -> StoreResult<StoredQueue> {
        self.queue_write(move |conn| create(conn, &spec)).await
    }

    /// Every durable queue, by name.
    pub async fn queues(&self) -> StoreResult<Vec<StoredQueue>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {} FROM queues ORDER BY name",
                    spec_columns()
                ))?
                .query_map(params![], read_queue)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One durable queue (404 if there is none by that name).
    pub async fn queue(&self, name: &str) -> StoreResult<StoredQueue> {
        let name = name.to_owned();
        self.read(move |conn| queue_by_name(conn, &name)).await
    }

    /// A durable queue's depths per state and counters.
    pub async fn queue_stats(&self, name: &str) -> StoreResult<QueueStats> {
        let name = name.to_owned();
        self.read(move |conn| {
            queue_by_name(conn, &name)?;
            stats(conn, &name, now_ms())
        })
        .await
    }

    /// Deletes a durable queue with every job it holds (ready, delayed, leased and dead);
    /// returns how many jobs went with it.
    pub async fn delete_queue(&self, name: &str) -> StoreResult<i64> {
        let name = name.to_owned();
        self.queue_write(move |conn| delete(conn, &name)).await
    }

    /// Enqueues jobs, all or none; a job whose idempotency key was seen (within a day) is not
    /// stored again and answers the first job's id.
    pub async fn enqueue(&self, queue: &str, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>> {
        let queue = queue.to_owned();
        self.queue_write(move |conn| enqueue(conn, &queue, &jobs))
            .await
    }

    /// Leases up to `max` ready jobs in the queue's discipline, all under one new token; their
    /// lease expires after the queue's visibility timeout. Also returns the queue's definition.
    pub async fn lease(&self, queue: &str, max: i64) -> StoreResult<(QueueSpec, Vec<QueueJob>)> {
        let queue = queue.to_owned();
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.queue_write(move |conn| lease(conn, &queue, max, &token))
            .await
    }

    /// Acknowledges a leased job: it is done and goes away. `lease_lost` (409) if `token` no
    /// longer holds its lease; 404 if there is no such job.
    pub async fn ack(&self, queue: &str, id: i64, token: &str) -> StoreResult<()> {
        let (queue, token) = (queue.to_owned(), token.to_owned());
        self.queue_write(move |conn| ack(conn, &queue, id, &token))
            .await
    }

    /// Acknowledges several leased jobs in one transaction; each answers for itself (a lost
    /// lease or a missing job does not stop the others).
    pub async fn ack_many(
        &self,
        queue: &str,
        leases: Vec<(i64, String)>,
    ) -> StoreResult<Vec<AckOutcome>> {
        let queue = queue.to_owned();
        self.queue_write(move |conn| ack_many(conn, &queue, &leases))
            .await
    }

    /// Gives a leased job back: ready again after `delay_ms` (or the queue's backoff), or dead
    /// if it has used its attempts.
    pub async fn nack(
        &self,
        queue: &str,
        id: i64,
        token: &str,
        delay_ms: Option<i64>,
        error: Option<String>,
    ) -> StoreResult<Nacked> {
        let (queue, token) = (queue.to_owned(), token.to_owned());
        self.queue_write(move |conn| nack(conn, &queue, id, &token, delay_ms, error.as_deref()))
            .await
    }

    /// The dead-letter list, oldest first, after job id `after`.
    pub async fn dead_jobs(
        &self,
        queue: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueueJob>> {
        let queue = queue.to_owned();
        self.read(move |conn| dead(conn, &queue, after, limit))
            .await
    }

    /// Makes one dead job (or all) ready again with fresh attempts; returns how many.
    pub async fn retry_dead(&self, queue: &str, id: Option<i64>) -> StoreResult<i64> {
        let queue = queue.to_owned();
        self.queue_write(move |conn| retry_dead(conn, &queue, id))
            .await
    }
}
