//! `optimize.db`: every optimization run and what became of it, and the
//! recommendation sequence number of each node (SQLite, 0600, beside the
//! fleet database).
//!
//! The sequence numbers must survive a restart: an edge refuses any number
//! it has seen (replay protection), so a hub that counted from 1 again
//! would be ignored until it passed the old count.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    problem     TEXT NOT NULL,
    site        TEXT NOT NULL,
    node        TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    started_ms  INTEGER NOT NULL,
    took_ms     INTEGER NOT NULL,
    -- ok | failed
    outcome     TEXT NOT NULL,
    error       TEXT,
    -- the recommendation and the models, as JSON (NULL when failed)
    result      TEXT,
    seq         INTEGER,
    expires_ms  INTEGER,
    -- not_sent | sent | proposed | approved | rejected | expired | superseded
    -- | completed | rolled_back | failed | refused
    status      TEXT NOT NULL,
    status_ms   INTEGER NOT NULL,
    status_note TEXT NOT NULL DEFAULT '',
    applied_ms  INTEGER,
    realized    TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ms DESC);
CREATE TABLE IF NOT EXISTS node_seq (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (site, node)
);
-- problems defined through the API: the TOML text that defined each
CREATE TABLE IF NOT EXISTS problems (
    name  TEXT PRIMARY KEY,
    toml  TEXT NOT NULL,
    by    TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
-- the last edge audit entry read per node
CREATE TABLE IF NOT EXISTS audit_read (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    aseq INTEGER NOT NULL,
    PRIMARY KEY (site, node)
);
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One run as listed by the API and the page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub problem: String,
    pub site: String,
    pub node: String,
    /// `schedule`, `on demand by <user>`, `trigger: <tag> above <v>`.
    pub trigger: String,
    pub started_ms: i64,
    pub took_ms: i64,
    /// `ok` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    /// The recommendation and models (JSON object), when the run succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub seq: Option<u64>,
    pub expires_ms: Option<i64>,
    pub status: String,
    pub status_ms: i64,
    pub status_note: String,
    pub applied_ms: Option<i64>,
    /// Realized benefit, once measured (JSON object).
    #[schema(value_type = Option<Object>)]
    pub realized: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct OptimizeDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl OptimizeDb {
    pub fn open(path: &Path) -> Result<OptimizeDb, DbError> {
        use crate::alert::db::{OpenError, open_private};
        let p = path.display().to_string();
        let conn = open_private(path, SCHEMA).map_err(|e| match e {
            OpenError::Io(source) => DbError::Io { path: p, source },
            OpenError::Sqlite(source) => DbError::Sqlite { path: p, source },
        })?;
        Ok(OptimizeDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| DbError::Sqlite {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// The next run number of a problem (ids are `<problem>-<n>`).
    pub fn next_run_id(&self, problem: &str) -> Result<String, DbError> {
        let n: i64 = self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM runs WHERE problem = ?1",
                params![problem],
                |r| r.get(0),
            )
        })?;
        Ok(format!("{problem}-{}", n + 1))
    }

    /// Take the next recommendation sequence number of a node.
    pub fn take_seq(&self, site: &str, node: &str) -> Result<u64, DbError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO node_seq (site, node, seq) VALUES (?1, ?2, 1)
                 ON CONFLICT (site, node) DO UPDATE SET seq = seq + 1",
                params![site, node],
            )?;
            c.query_row(
                "SELECT seq FROM node_seq WHERE site = ?1 AND node = ?2",
                params![site, node],
                |r| r.get::<_, i64>(0),
            )
            .map(|s| s as u64)
        })
    }

    pub fn insert(&self, run: &Run) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, problem, site, node, trigger, started_ms, took_ms, outcome, error,
                                   result, seq, expires_ms, status, status_ms, status_note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    run.id,
                    run.problem,
                    run.site,
                    run.node,
                    run.trigger,
                    run.started_ms,
                    run.took_ms,
                    run.outcome,
                    run.error,
                    run.result.as_ref().map(|v| v.to_string()),
                    run.seq.map(|s| s as i64),
                    run.expires_ms,
                    run.status,
                    run.status_ms,
                    run.status_note,
                ],
            )
            .map(|_| ())
        })
    }

    pub fn set_status(
        &self,
        id: &str,
        status: &str,
        at_ms: i64,
        note: &str,
        applied_ms: Option<i64>,
    ) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, status_ms = ?3, status_note = ?4,
                        applied_ms = coalesce(applied_ms, ?5) WHERE id = ?1",
                params![id, status, at_ms, note, applied_ms],
            )
            .map(|_| ())
        })
    }

    /// Problems defined through the API: name, TOML, by, at.
    pub fn stored_problems(&self) -> Result<Vec<(String, String, String, i64)>, DbError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT name, toml, by, at_ms FROM problems ORDER BY at_ms, name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })
    }

    pub fn store_problem(
        &self,
        name: &str,
        toml: &str,
        by: &str,
        at_ms: i64,
    ) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO problems (name, toml, by, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET toml = excluded.toml, by = excluded.by, at_ms = excluded.at_ms",
                params![name, toml, by, at_ms],
            )
            .map(|_| ())
        })
    }

    pub fn remove_problem(&self, name: &str) -> Result<(), DbError> {
        self.with(|c| {
            c.execute("DELETE FROM problems WHERE name = ?1", params![name])
                .map(|_| ())
        })
    }

    /// Sent runs the edge never queued before they expired (it was offline:
    /// its MQTT session is clean, so nothing waits for it at the broker).
    pub fn expire_undelivered(&self, now_ms: i64) -> Result<usize, DbError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'expired', status_ms = ?1,
                        status_note = 'not queued at the edge before it expired (was the edge offline?)'
                 WHERE status = 'sent' AND expires_ms IS NOT NULL AND expires_ms <= ?1",
                [now_ms],
            )
        })
    }

    pub fn set_realized(&self, id: &str, realized: &serde_json::Value) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET realized = ?2 WHERE id = ?1",
                params![id, realized.to_string()],
            )
            .map(|_| ())
        })
    }

    pub fn audit_read(&self, site: &str, node: &str) -> Result<u64, DbError> {
        self.with(|c| {
            c.query_row(
                "SELECT aseq FROM audit_read WHERE site = ?1 AND node = ?2",
                params![site, node],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0) as u64)
        })
    }

    pub fn set_audit_read(&self, site: &str, node: &str, aseq: u64) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_read (site, node, aseq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (site, node) DO UPDATE SET aseq = excluded.aseq",
                params![site, node, aseq as i64],
            )
            .map(|_| ())
        })
    }

    /// Newest first; `problem` filters.
    pub fn runs(&self, problem: Option<&str>, limit: usize) -> Result<Vec<Run>, DbError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, problem, site, node, trigger, started_ms, took_ms, outcome, error, result,
                        seq, expires_ms, status, status_ms, status_note, applied_ms, realized
                 FROM runs WHERE (?1 IS NULL OR problem = ?1)
                 ORDER BY started_ms DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![problem, limit as i64], row)?;
            rows.collect()
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>, DbError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, problem, site, node, trigger, started_ms, took_ms, outcome, error, result,
                        seq, expires_ms, status, status_ms, status_note, applied_ms, realized
                 FROM runs WHERE id = ?1",
                params![id],
                row,
            )
            .optional()
        })
    }

    /// Runs applied at an edge whose realized benefit is not measured yet.
    pub fn awaiting_realized(&self) -> Result<Vec<Run>, DbError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, problem, site, node, trigger, started_ms, took_ms, outcome, error, result,
                        seq, expires_ms, status, status_ms, status_note, applied_ms, realized
                 FROM runs WHERE applied_ms IS NOT NULL AND realized IS NULL",
            )?;
            let rows = st.query_map([], row)?;
            rows.collect()
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Run {
        id: r.get(0)?,
        problem: r.get(1)?,
        site: r.get(2)?,
        node: r.get(3)?,
        trigger: r.get(4)?,
        started_ms: r.get(5)?,
        took_ms: r.get(6)?,
        outcome: r.get(7)?,
        error: r.get(8)?,
        result: json(r.get(9)?),
        seq: r.get::<_, Option<i64>>(10)?.map(|s| s as u64),
        expires_ms: r.get(11)?,
        status: r.get(12)?,
        status_ms: r.get(13)?,
        status_note: r.get(14)?,
        applied_ms: r.get(15)?,
        realized: json(r.get(16)?),
    })
}
