//! KPI insights: a KPI that changed period over period, OEE's change split
//! into availability, performance and quality with Shapley values (which
//! add up exactly and need no logarithm of a zero).

use std::collections::BTreeMap;

use super::text::{hours, moved, over, pct, points, with_unit};
use super::{Figure, Insight, Kind, Params, enc, importance, link};
use crate::store::{KpiKey, KpiPoint, KpiSummary, SeriesKey, Store, StoreError};

/// An OEE change smaller than this (a ratio: 0.03 = 3 points) is not news.
pub const MIN_OEE_CHANGE: f64 = 0.03;
/// Any other KPI: a relative change of its mean smaller than this.
pub const MIN_RELATIVE_CHANGE: f64 = 0.10;
/// The state and fault-code tags searched for the code behind a fault-time
/// change: tags named like this on the KPI's node.
const CODE_TAG_SUFFIXES: &[&str] = &["state", "fault_code", "status_code", "stop_code"];
/// Buckets read per period to tell the time spent in each code.
const CODE_BUCKETS: i64 = 1000;

/// One KPI of one node, one window kind: its closed windows starting in
/// the previous and the current period.
#[derive(Debug, Clone)]
pub struct KpiWindows {
    pub key: KpiKey,
    pub unit: Option<String>,
    pub before: Vec<KpiPoint>,
    pub now: Vec<KpiPoint>,
}

/// The windows of every KPI in scope. Of a KPI's window kinds the one
/// with the most closed windows in both periods is kept (a 5-minute kind
/// over a shift kind), so a KPI is told about once.
pub(super) fn load(
    store: &Store,
    p: &Params,
    keys: &[KpiSummary],
) -> Result<Vec<KpiWindows>, StoreError> {
    let (b0, b1) = p.before();
    let mut best: BTreeMap<(String, String, String), KpiWindows> = BTreeMap::new();
    for s in keys.iter().filter(|s| p.applies(&s.site, &s.node)) {
        let key = KpiKey {
            site: s.site.clone(),
            node: s.node.clone(),
            kpi: s.kpi.clone(),
            window: s.window.clone(),
        };
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store.kpi_history(&key, b0, p.to_ms, after, 1000)?;
            let n = page.len();
            after = page.last().map(|k| k.start_ms);
            all.extend(page);
            if n < 1000 {
                break;
            }
        }
        // A rolling window ("5m", "1h") is never closed: the edge writes a
        // new one every slice, each overlapping the last. Those starting on
        // a multiple of its span tile the time without overlap, as closed
        // calendar windows do, and stand in for them.
        let span = rolling_span_ms(&s.window);
        let closed = all.into_iter().filter(|w| {
            w.end_ms <= p.to_ms
                && match span {
                    Some(span) => w.start_ms.rem_euclid(span) == 0 && w.end_ms - w.start_ms == span,
                    None => w.closed,
                }
        });
        let (mut before, mut now) = (Vec::new(), Vec::new());
        for w in closed {
            if w.start_ms >= b0 && w.start_ms < b1 {
                before.push(w);
            } else if w.start_ms >= p.from_ms {
                now.push(w);
            }
        }
        let kw = KpiWindows {
            key,
            unit: s.unit.clone(),
            before,
            now,
        };
        let id = (s.site.clone(), s.node.clone(), s.kpi.clone());
        let score = |k: &KpiWindows| (k.before.len().min(1) + k.now.len().min(1), k.now.len());
        match best.get(&id) {
            Some(old) if score(old) >= score(&kw) => {}
            _ => {
                best.insert(id, kw);
            }
        }
    }
    Ok(best.into_values().collect())
}

/// The span of a rolling window kind ("5m", "1h"); None for a calendar
/// one ("shift", "day", "week").
pub(super) fn rolling_span_ms(window: &str) -> Option<i64> {
    humantime::parse_duration(window)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .filter(|ms| *ms > 0)
}

fn fig(w: &KpiPoint, name: &str) -> Option<f64> {
    w.figures
        .get(name)
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite())
}

pub(super) fn is_oee(ws: &[KpiPoint]) -> bool {
    ws.iter().any(|w| {
        fig(w, "availability").is_some()
            && fig(w, "performance").is_some()
            && fig(w, "quality").is_some()
    })
}

