//! The log is immutable in the store itself, and `verify` notices any tampering.

use rusqlite::Connection;
use serde_json::json;
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_store::Store;
use tidings_store::sqlite::{PublishInput, StoreConfig};

async fn store_with_activities() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
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

    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    let version: String = raw(&dir)
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, "3");
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
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(tidings_store::StoreError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second store opened the same data dir"),
    }
    store.close();
    let again = Store::open(dir.path(), StoreConfig::default()).expect("free after close");
    again.close();
}
