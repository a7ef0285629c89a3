//! The analysts' web application: one axum listener (`[web]`) serving the
//! embedded dashboards, the REST API under `/api/v1/` (docs/hub-api.md),
//! the live WebSocket, Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! Users, API tokens, sessions, CSRF, the audit log and asset serving are
//! the shared `web` crate's; this module says which routes exist, who may
//! use them ([`routes`]) and what they answer from the fleet database.
//! Every query runs on the blocking pool through a [`ReadPool`] connection
//! (DuckDB MVCC: the ingest thread keeps committing meanwhile).
//!
//! ```text
//! ingest (after commit) ──Event (broadcast 1024; a lagging socket resyncs)──▶ live sockets
//! DuckDB ◀──read pool (blocking threads)── REST handlers
//! ```

pub mod alerts;
pub mod analysis;
pub mod cache;
pub mod etl;
pub mod forecasting;
pub mod insights;
pub mod live;
pub mod metrics;
pub mod monitoring;
pub mod ops;
pub mod optimization;
pub mod params;
pub mod reports;
pub mod sql;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use web::assets::Assets;
use web::problem::Problem;
use web::routes::{AuthCore, RouteTable};

use crate::config::{HubConfig, Web};
use crate::store::{ReadPool, Store, StoreError};

/// The hub's pages (hub/web), embedded in every build.
#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct HubPages;

/// Shared styles, scripts and uPlot (web/assets), under `/common/`.
#[derive(rust_embed::RustEmbed)]
#[folder = "../web/assets/"]
struct CommonAssets;

/// The pages and shared assets as served.
pub fn assets() -> Assets {
    Assets::new()
        .with::<HubPages>("")
        .with::<CommonAssets>("common/")
}

/// Everything the handlers read.
#[derive(Debug)]
pub struct WebState {
    pub reads: Arc<ReadPool>,
    pub core: Arc<AuthCore>,
    pub assets: Assets,
    pub config: Arc<HubConfig>,
    /// The ingest is connected and subscribed.
    pub ready: watch::Receiver<bool>,
    pub events: crate::events::Events,
    pub started_ms: i64,
    pub ws_clients: AtomicU64,
    /// KPI summaries until the next KPI commit.
    pub kpi_cache: Arc<cache::KpiCache>,
    /// Downsampled tag ranges until one of their nodes stores a batch.
    pub series_cache: Arc<cache::SeriesCache>,
    /// Setpoint optimization, when `[[optimization]]` problems are configured.
    pub optimizer: Option<Arc<crate::optimize::Optimizer>>,
}

pub type St = Arc<WebState>;

impl WebState {
    /// Append to the hub's audit log, off the async threads; the actor is
    /// the caller's user ("anonymous" without one), the address its peer.
    pub async fn audit(
        self: &Arc<Self>,
        caller: &web::routes::Caller,
        action: &str,
        target: String,
        detail: String,
    ) -> Result<(), String> {
        let core = self.core.clone();
        let e = web::audit::NewAudit {
            actor: caller.user.clone().unwrap_or_else(|| "anonymous".into()),
            action: action.into(),
            target,
            detail,
            addr: caller.addr_string(),
        };
        match tokio::task::spawn_blocking(move || core.audit.append(e, now_ms())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Run a blocking query on a read connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Problem> {
        let reads = self.reads.clone();
        match tokio::task::spawn_blocking(move || reads.read(f)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(StoreError::Busy(why))) => Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                why,
            )),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "fleet database query failed");
                Err(Problem::internal(
                    "the fleet database query failed; see the hub log",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "fleet database query panicked");
                Err(Problem::internal(
                    "the fleet database query failed; see the hub log",
                ))
            }
        }
    }
}

/// Every route of the hub and who may use it. The route sweep test and the
/// OpenAPI document read this table, so a route cannot escape either.
pub fn routes(core: Arc<AuthCore>) -> RouteTable<St> {
    let mut t = RouteTable::new(core);
    web::auth_api::add_auth_routes(&mut t);
    ops::add(&mut t);
    monitoring::add(&mut t);
    analysis::add(&mut t);
    forecasting::add(&mut t);
    etl::add(&mut t);
    sql::add(&mut t);
    insights::add(&mut t);
    reports::add(&mut t);
    optimization::add(&mut t);
    alerts::add(&mut t);
    live::add(&mut t);
    t
}

/// The whole router: the route table, then the pages for any other GET;
/// all of it behind the per-address rate limit, which also resolves the
/// client address behind `[web] trusted_proxies`.
pub fn router(state: St) -> axum::Router {
    let table = routes(state.core.clone());
    let rate = state.core.rate.clone();
    let app = table
        .into_router()
        .fallback(ops::asset)
        // Outermost but after routing, so it sees the route template.
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state);
    match rate {
        Some(rate) => rate.layer(app),
        None => app,
    }
}

