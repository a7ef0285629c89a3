//! Anomaly and change detection on aggregates: one value per window (e.g.
//! the mean of a tag over one minute), `NaN` for a missing window.
//!
//! Four small detectors, each with a robust scale so that thresholds read
//! as "this many typical deviations" whatever the tag's unit:
//! - **Stuck**: a run of at least `stuck_min_len` identical values (missing
//!   windows inside the run are skipped), unless the series is quantised
//!   anyway (too many equal neighbours elsewhere, or equal runs longer than
//!   `stuck_min_len` on average: a state code, or a sensor stuck for most
//!   of the range, which this detector then misses).
//! - **Spike**: a short run (≤ `spike_max_len` windows) whose residual from
//!   a centred running median exceeds `spike_threshold` local robust
//!   standard deviations (1.4826 · MAD of the residuals around it).
//! - **Level shift**: the difference between the medians of the
//!   `shift_window` windows after and before a point, in units of the same
//!   difference's robust spread over the whole series, peaking above
//!   `shift_threshold`, and abrupt: most of it happens within a few
//!   windows (a drift or a slow process change spreads it out).
//! - **Drift**: over spans of `drift_span_blocks` block means of
//!   `drift_block` windows, a monotonic (Kendall's tau ≥ `drift_min_tau`)
//!   change (Sen's slope × span) above `drift_threshold` robust spreads of
//!   that change; overlapping spans of one sign merge into one drift.
//!
//! With `period` (e.g. 1440 minute windows in a day, when
//! [`super::trend::has_cycle`] says so) a daily profile — the median of
//! each phase over the cycles, smoothed — is removed first, so that the
//! daily swing is neither a drift nor a level shift. Stuck runs are found
//! on the raw values and hidden from the other detectors; spikes are
//! replaced by the running median before shifts and drifts are looked for.
//!
//! Cost: O(n · window) (running medians by selection): ~0.3–0.5 million
//! windows per second optimised (a week of one tag in minute windows in
//! ~30 ms), several times slower unoptimised; see `apos-bench anomalies`.
//! Methods, parameters, what they miss, and measured precision and recall:
//! `docs/analysis.md`.

use serde::{Deserialize, Serialize};

use super::stats::median_in_place;

/// What an anomaly looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Spike,
    LevelShift,
    Drift,
    Stuck,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 4] = [
        AnomalyKind::Spike,
        AnomalyKind::LevelShift,
        AnomalyKind::Drift,
        AnomalyKind::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Spike => "spike",
            AnomalyKind::LevelShift => "level_shift",
            AnomalyKind::Drift => "drift",
            AnomalyKind::Stuck => "stuck",
        }
    }
}

/// One detection, over windows `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub start: usize,
    pub end: usize,
    /// In the series' unit: the spike's excursion from the running median,
    /// the shift's change of level, the drift's change over its span
    /// (signed), or for Stuck the value the sensor is stuck at.
    pub size: f64,
    /// How far past its threshold: robust z for spikes, shifts and drifts;
    /// run length over `stuck_min_len` for stuck runs. Higher = surer.
    pub score: f64,
}

/// Parameters of [`detect`]; windows count aggregate windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorConfig {
    /// Running-median window that spikes are measured from (odd).
    pub baseline_window: usize,
    /// Window of the local robust scale of the residuals (odd).
    pub scale_window: usize,
    pub spike_threshold: f64,
    pub spike_max_len: usize,
    /// How many times the residuals just before and after the spike its
    /// peak residual must be.
    pub spike_isolation: f64,
    /// Windows on each side compared for a level shift.
    pub shift_window: usize,
    pub shift_threshold: f64,
    /// Share of the shift that must happen within `shift_window / 6`
    /// windows of the change point.
    pub shift_abruptness: f64,
    pub drift_block: usize,
    pub drift_span_blocks: usize,
    pub drift_threshold: f64,
    pub drift_min_tau: f64,
    pub stuck_min_len: usize,
    /// Above this share of equal neighbours outside long runs, the series
    /// is quantised (a counter, a state) and runs are not reported.
    pub stuck_max_flat_fraction: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            baseline_window: 15,
            scale_window: 241,
            spike_threshold: 7.0,
            spike_max_len: 3,
            spike_isolation: 3.0,
            shift_window: 30,
            shift_threshold: 8.0,
            shift_abruptness: 0.5,
            drift_block: 30,
            drift_span_blocks: 12,
            drift_threshold: 3.5,
            drift_min_tau: 0.9,
            stuck_min_len: 15,
            stuck_max_flat_fraction: 0.2,
        }
    }
}

/// MAD to standard deviation under normality.
const MAD_SD: f64 = 1.4826;

