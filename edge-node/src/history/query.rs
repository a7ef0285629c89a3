//! Read side: range, latest value and downsampled trends.

use std::path::{Path, PathBuf};

use drivers::{Sample, TagName};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{self, SAMPLE_COLUMNS, sample_from_row};
use super::{HistoryError, schema};

/// One trend bucket: statistics of a tag's numeric samples in
/// `[start_ms, end_ms)`. Buckets without any sample are omitted; a bucket
/// with only bad-quality samples has `count == 0` and NaN statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Samples with a numeric value (bools count as 0/1).
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    /// All samples in the bucket, including bad ones without a value.
    pub samples: u64,
    /// Fraction of `samples` with good quality.
    pub good_fraction: f64,
    /// The bucket's last text value, for string tags (which have no
    /// min/avg/max).
    pub last_text: Option<String>,
    /// Why the bucket's last sample that was not good was not, when the
    /// bucket has any: a bucket of only bad samples says what went wrong.
    pub bad_reason: Option<drivers::Quality>,
}

/// A read-only view of the history, on its own connection (WAL lets it read
/// while the writer commits). Blocking: call from a blocking thread.
///
/// Every query covers both the main table and the not-yet-merged inbox. A
/// sample re-sent with the same timestamp before a merge appears twice until
/// the merge keeps the newer copy.
#[derive(Debug)]
pub struct HistoryReader {
    conn: Connection,
    path: PathBuf,
}

impl HistoryReader {
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Ok(Self {
            conn: schema::open_reader(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tag names ever stored, sorted.
    pub fn tags(&self) -> Result<Vec<String>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM tags ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    fn tag_id(&self, tag: &str) -> Result<Option<i64>, HistoryError> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM tags WHERE name = ?1")?
            .query_row([tag], |r| r.get(0))
            .optional()?)
    }

    /// Samples of `tag` in `[from_ms, to_ms)`, oldest first, at most `limit`.
    pub fn range(
        &self,
        tag: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Sample>, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(Vec::new());
        };
        let name = TagName::from(tag);
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM (
                 SELECT {SAMPLE_COLUMNS} FROM samples WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                 UNION ALL
                 SELECT {SAMPLE_COLUMNS} FROM inbox WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
             ) ORDER BY ts_ms LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![id, from_ms, to_ms, limit], |r| {
                sample_from_row(&name, r, 0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// `(ts_ms, value)` of `tag` in `[from_ms, to_ms)`, oldest first, the
    /// value as a number when the sample is good and numeric (bools as
    /// 0/1), else `None`: what the KPI engine reads, without building
    /// [`Sample`]s.
    pub fn numeric_range(
        &self,
        tag: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, value, quality FROM (
                 SELECT ts_ms, value, quality FROM samples WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                 UNION ALL
                 SELECT ts_ms, value, quality FROM inbox WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
             ) ORDER BY ts_ms",
        )?;
        let rows = stmt
            .query_map(params![id, from_ms, to_ms], |r| {
                let good = r.get::<_, i64>(2)? == 0;
                let v = match r.get_ref(1)? {
                    rusqlite::types::ValueRef::Integer(i) if good => Some(i as f64),
                    rusqlite::types::ValueRef::Real(f) if good => Some(f),
                    _ => None,
                };
                Ok((r.get::<_, i64>(0)?, v))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The newest good numeric value of `tag` before `ts_ms`, however old
    /// (a counter's base after an outage).
    pub fn last_known_before(
        &self,
        tag: &str,
        ts_ms: i64,
    ) -> Result<Option<(i64, f64)>, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(None);
        };
        let pick = "SELECT ts_ms, value FROM {t} WHERE tag_id = ?1 AND ts_ms < ?2 AND quality = 0
                    AND typeof(value) IN ('integer', 'real') ORDER BY ts_ms DESC LIMIT 1";
        let sql = format!(
            "SELECT ts_ms, value FROM (SELECT * FROM ({}) UNION ALL SELECT * FROM ({}))
             ORDER BY ts_ms DESC LIMIT 1",
            pick.replace("{t}", "samples"),
            pick.replace("{t}", "inbox")
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id, ts_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The newest sample of `tag` before `ts_ms` (any quality).
    pub fn last_before(&self, tag: &str, ts_ms: i64) -> Result<Option<Sample>, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(None);
        };
        let name = TagName::from(tag);
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM (
                 SELECT * FROM (SELECT {SAMPLE_COLUMNS} FROM samples WHERE tag_id = ?1 AND ts_ms < ?2
                                ORDER BY ts_ms DESC LIMIT 1)
                 UNION ALL
                 SELECT * FROM (SELECT {SAMPLE_COLUMNS} FROM inbox WHERE tag_id = ?1 AND ts_ms < ?2
                                ORDER BY ts_ms DESC LIMIT 1)
             ) ORDER BY ts_ms DESC LIMIT 1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id, ts_ms], |r| sample_from_row(&name, r, 0))
            .optional()?)
    }

