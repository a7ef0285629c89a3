//! `models::optimize::surrogate` against independent peers: our CMA-ES
//! against PyPI `cma` (same functions, x0, sigma0 and bounds, several seeds,
//! evaluation counts side by side), and the ONNX surrogate against
//! onnxruntime, on graphs written by `models/train/make_surrogate.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use models::optimize::Sense;
use models::optimize::surrogate::{
    CmaOptions, Decision, Disturbance, OutputSpec, Surrogate, SurrogateError, SurrogateOptions,
    SurrogateProblem, minimize, optimize_surrogate,
};
use serde_json::json;

use crate::support::{onnxruntime, python, repo, run_json};

/// The venv's Python, with PyPI `cma` (tests/peers/requirements.txt).
/// `None` outside CI when it is missing; under CI=true a missing peer fails.
fn python_with_cma() -> Option<PathBuf> {
    let py = python()?;
    let ok = Command::new(&py)
        .args(["-c", "import cma"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "PyPI cma is missing from {py:?}: run scripts/test.sh (tests/peers/requirements.txt)"
        );
    }
    eprintln!("SKIPPED: peer missing: PyPI cma in {py:?} (run scripts/test.sh)");
    None
}

/// splitmix64: test data both sides agree on, since it is sent to the peer.
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

    /// Rounded to f32, so the ONNX graph and the f64 formulas hold the
    /// same numbers.
    fn f32(&mut self, lo: f64, hi: f64) -> f64 {
        f64::from(self.uniform(lo, hi) as f32)
    }
}

/// An orthogonal matrix: Gram–Schmidt on random rows.
fn rotation(n: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    while rows.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for r in &rows {
            let d: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-3 {
            rows.push(v.iter().map(|a| a / norm).collect());
        }
    }
    rows
}

/// The functions, written once here and once in the peer script below.
enum Function {
    Rosenbrock,
    Ellipsoid { r: Vec<Vec<f64>>, w: Vec<f64> },
    Sphere { c: Vec<f64> },
}

impl Function {
    fn eval(&self, x: &[f64]) -> f64 {
        match self {
            Function::Rosenbrock => x
                .windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum(),
            Function::Ellipsoid { r, w } => r
                .iter()
                .zip(w)
                .map(|(row, w)| {
                    let y: f64 = row.iter().zip(x).map(|(a, b)| a * b).sum();
                    w * y * y
                })
                .sum(),
            Function::Sphere { c } => x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Function::Rosenbrock => json!({ "kind": "rosenbrock" }),
            Function::Ellipsoid { r, w } => json!({ "kind": "ellipsoid", "R": r, "w": w }),
            Function::Sphere { c } => json!({ "kind": "sphere", "c": c }),
        }
    }
}

struct Case {
    name: &'static str,
    f: Function,
    lower: f64,
    upper: f64,
    x0: Vec<f64>,
    sigma0: f64,
    ftarget: f64,
    /// Where the answer must be (the bounded problem), within 1e-6.
    x_star: Option<Vec<f64>>,
}

const PEER: &str = r#"
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
import cma

req = json.load(sys.stdin)
out = {"version": cma.__version__, "problems": []}
for p in req["problems"]:
    n = len(p["x0"])
    kind = p["f"]["kind"]
    if kind == "rosenbrock":
        def fun(x):
            return float(sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(n - 1)))
    elif kind == "ellipsoid":
        R = np.asarray(p["f"]["R"]); w = np.asarray(p["f"]["w"])
        def fun(x):
            y = R @ np.asarray(x, dtype=float)
            return float(np.sum(w * y * y))
    elif kind == "sphere":
        c = np.asarray(p["f"]["c"])
        def fun(x):
            d = np.asarray(x, dtype=float) - c
            return float(d @ d)
    runs = []
    for seed in req["seeds"]:
        state = {"count": 0, "f": float("inf"), "x": None}
        def f(x):
            state["count"] += 1
            v = fun(x)
            if v < state["f"]:
                state["f"], state["x"] = v, [float(t) for t in x]
            return v
        opts = {"seed": seed, "ftarget": p["ftarget"], "bounds": [[p["lower"]] * n, [p["upper"]] * n],
                "maxfevals": req["maxfevals"], "verbose": -9, "verb_log": 0, "verb_disp": 0}
        cma.fmin2(f, p["x0"], p["sigma0"], opts, restarts=req["restarts"], incpopsize=2)
        runs.append({"seed": seed, "evaluations": state["count"], "f": state["f"], "x": state["x"]})
    out["problems"].append({"name": p["name"], "runs": runs})
