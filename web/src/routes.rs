//! The route table: every route with its access level, so the set can be
//! listed (and swept by tests) and the check is applied in one place.
//!
//! Per route, a middleware resolves the caller from an API token
//! (`Authorization: Bearer apos_…`), the `apos_session` cookie or the
//! metrics bearer token, answers 401 without one and 403 for too weak a
//! role. For state-changing methods a cookie session must also send its
//! CSRF token in `X-CSRF-Token` and an `Origin` (when sent) that matches
//! `Host`; a bearer token needs neither (a browser never attaches it by
//! itself, so there is nothing to forge), but every state-changing request
//! made with one is written to the audit log before it runs, and each token
//! has its own rate limit. Handlers get a [`Caller`].

use crate::access::{Access, Role};
use crate::audit::AuditLog;
use crate::audit::NewAudit;
use crate::problem::Problem;
use crate::ratelimit::{ClientIp, RateLimit};
use crate::session::{Session, Sessions, Throttle};
use crate::tokens::{TOKEN_PREFIX, TokenStore};
use crate::users::UserStore;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

pub const SESSION_COOKIE: &str = "apos_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Shared state of authentication, one per server (`Arc<AuthCore>`).
#[derive(Debug)]
pub struct AuthCore {
    pub users: Arc<UserStore>,
    pub sessions: Sessions,
    pub throttle: Throttle,
    pub audit: Arc<AuditLog>,
    /// Lets anyone without a session read viewer routes (GET/HEAD only).
    pub anonymous_view: bool,
    /// Adds `Secure` to the session cookie (set when the listener has TLS).
    pub secure_cookie: bool,
    /// Bearer token accepted, as a viewer, for GET `/metrics*` only.
    pub metrics_token: Option<String>,
    /// API tokens (in the users file); `None` refuses every `apos_` token.
    pub tokens: Option<Arc<TokenStore>>,
    /// Rate limits; the per-token one is applied by the access guard, the
    /// per-address one by [`RateLimit::layer`] around the router.
    pub rate: Option<Arc<RateLimit>>,
}

/// Who is calling; inserted by the access middleware of every non-public route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<String>,
    pub role: Role,
    /// The client: the TCP peer, or behind a configured trusted proxy the
    /// address it forwarded ([`crate::ratelimit`]).
    pub addr: Option<IpAddr>,
    /// No session and no API token: anonymous view or the metrics token.
    pub anonymous: bool,
    /// The session behind the call, when there is one.
    pub session: Option<Session>,
    /// The id of the API token behind the call, when there is one.
    pub token: Option<String>,
}

impl Caller {
    /// For audit entries: the client address or "".
    pub fn addr_string(&self) -> String {
        self.addr.map(|a| a.to_string()).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(Problem::unauthorized)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

pub struct RouteTable<S> {
    core: Arc<AuthCore>,
    routes: Vec<RouteInfo>,
    paths: BTreeMap<&'static str, MethodRouter<S>>,
}

impl<S> std::fmt::Debug for RouteTable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Guard {
    core: Arc<AuthCore>,
    access: Access,
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub fn new(core: Arc<AuthCore>) -> RouteTable<S> {
        RouteTable {
            core,
            routes: Vec::new(),
            paths: BTreeMap::new(),
        }
    }

    pub fn core(&self) -> &Arc<AuthCore> {
        &self.core
    }

    /// Registers `handler` for `method` on `path` (axum syntax, `{param}`).
    /// A GET route also answers HEAD. Registering the same method and path
    /// twice, or a method axum cannot route, is a programming error: it is
    /// logged (and asserted in debug builds) and the route is skipped.
    pub fn add<H, T>(
        &mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> &mut Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            tracing::error!(%method, path, "route method cannot be routed; route skipped");
            debug_assert!(false, "route method {method} cannot be routed");
            return self;
        };
        if self
            .routes
            .iter()
            .any(|r| r.method == method && r.path == path)
        {
            tracing::error!(%method, path, "route registered twice; second one skipped");
            debug_assert!(false, "route {method} {path} registered twice");
            return self;
        }
        let mut mr: MethodRouter<S> = on(filter, handler);
        if access != Access::Public {
            mr = mr.layer(from_fn_with_state(
                Guard {
                    core: self.core.clone(),
                    access,
                },
                guard,
            ));
        }
        let merged = match self.paths.remove(path) {
            Some(existing) => existing.merge(mr),
            None => mr,
        };
        self.paths.insert(path, merged);
        self.routes.push(RouteInfo {
            method,
            path,
            access,
        });
        self
    }

    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
    }

    /// The router; handlers can also extract `Extension<Arc<AuthCore>>`.
    pub fn into_router(self) -> Router<S> {
        let mut router = Router::new();
        for (path, mr) in self.paths {
            router = router.route(path, mr);
        }
        router.layer(axum::Extension(self.core))
    }
}

