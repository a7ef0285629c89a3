//! What the monitoring dashboards read: every node's health in one row,
//! the alarm journals across the fleet, alarm-system health, and data
//! quality (coverage, gaps, bad-quality share) per node and tag.
//!
//! All of it is computed in DuckDB; Rust only reshapes the (small) result.
//! The types are the REST API's answers as they are (docs/hub-api.md,
//! "monitoring"), so they derive `Serialize` and `ToSchema` here.

use std::collections::BTreeMap;

use duckdb::params;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};

/// Last seen at most this long ago: online.
pub const ONLINE_WITHIN_MS: i64 = 2 * 60_000;
/// Last seen at most this long ago (and not online): late; older: offline.
pub const LATE_WITHIN_MS: i64 = 10 * 60_000;
/// Windows ending less than this long ago are not yet expected at the hub
/// (the edge seals a window after a grace period and sends in batches).
pub const QUALITY_LAG_MS: i64 = 2 * 60_000;
/// How far back the alarm-health sparkline reaches.
pub const HEALTH_HISTORY_MS: i64 = 7 * 86_400_000;

/// ISA states in which an alarm is annunciated (shown to the operator).
const SHOWN: &str = "('unacknowledged', 'acknowledged', 'returned_unacknowledged')";

/// A node's link health, from when the hub last heard from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Heard from within [`ONLINE_WITHIN_MS`].
    Online,
    /// Heard from within [`LATE_WITHIN_MS`].
    Late,
    Offline,
    /// Configured, but the hub never stored anything from it.
    Never,
}

impl NodeStatus {
    pub fn of(last_seen_ms: Option<i64>, now_ms: i64) -> NodeStatus {
        match last_seen_ms.map(|t| now_ms.saturating_sub(t)) {
            None => NodeStatus::Never,
            Some(age) if age <= ONLINE_WITHIN_MS => NodeStatus::Online,
            Some(age) if age <= LATE_WITHIN_MS => NodeStatus::Late,
            Some(_) => NodeStatus::Offline,
        }
    }
}

/// Alarms by priority, as the edges encode it: 1 low, 2 medium, 3 high,
/// 4 urgent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ByPriority {
    pub p1: u64,
    pub p2: u64,
    pub p3: u64,
    pub p4: u64,
}

/// One node of the fleet overview.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FleetNode {
    pub site: String,
    pub node: String,
    /// In the hub's `[[node]]` list (a node removed from it keeps its data).
    pub configured: bool,
    pub status: NodeStatus,
    /// When the hub last stored a new batch or status of it (hub clock).
    pub last_seen_ms: Option<i64>,
    /// Whole seconds since `last_seen_ms`.
    pub age_s: Option<i64>,
    pub software_version: Option<String>,
    /// The edge's outbox as of its last status report.
    pub outbox_batches: Option<u64>,
    pub outbox_bytes: Option<u64>,
    /// The oldest batch the edge still waits an acknowledgement for (edge clock).
    pub oldest_unacked_ms: Option<i64>,
    pub oldest_unacked_age_s: Option<i64>,
    pub dropped_batches: Option<u64>,
    pub batches: u64,
    pub max_seq: u64,
    /// Sequence numbers below `max_seq` never received.
    pub missing: u64,
    /// Spans of windows the edge reports it never recorded.
    pub lost_spans: u64,
    pub quarantined: u64,
    /// Aggregate windows stored.
    pub windows: u64,
    /// Alarms whose latest state is annunciated (unacknowledged,
    /// acknowledged, returned_unacknowledged), by priority.
    pub alarms_active: ByPriority,
    /// Alarms whose latest state is shelved, suppressed or out of service.
    pub alarms_hidden: u64,
    /// From the latest alarm-health report; null without one.
    pub in_flood: Option<bool>,
}

/// Sequence numbers `first..=last` never received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

/// Windows of one width the edge reports it never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LostEntry {
    pub width_ms: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub reason: String,
}

/// A signed batch kept in quarantine (not storable as it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QuarantineEntry {
    pub seq: u64,
    pub received_ms: i64,
    pub reason: String,
}

