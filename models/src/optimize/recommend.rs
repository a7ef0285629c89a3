//! Setpoint recommendations: the linear program built from process models,
//! prices and limits, and its answer in plain words.
//!
//! A [`Problem`] names the decisions (setpoints with limits and an optional
//! largest move), the outputs (each a [`LinearModel`] of decisions and
//! disturbances), an objective (Σ price × value over decisions and outputs,
//! in the objective's unit per hour) and constraints (limits on outputs or
//! decisions). [`recommend`] holds the disturbances at their current values,
//! substitutes each output as an affine function of the decisions and solves
//! the LP ([`LpProblem::solve`]).
//!
//! - **Decision bounds** are `[max(min, current − max_move), min(max,
//!   current + max_move)]`: the limits intersected with a trust region around
//!   the current point, since a linear model is only trusted near where the
//!   plant runs. When that intersection is empty the error says so.
//! - **Safety margin**: a limit on an output with a fitted model is
//!   tightened by `margin_sigmas × residual_std` (lower limits raised, upper
//!   limits lowered); user-supplied models and decisions get no margin.
//! - **Bias correction** (optional): with a measured current value, the
//!   model's constant is shifted so that it predicts exactly that value at
//!   the current point, the feedback of model-predictive control against
//!   drift since fitting (fouling, a different crude).
//! - **Smallest move among optima**: an interior-point solver returns the
//!   centre of the optimal face, so a setpoint that does not affect the
//!   objective would be moved to the middle of its range. A second LP keeps
//!   the objective within 1e-9 (relative) of the optimum and minimises
//!   Σ |proposed − current| / (max − min); if it fails the first answer
//!   stands. Proposals within 1e-9 (relative) of a bound are set to it and
//!   none leaves its bounds: a PLC refuses a setpoint outside its range.
//! - **Binding constraints and shadow prices** come from the first LP: its
//!   interior-point solution lies in the relative interior of the optimal
//!   face, so the constraints active there are the ones active at *every*
//!   optimum. A row's shadow price is the LP row dual, d(objective)/d(limit).
//!   Decision bounds are variable bounds, not rows; their shadow price is the
//!   reduced cost `cⱼ − Σᵢ yᵢ aᵢⱼ` (objective coefficient minus the row duals
//!   times the column), which by the KKT conditions is d(objective)/d(bound)
//!   in the same convention. [`Binding::relaxation_value`] turns it into
//!   "worth per unit of more room", positive = better for either sense.
//! - **Confidence** ([`Confidence`]): the lowest held-out R² (clamped to
//!   0–1) of the models the objective or constraints use; 0.5 for a model
//!   supplied by the user (no data to judge it: neither trusted nor
//!   rejected) or whose test output never varied; halved when the proposal
//!   puts any input of a fitted model outside the range seen when fitting
//!   (the text names the input, its value, the range and the models). No
//!   model involved: 1. The text calls ≥ 0.8 high, ≥ 0.5 medium, less low.
//! - **Infeasible**: an elastic LP (every constraint may be violated at a
//!   cost of 1 per unit of violation / max(1, |limit|)) finds the least
//!   violation; the error names the constraints it violates and those that
//!   hold it there (nonzero duals), and the decision limits involved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::fit::LinearModel;
use super::lp::{LpProblem, Sense, Solution, SolveError, Status};
#[cfg(test)]
use report::num;
use report::{diagnose, limits_text, report, val, with_unit};

/// On-stream hours per year for [`Problem::hours_per_year`]: conservative,
/// since a benefit accrues only while the unit runs (trips, stops).
pub const DEFAULT_HOURS_PER_YEAR: f64 = 8000.0;

/// Predicted outputs are shown with ± this many residual standard deviations
/// (about 95 % of single readings for normal residuals; coefficient
/// uncertainty is not included).
pub const SPREAD_SIGMAS: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveSense {
    Maximize,
    Minimize,
}

