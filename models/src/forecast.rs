//! Loading, checking, running and explaining a model with tract.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use crate::manifest::{Manifest, ManifestError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: cannot load the ONNX graph: {message}")]
    Load { path: PathBuf, message: String },
    #[error(
        "{path}: the graph does not match the manifest: {message} (retrain, or fix manifest.toml)"
    )]
    Mismatch { path: PathBuf, message: String },
    #[error("model {model}: {message}")]
    Run { model: String, message: String },
    #[error("model {model}: expected {expected} features, got {got}")]
    Features {
        model: String,
        expected: usize,
        got: usize,
    },
}

use crate::onnx::{Plan, panic_text};

/// A loaded, checked model, ready to run. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Forecaster {
    pub manifest: Manifest,
    pub dir: PathBuf,
    plan: Plan,
    n_features: usize,
}

/// Per-feature attributions of one forecast, in engineering units.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// How they were computed ("occlusion to the training mean"): exact for
    /// linear models, an approximation otherwise (docs/models.md).
    pub method: &'static str,
    /// The forecast with every feature at its baseline (the training mean).
    pub baseline: Vec<f64>,
    /// The forecast being explained.
    pub forecast: Vec<f64>,
    /// (feature name, contribution per horizon step).
    pub contributions: Vec<(String, Vec<f64>)>,
}

