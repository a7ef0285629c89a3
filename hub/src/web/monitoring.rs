//! `/api/v1/monitoring/…` (docs/hub-api.md, "monitoring"): fleet and node
//! health, the alarm journals across the fleet, alarm-system health and
//! data quality. The figures come from `store::fleet`; this module checks
//! parameters and shapes answers.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::params::{self, Cursor};
use super::{St, now_ms};
use crate::store::{
    AlarmEntry, AlarmHealth, AlarmKey, AlarmQuery, ByPriority, FleetNode, HealthPoint, LostEntry,
    NodeDetail, NodeStatus, Quality, QualityNode, QualityTotals, QuarantineEntry, SeqRange,
    TagQuality,
};

/// Registers this area's routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    t.add(Method::GET, "/api/v1/monitoring/fleet", viewer, fleet)
        .add(
            Method::GET,
            "/api/v1/monitoring/nodes/{site}/{node}",
            viewer,
            node,
        )
        .add(
            Method::GET,
            "/api/v1/monitoring/nodes/{site}/{node}/checksum",
            Access::Role(Role::Engineer),
            checksum,
        )
        .add(Method::GET, "/api/v1/monitoring/alarms", viewer, alarms)
        .add(
            Method::GET,
            "/api/v1/monitoring/alarm-health",
            viewer,
            alarm_health,
        )
        .add(Method::GET, "/api/v1/monitoring/quality", viewer, quality);
}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(fleet, node, checksum, alarms, alarm_health, quality),
    components(schemas(
        Fleet,
        FleetNode,
        NodeStatus,
        ByPriority,
        NodeDetail,
        SeqRange,
        LostEntry,
        QuarantineEntry,
        NodeChecksum,
        AlarmPage,
        AlarmEntry,
        AlarmHealthList,
        AlarmHealth,
        HealthPoint,
        Quality,
        QualityNode,
        QualityTotals,
        TagQuality,
        Problem
    ))
)]
pub struct Doc;

fn configured(st: &St) -> Vec<(String, String)> {
    st.config.nodes.keys().cloned().collect()
}

fn bad_query(e: QueryRejection) -> Problem {
    Problem::bad_request(format!("query: {}", e.body_text()))
}

fn node_path(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), Problem> {
    let Path((site, node)) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    params::check_id("site", &site)?;
    params::check_id("node", &node)?;
    Ok((site, node))
}

fn unknown(site: &str, node: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!(
            "no node {site}/{node}: the hub has stored nothing from it and does not list it in its configuration"
        ),
    )
}

/// Optional `site` and `node` filters, checked.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeFilter {
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
}

impl NodeFilter {
    fn check(&self) -> Result<(), Problem> {
        if let Some(s) = &self.site {
            params::check_id("site", s)?;
        }
        if let Some(n) = &self.node {
            params::check_id("node", n)?;
        }
        Ok(())
    }
}

/// The fleet overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct Fleet {
    /// The hub's clock when the answer was made; ages count from it.
    pub now_ms: i64,
    pub nodes: Vec<FleetNode>,
}

/// Every node's health: status, backlog, gaps, active alarms.
#[utoipa::path(get, path = "/api/v1/monitoring/fleet", tag = "monitoring",
    responses((status = 200, description = "every known or configured node, by site and node", body = Fleet)))]
pub async fn fleet(State(st): State<St>) -> Result<Json<Fleet>, Problem> {
    let cfg = configured(&st);
    let now = now_ms();
    let nodes = st.read(move |s| s.fleet(&cfg, now)).await?;
    Ok(Json(Fleet { now_ms: now, nodes }))
}

/// One node: its overview row, missing sequence ranges, lost spans and
/// quarantined batches.
#[utoipa::path(get, path = "/api/v1/monitoring/nodes/{site}/{node}", tag = "monitoring",
    params(("site" = String, Path, description = "site identifier"),
           ("node" = String, Path, description = "node identifier")),
    responses((status = 200, description = "the node", body = NodeDetail),
              (status = 400, description = "not an identifier", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "unknown node", body = Problem, content_type = "application/problem+json")))]
pub async fn node(
    State(st): State<St>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<NodeDetail>, Problem> {
    let (site, node) = node_path(p)?;
    let cfg = configured(&st);
    let now = now_ms();
    let (s2, n2) = (site.clone(), node.clone());
    st.read(move |s| s.fleet_node(&cfg, &s2, &n2, now))
        .await?
        .map(Json)
        .ok_or_else(|| unknown(&site, &node))
}

/// What `apos-hub checksum` prints for a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeChecksum {
    pub site: String,
    pub node: String,
    /// Aggregate windows stored.
    pub windows: u64,
    /// Wrapping sum of the windows' digests, 16 lowercase hex digits.
    pub sum: String,
}

/// The window count and checksum of a node's stored aggregates (what the
/// fault tests compare with the edge).
#[utoipa::path(get, path = "/api/v1/monitoring/nodes/{site}/{node}/checksum", tag = "monitoring",
    params(("site" = String, Path, description = "site identifier"),
           ("node" = String, Path, description = "node identifier")),
    responses((status = 200, description = "the checksum", body = NodeChecksum),
              (status = 400, description = "not an identifier", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "unknown node", body = Problem, content_type = "application/problem+json")))]
