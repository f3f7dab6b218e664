//! Abuse limits: how often one client may try to log in or sign up, how many requests one
//! token (or app key, or address without a token) may make, how long a body may take to
//! arrive, and the layer that answers oversized bodies so that every client reads the 413
//! (decision 0016).
//!
//! Layout:
//! - [`RateLimits`] and [`Bucket`] — what `[limits]` in the config file sets.
//! - [`Limiters`] — the per-node state: governor token buckets keyed by IP, account or token,
//!   and the exponential backoff per (account, IP) pair.
//! - [`budget_layer`] — the middleware that charges requests without a token to their
//!   address, carries each request's budget into the `RateLimit-*` response headers, answers
//!   `408` for a body that does not arrive in time, and answers oversized bodies after
//!   draining them.
//! - [`charge`], [`charge_as`] — what the extractors (and the live channels) call once a
//!   token or app key is known to be good.
//!
//! All state is in memory and per node: in cluster mode every node counts on its own.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// "`burst` requests per `period`": a token bucket that holds `burst` requests and refills
/// one every `period / burst`. A `burst` of 0 turns the bucket off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Requests that may come at once (and the most the bucket holds); 0 = unlimited.
    pub burst: u32,
    /// Time in which a full bucket refills.
    pub period: Duration,
}

impl Bucket {
    /// `burst` requests per `seconds`.
    pub const fn per(burst: u32, seconds: u64) -> Bucket {
        Bucket {
            burst,
            period: Duration::from_secs(seconds),
        }
    }

    /// A bucket that never refuses.
    pub const OFF: Bucket = Bucket::per(0, 1);

    /// The governor quota, or None when the bucket is off.
    fn quota(self) -> Option<Quota> {
        let burst = NonZeroU32::new(self.burst)?;
        let interval = self.period.checked_div(self.burst)?;
        Quota::with_period(interval).map(|q| q.allow_burst(burst))
    }
}

/// Login limits: a backoff per (account, IP) pair, plus buckets per IP and per account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Wrong passwords in a row from one IP for one account before the backoff starts.
    pub free_failures: u32,
    /// First wait after the free failures; each further failure doubles it.
    pub backoff_base: Duration,
    /// Longest wait: what the real user sharing an attacker's IP waits at worst.
    pub backoff_max: Duration,
    /// Login attempts from one IP, whatever the account (credential stuffing).
    pub per_ip: Bucket,
    /// Login attempts on one account from IPs it has never logged in from (a guesser spread
    /// over many IPs); IPs the account logged in from before are not counted.
    pub per_account: Bucket,
    /// How long an IP stays "known" for an account after a successful login.
    pub known_ip_ttl: Duration,
}

/// Every abuse limit (`[limits]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Master switch for the rate limits (not for timeouts or body sizes).
    pub enabled: bool,
    /// Logins.
    pub login: LoginLimits,
    /// Sign-ups per IP.
    pub signup_per_ip: Bucket,
    /// Authenticated reads (GET, HEAD) per token.
    pub reads_per_token: Bucket,
    /// Authenticated writes (every other method) per token.
    pub writes_per_token: Bucket,
    /// Requests without a token, per client address: reads under `/api/` that carry no
    /// bearer token, and every request to FeedStream's unauthenticated `/v1`.
    pub anonymous_per_ip: Bucket,
    /// The client's address is taken from this header (set by a trusted reverse proxy: the
    /// last address in `X-Forwarded-For`) instead of the TCP peer. Off by default: a client
    /// could otherwise pick its own address.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// An oversized body is read and discarded up to this many bytes before the 413 is sent,
    /// so that clients that send their whole body before reading see the answer.
    pub max_discard_bytes: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            login: LoginLimits {
                free_failures: 5,
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(300),
                per_ip: Bucket::per(100, 300),
                per_account: Bucket::per(20, 600),
                known_ip_ttl: Duration::from_secs(30 * 24 * 3600),
            },
            signup_per_ip: Bucket::per(10, 3600),
            reads_per_token: Bucket::per(1200, 60),
            writes_per_token: Bucket::per(300, 60),
            anonymous_per_ip: Bucket::per(300, 60),
            client_ip_header: None,
            max_discard_bytes: 16 * 1024 * 1024,
        }
    }
}

