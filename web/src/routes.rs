//! The route table: every route with its access level, so the set can be
//! listed (and swept by tests) and the check is applied in one place.
//!
//! Per route, a middleware resolves the caller from the `apos_session`
//! cookie (or the metrics bearer token), answers 401 without a session and
//! 403 for too weak a role, and for state-changing methods requires the
//! session's CSRF token in `X-CSRF-Token` and an `Origin` (when sent) that
//! matches `Host`. Handlers get a [`Caller`].

use crate::access::{Access, Role};
use crate::audit::AuditLog;
use crate::problem::Problem;
use crate::session::{Session, Sessions, Throttle};
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
}

/// Who is calling; inserted by the access middleware of every non-public route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<String>,
    pub role: Role,
    /// The TCP peer; forwarded headers are not trusted.
    pub addr: Option<IpAddr>,
    /// No session: anonymous view or the metrics token.
    pub anonymous: bool,
    /// The session behind the call, when there is one.
    pub session: Option<Session>,
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

/// The TCP peer, when the server was started with connect info.
pub fn client_addr(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
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
            }
        }
        // Anonymous view is read-only: a state-changing request still needs a login.
        None if core.anonymous_view && needed == Role::Viewer && is_safe(&method) => Caller {
            user: None,
            role: Role::Viewer,
            addr,
            anonymous: true,
            session: None,
        },
        None => return Problem::unauthorized().into_response(),
    };
    req.extensions_mut().insert(caller);
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
