//! Push: one live inbox channel per client, over Socket.IO ([`socketio`]) or SSE ([`sse`]).
//!
//! A connection never gets its own copy of the fan-out. It holds a cursor into the caller's
//! inbox and a wake-up flag; the [`Hub`] turns the store's routing notices into wake-ups for
//! the connected users an activity may concern, and a woken connection re-reads its inbox
//! after its cursor through the same multiplexer as `GET /api/v1/inbox`. So a live event is
//! byte for byte a page item, a resume from a cursor is an ordinary page walk (in order,
//! exactly once), and a slow client costs nothing but its cursor: nothing queues up for it.

pub mod direct;
pub mod engineio;
pub mod socketio;
pub mod sse;

use crate::AppState;
use crate::api::inbox::{InboxArgs, parse_filter};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::pagination::render_item;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_core::cursor;
use tidings_core::feeds::{FeedKind, FeedSpec};
use tidings_store::Store;
use tidings_store::model::{InboxFilter, PageFrom, PageItem, User, UserStatus};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

/// Most items one read hands a connection; a backlog arrives in several reads.
const READ_BATCH: usize = 100;
/// Live connections one user may hold at once, unless `[limits] live_connections_per_user`
/// says otherwise.
pub const MAX_CONNECTIONS_PER_USER: usize = 64;
/// What a refused connection is told to wait: a place frees as soon as one of the user's
/// connections closes, which the server cannot foresee, so a short fixed wait.
const CONNECTION_RETRY_SECONDS: u64 = 5;
/// How often an idle SSE stream carries a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why the server ends a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The token was revoked (logout) or the account deleted.
    Revoked,
    /// The account was suspended.
    Suspended,
    /// The client fell too far behind: it should resume from its cursor.
    Lagged,
    /// The server is shutting down: reconnect (to another node, or after the restart).
    Shutdown,
    /// The client went away (nothing is sent).
    Disconnected,
}

impl CloseReason {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Revoked => "revoked",
            CloseReason::Suspended => "suspended",
            CloseReason::Lagged => "lagged",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Disconnected => "disconnected",
        }
    }

    /// Whether the client should reconnect from its cursor (true) or stop (false).
    pub fn reconnect(self) -> bool {
        matches!(self, CloseReason::Lagged | CloseReason::Shutdown)
    }
}

/// The filters and resume point a client opens its channel with.
#[derive(Debug, Clone)]
pub struct ChannelArgs {
    /// Filters, as for `GET /api/v1/inbox`.
    pub filter: InboxFilter,
    /// Resume after this cursor; None starts at the present.
    pub after: Option<i64>,
    /// Feeds whose unseen / unread counts are pushed when they change (none: no counts).
    pub counts: Vec<FeedSpec>,
}

impl ChannelArgs {
    /// Parses filters and a cursor with the REST API's rules and errors.
    pub fn parse(args: &InboxArgs, after: Option<&str>) -> Result<ChannelArgs, ApiError> {
        let filter = parse_filter(args)?;
        let after = match after.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Some(
                cursor::decode(c)
                    .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
            ),
            None => None,
        };
        Ok(ChannelArgs {
            filter,
            after,
            counts: Vec::new(),
        })
    }

    /// Adds the feeds named in `counts` (comma-separated, or `all` for every declared feed)
    /// whose counts the channel should push; an unknown name is refused.
    pub fn with_counts(
        mut self,
        feeds: &[FeedSpec],
        counts: Option<&str>,
    ) -> Result<ChannelArgs, ApiError> {
        let names = counts.map(str::trim).filter(|c| !c.is_empty());
        self.counts = match names {
            None => Vec::new(),
            Some("all") => feeds.to_vec(),
            Some(names) => {
                let mut chosen: Vec<FeedSpec> = Vec::new();
                for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let spec = feeds.iter().find(|f| f.name == name).ok_or_else(|| {
                        ApiError::bad_request(
                            "unknown_feed",
                            format!("counts: no feed named {name:?} (see GET /api/v1/feeds)"),
                        )
                    })?;
                    if !chosen.iter().any(|c| c.name == spec.name) {
                        chosen.push(spec.clone());
                    }
                }
                chosen
            }
        };
        Ok(self)
    }
}

