//! The store's domain operations, written once over [`crate::sql::Connection`] and run by
//! either adapter.
//!
//! Layout:
//! - this file — [`Store`], the handle the engine talks to: the write path (jobs run inside a
//!   group commit by the adapter's writer), the read path (a pool of connections), the routed
//!   watermark and the notices the push layer listens to, and applying committed [`Effect`]s
//!   to the in-memory index.
//! - `users`, `circles`, `subscriptions`, `activities`, `inbox`, `feeds`, `compat` — domain
//!   operations.
//! - `queues` — durable work queues (mutable work state, outside the log lock on PostgreSQL).
//! - `router` — fans new activities out to inboxes, in log order, after they commit.
//! - `verify` — re-checks every digest and every stream chain.
//! - `hot_load` — builds the in-memory [`crate::hot`] index from the tables at start-up.
//! - `offline` — operations the command line runs beside a live server (admin, verify).
//! - `copy` — `tidings store copy`: a whole store into an empty one.
//! - `rebuild` — `tidings rebuild`: the routed projections wiped and re-derived from the log.
//! - `search` — the full-text index (a projection of the log) and searching it.
//! - `moderation` — reports, moderators' decisions, circle bans and the moderation log.
//! - `conversations`, `groups` — direct messages grouped by participants, and user groups
//!   (decision 0027).
//! - `media` — media objects' metadata, which activities attach them, avatars.
//!
//! Where the SQL runs is the adapter's business (`crate::adapters`): the embedded SQLite
//! database with one writer thread, or PostgreSQL with a writer per node serialised by the
//! log lock and a change log every node applies.

mod activities;
mod bus_modes;
mod circles;
mod compat;
pub(crate) mod conversations;
pub(crate) mod copy;
mod feeds;
pub(crate) mod groups;
pub(crate) mod hot_load;
mod inbox;
pub(crate) mod integration;
pub(crate) mod media;
pub(crate) mod moderation;
pub(crate) mod offline;
mod queues;
pub(crate) mod rebuild;
pub(crate) mod router;
mod schedules;
pub(crate) mod search;
mod subscriptions;
pub(crate) mod users;
pub(crate) mod verify;

pub use offline::AdminConnection;

use crate::adapters::{self, Backend};
use crate::hot::{Effect, HotIndex};
use crate::model::{LiveSession, RoutedNotice};
use crate::sql::Connection;
use crate::{StoreError, StoreResult};
use std::sync::{Arc, Mutex, RwLock};
use tidings_core::routing::Via;
use tokio::sync::{Semaphore, broadcast, oneshot, watch};

/// Sent back to a job's caller once its transaction's fate is known.
pub(crate) type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A unit of work for the writer: runs inside a savepoint, records its effects on the hot
/// index, says whether it succeeded.
pub(crate) type Job = Box<dyn FnOnce(&Connection, &mut Effects) -> (bool, Reply) + Send>;

/// The queue of write jobs for a node's writer thread.
pub(crate) struct JobQueue(Mutex<Option<std::sync::mpsc::Sender<Job>>>);

impl JobQueue {
    /// A queue and the receiving end its writer thread takes.
    pub(crate) fn new() -> (JobQueue, std::sync::mpsc::Receiver<Job>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        (JobQueue(Mutex::new(Some(sender))), receiver)
    }

    /// Queues a job; `Closed` once the queue is closed.
    pub(crate) fn submit(&self, job: Job) -> StoreResult<()> {
        let jobs = self.0.lock().map_err(|_| StoreError::Closed)?;
        let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)
    }

    /// Refuses new jobs; the writer ends once it has run the ones queued.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.0.lock() {
            jobs.take();
        }
    }
}

/// What a job records besides its SQL: effects on the hot index, and the stream heads it
/// advanced (so later jobs of the same batch chain onto them). Both are kept only if the job
/// and then the batch's commit succeed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) list: Vec<Effect>,
    /// Stream, the user whose outbox it is (if it is one), new head.
    pub(crate) heads: Vec<(String, Option<i64>, StreamHead)>,
}

impl Effects {
    /// Records an effect on the hot index.
    pub(crate) fn push(&mut self, effect: Effect) {
        self.list.push(effect);
    }

    /// Records a stream's new head (`owner`: the user whose outbox it is).
    pub(crate) fn advance(&mut self, stream: String, owner: Option<i64>, head: StreamHead) {
        self.heads.push((stream, owner, head));
    }

    /// The head this job itself already advanced the stream to, if any.
    pub(crate) fn own_head(&self, stream: &str) -> Option<&StreamHead> {
        self.heads
            .iter()
            .rev()
            .find(|(s, _, _)| s == stream)
            .map(|(_, _, h)| h)
    }
}

