//! Trend tests: Mann-Kendall with Sen's slope, its seasonal variant
//! (Hirsch & Slack), and a check for a daily cycle that tells callers when
//! to use the seasonal one.
//!
//! The numbers follow PyPI `pymannkendall` 1.4 (`original_test`,
//! `seasonal_test`) exactly — a test compares them — with one documented
//! difference: the seasonal slope is given per step, not per cycle.
//!
//! # Length
//! Both the score S and Sen's slope look at every pair of points: time and
//! memory grow with n². A call refuses (returns `None`) when the pairs
//! exceed [`MAX_PAIRS`] (4.5 million: 3,000 points for the original test,
//! ~36 MB of slopes and ~50 ms; the seasonal test counts pairs within each
//! season only, so `period` × (n / period)² / 2 must fit). Callers with
//! longer series aggregate first: hourly means of a week are 168 points,
//! daily means of a year 365; a trend over minute windows is rarely what an
//! analyst means anyway.

use serde::Serialize;

use super::normal;
use super::stats::median_in_place;

/// Pairs of points a test may compare (see the module docs).
pub const MAX_PAIRS: usize = 4_500_000;

/// Autocorrelation at the period lag, after removing a moving average of
/// one period, above which [`has_cycle`] says the series has a cycle.
pub const CYCLE_ACF_THRESHOLD: f64 = 0.3;

/// Direction of a significant trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Increasing,
    Decreasing,
    NoTrend,
}

/// Result of a Mann-Kendall test (names as in pymannkendall).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannKendall {
    /// Increasing or Decreasing when the two-sided test rejects "no trend"
    /// at `alpha` (|z| above the normal quantile 1 − alpha/2).
    pub trend: Trend,
    /// Mann-Kendall score: concordant minus discordant pairs.
    pub s: f64,
    /// Variance of S under no trend, corrected for ties.
    pub var_s: f64,
    /// Normal approximation with continuity correction: (S ∓ 1)/√var_s.
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// Kendall's tau: S over the number of pairs.
    pub tau: f64,
    /// Sen's slope, in value units per step (per window), also for the
    /// seasonal test (pymannkendall reports that one per cycle: multiply by
    /// the period to compare).
    pub slope: f64,
    /// Intercept of the Kendall-Theil line (Conover): the line is
    /// `intercept + slope · t`, t the step index from 0.
    pub intercept: f64,
}

/// The original Mann-Kendall test on `xs` (NaN skipped, as pymannkendall's
/// "skip"; Sen's slope keeps the original time positions). `None` with
/// fewer than 3 values, `alpha` outside (0, 1), or more than [`MAX_PAIRS`]
/// pairs.
pub fn mann_kendall(xs: &[f64], alpha: f64) -> Option<MannKendall> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .map(|(t, x)| (t as f64, *x))
        .collect();
    let n = pts.len();
    if n < 3 || n * (n - 1) / 2 > MAX_PAIRS {
        return None;
    }
    let vals: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let s = score(&vals);
    let var_s = variance_s(&vals);
    let pairs = n as f64 * (n - 1) as f64 / 2.0;
    let mut slopes = pair_slopes(&pts);
    let slope = median_in_place(&mut slopes);
    let intercept = conover_intercept(&pts, slope);
    Some(finish(s, var_s, pairs, alpha, slope, intercept))
}

/// Seasonal Mann-Kendall (Hirsch & Slack, pymannkendall's `seasonal_test`):
/// season k holds the points at t ≡ k (mod `period`); S, its variance and
/// the pairs add up over seasons, and Sen's slope is the median of the
/// within-season slopes. `None` when `period` is 0, fewer than 3 values,
/// `alpha` outside (0, 1), no season has two values, or too many pairs.
pub fn seasonal_mann_kendall(xs: &[f64], period: usize, alpha: f64) -> Option<MannKendall> {
    if period == 0 || !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let valid = xs.iter().filter(|x| !x.is_nan()).count();
    let cycles = xs.len().div_ceil(period);
    if valid < 3 || period.saturating_mul(cycles * cycles.saturating_sub(1) / 2) > MAX_PAIRS {
        return None;
    }
    let (mut s, mut var_s, mut pairs) = (0.0, 0.0, 0.0);
    let mut slopes = Vec::new();
    for k in 0..period {
        // Time in cycles, as pymannkendall's reshape into (cycles, period).
        let season: Vec<(f64, f64)> = xs
            .iter()
            .enumerate()
            .skip(k)
            .step_by(period)
            .filter(|(_, x)| !x.is_nan())
            .map(|(t, x)| ((t / period) as f64, *x))
            .collect();
        let vals: Vec<f64> = season.iter().map(|p| p.1).collect();
        let m = vals.len() as f64;
        s += score(&vals);
        var_s += variance_s(&vals);
        pairs += m * (m - 1.0) / 2.0;
        slopes.extend(pair_slopes(&season));
    }
    if pairs == 0.0 {
        return None;
    }
    let per_cycle = median_in_place(&mut slopes);
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .map(|(t, x)| (t as f64, *x))
        .collect();
    // pymannkendall: median(x) − median(t)/period · slope_per_cycle, which
    // is the same line with the slope per step.
    let slope = per_cycle / period as f64;
    let intercept = conover_intercept(&pts, slope);
    Some(finish(s, var_s, pairs, alpha, slope, intercept))
}

