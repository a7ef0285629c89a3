//! The analysis functions (issue 19): property checks, and Mann-Kendall
//! against PyPI `pymannkendall` on the same series.

use std::path::PathBuf;
use std::process::Command;

use models::analysis::anomaly::{AnomalyKind, DetectorConfig, detect};
use models::analysis::labelled::{Case, InjectConfig, Label, SplitMix, evaluate, inject};
use models::analysis::stats::{describe, pearson, spearman};
use models::analysis::trend::{Trend, has_cycle, mann_kendall, seasonal_mann_kendall};

use crate::support::{repo, run_json};

fn noise(seed: u64, n: usize, sd: f64) -> Vec<f64> {
    // Sum of uniforms: near-normal, no dependency.
    let mut r = SplitMix::new(seed);
    (0..n)
        .map(|_| sd * ((0..12).map(|_| r.uniform()).sum::<f64>() - 6.0))
        .collect()
}

fn random_walk(seed: u64, n: usize) -> Vec<f64> {
    let mut level = 0.0;
    noise(seed, n, 1.0)
        .into_iter()
        .map(|e| {
            level += e;
            level
        })
        .collect()
}

// ---------------------------------------------------------------- stats

#[test]
fn describe_matches_hand_computed_values() {
    let xs: Vec<f64> = (1..=100).map(f64::from).collect();
    let d = describe(&xs).unwrap();
    assert_eq!((d.n, d.missing), (100, 0));
    assert_eq!((d.min, d.max, d.mean), (1.0, 100.0, 50.5));
    // numpy: percentile(1..100, [5, 50, 95]) = 5.95, 50.5, 95.05; std(ddof=1) = 29.011491975882016
    assert!((d.p05 - 5.95).abs() < 1e-12, "{}", d.p05);
    assert!((d.median - 50.5).abs() < 1e-12);
    assert!((d.p95 - 95.05).abs() < 1e-12, "{}", d.p95);
    assert!((d.std - 29.011491975882016).abs() < 1e-12, "{}", d.std);
}

#[test]
fn describe_skips_and_counts_missing_values() {
    let d = describe(&[f64::NAN, 2.0, f64::INFINITY, 4.0, f64::NAN]).unwrap();
    assert_eq!((d.n, d.missing), (2, 3));
    assert_eq!((d.mean, d.median, d.min, d.max), (3.0, 3.0, 2.0, 4.0));
    assert!(describe(&[f64::NAN, f64::NAN]).is_none());
    assert!(describe(&[]).is_none());
    let one = describe(&[7.0]).unwrap();
    assert_eq!((one.std, one.p05, one.p95), (0.0, 7.0, 7.0));
}

