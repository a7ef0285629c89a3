//! Bookkeeping of historian imports (docs/import.md): saved import
//! profiles, one row per import (its file's hash, status, counts), the
//! rows each import rejected and why, and the unit and valid range of
//! every imported tag.
//!
//! The imported samples themselves become windows in `aggregates`, beside
//! the edges' windows, with `seq = 0` and `source = 'import:<id>'` (NULL
//! for edge data). They are appended in transactions of at most
//! [`super::MAX_TX_WINDOWS`] rows, like the ingest's, so the chart rollup's
//! watermark (series/rollup.rs, which relies on `aggregates` growing by
//! appends) stays valid; the only deletion, of a failed import's partial
//! windows, rebuilds the rollup.

use duckdb::{OptionalExt, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

/// The columns an edge's window fills (the ingest's appender names them so
/// that `source` stays NULL).
pub const EDGE_COLUMNS: &[&str] = &[
    "site", "node", "tag", "width_ms", "start_ms", "count", "good", "min", "max", "mean", "twa",
    "last", "seq",
];

pub(super) const SCHEMA: &str = "
ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS source VARCHAR;
CREATE TABLE IF NOT EXISTS import_profiles (
    name       VARCHAR PRIMARY KEY,
    profile    VARCHAR NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS imports (
    id            VARCHAR PRIMARY KEY,
    file_name     VARCHAR NOT NULL,
    sha256        VARCHAR NOT NULL,
    profile_hash  VARCHAR NOT NULL,
    profile_name  VARCHAR,
    profile       VARCHAR NOT NULL,
    site          VARCHAR NOT NULL,
    node          VARCHAR NOT NULL,
    width_ms      INTEGER NOT NULL,
    status        VARCHAR NOT NULL,
    by_user       VARCHAR,
    started_ms    BIGINT NOT NULL,
    finished_ms   BIGINT,
    bytes         UBIGINT NOT NULL,
    rows_total    UBIGINT NOT NULL DEFAULT 0,
    rows_accepted UBIGINT NOT NULL DEFAULT 0,
    rows_rejected UBIGINT NOT NULL DEFAULT 0,
    samples       UBIGINT NOT NULL DEFAULT 0,
    rejections    UBIGINT NOT NULL DEFAULT 0,
    windows       UBIGINT NOT NULL DEFAULT 0,
    tags          UBIGINT NOT NULL DEFAULT 0,
    first_ms      BIGINT,
    last_ms       BIGINT,
    error         VARCHAR
);
CREATE TABLE IF NOT EXISTS import_rejections (
    import_id VARCHAR NOT NULL,
    row_no    UBIGINT NOT NULL,
    col       VARCHAR,
    reason    VARCHAR NOT NULL,
    value     VARCHAR
);
CREATE TABLE IF NOT EXISTS tag_units (
    site   VARCHAR NOT NULL,
    node   VARCHAR NOT NULL,
    tag    VARCHAR NOT NULL,
    unit   VARCHAR,
    min    DOUBLE,
    max    DOUBLE,
    source VARCHAR NOT NULL,
    PRIMARY KEY (site, node, tag)
);
";

/// One import as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportRecord {
    pub id: String,
    pub file_name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// SHA-256 of the profile as applied (canonical JSON), hex.
    pub profile_hash: String,
    pub profile_name: Option<String>,
    pub site: String,
    pub node: String,
    pub width_ms: u32,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub by_user: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub bytes: u64,
    /// Data rows read (the header not counted).
    pub rows_total: u64,
    /// Rows of which every value was stored.
    pub rows_accepted: u64,
    /// Rows with at least one rejected value.
    pub rows_rejected: u64,
    /// Values (samples) stored.
    pub samples: u64,
    /// Rejections (a wide row may have several).
    pub rejections: u64,
    /// Windows written to `aggregates`.
    pub windows: u64,
    /// Distinct tags among the stored samples.
    pub tags: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub error: Option<String>,
}

/// One rejected value or row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// The row as a spreadsheet counts it: the header is row 1.
    pub row: u64,
    /// The column, when one cell is at fault.
    pub column: Option<String>,
    pub reason: String,
    /// The cell's text (cut to 80 characters).
    pub value: Option<String>,
}

/// A tag's unit and valid range, as an import profile gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct TagUnit {
    pub tag: String,
    pub unit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

const RECORD_COLUMNS: &str = "id, file_name, sha256, profile_hash, profile_name, site, node, \
    width_ms, status, by_user, started_ms, finished_ms, bytes, rows_total, rows_accepted, \
    rows_rejected, samples, rejections, windows, tags, first_ms, last_ms, error";

