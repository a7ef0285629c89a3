//! Historian exports (CSV, .xlsx) into the fleet database (docs/import.md).
//!
//! ```text
//! file ──source (CSV records | xlsx cells, streamed)──▶ Mapper: time, tag, value, range
//!   │                                                     │ accepted samples   │ rejections
//!   │                                                     ▼                    ▼
//!   └─ sha256 + profile hash: imported before? ──▶ staging DuckDB file: duplicates, windows
//!                                                         │ ATTACH, ≤100k windows per tx
//!                                                         ▼
//!                        fleet DB: aggregates (source = 'import:<id>', seq 0), imports,
//!                                  import_rejections, tag_units; chart rollup refreshed
//! ```
//!
//! An import runs on a thread of its own; [`progress`] reports it while it
//! runs (the API, the UI and the CLI poll it), the `imports` table after.

mod control;
mod infer;
mod mapper;
mod parse;
mod source;
mod stage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use duckdb::params;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use utoipa::ToSchema;

pub use control::{Answer, LISTED_REJECTIONS, control_answer, status_of, work_dir};
pub use infer::{Proposal, propose};
pub use parse::{Cell, TimeFormat, TimeParser};
pub use source::Format;

use crate::store::imported::{ImportRecord, NewImport, TagUnit};
use crate::store::{ReadPool, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("{0}")]
    Unreadable(String),
    #[error("profile: {0}")]
    Profile(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("staging database: {0}")]
    Stage(#[from] duckdb::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no import {0}")]
    Unknown(String),
    /// A reader was stopped on purpose (the proposal reads a few rows).
    #[error("stopped")]
    Stop,
}

impl ImportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ImportError {
        ImportError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Long form: one row per sample (time, tag, value[, quality]). Wide
/// form: one row per time, one column per tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Long,
    Wide,
}

/// One tag (long form: a value of the tag column; wide form: a column)
/// and what it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagMap {
    /// The name in the file.
    pub column: String,
    /// The tag it is stored as (default: the name in the file).
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// The valid range: values outside are rejected.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// How a file maps onto tags, times and a node: saved by name and reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub layout: Layout,
    /// Where the windows are stored.
    pub site: String,
    pub node: String,
    /// Window width the samples are aggregated into, ms (default 60000).
    #[serde(default = "default_width")]
    pub width_ms: u32,
    pub time_column: String,
    /// `rfc3339` (default), `excel`, `unix_ms`, `unix_s` or a strftime
    /// pattern such as `%d.%m.%Y %H:%M:%S`.
    #[serde(default)]
    pub time_format: String,
    /// IANA zone of times written without an offset (default UTC).
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// Accept explicit offsets other than the zone's at that time.
    #[serde(default)]
    pub any_offset: bool,
    /// Long form: the tag, value and (optional) quality columns.
    #[serde(default)]
    pub tag_column: Option<String>,
    #[serde(default)]
    pub value_column: Option<String>,
    #[serde(default)]
    pub quality_column: Option<String>,
    /// Quality texts that count as good (case-insensitive; default good,
    /// ok, g, 192, 0). Samples of other quality are stored as bad.
    #[serde(default)]
    pub good_quality: Vec<String>,
    /// Tags with units and ranges. Wide form: only these columns are read
    /// when the list is not empty.
    #[serde(default)]
    pub tags: Vec<TagMap>,
    /// Long form: reject tags not in `tags`.
    #[serde(default)]
    pub only_listed_tags: bool,
    /// CSV field separator (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// `1.234,5` style numbers.
    #[serde(default)]
    pub decimal_comma: bool,
    /// Lines before the header.
    #[serde(default)]
    pub skip_rows: u32,
    /// .xlsx worksheet (default the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// Plausible times (RFC 3339; default 1990-01-01 to a day from now).
    #[serde(default)]
    pub plausible_from: Option<String>,
    #[serde(default)]
    pub plausible_to: Option<String>,
}

fn default_width() -> u32 {
    60_000
}

fn default_zone() -> String {
    "UTC".into()
}