impl ObjectiveSense {
    /// +1 when more is better.
    fn sign(self) -> f64 {
        match self {
            ObjectiveSense::Maximize => 1.0,
            ObjectiveSense::Minimize => -1.0,
        }
    }
}

/// The optimisation problem of one plant unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub name: String,
    pub decisions: Vec<Decision>,
    pub outputs: Vec<Output>,
    pub objective: Objective,
    pub constraints: Vec<Constraint>,
    /// Safety margin on output limits, in residual standard deviations.
    pub margin_sigmas: f64,
    /// Converts the benefit per hour into one per year.
    pub hours_per_year: f64,
    /// Shift each model so it matches the measured current output (when
    /// [`Current::outputs`] has it).
    pub bias_correction: bool,
}

/// A setpoint the recommendation may move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub tag: String,
    /// Plain words for texts ("heater outlet temperature"); empty: the tag.
    pub label: String,
    pub unit: String,
    pub min: f64,
    pub max: f64,
    /// Largest |proposed − current|.
    pub max_move: Option<f64>,
}

/// A process output predicted by a model of decisions and disturbances (any
/// model input that is not a decision is a disturbance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub tag: String,
    /// Plain words; empty: the tag.
    pub label: String,
    pub unit: String,
    /// Its `output` must be this tag.
    pub model: LinearModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub sense: ObjectiveSense,
    /// Per hour, e.g. "$/h".
    pub unit: String,
    pub terms: Vec<Term>,
}

/// `price × value of tag` (a decision or an output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub tag: String,
    /// Objective unit per unit of the tag, e.g. $/m³ times m³/h.
    pub price: f64,
    pub label: String,
}

/// `lower ≤ value of tag ≤ upper` (a decision or an output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// Plain words, e.g. "naphtha 95 % spec".
    pub name: String,
    pub tag: String,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub unit: String,
}

