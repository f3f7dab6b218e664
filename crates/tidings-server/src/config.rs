//! Server configuration: what the optional config file (`tidings.toml`) may set.

use serde::Deserialize;
use std::path::Path;
use tidings_core::activity::Limits;
use tidings_core::feeds::{FeedSpec, validate_feeds};
use tidings_store::model::CustomType;

/// Everything the HTTP edge is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Whether anyone may sign up through the API.
    pub registration_open: bool,
    /// Publish limits.
    pub limits: Limits,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Custom types declared in the config file.
    pub custom_types: Vec<CustomType>,
    /// A client whose connection accepts no data for this long is disconnected.
    pub stall_timeout: std::time::Duration,
    /// Declared feeds: the defaults (`home`, `notifications`, `aggregated`) plus `[[feeds]]`
    /// from the config file (a declared feed replaces a default of the same name).
    pub feeds: Vec<FeedSpec>,
    /// Which compat profiles are served (`[compat]`; both by default).
    pub compat: crate::compat::CompatConfig,
    /// `[store] url`: where the data lives (a PostgreSQL URL or a directory); the `--store`
    /// flag and `TIDINGS_STORE` win over it.
    pub store_url: Option<String>,
    /// `[bus] url`: NATS between nodes; `--bus` and `TIDINGS_BUS` win over it.
    pub bus_url: Option<String>,
    /// `[sessions]`: how long sign-ins last.
    pub sessions: SessionConfig,
    /// `[operations] shutdown_grace_seconds`: how long in-flight requests may take to finish
    /// once a shutdown begins; connections still open after it are cut.
    pub shutdown_grace: std::time::Duration,
    /// `[operations] metrics_token`: a bearer token that lets non-loopback clients read
    /// `/metrics` (see `crate::metrics`).
    pub metrics_token: Option<String>,
    /// Which requests this node serves (`serve --roles`); both by default.
    pub roles: ServedRoles,
    /// Login, sign-up and per-token rate limits (`[limits]`).
    pub rate_limits: crate::limits::RateLimits,
    /// A client must send a whole request head within this long, and an idle keep-alive
    /// connection is closed after it (slowloris).
    pub header_read_timeout: std::time::Duration,
    /// A request body must arrive whole within this long after its head, or the request is
    /// answered `408 body_timeout` (a body sent slowly on purpose holds a connection).
    pub body_read_timeout: std::time::Duration,
    /// Live connections (SSE streams, Socket.IO sessions) one user may hold open at once on
    /// this node (`[limits] live_connections_per_user`). A cap on held resources rather than a
    /// rate, so it applies with the rate limits off too.
    pub live_connections_per_user: usize,
    /// `[webhooks]`: how the integration bus delivers webhooks.
    pub webhooks: crate::integration::WebhookConfig,
    /// `[media]`: uploads' limits, workers and blob store.
    pub media: crate::media::MediaConfig,
}

/// How long a session lasts: an idle timeout that use pushes forward (sliding expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session not used for this long stops working (`[sessions] ttl_seconds`).
    pub ttl: std::time::Duration,
    /// A session's expiry is pushed forward at most this often, so a busy client costs one
    /// write per interval rather than one per request (`[sessions] refresh_seconds`).
    pub refresh: std::time::Duration,
    /// How often this node deletes the rows of ended sessions (`[sessions]
    /// prune_interval_seconds`).
    pub prune_interval: std::time::Duration,
    /// How long the row of an expired or revoked session is kept before it is pruned
    /// (`[sessions] keep_ended_seconds`).
    pub keep_ended: std::time::Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ttl: tidings_store::model::DEFAULT_SESSION_TTL,
            refresh: std::time::Duration::from_secs(300),
            prune_interval: std::time::Duration::from_secs(3600),
            keep_ended: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The requests a node serves: the API (REST, web app, compat profiles) and live channels
/// (SSE, Socket.IO). A node without one answers those requests `421 role_not_served`, so a
/// misrouted request is told where to go instead of being half served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedRoles {
    /// REST API, web app, compat profiles.
    pub api: bool,
    /// Live channels.
    pub push: bool,
}

impl Default for ServedRoles {
    fn default() -> Self {
        ServedRoles {
            api: true,
            push: true,
        }
    }
}

