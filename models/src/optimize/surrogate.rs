//! Derivative-free optimization of nonlinear process models (ONNX surrogates)
//! within box bounds, by CMA-ES.
//!
//! - [`minimize`]: CMA-ES (the `cmaes` crate, active CMA with its default
//!   population `4 + ⌊3 ln n⌋`) on a box. Deterministic for a given
//!   [`CmaOptions::seed`]; IPOP restarts (population doubled, from `x0`
//!   again, seed + 1, as PyPI `cma`'s `fmin2(restarts=…)` does).
//! - [`Surrogate`]: an ONNX graph `[1, n] f32 → [1, m] f32` run by tract,
//!   checked at load against the caller's input and output tags.
//! - [`optimize_surrogate`]: the hub's problem shape: decisions in a box,
//!   disturbances held at their current values, a priced linear objective
//!   over decisions and outputs, output ranges as constraints.
//!
//! # Bounds: projection plus quadratic penalty
//!
//! CMA-ES searches a normalized space where every variable's box is
//! `[0, 1]`, so one step size (`sigma0`, default 0.3 of the box) fits
//! variables of any unit. A candidate `y` is never evaluated outside the box:
//! `f` is called at its projection `p = clamp(y, 0, 1)` (mapped back to
//! engineering units) and the value CMA-ES ranks is
//! `f(p) + (1 + |f(p)|)·‖y − p‖²`. This is the repair-and-penalize scheme
//! of Hansen's CMA-ES tutorial (PyPI `cma` offers the same idea as
//! `BoundPenalty`; its default `BoundTransform` maps instead of
//! penalizing). The penalized function equals `f` inside the box and is
//! larger than `f(p)` outside, so its minimum is the constrained minimum and
//! an optimum on a bound is reached exactly (the projection lands on the
//! bound). The `(1 + |f(p)|)` factor keeps the penalty from vanishing in
//! rounding when `|f|` is large. The answer is the best *projected* point
//! evaluated, so it always lies in the box. Variables whose bounds are equal
//! are fixed and left out of the search.
//!
//! `NaN` and `±inf` from `f` rank worst (as `+inf`) and are counted in
//! [`CmaResult::invalid_evaluations`]; a run without a single finite value
//! is [`SurrogateError::NoFiniteValue`]. A panic inside the optimizer or
//! `f` is caught and returned as [`SurrogateError::Optimizer`].
//!
//! # Output constraints: exact L1 penalty, feasibility checked on the answer
//!
//! See [`optimize_surrogate`]: violations are normalized by each output's
//! spread over the box and weighted by [`SurrogateOptions::penalty`] times
//! the objective's spread, and the answer is the point with the best
//! penalized value among those whose every output is within tolerance, or,
//! when none was found, the least violating one, reported with
//! [`SurrogateAnswer::feasible`] `= false`.
//!
//! Checked against PyPI `cma` (evaluation counts on Rosenbrock, a rotated
//! ellipsoid and a bounded sphere) in `models/tests/models/cmaes_peer.rs`.

mod cma;
mod problem;

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

pub use cma::{CmaOptions, CmaResult, Termination, minimize};
pub use problem::{
    Decision, Disturbance, OutputSpec, SurrogateAnswer, SurrogateOptions, SurrogateProblem,
    optimize_surrogate,
};

#[derive(Debug, thiserror::Error)]
pub enum SurrogateError {
    #[error("{path}: cannot load the ONNX graph: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: the graph does not match its tags: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error("surrogate {model}: {message}")]
    Run { model: String, message: String },
    #[error("surrogate {model}: expected {expected} inputs, got {got}")]
    Inputs {
        model: String,
        expected: usize,
        got: usize,
    },
    #[error("surrogate {model}: {what} is not finite")]
    NonFinite { model: String, what: String },
    #[error("invalid problem: {0}")]
    Problem(String),
    #[error("invalid optimizer options: {0}")]
    Options(String),
    #[error("the objective was never finite in {evaluations} evaluations")]
    NoFiniteValue { evaluations: usize },
    #[error("the optimizer failed: {0}")]
    Optimizer(String),
}

/// A process model as the optimizer sees it: named inputs and outputs and a
/// synchronous prediction. [`Surrogate`] is the production implementation;
/// tests implement it with closed-form models.
pub trait ProcessModel {
    fn inputs(&self) -> &[String];
    fn outputs(&self) -> &[String];
    /// Outputs for one input vector in the order of [`Self::inputs`].
    fn predict(&self, inputs: &[f64]) -> Result<Vec<f64>, SurrogateError>;
    /// Relative precision of the outputs (machine epsilon of the arithmetic
    /// the model runs in): the optimizer stops resolving objective
    /// differences below it.
    fn relative_precision(&self) -> f64 {
        f64::EPSILON
    }
}

use crate::onnx::{Plan, panic_text};

/// An ONNX surrogate: one input `[1, n]` f32, one output `[1, m]` f32, the
/// `n` inputs and `m` outputs named by the caller's tags.
#[derive(Debug)]
pub struct Surrogate {
    path: PathBuf,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    plan: Plan,
}

