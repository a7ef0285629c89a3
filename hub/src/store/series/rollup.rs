//! The hourly and daily rollup of `aggregates` and the tag catalog, kept
//! incrementally: each call folds the windows whose rowid is above the
//! watermark (at most `max_windows` of them) into `series_rollup` and
//! `series_catalog`, merging into buckets already there (a late window
//! lands in an old bucket), and moves the watermark, in one transaction.
//!
//! This relies on `aggregates` being append-only: its rowids then only
//! grow and a window's rowid never changes. Anything that deletes from it
//! (a retention job) must call [`Store::rebuild_rollups`] afterwards.
//!
//! Readers never depend on the rollup being current: [`Store::series`]
//! adds the windows above the watermark itself, so a rollup that lags only
//! costs time, never correctness.

use duckdb::params;

use super::super::{Store, StoreError};

/// Windows folded per call by default: about a second of work on two
/// cores, so the ingest thread that calls it is not held up long.
pub const DEFAULT_REFRESH_WINDOWS: u64 = 2_000_000;

/// What one [`Store::refresh_rollups`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Windows folded in by this call.
    pub windows: u64,
    /// Windows still above the watermark (call again while non-zero).
    pub remaining: u64,
    /// The highest rowid folded in so far (-1: none).
    pub watermark: i64,
}

const FOLD_ROLLUP: &str = "
INSERT INTO series_rollup
SELECT a.site, a.node, a.tag, a.width_ms, l.level_ms,
       a.start_ms - ((a.start_ms % l.level_ms) + l.level_ms) % l.level_ms AS start_ms,
       count(*), sum(a.count), sum(a.good), min(a.min), max(a.max),
       coalesce(sum(coalesce(a.twa, a.mean)), 0), count(coalesce(a.twa, a.mean))
FROM aggregates AS a, (SELECT unnest([3600000, 86400000]) AS level_ms) AS l
WHERE a.rowid > ?1 AND a.rowid <= ?2 AND a.width_ms < l.level_ms
GROUP BY ALL
ON CONFLICT DO UPDATE SET
    windows = windows + excluded.windows,
    count = count + excluded.count,
    good = good + excluded.good,
    min = least(min, excluded.min),
    max = greatest(max, excluded.max),
    vsum = vsum + excluded.vsum,
    vn = vn + excluded.vn";

const FOLD_CATALOG: &str = "
INSERT INTO series_catalog
SELECT site, node, tag, width_ms, min(start_ms), max(start_ms + width_ms), count(*)
FROM aggregates WHERE rowid > ?1 AND rowid <= ?2
GROUP BY ALL
ON CONFLICT DO UPDATE SET
    first_ms = least(first_ms, excluded.first_ms),
    last_ms = greatest(last_ms, excluded.last_ms),
    windows = windows + excluded.windows";

impl Store {
    /// Fold up to `max_windows` windows not yet in the rollup into it (see
    /// the module doc). Call it from the ingest thread after a commit, e.g.
    /// every minute and again while `remaining` is non-zero.
    pub fn refresh_rollups(&mut self, max_windows: u64) -> Result<RollupReport, StoreError> {
        let tx = self.conn.transaction()?;
        let wm: i64 = tx.query_row(
            "SELECT coalesce(max(rowid_done), -1) FROM series_watermark",
            [],
            |r| r.get(0),
        )?;
        // Rowids are dense from 0 in an append-only table, so the count
        // (kept in the table's metadata) bounds them without a scan.
        let total: i64 =
            tx.query_row("SELECT count(*)::BIGINT FROM aggregates", [], |r| r.get(0))?;
        let last = total - 1;
        let hi = wm
            .saturating_add(i64::try_from(max_windows).unwrap_or(i64::MAX))
            .min(last);
        let mut report = RollupReport {
            windows: 0,
            remaining: (last - wm).max(0) as u64,
            watermark: wm,
        };
        if hi <= wm {
            return Ok(report);
        }
        tx.execute(FOLD_ROLLUP, params![wm, hi])?;
        tx.execute(FOLD_CATALOG, params![wm, hi])?;
        tx.execute(
            "INSERT INTO series_watermark VALUES (0, ?1)
             ON CONFLICT DO UPDATE SET rowid_done = excluded.rowid_done",
            params![hi],
        )?;
        tx.commit()?;
        report.windows = (hi - wm) as u64;
        report.remaining = (last - hi).max(0) as u64;
        report.watermark = hi;
        Ok(report)
    }

    /// Forget the rollup and the catalog; the next [`Store::refresh_rollups`]
    /// calls fold every window again.
    pub fn rebuild_rollups(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "BEGIN; DELETE FROM series_rollup; DELETE FROM series_catalog;
             DELETE FROM series_watermark; COMMIT;",
        )?;
        Ok(())
    }
}
