//! The synchronous write side: one connection, batched inserts, retention.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use drivers::{Sample, TagName};
use protocol::v1::{Batch, Body, LostSpan, WindowSet};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub use crate::sync::outbox::{OutboxPolicy, SealReport};
use firmware_config::WhenFull;

use super::retention::{self, RetentionReport};
use super::{HistoryError, HistoryOptions, codec, schema};

const INSERT_SAMPLE: &str =
    "INSERT INTO inbox (tag_id, ts_ms, value, value_text, kind, quality, reason)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// Key order makes each tag's leaf page dirty once per merge; `rowid`
/// breaks ties so a re-sent sample replaces the earlier one (last wins).
const MERGE: &str =
    "INSERT OR REPLACE INTO samples (tag_id, ts_ms, value, value_text, kind, quality, reason)
     SELECT tag_id, ts_ms, value, value_text, kind, quality, reason FROM inbox
     WHERE rowid <= ?1 ORDER BY tag_id, ts_ms, rowid";
const INSERT_TAG: &str = "INSERT OR IGNORE INTO tags (name) VALUES (?1)";
const SELECT_TAG: &str = "SELECT id FROM tags WHERE name = ?1";

/// The history database opened for writing. Not thread-safe by design: the
/// [`super::HistoryWriter`] thread owns it; tests and tools may use it
/// directly.
#[derive(Debug)]
pub struct HistoryStore {
    conn: Connection,
    opts: HistoryOptions,
    /// Tag name → id, so a batch costs one insert per sample.
    tag_ids: HashMap<TagName, i64>,
    /// Samples in the inbox (not yet merged).
    inbox_rows: u64,
    /// Whether the previous writer closed the database cleanly.
    clean_start: bool,
    /// Window widths already checked for windows lost before this start.
    lost_checked: HashSet<u32>,
    /// Size limit while the disk is full (below `opts.retention_bytes`).
    limit_override: Option<u64>,
}