/// A running web application.
#[derive(Debug)]
pub struct WebHandle {
    pub local_addr: SocketAddr,
    pub tls: bool,
    pub state: St,
    task: tokio::task::JoinHandle<()>,
}

impl WebHandle {
    /// The address an analyst types.
    pub fn url(&self) -> String {
        let host = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match self.local_addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        };
        format!(
            "{}://{host}:{}/",
            if self.tls { "https" } else { "http" },
            self.local_addr.port()
        )
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Errors of starting the web application.
#[derive(Debug, thiserror::Error)]
pub enum WebStartError {
    #[error("users database {path}: {source}")]
    Users { path: String, source: web::WebError },
    #[error("audit log in {path}: {detail}")]
    Audit { path: String, detail: String },
    #[error("metrics token file {path}: {detail}")]
    Token { path: String, detail: String },
    #[error("web listener: {0}")]
    Listen(web::WebError),
    #[error("{0}")]
    Internal(String),
}

/// Open the users and audit stores, bind the listener and serve until `cancel`.
pub async fn start(
    cfg: Arc<HubConfig>,
    w: &Web,
    reads: Arc<ReadPool>,
    ready: watch::Receiver<bool>,
    events: crate::events::Events,
    optimizer: Option<Arc<crate::optimize::Optimizer>>,
    cancel: CancellationToken,
) -> Result<WebHandle, WebStartError> {
    let users_file = w.users_file.clone();
    let token_file = w.metrics_token_file.clone();
    let (users, audit, metrics_token, tokens) = tokio::task::spawn_blocking(move || {
        let users =
            web::users::UserStore::open(&users_file).map_err(|source| WebStartError::Users {
                path: users_file.display().to_string(),
                source,
            })?;
        let audit_err = |detail: String| WebStartError::Audit {
            path: users_file.display().to_string(),
            detail,
        };
        let conn = rusqlite::Connection::open(&users_file).map_err(|e| audit_err(e.to_string()))?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        let audit = web::audit::AuditLog::new(Arc::new(std::sync::Mutex::new(conn)), None)
            .map_err(|e| audit_err(e.to_string()))?;
        let token = match token_file {
            Some(p) => Some(read_token(&p)?),
            None => None,
        };
        let tokens =
            web::tokens::TokenStore::for_users(&users).map_err(|source| WebStartError::Users {
                path: users_file.display().to_string(),
                source,
            })?;
        Ok::<_, WebStartError>((users, audit, token, tokens))
    })
    .await
    .map_err(|e| WebStartError::Internal(e.to_string()))??;
    if users.count().unwrap_or(0) == 0 {
        tracing::warn!(
            users = %w.users_file.display(),
            "the hub web application has no users yet: create the first admin with `apos-hub user add NAME --role admin`"
        );
    }
    let rate = web::ratelimit::RateLimit::new(web::ratelimit::RateConfig {
        per_second: w.rate_limit,
        burst: w.rate_burst,
        trusted_proxies: w.trusted_proxies.clone(),
    })
    .map_err(|e| WebStartError::Internal(format!("[web] rate limits: {e}")))?;
    let core = Arc::new(AuthCore {
        users: Arc::new(users),
        sessions: web::session::Sessions::default(),
        throttle: web::session::Throttle::new(),
        audit: Arc::new(audit),
        anonymous_view: false,
        secure_cookie: w.tls.is_some(),
        metrics_token,
        tokens: Some(Arc::new(tokens)),
        rate: Some(rate),
    });
    let state = Arc::new(WebState {
        reads,
        core,
        assets: assets(),
        config: cfg,
        ready,
        events,
        started_ms: now_ms(),
        ws_clients: AtomicU64::new(0),
        kpi_cache: Arc::new(cache::KpiCache::default()),
        series_cache: Arc::new(cache::SeriesCache::default()),
        optimizer,
    });
    tokio::spawn(cache::follow(
        state.kpi_cache.clone(),
        state.series_cache.clone(),
        state.events.clone(),
        cancel.clone(),
    ));
    let tls = w.tls.as_ref().map(|(cert, key)| web::serve::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    });
    let bound = web::serve::serve(router(state.clone()), w.listen, tls, cancel)
        .await
        .map_err(WebStartError::Listen)?;
    let handle = WebHandle {
        local_addr: bound.local_addr,
        tls: w.tls.is_some(),
        state,
        task: bound.task,
    };
    tracing::info!(url = %handle.url(), "hub web application listening");
    Ok(handle)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn read_token(p: &std::path::Path) -> Result<String, WebStartError> {
    let err = |detail: String| WebStartError::Token {
        path: p.display().to_string(),
        detail,
    };
    let t = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(err(
            "the token is shorter than 16 characters; write a long random one (e.g. `openssl rand -hex 24`)".into(),
        ));
    }
    Ok(t)
}
