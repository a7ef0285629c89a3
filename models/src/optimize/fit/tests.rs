//! Steady-state detection on series with steps, ramps, gaps and holes; the
//! least-squares fit against independent normal equations; ridge against
//! its closed form; the hold-out figures recomputed; the errors users see.

// Elimination and the closed forms read best with explicit indices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use proptest::prelude::*;

use super::*;
use crate::analysis::labelled::SplitMix;

const MINUTE: i64 = 60_000;

fn times(n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| 1_700_000_000_000 + i * MINUTE)
        .collect()
}

fn normal(rng: &mut SplitMix) -> f64 {
    let u = rng.uniform().max(1e-300);
    let v = rng.uniform();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A setpoint held at random levels in `range` for `hold` rows at a time.
fn steps(rng: &mut SplitMix, n: usize, hold: usize, range: (f64, f64)) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let level = rng.range(range);
        v.extend(std::iter::repeat_n(level, hold.min(n - v.len())));
    }
    v
}

/// Solves `A x = b` (square) by Gaussian elimination with partial pivoting:
/// an independent route to the least-squares answer (normal equations).
fn gauss(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i][k].abs().total_cmp(&a[j][k].abs()))
            .unwrap();
        a.swap(k, p);
        b.swap(k, p);
        for i in k + 1..n {
            let f = a[i][k] / a[k][k];
            for j in k..n {
                a[i][j] -= f * a[k][j];
            }
            b[i] -= f * b[k];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (b[i] - (i + 1..n).map(|j| a[i][j] * x[j]).sum::<f64>()) / a[i][i];
    }
    x
}

/// OLS with intercept on `rows` through the normal equations of the
/// centred design: `(intercept, coefficients)`.
fn normal_equations(xs: &[&[f64]], y: &[f64], rows: &[usize]) -> (f64, Vec<f64>) {
    let p = xs.len();
    let n = rows.len() as f64;
    let means: Vec<f64> = xs
        .iter()
        .map(|c| rows.iter().map(|&i| c[i]).sum::<f64>() / n)
        .collect();
    let ym = rows.iter().map(|&i| y[i]).sum::<f64>() / n;
    let mut ata = vec![vec![0.0; p]; p];
    let mut aty = vec![0.0; p];
    for &i in rows {
        for a in 0..p {
            for b in 0..p {
                ata[a][b] += (xs[a][i] - means[a]) * (xs[b][i] - means[b]);
            }
            aty[a] += (xs[a][i] - means[a]) * (y[i] - ym);
        }
    }
    let beta = gauss(ata, aty);
    let intercept = ym - beta.iter().zip(&means).map(|(b, m)| b * m).sum::<f64>();
    (intercept, beta)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

/// Three stepped inputs and a noisy linear output.
struct Plant {
    t: Vec<i64>,
    u: [Vec<f64>; 3],
    y: Vec<f64>,
    truth: (f64, [f64; 3]),
}

fn plant(seed: u64, n: usize, noise: f64) -> Plant {
    let mut rng = SplitMix::new(seed);
    let u = [
        steps(&mut rng, n, 37, (330.0, 385.0)),
        steps(&mut rng, n, 53, (250.0, 700.0)),
        steps(&mut rng, n, 29, (1.0, 4.0)),
    ];
    let truth = (
        rng.range((-50.0, 50.0)),
        [
            rng.range((-1.0, 1.0)),
            rng.range((-0.2, 0.2)),
            rng.range((-8.0, 8.0)),
        ],
    );
    let y = (0..n)
        .map(|i| {
            truth.0 + (0..3).map(|j| truth.1[j] * u[j][i]).sum::<f64>() + noise * normal(&mut rng)
        })
        .collect();
    Plant {
        t: times(n),
        u,
        y,
        truth,
    }
}

impl Plant {
    fn inputs(&self) -> Vec<Column<'_>> {
        [
            "heater.outlet_temp_sp",
            "column.feed_rate_sp",
            "column.reflux_ratio_sp",
        ]
        .iter()
        .zip(&self.u)
        .map(|(tag, v)| Column::new(tag, v))
        .collect()
    }
    fn output(&self) -> Column<'_> {
        Column::new("product.naphtha_t95", &self.y)
    }
    fn steady(&self, window: usize, k: f64) -> Vec<usize> {
        let mut cols = self.inputs();
        cols.push(self.output());
        let s = steady_rows(&self.t, &cols, window, k).unwrap();
        (0..self.t.len()).filter(|&i| s.steady[i]).collect()
    }
}

