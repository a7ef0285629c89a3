//! What the hub tells the live dashboards (`/api/v1/live`) as it happens.
//!
//! The ingest sends [`Event::Node`], [`Event::Kpis`] and [`Event::Alarms`]
//! from the store thread, only after the commit that stored what they
//! carry, built from the batches it just committed (no query per event);
//! the alerting sends [`Event::Alert`]. The broadcast is bounded: a socket
//! that falls [`EVENTS`] events behind is closed and its page refetches.

use protocol::v1::{AlarmEvent, KpiResult, Status};
use serde::Serialize;
use serde_json::Value as J;
use tokio::sync::broadcast;

/// One change the dashboards show as it happens. Serialized with a `type`
/// field (`node`, `kpis`, `alarms`, `alert`), as sent on the live socket.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A node was heard from: new batches were stored (`cause` `batch`), or
    /// it reported its status (`cause` `status`, with the status fields).
    Node {
        site: String,
        node: String,
        cause: NodeCause,
        /// When the hub last heard from it (its clock, ms since 1970).
        last_seen_ms: i64,
        /// New batches stored in this commit (0 for a status).
        batches: u64,
        /// The highest sequence number among them (0 for a status).
        max_seq: u64,
        /// The node's own report; absent (the fields left out) for `batch`.
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        status: Option<StatusFields>,
    },
    /// New KPI values were stored for a node: the newest of each KPI window
    /// in the commit (open windows are re-sent as they grow).
    Kpis {
        site: String,
        node: String,
        items: Vec<KpiItem>,
    },
    /// New alarm journal entries were stored for a node, oldest first.
    Alarms {
        site: String,
        node: String,
        entries: Vec<AlarmItem>,
    },
    /// An alert rule fired or cleared (the alerting sends these).
    Alert {
        rule: String,
        site: String,
        node: String,
        /// `firing` or `resolved`.
        state: String,
        message: String,
        ts_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeCause {
    Batch,
    Status,
}

/// What a node says about itself (`protocol::v1::Status`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusFields {
    /// The node's clock when it sent the report.
    pub status_ts_ms: i64,
    pub software_version: String,
    pub started_ms: i64,
    pub outbox_batches: u64,
    pub outbox_bytes: u64,
    pub oldest_unacked_ms: Option<i64>,
    pub last_seq: u64,
    pub dropped_batches: u64,
}

impl From<&Status> for StatusFields {
    fn from(s: &Status) -> StatusFields {
        StatusFields {
            status_ts_ms: s.ts_ms,
            software_version: s.software_version.clone(),
            started_ms: s.started_ms,
            outbox_batches: s.outbox_batches,
            outbox_bytes: s.outbox_bytes,
            oldest_unacked_ms: s.oldest_unacked_ms,
            last_seq: s.last_seq,
            dropped_batches: s.dropped_batches,
        }
    }
}

/// One KPI value, as `kpi_latest` holds it. Numbers that are not finite
/// are `null` (JSON has no NaN).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KpiItem {
    pub kpi: String,
    pub window: String,
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub until_ms: i64,
    pub closed: bool,
    pub computed_ms: i64,
    pub coverage: Option<f64>,
    pub quality: String,
    /// The headline figure.
    pub value: Option<f64>,
    /// Every figure by name.
    pub figures: J,
    pub unit: Option<String>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl From<&KpiResult> for KpiItem {
    fn from(k: &KpiResult) -> KpiItem {
        KpiItem {
            kpi: k.kpi.clone(),
            window: k.window.clone(),
            label: k.label.clone(),
            start_ms: k.start_ms,
            end_ms: k.end_ms,
            until_ms: k.until_ms,
            closed: k.closed,
            computed_ms: k.computed_ms,
            coverage: finite(k.coverage),
            quality: k.quality.as_str().to_owned(),
            value: k.values.first().and_then(|v| v.1).and_then(finite),
            figures: serde_json::from_str(&k.figures_json()).unwrap_or(J::Null),
            unit: k.unit.clone(),
        }
    }
}

/// One alarm journal entry (`protocol::v1::AlarmEvent`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlarmItem {
    pub alarm: String,
    /// The alarm's own journal number (1, 2, 3 … per alarm).
    pub seq: u64,
    pub ts_ms: i64,
    pub change: String,
    pub state: String,
    pub priority: u8,
    pub value: Option<f64>,
    pub by: Option<String>,
    pub comment: Option<String>,
}

impl From<&AlarmEvent> for AlarmItem {
    fn from(a: &AlarmEvent) -> AlarmItem {
        AlarmItem {
            alarm: a.alarm.clone(),
            seq: a.seq,
            ts_ms: a.ts_ms,
            change: a.change.clone(),
            state: a.state.clone(),
            priority: a.priority,
            value: a.value.and_then(finite),
            by: a.by.clone(),
            comment: a.comment.clone(),
        }
    }
}

/// The broadcast the hub sends on; a lagging receiver resyncs.
pub type Events = broadcast::Sender<Event>;

/// Capacity of the live broadcast.
pub const EVENTS: usize = 1024;

pub fn channel() -> Events {
    broadcast::channel(EVENTS).0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The wire shape the dashboards read: `type`, and the status fields
    /// flat beside the node's, absent for a batch.
    #[test]
    fn events_serialize_flat_with_their_type() {
        let status = Status {
            ts_ms: 5,
            software_version: "1.2".into(),
            started_ms: 1,
            outbox_batches: 3,
            outbox_bytes: 300,
            oldest_unacked_ms: None,
            last_seq: 9,
            dropped_batches: 0,
        };
        let e = Event::Node {
            site: "s".into(),
            node: "n".into(),
            cause: NodeCause::Status,
            last_seen_ms: 10,
            batches: 0,
            max_seq: 0,
            status: Some((&status).into()),
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["type"], "node");
        assert_eq!(j["cause"], "status");
        assert_eq!(j["software_version"], "1.2");
        assert_eq!(j["outbox_batches"], 3);
        assert!(j["oldest_unacked_ms"].is_null());
        let e = Event::Node {
            site: "s".into(),
            node: "n".into(),
            cause: NodeCause::Batch,
            last_seen_ms: 10,
            batches: 2,
            max_seq: 7,
            status: None,
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["max_seq"], 7);
        assert!(j.get("software_version").is_none(), "{j}");
        let k = KpiItem::from(&KpiResult {
            kpi: "oee".into(),
            window: "5m".into(),
            label: String::new(),
            start_ms: 0,
            end_ms: 300_000,
            until_ms: 100_000,
            closed: false,
            computed_ms: 100_000,
            coverage: f64::NAN,
            quality: protocol::v1::KpiQuality::Good,
            values: vec![
                ("oee".into(), Some(f64::NAN)),
                ("availability".into(), Some(0.9)),
            ],
            unit: None,
        });
        let j = serde_json::to_value(Event::Kpis {
            site: "s".into(),
            node: "n".into(),
            items: vec![k],
        })
        .unwrap();
        assert_eq!(j["type"], "kpis");
        assert!(j["items"][0]["value"].is_null(), "NaN is null: {j}");
        assert!(j["items"][0]["coverage"].is_null());
        assert_eq!(j["items"][0]["figures"]["availability"], 0.9);
        let j = serde_json::to_value(Event::Alert {
            rule: "offline".into(),
            site: "s".into(),
            node: "n".into(),
            state: "firing".into(),
            message: "m".into(),
            ts_ms: 1,
        })
        .unwrap();
        assert_eq!(j["type"], "alert");
    }
}
