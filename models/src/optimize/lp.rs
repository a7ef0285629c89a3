//! The linear program and its solution by Clarabel (interior point, pure
//! Rust).
//!
//! A problem is `min` (or `max`) `cᵀx + k` subject to `lᵣ ≤ a·x ≤ uᵣ` for each
//! row and `lⱼ ≤ xⱼ ≤ uⱼ` for each variable; any bound may be infinite, and a
//! row or variable with equal bounds is an equality. Clarabel's standard form
//! is `min qᵀx` s.t. `Ax + s = b`, `s ∈ K`: each finite side of a row or of a
//! variable's bounds becomes one row of `A` in the nonnegative cone (a lower
//! bound with its sign flipped), and each equality one row in the zero cone.
//!
//! Row duals (shadow prices) are reported as **d(optimal objective) / d(rhs)**
//! in the problem's own sense: how much the optimal objective (of the `max`
//! problem for a maximisation) changes per unit increase of the row's binding
//! bound. For a minimisation a binding `≤` row has a dual `≤ 0` and a binding
//! `≥` row a dual `≥ 0`; for a maximisation the signs are reversed; a row whose
//! activity is strictly inside its bounds has dual 0. For a ranged row it is
//! the derivative with respect to whichever side binds. From Clarabel's dual
//! `z` (`q + Aᵀz = 0`, dual objective `−bᵀz`) this is `−z` for an upper side or
//! an equality and `+z` for a lower side (stored as `−a·x ≤ −l`), negated for a
//! maximisation (solved as `min −cᵀx`).

use std::time::{Duration, Instant};

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use thiserror::Error;

/// Optimisation direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sense {
    #[default]
    Minimize,
    Maximize,
}

/// A decision variable: bounds (either may be infinite), objective
/// coefficient, integrality.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub lower: f64,
    pub upper: f64,
    /// Objective coefficient.
    pub cost: f64,
    pub integer: bool,
}

/// A constraint row `lower ≤ Σ coefficient·x[index] ≤ upper`. Equal bounds
/// make an equality; both infinite make a free row (never binding).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// `(variable index, coefficient)`, each variable at most once.
    pub coefficients: Vec<(usize, f64)>,
    pub lower: f64,
    pub upper: f64,
}

/// A linear (or, with integer variables, mixed-integer) program.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LpProblem {
    pub name: String,
    pub sense: Sense,
    /// Name of the objective row (MPS), informative only.
    pub objective_name: String,
    /// Constant added to the objective (MPS: minus the RHS of the objective row).
    pub objective_constant: f64,
    pub variables: Vec<Variable>,
    pub rows: Vec<Row>,
}

/// Solver settings. The defaults are the project's: every Clarabel tolerance
/// (duality gap absolute and relative, feasibility, infeasibility absolute and
/// relative) at 1e-10.
#[derive(Debug, Clone, PartialEq)]
pub struct SolveOptions {
    pub tolerance: f64,
    pub max_iterations: u32,
    pub time_limit: Option<Duration>,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            tolerance: 1e-10,
            max_iterations: 500,
            time_limit: None,
        }
    }
}

/// The answer the solver certified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Optimal,
    Infeasible,
    Unbounded,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Optimal => "optimal",
            Status::Infeasible => "infeasible",
            Status::Unbounded => "unbounded",
        })
    }
}

/// A solver outcome that is **not** an answer: the interior point method
/// stopped without certifying optimality or infeasibility to the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Solved to Clarabel's reduced tolerances only.
    AlmostSolved,
    /// Infeasibility certificate to reduced tolerances only.
    AlmostInfeasible,
    /// Unboundedness certificate to reduced tolerances only.
    AlmostUnbounded,
    InsufficientProgress,
    MaxIterations,
    MaxTime,
    NumericalError,
    /// Unsolved, callback-terminated or a status this code does not know.
    Other,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::AlmostSolved => "solved to reduced accuracy only (AlmostSolved)",
            Failure::AlmostInfeasible => "infeasible to reduced accuracy only",
            Failure::AlmostUnbounded => "unbounded to reduced accuracy only",
            Failure::InsufficientProgress => "insufficient progress",
            Failure::MaxIterations => "iteration limit reached",
            Failure::MaxTime => "time limit reached",
            Failure::NumericalError => "numerical error",
            Failure::Other => "not solved",
        })
    }
}

