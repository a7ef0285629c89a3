//! The optimization routes (docs/optimization.md, docs/hub-api.md): the
//! configured problems, their runs (recommendations, models, what the edge
//! did, realized benefit), and a run on demand.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::{Caller, RouteTable};

use super::St;
use crate::config::ModelSpec;
use crate::optimize::db::Run;

pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    let engineer = Access::Role(Role::Engineer);
    t.add(Method::GET, "/api/v1/optimization", viewer, problems)
        .add(Method::POST, "/api/v1/optimization", engineer, define)
        .add(
            Method::DELETE,
            "/api/v1/optimization/{name}",
            engineer,
            remove,
        )
        .add(Method::GET, "/api/v1/optimization/runs", viewer, runs)
        .add(Method::GET, "/api/v1/optimization/runs/{id}", viewer, run)
        .add(
            Method::POST,
            "/api/v1/optimization/{name}/run",
            Access::Role(Role::Analyst),
            run_now,
        );
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(problems, define, remove, runs, run, run_now),
    components(schemas(
        Problems,
        ProblemView,
        Run,
        Problem,
        NewProblems,
        Defined,
        crate::optimize::Source
    ))
)]
pub struct Doc;

/// A configured problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemView {
    pub name: String,
    pub site: String,
    pub node: String,
    /// `maximize` or `minimize`.
    pub sense: String,
    pub unit: String,
    /// Seconds between scheduled runs; none: on demand and triggers only.
    pub every_s: Option<u64>,
    pub window_s: u64,
    pub history_s: u64,
    pub margin_sigmas: f64,
    pub send: bool,
    /// `tag (min … max unit)`.
    pub decisions: Vec<String>,
    /// `tag: fitted on a, b` or `tag: given`.
    pub outputs: Vec<String>,
    /// `label × price`.
    pub terms: Vec<String>,
    /// `name: tag ≤ max`.
    pub constraints: Vec<String>,
    pub triggers: Vec<String>,
    /// The configuration file, or the API (who, when).
    pub source: crate::optimize::Source,
    /// The newest run.
    pub last: Option<Run>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Problems {
    /// The hub's recommendation public key (`[setpoints] hub_public_key`
    /// of the edges); none without `[[optimization]]`.
    pub public_key: Option<String>,
    pub items: Vec<ProblemView>,
}

fn no_optimizer() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no optimization problems are configured ([[optimization]] in the hub configuration)",
    )
}

fn failed(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "optimization");
    Problem::internal("the optimization records could not be read; see the hub log")
}

/// The configured problems and each one's newest run.
#[utoipa::path(get, path = "/api/v1/optimization", tag = "optimization",
    responses((status = 200, description = "problems", body = Problems)))]
