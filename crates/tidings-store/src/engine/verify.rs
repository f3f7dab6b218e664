//! `tidings verify`: re-checks every activity digest and every stream's hash chain.

use super::Store;
use crate::StoreResult;
use crate::model::VerifyReport;
use crate::sql::Connection;
use std::collections::HashMap;
use tidings_core::canonical::{chain_hash, verify_activity};

/// Walks the whole log on `conn`.
pub(crate) fn verify_log(conn: &Connection) -> StoreResult<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut stmt = conn.prepare("SELECT seq, id, digest, body FROM activities ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let id: String = row.get(1)?;
        let digest: String = row.get(2)?;
        let body: String = row.get(3)?;
        report.activities += 1;
        match serde_json::from_str::<serde_json::Value>(&body) {
            Err(e) => report
                .problems
                .push(format!("activity {id} (seq {seq}): body is not JSON: {e}")),
            Ok(doc) => {
                if let Err(mismatch) = verify_activity(&doc) {
                    report.problems.push(format!(
                        "activity {id} (seq {seq}): digest mismatch, recomputed {} but stored {:?}",
                        mismatch.expected, mismatch.found
                    ));
                } else if doc.get("digest").and_then(|d| d.as_str()) != Some(digest.as_str()) {
                    report.problems.push(format!(
                        "activity {id} (seq {seq}): digest column disagrees with body"
                    ));
                }
            }
        }
    }

    // Links are stored in seq order; each stream's previous link is tracked in memory.
    let mut stmt = conn.prepare(
        "SELECT l.stream, l.seq, l.pos, l.chain, a.digest FROM stream_links l
         LEFT JOIN activities a ON a.seq = l.seq ORDER BY l.seq, l.stream",
    )?;
    let mut rows = stmt.query([])?;
    let mut heads: HashMap<String, (i64, String)> = HashMap::new();
    while let Some(row) = rows.next()? {
        let stream: String = row.get(0)?;
        let seq: i64 = row.get(1)?;
        let pos: i64 = row.get(2)?;
        let chain: String = row.get(3)?;
        let digest: Option<String> = row.get(4)?;
        report.links += 1;
        let (expected_pos, prev_chain) = match heads.get(&stream) {
            Some((pos, chain)) => (pos + 1, Some(chain.as_str())),
            None => {
                report.streams += 1;
                (1, None)
            }
        };
        if pos != expected_pos {
            report.problems.push(format!(
                "stream {stream}: position {pos} at seq {seq}, expected {expected_pos}"
            ));
        }
        match digest {
            None => report.problems.push(format!(
                "stream {stream}: seq {seq} points at a missing activity"
            )),
            Some(digest) => {
                if chain_hash(prev_chain, &digest) != chain {
                    report.problems.push(format!(
                        "stream {stream}: chain broken at seq {seq} (position {pos})"
                    ));
                }
            }
        }
        heads.insert(stream, (pos, chain));
    }
    Ok(report)
}

impl Store {
    /// Verifies every digest and chain (reads a consistent snapshot).
    pub async fn verify(&self) -> StoreResult<VerifyReport> {
        self.read(|conn| {
            super::offline::begin_snapshot(conn)?;
            let report = verify_log(conn);
            let _ = conn.execute_batch("COMMIT");
            report
        })
        .await
    }
}
