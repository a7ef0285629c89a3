//! Integration tests of the hub: one harness, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security;
