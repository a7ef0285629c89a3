//! The alarm engine (issue 16, in progress): every `[[alarm]]` of the
//! configuration, run on the samples the pipeline sees.
//!
//! ```text
//! filter ──[samples: bounded 16, BLOCKS]──▶ alarm task ── AlarmEngine (no I/O)
//!                                             │ every 250 ms: Tick (delays, staleness, shelves)
//!                                             ▼
//!              SQLite alarm_journal + outbox row (Body::Alarms), one transaction
//! ```
//!
//! [`AlarmEngine`] owns one `models::alarm::machine` state per alarm and turns
//! samples, time and operator actions into journal entries; [`store`] writes
//! them with their outbox batch; `models::alarm::health` watches for floods
//! (logged as `ALARM FLOOD` and its end). Each alarm's journal sequence continues
//! across restarts. Predictive alarms are fed each new forecast's extreme
//! over its horizon. [`board`] is what the HMI sees and how it acts.

pub mod board;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drivers::Sample;
use firmware_config::{AlarmDef, EdgeConfig};
use models::alarm::health::{FLOOD_BEGINS, FLOOD_ENDS, Flood, Health};
use models::alarm::machine::{self, AlarmState, Change, Event, IsaState};
use protocol::v1::{AlarmEvent, Body};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::board::{AlarmView, BoardWriter, CommandError, Notice, Predicted};
use crate::history::{HistoryError, queue_one};
use crate::sync::outbox::{OutboxPolicy, SealReport};

/// How often time-driven changes are checked.
pub const TICK: Duration = Duration::from_millis(250);

fn change_name(c: Change) -> &'static str {
    match c {
        Change::Activated => "activated",
        Change::Cleared => "cleared",
        Change::Realarmed => "realarmed",
        Change::Acknowledged => "acknowledged",
        Change::Unlatched => "unlatched",
        Change::Shelved => "shelved",
        Change::Unshelved => "unshelved",
        Change::Suppressed => "suppressed",
        Change::Unsuppressed => "unsuppressed",
        Change::OutOfService => "out_of_service",
        Change::InService => "in_service",
    }
}

pub fn state_name(s: IsaState) -> &'static str {
    match s {
        IsaState::Normal => "normal",
        IsaState::Unacknowledged => "unacknowledged",
        IsaState::Acknowledged => "acknowledged",
        IsaState::ReturnedUnacknowledged => "returned_unacknowledged",
        IsaState::Shelved => "shelved",
        IsaState::SuppressedByDesign => "suppressed",
        IsaState::OutOfService => "out_of_service",
    }
}

/// Every configured alarm and its state (pure: the caller passes the time).
#[derive(Debug)]
pub struct AlarmEngine {
    defs: Vec<AlarmDef>,
    states: Vec<AlarmState>,
    /// tag → alarms reading it, and alarms suppressed by it.
    inputs: HashMap<String, Vec<usize>>,
    suppressors: HashMap<String, Vec<usize>>,
    /// When each alarm's input last updated, for staleness.
    updated_ms: Vec<Option<i64>>,
    stale: Vec<bool>,
    /// Predictive alarms: the forecast behind the state, and its origin.
    predicted: Vec<Option<Predicted>>,
}

impl AlarmEngine {
    /// `seqs`: each alarm's last journal sequence number (from the journal).
    pub fn new(defs: Vec<AlarmDef>, seqs: &HashMap<String, u64>, now_ms: i64) -> AlarmEngine {
        let mut inputs: HashMap<String, Vec<usize>> = HashMap::new();
        let mut suppressors: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in defs.iter().enumerate() {
            // Predictive alarms watch a forecast, not the samples.
            if d.model.is_none() {
                inputs.entry(d.tag.clone()).or_default().push(i);
            }
            if let Some((t, _)) = &d.suppress_when {
                suppressors.entry(t.clone()).or_default().push(i);
            }
        }
        let states = defs
            .iter()
            .map(|d| AlarmState {
                seq: seqs.get(&d.name).copied().unwrap_or(0),
                ..AlarmState::new(now_ms)
            })
            .collect();
        let n = defs.len();
        AlarmEngine {
            defs,
            states,
            inputs,
            suppressors,
            updated_ms: vec![None; n],
            stale: vec![false; n],
            predicted: vec![None; n],
        }
    }

