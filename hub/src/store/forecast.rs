//! What the forecasting API reads: models per node, forecasts, forecast
//! against actual, accuracy (the edges' and the hub's own) and the latest
//! explanation (docs/hub-api.md, "forecasting").
//!
//! Everything is computed in DuckDB: a forecast's values are stored as a
//! JSON array and read as a `DOUBLE[]` (a cast, no JSON extension); the
//! actual value at a forecast's time is the tag's window that contains it
//! (time-weighted mean, else mean), found with an ASOF join, among the
//! windows whose width is closest to the forecast step.

use duckdb::{OptionalExt, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

/// Most points an accuracy series returns: origins that fall into the same
/// 1/1000 of the range are merged.
pub const MAX_ACCURACY_POINTS: i64 = 1000;
/// Most forecasts in a forecast-against-actual answer.
pub const MAX_VERSUS_POINTS: usize = 10_000;
/// Most forecasts the hub re-scores per request (the newest in range):
/// each is unnested into its horizon and joined to the windows.
pub const MAX_CROSS_CHECK: usize = 5_000;

/// One model of one node, as its newest forecast describes it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelInfo {
    pub site: String,
    pub node: String,
    pub model: String,
    /// The newest forecast's model version.
    pub version: String,
    /// The tag it forecasts.
    pub tag: String,
    pub step_ms: i64,
    /// Values per forecast (the newest one's).
    pub horizon: u64,
    /// Forecasts stored.
    pub forecasts: u64,
    pub last_origin_ms: i64,
    /// The newest scored forecast's MAE (tag units) and MAPE (%), as the
    /// edge scored it; null before the first score or where undefined.
    pub last_mae: Option<f64>,
    pub last_mape: Option<f64>,
}

/// One stored forecast: `values[k]` is for `origin_ms + k · step_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ForecastItem {
    pub origin_ms: i64,
    pub made_ms: i64,
    pub step_ms: i64,
    pub version: String,
    pub tag: String,
    /// Null where the model gave no number.
    pub values: Vec<Option<f64>>,
}

/// The key of a forecast in a page, newest first: (origin_ms, batch seq).
pub type ForecastKey = (i64, u64);

/// Forecast against actual at one lead.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Versus {
    /// Tag and step of the newest forecast in range (older forecasts of
    /// another tag or step are left out); null when there is none.
    pub tag: Option<String>,
    pub step_ms: Option<i64>,
    /// Width of the windows used as actuals (closest to `step_ms`); null
    /// when the hub has no window of the tag.
    pub width_ms: Option<i64>,
    pub lead: u32,
    /// Target times: origin + (lead − 1) · step, ascending.
    pub t: Vec<i64>,
    /// What was forecast for `t` (null: no number at that lead).
    pub forecast: Vec<Option<f64>>,
    /// The tag's window containing `t` (null: no window, or no good value).
    pub actual: Vec<Option<f64>>,
    /// More than 10,000 forecasts in range: the oldest are shown.
    pub truncated: bool,
}

/// Accuracy of the forecasts whose origins fall into one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AccuracyPoint {
    /// The first origin in the bucket.
    pub ts_ms: i64,
    /// Mean absolute error (tag units) over the bucket's scored steps.
    pub mae: Option<f64>,
    /// Mean absolute percentage error (%).
    pub mape: Option<f64>,
    /// Steps scored.
    pub n: u64,
}

/// Accuracy over the whole range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct AccuracySummary {
    pub mae: Option<f64>,
    pub mape: Option<f64>,
    /// Steps scored.
    pub n: u64,
    /// Forecasts scored.
    pub forecasts: u64,
}

/// The hub's own scoring of the same forecasts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct CrossCheck {
    pub mae: Option<f64>,
    pub mape: Option<f64>,
    pub n: u64,
    pub forecasts: u64,
    /// Width of the windows used as actuals.
    pub width_ms: Option<i64>,
    pub items: Vec<AccuracyPoint>,
    /// More than 5,000 forecasts in range: the newest were re-scored.
    pub truncated: bool,
}

