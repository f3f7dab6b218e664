//! Memory queues (`durable: false`): the same disciplines, leases, retries and dead letters
//! as the durable queues, held in this node's memory. They are fast and do not survive a
//! restart, and each node has its own. Pure state: the caller passes the time in.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use tidings_store::StoreError;
use tidings_store::queues::{
    AckOutcome, Discipline, Enqueued, IDEMPOTENCY_WINDOW_MS, LEASE_EXPIRED, Nacked, NackedTo,
    NewJob, QueueJob, QueueSpec, QueueStats,
};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the ready set, or (with a timer) waiting for its delay.
    Waiting,
    /// Leased until its timer.
    Leased,
    /// In the dead-letter list.
    Dead,
}

#[derive(Debug)]
struct Job {
    payload: Value,
    priority: i64,
    group: Option<String>,
    attempts: i64,
    enqueued_at: i64,
    state: State,
    /// When it is ready (waiting) or its lease expires (leased).
    visible_at: i64,
    token: Option<String>,
    last_error: Option<String>,
}

/// One memory queue.
#[derive(Debug)]
pub struct MemoryQueue {
    spec: QueueSpec,
    next_id: i64,
    jobs: HashMap<i64, Job>,
    /// Ready jobs in serving order: the first element is served first.
    ready: BTreeSet<(i64, i64, i64)>,
    /// Delayed jobs and leases, by when they come due.
    timers: BTreeSet<(i64, i64)>,
    dead: BTreeSet<i64>,
    keys: HashMap<String, i64>,
    /// Keys in the order they were stored, to forget them after the window.
    key_ages: VecDeque<(i64, String)>,
    enqueued: i64,
    acked: i64,
    failed: i64,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(spec: QueueSpec) -> MemoryQueue {
        MemoryQueue {
            spec,
            next_id: 1,
            jobs: HashMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            dead: BTreeSet::new(),
            keys: HashMap::new(),
            key_ages: VecDeque::new(),
            enqueued: 0,
            acked: 0,
            failed: 0,
        }
    }

    /// Its definition.
    pub fn spec(&self) -> &QueueSpec {
        &self.spec
    }

    fn order_key(&self, id: i64, priority: i64) -> (i64, i64, i64) {
        match self.spec.discipline {
            Discipline::Fifo => (0, id, id),
            Discipline::Lifo => (0, id.saturating_neg(), id),
            Discipline::Priority => (priority.saturating_neg(), id, id),
        }
    }

