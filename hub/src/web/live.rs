//! The dashboards' live WebSocket: node status, new KPI values, alarms.

use web::routes::RouteTable;

use super::St;

/// Registers the live route.
pub fn add(_t: &mut RouteTable<St>) {}
