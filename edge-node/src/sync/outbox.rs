//! The durable outbox in the history database.
//!
//! Batches are written by the history writer thread
//! ([`crate::history::HistoryStore::seal_windows`], in the transaction that
//! stores their windows) and read, sent and deleted here, on a connection
//! of the sync task. A batch leaves the outbox only when the hub's signed
//! acknowledgement names it, or when the size bound drops it (counted).

use std::path::Path;
use std::time::Duration;

use firmware_config::WhenFull;
use protocol::v1::Batch;
use rusqlite::{Connection, OptionalExtension, params};

use crate::history::HistoryError;

/// The outbox's bound and what to do at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub max_batch_windows: usize,
}

impl From<&firmware_config::Sync> for OutboxPolicy {
    fn from(s: &firmware_config::Sync) -> Self {
        OutboxPolicy {
            max_bytes: s.outbox_max_bytes,
            when_full: s.when_full,
            max_batch_windows: s.max_batch_windows,
        }
    }
}

/// What one seal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SealReport {
    /// Sequence numbers of the batches queued.
    pub sealed: Vec<u64>,
    /// Batches lost to the size bound (old ones dropped, or new ones
    /// rejected), and their bytes.
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Their sequence numbers (a rejected batch takes one too).
    pub dropped_seqs: Vec<u64>,
    /// Windows found never recorded before this start, queued for the hub.
    pub lost: Vec<protocol::v1::LostSpan>,
}

/// The outbox's totals, for metrics and the hub's fleet registry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxState {
    pub batches: u64,
    pub bytes: u64,
    pub oldest_created_ms: Option<i64>,
    pub last_seq: u64,
    /// Batches the outbox's bound dropped or refused...
    pub dropped: u64,
    /// ...of which the hub acknowledged this many after all (sent just
    /// before they were dropped).
    pub dropped_delivered: u64,
}

impl OutboxState {
    /// Batches lost as far as this edge knows: dropped and never
    /// acknowledged. The hub's list of missing sequence numbers is exact;
    /// this count is higher only if an ack for a dropped batch was lost.
    pub fn lost(&self) -> u64 {
        self.dropped.saturating_sub(self.dropped_delivered)
    }
}

/// The sync task's connection to the outbox.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    /// Open the history database (created and migrated by the writer).
    pub fn open(path: &Path) -> Result<Outbox, HistoryError> {
        let conn = Connection::open(path).map_err(|source| HistoryError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(Outbox { conn })
    }

    /// The oldest `limit` unacknowledged sequence numbers, ascending.
    pub fn unacked(&self, limit: usize) -> Result<Vec<u64>, HistoryError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq FROM outbox ORDER BY seq LIMIT ?1")?;
        let rows = st.query_map([limit as i64], |r| r.get::<_, i64>(0))?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for r in rows {
            out.push(u64::try_from(r?).unwrap_or(0));
        }
        Ok(out)
    }

    /// The batch with sequence number `seq`, if still queued.
    pub fn load(&self, seq: u64) -> Result<Option<Batch>, HistoryError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT payload FROM outbox WHERE seq = ?1")?
            .query_row([seq as i64], |r| r.get(0))
            .optional()?;
        match bytes {
            None => Ok(None),
            Some(b) => postcard::from_bytes(&b)
                .map(Some)
                .map_err(|e| HistoryError::Encode(format!("outbox batch {seq}: {e}"))),
        }
    }

    /// Delete acknowledged batches; returns how many were still queued.
    pub fn delete(&mut self, seqs: &[u64]) -> Result<u64, HistoryError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut deleted = 0u64;
        let mut freed = 0i64;
        let mut late = 0i64;
        {
            let mut len = tx.prepare_cached("SELECT length(payload) FROM outbox WHERE seq = ?1")?;
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            let mut delivered_late = tx.prepare_cached(
                "UPDATE outbox_dropped SET delivered = 1 WHERE seq = ?1 AND delivered = 0",
            )?;
            for &s in seqs {
                if let Some(l) = len
                    .query_row([s as i64], |r| r.get::<_, i64>(0))
                    .optional()?
                {
                    del.execute([s as i64])?;
                    deleted += 1;
                    freed += l;
                } else {
                    late += delivered_late.execute([s as i64])? as i64;
                }
            }
        }
        tx.execute(
            "UPDATE outbox_state SET bytes = max(0, bytes - ?1),
             dropped_delivered = dropped_delivered + ?2 WHERE id = 1",
            params![freed, late],
        )?;
        tx.commit()?;
        Ok(deleted)
    }

    pub fn state(&self) -> Result<OutboxState, HistoryError> {
        let (batches, oldest): (i64, Option<i64>) =
            self.conn
                .query_row("SELECT count(*), min(created_ms) FROM outbox", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let (last_seq, bytes, dropped, delivered): (i64, i64, i64, i64) = self.conn.query_row(
            "SELECT last_seq, bytes, dropped, dropped_delivered FROM outbox_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(OutboxState {
            batches: u(batches),
            bytes: u(bytes),
            oldest_created_ms: oldest,
            last_seq: u(last_seq),
            dropped: u(dropped),
            dropped_delivered: u(delivered),
        })
    }
}