    /// Moves what came due by `now` along: delayed jobs become ready, expired leases ready
    /// again (or dead after the last attempt).
    fn promote(&mut self, now: i64) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let max_attempts = self.spec.max_attempts;
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.state == State::Leased {
                job.token = None;
                job.last_error = Some(LEASE_EXPIRED.to_owned());
                if job.attempts >= max_attempts {
                    job.state = State::Dead;
                    self.dead.insert(id);
                    self.failed += 1;
                    continue;
                }
            }
            job.state = State::Waiting;
            let priority = job.priority;
            let key = self.order_key(id, priority);
            self.ready.insert(key);
        }
    }

    /// When the next delayed job or lease comes due, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Enqueues jobs (payloads already checked to be JSON).
    pub fn enqueue(&mut self, jobs: Vec<NewJob>, now: i64) -> Vec<Enqueued> {
        while let Some((at, _)) = self.key_ages.front() {
            if *at >= now - IDEMPOTENCY_WINDOW_MS {
                break;
            }
            if let Some((_, key)) = self.key_ages.pop_front() {
                self.keys.remove(&key);
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some(id) = job.idempotency_key.as_ref().and_then(|k| self.keys.get(k)) {
                out.push(Enqueued {
                    id: *id,
                    duplicate: true,
                });
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let visible_at = now.saturating_add(job.delay_ms.max(0));
            let payload = serde_json::from_str(&job.payload).unwrap_or(Value::String(job.payload));
            self.jobs.insert(
                id,
                Job {
                    payload,
                    priority: job.priority,
                    group: job.group,
                    attempts: 0,
                    enqueued_at: now,
                    state: State::Waiting,
                    visible_at,
                    token: None,
                    last_error: None,
                },
            );
            if visible_at > now {
                self.timers.insert((visible_at, id));
            } else {
                let key = self.order_key(id, job.priority);
                self.ready.insert(key);
            }
            if let Some(key) = job.idempotency_key {
                self.keys.insert(key.clone(), id);
                self.key_ages.push_back((now, key));
            }
            self.enqueued += 1;
            out.push(Enqueued {
                id,
                duplicate: false,
            });
        }
        out
    }

    /// Leases up to `max` ready jobs under `token`.
    pub fn lease(&mut self, max: usize, token: &str, now: i64) -> Vec<QueueJob> {
        self.promote(now);
        let expires = now.saturating_add(self.spec.visibility_timeout_ms);
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, _, id)) = self.ready.pop_first() else {
                break;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            job.state = State::Leased;
            job.attempts += 1;
            job.visible_at = expires;
            job.token = Some(token.to_owned());
            self.timers.insert((expires, id));
            out.push(QueueJob {
                id,
                payload: job.payload.clone(),
                priority: job.priority,
                group: job.group.clone(),
                attempts: job.attempts,
                enqueued_at_ms: job.enqueued_at,
                lease_token: job.token.clone(),
                lease_expires_at_ms: Some(expires),
                last_error: job.last_error.clone(),
            });
        }
        out
    }

    /// The job's attempts if `token` holds its live lease.
    fn check_lease(&mut self, id: i64, token: &str, now: i64) -> Result<i64, StoreError> {
        self.promote(now);
        let job = self.jobs.get(&id).ok_or(StoreError::not_found("job"))?;
        if job.state != State::Leased || job.token.as_deref() != Some(token) {
            return Err(StoreError::conflict(
                "lease_lost",
                "this lease is no longer held: it expired, the job was leased again, or it was \
                 already acked or nacked",
            ));
        }
        Ok(job.attempts)
    }

    /// Acknowledges a leased job.
    pub fn ack(&mut self, id: i64, token: &str, now: i64) -> Result<(), StoreError> {
        self.check_lease(id, token, now)?;
        if let Some(job) = self.jobs.remove(&id) {
            self.timers.remove(&(job.visible_at, id));
        }
        self.acked += 1;
        Ok(())
    }

    /// Acknowledges several leased jobs; each answers for itself.
    pub fn ack_many(&mut self, leases: &[(i64, String)], now: i64) -> Vec<AckOutcome> {
        leases
            .iter()
            .map(|(id, token)| match self.ack(*id, token, now) {
                Ok(()) => AckOutcome::Acked,
                Err(StoreError::NotFound { .. }) => AckOutcome::NotFound,
                Err(_) => AckOutcome::LeaseLost,
            })
            .collect()
    }

    /// Gives a leased job back (ready after `delay_ms` or the backoff), or buries it.
    pub fn nack(
        &mut self,
        id: i64,
        token: &str,
        delay_ms: Option<i64>,
        error: Option<String>,
        now: i64,
    ) -> Result<Nacked, StoreError> {
        let attempts = self.check_lease(id, token, now)?;
        let delay = delay_ms
            .unwrap_or_else(|| self.spec.backoff.delay_ms(attempts))
            .max(0);
        let out_of_attempts = attempts >= self.spec.max_attempts;
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(StoreError::not_found("job"));
        };
        self.timers.remove(&(job.visible_at, id));
        job.token = None;
        job.last_error = Some(error.unwrap_or_else(|| "nacked".to_owned()));
        if out_of_attempts {
            job.state = State::Dead;
            self.dead.insert(id);
            self.failed += 1;
            return Ok(Nacked {
                id,
                state: NackedTo::Dead,
                ready_at_ms: None,
            });
        }
        job.state = State::Waiting;
        job.visible_at = now.saturating_add(delay);
        let (ready_at, priority) = (job.visible_at, job.priority);
        if delay > 0 {
            self.timers.insert((ready_at, id));
        } else {
            let key = self.order_key(id, priority);
            self.ready.insert(key);
        }
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

    /// Depths per state and counters.
    pub fn stats(&mut self, now: i64) -> QueueStats {
        self.promote(now);
        let (mut delayed, mut leased) = (0, 0);
        for job in self.jobs.values() {
            match job.state {
                State::Leased => leased += 1,
                State::Waiting if job.visible_at > now => delayed += 1,
                _ => {}
            }
        }
        let oldest = self
            .ready
            .iter()
            .filter_map(|(_, _, id)| self.jobs.get(id).map(|j| j.enqueued_at))
            .min();
        QueueStats {
            ready: self.ready.len() as i64,
            delayed,
            leased,
            dead: self.dead.len() as i64,
            oldest_ready_age_ms: oldest.map(|at| (now - at).max(0)),
            enqueued: self.enqueued,
            acked: self.acked,
            failed: self.failed,
        }
    }

    /// The dead-letter list after job id `after`, oldest first.
    pub fn dead(&mut self, after: i64, limit: usize, now: i64) -> Vec<QueueJob> {
        self.promote(now);
        self.dead
            .range(after.saturating_add(1)..)
            .take(limit)
            .filter_map(|id| {
                self.jobs.get(id).map(|job| QueueJob {
                    id: *id,
                    payload: job.payload.clone(),
                    priority: job.priority,
                    group: job.group.clone(),
                    attempts: job.attempts,
                    enqueued_at_ms: job.enqueued_at,
                    lease_token: None,
                    lease_expires_at_ms: None,
                    last_error: job.last_error.clone(),
                })
            })
            .collect()
    }

    /// Makes one dead job (or all) ready again with fresh attempts; how many.
    pub fn retry_dead(&mut self, id: Option<i64>, now: i64) -> Result<i64, StoreError> {
        self.promote(now);
        let ids: Vec<i64> = match id {
            Some(id) if self.dead.contains(&id) => vec![id],
            Some(_) => return Err(StoreError::not_found("dead job")),
            None => self.dead.iter().copied().collect(),
        };
        for id in &ids {
            self.dead.remove(id);
            if let Some(job) = self.jobs.get_mut(id) {
                job.state = State::Waiting;
                job.attempts = 0;
                job.visible_at = now;
                let priority = job.priority;
                let key = self.order_key(*id, priority);
                self.ready.insert(key);
            }
        }
        Ok(ids.len() as i64)
    }

    /// How many jobs it holds (all states).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether it holds no job.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_store::queues::Backoff;

    fn queue(discipline: Discipline) -> MemoryQueue {
        MemoryQueue::new(QueueSpec {
            name: "q".into(),
            discipline,
            visibility_timeout_ms: 100,
            max_attempts: 2,
            backoff: Backoff::default(),
            rate_limit: None,
        })
    }

    fn job(n: i64, priority: i64) -> NewJob {
        NewJob {
            payload: n.to_string(),
            priority,
            delay_ms: 0,
            idempotency_key: None,
            group: None,
        }
    }

    fn served(q: &mut MemoryQueue, now: i64) -> Vec<i64> {
        q.lease(100, "t", now)
            .iter()
            .map(|j| j.payload.as_i64().unwrap_or(-1))
            .collect()
    }

    #[test]
    fn disciplines_order_jobs() {
        let priorities = [1, 5, 1, 9, 5, 0];
        let mut orders = Vec::new();
        for discipline in [Discipline::Fifo, Discipline::Lifo, Discipline::Priority] {
            let mut q = queue(discipline);
            let jobs = priorities
                .iter()
                .enumerate()
                .map(|(i, p)| job(i as i64, *p))
                .collect();
            q.enqueue(jobs, 0);
            orders.push(served(&mut q, 0));
        }
        assert_eq!(orders[0], vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(orders[1], vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(orders[2], vec![3, 1, 4, 0, 2, 5]);
    }

    #[test]
    fn an_expired_lease_redelivers_then_buries() {
        let mut q = queue(Discipline::Fifo);
        q.enqueue(vec![job(7, 0)], 0);
        assert_eq!(served(&mut q, 0), vec![7]);
        assert!(served(&mut q, 99).is_empty());
        assert_eq!(served(&mut q, 100), vec![7]);
        assert!(served(&mut q, 250).is_empty());
        let stats = q.stats(250);
        assert_eq!((stats.dead, stats.failed, stats.ready), (1, 1, 0));
        assert_eq!(q.retry_dead(None, 250).ok(), Some(1));
        assert_eq!(served(&mut q, 250), vec![7]);
    }
}