fn finish(s: f64, var_s: f64, pairs: f64, alpha: f64, slope: f64, intercept: f64) -> MannKendall {
    let z = if s > 0.0 && var_s > 0.0 {
        (s - 1.0) / var_s.sqrt()
    } else if s < 0.0 && var_s > 0.0 {
        (s + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    let p = normal::two_sided_p(z);
    let significant = z.abs() > normal::ppf(1.0 - alpha / 2.0);
    let trend = match (significant, z > 0.0) {
        (true, true) => Trend::Increasing,
        (true, false) => Trend::Decreasing,
        (false, _) => Trend::NoTrend,
    };
    MannKendall {
        trend,
        s,
        var_s,
        z,
        p,
        tau: if pairs > 0.0 { s / pairs } else { 0.0 },
        slope,
        intercept,
    }
}

/// S = Σ_{i<j} sign(x_j − x_i).
fn score(v: &[f64]) -> f64 {
    let mut s: i64 = 0;
    for (i, a) in v.iter().enumerate() {
        for b in &v[i + 1..] {
            s += i64::from(b > a) - i64::from(b < a);
        }
    }
    s as f64
}

/// Var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18 over tie groups of size t.
fn variance_s(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0
}

/// (x_j − x_i)/(t_j − t_i) for every pair i < j.
fn pair_slopes(pts: &[(f64, f64)]) -> Vec<f64> {
    let mut d = Vec::with_capacity(pts.len() * pts.len().saturating_sub(1) / 2);
    for (i, (ti, xi)) in pts.iter().enumerate() {
        for (tj, xj) in &pts[i + 1..] {
            d.push((xj - xi) / (tj - ti));
        }
    }
    d
}

/// median(x) − median(t) · slope over the present points.
fn conover_intercept(pts: &[(f64, f64)], slope: f64) -> f64 {
    let mut xs: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let mut ts: Vec<f64> = pts.iter().map(|p| p.0).collect();
    median_in_place(&mut xs) - median_in_place(&mut ts) * slope
}

/// Whether `xs` repeats with `period` steps (e.g. 1440 for a daily cycle
/// in minute windows, 24 in hourly ones): the autocorrelation at lag
/// `period` of the residual after a centred moving average of one period
/// exceeds [`CYCLE_ACF_THRESHOLD`]. Removing the moving average first keeps
/// trends and random walks, whose raw autocorrelation is high at any lag,
/// from passing for cycles. Needs at least 3 periods of data; NaN skipped.
pub fn has_cycle(xs: &[f64], period: usize) -> bool {
    cycle_strength(xs, period).is_some_and(|acf| acf > CYCLE_ACF_THRESHOLD)
}

/// The statistic behind [`has_cycle`]: the autocorrelation at lag `period`
/// of the residual from a centred moving average of one period, in
/// [-1, 1]; `None` with fewer than 3 periods or a constant residual.
pub fn cycle_strength(xs: &[f64], period: usize) -> Option<f64> {
    let n = xs.len();
    if period < 2 || n < 3 * period {
        return None;
    }
    // Prefix sums of values and counts for a NaN-aware moving average.
    let mut sum = vec![0.0; n + 1];
    let mut cnt = vec![0usize; n + 1];
    for (i, x) in xs.iter().enumerate() {
        let ok = x.is_finite();
        sum[i + 1] = sum[i] + if ok { *x } else { 0.0 };
        cnt[i + 1] = cnt[i] + usize::from(ok);
    }
    let half = period / 2;
    let mut resid = vec![f64::NAN; n];
    for (t, r) in resid
        .iter_mut()
        .enumerate()
        .take(n - (period - half) + 1)
        .skip(half)
    {
        let (a, b) = (t - half, t - half + period);
        let c = cnt[b] - cnt[a];
        if xs[t].is_finite() && c * 2 >= period {
            *r = xs[t] - (sum[b] - sum[a]) / c as f64;
        }
    }
    let mut present: Vec<f64> = resid.iter().copied().filter(|r| r.is_finite()).collect();
    if present.len() < 2 * period {
        return None;
    }
    // Winsorise at 4 robust standard deviations: a few hours of a tripped
    // unit would otherwise outweigh days of a daily pattern.
    let med = median_in_place(&mut present);
    let mut dev: Vec<f64> = present.iter().map(|r| (r - med).abs()).collect();
    let mad = 1.4826 * median_in_place(&mut dev);
    if mad > 0.0 {
        let (lo, hi) = (med - 4.0 * mad, med + 4.0 * mad);
        for r in resid.iter_mut().chain(present.iter_mut()) {
            if r.is_finite() {
                *r = r.clamp(lo, hi);
            }
        }
    }
    let m = present.iter().sum::<f64>() / present.len() as f64;
    let var = present.iter().map(|r| (r - m).powi(2)).sum::<f64>() / present.len() as f64;
    if var <= 0.0 {
        return None;
    }
    let (mut cov, mut pairs) = (0.0, 0usize);
    for t in 0..n - period {
        let (a, b) = (resid[t], resid[t + period]);
        if a.is_finite() && b.is_finite() {
            cov += (a - m) * (b - m);
            pairs += 1;
        }
    }
    (pairs > period).then(|| (cov / pairs as f64 / var).clamp(-1.0, 1.0))
}
