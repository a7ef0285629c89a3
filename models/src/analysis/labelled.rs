//! A labelled set for the anomaly detectors: anomalies of known kind, time
//! and size injected into base series (in this project, tags of the
//! simulated plant: `apos-bench anomalies`), and the precision and recall
//! of detections against them.
//!
//! Sizes are drawn in units of the base series' own robust scales, so one
//! set of parameters fits tags of any unit: spikes in units of the
//! window-to-window noise, level shifts in units of the typical change over
//! half an hour (`horizon` windows), drifts in units of the typical change
//! over six hours (`drift_horizon`). Both scales are reported
//! with each label's absolute size.

use serde::Serialize;

use super::anomaly::{Anomaly, AnomalyKind};
use super::stats::median_in_place;

/// One injected anomaly over windows `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Label {
    pub kind: AnomalyKind,
    pub start: usize,
    pub end: usize,
    /// Signed size in the series' unit (the held value for Stuck).
    pub size: f64,
    /// Size in units of the scale it was drawn in (run length for Stuck).
    pub relative: f64,
}

/// How many anomalies of each kind, and how large (ranges drawn uniformly).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InjectConfig {
    pub spikes: usize,
    pub level_shifts: usize,
    pub drifts: usize,
    pub stuck: usize,
    /// Spike height, in robust standard deviations of the first differences / √2.
    pub spike_size: (f64, f64),
    /// Windows of the horizon whose typical change scales shifts and drifts.
    pub horizon: usize,
    /// Level shift, in robust spreads of the change over `horizon`.
    pub shift_size: (f64, f64),
    /// Windows of the horizon whose typical change scales drifts: a drift
    /// is only a drift when it outgrows the process's own wander over a
    /// comparable time.
    pub drift_horizon: usize,
    /// Drift's total change, in robust spreads of the change over
    /// `drift_horizon`.
    pub drift_size: (f64, f64),
    /// Drift duration, windows (a ramp, then the offset stays).
    pub drift_len: (usize, usize),
    /// Stuck run length, windows.
    pub stuck_len: (usize, usize),
    /// Free windows kept between injected anomalies and around blocked ones.
    pub margin: usize,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            spikes: 3,
            level_shifts: 2,
            drifts: 1,
            stuck: 2,
            spike_size: (10.0, 30.0),
            horizon: 30,
            shift_size: (8.0, 16.0),
            drift_horizon: 360,
            drift_size: (4.0, 8.0),
            drift_len: (360, 720),
            stuck_len: (30, 180),
            margin: 180,
        }
    }
}

/// SplitMix64: seeded and stable, so a labelled set is the same everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    pub fn range_usize(&mut self, (lo, hi): (usize, usize)) -> usize {
        lo + (self.uniform() * (hi.saturating_sub(lo) + 1) as f64) as usize
    }
    pub fn sign(&mut self) -> f64 {
        if self.uniform() < 0.5 { -1.0 } else { 1.0 }
    }
}

/// Robust scales of a series: (noise, change over `horizon` windows).
pub fn scales(xs: &[f64], horizon: usize) -> (f64, f64) {
    let spread = |d: Vec<f64>| {
        let mut d: Vec<f64> = d.into_iter().filter(|v| v.is_finite()).collect();
        let med = median_in_place(&mut d);
        let mut dev: Vec<f64> = d.iter().map(|v| (v - med).abs()).collect();
        1.4826 * median_in_place(&mut dev)
    };
    let noise = spread(xs.windows(2).map(|w| w[1] - w[0]).collect()) / 2f64.sqrt();
    let h = horizon.max(1);
    let change = spread(
        xs.iter()
            .zip(xs.iter().skip(h))
            .map(|(a, b)| b - a)
            .collect(),
    );
    (noise, change)
}