impl Surrogate {
    /// Load `path` and check that the graph takes `[1, inputs.len()]` f32
    /// and returns `[1, outputs.len()]` f32. Tags must be non-empty and
    /// distinct.
    ///
    /// tract panics on some damaged files: as in [`crate::forecast`], a
    /// panic while loading is caught and the file refused like any other
    /// bad model.
    pub fn load(
        path: &Path,
        inputs: &[impl AsRef<str>],
        outputs: &[impl AsRef<str>],
    ) -> Result<Surrogate, SurrogateError> {
        let inputs = tags(path, "input", inputs)?;
        let outputs = tags(path, "output", outputs)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::load_checked(path, inputs, outputs)
        }))
        .unwrap_or_else(|panic| {
            Err(SurrogateError::Load {
                path: path.to_path_buf(),
                message: format!(
                    "the ONNX loader failed on this file ({}): it is damaged, or not a model this build can run",
                    panic_text(&*panic)
                ),
            })
        })
    }

    fn load_checked(
        path: &Path,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Result<Surrogate, SurrogateError> {
        let load = |e: &dyn std::fmt::Display| SurrogateError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mismatch = |message: String| SurrogateError::Mismatch {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(load(&"no such file"));
        }
        let (n, m) = (inputs.len(), outputs.len());
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| load(&format!("{e:#}")))?;
        let n_in = model.input_outlets().map_err(|e| load(&e))?.len();
        let n_out = model.output_outlets().map_err(|e| load(&e))?.len();
        if n_in != 1 || n_out != 1 {
            return Err(mismatch(format!(
                "{n_in} inputs and {n_out} outputs; expected one of each"
            )));
        }
        let typed = model
            .with_input_fact(0, f32::fact([1usize, n]).into())
            .and_then(|m| m.into_typed())
            .map_err(|e| mismatch(format!("input is not [1, {n}] f32 ({n} tags): {e:#}")))?;
        let out = typed.output_fact(0).map_err(|e| load(&e))?.clone();
        let dims: Vec<Option<i64>> = out.shape.iter().map(|d| d.to_i64().ok()).collect();
        if dims != [Some(1), Some(m as i64)] || out.datum_type != f32::datum_type() {
            let shape: Vec<String> = out.shape.iter().map(|d| d.to_string()).collect();
            return Err(mismatch(format!(
                "output is {:?} [{}]; {m} output tags need [1, {m}] f32",
                out.datum_type,
                shape.join(", ")
            )));
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load(&format!("{e:#}")))?;
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let s = Surrogate {
            path: path.to_path_buf(),
            name,
            inputs,
            outputs,
            plan,
        };
        // A graph that loads but cannot run is refused now, not in the middle
        // of an optimization. Non-finite outputs at zero are not a reason to
        // refuse (zero may be far outside the model's domain).
        s.run(&vec![0.0; n])?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Outputs for one input vector (in the order of [`Self::inputs`]). The
    /// graph computes in f32: inputs are rounded to f32 on the way in.
    /// A non-finite input or output is an error naming the tag.
    pub fn predict(&self, inputs: &[f64]) -> Result<Vec<f64>, SurrogateError> {
        if let Some(i) = inputs.iter().position(|v| !(*v as f32).is_finite()) {
            return Err(SurrogateError::NonFinite {
                model: self.name.clone(),
                what: format!("input {} ({}, as f32)", self.inputs[i], inputs[i]),
            });
        }
        let y = self.run(inputs)?;
        if let Some(k) = y.iter().position(|v| !v.is_finite()) {
            return Err(SurrogateError::NonFinite {
                model: self.name.clone(),
                what: format!("output {}", self.outputs[k]),
            });
        }
        Ok(y)
    }

    fn run(&self, inputs: &[f64]) -> Result<Vec<f64>, SurrogateError> {
        let n = self.inputs.len();
        if inputs.len() != n {
            return Err(SurrogateError::Inputs {
                model: self.name.clone(),
                expected: n,
                got: inputs.len(),
            });
        }
        let run = |e: &dyn std::fmt::Display| SurrogateError::Run {
            model: self.name.clone(),
            message: e.to_string(),
        };
        let x: Vec<f32> = inputs.iter().map(|v| *v as f32).collect();
        let input = Tensor::from_shape(&[1, n], &x).map_err(|e| run(&e))?;
        let view = crate::onnx::run_flat(&self.plan, input).map_err(|e| run(&e))?;
        if view.len() != self.outputs.len() {
            return Err(run(&format!(
                "output has {} values, expected {}",
                view.len(),
                self.outputs.len()
            )));
        }
        Ok(view.into_iter().map(f64::from).collect())
    }
}

impl ProcessModel for Surrogate {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn outputs(&self) -> &[String] {
        &self.outputs
    }

    fn predict(&self, inputs: &[f64]) -> Result<Vec<f64>, SurrogateError> {
        Surrogate::predict(self, inputs)
    }

    fn relative_precision(&self) -> f64 {
        f64::from(f32::EPSILON)
    }
}

fn tags(path: &Path, kind: &str, tags: &[impl AsRef<str>]) -> Result<Vec<String>, SurrogateError> {
    let mismatch = |message: String| SurrogateError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    if tags.is_empty() {
        return Err(mismatch(format!("no {kind} tags given")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.as_ref();
        if t.trim().is_empty() {
            return Err(mismatch(format!("an empty {kind} tag")));
        }
        if out.iter().any(|o| o == t) {
            return Err(mismatch(format!("{kind} tag {t:?} given twice")));
        }
        out.push(t.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
