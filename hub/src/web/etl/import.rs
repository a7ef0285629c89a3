//! `/api/v1/etl/imports…` and `/api/v1/etl/import-profiles…`
//! (docs/import.md): upload a historian export (streamed to a file beside
//! the fleet database, never held in memory), get a proposed profile,
//! start the import, poll its progress, read its validation report; saved
//! import profiles. Importing and changing profiles need the analyst role.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::{Caller, RouteTable};

use crate::etl::import::{self, ImportError, Job, Profile, ProgressView, Proposal, Started};
use crate::store::imported::{ImportRecord, Rejection};
use crate::web::St;

/// Largest upload: a year of a large historian's export fits.
pub const MAX_UPLOAD_BYTES: u64 = 4 << 30;
/// Uploads never imported are deleted after this long.
const UPLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Registers these routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    let analyst = Access::Role(Role::Analyst);
    t.add(Method::POST, "/api/v1/etl/imports/uploads", analyst, upload)
        .add(Method::POST, "/api/v1/etl/imports", analyst, start)
        .add(Method::GET, "/api/v1/etl/imports", viewer, list)
        .add(Method::GET, "/api/v1/etl/imports/{id}", viewer, status)
        .add(
            Method::GET,
            "/api/v1/etl/imports/{id}/rejections",
            viewer,
            rejections,
        )
        .add(Method::GET, "/api/v1/etl/import-profiles", viewer, profiles)
        .add(
            Method::GET,
            "/api/v1/etl/import-profiles/{name}",
            viewer,
            get_profile,
        )
        .add(
            Method::PUT,
            "/api/v1/etl/import-profiles/{name}",
            analyst,
            put_profile,
        )
        .add(
            Method::DELETE,
            "/api/v1/etl/import-profiles/{name}",
            analyst,
            delete_profile,
        );
}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        upload,
        start,
        list,
        status,
        rejections,
        profiles,
        get_profile,
        put_profile,
        delete_profile
    ),
    components(schemas(
        Uploaded,
        Proposal,
        Profile,
        import::TagMap,
        import::Layout,
        StartRequest,
        StartAnswer,
        ImportRecord,
        ImportStatus,
        ProgressView,
        RejectionPage,
        Rejection,
        SavedProfile,
        Problem
    ))
)]
pub struct Doc;

fn work_dir(st: &St) -> std::path::PathBuf {
    st.config
        .storage_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .join("imports")
}

fn check_token(what: &str, s: &str) -> Result<(), Problem> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "{what}: 1–128 of A–Z a–z 0–9 . _ -"
        )))
    }
}

fn problem(e: ImportError) -> Problem {
    match e {
        ImportError::Empty | ImportError::Unreadable(_) | ImportError::Profile(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        ImportError::Unknown(_) => Problem::new(StatusCode::NOT_FOUND, e.to_string()),
        e => {
            tracing::error!(error = %e, "import failed");
            Problem::internal(format!("the import failed: {e}"))
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImportError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(problem),
        Err(e) => Err(Problem::internal(format!("the import task failed: {e}"))),
    }
}

/// Parameters of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The file's name (shown in the list; `.csv` or `.xlsx`).
    pub name: Option<String>,
    /// Site and node the proposed profile names (default `import`, `historian`).
    pub site: Option<String>,
    pub node: Option<String>,
}

/// An uploaded file, ready to import.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// Pass as `upload` to start the import.
    pub upload: String,
    pub name: String,
    pub bytes: u64,
    /// A profile proposed from the header, to confirm or correct.
    pub proposal: Option<Proposal>,
    /// Why there is no proposal (an empty or unreadable file).
    pub proposal_error: Option<String>,
}

/// Upload a historian export (the request body is the file).
#[utoipa::path(post, path = "/api/v1/etl/imports/uploads", tag = "etl",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
                 description = "the CSV or .xlsx file, at most 4 GiB"),
    responses((status = 201, description = "stored; with a proposed profile", body = Uploaded),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json"),
              (status = 413, description = "larger than 4 GiB", body = Problem, content_type = "application/problem+json")))]
