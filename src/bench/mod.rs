//! Benchmark support for `apos-bench` (see `docs/benchmarks.md`): a fast
//! register-file Modbus server, a generator for large mixed-type tag sets,
//! and process CPU/RSS sampling from `/proc`.
//!
//! Nothing here is used by the demo or the edge node itself.

pub mod alarms;
pub mod anomaly;
pub mod export;
pub mod forecast;
pub mod hmi;
pub mod hub;
pub mod import;
pub mod insights;
pub mod kpi;
pub mod modbus;
pub mod opcua_server;
pub mod procstat;
pub mod server;
pub mod surrogate;
pub mod sync;
pub mod tagset;
