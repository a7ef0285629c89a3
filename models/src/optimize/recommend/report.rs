//! Explanations: the [`Recommendation`] from a solved problem (values,
//! binding constraints with their shadow prices in plain words,
//! confidence) and the diagnosis of an infeasible one.

use super::{
    Binding, BindingKind, Built, Confidence, ConstraintStatus, Extrapolation, Planned,
    PredictedOutput, RecommendError, Recommendation, SPREAD_SIGMAS, Setpoint, Side, Tag, TermValue,
    near,
};
use crate::optimize::lp::{Sense, Solution, Status};

pub(super) fn label(label: &str, tag: &str) -> String {
    if label.is_empty() { tag } else { label }.to_string()
}

/// `v` rounded to `significant` digits, trailing zeros dropped.
fn round_to(v: f64, significant: i32) -> String {
    let a = v.abs();
    let digits = if a == 0.0 || !a.is_finite() {
        0
    } else {
        (significant - 1 - a.log10().floor() as i32).clamp(0, 12) as usize
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if s == "-0" { "0".into() } else { s }
}

/// A worth or price: three significant digits (420, 12.3, 0.0123).
pub(super) fn num(v: f64) -> String {
    round_to(v, 3)
}

/// A limit or process value: six significant digits (178.4, 0.8, 7000).
pub(super) fn val(v: f64) -> String {
    round_to(v, 6)
}

pub(super) fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        val(v)
    } else {
        format!("{} {unit}", val(v))
    }
}

/// A worth in the objective's unit.
fn money(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        num(v)
    } else {
        format!("{} {unit}", num(v))
    }
}

pub(super) fn limits_text(lo: Option<f64>, hi: Option<f64>, unit: &str) -> String {
    match (lo, hi) {
        (Some(l), Some(u)) if l == u => format!("= {}", with_unit(l, unit)),
        (Some(l), Some(u)) => format!("{}–{}", val(l), with_unit(u, unit)),
        (Some(l), None) => format!("≥ {}", with_unit(l, unit)),
        (None, Some(u)) => format!("≤ {}", with_unit(u, unit)),
        (None, None) => "no limit".into(),
    }
}

