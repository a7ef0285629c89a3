//! `/api/v1/monitoring/alerts` and `/api/v1/monitoring/alert-rules`
//! (docs/hub-api.md): the alert history with every delivery attempt, and
//! the configured rules. The history is read from `alerts.db` on a
//! connection of its own (crate::alert::db), not from DuckDB.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::St;
use super::params::{self, Cursor};
use crate::alert::AlertState;
use crate::alert::db::{self, AlertView, Delivery};
use crate::config::RuleKind;

/// Registers this area's routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    t.add(Method::GET, "/api/v1/monitoring/alerts", viewer, alerts)
        .add(Method::GET, "/api/v1/monitoring/alert-rules", viewer, rules);
}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(alerts, rules),
    components(schemas(
        AlertPage, AlertView, Delivery, AlertState, RuleList, RuleView, Problem
    ))
)]
pub struct Doc;

/// Parameters of the alert list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// `active` (firing only, the default) or `all` (with the resolved).
    pub state: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<String>,
}

/// A page of alerts, the newest firing first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Alerts, newest first, each with its webhook delivery attempts.
#[utoipa::path(get, path = "/api/v1/monitoring/alerts", tag = "monitoring",
    params(AlertParams),
    responses((status = 200, description = "a page of alerts", body = AlertPage),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn alerts(
    State(st): State<St>,
    q: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<AlertPage>, Problem> {
    let q = q
        .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))?
        .0;
    let active = match q.state.as_deref() {
        None | Some("active") => true,
        Some("all") => false,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "state: {other:?} is neither active nor all"
            )));
        }
    };
    let limit = match q.limit.as_deref() {
        None => params::limit(None)?,
        Some(l) => params::limit(Some(l.parse::<usize>().map_err(|_| {
            Problem::bad_request(format!("limit: {l:?} is not a whole number"))
        })?))?,
    };
    let after = q
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()?
        .map(|c| (c.ts_ms, c.tiebreak));
    let Some(path) = st.config.alerts.as_ref().map(|a| a.db_file.clone()) else {
        return Ok(Json(AlertPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let r = tokio::task::spawn_blocking(move || db::page(&path, active, after, limit)).await;
    let (items, next) = match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "alert history query failed");
            return Err(Problem::internal(
                "the alert history query failed; see the hub log",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "alert history query panicked");
            return Err(Problem::internal(
                "the alert history query failed; see the hub log",
            ));
        }
    };
    Ok(Json(AlertPage {
        items,
        next_cursor: next.map(|(ts_ms, tiebreak)| Cursor { ts_ms, tiebreak }.encode()),
    }))
}

/// One configured rule; the fields its kind does not use are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub name: String,
    /// node_offline, backlog_growing, sequence_gaps, kpi_below, alarm_flood.
    pub kind: String,
    /// Only this site / node (null: all).
    pub site: Option<String>,
    pub node: Option<String>,
    /// node_offline, backlog_growing: the period, in ms.
    pub for_ms: Option<i64>,
    pub min_batches: Option<u64>,
    pub min_missing: Option<u64>,
    pub kpi: Option<String>,
    pub window: Option<String>,
    pub target: Option<f64>,
    pub windows: Option<u32>,
    pub above: Option<bool>,
    pub max_per_10min: Option<u64>,
}

/// The alert rules in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    /// How often they are evaluated, in ms (null: no alerting configured).
    pub interval_ms: Option<i64>,
    /// Deliveries go to a webhook.
    pub webhook: bool,
    pub rules: Vec<RuleView>,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The configured alert rules (`[[alert]]` in the hub config).
#[utoipa::path(get, path = "/api/v1/monitoring/alert-rules", tag = "monitoring",
    responses((status = 200, description = "the rules, as configured", body = RuleList)))]
pub async fn rules(State(st): State<St>) -> Json<RuleList> {
    let Some(a) = st.config.alerts.as_ref() else {
        return Json(RuleList {
            interval_ms: None,
            webhook: false,
            rules: Vec::new(),
        });
    };
    let rules = a
        .rules
        .iter()
        .map(|r| {
            let mut v = RuleView {
                name: r.name.clone(),
                kind: r.kind.name().to_owned(),
                site: r.site.clone(),
                node: r.node.clone(),
                for_ms: None,
                min_batches: None,
                min_missing: None,
                kpi: None,
                window: None,
                target: None,
                windows: None,
                above: None,
                max_per_10min: None,
            };
            match &r.kind {
                RuleKind::NodeOffline { after } => v.for_ms = Some(ms(*after)),
                RuleKind::BacklogGrowing {
                    period,
                    min_batches,
                } => {
                    v.for_ms = Some(ms(*period));
                    v.min_batches = Some(*min_batches);
                }
                RuleKind::SequenceGaps { min_missing } => v.min_missing = Some(*min_missing),
                RuleKind::KpiBelow {
                    kpi,
                    window,
                    target,
                    windows,
                    above,
                } => {
                    v.kpi = Some(kpi.clone());
                    v.window = Some(window.clone());
                    v.target = Some(*target);
                    v.windows = Some(*windows);
                    v.above = Some(*above);
                }
                RuleKind::AlarmFlood { max_per_10min } => v.max_per_10min = *max_per_10min,
            }
            v
        })
        .collect();
    Json(RuleList {
        interval_ms: Some(ms(a.interval)),
        webhook: a.webhook.is_some(),
        rules,
    })
}
