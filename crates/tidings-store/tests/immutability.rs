//! The log is immutable in the store itself, and `verify` notices any tampering.

use rusqlite::Connection;
use serde_json::json;
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_store::Store;
use tidings_store::model::PublishInput;
use tidings_store::{StoreConfig, StoreLocation};

async fn store_with_activities() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    )
    .expect("open");
    let ana = store
        .create_user("ana".into(), "Ana".into(), None, false)
        .await
        .expect("user");
    for i in 0..3 {
        let draft = normalize(
            &json!({"object": {"content": format!("note {i}")}, "to": ["public"], "tag": ["t"]}),
            &Limits::default(),
            &|_| TypeStatus::BuiltIn,
        )
        .expect("draft");
        store
            .publish(PublishInput {
                actor: ana.clone(),
                draft,
                idempotency_key: None,
            })
            .await
            .expect("publish");
    }
    (dir, store)
}

fn raw(dir: &tempfile::TempDir) -> Connection {
    Connection::open(dir.path().join("tidings.db")).expect("raw connection")
}

#[tokio::test]
async fn store_refuses_update_and_delete_of_the_log() {
    let (dir, store) = store_with_activities().await;
    let conn = raw(&dir);
    for sql in [
        "UPDATE activities SET body = '{}' WHERE seq = 1",
        "DELETE FROM activities WHERE seq = 1",
        "UPDATE stream_links SET chain = 'x' WHERE seq = 1",
        "DELETE FROM stream_links WHERE seq = 1",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
    let report = store.verify().await.expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.activities, 3);
    assert_eq!(report.links, 3);
    store.close();
}

#[tokio::test]
async fn verify_detects_a_tampered_body_and_a_broken_chain() {
    let (dir, store) = store_with_activities().await;
    let conn = raw(&dir);
    // An attacker with file access must first drop the guard; verify still catches it.
    conn.execute_batch(
        "DROP TRIGGER activities_refuse_update;
         UPDATE activities SET body = replace(body, 'note 1', 'note X') WHERE seq = 2;",
    )
    .expect("tamper body");
    let report = store.verify().await.expect("verify");
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("digest mismatch")),
        "{:?}",
        report.problems
    );

    conn.execute_batch(
        "DROP TRIGGER stream_links_refuse_delete;
         DELETE FROM stream_links WHERE seq = 2;",
    )
    .expect("tamper chain");
    let report = store.verify().await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("chain broken") || p.contains("position")),
        "{:?}",
        report.problems
    );
    store.close();
}

/// A schema-1 database (stream tables keyed by stream first) is migrated on open: its chains
/// still verify, and new publishes continue them.
#[tokio::test]
async fn schema_one_databases_migrate_and_keep_their_chains() {
    let (dir, store) = store_with_activities().await;
    store.close();
    drop(store);
    let conn = raw(&dir);
    conn.execute_batch(
        "DROP TRIGGER stream_links_refuse_update;
         DROP TRIGGER stream_links_refuse_delete;
         CREATE TABLE old_links (stream TEXT NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL,
             chain TEXT NOT NULL, PRIMARY KEY (stream, seq)) WITHOUT ROWID;
         INSERT INTO old_links SELECT stream, seq, pos, chain FROM stream_links;
         DROP TABLE stream_links;
         ALTER TABLE old_links RENAME TO stream_links;
         CREATE TABLE old_circles (circle_id INTEGER NOT NULL, seq INTEGER NOT NULL,
             PRIMARY KEY (circle_id, seq)) WITHOUT ROWID;
         INSERT INTO old_circles SELECT circle_id, seq FROM activity_circles;
         DROP TABLE activity_circles;
         ALTER TABLE old_circles RENAME TO activity_circles;
         UPDATE meta SET value = '1' WHERE key = 'schema_version';",
    )
    .expect("make a schema-1 database");
    drop(conn);

    let store = Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    )
    .expect("reopen");
    let version: String = raw(&dir)
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, "14");
    let ana = store.user("ana").await.expect("ana");
    let draft = normalize(
        &json!({"object": {"content": "after the migration"}, "to": ["public"]}),
        &Limits::default(),
        &|_| TypeStatus::BuiltIn,
    )
    .expect("draft");
    store
        .publish(PublishInput {
            actor: ana,
            draft,
            idempotency_key: None,
        })
        .await
        .expect("publish after migration");
    let report = store.verify().await.expect("verify");
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.links, 4);
    // The guards came back with the new table.
    let err = raw(&dir)
        .execute("DELETE FROM stream_links WHERE seq = 1", [])
        .expect_err("still immutable");
    assert!(err.to_string().contains("immutable"));
    store.close();
}

/// Only one process may own a data directory.
#[tokio::test]
async fn a_second_store_on_one_data_dir_is_refused() {
    let (dir, store) = store_with_activities().await;
    match Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    ) {
        Err(tidings_store::StoreError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second store opened the same data dir"),
    }
    store.close();
    let again = Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    )
    .expect("free after close");
    again.close();
}