fn record(r: &duckdb::Row<'_>) -> Result<ImportRecord, duckdb::Error> {
    Ok(ImportRecord {
        id: r.get(0)?,
        file_name: r.get(1)?,
        sha256: r.get(2)?,
        profile_hash: r.get(3)?,
        profile_name: r.get(4)?,
        site: r.get(5)?,
        node: r.get(6)?,
        width_ms: r.get::<_, i32>(7)?.max(0) as u32,
        status: r.get(8)?,
        by_user: r.get(9)?,
        started_ms: r.get(10)?,
        finished_ms: r.get(11)?,
        bytes: r.get(12)?,
        rows_total: r.get(13)?,
        rows_accepted: r.get(14)?,
        rows_rejected: r.get(15)?,
        samples: r.get(16)?,
        rejections: r.get(17)?,
        windows: r.get(18)?,
        tags: r.get(19)?,
        first_ms: r.get(20)?,
        last_ms: r.get(21)?,
        error: r.get(22)?,
    })
}

/// What starting an import records.
#[derive(Debug, Clone)]
pub struct NewImport<'a> {
    pub id: &'a str,
    pub file_name: &'a str,
    pub sha256: &'a str,
    pub profile_hash: &'a str,
    pub profile_name: Option<&'a str>,
    pub profile_json: &'a str,
    pub site: &'a str,
    pub node: &'a str,
    pub width_ms: u32,
    pub by_user: Option<&'a str>,
    pub started_ms: i64,
    pub bytes: u64,
}

impl Store {
    /// Saved import profiles: (name, profile JSON, updated), by name.
    pub fn import_profiles(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT name, profile, updated_ms FROM import_profiles ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One saved profile's JSON.
    pub fn import_profile(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT profile FROM import_profiles WHERE name = ?",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Save (create or replace) a profile.
    pub fn put_import_profile(
        &self,
        name: &str,
        json: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO import_profiles VALUES (?, ?, ?)
             ON CONFLICT DO UPDATE SET profile = excluded.profile, updated_ms = excluded.updated_ms",
            params![name, json, now_ms],
        )?;
        Ok(())
    }

    /// Delete a profile; false when there was none.
    pub fn delete_import_profile(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM import_profiles WHERE name = ?", params![name])?
            > 0)
    }

