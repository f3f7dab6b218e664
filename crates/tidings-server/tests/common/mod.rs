//! Test fixture: a real Tidings server on 127.0.0.1:0 over a temporary data dir, and a small
//! JSON client. Shared by the integration test binaries.
#![allow(dead_code)]

pub mod sse;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tidings_server::config::ServerConfig;
use tidings_store::Store;
use tidings_store::{StoreConfig, StoreLocation};
use tokio::sync::oneshot;

/// Where a test server keeps its data: the temporary dir (embedded store), or, when
/// `TIDINGS_TEST_STORE` names a PostgreSQL database, a fresh database created beside it for this
/// server. Its name is kept in the dir, so a server restarted over the same dir finds its data.
pub fn test_store_location(dir: &std::path::Path) -> StoreLocation {
    let Ok(admin_url) = std::env::var("TIDINGS_TEST_STORE") else {
        return StoreLocation::Embedded(dir.into());
    };
    let marker = dir.join("postgres-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return StoreLocation::Postgres(url);
    }
    let name = format!("tidings_t_{}", uuid::Uuid::now_v7().simple());
    let url =
        tidings_store::create_postgres_database(&admin_url, &name).expect("create test database");
    std::fs::write(&marker, &url).expect("remember the test database");
    StoreLocation::Postgres(url)
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Direct handle on the store (for admin set-up and invariants).
    pub store: Store,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    dir: TempDir,
    /// Held while this server may use PostgreSQL connections (see [`POSTGRES_SERVERS`]).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// PostgreSQL-backed servers alive at once: each holds a few connections (writer, tailer,
/// router, readers) and the test database allows 100.
static POSTGRES_SERVERS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(12)));

impl Drop for TestServer {
    fn drop(&mut self) {
        // Stop the store's threads and connections even when a test ends without `stop`.
        self.store.close();
    }
}

