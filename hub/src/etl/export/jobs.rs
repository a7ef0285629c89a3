//! Exports as jobs: the web API starts one and returns at once; the job
//! runs on the blocking pool (one at a time: an export reads the whole
//! range and the hub's host is small), reports DuckDB's progress, and
//! leaves its file in the hub's state directory for [`KEEP`].
//!
//! ```text
//! <storage dir>/exports/<id>/job.json             the job as the API shows it
//!                           /apos-<what>-<from>-<to>.parquet|csv   the download
//!                           /apos-<what>-<from>-<to>.tar           (partitioned: the tree, archived)
//! ```
//!
//! The directory is beside the fleet database, inside the state directory
//! that systemd's `ProtectSystem=strict` leaves writable. Old jobs are
//! removed whenever jobs are created or listed, so no timer is needed. A
//! job that was queued or running when the hub stopped is shown as failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ExportError, Format, Outcome, Progress, Spec, What, format_time};
use crate::store::{ReadPool, Store};

/// How long a finished export is kept for download.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// Most jobs queued or running at once; more are refused (503).
pub const MAX_PENDING: usize = 8;

/// Exports of this process that are queued or running, by job id.
static LIVE: LazyLock<Mutex<HashMap<String, Arc<Progress>>>> = LazyLock::new(Default::default);
/// One export runs at a time; the others wait their turn.
static SLOT: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| tokio::sync::Semaphore::new(1));

fn live() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Progress>>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The exports directory of the hub whose fleet database is `storage`.
pub fn dir(storage: &Path) -> PathBuf {
    storage
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("exports")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// One export job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub what: What,
    pub format: Format,
    pub partition: bool,
    /// Range start, inclusive (RFC 3339, UTC).
    pub from: String,
    /// Range end, exclusive.
    pub to: String,
    pub sites: Vec<String>,
    pub nodes: Vec<String>,
    pub tags: Vec<String>,
    /// Who asked (user name, or `cli`).
    pub by: String,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// Percent done while running (DuckDB's estimate; null when it has none).
    pub progress: Option<f64>,
    pub rows: Option<u64>,
    /// Data files written (1 unless partitioned).
    pub files: Option<u64>,
    /// Size of the download in bytes.
    pub bytes: Option<u64>,
    /// The download's file name (`.tar` for a partitioned export).
    pub file_name: String,
    /// The download's media type.
    pub media_type: String,
    pub error: Option<String>,
    /// When the download is removed (finished jobs).
    pub expires_ms: Option<i64>,
}

impl Job {
    fn new(id: String, spec: &Spec, by: &str, now: i64) -> Job {
        Job {
            id,
            state: JobState::Queued,
            what: spec.what,
            format: spec.format,
            partition: spec.partition,
            from: format_time(spec.from_ms),
            to: format_time(spec.to_ms),
            sites: spec.sites.clone(),
            nodes: spec.nodes.clone(),
            tags: spec.tags.clone(),
            by: by.to_owned(),
            created_ms: now,
            finished_ms: None,
            progress: None,
            rows: None,
            files: None,
            bytes: None,
            file_name: spec.file_name(),
            media_type: media_type(spec).to_owned(),
            error: None,
            expires_ms: None,
        }
    }
}

pub fn media_type(spec: &Spec) -> &'static str {
    match (spec.partition, spec.format) {
        (true, _) => "application/x-tar",
        (false, Format::Parquet) => "application/vnd.apache.parquet",
        (false, Format::Csv) => "text/csv; charset=utf-8",
    }
}

fn now_ms() -> i64 {
    crate::web::now_ms()
}

