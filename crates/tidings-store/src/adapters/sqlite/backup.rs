//! `tidings backup` and `tidings restore` for the embedded store.
//!
//! What a data directory holds, and what a backup keeps of it:
//! - `tidings.db` — the database: the log and every projection. Kept.
//! - `tidings.db-wal`, `tidings.db-shm` — SQLite's write-ahead log and its index. Commits live
//!   in the WAL until a checkpoint copies them into `tidings.db`, so copying the files of a
//!   running store can miss or tear them. The backup reads through SQLite's online backup API
//!   instead: one read transaction, so one consistent state including what the WAL holds,
//!   while the server keeps writing (a WAL reader never blocks the writer).
//! - `tidings.lock` — held by the process that serves the directory; never copied.
//! - `seed-tokens.txt` — plain tokens `tidings seed` printed for benchmarks; the sessions
//!   themselves are in the database, so not copied.
//!
//! A backup directory holds `tidings.db` (a single file, rollback journal mode, checked with
//! `PRAGMA integrity_check` and a full chain verification before it is named so) and
//! `backup.json` (what it is and what it held). Restore checks the same again, refuses a
//! directory a server holds, and refuses to replace a store without `force`; a replaced store
//! is kept beside it as `tidings.db.before-restore`.

use super::lock_data_dir;
use crate::engine::verify::verify_log;
use crate::model::VerifyReport;
use crate::sql::Connection;
use crate::{StoreError, StoreResult};
use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};

/// The database file in a data directory and in a backup directory.
const DB_FILE: &str = "tidings.db";
/// What a backup directory says about itself.
const MANIFEST_FILE: &str = "backup.json";
/// Names the manifest's format, so restore refuses a directory that is not a backup.
const FORMAT: &str = "tidings-embedded-backup";
/// Where restore keeps the store it replaced.
const REPLACED_FILE: &str = "tidings.db.before-restore";

/// What a backup holds, as written in its `backup.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupManifest {
    /// Always `tidings-embedded-backup`.
    pub format: String,
    /// When the backup was taken (RFC 3339).
    pub created_at: String,
    /// The store's schema version.
    pub schema_version: String,
    /// Activities in the log.
    pub activities: i64,
    /// The newest seq in the log.
    pub last_seq: i64,
    /// Size of `tidings.db` in bytes.
    pub bytes: u64,
}

/// The outcome of a backup or a restore: the manifest and the verification of the copy.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// What the copy holds.
    pub manifest: BackupManifest,
    /// Digests and chains re-checked on the copy.
    pub verify: VerifyReport,
    /// Restore only: where the store it replaced was kept.
    pub replaced: Option<PathBuf>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot {what} {}: {e}", path.display()))
}

/// Takes a consistent backup of the embedded store in `data_dir` into `target` (created if
/// missing; it must be empty). Safe while a server writes to the store.
pub fn backup_embedded(data_dir: &Path, target: &Path) -> StoreResult<BackupReport> {
    let source_path = data_dir.join(DB_FILE);
    if !source_path.is_file() {
        return Err(StoreError::not_found("store"));
    }
    std::fs::create_dir_all(target).map_err(|e| io_error("create", target, e))?;
    let occupied = std::fs::read_dir(target)
        .map_err(|e| io_error("read", target, e))?
        .next()
        .is_some();
    if occupied {
        return Err(StoreError::conflict(
            "backup_target_not_empty",
            format!(
                "{} is not empty; back up into a new or empty directory",
                target.display()
            ),
        ));
    }
    let partial = target.join(format!("{DB_FILE}.partial"));
    let outcome = copy_and_check(&source_path, &partial);
    let (manifest, verify) = match outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let final_path = target.join(DB_FILE);
    std::fs::rename(&partial, &final_path).map_err(|e| io_error("rename", &partial, e))?;
    let manifest_path = target.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)
        .map_err(|e| io_error("write", &manifest_path, e))?;
    sync_dir(target);
    Ok(BackupReport {
        manifest,
        verify,
        replaced: None,
    })
}

