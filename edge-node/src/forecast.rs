//! Forecasting on the edge: models from a directory, hot-swapped; scheduled
//! forecasts from local history; how good they turned out.
//!
//! ```text
//! models_dir ──(scan every check_every)──▶ Models (name → Arc<Forecaster>)
//!                                              │
//! history (SQLite, read) ──grid──▶ features ──▶ tract ──▶ forecasts (SQLite)
//!                                                          └─ scored once the actuals exist
//! ```
//!
//! A model that fails to load or validate is refused with its error
//! (logged, counted); the version already running keeps running. All model
//! and SQLite work runs on the blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use models::Forecaster;
use models::features::resample;
use rusqlite::{Connection, OptionalExtension, params};
use tokio_util::sync::CancellationToken;

use protocol::v1::{Body, Forecast, ForecastQuality};

use crate::history::{HistoryReader, queue_one};
use crate::sync::outbox::{OutboxPolicy, SealReport};

/// Forecasts whose errors make up a model's rolling MAE and MAPE.
pub const SCORE_WINDOW: usize = 100;

/// The models in use, shared with whoever explains or lists them, and
/// each model's latest forecast and rolling accuracy (MAE, MAPE %, count).
#[derive(Debug, Default, Clone)]
pub struct Models(
    Arc<RwLock<BTreeMap<String, Arc<Forecaster>>>>,
    Arc<RwLock<BTreeMap<String, Latest>>>,
);

/// A model's newest forecast and its rolling accuracy so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub forecast: ForecastRecord,
    pub accuracy: Option<(f64, Option<f64>, u64)>,
}

impl Models {
    pub fn get(&self, name: &str) -> Option<Arc<Forecaster>> {
        self.0.read().ok()?.get(name).cloned()
    }

    pub fn latest(&self, name: &str) -> Option<Latest> {
        self.1.read().ok()?.get(name).cloned()
    }

    fn set_latest(&self, name: &str, l: Latest) {
        if let Ok(mut m) = self.1.write() {
            m.insert(name.to_string(), l);
        }
    }

