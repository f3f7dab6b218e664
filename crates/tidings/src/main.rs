//! The `tidings` binary: `serve`, `verify`, `backup`, `restore`, `rebuild`, `admin`, `seed`
//! and `bench` commands.

mod bench;
mod bench_media;
mod bench_push;
mod bench_queues;
mod seed;
mod seed_demo;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use tidings_server::config::{ServedRoles, ServerConfig};
use tidings_store::Store;
use tidings_store::{AdminConnection, StoreConfig, StoreLocation};

// Serving pages allocates many short-lived strings; mimalloc measured faster than glibc here.
// `--features system-allocator` keeps the system's malloc, which heap profilers (heaptrack)
// can see.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tidings",
    version,
    about = "Tidings: an activity-stream engine"
)]
struct Cli {
    /// Where the embedded store keeps its files.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    /// Where the data lives: a PostgreSQL URL (`postgres://USER@HOST/DB`, cluster mode) or a
    /// directory for the embedded store. Default: the embedded store in --data-dir.
    #[arg(long, global = true, env = "TIDINGS_STORE")]
    store: Option<String>,
    /// The bus between nodes (`nats://HOST:4222`): a node that commits a change rings the
    /// others, who then read it at once instead of at their next poll.
    #[arg(long, global = true, env = "TIDINGS_BUS")]
    bus: Option<String>,
    /// Circles with more subscribers than this are merged into inboxes at read time.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_MERGE_THRESHOLD",
        default_value_t = 64
    )]
    merge_threshold: i64,
    /// Producers with more followers than this are merged into followers' feeds at read time.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_FOLLOWER_MERGE_THRESHOLD",
        default_value_t = 1000
    )]
    follower_merge_threshold: i64,
    /// How many of a producer's recent activities a new follower gets copied in.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_FOLLOW_COPY_LIMIT",
        default_value_t = 100
    )]
    follow_copy_limit: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (and docs) on one port.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "TIDINGS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Optional config file (registration, limits, custom types, `[store] url`).
        #[arg(long, env = "TIDINGS_CONFIG")]
        config: Option<PathBuf>,
        /// What this node runs, comma-separated from `api`, `router`, `push` (default: all).
        /// A node without `router` never routes (PostgreSQL only); one without `api` or `push`
        /// answers those requests 421 `role_not_served`.
        #[arg(
            long,
            env = "TIDINGS_ROLES",
            value_delimiter = ',',
            default_value = "api,router,push"
        )]
        roles: Vec<Role>,
        /// `off` turns every rate limit off (load tests, or limits kept at a proxy); `on`
        /// (the default) keeps the config file's `[limits]`.
        #[arg(long, env = "TIDINGS_RATE_LIMITS", default_value = "on")]
        rate_limits: Switch,
    },
    /// Create or upgrade the store's schema, then exit (serve also does this at start-up).
    Migrate {
        /// PostgreSQL: grant this role what a server needs and no more (INSERT and SELECT only
        /// on the log tables), so servers can run as it instead of as the schema's owner.
        #[arg(long)]
        grant_to: Option<String>,
    },
    /// Whole-store operations.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Re-check every activity digest and stream hash chain; exits non-zero on any mismatch.
    Verify,
    /// Take a consistent backup of the embedded store into DIR (new or empty) while it runs.
    /// For PostgreSQL use `pg_dump` (see docs/operations.md).
    Backup {
        /// Where to write the backup.
        dir: PathBuf,
    },
    /// Bring a backup taken by `tidings backup` back into --data-dir (stop the server first).
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// Replace the store --data-dir already holds (kept as tidings.db.before-restore).
        #[arg(long)]
        force: bool,
    },
    /// Re-derive every routed projection (inbox entries, feeds, notifications, counts) from
    /// the log. Offline: stop every server of the store first.
    Rebuild,
    /// Generate a synthetic community through the engine (deterministic from --seed).
    Seed(seed::SeedArgs),
    /// Load a running server over HTTP (open loop, latency percentiles).
    Bench(bench::BenchArgs),
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// An on/off flag value.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a whole store into an empty one (e.g. `--from ./data --to postgres://…`): every
    /// activity, digest, chain, user, session, circle, follow, subscription, hide and marker.
    /// Stop the source's server first.
    Copy {
        /// The source: a data directory or a PostgreSQL URL.
        #[arg(long)]
        from: String,
        /// The empty target: a data directory or a PostgreSQL URL.
        #[arg(long)]
        to: String,
    },
}

