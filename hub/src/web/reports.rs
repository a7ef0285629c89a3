//! The reports routes (docs/insights.md, "Reports"; docs/hub-api.md):
//! the stored reports, one made on demand, and each one's HTML and PDF.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::{St, now_ms};
use crate::report::{self, ReportMeta, Request};

/// The report pages' own policy: no script, styles inline, framed only by
/// the hub (the Reports page prints through a frame).
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// Registers these routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    t.add(Method::GET, "/api/v1/reports", viewer, list)
        .add(
            Method::POST,
            "/api/v1/reports",
            Access::Role(Role::Analyst),
            make,
        )
        .add(Method::GET, "/api/v1/reports/{id}/html", viewer, html)
        .add(Method::GET, "/api/v1/reports/{id}/pdf", viewer, pdf);
}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(list, make, html, pdf),
    components(schemas(ReportList, ReportMeta, Scheduled, MakeReport, Problem))
)]
pub struct Doc;

/// A configured `[[report]]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scheduled {
    pub name: String,
    pub site: String,
    /// Span covered, seconds.
    pub period_s: u64,
    /// When, in words (`daily at 06:00 Europe/Berlin`, `every 1h`).
    pub schedule: String,
    pub pdf: bool,
}

/// The stored reports and the schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    /// Newest first.
    pub items: Vec<ReportMeta>,
    pub scheduled: Vec<Scheduled>,
}

/// A report to make now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeReport {
    /// The site.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: String,
    /// The span covered, ending at `to`: e.g. `1d`, `6h` (default `1d`).
    pub period: Option<String>,
    /// End of the period (RFC 3339 with a zone, or ms); default now.
    pub to: Option<String>,
}

fn scheduled(st: &St) -> Vec<Scheduled> {
    st.config
        .reports
        .iter()
        .map(|r| Scheduled {
            name: r.name.clone(),
            site: r.site.clone(),
            period_s: r.period.as_secs(),
            schedule: match &r.schedule {
                crate::config::Schedule::Every(d) => {
                    format!("every {}", humantime::format_duration(*d))
                }
                crate::config::Schedule::Daily { minute, zone, days } => format!(
                    "{} at {:02}:{:02} {zone}",
                    if *days == 1 {
                        "daily".to_owned()
                    } else {
                        format!("every {days} days (from Monday)")
                    },
                    minute / 60,
                    minute % 60
                ),
            },
            pdf: r.chromium.is_some(),
        })
        .collect()
}

fn failed(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "reports");
    Problem::internal("the reports could not be read; see the hub log")
}

/// The stored reports, newest first, and the configured schedule.
#[utoipa::path(get, path = "/api/v1/reports", tag = "analysis",
    responses((status = 200, description = "stored reports and schedule", body = ReportList)))]
pub async fn list(State(st): State<St>) -> Result<Json<ReportList>, Problem> {
    let dir = report::dir(&st.config.storage_path);
    let items = tokio::task::spawn_blocking(move || report::list(&dir))
        .await
        .map_err(failed)?
        .map_err(failed)?;
    Ok(Json(ReportList {
        items,
        scheduled: scheduled(&st),
    }))
}

/// One report at a time: each may run a Chromium.
fn one_at_a_time() -> &'static Semaphore {
    static S: OnceLock<Semaphore> = OnceLock::new();
    S.get_or_init(|| Semaphore::new(1))
}

/// Make a report of one site now (HTML, and PDF when Chromium is there);
/// announced by the webhook like a scheduled one.
#[utoipa::path(post, path = "/api/v1/reports", tag = "analysis",
    request_body = MakeReport,
    responses((status = 201, description = "the report made", body = ReportMeta),
              (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "another report is being made; retry after Retry-After", body = Problem, content_type = "application/problem+json")))]
