//! `apos-hub sql 'SELECT …'` and the hidden `apos-hub sql --worker`: the
//! locked-down process that runs analysts' read-only SQL (docs/sql.md).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The query; `-` or nothing reads it from stdin.
    query: Option<String>,
    /// Configuration file (for `[sql]` limits and `[storage] path`; its
    /// defaults apply when it cannot be read).
    #[arg(long, default_value = crate::CONFIG)]
    config: PathBuf,
    /// The fleet database (default: the configuration's `[storage] path`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Print the answer as JSON (as the API gives it) instead of a table.
    #[arg(long)]
    json: bool,
    /// Run as the worker process the hub starts for each query.
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true)]
    worker_db: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 512 << 20)]
    worker_memory: u64,
    #[arg(long, hide = true, default_value_t = 1)]
    worker_threads: u32,
    #[arg(long, hide = true, default_value_t = 10_000)]
    worker_max_rows: usize,
    #[arg(long, hide = true, default_value_t = 60)]
    worker_cpu_seconds: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.worker {
        let db = args.worker_db.context("--worker needs --worker-db")?;
        let code = hub::sql::worker::main(&hub::sql::worker::Spec {
            db,
            memory_limit: args.worker_memory,
            threads: args.worker_threads,
            max_rows: args.worker_max_rows,
            cpu_seconds: args.worker_cpu_seconds,
        });
        std::process::exit(code);
    }
    let (mut sql, storage) = match hub::config::load(&args.config) {
        Ok(c) => (c.sql, Some(c.storage_path)),
        Err(hub::config::ConfigError::Read { .. }) => (hub::config::Sql::default(), None),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    let db = args
        .db
        .or(storage)
        .unwrap_or_else(|| PathBuf::from(crate::FLEET_DB));
    let query = match args.query.as_deref() {
        None | Some("-") => {
            let mut q = String::new();
            std::io::stdin()
                .take(hub::sql::MAX_QUERY_BYTES as u64 + 1)
                .read_to_string(&mut q)
                .context("reading the query from stdin")?;
            q
        }
        Some(q) => q.to_owned(),
    };
    // The CLI is a single query: the server's concurrency limit is not
    // this process's to share.
    sql.concurrency = 1;
    let answer = match ask_hub(&db, &query) {
        Some(a) => a?,
        None => {
            if !db.exists() {
                anyhow::bail!("{} does not exist", db.display());
            }
            hub::sql::Sandbox::for_file(&sql, &db)
                .query_blocking(&query)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", table(&answer));
    }
    Ok(())
}

/// The answer of the hub running on `db`, or `None` when no hub runs.
fn ask_hub(db: &std::path::Path, query: &str) -> Option<anyhow::Result<hub::sql::Answer>> {
    let socket = hub::control::socket_path(db);
    match hub::control::ask(
        &socket,
        &hub::control::Request::Sql {
            query: query.to_owned(),
        },
    ) {
        Ok(text) => Some(serde_json::from_str(&text).context("the hub's answer")),
        Err(hub::control::ControlError::NoHub { .. }) => None,
        Err(e) => Some(Err(anyhow::anyhow!("{e}"))),
    }
}

/// Columns with their types, then the rows, aligned.
fn table(a: &hub::sql::Answer) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "NULL".to_owned(),
        other => other.to_string(),
    };
    let mut grid: Vec<Vec<String>> = vec![
        a.columns.iter().map(|c| c.name.clone()).collect(),
        a.columns.iter().map(|c| c.r#type.clone()).collect(),
    ];
    for r in &a.rows {
        grid.push(
            r.as_array()
                .map(|r| r.iter().map(cell).collect())
                .unwrap_or_default(),
        );
    }
    let n = a.columns.len();
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            grid.iter()
                .map(|r| r.get(i).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (k, r) in grid.iter().enumerate() {
        let line: Vec<String> = (0..n)
            .map(|i| format!("{:w$}", r.get(i).map_or("", String::as_str), w = widths[i]))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if k == 1 {
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("-+-"),
            );
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "({} row{}{}; data as of {})\n",
        a.row_count,
        if a.row_count == 1 { "" } else { "s" },
        if a.truncated { ", truncated" } else { "" },
        hub::control::utc(a.as_of_ms)
    ));
    out
}