impl RateLimits {
    /// No rate limit at all (load tests, or an operator who limits at a proxy).
    pub fn off() -> RateLimits {
        RateLimits {
            enabled: false,
            ..RateLimits::default()
        }
    }
}

type Keyed<K> = DefaultKeyedRateLimiter<K, StateInformationMiddleware>;

/// One keyed token bucket, absent when it is off.
struct KeyedBucket<K: Clone + std::hash::Hash + Eq> {
    limiter: Option<Keyed<K>>,
}

/// What a bucket said about one request.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The bucket's size.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
    /// Set when the request was refused: seconds until one more is allowed.
    pub retry_after: Option<u64>,
}

impl<K: Clone + std::hash::Hash + Eq> KeyedBucket<K> {
    fn new(bucket: Bucket, enabled: bool) -> Self {
        let limiter = enabled.then(|| bucket.quota()).flatten().map(|quota| {
            RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>()
        });
        KeyedBucket { limiter }
    }

    /// Takes one request from `key`'s bucket; None when the bucket is off.
    fn take(&self, key: &K) -> Option<Budget> {
        use governor::clock::Clock as _;
        let limiter = self.limiter.as_ref()?;
        Some(match limiter.check_key(key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let limit = quota.burst_size().get();
                let remaining = snapshot.remaining_burst_capacity();
                let missing = limit.saturating_sub(remaining);
                Budget {
                    limit,
                    remaining,
                    reset: ceil_secs(quota.replenish_interval() * missing),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let quota = not_until.quota();
                let wait = not_until.wait_time_from(limiter.clock().now());
                Budget {
                    limit: quota.burst_size().get(),
                    remaining: 0,
                    reset: ceil_secs(quota.burst_size_replenished_in()),
                    // At least one second: "retry after 0" invites a busy loop.
                    retry_after: Some(ceil_secs(wait).max(1)),
                }
            }
        })
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Wrong passwords from one IP for one account, and when the next attempt may come.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    blocked_until: Option<Instant>,
}

/// The account a login names: usernames are compared as typed, but case-folded here so that
/// `Ana` and `ana` share one backoff whatever the store's comparison.
fn account_key(username: &str) -> String {
    username.trim().to_lowercase()
}

/// The per-node limiter state, shared by every request.
pub struct Limiters {
    config: RateLimits,
    login_ip: KeyedBucket<IpAddr>,
    login_account: KeyedBucket<String>,
    /// Failures per (account, IP); forgotten after a quiet spell of twice the longest wait.
    login_backoff: moka::sync::Cache<(String, IpAddr), Backoff>,
    /// (account, IP) pairs that logged in successfully: they skip the per-account bucket.
    known_ips: moka::sync::Cache<(String, IpAddr), ()>,
    signup_ip: KeyedBucket<IpAddr>,
    reads: KeyedBucket<String>,
    writes: KeyedBucket<String>,
    anonymous: KeyedBucket<IpAddr>,
}

/// Most (account, IP) pairs remembered for backoff and for known IPs, each: bounded so that a
/// flood of made-up usernames cannot grow memory without end.
const MAX_TRACKED_PAIRS: u64 = 100_000;

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Limiters {
    /// Builds the buckets the configuration turns on.
    pub fn new(config: RateLimits) -> Arc<Limiters> {
        let on = config.enabled;
        let forget = (config.login.backoff_max * 2).max(Duration::from_secs(60));
        Arc::new(Limiters {
            login_ip: KeyedBucket::new(config.login.per_ip, on),
            login_account: KeyedBucket::new(config.login.per_account, on),
            login_backoff: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_PAIRS)
                .time_to_idle(forget)
                .build(),
            known_ips: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_PAIRS)
                .time_to_live(config.login.known_ip_ttl)
                .build(),
            signup_ip: KeyedBucket::new(config.signup_per_ip, on),
            reads: KeyedBucket::new(config.reads_per_token, on),
            writes: KeyedBucket::new(config.writes_per_token, on),
            anonymous: KeyedBucket::new(config.anonymous_per_ip, on),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimits {
        &self.config
    }

    /// Drops buckets that are full again, once a minute, until the limiters are dropped:
    /// without it every IP and token ever seen would keep a small entry forever.
    pub fn start_sweeper(self: &Arc<Self>) {
        let weak: Weak<Limiters> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiters) = weak.upgrade() else {
                    return;
                };
                limiters.login_ip.forget_idle();
                limiters.login_account.forget_idle();
                limiters.signup_ip.forget_idle();
                limiters.reads.forget_idle();
                limiters.writes.forget_idle();
                limiters.anonymous.forget_idle();
            }
        });
    }

    /// Before a password is checked: refuses the attempt while the (account, IP) pair is
    /// backing off, or when the IP or (for an IP new to the account) the account has no
    /// attempts left.
    pub fn login_attempt(&self, username: &str, ip: IpAddr) -> Result<(), ApiError> {
        if !self.config.enabled {
            return Ok(());
        }
        let account = account_key(username);
        let pair = (account.clone(), ip);
        if let Some(Backoff {
            blocked_until: Some(until),
            ..
        }) = self.login_backoff.get(&pair)
        {
            let now = Instant::now();
            if until > now {
                return Err(rate_limited(
                    "login_backoff",
                    "too many wrong passwords for this account from this address",
                    ceil_secs(until - now).max(1),
                ));
            }
        }
        if let Some(Budget {
            retry_after: Some(secs),
            ..
        }) = self.login_ip.take(&ip)
        {
            return Err(rate_limited(
                "login_rate",
                "too many login attempts from this address",
                secs,
            ));
        }
        if !self.known_ips.contains_key(&pair)
            && let Some(Budget {
                retry_after: Some(secs),
                ..
            }) = self.login_account.take(&account)
        {
            return Err(rate_limited(
                "login_rate",
                "too many login attempts for this account from new addresses",
                secs,
            ));
        }
        Ok(())
    }

    /// After a wrong password: counts it and starts (or doubles) the pair's wait.
    pub fn login_failed(&self, username: &str, ip: IpAddr) {
        if !self.config.enabled {
            return;
        }
        let limits = &self.config.login;
        let pair = (account_key(username), ip);
        let mut entry = self.login_backoff.get(&pair).unwrap_or(Backoff {
            failures: 0,
            blocked_until: None,
        });
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures > limits.free_failures {
            let doublings = (entry.failures - limits.free_failures - 1).min(30);
            let wait = limits
                .backoff_base
                .saturating_mul(1u32 << doublings)
                .min(limits.backoff_max);
            entry.blocked_until = Some(Instant::now() + wait);
        }
        self.login_backoff.insert(pair, entry);
    }

    /// After a successful login: the pair's failures are forgiven and the IP becomes known
    /// for the account.
    pub fn login_succeeded(&self, username: &str, ip: IpAddr) {
        if !self.config.enabled {
            return;
        }
        let pair = (account_key(username), ip);
        self.login_backoff.invalidate(&pair);
        self.known_ips.insert(pair, ());
    }

    /// Before a sign-up is processed.
    pub fn signup_attempt(&self, ip: IpAddr) -> Result<(), ApiError> {
        match self.signup_ip.take(&ip) {
            Some(Budget {
                retry_after: Some(secs),
                ..
            }) => Err(rate_limited(
                "signup_rate",
                "too many sign-ups from this address",
                secs,
            )),
            _ => Ok(()),
        }
    }

    /// Charges one authenticated request to its token's read or write budget.
    pub fn charge_token(&self, method: &Method, token_hash: &str) -> Option<Budget> {
        let bucket = if method == Method::GET || method == Method::HEAD {
            &self.reads
        } else {
            &self.writes
        };
        bucket.take(&token_hash.to_owned())
    }

    /// Charges one request without a token to its client address.
    pub fn charge_anonymous(&self, ip: IpAddr) -> Option<Budget> {
        self.anonymous.take(&ip)
    }
}