pub(super) fn report(b: &Built<'_>, first: &Solution, x: &[f64]) -> Recommendation {
    let p = b.problem;
    let s = p.objective.sense.sign();
    let cur = &b.current_x;
    let obj_unit = &p.objective.unit;
    let objective_current = b.objective.at(cur);
    let objective_proposed = b.objective.at(x);
    let benefit_per_hour = s * (objective_proposed - objective_current);
    let value = |tag: &str, x: &[f64]| match b.tags.get(tag) {
        Some(Tag::Decision(j)) => x[*j],
        Some(Tag::Output(o)) => b.outputs[*o].at(x),
        None => f64::NAN,
    };
    let setpoints = (p.decisions.iter().enumerate())
        .map(|(j, d)| Setpoint {
            tag: d.tag.clone(),
            label: label(&d.label, &d.tag),
            unit: d.unit.clone(),
            current: cur[j],
            proposed: x[j],
            lower: b.lower[j],
            upper: b.upper[j],
        })
        .collect();
    let terms = (p.objective.terms.iter())
        .map(|t| TermValue {
            tag: t.tag.clone(),
            label: label(&t.label, &t.tag),
            price: t.price,
            current: t.price * value(&t.tag, cur),
            proposed: t.price * value(&t.tag, x),
        })
        .collect();
    let x1 = &first.values;
    let mut binding = Vec::new();
    let mut constraints = Vec::new();
    for (c, plan) in p.constraints.iter().zip(&b.rows) {
        let Planned {
            expr: e,
            margin,
            lo,
            hi,
            row,
        } = plan;
        let v1 = e.at(x1);
        let at_lo = row.is_some() && lo.is_some_and(|l| near(v1, l));
        let at_hi = row.is_some() && hi.is_some_and(|u| near(v1, u));
        let now = e.at(cur);
        constraints.push(ConstraintStatus {
            name: c.name.clone(),
            tag: c.tag.clone(),
            unit: c.unit.clone(),
            lower: c.lower,
            upper: c.upper,
            margin: *margin,
            effective_lower: *lo,
            effective_upper: *hi,
            current: now,
            proposed: e.at(x),
            violated_now: lo.is_some_and(|l| now < l) || hi.is_some_and(|u| now > u),
            binding: at_lo || at_hi,
        });
        if let Some(r) = row
            && (at_lo || at_hi)
        {
            let shadow = first.row_duals[*r];
            let side = side_of(at_lo, at_hi, s * shadow);
            let (limit, effective) = match side {
                Side::Lower => (c.lower, *lo),
                Side::Upper => (c.upper, *hi),
            };
            let limit = limit.or(c.lower).unwrap_or(f64::NAN);
            let effective = effective.or(*lo).unwrap_or(f64::NAN);
            let worth = relaxation(side, s, shadow);
            let one = with_unit(1.0, &c.unit);
            let at = if *margin > 0.0 {
                let word = if side == Side::Lower { "plus" } else { "less" };
                format!(
                    "{} ({} {word} a {} safety margin)",
                    with_unit(effective, &c.unit),
                    with_unit(limit, &c.unit),
                    with_unit(*margin, &c.unit)
                )
            } else {
                with_unit(effective, &c.unit)
            };
            let text = format!(
                "{} is binding at {at}: {one} more allowance is worth {}",
                c.name,
                money(worth, obj_unit)
            );
            binding.push(Binding {
                name: c.name.clone(),
                tag: c.tag.clone(),
                kind: BindingKind::Constraint,
                side,
                unit: c.unit.clone(),
                limit,
                effective_limit: effective,
                shadow_price: shadow,
                relaxation_value: worth,
                text,
            });
        }
    }
    for (j, d) in p.decisions.iter().enumerate() {
        let (at_lo, at_hi) = (near(x1[j], b.lower[j]), near(x1[j], b.upper[j]));
        if !(at_lo || at_hi) {
            continue;
        }
        let mut reduced = b.objective.coef[j];
        for (r, y) in b.lp.rows.iter().zip(&first.row_duals) {
            for (k, a) in &r.coefficients {
                if *k == j {
                    reduced -= y * a;
                }
            }
        }
        let side = side_of(at_lo, at_hi, s * reduced);
        let (bound, limit) = match side {
            Side::Lower => (b.lower[j], d.min),
            Side::Upper => (b.upper[j], d.max),
        };
        let by_move = d.max_move.is_some() && bound != limit;
        let worth = relaxation(side, s, reduced);
        let name = label(&d.label, &d.tag);
        let one = with_unit(1.0, &d.unit);
        let (kind, text) = if by_move {
            let m = d.max_move.unwrap_or(0.0);
            let sign = if side == Side::Lower { "−" } else { "+" };
            (
                BindingKind::MaxMove,
                format!(
                    "{name} is at its largest allowed move ({sign}{} from {}): {one} more move would be worth {}",
                    with_unit(m, &d.unit),
                    with_unit(cur[j], &d.unit),
                    money(worth, obj_unit)
                ),
            )
        } else {
            let (which, more) = match side {
                Side::Lower => ("lower limit", "less"),
                Side::Upper => ("upper limit", "more"),
            };
            (
                BindingKind::DecisionLimit,
                format!(
                    "{name} is at its {which} {}: {one} {more} would be worth {}",
                    with_unit(bound, &d.unit),
                    money(worth, obj_unit)
                ),
            )
        };
        binding.push(Binding {
            name,
            tag: d.tag.clone(),
            kind,
            side,
            unit: d.unit.clone(),
            limit: if by_move {
                d.max_move.unwrap_or(0.0)
            } else {
                limit
            },
            effective_limit: bound,
            shadow_price: reduced,
            relaxation_value: worth,
            text,
        });
    }
    binding.sort_by(|a, b| b.relaxation_value.total_cmp(&a.relaxation_value));
    let outputs = (p.outputs.iter().zip(&b.outputs).zip(&b.biases))
        .map(|((o, e), bias)| {
            let sigma = o.model.quality.as_ref().map(|q| q.residual_std);
            let proposed = e.at(x);
            PredictedOutput {
                tag: o.tag.clone(),
                label: label(&o.label, &o.tag),
                unit: o.unit.clone(),
                measured: b.measured.get(&o.tag).copied(),
                bias: *bias,
                current: e.at(cur),
                proposed,
                sigma,
                low: sigma.map(|s| proposed - SPREAD_SIGMAS * s),
                high: sigma.map(|s| proposed + SPREAD_SIGMAS * s),
                margin: p.margin_sigmas * sigma.unwrap_or(0.0),
            }
        })
        .collect();
    Recommendation {
        problem: p.name.clone(),
        sense: p.objective.sense,
        objective_unit: obj_unit.clone(),
        setpoints,
        objective_current,
        objective_proposed,
        benefit_per_hour,
        benefit_per_year: benefit_per_hour * p.hours_per_year,
        hours_per_year: p.hours_per_year,
        terms,
        binding,
        constraints,
        outputs,
        confidence: confidence(b, x),
    }
}