pub async fn upload(
    State(st): State<St>,
    q: Result<Query<UploadParams>, QueryRejection>,
    body: Body,
) -> Result<impl IntoResponse, Problem> {
    let q = q
        .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))?
        .0;
    let name = q.name.unwrap_or_else(|| "upload".into());
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', '\0']) {
        return Err(Problem::bad_request("name: a file name, 1–255 bytes"));
    }
    let site = q.site.unwrap_or_else(|| "import".into());
    let node = q.node.unwrap_or_else(|| "historian".into());
    check_token("site", &site)?;
    check_token("node", &node)?;
    let dir = work_dir(&st);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Problem::internal(format!("cannot create {}: {e}", dir.display())))?;
    sweep_uploads(&dir).await;
    let id = crate::random_password()[..16].to_owned();
    let path = dir.join(format!("upload-{id}"));
    let part = dir.join(format!("upload-{id}.part"));
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| Problem::internal(format!("cannot create an upload file: {e}")))?;
    let mut bytes = 0u64;
    let mut body = body;
    let written: Result<(), Problem> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Problem::bad_request(format!("body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                bytes += data.len() as u64;
                if bytes > MAX_UPLOAD_BYTES {
                    return Err(Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the file is larger than {MAX_UPLOAD_BYTES} bytes"),
                    ));
                }
                file.write_all(&data)
                    .await
                    .map_err(|e| Problem::internal(format!("writing the upload: {e}")))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| Problem::internal(format!("writing the upload: {e}")))?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(p) = written {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(p);
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| Problem::internal(format!("storing the upload: {e}")))?;
    let _ = tokio::fs::write(dir.join(format!("upload-{id}.name")), name.as_bytes()).await;
    let p2 = path.clone();
    let proposal = tokio::task::spawn_blocking(move || import::propose(&p2, &site, &node)).await;
    let (proposal, proposal_error) = match proposal {
        Ok(Ok(p)) => (Some(p), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            upload: id,
            name,
            bytes,
            proposal,
            proposal_error,
        }),
    ))
}

/// Delete uploads older than a day (never imported).
async fn sweep_uploads(dir: &std::path::Path) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        let old = e
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UPLOAD_TTL);
        if old && e.file_name().to_string_lossy().starts_with("upload-") {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

/// What to import, and how.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// An upload's id.
    pub upload: String,
    /// A saved profile's name; with `profile` too, the name it is saved
    /// under when `save_profile` is true.
    pub profile_name: Option<String>,
    /// The profile itself (else the saved one named).
    pub profile: Option<Profile>,
    #[serde(default)]
    pub save_profile: bool,
}

/// A started import, or the earlier one of the same file and profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartAnswer {
    pub id: String,
    /// True: this file was imported with this profile before; nothing was
    /// stored again (`record` is that import).
    pub already_imported: bool,
    pub record: Option<ImportRecord>,
}