/// The last link of a stream: its position and chain hash.
#[derive(Debug, Clone)]
pub(crate) struct StreamHead {
    /// Position of the last link (1-based).
    pub pos: i64,
    /// Chain hash of the last link.
    pub chain: String,
}

/// Stream heads, held by the writer so an append never has to look the head up in a B-tree.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    pub(crate) committed: CommittedHeads,
    /// Heads advanced by jobs of the batch being committed, with their outbox's owner.
    pub(crate) batch: std::collections::HashMap<String, (Option<i64>, StreamHead)>,
}

impl Heads {
    /// The current head of a stream as the running job must see it (`owner`: the user whose
    /// outbox it is).
    pub(crate) fn get(&self, stream: &str, owner: Option<i64>) -> Option<StreamHead> {
        match self.batch.get(stream) {
            Some((_, head)) => Some(head.clone()),
            None => self.committed.get(stream, owner),
        }
    }

    /// Keeps the batch's heads (its transaction committed).
    pub(crate) fn commit(&mut self) {
        for (stream, (owner, head)) in std::mem::take(&mut self.batch) {
            self.committed.insert(stream, owner, head);
        }
    }
}

/// Committed heads. Every user has an outbox, so theirs are packed by user id (position and
/// the chain's 32 bytes, 40 bytes a user); a name-keyed map of `String`s held ~220 bytes a
/// user. Other streams (circles) and chains in another form are kept by name.
#[derive(Debug, Default)]
pub(crate) struct CommittedHeads {
    outboxes: crate::hot::IdMap<PackedHead>,
    named: std::collections::HashMap<String, StreamHead>,
}

/// A head whose chain is `sha256:` and 64 hex digits, as bytes; position 0 means none.
#[derive(Debug, Default, Clone, Copy)]
struct PackedHead {
    pos: i64,
    chain: [u8; 32],
}

/// How every chain hash is written.
const CHAIN_PREFIX: &str = "sha256:";

impl CommittedHeads {
    /// The committed head of a stream (`owner`: the user whose outbox it is).
    pub(crate) fn get(&self, stream: &str, owner: Option<i64>) -> Option<StreamHead> {
        let packed = owner
            .and_then(|id| self.outboxes.get(id))
            .filter(|head| head.pos > 0);
        match packed {
            Some(head) => Some(StreamHead {
                pos: head.pos,
                chain: format!("{CHAIN_PREFIX}{}", hex::encode(head.chain)),
            }),
            None => self.named.get(stream).cloned(),
        }
    }

    /// Records a stream's new head.
    pub(crate) fn insert(&mut self, stream: String, owner: Option<i64>, head: StreamHead) {
        let mut chain = [0u8; 32];
        let packed = head
            .chain
            .strip_prefix(CHAIN_PREFIX)
            .is_some_and(|hex| hex::decode_to_slice(hex, &mut chain).is_ok());
        match owner {
            Some(id) if packed && head.pos > 0 => {
                *self.outboxes.entry(id) = PackedHead {
                    pos: head.pos,
                    chain,
                };
                if !self.named.is_empty() {
                    self.named.remove(&stream);
                }
            }
            _ => {
                // A named head supersedes a packed one.
                if let Some(id) = owner
                    && self.outboxes.get(id).is_some_and(|h| h.pos > 0)
                {
                    *self.outboxes.entry(id) = PackedHead::default();
                }
                self.named.insert(stream, head);
            }
        }
    }

    /// Gives back the spare room left by loading.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.outboxes.shrink_to_fit();
        self.named.shrink_to_fit();
    }
}

/// How an entry's `via` is stored: 0 for addressed, a subscription's id, or minus the author's
/// user id for a follow (`author_id` is the activity's author). None for the author's own copy,
/// which is never written.
pub(crate) fn via_code(via: &Via, author_id: i64) -> Option<i64> {
    match via {
        Via::Author => None,
        Via::Addressed => Some(0),
        Via::Subscription { id, .. } => Some(*id),
        Via::Follow { .. } => Some(follow_via_code(author_id)),
    }
}

