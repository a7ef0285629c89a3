//! `apos-hub export`: windows, KPIs, forecasts or alarms as CSV or Parquet (docs/export.md).
//!
//! DuckDB admits one process per database file, so while the hub runs the
//! export is asked of it over the control socket: the hub writes it into
//! its state directory and answers where; the CLI moves (or copies) it to
//! `--out` and removes the hub's copy. With no hub answering, the CLI
//! opens the database itself and writes `--out` directly, with progress.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use hub::control::{ControlError, Request};
use hub::etl::export::{self, Format, Outcome, Progress, Spec, What};

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The fleet database (`[storage] path`).
    #[arg(long, default_value = "/var/lib/apos/hub/fleet.duckdb")]
    db: PathBuf,
    /// What to export.
    #[arg(long, value_enum)]
    what: What,
    /// Range start, inclusive: RFC 3339 with a zone, e.g. 2026-12-01T00:00:00Z.
    #[arg(long)]
    from: String,
    /// Range end, exclusive: RFC 3339 with a zone.
    #[arg(long)]
    to: String,
    /// Only this site (repeat for several).
    #[arg(long)]
    site: Vec<String>,
    /// Only this node (repeat for several).
    #[arg(long)]
    node: Vec<String>,
    /// Only this tag (windows, forecasts), KPI (kpis) or alarm (alarms); repeat for several.
    #[arg(long)]
    tag: Vec<String>,
    /// File format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write a directory tree partitioned by site and day
    /// (`site=.../day=YYYY-MM-DD/data_0.<ext>`) instead of one file.
    #[arg(long)]
    partition: bool,
    /// The file (or, with --partition, the new directory) to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let spec = Spec {
        what: a.what,
        from_ms: export::parse_time(&a.from).context("--from")?,
        to_ms: export::parse_time(&a.to).context("--to")?,
        sites: a.site,
        nodes: a.node,
        tags: a.tag,
        format: a.format,
        partition: a.partition,
    };
    spec.validate()?;
    if a.partition && a.out.exists() {
        anyhow::bail!(
            "{} exists; --partition writes a new directory",
            a.out.display()
        );
    }
    eprintln!("exporting {}", spec.describe());
    let socket = hub::control::socket_path(&a.db);
    let req = Request::Export { spec: spec.clone() };
    let o = match hub::control::ask(&socket, &req) {
        Ok(text) => {
            eprintln!("(through the running hub)");
            take(&text, &a.out)?
        }
        Err(ControlError::NoHub { source: asked, .. }) => {
            let store = hub::store::Store::open(&a.db).map_err(|e| {
                anyhow::anyhow!(
                    "no running hub answers on {} ({asked}), and the database cannot be opened: {e}",
                    socket.display()
                )
            })?;
            direct(&store, &spec, &a.out)?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "exported {} rows ({} file{}, {} bytes) to {}",
        o.rows,
        o.files,
        if o.files == 1 { "" } else { "s" },
        o.bytes,
        a.out.display()
    );
    Ok(())
}

/// Export with the file opened here, showing DuckDB's progress estimate.
fn direct(store: &hub::store::Store, spec: &Spec, out: &Path) -> anyhow::Result<Outcome> {
    let progress = Progress::new();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut shown = false;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                if let Some(p) = progress.percent() {
                    eprint!("\r{p:5.1} %");
                    let _ = std::io::stderr().flush();
                    shown = true;
                }
            }
            if shown {
                eprintln!();
            }
        });
        let r = export::export(store.connection(), spec, out, Some(&progress));
        done.store(true, Ordering::Relaxed);
        r
    })
    .map_err(Into::into)
}

/// The hub's answer: move its export to `out`, then remove its job.
fn take(text: &str, out: &Path) -> anyhow::Result<Outcome> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("the hub's answer has no {k}: {text:?}"))
    };
    let num = |k: &str| -> anyhow::Result<u64> {
        field(k)?
            .parse()
            .with_context(|| format!("the hub's answer: {k}"))
    };
    let from = PathBuf::from(field("path")?);
    let job = PathBuf::from(field("job")?);
    let o = Outcome {
        rows: num("rows")?,
        files: num("files")?,
        bytes: num("bytes")?,
    };
    // Another file system: copy instead.
    if std::fs::rename(&from, out).is_err() {
        copy_tree(&from, out).with_context(|| {
            format!(
                "copying the export from {} to {}",
                from.display(),
                out.display()
            )
        })?;
    }
    let _ = std::fs::remove_dir_all(&job);
    Ok(o)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_file() {
        std::fs::copy(from, to)?;
        return Ok(());
    }
    std::fs::create_dir(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        copy_tree(&e.path(), &to.join(e.file_name()))?;
    }
    Ok(())
}
