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
/// before it, so a tag that fell silent shows with its gap; each is judged
/// at its finest width `w`. Windows are aligned to the epoch as the edges
/// seal them, so window number K = start_ms / w; K0..=K1 are due. Nothing
/// is due before the node's first window in that stretch: a node added
/// yesterday has not missed the six days before it (a tag that starts
/// later than its node's others has, and shows with that gap).
///
/// No sort of the windows themselves (a window function over tens of
/// millions of rows took a minute on 2 cores): one pass folds them into
/// 64-window blocks, a presence bitmap each (`m`, bit K % 64), and the
/// holes are counted on the bitmaps: inside a block by bit arithmetic (a
/// hole starts where a 0 follows a 1), between blocks from the zeros at
/// their ends (`low_z`, `high_z`). Only a block with a hole inside has its
/// bitmap written out as text to measure the longest one.
const SQL: &str = "
WITH blocks AS (
    SELECT site, node, tag, width_ms::BIGINT AS w, start_ms // width_ms // 64 AS blk,
           bit_or(1::UBIGINT << (start_ms // width_ms % 64)::UBIGINT)
               FILTER (WHERE start_ms >= $5 AND start_ms + width_ms <= $6) AS m,
           sum(count) FILTER (WHERE start_ms >= $5 AND start_ms + width_ms <= $6) AS cnt,
           sum(good) FILTER (WHERE start_ms >= $5 AND start_ms + width_ms <= $6) AS good,
           min(start_ms) AS first
    FROM aggregates
    WHERE start_ms >= $3 AND start_ms < $4
      AND ($1::VARCHAR IS NULL OR site = $1) AND ($2::VARCHAR IS NULL OR node = $2)
    GROUP BY ALL),
b AS (
    SELECT row_number() OVER () AS id, site, node, tag, w,
           greatest(CAST(ceil($5::DOUBLE / w) AS BIGINT), node_first // w) AS k0,
           CAST(floor($6::DOUBLE / w) AS BIGINT) - 1 AS k1
    FROM (SELECT site, node, tag, min(w) AS w,
                 min(min(first)) OVER (PARTITION BY site, node) AS node_first
          FROM blocks GROUP BY site, node, tag)),
d AS (
    SELECT id, blk, cnt, good, m, k0,
           bit_count(m) AS n,
           length(bin(m)) - length(rtrim(bin(m), '0')) AS low_z,
           64 - length(bin(m)) AS high_z
    FROM blocks JOIN b USING (site, node, tag, w)
    WHERE m IS NOT NULL),
e AS (
    SELECT *,
           bit_count(~m & ((m & 9223372036854775807::UBIGINT) << 1)) - (high_z > 0)::INTEGER
               AS holes,
           CASE WHEN bit_count(~m & ((m & 9223372036854775807::UBIGINT) << 1))
                     > (high_z > 0)::INTEGER
                THEN list_max(list_transform(string_split_regex(trim(bin(m), '0'), '1+'),
                                             lambda x: length(x)))
                ELSE 0 END AS hole_max,
           CASE WHEN lag(blk) OVER w IS NULL THEN blk * 64 + low_z - k0
                ELSE lag(high_z) OVER w + 64 * (blk - lag(blk) OVER w - 1) + low_z END
               AS before
    FROM d WINDOW w AS (PARTITION BY id ORDER BY blk)),
a AS (
    SELECT id, sum(n)::BIGINT AS present, sum(cnt)::BIGINT AS cnt, sum(good)::BIGINT AS good,
           (count(*) FILTER (WHERE before > 0) + sum(holes))::BIGINT AS gaps,
           greatest(max(before), max(hole_max)) AS longest,
           max(blk * 64 + 63 - high_z) AS last_k
    FROM e GROUP BY id)
SELECT b.site, b.node, b.tag, b.w, greatest(b.k1 - b.k0 + 1, 0)::BIGINT,
       coalesce(a.present, 0),
       CASE WHEN a.id IS NULL THEN (b.k1 >= b.k0)::BIGINT
            ELSE a.gaps + (a.last_k < b.k1)::BIGINT END,
       CASE WHEN a.id IS NULL THEN greatest(b.k1 - b.k0 + 1, 0) * b.w
            ELSE greatest(a.longest, b.k1 - a.last_k) * b.w END,
       coalesce(a.cnt, 0), coalesce(a.good, 0)
FROM b LEFT JOIN a ON a.id = b.id
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
