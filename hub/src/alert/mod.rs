//! Alerting: rules from the hub config (`[[alert]]`) evaluated every
//! `[alerts] interval` on what the fleet database says, with firing and
//! resolved transitions delivered by webhook, logged, sent to the live
//! dashboards and kept in `alerts.db` (docs/hub.md, "Alerts").
//!
//! ```text
//! every interval: read pool ──NodeFacts──▶ Machine::step (pure, here) ──Transition──┐
//!      ┌───────────────────────────────────────────────────────────────────────────┘
//!      ├─▶ log line   ├─▶ alerts.db (history + delivery attempts)
//!      ├─▶ Event::Alert (live broadcast)   └─▶ webhook queue (bounded, FIFO, retried)
//! ```
//!
//! This module is the state machine and nothing else: no clock, no I/O, so
//! that its promises (no flapping, one resolve per firing) are tested with
//! generated sequences. `eval` feeds it, `webhook` delivers, `db` keeps.

pub mod db;
pub mod eval;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::config::{Rule, RuleKind};

pub use eval::{AlertError, start};

/// What the hub knows about one node at one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    pub site: String,
    pub node: String,
    /// When the hub last stored something of it (hub clock); `None`: never.
    pub last_seen_ms: Option<i64>,
    /// The edge's outbox in its latest status report.
    pub outbox_batches: Option<u64>,
    /// Sequence numbers below the highest one stored that are missing.
    pub missing: u64,
    /// The latest alarm-health report's flood flag.
    pub in_flood: Option<bool>,
    /// Alarm activations in the journal over the last 10 minutes.
    pub activations_10min: u64,
    /// (kpi, window) → the newest closed windows' headline values, newest
    /// first (`None`: undefined, never counted as below or above).
    pub kpis: BTreeMap<(String, String), Vec<Option<f64>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// An alert fired or resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// `{rule}/{site}/{node}/{since_ms}`: the same for an alert's firing
    /// and its resolve, new for the next firing.
    pub id: String,
    pub rule: String,
    pub kind: String,
    pub site: String,
    pub node: String,
    pub state: AlertState,
    /// When it fired.
    pub since_ms: i64,
    /// When this transition happened.
    pub ts_ms: i64,
    pub message: String,
    /// The figure the rule looked at (age in s, batches, missing, KPI value,
    /// activations); `None` where there is none.
    pub value: Option<f64>,
}

/// A firing alert, as kept across a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    pub id: String,
    pub rule: String,
    pub site: String,
    pub node: String,
    pub since_ms: i64,
    pub message: String,
    pub value: Option<f64>,
}

#[derive(Debug)]
struct Track {
    id: String,
    since_ms: i64,
    /// First evaluation of the current run of "condition false".
    false_since: Option<i64>,
}

/// Backlog samples kept per node at most (older ones are dropped first).
const MAX_SAMPLES: usize = 4096;

/// The rules' state: which alerts fire, since when, and the backlog
/// samples that `backlog_growing` needs.
#[derive(Debug)]
pub struct Machine {
    rules: Vec<Rule>,
    interval_ms: i64,
    /// Reference for nodes never heard from: offline counts from here.
    started_ms: i64,
    tracks: BTreeMap<(String, String, String), Track>,
    /// (site, node) → (ts_ms, outbox_batches), one sample per change.
    backlog: BTreeMap<(String, String), VecDeque<(i64, u64)>>,
    backlog_keep_ms: i64,
}

