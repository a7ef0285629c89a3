//! The staging database of one import: a DuckDB file of its own beside
//! the upload, where the accepted samples are appended as they are read,
//! duplicates are found, and the windows are computed; then the fleet
//! database attaches it and copies the windows (store::imported).
//!
//! A file of its own keeps the fleet database free of half-imported rows
//! and lets DuckDB spill a large import to disk instead of holding it in
//! memory; any order of rows in the file gives the same windows.

use std::path::Path;

use duckdb::Connection;

use super::ImportError;

const SCHEMA: &str = "
CREATE TABLE samples (sid UBIGINT, row_no UBIGINT, col UINTEGER, tag UINTEGER, ts BIGINT,
                      value DOUBLE, good BOOLEAN);
CREATE TABLE tags (tag UINTEGER, name VARCHAR);
CREATE TABLE columns (col UINTEGER, name VARCHAR);
CREATE TABLE rejections (row_no UBIGINT, col VARCHAR, reason VARCHAR, value VARCHAR);
";

/// Open (create) the staging database at `path`.
pub fn open(path: &Path) -> Result<Connection, ImportError> {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path)?;
    // Bounded: a 1 GB file's samples spill to the staging file's temp
    // directory rather than grow the hub's memory.
    c.execute_batch(
        "SET memory_limit = '512MB'; SET threads = 2; SET preserve_insertion_order = false;",
    )?;
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

/// Refuse every sample of a tag and time seen before (the first row
/// wins): one rejection per later sample. Returns how many.
pub fn reject_duplicates(c: &Connection) -> Result<u64, ImportError> {
    c.execute_batch(
        "CREATE TEMP TABLE dup_keys AS
             SELECT tag, ts, min(sid) AS keep FROM samples GROUP BY tag, ts HAVING count(*) > 1;
         CREATE TEMP TABLE dups AS
             SELECT s.sid, s.row_no, s.col, s.value, k.keep
             FROM samples s JOIN dup_keys k ON s.tag = k.tag AND s.ts = k.ts
             WHERE s.sid <> k.keep;
         INSERT INTO rejections
             SELECT d.row_no, c.name,
                    'duplicate of row ' || f.row_no || ' (same tag and time)',
                    d.value::VARCHAR
             FROM dups d JOIN samples f ON f.sid = d.keep LEFT JOIN columns c ON c.col = d.col;
         DELETE FROM samples WHERE sid IN (SELECT sid FROM dups);",
    )?;
    let n: i64 = c.query_row("SELECT count(*) FROM dups", [], |r| r.get(0))?;
    c.execute_batch("DROP TABLE dups; DROP TABLE dup_keys;")?;
    Ok(n.max(0) as u64)
}

/// The windows, as the edge computes them (edge-node/src/sync/aggregate.rs):
/// epoch-aligned `[k·w, (k+1)·w)`; count and good samples; min, max, mean
/// and last of the good values; the time-weighted average where a good
/// value holds from its time until the tag's next sample or the window's
/// end, and carries into the window of the tag's next sample (from that
/// window's start); a bad sample ends the hold. A tag's last sample holds
/// to its window's end. Only windows with samples are written (the edge's
/// windows between two sparse samples, holding a value with no sample,
/// are not made up). Numbered by `wn` from 1 for the chunked copy.
const WINDOWS: &str = "
CREATE TABLE windows AS
WITH s AS (
    SELECT tag, ts, value, good, ts // ?1 * ?1 AS ws,
           lead(ts) OVER (PARTITION BY tag ORDER BY ts) AS nts
    FROM samples),
hold AS (
    SELECT tag, ws, value * (least(coalesce(nts, ws + ?1), ws + ?1) - ts) AS num,
           (least(coalesce(nts, ws + ?1), ws + ?1) - ts) AS den
    FROM s WHERE good
    UNION ALL
    SELECT tag, nts // ?1 * ?1, value * (nts - nts // ?1 * ?1), nts - nts // ?1 * ?1
    FROM s WHERE good AND nts IS NOT NULL AND nts // ?1 * ?1 > ws),
tw AS (SELECT tag, ws, sum(num) AS num, sum(den) AS den FROM hold GROUP BY tag, ws),
agg AS (
    SELECT tag, ws, count(*) AS count, count(*) FILTER (WHERE good) AS good,
           min(value) FILTER (WHERE good) AS min, max(value) FILTER (WHERE good) AS max,
           avg(value) FILTER (WHERE good) AS mean,
           arg_max(value, ts) FILTER (WHERE good) AS last
    FROM s GROUP BY tag, ws)
SELECT row_number() OVER (ORDER BY agg.ws, n.name) AS wn, n.name AS tag, agg.ws AS start_ms,
       agg.count::UINTEGER AS count, agg.good::UINTEGER AS good, agg.min, agg.max, agg.mean,
       CASE WHEN tw.den > 0 THEN tw.num / tw.den END AS twa, agg.last
FROM agg LEFT JOIN tw ON agg.tag = tw.tag AND agg.ws = tw.ws JOIN tags n ON n.tag = agg.tag";

/// What the staging database holds once the windows are made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub samples: u64,
    pub tags: u64,
    pub windows: u64,
    pub rejections: u64,
    pub rows_rejected: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

/// Make the windows of width `width_ms` and count what is there.
pub fn windows(c: &Connection, width_ms: u32) -> Result<Totals, ImportError> {
    // The width is a number, written into the text: DuckDB does not take
    // parameters in CREATE TABLE … AS.
    c.execute_batch(&WINDOWS.replace("?1", &width_ms.to_string()))?;
    let mut t = Totals::default();
    c.query_row(
        "SELECT count(*), count(DISTINCT tag), min(ts), max(ts) FROM samples",
        [],
        |r| {
            t.samples = r.get::<_, i64>(0)?.max(0) as u64;
            t.tags = r.get::<_, i64>(1)?.max(0) as u64;
            t.first_ms = r.get(2)?;
            t.last_ms = r.get(3)?;
            Ok(())
        },
    )?;
    c.query_row(
        "SELECT (SELECT count(*) FROM windows), count(*), count(DISTINCT row_no) FROM rejections",
        [],
        |r| {
            t.windows = r.get::<_, i64>(0)?.max(0) as u64;
            t.rejections = r.get::<_, i64>(1)?.max(0) as u64;
            t.rows_rejected = r.get::<_, i64>(2)?.max(0) as u64;
            Ok(())
        },
    )?;
    Ok(t)
}
