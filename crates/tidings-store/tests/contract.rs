//! The store contract: what every adapter must do, run against the embedded store and, when
//! `TIDINGS_TEST_STORE` names a PostgreSQL database, against PostgreSQL (each test on a fresh
//! database). Without it the PostgreSQL half says loudly that it did not run, and fails when
//! `TIDINGS_REQUIRE_POSTGRES` is set (CI sets it).
//!
//! Covered here: publish and idempotency, routing to an addressee, immutability enforced by the
//! database itself, `verify`, a gap-free log in commit order under concurrent writers on two
//! nodes, cross-node reads (publish on one node, the same page on another), a router takeover.
//! The property test in `strategies.rs` covers routing, feeds, follows, retraction and hides on
//! every adapter and node count.

use serde_json::{Value, json};
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_store::model::{
    ActivitySearch, CircleHit, InboxFilter, JoinPolicy, LiveSession, NewCircle, NewSession,
    PageFrom, PublishInput, SearchPage, SearchSort, SessionLookup, User, Visibility,
};
use tidings_store::{AdminConnection, Store, StoreConfig, StoreError, StoreLocation};

/// A fresh store location of each configured adapter.
fn places() -> Vec<(StoreLocation, tempfile::TempDir)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    out.push((StoreLocation::Embedded(dir.path().into()), dir));
    if let Some(url) = fresh_postgres() {
        out.push((
            StoreLocation::Postgres(url),
            tempfile::tempdir().expect("tempdir"),
        ));
    }
    out
}

/// A fresh PostgreSQL database, or None (said loudly) when none is configured.
fn fresh_postgres() -> Option<String> {
    let Ok(admin) = std::env::var("TIDINGS_TEST_STORE") else {
        eprintln!(
            "!!! the PostgreSQL half of the store contract did NOT run: set TIDINGS_TEST_STORE \
             (e.g. postgres://postgres@127.0.0.1/test)"
        );
        assert!(
            std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
            "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
        );
        return None;
    };
    let name = format!("tidings_c_{}", uuid::Uuid::now_v7().simple());
    Some(tidings_store::create_postgres_database(&admin, &name).expect("create database"))
}

fn open(location: &StoreLocation) -> Store {
    Store::open(location, StoreConfig::default()).expect("open store")
}

async fn publish(store: &Store, actor: &User, doc: Value, key: Option<&str>) -> (i64, String) {
    let draft = normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn).expect("draft");
    let p = store
        .publish(PublishInput {
            actor: actor.clone(),
            draft,
            idempotency_key: key.map(str::to_owned),
        })
        .await
        .expect("publish");
    (p.seq, p.id)
}

/// Creates a user named `name` (shown capitalised).
async fn user(store: &Store, name: &str) -> User {
    let shown = name[..1].to_uppercase() + &name[1..];
    store
        .create_user(name.into(), shown, None, false)
        .await
        .expect("user")
}

async fn inbox_seqs(store: &Store, user: &User) -> Vec<i64> {
    let page = store
        .inbox(user.clone(), InboxFilter::default(), PageFrom::Newest, 100)
        .await
        .expect("inbox");
    page.items.iter().map(|i| i.seq).collect()
}

#[tokio::test]
async fn publish_is_idempotent_routed_and_verified_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let bo = user(&store, "bo").await;
        let doc = json!({"object": {"content": "hello"}, "to": ["user:bo"]});
        let (seq, id) = publish(&store, &ana, doc.clone(), Some("k1")).await;
        let (again, again_id) = publish(&store, &ana, doc, Some("k1")).await;
        assert_eq!(
            (seq, &id),
            (again, &again_id),
            "{location:?}: idempotency key"
        );
        assert_eq!(store.last_seq().await.expect("last"), seq, "{location:?}");
        store.wait_routed(seq).await.expect("routed");
        assert_eq!(inbox_seqs(&store, &bo).await, vec![seq], "{location:?}");
        let report = store.verify().await.expect("verify");
        assert!(report.ok(), "{location:?}: {:?}", report.problems);
        assert_eq!(report.activities, 1);
        store.close();
    }
}

#[tokio::test]
async fn a_refused_publish_changes_nothing_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let draft = normalize(
            &json!({"object": {"content": "x"}, "to": ["user:nobody"]}),
            &Limits::default(),
            &|_| TypeStatus::BuiltIn,
        )
        .expect("draft");
        let refused = store
            .publish(PublishInput {
                actor: ana.clone(),
                draft,
                idempotency_key: None,
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Unprocessable { .. })),
            "{location:?}: {refused:?}"
        );
        assert_eq!(store.last_seq().await.expect("last"), 0, "{location:?}");
        // The next accepted publish takes seq 1: the refusal left no gap.
        let (seq, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "y"}, "to": ["public"]}),
            None,
        )
        .await;
        assert_eq!(seq, 1, "{location:?}");
        store.close();
    }
}

/// Tries to change the log behind the store's back, as the database's owner would.
fn tamper(location: &StoreLocation) -> Vec<String> {
    let statements = [
        "UPDATE activities SET body = '{}'",
        "DELETE FROM activities",
        "UPDATE stream_links SET chain = 'x'",
        "DELETE FROM stream_links",
    ];
    let mut refusals = Vec::new();
    match location {
        StoreLocation::Embedded(dir) => {
            let conn = rusqlite::Connection::open(dir.join("tidings.db")).expect("raw");
            for sql in statements {
                if let Err(e) = conn.execute(sql, []) {
                    refusals.push(e.to_string());
                }
            }
        }
        StoreLocation::Postgres(url) => {
            let url = url.clone();
            // The synchronous client must not run on the test's async thread.
            refusals = std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("raw");
                let mut refusals = Vec::new();
                for sql in statements
                    .iter()
                    .copied()
                    .chain(["TRUNCATE activities CASCADE", "TRUNCATE changes"])
                {
                    if let Err(e) = client.batch_execute(sql) {
                        refusals.push(e.to_string());
                    }
                }
                refusals
            })
            .join()
            .expect("tamper thread");
        }
    }
    refusals
}

#[tokio::test]
async fn the_database_itself_refuses_to_change_the_log() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        publish(
            &store,
            &ana,
            json!({"object": {"content": "kept"}, "to": ["public"]}),
            None,
        )
        .await;
        let refusals = tamper(&location);
        let expected = match location {
            StoreLocation::Embedded(_) => 4,
            StoreLocation::Postgres(_) => 6,
        };
        assert_eq!(refusals.len(), expected, "{location:?}: {refusals:?}");
        let report = store.verify().await.expect("verify");
        assert!(report.ok(), "{location:?}: {:?}", report.problems);
        assert_eq!(report.activities, 1, "{location:?}");
        store.close();
        // The offline verifier (`tidings verify`) agrees.
        let location2 = location.clone();
        let offline = std::thread::spawn(move || {
            AdminConnection::open(&location2)
                .expect("admin")
                .verify()
                .expect("verify")
        })
        .join()
        .expect("verify thread");
        assert!(offline.ok(), "{location:?}");
    }
}

#[tokio::test]
async fn one_stream_appended_through_two_nodes_keeps_one_chain() {
    // Each node's writer keeps the stream heads it appended to; a head another node moved since
    // must be read again, or the next link would repeat a position and break the chain.
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let a = open(&location);
    let b = open(&location);
    let ana = user(&a, "ana").await;
    user(&a, "bo").await;
    b.sync().await.expect("sync");
    let mut seqs = Vec::new();
    for round in 0..6 {
        let node = if round % 2 == 0 { &a } else { &b };
        let doc = json!({"object": {"content": format!("{round}")}, "to": ["user:bo"]});
        seqs.push(publish(node, &ana, doc, None).await.0);
    }
    assert_eq!(seqs, (seqs[0]..seqs[0] + 6).collect::<Vec<i64>>());
    for node in [&a, &b] {
        node.sync().await.expect("sync");
        let page = node
            .outbox("ana", ana.clone(), PageFrom::Newest, 100)
            .await
            .expect("outbox");
        let mut listed: Vec<i64> = page.items.iter().map(|i| i.seq).collect();
        listed.sort_unstable();
        assert_eq!(listed, seqs, "every post in the outbox, on either node");
        let report = node.verify().await.expect("verify");
        assert!(report.ok(), "{:?}", report.problems);
    }
    a.close();
    b.close();
}

#[tokio::test]
async fn two_nodes_write_one_gap_free_log_and_read_the_same_pages() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let a = open(&location);
    let b = open(&location);
    let mut users = Vec::new();
    for (i, node) in [&a, &b].iter().enumerate() {
        users.push(
            node.create_user(format!("u{i}"), format!("U{i}"), None, false)
                .await
                .expect("user"),
        );
    }
    // Both nodes publish concurrently, each to the other's user.
    let mut tasks = Vec::new();
    for round in 0..40 {
        for (i, node) in [&a, &b].iter().enumerate() {
            let node = (*node).clone();
            let author = users[i].clone();
            let to = format!("user:u{}", 1 - i);
            tasks.push(tokio::spawn(async move {
                publish(
                    &node,
                    &author,
                    json!({"object": {"content": format!("{round}")}, "to": [to]}),
                    None,
                )
                .await
            }));
        }
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("task").0);
    }
    seqs.sort_unstable();
    // Every acknowledged publish has its own seq, and together they are 1..=N: no gap.
    assert_eq!(seqs, (1..=80).collect::<Vec<i64>>());
    for node in [&a, &b] {
        node.sync().await.expect("sync");
        node.wait_routed(80).await.expect("routed");
    }
    for user in &users {
        let on_a = inbox_seqs(&a, user).await;
        let on_b = inbox_seqs(&b, user).await;
        // 40 received, 40 of their own (an inbox shows its owner's posts too).
        assert_eq!(on_a.len(), 80);
        assert_eq!(on_a, on_b, "the same inbox on both nodes");
    }
    // A cursor from node A walks on node B.
    let first = a
        .inbox(
            users[0].clone(),
            InboxFilter::default(),
            PageFrom::Newest,
            7,
        )
        .await
        .expect("page");
    let last = first.items.last().expect("items").seq;
    let rest = b
        .inbox(
            users[0].clone(),
            InboxFilter::default(),
            PageFrom::Before(last),
            100,
        )
        .await
        .expect("page");
    let walked: Vec<i64> = first
        .items
        .iter()
        .chain(rest.items.iter())
        .map(|i| i.seq)
        .collect();
    assert_eq!(walked, inbox_seqs(&a, &users[0]).await);
    let report = b.verify().await.expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    a.close();
    b.close();
}

#[tokio::test]
async fn another_node_takes_over_routing_when_the_router_goes() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let first = open(&location);
    let ana = user(&first, "ana").await;
    let bo = user(&first, "bo").await;
    let (seq, _) = publish(
        &first,
        &ana,
        json!({"object": {"content": "1"}, "to": ["user:bo"]}),
        None,
    )
    .await;
    first
        .wait_routed(seq)
        .await
        .expect("routed by the first node");
    // A second node that may route stands by while the first holds the router lock.
    let second = open(&location);
    first.close();
    let (seq, _) = publish(
        &second,
        &ana,
        json!({"object": {"content": "2"}, "to": ["user:bo"]}),
        None,
    )
    .await;
    tokio::time::timeout(std::time::Duration::from_secs(10), second.wait_routed(seq))
        .await
        .expect("the second node took over routing")
        .expect("routed");
    assert_eq!(inbox_seqs(&second, &bo).await, vec![2, 1]);
    second.close();
}

/// The newest change record's body, read straight from PostgreSQL.
fn last_change(url: &str) -> Value {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let body: String = client
            .query_one("SELECT body FROM changes ORDER BY seq DESC LIMIT 1", &[])
            .expect("change")
            .get(0);
        serde_json::from_str(&body).expect("json")
    })
    .join()
    .expect("read change")
}

#[tokio::test]
async fn a_routing_node_routes_its_publish_in_the_publish_commit() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url.clone());
    // A node without the router role writes the publish alone: the routing waits for a router.
    let api_only = Store::open(
        &location,
        StoreConfig {
            router: false,
            ..StoreConfig::default()
        },
    )
    .expect("open");
    let ana = user(&api_only, "ana").await;
    let bo = user(&api_only, "bo").await;
    let (first, _) = publish(
        &api_only,
        &ana,
        json!({"object": {"content": "1"}, "to": ["user:bo"]}),
        None,
    )
    .await;
    let change = last_change(&url);
    assert_eq!(change["writes"], json!(true), "{change}");
    assert!(change.get("routed").is_none(), "{change}");
    // A node that routes: its writer routes the backlog and its own publish before the one
    // commit, so the publish's own change record carries the entries and the watermark.
    let router = open(&location);
    // Its router thread routes the backlog; the writer always routes at least the oldest
    // pending activity, so with no backlog left that is its own publish.
    router.wait_routed(first).await.expect("backlog routed");
    let (second, _) = publish(
        &router,
        &ana,
        json!({"object": {"content": "2"}, "to": ["user:bo"]}),
        None,
    )
    .await;
    // Nothing else can have routed the second publish before its own commit.
    let change = last_change(&url);
    assert_eq!(change["routed"], json!(second), "{change}");
    assert!(
        change["effects"]
            .as_array()
            .expect("effects")
            .iter()
            .any(|e| e.get("Entries").is_some()),
        "{change}"
    );
    assert_eq!(change["writes"], json!(true), "{change}");
    for node in [&api_only, &router] {
        node.sync().await.expect("sync");
        node.wait_routed(second).await.expect("routed");
    }
    assert_eq!(inbox_seqs(&api_only, &bo).await, vec![second, first]);
    assert_eq!(inbox_seqs(&router, &bo).await, vec![second, first]);
    assert!(router.verify().await.expect("verify").ok());
    api_only.close();
    router.close();
}

