//! KPI values for the analysis API: the newest value of every KPI window
//! kind (the summary the dashboards poll) and the windows of one KPI over
//! a range (its history, paged oldest first).

use duckdb::params;
use serde::Serialize;
use serde_json::Value as J;
use utoipa::ToSchema;

use super::super::{Store, StoreError};
use super::finite;

/// The newest value of one (site, node, kpi, window kind).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KpiSummary {
    pub site: String,
    pub node: String,
    pub kpi: String,
    /// The window kind: `shift`, `day`, `week` or a rolling length (`1h`).
    pub window: String,
    /// The window's name as the edge labels it (e.g. `2026-12-01 early`).
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The window has ended and its value is final.
    pub closed: bool,
    /// Share of the window with data behind the value (0..1).
    pub coverage: Option<f64>,
    /// `good`, `uncertain` or `bad`.
    pub quality: String,
    /// The headline figure; null when undefined (e.g. no production).
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// Every figure by name (null where undefined).
    #[schema(value_type = Object)]
    pub figures: J,
}

/// One window of one KPI.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KpiPoint {
    pub start_ms: i64,
    pub end_ms: i64,
    pub label: String,
    pub closed: bool,
    pub value: Option<f64>,
    pub coverage: Option<f64>,
    pub quality: String,
    #[schema(value_type = Object)]
    pub figures: J,
}

/// One KPI window kind of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiKey {
    pub site: String,
    pub node: String,
    pub kpi: String,
    pub window: String,
}

fn figures(s: &str) -> J {
    match serde_json::from_str::<J>(s) {
        Ok(j @ J::Object(_)) => j,
        _ => J::Object(Default::default()),
    }
}

/// The newest window of each (site, node, kpi, win) and, within it, the
/// newest value: one hash aggregation (`arg_max` on the sort key), which
/// DuckDB does in one pass where a window function would sort. `{WHERE}`
/// is a filter on site and node, spelled out so that it is pushed into
/// the scan.
const SUMMARY: &str = "
SELECT site, node, kpi, win, v.label, v.start_ms, v.end_ms, v.closed, v.coverage, v.quality,
       v.value, v.unit, v.figures
FROM (SELECT site, node, kpi, win,
             arg_max({'label': label, 'start_ms': start_ms, 'end_ms': end_ms, 'closed': closed,
                      'coverage': coverage, 'quality': quality, 'value': value, 'unit': unit,
                      'figures': figures},
                     (start_ms, computed_ms, seq)) AS v
      FROM kpis {WHERE} GROUP BY site, node, kpi, win)
ORDER BY site, node, kpi, win";

impl Store {
    /// The newest value of every KPI window kind, of one node, one site,
    /// or the whole fleet (`None` filters nothing).
    pub fn kpi_summary(
        &self,
        site: Option<&str>,
        node: Option<&str>,
    ) -> Result<Vec<KpiSummary>, StoreError> {
        let (filter, p): (&str, Vec<&str>) = match (site, node) {
            (None, None) => ("", vec![]),
            (Some(s), None) => ("WHERE site = ?", vec![s]),
            (None, Some(n)) => ("WHERE node = ?", vec![n]),
            (Some(s), Some(n)) => ("WHERE site = ? AND node = ?", vec![s, n]),
        };
        let mut st = self
            .conn
            .prepare_cached(&SUMMARY.replace("{WHERE}", filter))?;
        let rows = st.query_map(duckdb::params_from_iter(p), |r| {
            let f: String = r.get(12)?;
            Ok(KpiSummary {
                site: r.get(0)?,
                node: r.get(1)?,
                kpi: r.get(2)?,
                window: r.get(3)?,
                label: r.get(4)?,
                start_ms: r.get(5)?,
                end_ms: r.get(6)?,
                closed: r.get(7)?,
                coverage: finite(r.get(8)?),
                quality: r.get(9)?,
                value: finite(r.get(10)?),
                unit: r.get(11)?,
                figures: figures(&f),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The windows of one KPI starting in `[from, to)` and after
    /// `after_start_ms` (the cursor), oldest first, at most `limit`; each
    /// with its newest value (`kpi_latest`).
    pub fn kpi_history(
        &self,
        k: &KpiKey,
        from_ms: i64,
        to_ms: i64,
        after_start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<KpiPoint>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT start_ms, end_ms, label, closed, value, coverage, quality, figures
             FROM kpi_latest
             WHERE site = ?1 AND node = ?2 AND kpi = ?3 AND win = ?4
               AND start_ms >= ?5 AND start_ms < ?6 AND start_ms > ?7
             ORDER BY start_ms LIMIT ?8",
        )?;
        let after = after_start_ms.unwrap_or(i64::MIN);
        let rows = st.query_map(
            params![
                k.site,
                k.node,
                k.kpi,
                k.window,
                from_ms,
                to_ms,
                after,
                limit as i64
            ],
            |r| {
                let f: String = r.get(7)?;
                Ok(KpiPoint {
                    start_ms: r.get(0)?,
                    end_ms: r.get(1)?,
                    label: r.get(2)?,
                    closed: r.get(3)?,
                    value: finite(r.get(4)?),
                    coverage: finite(r.get(5)?),
                    quality: r.get(6)?,
                    figures: figures(&f),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
