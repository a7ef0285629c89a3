//! What the HMI reads of the alarm task: every alarm's current view, the
//! alarm-system health, a numbered stream of transitions and a command
//! channel for operator actions.
//!
//! ```text
//! alarm task ──writes──▶ Arc<RwLock<AlarmBoard>>  ◀──reads── HMI API / live socket
//!            ──Notice (broadcast, 1024; a lagging receiver resyncs from the board)──▶ live sockets
//!            ◀──Command (bounded 64, the caller waits)── HMI (ack, shelve, unshelve)
//! ```

use std::sync::{Arc, RwLock};

use firmware_config::AlarmDef;
use models::alarm::health::HealthReport;
use models::alarm::machine::{AlarmState, Detector, Event, Side};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::state_name;

/// Notices kept for slow live sockets before they must resync.
pub const NOTICE_CAPACITY: usize = 1024;
/// Operator actions queued for the alarm task.
pub const COMMAND_CAPACITY: usize = 64;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShelfView {
    pub until_ms: Option<i64>,
    pub one_shot: bool,
    pub reason: String,
    pub by: String,
}

/// A predictive alarm's forecast: when the limit will be crossed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Predicted {
    pub model: String,
    /// Seconds from now to the first forecast step beyond the limit; `None`
    /// when the latest forecast stays inside it.
    pub crosses_in_s: Option<f64>,
    /// When (ms since 1970) the first forecast step beyond the limit falls.
    pub crosses_at_ms: Option<i64>,
    /// The forecast's extreme over its horizon.
    pub forecast_value: f64,
    pub issued_ms: i64,
}

/// One alarm as an operator sees it (docs/hmi-api.md, `Alarm`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlarmView {
    pub name: String,
    pub tag: String,
    pub kind: String,
    pub priority: u8,
    pub priority_name: &'static str,
    pub message: String,
    pub state: &'static str,
    pub active: bool,
    pub acked: bool,
    pub latched: bool,
    pub shelved: Option<ShelfView>,
    pub suppressed: bool,
    pub out_of_service: bool,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub unit: Option<String>,
    pub since_ms: Option<i64>,
    pub last_change_ms: i64,
    pub predicted: Option<Predicted>,
}

pub fn priority_name(p: u8) -> &'static str {
    match p {
        4 => "urgent",
        3 => "high",
        2 => "medium",
        _ => "low",
    }
}

impl AlarmView {
    pub fn new(
        d: &AlarmDef,
        st: &AlarmState,
        unit: Option<String>,
        predicted: Option<Predicted>,
    ) -> AlarmView {
        let limit = match d.spec.detector {
            Detector::Limit { limit, .. } => Some(limit),
            Detector::Rate { per_s } => Some(per_s),
            Detector::Discrete { equals } => Some(equals),
            Detector::Quality => None,
        };
        let p = d.spec.priority as u8;
        AlarmView {
            name: d.name.clone(),
            tag: d.tag.clone(),
            kind: d.kind.clone(),
            priority: p,
            priority_name: priority_name(p),
            message: d.message.clone().unwrap_or_else(|| d.name.clone()),
            state: state_name(st.isa()),
            active: st.shown_active(),
            acked: st.acked,
            latched: st.latched,
            shelved: st.shelved.as_ref().map(|s| ShelfView {
                until_ms: s.until_ms,
                one_shot: s.until_ms.is_none(),
                reason: s.reason.clone(),
                by: s.by.clone(),
            }),
            suppressed: st.suppressed,
            out_of_service: st.out_of_service,
            value: st.value.filter(|v| v.is_finite()),
            limit,
            unit,
            since_ms: st.shown_active().then_some(st.active_since_ms).flatten(),
            last_change_ms: st.condition_since_ms,
            predicted,
        }
    }

    /// Sort key: shown-active first, then priority (urgent first), then the
    /// newest activation first.
    fn order(&self) -> (bool, std::cmp::Reverse<u8>, std::cmp::Reverse<i64>) {
        (
            !(self.active || self.state != "normal"),
            std::cmp::Reverse(self.priority),
            std::cmp::Reverse(self.since_ms.unwrap_or(0)),
        )
    }
}

