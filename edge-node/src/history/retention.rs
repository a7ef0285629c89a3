//! Retention: what the edge keeps, by age and by size, in bounded steps.
//!
//! # Policy (docs/configuration.md, "What retention keeps")
//!
//! **By age**, every table has a limit: raw samples, KPI values, forecasts
//! and the record of dropped outbox batches are kept for `retention`;
//! closed windows (`aggregates`) for `aggregates_retention` once the hub has
//! acknowledged them.
//!
//! **By size**, when the used pages pass `max_size`, data goes in this
//! order, oldest first within each class, until the database fits:
//!
//! 1. windows the hub has acknowledged (the hub keeps them; the edge's copy
//!    is only a convenience),
//! 2. KPI values, then forecasts (also at the hub),
//! 3. raw samples older than `min_raw_span` before now.
//!
//! Raw samples within `min_raw_span` and windows the hub has not
//! acknowledged are never deleted by retention: if they alone exceed
//! `max_size`, the step reports `over_limit` (an alarm) and keeps them. The
//! outbox itself is bounded only by its own counted bound
//! (`outbox_max_size`, `when_full`), never here.
//!
//! # Bounded work
//!
//! Each delete is capped at `retention_chunk` rows per transaction, and a
//! step stops at its deadline, so a large backlog (say after a limit was
//! lowered) never holds the write lock long enough to stall ingest. Samples
//! are clustered by `(tag_id, ts_ms)`, so their deletes are per-tag range
//! deletes; the other tables have an index on their time column.
//!
//! Size is measured as *used* pages, `(page_count - freelist_count) *
//! page_size`. After deleting, `PRAGMA incremental_vacuum` hands free pages
//! back to the file system (the database is created with
//! `auto_vacuum = INCREMENTAL`), so the file itself shrinks too. Within a
//! class, the cutoff moves forward by a fraction of the class's stored time
//! span proportional to the excess (plus a margin, so retention does not
//! run on every batch).

use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use super::{HistoryError, HistoryOptions};

/// What one retention step (or a full run) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw samples deleted because they were older than `retention`...
    pub deleted_by_age: u64,
    /// ...and because the database was over `max_size`.
    pub deleted_by_size: u64,
    /// Acknowledged windows deleted (by age or size).
    pub aggregates_deleted: u64,
    /// KPI values and forecasts deleted (by age or size).
    pub kpis_deleted: u64,
    pub forecasts_deleted: u64,
    /// Used bytes after the step.
    pub size_bytes: u64,
    /// Still over `max_size` with only protected data left: raw samples
    /// within `min_raw_span` and windows the hub has not acknowledged.
    pub over_limit: bool,
    /// False if the deadline cut the step short; call again.
    pub done: bool,
}

impl RetentionReport {
    /// Rows deleted, all tables.
    pub fn total(&self) -> u64 {
        self.deleted_by_age
            + self.deleted_by_size
            + self.aggregates_deleted
            + self.kpis_deleted
            + self.forecasts_deleted
    }

    pub(crate) fn add(&mut self, other: &RetentionReport) {
        self.deleted_by_age += other.deleted_by_age;
        self.deleted_by_size += other.deleted_by_size;
        self.aggregates_deleted += other.aggregates_deleted;
        self.kpis_deleted += other.kpis_deleted;
        self.forecasts_deleted += other.forecasts_deleted;
        self.size_bytes = other.size_bytes;
        self.over_limit = other.over_limit;
        self.done = other.done;
    }
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

/// What retention deletes, in the order size pressure takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Aggregates,
    Kpis,
    Forecasts,
    Samples,
}

const SIZE_ORDER: [Class; 4] = [
    Class::Aggregates,
    Class::Kpis,
    Class::Forecasts,
    Class::Samples,
];

/// The oldest sequence number still in the outbox: windows sealed into it
/// or after it may not be acknowledged yet and are kept.
fn first_unacked(conn: &Connection) -> Result<i64, HistoryError> {
    let s: Option<i64> = conn.query_row("SELECT min(seq) FROM outbox", [], |r| r.get(0))?;
    Ok(s.unwrap_or(i64::MAX))
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
fn delete_older_samples(
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

/// Delete up to `chunk` rows of an index-ordered class older than `cutoff`.
fn delete_chunk(
    conn: &Connection,
    class: Class,
    cutoff: i64,
    unacked: i64,
    chunk: usize,
) -> Result<u64, HistoryError> {
    let n = match class {
        Class::Aggregates => conn
            .prepare_cached(
                "DELETE FROM aggregates WHERE (width_ms, tag_id, start_ms) IN (
                     SELECT width_ms, tag_id, start_ms FROM aggregates
                     WHERE start_ms < ?1 AND (seq IS NULL OR seq < ?2)
                     ORDER BY start_ms LIMIT ?3)",
            )?
            .execute(params![cutoff, unacked, chunk as i64])?,
        Class::Kpis => conn
            .prepare_cached(
                "DELETE FROM kpis WHERE (kpi, win, start_ms) IN (
                     SELECT kpi, win, start_ms FROM kpis WHERE computed_ms < ?1
                     ORDER BY computed_ms LIMIT ?2)",
            )?
            .execute(params![cutoff, chunk as i64])?,
        Class::Forecasts => conn
            .prepare_cached(
                "DELETE FROM forecasts WHERE (model, origin_ms) IN (
                     SELECT model, origin_ms FROM forecasts WHERE made_ms < ?1
                     ORDER BY made_ms LIMIT ?2)",
            )?
            .execute(params![cutoff, chunk as i64])?,
        Class::Samples => 0,
    };
    Ok(n as u64)
}

