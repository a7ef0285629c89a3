//! Database layout, connection settings and migrations.
//!
//! # Tables
//!
//! ```sql
//! tags    (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)
//! samples (tag_id, ts_ms, value, value_text, kind, quality, reason,
//!          PRIMARY KEY (tag_id, ts_ms)) WITHOUT ROWID
//! ```
//!
//! `samples` is clustered on `(tag_id, ts_ms)`: a range query for one tag is
//! one contiguous B-tree scan, and no separate index doubles the write cost.
//!
//! **Inbox (write path).** Inserting each poll's samples straight into
//! `samples` touches one B-tree leaf per tag per commit: with thousands of
//! tags that is thousands of random page writes per second (measured: 60k
//! samples/s at 10,000 tags). So commits append to `inbox`, a plain rowid
//! table (a sequential append: a few pages per commit), and a periodic
//! *merge* moves the inbox into `samples` in `(tag_id, ts_ms)` order in one
//! transaction, so each tag's leaf page is written once per merge instead of
//! once per commit. Crash safety is unchanged: a committed batch is in the
//! inbox. Readers query `samples UNION ALL inbox`; the inbox holds at most
//! one merge interval of data.
//!
//! ```sql
//! inbox (same columns as samples)   -- rowid order = arrival order
//! ```
//!
//! **Same millisecond:** the key has no sequence column, so a second sample
//! of a tag with the same millisecond *replaces* the first (`INSERT OR
//! REPLACE`, last write wins). Polling intervals are ≥ 10 ms, so this only
//! happens when a driver re-sends a reading, and keeping the newest copy is
//! then the right answer.
//!
//! **Values:** `value` has NUMERIC affinity so integers are stored exactly
//! (a REAL column would round `i64` beyond 2^53) while min/max/avg still
//! work across rows. `kind` records the [`drivers::Value`] variant so a
//! sample round-trips: 0 none, 1 bool, 2 i64, 3 u64, 4 f64, 5 string.
//! Strings live in `value_text` (`value` NULL); a `u64` above `i64::MAX` is
//! stored as REAL in `value` (for aggregates) plus its exact decimal text in
//! `value_text`. SQLite cannot store NaN (it becomes NULL); `kind = 4` with
//! a NULL value reads back as NaN.
//!
//! **Quality:** `quality` is [`drivers::Quality::code`] (0 good,
//! 1 uncertain, 2 bad) so "fraction good" is plain SQL. `reason` is NULL
//! for good samples, else a short code, with a short text of ours after a
//! colon for some: `timeout`, `connection_lost`, `backed_off`, `stale`,
//! `driver_failed`, `exception:<code>`, `decode:<text>`,
//! `protocol:<text>`, `unsupported:<type>`, `status:<device status>`,
//! `clock_skew:<text>`, `other:<text>`. An unknown token reads back as
//! `Reason::Other(token)`.
//!
//! # Versioning
//!
//! `PRAGMA user_version` holds the number of [`MIGRATIONS`] applied. A new
//! schema change is a new entry at the end of the list; entries are never
//! edited once released.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Durability, HistoryError};

