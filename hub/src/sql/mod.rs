//! Analysts' read-only SQL, run in a separate, locked-down process
//! (docs/sql.md).
//!
//! ```text
//! POST /api/v1/analysis/sql ─▶ Sandbox::query ─ permit (concurrency) ─▶ snapshot ─▶ worker
//!                                                  │                      │
//!            full: 429 ◀───────────────────────────┘   read pool: ATTACH + COPY FROM DATABASE
//!                                                      into <db>.sql/snapshot-<ms>.duckdb
//! worker = `apos-hub sql --worker`: empty environment, empty private directory,
//!          rlimits, no_new_privs, snapshot opened READ_ONLY, DuckDB locked, seccomp,
//!          then the query on stdin ─▶ one JSON line on stdout; killed at the timeout.
//! ```
//!
//! The worker cannot open the live database: this process holds it, and
//! DuckDB admits one process per file. So the hub copies the database
//! (through its own connection family, never a second open of the file)
//! into a snapshot at most every `[sql] snapshot_refresh`, and every answer
//! says how old its data is (`as_of_ms`).

mod runner;
mod seccomp;
mod snapshot;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use crate::config::Sql;
use crate::store::ReadPool;

pub use snapshot::Snapshots;

/// Longest query text.
pub const MAX_QUERY_BYTES: usize = 64 << 10;
/// Largest answer the hub accepts from a worker.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// One column of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Column {
    pub name: String,
    /// DuckDB's type name, e.g. `BIGINT`, `DOUBLE`, `VARCHAR`, `TIMESTAMP`.
    #[serde(rename = "type")]
    pub r#type: String,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    pub columns: Vec<Column>,
    /// One array per row, in column order. Integers beyond ±2^53 and
    /// decimals are strings; times are ISO 8601 text; blobs hexadecimal.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<serde_json::Value>,
    pub row_count: usize,
    /// More rows existed than `[sql] max_rows`; the rest were not sent.
    pub truncated: bool,
    /// When the snapshot the query read was taken (ms since 1970): data
    /// stored after it is not in the answer.
    pub as_of_ms: i64,
}

/// A worker's failure, as it reports it on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerError {
    /// `sql`, `memory`, `too_large` or `setup`.
    pub kind: String,
    pub error: String,
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0} queries are running already; try again shortly")]
    Busy(usize),
    #[error("{0}")]
    TooLarge(String),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(std::time::Duration),
    #[error("the query used more memory than the limit ({0}): {1}")]
    Memory(String, String),
    #[error("{0}")]
    Query(String),
    #[error("the fleet database's snapshot could not be made: {0}")]
    Snapshot(String),
    #[error("the SQL worker failed: {0}")]
    Worker(String),
}

/// Where queries read from.
#[derive(Debug)]
enum Source {
    /// The running hub's database, through snapshots.
    Hub(Snapshots),
    /// A database file no hub holds (the CLI without a hub): the worker
    /// opens it read-only itself.
    File(PathBuf),
}

/// The SQL endpoint's state: limits, the concurrency gate, the snapshot.
#[derive(Debug)]
pub struct Sandbox {
    cfg: Sql,
    exe: Option<PathBuf>,
    source: Source,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Sandbox {
    /// The sandbox of the hub whose store is at `storage`, read through
    /// `reads`: one per store in this process (the web API and the control
    /// socket share its concurrency limit and snapshot), made on first use.
    pub fn for_hub(cfg: &Sql, storage: &Path, reads: &Arc<ReadPool>) -> Arc<Sandbox> {
        static HUBS: Mutex<Vec<(Weak<ReadPool>, Arc<Sandbox>)>> = Mutex::new(Vec::new());
        let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
        // A stopped hub's pool is gone: its sandbox goes with it.
        hubs.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, s)) = hubs
            .iter()
            .find(|(w, _)| w.upgrade().is_some_and(|r| Arc::ptr_eq(&r, reads)))
        {
            return s.clone();
        }
        let mut dir = storage.as_os_str().to_owned();
        dir.push(".sql");
        let s = Arc::new(Sandbox {
            cfg: cfg.clone(),
            exe: cfg.worker.clone(),
            source: Source::Hub(Snapshots::new(PathBuf::from(dir), Arc::downgrade(reads))),
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency)),
        });
        hubs.push((Arc::downgrade(reads), s.clone()));
        s
    }

    /// For a database file that no process holds.
    pub fn for_file(cfg: &Sql, db: &Path) -> Sandbox {
        Sandbox {
            cfg: cfg.clone(),
            exe: cfg.worker.clone(),
            source: Source::File(db.to_path_buf()),
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency)),
        }
    }

    pub fn config(&self) -> &Sql {
        &self.cfg
    }

    /// Run one query (blocking: call it off the async runtime). Refused at
    /// once when `concurrency` queries run already.
    pub fn query_blocking(&self, query: &str) -> Result<Answer, SqlError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(SqlError::TooLarge(format!(
                "the query is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if query.trim().is_empty() {
            return Err(SqlError::Query("the query is empty".into()));
        }
        let _permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| SqlError::Busy(self.cfg.concurrency))?;
        let (db, as_of_ms) = match &self.source {
            Source::Hub(s) => s.current(self.cfg.snapshot_refresh)?,
            Source::File(p) => (p.clone(), file_time(p)),
        };
        let exe = match &self.exe {
            Some(e) => e.clone(),
            None => worker_exe()?,
        };
        let mut a = runner::run(&exe, &db, &self.cfg, query)?;
        a.as_of_ms = as_of_ms;
        Ok(a)
    }

    /// [`Sandbox::query_blocking`] on the blocking pool.
    pub async fn query(self: &Arc<Self>, query: String) -> Result<Answer, SqlError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.query_blocking(&query))
            .await
            .map_err(|e| SqlError::Worker(e.to_string()))?
    }
}

/// The control socket's answer to `apos-hub sql` (crate::control): the
/// answer as JSON after `ok`, or the error. Limits are those of the web
/// API's sandbox when it has one, else `[sql]`'s defaults.
pub async fn control_answer(
    reads: &Arc<ReadPool>,
    storage: &Path,
    cfg: Option<&Sql>,
    query: String,
) -> String {
    let default = Sql::default();
    let sandbox = Sandbox::for_hub(cfg.unwrap_or(&default), storage, reads);
    match sandbox.query(query).await {
        Ok(a) => match serde_json::to_string(&a) {
            Ok(j) => format!("ok\n{j}"),
            Err(e) => format!("error: {e}\n"),
        },
        // One line: the control protocol's error is the first line.
        Err(e) => format!("error: {}\n", e.to_string().replace('\n', " ")),
    }
}

/// `apos-hub` itself; or, in a program that embeds the hub (the demo,
/// the test harness in target/…/deps), the `apos-hub` built beside it.
fn worker_exe() -> Result<PathBuf, SqlError> {
    let me = std::env::current_exe()
        .map_err(|e| SqlError::Worker(format!("cannot find this program: {e}")))?;
    if me.file_name().is_some_and(|n| n == "apos-hub") {
        return Ok(me);
    }
    let dir = me.parent();
    [dir, dir.and_then(Path::parent)]
        .into_iter()
        .flatten()
        .map(|d| d.join("apos-hub"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SqlError::Worker(format!(
                "{} is not apos-hub and no apos-hub is installed beside it",
                me.display()
            ))
        })
}

fn file_time(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