/// The unseen / unread counts a connection pushes, and what it last pushed.
#[derive(Debug)]
struct LiveCounts {
    feeds: Vec<FeedSpec>,
    /// Some of them count inbox entries (flat, aggregated): new entries may move them.
    /// Notification feeds move only with the store's count changes.
    counts_entries: bool,
    /// Something that may change them happened since they were last read.
    dirty: AtomicBool,
    /// The last `counts` payload sent: an unchanged one is not sent again.
    last: Mutex<String>,
}

/// The `counts` payload: `{"FEED":{"unseen":N,"unread":M}, ...}`, one key per feed asked for.
fn render_counts(store: &Store, user: &User, feeds: &[FeedSpec]) -> Result<String, ApiError> {
    let mut payload = serde_json::Map::new();
    for spec in feeds {
        let counts = store.feed_counts(user, spec)?;
        payload.insert(
            spec.name.clone(),
            serde_json::json!({"unseen": counts.unseen, "unread": counts.unread}),
        );
    }
    Ok(serde_json::Value::Object(payload).to_string())
}

/// One item ready to send: its cursor and its JSON (a page item).
#[derive(Debug, Clone)]
pub struct LiveItem {
    /// Inbox cursor of the item.
    pub cursor: String,
    /// `{"cursor", "via", "activity"}`, as in a page.
    pub json: String,
}

/// What a connection should do next.
#[derive(Debug)]
pub enum Next {
    /// Send these, oldest first.
    Items(Vec<LiveItem>),
    /// Send this `counts` payload.
    Counts(String),
    /// Close, for this reason.
    Close(CloseReason),
}

/// What a connection should do next, with the items as the store returned them.
#[derive(Debug)]
pub enum NextPage {
    /// Send these page items, oldest first.
    Items(Vec<PageItem>),
    /// Send this `counts` payload (after any items it counts).
    Counts(String),
    /// Nothing new, and a keep-alive is due (for transports that need one).
    KeepAlive,
    /// Close, for this reason.
    Close(CloseReason),
}

/// One live connection's state, shared between its sender and the hub.
#[derive(Debug)]
pub struct Listener {
    id: u64,
    user: User,
    token_hash: String,
    wake: Notify,
    /// Set by the hub's keep-alive tick: one shared timer instead of one per connection.
    keep_alive: AtomicBool,
    closed: Mutex<Option<CloseReason>>,
    filter: Mutex<InboxFilter>,
    cursor: AtomicU64,
    counts: Option<LiveCounts>,
}

impl Listener {
    /// The connected user.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// Position after the last item handed out (a seq, encoded as a cursor on the wire).
    pub fn cursor(&self) -> i64 {
        i64::try_from(self.cursor.load(Ordering::Acquire)).unwrap_or(i64::MAX)
    }

    /// The cursor as clients see it.
    pub fn cursor_text(&self) -> String {
        cursor::encode(self.cursor())
    }

    /// Replaces the filters (applies from the current cursor on) and re-reads.
    pub fn set_filter(&self, filter: InboxFilter) {
        if let Ok(mut current) = self.filter.lock() {
            *current = filter;
        }
        self.wake.notify_one();
    }

