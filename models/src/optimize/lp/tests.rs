//! Hand-made LPs with known optima; duals against finite differences.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const INF: f64 = f64::INFINITY;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn optimal(p: &LpProblem) -> Solution {
    let s = p.solve().expect("solves");
    assert_eq!(s.status, Status::Optimal, "{p:?}");
    s
}

/// Checks every row dual against a central difference of the optimal
/// objective when the binding bound of that row moves by ±h.
fn check_duals(p: &LpProblem) {
    let s = optimal(p);
    let h = 1e-4;
    for (i, row) in p.rows.iter().enumerate() {
        let act = s.row_activities[i];
        let at_upper = row.upper.is_finite() && close(act, row.upper, 1e-7);
        let at_lower = row.lower.is_finite() && close(act, row.lower, 1e-7);
        let shifted = |d: f64| {
            let mut q = p.clone();
            let r = &mut q.rows[i];
            if r.lower == r.upper {
                r.lower += d;
                r.upper += d;
            } else if at_upper {
                r.upper += d;
            } else if at_lower {
                r.lower += d;
            }
            optimal(&q).objective
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
        assert!(
            (fd - s.row_duals[i]).abs() < 1e-5,
            "row {}: dual {} vs finite difference {fd}",
            row.name,
            s.row_duals[i]
        );
        if !at_upper && !at_lower {
            assert!(
                s.row_duals[i].abs() < 1e-7,
                "slack row {} has dual {}",
                row.name,
                s.row_duals[i]
            );
        }
    }
}

/// Wyndor glass: max 3x + 5y, x ≤ 4, 2y ≤ 12, 3x + 2y ≤ 18; optimum (2, 6),
/// 36, duals (0, 1.5, 1).
fn wyndor(sense: Sense) -> LpProblem {
    let s = if sense == Sense::Maximize { 1.0 } else { -1.0 };
    let mut p = LpProblem::new("wyndor");
    p.sense = sense;
    let x = p.add_variable("x", 0.0, INF, 3.0 * s);
    let y = p.add_variable("y", 0.0, INF, 5.0 * s);
    p.add_row("plant1", vec![(x, 1.0)], -INF, 4.0);
    p.add_row("plant2", vec![(y, 2.0)], -INF, 12.0);
    p.add_row("plant3", vec![(x, 3.0), (y, 2.0)], -INF, 18.0);
    p
}

#[test]
fn wyndor_max_and_min_with_duals() {
    for (sense, sign) in [(Sense::Maximize, 1.0), (Sense::Minimize, -1.0)] {
        let p = wyndor(sense);
        let s = optimal(&p);
        assert!(close(s.objective, 36.0 * sign, 1e-9), "{}", s.objective);
        assert!(close(s.value(&p, "x").unwrap(), 2.0, 1e-8));
        assert!(close(s.value(&p, "y").unwrap(), 6.0, 1e-8));
        for (row, dual) in [("plant1", 0.0), ("plant2", 1.5), ("plant3", 1.0)] {
            assert!(
                (s.dual(&p, row).unwrap() - dual * sign).abs() < 1e-8,
                "{row}: {:?}",
                s.row_duals
            );
        }
        assert_eq!(
            s.binding_rows(&p, 1e-8)
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(s.iterations > 0);
        check_duals(&p);
    }
}

/// Equality, ≥, ranged row, variable bounds and an objective constant:
/// min x + 2y + 3z + 10, x + y + z = 10, x − y ≥ 2, 3 ≤ y + z ≤ 8,
/// 0 ≤ x ≤ 6, z ≥ 1. Optimum x = 6, y = 3, z = 1, objective 25; the
/// equality's dual is 2 (one more unit goes to y).
fn mixed() -> LpProblem {
    let mut p = LpProblem::new("mixed");
    p.objective_constant = 10.0;
    let x = p.add_variable("x", 0.0, 6.0, 1.0);
    let y = p.add_variable("y", 0.0, INF, 2.0);
    let z = p.add_variable("z", 1.0, INF, 3.0);
    p.add_row("sum", vec![(x, 1.0), (y, 1.0), (z, 1.0)], 10.0, 10.0);
    p.add_row("g", vec![(x, 1.0), (y, -1.0)], 2.0, INF);
    p.add_row("r", vec![(y, 1.0), (z, 1.0)], 3.0, 8.0);
    p
}

#[test]
fn equality_ranged_and_constant() {
    let p = mixed();
    let s = optimal(&p);
    assert!(close(s.objective, 25.0, 1e-9), "{}", s.objective);
    assert!(
        close(s.values[0], 6.0, 1e-8)
            && close(s.values[1], 3.0, 1e-8)
            && close(s.values[2], 1.0, 1e-8)
    );
    assert!(close(s.row_duals[0], 2.0, 1e-8), "{:?}", s.row_duals);
    assert!(close(s.row_activities[2], 4.0, 1e-8));
    check_duals(&p);
}

#[test]
fn binding_lower_side_of_a_ranged_row_and_ge_row() {
    // min 2a + b, 4 ≤ a + b ≤ 9 (binds below), a − b ≥ −2 (binds): a = 1, b = 3.
    let mut p = LpProblem::new("ranged");
    let a = p.add_variable("a", 0.0, INF, 2.0);
    let b = p.add_variable("b", 0.0, INF, 1.0);
    p.add_row("range", vec![(a, 1.0), (b, 1.0)], 4.0, 9.0);
    p.add_row("ge", vec![(a, 1.0), (b, -1.0)], -2.0, INF);
    let s = optimal(&p);
    assert!(close(s.objective, 5.0, 1e-9));
    // d/d(lower of range): +1.5; d/d(ge rhs): +0.5 (both ≥ 0 for a min).
    assert!(
        close(s.row_duals[0], 1.5, 1e-8) && close(s.row_duals[1], 0.5, 1e-8),
        "{:?}",
        s.row_duals
    );
    check_duals(&p);
}

#[test]
fn free_negative_and_fixed_variables() {
    // min x + y − w, x free with row x ≥ −5, y ∈ [−3, 2], w fixed at 4,
    // x + y + w ≤ 10 (slack).
    let mut p = LpProblem::new("bounds");
    let x = p.add_variable("x", -INF, INF, 1.0);
    let y = p.add_variable("y", -3.0, 2.0, 1.0);
    let w = p.add_variable("w", 4.0, 4.0, -1.0);
    p.add_row("xmin", vec![(x, 1.0)], -5.0, INF);
    p.add_row("cap", vec![(x, 1.0), (y, 1.0), (w, 1.0)], -INF, 10.0);
    let s = optimal(&p);
    assert!(close(s.objective, -12.0, 1e-9), "{}", s.objective);
    assert!(close(s.values[1], -3.0, 1e-8) && close(s.values[2], 4.0, 1e-8));
    assert!(close(s.row_duals[0], 1.0, 1e-8));
    check_duals(&p);
}

#[test]
fn maximisation_duals_have_the_max_sign() {
    // max x, x ≤ 3 (row): d(max)/d(rhs) = +1.
    let mut p = LpProblem::new("max");
    p.sense = Sense::Maximize;
    let x = p.add_variable("x", 0.0, INF, 1.0);
    p.add_row("cap", vec![(x, 1.0)], -INF, 3.0);
    let s = optimal(&p);
    assert!(close(s.objective, 3.0, 1e-9) && close(s.row_duals[0], 1.0, 1e-8));
    check_duals(&p);
}

#[test]
fn infeasible_and_unbounded() {
    let mut p = LpProblem::new("infeasible");
    let x = p.add_variable("x", 0.0, INF, 1.0);
    let y = p.add_variable("y", 0.0, INF, 1.0);
    p.add_row("le", vec![(x, 1.0), (y, 1.0)], -INF, 1.0);
    p.add_row("ge", vec![(x, 1.0), (y, 1.0)], 2.0, INF);
    let s = p.solve().unwrap();
    assert_eq!(s.status, Status::Infeasible);
    assert_eq!(s.objective, INF);
    assert!(s.values.is_empty() && s.row_duals.is_empty());

    let mut p = LpProblem::new("unbounded");
    let x = p.add_variable("x", 0.0, INF, -1.0);
    let y = p.add_variable("y", 0.0, INF, 0.0);
    p.add_row("d", vec![(x, 1.0), (y, -1.0)], -INF, 1.0);
    let s = p.solve().unwrap();
    assert_eq!(s.status, Status::Unbounded);
    assert_eq!(s.objective, -INF);

    p.sense = Sense::Maximize;
    p.variables[0].cost = 1.0;
    assert_eq!(p.solve().unwrap().objective, INF);
}

#[test]
fn crossed_bounds_are_infeasible_without_solving() {
    let mut p = LpProblem::new("crossed");
    p.add_variable("x", 1.0, 0.0, 1.0);
    let s = p.solve().unwrap();
    assert_eq!((s.status, s.iterations), (Status::Infeasible, 0));
}

#[test]
fn integer_variables_are_refused() {
    let mut p = wyndor(Sense::Maximize);
    p.variables[1].integer = true;
    let e = p.solve().unwrap_err();
    assert!(
        matches!(&e, SolveError::Milp { count: 1, first } if first == "y"),
        "{e}"
    );
    assert!(
        e.to_string().contains("MILP not supported by this backend"),
        "{e}"
    );
}

#[test]
fn an_iteration_limit_is_a_failure_not_an_answer() {
    let options = SolveOptions {
        max_iterations: 1,
        ..SolveOptions::default()
    };
    let e = mixed().solve_with(&options).unwrap_err();
    assert!(
        matches!(
            e,
            SolveError::Failed {
                failure: Failure::MaxIterations,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn empty_and_trivial_problems() {
    let mut p = LpProblem::new("empty");
    p.objective_constant = -7.5;
    let s = optimal(&p);
    assert_eq!(s.objective, -7.5);

    // A row without variables: 0 ∈ [−1, 1] holds, 0 ∈ [1, 2] does not.
    p.add_row("zero", vec![], -1.0, 1.0);
    assert_eq!(optimal(&p).row_activities, [0.0]);
    p.add_row("bad", vec![], 1.0, 2.0);
    assert_eq!(p.solve().unwrap().status, Status::Infeasible);

    // Free variables and no constraint at all.
    let mut p = LpProblem::new("free");
    p.add_variable("x", -INF, INF, 0.0);
    assert_eq!(optimal(&p).values, [0.0]);
    p.variables[0].cost = 1.0;
    assert_eq!(p.solve().unwrap().status, Status::Unbounded);
}

#[test]
fn invalid_problems_are_errors() {
    let mut p = wyndor(Sense::Minimize);
    p.rows[0].upper = f64::NAN;
    assert!(matches!(p.solve(), Err(SolveError::Invalid(_))));
    let mut p = wyndor(Sense::Minimize);
    p.rows[2].coefficients.push((0, 1.0));
    let e = p.solve().unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let mut p = wyndor(Sense::Minimize);
    p.rows[2].coefficients.push((9, 1.0));
    assert!(matches!(p.solve(), Err(SolveError::Invalid(_))));
    let mut p = wyndor(Sense::Minimize);
    p.variables[0].lower = INF;
    assert!(matches!(p.solve(), Err(SolveError::Invalid(_))));
}
