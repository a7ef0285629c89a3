//! CMA-ES within box bounds (the `cmaes` crate), with IPOP restarts.

use std::time::{Duration, Instant};

use cmaes::{CMAESOptions, DVector, TerminationReason};

use super::{SurrogateError, panic_text};

/// Options of [`minimize`]. `Default` is what the hub uses.
#[derive(Debug, Clone, PartialEq)]
pub struct CmaOptions {
    /// Initial step size as a fraction of each variable's box (the search
    /// runs in coordinates where every box is `[0, 1]`).
    pub sigma0: f64,
    /// Seed of the first run; restart `k` uses `seed + k`.
    pub seed: u64,
    /// Population of the first run; `None`: `4 + ⌊3 ln n⌋`.
    pub population_size: Option<usize>,
    /// IPOP restarts after a run that converged or stalled without reaching
    /// `fun_target`: each from `x0` with twice the previous population.
    pub restarts: usize,
    /// Budget of `f` calls over all runs; `None`: `1000·(n + 5)²`. A run
    /// stops at the end of the generation that reaches it.
    pub max_evaluations: Option<usize>,
    /// Wall-clock budget over all runs.
    pub max_time: Option<Duration>,
    /// Stop (without restarting) once a value below this is found.
    pub fun_target: Option<f64>,
    /// A run has converged when the best values of the last generations and
    /// the values of the current one lie within this range.
    pub tol_fun: f64,
    /// A run has converged when its step size in every coordinate of the
    /// normalized space (box = 1) is below this.
    pub tol_x: f64,
}

impl Default for CmaOptions {
    fn default() -> Self {
        CmaOptions {
            sigma0: 0.3,
            seed: 1,
            population_size: None,
            restarts: 2,
            max_evaluations: None,
            max_time: None,
            fun_target: None,
            tol_fun: 1e-12,
            tol_x: 1e-12,
        }
    }
}

/// Why [`minimize`] stopped (after its last run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// A value below [`CmaOptions::fun_target`] was found.
    TargetReached,
    /// The function values or the step size fell below the tolerances.
    Converged,
    /// No improvement of the best and median values for many generations.
    Stagnated,
    /// The distribution became numerically degenerate (condition number,
    /// steps without effect on the mean, diverging step size).
    Degenerate,
    /// [`CmaOptions::max_evaluations`] was used up.
    EvaluationLimit,
    /// [`CmaOptions::max_time`] was used up.
    TimeLimit,
    /// Every variable is fixed (lower = upper): nothing to search.
    NothingToSearch,
}

/// The answer of [`minimize`].
#[derive(Debug, Clone, PartialEq)]
pub struct CmaResult {
    /// The best point evaluated, in engineering units, inside the box.
    pub x: Vec<f64>,
    /// `f(x)`.
    pub f: f64,
    /// Calls of `f`, including the one at `x0`.
    pub evaluations: usize,
    /// Calls that returned `NaN` or `±inf` (ranked worst).
    pub invalid_evaluations: usize,
    /// Generations over all runs.
    pub generations: usize,
    /// Runs (1 + restarts done).
    pub runs: usize,
    pub termination: Termination,
    /// The `cmaes` crate's termination reasons of the last run.
    pub reasons: Vec<String>,
    pub elapsed: Duration,
}