#[tokio::test]
async fn the_server_role_may_only_append_to_the_log() {
    let Some(owner_url) = fresh_postgres() else {
        return;
    };
    let role = format!("tidings_app_{}", uuid::Uuid::now_v7().simple());
    let (base, db) = owner_url.rsplit_once('/').expect("url");
    let host = base.rsplit_once('@').map_or(base, |(_, host)| host);
    let app_url = format!("postgres://{role}@{host}/{db}");
    {
        let (owner_url, role) = (owner_url.clone(), role.clone());
        std::thread::spawn(move || {
            let mut owner = postgres::Client::connect(&owner_url, postgres::NoTls).expect("owner");
            owner
                .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
                .expect("role");
        })
        .join()
        .expect("create role");
    }
    Store::migrate(&StoreLocation::Postgres(owner_url.clone()), Some(&role)).expect("migrate");
    // The server runs as the restricted role: it starts, publishes, routes and verifies.
    let location = StoreLocation::Postgres(app_url.clone());
    let store = open(&location);
    let ana = user(&store, "ana").await;
    let (seq, _) = publish(
        &store,
        &ana,
        json!({"object": {"content": "x"}, "to": ["public"]}),
        None,
    )
    .await;
    store.wait_routed(seq).await.expect("routed");
    assert!(store.verify().await.expect("verify").ok());
    store.close();
    // The role itself is refused any change to the log, before any trigger runs.
    let refusals = std::thread::spawn(move || {
        let mut app = postgres::Client::connect(&app_url, postgres::NoTls).expect("app");
        [
            "UPDATE activities SET body = '{}'",
            "DELETE FROM stream_links",
            "TRUNCATE changes",
            "DELETE FROM activity_tags",
            "DROP TRIGGER activities_append_only ON activities",
        ]
        .iter()
        .map(|sql| {
            app.batch_execute(sql)
                .err()
                .and_then(|e| e.code().map(|c| c.code().to_owned()))
        })
        .collect::<Vec<_>>()
    })
    .join()
    .expect("app thread");
    // 42501 insufficient_privilege for the grants; 42501 too for dropping a trigger one does
    // not own.
    assert!(
        refusals.iter().all(|code| code.as_deref() == Some("42501")),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn an_index_loaded_at_start_reads_what_the_live_one_read() {
    // 60 followers × 110 posts: more entries than one fetch of the start-up cursor (5,000).
    for (location, _dir) in places() {
        let store = open(&location);
        let star = user(&store, "star").await;
        let mut fans = Vec::new();
        for i in 0..60 {
            let fan = store
                .create_user(format!("fan{i}"), format!("Fan {i}"), None, false)
                .await
                .expect("fan");
            publish(
                &store,
                &fan,
                json!({"type": "Follow", "object": "user:star"}),
                None,
            )
            .await;
            fans.push(fan);
        }
        let mut tasks = Vec::new();
        for i in 0..110 {
            let (store, star) = (store.clone(), star.clone());
            tasks.push(tokio::spawn(async move {
                publish(
                    &store,
                    &star,
                    json!({"object": {"content": format!("p{i}")}, "to": ["followers"]}),
                    None,
                )
                .await
            }));
        }
        for task in tasks {
            task.await.expect("publish");
        }
        store
            .wait_routed(store.last_seq().await.expect("last"))
            .await
            .expect("routed");
        let mut live = Vec::new();
        for fan in &fans {
            live.push(inbox_seqs(&store, fan).await);
        }
        assert!(
            live.iter().all(|seqs| seqs.len() == 100),
            "{location:?}: pages of 100"
        );
        store.close();
        let reopened = open(&location);
        for (fan, before) in fans.iter().zip(&live) {
            assert_eq!(&inbox_seqs(&reopened, fan).await, before, "{location:?}");
        }
        reopened.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions: devices, sliding expiry, revocation by id, password change
// ---------------------------------------------------------------------------------------------

/// A session with device details and the given lifetime.
fn device(token_hash: &str, ttl: std::time::Duration, agent: &str) -> NewSession {
    NewSession {
        token_hash: token_hash.into(),
        ttl,
        user_agent: Some(agent.into()),
        ip: Some("192.0.2.7".into()),
    }
}

fn live(lookup: SessionLookup) -> LiveSession {
    match lookup {
        SessionLookup::Live(session) => session,
        other => panic!("expected a live session, got {other:?}"),
    }
}

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[tokio::test]
async fn sessions_are_listed_per_device_and_revoked_by_their_public_id() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let bob = user(&store, "bob").await;
        let laptop = store
            .open_session(ana.id, device("hash-laptop", DAY, "Laptop/1.0"))
            .await
            .expect("laptop");
        let phone = store
            .open_session(ana.id, device("hash-phone", DAY, "Phone/2.0"))
            .await
            .expect("phone");
        store
            .open_session(bob.id, device("hash-bob", DAY, "Bob/1.0"))
            .await
            .expect("bob");
        assert_ne!(laptop.id, phone.id);
        assert!(
            !laptop.id.contains("hash"),
            "the public id is not the token"
        );
        assert!(laptop.expires_at > laptop.created_at, "{laptop:?}");

        let listed = store
            .sessions_of(ana.id, "hash-phone".into())
            .await
            .expect("list");
        let mut ids: Vec<(&str, bool, Option<&str>)> = listed
            .iter()
            .map(|s| (s.id.as_str(), s.current, s.user_agent.as_deref()))
            .collect();
        ids.sort();
        let mut want = vec![
            (laptop.id.as_str(), false, Some("Laptop/1.0")),
            (phone.id.as_str(), true, Some("Phone/2.0")),
        ];
        want.sort();
        assert_eq!(ids, want, "{location:?}");
        assert!(listed.iter().all(|s| s.ip.as_deref() == Some("192.0.2.7")));

        // Another user's id is not found and revokes nothing.
        let refused = store.revoke_session_by_id(bob.id, laptop.id.clone()).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound { .. })),
            "{refused:?}"
        );
        assert_eq!(
            live(store.session("hash-laptop".into()).await.expect("s")).id,
            laptop.id
        );
        // Its owner revokes it: the token stops working at once, the other stays.
        store
            .revoke_session_by_id(ana.id, laptop.id.clone())
            .await
            .expect("revoke");
        assert!(matches!(
            store.session("hash-laptop".into()).await.expect("s"),
            SessionLookup::Unknown
        ));
        live(store.session("hash-phone".into()).await.expect("s"));
        let again = store.revoke_session_by_id(ana.id, laptop.id.clone()).await;
        assert!(
            matches!(again, Err(StoreError::NotFound { .. })),
            "{again:?}"
        );
        let left = store
            .sessions_of(ana.id, "hash-phone".into())
            .await
            .expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, phone.id);
        store.close();
    }
}

#[tokio::test]
async fn sessions_expire_unless_used_and_use_slides_the_expiry() {
    // Wide margins: a loaded machine may take a second between two steps.
    let short = std::time::Duration::from_millis(4000);
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        store
            .open_session(ana.id, device("hash-idle", short, "Idle"))
            .await
            .expect("idle");
        let used = store
            .open_session(ana.id, device("hash-used", short, "Used"))
            .await
            .expect("used");
        // Cached while live.
        live(store.session("hash-idle".into()).await.expect("s"));
        let before = live(store.session("hash-used".into()).await.expect("s"));
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        store
            .touch_session("hash-used".into(), short)
            .await
            .expect("touch");
        let touched = live(store.session("hash-used".into()).await.expect("s"));
        assert!(touched.expires_ms > before.expires_ms, "{location:?}");
        assert!(touched.last_used_ms > before.last_used_ms, "{location:?}");
        tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
        // 4.5 s after sign-in: the idle one expired (even though it was cached), the used one
        // (touched at 2.5 s, so good until 6.5 s) lives on.
        assert!(
            matches!(
                store.session("hash-idle".into()).await.expect("s"),
                SessionLookup::Expired
            ),
            "{location:?}"
        );
        live(store.session("hash-used".into()).await.expect("s"));
        let listed = store
            .sessions_of(ana.id, String::new())
            .await
            .expect("list");
        assert_eq!(
            listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
            vec![used.id.clone()],
            "an expired session is not listed"
        );
        assert!(listed[0].last_used_at > listed[0].created_at);
        // An expired session cannot be touched back to life.
        store
            .touch_session("hash-idle".into(), DAY)
            .await
            .expect("touch");
        assert!(matches!(
            store.session("hash-idle".into()).await.expect("s"),
            SessionLookup::Expired
        ));
        // Nor revoked by id (it is gone from the list).
        store.close();
        // The stored expiry is what counts after a restart.
        let store = open(&location);
        live(store.session("hash-used".into()).await.expect("s"));
        assert!(matches!(
            store.session("hash-idle".into()).await.expect("s"),
            SessionLookup::Expired
        ));
        store.close();
    }
}

#[tokio::test]
async fn pruning_deletes_only_sessions_that_ended_long_enough_ago() {
    let short = std::time::Duration::from_millis(1000);
    let hour = std::time::Duration::from_secs(3600);
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        for (hash, ttl) in [
            ("hash-live", DAY),
            ("hash-revoked", DAY),
            ("hash-expiring", short),
        ] {
            store
                .open_session(ana.id, device(hash, ttl, "x"))
                .await
                .expect("session");
        }
        store
            .revoke_session("hash-revoked".into())
            .await
            .expect("revoke");
        // Wide margin past the short session's expiry.
        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
        assert!(matches!(
            store.session("hash-expiring".into()).await.expect("s"),
            SessionLookup::Expired
        ));
        // Both ended less than an hour ago: kept.
        assert_eq!(store.prune_sessions(hour).await.expect("prune"), 0);
        assert!(matches!(
            store.session("hash-expiring".into()).await.expect("s"),
            SessionLookup::Expired
        ));
        // Both ended before now: deleted; the live one stays.
        let pruned = store
            .prune_sessions(std::time::Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(pruned, 2, "{location:?}");
        for hash in ["hash-revoked", "hash-expiring"] {
            assert!(
                matches!(
                    store.session(hash.into()).await.expect("s"),
                    SessionLookup::Unknown
                ),
                "{location:?} {hash} still resolves after pruning"
            );
            // Nothing can bring a pruned token back: a refresh finds no row.
            store.touch_session(hash.into(), DAY).await.expect("touch");
            assert!(matches!(
                store.session(hash.into()).await.expect("s"),
                SessionLookup::Unknown
            ));
        }
        live(store.session("hash-live".into()).await.expect("s"));
        let listed = store
            .sessions_of(ana.id, "hash-live".into())
            .await
            .expect("list");
        assert_eq!(listed.len(), 1, "{location:?}");
        // Pruning again (another node doing it too) finds nothing more.
        assert_eq!(
            store
                .prune_sessions(std::time::Duration::ZERO)
                .await
                .expect("prune"),
            0
        );
        store.close();
    }
}

#[tokio::test]
async fn a_password_change_revokes_every_other_session() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = store
            .create_user("ana".into(), "Ana".into(), Some("old-hash".into()), false)
            .await
            .expect("ana");
        let bob = user(&store, "bob").await;
        for hash in ["ana-1", "ana-2", "ana-3"] {
            store
                .open_session(ana.id, device(hash, DAY, "x"))
                .await
                .expect("session");
        }
        store
            .open_session(bob.id, device("bob-1", DAY, "x"))
            .await
            .expect("session");
        // Cache them all first: revocation must reach the cache.
        for hash in ["ana-1", "ana-2", "ana-3", "bob-1"] {
            live(store.session(hash.into()).await.expect("s"));
        }
        let revoked = store
            .change_password(ana.id, "new-hash".into(), "ana-2".into())
            .await
            .expect("change");
        assert_eq!(revoked, 2, "{location:?}");
        for (hash, alive) in [
            ("ana-1", false),
            ("ana-2", true),
            ("ana-3", false),
            ("bob-1", true),
        ] {
            let lookup = store.session(hash.into()).await.expect("s");
            assert_eq!(
                matches!(lookup, SessionLookup::Live(_)),
                alive,
                "{location:?} {hash}"
            );
        }
        let (_, hash) = store.user_with_password("ana").await.expect("ana");
        assert_eq!(hash.as_deref(), Some("new-hash"));
        let (_, hash) = store.user_with_password("bob").await.expect("bob");
        assert_eq!(hash, None, "another user's password is untouched");
        store.close();
    }
}

