//! Windows, KPIs, forecasts and alarms out as CSV or Parquet (docs/export.md).
//!
//! One export is one `COPY (SELECT …) TO …` on a clone of the store's
//! connection (the same DuckDB instance: DuckDB admits one process per
//! file), so the ingest keeps committing and the export sees one snapshot.
//! The web API runs exports as jobs ([`jobs`]); the CLI asks the running
//! hub over the control socket, or opens the file when no hub runs.
//!
//! ```text
//! Spec ──validate──▶ SELECT (filters as literals) ──COPY … (FORMAT parquet|csv [, PARTITION_BY (site, day)])──▶ <out>.part ──rename──▶ <out>
//!                                                  └─ progress: DuckDB's own estimate, polled every 250 ms
//! ```
//!
//! Filters are written into the statement as SQL string literals (quotes
//! doubled, control characters refused): DuckDB does not bind parameters
//! inside `COPY (…)`.

pub mod jobs;
mod tar;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::Connection;
use serde::{Deserialize, Serialize};

pub use tar::write_tree as write_tar;

/// What to export.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum What {
    /// Aggregate windows (edge and imported), table `aggregates`.
    Windows,
    /// The newest value of every KPI window (`kpi_latest`).
    Kpis,
    /// Forecasts, one row per forecast value.
    Forecasts,
    /// Alarm journal entries.
    Alarms,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Windows => "windows",
            What::Kpis => "kpis",
            What::Forecasts => "forecasts",
            What::Alarms => "alarms",
        }
    }
}

/// The file format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// One export: what, the time range `[from_ms, to_ms)` (from inclusive,
/// to exclusive), optional filters (empty: all) and the file layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub what: What,
    pub from_ms: i64,
    pub to_ms: i64,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tags (windows, forecasts), KPI names (kpis) or alarm names (alarms).
    #[serde(default)]
    pub tags: Vec<String>,
    pub format: Format,
    /// A hive tree `site=…/day=YYYY-MM-DD/data_0.<ext>` instead of one file.
    #[serde(default)]
    pub partition: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "Parquet is not available in this hub's DuckDB (built without its parquet extension); export as CSV: {0}"
    )]
    NoParquet(String),
    #[error("duckdb: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the export was cancelled")]
    Cancelled,
    #[error("too many exports are queued; try again when one has finished")]
    Busy,
}

/// Most values in one filter list.
pub const MAX_FILTER_VALUES: usize = 1000;
/// Longest filter value.
const MAX_VALUE_LEN: usize = 256;

/// Parse an RFC 3339 time with its zone (`2026-12-01T00:00:00Z`,
/// `2026-12-01T01:00:00+01:00`) into ms since 1970.
pub fn parse_time(s: &str) -> Result<i64, ExportError> {
    let t: jiff::Timestamp = s.trim().parse().map_err(|e| {
        ExportError::Invalid(format!(
            "{s:?} is not an RFC 3339 time with a zone (e.g. 2026-12-01T00:00:00Z): {e}"
        ))
    })?;
    Ok(t.as_millisecond())
}

