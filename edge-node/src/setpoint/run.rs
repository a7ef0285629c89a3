//! The setpoint task: the I/O around the pure machines of this module.
//!
//! ```text
//!  sync task ──rec bytes (bounded 16, drops when full)──▶ check: Ed25519 signature, target node,
//!                                                         expiry, sequence > last accepted (stored)
//!                                                         │ offer each setpoint
//!  HMI ──Command (bounded 16, blocks)──▶ ApprovalQueue ◀──┘
//!                                          │ approve → Move (one per tag)
//!  live table ──200 ms──▶ Observation ──▶ Move::poll ──Write/RollBack──▶ DriverHandle::write
//!                                          │ rollback → alarm signal (alarm tap, blocks)
//!  every transition and every write ──▶ audit log (hash-chained, queued for the hub)
//! ```
//!
//! The edge's limits come from its own `[[setpoint]]` configuration; what
//! the hub sends is only a proposal. A restart forgets pending proposals
//! (the hub proposes again on its next run); the last accepted sequence
//! number is stored in the history database, so a replay is refused across
//! restarts too. Moves in progress at a reload or shutdown are aborted
//! (rolled back when something was written).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use drivers::{DriverHandle, Quality, Sample, Timestamp, Value, WriteRequest};
use firmware_config::{EdgeConfig, SetpointDef, Transport};
use protocol::recommend::{Freshness, VerifyKey};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;
use web::audit::{AuditLog, NewAudit};

pub use super::handle::{
    Channels, Command, EntryView, LimitView, MoveView, QueueView, Refusal, Refused, SetpointHandle,
    channels,
};
use super::queue::{ApprovalQueue, Event, Proposal};
use super::safety::{Action, Check, Interlock, Limits, Move, MoveError, Observation, Outcome};
use crate::pipeline::LiveTable;

const TICK: Duration = Duration::from_millis(200);
/// A device write that takes longer counts as failed (the driver's own
/// timeout is shorter).
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// A move held this long by a closed gate gives up.
const HOLD_TIMEOUT_MS: i64 = 10 * 60_000;

/// What the task drives.
#[derive(Debug)]
pub struct Parts {
    pub live: LiveTable,
    pub drivers: Arc<Mutex<Vec<DriverHandle>>>,
    pub alarm_tap: mpsc::Sender<Vec<Sample>>,
    pub audit: Arc<AuditLog>,
    pub db: PathBuf,
}

fn limits_of(d: &SetpointDef) -> Limits {
    Limits {
        min: d.min,
        max: d.max,
        max_step: d.max_step,
        min_interval_ms: d.min_interval.as_millis() as i64,
        tolerance: d.tolerance,
        verify_timeout_ms: d.verify_timeout.as_millis() as i64,
        hold_timeout_ms: HOLD_TIMEOUT_MS,
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

const SEQ_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS recommendation_seq (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
)";

fn load_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.execute_batch(SEQ_SCHEMA)?;
    conn.query_row("SELECT seq FROM recommendation_seq WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|v| v.unwrap_or(0) as u64)
}

fn store_seq(conn: &Connection, seq: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO recommendation_seq (id, seq) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
        [seq as i64],
    )
    .map(|_| ())
}

struct Running {
    id: String,
    mv: Move,
    def: SetpointDef,
    waiting: Option<String>,
}

struct Task {
    parts: Parts,
    config: Arc<EdgeConfig>,
    key: Option<VerifyKey>,
    queue: ApprovalQueue,
    moves: BTreeMap<String, Running>,
    /// The last write time per tag, across moves (the rate limit).
    last_write: BTreeMap<String, i64>,
    last_seq: u64,
    /// The id of the last recommendation accepted: a QoS 1 redelivery of it
    /// is not a replay attack (ignored, not refused).
    last_id: Option<String>,
    seq_db: Arc<std::sync::Mutex<Connection>>,
    view: Arc<RwLock<QueueView>>,
    refused: Vec<Refusal>,
}

/// Run until `cancel`. Without `[setpoints]` it only answers the HMI that
/// write-back is off.
pub async fn run(
    mut config: watch::Receiver<Arc<EdgeConfig>>,
    ch: Channels,
    parts: Parts,
    cancel: CancellationToken,
) -> Result<(), String> {
    let Channels {
        mut recs,
        mut commands,
        view,
        ..
    } = ch;
    let db = parts.db.clone();
    let (conn, last_seq) = tokio::task::spawn_blocking(move || {
        let c = Connection::open(&db).map_err(|e| e.to_string())?;
        let _ = c.busy_timeout(Duration::from_secs(5));
        let s = load_seq(&c).map_err(|e| e.to_string())?;
        Ok::<_, String>((c, s))
    })
    .await
    .map_err(|e| e.to_string())??;
    let cfg = config.borrow_and_update().clone();
    let mut t = Task {
        key: None,
        queue: ApprovalQueue::new(BTreeMap::new(), super::queue::DEFAULT_HISTORY)
            .map_err(|e| e.to_string())?,
        parts,
        config: cfg.clone(),
        moves: BTreeMap::new(),
        last_write: BTreeMap::new(),
        last_seq,
        last_id: None,
        seq_db: Arc::new(std::sync::Mutex::new(conn)),
        view,
        refused: Vec::new(),
    };
    t.configure(cfg).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = config.changed() => {
                if changed.is_err() { break; }
                let c = config.borrow_and_update().clone();
                t.configure(c).await;
            }
            Some(bytes) = recs.recv() => t.on_recommendation(&bytes).await,
            Some(cmd) = commands.recv() => t.on_command(cmd).await,
            _ = tick.tick() => t.on_tick().await,
        }
        t.publish().await;
    }
    // A move half done at shutdown goes back to where it started.
    let tags: Vec<String> = t.moves.keys().cloned().collect();
    for tag in tags {
        t.abort(&tag, "the edge is stopping").await;
    }
    Ok(())
}