json.dump(out, sys.stdout)
"#;

fn median(v: &[usize]) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    let k = s.len();
    if k % 2 == 1 {
        s[k / 2] as f64
    } else {
        (s[k / 2 - 1] + s[k / 2]) as f64 / 2.0
    }
}

fn max_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn cmaes_reaches_the_targets_pycma_reaches_within_3x_its_evaluations() {
    let Some(py) = python_with_cma() else { return };
    let n = 10;
    let mut rng = Rng(2024);
    let r = rotation(n, &mut rng);
    let w: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(6.0 * i as f64 / (n - 1) as f64))
        .collect();
    // A sphere whose center lies outside [-1, 2] in 2 of every 3 coordinates.
    let c: Vec<f64> = (0..n)
        .map(|i| match i % 3 {
            0 => rng.uniform(2.3, 3.0),
            1 => rng.uniform(-2.0, -1.3),
            _ => rng.uniform(-0.5, 1.5),
        })
        .collect();
    let x_star: Vec<f64> = c.iter().map(|v| v.clamp(-1.0, 2.0)).collect();
    let f_star = Function::Sphere { c: c.clone() }.eval(&x_star);
    let cases = [
        Case {
            name: "rosenbrock-10",
            f: Function::Rosenbrock,
            lower: -5.0,
            upper: 5.0,
            x0: vec![0.0; n],
            sigma0: 0.5,
            ftarget: 1e-8,
            x_star: None,
        },
        Case {
            name: "rotated-ellipsoid-10",
            f: Function::Ellipsoid { r, w },
            lower: -5.0,
            upper: 5.0,
            x0: vec![1.0; n],
            sigma0: 1.0,
            ftarget: 1e-8,
            x_star: None,
        },
        Case {
            name: "bounded-sphere-10",
            f: Function::Sphere { c },
            lower: -1.0,
            upper: 2.0,
            x0: vec![0.5; n],
            sigma0: 0.9,
            ftarget: f_star + 1e-12,
            x_star: Some(x_star),
        },
    ];
    let seeds: Vec<u64> = (1..=7).collect();
    let (restarts, maxfevals) = (9, 200_000);

    let req = json!({
        "seeds": seeds,
        "restarts": restarts,
        "maxfevals": maxfevals,
        "problems": cases.iter().map(|c| json!({
            "name": c.name, "f": c.f.json(), "lower": c.lower, "upper": c.upper,
            "x0": c.x0, "sigma0": c.sigma0, "ftarget": c.ftarget,
        })).collect::<Vec<_>>(),
    });
    let peer = run_json(&py, &["-c", PEER], &req.to_string());
    let version = peer["version"].as_str().unwrap().to_owned();

    let mut failures = Vec::new();
    eprintln!(
        "{:<22} {:>5} {:>12} {:>12}   (evaluations to the target; cma {version})",
        "problem", "seed", "ours", "pycma"
    );
    for (case, theirs) in cases.iter().zip(peer["problems"].as_array().unwrap()) {
        assert_eq!(theirs["name"], case.name);
        let bounds = vec![(case.lower, case.upper); case.x0.len()];
        let (mut our_evals, mut their_evals) = (Vec::new(), Vec::new());
        for (&seed, run) in seeds.iter().zip(theirs["runs"].as_array().unwrap()) {
            let opts = CmaOptions {
                sigma0: case.sigma0 / (case.upper - case.lower),
                seed,
                restarts,
                max_evaluations: Some(maxfevals),
                fun_target: Some(case.ftarget),
                ..CmaOptions::default()
            };
            let mut calls = 0;
            let ours = minimize(
                |x| {
                    calls += 1;
                    case.f.eval(x)
                },
                &bounds,
                &case.x0,
                &opts,
            )
            .unwrap();
            assert_eq!(calls, ours.evaluations);
            let their_f = run["f"].as_f64().unwrap();
            let their_x: Vec<f64> = serde_json::from_value(run["x"].clone()).unwrap();
            let their_n = run["evaluations"].as_u64().unwrap() as usize;
            eprintln!(
                "{:<22} {seed:>5} {:>12} {:>12}   f: {:.3e} / {:.3e}, runs {}",
                case.name, ours.evaluations, their_n, ours.f, their_f, ours.runs
            );
            for (who, f, x) in [("ours", ours.f, &ours.x), ("pycma", their_f, &their_x)] {
                if f > case.ftarget {
                    failures.push(format!(
                        "{} seed {seed}: {who} stopped at f = {f:e} > {:e}",
                        case.name, case.ftarget
                    ));
                }
                if let Some(xs) = &case.x_star {
                    let d = max_dist(x, xs);
                    if d > 1e-6 {
                        failures.push(format!(
                            "{} seed {seed}: {who} ended {d:e} from the bounded optimum",
                            case.name
                        ));
                    }
                }
                if x.iter().any(|v| *v < case.lower || *v > case.upper) {
                    failures.push(format!("{} seed {seed}: {who} left the box", case.name));
                }
            }
            our_evals.push(ours.evaluations);
            their_evals.push(their_n);
        }
        let (mo, mt) = (median(&our_evals), median(&their_evals));
        eprintln!(
            "{:<22} {:>5} {mo:>12} {mt:>12}   ratio {:.2}",
            case.name,
            "median",
            mo / mt
        );
        if mo > 3.0 * mt {
            failures.push(format!(
                "{}: our median {mo} evaluations > 3 × pycma's {mt}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes `spec` (make_surrogate.py's JSON) as `dir/name.onnx`.
fn make_model(py: &Path, dir: &Path, name: &str, spec: &serde_json::Value) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    let script = repo().join("models/train/make_surrogate.py");
    let out = run_json(
        py,
        &[script.to_str().unwrap(), path.to_str().unwrap()],
        &spec.to_string(),
    );
    assert_eq!(out["path"].as_str(), path.to_str());
    path
}

fn matrix(rng: &mut Rng, rows: usize, cols: usize, lo: f64, hi: f64) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| (0..cols).map(|_| rng.f32(lo, hi)).collect())
        .collect()
}

#[test]
fn cmaes_surrogate_predicts_what_onnxruntime_computes() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    let (n, h, m) = (4, 6, 3);
    let spec = json!({
        "W1": matrix(&mut rng, n, h, -1.0, 1.0),
        "b1": (0..h).map(|_| rng.f32(-0.5, 0.5)).collect::<Vec<_>>(),
        "T": matrix(&mut rng, h, m, -2.0, 2.0),
        "Q": matrix(&mut rng, h, m, -0.1, 0.1),
        "L": matrix(&mut rng, n, m, -0.5, 0.5),
        "c": (0..m).map(|_| rng.f32(-1.0, 1.0)).collect::<Vec<_>>(),
    });
    let path = make_model(&py, dir.path(), "mlp", &spec);
    let inputs = ["feed", "temp", "pressure", "ambient"];
    let outputs = ["yield", "energy", "purity"];
    let s = Surrogate::load(&path, &inputs, &outputs).unwrap();
    assert_eq!(s.inputs(), inputs);
    assert_eq!(s.outputs(), outputs);

    let rows: Vec<Vec<f32>> = (0..24)
        .map(|_| (0..n).map(|_| rng.uniform(-3.0, 3.0) as f32).collect())
        .collect();
    let peer = onnxruntime(&py, &path, &rows);
    for (row, theirs) in rows.iter().zip(&peer) {
        let x: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
        let ours = s.predict(&x).unwrap();
        assert_eq!(ours.len(), m);
        for (a, b) in ours.iter().zip(theirs) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{x:?}: tract {ours:?} vs onnxruntime {theirs:?}"
            );
        }
    }
    assert!(matches!(
        s.predict(&[0.0; 3]),
        Err(SurrogateError::Inputs {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        s.predict(&[0.0, f64::NAN, 0.0, 0.0]),
        Err(SurrogateError::NonFinite { .. })
    ));
    // Tags that do not match the graph's shapes.
    for (i, o) in [(&inputs[..3], &outputs[..]), (&inputs[..], &outputs[..2])] {
        let e = Surrogate::load(&path, i, o).unwrap_err();
        assert!(matches!(e, SurrogateError::Mismatch { .. }), "{e}");
    }
}

/// 2×2 inverse applied to `v`.
fn solve2(h: [[f64; 2]; 2], v: [f64; 2]) -> [f64; 2] {
    let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
    [
        (h[1][1] * v[0] - h[0][1] * v[1]) / det,
        (h[0][0] * v[1] - h[1][0] * v[0]) / det,
    ]
}

#[test]
fn cmaes_surrogate_finds_the_kkt_optimum_of_a_quadratic_onnx_model() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    // Inputs: feed, temp (decisions), ambient (disturbance). Outputs:
    // cost = Σ_j q_j z_j² (z = x W1 + b1, q > 0: convex in the decisions)
    // and quality = a·x + c1 (linear).
    let (n, h) = (3, 3);
    let w1 = matrix(&mut rng, n, h, -1.0, 1.0);
    let b1: Vec<f64> = (0..h).map(|_| rng.f32(-0.5, 0.5)).collect();
    let q: Vec<f64> = (0..h).map(|_| rng.f32(0.5, 2.0)).collect();
    let a: Vec<f64> = (0..n).map(|_| rng.f32(0.5, 1.5)).collect();
    let c = [rng.f32(-1.0, 1.0), rng.f32(-1.0, 1.0)];
    let d = rng.f32(-1.0, 1.0);
    let p = [rng.f32(-0.5, 0.5), rng.f32(-0.5, 0.5)];
    let spec = json!({
        "W1": w1, "b1": b1,
        "Q": q.iter().map(|v| vec![*v, 0.0]).collect::<Vec<_>>(),
        "L": a.iter().map(|v| vec![0.0, *v]).collect::<Vec<_>>(),
        "c": c,
    });
    let path = make_model(&py, dir.path(), "quadratic", &spec);
    let s = Surrogate::load(&path, &["feed", "temp", "ambient"], &["cost", "quality"]).unwrap();

    // J(u) = Σ q_j (w_j·u + k_j)² + c0 + p·u, with k_j = W1[2][j]·d + b1_j:
    // gradient H u + g, H = 2 Σ q_j w_j w_jᵀ, g = 2 Σ q_j k_j w_j + p.
    let mut hm = [[0.0; 2]; 2];
    let mut g = p;
    for j in 0..h {
        let wj = [w1[0][j], w1[1][j]];
        let kj = w1[2][j] * d + b1[j];
        for r in 0..2 {
            g[r] += 2.0 * q[j] * kj * wj[r];
            for s in 0..2 {
                hm[r][s] += 2.0 * q[j] * wj[r] * wj[s];
            }
        }
    }
    let j_of = |u: [f64; 2]| -> f64 {
        let cost: f64 = (0..h)
            .map(|j| q[j] * (w1[0][j] * u[0] + w1[1][j] * u[1] + w1[2][j] * d + b1[j]).powi(2))
            .sum();
        cost + c[0] + p[0] * u[0] + p[1] * u[1]
    };
    let quality = |u: [f64; 2]| a[0] * u[0] + a[1] * u[1] + a[2] * d + c[1];
    let neg_g = [-g[0], -g[1]];
    let u_free = solve2(hm, neg_g);
    // The quality limit cuts the unconstrained optimum off: the answer lies
    // on a·u = β where λ = (a·u_free − β) / (aᵀH⁻¹a) and
    // u* = u_free − λ H⁻¹ a.
    let au = [a[0], a[1]];
    let hinv_a = solve2(hm, au);
    let upper = quality(u_free) - 0.5 * (au[0].abs() + au[1].abs());
    let beta = upper - a[2] * d - c[1];
    let lambda =
        (au[0] * u_free[0] + au[1] * u_free[1] - beta) / (au[0] * hinv_a[0] + au[1] * hinv_a[1]);
    assert!(lambda > 0.0);
    let u_star = [
        u_free[0] - lambda * hinv_a[0],
        u_free[1] - lambda * hinv_a[1],
    ];
    let j_star = j_of(u_star);
    let (lo, hi) = (-4.0, 4.0);
    assert!(
        u_star.iter().chain(&u_free).all(|v| v.abs() < 3.5),
        "the weights put the optimum near the box: {u_star:?} {u_free:?}"
    );

    let problem = SurrogateProblem {
        sense: Sense::Minimize,
        decisions: vec![
            Decision {
                name: "feed".into(),
                lower: lo,
                upper: hi,
                current: 3.0,
                price: p[0],
            },
            Decision {
                name: "temp".into(),
                lower: lo,
                upper: hi,
                current: -3.0,
                price: p[1],
            },
        ],
        disturbances: vec![Disturbance {
            name: "ambient".into(),
            value: d,
        }],
        outputs: vec![
            OutputSpec {
                name: "cost".into(),
                price: 1.0,
                lower: f64::NEG_INFINITY,
                upper: f64::INFINITY,
            },
            OutputSpec {
                name: "quality".into(),
                price: 0.0,
                lower: f64::NEG_INFINITY,
                upper,
            },
        ],
    };
    let ans = optimize_surrogate(&s, &problem, &SurrogateOptions::default()).unwrap();
    eprintln!(
        "quadratic surrogate: u = {:?} (KKT {u_star:?}), J = {} (KKT {j_star}, λ {lambda}), \
         quality over its limit by {:e}, current J = {}, {} evaluations, {} runs, {:?}, {:?}",
        ans.decisions,
        ans.objective_proposed,
        ans.violations[1],
        ans.objective_current,
        ans.evaluations,
        ans.runs,
        ans.termination,
        ans.elapsed
    );
    assert!(ans.feasible, "{ans:?}");
    let u = [ans.decisions[0], ans.decisions[1]];
    // Along the constraint J is flat to second order, so u is resolved only
    // to about the square root of f32 rounding.
    assert!(
        max_dist(&u, &u_star) <= 1e-3,
        "{u:?} vs the KKT point {u_star:?}"
    );
    let scale = 1.0 + j_star.abs();
    // Feasible means within 1e-6 of quality's spread over the box (at most
    // 8·(|a1| + |a2|)): crossing the limit by that much gains at most λ
    // times it. Above J*, only f32 rounding.
    let slack = lambda * 1e-6 * 8.0 * (au[0].abs() + au[1].abs());
    assert!(
        ans.objective_proposed >= j_star - slack - 1e-6 * scale
            && ans.objective_proposed <= j_star + 1e-5 * scale,
        "J {} vs {j_star} (λ = {lambda}, slack {slack:e})",
        ans.objective_proposed
    );
    // What the model said at the proposal is what the formulas say there.
    assert!((ans.objective_proposed - j_of(u)).abs() <= 1e-5 * scale);
    assert!((ans.outputs_proposed[1] - quality(u)).abs() <= 1e-5 * scale);
    assert!(ans.outputs_proposed[1] <= upper + 1e-5 * upper.abs().max(1.0));
    assert!(
        (ans.objective_current - j_of([3.0, -3.0])).abs()
            <= 1e-5 * j_of([3.0, -3.0]).abs().max(1.0)
    );
    assert!(ans.evaluations > 0 && ans.elapsed.as_nanos() > 0);
}