impl HistoryStore {
    /// Open or create the database at `opts.path`, migrating its schema.
    pub fn open(opts: &HistoryOptions) -> Result<Self, HistoryError> {
        let conn = schema::open_writer(&opts.path, opts.durability)?;
        let inbox_rows: i64 = conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))?;
        let clean: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'clean_exit'", [], |r| {
                r.get(0)
            })
            .optional()?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_exit', 0)",
            [],
        )?;
        Ok(Self {
            conn,
            opts: opts.clone(),
            tag_ids: HashMap::new(),
            inbox_rows: u64::try_from(inbox_rows).unwrap_or(0),
            // A database without the mark is new: nothing was lost before it.
            clean_start: clean.is_none_or(|v| v == 1),
            lost_checked: HashSet::new(),
            limit_override: None,
        })
    }

    /// Samples committed but not yet merged into the main table.
    pub fn inbox_rows(&self) -> u64 {
        self.inbox_rows
    }

    /// Move the inbox into the main table, in key order, in one transaction.
    /// Returns the number of samples moved.
    pub fn merge(&mut self) -> Result<u64, HistoryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let max: Option<i64> = tx.query_row("SELECT max(rowid) FROM inbox", [], |r| r.get(0))?;
        let Some(max) = max else {
            self.inbox_rows = 0;
            return Ok(0);
        };
        let moved = tx.prepare_cached(MERGE)?.execute([max])?;
        tx.prepare_cached("DELETE FROM inbox WHERE rowid <= ?1")?
            .execute([max])?;
        tx.commit()?;
        self.inbox_rows = 0;
        Ok(moved as u64)
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.opts
    }

    /// Insert `samples` in one transaction. Either all are stored or, on
    /// error, none (the caller keeps them and retries).
    pub fn insert(&mut self, samples: &[Sample]) -> Result<(), HistoryError> {
        if samples.is_empty() {
            return Ok(());
        }
        let result = self.insert_tx(samples);
        if result.is_err() {
            // Ids of tags created in the rolled-back transaction are gone.
            self.tag_ids.clear();
        }
        result
    }

    fn insert_tx(&mut self, samples: &[Sample]) -> Result<(), HistoryError> {
        // IMMEDIATE takes the write lock up front, so a busy database fails
        // at BEGIN (after busy_timeout) rather than midway.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_SAMPLE)?;
            for s in samples {
                let tag_id = match self.tag_ids.get(&s.tag) {
                    Some(id) => *id,
                    None => {
                        tx.prepare_cached(INSERT_TAG)?.execute([&*s.tag])?;
                        let id: i64 = tx
                            .prepare_cached(SELECT_TAG)?
                            .query_row([&*s.tag], |r| r.get(0))?;
                        self.tag_ids.insert(s.tag.clone(), id);
                        id
                    }
                };
                let v = codec::encode_value(s.value.as_ref());
                insert.execute(params![
                    tag_id,
                    s.ts.as_millis(),
                    v.value,
                    v.text,
                    v.kind,
                    s.quality.code(),
                    codec::encode_reason(&s.quality),
                ])?;
            }
        }
        tx.commit()?;
        self.inbox_rows += samples.len() as u64;
        Ok(())
    }

    /// Store closed windows in `aggregates` and seal them into outbox
    /// batches (at most `policy.max_batch_windows` windows each), in one
    /// transaction: a window is in the outbox if and only if it is stored.
    /// The outbox's size bound is enforced here (see [`OutboxPolicy`]).
    pub fn seal_windows(
        &mut self,
        sets: &[WindowSet],
        policy: &OutboxPolicy,
        now_ms: i64,
    ) -> Result<SealReport, HistoryError> {
        let r = self.seal_tx(sets, policy, now_ms);
        if r.is_err() {
            self.tag_ids.clear();
        }
        r
    }

    fn seal_tx(
        &mut self,
        sets: &[WindowSet],
        policy: &OutboxPolicy,
        now_ms: i64,
    ) -> Result<SealReport, HistoryError> {
        let mut report = SealReport::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut last_seq, mut bytes) = start_queue(&tx)?;
        let lost = lost_before(&tx, sets, &self.lost_checked, self.clean_start)?;
        if !lost.is_empty() {
            for l in &lost {
                tracing::warn!(
                    width_ms = l.width_ms,
                    from_ms = l.from_ms,
                    to_ms = l.to_ms,
                    reason = %l.reason,
                    "windows never recorded; reported to the hub"
                );
            }
            report.lost = lost.clone();
            queue(
                &tx,
                &Body::Lost(lost),
                policy,
                now_ms,
                &mut last_seq,
                &mut bytes,
                &mut report,
            )?;
        }
        for set in sets {
            tx.prepare_cached(
                "INSERT INTO window_marks (width_ms, sealed_until_ms) VALUES (?1, ?2)
                 ON CONFLICT (width_ms) DO UPDATE
                 SET sealed_until_ms = max(sealed_until_ms, excluded.sealed_until_ms)",
            )?
            .execute(params![
                set.width_ms,
                set.start_ms + i64::from(set.width_ms)
            ])?;
        }
        for chunk in split(sets, policy.max_batch_windows.max(1)) {
            let body = Body::Aggregates(chunk);
            let stored_seq = queue(
                &tx,
                &body,
                policy,
                now_ms,
                &mut last_seq,
                &mut bytes,
                &mut report,
            )?;
            let Body::Aggregates(sets) = &body else {
                continue;
            };
            for set in sets {
                for w in &set.windows {
                    let tag_id = tag_id_in(&mut self.tag_ids, &tx, &w.tag)?;
                    let f = |v: f64| (!v.is_nan()).then_some(v);
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO aggregates
                         (width_ms, tag_id, start_ms, count, good, min, max, mean, twa, last, seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?
                    .execute(params![
                        set.width_ms,
                        tag_id,
                        set.start_ms,
                        w.count,
                        w.good,
                        f(w.min),
                        f(w.max),
                        f(w.mean),
                        f(w.twa),
                        f(w.last),
                        stored_seq
                    ])?;
                }
            }
        }
        finish_queue(&tx, last_seq, bytes, &report)?;
        tx.commit()?;
        self.lost_checked.extend(sets.iter().map(|s| s.width_ms));
        Ok(report)
    }

    /// One bounded retention step at wall-clock time `now_ms`: deletes by age,
    /// then by size, stopping after about `budget`. Check
    /// [`RetentionReport::done`] and call again if it is false.
    pub fn retention_step(
        &mut self,
        now_ms: i64,
        budget: Duration,
    ) -> Result<RetentionReport, HistoryError> {
        let deadline = Instant::now() + budget;
        // Retention works on the main table: bring the inbox in first. On a
        // full disk the merge may fail; the inbox holds only the newest
        // samples, so retention goes on without it.
        if self.inbox_rows > 0
            && let Err(e) = self.merge()
        {
            if self.limit_override.is_none() {
                return Err(e);
            }
            tracing::debug!(error = %e, "inbox merge failed on a full disk; retention goes on");
        }
        match self.limit_override {
            Some(limit) if limit < self.opts.retention_bytes => {
                let mut opts = self.opts.clone();
                opts.retention_bytes = limit;
                retention::step(&self.conn, &opts, now_ms, deadline)
            }
            _ => retention::step(&self.conn, &self.opts, now_ms, deadline),
        }
    }

    /// Hold the database below `limit` instead of `max_size` (while the disk
    /// is full), or go back to `max_size` with `None`.
    pub fn set_size_limit_override(&mut self, limit: Option<u64>) {
        self.limit_override = limit;
    }

    /// Run retention to completion (tools and tests; the writer uses
    /// [`Self::retention_step`]).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, HistoryError> {
        let mut total = RetentionReport::default();
        loop {
            let r = self.retention_step(now_ms, Duration::from_secs(3600))?;
            total.add(&r);
            if r.done {
                return Ok(total);
            }
        }
    }

    /// Bytes in use, as size retention counts them: pages holding data,
    /// excluding free pages kept for reuse (e.g. by the inbox after a merge).
    pub fn size_bytes(&self) -> Result<u64, HistoryError> {
        retention::used_bytes(&self.conn)
    }

    /// Size of the main database file as SQLite sees it (`page_count * page_size`).
    pub fn file_bytes(&self) -> Result<u64, HistoryError> {
        schema::db_size_bytes(&self.conn)
    }

    /// Close the connection, reporting errors instead of ignoring them in
    /// `Drop`. Closing the last connection checkpoints and removes the WAL.
    pub fn close(mut self) -> Result<(), HistoryError> {
        if self.inbox_rows > 0 {
            self.merge()?;
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_exit', 1)",
            [],
        )?;
        self.conn.close().map_err(|(_, e)| HistoryError::Sqlite(e))
    }
}

