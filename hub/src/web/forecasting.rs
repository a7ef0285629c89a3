//! `/api/v1/forecasting/…` (docs/hub-api.md, "forecasting"): the models
//! each node forecasts with, their forecasts, forecast against actual,
//! accuracy over time (the edges' scores and the hub's cross-check) and
//! the latest explanation. The figures come from `store::forecast`; this
//! module checks parameters and shapes answers.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::params::{self, Cursor, Range};
use super::{St, now_ms};
use crate::store::forecast::{
    Accuracy, AccuracyPoint, AccuracySummary, Contribution, CrossCheck, Explanation, ForecastItem,
    ModelInfo, Versus,
};

/// Registers this area's routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    t.add(Method::GET, "/api/v1/forecasting/models", viewer, models)
        .add(
            Method::GET,
            "/api/v1/forecasting/forecasts",
            viewer,
            forecasts,
        )
        .add(Method::GET, "/api/v1/forecasting/versus", viewer, versus)
        .add(
            Method::GET,
            "/api/v1/forecasting/accuracy",
            viewer,
            accuracy,
        )
        .add(
            Method::GET,
            "/api/v1/forecasting/explanations",
            viewer,
            explanations,
        );
}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(models, forecasts, versus, accuracy, explanations),
    components(schemas(
        ModelList,
        ModelInfo,
        ForecastPage,
        ForecastItem,
        Versus,
        Accuracy,
        AccuracyPoint,
        AccuracySummary,
        CrossCheck,
        Explanation,
        Contribution,
        Problem
    ))
)]
pub struct Doc;

fn bad_query(e: QueryRejection) -> Problem {
    Problem::bad_request(format!("query: {}", e.body_text()))
}

/// Optional `site` and `node` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelFilter {
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
}

macro_rules! model_params {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident),* }) => {
        $(#[$m])*
        #[derive(Debug, Deserialize, IntoParams)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Site identifier.
            #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
            pub site: String,
            /// Node identifier.
            #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
            pub node: String,
            /// Model name.
            pub model: String,
            $($(#[$fm])* pub $field: Option<String>,)*
        }

        impl $name {
            fn key(&self) -> Result<Key, Problem> {
                key(&self.site, &self.node, &self.model)
            }
        }
    };
}

model_params!(
    /// One model's forecasts, by origin.
    ForecastParams {
        /// Origins at or after (RFC 3339 or ms since 1970); default `to` − 24 h.
        from,
        /// Origins before; default now.
        to,
        /// The `next_cursor` of the previous page.
        cursor,
        /// 1–1000, default 100.
        limit
    }
);
model_params!(
    /// One model's forecasts against the actuals, at one lead.
    VersusParams {
        /// Origins at or after (RFC 3339 or ms since 1970); default `to` − 24 h.
        from,
        /// Origins before; default now.
        to,
        /// Steps ahead: 1 (the first value, default) to 100000.
        lead
    }
);
model_params!(
    /// One model's accuracy over a range of origins.
    AccuracyParams {
        /// Origins at or after (RFC 3339 or ms since 1970); default `to` − 24 h.
        from,
        /// Origins before; default now.
        to
    }
);
model_params!(
    /// One model.
    ModelKey {}
);

/// A checked (site, node, model).
struct Key {
    site: String,
    node: String,
    model: String,
}

fn key(site: &str, node: &str, model: &str) -> Result<Key, Problem> {
    params::check_id("site", site)?;
    params::check_id("node", node)?;
    if model.is_empty()
        || model.len() > protocol::check::MAX_TEXT
        || model.chars().any(char::is_control)
    {
        return Err(Problem::bad_request(
            "model: 1 to 256 bytes without control characters",
        ));
    }
    Ok(Key {
        site: site.to_owned(),
        node: node.to_owned(),
        model: model.to_owned(),
    })
}

fn range(from: Option<&str>, to: Option<&str>) -> Result<Range, Problem> {
    params::range(from, to, now_ms(), params::DEFAULT_SPAN_MS)
}

/// Every model with forecasts at the hub.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// By site, node and model.
    pub items: Vec<ModelInfo>,
}

