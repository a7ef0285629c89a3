//! Retention by age and by size, in bounded steps.
//!
//! Samples are clustered by `(tag_id, ts_ms)`, so "delete everything older
//! than T" is one short range delete per tag. Each delete is capped at
//! `retention_chunk` rows per transaction, and a step stops at its deadline,
//! so a large backlog (say after the age limit was lowered) never holds the
//! write lock long enough to stall ingest.
//!
//! Size is measured as *used* pages, `(page_count - freelist_count) *
//! page_size`. After deleting, `PRAGMA incremental_vacuum` hands free pages
//! back to the file system (the database is created with
//! `auto_vacuum = INCREMENTAL`), so the file itself shrinks too. When over
//! the limit, the oldest time slice across all tags goes first: the cutoff is
//! moved forward by a fraction of the stored time span proportional to the
//! excess (plus a margin, so retention does not run on every batch).

use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use super::{HistoryError, HistoryOptions};

/// What one retention step (or a full run) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
    /// Used bytes after the step.
    pub size_bytes: u64,
    /// False if the deadline cut the step short; call again.
    pub done: bool,
}

/// Extra fraction removed when over the size limit, so the next batches do
/// not immediately trigger another round.
const SIZE_MARGIN: f64 = 0.05;

pub(crate) fn used_bytes(conn: &Connection) -> Result<u64, HistoryError> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(u64::try_from((pages - free).max(0).saturating_mul(size)).unwrap_or(0))
}

fn tag_ids(conn: &Connection) -> Result<Vec<i64>, HistoryError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM tags ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Delete up to `chunk` samples of `tag` older than `cutoff`; returns
/// (rows deleted, whether older rows remain).
fn delete_older(
    conn: &Connection,
    tag: i64,
    cutoff: i64,
    chunk: usize,
) -> Result<(u64, bool), HistoryError> {
    // The chunk's upper bound: the timestamp `chunk` rows in, if that many exist.
    let bound: Option<i64> = conn
        .prepare_cached("SELECT ts_ms FROM samples WHERE tag_id = ?1 AND ts_ms < ?2 ORDER BY ts_ms LIMIT 1 OFFSET ?3")?
        .query_row(params![tag, cutoff, chunk as i64], |r| r.get(0))
        .optional()?;
    let limit = bound.unwrap_or(cutoff);
    let n = conn
        .prepare_cached("DELETE FROM samples WHERE tag_id = ?1 AND ts_ms < ?2")?
        .execute(params![tag, limit])?;
    Ok((n as u64, bound.is_some()))
}

/// Delete, in chunks, every sample older than `cutoff` until `deadline`.
/// Returns (deleted, finished).
fn delete_before(
    conn: &Connection,
    cutoff: i64,
    chunk: usize,
    deadline: Instant,
) -> Result<(u64, bool), HistoryError> {
    let mut deleted = 0;
    for tag in tag_ids(conn)? {
        loop {
            let tx = conn.unchecked_transaction()?;
            let (n, more) = delete_older(&tx, tag, cutoff, chunk)?;
            tx.commit()?;
            deleted += n;
            if Instant::now() >= deadline {
                return Ok((deleted, false));
            }
            if !more {
                break;
            }
        }
    }
    Ok((deleted, true))
}

/// Oldest and newest stored timestamps (one B-tree probe per tag).
fn time_span(conn: &Connection) -> Result<Option<(i64, i64)>, HistoryError> {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    let mut first =
        conn.prepare_cached("SELECT min(ts_ms), max(ts_ms) FROM samples WHERE tag_id = ?1")?;
    for tag in tag_ids(conn)? {
        let (a, b): (Option<i64>, Option<i64>) =
            first.query_row([tag], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if let (Some(a), Some(b)) = (a, b) {
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

fn release_free_pages(conn: &Connection) -> Result<(), HistoryError> {
    // Returns one row per page freed; drain it.
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// One bounded retention step: age first, then size.
pub(crate) fn step(
    conn: &Connection,
    opts: &HistoryOptions,
    now_ms: i64,
    deadline: Instant,
) -> Result<RetentionReport, HistoryError> {
    let mut report = RetentionReport::default();
    let age_ms = i64::try_from(opts.retention_age.as_millis()).unwrap_or(i64::MAX);
    let (n, finished) = delete_before(
        conn,
        now_ms.saturating_sub(age_ms),
        opts.retention_chunk,
        deadline,
    )?;
    report.deleted_by_age = n;
    if !finished {
        report.size_bytes = used_bytes(conn)?;
        return Ok(report);
    }
    let mut used = used_bytes(conn)?;
    while used > opts.retention_bytes {
        let Some((lo, hi)) = time_span(conn)? else {
            break;
        };
        let excess = (used - opts.retention_bytes) as f64 / used as f64;
        let span = (hi - lo).max(1) as f64;
        let cutoff = lo + ((excess + SIZE_MARGIN).min(1.0) * span).ceil().max(1.0) as i64;
        let (n, finished) = delete_before(conn, cutoff, opts.retention_chunk, deadline)?;
        report.deleted_by_size += n;
        used = used_bytes(conn)?;
        if !finished || Instant::now() >= deadline {
            release_free_pages(conn)?;
            report.size_bytes = used;
            return Ok(report);
        }
        if n == 0 {
            // Nothing older than the cutoff yet over the limit: the newest
            // slice alone is too big. Keep it rather than delete live data.
            tracing::warn!(
                used,
                limit = opts.retention_bytes,
                "history is over its size limit with only recent data left"
            );
            break;
        }
    }
    if report.deleted_by_age + report.deleted_by_size > 0 {
        release_free_pages(conn)?;
    }
    report.size_bytes = used;
    report.done = true;
    Ok(report)
}
