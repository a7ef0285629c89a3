//! Append-only, hash-chained audit log.
//!
//! Each entry's `hash` is SHA-256 over an unambiguous (length-prefixed)
//! encoding of its own fields and the previous entry's hash, so changing,
//! removing or reordering any entry that has a successor breaks the chain at
//! that point, and [`verify_conn`] names the first `seq` where it breaks.
//!
//! What the chain alone cannot show: deleting the *newest* entries (the
//! remaining chain is still consistent). The copy sent to the hub is the
//! witness for those; the log lives in a caller-supplied connection (the
//! edge's history database) precisely so the entry and its outbox row commit
//! in one transaction through the [`AuditHook`].

use crate::WebError;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Called inside the append transaction, after the entry is inserted; an
/// error rolls the entry back too.
pub type AuditHook =
    Box<dyn Fn(&Transaction<'_>, &AuditEntry) -> rusqlite::Result<()> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// Client address, or "" (unknown) or "cli".
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub addr: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainProblem {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries checked (all of them when `ok`, up to the problem otherwise).
    pub entries: u64,
    pub problem: Option<ChainProblem>,
}

pub fn ensure_schema(conn: &Connection) -> Result<(), WebError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit (
            seq INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL,
            addr TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );",
    )?;
    Ok(())
}