/// Why [`LpProblem::solve`] gave no answer.
#[derive(Debug, Error)]
pub enum SolveError {
    #[error(
        "MILP not supported by this backend: {count} integer variable(s), first `{first}` (Clarabel solves continuous problems only)"
    )]
    Milp { count: usize, first: String },
    #[error("invalid problem: {0}")]
    Invalid(String),
    #[error("solver setup failed: {0}")]
    Setup(String),
    #[error("solver failed after {iterations} iterations ({:.3} s): {failure}", solve_time.as_secs_f64())]
    Failed {
        failure: Failure,
        iterations: u32,
        solve_time: Duration,
    },
}

/// A certified answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub status: Status,
    /// `cᵀx + constant` at the optimum. `+∞` (minimisation) or `−∞`
    /// (maximisation) when infeasible; the opposite infinity when unbounded.
    pub objective: f64,
    /// Per variable, in problem order; empty unless optimal.
    pub values: Vec<f64>,
    /// `a·x` per row; empty unless optimal.
    pub row_activities: Vec<f64>,
    /// Shadow price per row, d(objective)/d(rhs) (module doc); empty unless optimal.
    pub row_duals: Vec<f64>,
    pub iterations: u32,
    /// Wall time of setup and solve.
    pub solve_time: Duration,
}

impl Solution {
    /// Value of the variable called `name`.
    pub fn value(&self, problem: &LpProblem, name: &str) -> Option<f64> {
        problem
            .variable_index(name)
            .and_then(|j| self.values.get(j).copied())
    }

    /// Dual of the row called `name`.
    pub fn dual(&self, problem: &LpProblem, name: &str) -> Option<f64> {
        problem
            .row_index(name)
            .and_then(|i| self.row_duals.get(i).copied())
    }

    /// Rows whose activity is at a finite bound (within `tol`, relative to
    /// `max(1, |bound|)`), with their duals: the binding constraints.
    pub fn binding_rows(&self, problem: &LpProblem, tol: f64) -> Vec<(usize, f64)> {
        let near = |a: f64, b: f64| b.is_finite() && (a - b).abs() <= tol * b.abs().max(1.0);
        problem
            .rows
            .iter()
            .zip(self.row_activities.iter().zip(&self.row_duals))
            .enumerate()
            .filter(|(_, (r, (a, _)))| near(**a, r.lower) || near(**a, r.upper))
            .map(|(i, (_, (_, d)))| (i, *d))
            .collect()
    }
}

impl LpProblem {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a continuous variable; returns its index.
    pub fn add_variable(
        &mut self,
        name: impl Into<String>,
        lower: f64,
        upper: f64,
        cost: f64,
    ) -> usize {
        self.variables.push(Variable {
            name: name.into(),
            lower,
            upper,
            cost,
            integer: false,
        });
        self.variables.len() - 1
    }

    /// Adds a row `lower ≤ Σ c·x ≤ upper`; returns its index.
    pub fn add_row(
        &mut self,
        name: impl Into<String>,
        coefficients: Vec<(usize, f64)>,
        lower: f64,
        upper: f64,
    ) -> usize {
        self.rows.push(Row {
            name: name.into(),
            coefficients,
            lower,
            upper,
        });
        self.rows.len() - 1
    }

    pub fn variable_index(&self, name: &str) -> Option<usize> {
        self.variables.iter().position(|v| v.name == name)
    }