/// Which side is binding. At both (an equality constraint, a decision with
/// `min == max` or `max_move == 0`), the side where more room helps:
/// `gain` is the improvement per unit increase.
fn side_of(at_lo: bool, at_hi: bool, gain: f64) -> Side {
    match (at_lo, at_hi) {
        (true, true) if gain >= 0.0 => Side::Upper,
        (true, _) => Side::Lower,
        _ => Side::Upper,
    }
}

/// Improvement per unit of more room: raising an upper bound changes the
/// objective by `shadow`, lowering a lower one by `−shadow`; `s` turns
/// changes into improvements.
fn relaxation(side: Side, s: f64, shadow: f64) -> f64 {
    match side {
        Side::Lower => -s * shadow,
        Side::Upper => s * shadow,
    }
}

fn confidence(b: &Built<'_>, x: &[f64]) -> Confidence {
    let p = b.problem;
    let mut used: Vec<usize> = (p.objective.terms.iter().map(|t| &t.tag))
        .chain(p.constraints.iter().map(|c| &c.tag))
        .filter_map(|t| match b.tags.get(t.as_str()) {
            Some(Tag::Output(o)) => Some(*o),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    if used.is_empty() {
        return Confidence {
            score: 1.0,
            text: "no process model is involved: the objective and limits use setpoints only"
                .into(),
            extrapolations: Vec::new(),
        };
    }
    let mut score = 1.0f64;
    let mut weakest: Option<(f64, &str, usize)> = None;
    let mut notes = Vec::new();
    let mut extrapolations = Vec::new();
    let mut by_hand: Vec<&str> = Vec::new();
    for &o in &used {
        let out = &p.outputs[o];
        let Some(q) = &out.model.quality else {
            score = score.min(0.5);
            by_hand.push(out.tag.as_str());
            continue;
        };
        match q.r2_test {
            Some(r2) => {
                score = score.min(r2.clamp(0.0, 1.0));
                if weakest.is_none_or(|(w, _, _)| r2 < w) {
                    weakest = Some((r2, &out.tag, q.n_test));
                }
            }
            None => {
                score = score.min(0.5);
                notes.push(format!(
                    "{} did not vary in its held-out period, so its model was not tested",
                    out.tag
                ));
            }
        }
        for (input, &(lo, hi)) in out.model.inputs.iter().zip(&q.input_ranges) {
            let v = match b.tags.get(input.as_str()) {
                Some(Tag::Decision(j)) => x[*j],
                _ => b.disturbances.get(input).copied().unwrap_or(f64::NAN),
            };
            let slack = 1e-9 * (hi - lo).abs().max(lo.abs()).max(hi.abs()).max(1.0);
            if v < lo - slack || v > hi + slack {
                match extrapolations
                    .iter_mut()
                    .find(|e: &&mut Extrapolation| e.input == *input)
                {
                    Some(e) => {
                        e.min = e.min.max(lo);
                        e.max = e.max.min(hi);
                        e.outputs.push(out.tag.clone());
                    }
                    None => extrapolations.push(Extrapolation {
                        input: input.clone(),
                        value: v,
                        min: lo,
                        max: hi,
                        outputs: vec![out.tag.clone()],
                    }),
                }
            }
        }
    }
    match by_hand.as_slice() {
        [] => {}
        [one] => notes.push(format!(
            "the model of {one} was supplied by hand, not fitted, so it was not checked against data"
        )),
        many => notes.push(format!(
            "{} models were supplied by hand, not fitted ({}), so they were not checked against data",
            many.len(),
            many.join(", ")
        )),
    }
    if let Some((r2, tag, n)) = weakest {
        notes.insert(
            0,
            format!(
                "the weakest fitted model, {tag}, explains {:.0} % of the variation in its held-out period ({n} steady rows)",
                100.0 * r2.max(0.0)
            ),
        );
    }
    if !extrapolations.is_empty() {
        score *= 0.5;
        let list: Vec<String> = (extrapolations.iter())
            .map(|e| {
                let models = match e.outputs.as_slice() {
                    [one] => format!("the model of {one}"),
                    [a, b] => format!("the models of {a} and {b}"),
                    many => format!("{} models", many.len()),
                };
                format!(
                    "{} = {} is outside {}–{} seen when fitting {models}",
                    e.input,
                    val(e.value),
                    val(e.min),
                    val(e.max),
                )
            })
            .collect();
        notes.push(format!("the proposal extrapolates: {}", list.join("; ")));
    }
    let level = if score >= 0.8 {
        "high"
    } else if score >= 0.5 {
        "medium"
    } else {
        "low"
    };
    Confidence {
        score,
        text: format!("{level} confidence ({score:.2}): {}", notes.join("; ")),
        extrapolations,
    }
}

/// The elastic LP behind [`RecommendError::Infeasible`] (module doc).
pub(super) fn diagnose(b: &Built<'_>) -> RecommendError {
    let names: Vec<String> = b
        .problem
        .constraints
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let fallback = || RecommendError::Infeasible {
        conflicts: names.clone(),
        detail: format!(
            "the conflict could not be narrowed down among: {}",
            names.join(", ")
        ),
    };
    let mut lp = b.lp.clone();
    lp.sense = Sense::Minimize;
    lp.objective_constant = 0.0;
    for v in &mut lp.variables {
        v.cost = 0.0;
    }
    let n = b.current_x.len();
    let mut slacks = Vec::new();
    let mut weights = vec![1.0; b.lp.rows.len()];
    for Planned { lo, hi, row, .. } in &b.rows {
        if let Some(r) = row {
            let limit = lo.unwrap_or(0.0).abs().max(hi.unwrap_or(0.0).abs());
            weights[*r] = 1.0 / limit.max(1.0);
        }
    }
    for (i, weight) in weights.iter().copied().enumerate() {
        let over = lp.add_variable(format!("over {i}"), 0.0, f64::INFINITY, weight);
        let under = lp.add_variable(format!("under {i}"), 0.0, f64::INFINITY, weight);
        lp.rows[i].coefficients.extend([(over, -1.0), (under, 1.0)]);
        slacks.push((over, under, weight));
    }
    let Ok(s) = lp.solve() else {
        return fallback();
    };
    if s.status != Status::Optimal {
        return fallback();
    }
    let mut conflicts = Vec::new();
    let mut parts = Vec::new();
    let min_weight = slacks.iter().map(|t| t.2).fold(f64::INFINITY, f64::min);
    for (ci, c) in b.problem.constraints.iter().enumerate() {
        let Planned {
            expr: e,
            lo,
            hi,
            row: Some(r),
            ..
        } = &b.rows[ci]
        else {
            continue;
        };
        let (over, under, _) = slacks[*r];
        let violation = s.values[over].max(s.values[under]);
        let limits = limits_text(*lo, *hi, &c.unit);
        let value = e.at(&s.values[..n]);
        if violation > 1e-7 * value.abs().max(1.0) {
            parts.push(format!(
                "{} ({limits}) would be missed by at least {}",
                c.name,
                with_unit(violation, &c.unit)
            ));
            conflicts.push(c.name.clone());
        } else if s.row_duals[*r].abs() > 1e-6 * min_weight {
            parts.push(format!("{} ({limits})", c.name));
            conflicts.push(c.name.clone());
        }
    }
    for (j, d) in b.problem.decisions.iter().enumerate() {
        let gross: f64 = (lp.rows.iter().zip(&s.row_duals))
            .flat_map(|(r, y)| {
                r.coefficients
                    .iter()
                    .filter(|(k, _)| *k == j)
                    .map(move |(_, a)| (a * y).abs())
            })
            .sum();
        let reduced: f64 = -(lp.rows.iter().zip(&s.row_duals))
            .flat_map(|(r, y)| {
                r.coefficients
                    .iter()
                    .filter(|(k, _)| *k == j)
                    .map(move |(_, a)| a * y)
            })
            .sum::<f64>();
        let x = s.values[j];
        let at = near(x, b.lower[j]) || near(x, b.upper[j]);
        if at && reduced.abs() > 1e-7 * gross && gross > 0.0 {
            let name = format!("{} limits", label(&d.label, &d.tag));
            parts.push(format!(
                "{name} ({}–{})",
                val(b.lower[j]),
                with_unit(b.upper[j], &d.unit)
            ));
            conflicts.push(name);
        }
    }
    if conflicts.is_empty() {
        return fallback();
    }
    RecommendError::Infeasible {
        conflicts,
        detail: parts.join("; "),
    }
}
