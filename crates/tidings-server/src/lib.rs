//! The Tidings HTTP edge: REST API under `/api/v1`, auth, OpenAPI document and docs.
//!
//! Layout:
//! - [`api`] — one module per resource, each with its handlers; [`api::router`] merges them.
//! - [`web`] — the embedded web app: static files, CSP, the SPA fallback.
//! - [`auth`] — passwords, tokens, and the `AuthUser`/`AdminUser` extractors.
//! - [`error`] — [`error::ApiError`]: every failure mapped to a status and code, once.
//! - [`extract`], [`pagination`], [`response`] — request parsing and response shapes shared by
//!   the handlers.
//! - [`types`] — the custom type registry (JSON Schemas, default actions).
//! - [`openapi`] — the OpenAPI 3.1 document and the offline `/docs` UI.
//! - [`config`] — what the config file may set.
//! - [`compat`] — the seed systems' APIs (FeedStream `/v1`, activity-feed-system) on the engine.
//! - [`push`] — the live inbox channel: Socket.IO and SSE, woken by routing notices.
//! - [`bus`] — between nodes: the NATS doorbell that tells other nodes the change log grew.
//! - [`media`] — media uploads: checks, the image worker pool, the blob store.
//! - [`integration`] — the integration bus: services, topics, signed webhook delivery, work
//!   queues.
//! - [`limits`] — abuse limits: login and sign-up rates, per-token and per-address budgets,
//!   slow and oversized bodies.
//! - [`net`] — the listening socket and its guard against clients that stop reading.
//! - [`metrics`] — Prometheus `/metrics`: request counts and latencies, log and push gauges.
//! - [`request_id`] — `x-request-id` on every response and in every log line.

pub mod api;
pub mod auth;
pub mod bus;
pub mod compat;
pub mod config;
pub mod error;
pub mod extract;
pub mod integration;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod pagination;
pub mod push;
pub mod request_id;
pub mod response;
pub mod types;
pub mod web;

use config::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use tidings_store::Store;
use tokio::net::TcpListener;
use types::TypeRegistry;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store port.
    pub store: Store,
    /// Edge configuration.
    pub config: Arc<ServerConfig>,
    /// Custom types.
    pub types: TypeRegistry,
    /// Live connections.
    pub hub: push::Hub,
    /// Rate limits of this node (in memory: each node of a cluster counts on its own).
    pub limiters: Arc<limits::Limiters>,
    /// Work queues: durable ones through the store, memory ones of this node.
    pub queues: integration::queues::Queues,
    /// Rung when the bus matcher recorded new events for subscriptions: waiting pulls and
    /// streams look again.
    pub bus_news: Arc<tokio::sync::Notify>,
    /// Media uploads: the blob store and the image workers (None: no `[media] store`).
    pub media: Option<media::Media>,
}

impl AppState {
    /// Builds the state, loading custom types from the config file and the store.
    pub async fn new(store: Store, config: ServerConfig) -> anyhow_free::Result<AppState> {
        let types = TypeRegistry::default();
        for custom in &config.custom_types {
            types.register(custom).map_err(|e| {
                anyhow_free::Error(format!("config type {}: {}", custom.name, e.message))
            })?;
        }
        for custom in store
            .custom_types()
            .await
            .map_err(|e| anyhow_free::Error(e.to_string()))?
        {
            if let Err(e) = types.register(&custom) {
                tracing::warn!(name = %custom.name, error = %e.message, "stored custom type skipped");
            }
        }
        let hub = push::Hub::with_connection_cap(config.live_connections_per_user);
        hub.start(&store);
        let limiters = limits::Limiters::new(config.rate_limits.clone());
        limiters.start_sweeper();
        auth::start_session_pruner(store.clone(), config.sessions);
        metrics::install();
        let queues = integration::queues::Queues::default();
        let bus_news = Arc::new(tokio::sync::Notify::new());
        if config.webhooks.enabled {
            integration::dispatch::start(
                store.clone(),
                config.webhooks.clone(),
                queues.clone(),
                bus_news.clone(),
            );
        }
        let media = match &config.media.store {
            Some(_) => Some(media::Media::open(config.media.clone()).map_err(anyhow_free::Error)?),
            None => None,
        };
        let state = AppState {
            store,
            config: Arc::new(config),
            types,
            hub,
            limiters,
            queues,
            bus_news,
            media,
        };
        // Scheduled and cron publishing: every node runs the loop; a fire is stored once.
        integration::schedules::start(state.clone());
        Ok(state)
    }
}

/// A minimal error for start-up failures (the binary wraps it in anyhow).
pub mod anyhow_free {
    /// Start-up failure with a message.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct Error(pub String);
    /// Result alias.
    pub type Result<T> = std::result::Result<T, Error>;
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, tells live
/// clients to reconnect and lets in-flight requests finish for up to the configured grace.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = state.hub.clone();
    let grace = state.config.shutdown_grace;
    let listener = net::GuardedListener::new(listener, state.config.stall_timeout)
        .with_head_timeout(state.config.header_read_timeout);
    // Built once (`with_state` inside): `axum::serve` given a bare `Router` rebuilt the route
    // table and cloned every boxed handler per connection, ~42 KiB that a long-lived stream
    // held for its whole life; `net::serve` clones only the built router's `Arc`.
    let app = api::router(state);
    net::serve(listener, app, grace, async move {
        shutdown.await;
        hub.shutdown();
    })
    .await
}