pub async fn checksum(
    State(st): State<St>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<NodeChecksum>, Problem> {
    let (site, node) = node_path(p)?;
    let listed = st.config.nodes.contains_key(&(site.clone(), node.clone()));
    let (s2, n2) = (site.clone(), node.clone());
    let c = st
        .read(move |s| {
            let known = listed || s.nodes()?.iter().any(|r| r.site == s2 && r.node == n2);
            if known {
                s.checksum(&s2, &n2).map(Some)
            } else {
                Ok(None)
            }
        })
        .await?
        .ok_or_else(|| unknown(&site, &node))?;
    Ok(Json(NodeChecksum {
        site,
        node,
        windows: c.windows,
        sum: format!("{:016x}", c.sum),
    }))
}

/// Parameters of the alarm list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlarmParams {
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
    /// `true`: the current entry of every alarm that is not normal, instead
    /// of the history.
    pub active: Option<String>,
    /// Entries at or after (RFC 3339 or ms since 1970); default: no bound.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Entries before; default: no bound.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<String>,
}

/// A page of alarm journal entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmPage {
    pub items: Vec<AlarmEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

fn alarm_query(p: AlarmParams) -> Result<AlarmQuery, Problem> {
    NodeFilter {
        site: p.site.clone(),
        node: p.node.clone(),
    }
    .check()?;
    let active = match p.active.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "active: {other:?} is neither true nor false"
            )));
        }
    };
    let from_ms = p
        .from
        .as_deref()
        .map(|f| params::parse_time("from", f))
        .transpose()?;
    let to_ms =
        p.to.as_deref()
            .map(|t| params::parse_time("to", t))
            .transpose()?;
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        return Err(Problem::bad_request("from must be before to"));
    }
    let limit = match p.limit.as_deref() {
        None => params::limit(None)?,
        Some(l) => params::limit(Some(l.parse::<usize>().map_err(|_| {
            Problem::bad_request(format!("limit: {l:?} is not a whole number"))
        })?))?,
    };
    let after = match p.cursor.as_deref() {
        None => None,
        Some(c) => {
            let c = Cursor::decode(c)?;
            Some(AlarmKey::parse(c.ts_ms, &c.tiebreak).ok_or_else(|| {
                Problem::bad_request("cursor: not a cursor this API returned; start without one")
            })?)
        }
    };
    Ok(AlarmQuery {
        site: p.site,
        node: p.node,
        active,
        from_ms,
        to_ms,
        after,
        limit,
    })
}

/// Alarm journal entries across the fleet, newest first; with
/// `active=true`, every alarm that is not normal (its newest entry).
#[utoipa::path(get, path = "/api/v1/monitoring/alarms", tag = "monitoring",
    params(AlarmParams),
    responses((status = 200, description = "a page of entries", body = AlarmPage),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn alarms(
    State(st): State<St>,
    q: Result<Query<AlarmParams>, QueryRejection>,
) -> Result<Json<AlarmPage>, Problem> {
    let q = alarm_query(q.map_err(bad_query)?.0)?;
    let (items, next) = st.read(move |s| s.alarm_page(&q)).await?;
    Ok(Json(AlarmPage {
        items,
        next_cursor: next.map(|k| {
            Cursor {
                ts_ms: k.ts_ms,
                tiebreak: k.tiebreak(),
            }
            .encode()
        }),
    }))
}

/// Alarm-system health per node.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmHealthList {
    pub now_ms: i64,
    pub nodes: Vec<AlarmHealth>,
}

/// Each node's latest alarm-system health report, with 7 days of rates.
#[utoipa::path(get, path = "/api/v1/monitoring/alarm-health", tag = "monitoring",
    params(NodeFilter),
    responses((status = 200, description = "nodes that reported, by site and node", body = AlarmHealthList),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn alarm_health(
    State(st): State<St>,
    q: Result<Query<NodeFilter>, QueryRejection>,
) -> Result<Json<AlarmHealthList>, Problem> {
    let f = q.map_err(bad_query)?.0;
    f.check()?;
    let now = now_ms();
    let nodes = st
        .read(move |s| s.alarm_health(f.site.as_deref(), f.node.as_deref(), now))
        .await?;
    Ok(Json(AlarmHealthList { now_ms: now, nodes }))
}

/// Parameters of the data-quality report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QualityParams {
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
    /// Start of the period (RFC 3339 or ms since 1970); default `to` − 24 h.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End of the period; default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// Coverage, gaps and bad-quality share per node and tag over a period.
#[utoipa::path(get, path = "/api/v1/monitoring/quality", tag = "monitoring",
    params(QualityParams),
    responses((status = 200, description = "per node: totals and tags", body = Quality),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn quality(
    State(st): State<St>,
    q: Result<Query<QualityParams>, QueryRejection>,
) -> Result<Json<Quality>, Problem> {
    let q = q.map_err(bad_query)?.0;
    NodeFilter {
        site: q.site.clone(),
        node: q.node.clone(),
    }
    .check()?;
    let now = now_ms();
    let r = params::range(
        q.from.as_deref(),
        q.to.as_deref(),
        now,
        params::DEFAULT_SPAN_MS,
    )?;
    let out = st
        .read(move |s| {
            s.quality(
                q.site.as_deref(),
                q.node.as_deref(),
                r.from_ms,
                r.to_ms,
                now,
            )
        })
        .await?;
    Ok(Json(out))
}