impl ServerConfig {
    /// A declared feed by name.
    pub fn feed(&self, name: &str) -> Option<&FeedSpec> {
        self.feeds.iter().find(|f| f.name == name)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            registration_open: true,
            limits: Limits::default(),
            max_body_bytes: 256 * 1024,
            custom_types: Vec::new(),
            stall_timeout: crate::net::DEFAULT_STALL_TIMEOUT,
            // FeedStream's `feed` and `notification` ship too, so its documented calls work.
            feeds: FeedSpec::defaults()
                .into_iter()
                .chain(crate::compat::feedstream::default_feeds())
                .collect(),
            compat: crate::compat::CompatConfig::default(),
            store_url: None,
            bus_url: None,
            sessions: SessionConfig::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            metrics_token: None,
            roles: ServedRoles::default(),
            rate_limits: crate::limits::RateLimits::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            live_connections_per_user: crate::push::MAX_CONNECTIONS_PER_USER,
            webhooks: crate::integration::WebhookConfig::default(),
            media: crate::media::MediaConfig::default(),
        }
    }
}

/// How long a client may take to send a request head, unless configured (hyper's default).
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a client may take to send a request body, unless configured: a full 256 KiB
/// body at 8 KiB/s (a poor mobile link) fits with room to spare.
pub const DEFAULT_BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long in-flight requests may take to finish at shutdown, unless configured.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Shortest metrics token accepted: a short one could be guessed.
const MIN_METRICS_TOKEN: usize = 16;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    operations: Option<OperationsSection>,
    #[serde(default)]
    registration: Option<RegistrationSection>,
    #[serde(default)]
    limits: Option<LimitsSection>,
    #[serde(default)]
    types: Vec<TypeSection>,
    #[serde(default)]
    push: Option<PushSection>,
    #[serde(default)]
    feeds: Vec<FeedSpec>,
    #[serde(default)]
    compat: Option<crate::compat::CompatConfig>,
    #[serde(default)]
    store: Option<StoreSection>,
    #[serde(default)]
    bus: Option<BusSection>,
    #[serde(default)]
    sessions: Option<SessionsSection>,
    #[serde(default)]
    webhooks: Option<WebhooksSection>,
    #[serde(default)]
    media: Option<MediaSection>,
}

/// `[media]`: uploads (decision 0026).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaSection {
    /// Where blobs go: a directory, or `s3://BUCKET` (default: `media/` in the data dir).
    store: Option<String>,
    /// Largest upload in bytes (1 KiB to 1 GiB; default 16 MiB).
    max_bytes: Option<u64>,
    /// Largest image in pixels, width × height (default 50,000,000).
    max_pixels: Option<u64>,
    /// Uploads processed at once (1–64; default: the cores less one, at least 1).
    workers: Option<usize>,
    /// Uploads that may wait for a worker before more are refused with 503 (0–10,000;
    /// default 16).
    queue: Option<usize>,
}

/// Checks `[media]`.
fn media_config(section: MediaSection) -> Result<crate::media::MediaConfig, String> {
    let mut c = crate::media::MediaConfig::default();
    if let Some(store) = section.store {
        if store.trim().is_empty() {
            return Err("media.store must name a directory or s3://BUCKET".into());
        }
        c.store = Some(store);
    }
    if let Some(bytes) = section.max_bytes {
        if !(1024..=1 << 30).contains(&bytes) {
            return Err("media.max_bytes must be between 1024 and 1073741824".into());
        }
        c.max_bytes = bytes;
    }
    if let Some(pixels) = section.max_pixels {
        if !(1..=1_000_000_000).contains(&pixels) {
            return Err("media.max_pixels must be between 1 and 1000000000".into());
        }
        c.max_pixels = pixels;
    }
    if let Some(workers) = section.workers {
        if !(1..=64).contains(&workers) {
            return Err("media.workers must be between 1 and 64".into());
        }
        c.workers = workers;
    }
    if let Some(queue) = section.queue {
        if queue > 10_000 {
            return Err("media.queue must be at most 10000".into());
        }
        c.queue = queue;
    }
    Ok(c)
}