/// Job ids are 16 letters and digits: safe as a directory name.
pub fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn new_id() -> String {
    web::users::random_password().chars().take(16).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn save(dir: &Path, job: &Job) -> Result<(), ExportError> {
    let d = dir.join(&job.id);
    let tmp = d.join("job.json.tmp");
    let text = serde_json::to_vec_pretty(job).map_err(|e| ExportError::Invalid(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, d.join("job.json")).map_err(io(&d))
}

fn load(dir: &Path, id: &str) -> Option<Job> {
    let text = std::fs::read(dir.join(id).join("job.json")).ok()?;
    let mut job: Job = serde_json::from_slice(&text).ok()?;
    if matches!(job.state, JobState::Queued | JobState::Running) {
        match live().get(id) {
            Some(p) => job.progress = p.percent(),
            None => {
                job.state = JobState::Failed;
                job.error = Some("the hub stopped before the export finished".into());
            }
        }
    }
    Some(job)
}

fn make_dir(dir: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    crate::files::restrict(dir);
    Ok(())
}

/// Register a new job (queued) for `spec`, asked for by `by`.
pub fn create(dir: &Path, spec: &Spec, by: &str) -> Result<Job, ExportError> {
    spec.validate()?;
    make_dir(dir)?;
    cleanup(dir);
    let mut l = live();
    if l.len() >= MAX_PENDING {
        return Err(ExportError::Busy);
    }
    let job = Job::new(new_id(), spec, by, now_ms());
    let d = dir.join(&job.id);
    std::fs::create_dir(&d).map_err(io(&d))?;
    save(dir, &job)?;
    l.insert(job.id.clone(), Arc::new(Progress::new()));
    Ok(job)
}

/// Run a created job to its end (waits for its turn first).
pub async fn run(dir: PathBuf, mut job: Job, spec: Spec, reads: Arc<ReadPool>) {
    let Some(progress) = live().get(&job.id).cloned() else {
        return;
    };
    let permit = SLOT.acquire().await;
    if !progress.is_cancelled() {
        job.state = JobState::Running;
        if let Err(e) = save(&dir, &job) {
            tracing::warn!(error = %e, "export job: cannot record its state");
        }
        let (d, p, name) = (dir.join(&job.id), progress.clone(), job.file_name.clone());
        let r = tokio::task::spawn_blocking(move || {
            reads.read(|store| Ok(write(store, &spec, &d, &name, Some(&p))))
        })
        .await;
        match r {
            Ok(Ok(Ok(out))) => {
                job.state = JobState::Done;
                job.rows = Some(out.rows);
                job.files = Some(out.files);
                job.bytes = Some(out.bytes);
                job.progress = Some(100.0);
            }
            Ok(Ok(Err(ExportError::Cancelled))) => job.state = JobState::Cancelled,
            Ok(Ok(Err(e))) => fail(&mut job, e.to_string()),
            Ok(Err(e)) => fail(&mut job, e.to_string()),
            Err(e) => fail(&mut job, format!("the export task failed: {e}")),
        }
    } else {
        job.state = JobState::Cancelled;
    }
    drop(permit);
    let now = now_ms();
    job.finished_ms = Some(now);
    job.expires_ms = Some(now + KEEP.as_millis() as i64);
    if job.state == JobState::Cancelled {
        let _ = std::fs::remove_dir_all(dir.join(&job.id));
    } else if let Err(e) = save(&dir, &job) {
        tracing::warn!(error = %e, "export job: cannot record its end");
    }
    live().remove(&job.id);
    match job.state {
        JobState::Failed => {
            tracing::warn!(id = %job.id, error = ?job.error, "export failed")
        }
        _ => tracing::info!(id = %job.id, state = ?job.state, rows = ?job.rows, "export ended"),
    }
}

fn fail(job: &mut Job, why: String) {
    job.state = JobState::Failed;
    job.error = Some(why);
}

/// Export into the job directory `d` as `name`: the file itself, or for a
/// partitioned export the tree archived as `name` (a .tar).
fn write(
    store: &Store,
    spec: &Spec,
    d: &Path,
    name: &str,
    progress: Option<&Progress>,
) -> Result<Outcome, ExportError> {
    if !spec.partition {
        return super::export(store.connection(), spec, &d.join(name), progress);
    }
    let tree = d.join("tree");
    let out = super::export(store.connection(), spec, &tree, progress)?;
    let tar = d.join(name);
    let r = super::write_tar(&tree, &tar).map_err(io(&tar));
    let _ = std::fs::remove_dir_all(&tree);
    r?;
    let bytes = std::fs::metadata(&tar).map_err(io(&tar))?.len();
    Ok(Outcome { bytes, ..out })
}

/// Every job, newest first.
pub fn list(dir: &Path) -> Vec<Job> {
    cleanup(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut jobs: Vec<Job> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            valid_id(&id).then(|| load(dir, &id)).flatten()
        })
        .collect();
    jobs.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
    jobs
}

pub fn get(dir: &Path, id: &str) -> Option<Job> {
    valid_id(id).then(|| load(dir, id)).flatten()
}

/// The finished download of a job.
pub fn download(dir: &Path, job: &Job) -> Option<PathBuf> {
    let p = dir.join(&job.id).join(&job.file_name);
    (job.state == JobState::Done && p.is_file()).then_some(p)
}

/// Cancel a queued or running job, or remove a finished one. False when
/// there is no such job.
pub fn remove(dir: &Path, id: &str) -> bool {
    if !valid_id(id) {
        return false;
    }
    if let Some(p) = live().get(id) {
        p.cancel();
        return true;
    }
    let d = dir.join(id);
    d.join("job.json").is_file() && std::fs::remove_dir_all(&d).is_ok()
}

/// Remove the jobs that ended more than [`KEEP`] ago (or were interrupted
/// by a stop of the hub that long ago).
pub fn cleanup(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let cutoff = now_ms() - KEEP.as_millis() as i64;
    for e in entries.filter_map(|e| e.ok()) {
        let id = e.file_name().to_string_lossy().into_owned();
        if !valid_id(&id) || live().contains_key(&id) {
            continue;
        }
        let old = match load(dir, &id) {
            Some(j) => j.finished_ms.unwrap_or(j.created_ms) < cutoff,
            // No readable job.json: a leftover; judged by its age.
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > KEEP),
        };
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// For `apos-hub export` through the running hub: export now (the caller
/// waits), recorded as a job by `cli`, and answer where the result is:
/// `path=…`, `rows=…`, `files=…`, `bytes=…` lines. A partitioned export
/// is left as its tree (the CLI copies it); the CLI removes the job.
pub fn export_for_cli(store: &Store, db: &Path, spec: &Spec) -> Result<String, ExportError> {
    let dir = dir(db);
    let mut job = create(&dir, spec, "cli")?;
    let d = dir.join(&job.id);
    let out = if spec.partition {
        d.join("tree")
    } else {
        d.join(&job.file_name)
    };
    let r = super::export(store.connection(), spec, &out, None);
    live().remove(&job.id);
    let r = match r {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&d);
            return Err(e);
        }
    };
    job.state = JobState::Done;
    job.rows = Some(r.rows);
    job.files = Some(r.files);
    job.bytes = Some(r.bytes);
    job.finished_ms = Some(now_ms());
    save(&dir, &job)?;
    Ok(format!(
        "path={}\nrows={}\nfiles={}\nbytes={}\njob={}\n",
        out.display(),
        r.rows,
        r.files,
        r.bytes,
        d.display()
    ))
}
