//! Linear process models fitted from plant history: steady-state detection,
//! least squares (or ridge) and an honest check on a held-out period.
//!
//! Pure: the caller hands in aligned columns (one row per time window, e.g.
//! 1-minute means; `NaN` = missing) and their timestamps in milliseconds.
//!
//! # Steady-state detection
//!
//! **A row is steady when, over the `window` rows ending with it (default
//! 10), every input and the output stays inside a band (max − min) no wider
//! than its tolerance; a column's default tolerance is `k` (default 6) times
//! its median absolute change between consecutive rows over the whole
//! period.**
//!
//! Details:
//! - The window must be complete: each of its rows has a value in every used
//!   column, and no two consecutive rows in it are further apart in time than
//!   1.5 × the median time step (a gap hides what happened). The first
//!   `window − 1` rows are therefore never steady.
//! - Why this default: for a signal that is only noise the median absolute
//!   change is about 0.95 σ, so the band is about 5.7 σ, which ten samples of
//!   white noise exceed only ~0.2 % of the time; a ramp is rejected as soon
//!   as it travels further than that band within one window. A held setpoint
//!   changes by 0 between most rows, so its tolerance is (almost) 0: rows are
//!   steady only once the last step has left the window, which also gives
//!   the process `window` rows to settle after a move.
//! - 1e-9 × the column's largest |value| is added to every default tolerance
//!   so that rounding in the averages of a constant setpoint is not mistaken
//!   for movement.
//! - A configured tolerance ([`Column::tolerance`], in the column's unit)
//!   replaces the default. Configure one for sample-and-hold signals (an
//!   analyser that updates every few minutes has a median change of 0, so the
//!   default would call every update a move).
//!
//! # Fit
//!
//! Only steady rows are used. They are split in time order: the last
//! `test_fraction` of them (default 25 %, rounded up) are held out as the
//! test set, the rest train. Inputs are standardised (centred on their
//! training mean, divided by their population standard deviation), the
//! output centred; the intercept is never penalised (centring makes it the
//! mean exactly).
//! - [`Method::Ols`]: minimise Σ residual², solved by Householder QR of the
//!   standardised design (no normal equations, so no squared condition).
//!   An input whose standardised column has less than 1e-6 of its norm
//!   outside the span of the inputs before it is collinear and refused by
//!   name ([`FitError::Collinear`]).
//! - [`Method::Ridge`]: minimise Σ residual² + λ Σ β², β the coefficients of
//!   the standardised inputs (λ in the same sum-of-squares scale, not per
//!   row), solved by QR of the design stacked on √λ·I.
//!
//! An input is refused ([`FitError::NotVaried`]) when its range over the
//! steady rows is no wider than its steady tolerance: it never moved beyond
//! its noise, so its effect cannot be estimated.
//!
//! Quality ([`FitQuality`]) comes from the train/test fit: R² on each set
//! (against that set's own mean), the training residual standard deviation
//! `√(SSE / (n_train − p − 1))`, the test RMSE. The returned coefficients
//! come from a **refit on all steady rows** (train and test), so the model
//! uses the most recent data while the reported figures stay out-of-sample.
//! `input_ranges` are the min/max of each input over all steady rows (the
//! data the final coefficients saw): outside them a prediction extrapolates.
//!
//! Steady rows of overlapping windows are not independent: `n_train` counts
//! rows, not independent observations, so `residual_std` is somewhat
//! optimistic; `rmse_test` is the figure to trust.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One aligned column of history.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub tag: &'a str,
    /// One value per row, `NaN` (or any non-finite value) = missing.
    pub values: &'a [f64],
    /// Steady band (max − min over the window) in the column's unit; `None`:
    /// `k` × the median absolute change between consecutive rows.
    pub tolerance: Option<f64>,
}

impl<'a> Column<'a> {
    pub fn new(tag: &'a str, values: &'a [f64]) -> Self {
        Self {
            tag,
            values,
            tolerance: None,
        }
    }

    pub fn with_tolerance(self, tolerance: f64) -> Self {
        Self {
            tolerance: Some(tolerance),
            ..self
        }
    }
}

/// Estimator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Method {
    Ols,
    /// Ridge with penalty λ on the standardised coefficients (module doc).
    Ridge {
        lambda: f64,
    },
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Ols => f.write_str("ols"),
            Method::Ridge { lambda } => write!(f, "ridge λ={lambda}"),
        }
    }
}

