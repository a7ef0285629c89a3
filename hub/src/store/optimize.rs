//! What setpoint optimization reads: one node's tags aligned on a window
//! grid (the models' training rows), the newest value of each, and the
//! node's write-back audit entries (what the operator and the PLC did with
//! a recommendation).

use std::collections::BTreeMap;

use duckdb::params;

use crate::store::{Store, StoreError};

/// Columns of one node's tags on a common grid of window starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aligned {
    /// Window starts, ascending.
    pub t: Vec<i64>,
    /// Per tag, one value per start (`NaN` where the window is missing or
    /// had no good sample).
    pub columns: BTreeMap<String, Vec<f64>>,
}

/// One audit entry from an edge.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub aseq: u64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl Store {
    /// The `width_ms` windows' time-weighted means (else means) of `tags`
    /// at one node with starts in `from_ms..to_ms`, aligned by start.
    pub fn aligned_means(
        &self,
        site: &str,
        node: &str,
        width_ms: u32,
        tags: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Aligned, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT start_ms, tag, coalesce(twa, mean) FROM aggregates
             WHERE site = ?1 AND node = ?2 AND width_ms = ?3 AND start_ms >= ?4 AND start_ms < ?5
               AND list_contains(?6::VARCHAR[], tag)
             ORDER BY start_ms",
        )?;
        let list = tags.to_vec();
        let rows = st.query_map(
            params![
                site,
                node,
                width_ms,
                from_ms,
                to_ms,
                duckdb::types::Value::List(
                    list.into_iter().map(duckdb::types::Value::Text).collect()
                )
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                ))
            },
        )?;
        let mut out = Aligned::default();
        for t in tags {
            out.columns.insert(t.clone(), Vec::new());
        }
        for row in rows {
            let (start, tag, v) = row?;
            if out.t.last() != Some(&start) {
                out.t.push(start);
                for c in out.columns.values_mut() {
                    c.push(f64::NAN);
                }
            }
            if let (Some(c), Some(v)) = (out.columns.get_mut(&tag), v)
                && let Some(last) = c.last_mut()
            {
                *last = v;
            }
        }
        Ok(out)
    }

    /// The newest window's value of each of `tags` at one node (any width,
    /// the narrowest when several end together), with its window end.
    pub fn latest_values(
        &self,
        site: &str,
        node: &str,
        tags: &[String],
    ) -> Result<BTreeMap<String, (f64, i64)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT tag, coalesce(twa, mean), start_ms + width_ms FROM aggregates
             WHERE site = ?1 AND node = ?2 AND list_contains(?3::VARCHAR[], tag)
               AND coalesce(twa, mean) IS NOT NULL
             QUALIFY row_number() OVER (PARTITION BY tag ORDER BY start_ms + width_ms DESC, width_ms) = 1",
        )?;
        let list = duckdb::types::Value::List(
            tags.iter()
                .cloned()
                .map(duckdb::types::Value::Text)
                .collect(),
        );
        let rows = st.query_map(params![site, node, list], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (tag, v, end) = row?;
            out.insert(tag, (v, end));
        }
        Ok(out)
    }

    /// How many of a run's moves (`<run id>:<tag>` targets) an edge reports
    /// completed.
    pub fn completed_moves(&self, site: &str, node: &str, run_id: &str) -> Result<u64, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT count(DISTINCT target) FROM audit
             WHERE site = ?1 AND node = ?2 AND action = 'setpoint_finished'
               AND starts_with(target, ?3) AND contains(detail, 'completed')",
        )?;
        let n: i64 = st.query_row(params![site, node, format!("{run_id}:")], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A node's audit entries whose action starts with one of `prefixes`,
    /// after sequence `after`, oldest first, at most 10,000 (one query, so
    /// the next read continues exactly where this one stopped).
    pub fn audit_after(
        &self,
        site: &str,
        node: &str,
        prefixes: &[&str],
        after: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT aseq, ts_ms, actor, action, target, detail FROM audit
             WHERE site = ?1 AND node = ?2 AND aseq > ?4
               AND list_bool_or(list_transform(?3::VARCHAR[], lambda p: starts_with(action, p)))
             ORDER BY aseq LIMIT 10000",
        )?;
        let list = duckdb::types::Value::List(
            prefixes
                .iter()
                .map(|p| duckdb::types::Value::Text((*p).to_owned()))
                .collect(),
        );
        let rows = st.query_map(params![site, node, list, after], |r| {
            Ok(AuditEntry {
                aseq: r.get(0)?,
                ts_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
