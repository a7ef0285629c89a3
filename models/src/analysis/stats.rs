//! Descriptive statistics and correlation. Missing values (`NaN`, and
//! infinities, which no aggregate should hold) are skipped and counted.

use serde::Serialize;

/// Summary of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Describe {
    /// Values used (finite).
    pub n: usize,
    /// Values skipped (NaN or infinite).
    pub missing: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator, as pandas);
    /// 0 when `n == 1`.
    pub std: f64,
    pub min: f64,
    /// 5th percentile (linear interpolation between order statistics, as
    /// numpy's and pandas' default).
    pub p05: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

/// Summary of `xs`; `None` when no value is finite.
pub fn describe(xs: &[f64]) -> Option<Describe> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mean = mean(&v);
    // Two-pass variance: no cancellation for large offsets (temperatures in K).
    let std = if n > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Describe {
        n,
        missing: xs.len() - n,
        mean,
        std,
        min: v[0],
        p05: quantile_sorted(&v, 0.05),
        median: quantile_sorted(&v, 0.5),
        p95: quantile_sorted(&v, 0.95),
        max: v[n - 1],
    })
}

fn mean(v: &[f64]) -> f64 {
    // Shifted sum: exact for constant series, stable for large offsets.
    let shift = v[0];
    shift + v.iter().map(|x| x - shift).sum::<f64>() / v.len() as f64
}

/// Quantile `q` of sorted finite values, numpy's "linear" method.
pub(crate) fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Median of the finite values of `xs` (numpy's `nanmedian`: the mean of the
/// two middle values for an even count). Reorders `xs`; NaN when empty.
pub(crate) fn median_in_place(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, &mut hi, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return hi;
    }
    let lo = xs[..n / 2]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(hi);
    lo + (hi - lo) / 2.0
}

/// The pairs where both values are finite; `None` when lengths differ.
fn complete_pairs(xs: &[f64], ys: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    if xs.len() != ys.len() {
        return None;
    }
    Some(
        xs.iter()
            .zip(ys)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (*x, *y))
            .unzip(),
    )
}

fn pearson_complete(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 3 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Pearson's correlation over the pairs where both values are present
/// (pairwise-complete, as pandas' `corr`). `None` when the lengths differ,
/// fewer than 3 pairs remain, or either side is constant.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (x, y) = complete_pairs(xs, ys)?;
    pearson_complete(&x, &y)
}

/// Spearman's rank correlation (ties get their average rank) over the
/// pairwise-complete values; `None` as for [`pearson`].
pub fn spearman(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (x, y) = complete_pairs(xs, ys)?;
    pearson_complete(&ranks(&x), &ranks(&y))
}

/// 1-based ranks, ties averaged (scipy's `rankdata(method="average")`).
pub(crate) fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            r[k] = avg;
        }
        i = j;
    }
    r
}