/// Settings of [`fit_linear`]; the defaults are the documented ones.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    pub method: Method,
    /// Rows in the steady-state window (≥ 2).
    pub window: usize,
    /// Multiplier of the median absolute change for default tolerances (> 0).
    pub tolerance_k: f64,
    /// Share of the steady rows held out, the most recent ones (0.01–0.9).
    pub test_fraction: f64,
    /// Fewest steady rows accepted (more are required when there are many
    /// inputs: the training part needs at least inputs + 2 rows, the test
    /// part 2).
    pub min_steady_rows: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            method: Method::Ols,
            window: 10,
            tolerance_k: 6.0,
            test_fraction: 0.25,
            min_steady_rows: 30,
        }
    }
}

/// How good a fitted model is, measured on data it was not fitted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitQuality {
    /// `"ols"` or `"ridge λ=…"`.
    pub method: String,
    pub steady_rows: usize,
    /// Rows handed in.
    pub total_rows: usize,
    /// Rows with a value in every used column.
    pub complete_rows: usize,
    pub n_train: usize,
    pub n_test: usize,
    /// Timestamp (ms) of the first held-out row.
    pub test_start: i64,
    /// `None` when the output did not vary in that set (R² undefined).
    pub r2_train: Option<f64>,
    pub r2_test: Option<f64>,
    /// Training residual standard deviation, output unit.
    pub residual_std: f64,
    pub rmse_test: f64,
    /// `(min, max)` per input over all steady rows.
    pub input_ranges: Vec<(f64, f64)>,
    /// Steady tolerances used: one per input, then the output's.
    pub tolerances: Vec<f64>,
    pub window: usize,
}

/// `output = intercept + Σ coefficient·input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub output: String,
    pub inputs: Vec<String>,
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    /// `None` for a model supplied by the user rather than fitted.
    pub quality: Option<FitQuality>,
}

impl LinearModel {
    /// A user-supplied model (no quality figures).
    pub fn new(
        output: impl Into<String>,
        inputs: Vec<String>,
        intercept: f64,
        coefficients: Vec<f64>,
    ) -> Self {
        Self {
            output: output.into(),
            inputs,
            intercept,
            coefficients,
            quality: None,
        }
    }

    /// The prediction for `x`, one value per input in [`Self::inputs`]
    /// order (a shorter `x` leaves the remaining terms out).
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(x)
                .map(|(c, x)| c * x)
                .sum::<f64>()
    }

    /// Coefficient of the input called `tag`.
    pub fn coefficient(&self, tag: &str) -> Option<f64> {
        self.inputs
            .iter()
            .position(|i| i == tag)
            .and_then(|j| self.coefficients.get(j).copied())
    }
}

/// Why a model could not be fitted.
#[derive(Debug, Error, PartialEq)]
pub enum FitError {
    #[error("invalid fit settings: {0}")]
    Options(String),
    #[error("no inputs given for {output}")]
    NoInputs { output: String },
    #[error("`{tag}` appears twice among the columns")]
    Duplicate { tag: String },
    #[error("{tag} has {len} values but there are {expected} timestamps")]
    Length {
        tag: String,
        len: usize,
        expected: usize,
    },
    #[error("timestamps must increase: row {row} is not after row {}", row - 1)]
    Timestamps { row: usize },
    #[error("tolerance of {tag} must be finite and ≥ 0, got {value}")]
    Tolerance { tag: String, value: f64 },
    #[error(
        "only {found} steady rows for {output} (of {total} rows, {complete} with every value); at least {needed} are needed: choose a longer period, or a larger tolerance for the columns that never settle"
    )]
    TooFewSteadyRows {
        output: String,
        found: usize,
        needed: usize,
        total: usize,
        complete: usize,
    },
    #[error(
        "{input} did not vary in the steady windows of the training period; step-test it or supply a model"
    )]
    NotVaried { input: String },
    #[error(
        "{input} varied only in the held-out last {percent} % of the steady rows, so its effect cannot be checked on held-out data; choose a period with earlier moves or supply a model"
    )]
    VariedOnlyInTest { input: String, percent: f64 },
    #[error(
        "{input} moved (almost) only together with {with} in the steady windows: their effects cannot be separated; step-test them separately, use ridge, or supply a model"
    )]
    Collinear { input: String, with: String },
}