    /// Asks the connection to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if let Ok(mut closed) = self.closed.lock()
            && closed.is_none()
        {
            *closed = Some(reason);
        }
        self.wake.notify_one();
    }

    /// Marks the pushed counts as possibly stale (they are re-read and sent if they changed).
    fn touch_counts(&self) {
        if let Some(counts) = &self.counts {
            counts.dirty.store(true, Ordering::Release);
        }
    }

    /// New inbox entries arrived: stale only if some pushed count counts entries.
    fn touch_entry_counts(&self) {
        if let Some(counts) = &self.counts
            && counts.counts_entries
        {
            counts.dirty.store(true, Ordering::Release);
        }
    }

    /// The counts payload, if they may have changed and did.
    fn changed_counts(&self, store: &Store) -> Result<Option<String>, ApiError> {
        let Some(counts) = &self.counts else {
            return Ok(None);
        };
        if !counts.dirty.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        let payload = render_counts(store, &self.user, &counts.feeds)?;
        let mut last = counts
            .last
            .lock()
            .map_err(|_| ApiError::internal("listener counts lock"))?;
        if *last == payload {
            return Ok(None);
        }
        last.clone_from(&payload);
        Ok(Some(payload))
    }

    fn closed(&self) -> Option<CloseReason> {
        self.closed.lock().ok().and_then(|c| *c)
    }

    /// Waits until there is something to send (or a reason to close), then returns it as
    /// rendered page items. The cursor advances past what is returned: the caller must send it
    /// or close.
    pub async fn next(&self, store: &Store) -> Result<Next, ApiError> {
        loop {
            return match self.next_page(store).await? {
                NextPage::Items(page) => {
                    let mut items: Vec<LiveItem> = page
                        .iter()
                        .map(|item| {
                            let mut json = String::with_capacity(item.activity.len() + 96);
                            render_item(&mut json, item);
                            LiveItem {
                                cursor: cursor::encode(item.seq),
                                json,
                            }
                        })
                        .collect();
                    items.shrink_to_fit();
                    Ok(Next::Items(items))
                }
                // This transport keeps itself alive.
                NextPage::KeepAlive => continue,
                NextPage::Counts(payload) => Ok(Next::Counts(payload)),
                NextPage::Close(reason) => Ok(Next::Close(reason)),
            };
        }
    }

    /// Waits until there is something to send, a keep-alive is due, or a reason to close.
    /// Items come oldest first, as the store rendered them; the cursor advances past them.
    pub async fn next_page(&self, store: &Store) -> Result<NextPage, ApiError> {
        loop {
            if let Some(reason) = self.closed() {
                return Ok(NextPage::Close(reason));
            }
            let filter = self
                .filter
                .lock()
                .map(|f| f.clone())
                .map_err(|_| ApiError::internal("listener filter lock"))?;
            let after = self.cursor();
            let page = store
                .inbox(
                    self.user.clone(),
                    filter,
                    PageFrom::After(after),
                    READ_BATCH,
                )
                .await?;
            if let Some(newest) = page.items.first() {
                self.cursor
                    .store(u64::try_from(newest.seq).unwrap_or(0), Ordering::Release);
                let mut items = page.items;
                items.reverse();
                return Ok(NextPage::Items(items));
            }
            // Counts go after the items they count: a client never sees a count run ahead.
            if let Some(payload) = self.changed_counts(store)? {
                return Ok(NextPage::Counts(payload));
            }
            if self.keep_alive.swap(false, Ordering::AcqRel) {
                return Ok(NextPage::KeepAlive);
            }
            // A wake-up that arrived during the read left a permit: nothing is missed.
            self.wake.notified().await;
        }
    }
}