#[tokio::test]
async fn two_nodes_pruning_at_once_delete_each_ended_session_once() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let a = open(&location);
    let b = open(&location);
    let ana = user(&a, "ana").await;
    for i in 0..20 {
        let hash = format!("ended-{i}");
        a.open_session(ana.id, device(&hash, DAY, "x"))
            .await
            .expect("session");
        a.revoke_session(hash).await.expect("revoke");
    }
    a.open_session(ana.id, device("hash-live", DAY, "x"))
        .await
        .expect("live");
    // Past the revocations' millisecond.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (on_a, on_b) = tokio::join!(
        a.prune_sessions(std::time::Duration::ZERO),
        b.prune_sessions(std::time::Duration::ZERO)
    );
    assert_eq!(on_a.expect("a") + on_b.expect("b"), 20);
    b.sync().await.expect("sync");
    live(b.session("hash-live".into()).await.expect("s"));
    assert!(matches!(
        b.session("ended-3".into()).await.expect("s"),
        SessionLookup::Unknown
    ));
    a.close();
    b.close();
}

#[tokio::test]
async fn a_revocation_on_one_node_reaches_the_cache_of_another() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let a = open(&location);
    let b = open(&location);
    let ana = user(&a, "ana").await;
    let laptop = a
        .open_session(ana.id, device("hash-laptop", DAY, "Laptop"))
        .await
        .expect("laptop");
    a.open_session(ana.id, device("hash-phone", DAY, "Phone"))
        .await
        .expect("phone");
    a.open_session(ana.id, device("hash-tablet", DAY, "Tablet"))
        .await
        .expect("tablet");
    // Node b has all three cached.
    for hash in ["hash-laptop", "hash-phone", "hash-tablet"] {
        live(b.session(hash.into()).await.expect("s"));
    }
    a.revoke_session_by_id(ana.id, laptop.id)
        .await
        .expect("revoke");
    b.sync().await.expect("sync");
    assert!(matches!(
        b.session("hash-laptop".into()).await.expect("s"),
        SessionLookup::Unknown
    ));
    a.change_password(ana.id, "h".into(), "hash-phone".into())
        .await
        .expect("change");
    b.sync().await.expect("sync");
    live(b.session("hash-phone".into()).await.expect("s"));
    assert!(matches!(
        b.session("hash-tablet".into()).await.expect("s"),
        SessionLookup::Unknown
    ));
    a.close();
    b.close();
}

/// Takes a store's sessions table back to schema version 4 (no device columns), as a store
/// written by an older release has it.
fn downgrade_sessions_to_v4(location: &StoreLocation) {
    match location {
        StoreLocation::Embedded(dir) => {
            let conn = rusqlite::Connection::open(dir.join("tidings.db")).expect("raw");
            conn.execute_batch(
                "DROP INDEX sessions_by_id;
                 ALTER TABLE sessions DROP COLUMN id;
                 ALTER TABLE sessions DROP COLUMN last_used_at;
                 ALTER TABLE sessions DROP COLUMN expires_at;
                 ALTER TABLE sessions DROP COLUMN user_agent;
                 ALTER TABLE sessions DROP COLUMN ip;
                 UPDATE meta SET value = '4' WHERE key = 'schema_version';",
            )
            .expect("downgrade");
        }
        StoreLocation::Postgres(url) => {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("raw");
                client
                    .batch_execute(
                        "ALTER TABLE sessions DROP COLUMN id, DROP COLUMN last_used_at,
                             DROP COLUMN expires_at, DROP COLUMN user_agent, DROP COLUMN ip;
                         UPDATE meta SET value = '4' WHERE key = 'schema_version';",
                    )
                    .expect("downgrade");
            })
            .join()
            .expect("downgrade thread");
        }
    }
}

#[tokio::test]
async fn sessions_from_before_devices_keep_working_after_the_upgrade() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        store
            .create_session(ana.id, "old-1".into())
            .await
            .expect("s");
        store
            .create_session(ana.id, "old-2".into())
            .await
            .expect("s");
        store.close();
        downgrade_sessions_to_v4(&location);
        let store = open(&location);
        let first = live(store.session("old-1".into()).await.expect("s"));
        let second = live(store.session("old-2".into()).await.expect("s"));
        assert_ne!(first.id, second.id, "{location:?}: each gets its own id");
        let month = 29 * DAY.as_millis() as i64;
        assert!(
            first.expires_ms > first.last_used_ms + month,
            "{location:?}: kept about 30 days"
        );
        let listed = store
            .sessions_of(ana.id, "old-1".into())
            .await
            .expect("list");
        assert_eq!(listed.len(), 2, "{location:?}");
        store
            .revoke_session_by_id(ana.id, second.id)
            .await
            .expect("revoke");
        assert!(matches!(
            store.session("old-2".into()).await.expect("s"),
            SessionLookup::Unknown
        ));
        store.close();
    }
}

/// An activity search as the HTTP edge builds it: `q` parsed, newest first, 20 a page.
fn search_for(q: &str) -> ActivitySearch {
    ActivitySearch {
        query: tidings_core::search::parse(q).expect("query"),
        object_types: Vec::new(),
        since: None,
        until: None,
        sort: SearchSort::Newest,
        after: None,
        limit: 20,
    }
}

/// The seqs a search finds for `viewer`, walking every page.
async fn found(store: &Store, viewer: &User, mut search: ActivitySearch) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let page = store
            .search_activities(viewer.clone(), search.clone())
            .await
            .expect("search");
        seqs.extend(page.items.iter().map(|h| h.seq));
        match page.next {
            Some(next) => search.after = Some(next),
            None => return seqs,
        }
    }
}

/// A small community for the search contract: ana posts publicly, to her private circle, to
/// bo directly, and to her followers (cy follows her).
struct Community {
    ana: User,
    bo: User,
    cy: User,
    public: i64,
    private: i64,
    direct: i64,
    followers: i64,
    public_id: String,
    followers_id: String,
    direct_id: String,
}

async fn community(store: &Store) -> Community {
    let ana = user(store, "ana").await;
    let bo = user(store, "bo").await;
    let cy = user(store, "cy").await;
    store
        .create_circle(
            ana.clone(),
            NewCircle {
                name: "sec".into(),
                display_name: "Secret things".into(),
                description: "where tokio secrets live".into(),
                visibility: Visibility::Private,
                join_policy: JoinPolicy::Invite,
            },
        )
        .await
        .expect("circle");
    publish(
        store,
        &cy,
        json!({"type": "Follow", "object": "user:ana"}),
        None,
    )
    .await;
    let (public, public_id) = publish(
        store,
        &ana,
        json!({"object": {"type": "Article", "name": "Tokio panic", "content": "the runtime <b>panicked</b> at start"},
               "to": ["public"], "tag": ["rust"]}),
        None,
    )
    .await;
    let (private, _) = publish(
        store,
        &ana,
        json!({"object": {"content": "tokio secret plans"}, "to": ["circle:sec"]}),
        None,
    )
    .await;
    let (direct, direct_id) = publish(
        store,
        &ana,
        json!({"object": {"content": "tokio direct note"}, "to": ["user:bo"]}),
        None,
    )
    .await;
    let (followers, followers_id) = publish(
        store,
        &ana,
        json!({"object": {"content": "tokio for followers"}, "to": ["followers"]}),
        None,
    )
    .await;
    Community {
        ana,
        bo,
        cy,
        public,
        private,
        direct,
        followers,
        public_id,
        followers_id,
        direct_id,
    }
}

#[tokio::test]
async fn search_finds_only_what_the_reader_may_read_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        let outsider = user(&store, "dee").await;
        assert_eq!(
            found(&store, &c.ana, search_for("tokio ")).await,
            [c.followers, c.direct, c.private, c.public],
            "{location:?}: the author finds all of hers"
        );
        assert_eq!(
            found(&store, &c.bo, search_for("tokio ")).await,
            [c.direct, c.public],
            "{location:?}: the addressee"
        );
        assert_eq!(
            found(&store, &c.cy, search_for("tokio ")).await,
            [c.followers, c.public],
            "{location:?}: a follower"
        );
        assert_eq!(
            found(&store, &outsider, search_for("tokio ")).await,
            [c.public],
            "{location:?}: an outsider"
        );
        // Operators, phrases, prefixes and exclusions.
        assert_eq!(found(&store, &c.ana, search_for("tok")).await.len(), 4);
        assert_eq!(
            found(
                &store,
                &c.ana,
                search_for("tokio -secret -\"direct note\" ")
            )
            .await,
            [c.followers, c.public],
            "{location:?}"
        );
        assert_eq!(
            found(&store, &c.ana, search_for("\"tokio secret\"")).await,
            [c.private]
        );
        assert!(
            found(&store, &c.ana, search_for("\"secret tokio\""))
                .await
                .is_empty()
        );
        assert_eq!(
            found(&store, &c.ana, search_for("in:sec")).await,
            [c.private]
        );
        assert!(
            found(&store, &outsider, search_for("in:sec"))
                .await
                .is_empty()
        );
        assert_eq!(
            found(&store, &c.bo, search_for("tag:rust tokio")).await,
            [c.public]
        );
        assert!(
            found(&store, &c.bo, search_for("from:bo tokio"))
                .await
                .is_empty()
        );
        assert_eq!(
            found(&store, &c.bo, search_for("from:ana -tokio")).await,
            Vec::<i64>::new()
        );
        let mut articles = search_for("tokio ");
        articles.object_types = vec!["Article".into()];
        assert_eq!(found(&store, &c.ana, articles).await, [c.public]);
        // Paging one at a time walks the same list.
        let mut one = search_for("tokio ");
        one.limit = 1;
        assert_eq!(
            found(&store, &c.ana, one).await,
            [c.followers, c.direct, c.private, c.public]
        );
        // Highlights: escaped text, matched words marked.
        let page = store
            .search_activities(c.bo.clone(), search_for("panic"))
            .await
            .expect("search");
        let hit = &page.items[0];
        assert_eq!(hit.title, "Tokio <mark>panic</mark>");
        assert_eq!(
            hit.snippet,
            "the runtime &lt;b&gt;<mark>panicked</mark>&lt;/b&gt; at start"
        );
        let activity: Value = serde_json::from_str(&hit.activity).expect("json");
        assert_eq!(activity["id"], json!(c.public_id));
        store.close();
    }
}

#[tokio::test]
async fn search_follows_edits_retractions_and_hides_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        // An edit indexes the latest version.
        publish(
            &store,
            &c.ana,
            json!({"type": "Update", "object": {"id": c.followers_id, "type": "Note", "content": "rewritten about async"}}),
            None,
        )
        .await;
        assert_eq!(
            found(&store, &c.cy, search_for("async")).await,
            [c.followers],
            "{location:?}: the edit's words"
        );
        assert_eq!(
            found(&store, &c.cy, search_for("tokio ")).await,
            [c.public],
            "{location:?}: the old words are gone"
        );
        // A retraction leaves the index at once.
        publish(
            &store,
            &c.ana,
            json!({"type": "Delete", "object": c.public_id}),
            None,
        )
        .await;
        assert!(found(&store, &c.cy, search_for("tokio ")).await.is_empty());
        // A hidden item is not found by the one who hid it.
        store
            .wait_routed(store.last_seq().await.expect("last"))
            .await
            .expect("routed");
        store
            .hide_in_inbox(c.bo.clone(), &c.direct_id)
            .await
            .expect("hide");
        assert!(found(&store, &c.bo, search_for("direct")).await.is_empty());
        assert_eq!(
            found(&store, &c.ana, search_for("direct")).await,
            [c.direct]
        );
        // Best match: a title match ranks above body matches; pages rank the same set.
        publish(
            &store,
            &c.ana,
            json!({"object": {"name": "Direct answers", "content": "nothing else"}, "to": ["public"]}),
            None,
        )
        .await;
        let mut best = search_for("direct");
        best.sort = SearchSort::Best;
        let ranked = found(&store, &c.ana, best.clone()).await;
        assert_eq!(ranked.len(), 2, "{location:?}");
        assert_ne!(ranked[0], c.direct, "{location:?}: the title match first");
        best.limit = 1;
        assert_eq!(found(&store, &c.ana, best).await, ranked, "{location:?}");
        store.close();
    }
}

