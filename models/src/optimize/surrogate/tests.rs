//! CMA-ES on functions with known optima; the surrogate problem on
//! closed-form models whose constrained optima are computed here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::optimize::lp::Sense;

/// A small deterministic generator for test data (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

fn sphere(c: &[f64]) -> impl Fn(&[f64]) -> f64 + '_ {
    move |x| x.iter().zip(c).map(|(x, c)| (x - c) * (x - c)).sum()
}

fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

fn ellipsoid(x: &[f64]) -> f64 {
    let n = x.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| 10f64.powf(6.0 * i as f64 / (n - 1) as f64) * v * v)
        .sum()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn sphere_reaches_its_center_in_2_to_10_dimensions() {
    let mut rng = Rng(7);
    for n in [2, 3, 5, 10] {
        let c: Vec<f64> = (0..n).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let bounds = vec![(-5.0, 5.0); n];
        let r = minimize(sphere(&c), &bounds, &vec![4.0; n], &CmaOptions::default()).unwrap();
        assert!(r.f <= 1e-10, "n={n}: f={} {r:?}", r.f);
        assert!(dist(&r.x, &c) <= 1e-5, "n={n}: {:?} vs {c:?}", r.x);
        assert_eq!(r.termination, Termination::Converged, "{r:?}");
        assert_eq!(r.invalid_evaluations, 0);
    }
}

#[test]
fn rosenbrock_and_ellipsoid_reach_their_optima() {
    for n in [2, 5, 10] {
        let opts = CmaOptions {
            restarts: 9,
            fun_target: Some(1e-10),
            ..CmaOptions::default()
        };
        let r = minimize(rosenbrock, &vec![(-5.0, 5.0); n], &vec![0.0; n], &opts).unwrap();
        assert!(r.f <= 1e-10, "rosenbrock n={n}: {r:?}");
        assert!(dist(&r.x, &vec![1.0; n]) <= 1e-4, "{:?}", r.x);
        assert_eq!(r.termination, Termination::TargetReached);
    }
    let r = minimize(
        ellipsoid,
        &[(-5.0, 5.0); 10],
        &[3.0; 10],
        &CmaOptions::default(),
    )
    .unwrap();
    assert!(r.f <= 1e-10, "ellipsoid: {r:?}");
}

#[test]
fn every_evaluation_is_inside_the_box_and_an_outside_optimum_lands_on_the_bound() {
    let bounds = [(0.0, 1.0), (-2.0, -1.0), (10.0, 20.0)];
    // Outside in the first two coordinates, inside in the third.
    let c = [1.7, -3.0, 12.5];
    let mut seen = Vec::new();
    let r = minimize(
        |x| {
            seen.push(x.to_vec());
            sphere(&c)(x)
        },
        &bounds,
        &[0.5, -1.5, 15.0],
        &CmaOptions::default(),
    )
    .unwrap();
    assert_eq!(seen.len(), r.evaluations);
    for x in &seen {
        for (v, (lo, hi)) in x.iter().zip(&bounds) {
            assert!(lo <= v && v <= hi, "{x:?} outside {bounds:?}");
        }
    }
    assert_eq!(r.x[0], 1.0, "{r:?}");
    assert_eq!(r.x[1], -2.0, "{r:?}");
    assert!((r.x[2] - 12.5).abs() <= 1e-6, "{r:?}");
    let expected = (1.7f64 - 1.0).powi(2) + 1.0;
    assert!((r.f - expected).abs() <= 1e-10, "{} vs {expected}", r.f);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A shifted sphere's minimum over a box is the center clamped into it.
    #[test]
    fn bounded_sphere_minimum_is_the_clamped_center(
        box_ in prop::collection::vec((-10.0..10.0f64, 0.1..5.0f64), 1..6),
        c_frac in prop::collection::vec(-1.0..2.0f64, 6),
        x_frac in prop::collection::vec(0.0..1.0f64, 6),
        seed in 0u64..1000,
    ) {
        let bounds: Vec<(f64, f64)> = box_.iter().map(|(lo, w)| (*lo, lo + w)).collect();
        let at = |fr: &[f64]| -> Vec<f64> {
            bounds.iter().zip(fr).map(|((lo, hi), f)| lo + f * (hi - lo)).collect()
        };
        let c = at(&c_frac);
        let x0 = at(&x_frac);
        let clamped: Vec<f64> = c.iter().zip(&bounds).map(|(c, (lo, hi))| c.clamp(*lo, *hi)).collect();
        let opts = CmaOptions { seed, ..CmaOptions::default() };
        let r = minimize(sphere(&c), &bounds, &x0, &opts).unwrap();
        let w = bounds.iter().map(|(lo, hi)| hi - lo).fold(0.0, f64::max);
        prop_assert!(dist(&r.x, &clamped) <= 1e-6 * w, "{:?} vs {:?}", r.x, clamped);
        for (v, (lo, hi)) in r.x.iter().zip(&bounds) {
            prop_assert!(lo <= v && v <= hi);
        }
    }
}

