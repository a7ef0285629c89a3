//! Periodic site reports (docs/insights.md, "Reports"): KPIs, trends,
//! insights, alarms and data quality of one site over a period, as HTML
//! with a print stylesheet and, through headless Chromium's print-to-PDF,
//! as PDF. Stored under `<storage dir>/reports/` as `<id>.html`,
//! `<id>.pdf` and `<id>.json` (what the list shows).
//!
//! ```text
//! [[report]] schedule ──▶ run::start (task with the hub) ─┐
//! POST /api/v1/reports, `apos-hub report make` ───────────┤
//!                                                         ▼
//!        content::collect (read pool, blocking) ─▶ html::render ─▶ <id>.html
//!                                                  pdf::print (Chromium, own process, timeout) ─▶ <id>.pdf
//!                                                  <id>.json ─▶ list, webhook announcement
//! ```

pub mod content;
pub mod html;
pub mod pdf;
pub mod run;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{ReadPool, Store, StoreError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("fleet database: {0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Bad(String),
}

/// A stored report, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportMeta {
    /// File stem: `<name>-<end as yyyymmddThhmmZ>`, letters, digits, `-`, `_`.
    pub id: String,
    /// The `[[report]]` name, or `<site>-on-demand`.
    pub name: String,
    pub site: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub made_ms: i64,
    /// `schedule` or `demand`.
    pub trigger: String,
    /// Insights in the report.
    pub insights: u64,
    /// The HTML file's size in bytes.
    pub html_bytes: u64,
    /// The PDF's size; null when there is none (see `pdf_note`).
    pub pdf_bytes: Option<u64>,
    /// Why there is no PDF (no Chromium, Chromium failed), or null.
    pub pdf_note: Option<String>,
}

/// What to make.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub site: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub trigger: &'static str,
    /// Chromium for the PDF; `None`: HTML only.
    pub chromium: Option<PathBuf>,
    /// The hub's name in the heading.
    pub hub: String,
}

/// Where reports are stored: `reports/` beside the fleet database.
pub fn dir(storage_path: &Path) -> PathBuf {
    storage_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("reports")
}

/// The longest Chromium may take to print one report.
pub const PDF_TIMEOUT: Duration = Duration::from_secs(60);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A report id is a file stem we made: nothing else is ever opened.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 160
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y%m%dT%H%MZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn check(req: &Request) -> Result<(), ReportError> {
    if req.from_ms >= req.to_ms {
        return Err(ReportError::Bad("the period is empty".into()));
    }
    if protocol::topic::check_id(&req.site).is_err() || !valid_id(&req.name) {
        return Err(ReportError::Bad(
            "site and name must be identifiers (letters, digits, `_`, `-`)".into(),
        ));
    }
    Ok(())
}

/// Make one report (blocking: queries, files, Chromium): collect through a
/// read connection, then render, store the HTML, print the PDF and store
/// the description with the connection given back.
pub fn make(reads: &ReadPool, dir: &Path, req: &Request) -> Result<ReportMeta, ReportError> {
    check(req)?;
    let made_ms = crate::web::now_ms();
    let c = {
        let (site, from, to) = (req.site.clone(), req.from_ms, req.to_ms);
        reads.read(move |s| content::collect(s, &site, from, to, made_ms))?
    };
    finish(&c, dir, req, made_ms)
}

/// [`make`] on a store at hand (the CLI with the database file open, or
/// the control socket's read connection).
pub fn make_in(store: &Store, dir: &Path, req: &Request) -> Result<ReportMeta, ReportError> {
    check(req)?;
    let made_ms = crate::web::now_ms();
    let c = content::collect(store, &req.site, req.from_ms, req.to_ms, made_ms)?;
    finish(&c, dir, req, made_ms)
}

fn finish(
    c: &content::Content,
    dir: &Path,
    req: &Request,
    made_ms: i64,
) -> Result<ReportMeta, ReportError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut id = format!("{}-{}", req.name, stamp(req.to_ms));
    let mut k = 1;
    while dir.join(format!("{id}.json")).exists() {
        k += 1;
        id = format!("{}-{}-{k}", req.name, stamp(req.to_ms));
    }
    let page = html::render(c, &req.hub, made_ms);
    let html_path = dir.join(format!("{id}.html"));
    write_private(&html_path, page.as_bytes())?;
    let pdf_path = dir.join(format!("{id}.pdf"));
    let (pdf_bytes, pdf_note) = match &req.chromium {
        None => (
            None,
            Some("PDF not made: no Chromium configured ([[report]] chromium = \"\")".to_owned()),
        ),
        Some(chromium) => match pdf::print(chromium, &html_path, &pdf_path, PDF_TIMEOUT) {
            Ok(n) => (Some(n), None),
            Err(why) => {
                tracing::warn!(report = %id, %why, "report stored as HTML only");
                (None, Some(format!("PDF not made: {why}")))
            }
        },
    };
    let meta = ReportMeta {
        id: id.clone(),
        name: req.name.clone(),
        site: req.site.clone(),
        from_ms: req.from_ms,
        to_ms: req.to_ms,
        made_ms,
        trigger: req.trigger.to_owned(),
        insights: c.insights.len() as u64,
        html_bytes: page.len() as u64,
        pdf_bytes,
        pdf_note,
    };
    let json_path = dir.join(format!("{id}.json"));
    let body = serde_json::to_vec_pretty(&meta).map_err(|e| ReportError::Bad(e.to_string()))?;
    write_private(&json_path, &body)?;
    tracing::info!(report = %id, site = %req.site, insights = meta.insights, pdf = meta.pdf_bytes.is_some(), "report made");
    Ok(meta)
}

/// Written to a temporary name and renamed, so a list never sees half a
/// file; 0640 like the database.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Every stored report, newest first.
pub fn list(dir: &Path) -> Result<Vec<ReportMeta>, ReportError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read(&p) else {
            continue;
        };
        match serde_json::from_slice::<ReportMeta>(&text) {
            Ok(m) if valid_id(&m.id) => out.push(m),
            _ => tracing::warn!(file = %p.display(), "not a report description; skipped"),
        }
    }
    out.sort_by(|a, b| b.made_ms.cmp(&a.made_ms).then(b.id.cmp(&a.id)));
    Ok(out)
}

/// A stored file of a report: `html` or `pdf`.
pub fn file(dir: &Path, id: &str, ext: &str) -> Option<PathBuf> {
    (valid_id(id) && (ext == "html" || ext == "pdf"))
        .then(|| dir.join(format!("{id}.{ext}")))
        .filter(|p| p.is_file())
}