/// The steady rows of a set of columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Steady {
    /// Per row.
    pub steady: Vec<bool>,
    /// Per column, in the order given.
    pub tolerances: Vec<f64>,
    /// Rows with a value in every column.
    pub complete_rows: usize,
}

impl Steady {
    pub fn count(&self) -> usize {
        self.steady.iter().filter(|s| **s).count()
    }
}

/// Median of finite values, the mean of the two middle ones for an even
/// count; `None` when there are none.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The default steady tolerance of a column (module doc).
pub fn default_tolerance(values: &[f64], k: f64) -> f64 {
    let changes: Vec<f64> = values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let largest = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    k * median(changes).unwrap_or(0.0) + 1e-9 * largest
}

fn check_lengths(timestamps: &[i64], columns: &[Column<'_>]) -> Result<(), FitError> {
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.tag == c.tag) {
            return Err(FitError::Duplicate { tag: c.tag.into() });
        }
        if c.values.len() != timestamps.len() {
            return Err(FitError::Length {
                tag: c.tag.into(),
                len: c.values.len(),
                expected: timestamps.len(),
            });
        }
        if let Some(t) = c.tolerance
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(FitError::Tolerance {
                tag: c.tag.into(),
                value: t,
            });
        }
    }
    if let Some(row) = (1..timestamps.len()).find(|&i| timestamps[i] <= timestamps[i - 1]) {
        return Err(FitError::Timestamps { row });
    }
    Ok(())
}

/// Marks the steady rows (module doc) of `columns`: the rule applied to
/// every column given, so pass the inputs and the output of one model.
pub fn steady_rows(
    timestamps: &[i64],
    columns: &[Column<'_>],
    window: usize,
    k: f64,
) -> Result<Steady, FitError> {
    if window < 2 {
        return Err(FitError::Options(format!(
            "window must be ≥ 2, got {window}"
        )));
    }
    if !(k.is_finite() && k > 0.0) {
        return Err(FitError::Options(format!(
            "tolerance multiplier k must be > 0, got {k}"
        )));
    }
    check_lengths(timestamps, columns)?;
    let n = timestamps.len();
    let tolerances: Vec<f64> = columns
        .iter()
        .map(|c| {
            c.tolerance
                .unwrap_or_else(|| default_tolerance(c.values, k))
        })
        .collect();
    let complete: Vec<bool> = (0..n)
        .map(|i| columns.iter().all(|c| c.values[i].is_finite()))
        .collect();
    let steps: Vec<f64> = timestamps
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64)
        .collect();
    let max_step = 1.5 * median(steps).unwrap_or(0.0);
    let mut steady = vec![false; n];
    for (end, flag) in steady.iter_mut().enumerate().skip(window - 1) {
        let rows = end + 1 - window..=end;
        if !rows.clone().all(|i| complete[i]) {
            continue;
        }
        if (end + 2 - window..=end).any(|i| (timestamps[i] - timestamps[i - 1]) as f64 > max_step) {
            continue;
        }
        *flag = columns.iter().zip(&tolerances).all(|(c, tol)| {
            let w = &c.values[rows.clone()];
            let (lo, hi) = w
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(*v), hi.max(*v))
                });
            hi - lo <= *tol
        });
    }
    Ok(Steady {
        steady,
        tolerances,
        complete_rows: complete.iter().filter(|c| **c).count(),
    })
}

