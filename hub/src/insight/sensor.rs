//! Sensors that are stuck or drifting: each tag's windows over the
//! period, downsampled to at most [`POINTS`] buckets of its mean (all tags
//! in one scan: `Store::bucket_means`), through
//! `models::analysis::anomaly::detect` (docs/analysis.md); only its
//! `Stuck` and `Drift` findings are insights here (spikes and level
//! shifts are events, not a sensor's condition).

use models::analysis::anomaly::{self, AnomalyKind, DetectorConfig};
use models::analysis::trend;

use super::text::{num, span};
use super::{Figure, Insight, Kind, Params, enc, importance, link};
use crate::store::{Store, StoreError};

/// Buckets per period given to the detector.
pub const POINTS: i64 = 480;
/// Fewer known buckets than this: too little to judge.
pub const MIN_POINTS: usize = 24;
/// A stuck stretch shorter than this share of the period is not told.
pub const MIN_STUCK_SHARE: f64 = 0.10;

pub(super) fn stuck_or_drifting(store: &Store, p: &Params) -> Result<Vec<Insight>, StoreError> {
    let bucket = (p.period_ms() / POINTS).max(1);
    let cfg = DetectorConfig::default();
    let mut out = Vec::new();
    let all = store.bucket_means(
        p.site.as_deref(),
        p.node.as_deref(),
        p.from_ms,
        p.to_ms,
        bucket,
    )?;
    for m in &all {
        let t = &m.key;
        let b = m.bucket_ms.max(1);
        let n = usize::try_from((p.to_ms - p.from_ms + b - 1) / b).unwrap_or(0);
        if n == 0 {
            continue;
        }
        let lo = p.from_ms - p.from_ms.rem_euclid(b);
        let mut ys = vec![f64::NAN; n + 1];
        for (ts, v) in m.t.iter().zip(&m.mean) {
            let k = usize::try_from((ts - lo) / b).unwrap_or(usize::MAX);
            if let Some(y) = ys.get_mut(k) {
                *y = *v;
            }
        }
        let known: Vec<f64> = ys.iter().copied().filter(|v| v.is_finite()).collect();
        // A value that never moved in the period is a constant (a setpoint,
        // a parameter), not a sensor that got stuck: stuck means it moved
        // and then stopped.
        if known.len() < MIN_POINTS
            || discrete_or_counter(&known)
            || known.iter().all(|v| *v == known[0])
        {
            continue;
        }
        let per_day = usize::try_from(86_400_000 / b).unwrap_or(0);
        let period = (per_day >= 2 && ys.len() >= 2 * per_day && trend::has_cycle(&ys, per_day))
            .then_some(per_day);
        let (lo_v, hi_v) = spread(&known);
        for a in anomaly::detect(&ys, period, &cfg) {
            let kind = match a.kind {
                AnomalyKind::Stuck => Kind::SensorStuck,
                AnomalyKind::Drift => Kind::SensorDrift,
                _ => continue,
            };
            let start = lo + a.start as i64 * b;
            let end = (lo + (a.end as i64 + 1) * b).min(p.to_ms);
            let len = (end - start).max(0);
            let frac = len as f64 / p.period_ms() as f64;
            let at = ys
                .get(a.start..=a.end.min(ys.len().saturating_sub(1)))
                .and_then(|w| w.iter().copied().find(|v| v.is_finite()));
            let (text, imp) = match kind {
                Kind::SensorStuck => {
                    if frac < MIN_STUCK_SHARE {
                        continue;
                    }
                    (
                        format!(
                            "Sensor {} at node {} read {} without change for {} ({:.0} % of the period).",
                            t.tag,
                            t.node,
                            at.map_or("–".into(), num),
                            span(len),
                            frac * 100.0
                        ),
                        35.0 + 40.0 * frac.min(1.0),
                    )
                }
                _ => {
                    let rel = if hi_v > lo_v {
                        a.size.abs() / (hi_v - lo_v)
                    } else {
                        1.0
                    };
                    (
                        format!(
                            "Sensor {} at node {} drifted by {}{} over {} (its 5–95 % range in the period is {}).",
                            t.tag,
                            t.node,
                            if a.size >= 0.0 { "+" } else { "" },
                            num(a.size),
                            span(len),
                            num(hi_v - lo_v)
                        ),
                        25.0 + 35.0 * rel.min(1.0),
                    )
                }
            };
            out.push(Insight {
                kind,
                site: t.site.clone(),
                node: t.node.clone(),
                subject: t.tag.clone(),
                text,
                importance: importance(imp),
                figures: vec![
                    Figure::new("start_ms", Some(start as f64), "ms"),
                    Figure::new("end_ms", Some(end as f64), "ms"),
                    Figure::new("hours", Some(len as f64 / 3.6e6), "h"),
                    Figure::new("size", Some(a.size), ""),
                    Figure::new("score", Some(a.score), ""),
                    Figure::new("value", at, ""),
                    Figure::new("bucket_ms", Some(b as f64), "ms"),
                ],
                link: link(
                    "tags",
                    &t.site,
                    &t.node,
                    &format!("&tag={}", enc(&t.tag)),
                    p.from_ms,
                    p.to_ms,
                ),
                from_ms: p.from_ms,
                to_ms: p.to_ms,
            });
        }
    }
    // One insight per sensor and kind, its most important stretch: a
    // sensor stuck twice in a period is one problem to look at.
    out.sort_by(|a, b| b.importance.total_cmp(&a.importance));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|i| seen.insert((i.site.clone(), i.node.clone(), i.subject.clone(), i.kind)));
    Ok(out)
}

/// A state code (few whole-number values) or a counter (never falls): a
/// flat or rising line is what such a tag does, not a fault.
fn discrete_or_counter(v: &[f64]) -> bool {
    let whole = v.iter().all(|x| *x == x.round());
    let mut distinct: Vec<i64> = Vec::new();
    if whole {
        for x in v {
            let k = *x as i64;
            if !distinct.contains(&k) {
                distinct.push(k);
                if distinct.len() > 16 {
                    break;
                }
            }
        }
    }
    let counter = v.windows(2).all(|w| w[1] >= w[0]) && v.last() > v.first();
    (whole && distinct.len() <= 16) || counter
}

/// The 5 % and 95 % quantiles.
fn spread(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |f: f64| s[((s.len() - 1) as f64 * f).round() as usize];
    (q(0.05), q(0.95))
}
