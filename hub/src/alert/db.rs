//! `alerts.db`: the alert history and every delivery attempt, in a small
//! SQLite file beside the fleet database (mode 0600).
//!
//! Not in DuckDB: only the ingest thread writes the fleet database, and an
//! alert must be recorded even while that thread is busy or reopening.
//! Not only in memory: the history and the firing alerts survive a restart
//! (a firing alert then resolves instead of firing twice). The file is
//! written by the evaluation and the webhook tasks through one connection;
//! the web API reads it with connections of its own (WAL: readers never
//! wait for the writer).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Active, AlertState, Transition};

/// Resolved alerts kept; older ones are deleted with their attempts.
pub const KEEP_RESOLVED: i64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    site        TEXT NOT NULL,
    node        TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    resolved_ms INTEGER,
    message     TEXT NOT NULL,
    value       REAL
);
CREATE INDEX IF NOT EXISTS alerts_since ON alerts (since_ms DESC, id DESC);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL,
    state    TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    ts_ms    INTEGER NOT NULL,
    ok       INTEGER NOT NULL,
    status   INTEGER,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id);
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("alert database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("alert database {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The writer's connection.
#[derive(Debug)]
pub struct AlertDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// One delivery attempt, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    /// Which transition was delivered.
    pub state: AlertState,
    /// 1, 2, 3 … per transition.
    pub attempt: u32,
    pub ts_ms: i64,
    /// The receiver answered 2xx.
    pub ok: bool,
    /// The HTTP status, when the receiver answered at all.
    pub status: Option<u16>,
    /// Why the attempt failed (connection, timeout, status), or why the
    /// delivery was given up or dropped.
    pub error: Option<String>,
}

/// One alert with its delivery attempts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule: String,
    pub kind: String,
    pub site: String,
    pub node: String,
    /// `firing`, or `resolved` once `resolved_ms` is set.
    pub state: AlertState,
    pub since_ms: i64,
    pub resolved_ms: Option<i64>,
    pub message: String,
    pub value: Option<f64>,
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
}

/// Why [`open_private`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    Io(std::io::Error),
    Sqlite(rusqlite::Error),
}