#[test]
fn describe_is_invariant_under_permutation() {
    let mut xs = noise(1, 501, 3.0);
    xs[10] = f64::NAN;
    xs[400] = f64::NAN;
    let d0 = describe(&xs).unwrap();
    let mut r = SplitMix::new(99);
    for _ in 0..20 {
        // Fisher-Yates.
        for i in (1..xs.len()).rev() {
            let j = (r.uniform() * (i + 1) as f64) as usize;
            xs.swap(i, j);
        }
        let d = describe(&xs).unwrap();
        assert_eq!((d.n, d.missing), (d0.n, d0.missing));
        for (a, b) in [
            (d.mean, d0.mean),
            (d.std, d0.std),
            (d.min, d0.min),
            (d.p05, d0.p05),
            (d.median, d0.median),
            (d.p95, d0.p95),
            (d.max, d0.max),
        ] {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn correlations_behave() {
    let x: Vec<f64> = (0..50).map(f64::from).collect();
    let lin: Vec<f64> = x.iter().map(|v| 3.0 - 2.0 * v).collect();
    let cubic: Vec<f64> = x.iter().map(|v| (v - 10.0).powi(3)).collect();
    assert!((pearson(&x, &lin).unwrap() + 1.0).abs() < 1e-12);
    assert!((spearman(&x, &cubic).unwrap() - 1.0).abs() < 1e-12);
    let p = pearson(&x, &cubic).unwrap();
    assert!(p > 0.8 && p < 1.0, "{p}");
    // Pairwise-complete: a NaN on either side drops that pair only.
    let mut y = lin.clone();
    y[3] = f64::NAN;
    let mut x2 = x.clone();
    x2[7] = f64::NAN;
    assert!((pearson(&x2, &y).unwrap() + 1.0).abs() < 1e-12);
    assert!(pearson(&x, &x[..10]).is_none(), "lengths differ");
    assert!(pearson(&x, &vec![1.0; 50]).is_none(), "constant");
    assert!(
        spearman(&[1.0, f64::NAN], &[2.0, 3.0]).is_none(),
        "too few pairs"
    );
    // Independent noise: near zero. scipy.stats.spearmanr on ties: average ranks.
    let r = pearson(&noise(5, 2000, 1.0), &noise(6, 2000, 1.0)).unwrap();
    assert!(r.abs() < 0.08, "{r}");
    let s = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    // scipy.stats.spearmanr([1,2,2,3],[1,3,2,4]).statistic = 0.9486832980505138
    assert!((s - 0.9486832980505138).abs() < 1e-12, "{s}");
}

// ---------------------------------------------------------------- trend

#[test]
fn strictly_increasing_series_is_increasing() {
    let xs: Vec<f64> = (0..50).map(|t| 2.0 * f64::from(t) + 1.0).collect();
    let r = mann_kendall(&xs, 0.05).unwrap();
    assert_eq!(r.trend, Trend::Increasing);
    assert!(r.p < 0.01, "{}", r.p);
    assert_eq!(r.tau, 1.0);
    assert_eq!(r.s, 1225.0);
    assert!((r.slope - 2.0).abs() < 1e-12 && (r.intercept - 1.0).abs() < 1e-9);
    let down: Vec<f64> = xs.iter().map(|v| -v).collect();
    assert_eq!(mann_kendall(&down, 0.05).unwrap().trend, Trend::Decreasing);
}

#[test]
fn constant_and_noise_series_have_no_trend() {
    let c = mann_kendall(&[4.2; 30], 0.05).unwrap();
    assert_eq!(
        (c.trend, c.s, c.var_s, c.z, c.p, c.slope),
        (Trend::NoTrend, 0.0, 0.0, 0.0, 1.0, 0.0)
    );
    let mut rejected = 0;
    for seed in 0..100 {
        if mann_kendall(&noise(seed, 60, 1.0), 0.05).unwrap().trend != Trend::NoTrend {
            rejected += 1;
        }
    }
    // 5 % expected under the null; a wrong variance would reject far more often.
    assert!(
        rejected <= 12,
        "{rejected} of 100 white-noise series rejected at 5 %"
    );
}

#[test]
fn refuses_what_it_cannot_answer() {
    assert!(mann_kendall(&[1.0, 2.0], 0.05).is_none());
    assert!(mann_kendall(&[1.0, f64::NAN, 2.0, f64::NAN], 0.05).is_none());
    assert!(mann_kendall(&[1.0, 2.0, 3.0], 0.0).is_none());
    assert!(seasonal_mann_kendall(&[1.0, 2.0, 3.0, 4.0], 0, 0.05).is_none());
    // Past MAX_PAIRS (3,000 points): aggregate first.
    let long: Vec<f64> = (0..3001).map(f64::from).collect();
    assert!(mann_kendall(&long, 0.05).is_none());
    assert!(mann_kendall(&long[..3000], 0.05).is_some());
    // The seasonal test only pairs within seasons: a year of hours is fine.
    let hourly = noise(3, 24 * 365, 1.0);
    assert!(seasonal_mann_kendall(&hourly, 24, 0.05).is_some());
}

#[test]
fn seasonal_test_sees_a_trend_under_a_daily_cycle() {
    let xs: Vec<f64> = (0..24 * 14)
        .zip(noise(8, 24 * 14, 0.3))
        .map(|(t, e)| {
            let t = f64::from(t);
            10.0 * (2.0 * std::f64::consts::PI * t / 24.0).sin() + 0.01 * t + e
        })
        .collect();
    assert!(has_cycle(&xs, 24));
    let s = seasonal_mann_kendall(&xs, 24, 0.05).unwrap();
    assert_eq!(s.trend, Trend::Increasing);
    assert!((s.slope - 0.01).abs() < 0.003, "per step: {}", s.slope);
}

#[test]
fn has_cycle_only_for_cycles() {
    let n = 24 * 10;
    let sine: Vec<f64> = (0..n)
        .zip(noise(1, n, 0.5))
        .map(|(t, e)| (2.0 * std::f64::consts::PI * t as f64 / 24.0).sin() + e)
        .collect();
    assert!(has_cycle(&sine, 24));
    assert!(!has_cycle(&sine, 17), "wrong period");
    assert!(!has_cycle(&sine[..60], 24), "fewer than 3 cycles");
    assert!(!has_cycle(&noise(2, n, 1.0), 24), "white noise");
    let trend: Vec<f64> = (0..n)
        .zip(noise(3, n, 0.5))
        .map(|(t, e)| 0.1 * t as f64 + e)
        .collect();
    assert!(!has_cycle(&trend, 24), "a trend is no cycle");
    let mut walks_with_cycle = 0;
    for seed in 0..20 {
        walks_with_cycle += usize::from(has_cycle(&random_walk(seed, n), 24));
    }
    assert!(
        walks_with_cycle <= 2,
        "{walks_with_cycle} of 20 random walks"
    );
    let mut gappy = sine.clone();
    for v in gappy.iter_mut().step_by(7) {
        *v = f64::NAN;
    }
    assert!(has_cycle(&gappy, 24));
}

// ------------------------------------------------- pymannkendall cross-check

/// Python with pymannkendall: `APOS_PYTHON`, else the repository's `.venv`.
/// Under CI=true a missing peer fails the test; elsewhere it is skipped loudly.
fn python_with_pymannkendall() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("APOS_PYTHON").map(PathBuf::from),
        Some(repo().join(".venv/bin/python")),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = Command::new(&p)
            .args(["-c", "import numpy, pymannkendall"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("Python with pymannkendall is missing: run scripts/test.sh (it builds .venv)");
    }
    eprintln!("SKIPPED: Python with pymannkendall not found (run scripts/test.sh)");
    None
}

fn close(what: &str, ours: f64, theirs: &serde_json::Value, rel: f64) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: peer gave {theirs}"));
    let tol = rel * (1.0 + theirs.abs());
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours}, pymannkendall {theirs}"
    );
}