/// Delete, in chunks, every row of `class` older than `cutoff` until
/// `deadline`. Returns (deleted, finished).
fn delete_before(
    conn: &Connection,
    class: Class,
    cutoff: i64,
    unacked: i64,
    chunk: usize,
    deadline: Instant,
) -> Result<(u64, bool), HistoryError> {
    let mut deleted = 0;
    if class == Class::Samples {
        for tag in tag_ids(conn)? {
            loop {
                let tx = conn.unchecked_transaction()?;
                let (n, more) = delete_older_samples(&tx, tag, cutoff, chunk)?;
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
        return Ok((deleted, true));
    }
    loop {
        let tx = conn.unchecked_transaction()?;
        let n = delete_chunk(&tx, class, cutoff, unacked, chunk)?;
        tx.commit()?;
        deleted += n;
        if n < chunk as u64 {
            return Ok((deleted, true));
        }
        if Instant::now() >= deadline {
            return Ok((deleted, false));
        }
    }
}

/// Oldest and newest deletable timestamps of `class`.
fn time_span(
    conn: &Connection,
    class: Class,
    unacked: i64,
) -> Result<Option<(i64, i64)>, HistoryError> {
    let pair =
        |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<Option<(i64, i64)>, HistoryError> {
            let (a, b): (Option<i64>, Option<i64>) = conn
                .prepare_cached(sql)?
                .query_row(p, |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(a.zip(b))
        };
    match class {
        Class::Aggregates => pair(
            "SELECT min(start_ms), max(start_ms) FROM aggregates WHERE seq IS NULL OR seq < ?1",
            &[&unacked],
        ),
        Class::Kpis => pair("SELECT min(computed_ms), max(computed_ms) FROM kpis", &[]),
        Class::Forecasts => pair("SELECT min(made_ms), max(made_ms) FROM forecasts", &[]),
        Class::Samples => {
            // One B-tree probe per tag.
            let mut lo = i64::MAX;
            let mut hi = i64::MIN;
            let mut first = conn
                .prepare_cached("SELECT min(ts_ms), max(ts_ms) FROM samples WHERE tag_id = ?1")?;
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
    }
}

fn release_free_pages(conn: &Connection) -> Result<(), HistoryError> {
    // Returns one row per page freed; drain it.
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

fn count(report: &mut RetentionReport, class: Class, n: u64, by_size: bool) {
    match class {
        Class::Aggregates => report.aggregates_deleted += n,
        Class::Kpis => report.kpis_deleted += n,
        Class::Forecasts => report.forecasts_deleted += n,
        Class::Samples if by_size => report.deleted_by_size += n,
        Class::Samples => report.deleted_by_age += n,
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One bounded retention step at wall-clock time `now_ms`: age limits
/// first, then size.
pub(crate) fn step(
    conn: &Connection,
    opts: &HistoryOptions,
    now_ms: i64,
    deadline: Instant,
) -> Result<RetentionReport, HistoryError> {
    let mut report = RetentionReport::default();
    let unacked = first_unacked(conn)?;
    let age = ms(opts.retention_age);
    let ages = [
        (Class::Samples, age),
        (Class::Aggregates, ms(opts.aggregates_age)),
        (Class::Kpis, age),
        (Class::Forecasts, age),
    ];
    for (class, limit) in ages {
        let cutoff = now_ms.saturating_sub(limit);
        let (n, finished) =
            delete_before(conn, class, cutoff, unacked, opts.retention_chunk, deadline)?;
        count(&mut report, class, n, false);
        if !finished {
            release_free_pages(conn)?;
            report.size_bytes = used_bytes(conn)?;
            return Ok(report);
        }
    }
    conn.prepare_cached("DELETE FROM outbox_dropped WHERE dropped_ms < ?1")?
        .execute([now_ms.saturating_sub(age)])?;
    // The alarm journal is small (a row per change) and is kept by age:
    // its rows are also at the hub.
    conn.prepare_cached("DELETE FROM alarm_journal WHERE ts_ms < ?1")?
        .execute([now_ms.saturating_sub(age)])?;

    let mut used = used_bytes(conn)?;
    // Raw samples newer than this are never deleted by size.
    let protected_from = now_ms.saturating_sub(ms(opts.min_raw_span));
    for class in SIZE_ORDER {
        while used > opts.retention_bytes {
            let Some((lo, hi)) = time_span(conn, class, unacked)? else {
                break;
            };
            let hi = if class == Class::Samples {
                hi.min(protected_from)
            } else {
                hi
            };
            if hi < lo {
                break;
            }
            let excess = (used - opts.retention_bytes) as f64 / used as f64;
            let span = (hi - lo).max(1) as f64;
            let cutoff = (lo + ((excess + SIZE_MARGIN).min(1.0) * span).ceil().max(1.0) as i64)
                .min(hi.saturating_add(1));
            let (n, finished) =
                delete_before(conn, class, cutoff, unacked, opts.retention_chunk, deadline)?;
            count(&mut report, class, n, true);
            used = used_bytes(conn)?;
            if !finished || Instant::now() >= deadline {
                release_free_pages(conn)?;
                report.size_bytes = used_bytes(conn)?;
                return Ok(report);
            }
            if n == 0 {
                // Everything deletable in this class is gone.
                break;
            }
        }
    }
    report.over_limit = used > opts.retention_bytes;
    if report.total() > 0 {
        release_free_pages(conn)?;
    }
    report.size_bytes = used_bytes(conn)?;
    report.done = true;
    Ok(report)
}