/// Whether `user` may open one more connection now (at most `cap` at once).
fn room_for(registry: &Registry, user: i64, cap: usize) -> Result<(), ApiError> {
    if registry.shut_down {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; reconnect shortly",
        ));
    }
    if registry.by_user.get(&user).map_or(0, Vec::len) >= cap {
        return Err(crate::limits::rate_limited(
            "too_many_connections",
            &format!("at most {cap} live connections per user; close one or retry later"),
            CONNECTION_RETRY_SECONDS,
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Registry {
    by_user: HashMap<i64, Vec<Arc<Listener>>>,
    users: HashSet<i64>,
    shut_down: bool,
}

/// Connected listeners, and the tasks that wake them.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    started: AtomicBool,
    /// Most live connections per user.
    cap_per_user: usize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::with_connection_cap(MAX_CONNECTIONS_PER_USER)
    }
}

impl Hub {
    /// A hub that lets each user hold at most `cap_per_user` live connections.
    pub fn with_connection_cap(cap_per_user: usize) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                registry: Mutex::new(Registry::default()),
                next_id: AtomicU64::new(1),
                started: AtomicBool::new(false),
                cap_per_user,
            }),
        }
    }

    /// Starts the tasks that turn routing notices and session changes into wake-ups and
    /// closes (once; later calls do nothing). Needs a Tokio runtime.
    pub fn start(&self, store: &Store) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let hub = self.clone();
        let notices_store = store.clone();
        let mut notices = store.routed_notices();
        tokio::spawn(async move {
            loop {
                match notices.recv().await {
                    Ok(notice) => {
                        hub.wake_for(&notices_store, notice.after, notice.upto, &notice.users)
                    }
                    // Missed notices: anyone may have news.
                    Err(RecvError::Lagged(_)) => hub.wake_all(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let hub = self.clone();
        let mut count_changes = store.count_changes();
        tokio::spawn(async move {
            loop {
                match count_changes.recv().await {
                    Ok(users) => hub.counts_changed(Some(&users)),
                    // Missed changes: anyone's counts may have moved.
                    Err(RecvError::Lagged(_)) => hub.counts_changed(None),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEP_ALIVE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                hub.keep_alive_tick();
            }
        });
        let hub = self.clone();
        let sessions_store = store.clone();
        let mut sessions = store.session_changes();
        tokio::spawn(async move {
            while sessions.changed().await.is_ok() {
                hub.recheck_sessions(&sessions_store).await;
            }
        });
    }

    /// Refuses early when the caller may not open another connection (or the server is
    /// shutting down); [`Hub::open`] checks again.
    pub fn check_room(&self, caller: &AuthUser) -> Result<(), ApiError> {
        let registry = self
            .inner
            .registry
            .lock()
            .map_err(|_| ApiError::internal("push registry lock"))?;
        room_for(&registry, caller.user.id, self.inner.cap_per_user)
    }

    /// Registers a connection for an authenticated caller.
    pub fn open(
        &self,
        store: &Store,
        auth: AuthUser,
        args: ChannelArgs,
    ) -> Result<Arc<Listener>, ApiError> {
        let start = args.after.unwrap_or_else(|| store.routed_seq());
        let listener = Arc::new(Listener {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            user: auth.user,
            token_hash: auth.token_hash,
            wake: Notify::new(),
            keep_alive: AtomicBool::new(false),
            closed: Mutex::new(None),
            filter: Mutex::new(args.filter),
            cursor: AtomicU64::new(u64::try_from(start).unwrap_or(0)),
            // Dirty from the start: the first counts go out right after the backlog.
            counts: (!args.counts.is_empty()).then(|| LiveCounts {
                counts_entries: args.counts.iter().any(|f| f.kind != FeedKind::Notification),
                feeds: args.counts,
                dirty: AtomicBool::new(true),
                last: Mutex::new(String::new()),
            }),
        });
        let mut registry = self
            .inner
            .registry
            .lock()
            .map_err(|_| ApiError::internal("push registry lock"))?;
        let user_id = listener.user.id;
        room_for(&registry, user_id, self.inner.cap_per_user)?;
        registry
            .by_user
            .entry(user_id)
            .or_default()
            .push(listener.clone());
        registry.users.insert(user_id);
        // There may already be items after the starting cursor.
        listener.wake.notify_one();
        Ok(listener)
    }

    /// Forgets a connection (its sender has stopped).
    pub fn release(&self, listener: &Listener) {
        if let Ok(mut registry) = self.inner.registry.lock() {
            let user_id = listener.user.id;
            let now_empty = match registry.by_user.get_mut(&user_id) {
                Some(list) => {
                    list.retain(|l| l.id != listener.id);
                    list.is_empty()
                }
                None => false,
            };
            if now_empty {
                registry.by_user.remove(&user_id);
                registry.users.remove(&user_id);
            }
        }
    }

    /// Live connections.
    pub fn connections(&self) -> usize {
        self.inner
            .registry
            .lock()
            .map(|r| r.by_user.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Closes every connection (clients are told to reconnect) and refuses new ones.
    pub fn shutdown(&self) {
        if let Ok(mut registry) = self.inner.registry.lock() {
            registry.shut_down = true;
            for listener in registry.by_user.values().flatten() {
                listener.close(CloseReason::Shutdown);
            }
        }
    }

    fn wake_for(&self, store: &Store, after: i64, upto: i64, written: &[i64]) {
        let Ok(registry) = self.inner.registry.lock() else {
            return;
        };
        if registry.users.is_empty() {
            return;
        }
        let mut woken = store.wake_set(after, upto, &registry.users);
        woken.extend(written.iter().filter(|u| registry.users.contains(u)));
        for user in woken {
            for listener in registry.by_user.get(&user).into_iter().flatten() {
                // New entries move the flat and aggregated feeds' counts.
                listener.touch_entry_counts();
                listener.wake.notify_one();
            }
        }
    }

    /// Wakes the connections pushing counts of `users` (None: of everyone).
    fn counts_changed(&self, users: Option<&[i64]>) {
        let Ok(registry) = self.inner.registry.lock() else {
            return;
        };
        let mut touch = |listener: &Arc<Listener>| {
            if listener.counts.is_some() {
                listener.touch_counts();
                listener.wake.notify_one();
            }
        };
        match users {
            Some(users) => users
                .iter()
                .flat_map(|u| registry.by_user.get(u).into_iter().flatten())
                .for_each(&mut touch),
            None => registry.by_user.values().flatten().for_each(&mut touch),
        }
    }

    /// Asks every connection for a keep-alive (a connection that also has news sends those).
    fn keep_alive_tick(&self) {
        if let Ok(registry) = self.inner.registry.lock() {
            for listener in registry.by_user.values().flatten() {
                listener.keep_alive.store(true, Ordering::Release);
                listener.wake.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        if let Ok(registry) = self.inner.registry.lock() {
            for listener in registry.by_user.values().flatten() {
                listener.touch_counts();
                listener.wake.notify_one();
            }
        }
    }

    /// Re-checks every connection's token after a revocation or status change, and closes
    /// the ones that lost their right to read.
    async fn recheck_sessions(&self, store: &Store) {
        let listeners: Vec<Arc<Listener>> = match self.inner.registry.lock() {
            Ok(registry) => registry.by_user.values().flatten().cloned().collect(),
            Err(_) => return,
        };
        let mut verdicts: HashMap<String, Option<CloseReason>> = HashMap::new();
        for listener in listeners {
            let verdict = match verdicts.get(&listener.token_hash) {
                Some(v) => *v,
                None => {
                    let v = match store.session_user(listener.token_hash.clone()).await {
                        Ok(Some(user)) => match user.status {
                            UserStatus::Active => None,
                            UserStatus::Suspended => Some(CloseReason::Suspended),
                            UserStatus::Deleted => Some(CloseReason::Revoked),
                        },
                        // Suspension revokes sessions too: say which it was.
                        Ok(None) => match store.user(&listener.user.username).await {
                            Ok(user) if user.status == UserStatus::Suspended => {
                                Some(CloseReason::Suspended)
                            }
                            _ => Some(CloseReason::Revoked),
                        },
                        // Keep the connection on a transient read failure.
                        Err(e) => {
                            tracing::warn!(error = %e, "session re-check failed");
                            None
                        }
                    };
                    verdicts.insert(listener.token_hash.clone(), v);
                    v
                }
            };
            if let Some(reason) = verdict {
                tracing::info!(user = %listener.user.username, reason = reason.as_str(), "closing live connection");
                listener.close(reason);
            }
        }
    }
}

/// Authenticates a push client from whichever place it could put its token.
pub async fn authenticate_token(
    state: &AppState,
    token: Option<&str>,
) -> Result<AuthUser, ApiError> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthenticated("send a bearer token"))?;
    crate::auth::authenticate(state, token).await
}