/// (message, value) of a condition that holds.
type Holds = Option<(String, Option<f64>)>;

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Machine {
    pub fn new(rules: Vec<Rule>, interval: std::time::Duration, started_ms: i64) -> Machine {
        let backlog_keep_ms = rules
            .iter()
            .filter_map(|r| match r.kind {
                RuleKind::BacklogGrowing { period, .. } => Some(ms(period)),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Machine {
            rules,
            interval_ms: ms(interval).max(1),
            started_ms,
            tracks: BTreeMap::new(),
            backlog: BTreeMap::new(),
            backlog_keep_ms,
        }
    }

    /// Take up the alerts that were firing before a restart (those of rules
    /// that still exist), so they resolve rather than fire again.
    pub fn restore(&mut self, active: impl IntoIterator<Item = Active>) {
        for a in active {
            if self.rules.iter().any(|r| r.name == a.rule) {
                self.tracks.insert(
                    (a.rule, a.site, a.node),
                    Track {
                        id: a.id,
                        since_ms: a.since_ms,
                        false_since: None,
                    },
                );
            }
        }
    }

    /// The KPI windows the rules read: (kpi, window, how many newest).
    pub fn kpi_needs(&self) -> Vec<(String, String, u32)> {
        let mut need: BTreeMap<(String, String), u32> = BTreeMap::new();
        for r in &self.rules {
            if let RuleKind::KpiBelow {
                kpi,
                window,
                windows,
                ..
            } = &r.kind
            {
                let n = need.entry((kpi.clone(), window.clone())).or_default();
                *n = (*n).max(*windows);
            }
        }
        need.into_iter().map(|((k, w), n)| (k, w, n)).collect()
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.tracks.len()
    }

    /// One evaluation at `now_ms` over every node the hub knows or lists.
    /// A node absent from `nodes` counts as "condition false".
    pub fn step(&mut self, now_ms: i64, nodes: &[NodeFacts]) -> Vec<Transition> {
        self.sample_backlog(now_ms, nodes);
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for ri in 0..self.rules.len() {
            for nf in nodes {
                let rule = &self.rules[ri];
                if !rule.applies_to(&nf.site, &nf.node) {
                    continue;
                }
                let holds = self.holds(rule, nf, now_ms);
                let key = (rule.name.clone(), nf.site.clone(), nf.node.clone());
                seen.insert(key.clone());
                if let Some(t) = self.advance(key, now_ms, holds) {
                    out.push(t);
                }
            }
        }
        let gone: Vec<_> = self
            .tracks
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(t) = self.advance(key, now_ms, None) {
                out.push(t);
            }
        }
        out
    }

    fn kind_of(&self, rule: &str) -> &'static str {
        self.rules
            .iter()
            .find(|r| r.name == rule)
            .map_or("unknown", |r| r.kind.name())
    }

    /// The hysteresis: fire when the condition holds; resolve only once it
    /// has been false at every evaluation for one full interval.
    fn advance(
        &mut self,
        key: (String, String, String),
        now_ms: i64,
        holds: Holds,
    ) -> Option<Transition> {
        let kind = self.kind_of(&key.0).to_owned();
        let (rule, site, node) = key.clone();
        match (self.tracks.get_mut(&key), holds) {
            (None, None) => None,
            (None, Some((message, value))) => {
                let id = format!("{rule}/{site}/{node}/{now_ms}");
                self.tracks.insert(
                    key,
                    Track {
                        id: id.clone(),
                        since_ms: now_ms,
                        false_since: None,
                    },
                );
                Some(Transition {
                    id,
                    rule,
                    kind,
                    site,
                    node,
                    state: AlertState::Firing,
                    since_ms: now_ms,
                    ts_ms: now_ms,
                    message,
                    value,
                })
            }
            (Some(t), Some(_)) => {
                t.false_since = None;
                None
            }
            (Some(t), None) => {
                let since = *t.false_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) < self.interval_ms {
                    return None;
                }
                let t = self.tracks.remove(&key)?;
                Some(Transition {
                    id: t.id,
                    message: format!("{site}/{node}: {}", cleared(&kind)),
                    rule,
                    kind,
                    site,
                    node,
                    state: AlertState::Resolved,
                    since_ms: t.since_ms,
                    ts_ms: now_ms,
                    value: None,
                })
            }
        }
    }

    fn sample_backlog(&mut self, now_ms: i64, nodes: &[NodeFacts]) {
        if self.backlog_keep_ms == 0 {
            return;
        }
        for nf in nodes {
            let Some(b) = nf.outbox_batches else { continue };
            let s = self
                .backlog
                .entry((nf.site.clone(), nf.node.clone()))
                .or_default();
            if s.back().is_none_or(|&(_, v)| v != b) {
                s.push_back((now_ms, b));
            }
            // Keep the newest sample at or before the longest period's
            // start: it is the value the period starts from.
            let start = now_ms.saturating_sub(self.backlog_keep_ms);
            while s.len() > 1 && s.get(1).is_some_and(|&(t, _)| t <= start) {
                s.pop_front();
            }
            while s.len() > MAX_SAMPLES {
                s.pop_front();
            }
        }
    }

    fn holds(&self, rule: &Rule, nf: &NodeFacts, now_ms: i64) -> Holds {
        let who = format!("{}/{}", nf.site, nf.node);
        match &rule.kind {
            RuleKind::NodeOffline { after } => {
                let since = nf.last_seen_ms.unwrap_or(self.started_ms);
                let age = now_ms.saturating_sub(since);
                (age >= ms(*after)).then(|| {
                    let what = match nf.last_seen_ms {
                        Some(_) => "not heard from for",
                        None => "never heard from since the hub started,",
                    };
                    (
                        format!("{who}: {what} {}", human(age)),
                        Some(age as f64 / 1000.0),
                    )
                })
            }
            RuleKind::BacklogGrowing {
                period,
                min_batches,
            } => {
                let s = self.backlog.get(&(nf.site.clone(), nf.node.clone()))?;
                let start = now_ms.saturating_sub(ms(*period));
                let base = s.iter().rposition(|&(t, _)| t <= start)?;
                let run: Vec<u64> = s.iter().skip(base).map(|&(_, v)| v).collect();
                let (first, last) = (*run.first()?, *run.last()?);
                let rising = run.windows(2).all(|w| w[1] >= w[0]) && last > first;
                (rising && last >= *min_batches).then(|| {
                    (
                        format!(
                            "{who}: outbox grew from {first} to {last} batches over {}",
                            human(ms(*period))
                        ),
                        Some(last as f64),
                    )
                })
            }
            RuleKind::SequenceGaps { min_missing } => (nf.missing >= *min_missing).then(|| {
                (
                    format!("{who}: {} sequence numbers missing", nf.missing),
                    Some(nf.missing as f64),
                )
            }),
            RuleKind::KpiBelow {
                kpi,
                window,
                target,
                windows,
                above,
            } => {
                let vals = nf.kpis.get(&(kpi.clone(), window.clone()))?;
                let n = *windows as usize;
                let last: Vec<f64> = vals.iter().take(n).copied().collect::<Option<_>>()?;
                let missed = |v: f64| if *above { v > *target } else { v < *target };
                (last.len() == n && last.iter().all(|&v| missed(v))).then(|| {
                    (
                        format!(
                            "{who}: {kpi} ({window}) {} {target} in the last {n} closed windows (newest {:.3})",
                            if *above { "above" } else { "below" },
                            last[0]
                        ),
                        Some(last[0]),
                    )
                })
            }
            RuleKind::AlarmFlood { max_per_10min } => {
                if nf.in_flood == Some(true) {
                    return Some((
                        format!("{who}: alarm flood (alarm-health report)"),
                        Some(nf.activations_10min as f64),
                    ));
                }
                let max = (*max_per_10min)?;
                (nf.activations_10min > max).then(|| {
                    (
                        format!(
                            "{who}: {} alarm activations in 10 minutes (more than {max})",
                            nf.activations_10min
                        ),
                        Some(nf.activations_10min as f64),
                    )
                })
            }
        }
    }
}

fn cleared(kind: &str) -> &'static str {
    match kind {
        "node_offline" => "heard from again",
        "backlog_growing" => "outbox no longer growing",
        "sequence_gaps" => "no sequence numbers missing (below the rule's minimum)",
        "kpi_below" => "KPI back on target",
        "alarm_flood" => "alarm flood over",
        _ => "condition cleared",
    }
}

/// A duration for a message, to the second.
fn human(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(
        u64::try_from(ms / 1000).unwrap_or(0),
    ))
    .to_string()
}

#[cfg(test)]
mod tests;
