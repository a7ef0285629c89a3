//! `apos-bench import` (issue 19): a historian CSV in long form (time,
//! tag, value, quality; ~1 GB by default) imported by `apos-hub import`
//! (no hub running: the CLI opens a fresh database), against DuckDB's own
//! `read_csv` into a table and pandas' `read_csv`, each in a process of its
//! own in the same run: seconds, rows per second and peak RSS (VmHWM,
//! polled from /proc), and the ratios.
//!
//! ```text
//! cargo build --profile dev --workspace --bins
//! target/dev/apos-bench import            # ~1 GB
//! target/dev/apos-bench import --mb 50    # a quick run
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Arguments of the benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Size of the generated CSV, MB.
    #[arg(long, default_value_t = 1024)]
    pub mb: u64,
    /// Tags in the file.
    #[arg(long, default_value_t = 1000)]
    pub tags: u32,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Python with pandas (default: the repository's .venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Internal: run DuckDB's read_csv of this file in this process.
    #[arg(long, hide = true)]
    pub child_duckdb: Option<PathBuf>,
}

/// One contender's run.
#[derive(Debug, Clone)]
struct Run {
    name: &'static str,
    seconds: f64,
    peak_rss_mib: f64,
    ok: bool,
    note: String,
}

/// Run `cmd` to its end, polling its peak RSS.
fn measure(name: &'static str, mut cmd: Command) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    let mut peak = 0u64;
    // stdout/stderr drained on threads: a full pipe would stall the child.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_string(o, &mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut s);
        }
        s
    });
    let status = loop {
        if let Some(s) = super::procstat::sample(pid) {
            peak = peak.max(s.peak_rss_kib);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = started.elapsed().as_secs_f64();
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(Run {
        name,
        seconds,
        peak_rss_mib: peak as f64 / 1024.0,
        ok: status.success(),
        note: if status.success() {
            stdout.lines().last().unwrap_or("").to_owned()
        } else {
            format!("{status}: {}", stderr.lines().last().unwrap_or(""))
        },
    })
}

/// Write the long-form CSV: `rows` rows, tags round-robin, one second
/// apart per tag. Returns the rows written.
fn generate(path: &Path, mb: u64, tags: u32) -> anyhow::Result<u64> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "Timestamp,Tag,Value,Quality")?;
    let target = mb * 1_000_000;
    let mut bytes = 0u64;
    let mut rows = 0u64;
    let mut line = String::with_capacity(80);
    while bytes < target {
        let sec = (rows / u64::from(tags)) as i64;
        let tag = rows % u64::from(tags);
        anyhow::ensure!(
            sec < 31 * 86_400,
            "more rows than January holds: raise --tags"
        );
        let (day, rest) = (sec / 86_400, sec % 86_400);
        let v = ((rows % 9973) as f64) * 0.125 + (tag as f64);
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "2026-01-{:02}T{:02}:{:02}:{:02}Z,area{:02}.tag{:04},{v:.3},{}",
            day + 1,
            rest / 3600,
            rest / 60 % 60,
            rest % 60,
            tag % 50,
            tag,
            if rows.is_multiple_of(997) {
                "Bad"
            } else {
                "Good"
            }
        );
        w.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
        rows += 1;
    }
    w.flush()?;
    Ok(rows)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: Args) -> anyhow::Result<()> {
    if let Some(csv) = &args.child_duckdb {
        let db = csv.with_extension("readcsv.duckdb");
        let n = hub::etl::import::duckdb_read_csv(csv, &db)?;
        let _ = std::fs::remove_file(&db);
        println!("{n} rows");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("historian.csv");
    let t = Instant::now();
    let rows = generate(&csv, args.mb, args.tags)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "generated {} ({:.0} MB, {rows} rows, {} tags) in {:.1} s",
        csv.display(),
        size as f64 / 1e6,
        args.tags,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("the binary's directory")?;
    let profile = serde_json::json!({
        "layout": "long", "site": "bench", "node": "historian", "width_ms": 60000,
        "time_column": "Timestamp", "time_format": "rfc3339", "time_zone": "UTC",
        "tag_column": "Tag", "value_column": "Value", "quality_column": "Quality"
    })
    .to_string();
    let db = dir.join("fleet.duckdb");
    let _ = std::fs::remove_file(&db);
    let mut ours = Command::new(bin.join("apos-hub"));
    ours.arg("import")
        .arg(&csv)
        .args(["--mapping", &profile, "--json", "--db"])
        .arg(&db);
    let mut duck = Command::new(&exe);
    duck.args(["import", "--child-duckdb"]).arg(&csv);
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let mut pandas = Command::new(&python);
    pandas.args([
        "-c",
        "import sys, pandas as pd; df = pd.read_csv(sys.argv[1]); print(len(df), 'rows')",
    ]);
    pandas.arg(&csv);
    let runs = vec![
        measure("apos-hub import", ours)?,
        measure("duckdb read_csv", duck)?,
        measure("pandas read_csv", pandas)?,
    ];
    println!();
    println!(
        "{:<18} {:>9} {:>12} {:>14}  note",
        "", "seconds", "rows/s", "peak RSS MiB"
    );
    for r in &runs {
        println!(
            "{:<18} {:>9.2} {:>12.0} {:>14.0}  {}",
            r.name,
            r.seconds,
            rows as f64 / r.seconds,
            r.peak_rss_mib,
            if r.ok { "" } else { "FAILED " }.to_owned()
                + &r.note.chars().take(120).collect::<String>()
        );
    }
    let ours = &runs[0];
    for r in &runs[1..] {
        println!(
            "apos-hub import / {}: {:.2}× the time, {:.2}× the peak RSS",
            r.name,
            ours.seconds / r.seconds,
            ours.peak_rss_mib / r.peak_rss_mib.max(1.0)
        );
    }
    if let Some(d) = &args.dir {
        println!("(files kept in {})", d.display());
    }
    anyhow::ensure!(ours.ok, "the import failed: {}", ours.note);
    Ok(())
}