impl Task {
    async fn configure(&mut self, cfg: Arc<EdgeConfig>) {
        let wb = cfg.write_back.clone();
        self.key = wb
            .as_ref()
            .and_then(|w| match VerifyKey::from_text(&w.hub_public_key) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(error = %e, "[setpoints] hub_public_key; recommendations are refused");
                    None
                }
            });
        let limits: BTreeMap<String, Limits> = wb
            .iter()
            .flat_map(|w| w.setpoints.iter())
            .map(|d| (d.tag.clone(), limits_of(d)))
            .collect();
        // A move whose tag or limits changed stops (rolled back if written).
        let changed: Vec<String> = self
            .moves
            .iter()
            .filter(|(tag, r)| limits.get(*tag) != Some(r.mv.limits()))
            .map(|(tag, _)| tag.clone())
            .collect();
        for tag in changed {
            self.abort(&tag, "the configuration changed").await;
        }
        if let Err(e) = self.queue.set_limits(limits) {
            tracing::error!(error = %e, "setpoint limits refused");
        }
        self.config = cfg;
    }

    fn def(&self, tag: &str) -> Option<SetpointDef> {
        self.config
            .write_back
            .as_ref()?
            .setpoints
            .iter()
            .find(|d| d.tag == tag)
            .cloned()
    }

    async fn audit(&self, actor: &str, action: &str, target: &str, detail: String, addr: &str) {
        let log = self.parts.audit.clone();
        let e = NewAudit {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
            addr: addr.to_owned(),
        };
        match tokio::task::spawn_blocking(move || log.append(e, now_ms())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, action, target, "audit log: cannot record a setpoint step")
            }
            Err(e) => tracing::error!(error = %e, "audit task failed"),
        }
    }

    async fn audit_events(&self, events: &[Event], addr: &str) {
        for e in events {
            self.audit(e.actor(), e.action(), e.id(), e.to_string(), addr)
                .await;
        }
    }

    async fn refuse(&mut self, id: &str, reason: String) {
        tracing::warn!(recommendation = id, %reason, "recommendation refused");
        self.audit("hub", "recommendation_refused", id, reason.clone(), "")
            .await;
        self.refused.insert(
            0,
            Refusal {
                at_ms: now_ms(),
                id: id.to_owned(),
                reason,
            },
        );
        self.refused.truncate(20);
    }

    async fn on_recommendation(&mut self, bytes: &[u8]) {
        let cfg = self.config.clone();
        let Some(key) = self.key else {
            self.refuse(
                "?",
                "this edge has no [setpoints] (or no valid hub_public_key): write-back is off"
                    .into(),
            )
            .await;
            return;
        };
        let topic = match protocol::Topic::new(
            &cfg.node.site_id,
            &cfg.node.node_id,
            protocol::Kind::Recommendation,
        ) {
            Ok(t) => t,
            Err(e) => return tracing::error!(error = %e, "own topic"),
        };
        let rec = match protocol::recommend::open(&topic, bytes, &key) {
            Ok(r) => r,
            Err(e) => return self.refuse("?", format!("not accepted: {e}")).await,
        };
        let now = now_ms();
        let fresh = Freshness {
            site: &cfg.node.site_id,
            node: &cfg.node.node_id,
            now_ms: now,
            last_seq: self.last_seq,
        };
        if rec.seq == self.last_seq && self.last_id.as_deref() == Some(rec.id.as_str()) {
            tracing::debug!(recommendation = %rec.id, "duplicate delivery ignored");
            return;
        }
        if let Err(e) = fresh.check(&rec) {
            return self.refuse(&rec.id, e.to_string()).await;
        }
        let max_pending = cfg.write_back.as_ref().map_or(0, |w| w.max_pending);
        let pending = self
            .queue
            .list()
            .iter()
            .filter(|e| e.status == super::queue::Status::Pending)
            .count();
        if pending + rec.setpoints.len() > max_pending {
            return self
                .refuse(
                    &rec.id,
                    format!("{pending} proposals are waiting already ([setpoints] max_pending = {max_pending})"),
                )
                .await;
        }
        let conn = self.seq_db.clone();
        let seq = rec.seq;
        let stored = tokio::task::spawn_blocking(move || {
            let c = conn.lock().map_err(|_| "poisoned".to_owned())?;
            store_seq(&c, seq).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        if let Err(e) = stored {
            // Not stored, not accepted: otherwise a restart could take it twice.
            return self
                .refuse(&rec.id, format!("cannot store its sequence number: {e}"))
                .await;
        }
        self.last_seq = seq;
        self.last_id = Some(rec.id.clone());
        self.audit(
            "hub",
            "recommendation_received",
            &rec.id,
            format!(
                "#{} {}: {} setpoint(s), {:+.1} {}, confidence {:.0} %",
                rec.seq,
                rec.problem,
                rec.setpoints.len(),
                rec.benefit_per_hour,
                rec.benefit_unit,
                rec.confidence * 100.0
            ),
            "",
        )
        .await;
        for s in &rec.setpoints {
            let id = format!("{}:{}", rec.id, s.tag);
            let p = Proposal {
                id: id.clone(),
                tag: s.tag.clone(),
                unit: s.unit.clone(),
                hub_value: s.current,
                proposed: s.proposed,
                benefit: rec.benefit_per_hour,
                benefit_unit: rec.benefit_unit.clone(),
                rationale: rec.rationale.clone(),
                confidence: rec.confidence,
                confidence_text: rec.confidence_text.clone(),
                expires_ms: rec.expires_ms,
                received_ms: now,
            };
            match self.queue.offer(p, now) {
                Ok(events) => self.audit_events(&events, "").await,
                Err(e) => self.refuse(&id, e.to_string()).await,
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        let now = now_ms();
        match cmd {
            Command::Approve {
                id,
                user,
                role,
                value,
                comment,
                addr,
                reply,
            } => {
                let r = match self
                    .queue
                    .approve(&id, &user, role, value, comment.as_deref(), now)
                {
                    Err(e) => Err(Refused::from(e)),
                    Ok(a) => {
                        self.audit_events(&a.events, &addr).await;
                        self.start_move(&a.id, &a.tag, a.value).await
                    }
                };
                let _ = reply.send(r);
            }
            Command::Reject {
                id,
                user,
                role,
                comment,
                addr,
                reply,
            } => {
                let r = match self.queue.reject(&id, &user, role, &comment, now) {
                    Ok(events) => {
                        self.audit_events(&events, &addr).await;
                        Ok(())
                    }
                    Err(e) => Err(Refused::from(e)),
                };
                let _ = reply.send(r);
            }
        }
    }

    /// The start value is the tag's latest Good reading: the plant's
    /// value, not the hub's.
    async fn start_move(&mut self, id: &str, tag: &str, value: f64) -> Result<(), Refused> {
        let now = now_ms();
        let Some(def) = self.def(tag) else {
            let ev = self
                .queue
                .finish(
                    id,
                    Outcome::Aborted {
                        reason: "not a configured setpoint".into(),
                    },
                    now,
                )
                .unwrap_or_default();
            self.audit_events(&ev, "").await;
            return Err(Refused::Conflict(format!(
                "{tag} is not a writable setpoint on this edge"
            )));
        };
        let sample = self.parts.live.read().await.get(tag).cloned();
        let start = match &sample {
            Some(s) if s.quality.is_good() => s.value.as_ref().and_then(Value::as_f64),
            _ => None,
        };
        let made = match start {
            None => Err("no Good reading of the setpoint to start from".to_owned()),
            Some(start) => Move::new(tag, limits_of(&def), start, value, now)
                .map(|(m, _)| m.with_previous_write(self.last_write.get(tag).copied()))
                .map_err(|e: MoveError| e.to_string()),
        };
        match made {
            Ok(mv) => {
                let ev = self.queue.started(id, now).unwrap_or_default();
                self.audit_events(&ev, "").await;
                self.moves.insert(
                    tag.to_owned(),
                    Running {
                        id: id.to_owned(),
                        mv,
                        def,
                        waiting: None,
                    },
                );
                Ok(())
            }
            Err(reason) => {
                let ev = self
                    .queue
                    .finish(
                        id,
                        Outcome::Aborted {
                            reason: reason.clone(),
                        },
                        now,
                    )
                    .unwrap_or_default();
                self.audit_events(&ev, "").await;
                // Approved and audited, but nothing to move: tell the operator why.
                Err(Refused::Conflict(format!(
                    "approved, but not started: {reason}"
                )))
            }
        }
    }

    async fn observe(&self, def: &SetpointDef) -> Observation {
        let live = self.parts.live.read().await;
        let gate = |tag: &str, ok: &dyn Fn(f64) -> bool, what: &str| -> Check {
            match live.get(tag) {
                None => Check::Fail(format!("{what}: {tag} has not been read")),
                Some(s) if !s.quality.is_good() => {
                    Check::Fail(format!("{what}: {tag} quality {}", s.quality))
                }
                Some(s) => match s.value.as_ref().and_then(Value::as_f64) {
                    Some(v) if ok(v) => Check::Pass,
                    Some(v) => Check::Fail(format!("{what}: {tag} = {v}")),
                    None => Check::Fail(format!("{what}: {tag} has no numeric value")),
                },
            }
        };
        let permissive = match &def.permissive {
            None => Check::Pass,
            Some(p) => gate(p, &|v| v != 0.0, "permissive off"),
        };
        let state = match &def.state {
            None => Check::Pass,
            Some(s) => gate(&s.tag, &|v| v == s.equals, &format!("not {}", s.name)),
        };
        Observation::from_sample(live.get(def.tag.as_str()), Interlock { permissive, state })
    }

    async fn on_tick(&mut self) {
        let now = now_ms();
        let expired = self.queue.tick(now);
        self.audit_events(&expired, "").await;
        let tags: Vec<String> = self.moves.keys().cloned().collect();
        for tag in tags {
            // Several actions in one tick: a verified step can be followed
            // at once by the next write when the rate limit allows.
            for _ in 0..4 {
                let Some(r) = self.moves.get(&tag) else { break };
                let def = r.def.clone();
                let obs = self.observe(&def).await;
                let Some(r) = self.moves.get_mut(&tag) else {
                    break;
                };
                let action = r.mv.poll(now_ms(), &obs);
                if !self.act(&tag, action).await {
                    break;
                }
            }
        }
    }

    /// Carry out one action; whether to poll again at once.
    async fn act(&mut self, tag: &str, action: Action) -> bool {
        let Some(r) = self.moves.get_mut(tag) else {
            return false;
        };
        let id = r.id.clone();
        match action {
            Action::Wait { reason, .. } => {
                if r.waiting.as_deref() != Some(&reason)
                    && !reason.starts_with("waiting for the read-back")
                {
                    tracing::info!(tag, %reason, "setpoint move waits");
                }
                r.waiting = Some(reason);
                false
            }
            Action::Write { value } => {
                r.waiting = None;
                let from = r.mv.last_verified();
                let res = self.write(tag, value).await;
                self.audit(
                    "system",
                    "setpoint_write",
                    &id,
                    match &res {
                        Ok(()) => format!("{tag}: wrote {value} (from {from})"),
                        Err(e) => format!("{tag}: write of {value} failed: {e}"),
                    },
                    "",
                )
                .await;
                let now = now_ms();
                self.last_write.insert(tag.to_owned(), now);
                if let Some(r) = self.moves.get_mut(tag) {
                    let _ = r.mv.write_result(now, res);
                }
                false
            }
            Action::RollBack { value, reason } => {
                let res = self.write(tag, value).await;
                let now = now_ms();
                self.last_write.insert(tag.to_owned(), now);
                self.audit(
                    "system",
                    "setpoint_rollback",
                    &id,
                    match &res {
                        Ok(()) => format!("{tag}: rolled back to {value} after: {reason}"),
                        Err(e) => {
                            format!("{tag}: ROLLBACK to {value} FAILED ({e}) after: {reason}")
                        }
                    },
                    "",
                )
                .await;
                if let Some(r) = self.moves.get_mut(tag) {
                    let _ = r.mv.write_result(now, res);
                }
                self.raise_alarm(tag).await;
                true
            }
            Action::Done { final_value } => {
                self.audit(
                    "system",
                    "setpoint_verified",
                    &id,
                    format!("{tag}: at {final_value}, verified by read-back"),
                    "",
                )
                .await;
                self.end(tag).await;
                false
            }
            Action::Failed { .. } => {
                self.end(tag).await;
                false
            }
        }
    }

    async fn end(&mut self, tag: &str) {
        let Some(r) = self.moves.remove(tag) else {
            return;
        };
        let outcome = r.mv.outcome().cloned().unwrap_or(Outcome::Aborted {
            reason: "ended without an outcome".into(),
        });
        tracing::info!(tag, %outcome, "setpoint move ended");
        let ev = self
            .queue
            .finish(&r.id, outcome, now_ms())
            .unwrap_or_default();
        self.audit_events(&ev, "").await;
    }

    async fn abort(&mut self, tag: &str, reason: &str) {
        let Some(r) = self.moves.get_mut(tag) else {
            return;
        };
        let action = r.mv.abort(now_ms(), reason);
        if self.act(tag, action).await
            && let Some(r) = self.moves.get_mut(tag)
        {
            let obs = Observation::from_sample(None, Interlock::clear());
            let a = r.mv.poll(now_ms(), &obs);
            self.act(tag, a).await;
        }
        if self.moves.get(tag).is_some_and(|r| r.mv.is_finished()) {
            self.end(tag).await;
        }
    }

    async fn write(&self, tag: &str, value: f64) -> Result<(), String> {
        let cfg = &self.config;
        let Some(t) = cfg.tags.iter().find(|t| t.name == tag) else {
            return Err(format!("{tag} is not a configured tag"));
        };
        let line = cfg
            .devices
            .iter()
            .find(|d| d.name == t.device)
            .and_then(|d| match &d.transport {
                Transport::ModbusRtu { line, .. } => Some(line.clone()),
                _ => None,
            });
        let drivers = self.parts.drivers.lock().await;
        let Some(h) = drivers
            .iter()
            .find(|h| h.name() == t.device || Some(h.name()) == line.as_deref())
        else {
            return Err(format!("no driver runs device {}", t.device));
        };
        let req = WriteRequest::Tag {
            tag: tag.to_owned(),
            value: Value::F64(value),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, h.write(req)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", WRITE_TIMEOUT.as_secs())),
        }
    }

    /// The latched write-back alarm: one sample of 1, then 0 (the alarm
    /// stays shown until acknowledged).
    async fn raise_alarm(&self, tag: &str) {
        let Some(def) = self.def(tag) else { return };
        let name: drivers::TagName = def.alarm.as_str().into();
        let sample = |v: f64, ts: i64| Sample {
            tag: name.clone(),
            ts: Timestamp(ts),
            value: Some(Value::F64(v)),
            quality: Quality::Good,
        };
        let now = now_ms();
        if self
            .parts
            .alarm_tap
            .send(vec![sample(1.0, now), sample(0.0, now + 1)])
            .await
            .is_err()
        {
            tracing::error!(tag, "the alarm task is gone: write-back alarm not raised");
        }
    }

    async fn publish(&self) {
        let cfg = &self.config;
        let limits = cfg
            .write_back
            .iter()
            .flat_map(|w| w.setpoints.iter())
            .map(|d| LimitView {
                tag: d.tag.clone(),
                unit: d.unit.clone(),
                min: d.min,
                max: d.max,
                max_step: d.max_step,
                min_interval_s: d.min_interval.as_secs_f64(),
                interlocks: d
                    .permissive
                    .iter()
                    .map(|p| format!("{p} on"))
                    .chain(
                        d.state
                            .iter()
                            .map(|s| format!("{} ({} = {})", s.name, s.tag, s.equals)),
                    )
                    .collect(),
            })
            .collect();
        let entries = self
            .queue
            .list()
            .into_iter()
            .map(|e| EntryView {
                entry: e.clone(),
                moving: self
                    .moves
                    .get(&e.proposal.tag)
                    .filter(|r| r.id == e.proposal.id)
                    .map(|r| MoveView {
                        start: r.mv.start_value(),
                        target: r.mv.target(),
                        last_verified: r.mv.last_verified(),
                        steps_verified: r.mv.verified_steps(),
                        waiting: r.waiting.clone(),
                    }),
            })
            .collect();
        if let Ok(mut v) = self.view.write() {
            *v = QueueView {
                enabled: cfg.write_back.is_some() && self.key.is_some(),
                entries,
                limits,
                refused: self.refused.clone(),
                last_seq: self.last_seq,
            };
        }
    }
}
