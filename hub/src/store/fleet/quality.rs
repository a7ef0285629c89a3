//! Data quality per node and tag over a period: how many of the windows
//! due arrived (coverage), the stretches missing (gaps), and the share of
//! samples of bad quality. One DuckDB query; the range filter on
//! `start_ms` comes first so that a short period over a large table reads
//! few row groups.

use duckdb::params;
use serde::Serialize;
use utoipa::ToSchema;

use super::QUALITY_LAG_MS;
use crate::store::{Store, StoreError};

/// One tag's quality at its finest stored width.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TagQuality {
    pub site: String,
    pub node: String,
    pub tag: String,
    /// The finest window width stored for the tag (in the period or the
    /// one before it).
    pub width_ms: u32,
    /// Windows of that width due in the period: starting at or after
    /// `from`, ending by `until_ms`.
    pub expected: u64,
    pub present: u64,
    /// `present / expected` (0–1); null when nothing was due.
    pub coverage: Option<f64>,
    /// Stretches of missing windows.
    pub gaps: u64,
    /// The longest stretch missing, in ms (0 without gaps).
    pub longest_gap_ms: i64,
    /// 1 − Σgood / Σcount over the windows present; null without samples.
    pub bad_share: Option<f64>,
}

/// A node's figures over all its tags.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QualityTotals {
    pub tags: u64,
    pub expected: u64,
    pub present: u64,
    pub coverage: Option<f64>,
    pub gaps: u64,
    pub longest_gap_ms: i64,
    pub bad_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QualityNode {
    pub site: String,
    pub node: String,
    pub totals: QualityTotals,
    pub tags: Vec<TagQuality>,
}

/// The data-quality report of a period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Quality {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Windows ending after this (`to`, or now − 2 min if earlier) are not
    /// yet due.
    pub until_ms: i64,
    pub nodes: Vec<QualityNode>,
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn bad(good: u64, count: u64) -> Option<f64> {
    share(good.min(count), count).map(|g| 1.0 - g)
}

/// Tags are those with windows in the period or in as long a period just
/// before it, so a tag that fell silent shows with its gap. For each, the
/// finest width (`w`), the first (`lo`) and last (`hi`) window start due;
/// windows are aligned to the epoch as the edges seal them.
const SQL: &str = "
WITH r AS (
    SELECT site, node, tag, width_ms, start_ms, count, good FROM aggregates
    WHERE start_ms >= $3 AND start_ms < $4
      AND ($1::VARCHAR IS NULL OR site = $1) AND ($2::VARCHAR IS NULL OR node = $2)),
b AS (
    SELECT site, node, tag, w,
           CAST(ceil($5::DOUBLE / w) AS BIGINT) * w AS lo,
           CAST(floor(($6 - w)::DOUBLE / w) AS BIGINT) * w AS hi
    FROM (SELECT site, node, tag, min(width_ms)::BIGINT AS w FROM r GROUP BY ALL)),
p AS (
    -- One row per window start (a window sent twice counts once).
    SELECT r.site, r.node, r.tag, b.w, r.start_ms,
           max(r.count)::BIGINT AS c, max(r.good)::BIGINT AS g
    FROM r JOIN b ON r.site = b.site AND r.node = b.node AND r.tag = b.tag
                 AND r.width_ms = b.w AND r.start_ms BETWEEN b.lo AND b.hi
    GROUP BY ALL),
s AS (
    SELECT *, start_ms - lag(start_ms) OVER (PARTITION BY site, node, tag ORDER BY start_ms)
              AS step
    FROM p),
a AS (
    SELECT site, node, tag, count(*) AS present, sum(c)::BIGINT AS cnt, sum(g)::BIGINT AS good,
           min(start_ms) AS first, max(start_ms) AS last,
           count(*) FILTER (WHERE step > w) AS inner_gaps,
           coalesce(max(step - w) FILTER (WHERE step > w), 0) AS inner_longest
    FROM s GROUP BY site, node, tag)
SELECT b.site, b.node, b.tag, b.w,
       greatest((b.hi - b.lo) // b.w + 1, 0)::BIGINT AS expected,
       coalesce(a.present, 0)::BIGINT,
       CASE WHEN a.present IS NULL THEN (b.hi >= b.lo)::BIGINT
            ELSE a.inner_gaps + (a.first > b.lo)::BIGINT + (a.last < b.hi)::BIGINT END,
       CASE WHEN a.present IS NULL THEN greatest(b.hi - b.lo + b.w, 0)
            ELSE greatest(a.inner_longest, a.first - b.lo, b.hi - a.last) END,
       coalesce(a.cnt, 0), coalesce(a.good, 0)
FROM b LEFT JOIN a ON a.site = b.site AND a.node = b.node AND a.tag = b.tag
ORDER BY b.site, b.node, b.tag";

impl Store {
    /// Data quality of every tag (of one site or node, if given) over
    /// `from_ms..to_ms`, judged as of `now_ms`.
    pub fn quality(
        &self,
        site: Option<&str>,
        node: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Quality, StoreError> {
        let until_ms = to_ms.min(now_ms.saturating_sub(QUALITY_LAG_MS));
        let before = from_ms.saturating_sub(to_ms.saturating_sub(from_ms));
        let mut st = self.conn.prepare(SQL)?;
        let rows = st.query_map(params![site, node, before, to_ms, from_ms, until_ms], |r| {
            let width: i64 = r.get(3)?;
            let expected = r.get::<_, i64>(4)?.max(0) as u64;
            let present = r.get::<_, i64>(5)?.max(0) as u64;
            let count = r.get::<_, i64>(8)?.max(0) as u64;
            let good = r.get::<_, i64>(9)?.max(0) as u64;
            Ok((
                TagQuality {
                    site: r.get(0)?,
                    node: r.get(1)?,
                    tag: r.get(2)?,
                    width_ms: u32::try_from(width).unwrap_or(u32::MAX),
                    expected,
                    present,
                    coverage: share(present.min(expected), expected),
                    gaps: r.get::<_, i64>(6)?.max(0) as u64,
                    longest_gap_ms: r.get::<_, i64>(7)?.max(0),
                    bad_share: bad(good, count),
                },
                count,
                good,
            ))
        })?;
        let mut nodes: Vec<(QualityNode, u64, u64)> = Vec::new();
        for row in rows {
            let (t, count, good) = row?;
            let same = nodes
                .last()
                .is_some_and(|(n, _, _)| n.site == t.site && n.node == t.node);
            if !same {
                nodes.push((
                    QualityNode {
                        site: t.site.clone(),
                        node: t.node.clone(),
                        totals: QualityTotals {
                            tags: 0,
                            expected: 0,
                            present: 0,
                            coverage: None,
                            gaps: 0,
                            longest_gap_ms: 0,
                            bad_share: None,
                        },
                        tags: Vec::new(),
                    },
                    0,
                    0,
                ));
            }
            if let Some((n, c, g)) = nodes.last_mut() {
                let tot = &mut n.totals;
                tot.tags += 1;
                tot.expected += t.expected;
                tot.present += t.present.min(t.expected);
                tot.gaps += t.gaps;
                tot.longest_gap_ms = tot.longest_gap_ms.max(t.longest_gap_ms);
                *c += count;
                *g += good;
                n.tags.push(t);
            }
        }
        Ok(Quality {
            from_ms,
            to_ms,
            until_ms,
            nodes: nodes
                .into_iter()
                .map(|(mut n, c, g)| {
                    n.totals.coverage = share(n.totals.present, n.totals.expected);
                    n.totals.bad_share = bad(g, c);
                    n
                })
                .collect(),
        })
    }
}