#[tokio::test]
async fn search_index_is_rebuilt_and_copied_from_the_log_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        publish(
            &store,
            &c.ana,
            json!({"type": "Update", "object": {"id": c.followers_id, "type": "Note", "content": "rewritten tokio text"}}),
            None,
        )
        .await;
        publish(
            &store,
            &c.ana,
            json!({"type": "Delete", "object": c.direct_id}),
            None,
        )
        .await;
        let before = found(&store, &c.ana, search_for("tokio ")).await;
        assert_eq!(before, [c.followers, c.private, c.public], "{location:?}");
        store.close();
        drop(store);
        // A closed store's connections may take a moment to leave PostgreSQL.
        let mut tries = 0;
        let report = loop {
            match tidings_store::rebuild(&location, &StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other.expect("rebuild"),
            }
        };
        assert_eq!(report.indexed, 3, "{location:?}");
        let store = open(&location);
        assert_eq!(found(&store, &c.ana, search_for("tokio ")).await, before);
        assert_eq!(
            found(&store, &c.ana, search_for("rewritten")).await,
            [c.followers]
        );
        store.close();
        let copy_dir = tempfile::tempdir().expect("tempdir");
        let copy = StoreLocation::Embedded(copy_dir.path().into());
        tidings_store::copy_store(&location, &copy).expect("copy");
        let copied = open(&copy);
        assert_eq!(found(&copied, &c.ana, search_for("tokio ")).await, before);
        assert_eq!(
            found(&copied, &c.bo, search_for("tokio ")).await,
            [c.public],
            "{location:?}: visibility survives the copy"
        );
        copied.close();
    }
}

#[tokio::test]
async fn circle_and_people_search_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        let query = |q: &str| tidings_core::search::parse(q).expect("query");
        for name in ["tokyo", "tokio-users", "rustaceans"] {
            store
                .create_circle(
                    c.bo.clone(),
                    NewCircle {
                        name: name.into(),
                        display_name: name.to_uppercase(),
                        description: String::new(),
                        visibility: Visibility::Public,
                        join_policy: JoinPolicy::Open,
                    },
                )
                .await
                .expect("circle");
        }
        let names = |page: SearchPage<CircleHit>| -> Vec<String> {
            page.items.iter().map(|h| h.circle.name.clone()).collect()
        };
        let page = store
            .search_circle_hits(c.cy.clone(), query("tok"), SearchSort::Best, None, 10)
            .await
            .expect("circles");
        assert_eq!(
            names(page),
            ["tokio-users", "tokyo"],
            "{location:?}: not the private one"
        );
        let page = store
            .search_circle_hits(c.ana.clone(), query("tok"), SearchSort::Newest, None, 10)
            .await
            .expect("circles");
        assert_eq!(names(page), ["tokio-users", "tokyo", "sec"], "{location:?}");
        // Paging one at a time.
        let first = store
            .search_circle_hits(c.ana.clone(), query("tok"), SearchSort::Best, None, 1)
            .await
            .expect("circles");
        let next = first.next.expect("more");
        let second = store
            .search_circle_hits(c.ana.clone(), query("tok"), SearchSort::Best, Some(next), 5)
            .await
            .expect("circles");
        let mut all = names(first);
        all.extend(names(second));
        assert_eq!(all.len(), 3, "{location:?}: {all:?}");
        let people = store
            .search_people(query("an"), SearchSort::Best, None, 10)
            .await
            .expect("people");
        assert_eq!(people.items.len(), 1);
        assert_eq!(people.items[0].user.username, "ana");
        assert_eq!(people.items[0].title, "<mark>Ana</mark>");
        store.close();
    }
}

/// Takes a store back to schema version 5 (no search index), as a store written by an older
/// release has it.
fn downgrade_to_v5(location: &StoreLocation) {
    match location {
        StoreLocation::Embedded(dir) => {
            let conn = rusqlite::Connection::open(dir.join("tidings.db")).expect("raw");
            conn.execute_batch(
                "DROP TABLE search_fts; DROP TABLE search_docs;
                 UPDATE meta SET value = '5' WHERE key = 'schema_version';",
            )
            .expect("downgrade");
        }
        StoreLocation::Postgres(url) => {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("raw");
                client
                    .batch_execute(
                        "DROP TABLE search_docs;
                         UPDATE meta SET value = '5' WHERE key = 'schema_version';",
                    )
                    .expect("downgrade");
            })
            .join()
            .expect("downgrade thread");
        }
    }
}

#[tokio::test]
async fn a_store_from_before_search_is_indexed_on_upgrade_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        store.close();
        drop(store);
        downgrade_to_v5(&location);
        // PostgreSQL sessions of the closed store may linger a moment; opening migrates.
        let store = open(&location);
        assert_eq!(
            found(&store, &c.ana, search_for("tokio ")).await,
            [c.followers, c.direct, c.private, c.public],
            "{location:?}: the existing log was indexed"
        );
        assert_eq!(
            found(&store, &c.bo, search_for("tokio ")).await,
            [c.direct, c.public],
            "{location:?}"
        );
        store.close();
    }
}

/// Takes a store back to schema version 8: its index holds the words unstemmed, as a store
/// written by an older release has them.
fn downgrade_to_v8(location: &StoreLocation) {
    match location {
        StoreLocation::Embedded(dir) => {
            let conn = rusqlite::Connection::open(dir.join("tidings.db")).expect("raw");
            conn.execute_batch(
                "DELETE FROM search_fts;
                 INSERT INTO search_fts(rowid, title, tags, body)
                     SELECT seq, lower(title), lower(tags), lower(body) FROM search_docs;
                 UPDATE meta SET value = '8' WHERE key = 'schema_version';",
            )
            .expect("downgrade");
        }
        StoreLocation::Postgres(url) => {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("raw");
                client
                    .batch_execute(
                        "UPDATE search_docs SET doc = to_tsvector('simple', title || ' ' || body);
                         UPDATE meta SET value = '8' WHERE key = 'schema_version';",
                    )
                    .expect("downgrade");
            })
            .join()
            .expect("downgrade thread");
        }
    }
}

async fn check_stemmed(store: &Store, ana: &User, (panics, running): (i64, i64), when: &str) {
    assert_eq!(
        found(store, ana, search_for("panic ")).await,
        [panics],
        "{when}: panic finds panics"
    );
    assert_eq!(
        found(store, ana, search_for("\"runtime panic\" ")).await,
        [panics],
        "{when}: phrases are stemmed too"
    );
    assert_eq!(
        found(store, ana, search_for("run ")).await,
        [running],
        "{when}: run finds running and runs"
    );
    assert_eq!(
        found(store, ana, search_for("running")).await,
        [running, panics],
        "{when}: while typing, the stem is a prefix (run* finds running and runtime)"
    );
}

/// Words are stemmed alike in the index and in queries on both engines (`panic` finds
/// `panics`, `panicked` is its own stem), and a store indexed before stemming is re-indexed
/// on upgrade.
#[tokio::test]
async fn search_is_stemmed_and_an_older_index_is_restemmed_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let (panics, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "The runtime panics on Mondays"}, "to": ["public"]}),
            None,
        )
        .await;
        let (running, _) = publish(
            &store,
            &ana,
            json!({"object": {"name": "Running tokio", "content": "runs fine"}, "to": ["public"]}),
            None,
        )
        .await;
        check_stemmed(
            &store,
            &ana,
            (panics, running),
            &format!("{location:?} live"),
        )
        .await;
        store.close();
        drop(store);
        downgrade_to_v8(&location);
        let store = open(&location);
        check_stemmed(
            &store,
            &ana,
            (panics, running),
            &format!("{location:?} upgraded"),
        )
        .await;
        store.close();
    }
}

/// The integration bus's state on every adapter: services and their keys (rotation with an
/// overlap, revocation at once), topics, webhooks, deliveries owed from the log exactly once
/// per (webhook, activity), leases that two callers never share, attempts, dead letters and
/// redelivery, and disabling past a failure threshold.
#[tokio::test]
async fn the_integration_bus_keeps_its_promises_on_every_adapter() {
    use std::time::Duration;
    use tidings_store::model::{AttemptNext, NewAttempt};
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;

        // Services: the name is a user's too, so it cannot be taken twice.
        let (shop, first) = store
            .create_service(
                "shop".into(),
                "the shop".into(),
                vec!["publish".into(), "subscribe".into()],
                "h1".into(),
                "k1".into(),
            )
            .await
            .expect("service");
        assert_eq!(shop.scopes, vec!["publish", "subscribe"]);
        assert_eq!(first.id, "k1");
        let taken = store
            .create_service(
                "ana".into(),
                String::new(),
                vec![],
                "h2".into(),
                "k2".into(),
            )
            .await
            .expect_err("a user's name");
        assert!(
            matches!(
                taken,
                StoreError::Conflict {
                    code: "name_taken",
                    ..
                }
            ),
            "{location:?}: {taken:?}"
        );
        assert!(
            store
                .service_by_key("h2".into())
                .await
                .expect("lookup")
                .is_none(),
            "{location:?}: a refused service left its key"
        );
        let by_key = store
            .service_by_key("h1".into())
            .await
            .expect("lookup")
            .expect("live");
        assert_eq!(by_key.name, "shop");
        // Rotation: the old key keeps working for the overlap; a zero overlap ends it now.
        store
            .rotate_service_key(
                "shop".into(),
                "h3".into(),
                "k3".into(),
                Duration::from_secs(3600),
            )
            .await
            .expect("rotate");
        assert!(
            store
                .service_by_key("h1".into())
                .await
                .expect("lookup")
                .is_some(),
            "{location:?}: overlap"
        );
        assert!(
            store
                .service_by_key("h3".into())
                .await
                .expect("lookup")
                .is_some()
        );
        store
            .rotate_service_key("shop".into(), "h4".into(), "k4".into(), Duration::ZERO)
            .await
            .expect("rotate");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            store
                .service_by_key("h1".into())
                .await
                .expect("lookup")
                .is_none(),
            "{location:?}: overlap over"
        );
        assert!(
            store
                .service_by_key("h3".into())
                .await
                .expect("lookup")
                .is_none()
        );
        store
            .revoke_service_key("shop".into(), "k4".into())
            .await
            .expect("revoke");
        assert!(
            store
                .service_by_key("h4".into())
                .await
                .expect("lookup")
                .is_none(),
            "{location:?}: revoked"
        );
        let (_, keys) = store.service("shop".into()).await.expect("service");
        assert_eq!(keys.len(), 3);
        assert!(matches!(
            store.revoke_service_key("shop".into(), "nope".into()).await,
            Err(StoreError::NotFound { .. })
        ));

        // Topics and webhooks.
        let topic = store
            .create_topic("orders".into(), None, "orders".into())
            .await
            .expect("topic");
        assert_eq!(topic.filter, None);
        assert!(matches!(
            store
                .create_topic("orders".into(), Some("*@*".into()), String::new())
                .await,
            Err(StoreError::Conflict {
                code: "topic_exists",
                ..
            })
        ));
        let before = store
            .bus_routing(None)
            .await
            .expect("routing")
            .expect("first");
        let hook = store
            .create_webhook(
                "orders".into(),
                Some(shop.id),
                "wh1".into(),
                "http://127.0.0.1:9/".into(),
                "whsec_x".into(),
                false,
            )
            .await
            .expect("webhook");
        assert_eq!(
            (hook.owner.as_deref(), hook.status.as_str()),
            (Some("shop"), "active")
        );
        let routing = store
            .bus_routing(Some(before.generation))
            .await
            .expect("routing")
            .expect("changed");
        assert_eq!(routing.webhooks.len(), 1);
        assert!(
            store
                .bus_routing(Some(routing.generation))
                .await
                .expect("routing")
                .is_none()
        );
        assert_eq!(
            store
                .webhooks("orders".into(), Some(shop.id))
                .await
                .expect("list")
                .len(),
            1
        );
        assert_eq!(
            store
                .webhooks("orders".into(), Some(shop.id + 1000))
                .await
                .expect("list")
                .len(),
            0
        );
        assert!(store.webhook("other".into(), "wh1".into()).await.is_err());

        // Addressing a topic needs the topic.
        let draft = normalize(
            &json!({"object": {"content": "x"}, "to": ["topic:nope"]}),
            &Limits::default(),
            &|_| TypeStatus::BuiltIn,
        )
        .expect("draft");
        let refused = store
            .publish(PublishInput {
                actor: ana.clone(),
                draft,
                idempotency_key: None,
            })
            .await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Unprocessable {
                    code: "unknown_topic",
                    ..
                })
            ),
            "{location:?}: {refused:?}"
        );
        let (seq, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "order 1"}, "to": ["topic:orders"]}),
            None,
        )
        .await;

        // Owed once: a second enqueue from a stale watermark is refused and writes nothing.
        let from = store.bus_seq().await.expect("bus seq");
        let activities = store.bus_activities(from, 100).await.expect("activities");
        assert_eq!(
            activities.iter().map(|a| a.seq).collect::<Vec<_>>(),
            vec![seq]
        );
        // Matched with a list of webhooks older than the store's: refused.
        let generation = routing.generation;
        let stale_list = store
            .bus_enqueue(from, seq, generation - 1, vec![("wh1".into(), seq)])
            .await
            .expect("stale list");
        assert!(
            !stale_list,
            "{location:?}: a stale list of webhooks was accepted"
        );
        let owed = store
            .bus_enqueue(from, seq, generation, vec![("wh1".into(), seq)])
            .await
            .expect("enqueue");
        assert!(owed);
        let again = store
            .bus_enqueue(from, seq, generation, vec![("wh1".into(), seq)])
            .await
            .expect("stale");
        assert!(!again, "{location:?}: matched twice");
        assert_eq!(store.bus_seq().await.expect("bus seq"), seq);

        // Leases are exclusive.
        let (a, b) = tokio::join!(
            store.lease_deliveries(10, Duration::from_secs(30)),
            store.lease_deliveries(10, Duration::from_secs(30))
        );
        let (a, b) = (a.expect("lease"), b.expect("lease"));
        assert_eq!(
            a.len() + b.len(),
            1,
            "{location:?}: one lease between two callers"
        );
        let leased = a.into_iter().chain(b).next().expect("leased");
        assert_eq!((leased.seq, leased.attempts), (seq, 0));
        assert!(leased.body.contains("order 1"));
        let attempt = |status: i64, outcome: &str| NewAttempt {
            status: Some(status),
            latency_ms: 3,
            outcome: outcome.into(),
            excerpt: "oops".into(),
            reply: None,
        };
        store
            .record_attempt(
                leased.id.clone(),
                attempt(500, "failed"),
                AttemptNext::Retry { at_ms: 0 },
                3,
            )
            .await
            .expect("attempt");
        let again = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(
            again.len(),
            1,
            "{location:?}: a retry is leased again once due"
        );
        assert_eq!(again[0].attempts, 1);
        store
            .record_attempt(
                leased.id.clone(),
                attempt(500, "failed"),
                AttemptNext::Dead,
                3,
            )
            .await
            .expect("attempt");
        let dead = store
            .deliveries("wh1".into(), Some("dead".into()), 10)
            .await
            .expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0]
                .attempts_log
                .iter()
                .map(|a| a.attempt)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(dead[0].attempts_log[0].status, Some(500));
        assert!(
            store
                .lease_deliveries(10, Duration::from_secs(30))
                .await
                .expect("lease")
                .is_empty()
        );
        // Redelivery: a fresh budget, the log goes on.
        store
            .redeliver("wh1".into(), leased.id.clone())
            .await
            .expect("redeliver");
        let back = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].attempts, 0);
        // A third failure in a row disables the webhook; nothing more is leased for it.
        store
            .record_attempt(
                leased.id.clone(),
                attempt(503, "throttled"),
                AttemptNext::Retry { at_ms: 0 },
                3,
            )
            .await
            .expect("attempt");
        let disabled = store
            .webhook("orders".into(), "wh1".into())
            .await
            .expect("webhook");
        assert_eq!(disabled.status, "disabled", "{location:?}");
        assert!(
            store
                .lease_deliveries(10, Duration::from_secs(30))
                .await
                .expect("lease")
                .is_empty()
        );
        store.enable_webhook("wh1".into()).await.expect("enable");
        let resumed = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(
            resumed.len(),
            1,
            "{location:?}: enabling resumes what is owed"
        );
        store
            .record_attempt(
                resumed[0].id.clone(),
                attempt(200, "delivered"),
                AttemptNext::Delivered,
                3,
            )
            .await
            .expect("attempt");
        let all = store.deliveries("wh1".into(), None, 10).await.expect("all");
        assert_eq!((all[0].state.as_str(), all[0].attempts), ("delivered", 4));
        assert_eq!(
            store
                .webhook("orders".into(), "wh1".into())
                .await
                .expect("webhook")
                .failures,
            0
        );
        store.close();
    }
}

