//! The operator HMI: one axum listener (`[hmi]`) serving the embedded pages,
//! the JSON API under `/api/v1/` (docs/hmi-api.md), the live WebSocket and
//! Prometheus `/metrics`.
//!
//! Users, sessions, CSRF, the audit log and asset serving are the shared
//! `web` crate's; this module only says which routes exist, who may use
//! them ([`routes`]) and what they answer from the running edge.
//!
//! ```text
//! live table ──every 200 ms, one scan──▶ fanout task ──Arc<str> frames (broadcast 16; a lagging socket is closed 4000)──▶ sockets
//! alarm task ──Notice (broadcast 1024)──────────────────────────────────────────────────────────────────────────────────▶ sockets
//! ```

pub mod api;
pub mod live;
pub mod metrics;
pub mod setpoints;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http::Method;
use firmware_config::{EdgeConfig, Hmi};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use web::access::{Access, Role};
use web::assets::Assets;
use web::routes::{AuthCore, RouteTable};

use crate::EdgeError;
use crate::alarm::board::AlarmHandle;
use crate::pipeline::{LiveTable, PipelineStats};

/// The edge HMI's pages (edge-node/hmi), embedded in every build.
#[derive(rust_embed::RustEmbed)]
#[folder = "hmi/"]
struct EdgePages;

/// Shared styles, scripts and uPlot (web/assets), under `/common/`.
#[derive(rust_embed::RustEmbed)]
#[folder = "../web/assets/"]
struct CommonAssets;

/// The pages and shared assets as served.
pub fn assets() -> Assets {
    Assets::new()
        .with::<EdgePages>("")
        .with::<CommonAssets>("common/")
}

/// Everything the handlers read.
#[derive(Debug)]
pub struct HmiState {
    pub live: LiveTable,
    pub stats: Arc<PipelineStats>,
    pub history_stats: Arc<crate::history::WriterStats>,
    pub sync_stats: Arc<crate::sync::SyncStats>,
    pub models: crate::forecast::Models,
    pub kpis: crate::kpi::KpiBoard,
    pub alarms: AlarmHandle,
    pub config: watch::Receiver<Arc<EdgeConfig>>,
    pub drivers: Arc<Mutex<Vec<drivers::DriverHandle>>>,
    /// The approval queue (empty and `enabled: false` without `[setpoints]`).
    pub setpoints: crate::setpoint::run::SetpointHandle,
    pub assets: Assets,
    pub core: Arc<AuthCore>,
    pub started_ms: i64,
    pub ws_clients: AtomicU64,
    pub fanout: live::Fanout,
    /// When a sample last reached the pipeline (the data path's pulse).
    pub last_sample_ms: std::sync::atomic::AtomicI64,
}

pub type St = Arc<HmiState>;

/// Every route of the HMI and who may use it. The route sweep test reads
/// this table, so a new route cannot escape the access checks.
pub fn routes(core: Arc<AuthCore>) -> RouteTable<St> {
    let mut t = RouteTable::new(core);
    web::auth_api::add_auth_routes(&mut t);
    let viewer = Access::Role(Role::Viewer);
    let operator = Access::Role(Role::Operator);
    t.add(Method::GET, "/api/v1/health", Access::Public, api::health)
        .add(
            Method::GET,
            "/api/v1/openapi.json",
            Access::Public,
            api::openapi,
        )
        .add(Method::GET, "/api/v1/overview", viewer, api::overview)
        .add(Method::GET, "/api/v1/tags", viewer, api::tags)
        .add(
            Method::GET,
            "/api/v1/tags/{tag}/history",
            viewer,
            api::history,
        )
        .add(Method::GET, "/api/v1/history.csv", viewer, api::history_csv)
        .add(Method::GET, "/api/v1/kpis", viewer, api::kpis)
        .add(Method::GET, "/api/v1/forecasts", viewer, api::forecasts)
        .add(Method::GET, "/api/v1/alarms", viewer, api::alarms)
        .add(
            Method::GET,
            "/api/v1/alarms/history",
            viewer,
            api::alarm_history,
        )
        .add(Method::GET, "/api/v1/diagnostics", viewer, api::diagnostics)
        .add(Method::GET, "/api/v1/live", viewer, live::upgrade)
        .add(Method::GET, "/metrics", viewer, metrics::metrics)
        .add(
            Method::POST,
            "/api/v1/alarms/{name}/ack",
            operator,
            api::ack,
        )
        .add(
            Method::POST,
            "/api/v1/alarms/{name}/shelve",
            operator,
            api::shelve,
        )
        .add(
            Method::POST,
            "/api/v1/alarms/{name}/unshelve",
            operator,
            api::unshelve,
        )
        .add(Method::GET, "/api/v1/setpoints", viewer, setpoints::list)
        .add(
            Method::POST,
            "/api/v1/setpoints/{id}/approve",
            operator,
            setpoints::approve,
        )
        .add(
            Method::POST,
            "/api/v1/setpoints/{id}/reject",
            operator,
            setpoints::reject,
        );
    t
}

