//! End-to-end tests of the `apos` workspace against independent peers
//! (pymodbus servers, socat PTY pairs) and against the simulated plant.
//!
//! One harness, one binary: every module below is a group of tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anomalies;
mod browser;
mod chaos;
mod closed_loop;
mod closed_loop_web;
mod demo;
mod disk_full;
mod faults;
mod hmi;
mod hub_analysis_web;
mod hub_web;
#[path = "../common/logs.rs"]
mod logs;
mod modbus_faults;
mod modbus_rtu;
mod modbus_tcp;
mod opcua;
mod opcua_faults;
mod plant;
mod process;
mod support;
mod sync;
#[path = "../common/tls.rs"]
mod tls;