/// One node in depth: its overview row, plus what is missing and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub row: FleetNode,
    /// The first 50 ranges of missing sequence numbers, lowest first.
    pub gaps: Vec<SeqRange>,
    /// The newest 20 lost spans.
    pub lost: Vec<LostEntry>,
    /// The newest 20 quarantined batches.
    pub quarantine: Vec<QuarantineEntry>,
}

/// What the registry does not hold per node, in one pass over each table.
#[derive(Debug, Default)]
struct Extras {
    outbox_bytes: Option<u64>,
    lost: u64,
    windows: u64,
    active: ByPriority,
    hidden: u64,
    in_flood: Option<bool>,
}

/// `?`-parameters for an optional site/node filter.
fn only(site: Option<&str>, node: Option<&str>) -> [Option<String>; 4] {
    let (s, n) = (site.map(str::to_owned), node.map(str::to_owned));
    [s.clone(), s, n.clone(), n]
}

/// The filter matching [`only`]'s parameters, on columns `site`, `node`.
const ONLY: &str = "(?::VARCHAR IS NULL OR site = ?) AND (?::VARCHAR IS NULL OR node = ?)";

impl Store {
    fn extras(
        &self,
        site: Option<&str>,
        node: Option<&str>,
    ) -> Result<BTreeMap<(String, String), Extras>, StoreError> {
        let sql = format!(
            "WITH n AS (SELECT site, node, outbox_bytes FROM nodes WHERE {ONLY}),
                  l AS (SELECT site, node, count(*) AS c FROM lost WHERE {ONLY} GROUP BY ALL),
                  w AS (SELECT site, node, count(*) AS c FROM aggregates WHERE {ONLY} GROUP BY ALL),
                  cur AS (SELECT site, node, state, priority FROM alarms WHERE {ONLY}
                          QUALIFY row_number() OVER (PARTITION BY site, node, alarm
                                                     ORDER BY aseq DESC, seq DESC) = 1),
                  a AS (SELECT site, node,
                          count(*) FILTER (WHERE state IN {SHOWN} AND priority = 1) AS p1,
                          count(*) FILTER (WHERE state IN {SHOWN} AND priority = 2) AS p2,
                          count(*) FILTER (WHERE state IN {SHOWN} AND priority = 3) AS p3,
                          count(*) FILTER (WHERE state IN {SHOWN} AND priority >= 4) AS p4,
                          count(*) FILTER (WHERE state NOT IN {SHOWN} AND state <> 'normal') AS hidden
                        FROM cur GROUP BY ALL),
                  h AS (SELECT site, node, arg_max(in_flood, ts_ms) AS f FROM alarm_health
                        WHERE {ONLY} GROUP BY ALL)
             SELECT n.site, n.node, n.outbox_bytes,
                    coalesce(l.c, 0)::UBIGINT, coalesce(w.c, 0)::UBIGINT,
                    coalesce(a.p1, 0)::UBIGINT, coalesce(a.p2, 0)::UBIGINT,
                    coalesce(a.p3, 0)::UBIGINT, coalesce(a.p4, 0)::UBIGINT,
                    coalesce(a.hidden, 0)::UBIGINT, h.f
             FROM n
             LEFT JOIN l ON l.site = n.site AND l.node = n.node
             LEFT JOIN w ON w.site = n.site AND w.node = n.node
             LEFT JOIN a ON a.site = n.site AND a.node = n.node
             LEFT JOIN h ON h.site = n.site AND h.node = n.node"
        );
        let mut st = self.conn.prepare(&sql)?;
        let p = only(site, node);
        let ps: Vec<&dyn duckdb::ToSql> = (0..5)
            .flat_map(|_| p.iter().map(|v| v as &dyn duckdb::ToSql))
            .collect();
        let rows = st.query_map(ps.as_slice(), |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                Extras {
                    outbox_bytes: r.get(2)?,
                    lost: r.get(3)?,
                    windows: r.get(4)?,
                    active: ByPriority {
                        p1: r.get(5)?,
                        p2: r.get(6)?,
                        p3: r.get(7)?,
                        p4: r.get(8)?,
                    },
                    hidden: r.get(9)?,
                    in_flood: r.get(10)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The fleet overview: every node the hub has heard of, and every
    /// configured one (`status` "never" if silent), by site and node.
    pub fn fleet(
        &self,
        configured: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<FleetNode>, StoreError> {
        self.fleet_rows(configured, None, now_ms)
    }

    fn fleet_rows(
        &self,
        configured: &[(String, String)],
        one: Option<(&str, &str)>,
        now_ms: i64,
    ) -> Result<Vec<FleetNode>, StoreError> {
        let mut extras = self.extras(one.map(|o| o.0), one.map(|o| o.1))?;
        let is_configured = |s: &str, n: &str| configured.iter().any(|c| c.0 == s && c.1 == n);
        let age = |t: i64| now_ms.saturating_sub(t).max(0) / 1000;
        let mut out: BTreeMap<(String, String), FleetNode> = BTreeMap::new();
        for r in self.nodes()? {
            if one.is_some_and(|(s, n)| s != r.site || n != r.node) {
                continue;
            }
            let key = (r.site.clone(), r.node.clone());
            let x = extras.remove(&key).unwrap_or_default();
            out.insert(
                key,
                FleetNode {
                    configured: is_configured(&r.site, &r.node),
                    status: NodeStatus::of(Some(r.last_seen_ms), now_ms),
                    last_seen_ms: Some(r.last_seen_ms),
                    age_s: Some(age(r.last_seen_ms)),
                    software_version: r.software_version,
                    outbox_batches: r.outbox_batches,
                    outbox_bytes: x.outbox_bytes,
                    oldest_unacked_ms: r.oldest_unacked_ms,
                    oldest_unacked_age_s: r.oldest_unacked_ms.map(age),
                    dropped_batches: r.dropped_batches,
                    batches: r.batches,
                    max_seq: r.max_seq,
                    missing: r.missing,
                    lost_spans: x.lost,
                    quarantined: r.quarantined,
                    windows: x.windows,
                    alarms_active: x.active,
                    alarms_hidden: x.hidden,
                    in_flood: x.in_flood,
                    site: r.site,
                    node: r.node,
                },
            );
        }
        for (site, node) in configured {
            if one.is_some_and(|(s, n)| s != site || n != node) {
                continue;
            }
            out.entry((site.clone(), node.clone()))
                .or_insert_with(|| FleetNode {
                    site: site.clone(),
                    node: node.clone(),
                    configured: true,
                    status: NodeStatus::Never,
                    last_seen_ms: None,
                    age_s: None,
                    software_version: None,
                    outbox_batches: None,
                    outbox_bytes: None,
                    oldest_unacked_ms: None,
                    oldest_unacked_age_s: None,
                    dropped_batches: None,
                    batches: 0,
                    max_seq: 0,
                    missing: 0,
                    lost_spans: 0,
                    quarantined: 0,
                    windows: 0,
                    alarms_active: ByPriority::default(),
                    alarms_hidden: 0,
                    in_flood: None,
                });
        }
        Ok(out.into_values().collect())
    }

    /// One node in depth; `None` if the hub neither knows nor expects it.
    pub fn fleet_node(
        &self,
        configured: &[(String, String)],
        site: &str,
        node: &str,
        now_ms: i64,
    ) -> Result<Option<NodeDetail>, StoreError> {
        let Some(row) = self
            .fleet_rows(configured, Some((site, node)), now_ms)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let gaps = self
            .gaps(site, node, 50)?
            .into_iter()
            .map(|g| SeqRange {
                first: g.first,
                last: g.last,
            })
            .collect();
        let lost = self
            .lost_spans(site, node, 20)?
            .1
            .into_iter()
            .map(|(width_ms, from_ms, to_ms, reason)| LostEntry {
                width_ms,
                from_ms,
                to_ms,
                reason,
            })
            .collect();
        let mut st = self.conn.prepare(
            "SELECT seq, received_ms, reason FROM quarantine WHERE site = ? AND node = ?
             ORDER BY received_ms DESC, seq DESC LIMIT 20",
        )?;
        let quarantine = st
            .query_map(params![site, node], |r| {
                Ok(QuarantineEntry {
                    seq: r.get(0)?,
                    received_ms: r.get(1)?,
                    reason: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(NodeDetail {
            row,
            gaps,
            lost,
            quarantine,
        }))
    }
}

mod alarms;
mod quality;

pub use alarms::{AlarmEntry, AlarmHealth, AlarmKey, AlarmQuery, HealthPoint};
pub use quality::{Quality, QualityNode, QualityTotals, TagQuality};

#[cfg(test)]
mod tests;