/// Copies `source` into a new file at `dest` through the online backup API, then checks the
/// copy (integrity and every chain) and describes it.
fn copy_and_check(source: &Path, dest: &Path) -> StoreResult<(BackupManifest, VerifyReport)> {
    let from = rusqlite::Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(std::time::Duration::from_secs(5))?;
    {
        let mut to = rusqlite::Connection::open(dest)?;
        {
            let backup = rusqlite::backup::Backup::new(&from, &mut to)?;
            // All pages in one step: one read transaction, so one consistent state even while
            // the server commits (smaller steps restart whenever another process writes).
            let mut attempts = 0;
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => {}
                    _ if attempts < 100 => {
                        attempts += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    _ => {
                        return Err(StoreError::Unavailable(
                            "the store stayed locked; try the backup again".into(),
                        ));
                    }
                }
            }
        }
        // A backup is one self-contained file: no WAL beside it.
        to.execute_batch("PRAGMA journal_mode = DELETE;")?;
    }
    sync_file(dest)?;
    let (manifest, verify) = check_database(dest)?;
    Ok((manifest, verify))
}

/// Opens a database file read-only, runs SQLite's integrity check and the chain
/// verification, and describes what it holds.
fn check_database(path: &Path) -> StoreResult<(BackupManifest, VerifyReport)> {
    let raw = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let integrity: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails SQLite's integrity check: {integrity}",
            path.display()
        )));
    }
    let conn = Connection::Sqlite(raw);
    let verify = verify_log(&conn)?;
    if !verify.ok() {
        return Err(StoreError::Corrupt(format!(
            "{} fails verification: {}",
            path.display(),
            verify.problems.join("; ")
        )));
    }
    let (activities, last_seq): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM activities",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let schema_version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| io_error("read", path, e))?
        .len();
    Ok((
        BackupManifest {
            format: FORMAT.into(),
            created_at: crate::now_rfc3339(),
            schema_version,
            activities,
            last_seq,
            bytes,
        },
        verify,
    ))
}

/// Restores the backup in `backup_dir` into the data directory `data_dir`. Refuses while a
/// server holds the directory, and refuses to replace an existing store unless `force`.
pub fn restore_embedded(
    backup_dir: &Path,
    data_dir: &Path,
    force: bool,
) -> StoreResult<BackupReport> {
    let source = backup_dir.join(DB_FILE);
    let manifest_path = backup_dir.join(MANIFEST_FILE);
    let manifest: Option<BackupManifest> = std::fs::read(&manifest_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let original = match manifest {
        Some(m) if m.format == FORMAT && source.is_file() => m,
        _ => {
            return Err(StoreError::unprocessable(
                "not_a_backup",
                format!(
                    "{} is not a Tidings backup (it needs {DB_FILE} and {MANIFEST_FILE} as \
                 `tidings backup` writes them)",
                    backup_dir.display()
                ),
            ));
        }
    };
    // Check the backup before touching anything.
    let (mut manifest, verify) = check_database(&source)?;
    manifest.created_at = original.created_at;
    std::fs::create_dir_all(data_dir).map_err(|e| io_error("create", data_dir, e))?;
    // Held to the end: no server may open the directory while its database is swapped.
    let _lock = lock_data_dir(data_dir)?;
    let live = data_dir.join(DB_FILE);
    let replaced = if live.exists() {
        if !force {
            return Err(StoreError::conflict(
                "store_exists",
                format!(
                    "{} already holds a store; pass --force to replace it (it is kept as \
                     {REPLACED_FILE})",
                    data_dir.display()
                ),
            ));
        }
        // Fold the old store's WAL into it so the kept copy is whole on its own.
        if let Ok(old) = rusqlite::Connection::open(&live) {
            let _ = old.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        }
        let kept = data_dir.join(REPLACED_FILE);
        std::fs::rename(&live, &kept).map_err(|e| io_error("move aside", &live, e))?;
        Some(kept)
    } else {
        None
    };
    // A WAL left beside the new file would be replayed into it: remove both side files.
    for side in ["tidings.db-wal", "tidings.db-shm"] {
        let path = data_dir.join(side);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &path, e)),
        }
    }
    let incoming = data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(&source, &incoming).map_err(|e| io_error("copy", &source, e))?;
    sync_file(&incoming)?;
    std::fs::rename(&incoming, &live).map_err(|e| io_error("rename", &incoming, e))?;
    sync_dir(data_dir);
    Ok(BackupReport {
        manifest,
        verify,
        replaced,
    })
}

fn sync_file(path: &Path) -> StoreResult<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", path, e))
}

/// Makes a rename durable. Best effort: not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