/// 429 with the wait in `details.retry_after` (the `Retry-After` header is added from it).
pub fn rate_limited(code: &'static str, message: &str, retry_after: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        .with_details(json!({ "retry_after": retry_after }))
}

/// The client's IP address: the TCP peer, or the configured proxy header's last address.
/// Requests that reach the router without a peer (in-process calls) count as `0.0.0.0`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(
            &parts.headers,
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
            state.limiters.config().client_ip_header.as_ref(),
        )))
    }
}

fn client_ip(
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    proxy_header: Option<&axum::http::HeaderName>,
) -> IpAddr {
    let forwarded = proxy_header
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    forwarded
        .or_else(|| peer.map(|ConnectInfo(addr)| addr.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Where the authentication extractor leaves the token's budget for [`budget_layer`].
#[derive(Debug, Clone, Default)]
pub struct BudgetSlot(Arc<Mutex<Option<Budget>>>);

impl BudgetSlot {
    /// Records the budget of this request's token.
    pub fn set(&self, budget: Budget) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(budget);
        }
    }

    fn take(&self) -> Option<Budget> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Charges an authenticated request to its token (called once the token is known to be
/// valid, so made-up tokens cost no memory): `Err` is the 429.
pub fn charge(parts: &Parts, state: &AppState, token_hash: &str) -> Result<(), ApiError> {
    charge_as(
        &parts.method,
        parts.extensions.get::<BudgetSlot>(),
        state,
        token_hash,
    )
}

/// [`charge`] for callers without the request's parts: a live connection's open is charged
/// as a read (`Method::GET`); `slot` carries the budget into the response headers when there
/// is a response to carry it (not for a Socket.IO handshake).
pub fn charge_as(
    method: &Method,
    slot: Option<&BudgetSlot>,
    state: &AppState,
    key_hash: &str,
) -> Result<(), ApiError> {
    let Some(budget) = state.limiters.charge_token(method, key_hash) else {
        return Ok(());
    };
    if let Some(slot) = slot {
        slot.set(budget);
    }
    match budget.retry_after {
        Some(secs) => Err(rate_limited(
            "rate_limited",
            if method == Method::GET || method == Method::HEAD {
                "this token has used its read budget; retry later"
            } else {
                "this token has used its write budget; retry later"
            },
            secs,
        )),
        None => Ok(()),
    }
}

/// Whether a request spends its client address's budget for requests without a token: reads
/// under `/api/` with no bearer token (in the header, or a live stream's `access_token`), and
/// every request to FeedStream's `/v1`, which has no authentication at all. Sign-up and login
/// have buckets of their own; health, metrics, the documentation and the web app's static
/// files are not counted (a page load fetches many of them, and none touches the store).
fn spends_anonymous_budget(request: &Request) -> bool {
    let path = request.uri().path();
    if path == "/v1" || path.starts_with("/v1/") {
        return true;
    }
    let read = request.method() == Method::GET || request.method() == Method::HEAD;
    let token_in_query = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("access_token=")));
    read && path.starts_with("/api/")
        && !request.headers().contains_key(header::AUTHORIZATION)
        && !token_in_query
}

/// The 429 for an address out of its budget for requests without a token, in the error shape
/// of the API the path belongs to.
fn anonymous_refusal(path: &str, retry_after: u64) -> Response {
    let error = rate_limited(
        "rate_limited",
        "this address has used its budget for requests without a token; retry later",
        retry_after,
    );
    if path == "/v1" || path.starts_with("/v1/") {
        crate::compat::feedstream::FsError::from(error).into_response()
    } else {
        error.into_response()
    }
}

/// Middleware on every route: adds `RateLimit-Limit`, `RateLimit-Remaining` and
/// `RateLimit-Reset` to the response of a request charged to a token (a 429's `Retry-After`
/// comes with the error itself), and drains what a handler left of a body that is too large
/// (or of unknown length) before the answer goes out, up to `max_discard_bytes`.
///
/// Why drain: a handler refuses an oversized body (413, in its own API's error shape) or an
/// unauthenticated one (401) without reading it, and hyper then closes the connection with the
/// rest unread. A client that writes its whole body before reading (Python's `urllib`, many
/// SDKs) gets a broken pipe instead of the answer.
pub async fn budget_layer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let max_body = state.config.max_body_bytes as u64;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let oversized = declared.is_some_and(|length| length > max_body);
    let unknown_length =
        declared.is_none() && request.headers().contains_key(header::TRANSFER_ENCODING);
    // Every body must arrive whole within the deadline (slowloris on the body): a drip of a
    // byte a second would pass an idle timeout between frames, so the deadline is total.
    let timed_out = (declared.is_some_and(|length| length > 0) || unknown_length).then(|| {
        let fired = Arc::new(AtomicBool::new(false));
        let body = std::mem::take(request.body_mut());
        *request.body_mut() = Body::new(Deadline {
            inner: body,
            sleep: Box::pin(tokio::time::sleep(state.config.body_read_timeout)),
            fired: fired.clone(),
        });
        fired
    });
    let leftover = (oversized || unknown_length).then(|| {
        let home = ReturnedBody::default();
        let body = std::mem::take(request.body_mut());
        *request.body_mut() = Body::new(Returning {
            inner: Some(body),
            home: home.clone(),
        });
        home
    });
    let slot = BudgetSlot::default();
    request.extensions_mut().insert(slot.clone());
    let anonymous = spends_anonymous_budget(&request)
        .then(|| {
            let ip = client_ip(
                request.headers(),
                request.extensions().get::<ConnectInfo<SocketAddr>>(),
                state.limiters.config().client_ip_header.as_ref(),
            );
            state.limiters.charge_anonymous(ip)
        })
        .flatten();
    if let Some(budget) = anonymous {
        slot.set(budget);
    }
    let mut response = match anonymous.and_then(|budget| budget.retry_after) {
        Some(secs) => anonymous_refusal(request.uri().path(), secs),
        None => next.run(request).await,
    };
    if timed_out.is_some_and(|fired| fired.load(Ordering::Acquire)) {
        // Whatever the handler made of its failed read: nothing was done with a partial body
        // (every handler needs the whole of it), so the answer is the 408, and the rest of
        // the body, should it still come, is not waited for.
        let secs = state.config.body_read_timeout.as_secs_f64();
        let mut response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {secs} s"),
        )
        .with_details(json!({ "seconds": secs }))
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if let Some(rest) = leftover.and_then(|home| home.take()) {
        let max_discard = state.limiters.config().max_discard_bytes;
        let drained = declared.is_none_or(|length| length <= max_discard)
            && tokio::time::timeout(DISCARD_DEADLINE, discard_to_end(rest, max_discard))
                .await
                .unwrap_or(false);
        if !drained {
            // The rest of the body is still on the wire: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    if let Some(budget) = slot.take() {
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", HeaderValue::from(budget.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(budget.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(budget.reset));
    }
    response
}

/// A request body that fails once its deadline has passed, and says so through `fired`.
struct Deadline {
    inner: Body,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    fired: Arc<AtomicBool>,
}

/// The error a [`Deadline`] body ends with (answered as `408 body_timeout`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl axum::body::HttpBody for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future as _;
        let this = self.get_mut();
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.fired.store(true, Ordering::Release);
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a [`Returning`] body goes when the handler drops it.
#[derive(Clone, Default)]
struct ReturnedBody(Arc<Mutex<Option<Body>>>);

impl ReturnedBody {
    fn take(&self) -> Option<Body> {
        self.0.lock().ok().and_then(|mut body| body.take())
    }
}

/// A request body that hands what is left of itself back to [`budget_layer`] when dropped.
struct Returning {
    inner: Option<Body>,
    home: ReturnedBody,
}

impl axum::body::HttpBody for Returning {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|body| body.size_hint())
            .unwrap_or_default()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(body), Ok(mut home)) = (self.inner.take(), self.home.0.lock()) {
            *home = Some(body);
        }
    }
}