/// Anomalies in `xs`, ordered by start. `period`: steps per cycle whose
/// profile is removed first (ignored unless the series covers two cycles).
pub fn detect(xs: &[f64], period: Option<usize>, cfg: &DetectorConfig) -> Vec<Anomaly> {
    let n = xs.len();
    let mut out = Vec::new();
    if n < 3 {
        return out;
    }
    let stuck = stuck_runs(xs, cfg);
    let mut y = xs.to_vec();
    for a in &stuck {
        y[a.start..a.end].fill(f64::NAN);
    }
    out.extend(stuck);
    for v in y.iter_mut() {
        if !v.is_finite() {
            *v = f64::NAN;
        }
    }
    if let Some(p) = period.filter(|&p| p >= 2 && n >= 2 * p) {
        remove_profile(&mut y, p);
    }
    if y.iter().filter(|v| v.is_finite()).count() < 3 {
        return out;
    }

    let baseline = running_median(&y, cfg.baseline_window.max(3) / 2);
    let resid: Vec<f64> = y.iter().zip(&baseline).map(|(a, b)| a - b).collect();
    let scale = local_scale(&resid, cfg.scale_window.max(3) / 2, &y);
    let spikes = spikes(&resid, &scale, cfg);
    let mut clean = y.clone();
    for a in &spikes {
        clean[a.start..a.end].copy_from_slice(&baseline[a.start..a.end]);
    }
    out.extend(spikes);
    let shifts = level_shifts(&clean, cfg, scale_floor(&y));
    let drifts = drifts(&clean, cfg, &shifts);
    out.extend(shifts);
    out.extend(drifts);
    out.sort_by(|a, b| a.start.cmp(&b.start).then(a.kind.cmp(&b.kind)));
    out
}

fn stuck_runs(xs: &[f64], cfg: &DetectorConfig) -> Vec<Anomaly> {
    let min_len = cfg.stuck_min_len.max(2);
    // Runs of equal consecutive present values: (first index, last index, count).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut last: Option<(f64, usize)> = None;
    for (i, &x) in xs.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        match (last, runs.last_mut()) {
            (Some((v, _)), Some(run)) if v == x => {
                run.1 = i;
                run.2 += 1;
            }
            _ => runs.push((i, i, 1)),
        }
        last = Some((x, i));
    }
    let present: usize = runs.iter().map(|r| r.2).sum();
    if present < 2 {
        return Vec::new();
    }
    let flat_short: usize = runs.iter().filter(|r| r.2 < min_len).map(|r| r.2 - 1).sum();
    // Quantised: many short equal runs, or runs longer than a stuck one on
    // average (a state code, a counter that rarely moves).
    if flat_short as f64 / (present - 1) as f64 > cfg.stuck_max_flat_fraction
        || runs.len() * min_len < present
    {
        return Vec::new();
    }
    runs.iter()
        .filter(|r| r.2 >= min_len)
        .map(|&(a, b, count)| Anomaly {
            kind: AnomalyKind::Stuck,
            start: a,
            end: b + 1,
            size: xs[a],
            score: count as f64 / min_len as f64,
        })
        .collect()
}

/// Subtract each phase's median over the cycles (smoothed over 1/24 of a
/// cycle, i.e. an hour of a day), centred on the overall median.
fn remove_profile(y: &mut [f64], period: usize) {
    let mut raw = vec![f64::NAN; period];
    let mut buf = Vec::new();
    for (k, r) in raw.iter_mut().enumerate() {
        buf.clear();
        buf.extend(y.iter().skip(k).step_by(period).filter(|v| v.is_finite()));
        *r = median_in_place(&mut buf);
    }
    let half = period / 48;
    let mut profile = vec![f64::NAN; period];
    for (k, p) in profile.iter_mut().enumerate() {
        let (mut s, mut c) = (0.0, 0usize);
        for d in 0..=2 * half {
            let v = raw[(k + period + d - half) % period];
            if v.is_finite() {
                s += v;
                c += 1;
            }
        }
        if c > 0 {
            *p = s / c as f64;
        }
    }
    let mut finite: Vec<f64> = profile.iter().copied().filter(|v| v.is_finite()).collect();
    let centre = median_in_place(&mut finite);
    if !centre.is_finite() {
        return;
    }
    for (t, v) in y.iter_mut().enumerate() {
        let p = profile[t % period];
        if p.is_finite() {
            *v -= p - centre;
        }
    }
}

/// Median of the present values in `[t − half, t + half]`, for every t.
fn running_median(y: &[f64], half: usize) -> Vec<f64> {
    let mut buf = Vec::with_capacity(2 * half + 1);
    (0..y.len())
        .map(|t| {
            buf.clear();
            let a = t.saturating_sub(half);
            let b = (t + half + 1).min(y.len());
            buf.extend(y[a..b].iter().filter(|v| v.is_finite()));
            median_in_place(&mut buf)
        })
        .collect()
}

