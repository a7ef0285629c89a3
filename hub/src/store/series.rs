//! Tag series for the analysis API (docs/hub-api.md, "analysis"): which
//! tags exist, any tag over any range downsampled to one row per pixel
//! bucket, and statistics over a range. KPI values are in [`kpi`].
//!
//! Downsampling runs in DuckDB. Per series the query reads the coarsest
//! stored window width not wider than the bucket (edges send several, e.g.
//! 10 s and 1 min), and once a bucket spans an hour or a day, the hourly
//! or daily rollup (`series_rollup`, [`rollup`]) plus the windows the
//! rollup has not folded in yet. A one-year chart then reads ~9,000 rollup
//! rows instead of scanning every stored window.
//!
//! Buckets are whole multiples of the source unit (the window width or the
//! rollup level) on a grid from 1970, and an answer covers every bucket
//! that overlaps the range, each with all its windows. So both paths give
//! the same numbers, a window never straddles two buckets, and panning a
//! chart does not move bucket edges.

use duckdb::{OptionalExt, params};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};

pub mod kpi;
pub mod means;
pub mod rollup;
#[cfg(test)]
mod tests;

/// Most series in one request.
pub const MAX_SERIES: usize = 8;
/// Bucket counts a chart may ask for.
pub const MIN_POINTS: u32 = 10;
pub const MAX_POINTS: u32 = 5000;
/// Rollup levels, finest first: each holds the windows of every width
/// narrower than itself, folded into buckets of this length.
pub const ROLLUP_LEVELS_MS: [i64; 2] = [3_600_000, 86_400_000];
/// Statistics read the finest width with at most this many windows in the
/// range (else the coarsest).
pub const STATS_MAX_WINDOWS: i64 = 100_000;

/// The tables this module keeps beside `aggregates` (created with the store).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series_rollup (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    tag      VARCHAR NOT NULL,
    width_ms INTEGER NOT NULL,
    level_ms INTEGER NOT NULL,
    start_ms BIGINT NOT NULL,
    windows  UBIGINT NOT NULL,
    count    UBIGINT NOT NULL,
    good     UBIGINT NOT NULL,
    min      DOUBLE,
    max      DOUBLE,
    vsum     DOUBLE NOT NULL,
    vn       UBIGINT NOT NULL,
    PRIMARY KEY (site, node, tag, width_ms, level_ms, start_ms)
);
CREATE TABLE IF NOT EXISTS series_catalog (
    site     VARCHAR NOT NULL,
    node     VARCHAR NOT NULL,
    tag      VARCHAR NOT NULL,
    width_ms INTEGER NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms  BIGINT NOT NULL,
    windows  UBIGINT NOT NULL,
    PRIMARY KEY (site, node, tag, width_ms)
);
-- The highest aggregates rowid folded into the two tables above.
CREATE TABLE IF NOT EXISTS series_watermark (
    id         INTEGER PRIMARY KEY,
    rowid_done BIGINT NOT NULL
);
";

/// One tag of one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub site: String,
    pub node: String,
    pub tag: String,
}

impl SeriesKey {
    pub fn new(site: &str, node: &str, tag: &str) -> SeriesKey {
        SeriesKey {
            site: site.into(),
            node: node.into(),
            tag: tag.into(),
        }
    }
}

/// A tag as stored: its window widths and the span they cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TagInfo {
    pub site: String,
    pub node: String,
    pub tag: String,
    /// Window widths stored for it, finest first.
    pub widths_ms: Vec<u32>,
    /// Start of its oldest window.
    pub first_ms: i64,
    /// End of its newest window.
    pub last_ms: i64,
    /// Windows stored, every width counted.
    pub windows: u64,
}

/// One series downsampled: parallel arrays, one entry per bucket that has
/// windows (an empty bucket is absent, so a chart shows a gap).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Series {
    pub site: String,
    pub node: String,
    pub tag: String,
    /// Width of the windows the buckets come from; null when the tag has
    /// no windows at all.
    pub source_width_ms: Option<u32>,
    /// This series' bucket: the one asked for, rounded up to a whole
    /// number of source windows or rollup buckets.
    pub bucket_ms: i64,
    /// The rollup level read (3600000 or 86400000), null for windows.
    pub rollup_ms: Option<i64>,
    /// Bucket starts, ms since 1970, ascending.
    pub t: Vec<i64>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
    /// Time-weighted mean (each window's `twa`, else its `mean`, windows
    /// weighted by their width).
    pub mean: Vec<Option<f64>>,
    /// Good samples over all samples.
    pub good_share: Vec<Option<f64>>,
}

