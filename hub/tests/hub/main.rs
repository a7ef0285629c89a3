//! Integration tests of the hub: one harness, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_cli;
mod alerts;
mod analysis;
mod broker;
mod export;
mod forecasting;
mod import;
mod ingest;
mod insights;
mod live;
#[path = "../../../tests/common/logs.rs"]
mod logs;
mod monitoring;
mod mosquitto;
mod optimize;
mod reports;
mod schemathesis;
mod security;
mod service;
#[path = "../../../tests/common/service.rs"]
mod service_support;
mod sql;
mod support;
#[path = "../../../tests/common/tls.rs"]
mod tls;
mod web;