    fn apply(&mut self, i: usize, ev: &Event, now_ms: i64, out: &mut Vec<AlarmEvent>) {
        step_one(&self.defs, &mut self.states, i, ev, now_ms, out);
    }

    /// Samples from the pipeline.
    pub fn on_samples(&mut self, samples: &[Sample], now_ms: i64) -> Vec<AlarmEvent> {
        // Disjoint borrows: the tag index is read while states change, with
        // no copy of it per sample.
        let AlarmEngine {
            defs,
            states,
            inputs,
            suppressors,
            updated_ms,
            stale,
            ..
        } = self;
        let mut out = Vec::new();
        for s in samples {
            let value = s
                .value
                .as_ref()
                .and_then(|v| v.as_f64())
                .filter(|_| s.quality.is_good());
            for &i in inputs.get(&*s.tag).map_or(&[][..], Vec::as_slice) {
                updated_ms[i] = Some(s.ts.as_millis());
                stale[i] = false;
                let ev = Event::Input {
                    ts_ms: s.ts.as_millis(),
                    value,
                    stale: false,
                };
                step_one(defs, states, i, &ev, now_ms, &mut out);
            }
            for &i in suppressors.get(&*s.tag).map_or(&[][..], Vec::as_slice) {
                let Some((_, equals)) = defs[i].suppress_when else {
                    continue;
                };
                // An unknown condition does not suppress: better an alarm
                // too many than one hidden by a dead signal.
                let on = value.is_some_and(|v| v == equals);
                step_one(defs, states, i, &Event::Suppress(on), now_ms, &mut out);
            }
        }
        out
    }

    /// Time passes: delays, shelves, re-alarms, and inputs going stale.
    pub fn tick(&mut self, now_ms: i64) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        for i in 0..self.defs.len() {
            if let (Some(after), Some(at)) = (self.defs[i].stale_after, self.updated_ms[i])
                && !self.stale[i]
                && now_ms - at > i64::try_from(after.as_millis()).unwrap_or(i64::MAX)
            {
                self.stale[i] = true;
                let ev = Event::Input {
                    ts_ms: now_ms,
                    value: None,
                    stale: true,
                };
                self.apply(i, &ev, now_ms, &mut out);
            }
            self.apply(i, &Event::Tick, now_ms, &mut out);
        }
        out
    }

    /// An operator's action (acknowledge, shelve …) on the alarm `name`.
    pub fn act(&mut self, name: &str, ev: &Event, now_ms: i64) -> Option<Vec<AlarmEvent>> {
        let i = self.defs.iter().position(|d| d.name == name)?;
        let mut out = Vec::new();
        self.apply(i, ev, now_ms, &mut out);
        Some(out)
    }

    /// Predictive alarms: `latest(model)` gives a model's newest forecast
    /// (origin, step, values); each new one is fed as the input, its extreme
    /// over the horizon, so the alarm is active while the forecast crosses.
    pub fn on_forecasts(
        &mut self,
        latest: impl Fn(&str) -> Option<(i64, i64, Vec<f64>)>,
        now_ms: i64,
    ) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        for i in 0..self.defs.len() {
            let Some(model) = self.defs[i].model.clone() else {
                continue;
            };
            let machine::Detector::Limit { side, limit, .. } = self.defs[i].spec.detector else {
                continue;
            };
            let Some((origin, step, values)) = latest(&model) else {
                continue;
            };
            if self.predicted[i]
                .as_ref()
                .is_some_and(|p| p.issued_ms == origin)
            {
                continue;
            }
            let Some((at, extreme)) = board::crossing(side, limit, origin, step, &values) else {
                continue;
            };
            self.predicted[i] = Some(Predicted {
                model,
                crosses_in_s: at.map(|t| ((t - now_ms) as f64 / 1000.0).max(0.0)),
                crosses_at_ms: at,
                forecast_value: extreme,
                issued_ms: origin,
            });
            self.updated_ms[i] = Some(now_ms);
            self.stale[i] = false;
            let ev = Event::Input {
                ts_ms: now_ms,
                value: Some(extreme),
                stale: false,
            };
            self.apply(i, &ev, now_ms, &mut out);
        }
        out
    }

    /// The operator's view of every alarm, sorted for the alarm list.
    /// `crosses_in_s` of predictive alarms counts down to `now_ms`.
    pub fn views(&self, units: &HashMap<String, String>, now: i64) -> Vec<AlarmView> {
        self.defs
            .iter()
            .zip(&self.states)
            .zip(&self.predicted)
            .map(|((d, s), p)| {
                let p = p.clone().map(|mut p| {
                    p.crosses_in_s = p
                        .crosses_at_ms
                        .map(|t| ((t - now) as f64 / 1000.0).max(0.0));
                    p
                });
                AlarmView::new(d, s, units.get(&d.tag).cloned(), p)
            })
            .collect()
    }

    /// Every alarm with its definition and state.
    pub fn alarms(&self) -> impl Iterator<Item = (&AlarmDef, &AlarmState)> {
        self.defs.iter().zip(&self.states)
    }
}