const DEFAULT_GOOD: &[&str] = &["good", "ok", "g", "192", "0"];
/// 1990-01-01T00:00:00Z.
const PLAUSIBLE_FROM_MS: i64 = 631_152_000_000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Profile {
    /// Check the profile and make its time parser.
    pub fn check(&self) -> Result<TimeParser, ImportError> {
        let bad = |m: String| Err(ImportError::Profile(m));
        if !valid_name(&self.site) || !valid_name(&self.node) {
            return bad("site and node: 1–64 of A–Z a–z 0–9 _ - (as the API names them)".into());
        }
        if !(1000..=86_400_000).contains(&self.width_ms) {
            return bad(format!(
                "width_ms {} is not within 1000 .. 86400000",
                self.width_ms
            ));
        }
        if self.time_column.is_empty() {
            return bad("time_column is empty".into());
        }
        if self.layout == Layout::Long && (self.tag_column.is_none() || self.value_column.is_none())
        {
            return bad("the long form needs tag_column and value_column".into());
        }
        if self.delimiter.as_deref().is_some_and(|d| d.len() != 1) {
            return bad("delimiter: one ASCII character".into());
        }
        for t in &self.tags {
            let name = t.tag.as_deref().unwrap_or(&t.column);
            if name.is_empty() || name.len() > 256 {
                return bad(format!("tag {name:?}: 1–256 characters"));
            }
            if let (Some(lo), Some(hi)) = (t.min, t.max)
                && lo > hi
            {
                return bad(format!("tag {name:?}: min {lo} > max {hi}"));
            }
        }
        let at = |s: &Option<String>, default: i64| -> Result<i64, ImportError> {
            match s {
                None => Ok(default),
                Some(t) => t
                    .parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| ImportError::Profile(format!("plausible range {t:?}: {e}"))),
            }
        };
        TimeParser::new(
            TimeFormat::parse(&self.time_format),
            &self.time_zone,
            self.any_offset,
            at(&self.plausible_from, PLAUSIBLE_FROM_MS)?,
            at(&self.plausible_to, now_ms() + 86_400_000)?,
        )
    }

    /// SHA-256 of the profile as applied (its JSON; field order is fixed).
    pub fn hash(&self) -> String {
        hex(&sha2::Sha256::digest(
            serde_json::to_vec(self).unwrap_or_default(),
        ))
    }

    fn delimiter(&self) -> u8 {
        self.delimiter
            .as_deref()
            .and_then(|d| d.bytes().next())
            .unwrap_or(b',')
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ImportError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| ImportError::io(path, e))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((hex(&h.finalize()), n))
}

/// A running (or recently finished) import's progress.
#[derive(Debug)]
pub struct Progress {
    pub id: String,
    started: Instant,
    phase: Mutex<&'static str>,
    /// Of `total` (bytes for CSV, rows for xlsx).
    done: AtomicU64,
    total: AtomicU64,
    rows: AtomicU64,
    rejections: AtomicU64,
    finished: AtomicBool,
    unit: &'static str,
}

/// What a poll of a running import shows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    pub id: String,
    /// reading, checking, aggregating, storing, done, failed.
    pub phase: String,
    /// `done` of `total` in `unit` (bytes for CSV, rows for xlsx).
    pub done: u64,
    pub total: u64,
    pub unit: String,
    /// Data rows read so far.
    pub rows: u64,
    pub rejections: u64,
    /// Rows per second since the start.
    pub rows_per_s: f64,
    pub elapsed_s: f64,
    /// Estimated seconds left of reading (null before a rate is known).
    pub eta_s: Option<f64>,
    pub finished: bool,
}

impl Progress {
    fn phase(&self, p: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    pub fn view(&self) -> ProgressView {
        let elapsed = self.started.elapsed().as_secs_f64();
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        let rows = self.rows.load(Ordering::Relaxed);
        let rate = if elapsed > 0.0 {
            rows as f64 / elapsed
        } else {
            0.0
        };
        let eta = (done > 0 && elapsed > 0.2)
            .then(|| total.saturating_sub(done) as f64 * elapsed / done as f64);
        ProgressView {
            id: self.id.clone(),
            phase: (*self.phase.lock().unwrap_or_else(|e| e.into_inner())).to_owned(),
            done,
            total,
            unit: self.unit.to_owned(),
            rows,
            rejections: self.rejections.load(Ordering::Relaxed),
            rows_per_s: rate,
            elapsed_s: elapsed,
            eta_s: eta,
            finished: self.finished.load(Ordering::Relaxed),
        }
    }
}

/// Imports of this process, running or finished lately (ids are unique
/// across hubs in one process: a test's several hubs share it).
static RUNNING: LazyLock<Mutex<HashMap<String, Arc<Progress>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Finished imports kept for polls.
const KEEP_FINISHED: usize = 64;

/// The progress of import `id`, while this process runs it or lately ran it.
pub fn progress(id: &str) -> Option<ProgressView> {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .map(|p| p.view())
}

fn register(p: Arc<Progress>) {
    let mut g = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if g.len() >= KEEP_FINISHED {
        let mut old: Vec<(Instant, String)> = g
            .values()
            .filter(|p| p.finished.load(Ordering::Relaxed))
            .map(|p| (p.started, p.id.clone()))
            .collect();
        old.sort();
        for (_, id) in old.iter().take(g.len() + 1 - KEEP_FINISHED) {
            g.remove(id);
        }
    }
    g.insert(p.id.clone(), p);
}

/// One import to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: PathBuf,
    /// The name shown (the uploaded file's name).
    pub file_name: String,
    pub profile: Profile,
    pub profile_name: Option<String>,
    pub by_user: Option<String>,
    /// Delete `file` afterwards (an upload).
    pub remove_file: bool,
    /// Where the staging database goes.
    pub work_dir: PathBuf,
}

