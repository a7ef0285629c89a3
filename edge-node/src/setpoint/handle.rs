//! The HMI's side of the setpoint task: its commands and their refusals,
//! the view it publishes, and the channels that join them (made before the
//! HMI starts, which needs the handle).

use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use web::access::Role;

use super::queue::{Entry, QueueError};

/// Recommendations waiting to be checked; more are dropped (the hub
/// proposes again).
pub const REC_QUEUE: usize = 16;

/// What the HMI asks.
#[derive(Debug)]
pub enum Command {
    Approve {
        id: String,
        user: String,
        role: Role,
        value: Option<f64>,
        comment: Option<String>,
        addr: String,
        reply: oneshot::Sender<Result<(), Refused>>,
    },
    Reject {
        id: String,
        user: String,
        role: Role,
        comment: String,
        addr: String,
        reply: oneshot::Sender<Result<(), Refused>>,
    },
}

/// Why the task refused an HMI command: the HTTP answer follows the kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request is fine but the state does not allow it (expired, busy,
    /// outside the limits, nothing to move).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<QueueError> for Refused {
    fn from(e: QueueError) -> Refused {
        let m = e.to_string();
        match e {
            QueueError::NotFound { .. } => Refused::NotFound(m),
            QueueError::Forbidden { .. } => Refused::Forbidden(m),
            QueueError::CommentRequired
            | QueueError::TooLong { .. }
            | QueueError::EmptyUser
            | QueueError::Invalid(_) => Refused::BadRequest(m),
            _ => Refused::Conflict(m),
        }
    }
}

/// One setpoint's edge limits, as the HMI shows them.
#[derive(Debug, Clone, Serialize)]
pub struct LimitView {
    pub tag: String,
    pub unit: Option<String>,
    pub min: f64,
    pub max: f64,
    pub max_step: f64,
    pub min_interval_s: f64,
    pub interlocks: Vec<String>,
}

/// A move in progress.
#[derive(Debug, Clone, Serialize)]
pub struct MoveView {
    pub start: f64,
    pub target: f64,
    pub last_verified: f64,
    pub steps_verified: u32,
    /// Why it waits, when it does.
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    #[serde(flatten)]
    pub entry: Entry,
    #[serde(rename = "move")]
    pub moving: Option<MoveView>,
}

/// A recommendation the edge would not queue.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub at_ms: i64,
    pub id: String,
    pub reason: String,
}

/// What the HMI reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueView {
    pub enabled: bool,
    pub entries: Vec<EntryView>,
    pub limits: Vec<LimitView>,
    /// Newest first, at most 20.
    pub refused: Vec<Refusal>,
    pub last_seq: u64,
}

/// The HMI's side.
#[derive(Debug, Clone)]
pub struct SetpointHandle {
    commands: mpsc::Sender<Command>,
    view: Arc<RwLock<QueueView>>,
}

impl SetpointHandle {
    pub fn view(&self) -> QueueView {
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    pub async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), Refused>>) -> Command,
    ) -> Result<(), Refused> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Refused::Unavailable("the setpoint task is not running".to_owned()))?;
        rx.await
            .map_err(|_| Refused::Unavailable("the setpoint task stopped".to_owned()))?
    }
}

/// The task's inputs, made before the HMI starts (it needs the handle).
#[derive(Debug)]
pub struct Channels {
    pub handle: SetpointHandle,
    pub recs_tx: mpsc::Sender<bytes::Bytes>,
    pub(super) recs: mpsc::Receiver<bytes::Bytes>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) view: Arc<RwLock<QueueView>>,
}

pub fn channels() -> Channels {
    let (recs_tx, recs) = mpsc::channel(REC_QUEUE);
    let (ctx, commands) = mpsc::channel(16);
    let view = Arc::new(RwLock::new(QueueView::default()));
    Channels {
        handle: SetpointHandle {
            commands: ctx,
            view: view.clone(),
        },
        recs_tx,
        recs,
        commands,
        view,
    }
}