/// Σ x·w / Σ w over the windows where both are defined.
fn weighted(
    ws: &[KpiPoint],
    x: impl Fn(&KpiPoint) -> Option<f64>,
    w: impl Fn(&KpiPoint) -> f64,
) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0.0);
    for k in ws {
        if let Some(v) = x(k) {
            let wt = w(k);
            if wt > 0.0 && wt.is_finite() {
                s += v * wt;
                n += wt;
            }
        }
    }
    (n > 0.0).then(|| s / n)
}

fn span_s(w: &KpiPoint) -> f64 {
    (w.end_ms - w.start_ms).max(0) as f64 / 1000.0
}

/// OEE's factors over a period: availability weighted by planned busy
/// time, performance by the run time it implies, quality by the quantity
/// produced; OEE is their product, so that the split adds up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OeeParts {
    pub a: f64,
    pub p: f64,
    pub q: f64,
    pub fault_s: f64,
    pub failures: f64,
}

impl OeeParts {
    pub fn oee(&self) -> f64 {
        self.a * self.p * self.q
    }
}

pub(super) fn oee_parts(ws: &[KpiPoint]) -> Option<OeeParts> {
    let pbt = |w: &KpiPoint| fig(w, "planned_busy_s").unwrap_or_else(|| span_s(w));
    let a = weighted(ws, |w| fig(w, "availability"), pbt)?;
    let p = weighted(
        ws,
        |w| fig(w, "performance"),
        |w| pbt(w) * fig(w, "availability").unwrap_or(0.0),
    )?;
    let q = weighted(
        ws,
        |w| fig(w, "quality"),
        |w| fig(w, "produced").unwrap_or_else(|| span_s(w)),
    )?;
    Some(OeeParts {
        a,
        p,
        q,
        fault_s: ws.iter().filter_map(|w| fig(w, "down_s")).sum(),
        failures: ws.iter().filter_map(|w| fig(w, "failures")).sum(),
    })
}

/// The Shapley split of a change of a product of three factors: each
/// factor's average marginal effect over the six orders of changing them.
/// The three parts add up to `a1·p1·q1 − a0·p0·q0` exactly (up to
/// rounding), whatever the values, zeros included.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Shapley {
    pub a: f64,
    pub p: f64,
    pub q: f64,
}

pub fn shapley(x0: (f64, f64, f64), x1: (f64, f64, f64)) -> Shapley {
    let part = |d: f64, (u0, v0): (f64, f64), (u1, v1): (f64, f64)| {
        d * ((u0 * v0 + u1 * v1) / 3.0 + (u0 * v1 + u1 * v0) / 6.0)
    };
    let (a0, p0, q0) = x0;
    let (a1, p1, q1) = x1;
    Shapley {
        a: part(a1 - a0, (p0, q0), (p1, q1)),
        p: part(p1 - p0, (a0, q0), (a1, q1)),
        q: part(q1 - q0, (a0, p0), (a1, p1)),
    }
}

/// Every KPI whose period value moved by more than its threshold.
pub(super) fn changes(
    store: &Store,
    p: &Params,
    all: &[KpiWindows],
) -> Result<Vec<Insight>, StoreError> {
    let mut out = Vec::new();
    for k in all {
        if k.before.is_empty() || k.now.is_empty() {
            continue;
        }
        let insight = if is_oee(&k.now) && is_oee(&k.before) {
            oee_change(store, p, k)?
        } else {
            plain_change(p, k)
        };
        out.extend(insight);
    }
    Ok(out)
}

pub(super) fn kpi_link(p: &Params, k: &KpiKey) -> String {
    link(
        "node",
        &k.site,
        &k.node,
        &format!("&kpi={}&window={}", enc(&k.kpi), enc(&k.window)),
        p.from_ms - p.period_ms(),
        p.to_ms,
    )
}

