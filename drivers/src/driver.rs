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

use crate::backoff::{Backoff, Jitter};
use crate::modbus::codec::CodecError;
use crate::sample::{Quality, Reason, Sample, TagName, Timestamp, Value};

/// A protocol driver. Implementations run until `ctx.cancel` fires.
#[async_trait]
pub trait Driver: Send + 'static {
    /// Name shown in logs and status (device or serial line name).
    fn name(&self) -> &str;
    /// Every tag this driver reads, so a supervisor can mark them all bad
    /// when the driver fails.
    fn tags(&self) -> Vec<TagName>;
    /// A new driver with the same configuration and fresh state, to
    /// restart after a failure (what it learned about the device, such as
    /// a refined read plan, may be kept).
    fn respawn(&self) -> Box<dyn Driver>;
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
    /// Reading normally: the device returns data.
    Up,
    /// The device answers, but every read of its last polls was refused
    /// (exceptions or malformed answers): no data, so not up.
    Refusing { reason: String },
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
    /// Times the driver task failed (panicked or ended by itself) and was
    /// restarted by its supervisor.
    pub restarts: u64,
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

/// How long a restarted driver must run before its restart backoff resets:
/// shorter lives are a crash loop and wait longer each time.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Restart delays of a failed driver task.
fn restart_backoff() -> Backoff {
    Backoff::new(firmware_config::Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        jitter: 0.2,
    })
}

/// Start `driver` on the current tokio runtime, under a supervisor.
///
/// The supervisor runs the driver as its own task. If that task panics or
/// ends although nobody cancelled it, the failure is logged at once as an
/// error, every tag of the driver goes `Bad(driver_failed)`, the status
/// shows it, and a fresh driver ([`Driver::respawn`]) is started after a
/// backoff (1 s doubling to 60 s; reset after a minute of healthy running).
/// Writes keep flowing to whichever incarnation is running.
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
    let task = tokio::spawn(supervise(driver, samples, write_rx, status_tx, cancel));
    DriverHandle {
        name,
        status: status_rx,
        writes: write_tx,
        task,
    }
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

async fn supervise(
    template: Box<dyn Driver>,
    samples: mpsc::Sender<Vec<Sample>>,
    mut writes: mpsc::Receiver<WriteCommand>,
    status: watch::Sender<DriverStatus>,
    cancel: CancellationToken,
) {
    let name = template.name().to_owned();
    let tags = template.tags();
    let mut backoff = restart_backoff();
    let mut jitter = Jitter::from_name(&name);
    let mut writes_open = true;
    loop {
        let (inner_tx, inner_rx) = mpsc::channel(WRITE_QUEUE);
        let ctx = DriverContext {
            samples: samples.clone(),
            writes: inner_rx,
            status: status.clone(),
            cancel: cancel.clone(),
        };
        let started = tokio::time::Instant::now();
        let mut task = tokio::spawn(template.respawn().run(ctx));
        let ended = loop {
            tokio::select! {
                r = &mut task => break r,
                cmd = writes.recv(), if writes_open => match cmd {
                    // If the incarnation dies meanwhile its receiver is
                    // dropped and the caller hears that the driver stopped.
                    Some(cmd) => {
                        if let Err(mpsc::error::SendError(cmd)) = inner_tx.send(cmd).await {
                            let _ = cmd.reply.send(Err(WriteError::DriverStopped));
                        }
                    }
                    None => writes_open = false,
                },
            }
        };
        let failure = match ended {
            Ok(()) if cancel.is_cancelled() => return,
            Err(e) if e.is_cancelled() => return,
            Ok(()) => "the driver task ended by itself".to_owned(),
            Err(e) => match e.try_into_panic() {
                Ok(payload) => format!("the driver task panicked: {}", panic_text(&*payload)),
                Err(e) => format!("the driver task failed: {e}"),
            },
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let wait = backoff.fail(jitter.next_unit());
        tracing::error!(driver = %name, error = %failure, restart_in = ?wait, "driver failed; its tags are marked bad and it will be restarted");
        status.send_modify(|s| {
            s.connected = false;
            s.errors += 1;
            s.restarts += 1;
            s.last_error = Some(failure.clone());
            for u in &mut s.units {
                u.state = LinkState::Down {
                    failures: backoff.failures(),
                    retry_in: wait,
                };
            }
        });
        let ts = Timestamp::now();
        let bad: Vec<Sample> = tags
            .iter()
            .map(|t| Sample {
                tag: t.clone(),
                ts,
                value: None,
                quality: Quality::Bad(Reason::DriverFailed),
            })
            .collect();
        if !bad.is_empty() {
            tokio::select! {
                r = samples.send(bad) => if r.is_err() { return },
                _ = cancel.cancelled() => return,
            }
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                cmd = writes.recv(), if writes_open => match cmd {
                    Some(cmd) => { let _ = cmd.reply.send(Err(WriteError::NotConnected)); }
                    None => writes_open = false,
                },
            }
        }
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