/// Statistics of one tag over a range, from the windows of one width.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TagStats {
    pub site: String,
    pub node: String,
    pub tag: String,
    /// The width read: the finest with at most 100,000 windows in the range.
    pub source_width_ms: Option<u32>,
    /// Windows read.
    pub windows: u64,
    /// Samples in them.
    pub count: u64,
    /// Exact: the smallest and largest sample.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Time-weighted mean over the windows.
    pub mean: Option<f64>,
    /// Approximate: the spread and quantiles of the window means (a
    /// window's inner spread is not stored, so `stddev` is at most the
    /// samples' and the quantiles are those of the smoothed signal).
    pub stddev: Option<f64>,
    pub p05: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub good_share: Option<f64>,
    /// Start of the first and end of the last window read.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

/// What a series query reads: the window width, the rollup level if any,
/// and the bucket (a multiple of the unit read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub width_ms: u32,
    pub rollup_ms: Option<i64>,
    pub bucket_ms: i64,
}

/// Choose the source of buckets of at least `min_bucket_ms` among the
/// stored `widths`: the coarsest width not wider than the bucket (the
/// finest if all are wider), then the widest rollup level that fits in the
/// bucket and is wider than that width.
pub fn plan(widths: &[u32], min_bucket_ms: i64) -> Option<Plan> {
    let min_bucket_ms = min_bucket_ms.max(1);
    let fits = widths
        .iter()
        .copied()
        .filter(|w| i64::from(*w) <= min_bucket_ms && *w > 0)
        .max();
    let width = fits.or_else(|| widths.iter().copied().filter(|w| *w > 0).min())?;
    let rollup = ROLLUP_LEVELS_MS
        .iter()
        .copied()
        .filter(|l| *l <= min_bucket_ms && *l > i64::from(width))
        .max();
    let unit = rollup.unwrap_or(i64::from(width));
    let bucket_ms = ceil_div(min_bucket_ms, unit).saturating_mul(unit);
    Some(Plan {
        width_ms: width,
        rollup_ms: rollup,
        bucket_ms,
    })
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
pub fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

/// The bucket grid covering `[from, to)`: first bucket start and the end
/// of the last bucket.
pub fn grid(from_ms: i64, to_ms: i64, bucket_ms: i64) -> (i64, i64) {
    let lo = from_ms.div_euclid(bucket_ms) * bucket_ms;
    let hi = to_ms.div_euclid(bucket_ms) * bucket_ms;
    let hi = if hi < to_ms { hi + bucket_ms } else { hi };
    (lo, hi)
}

/// Non-finite numbers become null (JSON has no NaN).
pub(crate) fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// One bucket as DuckDB returns it, before the mean and share are formed.
struct Bucket {
    t: i64,
    min: Option<f64>,
    max: Option<f64>,
    vsum: Option<f64>,
    vn: i64,
    count: i64,
    good: i64,
}

/// Buckets from raw windows of one width.
const RAW_SQL: &str = "
SELECT (start_ms - ?1) // ?2 * ?2 + ?1 AS t, min(min), max(max),
       sum(coalesce(twa, mean)), count(coalesce(twa, mean))::BIGINT,
       sum(count)::BIGINT, sum(good)::BIGINT
FROM aggregates
WHERE site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6
  AND start_ms >= ?1 AND start_ms < ?7
GROUP BY t ORDER BY t";

/// Buckets from a rollup level plus the windows it has not folded in yet
/// (rowid above the watermark ?9).
const ROLLUP_SQL: &str = "
WITH r AS (
    SELECT start_ms, min, max, vsum, vn::BIGINT AS vn, count::BIGINT AS count,
           good::BIGINT AS good
    FROM series_rollup
    WHERE site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6 AND level_ms = ?8
      AND start_ms >= ?1 AND start_ms < ?7
    UNION ALL
    SELECT start_ms, min, max, coalesce(twa, mean),
           (coalesce(twa, mean) IS NOT NULL)::BIGINT, count::BIGINT, good::BIGINT
    FROM aggregates
    WHERE rowid > ?9 AND site = ?3 AND node = ?4 AND tag = ?5 AND width_ms = ?6
      AND start_ms >= ?1 AND start_ms < ?7
)
SELECT (start_ms - ?1) // ?2 * ?2 + ?1 AS t, min(min), max(max), sum(vsum),
       sum(vn)::BIGINT, sum(count)::BIGINT, sum(good)::BIGINT
FROM r GROUP BY t ORDER BY t";

/// The benchmark's baseline: what one writes without knowing the store,
/// a GROUP BY over every raw window of the tag in the range.
pub const NAIVE_SQL: &str = "
SELECT start_ms // ?1 * ?1 AS t, min(min), max(max),
       avg(coalesce(twa, mean)), sum(good) / nullif(sum(count), 0)
FROM aggregates
WHERE site = ?2 AND node = ?3 AND tag = ?4 AND start_ms >= ?5 AND start_ms < ?6
GROUP BY t ORDER BY t";

impl Store {
    /// The highest `aggregates` rowid folded into the rollup (-1: none).
    pub(super) fn rollup_watermark(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT rowid_done FROM series_watermark WHERE id = 0")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(-1))
    }

    /// Every stored tag, optionally of one site and node, by site, node, tag.
    pub fn tags(&self, site: Option<&str>, node: Option<&str>) -> Result<Vec<TagInfo>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let wm = self.rollup_watermark()?;
        let mut st = tx.prepare_cached(
            "WITH w AS (
                 SELECT site, node, tag, width_ms, first_ms, last_ms, windows
                 FROM series_catalog
                 WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR node = ?2)
                 UNION ALL
                 SELECT site, node, tag, width_ms, min(start_ms), max(start_ms + width_ms),
                        count(*)
                 FROM aggregates
                 WHERE rowid > ?3 AND (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR node = ?2)
                 GROUP BY ALL),
             t AS (SELECT site, node, tag, width_ms, min(first_ms) AS first_ms,
                          max(last_ms) AS last_ms, sum(windows)::BIGINT AS windows
                   FROM w GROUP BY ALL)
             SELECT site, node, tag, list(width_ms ORDER BY width_ms)::VARCHAR,
                    min(first_ms), max(last_ms), sum(windows)::BIGINT
             FROM t GROUP BY ALL ORDER BY site, node, tag",
        )?;
        let rows = st.query_map(params![site, node, wm], |r| {
            let widths: String = r.get(3)?;
            Ok(TagInfo {
                site: r.get(0)?,
                node: r.get(1)?,
                tag: r.get(2)?,
                widths_ms: parse_list(&widths),
                first_ms: r.get(4)?,
                last_ms: r.get(5)?,
                windows: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The window widths stored for one tag, finest first.
    fn widths(&self, k: &SeriesKey, wm: i64) -> Result<Vec<u32>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT width_ms FROM series_catalog WHERE site = ?1 AND node = ?2 AND tag = ?3
             UNION
             SELECT DISTINCT width_ms FROM aggregates
             WHERE rowid > ?4 AND site = ?1 AND node = ?2 AND tag = ?3
             ORDER BY 1",
        )?;
        let rows = st.query_map(params![k.site, k.node, k.tag, wm], |r| r.get::<_, i32>(0))?;
        Ok(rows
            .collect::<Result<Vec<i32>, _>>()?
            .into_iter()
            .filter_map(|w| u32::try_from(w).ok())
            .collect())
    }

    /// One tag over `[from, to)` in buckets of at least `min_bucket_ms`
    /// (see [`plan`] and [`grid`]).
    pub fn series(
        &self,
        k: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
        min_bucket_ms: i64,
    ) -> Result<Series, StoreError> {
        // One snapshot: the rollup and the windows beyond its watermark
        // must not both hold a window folded in meanwhile.
        let _tx = self.conn.unchecked_transaction()?;
        let wm = self.rollup_watermark()?;
        let widths = self.widths(k, wm)?;
        let mut out = Series {
            site: k.site.clone(),
            node: k.node.clone(),
            tag: k.tag.clone(),
            source_width_ms: None,
            bucket_ms: min_bucket_ms.max(1),
            rollup_ms: None,
            t: Vec::new(),
            min: Vec::new(),
            max: Vec::new(),
            mean: Vec::new(),
            good_share: Vec::new(),
        };
        let Some(p) = plan(&widths, min_bucket_ms) else {
            return Ok(out);
        };
        out.source_width_ms = Some(p.width_ms);
        out.bucket_ms = p.bucket_ms;
        out.rollup_ms = p.rollup_ms;
        let (lo, hi) = grid(from_ms, to_ms, p.bucket_ms);
        let buckets = match p.rollup_ms {
            None => self.buckets(
                RAW_SQL,
                params![lo, p.bucket_ms, k.site, k.node, k.tag, p.width_ms, hi],
            )?,
            Some(level) => self.buckets(
                ROLLUP_SQL,
                params![
                    lo,
                    p.bucket_ms,
                    k.site,
                    k.node,
                    k.tag,
                    p.width_ms,
                    hi,
                    level,
                    wm
                ],
            )?,
        };
        fill(&mut out, buckets);
        Ok(out)
    }

    fn buckets(&self, sql: &str, p: impl duckdb::Params) -> Result<Vec<Bucket>, StoreError> {
        let mut st = self.conn.prepare_cached(sql)?;
        let rows = st.query_map(p, |r| {
            Ok(Bucket {
                t: r.get(0)?,
                min: r.get(1)?,
                max: r.get(2)?,
                vsum: r.get(3)?,
                vn: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                count: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                good: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The benchmark's baseline ([`NAIVE_SQL`]): the same chart as
    /// [`Store::series`] with `points` buckets, grouped over every raw
    /// window. Returns the rows (bucket start, min, max, mean, good share).
    #[allow(clippy::type_complexity)]
    pub fn series_naive(
        &self,
        k: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
        points: u32,
    ) -> Result<Vec<(i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>)>, StoreError> {
        let bucket = ceil_div((to_ms - from_ms).max(1), i64::from(points.max(1)));
        let mut st = self.conn.prepare(NAIVE_SQL)?;
        let rows = st.query_map(
            params![bucket, k.site, k.node, k.tag, from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Statistics of one tag over `[from, to)` (see [`TagStats`]).
    pub fn tag_stats(
        &self,
        k: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<TagStats, StoreError> {
        let _tx = self.conn.unchecked_transaction()?;
        let wm = self.rollup_watermark()?;
        let widths = self.widths(k, wm)?;
        let span = (to_ms - from_ms).max(1);
        let width = widths
            .iter()
            .copied()
            .find(|w| span / i64::from((*w).max(1)) <= STATS_MAX_WINDOWS)
            .or_else(|| widths.last().copied());
        let mut out = TagStats {
            site: k.site.clone(),
            node: k.node.clone(),
            tag: k.tag.clone(),
            source_width_ms: width,
            windows: 0,
            count: 0,
            min: None,
            max: None,
            mean: None,
            stddev: None,
            p05: None,
            p50: None,
            p95: None,
            good_share: None,
            first_ms: None,
            last_ms: None,
        };
        let Some(width) = width else {
            return Ok(out);
        };
        let mut st = self.conn.prepare_cached(
            "WITH w AS (
                 SELECT start_ms, count, good, min, max, coalesce(twa, mean) AS v
                 FROM aggregates
                 WHERE site = ?1 AND node = ?2 AND tag = ?3 AND width_ms = ?4
                   AND start_ms >= ?5 AND start_ms < ?6)
             SELECT count(*)::BIGINT, sum(count)::BIGINT, sum(good)::BIGINT, min(min), max(max),
                    avg(v), stddev_pop(v), quantile_cont(v, 0.05), quantile_cont(v, 0.5),
                    quantile_cont(v, 0.95), min(start_ms), max(start_ms)
             FROM w",
        )?;
        st.query_row(params![k.site, k.node, k.tag, width, from_ms, to_ms], |r| {
            let windows: i64 = r.get(0)?;
            let count: Option<i64> = r.get(1)?;
            let good: Option<i64> = r.get(2)?;
            out.windows = windows.max(0) as u64;
            out.count = count.unwrap_or(0).max(0) as u64;
            out.min = finite(r.get(3)?);
            out.max = finite(r.get(4)?);
            out.mean = finite(r.get(5)?);
            out.stddev = finite(r.get(6)?);
            out.p05 = finite(r.get(7)?);
            out.p50 = finite(r.get(8)?);
            out.p95 = finite(r.get(9)?);
            out.good_share = share(good.unwrap_or(0), count.unwrap_or(0));
            out.first_ms = r.get(10)?;
            out.last_ms = r.get::<_, Option<i64>>(11)?.map(|t| t + i64::from(width));
            Ok(())
        })?;
        Ok(out)
    }
}

fn share(good: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| good as f64 / count as f64)
}

fn fill(out: &mut Series, buckets: Vec<Bucket>) {
    for b in buckets {
        out.t.push(b.t);
        out.min.push(finite(b.min));
        out.max.push(finite(b.max));
        out.mean
            .push(finite(b.vsum.filter(|_| b.vn > 0).map(|s| s / b.vn as f64)));
        out.good_share.push(share(b.good, b.count));
    }
}

/// DuckDB's text form of an integer list, `[10000, 60000]`.
fn parse_list(s: &str) -> Vec<u32> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}
