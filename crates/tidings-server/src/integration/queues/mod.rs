//! Work queues at the edge: one front over durable queues (in the store, shared by every node)
//! and memory queues (this node only, lost on restart), with long-poll leases, per-queue rate
//! limits and the one authorization check.
//!
//! Layout: this file — [`Queues`], the service the handlers call; `api` — the HTTP routes;
//! `memory` — the memory queues' state; `bucket` — the lease rate limit.

pub mod api;
mod bucket;
pub mod memory;

use crate::error::{ApiError, ApiResult};
use crate::integration::auth::QueueCaller;
use bucket::TokenBucket;
use memory::MemoryQueue;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tidings_store::queues::{
    AckOutcome, Enqueued, Nacked, NewJob, QueueJob, QueueSpec, QueueStats,
};
use tidings_store::{Store, StoreError};
use tokio::sync::Notify;
use utoipa::ToSchema;

/// How often a waiting lease on a durable queue looks again when nothing woke it: delayed
/// jobs coming due, leases expiring, and jobs enqueued on other nodes (this node's own
/// enqueues wake it at once).
const DURABLE_POLL: Duration = Duration::from_millis(100);

/// What a caller wants to do with a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Create, list, inspect or delete queues; read and retry dead letters.
    Manage,
    /// Enqueue jobs.
    Produce,
    /// Lease, ack and nack jobs.
    Consume,
}

/// The one authorization check of the queue routes: admins may do everything; a service with
/// the `queues` scope may produce and consume (work is what services share through queues),
/// but creating, deleting and inspecting queues stays with admins; other users may do nothing.
pub fn may_use_queue(
    caller: &QueueCaller,
    _queue: Option<&str>,
    action: QueueAction,
) -> ApiResult<()> {
    match caller {
        QueueCaller::User(user) if user.is_admin => Ok(()),
        QueueCaller::User(_) => Err(ApiError::forbidden(
            "queue_forbidden",
            "only admins and services with the queues scope may use queues",
        )),
        QueueCaller::Service(service) => {
            service.require("queues")?;
            match action {
                QueueAction::Produce | QueueAction::Consume => Ok(()),
                QueueAction::Manage => Err(ApiError::forbidden(
                    "queue_forbidden",
                    "creating, deleting and inspecting queues is for admins",
                )),
            }
        }
    }
}

/// A queue as the API shows it: its definition, where it lives and what it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueInfo {
    /// Its definition.
    #[serde(flatten)]
    pub spec: QueueSpec,
    /// True: in the store, shared by every node, survives restarts. False: a memory queue.
    pub durable: bool,
    /// What happens to its jobs on a restart, in words.
    pub persistence: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Depths per state and counters.
    pub stats: QueueStats,
}

const DURABLE_NOTE: &str =
    "durable: kept in the store, shared by every node; acknowledged enqueues survive restarts";
const MEMORY_NOTE: &str = "memory: held in this node's memory only; its jobs are lost when the \
     node restarts and other nodes do not see this queue";

struct Memory {
    queue: Mutex<MemoryQueue>,
    created_at: String,
}