/// What [`start`] did.
#[derive(Debug, Clone)]
pub enum Started {
    /// The same file with the same profile was imported before: nothing
    /// was done.
    Already(Box<ImportRecord>),
    /// Running on a thread of its own (poll [`progress`]); also when the
    /// same import is already running.
    Running { id: String },
}

/// Start an import (blocking: hashes the file). Re-importing a file
/// already imported with the same profile does nothing.
pub fn start(pool: Arc<ReadPool>, job: Job) -> Result<Started, ImportError> {
    let parser = job.profile.check()?;
    drop(parser);
    let (sha, bytes) = file_sha256(&job.file)?;
    if bytes == 0 {
        if job.remove_file {
            let _ = std::fs::remove_file(&job.file);
        }
        return Err(ImportError::Empty);
    }
    let phash = job.profile.hash();
    let (s2, p2) = (sha.clone(), phash.clone());
    match pool.read(move |s| s.import_by_content(&s2, &p2))? {
        Some(r) if r.status == "done" => {
            if job.remove_file {
                let _ = std::fs::remove_file(&job.file);
            }
            return Ok(Started::Already(Box::new(r)));
        }
        Some(r) if r.status == "running" && progress(&r.id).is_some_and(|p| !p.finished) => {
            return Ok(Started::Running { id: r.id });
        }
        Some(r) => {
            // A failed or interrupted import of this file: its partial
            // windows go before it is tried again.
            let id = r.id.clone();
            pool.read(move |s| s.another()?.delete_import_windows(&id))?;
        }
        None => {}
    }
    let id = format!(
        "{}-{}",
        now_ms(),
        &crate::random_password()[..8].to_ascii_lowercase()
    );
    let profile_json = serde_json::to_string(&job.profile).unwrap_or_default();
    {
        let (id, job2, sha, phash) = (id.clone(), job.clone(), sha.clone(), phash.clone());
        pool.read(move |s| {
            s.begin_import(&NewImport {
                id: &id,
                file_name: &job2.file_name,
                sha256: &sha,
                profile_hash: &phash,
                profile_name: job2.profile_name.as_deref(),
                profile_json: &profile_json,
                site: &job2.profile.site,
                node: &job2.profile.node,
                width_ms: job2.profile.width_ms,
                by_user: job2.by_user.as_deref(),
                started_ms: now_ms(),
                bytes,
            })
        })?;
    }
    let format = Format::sniff(&job.file)?;
    let p = Arc::new(Progress {
        id: id.clone(),
        started: Instant::now(),
        phase: Mutex::new("reading"),
        done: AtomicU64::new(0),
        total: AtomicU64::new(bytes),
        rows: AtomicU64::new(0),
        rejections: AtomicU64::new(0),
        finished: AtomicBool::new(false),
        unit: match format {
            Format::Csv => "bytes",
            Format::Xlsx => "rows",
        },
    });
    register(p.clone());
    let id2 = id.clone();
    std::thread::Builder::new()
        .name(format!("import-{id}"))
        .spawn(move || run(pool, job, id2, format, p))
        .map_err(|e| ImportError::Unreadable(format!("cannot start the import thread: {e}")))?;
    Ok(Started::Running { id })
}