/// Minimize `f` over the box `bounds` (`(lower, upper)` per variable, both
/// finite) from `x0` (clamped into the box), by CMA-ES with the bound
/// handling of the module documentation. `f` is only ever called inside
/// the box; `x0` is evaluated first, so the answer is never worse than it.
pub fn minimize<F>(
    mut f: F,
    bounds: &[(f64, f64)],
    x0: &[f64],
    options: &CmaOptions,
) -> Result<CmaResult, SurrogateError>
where
    F: FnMut(&[f64]) -> f64,
{
    let start = Instant::now();
    check(bounds, x0, options)?;
    let n = bounds.len();
    let x_start: Vec<f64> = x0
        .iter()
        .zip(bounds)
        .map(|(x, (lo, hi))| x.clamp(*lo, *hi))
        .collect();
    let free: Vec<usize> = (0..n).filter(|i| bounds[*i].1 > bounds[*i].0).collect();
    let max_evals = options.max_evaluations.unwrap_or(1000 * (n + 5) * (n + 5));

    let mut best = Best {
        x: x_start.clone(),
        f: f64::INFINITY,
        evaluations: 0,
        invalid: 0,
    };
    best.eval(&mut f, &x_start);
    let mut generations = 0;
    let mut runs = 0;
    let mut reasons: Vec<TerminationReason> = Vec::new();
    let mut termination = Termination::NothingToSearch;

    if options.fun_target.is_some_and(|t| best.f < t) {
        termination = Termination::TargetReached;
    } else if !free.is_empty() {
        let y0: Vec<f64> = free
            .iter()
            .map(|&i| (x_start[i] - bounds[i].0) / (bounds[i].1 - bounds[i].0))
            .collect();
        let lambda0 = options
            .population_size
            .unwrap_or(4 + (3.0 * (free.len() as f64).ln()).floor() as usize);
        let mut point = x_start.clone();
        loop {
            let remaining = max_evals.saturating_sub(best.evaluations);
            if remaining == 0 {
                termination = Termination::EvaluationLimit;
                break;
            }
            let mut opts = CMAESOptions::new(y0.clone(), options.sigma0)
                .population_size(lambda0.saturating_mul(1 << runs.min(20)))
                .seed(options.seed.wrapping_add(runs as u64))
                .max_function_evals(remaining)
                .tol_fun(options.tol_fun)
                .tol_x(options.tol_x);
            if let Some(t) = options.fun_target {
                opts = opts.fun_target(t);
            }
            if let Some(limit) = options.max_time {
                match limit.checked_sub(start.elapsed()) {
                    Some(left) if !left.is_zero() => opts = opts.max_time(left),
                    _ => {
                        termination = Termination::TimeLimit;
                        break;
                    }
                }
            }
            let objective = |y: &DVector<f64>| -> f64 {
                let mut d2 = 0.0;
                for (k, &i) in free.iter().enumerate() {
                    let p = y[k].clamp(0.0, 1.0);
                    d2 += (y[k] - p) * (y[k] - p);
                    let (lo, hi) = bounds[i];
                    // Exact at both ends, so an optimum on a bound is the bound.
                    point[i] = if p >= 1.0 {
                        hi
                    } else {
                        (lo + p * (hi - lo)).min(hi)
                    };
                }
                let v = best.eval(&mut f, &point);
                if v.is_infinite() {
                    // inf·0 would be NaN, which the crate stops on.
                    return v;
                }
                v + (1.0 + v.abs()) * d2
            };
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut state = opts
                    .build(objective)
                    .map_err(|e| SurrogateError::Options(format!("{e:?}")))?;
                let data = state.run();
                Ok::<_, SurrogateError>((data.reasons, state.generation()))
            }))
            .map_err(|p| SurrogateError::Optimizer(panic_text(&*p)))??;
            runs += 1;
            generations += run.1;
            reasons = run.0;
            termination = classify(&reasons);
            let final_run = matches!(
                termination,
                Termination::TargetReached | Termination::EvaluationLimit | Termination::TimeLimit
            ) || runs > options.restarts;
            if final_run {
                break;
            }
        }
    }
    if !best.f.is_finite() {
        return Err(SurrogateError::NoFiniteValue {
            evaluations: best.evaluations,
        });
    }
    if best.evaluations >= max_evals && termination != Termination::TargetReached {
        termination = Termination::EvaluationLimit;
    }
    Ok(CmaResult {
        x: best.x,
        f: best.f,
        evaluations: best.evaluations,
        invalid_evaluations: best.invalid,
        generations,
        runs,
        termination,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        elapsed: start.elapsed(),
    })
}

/// The best point seen and the call counts.
struct Best {
    x: Vec<f64>,
    f: f64,
    evaluations: usize,
    invalid: usize,
}

impl Best {
    /// `f(x)`, with `NaN` and `±inf` as `+inf`.
    fn eval<F: FnMut(&[f64]) -> f64>(&mut self, f: &mut F, x: &[f64]) -> f64 {
        let v = f(x);
        self.evaluations += 1;
        if !v.is_finite() {
            self.invalid += 1;
            return f64::INFINITY;
        }
        if v < self.f {
            self.f = v;
            self.x.copy_from_slice(x);
        }
        v
    }
}

fn check(bounds: &[(f64, f64)], x0: &[f64], options: &CmaOptions) -> Result<(), SurrogateError> {
    let problem = |m: String| Err(SurrogateError::Problem(m));
    if bounds.is_empty() {
        return problem("no variables".into());
    }
    if x0.len() != bounds.len() {
        return problem(format!(
            "x0 has {} values for {} variables",
            x0.len(),
            bounds.len()
        ));
    }
    for (i, ((lo, hi), x)) in bounds.iter().zip(x0).enumerate() {
        if !(hi - lo).is_finite() || lo > hi {
            return problem(format!(
                "variable {i}: bounds [{lo}, {hi}] are not a finite box"
            ));
        }
        if !x.is_finite() {
            return problem(format!("variable {i}: x0 = {x} is not finite"));
        }
    }
    let options_err = |m: String| Err(SurrogateError::Options(m));
    if !(options.sigma0.is_finite() && options.sigma0 > 0.0) {
        return options_err(format!("sigma0 = {} must be positive", options.sigma0));
    }
    if options.population_size.is_some_and(|p| p < 2) {
        return options_err("population_size must be at least 2".into());
    }
    if options.max_evaluations == Some(0) {
        return options_err("max_evaluations must be positive".into());
    }
    if !(options.tol_fun >= 0.0 && options.tol_x >= 0.0) {
        return options_err("tol_fun and tol_x must be non-negative".into());
    }
    if options.fun_target.is_some_and(f64::is_nan) {
        return options_err("fun_target is NaN".into());
    }
    Ok(())
}

/// The most telling of a run's reasons: reaching the target, then the
/// budgets, then convergence, stagnation, degeneracy.
fn classify(reasons: &[TerminationReason]) -> Termination {
    use TerminationReason as R;
    let has = |r: R| reasons.contains(&r);
    if has(R::FunTarget) {
        Termination::TargetReached
    } else if has(R::MaxFunctionEvals) {
        Termination::EvaluationLimit
    } else if has(R::MaxTime) {
        Termination::TimeLimit
    } else if [R::TolFun, R::TolFunRel, R::TolFunHist, R::TolX]
        .iter()
        .any(|r| has(*r))
    {
        Termination::Converged
    } else if has(R::TolStagnation) {
        Termination::Stagnated
    } else {
        Termination::Degenerate
    }
}