#[test]
fn steady_detection_rejects_steps_ramps_holes_and_gaps() {
    // Flat, step at 50, flat, ramp 100..130, flat; a hole at 170, a time
    // gap before row 185.
    let n = 220;
    let u: Vec<f64> = (0..n)
        .map(|i| match i {
            0..50 => 1.0,
            50..100 => 2.0,
            100..130 => 2.0 + 0.1 * (i - 99) as f64,
            _ => 5.0,
        })
        .collect();
    let mut y: Vec<f64> = u.iter().map(|u| 3.0 * u + 7.0).collect();
    y[170] = f64::NAN;
    let mut t = times(n);
    for v in &mut t[185..] {
        *v += 30 * MINUTE;
    }
    let w = 10;
    let cols = [Column::new("u", &u), Column::new("y", &y)];
    let s = steady_rows(&t, &cols, w, 6.0).unwrap();
    for i in 0..n {
        let moved = |a: usize, b: usize| i >= a && i < b + w - 1;
        let expected = i >= w - 1
            && !moved(50, 50)
            && !moved(100, 129)
            && !moved(170, 171)
            && !moved(185, 185);
        assert_eq!(s.steady[i], expected, "row {i}");
    }
    assert_eq!(s.complete_rows, n - 1);
    // A held setpoint's median change is 0: its tolerance is only the
    // rounding allowance.
    assert!(s.tolerances[0] <= 1e-8, "{:?}", s.tolerances);
}

#[test]
fn steady_detection_keeps_noisy_flats_and_rejects_ramps() {
    let mut rng = SplitMix::new(7);
    let n = 1000;
    let level = |i: usize| match i {
        300..340 => 50.0 + 0.5 * (i - 300) as f64,
        340..700 => 70.0,
        _ => 50.0,
    };
    let x: Vec<f64> = (0..n).map(|i| level(i) + 0.3 * normal(&mut rng)).collect();
    let t = times(n);
    let s = steady_rows(&t, &[Column::new("x", &x)], 10, 6.0).unwrap();
    let flat: Vec<usize> = (0..n)
        .filter(|&i| i >= 9 && !(300..349).contains(&i) && !(700..709).contains(&i))
        .collect();
    let kept = flat.iter().filter(|&&i| s.steady[i]).count();
    assert!(
        kept as f64 >= 0.97 * flat.len() as f64,
        "{kept} of {}",
        flat.len()
    );
    assert!((309..340).all(|i| !s.steady[i]), "a ramp row is steady");
    // A configured tolerance overrides the default: a band narrower than
    // the noise leaves nothing steady.
    let tight = steady_rows(&t, &[Column::new("x", &x).with_tolerance(0.01)], 10, 6.0).unwrap();
    assert_eq!(tight.count(), 0);
    assert_eq!(tight.tolerances, vec![0.01]);
}

