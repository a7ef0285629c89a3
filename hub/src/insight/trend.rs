//! A KPI whose windows in the current period trend significantly:
//! Mann-Kendall with Sen's slope, the seasonal test (by day) when the
//! series has a daily cycle (`models::analysis::trend`).

use models::analysis::trend::{self, Trend};

use super::kpi::{KpiWindows, is_oee};
use super::text::{points, with_unit};
use super::{Figure, Insight, Kind, Params, importance};

/// Significance level of the test.
pub const TREND_ALPHA: f64 = 0.01;
/// Fewest windows with a value.
pub const TREND_MIN_WINDOWS: usize = 12;
/// The smallest change over the period worth telling, relative to the
/// mean (OEE: 2 points, i.e. 0.4 × this in ratio).
pub const TREND_MIN_RELATIVE: f64 = 0.05;

/// KPIs whose windows in the current period trend significantly.
pub(super) fn trends(p: &Params, all: &[KpiWindows]) -> Vec<Insight> {
    let mut out = Vec::new();
    for k in all {
        let ws = &k.now;
        let ys: Vec<f64> = ws.iter().map(|w| w.value.unwrap_or(f64::NAN)).collect();
        let known = ys.iter().filter(|v| v.is_finite()).count();
        if known < TREND_MIN_WINDOWS {
            continue;
        }
        let width = ws
            .first()
            .map(|w| (w.end_ms - w.start_ms).max(1))
            .unwrap_or(1);
        let per_day = usize::try_from(86_400_000 / width).unwrap_or(0);
        let seasonal = per_day >= 2 && ys.len() >= 2 * per_day && trend::has_cycle(&ys, per_day);
        let mk = if seasonal {
            trend::seasonal_mann_kendall(&ys, per_day, TREND_ALPHA)
        } else {
            trend::mann_kendall(&ys, TREND_ALPHA)
        };
        let Some(mk) = mk else { continue };
        if mk.trend == Trend::NoTrend || mk.p.is_nan() || mk.p >= TREND_ALPHA {
            continue;
        }
        let finite: Vec<f64> = ys.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let total = mk.slope * (ys.len().saturating_sub(1)) as f64;
        let oee = is_oee(ws);
        let big = if oee {
            total.abs() >= TREND_MIN_RELATIVE * 0.4
        } else {
            mean != 0.0 && (total / mean).abs() >= TREND_MIN_RELATIVE
        };
        if !big {
            continue;
        }
        let per_day_change = mk.slope * 86_400_000.0 / width as f64;
        let unit = k.unit.as_deref();
        let (amount, rate) = if oee {
            (points(total), format!("{} a day", points(per_day_change)))
        } else {
            (
                with_unit(total.abs(), unit),
                format!("{} a day", with_unit(per_day_change.abs(), unit)),
            )
        };
        let text = format!(
            "{} at node {} {} by {} over the last {} ({}; Mann-Kendall{} p = {:.1e}, {} windows).",
            k.key.kpi,
            k.key.node,
            if total >= 0.0 {
                "rose steadily"
            } else {
                "fell steadily"
            },
            amount,
            super::text::span(p.period_ms()),
            rate,
            if seasonal { ", seasonal by day," } else { "" },
            mk.p,
            known
        );
        let u = unit.unwrap_or("");
        out.push(Insight {
            kind: Kind::KpiTrend,
            site: k.key.site.clone(),
            node: k.key.node.clone(),
            subject: k.key.kpi.clone(),
            text,
            importance: importance(
                20.0 + 40.0
                    * (if oee {
                        total.abs() * 10.0
                    } else {
                        (total / mean).abs() * 2.0
                    })
                    .min(1.0),
            ),
            figures: vec![
                Figure::new("slope_per_window", Some(mk.slope), u),
                Figure::new("slope_per_day", Some(per_day_change), u),
                Figure::new("change_over_period", Some(total), u),
                Figure::new("mean", Some(mean), u),
                Figure::new("p_value", Some(mk.p), ""),
                Figure::new("z", Some(mk.z), ""),
                Figure::new("tau", Some(mk.tau), ""),
                Figure::new("windows", Some(known as f64), ""),
                Figure::new(
                    "seasonal_period",
                    seasonal.then_some(per_day as f64),
                    "windows",
                ),
            ],
            link: super::kpi::kpi_link(p, &k.key),
            from_ms: p.from_ms,
            to_ms: p.to_ms,
        });
    }
    out
}