/// A response: status, headers and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(ServerConfig::default(), StoreConfig::default()).await
    }

    /// Starts a server with the given configuration.
    pub async fn start_with(config: ServerConfig, store_config: StoreConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config, store_config).await
    }

    /// Starts a server over an existing data dir. The rate limits are off: suites sign up and
    /// call from one address far faster than a person (`tests/limits.rs` turns them on with
    /// [`TestServer::start_limited`]).
    pub async fn start_in(
        dir: TempDir,
        config: ServerConfig,
        store_config: StoreConfig,
    ) -> TestServer {
        let config = ServerConfig {
            rate_limits: tidings_server::limits::RateLimits::off(),
            ..config
        };
        Self::launch(dir, config, store_config).await
    }

    /// Starts a server whose rate limits are as configured.
    pub async fn start_limited(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::launch(dir, config, StoreConfig::default()).await
    }

    async fn launch(dir: TempDir, config: ServerConfig, store_config: StoreConfig) -> TestServer {
        // Media blobs in the test's own directory unless the suite names a store.
        let mut config = config;
        if config.media.store.is_none() {
            config.media.store = Some(dir.path().join("media").display().to_string());
        }
        let location = test_store_location(dir.path());
        let slot = match location {
            StoreLocation::Postgres(_) => Some(
                POSTGRES_SERVERS
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("server slot"),
            ),
            StoreLocation::Embedded(_) => None,
        };
        let store_config = match location {
            // Few readers: many test servers share one PostgreSQL.
            StoreLocation::Postgres(_) => StoreConfig {
                readers: 2,
                ..store_config
            },
            StoreLocation::Embedded(_) => store_config,
        };
        let store = Store::open(&location, store_config).expect("open store");
        let state = tidings_server::AppState::new(store.clone(), config)
            .await
            .expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tidings_server::run(listener, state, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        TestServer {
            base: format!("http://{addr}"),
            store,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            dir,
            _slot: slot,
        }
    }

    /// Another node on the same PostgreSQL database (a cluster of two in one process); None
    /// on the embedded store, whose data dir one process owns.
    pub async fn start_peer(&self) -> Option<TestServer> {
        self.start_peer_with(StoreConfig::default()).await
    }

    /// [`TestServer::start_peer`] with a store configuration.
    pub async fn start_peer_with(&self, store_config: StoreConfig) -> Option<TestServer> {
        self.start_peer_configured(ServerConfig::default(), store_config)
            .await
    }

    /// [`TestServer::start_peer`] with a server and a store configuration.
    pub async fn start_peer_configured(
        &self,
        config: ServerConfig,
        store_config: StoreConfig,
    ) -> Option<TestServer> {
        let StoreLocation::Postgres(url) = test_store_location(self.dir.path()) else {
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("postgres-url"), url).expect("peer marker");
        Some(Self::start_in(dir, config, store_config).await)
    }

    /// The PostgreSQL URL of this server's database, if it has one.
    pub fn postgres_url(&self) -> Option<String> {
        match test_store_location(self.dir.path()) {
            StoreLocation::Postgres(url) => Some(url),
            StoreLocation::Embedded(_) => None,
        }
    }

    /// Stops the server and hands back its data dir (to restart over it).
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.store.close();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// The data dir path.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether anything the store keeps (its files, or every row of its PostgreSQL database)
    /// contains `needle`.
    pub fn stored_contains(&self, needle: &str) -> bool {
        match test_store_location(self.dir.path()) {
            StoreLocation::Embedded(dir) => files_contain(&dir, needle.as_bytes()),
            StoreLocation::Postgres(url) => {
                let needle = needle.to_owned();
                // The synchronous client must not run on the test's async thread.
                std::thread::spawn(move || {
                    let mut client =
                        postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                    let tables: Vec<String> = client
                        .query(
                            "SELECT table_name::text FROM information_schema.tables
                             WHERE table_schema = 'public'",
                            &[],
                        )
                        .expect("tables")
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    tables.iter().any(|table| {
                        client
                            .query(&format!("SELECT CAST(t AS text) FROM {table} t"), &[])
                            .expect("rows")
                            .iter()
                            .any(|row| row.get::<_, String>(0).contains(&needle))
                    })
                })
                .join()
                .expect("search thread")
            }
        }
    }

    /// Sends a request; `path` is relative to `/api/v1` unless it starts with `http` or `//`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = if path.starts_with('/')
            && !path.starts_with("/api")
            && !path.starts_with("/docs")
            && !path.starts_with("/healthz")
            && !path.starts_with("/readyz")
        {
            format!("{}/api/v1{}", self.base, path)
        } else {
            format!("{}{}", self.base, path)
        };
        let mut req = self.client.request(method, url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    /// GET with a token.
    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.request(Method::GET, path, Some(token), None, &[])
            .await
    }

    /// POST JSON with a token.
    pub async fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// PUT (no body) with a token.
    pub async fn put(&self, token: &str, path: &str) -> Resp {
        self.request(Method::PUT, path, Some(token), None, &[])
            .await
    }

    /// DELETE with a token.
    pub async fn delete(&self, token: &str, path: &str) -> Resp {
        self.request(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    /// Signs a user up through the API and logs in; returns the token.
    pub async fn user(&self, name: &str) -> String {
        let r = self
            .request(
                Method::POST,
                "/users",
                None,
                Some(json!({"username": name, "password": "correct horse", "display_name": name.to_uppercase()})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "signup {name}: {:?}", r.body);
        self.login(name, "correct horse").await
    }

    /// Logs in; returns the token.
    pub async fn login(&self, name: &str, password: &str) -> String {
        let r = self
            .request(
                Method::POST,
                "/sessions",
                None,
                Some(json!({"username": name, "password": password})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "login {name}: {:?}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates an admin directly in the store (as `tidings admin create-user --admin` does).
    pub async fn admin(&self, name: &str) -> String {
        let hash = tidings_server::auth::hash_password("correct horse").expect("hash");
        let user = self
            .store
            .create_user(name.into(), name.into(), Some(hash), true)
            .await
            .expect("admin");
        let (token, token_hash) = tidings_server::auth::new_token();
        self.store
            .create_session(user.id, token_hash)
            .await
            .expect("session");
        token
    }

    /// Creates a circle owned by the token's user.
    pub async fn circle(
        &self,
        token: &str,
        name: &str,
        visibility: &str,
        join_policy: &str,
    ) -> Value {
        let r = self
            .post(
                token,
                "/circles",
                json!({"name": name, "description": format!("the {name} circle"), "visibility": visibility, "join_policy": join_policy}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "circle {name}: {:?}", r.body);
        r.body
    }

    /// Publishes and waits for routing; returns the stored activity.
    pub async fn publish(&self, token: &str, activity: Value) -> Value {
        let r = self.post(token, "/outbox?wait=routed", activity).await;
        assert_eq!(r.status, StatusCode::CREATED, "publish: {:?}", r.body);
        r.body
    }

    /// Publishes a Note with content, audience and tags.
    pub async fn note(&self, token: &str, content: &str, to: &[&str], tags: &[&str]) -> Value {
        self.publish(
            token,
            json!({"type": "Create", "object": {"type": "Note", "content": content}, "to": to, "tag": tags}),
        )
        .await
    }

    /// Waits until everything published so far (on any node) is routed here.
    pub async fn settle(&self) {
        self.store.sync().await.expect("sync");
        let last = self.store.last_seq().await.expect("last seq");
        self.store.wait_routed(last).await.expect("routed");
    }

    /// Asserts that every digest and stream chain of the log verifies.
    pub async fn assert_verified(&self) {
        let report = self.store.verify().await.expect("verify");
        assert!(report.ok(), "{:?}", report.problems);
    }

    /// Ids of the activities in a page body, newest first.
    pub fn ids(page: &Value) -> Vec<String> {
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["activity"]["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Contents of the activities in a page body, newest first.
    pub fn contents(page: &Value) -> Vec<String> {
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        i["activity"]["object"]["content"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether any file under `dir` contains `needle`.
pub fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            return true;
        }
    }
    false
}
