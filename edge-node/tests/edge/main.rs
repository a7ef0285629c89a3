//! Integration tests of the edge node: local history (including crash
//! safety) and the `apos-edge` binary (validate, hot reload).
//!
//! One harness, one binary: every module below is a group of tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alarm;
mod forecast;
mod history;
mod hmi;
mod kpi;
#[path = "../../../tests/common/logs.rs"]
mod logs;
mod node;
mod outbox;
mod retention;
mod service;
#[path = "../../../tests/common/service.rs"]
mod service_support;
