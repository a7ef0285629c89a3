//! `apos-bench surrogate`: the demo's optimization problem (`cdu-margin`,
//! `apos::demo::optimization_config`) solved three ways in one run:
//!
//! 1. the LP (`models::optimize::recommend`, Clarabel), the reference;
//! 2. CMA-ES (`models::optimize::surrogate::optimize_surrogate`) on the same
//!    linear models evaluated in f64 (the optimizer's own cost);
//! 3. CMA-ES on the same models exported as an ONNX surrogate
//!    (`models/train/make_surrogate.py`, run by tract in f32): what a
//!    surrogate-based problem costs on the hub.
//!
//! Prints each answer's objective, its gap to the LP optimum, the largest
//! constraint violation, time and model evaluations (docs/benchmarks.md §12).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use models::optimize::fit::LinearModel;
use models::optimize::lp::Sense;
use models::optimize::recommend::{Current, Objective, ObjectiveSense, Output, Problem, recommend};
use models::optimize::surrogate::{
    Decision, Disturbance, OutputSpec, ProcessModel, Surrogate, SurrogateError, SurrogateOptions,
    SurrogateProblem, optimize_surrogate,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Timed repetitions of each method (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Python with numpy and onnx (default: .venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// The demo problem's linear models as one process model (f64).
struct Linear {
    inputs: Vec<String>,
    outputs: Vec<String>,
    models: Vec<LinearModel>,
}

impl ProcessModel for Linear {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }
    fn outputs(&self) -> &[String] {
        &self.outputs
    }
    fn predict(&self, x: &[f64]) -> Result<Vec<f64>, SurrogateError> {
        Ok(self
            .models
            .iter()
            .map(|m| {
                let v: Vec<f64> = m
                    .inputs
                    .iter()
                    .map(|i| {
                        self.inputs
                            .iter()
                            .position(|n| n == i)
                            .map_or(f64::NAN, |j| x[j])
                    })
                    .collect();
                m.predict(&v)
            })
            .collect())
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || bench(args))
        .await
        .context("the benchmark thread")?
}

fn bench(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let text = format!(
        "schema_version = 1\n[storage]\npath = {:?}\n{}",
        dir.path().join("fleet.duckdb").display().to_string(),
        crate::demo::optimization_config(&dir.path().join("recommend.key"))
    );
    let cfg = hub::config::parse(Path::new("hub.toml"), &text)?;
    let Some(p) = cfg.optimization.and_then(|o| o.problems.into_iter().next()) else {
        bail!("the demo configuration has no optimization problem");
    };
    // The demo's operating point: 360 °C, reflux 2.2, feed 500 m³/h.
    let current_decisions = [
        ("heater.outlet_temp_sp", 360.0),
        ("column.reflux_ratio_sp", 2.2),
    ];
    let feed = ("column.feed_rate", 500.0);
    let mut outputs = Vec::new();
    for o in &p.outputs {
        let hub::config::ModelSpec::User {
            inputs,
            intercept,
            coefficients,
        } = &o.model
        else {
            bail!("the demo's models are given, not fitted");
        };
        outputs.push(Output {
            tag: o.tag.clone(),
            label: o.label.clone(),
            unit: o.unit.clone(),
            model: LinearModel::new(
                o.tag.clone(),
                inputs.clone(),
                *intercept,
                coefficients.clone(),
            ),
        });
    }
    let problem = Problem {
        name: p.name.clone(),
        decisions: p.decisions.clone(),
        outputs: outputs.clone(),
        objective: Objective {
            sense: p.sense,
            unit: p.unit.clone(),
            terms: p.terms.clone(),
        },
        constraints: p.constraints.clone(),
        margin_sigmas: p.margin_sigmas,
        hours_per_year: p.hours_per_year,
        bias_correction: false,
    };
    let mut current = Current::default();
    for (t, v) in current_decisions {
        current.decisions.insert(t.into(), v);
    }
    current.disturbances.insert(feed.0.into(), feed.1);

    // 1. LP.
    let mut lp_times = Vec::new();
    let mut rec = None;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        rec = Some(recommend(&problem, &current)?);
        lp_times.push(t.elapsed());
    }
    let Some(rec) = rec else { bail!("no LP run") };

    // The same problem for CMA-ES: bounds as the LP's (limits ∩ max move),
    // the feed held, prices on the outputs, the spec as an output range.
    let decisions: Vec<Decision> = rec
        .setpoints
        .iter()
        .map(|s| Decision {
            name: s.tag.clone(),
            lower: s.lower,
            upper: s.upper,
            current: s.current,
            price: p
                .terms
                .iter()
                .filter(|t| t.tag == s.tag)
                .map(|t| t.price)
                .sum(),
        })
        .collect();
    let linear = Linear {
        inputs: decisions
            .iter()
            .map(|d| d.name.clone())
            .chain([feed.0.to_owned()])
            .collect(),
        outputs: outputs.iter().map(|o| o.tag.clone()).collect(),
        models: outputs.iter().map(|o| o.model.clone()).collect(),
    };
    let sp = SurrogateProblem {
        sense: match p.sense {
            ObjectiveSense::Maximize => Sense::Maximize,
            ObjectiveSense::Minimize => Sense::Minimize,
        },
        decisions,
        disturbances: vec![Disturbance {
            name: feed.0.into(),
            value: feed.1,
        }],
        outputs: linear
            .outputs
            .iter()
            .map(|o| {
                let c = p.constraints.iter().find(|c| &c.tag == o);
                OutputSpec {
                    name: o.clone(),
                    price: p
                        .terms
                        .iter()
                        .filter(|t| &t.tag == o)
                        .map(|t| t.price)
                        .sum(),
                    lower: c.and_then(|c| c.lower).unwrap_or(f64::NEG_INFINITY),
                    upper: c.and_then(|c| c.upper).unwrap_or(f64::INFINITY),
                }
            })
            .collect(),
    };
    let options = SurrogateOptions::default();
    let solve = |m: &dyn ProcessModel| -> anyhow::Result<(models::optimize::surrogate::SurrogateAnswer, Duration)> {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            last = Some(optimize_surrogate(m, &sp, &options)?);
            times.push(t.elapsed());
        }
        let Some(a) = last else { bail!("no run") };
        Ok((a, median(times)))
    };
    let (f64_answer, f64_time) = solve(&linear)?;

    // 3. The same linear map as an ONNX graph (W1 = 0, Q = T = 0, L, c).
    let n = linear.inputs.len();
    let m = linear.outputs.len();
    let mut l = vec![vec![0.0f64; m]; n];
    let mut c = vec![0.0f64; m];
    for (j, model) in linear.models.iter().enumerate() {
        c[j] = model.intercept;
        for (input, coef) in model.inputs.iter().zip(&model.coefficients) {
            if let Some(i) = linear.inputs.iter().position(|x| x == input) {
                l[i][j] = *coef;
            }
        }
    }
    let spec = serde_json::json!({"W1": vec![vec![0.0; 1]; n], "b1": [0.0], "L": l, "c": c});
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
    let onnx = dir.path().join("demo-linear.onnx");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/train/make_surrogate.py");
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .arg(&onnx)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} (numpy and onnx needed)", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(spec.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("make_surrogate.py failed");
    }
    let surrogate = Surrogate::load(&onnx, &linear.inputs, &linear.outputs)?;
    let (onnx_answer, onnx_time) = solve(&surrogate)?;

    let lp_obj = rec.objective_proposed;
    let gap = |o: f64| (lp_obj - o) / lp_obj.abs().max(1e-9);
    println!(
        "demo problem {} ({} decisions, {} outputs, spec {}): LP optimum {:.3} {} (from {:.3})",
        p.name,
        sp.decisions.len(),
        m,
        p.constraints
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        lp_obj,
        p.unit,
        rec.objective_current
    );
    println!(
        "| method | objective | gap to LP | max violation | time (median of {}) | evaluations |",
        args.runs.max(1)
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| LP (Clarabel) | {lp_obj:.3} | – | – | {:.2} ms | – |",
        median(lp_times).as_secs_f64() * 1e3
    );
    for (name, a, t) in [
        ("CMA-ES, linear models in f64", &f64_answer, f64_time),
        (
            "CMA-ES, ONNX surrogate (tract, f32)",
            &onnx_answer,
            onnx_time,
        ),
    ] {
        println!(
            "| {name} | {:.3} | {:.2e} | {:.2e} ({}) | {:.1} ms | {} |",
            a.objective_proposed,
            gap(a.objective_proposed),
            a.max_violation,
            if a.feasible { "feasible" } else { "INFEASIBLE" },
            t.as_secs_f64() * 1e3,
            a.evaluations
        );
        println!(
            "    setpoints {:?} vs LP {:?}",
            a.decisions,
            rec.setpoints.iter().map(|s| s.proposed).collect::<Vec<_>>()
        );
    }
    Ok(())
}