/// Windows of each width in `sets` not yet checked since this start that
/// were never sealed: from where that width was sealed up to (before) the
/// first window now sealed.
fn lost_before(
    tx: &rusqlite::Transaction<'_>,
    sets: &[WindowSet],
    checked: &HashSet<u32>,
    clean_start: bool,
) -> Result<Vec<LostSpan>, HistoryError> {
    let mut first: HashMap<u32, i64> = HashMap::new();
    for s in sets.iter().filter(|s| !checked.contains(&s.width_ms)) {
        let f = first.entry(s.width_ms).or_insert(s.start_ms);
        *f = (*f).min(s.start_ms);
    }
    let mut out = Vec::new();
    let mut mark =
        tx.prepare_cached("SELECT sealed_until_ms FROM window_marks WHERE width_ms = ?1")?;
    let mut widths: Vec<_> = first.into_iter().collect();
    widths.sort_unstable();
    for (width, start) in widths {
        let sealed: Option<i64> = mark.query_row([width], |r| r.get(0)).optional()?;
        if let Some(until) = sealed.filter(|u| *u < start) {
            out.push(LostSpan {
                width_ms: width,
                from_ms: until,
                to_ms: start,
                reason: if clean_start {
                    "the edge was stopped".into()
                } else {
                    "the edge stopped without a clean shutdown (killed, crashed or lost power); windows it held in memory are lost".into()
                },
            });
        }
    }
    Ok(out)
}

/// Split window sets into chunks of at most `max` windows, keeping each
/// window with its set's width and start.
fn split(sets: &[WindowSet], max: usize) -> Vec<Vec<WindowSet>> {
    let mut out: Vec<Vec<WindowSet>> = Vec::new();
    let mut current: Vec<WindowSet> = Vec::new();
    let mut n = 0;
    for set in sets {
        for chunk in set.windows.chunks(max) {
            if n + chunk.len() > max && n > 0 {
                out.push(std::mem::take(&mut current));
                n = 0;
            }
            match current.last_mut() {
                Some(last) if last.width_ms == set.width_ms && last.start_ms == set.start_ms => {
                    last.windows.extend_from_slice(chunk)
                }
                _ => current.push(WindowSet {
                    width_ms: set.width_ms,
                    start_ms: set.start_ms,
                    windows: chunk.to_vec(),
                }),
            }
            n += chunk.len();
        }
    }
    if n > 0 {
        out.push(current);
    }
    out
}

fn tag_id_in(
    ids: &mut HashMap<TagName, i64>,
    tx: &rusqlite::Transaction<'_>,
    tag: &str,
) -> Result<i64, HistoryError> {
    if let Some(id) = ids.get(tag) {
        return Ok(*id);
    }
    tx.prepare_cached(INSERT_TAG)?.execute([tag])?;
    let id: i64 = tx
        .prepare_cached(SELECT_TAG)?
        .query_row([tag], |r| r.get(0))?;
    ids.insert(TagName::from(tag), id);
    Ok(id)
}