/// The models each node forecasts with, as their newest forecast and
/// score describe them.
#[utoipa::path(get, path = "/api/v1/forecasting/models", tag = "forecasting",
    params(ModelFilter),
    responses((status = 200, description = "every model with forecasts", body = ModelList),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn models(
    State(st): State<St>,
    q: Result<Query<ModelFilter>, QueryRejection>,
) -> Result<Json<ModelList>, Problem> {
    let f = q.map_err(bad_query)?.0;
    if let Some(s) = &f.site {
        params::check_id("site", s)?;
    }
    if let Some(n) = &f.node {
        params::check_id("node", n)?;
    }
    let items = st
        .read(move |s| s.forecast_models(f.site.as_deref(), f.node.as_deref()))
        .await?;
    Ok(Json(ModelList { items }))
}

/// A page of forecasts, newest origin first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastPage {
    pub items: Vec<ForecastItem>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One model's forecasts with origins in the range, newest first.
#[utoipa::path(get, path = "/api/v1/forecasting/forecasts", tag = "forecasting",
    params(ForecastParams),
    responses((status = 200, description = "a page of forecasts", body = ForecastPage),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn forecasts(
    State(st): State<St>,
    q: Result<Query<ForecastParams>, QueryRejection>,
) -> Result<Json<ForecastPage>, Problem> {
    let p = q.map_err(bad_query)?.0;
    let k = p.key()?;
    let r = range(p.from.as_deref(), p.to.as_deref())?;
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
            let seq = c.tiebreak.parse::<u64>().map_err(|_| {
                Problem::bad_request("cursor: not a cursor this API returned; start without one")
            })?;
            Some((c.ts_ms, seq))
        }
    };
    let (items, next) = st
        .read(move |s| {
            s.forecast_page(&k.site, &k.node, &k.model, r.from_ms, r.to_ms, after, limit)
        })
        .await?;
    Ok(Json(ForecastPage {
        items,
        next_cursor: next.map(|(origin, seq)| {
            Cursor {
                ts_ms: origin,
                tiebreak: seq.to_string(),
            }
            .encode()
        }),
    }))
}

/// Forecast against actual at one lead: for each forecast with its origin
/// in the range, the value forecast `lead` steps ahead and the tag's window
/// (time-weighted mean, width closest to the step) containing that time.
#[utoipa::path(get, path = "/api/v1/forecasting/versus", tag = "forecasting",
    params(VersusParams),
    responses((status = 200, description = "parallel arrays t, forecast, actual", body = Versus),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn versus(
    State(st): State<St>,
    q: Result<Query<VersusParams>, QueryRejection>,
) -> Result<Json<Versus>, Problem> {
    let p = q.map_err(bad_query)?.0;
    let k = p.key()?;
    let r = range(p.from.as_deref(), p.to.as_deref())?;
    let lead = match p.lead.as_deref() {
        None => 1,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=protocol::check::MAX_FORECAST_VALUES as u32).contains(l))
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "lead: {l:?} is not a whole number from 1 to 100000"
                ))
            })?,
    };
    let v = st
        .read(move |s| s.forecast_versus(&k.site, &k.node, &k.model, r.from_ms, r.to_ms, lead))
        .await?;
    Ok(Json(v))
}

/// Accuracy over time of the forecasts with origins in the range: `items`
/// and `edge` as the edge scored them (its actuals: the recorded samples
/// at each step), `hub` as the hub scores the same forecasts against the
/// windows it stores (every lead; a cross-check, not the same actuals).
#[utoipa::path(get, path = "/api/v1/forecasting/accuracy", tag = "forecasting",
    params(AccuracyParams),
    responses((status = 200, description = "the edge's scores and the hub's cross-check", body = Accuracy),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn accuracy(
    State(st): State<St>,
    q: Result<Query<AccuracyParams>, QueryRejection>,
) -> Result<Json<Accuracy>, Problem> {
    let p = q.map_err(bad_query)?.0;
    let k = p.key()?;
    let r = range(p.from.as_deref(), p.to.as_deref())?;
    let a = st
        .read(move |s| s.forecast_accuracy(&k.site, &k.node, &k.model, r.from_ms, r.to_ms))
        .await?;
    Ok(Json(a))
}

/// The newest explanation the model's edge sent (feature contributions,
/// largest first); `ts_ms` null and no items before the first.
#[utoipa::path(get, path = "/api/v1/forecasting/explanations", tag = "forecasting",
    params(ModelKey),
    responses((status = 200, description = "the latest explanation", body = Explanation),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn explanations(
    State(st): State<St>,
    q: Result<Query<ModelKey>, QueryRejection>,
) -> Result<Json<Explanation>, Problem> {
    let p = q.map_err(bad_query)?.0;
    let k = p.key()?;
    let e = st
        .read(move |s| s.forecast_explanation(&k.site, &k.node, &k.model))
        .await?;
    Ok(Json(e))
}