// ---- Sync replies, ordered webhooks, schedules (decision 0025) ----

#[tokio::test]
async fn replies_ordering_and_schedules_keep_their_promises_on_every_adapter() {
    use std::time::Duration;
    use tidings_store::model::{AttemptNext, BusProgress, NewAttempt, NewSchedule};
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        store
            .create_topic("orders".into(), None, String::new())
            .await
            .expect("topic");
        store
            .create_topic("quiet".into(), None, String::new())
            .await
            .expect("topic");
        assert!(!store.has_active_webhooks().await.expect("any"));
        let hook = store
            .create_webhook(
                "orders".into(),
                None,
                "wh_o".into(),
                "http://127.0.0.1:9/".into(),
                "whsec_x".into(),
                true,
            )
            .await
            .expect("webhook");
        assert!(hook.ordered);
        assert!(store.has_active_webhooks().await.expect("any"));
        let doc = |text: &str, topic: &str| json!({"object": {"content": text}, "to": [format!("topic:{topic}")]});
        let (first, _) = publish(&store, &ana, doc("one", "orders"), None).await;
        let (second, _) = publish(&store, &ana, doc("two", "orders"), None).await;
        let (quiet, _) = publish(&store, &ana, doc("hush", "quiet"), None).await;
        assert_eq!(
            store.bus_progress(first).await.expect("progress"),
            BusProgress::Unmatched
        );

        // Matching rings the bus news every node hears.
        let mut news = store.bus_news();
        news.borrow_and_update();
        let from = store.bus_seq().await.expect("bus seq");
        let generation = store
            .bus_routing(None)
            .await
            .expect("routing")
            .expect("first")
            .generation;
        assert!(
            store
                .bus_enqueue(
                    from,
                    quiet,
                    generation,
                    vec![("wh_o".into(), first), ("wh_o".into(), second)]
                )
                .await
                .expect("enqueue")
        );
        tokio::time::timeout(Duration::from_secs(5), news.changed())
            .await
            .expect("news in time")
            .expect("news");
        assert_eq!(
            store.bus_progress(first).await.expect("progress"),
            BusProgress::Waiting(1)
        );
        assert_eq!(
            store.bus_progress(quiet).await.expect("progress"),
            BusProgress::NoResponder,
            "{location:?}: nobody is owed the quiet topic's activity"
        );

        // Ordered: only the older delivery is leased; the next waits for its success.
        let leased = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(
            leased.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![first],
            "{location:?}"
        );
        let failed = NewAttempt {
            status: Some(500),
            latency_ms: 1,
            outcome: "failed".into(),
            excerpt: String::new(),
            reply: None,
        };
        store
            .record_attempt(
                leased[0].id.clone(),
                failed,
                AttemptNext::Retry { at_ms: 0 },
                50,
            )
            .await
            .expect("attempt");
        let retried = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(
            retried.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![first],
            "{location:?}: a failed delivery holds back the next"
        );
        news.borrow_and_update();
        let delivered = NewAttempt {
            status: Some(200),
            latency_ms: 1,
            outcome: "delivered".into(),
            excerpt: String::new(),
            reply: Some("{\"total\": 7}".into()),
        };
        store
            .record_attempt(retried[0].id.clone(), delivered, AttemptNext::Delivered, 50)
            .await
            .expect("attempt");
        tokio::time::timeout(Duration::from_secs(5), news.changed())
            .await
            .expect("news in time")
            .expect("news");
        let BusProgress::Replied(reply) = store.bus_progress(first).await.expect("progress") else {
            panic!("{location:?}: the reply was not recorded");
        };
        assert_eq!(
            (reply.source.as_str(), reply.status, reply.body.as_str()),
            (retried[0].id.as_str(), Some(200), "{\"total\": 7}")
        );
        let next = store
            .lease_deliveries(10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(
            next.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![second],
            "{location:?}"
        );

        // A reply from elsewhere (a pull consumer's ack): the first one wins.
        assert!(
            store
                .record_reply(second, "pull:billing".into(), None, "\"ok\"".into())
                .await
                .expect("reply")
        );
        assert!(
            !store
                .record_reply(second, "pull:other".into(), None, "late".into())
                .await
                .expect("reply")
        );
        assert_eq!(
            store
                .reply(second)
                .await
                .expect("reply")
                .expect("some")
                .source,
            "pull:billing"
        );
        assert_eq!(store.prune_replies(i64::MAX).await.expect("prune"), 2);
        assert_eq!(store.reply(second).await.expect("reply"), None);

        // Schedules: unique names, due scans, a fire recorded once.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let new = |name: &str, cron: Option<&str>, at: i64| NewSchedule {
            id: format!("sch_{name}"),
            name: name.into(),
            actor_id: ana.id,
            service_id: None,
            cron: cron.map(str::to_owned),
            timezone: cron.map(|_| "Europe/Paris".to_owned()),
            activity: json!({"object": {"content": name}}).to_string(),
            next_at_ms: at,
        };
        let daily = store
            .create_schedule(new("daily", Some("0 9 * * *"), now - 10))
            .await
            .expect("schedule");
        assert_eq!(
            (daily.actor.as_str(), daily.status.as_str(), daily.fired),
            ("ana", "active", 0)
        );
        assert_eq!(daily.activity["object"]["content"], "daily");
        assert!(matches!(
            store.create_schedule(new("daily", None, now)).await,
            Err(StoreError::Conflict {
                code: "schedule_exists",
                ..
            })
        ));
        store
            .create_schedule(new("later", None, now + 3_600_000))
            .await
            .expect("one-shot");
        let due = store.due_schedules(now, 10).await.expect("due");
        assert_eq!(
            due.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            vec!["daily"]
        );
        assert_eq!(
            store.next_schedule_at().await.expect("next"),
            Some(now - 10)
        );
        // Two nodes fire it: one publish (the idempotency key), one recorded fire.
        let key = format!("schedule:sch_daily:{}", now - 10);
        let (a, _) = publish(&store, &ana, daily.activity.clone(), Some(&key)).await;
        let (b, _) = publish(&store, &ana, daily.activity.clone(), Some(&key)).await;
        assert_eq!(a, b, "{location:?}: a fire published twice");
        let (x, y) = tokio::join!(
            store.schedule_fired(
                "sch_daily".into(),
                now - 10,
                Some(now + 86_400_000),
                Some("act".into()),
                None
            ),
            store.schedule_fired(
                "sch_daily".into(),
                now - 10,
                Some(now + 86_400_000),
                Some("act".into()),
                None
            ),
        );
        assert_eq!(
            [x.expect("fired"), y.expect("fired")]
                .iter()
                .filter(|f| **f)
                .count(),
            1,
            "{location:?}: a fire recorded twice"
        );
        let fired = store.schedule("daily".into()).await.expect("schedule");
        assert_eq!(
            (
                fired.fired,
                fired.next_at_ms,
                fired.last_activity.as_deref()
            ),
            (1, Some(now + 86_400_000), Some("act"))
        );
        assert!(store.due_schedules(now, 10).await.expect("due").is_empty());
        // Pause and resume; a one-shot that fired is done for good.
        let paused = store
            .set_schedule_status("daily".into(), "paused", Some(now))
            .await
            .expect("pause");
        assert_eq!(
            (paused.status.as_str(), paused.next_at_ms),
            ("paused", Some(now))
        );
        assert!(
            store
                .due_schedules(i64::MAX, 10)
                .await
                .expect("due")
                .iter()
                .all(|s| s.name != "daily")
        );
        store
            .set_schedule_status("daily".into(), "active", Some(now))
            .await
            .expect("resume");
        assert!(
            store
                .schedule_fired(
                    "sch_later".into(),
                    now + 3_600_000,
                    None,
                    None,
                    Some("refused".into())
                )
                .await
                .expect("fired")
        );
        let done = store.schedule("later".into()).await.expect("schedule");
        assert_eq!(
            (done.status.as_str(), done.fired, done.last_error.as_deref()),
            ("done", 0, Some("refused"))
        );
        assert!(matches!(
            store
                .set_schedule_status("later".into(), "active", Some(now))
                .await,
            Err(StoreError::Conflict {
                code: "schedule_done",
                ..
            })
        ));
        assert_eq!(store.schedules(None).await.expect("list").len(), 2);
        assert!(store.schedules(Some(1)).await.expect("list").is_empty());
        store.delete_schedule("daily".into()).await.expect("delete");
        assert!(matches!(
            store.schedule("daily".into()).await,
            Err(StoreError::NotFound { .. })
        ));
        store.close();
    }
}

// ---- Work queues (decision 0023) ----

use tidings_store::queues::{Backoff, Discipline, NackedTo, NewJob, QueueSpec};

fn queue_spec(name: &str, discipline: Discipline) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        discipline,
        visibility_timeout_ms: 30_000,
        max_attempts: 3,
        backoff: Backoff::default(),
        rate_limit: None,
    }
}

fn job(payload: Value, priority: i64) -> NewJob {
    NewJob {
        payload: payload.to_string(),
        priority,
        delay_ms: 0,
        idempotency_key: None,
        group: None,
    }
}