/// When a forecast first crosses a limit, and its extreme over the horizon.
pub fn crossing(
    side: Side,
    limit: f64,
    origin_ms: i64,
    step_ms: i64,
    values: &[f64],
) -> Option<(Option<i64>, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let extreme = match side {
        Side::Above => finite.fold(f64::NEG_INFINITY, f64::max),
        Side::Below => finite.fold(f64::INFINITY, f64::min),
    };
    if !extreme.is_finite() {
        return None;
    }
    let at = values.iter().position(|v| match side {
        Side::Above => *v > limit,
        Side::Below => *v < limit,
    });
    Some((
        at.map(|k| origin_ms + i64::try_from(k).unwrap_or(0) * step_ms),
        extreme,
    ))
}

/// The alarm-system figures on Diagnostics (EEMUA 191).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct HealthView {
    pub avg_per_10min: f64,
    pub peak_per_10min: u64,
    pub flood_percent: f64,
    pub top10_share: f64,
    pub top10: Vec<(String, u64)>,
    pub chattering: Vec<String>,
    pub stale: Vec<String>,
    pub in_flood: bool,
}

impl From<HealthReport> for HealthView {
    fn from(h: HealthReport) -> Self {
        HealthView {
            avg_per_10min: h.average_per_10min,
            peak_per_10min: h.peak_per_10min,
            flood_percent: h.flood_share * 100.0,
            top10_share: h.top10_share,
            top10: h.top10,
            chattering: h.chattering,
            stale: h.stale,
            in_flood: h.in_flood,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AlarmBoard {
    /// Notices sent so far: the next notice carries `seq + 1`.
    pub seq: u64,
    pub views: Vec<AlarmView>,
    pub health: HealthView,
    /// Activations in the last 10 minutes (the flood banner's count).
    pub new_last_10min: usize,
}

impl AlarmBoard {
    pub fn sort(&mut self) {
        self.views.sort_by_key(AlarmView::order);
    }

    pub fn unacknowledged(&self) -> usize {
        self.views
            .iter()
            .filter(|v| !v.acked && v.state != "normal")
            .count()
    }
}

/// One transition, numbered for the live sockets.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub seq: u64,
    pub change: String,
    pub alarm: AlarmView,
}

/// An operator action, answered with the alarm's new view.
#[derive(Debug)]
pub struct Command {
    pub alarm: String,
    pub event: Event,
    pub reply: oneshot::Sender<Result<AlarmView, CommandError>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error("no alarm named {0:?}")]
    Unknown(String),
    #[error("the alarm task is not running")]
    Stopped,
    #[error("the alarm journal cannot be written: {0}")]
    NotStored(String),
}

/// The HMI's grip on the alarm task.
#[derive(Debug, Clone)]
pub struct AlarmHandle {
    pub board: Arc<RwLock<AlarmBoard>>,
    pub notices: broadcast::Sender<Notice>,
    pub commands: mpsc::Sender<Command>,
}

impl AlarmHandle {
    pub fn snapshot(&self) -> AlarmBoard {
        self.board.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// Apply an operator action and wait for it to be journaled.
    pub async fn act(&self, alarm: &str, event: Event) -> Result<AlarmView, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command {
                alarm: alarm.to_string(),
                event,
                reply,
            })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }
}

/// The task's ends of an [`AlarmHandle`].
#[derive(Debug)]
pub struct BoardWriter {
    pub board: Arc<RwLock<AlarmBoard>>,
    pub notices: broadcast::Sender<Notice>,
    pub commands: mpsc::Receiver<Command>,
}

pub fn channel() -> (AlarmHandle, BoardWriter) {
    let board = Arc::new(RwLock::new(AlarmBoard::default()));
    let (notices, _) = broadcast::channel(NOTICE_CAPACITY);
    let (ctx, crx) = mpsc::channel(COMMAND_CAPACITY);
    (
        AlarmHandle {
            board: board.clone(),
            notices: notices.clone(),
            commands: ctx,
        },
        BoardWriter {
            board,
            notices,
            commands: crx,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_forecast_crossing_is_found_at_its_first_step() {
        let v = [350.0, 360.0, 371.0, 380.0, 372.0];
        let (at, ext) = crossing(Side::Above, 370.0, 1000, 10, &v).unwrap();
        assert_eq!(at, Some(1020));
        assert_eq!(ext, 380.0);
        let (at, ext) = crossing(Side::Below, 300.0, 1000, 10, &v).unwrap();
        assert_eq!((at, ext), (None, 350.0));
        assert!(crossing(Side::Above, 1.0, 0, 1, &[f64::NAN]).is_none());
    }
}