/// Writes inbox entries `(user, seq, via code)`, skipping those that exist; returns the
/// `(user, seq)` of the rows it wrote. SQLite takes them one prepared insert at a time
/// (in-process, cheap); PostgreSQL in one statement over arrays, since each statement there is
/// a round trip.
pub(crate) fn write_entries(
    conn: &Connection,
    entries: &[(i64, i64, i64)],
) -> StoreResult<Vec<(i64, i64)>> {
    let mut written = Vec::with_capacity(entries.len());
    match conn.engine() {
        crate::sql::Engine::Sqlite => {
            let mut insert = conn.prepare_cached(
                "INSERT INTO inbox_entries(user_id, seq, via) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            for &(user, seq, via) in entries {
                if insert.execute(crate::sql::params![user, seq, via])? > 0 {
                    written.push((user, seq));
                }
            }
        }
        crate::sql::Engine::Postgres => {
            if entries.is_empty() {
                return Ok(written);
            }
            let users: Vec<i64> = entries.iter().map(|e| e.0).collect();
            let seqs: Vec<i64> = entries.iter().map(|e| e.1).collect();
            let vias: Vec<i64> = entries.iter().map(|e| e.2).collect();
            let rows = conn
                .prepare_cached(
                    "INSERT INTO inbox_entries(user_id, seq, via)
                     SELECT * FROM unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]),
                                          CAST(?3 AS BIGINT[]))
                     ON CONFLICT DO NOTHING
                     RETURNING user_id, seq",
                )?
                .query_map(crate::sql::params![users, seqs, vias], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
            for row in rows {
                written.push(row?);
            }
            // RETURNING gives no order; keep the caller's.
            let order: std::collections::HashMap<(i64, i64), usize> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| ((e.0, e.1), i))
                .collect();
            written.sort_by_key(|k| order.get(k).copied().unwrap_or(usize::MAX));
        }
    }
    Ok(written)
}

/// Writes a routing slice's inbox entries `(user, seq, via code)`, skipping any that exist,
/// without reporting which: SQLite one prepared insert at a time; PostgreSQL with one binary
/// `COPY` (about twice as fast per row as an insert), or, should an entry exist already, one
/// insert over arrays that skips it.
pub(crate) fn insert_entries(conn: &Connection, entries: &[(i64, i64, i64)]) -> StoreResult<()> {
    match conn.engine() {
        crate::sql::Engine::Sqlite => {
            let mut insert = conn.prepare_cached(
                "INSERT INTO inbox_entries(user_id, seq, via) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            for &(user, seq, via) in entries {
                insert.execute(crate::sql::params![user, seq, via])?;
            }
        }
        crate::sql::Engine::Postgres => {
            if entries.is_empty() {
                return Ok(());
            }
            // A slice's seqs are past the watermark, where nothing else writes entries (a
            // follow's backfill stops at it), so COPY's lack of conflict handling costs
            // nothing; the savepoint keeps the slice alive should that ever change.
            conn.execute_batch("SAVEPOINT entries")?;
            match conn.copy_in_triples("inbox_entries (user_id, seq, via)", entries) {
                Ok(_) => conn.execute_batch("RELEASE entries")?,
                Err(e) if e.pg_code() == Some(UNIQUE_VIOLATION) => {
                    conn.execute_batch("ROLLBACK TO entries; RELEASE entries")?;
                    let users: Vec<i64> = entries.iter().map(|e| e.0).collect();
                    let seqs: Vec<i64> = entries.iter().map(|e| e.1).collect();
                    let vias: Vec<i64> = entries.iter().map(|e| e.2).collect();
                    conn.prepare_cached(
                        "INSERT INTO inbox_entries(user_id, seq, via)
                         SELECT * FROM unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]),
                                              CAST(?3 AS BIGINT[]))
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(crate::sql::params![users, seqs, vias])?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// PostgreSQL's SQLSTATE for a duplicate key.
const UNIQUE_VIOLATION: &str = "23505";

/// The stored `via` of entries written because their reader follows `author_id`.
pub(crate) fn follow_via_code(author_id: i64) -> i64 {
    -author_id
}

/// Bytes of stored activity bodies kept in memory for hydration.
const BODY_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// Most jobs committed together in one transaction.
pub(crate) const MAX_BATCH: usize = 512;

/// Routing notices kept for a slow push layer before it is told it lagged.
const NOTICE_BACKLOG: usize = 4096;

/// Writer steps slower than this are logged: they show up directly in publish latency.
pub(crate) const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Tunables of the store (both adapters).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Circles with more subscribers than this are merged into inboxes at read time.
    pub merge_threshold: i64,
    /// Producers with more followers than this are merged into followers' feeds at read time.
    pub follower_merge_threshold: i64,
    /// How many of a producer's recent activities a new follower gets copied in.
    pub follow_copy_limit: usize,
    /// Connections in the reader pool.
    pub readers: usize,
    /// What this node runs (cluster mode): a node without the router role never routes.
    pub router: bool,
    /// PostgreSQL: how often a node looks for other nodes' changes when nothing woke it (a
    /// bus doorbell wakes it at once; without a bus this is the replication delay).
    pub tail_poll: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            merge_threshold: 64,
            follower_merge_threshold: 1000,
            follow_copy_limit: 100,
            readers: 8,
            router: true,
            tail_poll: std::time::Duration::from_millis(5),
        }
    }
}

