//! What a report says, gathered in one read: the site's KPIs over the
//! period (against the period before), its insights, trends, alarms and
//! data quality.

use std::collections::BTreeMap;

use crate::insight::{self, Insight, Kind, Params};
use crate::store::{AlarmEntry, AlarmQuery, Quality, Store, StoreError};

/// One KPI of one node over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiLine {
    pub node: String,
    pub kpi: String,
    pub window: String,
    pub unit: Option<String>,
    /// Mean of the closed windows' values weighted by their length.
    pub mean: Option<f64>,
    pub mean_before: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub windows: usize,
    /// The figures are ratios (OEE and its parts): shown as percent.
    pub ratio: bool,
}

/// One alarm's activity in the period.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmLine {
    pub node: String,
    pub alarm: String,
    pub priority: u8,
    pub activations: u64,
    pub last_ms: i64,
    pub last_state: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub site: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub kpis: Vec<KpiLine>,
    pub insights: Vec<Insight>,
    pub alarms: Vec<AlarmLine>,
    /// Journal entries read (at most [`MAX_ALARM_ENTRIES`]).
    pub alarm_entries: usize,
    pub alarms_truncated: bool,
    pub quality: Quality,
}

/// Journal entries a report reads at most.
pub const MAX_ALARM_ENTRIES: usize = 1000;

pub fn collect(
    s: &Store,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Content, StoreError> {
    let p = Params {
        site: Some(site.to_owned()),
        node: None,
        from_ms,
        to_ms,
        now_ms,
    };
    let insights = insight::generate(s, &p)?;
    let keys = s.kpi_summary(Some(site), None)?;
    let kpis = insight::kpi_windows(s, &p, &keys)?
        .into_iter()
        .map(|k| {
            let stats = |ws: &[crate::store::KpiPoint]| {
                let (mut sum, mut wt, mut lo, mut hi) =
                    (0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
                for w in ws {
                    if let Some(v) = w.value {
                        let d = (w.end_ms - w.start_ms).max(1) as f64;
                        sum += v * d;
                        wt += d;
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
                (
                    (wt > 0.0).then(|| sum / wt),
                    lo.is_finite().then_some(lo),
                    hi.is_finite().then_some(hi),
                )
            };
            let (mean, min, max) = stats(&k.now);
            let (mean_before, _, _) = stats(&k.before);
            KpiLine {
                ratio: insight::is_oee_like(&k.now),
                node: k.key.node,
                kpi: k.key.kpi,
                window: k.key.window,
                unit: k.unit,
                mean,
                mean_before,
                min,
                max,
                windows: k.now.len(),
            }
        })
        .collect();
    let (entries, more) = s.alarm_page(&AlarmQuery {
        site: Some(site.to_owned()),
        node: None,
        active: false,
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        after: None,
        limit: MAX_ALARM_ENTRIES,
    })?;
    let quality = s.quality(Some(site), None, from_ms, to_ms, now_ms)?;
    Ok(Content {
        site: site.to_owned(),
        from_ms,
        to_ms,
        kpis,
        alarms: alarm_lines(&entries),
        alarm_entries: entries.len(),
        alarms_truncated: more.is_some(),
        insights,
        quality,
    })
}

/// Activations per alarm, most first.
fn alarm_lines(entries: &[AlarmEntry]) -> Vec<AlarmLine> {
    let mut by: BTreeMap<(String, String), AlarmLine> = BTreeMap::new();
    // Entries come newest first: the first seen of an alarm is its last state.
    for e in entries {
        let l = by
            .entry((e.node.clone(), e.alarm.clone()))
            .or_insert_with(|| AlarmLine {
                node: e.node.clone(),
                alarm: e.alarm.clone(),
                priority: e.priority,
                activations: 0,
                last_ms: e.ts_ms,
                last_state: e.state.clone(),
            });
        if e.change == "activated" {
            l.activations += 1;
        }
        l.priority = l.priority.max(e.priority);
    }
    let mut v: Vec<AlarmLine> = by.into_values().collect();
    v.sort_by(|a, b| {
        b.activations
            .cmp(&a.activations)
            .then(b.priority.cmp(&a.priority))
            .then(a.alarm.cmp(&b.alarm))
    });
    v
}

/// The trend insights, for the report's own section.
pub fn trends(c: &Content) -> Vec<&Insight> {
    c.insights
        .iter()
        .filter(|i| i.kind == Kind::KpiTrend)
        .collect()
}