/// `[webhooks]`: webhook delivery of the integration bus.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhooksSection {
    /// Whether this node delivers webhooks (default true).
    enabled: Option<bool>,
    /// Internal networks webhooks may reach anyway, as CIDRs (`["127.0.0.1/32"]`).
    #[serde(default)]
    allow_networks: Vec<String>,
    /// Seconds one attempt may take (1–300).
    timeout_seconds: Option<u64>,
    /// Attempts before a delivery is dead (1–100).
    max_attempts: Option<i64>,
    /// Milliseconds before the second attempt, doubled for each further one.
    retry_base_ms: Option<u64>,
    /// Longest wait between attempts, in milliseconds.
    retry_max_ms: Option<u64>,
    /// Failed attempts in a row that disable a webhook (at least 1).
    disable_after: Option<i64>,
    /// Milliseconds between checks when nothing woke the dispatcher (10–60000).
    poll_ms: Option<u64>,
}

/// Checks `[webhooks]`.
fn webhook_config(section: WebhooksSection) -> Result<crate::integration::WebhookConfig, String> {
    use std::time::Duration;
    let mut c = crate::integration::WebhookConfig::default();
    c.enabled = section.enabled.unwrap_or(c.enabled);
    for net in &section.allow_networks {
        c.allow_networks.push(
            net.parse()
                .map_err(|_| format!("webhooks.allow_networks: {net:?} is not a CIDR network"))?,
        );
    }
    if let Some(secs) = section.timeout_seconds {
        if !(1..=300).contains(&secs) {
            return Err("webhooks.timeout_seconds must be between 1 and 300".into());
        }
        c.timeout = Duration::from_secs(secs);
    }
    if let Some(n) = section.max_attempts {
        if !(1..=100).contains(&n) {
            return Err("webhooks.max_attempts must be between 1 and 100".into());
        }
        c.max_attempts = n;
    }
    if let Some(ms) = section.retry_base_ms {
        c.retry_base = Duration::from_millis(ms);
    }
    if let Some(ms) = section.retry_max_ms {
        c.retry_max = Duration::from_millis(ms);
    }
    if c.retry_max < c.retry_base {
        return Err("webhooks.retry_max_ms must not be below retry_base_ms".into());
    }
    if let Some(n) = section.disable_after {
        if n < 1 {
            return Err("webhooks.disable_after must be at least 1".into());
        }
        c.disable_after = n;
    }
    if let Some(ms) = section.poll_ms {
        if !(10..=60_000).contains(&ms) {
            return Err("webhooks.poll_ms must be between 10 and 60000".into());
        }
        c.poll = Duration::from_millis(ms);
    }
    Ok(c)
}

/// `[sessions]`: how long sign-ins last.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsSection {
    /// Seconds a session may go unused before it expires (60 to 31,536,000: a year).
    ttl_seconds: Option<u64>,
    /// Seconds between two refreshes of a used session's expiry (0 to half the ttl).
    refresh_seconds: Option<u64>,
    /// Seconds between two prunes of ended sessions (1 to a day).
    prune_interval_seconds: Option<u64>,
    /// Seconds an expired or revoked session's row is kept before it is pruned (0 to a year).
    keep_ended_seconds: Option<u64>,
}

/// Longest session lifetime the config accepts: a year.
const MAX_SESSION_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// `[operations]`: shutdown and metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationsSection {
    /// Seconds in-flight requests get to finish at shutdown (1–3600).
    shutdown_grace_seconds: Option<u64>,
    /// Bearer token for `/metrics` from non-loopback clients (at least 16 characters).
    metrics_token: Option<String>,
}

/// `[bus]`: the bus between nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusSection {
    /// `nats://HOST:4222`.
    url: String,
}

/// `[store]`: where the data lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// `postgres://USER@HOST/DB`, or a directory for the embedded store.
    url: String,
}

