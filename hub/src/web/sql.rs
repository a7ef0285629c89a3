//! `POST /api/v1/analysis/sql` (docs/sql.md): an analyst's read-only
//! query, run by a locked-down worker process on a snapshot of the fleet
//! database. Every query is written to the audit log, with its text,
//! before it runs; if that fails it does not run.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{Method, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use web::access::{Access, Role};
use web::audit::NewAudit;
use web::problem::Problem;
use web::routes::{Caller, RouteTable};

use super::St;
use crate::sql::{Answer, Column, Sandbox, SqlError};

/// Registers these routes.
pub fn add(t: &mut RouteTable<St>) {
    t.add(
        Method::POST,
        "/api/v1/analysis/sql",
        Access::Role(Role::Analyst),
        query,
    );
}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(query), components(schemas(SqlRequest, Answer, Column, Problem)))]
pub struct Doc;

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only DuckDB SQL statement, at most 64 KiB.
    pub query: String,
}

fn problem(e: &SqlError) -> Problem {
    let status = match e {
        SqlError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        SqlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        SqlError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        SqlError::Memory(..) | SqlError::Query(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SqlError::Snapshot(_) => StatusCode::SERVICE_UNAVAILABLE,
        SqlError::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut p = Problem::new(status, e.to_string());
    if matches!(e, SqlError::Busy(_) | SqlError::Snapshot(_)) {
        p.retry_after = Some(std::time::Duration::from_secs(1));
    }
    p
}

/// Run a read-only SQL query on a snapshot of the fleet database.
#[utoipa::path(post, path = "/api/v1/analysis/sql", tag = "analysis",
    request_body = SqlRequest,
    responses((status = 200, description = "the answer, with the snapshot's time", body = Answer),
              (status = 400, description = "not a JSON body with `query`", body = Problem, content_type = "application/problem+json"),
              (status = 408, description = "the query ran past `[sql] timeout` and was stopped", body = Problem, content_type = "application/problem+json"),
              (status = 413, description = "the query or its answer is too large", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "DuckDB refused the query (syntax, a forbidden operation, the memory limit)", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "`[sql] concurrency` queries are running", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "the snapshot could not be made", body = Problem, content_type = "application/problem+json")))]
pub async fn query(
    State(st): State<St>,
    caller: Caller,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<Answer>, Problem> {
    let q = body
        .map_err(|e| Problem::bad_request(format!("body: {}", e.body_text())))?
        .0
        .query;
    if q.len() > crate::sql::MAX_QUERY_BYTES {
        return Err(problem(&SqlError::TooLarge(format!(
            "the query is longer than {} KiB",
            crate::sql::MAX_QUERY_BYTES >> 10
        ))));
    }
    let entry = NewAudit {
        actor: caller.user.clone().unwrap_or_default(),
        action: "sql_query".into(),
        target: "fleet".into(),
        detail: q.clone(),
        addr: caller.addr_string(),
    };
    let log = st.core.audit.clone();
    let logged = tokio::task::spawn_blocking(move || log.append(entry, super::now_ms())).await;
    if !matches!(logged, Ok(Ok(_))) {
        tracing::error!("could not write the audit entry of a SQL query; the query is refused");
        return Err(Problem::internal(
            "the query could not be recorded in the audit log, so it was not run",
        ));
    }
    let sandbox = Sandbox::for_hub(&st.config.sql, &st.config.storage_path, &st.reads);
    let started = std::time::Instant::now();
    let r = sandbox.query(q).await;
    tracing::info!(
        user = caller.user.as_deref().unwrap_or(""),
        ms = started.elapsed().as_millis() as u64,
        outcome = %match &r {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        },
        "SQL query"
    );
    r.map(Json).map_err(|e| problem(&e))
}