/// A schema-3 store (each inbox entry's `via` stored as text) is migrated on open to compact
/// integer vias, and every inbox reads exactly as before: subscription, addressed and follow
/// entries alike.
#[tokio::test]
async fn schema_three_inbox_entries_migrate_to_compact_vias() {
    use tidings_store::model::NewCircle;
    use tidings_store::model::{InboxFilter, JoinPolicy, PageFrom, User, Visibility};

    async fn post(store: &Store, actor: &User, doc: serde_json::Value) -> i64 {
        let draft = normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn).expect("draft");
        let published = store
            .publish(PublishInput {
                actor: actor.clone(),
                draft,
                idempotency_key: None,
            })
            .await
            .expect("publish");
        store.wait_routed(published.seq).await.expect("routed");
        published.seq
    }
    async fn inbox_of(store: &Store, user: &User) -> Vec<(i64, Option<String>)> {
        store
            .inbox(user.clone(), InboxFilter::default(), PageFrom::Newest, 100)
            .await
            .expect("inbox")
            .items
            .into_iter()
            .map(|i| (i.seq, i.via))
            .collect()
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    )
    .expect("open");
    let user = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_user(name.into(), name.to_uppercase(), None, false)
                .await
                .expect("user")
        }
    };
    let (ana, bob) = (user("ana").await, user("bob").await);
    store
        .create_circle(
            ana.clone(),
            NewCircle {
                name: "eng".into(),
                display_name: "Eng".into(),
                description: "engineering".into(),
                visibility: Visibility::Public,
                join_policy: JoinPolicy::Open,
            },
        )
        .await
        .expect("circle");
    store
        .put_member("eng", "bob", bob.clone(), None, None)
        .await
        .expect("join");
    post(
        &store,
        &bob,
        json!({"type": "Follow", "object": "user:ana", "to": ["user:ana"]}),
    )
    .await;
    post(
        &store,
        &ana,
        json!({"object": {"content": "to eng"}, "to": ["circle:eng"]}),
    )
    .await;
    post(
        &store,
        &ana,
        json!({"object": {"content": "to bob"}, "to": ["user:bob"]}),
    )
    .await;
    post(
        &store,
        &ana,
        json!({"object": {"content": "to followers"}, "to": ["followers"]}),
    )
    .await;
    let before = inbox_of(&store, &bob).await;
    let kinds: Vec<&str> = before
        .iter()
        .filter_map(|(_, via)| via.as_deref())
        .map(|via| via.split(':').next().unwrap_or(""))
        .collect();
    for kind in ["subscription", "addressed", "follow"] {
        assert!(kinds.contains(&kind), "no {kind} entry in {before:?}");
    }
    store.close();
    drop(store);

    // Back to the schema-3 layout: `via` as the text clients see.
    let conn = raw(&dir);
    conn.execute_batch(
        "CREATE TABLE old_entries (user_id INTEGER NOT NULL, seq INTEGER NOT NULL,
             via TEXT NOT NULL, PRIMARY KEY (user_id, seq)) WITHOUT ROWID;
         INSERT INTO old_entries
             SELECT e.user_id, e.seq,
                    CASE WHEN e.via > 0 THEN 'subscription:' || e.via || ':' || s.expr
                         WHEN e.via < 0 THEN 'follow:' || u.username
                         ELSE 'addressed' END
             FROM inbox_entries e
             LEFT JOIN subscriptions s ON s.id = e.via
             LEFT JOIN users u ON u.id = -e.via;
         DROP TABLE inbox_entries;
         ALTER TABLE old_entries RENAME TO inbox_entries;
         UPDATE meta SET value = '3' WHERE key = 'schema_version';",
    )
    .expect("make a schema-3 database");
    let texts: i64 = conn
        .query_row(
            "SELECT count(*) FROM inbox_entries WHERE typeof(via) = 'text'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(texts >= 3, "{texts}");
    drop(conn);

    let store = Store::open(
        &StoreLocation::Embedded(dir.path().into()),
        StoreConfig::default(),
    )
    .expect("reopen");
    let conn = raw(&dir);
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, "14");
    let (rows, integers): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(typeof(via) = 'integer') FROM inbox_entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!(rows, texts);
    assert_eq!(integers, rows);
    let bob = store.user("bob").await.expect("bob");
    assert_eq!(inbox_of(&store, &bob).await, before);
    // Unfollowing still finds and removes the follow entries it wrote.
    let ana_now = store.user("ana").await.expect("ana");
    let follow_entries = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM inbox_entries WHERE user_id = ?1 AND via = ?2",
            [bob.id, -ana_now.id],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert!(follow_entries(&conn) > 0);
    let follow_id = store
        .follow_activity(&bob, "ana")
        .await
        .expect("follow")
        .expect("bob follows ana");
    post(&store, &bob, json!({"type": "Undo", "object": follow_id})).await;
    assert_eq!(follow_entries(&conn), 0);
    store.close();
}