/// `[push]`: live connections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushSection {
    /// Seconds a connection may accept no data before it is dropped (1–3600).
    stall_timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationSection {
    open: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_body_bytes: Option<usize>,
    max_content_chars: Option<usize>,
    max_string_chars: Option<usize>,
    max_tags: Option<usize>,
    max_audience: Option<usize>,
    max_actions: Option<usize>,
    /// Master switch for the rate limits below.
    rate_limits: Option<bool>,
    /// Header naming the client's address, set by a trusted reverse proxy.
    client_ip_header: Option<String>,
    /// Bytes of an oversized body read and discarded before the 413.
    max_discard_bytes: Option<u64>,
    /// Seconds to send a request head (1–3600); also the keep-alive idle timeout.
    header_read_timeout_seconds: Option<u64>,
    /// Seconds to send a whole request body after its head (1–3600).
    body_read_seconds: Option<u64>,
    /// Live connections one user may hold open at once on a node (1–10,000).
    live_connections_per_user: Option<usize>,
    login: Option<LoginSection>,
    signup: Option<BucketSection>,
    reads: Option<BucketSection>,
    writes: Option<BucketSection>,
    anonymous: Option<BucketSection>,
}

/// `[limits.login]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginSection {
    free_failures: Option<u32>,
    backoff_base_seconds: Option<u64>,
    backoff_max_seconds: Option<u64>,
    known_ip_days: Option<u64>,
    per_ip: Option<BucketSection>,
    per_account: Option<BucketSection>,
}

/// A token bucket: `burst` requests per `period_seconds` (`burst = 0` turns it off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSection {
    burst: u32,
    period_seconds: u64,
}

impl BucketSection {
    fn bucket(&self, name: &str) -> Result<crate::limits::Bucket, String> {
        if self.burst > 0 && self.period_seconds == 0 {
            return Err(format!("limits.{name}.period_seconds must be at least 1"));
        }
        Ok(crate::limits::Bucket::per(self.burst, self.period_seconds))
    }
}