/// Accuracy over time: the edge's scores, and the hub's cross-check.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Accuracy {
    /// Width of the time buckets `items` are merged into.
    pub bucket_ms: i64,
    /// As the edge scored them (protocol `ForecastQuality`), by origin.
    pub items: Vec<AccuracyPoint>,
    /// The edge's scores over the range.
    pub edge: AccuracySummary,
    /// The hub's recomputation from the forecasts and windows it stores.
    pub hub: CrossCheck,
}

/// One feature's share of a forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contribution {
    pub feature: String,
    /// In the tag's units, averaged over the horizon.
    pub contribution: f64,
}

/// A model's latest explanation as its edge sent it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Explanation {
    /// When the edge made it (null: none received yet).
    pub ts_ms: Option<i64>,
    /// The origin of the forecast scored with it.
    pub origin_ms: Option<i64>,
    pub version: Option<String>,
    /// Largest contribution first.
    pub items: Vec<Contribution>,
}

/// An explanation as stored: a JSON array of `{"feature","contribution"}`
/// (non-finite contributions, which the protocol check refuses, as null).
pub(super) fn explanation_json(e: &[(String, f64)]) -> String {
    let items: Vec<serde_json::Value> = e
        .iter()
        .map(|(f, c)| {
            let c = serde_json::Number::from_f64(*c)
                .map_or(serde_json::Value::Null, serde_json::Value::Number);
            serde_json::json!({"feature": f, "contribution": c})
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The newest forecast per origin (an edge may re-make a forecast).
const NEWEST_PER_ORIGIN: &str =
    "QUALIFY row_number() OVER (PARTITION BY origin_ms ORDER BY made_ms DESC, seq DESC) = 1";

/// Bucketed series and summary over `r(origin_ms, mae, mape, n, nm)`
/// (nm: steps in the MAPE). Parameters: bucket start, bucket width.
/// The edge's scores of one model (site, node, model, from, to): the last
/// score of each forecast.
const EDGE_SCORES: &str = "WITH r AS (
    SELECT origin_ms, mae, mape, n::BIGINT AS n,
           CASE WHEN mape IS NULL THEN 0 ELSE n::BIGINT END AS nm
    FROM forecast_quality
    WHERE site = ? AND node = ? AND model = ? AND origin_ms >= ? AND origin_ms < ?
    QUALIFY row_number() OVER (PARTITION BY origin_ms ORDER BY scored_ms DESC, seq DESC) = 1)";

const BUCKETS: &str = "SELECT min(origin_ms), sum(mae * n) / nullif(sum(n), 0),
        sum(mape * nm) / nullif(sum(nm), 0), sum(n)::BIGINT
     FROM r GROUP BY floor((origin_ms - ?) / ?) ORDER BY 1";
const SUMMARY: &str = "SELECT sum(mae * n) / nullif(sum(n), 0),
        sum(mape * nm) / nullif(sum(nm), 0), coalesce(sum(n), 0)::BIGINT, count(*)
     FROM r";

impl Store {
    /// Every model with forecasts at the hub, by site, node and model.
    pub fn forecast_models(
        &self,
        site: Option<&str>,
        node: Option<&str>,
    ) -> Result<Vec<ModelInfo>, StoreError> {
        let mut st = self.conn.prepare(
            "WITH f AS (
                 SELECT site, node, model, version, tag, step_ms, origin_ms, forecast,
                        count(*) OVER (PARTITION BY site, node, model) AS forecasts
                 FROM forecasts WHERE site = coalesce(?, site) AND node = coalesce(?, node)
                 QUALIFY row_number() OVER (PARTITION BY site, node, model
                                            ORDER BY origin_ms DESC, made_ms DESC, seq DESC) = 1),
             q AS (
                 SELECT site, node, model, mae, mape FROM forecast_quality
                 WHERE site = coalesce(?, site) AND node = coalesce(?, node)
                 QUALIFY row_number() OVER (PARTITION BY site, node, model
                                            ORDER BY origin_ms DESC, scored_ms DESC, seq DESC) = 1)
             SELECT f.site, f.node, f.model, f.version, f.tag, f.step_ms,
                    len(CAST(f.forecast AS DOUBLE[]))::BIGINT, f.forecasts::BIGINT, f.origin_ms,
                    q.mae, q.mape
             FROM f LEFT JOIN q USING (site, node, model)
             ORDER BY f.site, f.node, f.model",
        )?;
        let rows = st.query_map(params![site, node, site, node], |r| {
            Ok(ModelInfo {
                site: r.get(0)?,
                node: r.get(1)?,
                model: r.get(2)?,
                version: r.get(3)?,
                tag: r.get(4)?,
                step_ms: r.get(5)?,
                horizon: r.get::<_, i64>(6)?.max(0) as u64,
                forecasts: r.get::<_, i64>(7)?.max(0) as u64,
                last_origin_ms: r.get(8)?,
                last_mae: finite(r.get(9)?),
                last_mape: finite(r.get(10)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A page of one model's forecasts with origins in `from_ms..to_ms`,
    /// newest first, after `after`; and the key of the last one when more
    /// follow.
    #[allow(clippy::too_many_arguments)]
    pub fn forecast_page(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
        after: Option<ForecastKey>,
        limit: usize,
    ) -> Result<(Vec<ForecastItem>, Option<ForecastKey>), StoreError> {
        let (a_origin, a_seq) = after.unwrap_or((i64::MAX, u64::MAX));
        let mut st = self.conn.prepare(
            "SELECT origin_ms, made_ms, step_ms, version, tag, forecast, seq FROM forecasts
             WHERE site = ? AND node = ? AND model = ? AND origin_ms >= ? AND origin_ms < ?
               AND (origin_ms, seq) < (?, ?)
             ORDER BY origin_ms DESC, seq DESC LIMIT ?",
        )?;
        let rows = st.query_map(
            params![
                site,
                node,
                model,
                from_ms,
                to_ms,
                a_origin,
                a_seq,
                limit as i64 + 1
            ],
            |r| {
                let json: String = r.get(5)?;
                Ok((
                    ForecastItem {
                        origin_ms: r.get(0)?,
                        made_ms: r.get(1)?,
                        step_ms: r.get(2)?,
                        version: r.get(3)?,
                        tag: r.get(4)?,
                        values: serde_json::from_str::<Vec<Option<f64>>>(&json).unwrap_or_default(),
                    },
                    r.get::<_, u64>(6)?,
                ))
            },
        )?;
        let mut items: Vec<(ForecastItem, u64)> = rows.collect::<Result<_, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(f, seq)| (f.origin_ms, *seq))
        } else {
            None
        };
        Ok((items.into_iter().map(|(f, _)| f).collect(), next))
    }

    /// Tag and step of the newest forecast of a model in range.
    fn fq_shape(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT tag, step_ms FROM forecasts
                 WHERE site = ? AND node = ? AND model = ? AND origin_ms >= ? AND origin_ms < ?
                 ORDER BY origin_ms DESC, made_ms DESC, seq DESC LIMIT 1",
                params![site, node, model, from_ms, to_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The width of a tag's windows closest to `step_ms` (the narrower of
    /// two as close).
    fn fq_width(
        &self,
        site: &str,
        node: &str,
        tag: &str,
        step_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT width_ms::BIGINT FROM (SELECT DISTINCT width_ms FROM aggregates
                                               WHERE site = ? AND node = ? AND tag = ?)
                 ORDER BY abs(width_ms::BIGINT - ?), width_ms LIMIT 1",
                params![site, node, tag, step_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Forecast against actual: for each forecast with its origin in
    /// `from_ms..to_ms`, the value forecast `lead` steps ahead (lead 1 is
    /// the first value) beside the tag's window containing that time.
    #[allow(clippy::too_many_arguments)]
    pub fn forecast_versus(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
        lead: u32,
    ) -> Result<Versus, StoreError> {
        let mut out = Versus {
            tag: None,
            step_ms: None,
            width_ms: None,
            lead,
            t: Vec::new(),
            forecast: Vec::new(),
            actual: Vec::new(),
            truncated: false,
        };
        let Some((tag, step_ms)) = self.fq_shape(site, node, model, from_ms, to_ms)? else {
            return Ok(out);
        };
        let width = self.fq_width(site, node, &tag, step_ms)?;
        let shift = i64::from(lead - 1).saturating_mul(step_ms);
        let sql = format!(
            "WITH f AS (
                 SELECT origin_ms + ? AS t, list_extract(CAST(forecast AS DOUBLE[]), ?) AS y
                 FROM forecasts
                 WHERE site = ? AND node = ? AND model = ? AND tag = ? AND step_ms = ?
                   AND origin_ms >= ? AND origin_ms < ?
                 {NEWEST_PER_ORIGIN}),
             a AS (
                 SELECT start_ms, start_ms + width_ms AS end_ms, coalesce(twa, mean) AS v
                 FROM aggregates
                 WHERE site = ? AND node = ? AND tag = ? AND width_ms = ?
                   AND start_ms >= ? AND start_ms < ?)
             SELECT f.t, f.y, CASE WHEN f.t < a.end_ms THEN a.v END
             FROM f ASOF LEFT JOIN a ON f.t >= a.start_ms
             ORDER BY f.t LIMIT ?"
        );
        let w = width.unwrap_or(0);
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(
            params![
                shift,
                i64::from(lead),
                site,
                node,
                model,
                tag,
                step_ms,
                from_ms,
                to_ms,
                site,
                node,
                tag,
                w,
                from_ms.saturating_add(shift).saturating_sub(w),
                to_ms.saturating_add(shift),
                MAX_VERSUS_POINTS as i64 + 1
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<f64>>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                ))
            },
        )?;
        for row in rows {
            let (t, y, a) = row?;
            if out.t.len() == MAX_VERSUS_POINTS {
                out.truncated = true;
                break;
            }
            out.t.push(t);
            out.forecast.push(finite(y));
            out.actual.push(finite(a));
        }
        out.tag = Some(tag);
        out.step_ms = Some(step_ms);
        out.width_ms = width;
        Ok(out)
    }

    /// Accuracy over time of a model's forecasts with origins in
    /// `from_ms..to_ms`: as the edge scored them, and as the hub scores
    /// them from what it stores (every lead, against the windows).
    /// Only the edge's own scores summed over `from_ms..to_ms` (what
    /// [`Store::forecast_accuracy`] calls `edge`), without the chart's
    /// buckets and the hub's cross-check against the actuals: the insights
    /// ask this for every model twice.
    pub fn forecast_edge_accuracy(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<AccuracySummary, StoreError> {
        self.fq_summary(
            &format!("{EDGE_SCORES} {SUMMARY}"),
            params![site, node, model, from_ms, to_ms],
        )
    }

    pub fn forecast_accuracy(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Accuracy, StoreError> {
        let bucket_ms = ((to_ms - from_ms) + MAX_ACCURACY_POINTS - 1) / MAX_ACCURACY_POINTS;
        let bucket_ms = bucket_ms.max(1);
        let edge_r = EDGE_SCORES;
        let key = params![site, node, model, from_ms, to_ms];
        let items = self.fq_buckets(&format!("{edge_r} {BUCKETS}"), key, from_ms, bucket_ms)?;
        let edge = self.fq_summary(&format!("{edge_r} {SUMMARY}"), key)?;
        let hub = self.fq_cross_check(site, node, model, from_ms, to_ms, bucket_ms)?;
        Ok(Accuracy {
            bucket_ms,
            items,
            edge,
            hub,
        })
    }

    fn fq_buckets(
        &self,
        sql: &str,
        key: &[&dyn duckdb::ToSql],
        from_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<AccuracyPoint>, StoreError> {
        let mut args: Vec<&dyn duckdb::ToSql> = key.to_vec();
        args.push(&from_ms);
        args.push(&bucket_ms);
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map(args.as_slice(), |r| {
            Ok(AccuracyPoint {
                ts_ms: r.get(0)?,
                mae: finite(r.get(1)?),
                mape: finite(r.get(2)?),
                n: r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn fq_summary(
        &self,
        sql: &str,
        key: &[&dyn duckdb::ToSql],
    ) -> Result<AccuracySummary, StoreError> {
        Ok(self.conn.query_row(sql, key, |r| {
            Ok(AccuracySummary {
                mae: finite(r.get(0)?),
                mape: finite(r.get(1)?),
                n: r.get::<_, i64>(2)?.max(0) as u64,
                forecasts: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?)
    }

    /// The hub's scoring: every value of the newest [`MAX_CROSS_CHECK`]
    /// forecasts (of the newest tag and step) against the window that
    /// contains its time; MAPE leaves out zero actuals.
    fn fq_cross_check(
        &self,
        site: &str,
        node: &str,
        model: &str,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<CrossCheck, StoreError> {
        let Some((tag, step_ms)) = self.fq_shape(site, node, model, from_ms, to_ms)? else {
            return Ok(CrossCheck::default());
        };
        let Some(width) = self.fq_width(site, node, &tag, step_ms)? else {
            return Ok(CrossCheck::default());
        };
        let in_range: i64 = self.conn.query_row(
            "SELECT count(DISTINCT origin_ms) FROM forecasts
             WHERE site = ? AND node = ? AND model = ? AND tag = ? AND step_ms = ?
               AND origin_ms >= ? AND origin_ms < ?",
            params![site, node, model, tag, step_ms, from_ms, to_ms],
            |r| r.get(0),
        )?;
        let r = format!(
            "WITH f AS (
                 SELECT * FROM (
                     SELECT origin_ms, step_ms, CAST(forecast AS DOUBLE[]) AS v FROM forecasts
                     WHERE site = ? AND node = ? AND model = ? AND tag = ? AND step_ms = ?
                       AND origin_ms >= ? AND origin_ms < ?
                     {NEWEST_PER_ORIGIN})
                 ORDER BY origin_ms DESC LIMIT {MAX_CROSS_CHECK}),
             p AS (
                 SELECT origin_ms, origin_ms + k * step_ms AS t, y FROM (
                     SELECT origin_ms, step_ms, unnest(v) AS y, unnest(range(len(v))) AS k FROM f)),
             a AS (
                 SELECT start_ms, start_ms + width_ms AS end_ms, coalesce(twa, mean) AS v
                 FROM aggregates
                 WHERE site = ? AND node = ? AND tag = ? AND width_ms = ?
                   AND start_ms >= ? - width_ms
                   AND start_ms < (SELECT max(origin_ms + len(v) * step_ms) FROM f)),
             j AS (
                 SELECT p.origin_ms, p.y, CASE WHEN p.t < a.end_ms THEN a.v END AS x
                 FROM p ASOF LEFT JOIN a ON p.t >= a.start_ms),
             r AS (
                 SELECT origin_ms, avg(abs(y - x)) AS mae,
                        avg(abs((y - x) / x)) FILTER (WHERE x <> 0) * 100 AS mape,
                        count(*) AS n, count(*) FILTER (WHERE x <> 0) AS nm
                 FROM j WHERE y IS NOT NULL AND x IS NOT NULL
                 GROUP BY origin_ms)"
        );
        let key = params![
            site, node, model, tag, step_ms, from_ms, to_ms, site, node, tag, width, from_ms
        ];
        let items = self.fq_buckets(&format!("{r} {BUCKETS}"), key, from_ms, bucket_ms)?;
        let s = self.fq_summary(&format!("{r} {SUMMARY}"), key)?;
        Ok(CrossCheck {
            mae: s.mae,
            mape: s.mape,
            n: s.n,
            forecasts: s.forecasts,
            width_ms: Some(width),
            items,
            truncated: in_range > MAX_CROSS_CHECK as i64,
        })
    }

    /// The newest explanation a model's edge sent.
    pub fn forecast_explanation(
        &self,
        site: &str,
        node: &str,
        model: &str,
    ) -> Result<Explanation, StoreError> {
        let row: Option<(i64, i64, String, String)> = self
            .conn
            .query_row(
                "SELECT scored_ms, origin_ms, version, explanation FROM forecast_quality
                 WHERE site = ? AND node = ? AND model = ? AND explanation <> '[]'
                 ORDER BY scored_ms DESC, seq DESC, origin_ms DESC LIMIT 1",
                params![site, node, model],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((ts_ms, origin_ms, version, json)) = row else {
            return Ok(Explanation::default());
        };
        #[derive(Deserialize)]
        struct Stored {
            feature: String,
            contribution: Option<f64>,
        }
        let items = serde_json::from_str::<Vec<Stored>>(&json)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                finite(s.contribution).map(|c| Contribution {
                    feature: s.feature,
                    contribution: c,
                })
            })
            .collect();
        Ok(Explanation {
            ts_ms: Some(ts_ms),
            origin_ms: Some(origin_ms),
            version: Some(version),
            items,
        })
    }
}

#[cfg(test)]
mod tests;
