//! Integration tests of the web core through a real router built with
//! `RouteTable`, driven by `tower::ServiceExt::oneshot` (and real sockets
//! for `serve`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assets;
mod auth;
mod ratelimit;
mod serve;
mod tokens;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Router};
use rusqlite::Connection;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;
use web::access::{Access, Role};
use web::audit::AuditLog;
use web::ratelimit::{RateConfig, RateLimit};
use web::routes::{AuthCore, Caller, RouteInfo, RouteTable};
use web::session::{Sessions, Throttle};
use web::tokens::TokenStore;
use web::users::{HashParams, UserStore};

pub const CLIENT: &str = "192.0.2.7:50000";
pub const USERS: [(&str, Role); 5] = [
    ("view", Role::Viewer),
    ("op", Role::Operator),
    ("ana", Role::Analyst),
    ("eng", Role::Engineer),
    ("admin", Role::Admin),
];

pub fn password(user: &str) -> String {
    format!("password-of-{user}")
}

#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub anonymous_view: bool,
    pub secure_cookie: bool,
    pub metrics_token: Option<String>,
    /// Rate limits: the per-token one in the guard, the per-address layer
    /// around the router.
    pub rate: Option<RateConfig>,
}

#[derive(Debug)]
pub struct App {
    pub router: Router,
    pub routes: Vec<RouteInfo>,
    pub core: Arc<AuthCore>,
    pub conn: Arc<Mutex<Connection>>,
    _dir: tempfile::TempDir,
}

async fn whoami(Extension(caller): Extension<Caller>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "user": caller.user,
        "role": caller.role,
        "anonymous": caller.anonymous,
        "addr": caller.addr.map(|a| a.to_string()),
    }))
}

async fn ack(caller: Caller, axum::extract::Path(name): axum::extract::Path<String>) -> String {
    format!("{name} acked by {}", caller.user.unwrap_or_default())
}

pub fn app(opts: Opts) -> App {
    let dir = tempfile::tempdir().unwrap();
    let users = Arc::new(
        UserStore::open_with_params(
            &dir.path().join("users.db"),
            HashParams::new(8, 1, 1, None).unwrap(),
        )
        .unwrap(),
    );
    for (name, role) in USERS {
        users.add(name, role, &password(name)).unwrap();
    }
    let conn = Arc::new(Mutex::new(
        Connection::open(dir.path().join("history.db")).unwrap(),
    ));
    let audit = AuditLog::new(conn.clone(), None).unwrap();
    let core = Arc::new(AuthCore {
        users: users.clone(),
        sessions: Sessions::default(),
        throttle: Throttle::new(),
        audit: Arc::new(audit),
        anonymous_view: opts.anonymous_view,
        secure_cookie: opts.secure_cookie,
        metrics_token: opts.metrics_token,
        tokens: Some(Arc::new(TokenStore::for_users(&users).unwrap())),
        rate: opts.rate.map(|r| RateLimit::new(r).unwrap()),
    });
    let mut table = RouteTable::<()>::new(core.clone());
    web::auth_api::add_auth_routes(&mut table);
    table
        .add(Method::GET, "/api/v1/health", Access::Public, || async {
            "ok"
        })
        .add(
            Method::GET,
            "/api/v1/thing",
            Access::Role(Role::Viewer),
            whoami,
        )
        .add(
            Method::POST,
            "/api/v1/alarms/{name}/ack",
            Access::Role(Role::Operator),
            ack,
        )
        .add(
            Method::GET,
            "/api/v1/eng",
            Access::Role(Role::Engineer),
            whoami,
        )
        .add(
            Method::PUT,
            "/api/v1/eng",
            Access::Role(Role::Admin),
            whoami,
        )
        .add(
            Method::GET,
            "/metrics",
            Access::Role(Role::Viewer),
            || async { web::metrics::response("up 1\n".into()) },
        );
    let routes = table.routes().to_vec();
    let router = table
        .into_router()
        .route("/extra", get(|| async { "outside the table" }));
    let router = match &core.rate {
        Some(rate) => rate.layer(router),
        None => router,
    };
    App {
        router,
        routes,
        core,
        conn,
        _dir: dir,
    }
}

/// A request builder with the test client's address attached.
pub fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "gw.local:8080")
        .extension(ConnectInfo(CLIENT.parse::<SocketAddr>().unwrap()))
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

pub async fn send(app: &App, r: Request<Body>) -> Reply {
    let resp: Response<Body> = app.router.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn login_req(user: &str, pw: &str) -> Request<Body> {
    req(Method::POST, "/api/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"user": user, "password": pw}).to_string(),
        ))
        .unwrap()
}

#[derive(Debug)]
pub struct Login {
    pub token: String,
    pub csrf: String,
    pub set_cookie: String,
}

impl Login {
    pub fn cookie(&self) -> String {
        format!("apos_session={}", self.token)
    }
}

pub async fn login(app: &App, user: &str) -> Login {
    let r = send(app, login_req(user, &password(user))).await;
    assert_eq!(r.status, StatusCode::OK, "login {user}: {:?}", r.json());
    let set_cookie = r.header(header::SET_COOKIE).to_owned();
    let token = set_cookie
        .strip_prefix("apos_session=")
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_owned();
    Login {
        token,
        csrf: r.json()["csrf"].as_str().unwrap().to_owned(),
        set_cookie,
    }
}