    /// The newest sample of `tag`.
    pub fn latest(&self, tag: &str) -> Result<Option<Sample>, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(None);
        };
        let name = TagName::from(tag);
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM samples WHERE tag_id = ?1 ORDER BY ts_ms DESC LIMIT 1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| sample_from_row(&name, r, 0))
            .optional()?)
    }

    /// Number of samples stored for `tag`.
    pub fn count(&self, tag: &str) -> Result<u64, HistoryError> {
        let Some(id) = self.tag_id(tag)? else {
            return Ok(0);
        };
        let n: i64 = self
            .conn
            .prepare_cached("SELECT (SELECT count(*) FROM samples WHERE tag_id = ?1) + (SELECT count(*) FROM inbox WHERE tag_id = ?1)")?
            .query_row([id], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Split `[from_ms, to_ms)` into `buckets` equal slices and return
    /// min/max/avg per non-empty slice: one `GROUP BY` over the clustered
    /// key range, so cost grows with the samples in range, not the table.
    pub fn downsample(
        &self,
        tag: &str,
        from_ms: i64,
        to_ms: i64,
        buckets: usize,
    ) -> Result<Vec<Bucket>, HistoryError> {
        if buckets == 0 {
            return Err(HistoryError::InvalidQuery(
                "buckets must be at least 1".into(),
            ));
        }
        if from_ms >= to_ms {
            return Err(HistoryError::InvalidQuery(format!(
                "empty time range: from {from_ms} is not before to {to_ms}"
            )));
        }
        let Some(id) = self.tag_id(tag)? else {
            return Ok(Vec::new());
        };
        let span = i128::from(to_ms) - i128::from(from_ms);
        let width =
            i64::try_from((span + buckets as i128 - 1) / buckets as i128).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT (ts_ms - ?2) / ?4 AS b,
                    count(CASE WHEN kind BETWEEN 1 AND 4 THEN value END),
                    min(CASE WHEN kind BETWEEN 1 AND 4 THEN value END),
                    max(CASE WHEN kind BETWEEN 1 AND 4 THEN value END),
                    avg(CASE WHEN kind BETWEEN 1 AND 4 THEN value END),
                    count(*),
                    sum(quality = 0)
             FROM (
                 SELECT ts_ms, value, kind, quality FROM samples WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                 UNION ALL
                 SELECT ts_ms, value, kind, quality FROM inbox WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
             )
             GROUP BY b ORDER BY b",
        )?;
        let rows = stmt
            .query_map(params![id, from_ms, to_ms, width], |r| {
                let b: i64 = r.get(0)?;
                let count: i64 = r.get(1)?;
                let samples: i64 = r.get(5)?;
                let good: i64 = r.get(6)?;
                let start = from_ms.saturating_add(b.saturating_mul(width));
                Ok(Bucket {
                    start_ms: start,
                    end_ms: start.saturating_add(width).min(to_ms),
                    count: u64::try_from(count).unwrap_or(0),
                    min: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                    max: r.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
                    avg: r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN),
                    samples: u64::try_from(samples).unwrap_or(0),
                    good_fraction: if samples > 0 {
                        good as f64 / samples as f64
                    } else {
                        0.0
                    },
                    last_text: None,
                    bad_reason: None,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = rows;
        // Text values and bad reasons cannot be averaged: look up the last
        // one of the buckets that need it (few rows, one indexed seek each).
        for b in &mut rows {
            if b.count == 0 && b.samples > 0 {
                b.last_text = self
                    .last_in(id, b.start_ms, b.end_ms, "kind = 5", |r| {
                        r.get::<_, Option<String>>(0)
                    })?
                    .flatten();
            }
            if b.good_fraction < 1.0 && b.samples > 0 {
                b.bad_reason = self.last_in(id, b.start_ms, b.end_ms, "quality != 0", |r| {
                    Ok(codec::decode_quality(
                        r.get(1)?,
                        r.get::<_, Option<String>>(2)?.as_deref(),
                    ))
                })?;
            }
        }
        Ok(rows)
    }

    /// The newest row of tag `id` in `[from, to)` matching `filter`, mapped
    /// from `(value_text, quality, reason)`.
    fn last_in<T>(
        &self,
        id: i64,
        from_ms: i64,
        to_ms: i64,
        filter: &str,
        map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, HistoryError> {
        let sql = format!(
            "SELECT value_text, quality, reason, ts_ms FROM (
                 SELECT * FROM (SELECT value_text, quality, reason, ts_ms, kind FROM samples
                     WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND {filter} ORDER BY ts_ms DESC LIMIT 1)
                 UNION ALL
                 SELECT * FROM (SELECT value_text, quality, reason, ts_ms, kind FROM inbox
                     WHERE tag_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND {filter} ORDER BY ts_ms DESC LIMIT 1)
             ) ORDER BY ts_ms DESC LIMIT 1"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![id, from_ms, to_ms])?;
        match rows.next()? {
            Some(r) => Ok(Some(map(r)?)),
            None => Ok(None),
        }
    }
}