fn trend_name(t: Trend) -> &'static str {
    match t {
        Trend::Increasing => "increasing",
        Trend::Decreasing => "decreasing",
        Trend::NoTrend => "no trend",
    }
}

#[test]
fn mann_kendall_matches_pymannkendall() {
    let Some(python) = python_with_pymannkendall() else {
        return;
    };
    let mut cases: Vec<(&str, Vec<f64>, Option<usize>, f64)> = Vec::new();
    // Ties: a random walk rounded to half units.
    let ties: Vec<f64> = random_walk(11, 80)
        .iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect();
    cases.push(("ties", ties, None, 0.05));
    // Heavy ties in a short series.
    cases.push(("short", vec![3.0, 1.0, 3.0, 2.0], None, 0.05));
    cases.push(("constant", vec![5.0; 12], None, 0.05));
    // A weak trend in noise, tested at two alphas.
    let weak: Vec<f64> = noise(12, 200, 1.0)
        .iter()
        .enumerate()
        .map(|(t, e)| e + 0.004 * t as f64)
        .collect();
    cases.push(("weak 5 %", weak.clone(), None, 0.05));
    cases.push(("weak 20 %", weak, None, 0.2));
    // Long: 2,000 hourly means with a drift.
    let long: Vec<f64> = random_walk(13, 2000)
        .iter()
        .enumerate()
        .map(|(t, v)| v + 0.01 * t as f64)
        .collect();
    cases.push(("long", long, None, 0.05));
    // Seasonal: a daily cycle in hourly windows, length not a multiple of 24.
    let seasonal: Vec<f64> = noise(14, 24 * 20 + 7, 0.5)
        .iter()
        .enumerate()
        .map(|(t, e)| {
            5.0 * (2.0 * std::f64::consts::PI * t as f64 / 24.0).cos() - 0.003 * t as f64 + e
        })
        .collect();
    cases.push(("seasonal", seasonal.clone(), Some(24), 0.05));
    // Monthly-style period 12 with ties and gaps.
    let mut monthly: Vec<f64> = noise(15, 12 * 9, 1.0)
        .iter()
        .enumerate()
        .map(|(t, e)| ((3.0 * ((t % 12) as f64).sin() + 0.05 * t as f64 + e) * 4.0).round() / 4.0)
        .collect();
    for t in [0, 5, 17, 40, 41, 42, 100] {
        monthly[t] = f64::NAN;
    }
    cases.push(("monthly with gaps", monthly, Some(12), 0.05));
    // NaN in the original test (pymannkendall skips them).
    let mut gappy: Vec<f64> = noise(16, 150, 1.0)
        .iter()
        .enumerate()
        .map(|(t, e)| e - 0.01 * t as f64)
        .collect();
    for t in (3..150).step_by(11) {
        gappy[t] = f64::NAN;
    }
    cases.push(("gappy", gappy, Some(10), 0.05));

    let req = serde_json::json!({
        "series": cases.iter().map(|(_, x, period, alpha)| serde_json::json!({
            "x": x.iter().map(|v| if v.is_nan() { None } else { Some(*v) }).collect::<Vec<_>>(),
            "period": period,
            "alpha": alpha,
        })).collect::<Vec<_>>()
    });
    let peer = repo().join("tests/peers/mann_kendall.py");
    let out = run_json(&python, &[peer.to_str().unwrap()], &req.to_string());
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    let mut compared = 0;
    for ((name, x, period, alpha), res) in cases.iter().zip(results) {
        let mut pairs = vec![(
            "original",
            mann_kendall(x, *alpha).unwrap(),
            1usize,
            &res["original"],
        )];
        if let Some(p) = period {
            pairs.push((
                "seasonal",
                seasonal_mann_kendall(x, *p, *alpha).unwrap(),
                *p,
                &res["seasonal"],
            ));
        }
        for (test, ours, slope_factor, theirs) in pairs {
            let what = |field: &str| format!("{name} {test} {field}");
            assert_eq!(
                trend_name(ours.trend),
                theirs["trend"].as_str().unwrap(),
                "{}",
                what("trend")
            );
            close(&what("s"), ours.s, &theirs["s"], 1e-12);
            close(&what("var_s"), ours.var_s, &theirs["var_s"], 1e-12);
            close(&what("z"), ours.z, &theirs["z"], 1e-12);
            close(&what("p"), ours.p, &theirs["p"], 1e-12);
            close(&what("tau"), ours.tau, &theirs["Tau"], 1e-12);
            // Ours is per step; pymannkendall's seasonal slope is per cycle.
            close(
                &what("slope"),
                ours.slope * slope_factor as f64,
                &theirs["slope"],
                1e-10,
            );
            close(
                &what("intercept"),
                ours.intercept,
                &theirs["intercept"],
                1e-9,
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
}

// ---------------------------------------------------------------- anomaly

fn kinds(found: &[models::analysis::anomaly::Anomaly], kind: AnomalyKind) -> Vec<(usize, usize)> {
    found
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| (a.start, a.end))
        .collect()
}

#[test]
fn each_detector_finds_its_anomaly_in_noise() {
    let cfg = DetectorConfig::default();
    let base = noise(21, 3000, 1.0);
    assert!(
        detect(&base, None, &cfg).is_empty(),
        "{:?}",
        detect(&base, None, &cfg)
    );

    let mut spike = base.clone();
    spike[1200] += 15.0;
    let found = detect(&spike, None, &cfg);
    assert_eq!(
        kinds(&found, AnomalyKind::Spike),
        vec![(1200, 1201)],
        "{found:?}"
    );
    assert_eq!(found.len(), 1, "{found:?}");

    let mut shift = base.clone();
    for v in &mut shift[1500..] {
        *v += 4.0;
    }
    let found = detect(&shift, None, &cfg);
    let s = kinds(&found, AnomalyKind::LevelShift);
    assert_eq!(s.len(), 1, "{found:?}");
    assert!(s[0].0.abs_diff(1500) <= 3, "{found:?}");

    let mut stuck = base.clone();
    let held = stuck[799];
    stuck[800..860].fill(held);
    let found = detect(&stuck, None, &cfg);
    assert_eq!(
        kinds(&found, AnomalyKind::Stuck),
        vec![(799, 860)],
        "{found:?}"
    );

    let mut drift = base.clone();
    for (i, v) in drift[1000..].iter_mut().enumerate() {
        *v += 6.0 * (i as f64 / 600.0).min(1.0);
    }
    let found = detect(&drift, None, &cfg);
    let d = kinds(&found, AnomalyKind::Drift);
    assert_eq!(d.len(), 1, "{found:?}");
    assert!(d[0].0 < 1500 && d[0].1 > 1100, "{found:?}");
    assert!(
        kinds(&found, AnomalyKind::LevelShift).is_empty(),
        "{found:?}"
    );
}

#[test]
fn detector_respects_missing_values_periods_and_quantised_series() {
    let cfg = DetectorConfig::default();
    // Gaps are neither spikes nor shifts.
    let mut gappy = noise(22, 2000, 1.0);
    for v in gappy.iter_mut().skip(3).step_by(5) {
        *v = f64::NAN;
    }
    gappy[500..560].fill(f64::NAN);
    assert!(
        detect(&gappy, None, &cfg).is_empty(),
        "{:?}",
        detect(&gappy, None, &cfg)
    );
    // A state code: long equal runs are its nature, not a stuck sensor.
    let states: Vec<f64> = (0..2000).map(|t| f64::from((t / 40) % 3)).collect();
    assert!(kinds(&detect(&states, None, &cfg), AnomalyKind::Stuck).is_empty());
    // A daily cycle is removed with the period given.
    let day = 288;
    let cyc: Vec<f64> = (0..day * 5)
        .zip(noise(23, day * 5, 0.3))
        .map(|(t, e)| 10.0 * (2.0 * std::f64::consts::PI * t as f64 / day as f64).sin() + e)
        .collect();
    assert!(has_cycle(&cyc, day));
    let found = detect(&cyc, Some(day), &cfg);
    assert!(found.is_empty(), "{found:?}");
    let mut cyc_spike = cyc.clone();
    cyc_spike[700] -= 5.0;
    assert_eq!(
        kinds(&detect(&cyc_spike, Some(day), &cfg), AnomalyKind::Spike),
        vec![(700, 701)]
    );
    assert!(detect(&[], None, &cfg).is_empty());
    assert!(detect(&[f64::NAN; 100], None, &cfg).is_empty());
}

#[test]
fn labelled_set_and_evaluation_agree_with_themselves() {
    let base = noise(31, 5000, 1.0);
    let blocked = vec![false; base.len()];
    let (x, labels) = inject(&base, &blocked, 7, &InjectConfig::default());
    let again = inject(&base, &blocked, 7, &InjectConfig::default());
    assert_eq!((x.clone(), labels.clone()), again, "seeded");
    assert_eq!(labels.len(), 8, "{labels:?}");
    // Perfect detections score 1; none score recall 0; a wrong kind is a false positive.
    let perfect: Vec<_> = labels
        .iter()
        .map(|l| models::analysis::anomaly::Anomaly {
            kind: l.kind,
            start: l.start,
            end: l.end,
            size: l.size,
            score: 1.0,
        })
        .collect();
    let cases = [Case {
        labels: &labels,
        detections: &perfect,
        blocked: &blocked,
    }];
    for s in evaluate(&cases, 5) {
        assert_eq!((s.precision, s.recall), (1.0, 1.0), "{s:?}");
    }
    let wrong: Vec<_> = perfect
        .iter()
        .map(|a| models::analysis::anomaly::Anomaly {
            kind: AnomalyKind::Spike,
            ..*a
        })
        .collect();
    let cases = [Case {
        labels: &labels,
        detections: &wrong,
        blocked: &blocked,
    }];
    let spike = evaluate(&cases, 5)[0];
    assert_eq!(
        (spike.true_detections, spike.false_detections),
        (3, 5),
        "{spike:?}"
    );
    let none: [Label; 0] = [];
    let cases = [Case {
        labels: &labels,
        detections: &[],
        blocked: &blocked,
    }];
    assert!(evaluate(&cases, 5).iter().all(|s| s.recall == 0.0));
    let _ = none;
    // On noise, the detector finds most injected anomalies.
    let found = detect(&x, None, &DetectorConfig::default());
    let cases = [Case {
        labels: &labels,
        detections: &found,
        blocked: &blocked,
    }];
    let scores = evaluate(&cases, 10);
    let recall = scores.iter().map(|s| s.found).sum::<usize>() as f64 / labels.len() as f64;
    assert!(recall >= 0.75, "{scores:?}\n{labels:?}\n{found:?}");
}