/// `base` with anomalies injected, and their labels (ordered by start).
/// `blocked[t]` marks windows no anomaly may touch (e.g. a unit trip,
/// which is a real change of its own); an anomaly that finds no free place
/// after many tries is left out.
pub fn inject(
    base: &[f64],
    blocked: &[bool],
    seed: u64,
    cfg: &InjectConfig,
) -> (Vec<f64>, Vec<Label>) {
    let n = base.len();
    let mut rng = SplitMix::new(seed);
    let (noise, change) = scales(base, cfg.horizon);
    let slow = scales(base, cfg.drift_horizon).1;
    let mut x = base.to_vec();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let mut labels = Vec::new();
    let m = cfg.margin;
    let place = |len: usize, rng: &mut SplitMix, taken: &mut Vec<(usize, usize)>| {
        if n < len + 2 * m + 2 {
            return None;
        }
        for _ in 0..2000 {
            let start = m + 1 + (rng.uniform() * (n - len - 2 * m - 1) as f64) as usize;
            let (a, b) = (start - m, (start + len + m).min(n));
            let free = taken.iter().all(|&(s, e)| b <= s || e <= a)
                && !blocked.get(a..b).is_some_and(|w| w.iter().any(|&v| v));
            if free {
                taken.push((a, b));
                return Some(start);
            }
        }
        None
    };
    // Stuck runs go last, so that they hold the value other anomalies left.
    let mut plan: Vec<AnomalyKind> = Vec::new();
    plan.extend(std::iter::repeat_n(AnomalyKind::Spike, cfg.spikes));
    plan.extend(std::iter::repeat_n(
        AnomalyKind::LevelShift,
        cfg.level_shifts,
    ));
    plan.extend(std::iter::repeat_n(AnomalyKind::Drift, cfg.drifts));
    plan.extend(std::iter::repeat_n(AnomalyKind::Stuck, cfg.stuck));
    for kind in plan {
        match kind {
            AnomalyKind::Spike => {
                let rel = rng.range(cfg.spike_size) * rng.sign();
                let Some(t) = place(1, &mut rng, &mut taken) else {
                    continue;
                };
                x[t] += rel * noise;
                labels.push(Label {
                    kind,
                    start: t,
                    end: t + 1,
                    size: rel * noise,
                    relative: rel,
                });
            }
            AnomalyKind::LevelShift => {
                let rel = rng.range(cfg.shift_size) * rng.sign();
                let Some(t) = place(1, &mut rng, &mut taken) else {
                    continue;
                };
                for v in &mut x[t..] {
                    *v += rel * change;
                }
                labels.push(Label {
                    kind,
                    start: t,
                    end: t + 1,
                    size: rel * change,
                    relative: rel,
                });
            }
            AnomalyKind::Drift => {
                let rel = rng.range(cfg.drift_size) * rng.sign();
                let len = rng.range_usize(cfg.drift_len).max(1);
                let Some(t) = place(len, &mut rng, &mut taken) else {
                    continue;
                };
                let size = rel * slow;
                for (i, v) in x[t..].iter_mut().enumerate() {
                    *v += size * ((i + 1) as f64 / len as f64).min(1.0);
                }
                labels.push(Label {
                    kind,
                    start: t,
                    end: t + len,
                    size,
                    relative: rel,
                });
            }
            AnomalyKind::Stuck => {
                let len = rng.range_usize(cfg.stuck_len).max(2);
                let Some(t) = place(len, &mut rng, &mut taken) else {
                    continue;
                };
                let held = x[..t]
                    .iter()
                    .rev()
                    .copied()
                    .find(|v| v.is_finite())
                    .unwrap_or(0.0);
                x[t..t + len].fill(held);
                labels.push(Label {
                    kind,
                    start: t,
                    end: t + len,
                    size: held,
                    relative: len as f64,
                });
            }
        }
    }
    labels.sort_by_key(|l| l.start);
    (x, labels)
}

/// One series of a labelled set, with what the detector found in it.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    pub labels: &'a [Label],
    pub detections: &'a [Anomaly],
    /// Windows of real process events (trips): detections touching them
    /// and matching no label are counted apart, not as false positives.
    pub blocked: &'a [bool],
}

/// Precision and recall of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KindScore {
    pub kind: AnomalyKind,
    pub labels: usize,
    /// Labels matched by at least one detection of their kind.
    pub found: usize,
    /// Detections matching a label of their kind.
    pub true_detections: usize,
    /// Detections matching nothing, away from process events.
    pub false_detections: usize,
    /// Detections matching nothing, on a process event (not counted).
    pub on_events: usize,
    pub precision: f64,
    pub recall: f64,
}

/// Whether detection `d` matches label `l`: same kind, and `d`'s windows
/// widened by `tolerance` on each side overlap `l`'s.
pub fn matches(d: &Anomaly, l: &Label, tolerance: usize) -> bool {
    d.kind == l.kind && d.start.saturating_sub(tolerance) < l.end && l.start < d.end + tolerance
}

/// Precision and recall per kind over all cases (1.0 when there is nothing
/// to be precise or to recall about).
pub fn evaluate(cases: &[Case<'_>], tolerance: usize) -> Vec<KindScore> {
    AnomalyKind::ALL
        .iter()
        .map(|&kind| {
            let mut s = KindScore {
                kind,
                labels: 0,
                found: 0,
                true_detections: 0,
                false_detections: 0,
                on_events: 0,
                precision: 1.0,
                recall: 1.0,
            };
            for c in cases {
                for l in c.labels.iter().filter(|l| l.kind == kind) {
                    s.labels += 1;
                    if c.detections.iter().any(|d| matches(d, l, tolerance)) {
                        s.found += 1;
                    }
                }
                for d in c.detections.iter().filter(|d| d.kind == kind) {
                    if c.labels.iter().any(|l| matches(d, l, tolerance)) {
                        s.true_detections += 1;
                    } else if c
                        .blocked
                        .get(
                            d.start.saturating_sub(tolerance)
                                ..(d.end + tolerance).min(c.blocked.len()),
                        )
                        .is_some_and(|w| w.iter().any(|&b| b))
                    {
                        s.on_events += 1;
                    } else {
                        s.false_detections += 1;
                    }
                }
            }
            let det = s.true_detections + s.false_detections;
            if det > 0 {
                s.precision = s.true_detections as f64 / det as f64;
            }
            if s.labels > 0 {
                s.recall = s.found as f64 / s.labels as f64;
            }
            s
        })
        .collect()
}