pub async fn make(
    State(st): State<St>,
    body: Result<Json<MakeReport>, JsonRejection>,
) -> Result<Response, Problem> {
    let b = body
        .map_err(|e| Problem::bad_request(format!("body: {}", e.body_text())))?
        .0;
    super::params::check_id("site", &b.site)?;
    let period = match b.period.as_deref() {
        None => 86_400_000,
        Some(p) => humantime::parse_duration(p)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .filter(|ms| (60_000..=366 * 86_400_000).contains(ms))
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "period: {p:?} is not a duration from 1 minute to 366 days (e.g. \"1d\", \"6h\")"
                ))
            })?,
    };
    let to = match b.to.as_deref() {
        None => now_ms(),
        Some(t) => super::params::parse_time("to", t)?,
    };
    // Busy is a 429 with a retry time, not a 5xx: nothing is wrong.
    let Ok(_permit) = one_at_a_time().try_acquire() else {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "another report is being made; try again in 10 s",
        );
        p.retry_after = Some(std::time::Duration::from_secs(10));
        return Err(p);
    };
    let cfg = st.config.clone();
    let chromium = match cfg.reports.iter().find(|r| r.site == b.site) {
        Some(r) => r.chromium.clone(),
        None => Some(std::path::PathBuf::from(crate::config::DEFAULT_CHROMIUM)),
    };
    let hub = report::run::hub_name(&cfg);
    let req = Request {
        name: format!("{}-on-demand", b.site),
        site: b.site,
        from_ms: to.saturating_sub(period),
        to_ms: to,
        trigger: "demand",
        chromium,
        hub: hub.clone(),
    };
    let reads = st.reads.clone();
    let dir = report::dir(&cfg.storage_path);
    let meta = tokio::task::spawn_blocking(move || report::make(&reads, &dir, &req))
        .await
        .map_err(failed)?
        .map_err(|e| match e {
            report::ReportError::Bad(why) => Problem::bad_request(why),
            e => failed(e),
        })?;
    report::run::announce(
        &cfg,
        &hub,
        &meta,
        tokio_util::sync::CancellationToken::new(),
    );
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

async fn file(
    st: St,
    id: Result<Path<String>, PathRejection>,
    ext: &'static str,
) -> Result<Response, Problem> {
    let Path(id) = id.map_err(|e| Problem::bad_request(e.body_text()))?;
    if !report::valid_id(&id) {
        return Err(Problem::bad_request(
            "id: a report id as the list gives it (letters, digits, `-`, `_`)",
        ));
    }
    let dir = report::dir(&st.config.storage_path);
    let idc = id.clone();
    let bytes =
        tokio::task::spawn_blocking(move || report::file(&dir, &idc, ext).map(std::fs::read))
            .await
            .map_err(failed)?;
    let bytes = match bytes {
        None => return Err(Problem::not_found()),
        Some(r) => r.map_err(failed)?,
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    let (ct, disp) = match ext {
        "pdf" => ("application/pdf", format!("inline; filename=\"{id}.pdf\"")),
        _ => (
            "text/html; charset=utf-8",
            format!("inline; filename=\"{id}.html\""),
        ),
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(v) = HeaderValue::from_str(&disp) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}

/// A report as HTML (printable: it has a print stylesheet).
#[utoipa::path(get, path = "/api/v1/reports/{id}/html", tag = "analysis",
    params(("id" = String, Path, description = "report id")),
    responses((status = 200, description = "the report", content_type = "text/html"),
              (status = 400, description = "bad id", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such report", body = Problem, content_type = "application/problem+json")))]
pub async fn html(
    State(st): State<St>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    file(st, id, "html").await
}

/// A report as PDF (404 when it was stored as HTML only: see `pdf_note`).
#[utoipa::path(get, path = "/api/v1/reports/{id}/pdf", tag = "analysis",
    params(("id" = String, Path, description = "report id")),
    responses((status = 200, description = "the report", content_type = "application/pdf"),
              (status = 400, description = "bad id", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such PDF", body = Problem, content_type = "application/problem+json")))]
pub async fn pdf(
    State(st): State<St>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    file(st, id, "pdf").await
}