#[test]
fn non_finite_values_rank_worst_and_never_panic() {
    // NaN on a third of the box, -inf and +inf on slivers: the minimum of
    // the finite part is still found.
    let c = [0.6, 0.4];
    let f = |x: &[f64]| {
        if x[0] < 0.3 {
            f64::NAN
        } else if x[1] > 0.95 {
            f64::NEG_INFINITY
        } else if x[1] < 0.05 {
            f64::INFINITY
        } else {
            sphere(&c)(x)
        }
    };
    let r = minimize(f, &[(0.0, 1.0); 2], &[0.1, 0.5], &CmaOptions::default()).unwrap();
    assert!(r.invalid_evaluations > 0, "{r:?}");
    assert!(r.f.is_finite() && r.f <= 1e-10, "{r:?}");
    assert!(dist(&r.x, &c) <= 1e-5);

    let err = minimize(
        |_: &[f64]| f64::NAN,
        &[(0.0, 1.0); 3],
        &[0.5; 3],
        &CmaOptions {
            max_evaluations: Some(500),
            ..CmaOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, SurrogateError::NoFiniteValue { evaluations } if evaluations >= 500),
        "{err}"
    );
}

#[test]
fn a_seed_makes_runs_identical_and_another_seed_differs() {
    let run = |seed| {
        let mut trace = Vec::new();
        let r = minimize(
            |x| {
                trace.push(x.to_vec());
                rosenbrock(x)
            },
            &[(-2.0, 2.0); 4],
            &[0.0; 4],
            &CmaOptions {
                seed,
                ..CmaOptions::default()
            },
        )
        .unwrap();
        (r, trace)
    };
    let (a, ta) = run(42);
    let (b, tb) = run(42);
    let (c, tc) = run(43);
    assert_eq!(ta, tb);
    assert_eq!(
        (a.x, a.f, a.evaluations, a.generations),
        (b.x, b.f, b.evaluations, b.generations)
    );
    assert_ne!(ta[1..20], tc[1..20], "seed 43 sampled what seed 42 did");
    assert!(c.f.is_finite());
}