/// Run an import to its end and record how it went.
fn run(pool: Arc<ReadPool>, job: Job, id: String, format: Format, p: Arc<Progress>) {
    let stage_path = job.work_dir.join(format!("stage-{id}.duckdb"));
    let started = Instant::now();
    let out = (|| {
        std::fs::create_dir_all(&job.work_dir).map_err(|e| ImportError::io(&job.work_dir, e))?;
        let totals = {
            let conn = stage::open(&stage_path)?;
            mapper::read_into(&conn, &job, format, &p)?;
            p.phase("checking");
            stage::reject_duplicates(&conn)?;
            p.phase("aggregating");
            stage::windows(&conn, job.profile.width_ms)?
        };
        p.phase("storing");
        let (id2, stage2, prof) = (id.clone(), stage_path.clone(), job.profile.clone());
        let windows = pool.read(move |s| {
            let n = s.copy_import(&id2, &stage2, &prof.site, &prof.node, prof.width_ms, |_| {})?;
            let units: Vec<TagUnit> = prof
                .tags
                .iter()
                .map(|t| TagUnit {
                    tag: t.tag.clone().unwrap_or_else(|| t.column.clone()),
                    unit: t.unit.clone(),
                    min: t.min,
                    max: t.max,
                })
                .collect();
            s.put_tag_units(&prof.site, &prof.node, &format!("import:{id2}"), &units)?;
            Ok(n)
        })?;
        refresh_rollups(&pool);
        Ok::<_, ImportError>((totals, windows))
    })();
    let _ = std::fs::remove_file(&stage_path);
    let _ = std::fs::remove_file(stage_path.with_extension("duckdb.wal"));
    if job.remove_file {
        let _ = std::fs::remove_file(&job.file);
    }
    let rows = p.rows.load(Ordering::Relaxed);
    let id2 = id.clone();
    let recorded = match out {
        Ok((t, windows)) => {
            tracing::info!(import = %id, rows, samples = t.samples, windows, rejections = t.rejections,
                seconds = started.elapsed().as_secs_f64(), "import done");
            p.phase("done");
            pool.read(move |s| {
                let mut r = s.import_record(&id2)?.ok_or(StoreError::Busy("vanished"))?;
                r.status = "done".into();
                r.finished_ms = Some(now_ms());
                r.rows_total = rows;
                r.rows_rejected = t.rows_rejected;
                r.rows_accepted = rows.saturating_sub(t.rows_rejected);
                r.samples = t.samples;
                r.rejections = t.rejections;
                r.windows = windows;
                r.tags = t.tags;
                r.first_ms = t.first_ms;
                r.last_ms = t.last_ms;
                s.finish_import(&r)
            })
        }
        Err(e) => {
            tracing::warn!(import = %id, error = %e, "import failed");
            p.phase("failed");
            let why = e.to_string();
            pool.read(move |s| {
                s.another()?.delete_import_windows(&id2)?;
                let mut r = s.import_record(&id2)?.ok_or(StoreError::Busy("vanished"))?;
                r.status = "failed".into();
                r.finished_ms = Some(now_ms());
                r.rows_total = rows;
                r.error = Some(why);
                s.finish_import(&r)
            })
        }
    };
    if let Err(e) = recorded {
        tracing::error!(import = %id, error = %e, "cannot record the import's end");
    }
    p.finished.store(true, Ordering::Relaxed);
}

/// Fold the new windows into the chart rollup now, as the ingest does
/// after its commits (the ingest thread may be idle for long). A
/// conflict with the ingest's own refresh only delays it: readers add the
/// windows above the watermark themselves.
fn refresh_rollups(pool: &ReadPool) {
    for _ in 0..1000 {
        match pool.read(|s| {
            s.another()?
                .refresh_rollups(crate::store::DEFAULT_REFRESH_WINDOWS)
        }) {
            Ok(r) if r.remaining == 0 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "chart rollup refresh after an import deferred");
                return;
            }
        }
    }
}

/// Block until import `id` of this process has finished (the CLI without
/// a hub, tests).
pub fn wait(id: &str, mut tick: impl FnMut(&ProgressView)) -> Option<ProgressView> {
    loop {
        let v = progress(id)?;
        tick(&v);
        if v.finished {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The benchmark's baseline (apos-bench import): DuckDB's own `read_csv`
/// of `csv` into a table of a new database `db`. Returns the rows read.
pub fn duckdb_read_csv(csv: &Path, db: &Path) -> Result<u64, ImportError> {
    let _ = std::fs::remove_file(db);
    let c = duckdb::Connection::open(db)?;
    let path = csv.display().to_string().replace('\'', "''");
    c.execute_batch(&format!(
        "CREATE TABLE t AS SELECT * FROM read_csv('{path}', header = true)"
    ))?;
    let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}
