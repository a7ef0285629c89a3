//! `apos-hub import`: historian CSV/xlsx into the fleet database, with a
//! progress bar and a validation report (docs/import.md).
//!
//! While the hub runs it holds the database (DuckDB admits one process per
//! file), so the import goes through its control socket: the hub reads
//! the file and the CLI polls the progress. With no hub, the CLI opens the
//! database and imports itself. Both print the same report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hub::control::{self, ControlError, Request};
use hub::etl::import::{self, Answer, Job, Profile, Started};

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The historian export: CSV (any delimiter) or .xlsx.
    pub file: PathBuf,
    /// A saved import profile (see --save-profile and the web page).
    #[arg(long, conflicts_with = "mapping")]
    pub profile: Option<String>,
    /// The mapping: a profile as JSON, or @FILE holding it.
    #[arg(long)]
    pub mapping: Option<String>,
    /// Save the --mapping as a profile of this name.
    #[arg(long, requires = "mapping")]
    pub save_profile: Option<String>,
    /// Print a profile proposed from the file's header and exit.
    #[arg(long)]
    pub propose: bool,
    /// Site of the proposed profile.
    #[arg(long, default_value = "import")]
    pub site: String,
    /// Node of the proposed profile.
    #[arg(long, default_value = "historian")]
    pub node: String,
    /// The fleet database (`[storage] path`).
    #[arg(long, default_value = "/var/lib/apos/hub/fleet.duckdb")]
    pub db: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn mapping(m: &str) -> anyhow::Result<String> {
    match m.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {f}")),
        None => Ok(m.to_owned()),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file =
        std::fs::canonicalize(&args.file).with_context(|| format!("{}", args.file.display()))?;
    if args.propose {
        let p = import::propose(&file, &args.site, &args.node)?;
        println!("{}", serde_json::to_string_pretty(&p.profile)?);
        return Ok(());
    }
    let profile_json = args.mapping.as_deref().map(mapping).transpose()?;
    if let Some(j) = &profile_json {
        let p: Profile = serde_json::from_str(j).context("the mapping is not a profile")?;
        p.check()?;
    } else if args.profile.is_none() {
        anyhow::bail!("give --profile NAME or --mapping JSON|@FILE (--propose prints one)");
    }
    let (profile_name, save) = match (&args.profile, &args.save_profile) {
        (Some(n), _) => (Some(n.clone()), false),
        (None, Some(n)) => (Some(n.clone()), true),
        (None, None) => (None, false),
    };
    let start = Request::ImportStart {
        file: file.display().to_string(),
        profile_name: profile_name.clone(),
        profile: profile_json.clone(),
        save_profile: save,
    };
    let socket = control::socket_path(&args.db);
    let bar = Bar::new(args.json);
    let answer = match control::ask(&socket, &start) {
        Ok(text) => {
            let mut a: Answer = serde_json::from_str(&text).context("the hub's answer")?;
            while !a.already_imported && !finished(&a) {
                bar.show(&a);
                std::thread::sleep(Duration::from_millis(200));
                let text = control::ask(&socket, &Request::ImportStatus { id: a.id.clone() })?;
                a = serde_json::from_str(&text).context("the hub's answer")?;
            }
            a
        }
        Err(ControlError::NoHub { .. }) => {
            local(&args.db, &file, profile_name, profile_json, save, &bar)?
        }
        Err(e) => return Err(e.into()),
    };
    bar.done();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", report(&answer, &file));
    }
    match &answer.record {
        Some(r) if r.status == "failed" => anyhow::bail!(
            "the import failed: {}",
            r.error.as_deref().unwrap_or("unknown")
        ),
        _ => Ok(()),
    }
}

fn finished(a: &Answer) -> bool {
    a.record.as_ref().is_some_and(|r| r.status != "running")
}

