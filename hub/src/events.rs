//! What the ingest tells the live dashboards after each commit.

use serde::Serialize;
use tokio::sync::broadcast;

/// One change the dashboards show as it happens. Sent only after the
/// commit that stored it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A node's status or last-seen moved.
    Node { site: String, node: String },
    /// New KPI values were stored for a node.
    Kpis { site: String, node: String },
    /// New alarm journal entries were stored for a node.
    Alarms { site: String, node: String },
}

/// The broadcast the ingest sends on; a lagging receiver resyncs.
pub type Events = broadcast::Sender<Event>;

/// Capacity of the live broadcast.
pub const EVENTS: usize = 1024;

pub fn channel() -> Events {
    broadcast::channel(EVENTS).0
}