    /// The newest import of this file with this profile, if any.
    pub fn import_by_content(
        &self,
        sha256: &str,
        profile_hash: &str,
    ) -> Result<Option<ImportRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM imports WHERE sha256 = ? AND profile_hash = ?
                     ORDER BY started_ms DESC LIMIT 1"
                ),
                params![sha256, profile_hash],
                record,
            )
            .optional()?)
    }

    pub fn import_record(&self, id: &str) -> Result<Option<ImportRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM imports WHERE id = ?"),
                params![id],
                record,
            )
            .optional()?)
    }

    /// The newest `limit` imports, newest first.
    pub fn import_records(&self, limit: usize) -> Result<Vec<ImportRecord>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM imports ORDER BY started_ms DESC, id LIMIT ?"
        ))?;
        let rows = st.query_map(params![limit as i64], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record an import as running.
    pub fn begin_import(&self, n: &NewImport<'_>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO imports (id, file_name, sha256, profile_hash, profile_name, profile,
                                  site, node, width_ms, status, by_user, started_ms, bytes)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            params![
                n.id,
                n.file_name,
                n.sha256,
                n.profile_hash,
                n.profile_name,
                n.profile_json,
                n.site,
                n.node,
                n.width_ms,
                n.by_user,
                n.started_ms,
                n.bytes
            ],
        )?;
        Ok(())
    }

    /// Record how an import ended (`done` or `failed`) with its counts.
    pub fn finish_import(&self, r: &ImportRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE imports SET status = ?, finished_ms = ?, rows_total = ?, rows_accepted = ?,
                 rows_rejected = ?, samples = ?, rejections = ?, windows = ?, tags = ?,
                 first_ms = ?, last_ms = ?, error = ?
             WHERE id = ?",
            params![
                r.status,
                r.finished_ms,
                r.rows_total,
                r.rows_accepted,
                r.rows_rejected,
                r.samples,
                r.rejections,
                r.windows,
                r.tags,
                r.first_ms,
                r.last_ms,
                r.error,
                r.id
            ],
        )?;
        Ok(())
    }

    /// Store an import's rejections (one transaction).
    pub fn add_import_rejections(&self, id: &str, list: &[Rejection]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut a = tx.appender("import_rejections")?;
            for r in list {
                a.append_row(params![id, r.row, r.column, r.reason, r.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// An import's rejections by row, `limit` from `offset`.
    pub fn import_rejections(
        &self,
        id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Rejection>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT row_no, col, reason, value FROM import_rejections WHERE import_id = ?
             ORDER BY row_no, col NULLS FIRST LIMIT ? OFFSET ?",
        )?;
        let rows = st.query_map(params![id, limit, offset], |r| {
            Ok(Rejection {
                row: r.get(0)?,
                column: r.get(1)?,
                reason: r.get(2)?,
                value: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Copy the windows an import computed (table `windows` of the DuckDB
    /// file `stage`, numbered by `wn` from 1) into `aggregates`, in
    /// transactions of at most [`super::MAX_TX_WINDOWS`], then its
    /// rejections (table `rejections`). Returns the windows copied. `id` is made of `[0-9a-z-]` only.
    pub fn copy_import(
        &self,
        id: &str,
        stage: &std::path::Path,
        site: &str,
        node: &str,
        width_ms: u32,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        let alias = format!("import_stage_{}", id.replace('-', "_"));
        let path = stage.display().to_string().replace('\'', "''");
        self.conn
            .execute_batch(&format!("ATTACH '{path}' AS {alias} (READ_ONLY)"))?;
        let copied = (|| {
            let total: i64 =
                self.conn
                    .query_row(&format!("SELECT count(*) FROM {alias}.windows"), [], |r| {
                        r.get(0)
                    })?;
            let source = format!("import:{id}");
            let step = super::MAX_TX_WINDOWS as i64;
            let mut done = 0i64;
            while done < total {
                let tx = self.conn.unchecked_transaction()?;
                tx.execute(
                    &format!(
                        "INSERT INTO aggregates (site, node, tag, width_ms, start_ms, count, good,
                                                 min, max, mean, twa, last, seq, source)
                         SELECT ?, ?, tag, ?, start_ms, count, good, min, max, mean, twa, last, 0, ?
                         FROM {alias}.windows WHERE wn > ? AND wn <= ? ORDER BY wn"
                    ),
                    params![site, node, width_ms, source, done, done + step],
                )?;
                tx.commit()?;
                done = (done + step).min(total);
                progress(done as u64);
            }
            self.conn.execute(
                &format!(
                    "INSERT INTO import_rejections
                     SELECT ?, row_no, col, reason, value FROM {alias}.rejections"
                ),
                params![id],
            )?;
            Ok::<_, StoreError>(total as u64)
        })();
        let detached = self.conn.execute_batch(&format!("DETACH {alias}"));
        let n = copied?;
        detached?;
        Ok(n)
    }

    /// Delete the windows an import stored (a failed import's partial
    /// windows) and rebuild the chart rollup, which such a deletion
    /// invalidates. Returns the windows deleted.
    pub fn delete_import_windows(&mut self, id: &str) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM aggregates WHERE source = ?",
            params![format!("import:{id}")],
        )?;
        if n > 0 {
            self.rebuild_rollups()?;
        }
        Ok(n as u64)
    }

    /// Record the unit and valid range of imported tags.
    pub fn put_tag_units(
        &self,
        site: &str,
        node: &str,
        source: &str,
        units: &[TagUnit],
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        for u in units {
            tx.execute(
                "INSERT INTO tag_units VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT DO UPDATE SET unit = excluded.unit, min = excluded.min,
                     max = excluded.max, source = excluded.source",
                params![site, node, u.tag, u.unit, u.min, u.max, source],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Windows stored by one import (what a test compares).
    pub fn import_windows(&self, id: &str) -> Result<Vec<ImportedWindow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT tag, start_ms, count, good, min, max, mean, twa, last FROM aggregates
             WHERE source = ? ORDER BY tag, start_ms",
        )?;
        let rows = st.query_map(params![format!("import:{id}")], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A store on another connection to the same database (an import's
    /// writer, on the blocking thread that runs it).
    pub fn another(&self) -> Result<Store, StoreError> {
        Ok(Store {
            conn: self.conn.try_clone()?,
            path: None,
            pool: None,
        })
    }
}

/// (tag, start_ms, count, good, [min, max, mean, twa, last]) of an imported window.
pub type ImportedWindow = (String, i64, u32, u32, [Option<f64>; 5]);