#[test]
fn fixed_variables_stay_put_and_budgets_are_kept() {
    let c = [0.3, 9.0, -0.2];
    let r = minimize(
        sphere(&c),
        &[(-1.0, 1.0), (2.0, 2.0), (-1.0, 1.0)],
        &[0.9, 5.0, 0.9],
        &CmaOptions::default(),
    )
    .unwrap();
    assert_eq!(r.x[1], 2.0);
    assert!((r.x[0] - 0.3).abs() <= 1e-6 && (r.x[2] + 0.2).abs() <= 1e-6);

    let all_fixed = minimize(
        sphere(&c),
        &[(1.0, 1.0); 3],
        &[0.0; 3],
        &CmaOptions::default(),
    );
    let all_fixed = all_fixed.unwrap();
    assert_eq!(
        (all_fixed.evaluations, all_fixed.termination),
        (1, Termination::NothingToSearch)
    );

    let n = 10;
    let limited = minimize(
        rosenbrock,
        &vec![(-5.0, 5.0); n],
        &vec![0.0; n],
        &CmaOptions {
            max_evaluations: Some(300),
            ..CmaOptions::default()
        },
    )
    .unwrap();
    let lambda = 4 + (3.0 * (n as f64).ln()).floor() as usize;
    assert_eq!(limited.termination, Termination::EvaluationLimit);
    assert!(
        (300..300 + lambda).contains(&limited.evaluations),
        "{limited:?}"
    );

    let target = minimize(
        sphere(&[0.1; 5]),
        &[(-1.0, 1.0); 5],
        &[0.8; 5],
        &CmaOptions {
            fun_target: Some(1e-4),
            ..CmaOptions::default()
        },
    )
    .unwrap();
    assert_eq!(target.termination, Termination::TargetReached);
    assert!(target.f < 1e-4 && target.f > 1e-12, "{target:?}");
    assert_eq!(target.runs, 1);

    // A start that already meets the target is the answer.
    let at_start = minimize(
        sphere(&[0.1; 5]),
        &[(-1.0, 1.0); 5],
        &[0.8; 5],
        &CmaOptions {
            fun_target: Some(3.0),
            ..CmaOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (at_start.evaluations, at_start.runs, at_start.termination),
        (1, 0, Termination::TargetReached)
    );
    assert_eq!(at_start.x, vec![0.8; 5]);
}

#[test]
fn bad_input_is_an_error() {
    let o = CmaOptions::default();
    let f = |_: &[f64]| 0.0;
    for (bounds, x0) in [
        (vec![], vec![]),
        (vec![(0.0, 1.0)], vec![0.5, 0.5]),
        (vec![(1.0, 0.0)], vec![0.5]),
        (vec![(0.0, f64::INFINITY)], vec![0.5]),
        (vec![(-1e308, 1e308)], vec![0.0]),
        (vec![(0.0, 1.0)], vec![f64::NAN]),
    ] {
        let e = minimize(f, &bounds, &x0, &o).unwrap_err();
        assert!(matches!(e, SurrogateError::Problem(_)), "{bounds:?}: {e}");
    }
    for bad in [
        CmaOptions {
            sigma0: 0.0,
            ..o.clone()
        },
        CmaOptions {
            population_size: Some(1),
            ..o.clone()
        },
        CmaOptions {
            max_evaluations: Some(0),
            ..o.clone()
        },
    ] {
        let e = minimize(f, &[(0.0, 1.0)], &[0.5], &bad).unwrap_err();
        assert!(matches!(e, SurrogateError::Options(_)), "{bad:?}: {e}");
    }
}

type Formula = Box<dyn Fn(&[f64]) -> Vec<f64>>;

/// A closed-form process model.
struct FnModel {
    inputs: Vec<String>,
    outputs: Vec<String>,
    f: Formula,
}

impl FnModel {
    fn new(inputs: &[&str], outputs: &[&str], f: impl Fn(&[f64]) -> Vec<f64> + 'static) -> Self {
        FnModel {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            f: Box::new(f),
        }
    }
}

impl ProcessModel for FnModel {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
    fn outputs(&self) -> &[String] {
        &self.outputs
    }
    fn predict(&self, x: &[f64]) -> Result<Vec<f64>, SurrogateError> {
        assert_eq!(x.len(), self.inputs.len());
        Ok((self.f)(x))
    }
}

fn decision(name: &str, lower: f64, upper: f64, current: f64) -> Decision {
    Decision {
        name: name.into(),
        lower,
        upper,
        current,
        price: 0.0,
    }
}

fn output(name: &str, price: f64, lower: f64, upper: f64) -> OutputSpec {
    OutputSpec {
        name: name.into(),
        price,
        lower,
        upper,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// min ‖u − t‖² subject to a·u + d ≤ b (d a disturbance): the projection
    /// of t onto the half-plane, u* = t − ((a·t + d − b)/‖a‖²)·a when the
    /// constraint is active.
    #[test]
    fn projection_onto_a_half_plane(
        t in prop::collection::vec(-1.0..1.0f64, 2),
        a in prop::collection::vec(0.2..2.0f64, 2),
        d in -1.0..1.0f64,
        slack in 0.1..1.0f64,
    ) {
        let (t2, a2) = ([t[0], t[1]], [a[0], a[1]]);
        let model = FnModel::new(&["u1", "d", "u2"], &["dist", "lin"], move |x| {
            let u = [x[0], x[2]];
            vec![
                (u[0] - t2[0]).powi(2) + (u[1] - t2[1]).powi(2),
                a2[0] * u[0] + a2[1] * u[1] + x[1],
            ]
        });
        let at = a[0] * t[0] + a[1] * t[1] + d;
        let b = at - slack;
        let k = (at - b) / (a[0] * a[0] + a[1] * a[1]);
        let expect = [t[0] - k * a[0], t[1] - k * a[1]];
        let problem = SurrogateProblem {
            sense: Sense::Minimize,
            decisions: vec![decision("u1", -5.0, 5.0, 4.0), decision("u2", -5.0, 5.0, -4.0)],
            disturbances: vec![Disturbance { name: "d".into(), value: d }],
            outputs: vec![output("dist", 1.0, f64::NEG_INFINITY, f64::INFINITY),
                          output("lin", 0.0, f64::NEG_INFINITY, b)],
        };
        let ans = optimize_surrogate(&model, &problem, &SurrogateOptions::default()).unwrap();
        prop_assert!(ans.feasible, "{ans:?}");
        prop_assert!(dist(&ans.decisions, &expect) <= 1e-4, "{:?} vs {expect:?}", ans.decisions);
        let j_star = slack * slack / (a[0] * a[0] + a[1] * a[1]);
        // Below J* by at most the multiplier (2k) times the tolerated
        // violation; above it by the search's resolution.
        let gain = 2.0 * k * 1e-6 * 10.0 * (a[0] + a[1]);
        prop_assert!(ans.objective_proposed >= j_star - gain - 1e-12
            && ans.objective_proposed <= j_star + 1e-5 * (1.0 + j_star),
            "{} vs {j_star} (gain {gain:e})", ans.objective_proposed);
        // The tolerance is relative to the spread of `lin` over the box,
        // at most 10·(a1 + a2).
        prop_assert!(ans.outputs_proposed[1] <= b + 1e-6 * 10.0 * (a[0] + a[1]));
        prop_assert_eq!(ans.violations[1], (ans.outputs_proposed[1] - b).max(0.0));
        prop_assert!(ans.max_violation <= 1e-6);
        prop_assert_eq!(ans.violations.len(), 2);
        prop_assert_eq!(ans.outputs_current.len(), 2);
        prop_assert!((ans.objective_current - ((4.0 - t[0]).powi(2) + (-4.0 - t[1]).powi(2))).abs() < 1e-12);
    }
}

#[test]
fn maximize_a_price_on_a_disk() {
    // max p·u subject to ‖u‖² ≤ r²: u* = r·p/‖p‖.
    let (p, r) = ([3.0, -1.5], 0.8);
    let model = FnModel::new(&["u1", "u2"], &["r2"], |x| vec![x[0] * x[0] + x[1] * x[1]]);
    let mut d1 = decision("u1", -2.0, 2.0, 0.0);
    let mut d2 = decision("u2", -2.0, 2.0, 0.0);
    d1.price = p[0];
    d2.price = p[1];
    let problem = SurrogateProblem {
        sense: Sense::Maximize,
        decisions: vec![d1, d2],
        disturbances: vec![],
        outputs: vec![output("r2", 0.0, f64::NEG_INFINITY, r * r)],
    };
    let ans = optimize_surrogate(&model, &problem, &SurrogateOptions::default()).unwrap();
    let norm = (p[0] * p[0] + p[1] * p[1]).sqrt();
    let expect = [r * p[0] / norm, r * p[1] / norm];
    assert!(ans.feasible, "{ans:?}");
    assert!(
        dist(&ans.decisions, &expect) <= 1e-4,
        "{ans:?} vs {expect:?}"
    );
    // Above r·‖p‖ by at most the multiplier ‖p‖/2r times the tolerated
    // violation (1e-6 of r2's spread over the box, at most 8).
    let gain = norm / (2.0 * r) * 1e-6 * 8.0;
    assert!(
        ans.objective_proposed <= r * norm + gain + 1e-12
            && ans.objective_proposed >= r * norm - 1e-5 * r * norm,
        "{} vs {}",
        ans.objective_proposed,
        r * norm
    );
    assert_eq!(ans.objective_current, 0.0);
    assert!(ans.objective_proposed > ans.objective_current);
}

#[test]
fn an_unreachable_range_is_reported_infeasible_with_the_least_violating_point() {
    // y = u1 + 0.1·u2 must reach 5 with u in [0, 1]²: impossible; the least
    // violating point is (1, 1) and misses by 3.9.
    let model = FnModel::new(&["u1", "u2"], &["y"], |x| vec![x[0] + 0.1 * x[1]]);
    let problem = SurrogateProblem {
        sense: Sense::Minimize,
        decisions: vec![decision("u1", 0.0, 1.0, 0.2), decision("u2", 0.0, 1.0, 0.2)],
        disturbances: vec![],
        outputs: vec![output("y", 1.0, 5.0, f64::INFINITY)],
    };
    let ans = optimize_surrogate(&model, &problem, &SurrogateOptions::default()).unwrap();
    assert!(!ans.feasible, "{ans:?}");
    assert_eq!(ans.decisions, vec![1.0, 1.0]);
    assert!((ans.violations[0] - 3.9).abs() < 1e-12, "{ans:?}");
    assert!(ans.max_violation > 1.0);
    assert_eq!(ans.worst_output.as_deref(), Some("y"));
    assert!(ans.max_violation_current > ans.max_violation);
}

#[test]
fn a_feasible_current_point_is_never_answered_with_a_worse_one_and_failures_are_survived() {
    // A multimodal objective that fails (NaN) on part of the box.
    let model = FnModel::new(&["u", "w"], &["y"], |x| {
        if x[0] > 2.5 {
            return vec![f64::NAN];
        }
        vec![(3.0 * x[0]).sin() + (2.0 * x[1]).cos() + 0.1 * x[0] * x[1]]
    });
    let problem = SurrogateProblem {
        sense: Sense::Minimize,
        decisions: vec![decision("u", -3.0, 3.0, 1.0), decision("w", -3.0, 3.0, 0.5)],
        disturbances: vec![],
        outputs: vec![output("y", 2.0, -10.0, 10.0)],
    };
    let ans = optimize_surrogate(&model, &problem, &SurrogateOptions::default()).unwrap();
    assert!(ans.feasible);
    assert!(ans.objective_proposed <= ans.objective_current);
    assert!(ans.decisions[0] <= 2.5);
    // A grid search bounds how good the answer must be.
    let mut grid_best = f64::INFINITY;
    for i in 0..=600 {
        for j in 0..=600 {
            let (u, w) = (-3.0 + i as f64 * 0.01, -3.0 + j as f64 * 0.01);
            if u <= 2.5 {
                let y = (3.0 * u).sin() + (2.0 * w).cos() + 0.1 * u * w;
                grid_best = grid_best.min(2.0 * y);
            }
        }
    }
    assert!(
        ans.objective_proposed <= grid_best + 1e-9,
        "{ans:?} vs grid {grid_best}"
    );
    assert!(ans.evaluations > ans.generations && ans.runs >= 1);
    assert!(ans.elapsed > std::time::Duration::ZERO);
}

#[test]
fn problems_that_do_not_fit_the_model_are_refused() {
    let model = FnModel::new(&["a", "b"], &["y", "z"], |x| vec![x[0], x[1]]);
    let base = SurrogateProblem {
        sense: Sense::Minimize,
        decisions: vec![decision("a", 0.0, 1.0, 0.5)],
        disturbances: vec![Disturbance {
            name: "b".into(),
            value: 1.0,
        }],
        outputs: vec![output("y", 1.0, 0.0, 1.0)],
    };
    assert!(optimize_surrogate(&model, &base, &SurrogateOptions::default()).is_ok());
    type Edit = Box<dyn Fn(&mut SurrogateProblem)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("missing input", Box::new(|p| p.disturbances.clear())),
        (
            "unknown input",
            Box::new(|p| p.decisions[0].name = "q".into()),
        ),
        (
            "input twice",
            Box::new(|p| p.disturbances[0].name = "a".into()),
        ),
        (
            "unknown output",
            Box::new(|p| p.outputs[0].name = "x".into()),
        ),
        (
            "empty range",
            Box::new(|p| {
                p.outputs[0].lower = 2.0;
            }),
        ),
        (
            "open box",
            Box::new(|p| p.decisions[0].upper = f64::INFINITY),
        ),
        ("no decisions", Box::new(|p| p.decisions.clear())),
        (
            "NaN disturbance",
            Box::new(|p| p.disturbances[0].value = f64::NAN),
        ),
    ];
    for (what, edit) in cases {
        let mut p = base.clone();
        edit(&mut p);
        let e = optimize_surrogate(&model, &p, &SurrogateOptions::default()).unwrap_err();
        assert!(matches!(e, SurrogateError::Problem(_)), "{what}: {e}");
    }
}

#[test]
fn bad_model_files_are_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.onnx");
    let e = Surrogate::load(&missing, &["a"], &["y"]).unwrap_err();
    assert!(matches!(e, SurrogateError::Load { .. }), "{e}");
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\x08\x07\x12\x04junk and more junk").unwrap();
    let e = Surrogate::load(&junk, &["a"], &["y"]).unwrap_err();
    assert!(matches!(e, SurrogateError::Load { .. }), "{e}");
    let none: [&str; 0] = [];
    let e = Surrogate::load(&junk, &none, &["y"]).unwrap_err();
    assert!(matches!(e, SurrogateError::Mismatch { .. }), "{e}");
    let e = Surrogate::load(&junk, &["a", "a"], &["y"]).unwrap_err();
    assert!(matches!(e, SurrogateError::Mismatch { .. }), "{e}");
}
