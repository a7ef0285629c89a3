//! A problem whose process model is an ONNX surrogate
//! (`[optimization.surrogate]`): CMA-ES within the decisions' bounds
//! (`models::optimize::surrogate`), its answer put in the same
//! `Recommendation` shape as the LP's so the rest of the loop (sending,
//! approval, tracking, realized benefit) is one path.
//!
//! What differs from the LP: no shadow prices (a derivative-free search
//! has no duals; `binding` names the limits the answer sits on, without a
//! worth), no safety margin from fit residuals (the surrogate carries no
//! σ), and the confidence says so. An answer that violates an output limit
//! beyond the optimizer's tolerance is an error, never a proposal.

use models::optimize::lp::Sense;
use models::optimize::recommend::{
    Binding, BindingKind, Confidence, ConstraintStatus, Current, ObjectiveSense, PredictedOutput,
    Recommendation, Setpoint, Side, TermValue,
};
use models::optimize::surrogate::{
    Decision, Disturbance, OutputSpec, Surrogate, SurrogateOptions, SurrogateProblem,
    optimize_surrogate,
};

use crate::config::{ProblemConfig, SurrogateSpec};

/// Solve `p` with its surrogate `s` at the `current` point.
pub fn solve(
    p: &ProblemConfig,
    s: &SurrogateSpec,
    current: &Current,
) -> Result<(Recommendation, serde_json::Value), String> {
    let model = Surrogate::load(&s.model, &s.inputs, &s.outputs).map_err(|e| e.to_string())?;
    let price = |tag: &str| -> f64 {
        p.terms
            .iter()
            .filter(|t| t.tag == tag)
            .map(|t| t.price)
            .sum()
    };
    let mut decisions = Vec::new();
    let mut disturbances = Vec::new();
    for tag in &s.inputs {
        match p.decisions.iter().find(|d| &d.tag == tag) {
            Some(d) => {
                let cur = *current
                    .decisions
                    .get(tag)
                    .ok_or_else(|| format!("no current value of {tag}"))?;
                let (lo, hi) = match d.max_move {
                    Some(m) => (d.min.max(cur - m), d.max.min(cur + m)),
                    None => (d.min, d.max),
                };
                if lo > hi {
                    return Err(format!(
                        "{tag} is at {cur}, more than its max move outside its limits {}–{}",
                        d.min, d.max
                    ));
                }
                decisions.push(Decision {
                    name: tag.clone(),
                    lower: lo,
                    upper: hi,
                    current: cur,
                    price: price(tag),
                });
            }
            None => disturbances.push(Disturbance {
                name: tag.clone(),
                value: *current
                    .disturbances
                    .get(tag)
                    .ok_or_else(|| format!("no current value of {tag}"))?,
            }),
        }
    }
    let limit = |tag: &str| p.constraints.iter().find(|c| c.tag == tag);
    let outputs: Vec<OutputSpec> = s
        .outputs
        .iter()
        .map(|o| OutputSpec {
            name: o.clone(),
            price: price(o),
            lower: limit(o).and_then(|c| c.lower).unwrap_or(f64::NEG_INFINITY),
            upper: limit(o).and_then(|c| c.upper).unwrap_or(f64::INFINITY),
        })
        .collect();
    let sp = SurrogateProblem {
        sense: match p.sense {
            ObjectiveSense::Maximize => Sense::Maximize,
            ObjectiveSense::Minimize => Sense::Minimize,
        },
        decisions,
        disturbances,
        outputs,
    };
    let a =
        optimize_surrogate(&model, &sp, &SurrogateOptions::default()).map_err(|e| e.to_string())?;
    if !a.feasible {
        return Err(format!(
            "the surrogate optimizer found no setpoints within every output limit ({} off by {:.3} of its scale)",
            a.worst_output.as_deref().unwrap_or("an output"),
            a.max_violation
        ));
    }
    let sign = match p.sense {
        ObjectiveSense::Maximize => 1.0,
        ObjectiveSense::Minimize => -1.0,
    };
    let benefit = sign * (a.objective_proposed - a.objective_current);
    let unit = |tag: &str| -> String {
        p.decisions
            .iter()
            .find(|d| d.tag == tag)
            .map(|d| d.unit.clone())
            .or_else(|| s.units.get(tag).cloned())
            .unwrap_or_default()
    };
    let setpoints: Vec<Setpoint> = sp
        .decisions
        .iter()
        .zip(&a.decisions)
        .map(|(d, v)| Setpoint {
            tag: d.name.clone(),
            label: p
                .decisions
                .iter()
                .find(|x| x.tag == d.name)
                .map_or_else(|| d.name.clone(), |x| x.label.clone()),
            unit: unit(&d.name),
            current: d.current,
            proposed: *v,
            lower: d.lower,
            upper: d.upper,
        })
        .collect();
    let out_value = |vals: &[f64], tag: &str| {
        s.outputs
            .iter()
            .position(|o| o == tag)
            .and_then(|i| vals.get(i).copied())
    };
    let value_of = |tag: &str, proposed: bool| -> f64 {
        if let Some(sp) = setpoints.iter().find(|x| x.tag == tag) {
            return if proposed { sp.proposed } else { sp.current };
        }
        out_value(
            if proposed {
                &a.outputs_proposed
            } else {
                &a.outputs_current
            },
            tag,
        )
        .unwrap_or(f64::NAN)
    };
    let terms = p
        .terms
        .iter()
        .map(|t| TermValue {
            tag: t.tag.clone(),
            label: t.label.clone(),
            price: t.price,
            current: t.price * value_of(&t.tag, false),
            proposed: t.price * value_of(&t.tag, true),
        })
        .collect();
    let mut binding = Vec::new();
    let near = |v: f64, l: f64, scale: f64| (v - l).abs() <= 1e-4 * scale.max(1e-9);
    for (d, x) in setpoints.iter().zip(&a.decisions) {
        let scale = (d.upper - d.lower).abs();
        for (side, l) in [(Side::Lower, d.lower), (Side::Upper, d.upper)] {
            if near(*x, l, scale) {
                binding.push(Binding {
                    name: d.label.clone(),
                    tag: d.tag.clone(),
                    kind: BindingKind::DecisionLimit,
                    side,
                    unit: d.unit.clone(),
                    limit: l,
                    effective_limit: l,
                    shadow_price: f64::NAN,
                    relaxation_value: f64::NAN,
                    text: format!(
                        "{} is at its {} limit {l} {} (a surrogate gives no shadow price)",
                        d.label,
                        if side == Side::Lower {
                            "lower"
                        } else {
                            "upper"
                        },
                        d.unit
                    ),
                });
            }
        }
    }
    let mut constraints = Vec::new();
    for c in &p.constraints {
        let (cur, pro) = (value_of(&c.tag, false), value_of(&c.tag, true));
        let scale = c.lower.or(c.upper).map_or(1.0, f64::abs).max(1.0);
        let is_binding = c.lower.is_some_and(|l| near(pro, l, scale))
            || c.upper.is_some_and(|u| near(pro, u, scale));
        if is_binding {
            binding.push(Binding {
                name: c.name.clone(),
                tag: c.tag.clone(),
                kind: BindingKind::Constraint,
                side: if c.upper.is_some_and(|u| near(pro, u, scale)) {
                    Side::Upper
                } else {
                    Side::Lower
                },
                unit: c.unit.clone(),
                limit: c.upper.or(c.lower).unwrap_or(f64::NAN),
                effective_limit: c.upper.or(c.lower).unwrap_or(f64::NAN),
                shadow_price: f64::NAN,
                relaxation_value: f64::NAN,
                text: format!("{} is binding (a surrogate gives no shadow price)", c.name),
            });
        }
        constraints.push(ConstraintStatus {
            name: c.name.clone(),
            tag: c.tag.clone(),
            unit: c.unit.clone(),
            lower: c.lower,
            upper: c.upper,
            margin: 0.0,
            effective_lower: c.lower,
            effective_upper: c.upper,
            current: cur,
            proposed: pro,
            violated_now: c.lower.is_some_and(|l| cur < l) || c.upper.is_some_and(|u| cur > u),
            binding: is_binding,
        });
    }
    let outputs = s
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| PredictedOutput {
            tag: o.clone(),
            label: o.clone(),
            unit: s.units.get(o).cloned().unwrap_or_default(),
            measured: current.outputs.get(o).copied(),
            bias: 0.0,
            current: a.outputs_current.get(i).copied().unwrap_or(f64::NAN),
            proposed: a.outputs_proposed.get(i).copied().unwrap_or(f64::NAN),
            sigma: None,
            low: None,
            high: None,
            margin: 0.0,
        })
        .collect();
    let rec = Recommendation {
        problem: p.name.clone(),
        sense: p.sense,
        objective_unit: p.unit.clone(),
        setpoints,
        objective_current: a.objective_current,
        objective_proposed: a.objective_proposed,
        benefit_per_hour: benefit,
        benefit_per_year: benefit * p.hours_per_year,
        hours_per_year: p.hours_per_year,
        terms,
        binding,
        constraints,
        outputs,
        confidence: Confidence {
            score: 0.5,
            text: format!(
                "medium confidence (0.50): an ONNX surrogate ({}) gives the outputs; it is not checked against this node's data here, and a derivative-free search gives no shadow prices",
                s.model.display()
            ),
            extrapolations: Vec::new(),
        },
    };
    let info = serde_json::json!({
        "model": s.model.display().to_string(),
        "evaluations": a.evaluations,
        "generations": a.generations,
        "restarts": a.runs,
        "termination": format!("{:?}", a.termination),
        "elapsed_ms": a.elapsed.as_secs_f64() * 1e3,
        "max_violation": a.max_violation,
    });
    Ok((rec, info))
}