/// Applies `[limits]`'s rate-limit and timeout keys.
fn apply_rate_limits(section: &LimitsSection, config: &mut ServerConfig) -> Result<(), String> {
    use std::time::Duration;
    let limits = &mut config.rate_limits;
    if let Some(on) = section.rate_limits {
        limits.enabled = on;
    }
    if let Some(name) = &section.client_ip_header {
        limits.client_ip_header = Some(
            axum::http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("limits.client_ip_header {name:?} is not a header name"))?,
        );
    }
    if let Some(bytes) = section.max_discard_bytes {
        limits.max_discard_bytes = bytes;
    }
    if let Some(secs) = section.header_read_timeout_seconds {
        if !(1..=3600).contains(&secs) {
            return Err("limits.header_read_timeout_seconds must be between 1 and 3600".into());
        }
        config.header_read_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = section.body_read_seconds {
        if !(1..=3600).contains(&secs) {
            return Err("limits.body_read_seconds must be between 1 and 3600".into());
        }
        config.body_read_timeout = Duration::from_secs(secs);
    }
    if let Some(b) = &section.signup {
        limits.signup_per_ip = b.bucket("signup")?;
    }
    if let Some(b) = &section.reads {
        limits.reads_per_token = b.bucket("reads")?;
    }
    if let Some(b) = &section.writes {
        limits.writes_per_token = b.bucket("writes")?;
    }
    if let Some(b) = &section.anonymous {
        limits.anonymous_per_ip = b.bucket("anonymous")?;
    }
    if let Some(cap) = section.live_connections_per_user {
        if !(1..=10_000).contains(&cap) {
            return Err("limits.live_connections_per_user must be between 1 and 10000".into());
        }
        config.live_connections_per_user = cap;
    }
    if let Some(login) = &section.login {
        let l = &mut limits.login;
        l.free_failures = login.free_failures.unwrap_or(l.free_failures);
        if let Some(secs) = login.backoff_base_seconds {
            l.backoff_base = Duration::from_secs(secs);
        }
        if let Some(secs) = login.backoff_max_seconds {
            l.backoff_max = Duration::from_secs(secs);
        }
        if let Some(days) = login.known_ip_days {
            l.known_ip_ttl = Duration::from_secs(days.saturating_mul(24 * 3600));
        }
        if l.backoff_max < l.backoff_base {
            return Err(
                "limits.login.backoff_max_seconds must not be below backoff_base_seconds".into(),
            );
        }
        if let Some(b) = &login.per_ip {
            l.per_ip = b.bucket("login.per_ip")?;
        }
        if let Some(b) = &login.per_account {
            l.per_account = b.bucket("login.per_account")?;
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeSection {
    name: String,
    kind: String,
    /// JSON Schema, written as a TOML table or as a JSON string.
    schema: toml::Value,
    #[serde(default)]
    actions: Vec<toml::Value>,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read the file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or unknown keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)),
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

impl ServerConfig {
    /// Reads a config file; unknown keys are errors so typos do not pass silently.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: display.clone(),
            message: e.to_string(),
        })?;
        let mut config = ServerConfig::default();
        if let Some(r) = file.registration {
            config.registration_open = r.open;
        }
        if let Some(l) = file.limits {
            let d = &mut config.limits;
            d.max_content_chars = l.max_content_chars.unwrap_or(d.max_content_chars);
            d.max_string_chars = l.max_string_chars.unwrap_or(d.max_string_chars);
            d.max_tags = l.max_tags.unwrap_or(d.max_tags);
            d.max_audience = l.max_audience.unwrap_or(d.max_audience);
            d.max_actions = l.max_actions.unwrap_or(d.max_actions);
            config.max_body_bytes = l.max_body_bytes.unwrap_or(config.max_body_bytes);
            apply_rate_limits(&l, &mut config).map_err(|message| ConfigError::Parse {
                path: display.clone(),
                message,
            })?;
        }
        if let Some(push) = file.push
            && let Some(secs) = push.stall_timeout_seconds
        {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Parse {
                    path: display,
                    message: "push.stall_timeout_seconds must be between 1 and 3600".into(),
                });
            }
            config.stall_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(sessions) = file.sessions {
            config.sessions = session_config(sessions).map_err(|message| ConfigError::Parse {
                path: display.clone(),
                message,
            })?;
        }
        if let Some(ops) = file.operations {
            if let Some(secs) = ops.shutdown_grace_seconds {
                if !(1..=3600).contains(&secs) {
                    return Err(ConfigError::Parse {
                        path: display,
                        message: "operations.shutdown_grace_seconds must be between 1 and 3600"
                            .into(),
                    });
                }
                config.shutdown_grace = std::time::Duration::from_secs(secs);
            }
            if let Some(token) = ops.metrics_token {
                if token.chars().count() < MIN_METRICS_TOKEN || token.contains(char::is_whitespace)
                {
                    return Err(ConfigError::Parse {
                        path: display,
                        message: format!(
                            "operations.metrics_token must be at least {MIN_METRICS_TOKEN} \
                             characters without spaces"
                        ),
                    });
                }
                config.metrics_token = Some(token);
            }
        }
        if let Some(compat) = file.compat {
            config.compat = compat;
        }
        for feed in file.feeds {
            config.feeds.retain(|f| f.name != feed.name);
            config.feeds.push(feed);
        }
        validate_feeds(&config.feeds).map_err(|e| ConfigError::Parse {
            path: display.clone(),
            message: e.to_string(),
        })?;
        for t in file.types {
            config.custom_types.push(CustomType {
                name: t.name,
                kind: t.kind,
                schema: toml_to_json(t.schema),
                actions: serde_json::Value::Array(
                    t.actions.into_iter().map(toml_to_json).collect(),
                ),
            });
        }
        if let Some(webhooks) = file.webhooks {
            config.webhooks = webhook_config(webhooks).map_err(|message| ConfigError::Parse {
                path: display.clone(),
                message,
            })?;
        }
        if let Some(media) = file.media {
            config.media = media_config(media).map_err(|message| ConfigError::Parse {
                path: display.clone(),
                message,
            })?;
        }
        config.store_url = file.store.map(|store| store.url);
        config.bus_url = file.bus.map(|bus| bus.url);
        Ok(config)
    }
}

