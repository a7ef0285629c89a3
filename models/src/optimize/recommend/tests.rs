//! A demo-like refinery problem (fired heater + crude column, made-up but
//! plausible linear models): where the optimum lies, benefit arithmetic,
//! shadow prices and their sentences against finite differences in both
//! senses, trust regions, safety margins, bias correction, confidence,
//! infeasibility; a property test against random feasible points.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::analysis::labelled::SplitMix;
use crate::optimize::fit::FitQuality;

const T: &str = "heater.outlet_temp_sp";
const F: &str = "column.feed_rate_sp";
const R: &str = "column.reflux_ratio_sp";
const AMB: &str = "ambient.temp";
const T95: &str = "product.naphtha_t95";
const SPEC: &str = "naphtha 95 % spec";

fn quality(sigma: f64, r2: f64, ranges: Vec<(f64, f64)>) -> FitQuality {
    FitQuality {
        method: "ols".into(),
        steady_rows: 4000,
        total_rows: 10_000,
        complete_rows: 9_900,
        n_train: 3000,
        n_test: 1000,
        test_start: 0,
        r2_train: Some(r2 + 0.01),
        r2_test: Some(r2),
        residual_std: sigma,
        rmse_test: sigma * 1.1,
        tolerances: vec![0.0; ranges.len() + 1],
        input_ranges: ranges,
        window: 10,
    }
}

/// `intercept + Σ c·input` over T, F, R and ambient, fitted with `sigma`.
fn model(output: &str, intercept: f64, c: [f64; 4], sigma: f64, r2: f64) -> LinearModel {
    let mut m = LinearModel::new(
        output,
        [T, F, R, AMB].iter().map(|s| s.to_string()).collect(),
        intercept,
        c.to_vec(),
    );
    m.quality = Some(quality(
        sigma,
        r2,
        vec![(335.0, 375.0), (300.0, 650.0), (1.5, 3.5), (0.0, 30.0)],
    ));
    m
}

fn output(tag: &str, unit: &str, m: LinearModel) -> Output {
    Output {
        tag: tag.into(),
        label: String::new(),
        unit: unit.into(),
        model: m,
    }
}

fn decision(tag: &str, label: &str, unit: &str, min: f64, max: f64) -> Decision {
    Decision {
        tag: tag.into(),
        label: label.into(),
        unit: unit.into(),
        min,
        max,
        max_move: None,
    }
}

fn term(tag: &str, price: f64) -> Term {
    Term {
        tag: tag.into(),
        price,
        label: String::new(),
    }
}

fn limit(name: &str, tag: &str, lower: Option<f64>, upper: Option<f64>, unit: &str) -> Constraint {
    Constraint {
        name: name.into(),
        tag: tag.into(),
        lower,
        upper,
        unit: unit.into(),
    }
}

/// Hotter: more distillate, more fuel, higher naphtha 95 % point; more
/// reflux: lower 95 % point, more power.
fn outputs() -> Vec<Output> {
    // (tag, unit, intercept, coefficients of [T, F, R, ambient], σ, held-out R²)
    #[rustfmt::skip]
    let table = [
        ("product.naphtha_flow", "m³/h", -300.0, [0.8, 0.16, 0.0, 0.0], 1.0, 0.97),
        ("product.kerosene_flow", "m³/h", -200.0, [0.5, 0.14, 0.0, 0.0], 0.8, 0.95),
        ("product.diesel_flow", "m³/h", -150.0, [0.45, 0.25, 0.0, 0.0], 1.2, 0.96),
        ("product.residue_flow", "m³/h", 650.0, [-1.75, 0.45, 0.0, 0.0], 1.5, 0.93),
        ("heater.fuel_gas_flow", "kg/h", -21460.0, [60.0, 8.0, 0.0, -10.0], 40.0, 0.98),
        ("utility.power", "kW", 300.0, [0.0, 0.5, 400.0, 0.0], 20.0, 0.9),
        (T95, "°C", 34.1, [0.42, 0.0, -3.0, 0.1], 0.8, 0.92),
    ];
    table
        .iter()
        .map(|(tag, unit, b, c, s, r2)| output(tag, unit, model(tag, *b, *c, *s, *r2)))
        .collect()
}