/// The chain hash of one entry (its `hash` field is ignored). Every text
/// field is length-prefixed so no two different entries encode to the same
/// bytes (e.g. moving text from `actor` into `action`).
pub fn entry_hash(e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    h.update(b"apos-audit-v1\0");
    h.update(e.seq.to_be_bytes());
    h.update(e.ts_ms.to_be_bytes());
    for field in [
        &e.actor,
        &e.action,
        &e.target,
        &e.detail,
        &e.addr,
        &e.prev_hash,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    crate::util::hex(&h.finalize())
}

pub struct AuditLog {
    conn: Arc<Mutex<Connection>>,
    hook: Option<AuditHook>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "seq, ts_ms, actor, action, target, detail, addr, prev_hash, hash";

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        ts_ms: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        detail: r.get(5)?,
        addr: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

impl AuditLog {
    pub fn new(
        conn: Arc<Mutex<Connection>>,
        hook: Option<AuditHook>,
    ) -> Result<AuditLog, WebError> {
        ensure_schema(&*conn.lock().map_err(|_| WebError::Poisoned)?)?;
        Ok(AuditLog { conn, hook })
    }

    pub fn append(&self, e: NewAudit, now_ms: i64) -> Result<AuditEntry, WebError> {
        let mut conn = self.conn.lock().map_err(|_| WebError::Poisoned)?;
        // IMMEDIATE takes the write lock before reading the chain head, so
        // another connection to the same file cannot append in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (seq, prev_hash) = match head {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let mut entry = AuditEntry {
            seq,
            ts_ms: now_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
            addr: e.addr,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        tx.execute(
            &format!("INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                entry.seq,
                entry.ts_ms,
                entry.actor,
                entry.action,
                entry.target,
                entry.detail,
                entry.addr,
                entry.prev_hash,
                entry.hash
            ],
        )?;
        if let Some(hook) = &self.hook {
            hook(&tx, &entry)?;
        }
        tx.commit()?;
        Ok(entry)
    }

    /// Newest first; `before` is an exclusive upper bound on `seq`.
    pub fn list(&self, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>, WebError> {
        let conn = self.conn.lock().map_err(|_| WebError::Poisoned)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM audit WHERE (?1 IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![before, limit], row_entry)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn verify(&self) -> Result<VerifyReport, WebError> {
        verify_conn(&*self.conn.lock().map_err(|_| WebError::Poisoned)?)
    }
}

/// Walks the whole chain oldest first and stops at the first break.
pub fn verify_conn(conn: &Connection) -> Result<VerifyReport, WebError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq ASC"))?;
    let mut rows = stmt.query([])?;
    let mut prev: Option<(i64, String)> = None;
    let mut entries = 0u64;
    let broken = |seq: i64, entries: u64, reason: String| VerifyReport {
        ok: false,
        entries,
        problem: Some(ChainProblem { seq, reason }),
    };
    while let Some(row) = rows.next()? {
        let e = row_entry(row)?;
        match &prev {
            None if e.seq != 1 || e.prev_hash != GENESIS_HASH => {
                return Ok(broken(
                    e.seq,
                    entries,
                    format!("entries before seq {} are missing", e.seq),
                ));
            }
            None => {}
            Some((pseq, _)) if e.seq != pseq + 1 => {
                return Ok(broken(
                    e.seq,
                    entries,
                    format!("entries {} to {} are missing", pseq + 1, e.seq - 1),
                ));
            }
            Some((pseq, phash)) if &e.prev_hash != phash => {
                return Ok(broken(
                    e.seq,
                    entries,
                    format!(
                        "prev_hash does not match entry {pseq}: an entry was replaced or reordered"
                    ),
                ));
            }
            Some(_) => {}
        }
        if entry_hash(&e) != e.hash {
            return Ok(broken(
                e.seq,
                entries,
                "hash does not match the entry's content: the entry was changed".to_owned(),
            ));
        }
        entries += 1;
        prev = Some((e.seq, e.hash));
    }
    Ok(VerifyReport {
        ok: true,
        entries,
        problem: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn new(i: usize) -> NewAudit {
        NewAudit {
            actor: format!("user{i}"),
            action: "login".into(),
            target: format!("t{i}"),
            detail: format!("d{i}"),
            addr: "127.0.0.1".into(),
        }
    }

    fn log_with(n: usize) -> (AuditLog, Arc<Mutex<Connection>>) {
        let conn = Arc::new(Mutex::new(Connection::open_in_memory().unwrap()));
        let log = AuditLog::new(conn.clone(), None).unwrap();
        for i in 0..n {
            log.append(new(i), 1000 + i as i64).unwrap();
        }
        (log, conn)
    }

    #[test]
    fn chain_links_and_verifies() {
        let (log, _) = log_with(5);
        let all = log.list(None, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(all[4].prev_hash, GENESIS_HASH);
        for w in all.windows(2) {
            assert_eq!(w[0].prev_hash, w[1].hash);
            assert_eq!(w[0].hash, entry_hash(&w[0]));
        }
        let page = log.list(Some(4), 2).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
        let r = log.verify().unwrap();
        assert_eq!((r.ok, r.entries, r.problem), (true, 5, None));
    }

    #[test]
    fn empty_log_verifies() {
        let (log, _) = log_with(0);
        assert_eq!(log.verify().unwrap().entries, 0);
        assert!(log.verify().unwrap().ok);
    }

    #[test]
    fn tampering_any_field_is_detected_at_that_entry() {
        let cases = [
            ("ts_ms", "ts_ms + 1"),
            ("actor", "'mallory'"),
            ("action", "'logout'"),
            ("target", "'x'"),
            ("detail", "detail || ' '"),
            ("addr", "'10.0.0.1'"),
            ("prev_hash", "'ab' || substr(prev_hash, 3)"),
            ("hash", "'ab' || substr(hash, 3)"),
        ];
        for (col, expr) in cases {
            let (log, conn) = log_with(5);
            conn.lock()
                .unwrap()
                .execute(
                    &format!("UPDATE audit SET {col} = {expr} WHERE seq = 3"),
                    [],
                )
                .unwrap();
            let r = log.verify().unwrap();
            assert!(!r.ok, "{col}");
            let p = r.problem.unwrap();
            // A changed hash is seen at the entry itself, or (if a forger also
            // made it self-consistent) at the next entry's prev_hash.
            assert_eq!(p.seq, 3, "{col}: {}", p.reason);
            assert_eq!(r.entries, 2);
        }
    }

    #[test]
    fn recomputed_hash_is_caught_by_successor() {
        let (log, conn) = log_with(4);
        {
            let c = conn.lock().unwrap();
            let mut e: AuditEntry = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM audit WHERE seq = 2"),
                    [],
                    row_entry,
                )
                .unwrap();
            e.actor = "mallory".into();
            e.hash = entry_hash(&e);
            c.execute(
                "UPDATE audit SET actor = ?1, hash = ?2 WHERE seq = 2",
                params![e.actor, e.hash],
            )
            .unwrap();
        }
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!(p.seq, 3, "{}", p.reason);
    }

    #[test]
    fn removed_or_reordered_entries_are_detected() {
        let (log, conn) = log_with(5);
        conn.lock()
            .unwrap()
            .execute("DELETE FROM audit WHERE seq = 3", [])
            .unwrap();
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!(p.seq, 4);
        assert!(p.reason.contains("missing"), "{}", p.reason);

        let (log, conn) = log_with(5);
        conn.lock()
            .unwrap()
            .execute("DELETE FROM audit WHERE seq = 1", [])
            .unwrap();
        assert_eq!(log.verify().unwrap().problem.unwrap().seq, 2);

        // Swap the contents of entries 2 and 3 (keeping seq in place).
        let (log, conn) = log_with(5);
        {
            let c = conn.lock().unwrap();
            c.execute_batch(
                "UPDATE audit SET seq = 100 WHERE seq = 2;
                 UPDATE audit SET seq = 2 WHERE seq = 3;
                 UPDATE audit SET seq = 3 WHERE seq = 100;",
            )
            .unwrap();
        }
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!(p.seq, 2, "{}", p.reason);
    }

    #[test]
    fn deleting_the_newest_entry_is_not_detectable_by_the_chain() {
        let (log, conn) = log_with(5);
        conn.lock()
            .unwrap()
            .execute("DELETE FROM audit WHERE seq = 5", [])
            .unwrap();
        let r = log.verify().unwrap();
        assert!(r.ok);
        assert_eq!(r.entries, 4);
    }

    #[test]
    fn chain_continues_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let conn = Arc::new(Mutex::new(Connection::open(&path).unwrap()));
            let log = AuditLog::new(conn, None).unwrap();
            log.append(new(0), 1).unwrap();
            log.append(new(1), 2).unwrap();
        }
        let conn = Arc::new(Mutex::new(Connection::open(&path).unwrap()));
        let log = AuditLog::new(conn.clone(), None).unwrap();
        let e = log.append(new(2), 3).unwrap();
        assert_eq!(e.seq, 3);
        assert_eq!(e.prev_hash, log.list(Some(3), 1).unwrap()[0].hash);
        let r = verify_conn(&conn.lock().unwrap()).unwrap();
        assert_eq!((r.ok, r.entries), (true, 3));
    }

    #[test]
    fn hook_runs_in_the_same_transaction() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE outbox (seq INTEGER, hash TEXT)")
            .unwrap();
        let conn = Arc::new(Mutex::new(conn));
        let hook: AuditHook = Box::new(|tx, e| {
            if e.actor == "fail" {
                return Err(rusqlite::Error::InvalidQuery);
            }
            tx.execute("INSERT INTO outbox VALUES (?1, ?2)", params![e.seq, e.hash])?;
            Ok(())
        });
        let log = AuditLog::new(conn.clone(), Some(hook)).unwrap();
        let e = log.append(new(0), 1).unwrap();
        let mut bad = new(1);
        bad.actor = "fail".into();
        assert!(log.append(bad, 2).is_err());
        let c = conn.lock().unwrap();
        let rows: Vec<(i64, String)> = c
            .prepare("SELECT seq, hash FROM outbox")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(e.seq, e.hash)]);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the failed hook rolled its entry back");
    }

    #[test]
    fn encoding_is_unambiguous() {
        let mut e = AuditEntry {
            seq: 1,
            ts_ms: 2,
            actor: "ab".into(),
            action: "c".into(),
            target: String::new(),
            detail: String::new(),
            addr: String::new(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let a = entry_hash(&e);
        e.actor = "a".into();
        e.action = "bc".into();
        let b = entry_hash(&e);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
