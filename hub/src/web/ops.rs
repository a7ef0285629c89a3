//! Operational routes: `/healthz`, `/readyz`, `/metrics`, the OpenAPI
//! document, and the pages (the router's fallback).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value as J, json};
use web::access::{Access, Role};
use web::routes::RouteTable;

use super::St;

pub fn add(t: &mut RouteTable<St>) {
    t.add(Method::GET, "/healthz", Access::Public, healthz)
        .add(Method::GET, "/readyz", Access::Public, readyz)
        .add(Method::GET, "/api/v1/openapi.json", Access::Public, openapi)
        .add(Method::GET, "/metrics", Access::Role(Role::Viewer), metrics);
}

pub async fn asset(State(st): State<St>, uri: Uri, headers: HeaderMap) -> Response {
    st.assets
        .response(uri.path().trim_start_matches('/'), &headers)
}

/// Liveness: the process answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

/// The process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "monitoring",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: what the hub needs before it does its work.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
    /// The fleet database answers a query.
    pub store: bool,
    /// The ingest is connected to the broker and subscribed.
    pub ingest: bool,
}

/// Ready only once the store answers and the ingest subscription is up.
#[utoipa::path(get, path = "/readyz", tag = "monitoring",
    responses((status = 200, description = "ready", body = Ready),
              (status = 503, description = "not ready", body = Ready)))]
pub async fn readyz(State(st): State<St>) -> Response {
    let ingest = *st.ready.borrow();
    let store = st.read(|s| s.ping()).await.is_ok();
    let ready = ingest && store;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Ready {
            ready,
            store,
            ingest,
        }),
    )
        .into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
               content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn metrics(State(st): State<St>) -> Response {
    web::metrics::response(super::metrics::render(&st))
}

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "monitoring",
    responses((status = 200, description = "this document", body = Object)))]
pub async fn openapi(State(st): State<St>) -> Response {
    Json(document(&super::routes(st.core.clone()))).into_response()
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz, metrics, openapi),
    components(schemas(Health, Ready)),
    tags((name = "monitoring", description = "Fleet and node health, gaps, backlog, alerts"),
         (name = "analysis", description = "KPIs and their history, tag ranges, statistics"),
         (name = "forecasting", description = "Models, forecasts against actuals, accuracy"),
         (name = "etl", description = "Exports and imports"),
         (name = "optimization", description = "Setpoint optimization (not yet available)"))
)]
struct OpsDoc;

/// The whole document: every area's part, merged, plus security schemes.
pub fn document(table: &RouteTable<St>) -> J {
    use utoipa::OpenApi as _;
    let mut doc = web::auth_api::ApiDoc::openapi();
    doc.merge(OpsDoc::openapi());
    doc.merge(super::monitoring::Doc::openapi());
    doc.merge(super::analysis::Doc::openapi());
    doc.merge(super::forecasting::Doc::openapi());
    doc.merge(super::etl::import::Doc::openapi());
    doc.merge(super::etl::export::Doc::openapi());
    doc.merge(super::sql::Doc::openapi());
    doc.merge(super::insights::Doc::openapi());
    doc.merge(super::reports::Doc::openapi());
    doc.merge(super::optimization::Doc::openapi());
    doc.merge(super::alerts::Doc::openapi());
    doc.merge(super::live::Doc::openapi());
    let mut doc = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "APOS hub API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "The hub's REST API (docs/hub-api.md). Browser sessions use the apos_session cookie and send X-CSRF-Token on state changes; programs send an API token as `Authorization: Bearer …`. Errors are application/problem+json (RFC 9457)."
    });
    doc["components"]["securitySchemes"] = json!({
        "session": {"type": "apiKey", "in": "cookie", "name": web::routes::SESSION_COOKIE},
        "token": {"type": "http", "scheme": "bearer"}
    });
    // Security per operation comes from the route table, the one source of
    // who may call what.
    for r in table.routes() {
        let method = r.method.as_str().to_lowercase();
        let op = &mut doc["paths"][r.path][&method];
        if !op.is_object() {
            continue;
        }
        match r.access {
            Access::Public => op["security"] = json!([]),
            Access::Role(role) => {
                op["security"] = json!([{"session": []}, {"token": []}]);
                op["x-apos-role"] = json!(role.as_str());
                let responses = &mut op["responses"];
                responses["401"] = json!({"description": "no session or token",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
                responses["403"] = json!({"description": "role too weak, or CSRF token missing",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
                responses["429"] = json!({"description": "rate limit",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
            }
        }
    }
    doc
}