/// Fits `output` on `inputs` over the steady rows of the history (module
/// doc): quality from a time-ordered hold-out, coefficients from a refit on
/// all steady rows.
pub fn fit_linear(
    timestamps: &[i64],
    inputs: &[Column<'_>],
    output: &Column<'_>,
    options: &FitOptions,
) -> Result<LinearModel, FitError> {
    let f = options.test_fraction;
    if !(0.01..=0.9).contains(&f) {
        return Err(FitError::Options(format!(
            "test fraction must be between 0.01 and 0.9, got {f}"
        )));
    }
    if let Method::Ridge { lambda } = options.method
        && !(lambda.is_finite() && lambda >= 0.0)
    {
        return Err(FitError::Options(format!(
            "ridge λ must be finite and ≥ 0, got {lambda}"
        )));
    }
    if inputs.is_empty() {
        return Err(FitError::NoInputs {
            output: output.tag.into(),
        });
    }
    let p = inputs.len();
    let mut columns = inputs.to_vec();
    columns.push(*output);
    let steady = steady_rows(timestamps, &columns, options.window, options.tolerance_k)?;
    let rows: Vec<usize> = (0..timestamps.len())
        .filter(|&i| steady.steady[i])
        .collect();
    let n_test_of = |n: usize| ((f * n as f64).ceil() as usize).max(1);
    // Two test rows need n > 1/f (at most 100): start the search there.
    let start = options
        .min_steady_rows
        .max(p + 4)
        .max((1.0 / f).floor() as usize + 1);
    let needed = (start..)
        .find(|&n| n_test_of(n) >= 2 && n - n_test_of(n) >= p + 2)
        .unwrap_or(usize::MAX);
    if rows.len() < needed {
        return Err(FitError::TooFewSteadyRows {
            output: output.tag.into(),
            found: rows.len(),
            needed,
            total: timestamps.len(),
            complete: steady.complete_rows,
        });
    }
    let n_test = n_test_of(rows.len());
    let (train, test) = rows.split_at(rows.len() - n_test);
    let range = |c: &Column<'_>, rows: &[usize]| {
        rows.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                (lo.min(c.values[i]), hi.max(c.values[i]))
            })
    };
    let input_ranges: Vec<(f64, f64)> = inputs.iter().map(|c| range(c, &rows)).collect();
    for ((c, (lo, hi)), tol) in inputs.iter().zip(&input_ranges).zip(&steady.tolerances) {
        if hi - lo <= *tol {
            return Err(FitError::NotVaried {
                input: c.tag.into(),
            });
        }
    }
    for (c, tol) in inputs.iter().zip(&steady.tolerances) {
        let (lo, hi) = range(c, train);
        if hi - lo <= *tol {
            return Err(FitError::VariedOnlyInTest {
                input: c.tag.into(),
                percent: 100.0 * f,
            });
        }
    }
    let held_out = solve(inputs, output, train, options.method)?;
    let predict = |m: &(f64, Vec<f64>), i: usize| {
        m.0 + m
            .1
            .iter()
            .zip(inputs)
            .map(|(b, c)| b * c.values[i])
            .sum::<f64>()
    };
    let scores = |rows: &[usize]| {
        let y: Vec<f64> = rows.iter().map(|&i| output.values[i]).collect();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let sst: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
        let sse: f64 = rows
            .iter()
            .zip(&y)
            .map(|(&i, v)| (v - predict(&held_out, i)).powi(2))
            .sum();
        let r2 = (sst > 0.0).then(|| 1.0 - sse / sst);
        (sse, r2)
    };
    let (sse_train, r2_train) = scores(train);
    let (sse_test, r2_test) = scores(test);
    let (intercept, coefficients) = solve(inputs, output, &rows, options.method)?;
    Ok(LinearModel {
        output: output.tag.into(),
        inputs: inputs.iter().map(|c| c.tag.to_string()).collect(),
        intercept,
        coefficients,
        quality: Some(FitQuality {
            method: options.method.to_string(),
            steady_rows: rows.len(),
            total_rows: timestamps.len(),
            complete_rows: steady.complete_rows,
            n_train: train.len(),
            n_test,
            test_start: test.first().map_or(0, |&i| timestamps[i]),
            r2_train,
            r2_test,
            residual_std: (sse_train / (train.len() - p - 1) as f64).sqrt(),
            rmse_test: (sse_test / n_test as f64).sqrt(),
            input_ranges,
            tolerances: steady.tolerances,
            window: options.window,
        }),
    })
}

