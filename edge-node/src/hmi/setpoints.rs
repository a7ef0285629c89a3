//! The approval queue's API (docs/hmi-api.md, "Setpoints"): what the hub
//! proposes, with the plant's current value beside it, and the operator's
//! approve / reject. The setpoint task does the checks (roles, limits,
//! expiry) and the audit; these handlers only translate.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as J, json};
use web::access::Role;
use web::problem::Problem;
use web::routes::Caller;

use super::St;
use crate::setpoint::run::{Command, Refused};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// An engineer's edited value (within the edge's limits).
    value: Option<f64>,
    comment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    comment: String,
}

/// The queue, newest decisions last, each with the tag's live value,
/// quality and age.
pub async fn list(State(st): State<St>) -> Json<J> {
    let view = st.setpoints.view();
    let live = st.live.read().await;
    let now = drivers::Timestamp::now().as_millis();
    let current: serde_json::Map<String, J> = view
        .limits
        .iter()
        .map(|l| {
            let v = live.get(l.tag.as_str()).map(|s| {
                json!({
                    "value": s.value.as_ref().and_then(drivers::Value::as_f64),
                    "quality": s.quality.to_string(),
                    "good": s.quality.is_good(),
                    "age_ms": now - s.ts.as_millis(),
                })
            });
            (l.tag.clone(), v.unwrap_or(J::Null))
        })
        .collect();
    Json(json!({
        "enabled": view.enabled,
        "now_ms": now,
        "entries": view.entries,
        "limits": view.limits,
        "current": current,
        "refused": view.refused,
        "last_seq": view.last_seq,
    }))
}

fn parse<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// Analysts rank with operators (web::access) but work with history and
/// models, not the plant: a PLC write needs an operator, engineer or admin.
fn plant_role(caller: &Caller) -> Option<Response> {
    (caller.role == Role::Analyst).then(|| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "analysts do not approve plant writes: an operator, engineer or admin does",
        )
        .into_response()
    })
}

fn answer(r: Result<(), Refused>) -> Response {
    let (status, m) = match r {
        Ok(()) => return StatusCode::NO_CONTENT.into_response(),
        Err(Refused::NotFound(m)) => (StatusCode::NOT_FOUND, m),
        Err(Refused::Forbidden(m)) => (StatusCode::FORBIDDEN, m),
        Err(Refused::BadRequest(m)) => (StatusCode::BAD_REQUEST, m),
        Err(Refused::Conflict(m)) => (StatusCode::CONFLICT, m),
        Err(Refused::Unavailable(m)) => (StatusCode::SERVICE_UNAVAILABLE, m),
    };
    Problem::new(status, m).into_response()
}

/// Approve (operator), or edit and approve (engineer).
pub async fn approve(
    State(st): State<St>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    if let Some(r) = plant_role(&caller) {
        return r;
    }
    let b: ApproveBody = match parse(&bytes) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if b.value.is_some_and(|v| !v.is_finite()) {
        return Problem::bad_request("value must be a finite number").into_response();
    }
    let user = caller.user.clone().unwrap_or_default();
    let addr = caller.addr_string();
    let comment = b.comment.filter(|c| !c.trim().is_empty());
    answer(
        st.setpoints
            .command(|reply| Command::Approve {
                id,
                user,
                role: caller.role,
                value: b.value,
                comment,
                addr,
                reply,
            })
            .await,
    )
}

/// Reject, with a comment (operator).
pub async fn reject(
    State(st): State<St>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    if let Some(r) = plant_role(&caller) {
        return r;
    }
    let b: RejectBody = match parse(&bytes) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if b.comment.trim().is_empty() {
        return Problem::bad_request(
            "a rejection needs a comment: say why, for the hub's analysts",
        )
        .into_response();
    }
    let user = caller.user.clone().unwrap_or_default();
    let addr = caller.addr_string();
    answer(
        st.setpoints
            .command(|reply| Command::Reject {
                id,
                user,
                role: caller.role,
                comment: b.comment,
                addr,
                reply,
            })
            .await,
    )
}