/// The plant now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Current {
    /// Every decision's current value.
    pub decisions: BTreeMap<String, f64>,
    /// Every disturbance a model uses.
    pub disturbances: BTreeMap<String, f64>,
    /// Measured outputs (optional): shown beside the predictions, and used
    /// by [`Problem::bias_correction`].
    pub outputs: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub problem: String,
    pub sense: ObjectiveSense,
    pub objective_unit: String,
    pub setpoints: Vec<Setpoint>,
    /// The models' objective at the current decisions.
    pub objective_current: f64,
    pub objective_proposed: f64,
    /// `objective_proposed − objective_current`, negated for a minimisation:
    /// positive is good. Negative only when the current point violates a
    /// constraint and the proposal pays to get back inside.
    pub benefit_per_hour: f64,
    pub benefit_per_year: f64,
    pub hours_per_year: f64,
    /// Each objective term at the current and the proposed point.
    pub terms: Vec<TermValue>,
    /// Active constraints and decision bounds, most valuable first.
    pub binding: Vec<Binding>,
    pub constraints: Vec<ConstraintStatus>,
    pub outputs: Vec<PredictedOutput>,
    pub confidence: Confidence,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setpoint {
    pub tag: String,
    pub label: String,
    pub unit: String,
    pub current: f64,
    /// Full precision; round for display.
    pub proposed: f64,
    /// The bounds the LP used (limits ∩ trust region).
    pub lower: f64,
    pub upper: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermValue {
    pub tag: String,
    pub label: String,
    pub price: f64,
    /// `price × value`.
    pub current: f64,
    pub proposed: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingKind {
    /// A [`Constraint`].
    Constraint,
    /// A decision's `min` or `max`.
    DecisionLimit,
    /// A decision's `max_move`.
    MaxMove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Lower,
    /// Also an equality (or a fixed decision) where raising it helps.
    Upper,
}

/// A constraint or decision bound active at the optimum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// Constraint name, or the decision's label.
    pub name: String,
    pub tag: String,
    pub kind: BindingKind,
    pub side: Side,
    pub unit: String,
    /// The limit as configured: a constraint's bound, a decision's min/max,
    /// or its `max_move`.
    pub limit: f64,
    /// The value the LP held: with the safety margin, or current ± max_move.
    pub effective_limit: f64,
    /// d(objective)/d(limit), objective unit per constraint unit.
    pub shadow_price: f64,
    /// Objective improvement per unit of more room (raising an upper limit,
    /// lowering a lower one, a larger max move); ≥ 0 at an optimum.
    pub relaxation_value: f64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstraintStatus {
    pub name: String,
    pub tag: String,
    pub unit: String,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Safety margin applied (0 for decisions and user-supplied models).
    pub margin: f64,
    pub effective_lower: Option<f64>,
    pub effective_upper: Option<f64>,
    /// Value (model prediction for an output) at the current point.
    pub current: f64,
    pub proposed: f64,
    /// The current value is outside the effective limits.
    pub violated_now: bool,
    pub binding: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictedOutput {
    pub tag: String,
    pub label: String,
    pub unit: String,
    pub measured: Option<f64>,
    /// Added to the model's constant (bias correction), else 0.
    pub bias: f64,
    /// The model at the current point.
    pub current: f64,
    pub proposed: f64,
    /// Residual standard deviation of a fitted model.
    pub sigma: Option<f64>,
    /// `proposed ∓ SPREAD_SIGMAS × sigma`.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Safety margin applied to this output's limits (`margin_sigmas ×
    /// sigma`; 0 for a user-supplied model).
    pub margin: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confidence {
    /// 0..1 (module doc).
    pub score: f64,
    pub text: String,
    pub extrapolations: Vec<Extrapolation>,
}

/// A model input whose value at the proposal lies outside the range seen
/// when fitting one or more models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extrapolation {
    pub input: String,
    pub value: f64,
    /// The range every flagged model saw (the tightest of theirs).
    pub min: f64,
    pub max: f64,
    /// The fitted models that never saw this value.
    pub outputs: Vec<String>,
}

#[derive(Debug, Error)]
pub enum RecommendError {
    #[error("invalid optimisation problem `{problem}`: {reason}")]
    Invalid { problem: String, reason: String },
    #[error("no current value for {kind} `{tag}`")]
    MissingCurrent { kind: &'static str, tag: String },
    #[error(
        "{tag} is at {current}, more than its max move {max_move} outside its limits {min}–{max}: no setpoint is within reach"
    )]
    OutOfReach {
        tag: String,
        current: f64,
        min: f64,
        max: f64,
        max_move: f64,
    },
    #[error("no setpoints within their limits meet every constraint: {detail}")]
    Infeasible {
        /// Constraint names, then decision limits, involved in the conflict.
        conflicts: Vec<String>,
        detail: String,
    },
    #[error("the LP solver failed: {0}")]
    Solver(#[from] SolveError),
    #[error("the LP is {0}: a decision without finite bounds?")]
    Unexpected(Status),
}

/// `constant + Σ coef[j]·decision[j]`.
#[derive(Debug, Clone)]
struct Affine {
    constant: f64,
    coef: Vec<f64>,
}

impl Affine {
    fn at(&self, x: &[f64]) -> f64 {
        self.constant + self.coef.iter().zip(x).map(|(a, x)| a * x).sum::<f64>()
    }
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    Decision(usize),
    Output(usize),
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// A constraint as the LP sees it.
#[derive(Debug, Clone)]
struct Planned {
    expr: Affine,
    margin: f64,
    /// Effective limits (with the margin).
    lo: Option<f64>,
    hi: Option<f64>,
    /// Its LP row; `None` when no decision moves it.
    row: Option<usize>,
}

struct Built<'p> {
    problem: &'p Problem,
    tags: BTreeMap<&'p str, Tag>,
    current_x: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    outputs: Vec<Affine>,
    biases: Vec<f64>,
    disturbances: BTreeMap<String, f64>,
    measured: BTreeMap<String, f64>,
    objective: Affine,
    /// Per constraint.
    rows: Vec<Planned>,
    lp: LpProblem,
}

fn invalid(problem: &Problem, reason: String) -> RecommendError {
    RecommendError::Invalid {
        problem: problem.name.clone(),
        reason,
    }
}

fn build<'p>(problem: &'p Problem, current: &Current) -> Result<Built<'p>, RecommendError> {
    let bad = |reason: String| Err(invalid(problem, reason));
    let n = problem.decisions.len();
    if !(problem.margin_sigmas.is_finite() && problem.margin_sigmas >= 0.0) {
        return bad(format!("margin_sigmas is {}", problem.margin_sigmas));
    }
    if !(problem.hours_per_year.is_finite() && problem.hours_per_year >= 0.0) {
        return bad(format!("hours_per_year is {}", problem.hours_per_year));
    }
    let mut tags = BTreeMap::new();
    let entries = (problem.decisions.iter().enumerate())
        .map(|(j, d)| (d.tag.as_str(), Tag::Decision(j)))
        .chain(
            (problem.outputs.iter().enumerate()).map(|(o, out)| (out.tag.as_str(), Tag::Output(o))),
        );
    for (tag, t) in entries {
        if tags.insert(tag, t).is_some() {
            return bad(format!("`{tag}` is defined twice"));
        }
    }
    let (mut lower, mut upper, mut current_x) = (Vec::new(), Vec::new(), Vec::new());
    for d in &problem.decisions {
        if !(d.min.is_finite() && d.max.is_finite() && d.min <= d.max) {
            return bad(format!(
                "decision `{}` has limits {}–{}",
                d.tag, d.min, d.max
            ));
        }
        let cur = *current
            .decisions
            .get(&d.tag)
            .ok_or_else(|| RecommendError::MissingCurrent {
                kind: "decision",
                tag: d.tag.clone(),
            })?;
        if !cur.is_finite() {
            return bad(format!("current value of `{}` is {cur}", d.tag));
        }
        let (mut lo, mut hi) = (d.min, d.max);
        if let Some(m) = d.max_move {
            if !(m.is_finite() && m >= 0.0) {
                return bad(format!("decision `{}` has max_move {m}", d.tag));
            }
            lo = lo.max(cur - m);
            hi = hi.min(cur + m);
            if lo > hi {
                return Err(RecommendError::OutOfReach {
                    tag: d.tag.clone(),
                    current: cur,
                    min: d.min,
                    max: d.max,
                    max_move: m,
                });
            }
        }
        lower.push(lo);
        upper.push(hi);
        current_x.push(cur);
    }
    let mut outputs = Vec::new();
    let mut biases = Vec::new();
    for out in &problem.outputs {
        let m = &out.model;
        if m.output != out.tag {
            return bad(format!(
                "output `{}` has a model of `{}`",
                out.tag, m.output
            ));
        }
        if m.inputs.len() != m.coefficients.len() {
            return bad(format!(
                "model of `{}` has {} inputs but {} coefficients",
                out.tag,
                m.inputs.len(),
                m.coefficients.len()
            ));
        }
        if !m.intercept.is_finite() || m.coefficients.iter().any(|c| !c.is_finite()) {
            return bad(format!(
                "model of `{}` has a non-finite coefficient",
                out.tag
            ));
        }
        let mut e = Affine {
            constant: m.intercept,
            coef: vec![0.0; n],
        };
        for (i, (input, c)) in m.inputs.iter().zip(&m.coefficients).enumerate() {
            if m.inputs[..i].contains(input) {
                return bad(format!("model of `{}` lists `{input}` twice", out.tag));
            }
            match tags.get(input.as_str()) {
                Some(Tag::Decision(j)) => e.coef[*j] = *c,
                Some(Tag::Output(_)) => {
                    return bad(format!(
                        "model of `{}` uses output `{input}`: outputs cannot feed other outputs",
                        out.tag
                    ));
                }
                None => {
                    let v = *current.disturbances.get(input).ok_or_else(|| {
                        RecommendError::MissingCurrent {
                            kind: "disturbance",
                            tag: input.clone(),
                        }
                    })?;
                    if !v.is_finite() {
                        return bad(format!("current value of `{input}` is {v}"));
                    }
                    e.constant += c * v;
                }
            }
        }
        let bias = match current.outputs.get(&out.tag) {
            Some(measured) if problem.bias_correction && measured.is_finite() => {
                measured - e.at(&current_x)
            }
            _ => 0.0,
        };
        e.constant += bias;
        biases.push(bias);
        outputs.push(e);
    }
    let expr = |tag: &str, what: &str| -> Result<Affine, RecommendError> {
        match tags.get(tag) {
            Some(Tag::Decision(j)) => {
                let mut coef = vec![0.0; n];
                coef[*j] = 1.0;
                Ok(Affine {
                    constant: 0.0,
                    coef,
                })
            }
            Some(Tag::Output(o)) => Ok(outputs[*o].clone()),
            None => Err(invalid(
                problem,
                format!("{what} names `{tag}`, which is neither a decision nor an output"),
            )),
        }
    };
    let mut objective = Affine {
        constant: 0.0,
        coef: vec![0.0; n],
    };
    for t in &problem.objective.terms {
        if !t.price.is_finite() {
            return bad(format!("objective term `{}` has price {}", t.tag, t.price));
        }
        let e = expr(&t.tag, "an objective term")?;
        objective.constant += t.price * e.constant;
        for (a, b) in objective.coef.iter_mut().zip(&e.coef) {
            *a += t.price * b;
        }
    }
    let mut lp = LpProblem::new(problem.name.clone());
    lp.sense = match problem.objective.sense {
        ObjectiveSense::Maximize => Sense::Maximize,
        ObjectiveSense::Minimize => Sense::Minimize,
    };
    lp.objective_constant = objective.constant;
    for (j, d) in problem.decisions.iter().enumerate() {
        lp.add_variable(d.tag.clone(), lower[j], upper[j], objective.coef[j]);
    }
    let mut rows = Vec::new();
    let mut constant_violations = Vec::new();
    for c in &problem.constraints {
        let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
        if (c.lower.is_none() && c.upper.is_none()) || !finite(c.lower) || !finite(c.upper) {
            return bad(format!(
                "constraint `{}` needs a finite lower or upper limit",
                c.name
            ));
        }
        if let (Some(l), Some(u)) = (c.lower, c.upper)
            && l > u
        {
            return bad(format!("constraint `{}` has lower {l} > upper {u}", c.name));
        }
        let e = expr(&c.tag, &format!("constraint `{}`", c.name))?;
        let sigma = match tags.get(c.tag.as_str()) {
            Some(Tag::Output(o)) => problem.outputs[*o]
                .model
                .quality
                .as_ref()
                .map_or(0.0, |q| q.residual_std),
            _ => 0.0,
        };
        let margin = problem.margin_sigmas * sigma;
        let lo = c.lower.map(|l| l + margin);
        let hi = c.upper.map(|u| u - margin);
        if let (Some(l), Some(u)) = (lo, hi)
            && l > u
        {
            let detail = format!(
                "{}: its safety margin of {} on each side leaves no room between {} and {}",
                c.name,
                with_unit(margin, &c.unit),
                val(c.lower.unwrap_or(l)),
                with_unit(c.upper.unwrap_or(u), &c.unit)
            );
            return Err(RecommendError::Infeasible {
                conflicts: vec![c.name.clone()],
                detail,
            });
        }
        let row = if e.coef.iter().all(|a| *a == 0.0) {
            // No decision moves it: check it here rather than hand the
            // solver an empty row.
            let v = e.constant;
            if lo.is_some_and(|l| v < l) || hi.is_some_and(|u| v > u) {
                constant_violations.push(format!(
                    "{} does not depend on any decision and is {} ({})",
                    c.name,
                    with_unit(v, &c.unit),
                    limits_text(lo, hi, &c.unit)
                ));
            }
            None
        } else {
            let coefficients = e
                .coef
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, a)| *a != 0.0);
            Some(lp.add_row(
                c.name.clone(),
                coefficients.collect(),
                lo.map_or(f64::NEG_INFINITY, |l| l - e.constant),
                hi.map_or(f64::INFINITY, |u| u - e.constant),
            ))
        };
        rows.push(Planned {
            expr: e,
            margin,
            lo,
            hi,
            row,
        });
    }
    if !constant_violations.is_empty() {
        return Err(RecommendError::Infeasible {
            conflicts: constant_violations.clone(),
            detail: constant_violations.join("; "),
        });
    }
    Ok(Built {
        problem,
        tags,
        current_x,
        lower,
        upper,
        outputs,
        biases,
        disturbances: current.disturbances.clone(),
        measured: current.outputs.clone(),
        objective,
        rows,
        lp,
    })
}