/// Ordered schema migrations; `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE tags (
         id   INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE
     );
     CREATE TABLE samples (
         tag_id     INTEGER NOT NULL,
         ts_ms      INTEGER NOT NULL,
         value      NUMERIC,
         value_text TEXT,
         kind       INTEGER NOT NULL,
         quality    INTEGER NOT NULL,
         reason     TEXT,
         PRIMARY KEY (tag_id, ts_ms)
     ) WITHOUT ROWID;",
    // 2: append-only inbox merged into samples in key order.
    "CREATE TABLE inbox (
         tag_id     INTEGER NOT NULL,
         ts_ms      INTEGER NOT NULL,
         value      NUMERIC,
         value_text TEXT,
         kind       INTEGER NOT NULL,
         quality    INTEGER NOT NULL,
         reason     TEXT
     );",
    // Edge → hub sync: closed windows and the outbox that carries them,
    // always written in one transaction (see `crate::sync`).
    "CREATE TABLE aggregates (
         width_ms INTEGER NOT NULL,
         tag_id   INTEGER NOT NULL,
         start_ms INTEGER NOT NULL,
         count    INTEGER NOT NULL,
         good     INTEGER NOT NULL,
         min      REAL,
         max      REAL,
         mean     REAL,
         twa      REAL,
         last     REAL,
         seq      INTEGER,
         PRIMARY KEY (width_ms, tag_id, start_ms)
     ) WITHOUT ROWID;
     CREATE TABLE outbox (
         seq        INTEGER PRIMARY KEY,
         created_ms INTEGER NOT NULL,
         payload    BLOB NOT NULL
     );
     CREATE TABLE outbox_state (
         id            INTEGER PRIMARY KEY CHECK (id = 1),
         last_seq      INTEGER NOT NULL,
         bytes         INTEGER NOT NULL,
         dropped       INTEGER NOT NULL,
         dropped_bytes INTEGER NOT NULL
     );
     INSERT INTO outbox_state VALUES (1, 0, 0, 0, 0);",
    // 4: forecasts and how good they turned out (docs/models.md).
    "CREATE TABLE forecasts (
         model     TEXT NOT NULL,
         version   TEXT NOT NULL,
         origin_ms INTEGER NOT NULL,
         step_ms   INTEGER NOT NULL,
         made_ms   INTEGER NOT NULL,
         forecast  TEXT NOT NULL,
         mae       REAL,
         mape      REAL,
         scored    INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (model, origin_ms)
     );",
    // 5: KPI values per window (docs/kpi.md); a window's row is updated
    // as it grows until it is closed.
    "CREATE TABLE kpis (
         kpi         TEXT NOT NULL,
         win         TEXT NOT NULL,
         start_ms    INTEGER NOT NULL,
         label       TEXT NOT NULL,
         end_ms      INTEGER NOT NULL,
         until_ms    INTEGER NOT NULL,
         closed      INTEGER NOT NULL,
         computed_ms INTEGER NOT NULL,
         coverage    REAL NOT NULL,
         quality     TEXT NOT NULL,
         value       REAL,
         figures     TEXT NOT NULL,
         PRIMARY KEY (kpi, win, start_ms)
     );
     CREATE INDEX kpis_by_time ON kpis (computed_ms);",
    // 6: storage under pressure (issue 14). Retention deletes every table
    // oldest first (hence the time indexes). Every batch the outbox's bound
    // cost has a row (so an ack that names one after all is not a loss);
    // `window_marks` remembers how far each window width was sealed, so a
    // restart can tell the hub which windows were never recorded; `meta`
    // holds `clean_exit` (1 after a clean close, 0 while the writer runs).
    "CREATE TABLE outbox_dropped (
         seq        INTEGER PRIMARY KEY,
         dropped_ms INTEGER NOT NULL,
         bytes      INTEGER NOT NULL,
         delivered  INTEGER NOT NULL DEFAULT 0
     );
     ALTER TABLE outbox_state ADD COLUMN dropped_delivered INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE window_marks (
         width_ms        INTEGER PRIMARY KEY,
         sealed_until_ms INTEGER NOT NULL
     );
     CREATE TABLE meta (
         key   TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     );
     CREATE INDEX aggregates_by_start ON aggregates (start_ms);
     CREATE INDEX forecasts_by_made ON forecasts (made_ms);",
    // 7: the alarm journal (issue 16): one row per change of an alarm's
    // state, sealed into the outbox in the same transaction.
    "CREATE TABLE alarm_journal (
         alarm    TEXT NOT NULL,
         seq      INTEGER NOT NULL,
         ts_ms    INTEGER NOT NULL,
         change   TEXT NOT NULL,
         state    TEXT NOT NULL,
         priority INTEGER NOT NULL,
         value    REAL,
         by_user  TEXT,
         comment  TEXT,
         PRIMARY KEY (alarm, seq)
     );
     CREATE INDEX alarm_journal_by_time ON alarm_journal (ts_ms);",
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// WAL bytes kept on disk after a checkpoint; bounds the `-wal` file that
/// comes on top of `retention_bytes`.
pub const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// Page cache per connection (KiB, SQLite's negative `cache_size`). Large
/// enough to keep the tail leaf page of a few thousand tags hot.
const CACHE_KIB: i64 = 4 << 10;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Open (creating if needed) the database for writing and bring its schema
/// up to date.
pub(crate) fn open_writer(path: &Path, durability: Durability) -> Result<Connection, HistoryError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: if it fails, opening reports the real problem.
        let _ = std::fs::create_dir_all(dir);
    }
    restrict_permissions(path);
    let mut conn = Connection::open(path).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Must precede the first table: auto_vacuum cannot be switched on later
    // without a full VACUUM. It is what lets size retention shrink the file.
    if user_version(&conn)? == 0 && table_count(&conn)? == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "history database is not in WAL mode; readers may block the writer");
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(&mut conn)?;
    if auto_vacuum_mode(&conn)? != 2 {
        tracing::warn!(
            path = %path.display(),
            "history database was created without incremental auto-vacuum; size retention frees pages for reuse but the file will not shrink"
        );
    }
    Ok(conn)
}

/// The history holds plant data: readable by the service's group at most
/// (0640), whatever the umask. The file is created with that mode before
/// SQLite opens it (SQLite gives its `-wal` and `-shm` files the database
/// file's mode); a database an older version left 0644 is tightened.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path);
    for p in [
        path.to_path_buf(),
        sidecar(path, "wal"),
        sidecar(path, "shm"),
    ] {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o137 != 0
            && let Err(e) =
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o640))
        {
            tracing::warn!(path = %p.display(), error = %e, "cannot restrict the history file's permissions to 0640");
        }
    }
}

/// `history.db` → `history.db-wal`: SQLite appends to the whole name.
fn sidecar(path: &Path, what: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!("-{what}"));
    name.into()
}

/// Open an existing database for queries only.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, HistoryError> {
    // Read-write flags without CREATE: a read-only WAL connection cannot
    // create the `-shm` file, and `query_only` keeps this connection from
    // ever writing.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(16);
    match user_version(&conn)? {
        0 => Err(HistoryError::NotInitialized(path.to_path_buf())),
        v if v > SCHEMA_VERSION => Err(HistoryError::UnsupportedSchema {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        // An older schema is fine to read only if the queries still match;
        // with one version so far there is nothing older.
        _ => Ok(conn),
    }
}

/// Apply every migration above the stored version, each in its own
/// transaction together with the version bump.
fn migrate(conn: &mut Connection) -> Result<(), HistoryError> {
    let current = user_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(HistoryError::UnsupportedSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(current).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "history schema migrated");
    }
    Ok(())
}

pub(crate) fn user_version(conn: &Connection) -> Result<i64, HistoryError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

fn table_count(conn: &Connection) -> Result<i64, HistoryError> {
    Ok(conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?)
}

/// 0 none, 1 full, 2 incremental.
fn auto_vacuum_mode(conn: &Connection) -> Result<i64, HistoryError> {
    Ok(conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?)
}

/// Size of the main database as SQLite sees it (including committed pages
/// still in the WAL), in bytes.
pub(crate) fn db_size_bytes(conn: &Connection) -> Result<u64, HistoryError> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0))
}