#[tokio::test]
async fn queues_serve_fifo_lifo_and_priority_in_order_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let priorities = [1, 5, 1, 9, 5, 0];
        for discipline in [Discipline::Fifo, Discipline::Lifo, Discipline::Priority] {
            let name = discipline.as_str();
            store
                .create_queue(queue_spec(name, discipline))
                .await
                .expect("create");
            let jobs = priorities
                .iter()
                .enumerate()
                .map(|(i, p)| job(json!({"n": i}), *p))
                .collect();
            store.enqueue(name, jobs).await.expect("enqueue");
            let mut served = Vec::new();
            // Leased two at a time: the order holds across leases too.
            for _ in 0..3 {
                let (_, jobs) = store.lease(name, 2).await.expect("lease");
                served.extend(jobs.iter().map(|j| j.payload["n"].as_i64().expect("n")));
            }
            let expected: Vec<i64> = match discipline {
                Discipline::Fifo => vec![0, 1, 2, 3, 4, 5],
                Discipline::Lifo => vec![5, 4, 3, 2, 1, 0],
                Discipline::Priority => vec![3, 1, 4, 0, 2, 5],
            };
            assert_eq!(served, expected, "{name} on {location:?}");
            assert!(store.lease(name, 5).await.expect("lease").1.is_empty());
        }
        store.close();
    }
}

#[tokio::test]
async fn a_lease_is_acked_nacked_expired_and_buried_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let mut spec = queue_spec("work", Discipline::Fifo);
        spec.visibility_timeout_ms = 300;
        spec.max_attempts = 2;
        store.create_queue(spec.clone()).await.expect("create");
        let taken = store.create_queue(spec).await.expect_err("taken");
        assert!(matches!(
            taken,
            StoreError::Conflict {
                code: "queue_exists",
                ..
            }
        ));
        // An unknown queue stores nothing.
        let missing = store.enqueue("nope", vec![job(json!(1), 0)]).await;
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));

        let ids = store
            .enqueue("work", vec![job(json!("a"), 0), job(json!("b"), 0)])
            .await
            .expect("enqueue");
        let (_, leased) = store.lease("work", 1).await.expect("lease");
        let a = &leased[0];
        assert_eq!((a.id, a.attempts), (ids[0].id, 1));
        let token = a.lease_token.clone().expect("token");
        // A wrong token is refused and changes nothing; the right one acks once.
        let stale = store.ack("work", a.id, "not-the-token").await;
        assert!(matches!(
            stale,
            Err(StoreError::Conflict {
                code: "lease_lost",
                ..
            })
        ));
        store.ack("work", a.id, &token).await.expect("ack");
        let again = store.ack("work", a.id, &token).await;
        assert!(matches!(again, Err(StoreError::NotFound { .. })));

        // b: nacked with a delay, then its lease expires, then it is out of attempts.
        let (_, leased) = store.lease("work", 5).await.expect("lease");
        let b = leased[0].clone();
        let nacked = store
            .nack(
                "work",
                b.id,
                b.lease_token.as_deref().unwrap_or(""),
                Some(200),
                None,
            )
            .await
            .expect("nack");
        assert_eq!(nacked.state, NackedTo::Delayed);
        assert!(store.lease("work", 5).await.expect("lease").1.is_empty());
        let stats = store.queue_stats("work").await.expect("stats");
        assert_eq!((stats.ready, stats.delayed, stats.leased), (0, 1, 0));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let (_, leased) = store.lease("work", 5).await.expect("lease");
        assert_eq!((leased[0].id, leased[0].attempts), (b.id, 2));
        let old_token = leased[0].lease_token.clone().expect("token");
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        // The lease expired after the last attempt: the job is dead, the old token refused.
        assert!(store.lease("work", 5).await.expect("lease").1.is_empty());
        let late = store.ack("work", b.id, &old_token).await;
        assert!(matches!(
            late,
            Err(StoreError::Conflict {
                code: "lease_lost",
                ..
            })
        ));
        let dead = store.dead_jobs("work", 0, 10).await.expect("dead");
        assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b.id]);
        let stats = store.queue_stats("work").await.expect("stats");
        assert_eq!(
            (stats.dead, stats.enqueued, stats.acked, stats.failed),
            (1, 2, 1, 1)
        );
        // Retried from the dead list, it is ready again with fresh attempts.
        assert_eq!(
            store.retry_dead("work", Some(b.id)).await.expect("retry"),
            1
        );
        assert!(matches!(
            store.retry_dead("work", Some(b.id)).await,
            Err(StoreError::NotFound { .. })
        ));
        let (_, leased) = store.lease("work", 5).await.expect("lease");
        assert_eq!((leased[0].id, leased[0].attempts), (b.id, 1));

        // Idempotent enqueue: the retry answers the first id and stores nothing.
        let keyed = |key: &str| NewJob {
            idempotency_key: Some(key.into()),
            ..job(json!("k"), 0)
        };
        let first = store
            .enqueue("work", vec![keyed("k1")])
            .await
            .expect("first");
        let retry = store
            .enqueue("work", vec![keyed("k1"), keyed("k2")])
            .await
            .expect("retry");
        assert!(!first[0].duplicate && retry[0].duplicate && !retry[1].duplicate);
        assert_eq!(retry[0].id, first[0].id);
        assert_eq!(store.queue_stats("work").await.expect("stats").enqueued, 4);

        // Deleting the queue drops its jobs.
        assert_eq!(store.delete_queue("work").await.expect("delete"), 3);
        assert!(matches!(
            store.queue("work").await,
            Err(StoreError::NotFound { .. })
        ));
        store.close();
    }
}

#[tokio::test]
async fn two_nodes_never_lease_the_same_job() {
    let Some(url) = fresh_postgres() else { return };
    let location = StoreLocation::Postgres(url);
    let a = open(&location);
    let b = open(&location);
    a.create_queue(queue_spec("shared", Discipline::Priority))
        .await
        .expect("create");
    let total = 400;
    for chunk in 0..4 {
        let jobs = (0..100)
            .map(|i| job(json!(chunk * 100 + i), i % 7))
            .collect();
        b.enqueue("shared", jobs).await.expect("enqueue");
    }
    // Eight consumers, four on each node, lease concurrently until the queue is empty.
    let mut tasks = Vec::new();
    for consumer in 0..8 {
        let node = if consumer % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let (_, jobs) = node.lease("shared", 7).await.expect("lease");
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("consumer"));
    }
    let leased = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), leased, "a job was leased twice");
    assert_eq!(leased, total, "every job leased once");
    a.close();
    b.close();
}

#[tokio::test]
async fn an_acked_jobs_id_is_never_given_to_another_job() {
    for (location, _dir) in places() {
        let store = open(&location);
        store
            .create_queue(queue_spec("ids", Discipline::Lifo))
            .await
            .expect("create");
        let first = store
            .enqueue("ids", vec![job(json!(1), 0)])
            .await
            .expect("enqueue");
        let (_, leased) = store.lease("ids", 1).await.expect("lease");
        let token = leased[0].lease_token.clone().expect("token");
        store.ack("ids", first[0].id, &token).await.expect("ack");
        // The newest job was acked and deleted; the next one still gets a newer id.
        let next = store
            .enqueue("ids", vec![job(json!(2), 0)])
            .await
            .expect("enqueue");
        assert!(next[0].id > first[0].id, "{location:?}");
        store.close();
    }
}

#[tokio::test]
async fn a_batch_ack_acks_what_it_holds_and_reports_the_rest() {
    use tidings_store::queues::AckOutcome;
    for (location, _dir) in places() {
        let store = open(&location);
        store
            .create_queue(queue_spec("many", Discipline::Fifo))
            .await
            .expect("create");
        store
            .enqueue("many", vec![job(json!(1), 0), job(json!(2), 0)])
            .await
            .expect("enqueue");
        let (_, leased) = store.lease("many", 2).await.expect("lease");
        let token = leased[0].lease_token.clone().expect("token");
        let outcomes = store
            .ack_many(
                "many",
                vec![
                    (leased[0].id, token.clone()),
                    (leased[1].id, "wrong".into()),
                    (leased[0].id, token),
                ],
            )
            .await
            .expect("ack many");
        assert_eq!(
            outcomes,
            [
                AckOutcome::Acked,
                AckOutcome::LeaseLost,
                AckOutcome::NotFound
            ]
        );
        let stats = store.queue_stats("many").await.expect("stats");
        assert_eq!((stats.acked, stats.leased), (1, 1));
        store.close();
    }
}

