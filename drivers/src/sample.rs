//! What every driver produces: `(tag, timestamp, value, quality)`.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Tag names are shared between the config, the drivers and storage; an
/// `Arc<str>` makes a sample cheap to clone along the pipeline.
pub type TagName = Arc<str>;

/// A decoded value in its natural type (before or after scaling).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    String(String),
}

impl Value {
    /// Numeric view used for scaling, deadbands and aggregates.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::I64(v) => Some(*v as f64),
            Value::U64(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            Value::String(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
        }
    }
}

/// Why a value is not (fully) trustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The device answered with a Modbus exception (code, e.g. 2 = illegal
    /// data address, 4 = server device failure).
    Exception(u8),
    /// No answer within the configured timeout.
    Timeout,
    /// The connection (TCP socket or serial port) is down or was lost.
    ConnectionLost,
    /// The unit is being skipped after repeated failures (RTU line backoff).
    BackedOff,
    /// The value has not been refreshed for longer than expected.
    Stale,
    /// The response could not be decoded into the configured type, or
    /// did not match the request (e.g. fewer registers than asked for).
    Decode(String),
    /// The device broke the protocol (corrupt frame, answer to another
    /// request): our own short text, never a dump of the answer.
    Protocol(String),
    /// The driver task failed (panicked or ended) and is being restarted.
    DriverFailed,
    /// The server sent a value of a type we do not store (e.g. an OPC UA
    /// structure), named in the text.
    Unsupported(String),
    /// The device's own quality or status (e.g. an OPC UA status code
    /// such as `BadNodeIdUnknown`).
    Status(String),
    /// The source timestamp was too far from our clock and was replaced
    /// by the receive time (the text says by how much it was off).
    ClockSkew(String),
    /// Anything else, with a human-readable explanation.
    Other(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Exception(c) => write!(
                f,
                "modbus exception {c:02} ({})",
                crate::modbus::exception_name(*c)
            ),
            Reason::Timeout => f.write_str("timeout"),
            Reason::ConnectionLost => f.write_str("connection lost"),
            Reason::BackedOff => f.write_str("device backed off"),
            Reason::Stale => f.write_str("stale"),
            Reason::Decode(m) => write!(f, "decode error: {m}"),
            Reason::Protocol(m) => write!(f, "protocol error: {m}"),
            Reason::DriverFailed => f.write_str("driver failed; restarting"),
            Reason::Unsupported(m) => write!(f, "unsupported value: {m}"),
            Reason::Status(m) => f.write_str(m),
            Reason::ClockSkew(m) => write!(f, "source timestamp replaced: {m}"),
            Reason::Other(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quality {
    Good,
    Uncertain(Reason),
    Bad(Reason),
}

impl Quality {
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
    /// Compact code for storage: 0 good, 1 uncertain, 2 bad.
    pub fn code(&self) -> u8 {
        match self {
            Quality::Good => 0,
            Quality::Uncertain(_) => 1,
            Quality::Bad(_) => 2,
        }
    }
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Quality::Good => None,
            Quality::Uncertain(r) | Quality::Bad(r) => Some(r),
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Good => f.write_str("good"),
            Quality::Uncertain(r) => write!(f, "uncertain ({r})"),
            Quality::Bad(r) => write!(f, "bad ({r})"),
        }
    }
}

/// Milliseconds since the Unix epoch, UTC. Millisecond resolution is what
/// PLC polling can honestly claim, and it fits SQLite's INTEGER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub tag: TagName,
    pub ts: Timestamp,
    /// `None` when no value could be read (quality is then Bad).
    pub value: Option<Value>,
    pub quality: Quality,
}
