//! The worker side: `apos-hub sql --worker`, one process per query.
//!
//! The order is the security model (docs/sql.md): resource limits and
//! no-new-privileges first; then the snapshot is opened read-only and
//! DuckDB is configured (memory, threads, no external access, no extension
//! loading, no spilling) and its configuration locked; then the system-call
//! filter goes on; only then is the query read from stdin. Nothing the
//! query says runs before every lock is in place.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use duckdb::types::{TimeUnit, Value};
use serde_json::{Map, Value as J, json};

use super::{Answer, Column, MAX_QUERY_BYTES, WorkerError};

/// What the hub tells the worker on its command line.
#[derive(Debug, Clone)]
pub struct Spec {
    pub db: PathBuf,
    pub memory_limit: u64,
    pub threads: u32,
    pub max_rows: usize,
    /// RLIMIT_CPU, seconds of CPU time over all threads.
    pub cpu_seconds: u64,
}

/// Run the worker: exit status 0 with an [`Answer`] or a [`WorkerError`]
/// as one JSON line on stdout; anything else is a crash.
pub fn main(spec: &Spec) -> i32 {
    let out = match run(spec) {
        Ok(a) => serde_json::to_string(&a),
        Err(e) => serde_json::to_string(&e),
    };
    let mut stdout = std::io::stdout().lock();
    match out {
        Ok(line) => {
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
            0
        }
        Err(_) => 3,
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> WorkerError {
    WorkerError {
        kind: "setup".into(),
        error: format!("the SQL worker could not {what}: {e}"),
    }
}

fn run(spec: &Spec) -> Result<Answer, WorkerError> {
    limits(spec).map_err(|e| setup("set its resource limits", e))?;
    let conn = open(spec)?;
    super::seccomp::install().map_err(|e| setup("install its system-call filter", e))?;
    let mut query = String::new();
    std::io::stdin()
        .take(MAX_QUERY_BYTES as u64 + 1)
        .read_to_string(&mut query)
        .map_err(|e| setup("read the query", e))?;
    if query.len() > MAX_QUERY_BYTES {
        return Err(WorkerError {
            kind: "too_large".into(),
            error: format!("the query is longer than {MAX_QUERY_BYTES} bytes"),
        });
    }
    execute(&conn, &query, spec.max_rows).map_err(|e| {
        let msg = e.to_string();
        let kind = if msg.contains("Out of Memory") || msg.contains("memory limit") {
            "memory"
        } else {
            "sql"
        };
        WorkerError {
            kind: kind.into(),
            error: msg,
        }
    })
}

#[allow(unsafe_code)]
fn set(resource: libc::__rlimit_resource_t, v: u64) -> std::io::Result<()> {
    let l = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(resource, &l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Hard limits equal to soft ones, so the worker cannot raise them again.
#[allow(unsafe_code)]
fn limits(spec: &Spec) -> std::io::Result<()> {
    set(libc::RLIMIT_CORE, 0)?;
    set(libc::RLIMIT_CPU, spec.cpu_seconds.max(1))?;
    // Files it may write: none (stdout is a pipe, which this does not limit).
    set(libc::RLIMIT_FSIZE, 0)?;
    set(libc::RLIMIT_NOFILE, 64)?;
    // DuckDB keeps to memory_limit for its buffers; the address space
    // also holds the binary, thread stacks, malloc arenas and the answer
    // being built, hence the headroom. A query that still gets past
    // DuckDB's accounting fails its allocation here.
    let headroom = (1u64 << 30) + u64::from(spec.threads) * (128 << 20);
    set(
        libc::RLIMIT_AS,
        spec.memory_limit.saturating_mul(2).saturating_add(headroom),
    )?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The hub gone means nobody reads the answer.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // No core, no ptrace by other processes of the same user.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    Ok(())
}

/// Open the snapshot read-only and lock DuckDB's configuration.
fn open(spec: &Spec) -> Result<duckdb::Connection, WorkerError> {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .map_err(|e| setup("configure DuckDB", e))?;
    let conn = duckdb::Connection::open_with_flags(&spec.db, config)
        .map_err(|e| setup("open the fleet database's snapshot", e))?;
    let mib = (spec.memory_limit >> 20).max(1);
    let settings = format!(
        "SET memory_limit = '{mib}MiB';\n\
         SET threads = {threads};\n\
         SET temp_directory = '';\n\
         SET autoinstall_known_extensions = false;\n\
         SET autoload_known_extensions = false;\n\
         SET allow_community_extensions = false;\n\
         SET enable_external_access = false;\n\
         SET lock_configuration = true;",
        threads = spec.threads.max(1)
    );
    conn.execute_batch(&settings)
        .map_err(|e| setup("lock DuckDB's configuration", e))?;
    Ok(conn)
}

fn execute(conn: &duckdb::Connection, query: &str, max_rows: usize) -> duckdb::Result<Answer> {
    let mut stmt = conn.prepare(query)?;
    let mut rows = stmt.query([])?;
    let columns: Vec<Column> = match rows.as_ref() {
        Some(s) => (0..s.column_count())
            .map(|i| Column {
                name: s.column_name(i).cloned().unwrap_or_default(),
                r#type: type_name(&s.column_type(i)),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next()? {
        if out.len() == max_rows {
            truncated = true;
            break;
        }
        let mut cells = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            cells.push(to_json(row.get::<_, Value>(i)?));
        }
        out.push(J::Array(cells));
    }
    Ok(Answer {
        columns,
        row_count: out.len(),
        rows: out,
        truncated,
        as_of_ms: 0,
    })
}

/// DuckDB's own names for the types DuckDB hands over as Arrow.
fn type_name(t: &duckdb::arrow::datatypes::DataType) -> String {
    use duckdb::arrow::datatypes::DataType as D;
    match t {
        D::Null => "NULL".into(),
        D::Boolean => "BOOLEAN".into(),
        D::Int8 => "TINYINT".into(),
        D::Int16 => "SMALLINT".into(),
        D::Int32 => "INTEGER".into(),
        D::Int64 => "BIGINT".into(),
        D::UInt8 => "UTINYINT".into(),
        D::UInt16 => "USMALLINT".into(),
        D::UInt32 => "UINTEGER".into(),
        D::UInt64 => "UBIGINT".into(),
        D::Float16 | D::Float32 => "FLOAT".into(),
        D::Float64 => "DOUBLE".into(),
        D::Decimal128(p, s) | D::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "VARCHAR".into(),
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => "BLOB".into(),
        D::Date32 | D::Date64 => "DATE".into(),
        D::Time32(_) | D::Time64(_) => "TIME".into(),
        D::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        D::Timestamp(_, None) => "TIMESTAMP".into(),
        D::Interval(_) | D::Duration(_) => "INTERVAL".into(),
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => {
            format!("{}[]", type_name(f.data_type()))
        }
        D::Struct(fs) => format!(
            "STRUCT({})",
            fs.iter()
                .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        D::Map(..) => "MAP".into(),
        D::Dictionary(..) => "ENUM".into(),
        D::Union(..) => "UNION".into(),
        other => format!("{other:?}"),
    }
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

/// JSON for one value: numbers as numbers where JSON keeps them exact
/// (integers beyond 2^53 and decimals as strings), times as ISO 8601 text.
fn to_json(v: Value) -> J {
    const EXACT: i128 = 1 << 53;
    let int = |i: i128| {
        if (-EXACT..=EXACT).contains(&i) {
            J::from(i as i64)
        } else {
            J::from(i.to_string())
        }
    };
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(J::Number)
            .unwrap_or_else(|| J::from(f.to_string()))
    };
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::from(b),
        Value::TinyInt(i) => J::from(i),
        Value::SmallInt(i) => J::from(i),
        Value::Int(i) => J::from(i),
        Value::BigInt(i) => int(i128::from(i)),
        Value::HugeInt(i) => int(i),
        Value::UHugeInt(i) => i128::try_from(i).map_or_else(|_| J::from(i.to_string()), int),
        Value::UTinyInt(i) => J::from(i),
        Value::USmallInt(i) => J::from(i),
        Value::UInt(i) => J::from(i),
        Value::UBigInt(i) => int(i128::from(i)),
        Value::Float(f) => float(f64::from(f)),
        Value::Double(f) => float(f),
        Value::Decimal(d) => J::from(d.to_string()),
        Value::Timestamp(unit, v) => J::from(
            jiff::Timestamp::from_microsecond(micros(unit, v))
                .map_or_else(|_| v.to_string(), |t| t.to_string()),
        ),
        Value::Text(s) | Value::Enum(s) => J::from(s),
        Value::Blob(b) | Value::Geometry(b) => {
            J::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        Value::Date32(d) => J::from(
            jiff::civil::Date::new(1970, 1, 1)
                .ok()
                .and_then(|e| e.checked_add(jiff::Span::new().days(i64::from(d))).ok())
                .map_or_else(|| d.to_string(), |d| d.to_string()),
        ),
        Value::Time64(unit, v) => {
            let us = micros(unit, v);
            let s = us / 1_000_000;
            J::from(format!(
                "{:02}:{:02}:{:02}.{:06}",
                s / 3600,
                s / 60 % 60,
                s % 60,
                us % 1_000_000
            ))
        }
        Value::Interval {
            months,
            days,
            nanos,
        } => json!({"months": months, "days": days, "micros": nanos / 1000}),
        Value::List(l) | Value::Array(l) => J::Array(l.into_iter().map(to_json).collect()),
        Value::Struct(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json(v.clone())))
                .collect::<Map<_, _>>(),
        ),
        Value::Map(m) => J::Array(
            m.iter()
                .map(|(k, v)| json!({"key": to_json(k.clone()), "value": to_json(v.clone())}))
                .collect(),
        ),
        Value::Union(v) => to_json(*v),
        // Value is non-exhaustive: a kind added by a later duckdb crate.
        other => J::from(format!("{other:?}")),
    }
}
