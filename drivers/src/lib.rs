//! Protocol drivers behind one [`Driver`] trait.
//!
//! Every driver turns a device's answers into [`Sample`]s — `(tag,
//! timestamp, value, quality)` — pushed in batches into a bounded channel,
//! and serves [`WriteRequest`]s. The edge node starts them all with
//! [`spawn_all`] and holds a [`DriverHandle`] per driver.
//!
//! Modbus: one task per TCP device, one task per RTU serial line (see
//! [`modbus`]). OPC UA will be another `Driver` implementation.

pub mod backoff;
pub mod driver;
pub mod modbus;
pub mod opcua;
pub mod sample;

use firmware_config::{EdgeConfig, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use driver::{
    Driver, DriverContext, DriverHandle, DriverStatus, LinkState, UnitStatus, WriteCommand,
    WriteError, WriteRequest, spawn,
};
pub use sample::{Quality, Reason, Sample, TagName, Timestamp, Value};

/// Errors starting drivers.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("device {device:?} uses serial line {line:?}, which is not defined")]
    UnknownLine { device: String, line: String },
    #[error("device {device:?}: protocol {protocol} is not supported by this build yet")]
    Unsupported {
        device: String,
        protocol: &'static str,
    },
}

/// Start one driver per Modbus TCP device and one per serial line that has
/// devices, on the current tokio runtime. Connection problems are not
/// errors here: drivers report them through samples and status, and retry.
pub fn spawn_all(
    cfg: &EdgeConfig,
    samples: mpsc::Sender<Vec<Sample>>,
    cancel: CancellationToken,
) -> Result<Vec<DriverHandle>, DriverError> {
    let mut drivers: Vec<Box<dyn Driver>> = Vec::new();
    let mut lines_used = std::collections::BTreeSet::new();
    for device in &cfg.devices {
        match &device.transport {
            Transport::ModbusTcp { .. } => {
                if let Some(d) = modbus::tcp::TcpDriver::from_config(cfg, device) {
                    drivers.push(Box::new(d));
                }
            }
            Transport::ModbusRtu { line, .. } => {
                if !cfg.serial_lines.contains_key(line) {
                    return Err(DriverError::UnknownLine {
                        device: device.name.clone(),
                        line: line.clone(),
                    });
                }
                lines_used.insert(line.clone());
            }
            Transport::OpcUa(_) => {
                if let Some(d) = opcua::OpcUaDriver::from_config(cfg, device) {
                    drivers.push(Box::new(d));
                }
            }
        }
    }
    for line in lines_used {
        if let Some(l) = cfg.serial_lines.get(&line) {
            drivers.push(Box::new(modbus::rtu::RtuLineDriver::from_config(cfg, l)));
        }
    }
    Ok(drivers
        .into_iter()
        .map(|d| driver::spawn(d, samples.clone(), cancel.child_token()))
        .collect())
}