/// A part of the work a node can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// The HTTP API.
    Api,
    /// Routing the log into inboxes (one node at a time does it; others stand by).
    Router,
    /// Live channels (SSE and Socket.IO).
    Push,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user and print a session token for it.
    CreateUser {
        /// Username (lowercase slug).
        name: String,
        /// Password (at least 8 characters).
        #[arg(long)]
        password: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// Shown name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Print a new session token for an existing user.
    Token {
        /// Username.
        name: String,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    let store_config = StoreConfig {
        merge_threshold: cli.merge_threshold,
        follower_merge_threshold: cli.follower_merge_threshold,
        follow_copy_limit: cli.follow_copy_limit,
        ..StoreConfig::default()
    };
    let location = StoreLocation::parse(
        &cli.store
            .clone()
            .unwrap_or_else(|| cli.data_dir.display().to_string()),
    );
    match cli.command {
        Command::Serve {
            listen,
            config,
            roles,
            rate_limits,
        } => {
            let mut config = match config {
                Some(path) => ServerConfig::load(&path)?,
                None => ServerConfig::default(),
            };
            if rate_limits == Switch::Off {
                config.rate_limits.enabled = false;
            }
            // Media blobs live beside the embedded store unless `[media] store` says otherwise.
            if config.media.store.is_none() {
                config.media.store = Some(cli.data_dir.join("media").display().to_string());
            }
            // The flag and the environment win over the config file's `[store] url`.
            let location = match (&cli.store, &config.store_url) {
                (None, Some(url)) => StoreLocation::parse(url),
                _ => location,
            };
            let store_config = StoreConfig {
                router: roles.contains(&Role::Router),
                ..store_config
            };
            // One embedded node is the whole deployment: it must route.
            if matches!(location, StoreLocation::Embedded(_)) && !roles.contains(&Role::Router) {
                bail!(
                    "--roles without router needs the PostgreSQL store (--store postgres://…): \
                     the embedded store has one node, and it routes"
                );
            }
            // A node without api or push (`--roles router`) answers only /healthz and /readyz.
            let config = ServerConfig {
                roles: ServedRoles {
                    api: roles.contains(&Role::Api),
                    push: roles.contains(&Role::Push),
                },
                ..config
            };
            let store = Store::open(&location, store_config)
                .with_context(|| format!("opening the store at {}", location.describe()))?;
            let bus = cli.bus.clone().or_else(|| config.bus_url.clone());
            if let Some(bus) = &bus {
                tidings_server::bus::nats::attach(bus, &store)
                    .await
                    .with_context(|| format!("attaching the bus {bus}"))?;
            }
            let state = tidings_server::AppState::new(store.clone(), config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(%listen, store = %location.describe(), "tidings is serving");
            tidings_server::run(listener, state, shutdown_signal()).await?;
            store.close();
        }
        Command::Verify => {
            // A plain connection: verify runs next to a live server and needs no index.
            // Off the async threads: the PostgreSQL client blocks.
            let report = run_blocking(|| AdminConnection::open(&location)?.verify())?;
            println!(
                "checked {} activities, {} streams, {} links",
                report.activities, report.streams, report.links
            );
            if !report.ok() {
                for problem in &report.problems {
                    eprintln!("MISMATCH: {problem}");
                }
                bail!("{} integrity problem(s) found", report.problems.len());
            }
            println!("ok: every digest and chain verifies");
        }
        Command::Backup { dir } => {
            let StoreLocation::Embedded(data_dir) = &location else {
                bail!(
                    "tidings backup is for the embedded store; back PostgreSQL up with pg_dump \
                     (see docs/operations.md)"
                );
            };
            let report = tidings_store::backup_embedded(data_dir, &dir).with_context(|| {
                format!("backing {} up into {}", data_dir.display(), dir.display())
            })?;
            let m = &report.manifest;
            println!(
                "ok: backed up {} activities (last seq {}, {} bytes) into {}; {} streams verify",
                m.activities,
                m.last_seq,
                m.bytes,
                dir.display(),
                report.verify.streams
            );
        }
        Command::Restore { dir, force } => {
            let StoreLocation::Embedded(data_dir) = &location else {
                bail!(
                    "tidings restore is for the embedded store; restore PostgreSQL with \
                     pg_restore (see docs/operations.md)"
                );
            };
            let report =
                tidings_store::restore_embedded(&dir, data_dir, force).with_context(|| {
                    format!("restoring {} into {}", dir.display(), data_dir.display())
                })?;
            if let Some(kept) = &report.replaced {
                println!("the store it replaced is kept as {}", kept.display());
            }
            let m = &report.manifest;
            println!(
                "ok: restored {} activities (last seq {}, backup of {}) into {}; run `tidings \
                 verify` any time",
                m.activities,
                m.last_seq,
                m.created_at,
                data_dir.display()
            );
        }
        Command::Rebuild => {
            let report = tidings_store::rebuild(&location, &store_config)
                .with_context(|| format!("rebuilding {}", location.describe()))?;
            println!(
                "ok: routed {} activities again; inbox entries {} -> {}, notifications {} -> {}; \
                 {} activities in the search index; {} direct messages in conversations, \
                 {} group membership changes replayed",
                report.activities,
                report.entries.0,
                report.entries.1,
                report.notifications.0,
                report.notifications.1,
                report.indexed,
                report.conversation_messages,
                report.group_changes
            );
        }
        Command::Seed(args) => {
            let store = Store::open(&location, store_config)?;
            let result = seed::seed(&store, &cli.data_dir, &args).await;
            store.close();
            result?;
        }
        Command::Bench(args) => bench::run(args).await?,
        Command::Admin { command } => {
            run_blocking(|| admin(&AdminConnection::open(&location)?, command))?
        }
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => {
            let (from, to) = (StoreLocation::parse(&from), StoreLocation::parse(&to));
            let report = tidings_store::copy_store(&from, &to)
                .with_context(|| format!("copying {} to {}", from.describe(), to.describe()))?;
            for (table, rows) in &report.tables {
                println!("{table}: {rows} rows");
            }
            println!(
                "ok: copied {} rows from {} to {}; run `tidings verify` on the target",
                report.rows(),
                from.describe(),
                to.describe()
            );
        }
        Command::Migrate { grant_to } => {
            Store::migrate(&location, grant_to.as_deref())
                .with_context(|| format!("migrating the store at {}", location.describe()))?;
            println!("ok: the store at {} is up to date", location.describe());
        }
    }
    Ok(())
}

/// Runs `f` on a plain thread: the PostgreSQL client blocks, which async threads must not.
fn run_blocking<T: Send, E: Send>(f: impl FnOnce() -> Result<T, E> + Send) -> Result<T, E> {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Admin commands write through a plain connection, so they work while a server runs.
fn admin(store: &AdminConnection, command: AdminCommand) -> anyhow::Result<()> {
    use tidings_server::api::users::{check_display_name, check_password, check_username};
    use tidings_server::auth::{hash_password, new_token};
    let user = match command {
        AdminCommand::CreateUser {
            name,
            password,
            admin,
            display_name,
        } => {
            let name = check_username(&name).map_err(|e| anyhow::anyhow!(e.message))?;
            check_password(&password).map_err(|e| anyhow::anyhow!(e.message))?;
            let display_name = check_display_name(display_name.as_deref(), &name)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let hash = hash_password(&password).map_err(|e| anyhow::anyhow!(e.message))?;
            store.create_user(&name, &display_name, Some(hash), admin)?
        }
        AdminCommand::Token { name } => {
            let user = store.user(&name)?;
            if user.status != tidings_store::model::UserStatus::Active {
                bail!(
                    "user {name} is {}: a token would not work",
                    user.status.as_str()
                );
            }
            user
        }
    };
    let (token, token_hash) = new_token();
    store.create_session(user.id, &token_hash)?;
    println!("{token}");
    Ok(())
}
