//! Linear programming: a problem type, a strict MPS reader and an LP solver.
//!
//! - [`lp`]: [`LpProblem`] (variables with possibly infinite bounds, rows
//!   `lower ≤ a·x ≤ upper`, objective coefficients and constant, sense) and
//!   [`LpProblem::solve`], which returns a certified [`Solution`] (status
//!   optimal / infeasible / unbounded; objective including the constant;
//!   variable values; row activities; row duals as d(objective)/d(rhs); solve
//!   time; iterations) or a [`SolveError`].
//! - [`mps`]: [`read_mps`] / [`read_mps_file`] (gzip detected by magic bytes),
//!   with every error located by line.
//! - [`fit`]: linear process models from plant history, pure (the caller
//!   hands in aligned columns and timestamps): steady-state detection (the
//!   rule shown to users is in the module doc), OLS or ridge by Householder
//!   QR, quality from a time-ordered hold-out (R², residual σ, RMSE, input
//!   ranges), coefficients from a refit on all steady rows: [`fit_linear`] →
//!   [`LinearModel`] with [`FitQuality`]; [`FitError`] names the input that
//!   never moved or moved only with another.
//! - [`recommend`]: a [`Problem`] (decisions with limits and largest moves,
//!   outputs as [`LinearModel`]s, priced objective terms, constraints with a
//!   safety margin of k residual σ) and [`recommend()`], which builds and
//!   solves the LP and explains it: proposed setpoints, objective now and
//!   proposed, benefit per hour and year, binding constraints and decision
//!   bounds with shadow prices and a sentence each, predicted outputs with
//!   a spread, a confidence score; [`RecommendError::Infeasible`] names the
//!   conflicting constraints.
//! - [`surrogate`]: nonlinear process models (ONNX surrogates run by
//!   tract, [`surrogate::Surrogate`]) optimized without derivatives:
//!   [`surrogate::minimize`] is CMA-ES (the `cmaes` crate, IPOP restarts)
//!   on a box, bounds handled by projection plus a quadratic penalty;
//!   [`surrogate::optimize_surrogate`] sets decisions within bounds against a
//!   priced objective with output ranges as an exact L1 penalty, and reports
//!   whether its answer meets every range. Evaluation counts are checked
//!   against PyPI `cma` (`models/tests/models/cmaes_peer.rs`).
//!
//! # Solver choice: Clarabel directly, not through `good_lp`
//!
//! The LP is solved by the pure-Rust interior point solver
//! [Clarabel](https://crates.io/crates/clarabel) 0.11, called directly
//! (default features: 0.11.1 does not build without `serde`), with every tolerance
//! (`tol_gap_abs`, `tol_gap_rel`, `tol_feas`, `tol_infeas_abs`,
//! `tol_infeas_rel`) at 1e-10. Only Clarabel's `Solved`, `PrimalInfeasible`
//! and `DualInfeasible` are answers; `AlmostSolved`, the other `Almost*`
//! statuses, `InsufficientProgress`, `MaxIterations`, `MaxTime` and
//! `NumericalError` are [`SolveError::Failed`].
//!
//! `good_lp` (1.15.3, the current release, with `default-features = false,
//! features = ["clarabel"]`) was the planned front end; its Clarabel backend
//! (`src/solvers/clarabel.rs`) was read and does not fit:
//! - Its `SolverModel::solve` returns `Ok` for `Solved`, `AlmostSolved`,
//!   `AlmostDualInfeasible` **and** `DualInfeasible` (an unbounded problem),
//!   and the `Solution::status` of that `Ok` is always `Optimal`. The raw
//!   status is still readable through `ClarabelSolution::inner()`, but
//!   `PrimalInfeasible` and `AlmostPrimalInfeasible` both become the same
//!   `Err(ResolutionError::Infeasible)`, so a reduced-accuracy infeasibility
//!   cannot be told from a certified one.
//! - Duals (as d objective / d rhs since 1.15.3) come only through
//!   `DualValues::dual(ConstraintReference)` on that `solve` path
//!   (`ConstraintReference::index` is `pub(crate)`); the other path
//!   (`try_into_solver`, then solving the `DefaultSolver` ourselves) keeps
//!   the statuses but loses the mapping from constraints to duals.
//! - Its `clarabel()` panics on integer variables; its Clarabel dependency
//!   keeps Clarabel's default features anyway.
//!
//! Tolerances could be set (`ClarabelProblem::settings()`), but with the
//! statuses and duals handled by hand the crate would only build the sparse
//! matrix, which is a few dozen lines here. `good_lp` can come back with the
//! MILP work (behind a feature, with a MILP backend); today integer
//! variables are refused with [`SolveError::Milp`].
//!
//! On the 12 Netlib problems of `shared/data/netlib` every objective matches
//! the published optimum to better than 2e-9 relative, in 9 to 22 iterations
//! (`models/tests/models/optimize.rs`), and the duals of afiro, sc50a and
//! adlittle lie within finite-difference secant brackets.
//!
//! An interior point method gives a solution in the interior of the optimal
//! face, not a vertex: values of degenerate problems may differ from a
//! simplex solver's while the objective and (for nondegenerate problems) the
//! duals agree.

pub mod fit;
pub mod lp;
pub mod mps;
pub mod recommend;
pub mod surrogate;

pub use fit::{
    Column, FitError, FitOptions, FitQuality, LinearModel, Method, Steady, fit_linear, steady_rows,
};
pub use lp::{
    Failure, LpProblem, Row, Sense, Solution, SolveError, SolveOptions, Status, Variable,
};
pub use mps::{MpsError, MpsErrorKind, MpsModel, MpsWarning, read_mps, read_mps_file};
pub use recommend::{
    Binding, BindingKind, Confidence, Constraint, ConstraintStatus, Current,
    DEFAULT_HOURS_PER_YEAR, Decision, Extrapolation, Objective, ObjectiveSense, Output,
    PredictedOutput, Problem, RecommendError, Recommendation, SPREAD_SIGMAS, Setpoint, Side, Term,
    TermValue, recommend,
};