/// The queue service; cheap to clone.
#[derive(Clone, Default)]
pub struct Queues {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    memory: RwLock<HashMap<String, Arc<Memory>>>,
    /// Rung when a queue may have jobs ready (enqueue, nack, retry), to wake waiting leases.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Lease rate limits, per queue (per node).
    buckets: Mutex<HashMap<String, TokenBucket>>,
    /// Durable queues' rate limits as last read, so a lease needs no extra read.
    limits: Mutex<HashMap<String, Option<i64>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a queue's lock leaves it usable: its state is updated in place
    // by code that does not panic on input.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queues {
    fn memory(&self, name: &str) -> Option<Arc<Memory>> {
        self.inner
            .memory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn waker(&self, name: &str) -> Arc<Notify> {
        lock(&self.inner.wakers)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn wake(&self, name: &str) {
        if let Some(waker) = lock(&self.inner.wakers).get(name) {
            waker.notify_waiters();
        }
    }

    fn forget(&self, name: &str) {
        lock(&self.inner.wakers).remove(name);
        lock(&self.inner.buckets).remove(name);
        lock(&self.inner.limits).remove(name);
    }

    /// Creates a queue, durable (in the store) or in this node's memory.
    pub async fn create(
        &self,
        store: &Store,
        spec: QueueSpec,
        durable: bool,
    ) -> ApiResult<QueueInfo> {
        let taken = || {
            ApiError::from(StoreError::conflict(
                "queue_exists",
                format!("a queue named {} exists", spec.name),
            ))
        };
        if self.memory(&spec.name).is_some() {
            return Err(taken());
        }
        if durable {
            let stored = store.create_queue(spec.clone()).await?;
            self.forget(&spec.name);
            return Ok(QueueInfo {
                spec: stored.spec,
                durable: true,
                persistence: DURABLE_NOTE.to_owned(),
                created_at: stored.created_at,
                stats: QueueStats::default(),
            });
        }
        match store.queue(&spec.name).await {
            Ok(_) => return Err(taken()),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let created_at = tidings_store::now_rfc3339();
        {
            let mut memory = self.inner.memory.write().unwrap_or_else(|p| p.into_inner());
            if memory.contains_key(&spec.name) {
                return Err(taken());
            }
            memory.insert(
                spec.name.clone(),
                Arc::new(Memory {
                    queue: Mutex::new(MemoryQueue::new(spec.clone())),
                    created_at: created_at.clone(),
                }),
            );
        }
        self.forget(&spec.name);
        Ok(QueueInfo {
            spec,
            durable: false,
            persistence: MEMORY_NOTE.to_owned(),
            created_at,
            stats: QueueStats::default(),
        })
    }

    fn memory_info(memory: &Memory) -> QueueInfo {
        let mut queue = lock(&memory.queue);
        QueueInfo {
            spec: queue.spec().clone(),
            durable: false,
            persistence: MEMORY_NOTE.to_owned(),
            created_at: memory.created_at.clone(),
            stats: queue.stats(now_ms()),
        }
    }

    /// One queue with its counts.
    pub async fn get(&self, store: &Store, name: &str) -> ApiResult<QueueInfo> {
        if let Some(memory) = self.memory(name) {
            return Ok(Self::memory_info(&memory));
        }
        let stored = store.queue(name).await?;
        let stats = store.queue_stats(name).await?;
        lock(&self.inner.limits).insert(name.to_owned(), stored.spec.rate_limit);
        Ok(QueueInfo {
            spec: stored.spec,
            durable: true,
            persistence: DURABLE_NOTE.to_owned(),
            created_at: stored.created_at,
            stats,
        })
    }

    /// Every queue (durable and this node's memory queues), by name.
    pub async fn list(&self, store: &Store) -> ApiResult<Vec<QueueInfo>> {
        let mut out = Vec::new();
        for stored in store.queues().await? {
            let stats = match store.queue_stats(&stored.spec.name).await {
                Ok(stats) => stats,
                // Deleted by another node between the two reads.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(QueueInfo {
                spec: stored.spec,
                durable: true,
                persistence: DURABLE_NOTE.to_owned(),
                created_at: stored.created_at,
                stats,
            });
        }
        let memories: Vec<Arc<Memory>> = self
            .inner
            .memory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        out.extend(memories.iter().map(|m| Self::memory_info(m)));
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    /// Deletes a queue and every job in it; how many jobs went.
    pub async fn delete(&self, store: &Store, name: &str) -> ApiResult<i64> {
        let removed = self
            .inner
            .memory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let dropped = match removed {
            Some(memory) => lock(&memory.queue).len() as i64,
            None => store.delete_queue(name).await?,
        };
        // Waiting leases look again and find the queue gone.
        self.wake(name);
        self.forget(name);
        Ok(dropped)
    }

    /// Enqueues jobs, all or none.
    pub async fn enqueue(
        &self,
        store: &Store,
        name: &str,
        jobs: Vec<NewJob>,
    ) -> ApiResult<Vec<Enqueued>> {
        let out = match self.memory(name) {
            Some(memory) => lock(&memory.queue).enqueue(jobs, now_ms()),
            None => store.enqueue(name, jobs).await?,
        };
        self.wake(name);
        Ok(out)
    }

    /// How many of `max` jobs the queue's rate limit allows now (0: when to look again).
    async fn allowance(
        &self,
        store: &Store,
        name: &str,
        memory: Option<&Memory>,
        max: usize,
    ) -> ApiResult<(usize, Option<Duration>)> {
        let limit = match memory {
            Some(memory) => lock(&memory.queue).spec().rate_limit,
            None => {
                let known = lock(&self.inner.limits).get(name).copied();
                match known {
                    Some(limit) => limit,
                    None => {
                        let limit = store.queue(name).await?.spec.rate_limit;
                        lock(&self.inner.limits).insert(name.to_owned(), limit);
                        limit
                    }
                }
            }
        };
        let Some(limit) = limit else {
            return Ok((max, None));
        };
        let mut buckets = lock(&self.inner.buckets);
        let bucket = buckets
            .entry(name.to_owned())
            .or_insert_with(|| TokenBucket::new(limit as f64, Instant::now()));
        Ok(bucket.take(max, Instant::now()))
    }

    fn refund(&self, name: &str, unused: usize) {
        if unused > 0
            && let Some(bucket) = lock(&self.inner.buckets).get_mut(name)
        {
            bucket.refund(unused);
        }
    }

    /// Leases up to `max` jobs, waiting up to `wait` for some to be ready.
    pub async fn lease(
        &self,
        store: &Store,
        name: &str,
        max: usize,
        wait: Duration,
    ) -> ApiResult<Vec<QueueJob>> {
        let leased = self.lease_or_wait(store, name, max, wait).await;
        if leased
            .as_ref()
            .is_err_and(|e| e.status == axum::http::StatusCode::NOT_FOUND)
        {
            // No such queue: keep no waker or limit for a name that does not exist.
            self.forget(name);
        }
        leased
    }

    async fn lease_or_wait(
        &self,
        store: &Store,
        name: &str,
        max: usize,
        wait: Duration,
    ) -> ApiResult<Vec<QueueJob>> {
        let deadline = Instant::now() + wait;
        let waker = self.waker(name);
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            // Registered before looking, so an enqueue between the look and the wait wakes it.
            notified.as_mut().enable();
            let memory = self.memory(name);
            let (allowed, throttled) = self.allowance(store, name, memory.as_deref(), max).await?;
            let mut next_due = None;
            if allowed > 0 {
                let jobs = match &memory {
                    Some(memory) => {
                        let token = uuid::Uuid::new_v4().simple().to_string();
                        let mut queue = lock(&memory.queue);
                        let jobs = queue.lease(allowed, &token, now_ms());
                        next_due = queue.next_due();
                        jobs
                    }
                    None => store.lease(name, allowed as i64).await?.1,
                };
                self.refund(name, allowed - jobs.len());
                if !jobs.is_empty() {
                    return Ok(jobs);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut nap = deadline - now;
            match (&memory, next_due) {
                (Some(_), Some(due)) => {
                    let until = Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0));
                    nap = nap.min(until.max(Duration::from_millis(1)));
                }
                (Some(_), None) => {}
                (None, _) => nap = nap.min(DURABLE_POLL),
            }
            if let Some(throttled) = throttled {
                nap = nap.min(throttled);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Acknowledges a leased job.
    pub async fn ack(&self, store: &Store, name: &str, id: i64, token: &str) -> ApiResult<()> {
        match self.memory(name) {
            Some(memory) => Ok(lock(&memory.queue).ack(id, token, now_ms())?),
            None => Ok(store.ack(name, id, token).await?),
        }
    }

    /// Acknowledges several leased jobs at once; each answers for itself.
    pub async fn ack_many(
        &self,
        store: &Store,
        name: &str,
        leases: Vec<(i64, String)>,
    ) -> ApiResult<Vec<AckOutcome>> {
        match self.memory(name) {
            Some(memory) => Ok(lock(&memory.queue).ack_many(&leases, now_ms())),
            None => Ok(store.ack_many(name, leases).await?),
        }
    }

    /// Gives a leased job back, or buries it after its last attempt.
    pub async fn nack(
        &self,
        store: &Store,
        name: &str,
        id: i64,
        token: &str,
        delay_ms: Option<i64>,
        error: Option<String>,
    ) -> ApiResult<Nacked> {
        let nacked = match self.memory(name) {
            Some(memory) => lock(&memory.queue).nack(id, token, delay_ms, error, now_ms())?,
            None => store.nack(name, id, token, delay_ms, error).await?,
        };
        self.wake(name);
        Ok(nacked)
    }

    /// The dead-letter list after job id `after`.
    pub async fn dead(
        &self,
        store: &Store,
        name: &str,
        after: i64,
        limit: usize,
    ) -> ApiResult<Vec<QueueJob>> {
        match self.memory(name) {
            Some(memory) => Ok(lock(&memory.queue).dead(after, limit, now_ms())),
            None => Ok(store.dead_jobs(name, after, limit as i64).await?),
        }
    }

    /// Retries one dead job, or all; how many.
    pub async fn retry_dead(&self, store: &Store, name: &str, id: Option<i64>) -> ApiResult<i64> {
        let retried = match self.memory(name) {
            Some(memory) => lock(&memory.queue).retry_dead(id, now_ms())?,
            None => store.retry_dead(name, id).await?,
        };
        self.wake(name);
        Ok(retried)
    }
}
