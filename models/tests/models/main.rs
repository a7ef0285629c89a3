//! Integration tests of the models crate: one harness, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analysis;
mod cmaes_peer;
mod etth1;
mod fit_peer;
mod optimize;
mod pipeline;
mod support;