/// Median of the present values in `y[a..b]`, if at least `min` are present.
fn window_median(y: &[f64], a: usize, b: usize, min: usize, buf: &mut Vec<f64>) -> Option<f64> {
    buf.clear();
    buf.extend(y[a..b].iter().filter(|v| v.is_finite()));
    (buf.len() >= min.max(1)).then(|| median_in_place(buf))
}

/// A floor for scales, so that flat stretches do not divide by ~0.
fn scale_floor(y: &[f64]) -> f64 {
    let mut abs: Vec<f64> = y
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .collect();
    1e-9 * (1.0 + median_in_place(&mut abs).max(0.0))
}

/// Robust local standard deviation of the residuals (1.4826 · median |r|
/// over `[t − half, t + half]`), computed every few windows and held, and
/// floored at a quarter of the global one.
fn local_scale(resid: &[f64], half: usize, y: &[f64]) -> Vec<f64> {
    let n = resid.len();
    let mut abs: Vec<f64> = resid
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .collect();
    let global = MAD_SD * median_in_place(&mut abs);
    // A smooth series (a slow temperature averaged over a minute) leaves
    // almost no residual around a running median: its window-to-window
    // changes set the floor instead.
    let diffs: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let step = robust_spread(&diffs) / std::f64::consts::SQRT_2;
    let floor = (0.25 * global).max(0.5 * step).max(scale_floor(y));
    let stride = (half / 8).max(1);
    let mut out = vec![floor; n];
    let mut buf = Vec::with_capacity(2 * half + 1);
    let mut t = 0;
    while t < n {
        let a = t.saturating_sub(half);
        let b = (t + half + 1).min(n);
        buf.clear();
        buf.extend(
            resid[a..b]
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| v.abs()),
        );
        let s = if buf.is_empty() {
            floor
        } else {
            (MAD_SD * median_in_place(&mut buf)).max(floor)
        };
        let end = (t + stride).min(n);
        out[t..end].fill(s);
        t = end;
    }
    out
}

fn spikes(resid: &[f64], scale: &[f64], cfg: &DetectorConfig) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let z: Vec<f64> = resid.iter().zip(scale).map(|(r, s)| r / s).collect();
    let flagged = |t: usize| z[t].is_finite() && z[t].abs() > cfg.spike_threshold;
    let mut t = 0;
    while t < z.len() {
        if !flagged(t) {
            t += 1;
            continue;
        }
        let sign = z[t].signum();
        let start = t;
        while t < z.len() && flagged(t) && z[t].signum() == sign {
            t += 1;
        }
        // A spike stands out from its neighbours too: at a smooth crest
        // of a quiet series the running median also leaves residuals, but
        // their neighbours' are as large.
        let beside = [start.checked_sub(1), (t < z.len()).then_some(t)]
            .into_iter()
            .flatten()
            .map(|u| resid[u].abs())
            .filter(|r| r.is_finite())
            .fold(0.0, f64::max);
        let peak_r = (start..t).map(|u| resid[u].abs()).fold(0.0, f64::max);
        if t - start <= cfg.spike_max_len.max(1) && peak_r >= cfg.spike_isolation * beside {
            let peak = (start..t)
                .max_by(|&a, &b| z[a].abs().total_cmp(&z[b].abs()))
                .unwrap_or(start);
            out.push(Anomaly {
                kind: AnomalyKind::Spike,
                start,
                end: t,
                size: resid[peak],
                score: z[peak].abs(),
            });
        }
    }
    out
}