pub async fn problems(State(st): State<St>) -> Result<Json<Problems>, Problem> {
    let Some(opt) = st.optimizer.clone() else {
        return Ok(Json(Problems {
            public_key: None,
            items: Vec::new(),
        }));
    };
    let o = opt.clone();
    let defined = opt.problems();
    let names: Vec<String> = defined.iter().map(|d| d.problem.name.clone()).collect();
    let lasts = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .map(|n| o.db.runs(Some(n), 1).map(|mut v| v.pop()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(failed)?
    .map_err(failed)?;
    let items = defined
        .iter()
        .zip(lasts)
        .map(|(d, last)| (&d.problem, d.source.clone(), last))
        .map(|(p, source, last)| ProblemView {
            name: p.name.clone(),
            site: p.site.clone(),
            node: p.node.clone(),
            sense: format!("{:?}", p.sense).to_lowercase(),
            unit: p.unit.clone(),
            every_s: p.every.map(|d| d.as_secs()),
            window_s: p.window.as_secs(),
            history_s: p.history.as_secs(),
            margin_sigmas: p.margin_sigmas,
            send: p.send,
            decisions: p
                .decisions
                .iter()
                .map(|d| format!("{} ({} … {} {})", d.tag, d.min, d.max, d.unit))
                .collect(),
            outputs: p
                .surrogate
                .iter()
                .map(|s| {
                    format!(
                        "{}: ONNX surrogate {} of {} (CMA-ES)",
                        s.outputs.join(", "),
                        s.model.display(),
                        s.inputs.join(", ")
                    )
                })
                .chain(p.outputs.iter().map(|o| match &o.model {
                    ModelSpec::Fit { inputs } => {
                        format!("{}: fitted on {}", o.tag, inputs.join(", "))
                    }
                    ModelSpec::User { inputs, .. } => {
                        format!("{}: given, of {}", o.tag, inputs.join(", "))
                    }
                }))
                .collect(),
            terms: p
                .terms
                .iter()
                .map(|t| format!("{} × {}", t.label, t.price))
                .collect(),
            constraints: p
                .constraints
                .iter()
                .map(|c| {
                    let lo = c.lower.map(|v| format!("{v} ≤ ")).unwrap_or_default();
                    let hi = c.upper.map(|v| format!(" ≤ {v}")).unwrap_or_default();
                    format!("{}: {lo}{}{hi} {}", c.name, c.tag, c.unit)
                })
                .collect(),
            triggers: p
                .triggers
                .iter()
                .map(|t| match (t.above, t.below) {
                    (Some(a), Some(b)) => format!("{} above {a} or below {b}", t.tag),
                    (Some(a), None) => format!("{} above {a}", t.tag),
                    (None, Some(b)) => format!("{} below {b}", t.tag),
                    (None, None) => t.tag.clone(),
                })
                .collect(),
            source,
            last,
        })
        .collect();
    Ok(Json(Problems {
        public_key: Some(opt.public_key()),
        items,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only this problem's runs.
    pub problem: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/optimization/runs", tag = "optimization", params(RunsQuery),
    responses((status = 200, description = "runs", body = [Run]),
              (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json")))]
pub async fn runs(
    State(st): State<St>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Run>>, Problem> {
    let q = q.map_err(|e| Problem::bad_request(e.body_text()))?.0;
    let Some(opt) = st.optimizer.clone() else {
        return Ok(Json(Vec::new()));
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500) as usize;
    let v = tokio::task::spawn_blocking(move || opt.db.runs(q.problem.as_deref(), limit))
        .await
        .map_err(failed)?
        .map_err(failed)?;
    Ok(Json(v))
}

/// One run: the recommendation, the models and their fit, the edge's
/// answer and the realized benefit.
#[utoipa::path(get, path = "/api/v1/optimization/runs/{id}", tag = "optimization",
    params(("id" = String, Path, description = "run id, `<problem>-<n>`")),
    responses((status = 200, description = "the run", body = Run),
              (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json")))]
pub async fn run(State(st): State<St>, Path(id): Path<String>) -> Result<Json<Run>, Problem> {
    let opt = st.optimizer.clone().ok_or_else(no_optimizer)?;
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || opt.db.run(&id2))
        .await
        .map_err(failed)?
        .map_err(failed)?
        .map(Json)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no run {id:?}")))
}

/// Run a problem now (analyst or above). The recommendation goes to the
/// edge's approval queue when it pays and the problem sends; nothing is
/// written to a PLC without an operator's approval there.
#[utoipa::path(post, path = "/api/v1/optimization/{name}/run", tag = "optimization",
    params(("name" = String, Path, description = "problem name")),
    responses((status = 201, description = "the run (it may have failed: see `outcome`)", body = Run),
              (status = 404, description = "no such problem", body = Problem, content_type = "application/problem+json")))]
pub async fn run_now(
    State(st): State<St>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let opt = st.optimizer.clone().ok_or_else(no_optimizer)?;
    if opt.problem(&name).is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no optimization problem {name:?}"),
        ));
    }
    let who = caller.user.clone().unwrap_or_else(|| "anonymous".into());
    let run = opt
        .run(&name, &format!("on demand by {who}"))
        .await
        .map_err(failed)?;
    audit(
        &st,
        &caller,
        "optimization_run",
        run.id.clone(),
        format!("{}: {} ({})", run.problem, run.outcome, run.status_note),
    )
    .await;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

/// New problems: `[[optimization]]` tables in TOML, exactly as in the
/// configuration file (docs/optimization.md).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProblems {
    /// e.g. `[[optimization]]\nname = "m"\nsite = "s"\n…`
    #[schema(max_length = 262144)]
    pub toml: String,
}

/// What was defined.
#[derive(Debug, Serialize, ToSchema)]
pub struct Defined {
    pub defined: Vec<String>,
}

const MAX_PROBLEM_TEXT: usize = 256 * 1024;

/// Audited after the change is made: a failure is logged, not undone.
async fn audit(st: &St, caller: &Caller, action: &str, target: String, detail: String) {
    if let Err(e) = st.audit(caller, action, target, detail).await {
        tracing::error!(action, error = %e, "audit log: cannot record an optimization change");
    }
}

/// Define or redefine problems (engineer or above), validated like the
/// configuration file's, errors located in the text; kept across restarts.
/// Problems of the configuration file cannot be replaced this way.
#[utoipa::path(post, path = "/api/v1/optimization", tag = "optimization",
    request_body = NewProblems,
    responses((status = 201, description = "defined", body = Defined),
              (status = 400, description = "invalid: every problem located", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "this hub has no optimization ([[optimization]] or [recommendations] in its configuration)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "a problem of the configuration file", body = Problem, content_type = "application/problem+json")))]
pub async fn define(
    State(st): State<St>,
    caller: Caller,
    body: Result<Json<NewProblems>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    let b = body
        .map_err(|e| Problem::bad_request(format!("body: {}", e.body_text())))?
        .0;
    if b.toml.len() > MAX_PROBLEM_TEXT {
        return Err(Problem::bad_request(format!(
            "toml: {} bytes, at most {MAX_PROBLEM_TEXT}",
            b.toml.len()
        )));
    }
    let opt = st.optimizer.clone().ok_or_else(no_optimizer)?;
    let who = caller.user.clone().unwrap_or_else(|| "anonymous".into());
    let (text, by) = (b.toml.clone(), who.clone());
    let names = tokio::task::spawn_blocking(move || opt.define(&text, &by, crate::web::now_ms()))
        .await
        .map_err(failed)?
        .map_err(|e| match e {
            crate::optimize::DefineError::Invalid(m) => Problem::bad_request(m),
            crate::optimize::DefineError::FromConfig(_) => {
                Problem::new(StatusCode::CONFLICT, e.to_string())
            }
            e => failed(e),
        })?;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(b.toml.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    audit(
        &st,
        &caller,
        "optimization_define",
        names.join(","),
        format!("sha256 {hex}"),
    )
    .await;
    Ok((StatusCode::CREATED, Json(Defined { defined: names })).into_response())
}

/// Remove a problem defined through the API (engineer or above); its runs
/// stay listed.
#[utoipa::path(delete, path = "/api/v1/optimization/{name}", tag = "optimization",
    params(("name" = String, Path, description = "problem name")),
    responses((status = 204, description = "removed"),
              (status = 404, description = "no such problem", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "a problem of the configuration file", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(st): State<St>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let opt = st.optimizer.clone().ok_or_else(no_optimizer)?;
    let n = name.clone();
    tokio::task::spawn_blocking(move || opt.remove(&n))
        .await
        .map_err(failed)?
        .map_err(|e| match e {
            crate::optimize::DefineError::Unknown(_) => {
                Problem::new(StatusCode::NOT_FOUND, e.to_string())
            }
            crate::optimize::DefineError::FromConfig(_) => {
                Problem::new(StatusCode::CONFLICT, e.to_string())
            }
            e => failed(e),
        })?;
    audit(&st, &caller, "optimization_remove", name, String::new()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
