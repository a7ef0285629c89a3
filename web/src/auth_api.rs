//! The session API and the admin views of users and the audit log, shared by
//! every server that uses [`RouteTable`].
//!
//! Log in and out, and every failed login, are written to the audit log, as
//! are the creation and revocation of API tokens (`/api/v1/tokens`).
//! All blocking work (password hashing, SQLite) runs in `spawn_blocking`.

use crate::access::{Access, Role};
use crate::audit::{AuditEntry, ChainProblem, NewAudit, VerifyReport};
use crate::problem::Problem;
use crate::routes::{AuthCore, Caller, RouteTable, SESSION_COOKIE, client_addr};
use crate::tokens::{NewToken, TokenInfo, may_grant};
use crate::users::{NAME_MAX, UserInfo};
use axum::Extension;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

pub use crate::session::{SESSION_ABSOLUTE, SESSION_IDLE};

/// Largest login body accepted; a password is at most 1024 characters.
const LOGIN_BODY_MAX: usize = 16 * 1024;
pub const AUDIT_LIMIT_DEFAULT: usize = 100;
pub const AUDIT_LIMIT_MAX: usize = 1000;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub user: String,
    pub role: Role,
    /// Send back in `X-CSRF-Token` on every state-changing request.
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub user: Option<String>,
    pub role: Role,
    pub csrf: Option<String>,
    pub expires_ms: Option<i64>,
    pub anonymous: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries with a smaller `seq` (for paging back).
    pub before: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// Largest token request body.
const TOKEN_BODY_MAX: usize = 4 * 1024;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, e.g. "grafana" (1 to 64 characters).
    pub name: String,
    /// The token's role: the caller's (the default) or a lower one.
    pub role: Option<Role>,
    /// Days until it expires: 1 to 365, default 90.
    #[schema(minimum = 1, maximum = 365)]
    pub expires_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub id: String,
    /// The token itself, shown this once: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub name: String,
    pub role: Role,
    pub expires_ms: i64,
}

/// Registers the session, token, users and audit routes on `table`.
pub fn add_auth_routes<S: Clone + Send + Sync + 'static>(table: &mut RouteTable<S>) {
    table
        .add(Method::POST, "/api/v1/session", Access::Public, login)
        .add(
            Method::GET,
            "/api/v1/session",
            Access::Role(Role::Viewer),
            get_session,
        )
        .add(
            Method::DELETE,
            "/api/v1/session",
            Access::Role(Role::Viewer),
            logout,
        )
        // Any user may make tokens for their own read-only tools (a viewer
        // for Grafana); a token's role is never above its maker's.
        .add(
            Method::POST,
            "/api/v1/tokens",
            Access::Role(Role::Viewer),
            create_token,
        )
        .add(
            Method::GET,
            "/api/v1/tokens",
            Access::Role(Role::Viewer),
            list_tokens,
        )
        .add(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            Access::Role(Role::Viewer),
            revoke_token,
        )
        .add(
            Method::GET,
            "/api/v1/users",
            Access::Role(Role::Admin),
            list_users,
        )
        .add(
            Method::GET,
            "/api/v1/audit",
            Access::Role(Role::Admin),
            list_audit,
        )
        .add(
            Method::GET,
            "/api/v1/audit/verify",
            Access::Role(Role::Admin),
            verify_audit,
        );
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        login,
        get_session,
        logout,
        create_token,
        list_tokens,
        revoke_token,
        list_users,
        list_audit,
        verify_audit
    ),
    components(schemas(
        LoginRequest,
        LoginResponse,
        SessionInfo,
        TokenRequest,
        TokenCreated,
        TokenInfo,
        AuditPage,
        AuditEntry,
        VerifyReport,
        ChainProblem,
        UserInfo,
        Role,
        Problem
    )),
    tags((name = "session", description = "Log in and out"),
         (name = "tokens", description = "API tokens for programs: made once, shown once, sent as `Authorization: Bearer`"),
         (name = "admin", description = "Users and the audit log (admin)"))
)]
pub struct ApiDoc;

