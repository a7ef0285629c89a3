//! The hub's setpoint problem on a process model: decisions in a box,
//! disturbances held, a priced objective, output ranges.

use std::time::{Duration, Instant};

use super::cma::{CmaOptions, Termination, minimize};
use super::{ProcessModel, SurrogateError};
use crate::optimize::lp::Sense;

/// A decision variable: a model input the optimizer may move within
/// `[lower, upper]`; `price` is its objective coefficient.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub name: String,
    pub lower: f64,
    pub upper: f64,
    pub current: f64,
    pub price: f64,
}

/// A model input held at its current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Disturbance {
    pub name: String,
    pub value: f64,
}

/// A model output with an objective coefficient (0: none) and a range
/// `lower ≤ output ≤ upper` (either may be infinite: no constraint).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    pub price: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Every model input is exactly one decision or disturbance; outputs not
/// listed are neither priced nor constrained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SurrogateProblem {
    pub sense: Sense,
    pub decisions: Vec<Decision>,
    pub disturbances: Vec<Disturbance>,
    pub outputs: Vec<OutputSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SurrogateOptions {
    pub cma: CmaOptions,
    /// Weight of a constraint violation of one output spread, in objective
    /// spreads (see [`optimize_surrogate`]).
    pub penalty: f64,
    /// A constraint is met when its violation is at most this fraction of
    /// the output's scale.
    pub feasibility_tol: f64,
}

impl Default for SurrogateOptions {
    /// CMA-ES defaults but `tol_x = 1e-6`: setpoints resolved to a
    /// millionth of their box, far below what a plant can hold, and above
    /// where f32 rounding of the model makes the search wander.
    fn default() -> Self {
        SurrogateOptions {
            cma: CmaOptions {
                tol_x: 1e-6,
                ..CmaOptions::default()
            },
            penalty: 1e3,
            feasibility_tol: 1e-6,
        }
    }
}

/// The answer of [`optimize_surrogate`]. Objectives are in the problem's
/// units and sense (not negated for maximization).
#[derive(Debug, Clone, PartialEq)]
pub struct SurrogateAnswer {
    /// Proposed value of each decision, in the order of
    /// [`SurrogateProblem::decisions`].
    pub decisions: Vec<f64>,
    /// Model outputs (in the model's order) at the current values and at
    /// the proposal.
    pub outputs_current: Vec<f64>,
    pub outputs_proposed: Vec<f64>,
    pub objective_current: f64,
    pub objective_proposed: f64,
    /// Every output range holds at the proposal within
    /// [`SurrogateOptions::feasibility_tol`]. When `false` the proposal is
    /// the least violating point found and must not be applied as is.
    pub feasible: bool,
    /// Violation of each [`SurrogateProblem::outputs`] range at the
    /// proposal, in the output's units (0 when met).
    pub violations: Vec<f64>,
    /// The largest violation relative to its output's scale, and its output.
    pub max_violation: f64,
    pub worst_output: Option<String>,
    /// The same at the current values (the plant may run outside a range).
    pub max_violation_current: f64,
    /// Model evaluations, including the scale probes and the current point.
    pub evaluations: usize,
    pub generations: usize,
    pub runs: usize,
    pub termination: Termination,
    pub elapsed: Duration,
}