    pub fn row_index(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.name == name)
    }

    /// `cᵀx + constant`.
    pub fn objective_value(&self, x: &[f64]) -> f64 {
        self.objective_constant
            + self
                .variables
                .iter()
                .zip(x)
                .map(|(v, x)| v.cost * x)
                .sum::<f64>()
    }

    /// `a·x` for every row.
    pub fn row_activities(&self, x: &[f64]) -> Vec<f64> {
        self.rows
            .iter()
            .map(|r| {
                r.coefficients
                    .iter()
                    .map(|&(j, a)| a * x.get(j).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect()
    }

    /// Structural checks: no NaN, no `+∞` lower or `−∞` upper bound, finite
    /// coefficients, indices in range, no variable twice in a row.
    pub fn validate(&self) -> Result<(), SolveError> {
        let bad = |what: String| Err(SolveError::Invalid(what));
        if !self.objective_constant.is_finite() {
            return bad("objective constant is not finite".into());
        }
        let bounds_ok = |l: f64, u: f64| {
            !l.is_nan() && !u.is_nan() && l != f64::INFINITY && u != f64::NEG_INFINITY
        };
        for v in &self.variables {
            if !bounds_ok(v.lower, v.upper) {
                return bad(format!(
                    "variable `{}` has bounds [{}, {}]",
                    v.name, v.lower, v.upper
                ));
            }
            if !v.cost.is_finite() {
                return bad(format!(
                    "variable `{}` has objective coefficient {}",
                    v.name, v.cost
                ));
            }
        }
        let mut seen = vec![usize::MAX; self.variables.len()];
        for (i, r) in self.rows.iter().enumerate() {
            if !bounds_ok(r.lower, r.upper) {
                return bad(format!(
                    "row `{}` has bounds [{}, {}]",
                    r.name, r.lower, r.upper
                ));
            }
            for &(j, a) in &r.coefficients {
                let Some(mark) = seen.get_mut(j) else {
                    return bad(format!(
                        "row `{}` refers to variable index {j} of {}",
                        r.name,
                        self.variables.len()
                    ));
                };
                if *mark == i {
                    return bad(format!(
                        "row `{}` has variable `{}` twice",
                        r.name, self.variables[j].name
                    ));
                }
                *mark = i;
                if !a.is_finite() {
                    return bad(format!("row `{}` has coefficient {a}", r.name));
                }
            }
        }
        Ok(())
    }

    /// Solves with the default (1e-10) tolerances.
    pub fn solve(&self) -> Result<Solution, SolveError> {
        self.solve_with(&SolveOptions::default())
    }

    /// Solves the LP. Integer variables are refused ([`SolveError::Milp`]);
    /// Clarabel statuses other than Solved, PrimalInfeasible and
    /// DualInfeasible are [`SolveError::Failed`], never an answer.
    pub fn solve_with(&self, options: &SolveOptions) -> Result<Solution, SolveError> {
        self.validate()?;
        let integers: Vec<&Variable> = self.variables.iter().filter(|v| v.integer).collect();
        if let Some(first) = integers.first() {
            return Err(SolveError::Milp {
                count: integers.len(),
                first: first.name.clone(),
            });
        }
        let start = Instant::now();
        let sign = match self.sense {
            Sense::Minimize => 1.0,
            Sense::Maximize => -1.0,
        };
        let no_answer = |status| Solution {
            status,
            // Infeasible: the worst value; unbounded: the best.
            objective: match status {
                Status::Infeasible => sign * f64::INFINITY,
                _ => -sign * f64::INFINITY,
            },
            values: Vec::new(),
            row_activities: Vec::new(),
            row_duals: Vec::new(),
            iterations: 0,
            solve_time: start.elapsed(),
        };
        // Crossed bounds: infeasible before any solving.
        if self.variables.iter().any(|v| v.lower > v.upper)
            || self.rows.iter().any(|r| r.lower > r.upper)
        {
            return Ok(no_answer(Status::Infeasible));
        }
        let sys = StandardForm::build(self);
        if self.variables.is_empty() || sys.b.is_empty() {
            // Nothing for Clarabel. Without variables every activity is 0
            // and each constraint reads `s = b` (feasible iff b = 0 in the
            // zero cone, b ≥ 0 in the nonnegative one); without constraints
            // every variable is free and any cost makes the problem unbounded.
            if sys
                .b
                .iter()
                .zip(&sys.zero_rows)
                .any(|(b, zero)| if *zero { *b != 0.0 } else { *b < 0.0 })
            {
                return Ok(no_answer(Status::Infeasible));
            }
            if self.variables.iter().any(|v| v.cost != 0.0) {
                return Ok(no_answer(Status::Unbounded));
            }
            let x = vec![0.0; self.variables.len()];
            return Ok(Solution {
                status: Status::Optimal,
                objective: self.objective_value(&x),
                row_activities: self.row_activities(&x),
                row_duals: vec![0.0; self.rows.len()],
                values: x,
                iterations: 0,
                solve_time: start.elapsed(),
            });
        }
        let mut settings = DefaultSettingsBuilder::<f64>::default();
        let t = options.tolerance;
        settings
            .verbose(false)
            .tol_gap_abs(t)
            .tol_gap_rel(t)
            .tol_feas(t)
            .tol_infeas_abs(t)
            .tol_infeas_rel(t)
            .max_iter(options.max_iterations)
            .time_limit(
                options
                    .time_limit
                    .map_or(f64::INFINITY, |d| d.as_secs_f64()),
            );
        let settings = settings
            .build()
            .map_err(|e| SolveError::Setup(e.to_string()))?;
        let n = self.variables.len();
        let q: Vec<f64> = self.variables.iter().map(|v| sign * v.cost).collect();
        let p = CscMatrix::<f64>::zeros((n, n));
        let a = sys.matrix(n);
        let cones = sys.cones();
        let mut solver = DefaultSolver::new(&p, &q, &a, &sys.b, &cones, settings)
            .map_err(|e| SolveError::Setup(e.to_string()))?;
        solver.solve();
        let sol = &solver.solution;
        let iterations = sol.iterations;
        let status = match sol.status {
            SolverStatus::Solved => Status::Optimal,
            SolverStatus::PrimalInfeasible => Status::Infeasible,
            SolverStatus::DualInfeasible => Status::Unbounded,
            other => {
                let failure = match other {
                    SolverStatus::AlmostSolved => Failure::AlmostSolved,
                    SolverStatus::AlmostPrimalInfeasible => Failure::AlmostInfeasible,
                    SolverStatus::AlmostDualInfeasible => Failure::AlmostUnbounded,
                    SolverStatus::InsufficientProgress => Failure::InsufficientProgress,
                    SolverStatus::MaxIterations => Failure::MaxIterations,
                    SolverStatus::MaxTime => Failure::MaxTime,
                    SolverStatus::NumericalError => Failure::NumericalError,
                    _ => Failure::Other,
                };
                return Err(SolveError::Failed {
                    failure,
                    iterations,
                    solve_time: start.elapsed(),
                });
            }
        };
        if status != Status::Optimal {
            let mut s = no_answer(status);
            s.iterations = iterations;
            s.solve_time = start.elapsed();
            return Ok(s);
        }
        let x = sol.x.clone();
        let mut row_duals = vec![0.0; self.rows.len()];
        for (k, origin) in sys.origins.iter().enumerate() {
            let z = sol.z.get(k).copied().unwrap_or(0.0);
            if let Origin::Row { index, lower } = *origin {
                // −z for an upper side or equality, +z for a lower side.
                let side = if lower { z } else { -z };
                row_duals[index] += sign * side;
            }
        }
        Ok(Solution {
            status,
            objective: self.objective_value(&x),
            row_activities: self.row_activities(&x),
            row_duals,
            values: x,
            iterations,
            solve_time: start.elapsed(),
        })
    }
}

/// Where a row of Clarabel's `A` comes from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Problem row `index`; `lower`: the `−a·x ≤ −l` side.
    Row {
        index: usize,
        lower: bool,
    },
    Bound,
}

/// `Ax + s = b`: equalities (zero cone) first, then inequalities
/// (nonnegative cone), column lists in increasing row order.
#[derive(Debug)]
struct StandardForm {
    /// Per variable: `(row of A, coefficient)`.
    columns: Vec<Vec<(usize, f64)>>,
    b: Vec<f64>,
    origins: Vec<Origin>,
    zero_rows: Vec<bool>,
    equalities: usize,
}

impl StandardForm {
    fn build(p: &LpProblem) -> Self {
        let mut s = StandardForm {
            columns: vec![Vec::new(); p.variables.len()],
            b: Vec::new(),
            origins: Vec::new(),
            zero_rows: Vec::new(),
            equalities: 0,
        };
        let unit = |j: usize| vec![(j, 1.0)];
        for (i, r) in p.rows.iter().enumerate() {
            if r.lower == r.upper {
                s.push(
                    &r.coefficients,
                    1.0,
                    r.upper,
                    Origin::Row {
                        index: i,
                        lower: false,
                    },
                    true,
                );
            }
        }
        for (j, v) in p.variables.iter().enumerate() {
            if v.lower == v.upper {
                s.push(&unit(j), 1.0, v.upper, Origin::Bound, true);
            }
        }
        s.equalities = s.b.len();
        for (i, r) in p.rows.iter().enumerate() {
            if r.lower == r.upper {
                continue;
            }
            if r.upper.is_finite() {
                s.push(
                    &r.coefficients,
                    1.0,
                    r.upper,
                    Origin::Row {
                        index: i,
                        lower: false,
                    },
                    false,
                );
            }
            if r.lower.is_finite() {
                s.push(
                    &r.coefficients,
                    -1.0,
                    -r.lower,
                    Origin::Row {
                        index: i,
                        lower: true,
                    },
                    false,
                );
            }
        }
        for (j, v) in p.variables.iter().enumerate() {
            if v.lower == v.upper {
                continue;
            }
            if v.upper.is_finite() {
                s.push(&unit(j), 1.0, v.upper, Origin::Bound, false);
            }
            if v.lower.is_finite() {
                s.push(&unit(j), -1.0, -v.lower, Origin::Bound, false);
            }
        }
        s
    }

    fn push(
        &mut self,
        coefficients: &[(usize, f64)],
        sign: f64,
        b: f64,
        origin: Origin,
        zero: bool,
    ) {
        let k = self.b.len();
        for &(j, a) in coefficients {
            if a != 0.0
                && let Some(col) = self.columns.get_mut(j)
            {
                col.push((k, sign * a));
            }
        }
        self.b.push(b);
        self.origins.push(origin);
        self.zero_rows.push(zero);
    }

    fn matrix(&self, n: usize) -> CscMatrix<f64> {
        let mut colptr = Vec::with_capacity(n + 1);
        let mut rowval = Vec::new();
        let mut nzval = Vec::new();
        colptr.push(0);
        for col in &self.columns {
            for &(k, a) in col {
                rowval.push(k);
                nzval.push(a);
            }
            colptr.push(rowval.len());
        }
        CscMatrix::new(self.b.len(), n, colptr, rowval, nzval)
    }

    fn cones(&self) -> Vec<SupportedConeT<f64>> {
        let mut cones = Vec::new();
        if self.equalities > 0 {
            cones.push(SupportedConeT::ZeroConeT(self.equalities));
        }
        if self.b.len() > self.equalities {
            cones.push(SupportedConeT::NonnegativeConeT(
                self.b.len() - self.equalities,
            ));
        }
        cones
    }
}

#[cfg(test)]
mod tests;
