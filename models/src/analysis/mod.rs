//! Analysis of aggregated time series for the hub's insights (issue 19):
//! descriptive statistics and correlation ([`stats`]), trend tests
//! ([`trend`]: Mann-Kendall, Sen's slope, the seasonal variant), anomaly
//! and change detection ([`anomaly`]) and the labelled set that measures it
//! ([`labelled`]).
//!
//! Pure Rust, no I/O: every function takes a slice with one value per
//! window, `NaN` marking a missing window. The methods, their parameters and
//! their measured precision and recall are in `docs/analysis.md`.

pub mod anomaly;
pub mod labelled;
mod normal;
pub mod stats;
pub mod trend;