/// ms since 1970 as RFC 3339 UTC (or the number, out of range).
pub fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spec {
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.from_ms >= self.to_ms {
            return Err(ExportError::Invalid(format!(
                "the range is empty: from ({}) must be before to ({})",
                format_time(self.from_ms),
                format_time(self.to_ms)
            )));
        }
        for (name, list) in [
            ("site", &self.sites),
            ("node", &self.nodes),
            ("tag", &self.tags),
        ] {
            if list.len() > MAX_FILTER_VALUES {
                return Err(ExportError::Invalid(format!(
                    "{name}: at most {MAX_FILTER_VALUES} values, {} given",
                    list.len()
                )));
            }
            for v in list {
                if v.is_empty() || v.len() > MAX_VALUE_LEN || v.chars().any(char::is_control) {
                    return Err(ExportError::Invalid(format!(
                        "{name}: {v:?} is empty, longer than {MAX_VALUE_LEN} bytes or holds control characters"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A file name for people: `apos-windows-20261201T000000Z-20261202T000000Z.parquet`
    /// (`.tar` for a partitioned tree).
    pub fn file_name(&self) -> String {
        let t = |ms: i64| {
            format_time(ms)
                .replace(['-', ':'], "")
                .split('.')
                .next()
                .unwrap_or_default()
                .trim_end_matches('Z')
                .to_owned()
                + "Z"
        };
        format!(
            "apos-{}-{}-{}.{}",
            self.what.as_str(),
            t(self.from_ms),
            t(self.to_ms),
            if self.partition {
                "tar"
            } else {
                self.format.ext()
            }
        )
    }

    /// One line for the audit log and the CLI.
    pub fn describe(&self) -> String {
        let list = |name: &str, l: &[String]| {
            if l.is_empty() {
                String::new()
            } else {
                format!(" {name}={}", l.join(","))
            }
        };
        format!(
            "{} from {} to {} (exclusive){}{}{} as {}{}",
            self.what.as_str(),
            format_time(self.from_ms),
            format_time(self.to_ms),
            list("site", &self.sites),
            list("node", &self.nodes),
            list("tag", &self.tags),
            self.format.ext(),
            if self.partition {
                ", partitioned by site and day"
            } else {
                ""
            }
        )
    }
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list(col: &str, values: &[String]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let l: Vec<String> = values.iter().map(|v| lit(v)).collect();
    format!(" AND {col} IN ({})", l.join(", "))
}

/// Timestamp column from ms since 1970, UTC.
fn tz(ms: &str, name: &str) -> String {
    format!("epoch_ms({ms})::TIMESTAMPTZ AS {name}")
}

/// Whether `aggregates` has the `source` column (added by the importer).
fn has_source(conn: &Connection) -> Result<bool, duckdb::Error> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_columns()
         WHERE database_name = current_database() AND schema_name = 'main'
           AND table_name = 'aggregates' AND column_name = 'source'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// The SELECT an export copies (ordered by time, then site, node, name).
pub fn select_sql(spec: &Spec, source_column: bool) -> String {
    let (time, name) = match spec.what {
        What::Windows => ("start_ms", "tag"),
        What::Kpis => ("start_ms", "kpi"),
        What::Forecasts => ("origin_ms", "tag"),
        What::Alarms => ("ts_ms", "alarm"),
    };
    let filter = format!(
        "{time} >= {} AND {time} < {}{}{}{}",
        spec.from_ms,
        spec.to_ms,
        in_list("site", &spec.sites),
        in_list("node", &spec.nodes),
        in_list(name, &spec.tags)
    );
    let day = if spec.partition {
        format!(", strftime(epoch_ms({time}), '%Y-%m-%d') AS day")
    } else {
        String::new()
    };
    match spec.what {
        What::Windows => format!(
            "SELECT site, node, tag, width_ms, start_ms, {}, {}, count, good, min, max, mean, twa, last, {} AS source, seq{day}
             FROM aggregates WHERE {filter}
             ORDER BY start_ms, site, node, tag, width_ms",
            tz("start_ms", "start_time"),
            tz("start_ms + width_ms", "end_time"),
            if source_column {
                "source"
            } else {
                "NULL::VARCHAR"
            },
        ),
        What::Kpis => format!(
            "SELECT site, node, kpi, win, label, start_ms, {}, end_ms, {}, until_ms, closed, computed_ms, {},
                    coverage, quality, value, unit, figures, seq{day}
             FROM kpi_latest WHERE {filter}
             ORDER BY start_ms, site, node, kpi, win",
            tz("start_ms", "start_time"),
            tz("end_ms", "end_time"),
            tz("computed_ms", "computed_time"),
        ),
        // values[k] is for origin + k·step (store::forecast): one row each.
        What::Forecasts => format!(
            "SELECT site, node, model, version, tag, origin_ms, {}, made_ms, {}, step_ms, step,
                    origin_ms + step * step_ms AS ts_ms, {}, value, seq{day}
             FROM (SELECT *, unnest(range(len(v))) AS step, unnest(v) AS value
                   FROM (SELECT *, CAST(forecast AS DOUBLE[]) AS v FROM forecasts WHERE {filter}))
             ORDER BY origin_ms, site, node, model, tag, step",
            tz("origin_ms", "origin_time"),
            tz("made_ms", "made_time"),
            tz("origin_ms + step * step_ms", "ts"),
        ),
        What::Alarms => format!(
            "SELECT site, node, alarm, aseq, ts_ms, {}, change, state, priority, value, by_user, comment, seq{day}
             FROM alarms WHERE {filter}
             ORDER BY ts_ms, site, node, alarm, aseq",
            tz("ts_ms", "ts"),
        ),
    }
}

/// The whole `COPY` statement writing to `out`.
pub fn copy_sql(spec: &Spec, source_column: bool, out: &Path) -> String {
    let format = match spec.format {
        Format::Parquet => "FORMAT parquet, COMPRESSION zstd",
        Format::Csv => "FORMAT csv, HEADER",
    };
    let partition = if spec.partition {
        ", PARTITION_BY (site, day)"
    } else {
        ""
    };
    format!(
        "COPY ({}) TO {} ({format}{partition})",
        select_sql(spec, source_column),
        lit(&out.to_string_lossy())
    )
}

/// A running export's progress, shared with whoever shows it.
#[derive(Default)]
pub struct Progress {
    /// Percent done (f64 bits); NaN while DuckDB has no estimate.
    pct: AtomicU64,
    cancelled: AtomicBool,
    interrupt: Mutex<Option<Arc<duckdb::InterruptHandle>>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("percent", &self.percent())
            .finish_non_exhaustive()
    }
}

impl Progress {
    pub fn new() -> Progress {
        let p = Progress::default();
        p.pct.store(f64::NAN.to_bits(), Ordering::Relaxed);
        p
    }

    /// Percent done, when DuckDB has an estimate.
    pub fn percent(&self) -> Option<f64> {
        let v = f64::from_bits(self.pct.load(Ordering::Relaxed));
        v.is_finite().then_some(v)
    }

    fn set(&self, v: f64) {
        self.pct.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Stop the export (the COPY is interrupted; its partial output removed).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        if let Some(h) = self
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub rows: u64,
    /// Files written (1 unless partitioned).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

fn part_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

fn remove_any(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    let _ = std::fs::remove_file(p);
}

/// Files and bytes under `p` (a file or a tree).
pub fn tree_size(p: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(p)?;
    if m.is_file() {
        return Ok((1, m.len()));
    }
    let mut total = (0, 0);
    for e in std::fs::read_dir(p)? {
        let (f, b) = tree_size(&e?.path())?;
        total.0 += f;
        total.1 += b;
    }
    Ok(total)
}

/// Run one export on (a clone of) `conn`, writing `out`: a file, or with
/// `spec.partition` a directory tree. Written under `<out>.part` and
/// renamed, so `out` is never a half-written export. Blocking.
pub fn export(
    conn: &Connection,
    spec: &Spec,
    out: &Path,
    progress: Option<&Progress>,
) -> Result<Outcome, ExportError> {
    spec.validate()?;
    if spec.partition && out.exists() {
        return Err(ExportError::Invalid(format!(
            "{} exists; a partitioned export makes a new directory",
            out.display()
        )));
    }
    let part = part_path(out);
    remove_any(&part);
    // A connection of our own: the settings below stay with it.
    let c = conn.try_clone()?;
    // Without ICU, TIMESTAMPTZ is always UTC; with it, make sure.
    let _ = c.execute_batch("SET TimeZone = 'UTC'");
    // Never fetch an extension from the internet at run time (DuckDB tries
    // to download a missing parquet extension otherwise).
    let _ = c.execute_batch("SET autoinstall_known_extensions = false");
    let sql = copy_sql(spec, has_source(&c)?, &part);
    let done = AtomicBool::new(false);
    let rows = std::thread::scope(|scope| {
        if let Some(p) = progress {
            let _ = c.set_query_progress_tracking(true);
            *p.interrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.interrupt_handle());
            if p.is_cancelled() {
                return Err(ExportError::Cancelled);
            }
            let handle = c.progress_handle();
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(v) = handle.query_progress().percentage() {
                        p.set(v.clamp(0.0, 100.0));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        let r = c.execute(&sql, []);
        done.store(true, Ordering::Relaxed);
        if let Some(p) = progress {
            *p.interrupt.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if p.is_cancelled() {
                return Err(ExportError::Cancelled);
            }
        }
        r.map_err(|e| classify(spec, e))
    });
    let rows = match rows {
        Ok(n) => n as u64,
        Err(e) => {
            remove_any(&part);
            return Err(e);
        }
    };
    if spec.partition && !part.exists() {
        // No rows: DuckDB makes no directory; an empty tree is still a tree.
        std::fs::create_dir_all(&part).map_err(io(&part))?;
    }
    if !spec.partition && out.is_dir() {
        return Err(ExportError::Invalid(format!(
            "{} is a directory",
            out.display()
        )));
    }
    std::fs::rename(&part, out).map_err(io(out))?;
    let (files, bytes) = tree_size(out).map_err(io(out))?;
    if let Some(p) = progress {
        p.set(100.0);
    }
    Ok(Outcome { rows, files, bytes })
}

fn classify(spec: &Spec, e: duckdb::Error) -> ExportError {
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    if spec.format == Format::Parquet
        && lower.contains("parquet")
        && (lower.contains("extension") || lower.contains("does not exist"))
    {
        ExportError::NoParquet(msg)
    } else if lower.contains("interrupt") {
        ExportError::Cancelled
    } else {
        ExportError::Db(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_need_a_zone_and_literals_are_quoted() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00").unwrap(), 1000);
        assert!(parse_time("1970-01-01T00:00:01").is_err());
        assert_eq!(lit("a'b"), "'a''b'");
        let spec = Spec {
            what: What::Windows,
            from_ms: 0,
            to_ms: 1,
            sites: vec!["s' OR 1=1 --".into()],
            nodes: vec![],
            tags: vec![],
            format: Format::Csv,
            partition: false,
        };
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE aggregates (site VARCHAR, node VARCHAR, tag VARCHAR, width_ms INTEGER,
             start_ms BIGINT, count UINTEGER, good UINTEGER, min DOUBLE, max DOUBLE, mean DOUBLE,
             twa DOUBLE, last DOUBLE, seq UBIGINT);
             INSERT INTO aggregates VALUES ('s', 'n', 't', 10, 0, 1, 1, 1, 1, 1, 1, 1, 1);",
        )
        .unwrap();
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM ({})", select_sql(&spec, false)),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            spec.file_name(),
            "apos-windows-19700101T000000Z-19700101T000000Z.csv"
        );
    }
}