fn decisions() -> Vec<Decision> {
    vec![
        decision(T, "heater outlet temperature", "°C", 330.0, 385.0),
        decision(F, "crude feed rate", "m³/h", 250.0, 700.0),
        decision(R, "reflux ratio", "", 1.0, 4.0),
    ]
}

/// Maximise the margin ($/h) under the naphtha spec and a firing limit.
fn margin_problem() -> Problem {
    Problem {
        name: "crude unit margin".into(),
        decisions: decisions(),
        outputs: outputs(),
        objective: Objective {
            sense: ObjectiveSense::Maximize,
            unit: "$/h".into(),
            terms: vec![
                term("product.naphtha_flow", 620.0),
                term("product.kerosene_flow", 700.0),
                term("product.diesel_flow", 680.0),
                term("product.residue_flow", 420.0),
                term(F, -550.0),
                term("heater.fuel_gas_flow", -0.45),
                term("utility.power", -0.09),
            ],
        },
        constraints: vec![
            limit(SPEC, T95, None, Some(180.0), "°C"),
            limit(
                "heater firing limit",
                "heater.fuel_gas_flow",
                None,
                Some(7000.0),
                "kg/h",
            ),
        ],
        margin_sigmas: 2.0,
        hours_per_year: DEFAULT_HOURS_PER_YEAR,
        bias_correction: false,
    }
}

/// Minimise the energy bill ($/h) while meeting product demands.
fn energy_problem() -> Problem {
    Problem {
        name: "crude unit energy".into(),
        objective: Objective {
            sense: ObjectiveSense::Minimize,
            unit: "$/h".into(),
            terms: vec![
                term("heater.fuel_gas_flow", 0.45),
                term("utility.power", 0.09),
            ],
        },
        constraints: vec![
            limit(
                "naphtha demand",
                "product.naphtha_flow",
                Some(75.0),
                None,
                "m³/h",
            ),
            limit(
                "diesel demand",
                "product.diesel_flow",
                Some(140.0),
                None,
                "m³/h",
            ),
            limit(SPEC, T95, None, Some(180.0), "°C"),
        ],
        ..margin_problem()
    }
}

