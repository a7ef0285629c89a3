//! Setpoint optimization on the hub (docs/optimization.md).
//!
//! A run of an `[[optimization]]` problem: read the node's windows through
//! the read pool (the training period for fitted models, the newest value
//! of every tag), fit each output's linear model on steady-state rows
//! (`models::optimize::fit`), solve the LP (`models::optimize::recommend`),
//! record the run in `optimize.db`, and, when it pays and the problem says
//! `send`, seal the recommendation with the hub's Ed25519 key and hand it to
//! the ingest task, which publishes it to the node's `rec` topic.
//!
//! Runs come from the schedule (`every`), from threshold triggers on the
//! newest windows, and on demand (API); one at a time (a mutex), all the
//! numeric work on the blocking pool. `track.rs` follows each sent
//! recommendation through the edge's audit entries (proposed, approved,
//! rejected, expired, completed, rolled back) and measures the realized
//! benefit once a completed one has had time to settle.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use models::optimize::fit::{Column, FitOptions, LinearModel, fit_linear};
use models::optimize::recommend::{Current, Objective, Output, Problem, recommend};
use protocol::recommend::{Recommendation as Wire, Setpoint as WireSetpoint, SigningKey};
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::{ModelSpec, Optimization, ProblemConfig};
use crate::store::ReadPool;

pub mod db;
pub mod surrogate;
pub mod track;

use db::{OptimizeDb, Run};

/// A sealed recommendation for the ingest task to publish: topic, bytes.
pub type Outgoing = (String, Vec<u8>);
/// Ingest ← optimizer: bounded; a full queue fails the send (the run is
/// recorded as not sent, and the next run proposes again).
pub const OUTGOING_QUEUE: usize = 64;
/// A proposal is only sent when it is worth at least this share of the
/// objective's magnitude per hour (or 1e-6 absolute): the LP's own noise
/// should not ask an operator for anything.
const MIN_RELATIVE_BENEFIT: f64 = 1e-4;

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("no optimization problem named {0:?}")]
    Unknown(String),
    #[error("recommendation key {path}: {why}")]
    Key { path: String, why: String },
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// Where a problem was defined.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The hub's configuration file (changed there, applied at restart).
    Config,
    /// `POST /api/v1/optimization` (kept in `optimize.db`).
    Api { by: String, at_ms: i64 },
}

/// A problem and where it came from.
#[derive(Debug, Clone)]
pub struct Defined {
    pub problem: ProblemConfig,
    pub source: Source,
}

/// Why a problem could not be defined or removed through the API.
#[derive(Debug, thiserror::Error)]
pub enum DefineError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0:?} is defined in the hub's configuration file: change it there")]
    FromConfig(String),
    #[error("no optimization problem named {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// The hub's optimizer: problems, key, run log, and the way out to MQTT.
#[derive(Debug)]
pub struct Optimizer {
    pub config: Optimization,
    /// The file's problems, then those defined through the API.
    problems: std::sync::RwLock<Vec<Defined>>,
    storage_path: std::path::PathBuf,
    key: SigningKey,
    pub db: OptimizeDb,
    reads: Arc<ReadPool>,
    outgoing: mpsc::Sender<Outgoing>,
    running: tokio::sync::Mutex<()>,
}

/// Load the signing key, or make one (0600) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, OptimizeError> {
    let err = |why: String| OptimizeError::Key {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(path)
                    && m.permissions().mode() & 0o077 != 0
                {
                    return Err(err(format!(
                        "readable by others (mode {:o}); run `chmod 600 {}`",
                        m.permissions().mode() & 0o777,
                        path.display()
                    )));
                }
            }
            SigningKey::from_pkcs8(&bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (pk8, key) = SigningKey::generate().map_err(|e| err(e.to_string()))?;
            write_private(path, &pk8).map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), public_key = %key.public().to_text(), "made the recommendation signing key; give its public key to the edges ([setpoints] hub_public_key)");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn now_ms() -> i64 {
    crate::web::now_ms()
}