    /// (name, version) of every model in use.
    pub fn list(&self) -> Vec<(String, String)> {
        self.0
            .read()
            .map(|m| {
                m.values()
                    .map(|f| (f.manifest.name.clone(), f.manifest.version.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub struct ForecastStats {
    pub models: AtomicU64,
    pub loaded: AtomicU64,
    pub rejected: AtomicU64,
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub scored: AtomicU64,
}

/// A file's identity for change detection: length and modification time.
type Fingerprint = [(u64, SystemTime); 2];

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let f = |name: &str| -> Option<(u64, SystemTime)> {
        let m = std::fs::metadata(dir.join(name)).ok()?;
        Some((m.len(), m.modified().ok()?))
    };
    Some([f("manifest.toml")?, f("model.onnx")?])
}

/// What the scanner remembers between scans.
#[derive(Debug, Default)]
pub struct Watch {
    seen: BTreeMap<PathBuf, Fingerprint>,
    /// Model directory → the model name it provides.
    names: BTreeMap<PathBuf, String>,
}

/// Load new and changed models from `dir`, drop those whose directory is
/// gone. Returns one line per change, for the log.
pub fn refresh(
    dir: &Path,
    models: &Models,
    watch: &mut Watch,
    stats: &ForecastStats,
) -> Vec<String> {
    let mut events = Vec::new();
    let mut present = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if let Some(fp) = fingerprint(&p) {
                present.insert(p, fp);
            }
        }
    }
    for (path, fp) in &present {
        if watch.seen.get(path) == Some(fp) {
            continue;
        }
        watch.seen.insert(path.clone(), *fp);
        match Forecaster::load(path) {
            Ok(f) => {
                let name = f.manifest.name.clone();
                let line = format!(
                    "model {name} {} loaded from {} ({} features → {} steps of {})",
                    f.manifest.version,
                    path.display(),
                    f.n_features(),
                    f.manifest.horizon,
                    humantime::format_duration(f.manifest.output_step)
                );
                if let Ok(mut m) = models.0.write() {
                    m.insert(name.clone(), Arc::new(f));
                }
                watch.names.insert(path.clone(), name);
                stats.loaded.fetch_add(1, Ordering::Relaxed);
                events.push(line);
            }
            Err(e) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                let running = watch
                    .names
                    .get(path)
                    .and_then(|n| models.get(n))
                    .map(|f| format!("; version {} keeps running", f.manifest.version))
                    .unwrap_or_default();
                events.push(format!(
                    "ERROR model in {} refused: {e}{running}",
                    path.display()
                ));
            }
        }
    }
    let gone: Vec<PathBuf> = watch
        .seen
        .keys()
        .filter(|p| !present.contains_key(*p))
        .cloned()
        .collect();
    for p in gone {
        watch.seen.remove(&p);
        if let Some(name) = watch.names.remove(&p)
            && let Ok(mut m) = models.0.write()
        {
            m.remove(&name);
            events.push(format!("model {name} removed ({} is gone)", p.display()));
        }
    }
    stats
        .models
        .store(models.list().len() as u64, Ordering::Relaxed);
    events
}

/// One forecast, in engineering units.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRecord {
    pub model: String,
    pub version: String,
    /// Time of the first forecast step; step k is at `origin_ms + k * step_ms`.
    pub origin_ms: i64,
    pub step_ms: i64,
    pub values: Vec<f64>,
}

/// Grid values of `tag`: `points` points from `first_ms`.
fn grid(
    reader: &HistoryReader,
    tag: &str,
    first_ms: i64,
    step: Duration,
    points: usize,
    max_hold: Duration,
) -> Result<Vec<Option<f64>>, String> {
    let step_ms = step.as_millis() as i64;
    let last_ms = first_ms + (points as i64 - 1) * step_ms;
    let from = first_ms - max_hold.as_millis() as i64;
    let samples = reader
        .range(tag, from, last_ms + 1, 10_000_000)
        .map_err(|e| e.to_string())?;
    let s: Vec<(i64, Option<f64>)> = samples
        .iter()
        .map(|s| {
            let v = s
                .value
                .as_ref()
                .and_then(|v| v.as_f64())
                .filter(|_| s.quality.is_good());
            (s.ts.0, v)
        })
        .collect();
    Ok(resample(&s, first_ms, step, points, max_hold))
}

/// The feature vector `f` reads as of `now_ms` (the last grid point is the
/// last whole step at or before now), and the forecast's origin.
fn features_now(
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
) -> Result<(Vec<f64>, i64), String> {
    let spec = &f.manifest.features;
    let step_ms = spec.step.as_millis() as i64;
    let last = now_ms.div_euclid(step_ms) * step_ms;
    let n = spec.history();
    let first = last - (n as i64 - 1) * step_ms;
    let mut windows = Vec::with_capacity(spec.tags.len());
    for tag in &spec.tags {
        windows.push(grid(reader, tag, first, spec.step, n, max_hold)?);
    }
    let refs: Vec<&[Option<f64>]> = windows.iter().map(|w| w.as_slice()).collect();
    let x = spec.build(&refs, last).map_err(|e| e.to_string())?;
    Ok((x, last + step_ms))
}

/// Forecast with `f` from the history as of `now_ms`.
pub fn forecast_once(
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
) -> Result<ForecastRecord, String> {
    let (x, origin_ms) = features_now(reader, f, now_ms, max_hold)?;
    let values = f.predict(&x).map_err(|e| e.to_string())?;
    Ok(ForecastRecord {
        model: f.manifest.name.clone(),
        version: f.manifest.version.clone(),
        origin_ms,
        step_ms: f.manifest.features.step.as_millis() as i64,
        values,
    })
}

/// Explain the forecast `f` would make now ([`Forecaster::explain`] on the
/// features [`forecast_once`] would use). For the HMI and the
/// `apos-edge forecast explain` command. Returns the origin too.
pub fn explain_now(
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
    max_features: usize,
) -> Result<(i64, models::Explanation), String> {
    let (x, origin_ms) = features_now(reader, f, now_ms, max_hold)?;
    let e = f.explain(&x, max_features).map_err(|e| e.to_string())?;
    Ok((origin_ms, e))
}

pub fn store(
    conn: &mut Connection,
    r: &ForecastRecord,
    tag: &str,
    made_ms: i64,
    outbox: Option<&OutboxPolicy>,
) -> Result<Option<SealReport>, String> {
    let json = format!(
        "[{}]",
        r.values
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT OR REPLACE INTO forecasts (model, version, origin_ms, step_ms, made_ms, forecast)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![r.model, r.version, r.origin_ms, r.step_ms, made_ms, json],
    )
    .map_err(|e| e.to_string())?;
    let report = match outbox {
        Some(policy) => {
            let body = Body::Forecasts(vec![Forecast {
                model: r.model.clone(),
                version: r.version.clone(),
                tag: tag.to_string(),
                origin_ms: r.origin_ms,
                step_ms: r.step_ms,
                made_ms,
                values: r.values.clone(),
            }]);
            Some(queue_one(&tx, &body, policy, made_ms).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    tx.commit().map_err(|e| e.to_string())?;
    Ok(report)
}

/// One forecast's errors against the actual values, ready to store and send.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub version: String,
    pub origin_ms: i64,
    pub step_ms: i64,
    /// The forecast's length: leads 1 … horizon are averaged.
    pub horizon: u32,
    pub mae: Option<f64>,
    /// In %.
    pub mape: Option<f64>,
    /// Steps with an actual value (and a finite forecast).
    pub n: u32,
}

/// Features sent with the scores: the largest contributions (the protocol
/// takes up to 64).
pub const EXPLANATION_SENT: usize = 16;

/// The errors of `f`'s model's forecasts whose whole horizon is now in
/// the past, oldest first (at most 1,000): MAE and MAPE against the grid
/// of actual values. Steps without an actual value or with a non-finite
/// forecast are left out, and zero actuals for MAPE. Reads only.
pub fn pending_scores(
    conn: &Connection,
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
) -> Result<Vec<Scored>, String> {
    let name = &f.manifest.name;
    let mut st = conn
        .prepare(
            "SELECT origin_ms, step_ms, forecast, version FROM forecasts
             WHERE model = ?1 AND scored = 0 ORDER BY origin_ms LIMIT 1000",
        )
        .map_err(|e| e.to_string())?;
    let rows: Vec<(i64, i64, String, String)> = st
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(|r| r.collect())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (origin, step_ms, json, version) in rows {
        let values: Vec<f64> = json
            .trim_matches(['[', ']'])
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        let end = origin + (values.len() as i64 - 1) * step_ms;
        if end > now_ms || values.is_empty() {
            break;
        }
        let actual = grid(
            reader,
            &f.manifest.target,
            origin,
            Duration::from_millis(step_ms as u64),
            values.len(),
            max_hold,
        )?;
        let (mut ae, mut ape, mut k, mut kp) = (0.0, 0.0, 0u32, 0u32);
        for (p, a) in values.iter().zip(&actual) {
            if let Some(a) = a
                && p.is_finite()
                && a.is_finite()
            {
                ae += (p - a).abs();
                k += 1;
                if *a != 0.0 {
                    ape += ((p - a) / a).abs();
                    kp += 1;
                }
            }
        }
        // What the protocol check accepts: a finite error of at most 1e15,
        // or none with nothing scored.
        let ok = |v: f64| v.is_finite() && v <= protocol::check::MAX_ERROR;
        let mae = (k > 0).then(|| ae / f64::from(k)).filter(|v| ok(*v));
        let mape = (kp > 0 && mae.is_some())
            .then(|| ape / f64::from(kp) * 100.0)
            .filter(|v| ok(*v));
        out.push(Scored {
            version,
            origin_ms: origin,
            step_ms,
            horizon: u32::try_from(values.len()).unwrap_or(u32::MAX),
            mae,
            mape,
            n: if mae.is_some() { k } else { 0 },
        });
    }
    Ok(out)
}

/// Mark `scored` as scored and, with an outbox, queue them for the hub as
/// one `ForecastQuality` batch in the same transaction (the explanation
/// rides on the last entry). Only rows still unscored are updated.
pub fn record_scores(
    conn: &mut Connection,
    f: &Forecaster,
    scored: &[Scored],
    now_ms: i64,
    outbox: Option<&OutboxPolicy>,
    explanation: Vec<(String, f64)>,
) -> Result<Option<SealReport>, String> {
    if scored.is_empty() {
        return Ok(None);
    }
    let name = &f.manifest.name;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for s in scored {
        tx.execute(
            "UPDATE forecasts SET mae = ?3, mape = ?4, scored = 1
             WHERE model = ?1 AND origin_ms = ?2 AND scored = 0",
            params![name, s.origin_ms, s.mae, s.mape],
        )
        .map_err(|e| e.to_string())?;
    }
    let report = match outbox {
        Some(policy) => {
            let last = scored.len() - 1;
            let mut explanation = Some(explanation);
            let list = scored
                .iter()
                .enumerate()
                .map(|(i, s)| ForecastQuality {
                    model: name.clone(),
                    version: s.version.clone(),
                    tag: f.manifest.target.clone(),
                    origin_ms: s.origin_ms,
                    scored_ms: now_ms,
                    step_ms: s.step_ms,
                    horizon: s.horizon,
                    mae: s.mae,
                    mape: s.mape,
                    n: s.n,
                    explanation: if i == last {
                        explanation.take().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            let body = Body::ForecastQuality(list);
            Some(queue_one(&tx, &body, policy, now_ms).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    tx.commit().map_err(|e| e.to_string())?;
    Ok(report)
}

/// An explanation as the hub gets it: each feature's contribution averaged
/// over the horizon, the [`EXPLANATION_SENT`] largest, names cut to the
/// protocol's 256 bytes; non-finite contributions left out.
pub fn explanation_summary(e: &models::Explanation) -> Vec<(String, f64)> {
    let mut c: Vec<(String, f64)> = e
        .contributions
        .iter()
        .map(|(n, v)| (n, v.iter().sum::<f64>() / v.len().max(1) as f64))
        .filter(|(n, c)| !n.is_empty() && c.is_finite() && c.abs() <= protocol::check::MAX_ERROR)
        .map(|(n, c)| (protocol_text(n), c))
        .collect();
    c.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    c.truncate(EXPLANATION_SENT);
    c
}

/// Text within the protocol's bounds: control characters as spaces, at
/// most 256 bytes (cut at a character boundary).
fn protocol_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(protocol::check::MAX_TEXT));
    for ch in s.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + ch.len_utf8() > protocol::check::MAX_TEXT {
            break;
        }
        out.push(ch);
    }
    out
}

/// Score the forecasts of `f`'s model whose whole horizon is now in the past
/// ([`pending_scores`]) and mark them scored, without sending anything.
/// Returns how many.
pub fn score(
    conn: &mut Connection,
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
) -> Result<u64, String> {
    let scored = pending_scores(conn, reader, f, now_ms, max_hold)?;
    record_scores(conn, f, &scored, now_ms, None, Vec::new())?;
    Ok(scored.len() as u64)
}

/// A model's rolling accuracy: mean MAE and MAPE (%) over its last
/// [`SCORE_WINDOW`] scored forecasts, and how many there were.
pub fn accuracy(
    conn: &Connection,
    model: &str,
) -> Result<Option<(f64, Option<f64>, u64)>, rusqlite::Error> {
    conn.query_row(
        "SELECT avg(mae), avg(mape), count(*) FROM (
             SELECT mae, mape FROM forecasts WHERE model = ?1 AND scored = 1 AND mae IS NOT NULL
             ORDER BY origin_ms DESC LIMIT ?2)",
        params![model, SCORE_WINDOW as i64],
        |r| {
            Ok((
                r.get::<_, Option<f64>>(0)?,
                r.get::<_, Option<f64>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )
    .optional()
    .map(|o| o.and_then(|(mae, mape, n)| mae.map(|m| (m, mape, n as u64))))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Run until `cancel`: keep the models current, forecast every `interval`,
/// store, score.
pub async fn run(
    cfg: firmware_config::Forecast,
    history: PathBuf,
    outbox: Option<OutboxPolicy>,
    models: Models,
    stats: Arc<ForecastStats>,
    cancel: CancellationToken,
) {
    let mut check = tokio::time::interval(cfg.check_every);
    let mut tick = tokio::time::interval(cfg.interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch_models = models.clone();
    let dir = cfg.models_dir.clone();
    let shared = Arc::new(std::sync::Mutex::new(Watch::default()));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = check.tick() => {
                let (dir, m, w, st) = (dir.clone(), watch_models.clone(), shared.clone(), stats.clone());
                let events = tokio::task::spawn_blocking(move || {
                    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                    refresh(&dir, &m, &mut w, &st)
                })
                .await
                .unwrap_or_default();
                for e in events {
                    if e.starts_with("ERROR") {
                        tracing::error!("{}", e.trim_start_matches("ERROR "));
                    } else {
                        tracing::info!("{e}");
                    }
                }
            }
            _ = tick.tick() => {
                let list: Vec<Arc<Forecaster>> = models.list().iter().filter_map(|(n, _)| models.get(n)).collect();
                if list.is_empty() {
                    continue;
                }
                let (history, st, max_hold, m, ob) = (history.clone(), stats.clone(), cfg.max_hold, models.clone(), outbox);
                let explain_max = cfg.explain_max_features;
                let r = tokio::task::spawn_blocking(move || forecast_all(&history, &list, max_hold, explain_max, &st, &m, ob.as_ref())).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "forecasting: cannot use the history database");
                }
            }
        }
    }
}

/// Score what can be scored, and with an outbox send the scores and the
/// model's current explanation (made only when there is something to send:
/// it runs the model once per feature group). Returns how many were scored.
pub fn score_and_send(
    conn: &mut Connection,
    reader: &HistoryReader,
    f: &Forecaster,
    now_ms: i64,
    max_hold: Duration,
    outbox: Option<&OutboxPolicy>,
    explain_max_features: usize,
) -> Result<u64, String> {
    let scored = pending_scores(conn, reader, f, now_ms, max_hold)?;
    if scored.is_empty() {
        return Ok(0);
    }
    let explanation = match outbox {
        Some(_) => match explain_now(reader, f, now_ms, max_hold, explain_max_features) {
            Ok((_, e)) => explanation_summary(&e),
            Err(e) => {
                tracing::debug!(model = %f.manifest.name, error = %e, "no explanation to send with the scores");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let report = record_scores(conn, f, &scored, now_ms, outbox, explanation)?;
    if let Some(rep) = report
        && rep.dropped > 0
    {
        tracing::error!(
            model = %f.manifest.name,
            dropped = rep.dropped,
            "ALARM outbox full: batches dropped while queueing forecast scores"
        );
    }
    Ok(scored.len() as u64)
}

fn forecast_all(
    history: &Path,
    list: &[Arc<Forecaster>],
    max_hold: Duration,
    explain_max: usize,
    stats: &ForecastStats,
    models: &Models,
    outbox: Option<&OutboxPolicy>,
) -> Result<(), String> {
    let reader = HistoryReader::open(history).map_err(|e| e.to_string())?;
    let mut conn = Connection::open(history).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    for f in list {
        match forecast_once(&reader, f, now, max_hold) {
            Ok(r) => {
                match store(&mut conn, &r, &f.manifest.target, now, outbox) {
                    Ok(Some(rep)) if rep.dropped > 0 => tracing::error!(
                        model = %r.model,
                        dropped = rep.dropped,
                        "ALARM outbox full: batches dropped while queueing a forecast"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(model = %r.model, error = %e, "cannot store a forecast")
                    }
                }
                // Counted once stored: whoever waits on `runs` finds the row.
                stats.runs.fetch_add(1, Ordering::Relaxed);
                let accuracy = accuracy(&conn, &r.model).ok().flatten();
                models.set_latest(
                    &r.model,
                    Latest {
                        forecast: r.clone(),
                        accuracy,
                    },
                );
                tracing::debug!(model = %r.model, origin_ms = r.origin_ms, first = r.values.first().copied().unwrap_or(f64::NAN), "forecast");
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(model = %f.manifest.name, error = %e, "no forecast");
            }
        }
        match score_and_send(&mut conn, &reader, f, now, max_hold, outbox, explain_max) {
            Ok(n) => {
                stats.scored.fetch_add(n, Ordering::Relaxed);
                if n > 0
                    && let Ok(Some((mae, mape, k))) = accuracy(&conn, &f.manifest.name)
                {
                    tracing::info!(model = %f.manifest.name, rolling_mae = mae, rolling_mape_pct = mape, forecasts = k, "forecast accuracy");
                }
            }
            Err(e) => {
                tracing::warn!(model = %f.manifest.name, error = %e, "cannot score forecasts")
            }
        }
    }
    Ok(())
}
