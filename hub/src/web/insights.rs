//! `/api/v1/analysis/insights` (docs/insights.md, docs/hub-api.md): what
//! changed in the fleet and why, ranked. Computed on the blocking pool
//! through a read connection; answers are kept for [`TTL`] per hub and
//! query, since a default `to` is rounded down to the minute and a
//! dashboard polling the page asks the same question many times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::params;
use super::{St, now_ms};
use crate::insight::{self, Figure, Insight, Kind, Params};

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(60);
/// Most answers kept (the key comes from the query, so it is bounded).
const MAX_ENTRIES: usize = 256;

/// Registers these routes.
pub fn add(t: &mut RouteTable<St>) {
    t.add(
        Method::GET,
        "/api/v1/analysis/insights",
        Access::Role(Role::Viewer),
        insights,
    );
}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(insights),
    components(schemas(InsightList, Insight, Figure, Kind, Problem))
)]
pub struct Doc;

/// The period and scope.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InsightParams {
    /// Start of the current period (RFC 3339 or ms since 1970); default
    /// `to` − 7 days. It is compared with as long a period before it.
    pub from: Option<String>,
    /// End of the current period; default now (to the minute).
    pub to: Option<String>,
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
}

/// Insights, most important first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InsightList {
    /// The current period.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The period it is compared with starts here (and ends at `from_ms`).
    pub before_from_ms: i64,
    /// When these were computed (an answer may be reused for a minute).
    pub computed_ms: i64,
    pub items: Vec<Insight>,
}

type Key = (usize, i64, Params);
type Cache = Mutex<HashMap<Key, (Instant, Arc<InsightList>)>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// The checked parameters: `to` defaults to now rounded down to the
/// minute (so that repeated calls share an answer), `from` to `to` − 7 d.
pub fn parse(q: &InsightParams, now: i64) -> Result<Params, Problem> {
    for (name, v) in [("site", &q.site), ("node", &q.node)] {
        if let Some(v) = v {
            params::check_id(name, v)?;
        }
    }
    let to = match q.to.as_deref() {
        Some(t) => params::parse_time("to", t)?,
        None => now - now.rem_euclid(60_000),
    };
    let to_s = to.to_string();
    let r = params::range(
        q.from.as_deref(),
        Some(to_s.as_str()),
        now,
        insight::DEFAULT_PERIOD_MS,
    )?;
    if r.to_ms - r.from_ms < 60_000 {
        return Err(Problem::bad_request(
            "the period is shorter than a minute; give from and to at least a minute apart",
        ));
    }
    if r.to_ms - r.from_ms > 366 * 86_400_000 {
        return Err(Problem::bad_request(
            "the period is longer than a year; insights compare two periods of at most 366 days",
        ));
    }
    Ok(Params {
        site: q.site.clone(),
        node: q.node.clone(),
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        now_ms: now,
    })
}

/// Insights over a period: KPIs that changed against the period before
/// (OEE split into availability, performance and quality), forecasts
/// whose accuracy degraded, stuck or drifting sensors, data-quality
/// problems and significant KPI trends; each with its numbers and the
/// page that shows it.
#[utoipa::path(get, path = "/api/v1/analysis/insights", tag = "analysis",
    params(InsightParams),
    responses((status = 200, description = "insights, most important first", body = InsightList),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn insights(
    State(st): State<St>,
    q: Result<Query<InsightParams>, QueryRejection>,
) -> Result<Json<InsightList>, Problem> {
    let q = q
        .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))?
        .0;
    let p = parse(&q, now_ms())?;
    let key: Key = (Arc::as_ptr(&st) as usize, st.started_ms, p.clone());
    {
        let c = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, v)) = c.get(&key)
            && at.elapsed() < TTL
        {
            return Ok(Json((**v).clone()));
        }
    }
    let pc = p.clone();
    let items = st.read(move |s| insight::generate(s, &pc)).await?;
    let list = Arc::new(InsightList {
        from_ms: p.from_ms,
        to_ms: p.to_ms,
        before_from_ms: p.before().0,
        computed_ms: now_ms(),
        items,
    });
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    c.retain(|_, (at, _)| at.elapsed() < TTL);
    if c.len() >= MAX_ENTRIES {
        c.clear();
    }
    c.insert(key, (Instant::now(), list.clone()));
    Ok(Json((*list).clone()))
}