/// Start importing an upload.
#[utoipa::path(post, path = "/api/v1/etl/imports", tag = "etl",
    request_body = StartRequest,
    responses((status = 202, description = "running; poll /api/v1/etl/imports/{id}", body = StartAnswer),
              (status = 200, description = "imported before with this profile: nothing done", body = StartAnswer),
              (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such upload or profile", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "the profile does not fit, or the file is empty or unreadable", body = Problem, content_type = "application/problem+json")))]
pub async fn start(
    State(st): State<St>,
    caller: Caller,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<impl IntoResponse, Problem> {
    let req = body
        .map_err(|e| Problem::bad_request(format!("body: {}", e.body_text())))?
        .0;
    check_token("upload", &req.upload)?;
    if let Some(n) = &req.profile_name {
        check_token("profile_name", n)?;
    }
    let dir = work_dir(&st);
    let file = dir.join(format!("upload-{}", req.upload));
    if !file.is_file() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no upload {} (uploads are kept for a day)", req.upload),
        ));
    }
    let file_name = std::fs::read_to_string(dir.join(format!("upload-{}.name", req.upload)))
        .unwrap_or_else(|_| req.upload.clone());
    let profile = match (req.profile, &req.profile_name) {
        (Some(p), _) => p,
        (None, Some(n)) => {
            let n2 = n.clone();
            let json = st.read(move |s| s.import_profile(&n2)).await?;
            let json = json.ok_or_else(|| {
                Problem::new(StatusCode::NOT_FOUND, format!("no import profile {n:?}"))
            })?;
            serde_json::from_str(&json)
                .map_err(|e| Problem::internal(format!("saved profile {n:?}: {e}")))?
        }
        (None, None) => {
            return Err(Problem::bad_request("give profile or profile_name"));
        }
    };
    profile.check().map_err(problem)?;
    if req.save_profile {
        let Some(n) = req.profile_name.clone() else {
            return Err(Problem::bad_request("save_profile needs profile_name"));
        };
        let json = serde_json::to_string(&profile).unwrap_or_default();
        st.read(move |s| s.put_import_profile(&n, &json, jiff::Timestamp::now().as_millisecond()))
            .await?;
    }
    let _ = std::fs::remove_file(dir.join(format!("upload-{}.name", req.upload)));
    let job = Job {
        file,
        file_name,
        profile,
        profile_name: req.profile_name,
        by_user: caller.user.clone(),
        remove_file: true,
        work_dir: dir,
    };
    let reads = st.reads.clone();
    match blocking(move || import::start(reads, job)).await? {
        Started::Already(r) => Ok((
            StatusCode::OK,
            Json(StartAnswer {
                id: r.id.clone(),
                already_imported: true,
                record: Some(*r),
            }),
        )),
        Started::Running { id } => Ok((
            StatusCode::ACCEPTED,
            Json(StartAnswer {
                id,
                already_imported: false,
                record: None,
            }),
        )),
    }
}

/// Imports, newest first (at most 200).
#[utoipa::path(get, path = "/api/v1/etl/imports", tag = "etl",
    responses((status = 200, description = "imports, newest first", body = Vec<ImportRecord>)))]
pub async fn list(State(st): State<St>) -> Result<Json<Vec<ImportRecord>>, Problem> {
    Ok(Json(st.read(|s| s.import_records(200)).await?))
}

/// An import and, while it runs, its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportStatus {
    pub record: ImportRecord,
    /// Null when this hub process did not run it (or long ago).
    pub progress: Option<ProgressView>,
}

fn import_id(p: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(id) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    check_token("id", &id)?;
    Ok(id)
}

/// One import: counts, status and progress.
#[utoipa::path(get, path = "/api/v1/etl/imports/{id}", tag = "etl",
    params(("id" = String, Path, description = "the import's id")),
    responses((status = 200, description = "the import", body = ImportStatus),
              (status = 400, description = "bad id", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such import", body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(st): State<St>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ImportStatus>, Problem> {
    let id = import_id(id)?;
    let id2 = id.clone();
    let record = st
        .read(move |s| s.import_record(&id2))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no import {id}")))?;
    Ok(Json(ImportStatus {
        progress: import::progress(&id),
        record,
    }))
}

/// Paging of the rejections.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Rejections skipped (default 0).
    pub offset: Option<u64>,
    /// 1–10000 (default 1000).
    pub limit: Option<u64>,
}

/// A page of an import's validation report.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionPage {
    pub id: String,
    /// Every rejection of the import.
    pub total: u64,
    pub rows_rejected: u64,
    pub rows_accepted: u64,
    pub items: Vec<Rejection>,
}