impl Forecaster {
    /// Load `dir/manifest.toml` and `dir/model.onnx` and check that the graph
    /// takes `[batch, features]` f32 and returns `[batch, horizon]`.
    ///
    /// tract panics on some damaged files (4 of 1,000 mutated models did):
    /// a panic while loading is caught and the model refused like any other
    /// bad model, never unwound through the caller.
    pub fn load(dir: &Path) -> Result<Forecaster, ModelError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::load_checked(dir)))
            .unwrap_or_else(|panic| {
                Err(ModelError::Load {
                    path: dir.join("model.onnx"),
                    message: format!(
                        "the ONNX loader failed on this file ({}): it is damaged, or not a model this build can run",
                        panic_text(&*panic)
                    ),
                })
            })
    }

    fn load_checked(dir: &Path) -> Result<Forecaster, ModelError> {
        let manifest = Manifest::load(&dir.join("manifest.toml"))?;
        let path = dir.join("model.onnx");
        let n_features = manifest.features.names().len();
        let load = |e: &dyn std::fmt::Display| ModelError::Load {
            path: path.clone(),
            message: e.to_string(),
        };
        if !path.is_file() {
            return Err(load(&"no such file"));
        }
        let model = tract_onnx::onnx()
            .model_for_path(&path)
            .map_err(|e| load(&format!("{e:#}")))?;
        let inputs = model.input_outlets().map_err(|e| load(&e))?.len();
        let outputs = model.output_outlets().map_err(|e| load(&e))?.len();
        if inputs != 1 || outputs != 1 {
            return Err(ModelError::Mismatch {
                path,
                message: format!("{inputs} inputs and {outputs} outputs; expected one of each"),
            });
        }
        let batch = model.symbols.sym("batch");
        let typed = model
            .with_input_fact(
                0,
                f32::fact(tract_onnx::tract_core::dims![batch, n_features]).into(),
            )
            .and_then(|m| m.into_typed())
            .map_err(|e| ModelError::Mismatch {
                path: path.clone(),
                message: format!("input is not [batch, {n_features}] f32: {e:#}"),
            })?;
        let out_fact = typed.output_fact(0).map_err(|e| load(&e))?.clone();
        let shape: Vec<String> = out_fact.shape.iter().map(|d| d.to_string()).collect();
        let horizon_ok = out_fact.shape.len() == 2
            && out_fact.shape[1].to_i64().ok() == Some(manifest.horizon as i64);
        if !horizon_ok || out_fact.datum_type != f32::datum_type() {
            return Err(ModelError::Mismatch {
                path,
                message: format!(
                    "output is {:?} [{}]; the manifest says [batch, {}] f32",
                    out_fact.datum_type,
                    shape.join(", "),
                    manifest.horizon
                ),
            });
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load(&format!("{e:#}")))?;
        let f = Forecaster {
            manifest,
            dir: dir.to_path_buf(),
            plan,
            n_features,
        };
        // One run on zeros: a graph that loads but cannot run is refused now,
        // not at the first scheduled forecast.
        f.run_normalized(&vec![0.0; n_features], 1)?;
        Ok(f)
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Run the graph on `rows` feature vectors laid end to end; returns the
    /// raw (normalised) outputs, `rows × horizon`.
    pub fn run_normalized(&self, features: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        if features.len() != rows * self.n_features {
            return Err(ModelError::Features {
                model: self.manifest.name.clone(),
                expected: rows * self.n_features,
                got: features.len(),
            });
        }
        let run = |e: &dyn std::fmt::Display| ModelError::Run {
            model: self.manifest.name.clone(),
            message: e.to_string(),
        };
        let input = Tensor::from_shape(&[rows, self.n_features], features).map_err(|e| run(&e))?;
        let view = crate::onnx::run_flat(&self.plan, input).map_err(|e| run(&e))?;
        if view.len() != rows * self.manifest.horizon {
            return Err(run(&format!(
                "output has {} values, expected {}",
                view.len(),
                rows * self.manifest.horizon
            )));
        }
        // Row-major, as the graph produced it.
        Ok(view)
    }

    /// Forecast in engineering units from one feature vector.
    pub fn predict(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
        let x: Vec<f32> = features.iter().map(|v| *v as f32).collect();
        let y = self.run_normalized(&x, 1)?;
        Ok(self.denormalize(&y))
    }

    fn denormalize(&self, y: &[f32]) -> Vec<f64> {
        let (m, s) = self.manifest.output_scale;
        y.iter().map(|v| f64::from(*v) * s + m).collect()
    }

    /// Attributions by occlusion: feature i's contribution is
    /// `f(x) − f(x with feature i at its baseline 0)`, the baseline being
    /// the training mean (0 after normalisation). For a linear model this
    /// is exactly `w_i · x_i`, and the contributions add up to
    /// `f(x) − f(0)`. For others it is a first-order approximation that
    /// ignores interactions. Cost: one batched run of `features + 2` rows;
    /// `max_features` bounds it by grouping consecutive features (lags of
    /// one tag) and occluding each group together.
    pub fn explain(
        &self,
        features: &[f64],
        max_features: usize,
    ) -> Result<Explanation, ModelError> {
        let n = self.n_features;
        if features.len() != n {
            return Err(ModelError::Features {
                model: self.manifest.name.clone(),
                expected: n,
                got: features.len(),
            });
        }
        let names = self.manifest.features.names();
        let groups = group(n, max_features.max(1));
        let rows = groups.len() + 2;
        let mut batch = Vec::with_capacity(rows * n);
        let x: Vec<f32> = features.iter().map(|v| *v as f32).collect();
        batch.extend(&x);
        batch.extend(std::iter::repeat_n(0.0f32, n));
        for g in &groups {
            let mut row = x.clone();
            for v in &mut row[g.clone()] {
                *v = 0.0;
            }
            batch.extend(row);
        }
        let out = self.run_normalized(&batch, rows)?;
        let h = self.manifest.horizon;
        let (_, s) = self.manifest.output_scale;
        let full = &out[..h];
        let contributions = groups
            .iter()
            .enumerate()
            .map(|(k, g)| {
                let occluded = &out[(k + 2) * h..(k + 3) * h];
                let name = if g.len() == 1 {
                    names[g.start].clone()
                } else {
                    format!("{} … {}", names[g.start], names[g.end - 1])
                };
                let c = full
                    .iter()
                    .zip(occluded)
                    .map(|(a, b)| f64::from(a - b) * s)
                    .collect();
                (name, c)
            })
            .collect();
        Ok(Explanation {
            method: "occlusion to the training mean",
            baseline: self.denormalize(&out[h..2 * h]),
            forecast: self.denormalize(full),
            contributions,
        })
    }
}

/// Split `0..n` into at most `max` consecutive groups of near-equal size.
fn group(n: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    let k = n.min(max).max(1);
    (0..k)
        .map(|i| (i * n / k)..((i + 1) * n / k))
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_everything_once() {
        let g = group(10, 3);
        assert_eq!(g, vec![0..3, 3..6, 6..10]);
        assert_eq!(group(3, 10), vec![0..1, 1..2, 2..3]);
    }
}