pub(crate) struct Shared {
    /// Where the SQL runs: the embedded database or PostgreSQL.
    pub(crate) backend: Backend,
    /// Bounds open reader connections.
    reader_permits: Arc<Semaphore>,
    /// Highest seq whose routing this node has applied.
    pub(crate) routed: watch::Sender<i64>,
    /// One notice per routing slice, for the push layer.
    notices: broadcast::Sender<Arc<RoutedNotice>>,
    /// Users whose feed counts changed outside routing's inbox entries (notifications raised
    /// or withdrawn, markers moved, items hidden), for the push layer's live counts.
    count_changes: broadcast::Sender<Arc<Vec<i64>>>,
    /// Session generation: bumped whenever sessions were revoked or users changed status, so a
    /// session read that raced one is not cached and live connections re-check credentials.
    pub(crate) session_changes: watch::Sender<u64>,
    /// Bumped whenever a change carrying [`Effect::BusNews`] is applied on this node.
    pub(crate) bus_news: watch::Sender<u64>,
    pub(crate) config: StoreConfig,
    /// The in-memory index inbox reads are served from.
    pub(crate) hot: RwLock<HotIndex>,
    /// Stream heads the writer keeps in memory: all of them on the embedded store; on
    /// PostgreSQL those it appended to since another writer last did (the rest are read in
    /// the log lock).
    pub(crate) heads: Mutex<Heads>,
    /// Stored activity bodies by seq: immutable, so never stale.
    pub(crate) bodies: moka::sync::Cache<i64, Arc<str>>,
    /// Live sessions by token hash; invalidated on revocation and status changes.
    pub(crate) sessions: moka::sync::Cache<String, LiveSession>,
}

impl Shared {
    /// The state every adapter starts from: `hot` loaded, `routed` the persisted watermark.
    pub(crate) fn new(
        backend: Backend,
        config: StoreConfig,
        hot: HotIndex,
        heads: Heads,
        routed: i64,
    ) -> Shared {
        Shared {
            backend,
            reader_permits: Arc::new(Semaphore::new(config.readers.max(1))),
            routed: watch::channel(routed).0,
            notices: broadcast::channel(NOTICE_BACKLOG).0,
            count_changes: broadcast::channel(NOTICE_BACKLOG).0,
            session_changes: watch::channel(0).0,
            bus_news: watch::channel(0).0,
            config,
            hot: RwLock::new(hot),
            heads: Mutex::new(heads),
            // Weighed by bytes: activities vary from a line to 20k characters.
            bodies: moka::sync::Cache::builder()
                .max_capacity(BODY_CACHE_BYTES)
                .weigher(|_seq: &i64, body: &Arc<str>| {
                    u32::try_from(body.len() + 64).unwrap_or(u32::MAX)
                })
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
        }
    }
}

/// Handle to the store; cheap to clone. Its methods speak the domain (publish, read an inbox,
/// join a circle), never SQL; the same methods run on the embedded store and on PostgreSQL.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

impl Store {
    /// Which engine holds the data.
    pub fn engine(&self) -> crate::sql::Engine {
        self.shared.backend.engine()
    }

    /// Stops accepting writes and waits for the background threads to finish what they hold.
    pub fn close(&self) {
        self.shared.backend.close();
    }

