//! `apos-bench export`: Parquet export of many windows (issue 19 §5).
//!
//! Generates `--windows` windows (default 100 million: 100 nodes on 4
//! sites × 100 tags × 10,000 windows of 10 s, in arrival order) into a
//! temporary fleet database with one `INSERT … SELECT … FROM range()`, then
//! exports all of them with the hub's own export (`hub::etl::export`, the
//! same `COPY` the API and the CLI run) as Parquet (zstd) and as CSV, and
//! reports seconds, rows per second, file size and bytes per window.
//!
//! ```text
//! apos-bench export                          # 100 million windows
//! apos-bench export --windows 1000000        # a quick run
//! apos-bench export --partition              # the site/day hive tree instead of one file
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use hub::etl::export::{Format, Spec, What};

/// Arguments of the benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Windows to generate and export.
    #[arg(long, default_value_t = 100_000_000)]
    windows: u64,
    /// Also export as CSV, for comparison (`--csv false` to skip).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    csv: bool,
    /// Export the partitioned tree (site, day) instead of one file.
    #[arg(long)]
    partition: bool,
    /// Where the temporary database and exports go (several GB at full size).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Series per generated window set: 100 nodes × 100 tags.
const SERIES: u64 = 10_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;

pub async fn run(a: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(a)).await?
}

fn run_blocking(a: Args) -> anyhow::Result<()> {
    let tmp = match &a.work_dir {
        Some(d) => std::fs::create_dir_all(d).and_then(|()| tempfile::tempdir_in(d)),
        None => tempfile::tempdir(),
    }
    .context("temporary directory")?;
    let db = tmp.path().join("fleet.duckdb");
    let store = hub::store::Store::open(&db)?;
    let t = Instant::now();
    store.connection().execute_batch(&format!(
        "INSERT INTO aggregates (site, node, tag, width_ms, start_ms, count, good, min, max, mean, twa, last, seq)
         SELECT 'site' || (i % {SERIES} // 2500), 'node' || lpad(((i % {SERIES}) // 100)::VARCHAR, 3, '0'),
                'area' || ((i % 100) // 10) || '.tag' || lpad((i % 100)::VARCHAR, 2, '0'),
                10000, {T0} + (i // {SERIES}) * 10000, 10, 10,
                v - 1.0, v + 1.0, v, v + 0.01, v + 0.5, i // {SERIES} + 1
         FROM (SELECT range AS i, 50.0 + 10.0 * sin(range / 977.0) + (range % 7) * 0.125 AS v
               FROM range({}));
         CHECKPOINT;",
        a.windows
    ))?;
    let gen_s = t.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&db)?.len();
    println!(
        "generated {} windows in {gen_s:.1} s; database {:.1} MiB",
        a.windows,
        db_bytes as f64 / 1_048_576.0
    );
    let last = T0 + (a.windows.div_ceil(SERIES) as i64) * 10_000;
    let mut formats = vec![Format::Parquet];
    if a.csv {
        formats.push(Format::Csv);
    }
    println!(
        "format   layout       rows          seconds  rows/s        size MiB   bytes/window  files  peak RSS MiB (export alone)"
    );
    for format in formats {
        let spec = Spec {
            what: What::Windows,
            from_ms: T0,
            to_ms: last,
            sites: vec![],
            nodes: vec![],
            tags: vec![],
            format,
            partition: a.partition,
        };
        let out = tmp.path().join(format!("export.{}", format.ext()));
        // The peak RSS of the export alone: the generation's is forgotten
        // (Linux resets VmHWM on "5" written to clear_refs).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let t = Instant::now();
        let o = match hub::etl::export::export(store.connection(), &spec, &out, None) {
            Ok(o) => o,
            // Reported, and the CSV comparison still runs.
            Err(e @ hub::etl::export::ExportError::NoParquet(_)) => {
                println!("{:<8} not measured: {e}", format.ext());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            o.rows == a.windows,
            "exported {} rows of {}",
            o.rows,
            a.windows
        );
        let peak_mib = super::procstat::sample(std::process::id())
            .map_or(f64::NAN, |p| p.peak_rss_kib as f64 / 1024.0);
        println!(
            "{:<8} {:<12} {:<13} {s:<8.1} {:<13.0} {:<10.1} {:<13.1} {:<6} {peak_mib:.0}",
            format.ext(),
            if a.partition { "site/day" } else { "one file" },
            o.rows,
            o.rows as f64 / s,
            o.bytes as f64 / 1_048_576.0,
            o.bytes as f64 / o.rows.max(1) as f64,
            o.files
        );
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_file(&out);
    }
    Ok(())
}
