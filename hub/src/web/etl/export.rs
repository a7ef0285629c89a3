//! `/api/v1/etl/exports…` (docs/export.md): windows, KPIs, forecasts or
//! alarms as CSV or Parquet, run as jobs (etl::export::jobs): start one,
//! follow its progress, download the file (a `.tar` of the hive tree when
//! partitioned), cancel or remove it. Analyst role; every start and every
//! download is written to the audit log.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead as _;
use utoipa::ToSchema;
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::{Caller, RouteTable};

use crate::etl::export::jobs::{self, Job, JobState};
use crate::etl::export::{ExportError, Format, Spec, What, parse_time};
use crate::web::St;

/// Registers these routes.
pub fn add(t: &mut RouteTable<St>) {
    let analyst = Access::Role(Role::Analyst);
    t.add(Method::POST, "/api/v1/etl/exports", analyst, start)
        .add(Method::GET, "/api/v1/etl/exports", analyst, list)
        .add(Method::GET, "/api/v1/etl/exports/{id}", analyst, status)
        .add(Method::DELETE, "/api/v1/etl/exports/{id}", analyst, remove)
        .add(
            Method::GET,
            "/api/v1/etl/exports/{id}/download",
            analyst,
            download,
        );
}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(start, list, status, remove, download),
    components(schemas(NewExport, Job, JobList, JobState, What, Format, Problem))
)]
pub struct Doc;

/// An export to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExport {
    pub what: What,
    /// Range start, inclusive: RFC 3339 with a zone (`2026-12-01T00:00:00Z`).
    /// Windows and KPIs by their start, forecasts by their origin, alarms by
    /// their time.
    pub from: String,
    /// Range end, exclusive, RFC 3339 with a zone.
    pub to: String,
    /// Only these sites (empty or absent: all).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only these nodes.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Only these tags (windows, forecasts), KPIs (kpis) or alarms (alarms).
    #[serde(default)]
    pub tags: Vec<String>,
    pub format: Format,
    /// A tree partitioned by site and day (hive layout), downloaded as .tar.
    #[serde(default)]
    pub partition: bool,
}

/// Export jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<Job>,
}

fn dir(st: &St) -> PathBuf {
    jobs::dir(&st.config.storage_path)
}

fn problem(e: ExportError) -> Problem {
    match e {
        ExportError::Invalid(m) => Problem::bad_request(m),
        ExportError::Busy => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => {
            tracing::error!(error = %e, "export failed");
            Problem::internal("the export could not be started; see the hub log")
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::internal("the export task failed; see the hub log"))
}

async fn audit(
    st: &St,
    caller: &Caller,
    action: &str,
    target: String,
    detail: String,
) -> Result<(), Problem> {
    match st.audit(caller, action, target, detail).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "audit log: cannot record an export");
            Err(Problem::internal(
                "the audit log cannot be written; see the hub log",
            ))
        }
    }
}

/// Start an export; it runs in the background (follow it by its `id`).
#[utoipa::path(post, path = "/api/v1/etl/exports", tag = "etl",
    request_body(content = NewExport, content_type = "application/json"),
    responses(
        (status = 202, description = "started (queued); Location is the job", body = Job),
        (status = 400, description = "bad what, time, filter or format", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "too many exports queued", body = Problem, content_type = "application/problem+json")))]
pub async fn start(
    State(st): State<St>,
    caller: Caller,
    body: Result<Json<NewExport>, JsonRejection>,
) -> Result<Response, Problem> {
    let b = body
        .map_err(|e| match e {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the export as Content-Type: application/json",
            ),
            e => Problem::bad_request(format!("body: {}", e.body_text())),
        })?
        .0;
    let from_ms = parse_time(&b.from).map_err(|e| Problem::bad_request(format!("from: {e}")))?;
    let to_ms = parse_time(&b.to).map_err(|e| Problem::bad_request(format!("to: {e}")))?;
    let spec = Spec {
        what: b.what,
        from_ms,
        to_ms,
        sites: b.sites,
        nodes: b.nodes,
        tags: b.tags,
        format: b.format,
        partition: b.partition,
    };
    spec.validate().map_err(problem)?;
    let by = caller.user.clone().unwrap_or_else(|| "anonymous".into());
    let (d, s2) = (dir(&st), spec.clone());
    let job = blocking(move || jobs::create(&d, &s2, &by))
        .await?
        .map_err(problem)?;
    if let Err(p) = audit(&st, &caller, "export", job.id.clone(), spec.describe()).await {
        jobs::remove(&dir(&st), &job.id);
        return Err(p);
    }
    tokio::spawn(jobs::run(dir(&st), job.clone(), spec, st.reads.clone()));
    let mut r = (StatusCode::ACCEPTED, Json(job.clone())).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/etl/exports/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Export jobs (the finished ones are kept for a day), newest first.
#[utoipa::path(get, path = "/api/v1/etl/exports", tag = "etl",
    responses((status = 200, description = "the jobs", body = JobList)))]
pub async fn list(State(st): State<St>) -> Result<Json<JobList>, Problem> {
    let d = dir(&st);
    Ok(Json(JobList {
        items: blocking(move || jobs::list(&d)).await?,
    }))
}

async fn job(st: &St, p: Result<Path<String>, PathRejection>) -> Result<Job, Problem> {
    let Path(id) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    let d = dir(st);
    blocking(move || jobs::get(&d, &id))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no such export"))
}

/// One export job: state, progress, rows and size.
#[utoipa::path(get, path = "/api/v1/etl/exports/{id}", tag = "etl",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, description = "the job", body = Job),
              (status = 404, description = "no such export", body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(st): State<St>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Job>, Problem> {
    Ok(Json(job(&st, p).await?))
}

/// Cancel a running export, or remove a finished one and its file.
#[utoipa::path(delete, path = "/api/v1/etl/exports/{id}", tag = "etl",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 204, description = "cancelled or removed"),
              (status = 404, description = "no such export", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(st): State<St>,
    p: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    let d = dir(&st);
    if blocking(move || jobs::remove(&d, &id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, "no such export"))
    }
}

/// The finished export: the Parquet or CSV file, or a .tar of the
/// partitioned tree.
#[utoipa::path(get, path = "/api/v1/etl/exports/{id}/download", tag = "etl",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, description = "the file (application/vnd.apache.parquet, text/csv or application/x-tar)"),
              (status = 404, description = "no such export", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "not finished (or failed)", body = Problem, content_type = "application/problem+json")))]
pub async fn download(
    State(st): State<St>,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let job = job(&st, p).await?;
    let Some(path) = jobs::download(&dir(&st), &job) else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "the export is {:?}, not done: nothing to download",
                job.state
            )
            .to_lowercase(),
        ));
    };
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(error = %e, path = %path.display(), "export download");
        Problem::new(StatusCode::NOT_FOUND, "the export's file is gone")
    })?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    audit(
        &st,
        &caller,
        "export_download",
        job.id.clone(),
        job.file_name.clone(),
    )
    .await?;
    let mut r = Response::new(Body::new(FileBody {
        file,
        buf: vec![0; 64 * 1024],
    }));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&job.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(n) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", job.file_name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// A file streamed as a response body, 64 KiB at a time (an export can be
/// larger than the memory the hub has).
struct FileBody {
    file: tokio::fs::File,
    buf: Vec<u8>,
}

impl hyper::body::Body for FileBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(hyper::body::Frame::data(
                bytes::Bytes::copy_from_slice(rb.filled()),
            )))),
        }
    }
}