/// Runs blocking work off the async threads; a panic there becomes a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::WebError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Problem::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(Problem::internal("internal error; see the server log"))
        }
    }
}

/// Writes an audit entry; a failure is logged but does not fail the request
/// that already happened (the user is logged in or out either way).
async fn audit(core: &Arc<AuthCore>, e: NewAudit) {
    let log = core.audit.clone();
    let action = e.action.clone();
    if let Err(p) = blocking(move || log.append(e, crate::util::now_ms())).await {
        tracing::error!(action, detail = p.detail, "could not write the audit entry");
    }
}

/// The attempted user name as it may appear in the audit log: bounded and
/// without control characters, since it is attacker-chosen text.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .take(NAME_MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn session_cookie(core: &AuthCore, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
    let secure = if core.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// Log in.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in; sets the `apos_session` cookie", body = LoginResponse),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(Extension(core): Extension<Arc<AuthCore>>, req: Request) -> Response {
    let addr = client_addr(req.extensions());
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the login as Content-Type: application/json",
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), LOGIN_BODY_MAX).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::bad_request("login body too large or unreadable").into_response();
        }
    };
    let Ok(creds) = serde_json::from_slice::<LoginRequest>(&body) else {
        return Problem::bad_request(r#"expected {"user": "...", "password": "..."}"#)
            .into_response();
    };
    // Clients without a known address share one throttle bucket.
    let throttle_addr = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(wait) = core
        .throttle
        .check(&creds.user, throttle_addr, Instant::now())
    {
        return Problem::too_many(wait).into_response();
    }
    let users = core.users.clone();
    let (name, password) = (creds.user.clone(), creds.password);
    let verified = match blocking(move || users.verify(&name, &password)).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let addr_s = addr.map(|a| a.to_string()).unwrap_or_default();
    let Some(user) = verified else {
        core.throttle
            .failure(&creds.user, throttle_addr, Instant::now());
        let name = sanitize_name(&creds.user);
        audit(
            &core,
            NewAudit {
                actor: name.clone(),
                action: "login_failed".into(),
                target: name,
                detail: String::new(),
                addr: addr_s,
            },
        )
        .await;
        return Problem::new(StatusCode::UNAUTHORIZED, "wrong user name or password")
            .into_response();
    };
    core.throttle
        .success(&user.name, throttle_addr, Instant::now());
    let session = core.sessions.create(&user.name, user.role, Instant::now());
    let users = core.users.clone();
    let name = user.name.clone();
    if let Err(p) = blocking(move || users.record_login(&name, crate::util::now_ms())).await {
        tracing::warn!(detail = p.detail, "could not record the login time");
    }
    audit(
        &core,
        NewAudit {
            actor: user.name.clone(),
            action: "login".into(),
            target: user.name.clone(),
            detail: format!("role={}", user.role),
            addr: addr_s,
        },
    )
    .await;
    let body = LoginResponse {
        user: user.name,
        role: user.role,
        csrf: session.csrf.clone(),
        expires_ms: session.expires_at_ms,
    };
    let mut resp = axum::Json(body).into_response();
    if let Some(c) = session_cookie(&core, &session.token, core.sessions.absolute().as_secs()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    no_store(resp)
}

/// Answers carrying a CSRF token must not be cached anywhere.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The current session (or the anonymous viewer).
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    responses(
        (status = 200, body = SessionInfo),
        (status = 401, description = "No session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_session(caller: Caller) -> Response {
    let info = match &caller.session {
        Some(s) => SessionInfo {
            user: Some(s.user.clone()),
            role: s.role,
            csrf: Some(s.csrf.clone()),
            expires_ms: Some(s.expires_at_ms),
            anonymous: false,
        },
        // An API token: its owner and role; no CSRF token is needed.
        None if caller.token.is_some() => SessionInfo {
            user: caller.user.clone(),
            role: caller.role,
            csrf: None,
            expires_ms: None,
            anonymous: false,
        },
        None => SessionInfo {
            user: None,
            role: Role::Viewer,
            csrf: None,
            expires_ms: None,
            anonymous: true,
        },
    };
    no_store(axum::Json(info).into_response())
}

/// Log out.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 401, description = "No session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing or wrong CSRF token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(Extension(core): Extension<Arc<AuthCore>>, caller: Caller) -> Response {
    if let Some(s) = &caller.session {
        core.sessions.remove(&s.token);
        audit(
            &core,
            NewAudit {
                actor: s.user.clone(),
                action: "logout".into(),
                target: s.user.clone(),
                detail: String::new(),
                addr: caller.addr_string(),
            },
        )
        .await;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = session_cookie(&core, "", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// Reads a JSON body of at most `max` bytes as `T`, with problem+json errors.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request, max: usize) -> Result<T, Problem> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as Content-Type: application/json",
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), max)
        .await
        .map_err(|_| Problem::bad_request(format!("body larger than {max} bytes or unreadable")))?;
    serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid body: {e}")))
}

/// Make an API token for yourself.
///
/// The token is in the answer once and never again (only its hash is kept).
/// Its role is your role (the default) or a lower one, e.g. a viewer token
/// for Grafana. Needs a login: a token cannot make tokens.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Made; `token` is shown this once", body = TokenCreated),
        (status = 400, description = "Invalid name, role or expiry", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role above yours, called with a token, or CSRF token missing", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    Extension(core): Extension<Arc<AuthCore>>,
    caller: Caller,
    req: Request,
) -> Response {
    if caller.token.is_some() {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "an API token cannot make tokens: log in with your password to make one",
        )
        .into_response();
    }
    let Some(user) = caller.user.clone() else {
        return Problem::unauthorized().into_response();
    };
    let Some(tokens) = core.tokens.clone() else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "API tokens are not available on this server",
        )
        .into_response();
    };
    let body: TokenRequest = match json_body(req, TOKEN_BODY_MAX).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let role = body.role.unwrap_or(caller.role);
    if !may_grant(caller.role, role) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "you are {} and cannot make a token with role {role}: use your role or a lower one",
                caller.role
            ),
        )
        .into_response();
    }
    let new = NewToken {
        name: body.name,
        role: Some(role),
        expires_days: body.expires_days,
    };
    let owner = user.clone();
    let store = tokens.clone();
    let created = match blocking(move || store.create(&owner, &new, crate::util::now_ms())).await {
        Ok(c) => c,
        Err(p) if p.status == StatusCode::NOT_FOUND.as_u16() => {
            return Problem::new(StatusCode::FORBIDDEN, "your account no longer exists")
                .into_response();
        }
        Err(p) => return p.into_response(),
    };
    let entry = NewAudit {
        actor: user,
        action: "token_create".into(),
        target: created.info.id.clone(),
        detail: format!(
            "name={} role={} expires_ms={}",
            created.info.name, created.info.role, created.info.expires_ms
        ),
        addr: caller.addr_string(),
    };
    let log = core.audit.clone();
    if blocking(move || log.append(entry, crate::util::now_ms()))
        .await
        .is_err()
    {
        // No token may exist without its audit entry.
        let id = created.info.id.clone();
        let _ = blocking(move || tokens.revoke(&id)).await;
        return Problem::internal("the token was not made: its audit entry could not be written")
            .into_response();
    }
    let body = TokenCreated {
        id: created.info.id,
        token: created.token,
        name: created.info.name,
        role: created.info.role,
        expires_ms: created.info.expires_ms,
    };
    no_store((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Your API tokens (an admin sees everyone's); never the secrets.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, body = Vec<TokenInfo>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tokens(Extension(core): Extension<Arc<AuthCore>>, caller: Caller) -> Response {
    let (Some(tokens), Some(user)) = (core.tokens.clone(), caller.user.clone()) else {
        return axum::Json(Vec::<TokenInfo>::new()).into_response();
    };
    let all = caller.role == Role::Admin;
    match blocking(move || tokens.list((!all).then_some(user.as_str()))).await {
        Ok(list) => axum::Json(list).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Revoke an API token: your own, or anyone's as an admin.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id (the part after `apos_`)")),
    responses(
        (status = 204, description = "Revoked; it stops working at once"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "CSRF token missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token of yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_token(
    Extension(core): Extension<Arc<AuthCore>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let (Some(tokens), Some(user)) = (core.tokens.clone(), caller.user.clone()) else {
        return Problem::not_found().into_response();
    };
    let store = tokens.clone();
    let lookup = id.clone();
    let info = match blocking(move || store.get(&lookup)).await {
        Ok(i) => i,
        Err(p) => return p.into_response(),
    };
    // Someone else's token is "not found" too: ids are not to be probed.
    let Some(info) = info.filter(|i| i.owner == user || caller.role == Role::Admin) else {
        return Problem::new(StatusCode::NOT_FOUND, "no such API token of yours").into_response();
    };
    let revoke_id = id.clone();
    match blocking(move || tokens.revoke(&revoke_id)).await {
        Ok(true) => {}
        Ok(false) => {
            return Problem::new(StatusCode::NOT_FOUND, "no such API token of yours")
                .into_response();
        }
        Err(p) => return p.into_response(),
    }
    audit(
        &core,
        NewAudit {
            actor: user,
            action: "token_revoke".into(),
            target: id,
            detail: format!("name={} owner={}", info.name, info.owner),
            addr: caller.addr_string(),
        },
    )
    .await;
    StatusCode::NO_CONTENT.into_response()
}

/// All user accounts.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "admin",
    responses(
        (status = 200, body = Vec<UserInfo>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_users(Extension(core): Extension<Arc<AuthCore>>) -> Response {
    let users = core.users.clone();
    match blocking(move || users.list()).await {
        Ok(list) => axum::Json(list).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Audit log entries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    Extension(core): Extension<Arc<AuthCore>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query is a problem+json 400 like every other error, not
    // axum's plain-text rejection.
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return Problem::bad_request(e.body_text()).into_response(),
    };
    let limit = q.limit.unwrap_or(AUDIT_LIMIT_DEFAULT).min(AUDIT_LIMIT_MAX);
    let log = core.audit.clone();
    match blocking(move || log.list(q.before, limit)).await {
        Ok(entries) => axum::Json(AuditPage { entries }).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Checks the audit log's hash chain.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "admin",
    responses(
        (status = 200, body = VerifyReport),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_audit(Extension(core): Extension<Arc<AuthCore>>) -> Response {
    let log = core.audit.clone();
    match blocking(move || log.verify()).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use utoipa::OpenApi as _;

    #[test]
    fn sanitizes_attempted_names() {
        assert_eq!(sanitize_name("a\nb\u{7}"), "a?b?");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), NAME_MAX);
    }

    #[test]
    fn openapi_lists_every_auth_route() {
        let doc = ApiDoc::openapi();
        let json = serde_json::to_value(&doc).unwrap();
        let paths = json["paths"].as_object().unwrap();
        for (p, m) in [
            ("/api/v1/session", "post"),
            ("/api/v1/session", "get"),
            ("/api/v1/session", "delete"),
            ("/api/v1/tokens", "post"),
            ("/api/v1/tokens", "get"),
            ("/api/v1/tokens/{id}", "delete"),
            ("/api/v1/users", "get"),
            ("/api/v1/audit", "get"),
            ("/api/v1/audit/verify", "get"),
        ] {
            assert!(paths[p].get(m).is_some(), "{m} {p} missing from ApiDoc");
        }
        assert!(json["components"]["schemas"]["AuditEntry"].is_object());
        assert!(json["components"]["schemas"]["TokenCreated"].is_object());
    }
}