/// Reads a body to its end unless it goes past `max` bytes; true when it ended.
async fn discard_to_end(body: Body, max: u64) -> bool {
    let mut read = 0u64;
    let mut chunks = body.into_data_stream();
    loop {
        match chunks.next().await {
            Some(Ok(chunk)) => {
                read = read.saturating_add(chunk.len() as u64);
                if read > max {
                    return false;
                }
            }
            Some(Err(_)) => return false,
            None => return true,
        }
    }
}

/// How long an oversized body may take to be discarded.
const DISCARD_DEADLINE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn strict() -> RateLimits {
        let mut limits = RateLimits::default();
        limits.login.free_failures = 2;
        limits.login.backoff_base = Duration::from_secs(10);
        limits.login.backoff_max = Duration::from_secs(40);
        limits
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_stays_with_the_pair() {
        let limiters = Limiters::new(strict());
        let attacker = ip(1);
        let mut waits = Vec::new();
        for _ in 0..6 {
            limiters.login_failed("ana", attacker);
            let pair = (account_key("ana"), attacker);
            let backoff = limiters.login_backoff.get(&pair).expect("tracked");
            waits.push(
                backoff
                    .blocked_until
                    .map(|until| ceil_secs(until - Instant::now())),
            );
        }
        assert_eq!(
            waits,
            vec![None, None, Some(10), Some(20), Some(40), Some(40)]
        );
        let refused = limiters
            .login_attempt("ANA", attacker)
            .expect_err("backing off");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        // Another address for the same account is not held back by the attacker's failures.
        assert!(limiters.login_attempt("ana", ip(2)).is_ok());
        // A success forgives the pair.
        limiters.login_succeeded("ana", attacker);
        assert!(limiters.login_attempt("ana", attacker).is_ok());
    }

    #[test]
    fn buckets_report_their_budget_and_refuse_when_empty() {
        let bucket: KeyedBucket<String> = KeyedBucket::new(Bucket::per(3, 60), true);
        let key = "t".to_owned();
        let budgets: Vec<_> = (0..4).filter_map(|_| bucket.take(&key)).collect();
        assert_eq!(
            budgets.iter().map(|b| b.remaining).collect::<Vec<_>>(),
            vec![2, 1, 0, 0]
        );
        assert_eq!(budgets[0].limit, 3);
        assert_eq!(budgets[0].reset, 20);
        assert!(budgets[2].retry_after.is_none());
        let refused = budgets[3].retry_after.expect("refused");
        assert!((19..=20).contains(&refused), "{refused}");
        assert!(
            KeyedBucket::<String>::new(Bucket::OFF, true)
                .take(&key)
                .is_none()
        );
        assert!(
            KeyedBucket::<String>::new(Bucket::per(3, 60), false)
                .take(&key)
                .is_none()
        );
    }

    #[test]
    fn the_proxy_header_is_used_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.9"),
        );
        let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000)));
        let name = axum::http::HeaderName::from_static("x-forwarded-for");
        assert_eq!(client_ip(&headers, Some(&peer), None), ip_of("127.0.0.1"));
        assert_eq!(client_ip(&headers, Some(&peer), Some(&name)), ip(9));
        assert_eq!(client_ip(&HeaderMap::new(), None, None), ip_of("0.0.0.0"));
    }

    fn ip_of(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }
}