/// Checks `[sessions]`: a lifetime of a minute to a year, refreshed at least twice within it
/// (so a session in steady use never lapses between two refreshes).
fn session_config(section: SessionsSection) -> Result<SessionConfig, String> {
    let defaults = SessionConfig::default();
    let ttl = section.ttl_seconds.unwrap_or(defaults.ttl.as_secs());
    if !(60..=MAX_SESSION_TTL_SECONDS).contains(&ttl) {
        return Err(format!(
            "sessions.ttl_seconds must be between 60 and {MAX_SESSION_TTL_SECONDS}"
        ));
    }
    let refresh = section
        .refresh_seconds
        .unwrap_or(defaults.refresh.as_secs().min(ttl / 2));
    if refresh > ttl / 2 {
        return Err("sessions.refresh_seconds must be at most half of sessions.ttl_seconds".into());
    }
    let prune_interval = section
        .prune_interval_seconds
        .unwrap_or(defaults.prune_interval.as_secs());
    if !(1..=24 * 3600).contains(&prune_interval) {
        return Err("sessions.prune_interval_seconds must be between 1 and 86400".into());
    }
    let keep_ended = section
        .keep_ended_seconds
        .unwrap_or(defaults.keep_ended.as_secs());
    if keep_ended > MAX_SESSION_TTL_SECONDS {
        return Err(format!(
            "sessions.keep_ended_seconds must be at most {MAX_SESSION_TTL_SECONDS}"
        ));
    }
    Ok(SessionConfig {
        ttl: std::time::Duration::from_secs(ttl),
        refresh: std::time::Duration::from_secs(refresh),
        prune_interval: std::time::Duration::from_secs(prune_interval),
        keep_ended: std::time::Duration::from_secs(keep_ended),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServerConfig, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let path = dir.path().join("tidings.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: "tidings.toml".into(),
            source,
        })?;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tidings.toml");
        std::fs::write(&path, text).expect("write");
        ServerConfig::load(&path)
    }

    #[test]
    fn sessions_section_sets_ttl_and_refresh() {
        let config = load("[sessions]\nttl_seconds = 3600\nrefresh_seconds = 60\n").expect("ok");
        assert_eq!(config.sessions.ttl.as_secs(), 3600);
        assert_eq!(config.sessions.refresh.as_secs(), 60);
        assert_eq!(config.sessions.prune_interval.as_secs(), 3600);
        let config =
            load("[sessions]\nprune_interval_seconds = 30\nkeep_ended_seconds = 0\n").expect("ok");
        assert_eq!(config.sessions.prune_interval.as_secs(), 30);
        assert_eq!(config.sessions.keep_ended.as_secs(), 0);
        // A short ttl alone gets a refresh that fits it.
        let config = load("[sessions]\nttl_seconds = 120\n").expect("ok");
        assert_eq!(config.sessions.refresh.as_secs(), 60);
        let config = load("").expect("ok");
        assert_eq!(config.sessions, SessionConfig::default());
        assert_eq!(config.sessions.ttl.as_secs(), 30 * 24 * 3600);
    }

    #[test]
    fn bad_sessions_sections_are_refused_with_the_reason() {
        for (text, needle) in [
            ("[sessions]\nttl_seconds = 10\n", "ttl_seconds"),
            ("[sessions]\nttl_seconds = 99999999999\n", "ttl_seconds"),
            (
                "[sessions]\nttl_seconds = 600\nrefresh_seconds = 301\n",
                "refresh_seconds",
            ),
            ("[sessions]\nttl = 600\n", "unknown field"),
            ("[sessions]\nprune_interval_seconds = 0\n", "prune_interval"),
            (
                "[sessions]\nkeep_ended_seconds = 99999999999\n",
                "keep_ended",
            ),
        ] {
            let error = load(text).expect_err(text).to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn operations_section_is_read_and_bad_values_are_refused() {
        let config = load(
            "[operations]\nshutdown_grace_seconds = 3\nmetrics_token = \"0123456789abcdef\"\n",
        )
        .expect("valid");
        assert_eq!(config.shutdown_grace, std::time::Duration::from_secs(3));
        assert_eq!(config.metrics_token.as_deref(), Some("0123456789abcdef"));
        let defaults = load("").expect("empty");
        assert_eq!(defaults.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(defaults.metrics_token, None);
        for bad in [
            "[operations]\nshutdown_grace_seconds = 0\n",
            "[operations]\nshutdown_grace_seconds = 3601\n",
            "[operations]\nmetrics_token = \"short\"\n",
            "[operations]\nmetrics_token = \"has spaces in it, long enough\"\n",
            "[operations]\nunknown = 1\n",
        ] {
            assert!(load(bad).is_err(), "{bad} should be refused");
        }
    }
}