fn current(t: f64, f: f64, r: f64) -> Current {
    Current {
        decisions: [(T, t), (F, f), (R, r)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        disturbances: [(AMB.to_string(), 14.0)].into_iter().collect(),
        outputs: BTreeMap::new(),
    }
}

/// The objective recomputed from the models, independently of the LP.
fn objective_at(p: &Problem, cur: &Current, x: &[f64]) -> f64 {
    let value = |tag: &str| -> f64 {
        if let Some(j) = p.decisions.iter().position(|d| d.tag == tag) {
            return x[j];
        }
        let o = p.outputs.iter().find(|o| o.tag == tag).unwrap();
        predict(&o.model, cur, x, p)
    };
    p.objective
        .terms
        .iter()
        .map(|t| t.price * value(&t.tag))
        .sum()
}

fn predict(m: &LinearModel, cur: &Current, x: &[f64], p: &Problem) -> f64 {
    let inputs: Vec<f64> = m
        .inputs
        .iter()
        .map(|i| match p.decisions.iter().position(|d| &d.tag == i) {
            Some(j) => x[j],
            None => cur.disturbances[i],
        })
        .collect();
    m.predict(&inputs)
}

fn proposed(r: &Recommendation) -> Vec<f64> {
    r.setpoints.iter().map(|s| s.proposed).collect()
}

fn t95_model(p: &Problem) -> &LinearModel {
    &p.outputs.iter().find(|o| o.tag == T95).unwrap().model
}

#[test]
fn the_margin_optimum_sits_on_the_quality_spec() {
    let p = margin_problem();
    let cur = current(350.0, 500.0, 2.5);
    let r = recommend(&p, &cur).unwrap();
    let x = proposed(&r);
    let sigma = t95_model(&p).quality.as_ref().unwrap().residual_std;
    let t95 = predict(t95_model(&p), &cur, &x, &p);
    assert!((t95 - (180.0 - 2.0 * sigma)).abs() < 1e-6, "t95 {t95}");
    // Heat pays: the temperature rose from 350 as far as the spec allows.
    assert!(x[0] > 355.0 && x[0] < 385.0, "{x:?}");
    let spec = r
        .binding
        .iter()
        .find(|b| b.name == SPEC)
        .expect("spec binding");
    assert_eq!(
        (spec.kind, spec.side),
        (BindingKind::Constraint, Side::Upper)
    );
    assert!(spec.relaxation_value > 0.0);
    assert!(!r.constraints[1].binding, "the firing limit is slack");
    // Benefit: positive and the objective difference, recomputed from the
    // models.
    let now = objective_at(&p, &cur, &[350.0, 500.0, 2.5]);
    let then = objective_at(&p, &cur, &x);
    assert!((r.objective_current - now).abs() < 1e-6 * now.abs().max(1.0));
    assert!((r.objective_proposed - then).abs() < 1e-6 * then.abs().max(1.0));
    assert!(r.benefit_per_hour > 0.0);
    assert!((r.benefit_per_hour - (then - now)).abs() < 1e-6 * then.abs().max(1.0));
    assert_eq!(r.benefit_per_year, r.benefit_per_hour * p.hours_per_year);
    let terms: f64 = r.terms.iter().map(|t| t.proposed - t.current).sum();
    assert!((terms - r.benefit_per_hour).abs() < 1e-6 * then.abs().max(1.0));
    // Predictions at the proposal with a ±2σ band.
    let o = r.outputs.iter().find(|o| o.tag == T95).unwrap();
    assert!(
        (o.proposed - t95).abs() < 1e-9
            && (o.high.unwrap() - o.proposed - SPREAD_SIGMAS * sigma).abs() < 1e-12
    );
    // The proposal leaves the training ranges of feed and reflux.
    let named: Vec<&str> = r
        .confidence
        .extrapolations
        .iter()
        .map(|e| e.input.as_str())
        .collect();
    assert!(
        named.len() == 2 && named.contains(&F) && named.contains(&R),
        "{named:?}"
    );
    // Every model uses feed and reflux: one entry each, naming all seven.
    assert!(
        r.confidence
            .extrapolations
            .iter()
            .all(|e| e.outputs.len() == p.outputs.len())
    );
    // At a bound means exactly at it: a PLC refuses 700.0000001 m³/h.
    assert_eq!((x[1], x[2]), (700.0, 4.0));
    assert!(
        r.confidence.text.contains("extrapolates") && r.confidence.text.contains(F),
        "{}",
        r.confidence.text
    );
}

/// Relaxes the limit behind `b` by `delta` and returns the re-solved
/// improvement (positive = better).
fn relaxed_gain(p: &Problem, cur: &Current, b: &Binding, delta: f64) -> f64 {
    let base = recommend(p, cur).unwrap().objective_proposed;
    let mut q = p.clone();
    match b.kind {
        BindingKind::Constraint => {
            let c = q.constraints.iter_mut().find(|c| c.name == b.name).unwrap();
            match b.side {
                Side::Upper => *c.upper.as_mut().unwrap() += delta,
                Side::Lower => *c.lower.as_mut().unwrap() -= delta,
            }
        }
        BindingKind::DecisionLimit => {
            let d = q.decisions.iter_mut().find(|d| d.tag == b.tag).unwrap();
            match b.side {
                Side::Upper => d.max += delta,
                Side::Lower => d.min -= delta,
            }
        }
        BindingKind::MaxMove => {
            let d = q.decisions.iter_mut().find(|d| d.tag == b.tag).unwrap();
            *d.max_move.as_mut().unwrap() += delta;
        }
    }
    let new = recommend(&q, cur).unwrap().objective_proposed;
    p.objective.sense.sign() * (new - base)
}

/// Every binding item: its value per unit of room against a finite
/// difference, the shadow price's sign convention, and its sentence.
fn check_bindings(p: &Problem, cur: &Current, expect: &[(&str, BindingKind, Side)]) {
    let r = recommend(p, cur).unwrap();
    let got: Vec<(&str, BindingKind, Side)> = r
        .binding
        .iter()
        .map(|b| (b.tag.as_str(), b.kind, b.side))
        .collect();
    for e in expect {
        assert!(got.contains(e), "{e:?} not in {got:?}");
    }
    assert_eq!(got.len(), expect.len(), "{got:?}");
    let s = p.objective.sense.sign();
    for b in &r.binding {
        let delta = 0.01;
        let fd = relaxed_gain(p, cur, b, delta) / delta;
        assert!(
            (fd - b.relaxation_value).abs() <= 1e-4 * b.relaxation_value.abs().max(1.0),
            "{}: relaxation value {} vs finite difference {fd}",
            b.text,
            b.relaxation_value
        );
        assert!(b.relaxation_value > 0.0, "{}", b.text);
        // d(objective)/d(limit): raising an upper limit helps a maximisation.
        let raise = if b.side == Side::Lower { -1.0 } else { 1.0 };
        assert!(
            (b.shadow_price * raise * s - b.relaxation_value).abs()
                < 1e-9 * b.relaxation_value.max(1.0)
        );
        let worth = format!("worth {} $/h", num(b.relaxation_value));
        assert!(b.text.contains(&worth), "{} lacks `{worth}`", b.text);
        match (b.kind, b.side) {
            (BindingKind::Constraint, _) => {
                assert!(b.text.contains("more allowance") && b.text.starts_with(&b.name))
            }
            (BindingKind::DecisionLimit, Side::Upper) => {
                assert!(b.text.contains("at its upper limit") && b.text.contains("more would"))
            }
            (BindingKind::DecisionLimit, Side::Lower) => {
                assert!(b.text.contains("at its lower limit") && b.text.contains("less would"))
            }
            (BindingKind::MaxMove, _) => assert!(b.text.contains("largest allowed move")),
        }
    }
}

#[test]
fn shadow_prices_match_finite_differences_when_maximising() {
    let p = margin_problem();
    let cur = current(350.0, 500.0, 2.5);
    check_bindings(
        &p,
        &cur,
        &[
            (T95, BindingKind::Constraint, Side::Upper),
            (F, BindingKind::DecisionLimit, Side::Upper),
            (R, BindingKind::DecisionLimit, Side::Upper),
        ],
    );
    let r = recommend(&p, &cur).unwrap();
    // The hub returns it as JSON.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["sense"], "maximize");
    assert!(
        json["binding"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "constraint" && b["side"] == "upper")
    );
    let spec = r.binding.iter().find(|b| b.name == SPEC).unwrap();
    assert!(spec.text.starts_with("naphtha 95 % spec is binding at 178.4 °C (180 °C less a 1.6 °C safety margin): 1 °C more allowance is worth"), "{}", spec.text);
    let feed = r.binding.iter().find(|b| b.tag == F).unwrap();
    assert!(
        feed.text.starts_with(
            "crude feed rate is at its upper limit 700 m³/h: 1 m³/h more would be worth"
        ),
        "{}",
        feed.text
    );
}

#[test]
fn shadow_prices_match_finite_differences_when_minimising() {
    let p = energy_problem();
    let cur = current(360.0, 600.0, 2.5);
    let r = recommend(&p, &cur).unwrap();
    assert!(r.benefit_per_hour > 0.0, "{r:?}");
    let now = objective_at(&p, &cur, &[360.0, 600.0, 2.5]);
    assert!((r.benefit_per_hour - (now - r.objective_proposed)).abs() < 1e-9 * now);
    check_bindings(
        &p,
        &cur,
        &[
            ("product.naphtha_flow", BindingKind::Constraint, Side::Lower),
            (F, BindingKind::DecisionLimit, Side::Upper),
            (R, BindingKind::DecisionLimit, Side::Lower),
        ],
    );
    // Minimising: a binding lower limit has a positive d(cost)/d(limit).
    let demand = r
        .binding
        .iter()
        .find(|b| b.name == "naphtha demand")
        .unwrap();
    assert!(demand.shadow_price > 0.0);
    let reflux = r.binding.iter().find(|b| b.tag == R).unwrap();
    assert!(
        reflux
            .text
            .starts_with("reflux ratio is at its lower limit 1: 1 less would be worth"),
        "{}",
        reflux.text
    );
    // A trust region on reflux: its lower side binds instead of its limit.
    let mut q = energy_problem();
    q.decisions[2].max_move = Some(0.5);
    check_bindings(
        &q,
        &cur,
        &[
            ("product.naphtha_flow", BindingKind::Constraint, Side::Lower),
            (F, BindingKind::DecisionLimit, Side::Upper),
            (R, BindingKind::MaxMove, Side::Lower),
        ],
    );
    let r = recommend(&q, &cur).unwrap();
    let reflux = r.binding.iter().find(|b| b.tag == R).unwrap();
    assert!(
        reflux
            .text
            .starts_with("reflux ratio is at its largest allowed move (−0.5 from 2.5)"),
        "{}",
        reflux.text
    );
}

#[test]
fn max_move_limits_the_step() {
    let free = recommend(&margin_problem(), &current(350.0, 500.0, 2.5)).unwrap();
    let mut p = margin_problem();
    let moves = [5.0, 50.0, 0.5];
    for (d, m) in p.decisions.iter_mut().zip(moves) {
        d.max_move = Some(m);
    }
    let cur = current(350.0, 500.0, 2.5);
    let r = recommend(&p, &cur).unwrap();
    for ((s, f), m) in r.setpoints.iter().zip(&free.setpoints).zip(moves) {
        assert!((s.proposed - s.current).abs() <= m + 1e-9, "{s:?}");
        // Without the trust region every one of them moved further.
        assert!((f.proposed - f.current).abs() > m, "{f:?}");
        assert_eq!((s.lower, s.upper), (s.current - m, s.current + m));
    }
    assert!(r.benefit_per_hour > 0.0 && r.benefit_per_hour < free.benefit_per_hour);
    check_bindings(
        &p,
        &cur,
        &[
            (T, BindingKind::MaxMove, Side::Upper),
            (F, BindingKind::MaxMove, Side::Upper),
            // With the temperature capped, reflux is only a power cost: it
            // drops until the spec binds.
            (T95, BindingKind::Constraint, Side::Upper),
        ],
    );
    let t = r.binding.iter().find(|b| b.tag == T).unwrap();
    assert!(
        t.text.starts_with(
            "heater outlet temperature is at its largest allowed move (+5 °C from 350 °C)"
        ),
        "{}",
        t.text
    );
}

#[test]
fn the_safety_margin_tightens_the_spec_by_k_sigma() {
    let cur = current(350.0, 500.0, 2.5);
    let mut p = margin_problem();
    let sigma = t95_model(&p).quality.as_ref().unwrap().residual_std;
    let mut t95s = Vec::new();
    for k in [0.0, 1.0, 2.5] {
        p.margin_sigmas = k;
        let r = recommend(&p, &cur).unwrap();
        let c = &r.constraints[0];
        assert_eq!(c.margin, k * sigma);
        assert_eq!(
            r.outputs.iter().find(|o| o.tag == T95).unwrap().margin,
            k * sigma
        );
        assert_eq!(c.effective_upper, Some(180.0 - k * sigma));
        let t95 = predict(t95_model(&p), &cur, &proposed(&r), &p);
        assert!((t95 - (180.0 - k * sigma)).abs() < 1e-6, "k={k}: {t95}");
        t95s.push((k, t95, r.benefit_per_hour));
    }
    // Tighter means less benefit.
    assert!(t95s.windows(2).all(|w| w[1].2 < w[0].2), "{t95s:?}");
    // A user-supplied model has no σ: no margin.
    let mut q = margin_problem();
    let m = &mut q.outputs.iter_mut().find(|o| o.tag == T95).unwrap().model;
    m.quality = None;
    let r = recommend(&q, &cur).unwrap();
    assert_eq!(r.constraints[0].margin, 0.0);
    let t95 = predict(t95_model(&q), &cur, &proposed(&r), &q);
    assert!((t95 - 180.0).abs() < 1e-6);
    assert_eq!(
        r.confidence.score,
        0.5 * 0.5,
        "user model 0.5, halved for extrapolating"
    );
    assert!(
        r.confidence.text.contains("supplied by hand"),
        "{}",
        r.confidence.text
    );
}

#[test]
fn bias_correction_follows_the_measurement() {
    let mut p = margin_problem();
    p.bias_correction = true;
    let mut cur = current(350.0, 500.0, 2.5);
    let predicted = predict(t95_model(&p), &cur, &[350.0, 500.0, 2.5], &p);
    cur.outputs.insert(T95.into(), predicted + 2.0);
    let r = recommend(&p, &cur).unwrap();
    let o = r.outputs.iter().find(|o| o.tag == T95).unwrap();
    assert!((o.bias - 2.0).abs() < 1e-9 && o.measured == Some(predicted + 2.0));
    let raw = predict(t95_model(&p), &cur, &proposed(&r), &p);
    assert!((raw + 2.0 - (180.0 - 1.6)).abs() < 1e-6, "{raw}");
    p.bias_correction = false;
    let plain = recommend(&p, &cur).unwrap();
    assert!(plain.setpoints[0].proposed > r.setpoints[0].proposed);
}

#[test]
fn confidence_is_the_weakest_held_out_r2() {
    let mut p = margin_problem();
    for d in &mut p.decisions {
        d.max_move = Some(1.0);
    }
    // Feed and reflux held near the middle of their training ranges.
    let r = recommend(&p, &current(350.0, 500.0, 2.5)).unwrap();
    assert!(r.confidence.extrapolations.is_empty(), "{:?}", r.confidence);
    let r2 = |o: &Output| o.model.quality.as_ref().unwrap().r2_test.unwrap();
    let weakest = p
        .outputs
        .iter()
        .min_by(|a, b| r2(a).total_cmp(&r2(b)))
        .unwrap();
    assert_eq!(r.confidence.score, r2(weakest));
    assert!(
        r.confidence
            .text
            .contains(&format!("weakest fitted model, {}", weakest.tag)),
        "{}",
        r.confidence.text
    );
}

#[test]
fn infeasible_problems_name_the_conflict() {
    let cur = current(350.0, 500.0, 2.5);
    let mut p = margin_problem();
    p.constraints[0].upper = Some(150.0);
    p.margin_sigmas = 0.0;
    let Err(RecommendError::Infeasible { conflicts, detail }) = recommend(&p, &cur) else {
        panic!("not infeasible");
    };
    assert!(conflicts.contains(&SPEC.to_string()), "{conflicts:?}");
    // Coolest and most reflux is the best the plant can do.
    let best = predict(t95_model(&p), &cur, &[330.0, 500.0, 4.0], &p);
    assert!(
        detail.contains(&format!("missed by at least {} °C", val(best - 150.0))),
        "{detail}"
    );
    assert!(
        detail.contains("heater outlet temperature limits")
            && detail.contains("reflux ratio limits"),
        "{detail}"
    );
    assert!(
        !conflicts.iter().any(|c| c.contains("firing")),
        "{conflicts:?}"
    );

    // Two constraints against each other: naphtha demand needs heat, the
    // spec forbids it.
    let mut q = margin_problem();
    q.constraints.push(limit(
        "naphtha demand",
        "product.naphtha_flow",
        Some(115.0),
        None,
        "m³/h",
    ));
    let Err(RecommendError::Infeasible { conflicts, .. }) = recommend(&q, &cur) else {
        panic!("not infeasible");
    };
    assert!(
        conflicts.contains(&SPEC.to_string()) && conflicts.contains(&"naphtha demand".to_string()),
        "{conflicts:?}"
    );
}

#[test]
fn bad_problems_are_refused() {
    let cur = current(350.0, 500.0, 2.5);
    let mut p = margin_problem();
    p.objective.terms.push(term("product.jet", 1.0));
    assert!(matches!(
        recommend(&p, &cur),
        Err(RecommendError::Invalid { .. })
    ));
    let mut p = margin_problem();
    p.decisions[0].max_move = Some(5.0);
    let far = current(395.0, 500.0, 2.5);
    assert!(matches!(
        recommend(&p, &far),
        Err(RecommendError::OutOfReach { .. })
    ));
    let mut cur2 = cur.clone();
    cur2.disturbances.clear();
    let err = recommend(&margin_problem(), &cur2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no current value for disturbance `ambient.temp`"
    );
}

#[test]
fn numbers_read_well() {
    for (v, s) in [
        (420.4, "420"),
        (12.34, "12.3"),
        (1.0, "1"),
        (0.8, "0.8"),
        (0.01234, "0.0123"),
        (-1e-13, "0"),
        (1234.6, "1235"),
    ] {
        assert_eq!(num(v), s, "{v}");
    }
    for (v, s) in [
        (180.0 - 1.6, "178.4"),
        (385.0, "385"),
        (7000.0, "7000"),
        (0.8, "0.8"),
        (12.100000000000023, "12.1"),
    ] {
        assert_eq!(val(v), s, "{v}");
    }
}

/// A random small problem: decisions in random boxes, outputs linear in
/// decisions and one disturbance, random prices and limits around the
/// current point.
fn random_problem(seed: u64) -> (Problem, Current) {
    let mut rng = SplitMix::new(seed);
    let n = rng.range_usize((1, 3));
    let m = rng.range_usize((1, 3));
    let mut cur = Current::default();
    cur.disturbances.insert("d".into(), rng.range((-5.0, 5.0)));
    let decisions: Vec<Decision> = (0..n)
        .map(|j| {
            let min = rng.range((-10.0, 10.0));
            let max = min + rng.range((0.5, 20.0));
            cur.decisions.insert(format!("x{j}"), rng.range((min, max)));
            Decision {
                max_move: (rng.uniform() < 0.3).then(|| rng.range((0.1, 5.0))),
                ..decision(&format!("x{j}"), "", "u", min, max)
            }
        })
        .collect();
    let mut inputs: Vec<String> = (0..n).map(|j| format!("x{j}")).collect();
    inputs.push("d".into());
    let outputs: Vec<Output> = (0..m)
        .map(|o| {
            let coef = (0..=n).map(|_| rng.range((-3.0, 3.0))).collect();
            let mut model = LinearModel::new(
                format!("y{o}"),
                inputs.clone(),
                rng.range((-20.0, 20.0)),
                coef,
            );
            if rng.uniform() < 0.7 {
                model.quality = Some(quality(
                    rng.range((0.0, 0.5)),
                    0.9,
                    vec![(-100.0, 100.0); n + 1],
                ));
            }
            output(&format!("y{o}"), "v", model)
        })
        .collect();
    let x0: Vec<f64> = (0..n).map(|j| cur.decisions[&format!("x{j}")]).collect();
    let mut p = Problem {
        name: "random".into(),
        decisions,
        outputs,
        objective: Objective {
            sense: if rng.uniform() < 0.5 {
                ObjectiveSense::Maximize
            } else {
                ObjectiveSense::Minimize
            },
            unit: "$/h".into(),
            terms: Vec::new(),
        },
        constraints: Vec::new(),
        margin_sigmas: rng.range((0.0, 2.0)),
        hours_per_year: 8760.0,
        bias_correction: false,
    };
    let tags: Vec<String> = (0..n)
        .map(|j| format!("x{j}"))
        .chain((0..m).map(|o| format!("y{o}")))
        .collect();
    for tag in &tags {
        if rng.uniform() < 0.7 {
            p.objective.terms.push(term(tag, rng.range((-10.0, 10.0))));
        }
    }
    for o in 0..m {
        let now = predict(&p.outputs[o].model, &cur, &x0, &p);
        let lower = (rng.uniform() < 0.5).then(|| now - rng.range((-1.0, 5.0)));
        let upper = (rng.uniform() < 0.5).then(|| now + rng.range((-1.0, 5.0)));
        if lower.is_some() || upper.is_some() {
            let upper = match (lower, upper) {
                (Some(l), Some(u)) if u < l => Some(l + 1.0),
                _ => upper,
            };
            p.constraints
                .push(limit(&format!("c{o}"), &format!("y{o}"), lower, upper, "v"));
        }
    }
    (p, cur)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// No random point that meets every limit beats the recommendation by
    /// more than 1e-6 (relative); the recommendation meets them itself.
    #[test]
    fn no_random_feasible_point_beats_the_optimum(seed in any::<u64>(), samples in any::<u64>()) {
        let (p, cur) = random_problem(seed);
        let r = match recommend(&p, &cur) {
            Ok(r) => r,
            Err(RecommendError::Infeasible { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let s = p.objective.sense.sign();
        let bounds: Vec<(f64, f64)> = p.decisions.iter().map(|d| {
            let c = cur.decisions[&d.tag];
            d.max_move.map_or((d.min, d.max), |m| (d.min.max(c - m), d.max.min(c + m)))
        }).collect();
        let feasible = |x: &[f64], tol: f64| {
            x.iter().zip(&bounds).all(|(v, (lo, hi))| *v >= lo - tol && *v <= hi + tol)
                && p.constraints.iter().all(|c| {
                    let o = p.outputs.iter().find(|o| o.tag == c.tag).unwrap();
                    let margin = p.margin_sigmas * o.model.quality.as_ref().map_or(0.0, |q| q.residual_std);
                    let v = predict(&o.model, &cur, x, &p);
                    c.lower.is_none_or(|l| v >= l + margin - tol) && c.upper.is_none_or(|u| v <= u - margin + tol)
                })
        };
        let best = proposed(&r);
        prop_assert!(feasible(&best, 1e-6), "{best:?} infeasible");
        prop_assert!(best.iter().zip(&bounds).all(|(v, (lo, hi))| v >= lo && v <= hi), "{best:?} outside {bounds:?}");
        let best_value = objective_at(&p, &cur, &best);
        prop_assert!((best_value - r.objective_proposed).abs() <= 1e-9 * best_value.abs().max(1.0));
        let tol = 1e-6 * best_value.abs().max(1.0);
        let mut rng = SplitMix::new(samples);
        for _ in 0..400 {
            let x: Vec<f64> = bounds.iter().map(|b| rng.range(*b)).collect();
            if feasible(&x, 0.0) {
                let v = objective_at(&p, &cur, &x);
                prop_assert!(s * v <= s * best_value + tol, "{x:?} gives {v}, the recommendation {best_value}");
            }
        }
    }
}