impl Optimizer {
    pub fn new(
        config: Optimization,
        storage_path: &Path,
        reads: Arc<ReadPool>,
        outgoing: mpsc::Sender<Outgoing>,
    ) -> Result<Optimizer, OptimizeError> {
        let key = load_or_create_key(&config.key_file)?;
        let db = OptimizeDb::open(&storage_path.with_file_name("optimize.db"))?;
        let mut problems: Vec<Defined> = config
            .problems
            .iter()
            .map(|p| Defined {
                problem: p.clone(),
                source: Source::Config,
            })
            .collect();
        for (name, text, by, at_ms) in db.stored_problems()? {
            let from = Path::new("optimize.db");
            match crate::config::parse_problems(from, &text, storage_path) {
                Ok(ps) => match ps.into_iter().find(|p| p.name == name) {
                    Some(p) if !problems.iter().any(|d| d.problem.name == name) => {
                        problems.push(Defined {
                            problem: p,
                            source: Source::Api { by, at_ms },
                        })
                    }
                    Some(_) => {
                        tracing::warn!(problem = %name, "a problem defined through the API is now also in the configuration file; the file's wins")
                    }
                    None => {
                        tracing::error!(problem = %name, "a stored problem lost its definition")
                    }
                },
                Err(e) => {
                    tracing::error!(problem = %name, error = %e, "a problem defined through the API no longer validates; it is not run")
                }
            }
        }
        Ok(Optimizer {
            problems: std::sync::RwLock::new(problems),
            storage_path: storage_path.to_path_buf(),
            config,
            key,
            db,
            reads,
            outgoing,
            running: tokio::sync::Mutex::new(()),
        })
    }

    pub fn problem(&self, name: &str) -> Option<ProblemConfig> {
        self.problems()
            .into_iter()
            .find(|d| d.problem.name == name)
            .map(|d| d.problem)
    }

