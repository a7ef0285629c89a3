//! Modbus TCP and RTU over `tokio-modbus`.
//!
//! - [`planner`] and [`codec`] are pure.
//! - [`device`] holds a device's compiled tags and poll groups and performs
//!   one poll or one write on a connected `tokio_modbus` context, turning
//!   answers into samples with transition-only bad qualities.
//! - [`tcp`]: one task per TCP device (reconnect with backoff).
//! - [`rtu`]: one task per serial line; its units are polled in turn,
//!   an unresponsive unit is backed off so it cannot stall the others.

pub mod codec;
pub mod device;
pub mod planner;
pub mod rtu;
pub mod tcp;

use std::time::Duration;

/// Why a request did not produce an answer. Exceptions are answers and are
/// handled per request; these end the poll (and, on TCP, the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl LinkError {
    fn from_modbus(e: tokio_modbus::Error) -> Self {
        match e {
            tokio_modbus::Error::Transport(io) => LinkError::Io(io.to_string()),
            tokio_modbus::Error::Protocol(p) => LinkError::Protocol(p.to_string()),
        }
    }

    /// The quality reason this failure gives to the tags it affects.
    pub fn reason(&self) -> crate::Reason {
        match self {
            LinkError::Timeout(_) => crate::Reason::Timeout,
            LinkError::Io(_) => crate::Reason::ConnectionLost,
            LinkError::Protocol(m) => crate::Reason::Other(format!("protocol error: {m}")),
        }
    }
}