fn robust_spread(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let med = median_in_place(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    MAD_SD * median_in_place(&mut dev)
}

fn level_shifts(y: &[f64], cfg: &DetectorConfig, floor: f64) -> Vec<Anomaly> {
    let n = y.len();
    let w = cfg.shift_window.max(4);
    if n < 2 * w + 1 {
        return Vec::new();
    }
    let mut buf = Vec::with_capacity(w);
    let mut d = vec![f64::NAN; n];
    for (t, dt) in d.iter_mut().enumerate().take(n - w + 1).skip(w) {
        let left = window_median(y, t - w, t, w / 2, &mut buf);
        let right = window_median(y, t, t + w, w / 2, &mut buf);
        if let (Some(l), Some(r)) = (left, right) {
            *dt = r - l;
        }
    }
    let spread = robust_spread(&d).max(floor);
    let short = (w / 6).max(3);
    let mut out = Vec::new();
    for t in w..=n - w {
        let dt = d[t];
        if !dt.is_finite() || (dt / spread).abs() <= cfg.shift_threshold {
            continue;
        }
        // The peak of |d| within ±w only (first one on ties).
        let (a, b) = (t.saturating_sub(w), (t + w + 1).min(n));
        let is_peak = (a..b).all(|u| {
            let du = d[u].abs();
            !du.is_finite() || du < dt.abs() || (du == dt.abs() && u >= t)
        });
        if !is_peak {
            continue;
        }
        // The change point: where the short-window step is largest near t
        // (d peaks anywhere the long windows straddle the step, and a slow
        // process trend moves its peak by a few windows).
        let mut best: Option<(usize, f64)> = None;
        for u in t.saturating_sub(w / 2).max(short)..(t + w / 2).min(n - short) {
            let near = (
                window_median(y, u - short, u, 1, &mut buf),
                window_median(y, u, u + short, 1, &mut buf),
            );
            if let (Some(l), Some(r)) = near {
                let step = (r - l) / dt;
                if best.is_none_or(|(_, b)| step > b) {
                    best = Some((u, step));
                }
            }
        }
        let (t, abrupt) = match best {
            Some((u, step)) => (u, step >= cfg.shift_abruptness),
            None => (t, false),
        };
        if abrupt {
            out.push(Anomaly {
                kind: AnomalyKind::LevelShift,
                start: t,
                end: t + 1,
                size: dt,
                score: (dt / spread).abs(),
            });
        }
    }
    out
}

/// Sen's slope and Kendall's tau of `(t, v)` points.
fn sen_tau(pts: &[(f64, f64)]) -> (f64, f64) {
    let mut slopes = Vec::with_capacity(pts.len() * pts.len() / 2);
    let mut s = 0i64;
    for (i, (ti, vi)) in pts.iter().enumerate() {
        for (tj, vj) in &pts[i + 1..] {
            slopes.push((vj - vi) / (tj - ti));
            s += i64::from(vj > vi) - i64::from(vj < vi);
        }
    }
    let pairs = slopes.len() as f64;
    (median_in_place(&mut slopes), s as f64 / pairs.max(1.0))
}

fn drifts(y: &[f64], cfg: &DetectorConfig, shifts: &[Anomaly]) -> Vec<Anomaly> {
    let b = cfg.drift_block.max(1);
    let k = cfg.drift_span_blocks.max(4);
    let blocks: Vec<f64> = y
        .chunks(b)
        .map(|c| {
            let (s, m) = c
                .iter()
                .filter(|v| v.is_finite())
                .fold((0.0, 0usize), |(s, m), v| (s + v, m + 1));
            if m * 2 >= c.len() {
                s / m as f64
            } else {
                f64::NAN
            }
        })
        .collect();
    if blocks.len() < 2 * k {
        return Vec::new();
    }
    // (change over the span, tau) for the span starting at each block.
    let spans: Vec<(f64, f64)> = (0..=blocks.len() - k)
        .map(|j| {
            let pts: Vec<(f64, f64)> = (j..j + k)
                .filter(|&i| blocks[i].is_finite())
                .map(|i| (i as f64, blocks[i]))
                .collect();
            if pts.len() * 3 < k * 2 {
                return (f64::NAN, 0.0);
            }
            let (slope, tau) = sen_tau(&pts);
            (slope * (k - 1) as f64, tau)
        })
        .collect();
    let changes: Vec<f64> = spans.iter().map(|s| s.0).collect();
    let spread = robust_spread(&changes).max(scale_floor(y));
    let flagged: Vec<bool> = spans
        .iter()
        .map(|(c, tau)| {
            c.is_finite()
                && (c / spread).abs() > cfg.drift_threshold
                && tau.abs() >= cfg.drift_min_tau
                && c.signum() == tau.signum()
        })
        .collect();
    let mut out = Vec::new();
    let mut j = 0;
    while j < spans.len() {
        if !flagged[j] {
            j += 1;
            continue;
        }
        let sign = spans[j].0.signum();
        let first = j;
        let mut score: f64 = 0.0;
        while j < spans.len() && flagged[j] && spans[j].0.signum() == sign {
            score = score.max((spans[j].0 / spread).abs());
            j += 1;
        }
        // Blocks first..j-1+k cover the merged spans.
        let last_block = (j - 1 + k).min(blocks.len());
        let pts: Vec<(f64, f64)> = (first..last_block)
            .filter(|&i| blocks[i].is_finite())
            .map(|i| (i as f64, blocks[i]))
            .collect();
        let (slope, _) = sen_tau(&pts);
        let size = slope * (last_block - first - 1) as f64;
        let start = first * b;
        let end = (last_block * b).min(y.len());
        let explained = shifts.iter().any(|s| {
            s.start >= start
                && s.start < end
                && s.size.signum() == sign
                && s.size.abs() >= 0.5 * size.abs()
        });
        if !explained {
            out.push(Anomaly {
                kind: AnomalyKind::Drift,
                start,
                end,
                size,
                score,
            });
        }
    }
    out
}