/// `(intercept, coefficients)` in raw units, fitted on `rows`.
fn solve(
    inputs: &[Column<'_>],
    output: &Column<'_>,
    rows: &[usize],
    method: Method,
) -> Result<(f64, Vec<f64>), FitError> {
    let n = rows.len() as f64;
    let mean = |c: &Column<'_>| rows.iter().map(|&i| c.values[i]).sum::<f64>() / n;
    let means: Vec<f64> = inputs.iter().map(mean).collect();
    let stds: Vec<f64> = inputs
        .iter()
        .zip(&means)
        .map(|(c, m)| (rows.iter().map(|&i| (c.values[i] - m).powi(2)).sum::<f64>() / n).sqrt())
        .collect();
    if let Some(j) = stds.iter().position(|s| !s.is_finite() || *s <= 0.0) {
        return Err(FitError::NotVaried {
            input: inputs[j].tag.into(),
        });
    }
    let y_mean = mean(output);
    let mut design: Vec<Vec<f64>> = inputs
        .iter()
        .zip(means.iter().zip(&stds))
        .map(|(c, (m, s))| rows.iter().map(|&i| (c.values[i] - m) / s).collect())
        .collect();
    let mut target: Vec<f64> = rows.iter().map(|&i| output.values[i] - y_mean).collect();
    let rank_tol = match method {
        Method::Ols => 1e-6,
        Method::Ridge { lambda } => {
            let root = lambda.sqrt();
            let p = design.len();
            for (j, col) in design.iter_mut().enumerate() {
                col.extend((0..p).map(|k| if k == j { root } else { 0.0 }));
            }
            target.extend(std::iter::repeat_n(0.0, p));
            // The √λ rows make the system full rank for λ > 0; λ = 0 is OLS.
            if lambda > 0.0 { 0.0 } else { 1e-6 }
        }
    };
    let beta = lstsq(design, target, rank_tol).map_err(|k| FitError::Collinear {
        input: inputs[k].tag.into(),
        with: most_correlated(inputs, rows, k),
    })?;
    let coefficients: Vec<f64> = beta.iter().zip(&stds).map(|(b, s)| b / s).collect();
    let intercept = y_mean
        - coefficients
            .iter()
            .zip(&means)
            .map(|(b, m)| b * m)
            .sum::<f64>();
    Ok((intercept, coefficients))
}

/// The input before `k` whose values correlate most with input `k`'s.
fn most_correlated(inputs: &[Column<'_>], rows: &[usize], k: usize) -> String {
    let centred = |c: &Column<'_>| {
        let m = rows.iter().map(|&i| c.values[i]).sum::<f64>() / rows.len() as f64;
        rows.iter().map(|&i| c.values[i] - m).collect::<Vec<f64>>()
    };
    let xk = centred(&inputs[k]);
    let nk = xk.iter().map(|v| v * v).sum::<f64>().sqrt();
    inputs[..k]
        .iter()
        .map(|c| {
            let xj = centred(c);
            let nj = xj.iter().map(|v| v * v).sum::<f64>().sqrt();
            let dot: f64 = xj.iter().zip(&xk).map(|(a, b)| a * b).sum();
            (c.tag, (dot / (nj * nk)).abs())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or_else(|| "the other inputs".into(), |(tag, _)| tag.to_string())
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `min ‖A x − b‖` by Householder QR; `a` holds the columns (each as long
/// as `b`, at least as many rows as columns). `Err(k)`: column `k` has no
/// more than `rank_tol` of its norm outside the span of columns `0..k`.
fn lstsq(mut a: Vec<Vec<f64>>, mut b: Vec<f64>, rank_tol: f64) -> Result<Vec<f64>, usize> {
    let n = a.len();
    let norms: Vec<f64> = a.iter().map(|c| norm(c)).collect();
    let mut diag = vec![0.0; n];
    for k in 0..n {
        let (done, rest) = a.split_at_mut(k + 1);
        let v = &mut done[k];
        if v.len() <= k {
            return Err(k);
        }
        let size = norm(&v[k..]);
        if size == 0.0 || size <= rank_tol * norms[k] {
            return Err(k);
        }
        // Reflect onto −sign(v_k)·‖v‖·e_k: no cancellation in v_k − α.
        let alpha = if v[k] > 0.0 { -size } else { size };
        v[k] -= alpha;
        let vv: f64 = v[k..].iter().map(|x| x * x).sum();
        let reflect = |w: &mut [f64]| {
            let s = 2.0 * v[k..].iter().zip(&w[k..]).map(|(a, b)| a * b).sum::<f64>() / vv;
            for (wi, vi) in w[k..].iter_mut().zip(&v[k..]) {
                *wi -= s * vi;
            }
        };
        for col in rest.iter_mut() {
            reflect(col);
        }
        reflect(&mut b);
        diag[k] = alpha;
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = b[i] - (i + 1..n).map(|j| a[j][i] * x[j]).sum::<f64>();
        x[i] = s / diag[i];
    }
    Ok(x)
}

#[cfg(test)]
mod tests;