/// The rejected rows and cells of an import, by row, with the reason.
#[utoipa::path(get, path = "/api/v1/etl/imports/{id}/rejections", tag = "etl",
    params(("id" = String, Path, description = "the import's id"), PageParams),
    responses((status = 200, description = "rejections by row", body = RejectionPage),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such import", body = Problem, content_type = "application/problem+json")))]
pub async fn rejections(
    State(st): State<St>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<RejectionPage>, Problem> {
    let id = import_id(id)?;
    let q = q
        .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))?
        .0;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request("limit: 1–10000"));
    }
    let offset = q.offset.unwrap_or(0).min(i64::MAX as u64);
    let id2 = id.clone();
    let (record, items) = st
        .read(move |s| {
            Ok((
                s.import_record(&id2)?,
                s.import_rejections(&id2, offset, limit)?,
            ))
        })
        .await?;
    let record =
        record.ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no import {id}")))?;
    Ok(Json(RejectionPage {
        id,
        total: record.rejections,
        rows_rejected: record.rows_rejected,
        rows_accepted: record.rows_accepted,
        items,
    }))
}

/// A saved import profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedProfile {
    pub name: String,
    pub profile: Profile,
    pub updated_ms: i64,
}

fn profile_name(p: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(n) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    check_token("name", &n)?;
    Ok(n)
}

/// The saved import profiles, by name.
#[utoipa::path(get, path = "/api/v1/etl/import-profiles", tag = "etl",
    responses((status = 200, description = "profiles by name", body = Vec<SavedProfile>)))]
pub async fn profiles(State(st): State<St>) -> Result<Json<Vec<SavedProfile>>, Problem> {
    let rows = st.read(|s| s.import_profiles()).await?;
    Ok(Json(
        rows.into_iter()
            .filter_map(|(name, json, updated_ms)| {
                serde_json::from_str(&json)
                    .ok()
                    .map(|profile| SavedProfile {
                        name,
                        profile,
                        updated_ms,
                    })
            })
            .collect(),
    ))
}

/// One saved import profile.
#[utoipa::path(get, path = "/api/v1/etl/import-profiles/{name}", tag = "etl",
    params(("name" = String, Path, description = "the profile's name")),
    responses((status = 200, description = "the profile", body = Profile),
              (status = 400, description = "bad name", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such profile", body = Problem, content_type = "application/problem+json")))]
pub async fn get_profile(
    State(st): State<St>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Profile>, Problem> {
    let name = profile_name(name)?;
    let n2 = name.clone();
    let json = st
        .read(move |s| s.import_profile(&n2))
        .await?
        .ok_or_else(|| {
            Problem::new(StatusCode::NOT_FOUND, format!("no import profile {name:?}"))
        })?;
    serde_json::from_str(&json)
        .map(Json)
        .map_err(|e| Problem::internal(format!("saved profile {name:?}: {e}")))
}

/// Save (create or replace) an import profile.
#[utoipa::path(put, path = "/api/v1/etl/import-profiles/{name}", tag = "etl",
    params(("name" = String, Path, description = "the profile's name")),
    request_body = Profile,
    responses((status = 200, description = "saved", body = Profile),
              (status = 400, description = "bad name or body", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "the profile is not valid", body = Problem, content_type = "application/problem+json")))]
pub async fn put_profile(
    State(st): State<St>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<Profile>, JsonRejection>,
) -> Result<Json<Profile>, Problem> {
    let name = profile_name(name)?;
    let profile = body
        .map_err(|e| Problem::bad_request(format!("body: {}", e.body_text())))?
        .0;
    profile.check().map_err(problem)?;
    let json = serde_json::to_string(&profile).unwrap_or_default();
    st.read(move |s| s.put_import_profile(&name, &json, jiff::Timestamp::now().as_millisecond()))
        .await?;
    Ok(Json(profile))
}

/// Delete a saved import profile (imports made with it keep their copy).
#[utoipa::path(delete, path = "/api/v1/etl/import-profiles/{name}", tag = "etl",
    params(("name" = String, Path, description = "the profile's name")),
    responses((status = 204, description = "deleted"),
              (status = 400, description = "bad name", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such profile", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_profile(
    State(st): State<St>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let name = profile_name(name)?;
    let n2 = name.clone();
    if st.read(move |s| s.delete_import_profile(&n2)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no import profile {name:?}"),
        ))
    }
}