/// Solves the problem for the plant's current state (module doc).
pub fn recommend(problem: &Problem, current: &Current) -> Result<Recommendation, RecommendError> {
    let b = build(problem, current)?;
    let first = b.lp.solve()?;
    match first.status {
        Status::Optimal => {}
        Status::Infeasible => return Err(diagnose(&b)),
        other => return Err(RecommendError::Unexpected(other)),
    }
    let mut x = smallest_move(&b, &first).unwrap_or_else(|| first.values.clone());
    // The interior-point answer may overshoot a bound by ~1e-9, and a PLC
    // refuses a setpoint outside its range: snap to the bounds.
    for ((v, lo), hi) in x.iter_mut().zip(&b.lower).zip(&b.upper) {
        let snap = |bound: f64| (*v - bound).abs() <= 1e-9 * bound.abs().max(1.0);
        *v = if snap(*lo) {
            *lo
        } else if snap(*hi) {
            *hi
        } else {
            v.clamp(*lo, *hi)
        };
    }
    Ok(report(&b, &first, &x))
}

/// Among the (near-)optimal points, the one closest to the current
/// decisions (module doc); `None` when that LP gives no answer.
fn smallest_move(b: &Built<'_>, first: &Solution) -> Option<Vec<f64>> {
    let n = b.current_x.len();
    let mut lp = b.lp.clone();
    lp.sense = Sense::Minimize;
    lp.objective_constant = 0.0;
    for v in &mut lp.variables {
        v.cost = 0.0;
    }
    for j in 0..n {
        let range = b.problem.decisions[j].max - b.problem.decisions[j].min;
        let weight = if range > 0.0 { 1.0 / range } else { 1.0 };
        let u = lp.add_variable(format!("move {j}"), 0.0, f64::INFINITY, weight);
        let cur = b.current_x[j];
        lp.add_row(
            format!("move {j} up"),
            vec![(j, 1.0), (u, -1.0)],
            f64::NEG_INFINITY,
            cur,
        );
        lp.add_row(
            format!("move {j} down"),
            vec![(j, 1.0), (u, 1.0)],
            cur,
            f64::INFINITY,
        );
    }
    let coef: Vec<(usize, f64)> = (b.objective.coef.iter().copied().enumerate())
        .filter(|(_, c)| *c != 0.0)
        .collect();
    if !coef.is_empty() {
        let z = first.objective - b.objective.constant;
        let slack = 1e-9 * first.objective.abs().max(1.0);
        let (lo, hi) = match b.problem.objective.sense {
            ObjectiveSense::Maximize => (z - slack, f64::INFINITY),
            ObjectiveSense::Minimize => (f64::NEG_INFINITY, z + slack),
        };
        lp.add_row("objective", coef, lo, hi);
    }
    let s = lp.solve().ok()?;
    (s.status == Status::Optimal).then(|| s.values[..n].to_vec())
}

mod report;

#[cfg(test)]
mod tests;