    /// Runs `f` on the writer inside the next group commit; resolves after the commit.
    /// `f` records the effects of its changes on the hot index in the given list.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: &Connection, fx: &mut Effects| {
            let result = f(conn, fx);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit: StoreResult<()>| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        });
        self.shared.backend.submit(job)?;
        // A job dropped unrun: the store is closing, or (PostgreSQL) the writer cannot reach
        // the database.
        rx.await.map_err(|_| self.shared.backend.refusal())?
    }

    /// Runs `f` on a pooled read connection off the async threads.
    pub(crate) async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let shared = self.shared.clone();
        let permit = shared
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = shared.backend.take_reader()?;
            let result = f(&conn);
            shared.backend.give_back(conn, shared.config.readers);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Applies every change another node committed before this call (PostgreSQL; nothing to do
    /// on the embedded store, whose one writer applies its changes before answering). After it,
    /// this node reads whatever any node had acknowledged.
    pub async fn sync(&self) -> StoreResult<()> {
        if let Backend::Postgres(_) = &self.shared.backend {
            let shared = self.shared.clone();
            self.read(move |conn| {
                if let Backend::Postgres(pg) = &shared.backend {
                    pg.catch_up(conn, &shared);
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// This node's position in the cluster's change log (PostgreSQL): the last change it has
    /// applied, so every write it acknowledged and every change it has read are at or below it.
    /// None on the embedded store, whose one node has applied everything it acknowledged.
    pub fn position(&self) -> Option<i64> {
        match &self.shared.backend {
            Backend::Postgres(pg) => Some(pg.applied()),
            Backend::Sqlite(_) => None,
        }
    }

    /// Makes this node reflect the change log up to `position` (a position another node
    /// reported after a write), catching up now when it is behind: a client that carries the
    /// position of its last write reads that write on any node. A position past the log's head
    /// cannot come from this cluster and is refused (`position_ahead`).
    pub async fn reach_position(&self, position: i64) -> StoreResult<()> {
        let Some(applied) = self.position() else {
            return Ok(());
        };
        if position <= applied {
            return Ok(());
        }
        self.sync().await?;
        let Some(now) = self.position() else {
            return Ok(());
        };
        if now >= position {
            return Ok(());
        }
        // Still behind: either the position is not this cluster's, or catching up failed.
        let lag = self.lag().await?;
        if now + lag < position {
            return Err(StoreError::unprocessable(
                "position_ahead",
                format!("position {position} is past this cluster's change log"),
            ));
        }
        Err(StoreError::Unavailable(format!(
            "this node could not catch up to position {position} (it is at {now})"
        )))
    }

    /// Calls `ring` with the change position after each change this node commits (PostgreSQL;
    /// never on the embedded store): a bus passes it on so other nodes look at once.
    pub fn on_commit(&self, ring: impl Fn(i64) + Send + Sync + 'static) {
        if let Backend::Postgres(pg) = &self.shared.backend {
            pg.set_ringer(Box::new(ring));
        }
    }

    /// Whether this node routes the log now (always on the embedded store).
    pub fn is_routing(&self) -> bool {
        match &self.shared.backend {
            Backend::Postgres(pg) => pg.is_routing(),
            Backend::Sqlite(_) => true,
        }
    }

    /// Wakes this node's tailer: another node committed a change (PostgreSQL).
    pub fn wake(&self) {
        if let Backend::Postgres(pg) = &self.shared.backend {
            pg.wake();
        }
    }

    /// Names this store's log among others on a shared bus: a random id kept in the database
    /// (PostgreSQL), so every node of one cluster agrees on it. None on the embedded store.
    pub async fn cluster_id(&self) -> StoreResult<Option<String>> {
        if let Backend::Postgres(_) = &self.shared.backend {
            let id: String = self
                .read(|conn| {
                    Ok(conn.query_row(
                        "SELECT value FROM meta WHERE key = 'cluster_id'",
                        [],
                        |r| r.get(0),
                    )?)
                })
                .await?;
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// How many change records this node has yet to apply (0 on the embedded store). Fails when
    /// the database cannot be reached.
    pub async fn lag(&self) -> StoreResult<i64> {
        if let Backend::Postgres(pg) = &self.shared.backend {
            let applied = pg.applied();
            let head: i64 = self
                .read(|conn| {
                    Ok(
                        conn.query_row("SELECT change_seq FROM log_head WHERE id = 1", [], |r| {
                            r.get(0)
                        })?,
                    )
                })
                .await?;
            return Ok((head - applied).max(0));
        }
        Ok(0)
    }

    /// Highest seq whose routing is complete: inbox reads never look past it.
    pub fn routed_seq(&self) -> i64 {
        *self.shared.routed.borrow()
    }

    /// Notices of routing progress: who got entries, and which seqs became readable. A
    /// receiver that falls behind gets `Lagged` and should assume everyone may have news.
    pub fn routed_notices(&self) -> broadcast::Receiver<Arc<RoutedNotice>> {
        self.shared.notices.subscribe()
    }

    /// Users whose feed counts (unseen / unread) changed other than by new inbox entries: a
    /// notification raised or withdrawn, a marker moved, an item hidden. A receiver that falls
    /// behind gets `Lagged` and should assume everyone's counts changed.
    pub fn count_changes(&self) -> broadcast::Receiver<Arc<Vec<i64>>> {
        self.shared.count_changes.subscribe()
    }

    /// Changes whenever the integration bus moves (the log matched further, a reply recorded),
    /// on whichever node it happened: a sync publish waits on it.
    pub fn bus_news(&self) -> watch::Receiver<u64> {
        self.shared.bus_news.subscribe()
    }

    /// Changes whenever sessions are revoked or a user's status changes, so live connections
    /// can re-check their credentials.
    pub fn session_changes(&self) -> watch::Receiver<u64> {
        self.shared.session_changes.subscribe()
    }

    /// Which `connected` users may see something new in `(after, upto]` through read-time
    /// sources or their own posts (entries the router wrote are in the notice itself).
    pub fn wake_set(
        &self,
        after: i64,
        upto: i64,
        connected: &std::collections::HashSet<i64>,
    ) -> std::collections::HashSet<i64> {
        match self.shared.hot.read() {
            Ok(hot) => hot.wake_set(after, upto, connected),
            // Wake everyone rather than miss anyone.
            Err(_) => connected.clone(),
        }
    }

    /// Resolves once every activity up to `seq` has been routed.
    pub async fn wait_routed(&self, seq: i64) -> StoreResult<()> {
        let mut rx = self.shared.routed.subscribe();
        rx.wait_for(|routed| *routed >= seq)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Closed)
    }

    /// The newest seq in the log (0 when empty).
    pub async fn last_seq(&self) -> StoreResult<i64> {
        self.read(users::last_seq).await
    }

    /// Bytes the store takes on disk: the database file and its WAL (embedded), or the
    /// database (PostgreSQL).
    pub async fn size_bytes(&self) -> StoreResult<u64> {
        match &self.shared.backend {
            Backend::Sqlite(sqlite) => Ok(sqlite.size_bytes()),
            Backend::Postgres(_) => {
                let bytes: i64 = self
                    .read(|conn| {
                        Ok(conn.query_row(
                            "SELECT pg_database_size(current_database())",
                            [],
                            |r| r.get(0),
                        )?)
                    })
                    .await?;
                Ok(u64::try_from(bytes).unwrap_or(0))
            }
        }
    }
}

impl Shared {
    /// Applies committed effects to the hot index; returns the users whose feed counts they
    /// changed (gathered only while someone listens for count changes).
    fn apply(&self, effects: Vec<Effect>) -> Vec<i64> {
        let mut counted = Vec::new();
        if effects.is_empty() {
            return counted;
        }
        let listening = self.count_changes.receiver_count() > 0;
        match self.hot.write() {
            Ok(mut hot) => {
                for effect in effects {
                    if listening {
                        match &effect {
                            Effect::Notify(list) => counted.extend(list.iter().map(|n| n.0)),
                            Effect::Marker { user, .. }
                            | Effect::Hide { user, .. }
                            | Effect::Silence { user, .. } => counted.push(*user),
                            Effect::Retract { notified, .. } => counted.extend(notified),
                            _ => {}
                        }
                    }
                    match &effect {
                        Effect::Activity {
                            seq,
                            body: Some(body),
                            ..
                        } => self.bodies.insert(*seq, body.clone()),
                        Effect::BusNews => self.bus_news.send_modify(|g| *g = g.wrapping_add(1)),
                        Effect::Sessions => {
                            // Revoked sessions or a changed user: no cached session survives.
                            // Bumped before (a session read racing this does not cache what it
                            // read) and after (whoever re-checks live connections on the bump
                            // reads past the emptied cache, not a stale copy: on a node that
                            // hears of a revocation only here, this is the only wake-up).
                            self.session_changes.send_modify(|g| *g += 1);
                            self.sessions.invalidate_all();
                            self.session_changes.send_modify(|g| *g += 1);
                        }
                        _ => {}
                    }
                    hot.apply(effect);
                }
            }
            Err(_) => tracing::error!("hot index lock poisoned; effects dropped"),
        }
        counted
    }

    /// Makes a committed transaction's effects visible on this node. The embedded store
    /// applies them at once; PostgreSQL applies the change log up to and including this
    /// transaction's record, so every node applies the same changes in the same order.
    pub(crate) fn committed(&self, conn: &Connection, effects: Vec<Effect>, routed: Option<i64>) {
        match &self.backend {
            Backend::Sqlite(_) => self.apply_change(effects, routed),
            Backend::Postgres(pg) => {
                // The change log does not carry bodies; this node has them in hand, so its
                // live clients and readers hydrate new activities without a round trip.
                for effect in &effects {
                    if let Effect::Activity {
                        seq,
                        body: Some(body),
                        ..
                    } = effect
                    {
                        self.bodies.insert(*seq, body.clone());
                    }
                }
                // Nothing the index holds changed (a session, say): nothing to tell anyone.
                let changed = !effects.is_empty() || routed.is_some();
                pg.catch_up(conn, self);
                if changed {
                    // Other nodes hear of it through the bus; this node's router at once.
                    pg.ring();
                    pg.wake();
                }
            }
        }
    }

    /// Applies one committed change: its effects, then (for a routing step) the new watermark
    /// and the notices the push layer listens to.
    pub(crate) fn apply_change(&self, effects: Vec<Effect>, routed: Option<i64>) {
        let Some(routed) = routed else {
            let counted = self.apply(effects);
            self.announce_counts(counted);
            return;
        };
        let before = *self.routed.borrow();
        // Only gather recipients when someone listens (the push layer).
        let notice = (routed > before && self.notices.receiver_count() > 0).then(|| {
            let mut users: Vec<i64> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Entries(entries) => Some(entries.iter().map(|e| e.0)),
                    _ => None,
                })
                .flatten()
                .collect();
            users.sort_unstable();
            users.dedup();
            RoutedNotice {
                after: before,
                upto: routed,
                users,
            }
        });
        // The index must hold the entries before the watermark lets readers see them.
        let counted = self.apply(effects);
        self.routed.send_if_modified(|current| {
            if routed > *current {
                *current = routed;
                true
            } else {
                false
            }
        });
        if let Some(notice) = notice {
            // No receiver left is not an error: the notice is simply not needed.
            let _ = self.notices.send(Arc::new(notice));
        }
        // After the watermark: counts read up to it, so the new notifications show.
        self.announce_counts(counted);
    }

    /// Tells the push layer whose counts changed.
    fn announce_counts(&self, mut users: Vec<i64>) {
        if users.is_empty() {
            return;
        }
        users.sort_unstable();
        users.dedup();
        // No receiver left is not an error.
        let _ = self.count_changes.send(Arc::new(users));
    }
}

/// Runs a batch of jobs in one write transaction, each inside its own savepoint (a refused job
/// rolls back alone), commits once, makes the committed effects visible on this node, and only
/// then answers every caller.
pub(crate) fn run_batch(conn: &Connection, batch: Vec<Job>, shared: &Shared) {
    if let Err(e) = adapters::begin_write(conn) {
        let message = e.to_string();
        for job in batch {
            // Never ran: tell each caller the transaction could not start.
            let (_, reply) = refuse_job(job, &message);
            reply(Err(StoreError::Unavailable(message.clone())));
        }
        let _ = conn.execute_batch("ROLLBACK");
        return;
    }
    if let Backend::Postgres(pg) = &shared.backend {
        // Inside the log lock nobody else commits: once this node has applied every change
        // before it, the jobs below see an index as current as the tables (a follow's backfill
        // reads the index).
        pg.catch_up(conn, shared);
        // The heads this writer keeps are current unless another writer appended since.
        if !pg.heads_still_current()
            && let Ok(mut heads) = shared.heads.lock()
        {
            *heads = Heads::default();
        }
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut effects = Vec::new();
    // How the previous job's savepoint ends, sent with the next one's start: one round trip
    // between jobs instead of two (each is one on PostgreSQL).
    let mut end: Option<&str> = None;
    for job in batch {
        let start = match end.take() {
            Some(end) => format!("{end}; SAVEPOINT job"),
            None => "SAVEPOINT job".to_owned(),
        };
        if let Err(e) = conn.execute_batch(&start) {
            let (_, reply) = refuse_job(job, &e.to_string());
            replies.push(reply);
            continue;
        }
        let mut fx = Effects::default();
        let (ok, reply) = job(conn, &mut fx);
        if ok {
            effects.extend(fx.list);
            if !fx.heads.is_empty()
                && let Ok(mut heads) = shared.heads.lock()
            {
                heads.batch.extend(
                    fx.heads
                        .into_iter()
                        .map(|(stream, owner, head)| (stream, (owner, head))),
                );
            }
        }
        end = Some(if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        });
        replies.push(reply);
    }
    let mut end = end.map(str::to_owned);
    let mut routed = None;
    if let Backend::Postgres(_) = &shared.backend
        && shared.config.router
        && effects.iter().any(|e| matches!(e, Effect::Activity { .. }))
    {
        (routed, end) = route_inline(conn, shared, end, &mut effects);
    }
    if let Some(end) = end
        && let Err(e) = conn.execute_batch(&end)
    {
        tracing::error!(error = %e, "savepoint end failed");
    }
    let started = std::time::Instant::now();
    let commit = adapters::record_change(conn, &effects, routed, true).and_then(|change| {
        conn.execute_batch("COMMIT")?;
        Ok(change)
    });
    let took = started.elapsed();
    if took > SLOW {
        tracing::warn!(
            jobs = replies.len(),
            ms = took.as_millis() as u64,
            "slow commit"
        );
    }
    if let Ok(mut heads) = shared.heads.lock() {
        if commit.is_ok() {
            heads.commit();
        } else {
            heads.batch.clear();
        }
    }
    match &commit {
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok(change) => {
            if let (Backend::Postgres(pg), Some(change)) = (&shared.backend, change) {
                pg.heads_current_at(*change);
            }
            shared.committed(conn, effects, None);
        }
    }
    for reply in replies {
        let outcome = match &commit {
            Ok(_) => Ok(()),
            Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m.clone())),
            Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
        };
        reply(outcome);
    }
}

/// Most entries a writer routes in its own transaction; a bigger batch leaves the rest to the
/// router thread (its publishes wait for this commit).
const INLINE_SLICE_DELIVERIES: usize = 2_000;
/// Longest a writer spends routing its batch before it commits.
const INLINE_SLICE: std::time::Duration = std::time::Duration::from_millis(5);

/// PostgreSQL, on a node that runs the router role: routes the backlog (normally just the
/// batch this transaction appended) before the batch commits, under a savepoint. A publish
/// then reaches every node's inboxes with one commit (and one WAL flush) instead of two: the
/// routing step would otherwise wait for this commit, then commit again. Safe on any node:
/// the watermark is read inside the log lock, so a router thread that routes at the same
/// time finds the slice routed and does nothing. Returns the watermark reached (None when
/// nothing was routed) and how the savepoint ends, sent with the next statement.
fn route_inline(
    conn: &Connection,
    shared: &Shared,
    end: Option<String>,
    effects: &mut Vec<Effect>,
) -> (Option<i64>, Option<String>) {
    let start = match end {
        Some(end) => format!("{end}; SAVEPOINT route"),
        None => "SAVEPOINT route".to_owned(),
    };
    if let Err(e) = conn.execute_batch(&start) {
        tracing::error!(error = %e, "savepoint end failed");
        return (None, None);
    }
    let thresholds = router::Thresholds {
        circle: shared.config.merge_threshold,
        followers: shared.config.follower_merge_threshold,
        max_deliveries: INLINE_SLICE_DELIVERIES,
        max_slice: Some(INLINE_SLICE),
    };
    let mut fx = Effects::default();
    match router::route_in_transaction(conn, thresholds, &mut fx) {
        Ok(Some((watermark, _))) => {
            effects.extend(fx.list);
            (Some(watermark), Some("RELEASE route".to_owned()))
        }
        Ok(None) => (None, Some("RELEASE route".to_owned())),
        Err(e) => {
            // The batch still commits; the router thread routes it.
            tracing::warn!(error = %e, "routing in the writer's transaction failed");
            (None, Some("ROLLBACK TO route; RELEASE route".to_owned()))
        }
    }
}

/// A job that could not run still owes its caller an answer; run it against nothing.
fn refuse_job(job: Job, message: &str) -> (bool, Reply) {
    let message = message.to_owned();
    // The job holds the only sender of its reply channel; dropping it tells the caller
    // `Closed`. Wrap that in a reply that does nothing so callers see one consistent error.
    drop(job);
    let reply: Reply = Box::new(move |_| tracing::error!(%message, "write job refused"));
    (false, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as stored, in key order.
    fn stored_entries(conn: &Connection) -> Vec<(i64, i64, i64)> {
        conn.prepare_cached("SELECT user_id, seq, via FROM inbox_entries ORDER BY user_id, seq")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("entries")
    }

    #[test]
    fn slice_entries_are_copied_and_an_existing_one_is_skipped_not_fatal() {
        let Ok(admin) = std::env::var("TIDINGS_TEST_STORE") else {
            eprintln!("!!! the PostgreSQL entry COPY test did NOT run: set TIDINGS_TEST_STORE");
            assert!(std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err());
            return;
        };
        let name = format!("tidings_e_{}", uuid::Uuid::now_v7().simple());
        let url = adapters::postgres::create_database(&admin, &name).expect("database");
        let conn = adapters::postgres::connect(&url).expect("connect");
        adapters::postgres::migrate(&conn).expect("migrate");
        conn.execute_batch("BEGIN").expect("begin");
        insert_entries(&conn, &[(1, 10, -7), (2, 10, -7)]).expect("copy");
        // (2, 10) exists: COPY refuses the whole set, the insert over arrays skips that one
        // and keeps the reason it had, in the same transaction.
        insert_entries(&conn, &[(2, 10, 0), (3, 10, -7), (1, 11, 4)]).expect("fallback");
        conn.execute_batch("COMMIT").expect("commit");
        assert_eq!(
            stored_entries(&conn),
            vec![(1, 10, -7), (1, 11, 4), (2, 10, -7), (3, 10, -7)]
        );
        drop(conn);
        if let Ok(admin_conn) = adapters::postgres::connect(&admin) {
            let _ = admin_conn.execute_batch(&format!("DROP DATABASE IF EXISTS {name}"));
        }
    }

    #[test]
    fn heads_read_back_as_written() {
        let chain = tidings_core::canonical::chain_hash(None, "sha256:ab");
        let odd = "md5:whatever".to_owned();
        let mut heads = CommittedHeads::default();
        let head = |pos: i64, chain: &str| StreamHead {
            pos,
            chain: chain.to_owned(),
        };
        heads.insert("outbox:ann".into(), Some(7), head(3, &chain));
        heads.insert("circle:eng".into(), None, head(2, &chain));
        heads.insert("outbox:bob".into(), Some(8), head(1, &odd));
        let got = |h: &CommittedHeads, stream: &str, owner| {
            h.get(stream, owner).map(|h| (h.pos, h.chain))
        };
        assert_eq!(got(&heads, "outbox:ann", Some(7)), Some((3, chain.clone())));
        assert_eq!(got(&heads, "circle:eng", None), Some((2, chain.clone())));
        assert_eq!(got(&heads, "outbox:bob", Some(8)), Some((1, odd)));
        assert_eq!(got(&heads, "outbox:cy", Some(9)), None);
        // A packable head replaces the named one.
        heads.insert("outbox:bob".into(), Some(8), head(2, &chain));
        assert_eq!(got(&heads, "outbox:bob", Some(8)), Some((2, chain)));
        assert!(!heads.named.contains_key("outbox:bob"));
    }
}