/// One of the hub's own SQLite files beside the fleet database (alerts,
/// optimization): mode 0600 whatever the umask, WAL, a busy timeout, its
/// schema applied.
pub(crate) fn open_private(path: &Path, schema: &str) -> Result<Connection, OpenError> {
    private_file(path).map_err(OpenError::Io)?;
    let conn = Connection::open(path).map_err(OpenError::Sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(OpenError::Sqlite)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(OpenError::Sqlite)?;
    conn.execute_batch(schema).map_err(OpenError::Sqlite)?;
    Ok(conn)
}

fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        for side in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(side);
            if std::fs::metadata(&p).is_ok() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

impl AlertDb {
    pub fn open(path: &Path) -> Result<AlertDb, DbError> {
        let p = path.display().to_string();
        let conn = open_private(path, SCHEMA).map_err(|e| match e {
            OpenError::Io(source) => DbError::Io { path: p, source },
            OpenError::Sqlite(source) => DbError::Sqlite { path: p, source },
        })?;
        Ok(AlertDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a transition: a new row when it fires, `resolved_ms` when it
    /// resolves; the oldest resolved alerts beyond [`KEEP_RESOLVED`] go.
    pub fn record(&self, t: &Transition) -> Result<(), DbError> {
        let c = self.lock();
        match t.state {
            AlertState::Firing => {
                c.execute(
                    "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    params![
                        t.id, t.rule, t.kind, t.site, t.node, t.since_ms, t.message, t.value
                    ],
                )
                .map_err(|e| self.sql(e))?;
            }
            AlertState::Resolved => {
                c.execute(
                    "UPDATE alerts SET resolved_ms = ? WHERE id = ?",
                    params![t.ts_ms, t.id],
                )
                .map_err(|e| self.sql(e))?;
                c.execute_batch(&format!(
                    "DELETE FROM deliveries WHERE alert_id IN (
                         SELECT id FROM alerts WHERE resolved_ms IS NOT NULL
                         ORDER BY since_ms DESC LIMIT -1 OFFSET {KEEP_RESOLVED});
                     DELETE FROM alerts WHERE id IN (
                         SELECT id FROM alerts WHERE resolved_ms IS NOT NULL
                         ORDER BY since_ms DESC LIMIT -1 OFFSET {KEEP_RESOLVED});"
                ))
                .map_err(|e| self.sql(e))?;
            }
        }
        Ok(())
    }

    /// Record one delivery attempt (or a give-up or drop, as `error`).
    pub fn delivery(&self, alert_id: &str, d: &Delivery) -> Result<(), DbError> {
        self.lock()
            .execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    alert_id,
                    d.state.as_str(),
                    d.attempt,
                    d.ts_ms,
                    d.ok,
                    d.status,
                    d.error
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The alerts firing, for the machine after a restart.
    pub fn active(&self) -> Result<Vec<Active>, DbError> {
        let c = self.lock();
        let mut st = c
            .prepare(
                "SELECT id, rule, site, node, since_ms, message, value FROM alerts
                 WHERE resolved_ms IS NULL",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Active {
                    id: r.get(0)?,
                    rule: r.get(1)?,
                    site: r.get(2)?,
                    node: r.get(3)?,
                    since_ms: r.get(4)?,
                    message: r.get(5)?,
                    value: r.get(6)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Mark alerts of rules no longer configured as resolved at `now_ms`
    /// (they would otherwise stay "firing" for ever).
    pub fn retire(&self, rules: &[String], now_ms: i64) -> Result<usize, DbError> {
        let c = self.lock();
        let list = serde_json::to_string(rules).unwrap_or_else(|_| "[]".into());
        c.execute(
            "UPDATE alerts SET resolved_ms = ? WHERE resolved_ms IS NULL
             AND rule NOT IN (SELECT value FROM json_each(?))",
            params![now_ms, list],
        )
        .map_err(|e| self.sql(e))
    }
}

/// Where a page of alerts resumes: (since_ms, id) of the last one shown.
pub type AlertKey = (i64, String);

/// A page of alerts, newest first: `active_only` keeps the firing ones;
/// `after` is the (since_ms, id) of the last alert of the previous page.
/// Reads on a connection of its own; a missing file is an empty page.
pub fn page(
    path: &Path,
    active_only: bool,
    after: Option<AlertKey>,
    limit: usize,
) -> Result<(Vec<AlertView>, Option<AlertKey>), DbError> {
    let p = path.display().to_string();
    let sql = |source| DbError::Sqlite {
        path: p.clone(),
        source,
    };
    if !path.exists() {
        return Ok((Vec::new(), None));
    }
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    let first = after.is_none();
    let (a_ts, a_id) = after.unwrap_or((i64::MAX, String::new()));
    let mut st = c
        .prepare(
            "SELECT id, rule, kind, site, node, since_ms, resolved_ms, message, value FROM alerts
             WHERE (? OR resolved_ms IS NULL)
               AND (? OR since_ms < ? OR (since_ms = ? AND id < ?))
             ORDER BY since_ms DESC, id DESC LIMIT ?",
        )
        .map_err(sql)?;
    let rows = st
        .query_map(
            params![!active_only, first, a_ts, a_ts, a_id, limit as i64 + 1],
            |r| {
                let resolved_ms: Option<i64> = r.get(6)?;
                Ok(AlertView {
                    id: r.get(0)?,
                    rule: r.get(1)?,
                    kind: r.get(2)?,
                    site: r.get(3)?,
                    node: r.get(4)?,
                    since_ms: r.get(5)?,
                    state: if resolved_ms.is_some() {
                        AlertState::Resolved
                    } else {
                        AlertState::Firing
                    },
                    resolved_ms,
                    message: r.get(7)?,
                    value: r.get::<_, Option<f64>>(8)?.filter(|v| v.is_finite()),
                    deliveries: Vec::new(),
                })
            },
        )
        .map_err(sql)?;
    let mut items: Vec<AlertView> = rows.collect::<Result<_, _>>().map_err(sql)?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|a| (a.since_ms, a.id.clone()))
    } else {
        None
    };
    let mut st = c
        .prepare(
            "SELECT state, attempt, ts_ms, ok, status, error FROM deliveries
             WHERE alert_id = ? ORDER BY ts_ms, rowid",
        )
        .map_err(sql)?;
    for a in &mut items {
        let rows = st
            .query_map(params![a.id], |r| {
                let state: String = r.get(0)?;
                Ok(Delivery {
                    state: if state == "resolved" {
                        AlertState::Resolved
                    } else {
                        AlertState::Firing
                    },
                    attempt: r.get(1)?,
                    ts_ms: r.get(2)?,
                    ok: r.get(3)?,
                    status: r.get(4)?,
                    error: r.get(5)?,
                })
            })
            .map_err(sql)?;
        a.deliveries = rows.collect::<Result<_, _>>().map_err(sql)?;
    }
    Ok((items, next))
}