/// The whole router: the route table, then the pages for any other GET.
pub fn router(state: St) -> axum::Router {
    let table = routes(state.core.clone());
    table.into_router().fallback(api::asset).with_state(state)
}

/// A running HMI.
#[derive(Debug)]
pub struct HmiHandle {
    pub local_addr: SocketAddr,
    pub tls: bool,
    pub state: St,
    task: tokio::task::JoinHandle<()>,
    fanout_task: tokio::task::JoinHandle<()>,
}

impl HmiHandle {
    /// The address an operator types.
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
        self.fanout_task.abort();
    }
}

/// The pieces of a running edge the HMI shows.
#[derive(Debug)]
pub struct Parts {
    pub live: LiveTable,
    pub stats: Arc<PipelineStats>,
    pub history_stats: Arc<crate::history::WriterStats>,
    pub sync_stats: Arc<crate::sync::SyncStats>,
    pub models: crate::forecast::Models,
    pub kpis: crate::kpi::KpiBoard,
    pub alarms: AlarmHandle,
    pub config: watch::Receiver<Arc<EdgeConfig>>,
    pub drivers: Arc<Mutex<Vec<drivers::DriverHandle>>>,
    pub setpoints: crate::setpoint::run::SetpointHandle,
}

/// Open the users and audit stores, bind the listener and serve until `cancel`.
pub async fn start(
    hmi: &Hmi,
    history: &std::path::Path,
    outbox: Option<crate::sync::outbox::OutboxPolicy>,
    parts: Parts,
    cancel: CancellationToken,
) -> Result<HmiHandle, EdgeError> {
    let users_file = hmi.users_file.clone();
    let db = history.to_path_buf();
    let token_file = hmi.metrics_token_file.clone();
    let (users, audit, metrics_token, tokens) = tokio::task::spawn_blocking(move || {
        let users = web::users::UserStore::open(&users_file).map_err(|e| {
            EdgeError::Internal(format!("users database {}: {e}", users_file.display()))
        })?;
        let conn = rusqlite::Connection::open(&db)
            .map_err(|e| EdgeError::Internal(format!("audit log in {}: {e}", db.display())))?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        let audit = web::audit::AuditLog::new(
            Arc::new(std::sync::Mutex::new(conn)),
            outbox.map(audit_hook),
        )
        .map_err(|e| EdgeError::Internal(format!("audit log in {}: {e}", db.display())))?;
        let token = match token_file {
            Some(p) => Some(read_token(&p)?),
            None => None,
        };
        let tokens = web::tokens::TokenStore::for_users(&users).map_err(|e| {
            EdgeError::Internal(format!("API tokens in {}: {e}", users_file.display()))
        })?;
        Ok::<_, EdgeError>((users, audit, token, tokens))
    })
    .await
    .map_err(|e| EdgeError::Internal(e.to_string()))??;
    if users.count().unwrap_or(0) == 0 {
        tracing::warn!(
            users = %hmi.users_file.display(),
            "the HMI has no users yet: create the first admin with `apos-edge user add NAME --role admin`"
        );
    }
    let core = Arc::new(AuthCore {
        users: Arc::new(users),
        sessions: web::session::Sessions::default(),
        throttle: web::session::Throttle::new(),
        audit: Arc::new(audit),
        anonymous_view: hmi.anonymous_view,
        secure_cookie: hmi.tls.is_some(),
        metrics_token,
        // API tokens as on the hub, with the per-token rate limit at the
        // hub's defaults (the per-address layer is not on the HMI router).
        tokens: Some(Arc::new(tokens)),
        rate: web::ratelimit::RateLimit::new(web::ratelimit::RateConfig::default()).ok(),
    });
    let (fanout, fanout_run) = live::Fanout::new();
    let state = Arc::new(HmiState {
        live: parts.live,
        stats: parts.stats,
        history_stats: parts.history_stats,
        sync_stats: parts.sync_stats,
        models: parts.models,
        kpis: parts.kpis,
        alarms: parts.alarms,
        config: parts.config,
        drivers: parts.drivers,
        setpoints: parts.setpoints,
        assets: assets(),
        core,
        started_ms: drivers::Timestamp::now().as_millis(),
        ws_clients: AtomicU64::new(0),
        fanout,
        last_sample_ms: std::sync::atomic::AtomicI64::new(drivers::Timestamp::now().as_millis()),
    });
    let fanout_task = tokio::spawn(fanout_run.run(state.clone(), cancel.clone()));
    let tls = hmi.tls.as_ref().map(|t| web::serve::TlsFiles {
        cert: t.cert_file.clone(),
        key: t.key_file.clone(),
    });
    // The per-address limit needs the TCP peer, which only the listener
    // knows: it wraps the served router, not `router` (tests call that one
    // without a connection).
    let app = match state.core.rate.clone() {
        Some(rate) => rate.layer(router(state.clone())),
        None => router(state.clone()),
    };
    let bound = web::serve::serve(app, hmi.listen, tls, cancel)
        .await
        .map_err(|e| EdgeError::Internal(format!("HMI listener: {e}")))?;
    let handle = HmiHandle {
        local_addr: bound.local_addr,
        tls: hmi.tls.is_some(),
        state,
        task: bound.task,
        fanout_task,
    };
    tracing::info!(url = %handle.url(), "operator HMI listening");
    Ok(handle)
}