/// No hub runs: open the database and import here.
fn local(
    db: &Path,
    file: &Path,
    profile_name: Option<String>,
    profile_json: Option<String>,
    save: bool,
    bar: &Bar,
) -> anyhow::Result<Answer> {
    let mut store = hub::store::Store::open(db)
        .with_context(|| format!("no hub runs, and {} cannot be opened", db.display()))?;
    let profile: Profile = match (&profile_json, &profile_name) {
        (Some(j), _) => serde_json::from_str(j)?,
        (None, Some(n)) => {
            let j = store
                .import_profile(n)?
                .with_context(|| format!("no saved import profile {n:?} in {}", db.display()))?;
            serde_json::from_str(&j)?
        }
        (None, None) => anyhow::bail!("no profile"),
    };
    if save && let Some(n) = &profile_name {
        store.put_import_profile(n, &serde_json::to_string(&profile)?, jiff_now())?;
    }
    let pool = store.read_pool()?;
    let job = Job {
        file: file.to_path_buf(),
        file_name: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        profile,
        profile_name,
        by_user: Some("cli".into()),
        remove_file: false,
        work_dir: import::work_dir(db),
    };
    let (id, already) = match import::start(pool.clone(), job)? {
        Started::Already(r) => (r.id.clone(), true),
        Started::Running { id } => {
            import::wait(&id, |p| {
                bar.show(&Answer {
                    id: id.clone(),
                    already_imported: false,
                    record: None,
                    progress: Some(p.clone()),
                    rejections: Vec::new(),
                })
            });
            (id, false)
        }
    };
    let (record, rejections) = pool.read(|s| {
        Ok((
            s.import_record(&id)?,
            s.import_rejections(&id, 0, import::LISTED_REJECTIONS)?,
        ))
    })?;
    Ok(Answer {
        id,
        already_imported: already,
        record,
        progress: None,
        rejections,
    })
}

fn jiff_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The progress bar (stderr; hidden when it is not a terminal).
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(quiet: bool) -> Bar {
        if quiet {
            return Bar(None);
        }
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}") {
            b.set_style(style);
        }
        Bar(Some(b))
    }

    fn show(&self, a: &Answer) {
        let (Some(b), Some(p)) = (&self.0, &a.progress) else {
            return;
        };
        b.set_length(p.total.max(1));
        b.set_position(p.done.min(p.total));
        b.set_message(format!(
            "{}: {} rows, {:.0} rows/s{}{}",
            p.phase,
            p.rows,
            p.rows_per_s,
            p.eta_s
                .filter(|_| p.phase == "reading")
                .map(|e| format!(", ETA {e:.0} s"))
                .unwrap_or_default(),
            if p.rejections > 0 {
                format!(", {} rejected", p.rejections)
            } else {
                String::new()
            }
        ));
    }

    fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// The validation report as people read it.
pub fn report(a: &Answer, file: &Path) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let Some(r) = &a.record else {
        let _ = writeln!(o, "import {}: no record", a.id);
        return o;
    };
    if a.already_imported {
        let _ = writeln!(
            o,
            "{} was already imported with this profile (import {}, {}): nothing was stored again",
            file.display(),
            r.id,
            hub::control::utc(r.started_ms)
        );
    }
    let secs = r
        .finished_ms
        .map(|f| (f - r.started_ms) as f64 / 1000.0)
        .unwrap_or(0.0);
    let _ = writeln!(
        o,
        "import {} of {}: {} in {secs:.1} s",
        r.id, r.file_name, r.status
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "error: {e}");
    }
    let _ = writeln!(
        o,
        "rows: {} read, {} accepted, {} rejected ({} rejections)",
        r.rows_total, r.rows_accepted, r.rows_rejected, r.rejections
    );
    let _ = writeln!(
        o,
        "stored: {} samples of {} tags in {} windows of {} s at {}/{}{}",
        r.samples,
        r.tags,
        r.windows,
        r.width_ms / 1000,
        r.site,
        r.node,
        match (r.first_ms, r.last_ms) {
            (Some(a), Some(b)) => format!(", {} .. {}", hub::control::utc(a), hub::control::utc(b)),
            _ => String::new(),
        }
    );
    if !a.rejections.is_empty() {
        let _ = writeln!(o, "rejected:");
        for j in &a.rejections {
            let _ = writeln!(
                o,
                "  row {}{}: {}{}",
                j.row,
                j.column
                    .as_deref()
                    .map(|c| format!(", column {c}"))
                    .unwrap_or_default(),
                j.reason,
                j.value
                    .as_deref()
                    .map(|v| format!(" [{v}]"))
                    .unwrap_or_default()
            );
        }
        if r.rejections > a.rejections.len() as u64 {
            let _ = writeln!(
                o,
                "  … {} more: GET /api/v1/etl/imports/{}/rejections",
                r.rejections - a.rejections.len() as u64,
                r.id
            );
        }
    }
    o
}
