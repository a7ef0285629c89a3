//! Edge intelligence that runs without the hub: forecasting models, the KPI
//! engine's arithmetic ([`kpi`], [`expr`], [`calendar`]), and the alarm
//! state machine and alarm-system health ([`alarm`]).
//!
//! A model is a directory with `model.onnx` and `manifest.toml`
//! (`docs/models.md`). [`manifest`] reads and validates the manifest with
//! located errors; [`features`] is the Rust feature pipeline, the twin of
//! `models/train/train_forecaster.py` (a test compares them row for row);
//! [`forecast`] loads the graph with tract, checks it against the manifest,
//! runs it and explains its forecasts.
//!
//! Everything here is synchronous and CPU-bound: callers run it off the
//! async runtime.

pub mod alarm;
pub mod analysis;
pub mod calendar;
pub mod expr;
pub mod features;
pub mod forecast;
pub mod kpi;
pub mod manifest;
mod onnx;
pub mod optimize;
pub mod text;

pub use features::{FeatureError, FeatureSpec};
pub use forecast::{Explanation, Forecaster, ModelError};
pub use manifest::{Manifest, ManifestError};