/// Step alarm `i` with `ev` and turn its journal entries into events.
fn step_one(
    defs: &[AlarmDef],
    states: &mut [AlarmState],
    i: usize,
    ev: &Event,
    now_ms: i64,
    out: &mut Vec<AlarmEvent>,
) {
    let d = &defs[i];
    for j in machine::step(&d.spec, &mut states[i], ev, now_ms) {
        out.push(AlarmEvent {
            alarm: d.name.clone(),
            seq: j.seq,
            ts_ms: j.ts_ms,
            change: change_name(j.change).into(),
            state: state_name(j.state).into(),
            priority: d.spec.priority as u8,
            value: j.value.filter(|v| v.is_finite()),
            by: j.by,
            comment: j.comment,
        });
    }
}

/// Each alarm's last journal sequence number.
pub fn last_seqs(conn: &Connection) -> Result<HashMap<String, u64>, rusqlite::Error> {
    let mut st = conn.prepare("SELECT alarm, max(seq) FROM alarm_journal GROUP BY alarm")?;
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        ))
    })?
    .collect()
}

/// Journal `events` and, with sync, seal them into the outbox, in one
/// transaction.
pub fn store(
    conn: &mut Connection,
    events: &[AlarmEvent],
    outbox: Option<&OutboxPolicy>,
    now_ms: i64,
) -> Result<Option<SealReport>, HistoryError> {
    if events.is_empty() {
        return Ok(None);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO alarm_journal
             (alarm, seq, ts_ms, change, state, priority, value, by_user, comment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in events {
            ins.execute(params![
                e.alarm,
                e.seq as i64,
                e.ts_ms,
                e.change,
                e.state,
                e.priority,
                e.value,
                e.by,
                e.comment
            ])?;
        }
    }
    let report = match outbox {
        Some(policy) => Some(queue_one(
            &tx,
            &Body::Alarms(events.to_vec()),
            policy,
            now_ms,
        )?),
        None => None,
    };
    tx.commit()?;
    Ok(report)
}

/// A flood beginning or ending is an event an operator must hear of.
fn log_flood(f: Option<Flood>) {
    match f {
        Some(Flood::Began { new_alarms }) => tracing::warn!(
            new_alarms,
            "ALARM FLOOD: more than {FLOOD_BEGINS} new alarms in 10 minutes"
        ),
        Some(Flood::Ended { lasted_ms }) => tracing::warn!(
            lasted_s = lasted_ms / 1000,
            "alarm flood over: fewer than {FLOOD_ENDS} new alarms in 10 minutes"
        ),
        None => {}
    }
}

fn now_ms() -> i64 {
    drivers::Timestamp::now().as_millis()
}

/// Where the alarm task's inputs come from besides samples.
#[derive(Debug)]
pub struct AlarmInputs {
    /// Newest forecast per model, for predictive alarms.
    pub models: crate::forecast::Models,
    pub board: BoardWriter,
}

fn units_of(cfg: &EdgeConfig) -> HashMap<String, String> {
    cfg.tags
        .iter()
        .filter_map(|t| t.unit.clone().map(|u| (t.name.clone(), u)))
        .collect()
}

/// Publish `events` to the board and the live sockets.
fn publish(
    engine: &AlarmEngine,
    units: &HashMap<String, String>,
    events: &[AlarmEvent],
    health: &mut Health,
    board: &BoardWriter,
    now: i64,
) {
    let views = engine.views(units, now);
    let active_since: Vec<(&str, i64)> = views
        .iter()
        .filter(|v| v.active)
        .filter_map(|v| v.since_ms.map(|t| (v.name.as_str(), t)))
        .collect();
    let report = health.report(now, active_since);
    let Ok(mut b) = board.board.write() else {
        return;
    };
    for e in events {
        b.seq += 1;
        if let Some(v) = views.iter().find(|v| v.name == e.alarm) {
            // Nobody listening is fine: the board holds the state.
            let _ = board.notices.send(Notice {
                seq: b.seq,
                change: e.change.clone(),
                alarm: v.clone(),
            });
        }
    }
    b.new_last_10min = health.recent_count();
    b.views = views;
    b.health = report.into();
    b.sort();
}

/// Run the configured alarms on `samples` until `cancel` (or the samples
/// end). A reload that changes the alarms rebuilds the engine; each alarm's
/// journal sequence continues.
pub async fn run(
    mut config: watch::Receiver<Arc<EdgeConfig>>,
    mut samples: mpsc::Receiver<Vec<Sample>>,
    db: PathBuf,
    outbox: Option<OutboxPolicy>,
    inputs: AlarmInputs,
    cancel: CancellationToken,
) -> Result<(), HistoryError> {
    let AlarmInputs { models, mut board } = inputs;
    let conn = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let c =
                Connection::open(&db).map_err(|source| HistoryError::Open { path: db, source })?;
            c.busy_timeout(Duration::from_secs(5))?;
            Ok::<_, HistoryError>(c)
        })
        .await
        .map_err(|e| HistoryError::Task(e.to_string()))??
    };
    let conn = Arc::new(std::sync::Mutex::new(conn));
    let seqs = {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let c = conn
                .lock()
                .map_err(|_| HistoryError::Task("alarm connection poisoned".into()))?;
            Ok::<_, HistoryError>(last_seqs(&c)?)
        })
        .await
        .map_err(|e| HistoryError::Task(e.to_string()))??
    };
    let mut defs = config.borrow_and_update().alarms.clone();
    let mut units = units_of(&config.borrow());
    let mut engine = AlarmEngine::new(defs.clone(), &seqs, now_ms());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut health = Health::new(now_ms());
    publish(&engine, &units, &[], &mut health, &board, now_ms());
    let mut last_publish = now_ms();
    let mut last_health = now_ms();
    // Entries not stored yet (the database refused): kept and retried.
    let mut pending: Vec<AlarmEvent> = Vec::new();
    let latest = |m: &str| {
        models
            .latest(m)
            .map(|l| (l.forecast.origin_ms, l.forecast.step_ms, l.forecast.values))
    };
    loop {
        let mut reply = None;
        let events = tokio::select! {
            _ = cancel.cancelled() => break,
            s = samples.recv() => match s {
                Some(batch) => engine.on_samples(&batch, now_ms()),
                None => break,
            },
            _ = tick.tick() => {
                let now = now_ms();
                let mut ev = engine.on_forecasts(latest, now);
                ev.extend(engine.tick(now));
                ev
            }
            c = board.commands.recv() => match c {
                Some(cmd) => match engine.act(&cmd.alarm, &cmd.event, now_ms()) {
                    Some(ev) => {
                        reply = Some((cmd.alarm, cmd.reply));
                        ev
                    }
                    None => {
                        let _ = cmd.reply.send(Err(CommandError::Unknown(cmd.alarm)));
                        continue;
                    }
                },
                None => continue,
            },
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let cfg = config.borrow_and_update().clone();
                units = units_of(&cfg);
                if cfg.alarms != defs {
                    let seqs: HashMap<String, u64> = engine.alarms().map(|(d, s)| (d.name.clone(), s.seq)).collect();
                    tracing::info!(alarms = cfg.alarms.len(), "alarm configuration changed; alarm states start over");
                    defs = cfg.alarms.clone();
                    engine = AlarmEngine::new(defs.clone(), &seqs, now_ms());
                }
                publish(&engine, &units, &[], &mut health, &board, now_ms());
                continue;
            }
        };
        let now = now_ms();
        for e in &events {
            tracing::info!(alarm = %e.alarm, change = %e.change, state = %e.state, priority = e.priority, value = ?e.value, "alarm");
            if e.change == "activated" {
                log_flood(health.activated(&e.alarm, now));
            }
        }
        if events.is_empty() {
            log_flood(health.tick(now));
        }
        if !events.is_empty() || now - last_publish >= 1000 {
            publish(&engine, &units, &events, &mut health, &board, now);
            last_publish = now;
        }
        if let Some(policy) = outbox
            && now - last_health >= HEALTH_EVERY_MS
        {
            last_health = now;
            let figures = board
                .board
                .read()
                .map(|b| b.health.clone())
                .unwrap_or_default();
            let conn2 = conn.clone();
            let sent =
                tokio::task::spawn_blocking(move || send_health(&conn2, &figures, &policy, now))
                    .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(
                    "the alarm-system health could not be queued for the hub; it is sent with the next figures"
                );
            }
        }
        pending.extend(events);
        if pending.is_empty() {
            if let Some((name, tx)) = reply {
                let _ = tx.send(view_of(&engine, &units, &name));
            }
            continue;
        }
        let batch = std::mem::take(&mut pending);
        let conn2 = conn.clone();
        let policy = outbox;
        let result = tokio::task::spawn_blocking(move || {
            let stored = match conn2.lock() {
                Ok(mut c) => store(&mut c, &batch, policy.as_ref(), now_ms()).map(|_| ()),
                Err(_) => Err(HistoryError::Task("alarm connection poisoned".into())),
            };
            stored.map_err(|e| (e, batch))
        })
        .await
        .map_err(|e| HistoryError::Task(e.to_string()));
        match result {
            Ok(Ok(())) => {
                if failing {
                    tracing::warn!("the alarm journal is written again");
                    failing = false;
                }
                if let Some((name, tx)) = reply {
                    let _ = tx.send(view_of(&engine, &units, &name));
                }
            }
            Ok(Err((e, batch))) => {
                if let Some((_, tx)) = reply {
                    let _ = tx.send(Err(CommandError::NotStored(e.to_string())));
                }
                // Kept, in order, ahead of anything newer.
                let newer = std::mem::replace(&mut pending, batch);
                pending.extend(newer);
                if !failing {
                    tracing::error!(error = %e, kept = pending.len(), "ALARM the alarm journal cannot be written; entries are kept in memory and retried");
                    failing = true;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How often the alarm-system figures go to the hub.
pub const HEALTH_EVERY_MS: i64 = 600_000;

/// Queue the alarm-system figures for the hub.
pub fn send_health(
    conn: &std::sync::Mutex<Connection>,
    h: &board::HealthView,
    policy: &OutboxPolicy,
    now_ms: i64,
) -> Result<(), HistoryError> {
    let mut c = conn
        .lock()
        .map_err(|_| HistoryError::Task("alarm connection poisoned".into()))?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let body = Body::AlarmHealth(vec![protocol::v1::AlarmHealth {
        ts_ms: now_ms,
        avg_per_10min: h.avg_per_10min,
        peak_per_10min: h.peak_per_10min,
        flood_share: (h.flood_percent / 100.0).clamp(0.0, 1.0),
        top10_share: h.top10_share.clamp(0.0, 1.0),
        in_flood: h.in_flood,
        chattering: h.chattering.iter().take(1000).cloned().collect(),
        stale: h.stale.iter().take(1000).cloned().collect(),
    }]);
    queue_one(&tx, &body, policy, now_ms)?;
    tx.commit()?;
    Ok(())
}

fn view_of(
    engine: &AlarmEngine,
    units: &HashMap<String, String>,
    name: &str,
) -> Result<AlarmView, CommandError> {
    engine
        .views(units, now_ms())
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| CommandError::Unknown(name.to_string()))
}
