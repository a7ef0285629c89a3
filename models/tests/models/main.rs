//! Integration tests of the models crate: one harness, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analysis;
mod etth1;
mod optimize;
mod pipeline;
mod support;