#[test]
fn ols_recovers_the_coefficients_of_noise_free_data() {
    let p = plant(11, 1500, 0.0);
    let m = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap();
    assert!(
        close(m.intercept, p.truth.0, 1e-8),
        "{} vs {}",
        m.intercept,
        p.truth.0
    );
    for (c, t) in m.coefficients.iter().zip(&p.truth.1) {
        assert!(close(*c, *t, 1e-9), "{c} vs {t}");
    }
    let q = m.quality.as_ref().unwrap();
    assert!(q.residual_std < 1e-9 && q.rmse_test < 1e-9, "{q:?}");
    assert!(q.r2_train.unwrap() > 1.0 - 1e-12 && q.r2_test.unwrap() > 1.0 - 1e-12);
    let x = [p.u[0][5], p.u[1][5], p.u[2][5]];
    assert!(close(m.predict(&x), p.y[5], 1e-9));
    assert_eq!(
        m.coefficient("column.feed_rate_sp"),
        Some(m.coefficients[1])
    );
    assert_eq!(m.inputs[2], "column.reflux_ratio_sp");
}

#[test]
fn ols_matches_the_normal_equations_and_the_hold_out_is_recomputed() {
    let p = plant(3, 2400, 0.7);
    let opts = FitOptions::default();
    let m = fit_linear(&p.t, &p.inputs(), &p.output(), &opts).unwrap();
    let q = m.quality.clone().unwrap();
    let rows = p.steady(opts.window, opts.tolerance_k);
    assert_eq!(q.steady_rows, rows.len());
    let n_test = (rows.len() as f64 * 0.25).ceil() as usize;
    assert_eq!((q.n_train, q.n_test), (rows.len() - n_test, n_test));
    let (train, test) = rows.split_at(rows.len() - n_test);
    assert_eq!(q.test_start, p.t[test[0]]);
    let xs: Vec<&[f64]> = p.u.iter().map(Vec::as_slice).collect();
    // Final coefficients: all steady rows.
    let (b0, b) = normal_equations(&xs, &p.y, &rows);
    assert!(close(m.intercept, b0, 1e-7), "{} vs {b0}", m.intercept);
    for (c, e) in m.coefficients.iter().zip(&b) {
        assert!(close(*c, *e, 1e-8), "{c} vs {e}");
    }
    // Quality: the train-only fit, scored on both parts.
    let (h0, h) = normal_equations(&xs, &p.y, train);
    let pred = |i: usize| h0 + (0..3).map(|j| h[j] * p.u[j][i]).sum::<f64>();
    let score = |rows: &[usize]| {
        let mean = rows.iter().map(|&i| p.y[i]).sum::<f64>() / rows.len() as f64;
        let sst: f64 = rows.iter().map(|&i| (p.y[i] - mean).powi(2)).sum();
        let sse: f64 = rows.iter().map(|&i| (p.y[i] - pred(i)).powi(2)).sum();
        (sse, 1.0 - sse / sst)
    };
    let (sse_train, r2_train) = score(train);
    let (sse_test, r2_test) = score(test);
    assert!(close(q.r2_train.unwrap(), r2_train, 1e-9));
    assert!(close(q.r2_test.unwrap(), r2_test, 1e-9));
    assert!(close(
        q.residual_std,
        (sse_train / (train.len() - 4) as f64).sqrt(),
        1e-9
    ));
    assert!(close(
        q.rmse_test,
        (sse_test / test.len() as f64).sqrt(),
        1e-9
    ));
    // The noise is 0.7: both error figures must be near it.
    assert!((0.6..0.8).contains(&q.residual_std), "{q:?}");
    for (j, &(lo, hi)) in q.input_ranges.iter().enumerate() {
        let vals = rows.iter().map(|&i| p.u[j][i]);
        assert_eq!(lo, vals.clone().fold(f64::INFINITY, f64::min));
        assert_eq!(hi, vals.fold(f64::NEG_INFINITY, f64::max));
    }
    assert_eq!(q.method, "ols");
    assert_eq!(q.total_rows, 2400);
}