/// Optimize `problem` on `model`.
///
/// The objective is `J = Σ decision price·value + Σ output price·output`,
/// minimized or maximized per [`SurrogateProblem::sense`]. Before the
/// search, `2·d` probes (each decision at its lower and upper bound, the
/// others at their current values clamped into the box) measure the
/// objective's spread `ΔJ` and each output's spread `Δy_k` over the box.
///
/// Constraints are an exact (L1) penalty: CMA-ES minimizes
/// `±J + penalty·ΔJ·Σ_k v_k / s_k`, with `v_k` the distance of output `k`
/// outside its range and `s_k` its scale: `Δy_k`, or when the probes do not
/// move it, the largest of its current magnitude and its finite bounds (1 if
/// all are 0). An L1 penalty with a weight above the constraint's Lagrange
/// multiplier has the constrained optimum as its own, unlike a quadratic
/// one, which always lands outside; measured in spreads, a multiplier is
/// of order 1 for a constraint the box can reach, against a default weight
/// of 1000.
///
/// The answer does not rely on the penalty being large enough: among all
/// points evaluated whose every violation is at most `feasibility_tol·s_k`,
/// it is the one with the best penalized value; when there is none, the one
/// with the smallest relative violation, with `feasible = false`. The
/// current values clamped into the box are evaluated first, so a feasible
/// current point is never answered with a worse one. A model that fails at
/// the current values is an error; failures (errors, non-finite outputs)
/// elsewhere rank worst.
///
/// Objective differences below the model's rounding are noise (an ONNX
/// surrogate computes in f32: 1.2e-7 relative): the CMA-ES `tol_fun` is
/// raised to `10·ε·(|J(current)| + ΔJ)` when it is smaller, `ε` being
/// [`ProcessModel::relative_precision`].
pub fn optimize_surrogate(
    model: &dyn ProcessModel,
    problem: &SurrogateProblem,
    options: &SurrogateOptions,
) -> Result<SurrogateAnswer, SurrogateError> {
    let start = Instant::now();
    let layout = Layout::new(model, problem)?;
    if !(options.penalty.is_finite() && options.penalty > 0.0) {
        return Err(SurrogateError::Options(format!(
            "penalty = {} must be positive",
            options.penalty
        )));
    }
    if !(options.feasibility_tol.is_finite() && options.feasibility_tol >= 0.0) {
        return Err(SurrogateError::Options(format!(
            "feasibility_tol = {} must be non-negative",
            options.feasibility_tol
        )));
    }
    let sign = match problem.sense {
        Sense::Minimize => 1.0,
        Sense::Maximize => -1.0,
    };
    let current: Vec<f64> = problem.decisions.iter().map(|d| d.current).collect();
    let outputs_current = model.predict(&layout.inputs(&current))?;
    let objective_current = layout.objective(&current, &outputs_current);
    let mut evaluations = 1;

    // Scale probes.
    let clamped: Vec<f64> = problem
        .decisions
        .iter()
        .map(|d| d.current.clamp(d.lower, d.upper))
        .collect();
    let mut probes: Vec<(f64, Vec<f64>)> = vec![(objective_current, outputs_current.clone())];
    for (i, d) in problem.decisions.iter().enumerate() {
        if d.upper <= d.lower {
            continue;
        }
        for v in [d.lower, d.upper] {
            let mut u = clamped.clone();
            u[i] = v;
            evaluations += 1;
            if let Ok(y) = model.predict(&layout.inputs(&u)) {
                probes.push((layout.objective(&u, &y), y));
            }
        }
    }
    let spread = |vals: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        hi - lo
    };
    let mut j_scale = spread(&mut probes.iter().map(|p| p.0));
    if !(j_scale.is_finite() && j_scale > 0.0) {
        j_scale = objective_current.abs().max(1.0);
    }
    let scales: Vec<f64> = problem
        .outputs
        .iter()
        .zip(&layout.output_index)
        .map(|(o, &k)| {
            let s = spread(&mut probes.iter().map(|p| p.1[k]));
            if s.is_finite() && s > 0.0 {
                return s;
            }
            let m = [outputs_current[k], o.lower, o.upper]
                .iter()
                .filter(|v| v.is_finite())
                .fold(0.0f64, |m, v| m.max(v.abs()));
            if m > 0.0 { m } else { 1.0 }
        })
        .collect();
    let relative = |y: &[f64]| -> (f64, f64, Option<usize>) {
        let mut total = 0.0;
        let mut worst = (0.0, None);
        for (j, (o, &k)) in problem.outputs.iter().zip(&layout.output_index).enumerate() {
            let r = violation(o, y[k]) / scales[j];
            total += r;
            if r > worst.0 {
                worst = (r, Some(j));
            }
        }
        (worst.0, total, worst.1)
    };
    let max_violation_current = relative(&outputs_current).0;
    let tol = options.feasibility_tol;
    let rho = options.penalty * j_scale;

    let mut cma = options.cma.clone();
    let noise = model.relative_precision() * (objective_current.abs() + j_scale);
    if noise.is_finite() {
        cma.tol_fun = cma.tol_fun.max(10.0 * noise);
    }
    let bounds: Vec<(f64, f64)> = problem
        .decisions
        .iter()
        .map(|d| (d.lower, d.upper))
        .collect();
    let mut feasible_best: Option<Candidate> = None;
    let mut least_violating: Option<Candidate> = None;
    let result = minimize(
        |u: &[f64]| {
            let Ok(y) = model.predict(&layout.inputs(u)) else {
                return f64::NAN;
            };
            let j = sign * layout.objective(u, &y);
            let (max_rel, total, _) = relative(&y);
            let penalized = j + rho * total;
            let better =
                |c: &Option<Candidate>, key: (f64, f64)| c.as_ref().is_none_or(|c| key < c.key);
            // Ranked by the penalized value, not by J: by J, the points that
            // use up the tolerance would win and drift along the constraint.
            if max_rel <= tol {
                if better(&feasible_best, (penalized, 0.0)) {
                    feasible_best = Some(Candidate::new(u, &y, (penalized, 0.0)));
                }
            } else if better(&least_violating, (max_rel, j)) {
                least_violating = Some(Candidate::new(u, &y, (max_rel, j)));
            }
            penalized
        },
        &bounds,
        &clamped,
        &cma,
    )?;
    evaluations += result.evaluations;
    let (answer, feasible) = match (feasible_best, least_violating) {
        (Some(c), _) => (c, true),
        (None, Some(c)) => (c, false),
        (None, None) => {
            return Err(SurrogateError::NoFiniteValue { evaluations });
        }
    };
    let (max_violation, _, worst) = relative(&answer.outputs);
    let violations = problem
        .outputs
        .iter()
        .zip(&layout.output_index)
        .map(|(o, &k)| violation(o, answer.outputs[k]))
        .collect();
    Ok(SurrogateAnswer {
        objective_proposed: layout.objective(&answer.decisions, &answer.outputs),
        decisions: answer.decisions,
        outputs_current,
        outputs_proposed: answer.outputs,
        objective_current,
        feasible,
        violations,
        max_violation,
        worst_output: worst.map(|j| problem.outputs[j].name.clone()),
        max_violation_current,
        evaluations,
        generations: result.generations,
        runs: result.runs,
        termination: result.termination,
        elapsed: start.elapsed(),
    })
}