/// Subscription modes beyond webhooks on every adapter (decision 0024): pull leases that two
/// consumers never share and that come back when they run out, acks with a reply kept by event,
/// stream reads by position, replay over a stretch of the log, skipping to the end, positions
/// by time, pause and resume of a pushed mode, and deleting subscriptions and topics (a topic
/// with subscriptions is refused, never cascaded).
#[tokio::test]
async fn pull_stream_and_queue_subscriptions_keep_their_promises_on_every_adapter() {
    use std::collections::HashSet;
    use std::time::Duration;
    use tidings_store::model::NewSubscription;
    let spec = |mode: &str, queue: Option<&str>, lease_ms: i64| NewSubscription {
        mode: mode.into(),
        url: String::new(),
        secret: String::new(),
        queue: queue.map(str::to_owned),
        lease_ms,
        ordered: false,
    };
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        store
            .create_topic("orders".into(), None, String::new())
            .await
            .expect("topic");
        let pull = store
            .create_subscription(
                "orders".into(),
                None,
                "p1".into(),
                spec("pull", None, 60_000),
            )
            .await
            .expect("pull");
        assert_eq!((pull.mode.as_str(), pull.lease_ms), ("pull", Some(60_000)));
        assert!(!pull.paused);
        store
            .create_subscription("orders".into(), None, "p2".into(), spec("pull", None, 50))
            .await
            .expect("short lease");
        store
            .create_subscription("orders".into(), None, "s1".into(), spec("stream", None, 0))
            .await
            .expect("stream");
        let queued = store
            .create_subscription(
                "orders".into(),
                None,
                "q1".into(),
                spec("queue", Some("work"), 0),
            )
            .await
            .expect("queue");
        assert_eq!(queued.queue.as_deref(), Some("work"));
        let mut seqs = Vec::new();
        let mut ids = Vec::new();
        for n in 0..3 {
            let (seq, id) = publish(
                &store,
                &ana,
                json!({"type": "Create", "object": {"type": "Note", "content": format!("order {n}")}}),
                None,
            )
            .await;
            seqs.push(seq);
            ids.push(id);
        }
        let routing = store
            .bus_routing(None)
            .await
            .expect("routing")
            .expect("fresh");
        let from = store.bus_seq().await.expect("bus seq");
        let owed: Vec<(String, i64)> = ["p1", "p2", "s1", "q1"]
            .iter()
            .flat_map(|sub| seqs.iter().map(move |s| ((*sub).to_owned(), *s)))
            .collect();
        assert!(
            store
                .bus_enqueue(from, seqs[2], routing.generation, owed)
                .await
                .expect("enqueue")
        );

        // Two consumers pulling at once never hold the same event.
        let (a, b) = tokio::join!(
            store.pull_events("p1".into(), 2),
            store.pull_events("p1".into(), 2)
        );
        let (a, b) = (a.expect("pull"), b.expect("pull"));
        assert_eq!(a.len() + b.len(), 3, "{location:?}");
        let held: HashSet<&str> = a.iter().chain(&b).map(|e| e.id.as_str()).collect();
        assert_eq!(held.len(), 3, "{location:?}: an event leased twice");
        let mut positions: Vec<i64> = a.iter().chain(&b).map(|e| e.seq).collect();
        positions.sort_unstable();
        assert_eq!(positions, seqs);
        assert!(
            store
                .pull_events("p1".into(), 10)
                .await
                .expect("pull")
                .is_empty(),
            "{location:?}: leased events were leased again"
        );
        // Acks answer per event; a reply is kept by the event's id.
        let first: Vec<String> = a.iter().chain(&b).map(|e| e.id.clone()).collect();
        let first_seq = a
            .iter()
            .chain(&b)
            .find(|e| e.seq == seqs[0])
            .expect("first");
        let acked = store
            .ack_events(
                "p1".into(),
                vec![first_seq.id.clone(), "msg_nope".into()],
                Some("{\"ok\":true}".into()),
            )
            .await
            .expect("ack");
        assert_eq!(
            acked,
            vec![(first_seq.id.clone(), true), ("msg_nope".into(), false)]
        );
        let again = store
            .ack_events("p1".into(), vec![first_seq.id.clone()], None)
            .await
            .expect("ack");
        assert_eq!(again, vec![(first_seq.id.clone(), false)]);
        let replies = store.replies_to(ids[0].clone()).await.expect("replies");
        assert_eq!(replies.len(), 1, "{location:?}");
        assert_eq!(
            (
                replies[0].subscription.as_str(),
                replies[0].reply.as_str(),
                replies[0].position
            ),
            ("p1", "{\"ok\":true}", seqs[0])
        );
        // Unacked events come back after their lease, under the same id.
        let short = store.pull_events("p2".into(), 1).await.expect("pull");
        assert_eq!(short.len(), 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let back = store.pull_events("p2".into(), 1).await.expect("pull");
        assert_eq!(back.len(), 1);
        assert_eq!(
            (back[0].id.as_str(), back[0].deliveries),
            (short[0].id.as_str(), 2)
        );

        // A stream reads its matched events after a position.
        let stream = store
            .subscription_events("s1".into(), 0, 10)
            .await
            .expect("stream");
        assert_eq!(stream.iter().map(|e| e.0).collect::<Vec<_>>(), seqs);
        assert!(stream[0].1.starts_with("msg_"));
        let rest = store
            .subscription_events("s1".into(), seqs[0], 10)
            .await
            .expect("stream");
        assert_eq!(rest.len(), 2);

        // Replay owes a stretch again: acked and leased events alike, and what was missing.
        let owed_again = store
            .replay_range("p1".into(), seqs[0], seqs[2], seqs.clone())
            .await
            .expect("replay");
        assert_eq!(owed_again, 3);
        let replayed = store.pull_events("p1".into(), 10).await.expect("pull");
        assert_eq!(replayed.len(), 3, "{location:?}");
        assert!(replayed.iter().all(|e| first.contains(&e.id)));
        // A stretch before the subscription existed is added from what the caller matched.
        store
            .replay_range("p1".into(), 0, seqs[2], vec![seqs[0]])
            .await
            .expect("replay");
        // Skipping to the end drops what is owed.
        let end = store.skip_to_end("p1".into()).await.expect("skip");
        assert_eq!(end, seqs[2]);
        assert!(
            store
                .pull_events("p1".into(), 10)
                .await
                .expect("pull")
                .is_empty()
        );
        let fresh = store
            .bus_routing(Some(routing.generation))
            .await
            .expect("routing");
        let fresh = fresh.expect("skipping changes the routing generation");
        assert!(
            fresh
                .webhooks
                .iter()
                .any(|(id, _, since)| id == "p1" && *since == seqs[2])
        );

        // Positions by time.
        assert!(store.position_at(before).await.expect("position") <= seqs[0]);
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert_eq!(
            store.position_at(later).await.expect("position"),
            seqs[2] + 1
        );

        // A paused queue subscription is leased nothing; resumed, its backlog is there.
        let paused = store
            .set_subscription_paused("q1".into(), true)
            .await
            .expect("pause");
        assert!(paused.paused);
        assert!(!store.deliveries_due_for("queue").await.expect("due"));
        assert!(
            store
                .lease_deliveries_for("queue", 10, Duration::from_secs(30))
                .await
                .expect("lease")
                .is_empty()
        );
        assert!(
            store
                .lease_deliveries(10, Duration::from_secs(30))
                .await
                .expect("webhooks")
                .is_empty(),
            "{location:?}: the webhook sender leased another mode's events"
        );
        store
            .set_subscription_paused("q1".into(), false)
            .await
            .expect("resume");
        assert!(store.deliveries_due_for("queue").await.expect("due"));
        let leased = store
            .lease_deliveries_for("queue", 10, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(leased.len(), 3);
        assert_eq!(leased[0].webhook.queue.as_deref(), Some("work"));

        // Topics with subscriptions are not deleted; deleting those first works.
        let refused = store
            .delete_topic("orders".into())
            .await
            .expect_err("in use");
        assert!(
            matches!(
                refused,
                StoreError::Conflict {
                    code: "topic_has_subscriptions",
                    ..
                }
            ),
            "{location:?}: {refused:?}"
        );
        for sub in ["p1", "p2", "s1", "q1"] {
            store.delete_subscription(sub.into()).await.expect("delete");
        }
        assert!(matches!(
            store.delete_subscription("p1".into()).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(
            store
                .replies_to(ids[0].clone())
                .await
                .expect("replies")
                .is_empty()
        );
        store
            .delete_topic("orders".into())
            .await
            .expect("delete topic");
        assert!(matches!(
            store.topic("orders".into()).await,
            Err(StoreError::NotFound { .. })
        ));
        store.close();
    }
}

/// A tiny deterministic generator (the contract needs no shrinking, only variety).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// A live saved search delivers exactly what a search for its query finds: random posts of a
/// small vocabulary (public, a public circle, a private one the subscribers are not in, to
/// followers), one subscriber per random query so their inboxes hold only saved-search
/// entries, and each inbox must equal that subscriber's search, on every adapter.
#[tokio::test]
async fn saved_searches_deliver_what_search_finds_on_every_adapter() {
    const WORDS: &[&str] = &[
        "tokio", "panic", "Panics", "rust", "async", "runtime", "book", "ASYNC",
    ];
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        for (name, visibility) in [("eng", Visibility::Public), ("sec", Visibility::Private)] {
            store
                .create_circle(
                    ana.clone(),
                    NewCircle {
                        name: name.into(),
                        display_name: name.into(),
                        description: String::new(),
                        visibility,
                        join_policy: JoinPolicy::Open,
                    },
                )
                .await
                .expect("circle");
        }
        let mut rng = Lcg(0x5eed);
        let mut subscribers = Vec::new();
        for i in 0..12 {
            let word = |rng: &mut Lcg| WORDS[rng.below(WORDS.len())].to_lowercase();
            let mut query = word(&mut rng);
            match rng.below(5) {
                0 => query = format!("{query} {}", word(&mut rng)),
                1 => query = format!("\"{query} {}\"", word(&mut rng)),
                2 => query = format!("{query} -{}", word(&mut rng)),
                3 => query = format!("{query} pan*"),
                _ => {}
            }
            let in_eng = rng.below(2) == 0;
            let term = if in_eng {
                format!("\"{query}\"@eng")
            } else {
                format!("\"{query}\"")
            };
            let Ok(saved) = tidings_core::saved::parse_saved(&term) else {
                continue;
            };
            let who = user(&store, &format!("s{i}")).await;
            store
                .add_subscription(who.clone(), saved)
                .await
                .expect("save the search");
            let search = if in_eng {
                format!("{query} in:eng ")
            } else {
                format!("{query} ")
            };
            subscribers.push((who, search, term));
        }
        assert!(
            subscribers.len() >= 8,
            "{location:?}: enough saved searches"
        );
        let mut last = 0;
        for _ in 0..40 {
            let mut text: Vec<&str> = (0..1 + rng.below(6))
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect();
            if rng.below(3) == 0 {
                text.push("panicked.");
            }
            let to = ["public", "circle:eng", "circle:sec", "followers"][rng.below(4)];
            let mut object = json!({"content": text.join(" ")});
            if rng.below(3) == 0 {
                object["name"] = json!(WORDS[rng.below(WORDS.len())]);
            }
            let tags = if rng.below(4) == 0 {
                json!(["rust"])
            } else {
                json!([])
            };
            let (seq, _) = publish(
                &store,
                &ana,
                json!({"object": object, "to": [to], "tag": tags}),
                None,
            )
            .await;
            last = seq;
        }
        store.wait_routed(last).await.expect("routed");
        let mut delivered_any = false;
        for (who, search, term) in &subscribers {
            let inbox = store
                .inbox(who.clone(), InboxFilter::default(), PageFrom::Newest, 100)
                .await
                .expect("inbox");
            let seqs: Vec<i64> = inbox.items.iter().map(|i| i.seq).collect();
            for item in &inbox.items {
                let via = item.via.as_deref().unwrap_or("");
                assert!(
                    via.starts_with("subscription:") && via.ends_with(term.as_str()),
                    "{location:?}: {via} for {term}"
                );
            }
            delivered_any |= !seqs.is_empty();
            assert_eq!(
                seqs,
                found(&store, who, search_for(search)).await,
                "{location:?}: the saved search {term} delivered what a search for {search:?} finds"
            );
        }
        assert!(delivered_any, "{location:?}: some saved search matched");
        store.close();
    }
}

/// A saved search says which search matched, never delivers what its subscriber may not
/// read, stops when removed, and is reproduced by a rebuild, on every adapter.
#[tokio::test]
async fn saved_searches_respect_visibility_and_survive_rebuild_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let bo = user(&store, "bo").await;
        store
            .create_circle(
                ana.clone(),
                NewCircle {
                    name: "sec".into(),
                    display_name: "Secret".into(),
                    description: String::new(),
                    visibility: Visibility::Private,
                    join_policy: JoinPolicy::Invite,
                },
            )
            .await
            .expect("circle");
        let saved = tidings_core::saved::parse_saved(r#""tokio panic""#).expect("term");
        let (sub, created) = store
            .add_subscription(bo.clone(), saved.clone())
            .await
            .expect("save");
        assert!(created);
        assert_eq!(sub.expr, r#""tokio panic""#);
        assert!(
            !store
                .add_subscription(bo.clone(), saved)
                .await
                .expect("again")
                .1,
            "{location:?}: saving the same search twice keeps one"
        );
        let (public, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "Tokio panics? No: a tokio PANIC."}, "to": ["public"]}),
            None,
        )
        .await;
        let (secret, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "tokio panic in secret"}, "to": ["circle:sec"]}),
            None,
        )
        .await;
        let (followers, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "tokio panic for followers"}, "to": ["followers"]}),
            None,
        )
        .await;
        let (other, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "tokio is calm"}, "to": ["public"]}),
            None,
        )
        .await;
        store.wait_routed(other).await.expect("routed");
        let page = store
            .inbox(bo.clone(), InboxFilter::default(), PageFrom::Newest, 100)
            .await
            .expect("inbox");
        let got: Vec<(i64, Option<String>)> = page
            .items
            .iter()
            .map(|i| (i.seq, i.via.as_deref().map(str::to_owned)))
            .collect();
        let via = format!("subscription:{}:\"tokio panic\"", sub.id);
        assert_eq!(
            got,
            vec![(public, Some(via.clone()))],
            "{location:?}: not {secret} (private circle) nor {followers} (followers only)"
        );
        store
            .remove_subscription(bo.id, sub.id)
            .await
            .expect("remove");
        let (after, _) = publish(
            &store,
            &ana,
            json!({"object": {"content": "tokio panic again"}, "to": ["public"]}),
            None,
        )
        .await;
        store.wait_routed(after).await.expect("routed");
        assert_eq!(
            inbox_seqs(&store, &bo).await,
            [public],
            "{location:?}: a removed saved search delivers no more"
        );
        store.close();
        drop(store);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match tidings_store::rebuild(&location, &StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => {
                    other.expect("rebuild");
                    break;
                }
            }
        }
        let store = open(&location);
        let page = store
            .inbox(bo.clone(), InboxFilter::default(), PageFrom::Newest, 100)
            .await
            .expect("inbox");
        assert_eq!(
            page.items
                .iter()
                .map(|i| (i.seq, i.via.as_deref().map(str::to_owned)))
                .collect::<Vec<_>>(),
            vec![(public, Some(via))],
            "{location:?}: the rebuild reproduces the saved search's entries"
        );
        store.close();
    }
}

/// Moderation's derived state after a report, a hide, a ban: (open queue, resolved queue,
/// bans), as the owner reads them.
async fn moderation_state(
    store: &Store,
    owner: &User,
) -> (Vec<String>, Vec<(String, Vec<Option<String>>)>, Vec<String>) {
    let open = store
        .report_queue("eng", owner.clone(), true, 100)
        .await
        .expect("open queue");
    let resolved = store
        .report_queue("eng", owner.clone(), false, 100)
        .await
        .expect("resolved queue");
    let bans = store.circle_bans("eng", owner.clone()).await.expect("bans");
    (
        open.into_iter().map(|i| i.activity_id).collect(),
        resolved
            .into_iter()
            .map(|i| {
                (
                    i.activity_id,
                    i.reports.into_iter().map(|r| r.decision).collect(),
                )
            })
            .collect(),
        bans.into_iter()
            .map(|b| format!("{}:{:?}", b.username, b.until))
            .collect(),
    )
}