fn oee_change(store: &Store, p: &Params, k: &KpiWindows) -> Result<Option<Insight>, StoreError> {
    let (Some(o0), Some(o1)) = (oee_parts(&k.before), oee_parts(&k.now)) else {
        return Ok(None);
    };
    let (v0, v1) = (o0.oee(), o1.oee());
    let d = v1 - v0;
    if d.abs() < MIN_OEE_CHANGE {
        return Ok(None);
    }
    let s = shapley((o0.a, o0.p, o0.q), (o1.a, o1.p, o1.q));
    let name = if k.key.kpi.to_ascii_lowercase().contains("oee") {
        "OEE".to_owned()
    } else {
        format!("OEE ({})", k.key.kpi)
    };
    // The factors, largest share first, each with what explains it.
    let mut parts = [
        ("availability", s.a),
        ("performance", s.p),
        ("quality", s.q),
    ];
    parts.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    let mut code = None;
    if s.a.abs() >= 0.01 {
        // The code behind the change: the one whose time grew when fault
        // time grew, the one whose time shrank when it fell (otherwise a
        // recovery would be put down to the running state).
        code = state_code(store, p, &k.key, o1.fault_s >= o0.fault_s)?;
    }
    let said: Vec<String> = parts
        .iter()
        .filter(|(_, c)| c.abs() >= 0.005)
        .map(|(f, c)| {
            let mut t = format!("{f} explains {}", points(*c));
            if *f == "availability" && (o0.fault_s > 0.0 || o1.fault_s > 0.0) {
                let dir = if o1.fault_s >= o0.fault_s {
                    "up"
                } else {
                    "down"
                };
                t.push_str(&format!(
                    " (fault time {dir} from {} to {}",
                    hours(o0.fault_s),
                    hours(o1.fault_s)
                ));
                if let Some((tag, c, _)) = &code {
                    t.push_str(&format!(", mostly {tag} = {}", *c as i64));
                }
                t.push(')');
            }
            t
        })
        .collect();
    let text = format!(
        "{name} at node {} {} from {} to {} {}; {}.",
        k.key.node,
        moved(d),
        pct(v0),
        pct(v1),
        over(p.period_ms()),
        if said.is_empty() {
            "no single factor stands out".to_owned()
        } else {
            said.join(", ")
        }
    );
    let mut figures = vec![
        Figure::new("oee_before", Some(v0 * 100.0), "%"),
        Figure::new("oee_now", Some(v1 * 100.0), "%"),
        Figure::new("oee_change", Some(d * 100.0), "points"),
        Figure::new("availability_before", Some(o0.a * 100.0), "%"),
        Figure::new("availability_now", Some(o1.a * 100.0), "%"),
        Figure::new("performance_before", Some(o0.p * 100.0), "%"),
        Figure::new("performance_now", Some(o1.p * 100.0), "%"),
        Figure::new("quality_before", Some(o0.q * 100.0), "%"),
        Figure::new("quality_now", Some(o1.q * 100.0), "%"),
        Figure::new("availability_share", Some(s.a * 100.0), "points"),
        Figure::new("performance_share", Some(s.p * 100.0), "points"),
        Figure::new("quality_share", Some(s.q * 100.0), "points"),
        Figure::new("fault_hours_before", Some(o0.fault_s / 3600.0), "h"),
        Figure::new("fault_hours_now", Some(o1.fault_s / 3600.0), "h"),
        Figure::new("failures_before", Some(o0.failures), ""),
        Figure::new("failures_now", Some(o1.failures), ""),
        Figure::new("windows_before", Some(k.before.len() as f64), ""),
        Figure::new("windows_now", Some(k.now.len() as f64), ""),
    ];
    if let Some((tag, c, extra_s)) = &code {
        figures.push(Figure::new(&format!("code_{tag}"), Some(*c), ""));
        let sign = if o1.fault_s >= o0.fault_s { 1.0 } else { -1.0 };
        figures.push(Figure::new(
            "code_hours_added",
            Some(sign * extra_s / 3600.0),
            "h",
        ));
    }
    Ok(Some(Insight {
        kind: Kind::KpiChange,
        site: k.key.site.clone(),
        node: k.key.node.clone(),
        subject: k.key.kpi.clone(),
        text,
        importance: importance(40.0 + d.abs() * 400.0),
        figures,
        link: kpi_link(p, &k.key),
        from_ms: p.from_ms,
        to_ms: p.to_ms,
    }))
}

