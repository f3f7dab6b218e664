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
    InboxFilter, LiveSession, NewSession, PageFrom, PublishInput, SessionLookup, User,
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