#[tokio::test]
async fn moderation_decisions_are_logged_enforced_and_rederived_on_every_adapter() {
    use tidings_core::moderation::{Decision, ReportReason};
    use tidings_store::DecisionInput;
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let bob = user(&store, "bob").await;
        let cara = user(&store, "cara").await;
        store
            .create_circle(
                ana.clone(),
                NewCircle {
                    name: "eng".into(),
                    display_name: "Eng".into(),
                    description: String::new(),
                    visibility: Visibility::Public,
                    join_policy: JoinPolicy::Open,
                },
            )
            .await
            .expect("circle");
        for who in [&bob, &cara] {
            store
                .put_member("eng", &who.username, who.clone(), None, None)
                .await
                .expect("join");
        }
        let note = |text: &str| json!({"object": {"content": text}, "to": ["circle:eng"]});
        let (hidden_seq, hidden) = publish(&store, &bob, note("spam"), None).await;
        let (_, banned) = publish(&store, &bob, note("insult"), None).await;
        let (_, open_one) = publish(&store, &bob, note("borderline"), None).await;
        for target in [&hidden, &banned, &open_one] {
            store
                .report(cara.clone(), target, ReportReason::Spam, "see".into())
                .await
                .expect("report");
        }
        let hide = DecisionInput {
            decision: Decision::Hide,
            reason: "spam".into(),
            until: None,
        };
        store
            .resolve_reports("eng", &hidden, ana.clone(), hide)
            .await
            .expect("hide");
        let ban = DecisionInput {
            decision: Decision::Ban,
            reason: "insults".into(),
            until: None,
        };
        store
            .resolve_reports("eng", &banned, ana.clone(), ban)
            .await
            .expect("ban");
        // Enforced: bob cannot post to eng; the hidden item is out of cara's inbox.
        let draft =
            normalize(&note("again"), &Limits::default(), &|_| TypeStatus::BuiltIn).expect("draft");
        let refused = store
            .publish(PublishInput {
                actor: bob.clone(),
                draft,
                idempotency_key: None,
            })
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Forbidden { code, .. }) if *code == "banned_from_circle"),
            "{location:?}: {refused:?}"
        );
        store
            .wait_routed(store.last_seq().await.expect("last"))
            .await
            .expect("routed");
        assert!(!inbox_seqs(&store, &cara).await.contains(&hidden_seq));
        let log = store
            .moderation_log("eng", cara.clone(), None, 100)
            .await
            .expect("log");
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["ban", "hide", "report", "report", "report"],
            "{location:?}"
        );
        assert!(
            log.iter()
                .filter(|e| e.action == "report")
                .all(|e| e.actor.is_none())
        );

        let before = moderation_state(&store, &ana).await;
        assert_eq!(before.0, vec![open_one.clone()], "{location:?}");
        assert_eq!(before.1.len(), 2);
        assert_eq!(before.2, vec!["bob:None".to_owned()]);
        assert!(store.verify().await.expect("verify").ok());
        store.close();
        drop(store);
        let mut tries = 0;
        let report = loop {
            match tidings_store::rebuild(&location, &StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other.expect("rebuild"),
            }
        };
        assert_eq!(report.moderation, (3, 2), "{location:?}");
        let store = open(&location);
        assert_eq!(moderation_state(&store, &ana).await, before, "{location:?}");
        assert!(!inbox_seqs(&store, &cara).await.contains(&hidden_seq));
        store.close();
    }
}

/// Conversation ids and unread counts of `user`'s conversations, newest first.
async fn conversation_view(store: &Store, user: &User) -> Vec<(String, Vec<String>, i64)> {
    store
        .conversations(user.clone(), PageFrom::Newest, 100)
        .await
        .expect("conversations")
        .items
        .into_iter()
        .map(|c| (c.id, c.participants, c.unread))
        .collect()
}

#[tokio::test]
async fn conversations_and_groups_survive_a_rebuild_on_every_adapter() {
    for (location, _dir) in places() {
        let store = open(&location);
        let ana = user(&store, "ana").await;
        let bob = user(&store, "bob").await;
        let cy = user(&store, "cy").await;
        let (first, first_id) = publish(
            &store,
            &ana,
            json!({"object": {"type": "Note", "content": "hi"}, "to": ["user:bob"]}),
            None,
        )
        .await;
        publish(
            &store,
            &bob,
            json!({"object": {"type": "Note", "content": "hey"}, "inReplyTo": first_id}),
            None,
        )
        .await;
        let group = store
            .create_group(
                ana.clone(),
                "pals".into(),
                None,
                vec!["bob".into(), "cy".into()],
            )
            .await
            .expect("group");
        assert_eq!(group.members, ["bob", "cy"], "{location:?}");
        let reference = tidings_core::conversations::GroupRef::parse("pals").expect("ref");
        store
            .remove_group_members(ana.clone(), reference.clone(), vec!["cy".into()])
            .await
            .expect("remove");
        let (to_group, _) = publish(
            &store,
            &ana,
            json!({"object": {"type": "Note", "content": "pals only"}, "to": ["group:pals"]}),
            None,
        )
        .await;
        store.wait_routed(to_group).await.expect("routed");
        assert!(inbox_seqs(&store, &bob).await.contains(&to_group));
        assert!(
            !inbox_seqs(&store, &cy).await.contains(&to_group),
            "{location:?}: removed before the post"
        );
        let ana_view = conversation_view(&store, &ana).await;
        assert_eq!(ana_view.len(), 1, "{location:?}: {ana_view:?}");
        assert_eq!(ana_view[0].1, ["ana", "bob"]);
        assert_eq!(ana_view[0].2, 1, "bob's reply is unread");
        store
            .mark_conversation_read(&ana_view[0].0, ana.clone(), Some(first))
            .await
            .expect("read");
        assert!(conversation_view(&store, &cy).await.is_empty());
        assert!(matches!(
            store
                .conversation_messages(&ana_view[0].0, cy.clone(), PageFrom::Newest, 10)
                .await,
            Err(StoreError::NotFound { .. })
        ));
        store.close();
        drop(store);
        let mut tries = 0;
        let report = loop {
            match tidings_store::rebuild(&location, &StoreConfig::default()) {
                Err(StoreError::Locked { .. }) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other.expect("rebuild"),
            }
        };
        assert_eq!(report.conversation_messages, 2, "{location:?}");
        assert_eq!(
            report.group_changes, 3,
            "{location:?}: two adds, one remove"
        );
        let store = open(&location);
        assert_eq!(
            conversation_view(&store, &ana).await,
            ana_view,
            "{location:?}"
        );
        let group = store
            .group(ana.clone(), reference)
            .await
            .expect("group after rebuild");
        assert_eq!(group.members, ["bob"], "{location:?}");
        assert!(inbox_seqs(&store, &bob).await.contains(&to_group));
        assert!(!inbox_seqs(&store, &cy).await.contains(&to_group));
        let report = store.verify().await.expect("verify");
        assert!(report.ok(), "{:?}", report.problems);
        store.close();
    }
}

fn new_media(alt: Option<&str>) -> tidings_store::media::NewMedia {
    let variant = |name: &str, key: &str, edge: u32| tidings_store::media::MediaVariant {
        name: name.into(),
        key: key.into(),
        media_type: "image/jpeg".into(),
        width: edge,
        height: edge * 3 / 4,
        bytes: u64::from(edge) * 10,
    };
    tidings_store::media::NewMedia {
        media_type: "image/jpeg".into(),
        width: 2000,
        height: 1500,
        blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
        alt: alt.map(str::to_owned),
        variants: vec![
            variant("original", "sha256/aa/aa", 2000),
            variant("medium", "sha256/bb/bb", 1280),
            variant("small", "sha256/cc/cc", 400),
        ],
    }
}

#[tokio::test]
async fn media_are_readable_as_the_activities_attaching_them_on_every_adapter() {
    use tidings_store::media::{AvatarOf, MediaAccess};
    for (location, _dir) in places() {
        let store = open(&location);
        let c = community(&store).await;
        let kept = store
            .create_media(&c.ana, new_media(Some("the harbour")))
            .await
            .expect("media");
        assert_eq!(kept.owner, "ana");
        assert_eq!(kept.variants.len(), 3);
        let attach =
            |id: &str| json!([{"type": "Image", "url": format!("/api/v1/media/{id}/original")}]);
        // Unattached: only its uploader.
        let access = |viewer: Option<User>, id: String| {
            let store = store.clone();
            async move {
                store
                    .readable_media(&id, viewer.as_ref())
                    .await
                    .expect("readable")
                    .map(|(m, a)| (m.alt, a))
            }
        };
        assert_eq!(
            access(Some(c.ana.clone()), kept.id.clone()).await,
            Some((Some("the harbour".into()), MediaAccess::Private)),
            "{location:?}"
        );
        assert_eq!(access(Some(c.bo.clone()), kept.id.clone()).await, None);
        assert_eq!(access(None, kept.id.clone()).await, None);
        // Attached to a private circle's post: members (the owner), not outsiders.
        let (_, post_id) = publish(
            &store,
            &c.ana,
            json!({"object": {"content": "our harbour", "attachment": attach(&kept.id)}, "to": ["circle:sec"]}),
            None,
        )
        .await;
        assert_eq!(access(Some(c.bo.clone()), kept.id.clone()).await, None);
        // Bo cannot attach it himself (it would widen its audience), nor can anyone attach an
        // id that does not exist; the refused publish changes nothing.
        let last = store.last_seq().await.expect("last");
        for doc in [
            json!({"object": {"content": "mine now", "attachment": attach(&kept.id)}, "to": ["public"]}),
            json!({"object": {"content": "ghost", "attachment": attach("0192f0a4-7c1e-7d3a-9b2f-0a1b2c3d4e5f")}, "to": ["public"]}),
        ] {
            let draft =
                normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn).expect("draft");
            let refused = store
                .publish(PublishInput {
                    actor: c.bo.clone(),
                    draft,
                    idempotency_key: None,
                })
                .await;
            assert!(
                matches!(
                    refused,
                    Err(StoreError::Unprocessable {
                        code: "unknown_media",
                        ..
                    })
                ),
                "{location:?}: {refused:?}"
            );
        }
        assert_eq!(store.last_seq().await.expect("last"), last);
        // Attached to a public post as well: everyone.
        publish(
            &store,
            &c.ana,
            json!({"object": {"content": "harbour, public", "attachment": attach(&kept.id)}, "to": ["public"]}),
            None,
        )
        .await;
        assert_eq!(
            access(None, kept.id.clone()).await.map(|(_, a)| a),
            Some(MediaAccess::Public),
            "{location:?}"
        );
        // Another upload attached only to a followers-only post: Cy follows Ana, Bo does not.
        let second = store
            .create_media(&c.ana, new_media(None))
            .await
            .expect("media");
        let (_, followers_post) = publish(
            &store,
            &c.ana,
            json!({"object": {"content": "for followers", "attachment": attach(&second.id)}, "to": ["followers"]}),
            None,
        )
        .await;
        assert_eq!(
            access(Some(c.cy.clone()), second.id.clone())
                .await
                .map(|(_, a)| a),
            Some(MediaAccess::Private)
        );
        assert_eq!(access(Some(c.bo.clone()), second.id.clone()).await, None);
        // Retracted: gone for readers, still there for its uploader.
        publish(
            &store,
            &c.ana,
            json!({"type": "Delete", "object": followers_post}),
            None,
        )
        .await;
        assert_eq!(
            access(Some(c.cy.clone()), second.id.clone()).await,
            None,
            "{location:?}"
        );
        assert!(
            access(Some(c.ana.clone()), second.id.clone())
                .await
                .is_some()
        );
        let _ = post_id;
        // Avatars: only the person (or the circle's keepers) sets one, with their own media;
        // an avatar is public.
        let bo_media = store
            .create_media(&c.bo, new_media(None))
            .await
            .expect("media");
        assert!(matches!(
            store
                .set_avatar(
                    AvatarOf::User("ana".into()),
                    Some(bo_media.id.clone()),
                    &c.bo
                )
                .await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            store
                .set_avatar(AvatarOf::User("bo".into()), Some(second.id.clone()), &c.bo)
                .await,
            Err(StoreError::Unprocessable { .. })
        ));
        assert!(matches!(
            store
                .set_avatar(
                    AvatarOf::Circle("sec".into()),
                    Some(bo_media.id.clone()),
                    &c.bo
                )
                .await,
            Err(StoreError::Forbidden { .. })
        ));
        store
            .set_avatar(
                AvatarOf::User("bo".into()),
                Some(bo_media.id.clone()),
                &c.bo,
            )
            .await
            .expect("avatar");
        assert_eq!(
            store
                .avatar(AvatarOf::User("bo".into()))
                .await
                .expect("avatar")
                .map(|m| m.id),
            Some(bo_media.id.clone())
        );
        assert_eq!(
            access(None, bo_media.id.clone()).await.map(|(_, a)| a),
            Some(MediaAccess::Public)
        );
        store
            .set_avatar(
                AvatarOf::Circle("sec".into()),
                Some(second.id.clone()),
                &c.ana,
            )
            .await
            .expect("circle avatar");
        assert_eq!(
            store
                .avatar(AvatarOf::Circle("sec".into()))
                .await
                .expect("avatar")
                .map(|m| m.id),
            Some(second.id.clone())
        );
        store
            .set_avatar(AvatarOf::User("bo".into()), None, &c.bo)
            .await
            .expect("clear");
        assert_eq!(
            store
                .avatar(AvatarOf::User("bo".into()))
                .await
                .expect("avatar"),
            None
        );
        assert!(matches!(
            store.avatar(AvatarOf::User("nobody".into())).await,
            Err(StoreError::NotFound { .. })
        ));
        store.close();
        // The metadata and the links travel with `store copy`.
        let copy_dir = tempfile::tempdir().expect("tempdir");
        let copy = StoreLocation::Embedded(copy_dir.path().into());
        tidings_store::copy_store(&location, &copy).expect("copy");
        let copied = open(&copy);
        let seen = copied
            .readable_media(&kept.id, None)
            .await
            .expect("readable")
            .map(|(m, a)| (m.variants.len(), a));
        assert_eq!(seen, Some((3, MediaAccess::Public)), "{location:?}");
        copied.close();
    }
}