/// Protocol text fields hold at most this many bytes (protocol::check).
const RECORD_TEXT: usize = protocol::check::MAX_TEXT;

fn record_text(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + c.len_utf8() > RECORD_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// The hub's copy of an audit entry (text cut to the protocol's bounds; the
/// hash is the edge's).
pub fn audit_record(e: &web::audit::AuditEntry) -> protocol::v1::AuditRecord {
    protocol::v1::AuditRecord {
        seq: u64::try_from(e.seq).unwrap_or(0),
        ts_ms: e.ts_ms,
        actor: record_text(&e.actor),
        action: record_text(&e.action),
        target: record_text(&e.target),
        detail: record_text(&e.detail),
        addr: record_text(&e.addr),
        hash: e.hash.clone(),
    }
}

/// Every audit entry is queued for the hub in the transaction that writes it.
pub fn audit_hook(policy: crate::sync::outbox::OutboxPolicy) -> web::audit::AuditHook {
    Box::new(move |tx, e| {
        let body = protocol::v1::Body::Audit(vec![audit_record(e)]);
        crate::history::queue_one(tx, &body, &policy, e.ts_ms)
            .map(|_| ())
            .map_err(|err| match err {
                crate::history::HistoryError::Sqlite(s) => s,
                other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
            })
    })
}

fn read_token(p: &std::path::Path) -> Result<String, EdgeError> {
    let t = std::fs::read_to_string(p)
        .map_err(|e| EdgeError::Internal(format!("metrics token file {}: {e}", p.display())))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(EdgeError::Internal(format!(
            "metrics token file {}: the token is shorter than 16 characters; write a long random one (e.g. `openssl rand -hex 24`)",
            p.display()
        )));
    }
    Ok(t)
}