/// The state or fault code whose time grew most between the periods (or,
/// with `grew` false, shrank most), on the node's tags named like a state:
/// `(tag, code, seconds added or taken)`. The windows a bucket covers
/// whole with one code (min = max) count.
fn state_code(
    store: &Store,
    p: &Params,
    k: &KpiKey,
    grew: bool,
) -> Result<Option<(String, f64, f64)>, StoreError> {
    let tags = store.tags(Some(&k.site), Some(&k.node))?;
    let mut best: Option<(String, f64, f64)> = None;
    let (b0, b1) = p.before();
    let bucket = (p.period_ms() / CODE_BUCKETS).max(1);
    for t in tags.iter().filter(|t| {
        let n = t.tag.to_ascii_lowercase();
        CODE_TAG_SUFFIXES.iter().any(|s| n.ends_with(s))
    }) {
        let key = SeriesKey::new(&t.site, &t.node, &t.tag);
        let time = |from: i64, to: i64| -> Result<BTreeMap<i64, f64>, StoreError> {
            let s = store.series(&key, from, to, bucket)?;
            let mut m = BTreeMap::new();
            for i in 0..s.t.len() {
                if let (Some(lo), Some(hi)) = (s.min[i], s.max[i])
                    && lo == hi
                    && lo == lo.round()
                    && lo.abs() < 1e9
                {
                    *m.entry(lo as i64).or_insert(0.0) += s.bucket_ms as f64 / 1000.0;
                }
            }
            Ok(m)
        };
        let (t0, t1) = (time(b0, b1)?, time(p.from_ms, p.to_ms)?);
        let (more, less) = if grew { (&t1, &t0) } else { (&t0, &t1) };
        for (code, s1) in more {
            let moved = s1 - less.get(code).copied().unwrap_or(0.0);
            if moved > 0.0 && best.as_ref().is_none_or(|b| moved > b.2) {
                best = Some((t.tag.clone(), *code as f64, moved));
            }
        }
    }
    Ok(best)
}

fn plain_change(p: &Params, k: &KpiWindows) -> Option<Insight> {
    let mean = |ws: &[KpiPoint]| weighted(ws, |w| w.value, span_s);
    let (m0, m1) = (mean(&k.before)?, mean(&k.now)?);
    let rel = (m1 - m0) / m0.abs();
    if m0 == 0.0 || !rel.is_finite() || rel.abs() < MIN_RELATIVE_CHANGE {
        return None;
    }
    let unit = k.unit.as_deref();
    let text = format!(
        "{} at node {} {} from {} to {} ({:+.0} %) {}.",
        k.key.kpi,
        k.key.node,
        moved(rel),
        with_unit(m0, unit),
        with_unit(m1, unit),
        rel * 100.0,
        over(p.period_ms())
    );
    let u = unit.unwrap_or("");
    Some(Insight {
        kind: Kind::KpiChange,
        site: k.key.site.clone(),
        node: k.key.node.clone(),
        subject: k.key.kpi.clone(),
        text,
        importance: importance(20.0 + rel.abs() * 100.0),
        figures: vec![
            Figure::new("before", Some(m0), u),
            Figure::new("now", Some(m1), u),
            Figure::new("change", Some(rel * 100.0), "%"),
            Figure::new("windows_before", Some(k.before.len() as f64), ""),
            Figure::new("windows_now", Some(k.now.len() as f64), ""),
        ],
        link: kpi_link(p, &k.key),
        from_ms: p.from_ms,
        to_ms: p.to_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapley_adds_up_and_is_symmetric() {
        let cases = [
            ((0.9, 0.9, 1.0), (0.77, 0.87, 1.0)),
            ((0.0, 0.5, 0.9), (0.8, 0.6, 0.95)),
            ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ];
        for (x0, x1) in cases {
            let s = shapley(x0, x1);
            let d = x1.0 * x1.1 * x1.2 - x0.0 * x0.1 * x0.2;
            assert!((s.a + s.p + s.q - d).abs() < 1e-12, "{s:?} vs {d}");
        }
        // Only availability moved: it explains all of it.
        let s = shapley((0.9, 0.8, 1.0), (0.6, 0.8, 1.0));
        assert!((s.a - (0.6 - 0.9) * 0.8).abs() < 1e-12 && s.p == 0.0 && s.q == 0.0);
    }
}
