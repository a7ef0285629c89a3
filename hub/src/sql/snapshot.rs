//! The fleet database's copy that SQL workers read.
//!
//! Made through the read pool (a connection of the store's own DuckDB
//! instance: `ATTACH` a new file, `COPY FROM DATABASE`, `DETACH`), written
//! under a temporary name and renamed, so a worker only ever opens a
//! complete file. One copy at a time (a mutex); a query that finds the
//! newest copy older than `[sql] snapshot_refresh` makes a new one first
//! and waits for it. The two newest are kept: a worker started just
//! before a refresh may still be opening the previous one.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::SqlError;
use crate::store::ReadPool;

#[derive(Debug)]
struct Current {
    path: PathBuf,
    as_of_ms: i64,
    taken: Instant,
}

#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    /// Weak: the sandbox must not keep a stopped hub's pool alive.
    reads: Weak<ReadPool>,
    current: Mutex<Option<Current>>,
}

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".duckdb";

impl Snapshots {
    pub(super) fn new(dir: PathBuf, reads: Weak<ReadPool>) -> Snapshots {
        Snapshots {
            dir,
            reads,
            current: Mutex::new(None),
        }
    }

    /// The directory the copies are in (`<storage>.sql`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest copy no older than `refresh` (made now if there is
    /// none) and the time it was taken. Blocking.
    pub fn current(&self, refresh: Duration) -> Result<(PathBuf, i64), SqlError> {
        let mut g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.as_ref()
            && c.taken.elapsed() < refresh
            && c.path.exists()
        {
            return Ok((c.path.clone(), c.as_of_ms));
        }
        let first = g.is_none();
        let c = self.take(first)?;
        let out = (c.path.clone(), c.as_of_ms);
        *g = Some(c);
        Ok(out)
    }

    fn take(&self, first: bool) -> Result<Current, SqlError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            SqlError::Snapshot(format!("{what} {}: {e}", self.dir.display()))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| err("cannot create", &e))?;
        if first {
            // Copies of an earlier run, and any half-written one.
            self.prune(0);
        }
        let started = Instant::now();
        let as_of_ms = crate::web::now_ms();
        let name = format!("{PREFIX}{as_of_ms}{SUFFIX}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(&name);
        let _ = std::fs::remove_file(&tmp);
        let Some(reads) = self.reads.upgrade() else {
            return Err(SqlError::Snapshot("the hub is stopping".into()));
        };
        let copied = reads.read(|s| s.copy_to(&tmp));
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(wal(&tmp));
            return Err(err("cannot copy the fleet database into", &e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| err("cannot rename the copy in", &e))?;
        self.prune(2);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::info!(
            path = %path.display(),
            bytes = size,
            seconds = started.elapsed().as_secs_f64(),
            "SQL snapshot of the fleet database taken"
        );
        Ok(Current {
            path,
            as_of_ms,
            taken: started,
        })
    }

    /// Remove all but the `keep` newest copies (and every temporary file).
    fn prune(&self, keep: usize) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut copies = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<i64>().ok());
            match stamp {
                Some(t) => copies.push((t, e.path())),
                None => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        copies.sort();
        let n = copies.len().saturating_sub(keep);
        for (_, p) in copies.into_iter().take(n) {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(wal(&p));
        }
    }
}

fn wal(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}