    /// Every problem: the file's, then the API's.
    pub fn problems(&self) -> Vec<Defined> {
        self.problems
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Define (or redefine) problems from `[[optimization]]` TOML text,
    /// validated like the configuration file's; kept across restarts. The
    /// file's problems cannot be replaced this way.
    pub fn define(&self, text: &str, by: &str, now_ms: i64) -> Result<Vec<String>, DefineError> {
        let ps = crate::config::parse_problems(Path::new("request"), text, &self.storage_path)
            .map_err(|e| DefineError::Invalid(e.to_string()))?;
        let mut all = self.problems.write().unwrap_or_else(|p| p.into_inner());
        for p in &ps {
            if all
                .iter()
                .any(|d| d.problem.name == p.name && d.source == Source::Config)
            {
                return Err(DefineError::FromConfig(p.name.clone()));
            }
        }
        let mut names = Vec::new();
        for p in ps {
            self.db.store_problem(&p.name, text, by, now_ms)?;
            all.retain(|d| d.problem.name != p.name);
            names.push(p.name.clone());
            all.push(Defined {
                problem: p,
                source: Source::Api {
                    by: by.to_owned(),
                    at_ms: now_ms,
                },
            });
        }
        Ok(names)
    }

    /// Remove a problem defined through the API (its runs stay).
    pub fn remove(&self, name: &str) -> Result<(), DefineError> {
        let mut all = self.problems.write().unwrap_or_else(|p| p.into_inner());
        match all.iter().find(|d| d.problem.name == name) {
            None => return Err(DefineError::Unknown(name.to_owned())),
            Some(d) if d.source == Source::Config => {
                return Err(DefineError::FromConfig(name.to_owned()));
            }
            Some(_) => {}
        }
        self.db.remove_problem(name)?;
        all.retain(|d| d.problem.name != name);
        Ok(())
    }

    pub fn public_key(&self) -> String {
        self.key.public().to_text()
    }

    /// Run a problem now and record the run (failed runs too).
    pub async fn run(self: &Arc<Self>, name: &str, trigger: &str) -> Result<Run, OptimizeError> {
        let p = self
            .problem(name)
            .ok_or_else(|| OptimizeError::Unknown(name.to_owned()))?;
        let _one = self.running.lock().await;
        let started_ms = now_ms();
        let clock = Instant::now();
        let reads = self.reads.clone();
        let pc = p.clone();
        let solved = tokio::task::spawn_blocking(move || solve(&pc, &reads, started_ms))
            .await
            .unwrap_or_else(|e| Err(format!("the optimization task failed: {e}")));
        let took_ms = clock.elapsed().as_millis() as i64;
        let id = self.db.next_run_id(&p.name)?;
        let mut run = Run {
            id: id.clone(),
            problem: p.name.clone(),
            site: p.site.clone(),
            node: p.node.clone(),
            trigger: trigger.to_owned(),
            started_ms,
            took_ms,
            outcome: "ok".into(),
            error: None,
            result: None,
            seq: None,
            expires_ms: None,
            status: "not_sent".into(),
            status_ms: started_ms,
            status_note: String::new(),
            applied_ms: None,
            realized: None,
        };
        match solved {
            Err(e) => {
                tracing::warn!(problem = %p.name, error = %e, "optimization run failed");
                run.outcome = "failed".into();
                run.error = Some(e);
            }
            Ok(s) => {
                let benefit = s.rec.benefit_per_hour;
                let scale = s.rec.objective_current.abs().max(1e-2);
                let moves = s.rec.setpoints.iter().any(|sp| {
                    (sp.proposed - sp.current).abs() > 1e-6 * (sp.upper - sp.lower).abs().max(1e-9)
                });
                // Off spec now: a move back inside the limits is worth
                // sending even when it costs margin.
                let restores = s.rec.constraints.iter().any(|c| c.violated_now);
                run.result = Some(s.json);
                if !p.send {
                    run.status_note =
                        "the problem does not send recommendations (send = false)".into();
                } else if !(moves
                    && (restores
                        || (benefit > MIN_RELATIVE_BENEFIT * scale && benefit >= p.min_benefit)))
                {
                    run.status_note = format!(
                        "nothing worth sending: {:+.3} {} (min_benefit {})",
                        benefit, p.unit, p.min_benefit
                    );
                } else {
                    match self.send(&p, &id, &s.rec, started_ms) {
                        Ok((seq, expires_ms)) => {
                            run.seq = Some(seq);
                            run.expires_ms = Some(expires_ms);
                            run.status = "sent".into();
                            run.status_note = format!("sent to {}/{} as #{seq}", p.site, p.node);
                        }
                        Err(e) => run.status_note = format!("not sent: {e}"),
                    }
                }
                tracing::info!(problem = %p.name, run = %id, benefit_per_hour = benefit, status = %run.status, took_ms, "optimization run");
            }
        }
        self.db.insert(&run)?;
        Ok(run)
    }

    fn send(
        &self,
        p: &ProblemConfig,
        id: &str,
        rec: &models::optimize::recommend::Recommendation,
        now: i64,
    ) -> Result<(u64, i64), String> {
        let seq = self
            .db
            .take_seq(&p.site, &p.node)
            .map_err(|e| e.to_string())?;
        let expires_ms = now + self.config.valid_for.as_millis() as i64;
        let rationale = rationale(rec);
        let wire = Wire {
            seq,
            id: id.to_owned(),
            site: p.site.clone(),
            node: p.node.clone(),
            problem: p.name.clone(),
            issued_ms: now,
            expires_ms,
            setpoints: rec
                .setpoints
                .iter()
                .filter(|s| (s.proposed - s.current).abs() > 0.0)
                .map(|s| WireSetpoint {
                    tag: s.tag.clone(),
                    unit: s.unit.clone(),
                    current: s.current,
                    proposed: s.proposed,
                })
                .collect(),
            benefit_per_hour: rec.benefit_per_hour,
            benefit_per_year: rec.benefit_per_year,
            benefit_unit: rec.objective_unit.clone(),
            confidence: rec.confidence.score.clamp(0.0, 1.0),
            confidence_text: truncate(&rec.confidence.text, protocol::recommend::MAX_RATIONALE),
            rationale: truncate(&rationale, protocol::recommend::MAX_RATIONALE),
        };
        let (topic, bytes) =
            protocol::recommend::seal(&wire, &self.key).map_err(|e| e.to_string())?;
        self.outgoing
            .try_send((topic.to_string(), bytes))
            .map_err(|e| format!("the MQTT queue is full or closed ({e})"))?;
        Ok((seq, expires_ms))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// What the operator reads first: the binding limits, in plain words.
fn rationale(rec: &models::optimize::recommend::Recommendation) -> String {
    let mut lines: Vec<String> = rec.binding.iter().map(|b| b.text.clone()).collect();
    if lines.is_empty() {
        lines.push("no limit is binding: the move is bounded by the largest step allowed per recommendation".into());
    }
    format!(
        "Expected {} {} ({} {} per year). {}.",
        grouped(rec.benefit_per_hour),
        rec.objective_unit,
        grouped(rec.benefit_per_year),
        rec.objective_unit.trim_end_matches("/h"),
        lines.join("; ")
    )
}

/// `+12,345`: a signed whole number with thousands separators.
fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}", if v < 0.0 { "−" } else { "+" })
}

/// A solved run: the LP's recommendation and the JSON the API returns.
#[derive(Debug)]
pub struct Solved {
    pub rec: models::optimize::recommend::Recommendation,
    /// `recommendation`, `models` (each output's, with its fit quality),
    /// `current`, `training_rows`.
    pub json: serde_json::Value,
}

/// The numeric part of a run (blocking: call it off the runtime): read the
/// node's windows as of `now`, fit or take the models, solve.
pub fn solve(p: &ProblemConfig, reads: &ReadPool, now: i64) -> Result<Solved, String> {
    let tags = p.tags();
    let width = u32::try_from(p.window.as_millis()).unwrap_or(u32::MAX);
    let from = now - p.history.as_millis() as i64;
    let needs_fit = p
        .outputs
        .iter()
        .any(|o| matches!(o.model, ModelSpec::Fit { .. }));
    let (aligned, latest) = reads
        .read(|s| {
            let a = if needs_fit {
                s.aligned_means(&p.site, &p.node, width, &tags, from, now)?
            } else {
                Default::default()
            };
            let l = s.latest_values(&p.site, &p.node, &tags)?;
            Ok((a, l))
        })
        .map_err(|e| format!("reading {}/{}: {e}", p.site, p.node))?;
    // Current values: the newest window of each tag, not older than a few
    // windows (a dead link must not pass for the current operating point).
    let max_age = (p.window.as_millis() as i64 * 5).max(5 * 60_000);
    let fresh = |tag: &str| -> Result<f64, String> {
        match latest.get(tag) {
            None => Err(format!("no data for {tag} at {}/{}", p.site, p.node)),
            Some((_, end)) if now - end > max_age => Err(format!(
                "the newest value of {tag} is {} old: the node's data is stale",
                humantime::format_duration(Duration::from_secs(((now - end) / 1000).max(0) as u64))
            )),
            Some((v, _)) => Ok(*v),
        }
    };
    let mut current = Current::default();
    for d in &p.decisions {
        current.decisions.insert(d.tag.clone(), fresh(&d.tag)?);
    }
    for t in p.disturbances() {
        current.disturbances.insert(t.clone(), fresh(&t)?);
    }
    for o in &p.outputs {
        if let Ok(v) = fresh(&o.tag) {
            current.outputs.insert(o.tag.clone(), v);
        }
    }
    if let Some(s) = &p.surrogate {
        for o in &s.outputs {
            if let Ok(v) = fresh(o) {
                current.outputs.insert(o.clone(), v);
            }
        }
        let (rec, info) = surrogate::solve(p, s, &current)?;
        let json = json!({
            "recommendation": rec,
            "surrogate": info,
            "current": current,
        });
        return Ok(Solved { rec, json });
    }
    let mut outputs = Vec::new();
    let mut fitted: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for o in &p.outputs {
        let model = match &o.model {
            ModelSpec::User {
                inputs,
                intercept,
                coefficients,
            } => LinearModel::new(
                o.tag.clone(),
                inputs.clone(),
                *intercept,
                coefficients.clone(),
            ),
            ModelSpec::Fit { inputs } => {
                let empty: Vec<f64> = Vec::new();
                let col = |t: &str| aligned.columns.get(t).unwrap_or(&empty).as_slice();
                let ins: Vec<Column<'_>> = inputs.iter().map(|t| Column::new(t, col(t))).collect();
                let options = FitOptions {
                    method: p.method,
                    ..FitOptions::default()
                };
                fit_linear(
                    &aligned.t,
                    &ins,
                    &Column::new(&o.tag, col(&o.tag)),
                    &options,
                )
                .map_err(|e| format!("model of {}: {e}", o.tag))?
            }
        };
        fitted.insert(
            o.tag.clone(),
            serde_json::to_value(&model).unwrap_or_default(),
        );
        outputs.push(Output {
            tag: o.tag.clone(),
            label: o.label.clone(),
            unit: o.unit.clone(),
            model,
        });
    }
    let problem = Problem {
        name: p.name.clone(),
        decisions: p.decisions.clone(),
        outputs,
        objective: Objective {
            sense: p.sense,
            unit: p.unit.clone(),
            terms: p.terms.clone(),
        },
        constraints: p.constraints.clone(),
        margin_sigmas: p.margin_sigmas,
        hours_per_year: p.hours_per_year,
        bias_correction: p.bias_correction,
    };
    let rec = recommend(&problem, &current).map_err(|e| e.to_string())?;
    let json = json!({
        "recommendation": rec,
        "models": fitted,
        "current": current,
        "training_rows": aligned.t.len(),
    });
    Ok(Solved { rec, json })
}