/// Distance of `y` outside `[lower, upper]`.
fn violation(o: &OutputSpec, y: f64) -> f64 {
    (o.lower - y).max(y - o.upper).max(0.0)
}

struct Candidate {
    decisions: Vec<f64>,
    outputs: Vec<f64>,
    key: (f64, f64),
}

impl Candidate {
    fn new(u: &[f64], y: &[f64], key: (f64, f64)) -> Self {
        Candidate {
            decisions: u.to_vec(),
            outputs: y.to_vec(),
            key,
        }
    }
}

/// Where each decision, disturbance and output sits in the model's vectors.
struct Layout<'a> {
    problem: &'a SurrogateProblem,
    n_inputs: usize,
    decision_index: Vec<usize>,
    disturbance_index: Vec<usize>,
    output_index: Vec<usize>,
    output_prices: Vec<(usize, f64)>,
}

impl<'a> Layout<'a> {
    fn new(
        model: &dyn ProcessModel,
        problem: &'a SurrogateProblem,
    ) -> Result<Self, SurrogateError> {
        let err = |m: String| Err(SurrogateError::Problem(m));
        let inputs = model.inputs();
        let outputs = model.outputs();
        if problem.decisions.is_empty() {
            return err("no decision variables".into());
        }
        let mut used = vec![false; inputs.len()];
        let mut find = |name: &str, what: &str| -> Result<usize, SurrogateError> {
            let Some(i) = inputs.iter().position(|t| t == name) else {
                return Err(SurrogateError::Problem(format!(
                    "{what} {name:?} is not an input of the model (inputs: {})",
                    inputs.join(", ")
                )));
            };
            if std::mem::replace(&mut used[i], true) {
                return Err(SurrogateError::Problem(format!(
                    "input {name:?} is given twice"
                )));
            }
            Ok(i)
        };
        let mut decision_index = Vec::new();
        for d in &problem.decisions {
            decision_index.push(find(&d.name, "decision")?);
            if !(d.lower.is_finite() && d.upper.is_finite() && d.lower <= d.upper) {
                return err(format!(
                    "decision {:?}: bounds [{}, {}] are not a finite box",
                    d.name, d.lower, d.upper
                ));
            }
            if !d.current.is_finite() || !d.price.is_finite() {
                return err(format!(
                    "decision {:?}: current value and price must be finite",
                    d.name
                ));
            }
        }
        let mut disturbance_index = Vec::new();
        for d in &problem.disturbances {
            disturbance_index.push(find(&d.name, "disturbance")?);
            if !d.value.is_finite() {
                return err(format!("disturbance {:?}: value is not finite", d.name));
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return err(format!(
                "model input {:?} is neither a decision nor a disturbance",
                inputs[i]
            ));
        }
        let mut output_index = Vec::new();
        let mut output_prices = Vec::new();
        for o in &problem.outputs {
            let Some(k) = outputs.iter().position(|t| *t == o.name) else {
                return err(format!(
                    "{:?} is not an output of the model (outputs: {})",
                    o.name,
                    outputs.join(", ")
                ));
            };
            if output_index.contains(&k) {
                return err(format!("output {:?} is given twice", o.name));
            }
            if o.lower.is_nan() || o.upper.is_nan() || o.lower > o.upper {
                return err(format!(
                    "output {:?}: range [{}, {}] is empty",
                    o.name, o.lower, o.upper
                ));
            }
            if !o.price.is_finite() {
                return err(format!("output {:?}: price is not finite", o.name));
            }
            output_index.push(k);
            if o.price != 0.0 {
                output_prices.push((k, o.price));
            }
        }
        Ok(Layout {
            problem,
            n_inputs: inputs.len(),
            decision_index,
            disturbance_index,
            output_index,
            output_prices,
        })
    }

    /// The model's input vector for decision values `u`.
    fn inputs(&self, u: &[f64]) -> Vec<f64> {
        let mut x = vec![0.0; self.n_inputs];
        for (v, &i) in u.iter().zip(&self.decision_index) {
            x[i] = *v;
        }
        for (d, &i) in self
            .problem
            .disturbances
            .iter()
            .zip(&self.disturbance_index)
        {
            x[i] = d.value;
        }
        x
    }

    fn objective(&self, u: &[f64], y: &[f64]) -> f64 {
        let decisions: f64 = self
            .problem
            .decisions
            .iter()
            .zip(u)
            .map(|(d, v)| d.price * v)
            .sum();
        decisions
            + self
                .output_prices
                .iter()
                .map(|(k, p)| p * y[*k])
                .sum::<f64>()
    }
}