#[test]
fn ridge_matches_its_closed_form_and_shrinks() {
    let p = plant(5, 1800, 2.0);
    let rows = p.steady(10, 6.0);
    let n = rows.len() as f64;
    let standardised: Vec<Vec<f64>> =
        p.u.iter()
            .map(|c| {
                let m = rows.iter().map(|&i| c[i]).sum::<f64>() / n;
                let s = (rows.iter().map(|&i| (c[i] - m).powi(2)).sum::<f64>() / n).sqrt();
                rows.iter().map(|&i| (c[i] - m) / s).collect()
            })
            .collect();
    let ym = rows.iter().map(|&i| p.y[i]).sum::<f64>() / n;
    let yc: Vec<f64> = rows.iter().map(|&i| p.y[i] - ym).collect();
    let mut norms = Vec::new();
    for lambda in [0.0, 10.0, 1000.0, 1e5] {
        let opts = FitOptions {
            method: Method::Ridge { lambda },
            ..FitOptions::default()
        };
        let m = fit_linear(&p.t, &p.inputs(), &p.output(), &opts).unwrap();
        // (ZᵀZ + λI) β = Zᵀy on the standardised inputs.
        let ztz: Vec<Vec<f64>> = (0..3)
            .map(|a| {
                (0..3)
                    .map(|b| {
                        let d: f64 = standardised[a]
                            .iter()
                            .zip(&standardised[b])
                            .map(|(x, y)| x * y)
                            .sum();
                        d + if a == b { lambda } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let zty: Vec<f64> = (0..3)
            .map(|a| standardised[a].iter().zip(&yc).map(|(x, y)| x * y).sum())
            .collect();
        let beta = gauss(ztz, zty);
        for j in 0..3 {
            let s = (rows.iter().map(|&i| p.u[j][i]).map(|v| v * v).sum::<f64>() / n
                - (rows.iter().map(|&i| p.u[j][i]).sum::<f64>() / n).powi(2))
            .sqrt();
            assert!(
                close(m.coefficients[j] * s, beta[j], 1e-7),
                "λ={lambda} j={j}: {} vs {}",
                m.coefficients[j] * s,
                beta[j]
            );
        }
        norms.push(beta.iter().map(|b| b * b).sum::<f64>().sqrt());
        if lambda == 0.0 {
            let ols = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap();
            for (a, b) in m.coefficients.iter().zip(&ols.coefficients) {
                assert!(close(*a, *b, 1e-10));
            }
        }
        assert!(m.quality.unwrap().method.starts_with("ridge"));
    }
    assert!(norms.windows(2).all(|w| w[1] < w[0]), "{norms:?}");
}

#[test]
fn a_setpoint_that_never_moved_is_named() {
    let mut p = plant(9, 600, 0.1);
    p.u[0] = vec![360.0; 600];
    let err = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "heater.outlet_temp_sp did not vary in the steady windows of the training period; step-test it or supply a model"
    );
    // Moves only in the held-out part: a different, equally clear error.
    let mut q = plant(9, 800, 0.1);
    q.u[2] = (0..800).map(|i| if i < 700 { 2.0 } else { 3.0 }).collect();
    let err = fit_linear(&q.t, &q.inputs(), &q.output(), &FitOptions::default()).unwrap_err();
    assert!(
        matches!(&err, FitError::VariedOnlyInTest { input, .. } if input == "column.reflux_ratio_sp"),
        "{err}"
    );
}

#[test]
fn inputs_moved_together_are_refused_by_ols_but_not_ridge() {
    let mut p = plant(13, 900, 0.2);
    p.u[2] = p.u[0].iter().map(|t| 0.05 * t - 15.0).collect();
    let err = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap_err();
    assert_eq!(
        err,
        FitError::Collinear {
            input: "column.reflux_ratio_sp".into(),
            with: "heater.outlet_temp_sp".into()
        }
    );
    let ridge = FitOptions {
        method: Method::Ridge { lambda: 1.0 },
        ..FitOptions::default()
    };
    let m = fit_linear(&p.t, &p.inputs(), &p.output(), &ridge).unwrap();
    assert!(m.coefficients.iter().all(|c| c.is_finite()));
}

#[test]
fn too_few_steady_rows_says_how_many() {
    // Setpoints that move every 8 rows never hold for a 10-row window,
    // except where two random levels repeat: count the found rows
    // independently.
    let mut p = plant(17, 400, 0.0);
    let mut rng = SplitMix::new(99);
    p.u[0] = steps(&mut rng, 400, 8, (330.0, 385.0));
    p.y = (0..400).map(|i| 2.0 * p.u[0][i] + p.u[1][i]).collect();
    let found = p.steady(10, 6.0).len();
    let err = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap_err();
    assert_eq!(
        err,
        FitError::TooFewSteadyRows {
            output: "product.naphtha_t95".into(),
            found,
            needed: 30,
            total: 400,
            complete: 400
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("only {found} steady rows")) && text.contains("at least 30"),
        "{text}"
    );
}

#[test]
fn missing_values_are_skipped() {
    let mut p = plant(21, 1200, 0.0);
    let mut rng = SplitMix::new(4);
    let mut holes = 0;
    for i in 0..1200 {
        if rng.uniform() < 0.02 {
            p.u[i % 3][i] = f64::NAN;
            holes += 1;
        }
    }
    let m = fit_linear(&p.t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap();
    for (c, t) in m.coefficients.iter().zip(&p.truth.1) {
        assert!(close(*c, *t, 1e-9), "{c} vs {t}");
    }
    let q = m.quality.unwrap();
    assert_eq!(q.complete_rows, 1200 - holes);
    assert!(q.steady_rows <= q.complete_rows);
}

#[test]
fn bad_input_is_refused() {
    let p = plant(1, 100, 0.0);
    let short = [1.0; 5];
    let err = fit_linear(
        &p.t,
        &[Column::new("a", &short)],
        &p.output(),
        &FitOptions::default(),
    );
    assert!(matches!(
        err,
        Err(FitError::Length {
            len: 5,
            expected: 100,
            ..
        })
    ));
    let mut t = p.t.clone();
    t[40] = t[39];
    assert_eq!(
        fit_linear(&t, &p.inputs(), &p.output(), &FitOptions::default()).unwrap_err(),
        FitError::Timestamps { row: 40 }
    );
    let bad = FitOptions {
        test_fraction: 1.0,
        ..FitOptions::default()
    };
    assert!(matches!(
        fit_linear(&p.t, &p.inputs(), &p.output(), &bad),
        Err(FitError::Options(_))
    ));
    assert!(matches!(
        fit_linear(&p.t, &[], &p.output(), &FitOptions::default()),
        Err(FitError::NoInputs { .. })
    ));
    let neg = p.inputs()[0].with_tolerance(-1.0);
    assert!(matches!(
        fit_linear(&p.t, &[neg], &p.output(), &FitOptions::default()),
        Err(FitError::Tolerance { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Least squares: the residual is orthogonal to every column of the
    /// design (the normal equations hold), whatever the data.
    #[test]
    fn qr_residuals_are_orthogonal(seed in any::<u64>(), m in 5usize..60, n in 1usize..5) {
        let mut rng = SplitMix::new(seed);
        let cols: Vec<Vec<f64>> = (0..n).map(|_| (0..m.max(n + 1)).map(|_| rng.range((-10.0, 10.0))).collect()).collect();
        let b: Vec<f64> = (0..m.max(n + 1)).map(|_| rng.range((-100.0, 100.0))).collect();
        let x = lstsq(cols.clone(), b.clone(), 1e-10).unwrap();
        let r: Vec<f64> = (0..b.len()).map(|i| b[i] - (0..n).map(|j| cols[j][i] * x[j]).sum::<f64>()).collect();
        let scale = norm(&b) * cols.iter().map(|c| norm(c)).fold(0.0, f64::max);
        for c in &cols {
            let dot: f64 = c.iter().zip(&r).map(|(a, b)| a * b).sum();
            prop_assert!(dot.abs() <= 1e-10 * scale, "{dot}");
        }
    }
}