/// Queue `body` as the next batch under the size bound: returns its seq, or
/// `None` when it was refused (`reject_new`, or larger than the bound).
/// Part of the caller's transaction; [`finish_queue`] records the state.
pub(crate) fn queue(
    tx: &rusqlite::Transaction<'_>,
    body: &Body,
    policy: &OutboxPolicy,
    now_ms: i64,
    last_seq: &mut i64,
    bytes: &mut i64,
    report: &mut SealReport,
) -> Result<Option<i64>, HistoryError> {
    let seq = u64::try_from(*last_seq).unwrap_or(0) + 1;
    let batch = Batch {
        seq,
        created_ms: now_ms,
        body: body.clone(),
    };
    let payload = postcard::to_allocvec(&batch).map_err(|e| HistoryError::Encode(e.to_string()))?;
    let size = payload.len() as i64;
    // Make room, or refuse, before queueing.
    while *bytes + size > i64::try_from(policy.max_bytes).unwrap_or(i64::MAX) {
        match policy.when_full {
            WhenFull::RejectNew => {
                // The refused batch still takes its sequence number, so the
                // hub sees the hole where it would have been.
                record_dropped(tx, seq, now_ms, size)?;
                *last_seq = seq as i64;
                report.dropped += 1;
                report.dropped_bytes += size as u64;
                report.dropped_seqs.push(seq);
                return Ok(None);
            }
            WhenFull::DropOldest => {
                let oldest: Option<(i64, i64)> = tx
                    .query_row(
                        "SELECT seq, length(payload) FROM outbox ORDER BY seq LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((old, len)) = oldest else {
                    // One batch larger than the whole bound.
                    record_dropped(tx, seq, now_ms, size)?;
                    *last_seq = seq as i64;
                    report.dropped += 1;
                    report.dropped_bytes += size as u64;
                    report.dropped_seqs.push(seq);
                    return Ok(None);
                };
                tx.execute("DELETE FROM outbox WHERE seq = ?1", [old])?;
                record_dropped(tx, u64::try_from(old).unwrap_or(0), now_ms, len)?;
                *bytes -= len;
                report.dropped += 1;
                report.dropped_bytes += len as u64;
                report.dropped_seqs.push(u64::try_from(old).unwrap_or(0));
            }
        }
    }
    tx.prepare_cached("INSERT INTO outbox (seq, created_ms, payload) VALUES (?1, ?2, ?3)")?
        .execute(params![seq as i64, now_ms, payload])?;
    *last_seq = seq as i64;
    *bytes += size;
    report.sealed.push(seq);
    Ok(Some(seq as i64))
}

/// Remember a batch the outbox's bound cost: an ack that names it later
/// (it was delivered just before being dropped) takes it off the losses.
fn record_dropped(
    tx: &rusqlite::Transaction<'_>,
    seq: u64,
    now_ms: i64,
    bytes: i64,
) -> Result<(), HistoryError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO outbox_dropped (seq, dropped_ms, bytes) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![seq as i64, now_ms, bytes])?;
    Ok(())
}

/// Queue one `body` as a batch inside the caller's transaction: the
/// start/queue/finish sequence for producers that seal one batch at a time
/// (forecasts, KPI values).
pub(crate) fn queue_one(
    tx: &rusqlite::Transaction<'_>,
    body: &Body,
    policy: &OutboxPolicy,
    now_ms: i64,
) -> Result<SealReport, HistoryError> {
    let mut report = SealReport::default();
    let (mut last_seq, mut bytes) = start_queue(tx)?;
    queue(
        tx,
        body,
        policy,
        now_ms,
        &mut last_seq,
        &mut bytes,
        &mut report,
    )?;
    finish_queue(tx, last_seq, bytes, &report)?;
    Ok(report)
}

/// Read the outbox state for [`queue`] (inside the caller's transaction).
pub(crate) fn start_queue(tx: &rusqlite::Transaction<'_>) -> Result<(i64, i64), HistoryError> {
    Ok(tx.query_row(
        "SELECT last_seq, bytes FROM outbox_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Record what [`queue`] did (inside the caller's transaction).
pub(crate) fn finish_queue(
    tx: &rusqlite::Transaction<'_>,
    last_seq: i64,
    bytes: i64,
    report: &SealReport,
) -> Result<(), HistoryError> {
    tx.execute(
        "UPDATE outbox_state SET last_seq = ?1, bytes = ?2,
         dropped = dropped + ?3, dropped_bytes = dropped_bytes + ?4 WHERE id = 1",
        params![
            last_seq,
            bytes,
            report.dropped as i64,
            report.dropped_bytes as i64
        ],
    )?;
    Ok(())
}
