//! Forecast accuracy that degraded: a model's mean absolute error over the
//! current period against its error over the four periods before it, as
//! the edge scored its forecasts (protocol `ForecastQuality`).

use super::text::{num, over};
use super::{Figure, Insight, Kind, Params, importance, link};
use crate::store::{Store, StoreError};

/// The error must have grown by this factor (1.5 = 50 % worse)…
pub const MIN_MAE_RATIO: f64 = 1.5;
/// …over at least this many scored forecasts in each of the two spans.
pub const MIN_FORECASTS: u64 = 5;
/// The earlier accuracy: this many periods before the current one.
pub const BASELINE_PERIODS: i64 = 4;

pub(super) fn degraded(store: &Store, p: &Params) -> Result<Vec<Insight>, StoreError> {
    let mut out = Vec::new();
    let base_from = p.from_ms - BASELINE_PERIODS * p.period_ms();
    for m in store.forecast_models(p.site.as_deref(), p.node.as_deref())? {
        if m.last_origin_ms < p.from_ms {
            continue;
        }
        let now = store.forecast_edge_accuracy(&m.site, &m.node, &m.model, p.from_ms, p.to_ms)?;
        let base =
            store.forecast_edge_accuracy(&m.site, &m.node, &m.model, base_from, p.from_ms)?;
        if now.forecasts < MIN_FORECASTS || base.forecasts < MIN_FORECASTS {
            continue;
        }
        let (Some(e1), Some(e0)) = (now.mae, base.mae) else {
            continue;
        };
        let ratio = if e0 > 0.0 { e1 / e0 } else { f64::INFINITY };
        if ratio < MIN_MAE_RATIO || e1 <= e0 {
            continue;
        }
        let mape = match (base.mape, now.mape) {
            (Some(a), Some(b)) => format!(", MAPE {a:.1} % → {b:.1} %"),
            _ => String::new(),
        };
        let text = format!(
            "Forecast {} of {} at node {} got worse: mean absolute error {} → {} ({}× the earlier {} periods{mape}), {} forecasts scored {}.",
            m.model,
            m.tag,
            m.node,
            num(e0),
            num(e1),
            if ratio.is_finite() {
                format!("{ratio:.1}")
            } else {
                "∞".into()
            },
            BASELINE_PERIODS,
            now.forecasts,
            over(p.period_ms()),
        );
        out.push(Insight {
            kind: Kind::ForecastDegraded,
            site: m.site.clone(),
            node: m.node.clone(),
            subject: m.model.clone(),
            text,
            importance: importance(30.0 + 25.0 * ratio.min(16.0).log2()),
            figures: vec![
                Figure::new("mae_before", Some(e0), ""),
                Figure::new("mae_now", Some(e1), ""),
                Figure::new("mae_ratio", Some(ratio), ""),
                Figure::new("mape_before", base.mape, "%"),
                Figure::new("mape_now", now.mape, "%"),
                Figure::new("forecasts_before", Some(base.forecasts as f64), ""),
                Figure::new("forecasts_now", Some(now.forecasts as f64), ""),
            ],
            link: link("forecasts", &m.site, &m.node, "", base_from, p.to_ms),
            from_ms: p.from_ms,
            to_ms: p.to_ms,
        });
    }
    Ok(out)
}
