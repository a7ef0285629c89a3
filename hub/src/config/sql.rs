//! `[sql]`: limits of the analysts' read-only SQL endpoint (docs/sql.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSql {
    /// Wall-clock limit of one query (the worker is killed after it).
    timeout: Option<Spanned<String>>,
    /// DuckDB `memory_limit` of the worker, e.g. "512MB".
    memory_limit: Option<Spanned<String>>,
    /// DuckDB `threads` of the worker.
    threads: Option<Spanned<i64>>,
    /// Rows returned at most; more set `truncated`.
    max_rows: Option<Spanned<i64>>,
    /// The snapshot is refreshed when a query finds it older than this.
    snapshot_refresh: Option<Spanned<String>>,
    /// Workers running at once; more requests are refused (429).
    concurrency: Option<Spanned<i64>>,
}

/// Layer 2: validated. Defaults apply without a `[sql]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub timeout: Duration,
    /// Bytes.
    pub memory_limit: u64,
    pub threads: u32,
    pub max_rows: usize,
    pub snapshot_refresh: Duration,
    pub concurrency: usize,
    /// The executable started as `<worker> sql --worker`; `None`: this
    /// process's own executable. Not read from the file: a hub embedded in
    /// another program (the demo, the tests) names `apos-hub` here.
    pub worker: Option<PathBuf>,
}

impl Default for Sql {
    fn default() -> Sql {
        Sql {
            timeout: Duration::from_secs(30),
            memory_limit: 512 << 20,
            threads: 1,
            max_rows: 10_000,
            snapshot_refresh: Duration::from_secs(300),
            concurrency: 2,
            worker: None,
        }
    }
}

/// `memory_limit` bounds: below 16 MiB DuckDB cannot plan much; above
/// 1 TiB is a typo.
const MIN_MEMORY: u64 = 16 << 20;
const MAX_MEMORY: u64 = 1 << 40;

/// "512MB", "2GiB", "1048576" (bytes) → bytes. DuckDB's own units:
/// KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && (0.0..1.8e19).contains(&v)).then_some(v as u64)
}

pub(super) fn validate(c: &mut Ctx<'_>, raw: Option<&Spanned<RawSql>>) -> Sql {
    let mut s = Sql::default();
    let Some(raw) = raw else { return s };
    let r = raw.get_ref();
    s.timeout = c.duration(
        "sql › timeout",
        r.timeout.as_ref(),
        s.timeout,
        (Duration::from_millis(100), Duration::from_secs(3600)),
        "how long one query may run before its worker is killed, e.g. \"30s\" (100ms to 1h)",
    );
    s.snapshot_refresh = c.duration(
        "sql › snapshot_refresh",
        r.snapshot_refresh.as_ref(),
        s.snapshot_refresh,
        (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        "how old the fleet database's copy may be before a query refreshes it, e.g. \"5m\" (1s to 7 days)",
    );
    if let Some(m) = &r.memory_limit {
        match parse_size(m.get_ref()) {
            Some(b) if (MIN_MEMORY..=MAX_MEMORY).contains(&b) => s.memory_limit = b,
            Some(_) => c.err(
                m.span(),
                "sql › memory_limit",
                &format!("{:?} is not between 16MiB and 1TiB", m.get_ref()),
                "DuckDB's memory limit per query, e.g. \"512MB\" or \"2GiB\"",
            ),
            None => c.err(
                m.span(),
                "sql › memory_limit",
                &format!("{:?} is not a size", m.get_ref()),
                "write a number and a unit: \"512MB\", \"2GiB\" (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)",
            ),
        }
    }
    let mut int = |v: &Option<Spanned<i64>>, field: &str, (lo, hi): (i64, i64), help: &str| {
        let v = v.as_ref()?;
        if (lo..=hi).contains(v.get_ref()) {
            Some(*v.get_ref())
        } else {
            c.err(
                v.span(),
                field,
                &format!("{} is not between {lo} and {hi}", v.get_ref()),
                help,
            );
            None
        }
    };
    if let Some(t) = int(
        &r.threads,
        "sql › threads",
        (1, 64),
        "DuckDB threads per query (default 1); each query is one process",
    ) {
        s.threads = t as u32;
    }
    if let Some(n) = int(
        &r.max_rows,
        "sql › max_rows",
        (1, 1_000_000),
        "rows an answer carries at most (default 10000); more are cut and flagged `truncated`",
    ) {
        s.max_rows = n as usize;
    }
    if let Some(n) = int(
        &r.concurrency,
        "sql › concurrency",
        (1, 64),
        "queries running at once (default 2); more are refused with 429",
    ) {
        s.concurrency = n as usize;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size(""), None);
    }
}
