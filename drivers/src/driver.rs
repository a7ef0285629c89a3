//! The one abstraction every protocol implements, and the handle the edge
//! node holds for each running driver.
//!
//! A driver is a long-running task: it owns its connections, decides when to
//! read (Modbus polls; OPC UA will subscribe), pushes sample batches into a
//! bounded channel, serves write requests in between, and publishes its
//! status. The edge node only ever sees [`DriverHandle`]s.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::modbus::codec::CodecError;
use crate::sample::{Sample, Value};

/// A protocol driver. Implementations run until `ctx.cancel` fires.
#[async_trait]
pub trait Driver: Send + 'static {
    /// Name shown in logs and status (device or serial line name).
    fn name(&self) -> &str;
    /// Run until cancelled: read, push samples, serve writes, report status.
    async fn run(self: Box<Self>, ctx: DriverContext);
}

/// What a running driver is given.
#[derive(Debug)]
pub struct DriverContext {
    /// Sample batches out. Bounded and **blocking**: when the pipeline is
    /// full the driver waits (its cycle time grows, which is visible in its
    /// status) rather than dropping data.
    pub samples: mpsc::Sender<Vec<Sample>>,
    /// Write requests in, each with its reply channel.
    pub writes: mpsc::Receiver<WriteCommand>,
    /// Latest status, read by [`DriverHandle::status`].
    pub status: watch::Sender<DriverStatus>,
    pub cancel: CancellationToken,
}

impl DriverContext {
    /// Send a batch, giving up only on cancellation. Returns false if the
    /// receiver is gone or the driver is cancelled.
    pub async fn send(&self, batch: Vec<Sample>) -> bool {
        if batch.is_empty() {
            return true;
        }
        tokio::select! {
            r = self.samples.send(batch) => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }
}

impl DriverContext {
    /// Sleep until `until` (a reconnect backoff), answering writes that
    /// arrive meanwhile with `NotConnected` instead of letting them wait an
    /// unknown time. Returns false if the driver was cancelled.
    pub async fn wait_disconnected(&mut self, until: tokio::time::Instant) -> bool {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                Some(cmd) = self.writes.recv() => {
                    let _ = cmd.reply.send(Err(WriteError::NotConnected));
                }
            }
        }
    }
}

/// A write, as the edge node (and later the approval workflow) asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteRequest {
    /// Write a tag's engineering value: unscaled, encoded for the tag's type
    /// and word order, then written with FC 6/16 (registers) or FC 5 (coil).
    Tag { tag: String, value: Value },
    /// Raw holding registers of a device: FC 6 for one, FC 16 for several.
    Registers {
        device: String,
        address: u16,
        values: Vec<u16>,
    },
    /// Raw coils of a device: FC 5 for one, FC 15 for several.
    Coils {
        device: String,
        address: u16,
        values: Vec<bool>,
    },
}

/// A write request travelling to the driver task, with its reply channel.
#[derive(Debug)]
pub struct WriteCommand {
    pub request: WriteRequest,
    pub reply: oneshot::Sender<Result<(), WriteError>>,
}

/// Why a write did not happen (or may not have).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("no tag named {0:?} on this driver")]
    UnknownTag(String),
    #[error("no device named {0:?} on this driver")]
    UnknownDevice(String),
    #[error(
        "tag {0:?} is not writable (its configuration lacks `writable = true`; in Modbus only coils and holding registers can be)"
    )]
    NotWritable(String),
    #[error("invalid write: {0}")]
    Invalid(String),
    #[error("cannot encode the value: {0}")]
    Encode(#[from] CodecError),
    #[error("the device answered with Modbus exception {0:#04x}")]
    Exception(u8),
    #[error("no answer within {0:?}; the write may or may not have been applied")]
    Timeout(Duration),
    #[error("not connected to the device")]
    NotConnected,
    #[error("communication error: {0}")]
    Io(String),
    #[error("the driver has stopped")]
    DriverStopped,
}

/// State of one device (unit) behind a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Reading normally.
    Up,
    /// Trying to (re)connect.
    Connecting,
    /// Not answering; skipped until the backoff expires.
    BackedOff { failures: u32, retry_in: Duration },
    /// Disconnected after an error; reconnecting after backoff.
    Down { failures: u32, retry_in: Duration },
}

/// Per-device status (one per TCP device, several per RTU line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    pub device: String,
    pub unit_id: u8,
    pub state: LinkState,
}

/// Snapshot of a driver's health, cheap to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverStatus {
    pub name: String,
    /// True when at least one device is answering.
    pub connected: bool,
    /// Completed poll cycles (all groups of a device counted once each).
    pub cycles: u64,
    /// Requests sent and failed (timeouts, exceptions, I/O errors).
    pub requests: u64,
    pub errors: u64,
    /// Duration of the most recent poll of any group.
    pub last_cycle: Option<Duration>,
    pub last_error: Option<String>,
    pub units: Vec<UnitStatus>,
}

/// The edge node's grip on a running driver.
#[derive(Debug)]
pub struct DriverHandle {
    name: String,
    status: watch::Receiver<DriverStatus>,
    writes: mpsc::Sender<WriteCommand>,
    task: JoinHandle<()>,
}

/// Queued writes per driver; a full queue makes `write` wait.
const WRITE_QUEUE: usize = 16;

/// Start `driver` on the current tokio runtime.
pub fn spawn(
    driver: Box<dyn Driver>,
    samples: mpsc::Sender<Vec<Sample>>,
    cancel: CancellationToken,
) -> DriverHandle {
    let name = driver.name().to_owned();
    let (status_tx, status_rx) = watch::channel(DriverStatus {
        name: name.clone(),
        ..DriverStatus::default()
    });
    let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
    let ctx = DriverContext {
        samples,
        writes: write_rx,
        status: status_tx,
        cancel,
    };
    let task = tokio::spawn(driver.run(ctx));
    DriverHandle {
        name,
        status: status_rx,
        writes: write_tx,
        task,
    }
}

impl DriverHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn status(&self) -> DriverStatus {
        self.status.borrow().clone()
    }

    /// Perform a write and wait for the device's answer.
    pub async fn write(&self, request: WriteRequest) -> Result<(), WriteError> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(WriteCommand { request, reply })
            .await
            .map_err(|_| WriteError::DriverStopped)?;
        rx.await.map_err(|_| WriteError::DriverStopped)?
    }

    /// Wait for the driver task to end (after its cancel token fired).
    pub async fn join(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(driver = %self.name, "driver task panicked");
        }
    }
}