/// The client address: as resolved by the rate-limit layer (trusted
/// proxies), else the TCP peer when the server was started with connect info.
pub fn client_addr(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn is_safe(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD || *m == Method::OPTIONS
}

/// An `Origin` header, when present, must be this server: scheme + Host.
fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

fn forbidden(detail: &str) -> Response {
    Problem::new(StatusCode::FORBIDDEN, detail).into_response()
}

async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let Access::Role(needed) = g.access else {
        return next.run(req).await;
    };
    let core = &g.core;
    let addr = client_addr(req.extensions());
    let method = req.method().clone();
    let headers = req.headers();

    if let Some(presented) = bearer(headers)
        && presented.starts_with(TOKEN_PREFIX)
    {
        let presented = presented.to_owned();
        return token_call(core, needed, &presented, addr, req, next).await;
    }

    if let (Some(presented), Some(expected)) = (bearer(headers), core.metrics_token.as_deref())
        && (method == Method::GET || method == Method::HEAD)
        && req.uri().path().starts_with("/metrics")
        && needed == Role::Viewer
        && crate::util::ct_eq(presented.as_bytes(), expected.as_bytes())
    {
        req.extensions_mut().insert(Caller {
            user: None,
            role: Role::Viewer,
            addr,
            anonymous: true,
            session: None,
            token: None,
        });
        return next.run(req).await;
    }

    let session =
        cookie(headers, SESSION_COOKIE).and_then(|t| core.sessions.get(t, Instant::now()));
    let caller = match session {
        Some(s) => {
            if !s.role.allows(needed) {
                return Problem::forbidden().into_response();
            }
            if !is_safe(&method) {
                let csrf_ok = headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| s.csrf_matches(v));
                if !csrf_ok {
                    return forbidden(
                        "missing or wrong CSRF token: send the session's csrf value in the X-CSRF-Token header",
                    );
                }
                if !origin_ok(headers) {
                    return forbidden("the Origin header does not match this server");
                }
            }
            Caller {
                user: Some(s.user.clone()),
                role: s.role,
                addr,
                anonymous: false,
                session: Some(s),
                token: None,
            }
        }
        // Anonymous view is read-only: a state-changing request still needs a login.
        None if core.anonymous_view && needed == Role::Viewer && is_safe(&method) => Caller {
            user: None,
            role: Role::Viewer,
            addr,
            anonymous: true,
            session: None,
            token: None,
        },
        None => return Problem::unauthorized().into_response(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Longest request path written to the audit log (the path is the caller's text).
const AUDIT_PATH_MAX: usize = 256;

/// A request with an API token: valid, strong enough, within its rate, and
/// for a state change recorded in the audit log first (no entry, no write).
async fn token_call(
    core: &Arc<AuthCore>,
    needed: Role,
    presented: &str,
    addr: Option<IpAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(tokens) = core.tokens.clone() else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "API tokens are not accepted by this server",
        )
        .into_response();
    };
    let presented = presented.to_owned();
    let found =
        tokio::task::spawn_blocking(move || tokens.authenticate(&presented, crate::util::now_ms()))
            .await;
    let token = match found {
        Ok(Ok(Some(t))) => t,
        Ok(Ok(None)) => {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "the API token is unknown, expired or revoked",
            )
            .into_response();
        }
        Ok(Err(e)) => return Problem::from(e).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "API token check failed");
            return Problem::internal("internal error; see the server log").into_response();
        }
    };
    if let Some(rate) = &core.rate
        && let Err(wait) = rate.check_token(&token.id)
    {
        return crate::ratelimit::rate_limited(wait, "API token");
    }
    if !token.role.allows(needed) {
        return Problem::forbidden().into_response();
    }
    let addr_s = addr.map(|a| a.to_string()).unwrap_or_default();
    if !is_safe(req.method()) {
        let path: String = req
            .uri()
            .path()
            .chars()
            .take(AUDIT_PATH_MAX)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let entry = NewAudit {
            actor: token.owner.clone(),
            action: "token_write".into(),
            target: format!("{} {path}", req.method()),
            detail: format!("token={} name={}", token.id, token.name),
            addr: addr_s,
        };
        let log = core.audit.clone();
        let written =
            tokio::task::spawn_blocking(move || log.append(entry, crate::util::now_ms())).await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::error!(
                token = token.id,
                "could not audit a write made with an API token; refused"
            );
            return Problem::internal(
                "the request was not carried out: its audit entry could not be written",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(Caller {
        user: Some(token.owner),
        role: token.role,
        addr,
        anonymous: false,
        session: None,
        token: Some(token.id),
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn cookie_parsing() {
        let m = h(&[
            (header::COOKIE, "a=1; apos_session=tok; b=2"),
            (header::COOKIE, "c=3"),
        ]);
        assert_eq!(cookie(&m, "apos_session"), Some("tok"));
        assert_eq!(cookie(&m, "c"), Some("3"));
        assert_eq!(cookie(&m, "apos"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
    }

    #[test]
    fn origin_rules() {
        assert!(origin_ok(&h(&[(header::HOST, "gw:8080")])));
        assert!(origin_ok(&h(&[
            (header::HOST, "gw:8080"),
            (header::ORIGIN, "https://gw:8080")
        ])));
        assert!(origin_ok(&h(&[
            (header::HOST, "gw:8080"),
            (header::ORIGIN, "http://GW:8080")
        ])));
        assert!(!origin_ok(&h(&[
            (header::HOST, "gw:8080"),
            (header::ORIGIN, "http://gw:8081")
        ])));
        assert!(!origin_ok(&h(&[
            (header::HOST, "gw"),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!origin_ok(&h(&[
            (header::HOST, "gw"),
            (header::ORIGIN, "null")
        ])));
        assert!(!origin_ok(&h(&[(header::ORIGIN, "http://gw")])));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer(&h(&[(header::AUTHORIZATION, "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&h(&[(header::AUTHORIZATION, "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&h(&[(header::AUTHORIZATION, "Basic abc")])), None);
    }
}
