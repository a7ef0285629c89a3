//! One setpoint move: clamping, ramping, read-back and rollback (pure: the
//! caller passes the time, the tag's latest sample and the interlocks, and
//! performs the writes this machine asks for; no I/O here).
//!
//! ```text
//!  Move::new ─▶ Ready ──gates ok, rate limit passed──▶ Writing ──Ok──▶ Verifying ──match──▶ Ready … ─▶ Ended(Completed)
//!                │ gates closed: Wait (hold)            │ Err            │ mismatch, bad quality, timeout
//!                │ held past hold_timeout: Ended(Failed) ▼                ▼
//!                │ changed by someone else: Ended(Failed) RollbackDue ─poll─▶ RollingBack ──Ok──▶ VerifyingRollback ──read-back = start──▶ Ended(RolledBack)
//!                                                                                        └─Err, or read-back ≠ start / bad / late─▶ Ended(RollbackFailed)
//! ```
//!
//! The caller's loop: [`Move::poll`] with the newest [`Observation`] →
//! execute the [`Action`] (a [`Action::Write`] or [`Action::RollBack`] is a
//! device write whose answer goes back through [`Move::write_result`];
//! [`Action::Wait`] means sleep until `until_ms` or the tag's next sample)
//! → repeat until [`Action::Done`] or [`Action::Failed`]; then
//! [`Move::outcome`] says exactly how it ended, for the audit log and the
//! approval queue.
//!
//! Decisions, each tested in `safety/tests.rs`:
//!
//! - **The edge writes only inside its limits, rollbacks included.** The
//!   request is clamped into `[min, max]` (reported as [`Clamped`]). A move
//!   whose start value lies *outside* `[min, max]` is refused
//!   ([`MoveError::StartOutsideLimits`]): its first step would have to be
//!   either outside the limits or a jump larger than `max_step`, and its
//!   rollback would have to write a value outside the limits. A plant
//!   outside the edge's envelope is in a state this configuration does not
//!   describe (abnormal operation or stale limits); bringing it back is the
//!   operator's job at the control system, and once it is back inside, the
//!   edge can move it again.
//! - **A request within `tolerance` of the current value is refused**
//!   ([`MoveError::NothingToDo`]) rather than completed at once: nothing is
//!   written, and the caller audits the refusal, not a move that never
//!   touched the device.
//! - **Ramping** goes from the last *verified written* value (the start
//!   value at first), at most `max_step` per write, the last step landing
//!   exactly on the target. Steps are computed from the written values, not
//!   from the read-backs, so a read-back inside the tolerance cannot make
//!   the ramp drift. The next step needs the previous one verified *and*
//!   `min_interval_ms` elapsed since the previous write was issued.
//! - **Read-back**: after a write is acknowledged at `t`, the first sample
//!   stamped in `(t, t + verify_timeout_ms]` decides: within `tolerance`
//!   of the written value verifies it; a different value or a sample that
//!   is not Good rolls back. No such sample, once the clock has passed the
//!   deadline (or a sample stamped after it arrives first), rolls back too.
//!   Samples stamped at or before `t` are ignored: they may predate the
//!   write. Timestamps are compared with the edge's clock, so the caller
//!   passes the edge's acquisition time when the source clock is not
//!   trusted.
//! - **A write the device answers with an error rolls back**: it may have
//!   applied it partly, or applied it and lost the answer, and writing the
//!   start value back is the safe default (harmless if nothing changed).
//! - **A rollback restores at once**: it writes the start value, exempt from
//!   `max_step`, `min_interval_ms`, the interlocks and quality, because it
//!   returns the plant to the value it held before this move started and
//!   any delay leaves an unverified value in the plant. It stays inside
//!   `[min, max]` because the start value must (first point). A failed
//!   rollback ends in [`Outcome::RollbackFailed`]: the caller raises a
//!   higher alarm, this machine never retries.
//! - **Gates (permissive, state, the tag's quality) only hold back the next
//!   write**: while one is closed the move waits ([`Action::Wait`] with its
//!   reason) and writes nothing. Waiting that lasts `hold_timeout_ms`
//!   without a break ends the move in [`Outcome::Failed`], left at its
//!   last verified value (inside the limits, verified); no rollback, since
//!   it would be a write against a closed gate. While a write is being
//!   verified the interlocks are not consulted (the write is done; its
//!   read-back is still what tells whether it took), but a sample that is
//!   not Good rolls back.
//! - **Someone else moved the setpoint**: a Good sample taken after the
//!   last acknowledged write (any sample before the first write) that
//!   differs from the last verified value by more than the tolerance ends
//!   the move in [`Outcome::Failed`] without a rollback: the next step
//!   would otherwise jump from a value the plant no longer holds, and a
//!   rollback would overwrite the other writer's decision.
//! - **Abort** ([`Move::abort`]): before anything was written the move ends
//!   quietly ([`Outcome::Aborted`]); after a write it rolls back. A write
//!   in flight is waited for first, so every device answer is matched with
//!   the write it answers.
//! - Writes, their answers and the waits are bounded by the caller (the
//!   driver's write timeout); a move never asks for a second write while
//!   one is outstanding.

use std::fmt;

use serde::Serialize;

/// One writable tag's limits on this edge, whatever the hub proposes.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Absolute bounds, in engineering units.
    pub min: f64,
    pub max: f64,
    /// The largest change a single write may make (> 0).
    pub max_step: f64,
    /// At least this long between two writes to the tag (≥ 0).
    pub min_interval_ms: i64,
    /// A read-back within this of the written value verifies it
    /// (≥ 0 and < `max_step`, so a step that did not take cannot verify).
    pub tolerance: f64,
    /// How long after a write's acknowledgement a matching read-back may
    /// take (> 0).
    pub verify_timeout_ms: i64,
    /// How long a move may be held by a closed gate (interlock, quality)
    /// before it gives up (> 0).
    pub hold_timeout_ms: i64,
}

impl Limits {
    /// Whether these limits can be enforced; the reason when not.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.min.is_finite() && self.max.is_finite()) {
            return Err(format!(
                "min and max must be finite ({}, {})",
                self.min, self.max
            ));
        }
        if self.min > self.max {
            return Err(format!("min {} is above max {}", self.min, self.max));
        }
        if !(self.max_step.is_finite() && self.max_step > 0.0) {
            return Err(format!(
                "max_step must be finite and > 0 ({})",
                self.max_step
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0 && self.tolerance < self.max_step)
        {
            return Err(format!(
                "tolerance must be ≥ 0 and below max_step {} ({})",
                self.max_step, self.tolerance
            ));
        }
        if self.min_interval_ms < 0 {
            return Err(format!(
                "min_interval_ms must be ≥ 0 ({})",
                self.min_interval_ms
            ));
        }
        if self.verify_timeout_ms <= 0 || self.hold_timeout_ms <= 0 {
            return Err(format!(
                "verify_timeout_ms and hold_timeout_ms must be > 0 ({}, {})",
                self.verify_timeout_ms, self.hold_timeout_ms
            ));
        }
        Ok(())
    }

    /// Whether `v` lies in `[min, max]` (never for NaN).
    pub fn contains(&self, v: f64) -> bool {
        v >= self.min && v <= self.max
    }

    /// `v` clamped into `[min, max]` (`v` finite).
    pub fn clamp(&self, v: f64) -> f64 {
        v.max(self.min).min(self.max)
    }
}

/// The request was moved into the limits: audit "clamped to 385 (edge limit)".
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Clamped {
    pub from: f64,
    pub to: f64,
}

/// A gate of the next write: passes, or is closed with a reason for the
/// operator and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Pass,
    Fail(String),
}

impl Check {
    pub fn passes(&self) -> bool {
        matches!(self, Check::Pass)
    }
}

impl From<&drivers::Quality> for Check {
    fn from(q: &drivers::Quality) -> Check {
        if q.is_good() {
            Check::Pass
        } else {
            Check::Fail(format!("quality {q}"))
        }
    }
}

/// The interlocks the caller evaluated from other tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interlock {
    /// "The permissive tag is true".
    pub permissive: Check,
    /// "The state tag equals the named value".
    pub state: Check,
}

impl Interlock {
    /// Both gates open (a tag configured without interlocks).
    pub fn clear() -> Interlock {
        Interlock {
            permissive: Check::Pass,
            state: Check::Pass,
        }
    }
}

/// What the caller knows at a poll: the target tag's latest sample and the
/// interlocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The latest numeric value (`None`: not read, or not a number).
    pub value: Option<f64>,
    /// When that sample was acquired (Unix ms, the edge's clock).
    pub ts_ms: i64,
    /// Whether that sample's quality is Good.
    pub quality: Check,
    pub interlock: Interlock,
}

impl Observation {
    /// From the live table's latest sample of the tag (`None`: no sample yet).
    pub fn from_sample(sample: Option<&drivers::Sample>, interlock: Interlock) -> Observation {
        match sample {
            Some(s) => Observation {
                value: s.value.as_ref().and_then(drivers::Value::as_f64),
                ts_ms: s.ts.as_millis(),
                quality: Check::from(&s.quality),
                interlock,
            },
            None => Observation {
                value: None,
                ts_ms: i64::MIN,
                quality: Check::Fail("no sample yet".into()),
                interlock,
            },
        }
    }

    /// The value when it can be trusted, else why not.
    fn reading(&self) -> Result<f64, String> {
        match (&self.quality, self.value) {
            (Check::Fail(r), _) => Err(r.clone()),
            (Check::Pass, Some(v)) if v.is_finite() => Ok(v),
            (Check::Pass, _) => Err("no numeric value".into()),
        }
    }
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write `value` to the tag, then report the answer with
    /// [`Move::write_result`].
    Write { value: f64 },
    /// Write nothing; poll again at `until_ms` or at the tag's next sample,
    /// whichever comes first (`None`: no time limit from this machine).
    Wait {
        until_ms: Option<i64>,
        reason: String,
    },
    /// Write `value` (the start value) back, report the answer with
    /// [`Move::write_result`], and raise an alarm with `reason`.
    RollBack { value: f64, reason: String },
    /// Ended at the target ([`Outcome::Completed`]).
    Done { final_value: f64 },
    /// Ended anywhere else: [`Move::outcome`] says how.
    Failed { reason: String },
}

/// How a move ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The target was written and verified.
    Completed { final_value: f64 },
    /// Ended before anything was written.
    Aborted { reason: String },
    /// Ended without a rollback, the plant left at `left_at` (the last
    /// verified value, or the start value).
    Failed { reason: String, left_at: f64 },
    /// The start value was written back after `reason`.
    RolledBack { value: f64, reason: String },
    /// Writing the start value back failed too: a higher alarm.
    RollbackFailed {
        value: f64,
        reason: String,
        error: String,
    },
}

/// A value for a sentence: at most 6 significant digits, no float noise.
fn short(v: f64) -> String {
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { final_value } => write!(f, "completed at {}", short(*final_value)),
            Outcome::Aborted { reason } => write!(f, "aborted before any write: {reason}"),
            Outcome::Failed { reason, left_at } => write!(f, "stopped at {left_at}: {reason}"),
            Outcome::RolledBack { value, reason } => write!(f, "rolled back to {value}: {reason}"),
            Outcome::RollbackFailed {
                value,
                reason,
                error,
            } => write!(f, "rollback to {value} FAILED ({error}) after: {reason}"),
        }
    }
}

/// Where a move is.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Between writes: the next step goes out when the gates and the rate
    /// limit allow.
    Ready,
    /// A step write is outstanding; `abort` is an abort requested meanwhile.
    Writing {
        value: f64,
        abort: Option<String>,
    },
    /// The device acknowledged `value` at `written_ms`; waiting for the read-back.
    Verifying {
        value: f64,
        written_ms: i64,
    },
    /// A rollback is decided; the next poll asks for it.
    RollbackDue {
        reason: String,
    },
    /// The rollback write is outstanding.
    RollingBack {
        reason: String,
    },
    /// The device acknowledged the rollback at `written_ms`; its read-back
    /// decides between `RolledBack` and `RollbackFailed` (a PLC that alters
    /// writes must not be reported as restored).
    VerifyingRollback {
        reason: String,
        written_ms: i64,
    },
    Ended(Outcome),
}

/// Why a move cannot start.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MoveError {
    #[error("{tag}: invalid limits: {reason}")]
    InvalidLimits { tag: String, reason: String },
    #[error("{tag}: the {what} is not a finite number ({value})")]
    NotFinite {
        tag: String,
        what: &'static str,
        value: f64,
    },
    #[error(
        "{tag}: the current value {start} is outside this edge's limits [{min}, {max}]; bring it back from the control system first (the edge writes only inside its limits)"
    )]
    StartOutsideLimits {
        tag: String,
        start: f64,
        min: f64,
        max: f64,
    },
    #[error(
        "{tag}: nothing to do: the current value {current} is already within tolerance of {target}"
    )]
    NothingToDo {
        tag: String,
        current: f64,
        target: f64,
        clamped: Option<Clamped>,
    },
    #[error("a write result was reported but no write is outstanding")]
    NoWriteOutstanding,
}

/// One setpoint move of one tag, from its current value to an approved target.
#[derive(Clone, Debug)]
pub struct Move {
    tag: String,
    limits: Limits,
    start: f64,
    target: f64,
    created_ms: i64,
    phase: Phase,
    /// The last written value whose read-back matched (the start at first).
    verified: f64,
    verified_steps: u32,
    /// Whether any step write was issued (an abort then rolls back).
    written: bool,
    /// When the last write was issued (rate limit), this move's or the one
    /// given by [`Move::with_previous_write`].
    last_write_ms: Option<i64>,
    /// When the device last acknowledged a step write.
    last_ack_ms: Option<i64>,
    /// Since when a closed gate has held the next write back.
    held_since_ms: Option<i64>,
}

impl Move {
    /// A move of `tag` from `start_value` to `requested` (clamped into the
    /// limits; the clamp is returned for the audit).
    pub fn new(
        tag: impl Into<String>,
        limits: Limits,
        start_value: f64,
        requested: f64,
        now_ms: i64,
    ) -> Result<(Move, Option<Clamped>), MoveError> {
        let tag = tag.into();
        limits
            .validate()
            .map_err(|reason| MoveError::InvalidLimits {
                tag: tag.clone(),
                reason,
            })?;
        for (what, value) in [
            ("current value", start_value),
            ("requested value", requested),
        ] {
            if !value.is_finite() {
                return Err(MoveError::NotFinite { tag, what, value });
            }
        }
        if !limits.contains(start_value) {
            return Err(MoveError::StartOutsideLimits {
                tag,
                start: start_value,
                min: limits.min,
                max: limits.max,
            });
        }
        let target = limits.clamp(requested);
        let clamped = (target != requested).then_some(Clamped {
            from: requested,
            to: target,
        });
        if (target - start_value).abs() <= limits.tolerance {
            return Err(MoveError::NothingToDo {
                tag,
                current: start_value,
                target,
                clamped,
            });
        }
        let mv = Move {
            tag,
            limits,
            start: start_value,
            target,
            created_ms: now_ms,
            phase: Phase::Ready,
            verified: start_value,
            verified_steps: 0,
            written: false,
            last_write_ms: None,
            last_ack_ms: None,
            held_since_ms: None,
        };
        Ok((mv, clamped))
    }

    /// Count the rate limit from a write to this tag before this move (the
    /// previous move's [`Move::last_write_ms`]).
    pub fn with_previous_write(mut self, at_ms: Option<i64>) -> Move {
        self.last_write_ms = at_ms;
        self
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// The value before this move: what a rollback writes.
    pub fn start_value(&self) -> f64 {
        self.start
    }
    /// The (clamped) value this move ends at when it completes.
    pub fn target(&self) -> f64 {
        self.target
    }
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
    pub fn phase(&self) -> &Phase {
        &self.phase
    }
    /// The last value written and verified (the start value before that).
    pub fn last_verified(&self) -> f64 {
        self.verified
    }
    /// How many steps were written and verified.
    pub fn verified_steps(&self) -> u32 {
        self.verified_steps
    }
    /// When the last write (step or rollback) was issued: carry it into the
    /// tag's next move with [`Move::with_previous_write`].
    pub fn last_write_ms(&self) -> Option<i64> {
        self.last_write_ms
    }
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Ended(o) => Some(o),
            _ => None,
        }
    }
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// What to do now, given the tag's latest sample and the interlocks.
    /// After the move ended, its terminal action again.
    pub fn poll(&mut self, now_ms: i64, obs: &Observation) -> Action {
        match &self.phase {
            Phase::Ended(o) => terminal(o),
            Phase::Writing { value, abort } => Action::Wait {
                until_ms: None,
                reason: match abort {
                    Some(_) => format!(
                        "abort requested; waiting for the device's answer to the write of {value}"
                    ),
                    None => format!("waiting for the device's answer to the write of {value}"),
                },
            },
            Phase::RollingBack { .. } => Action::Wait {
                until_ms: None,
                reason: format!(
                    "waiting for the device's answer to the rollback to {}",
                    self.start
                ),
            },
            Phase::RollbackDue { reason } => {
                let reason = reason.clone();
                self.roll_back(now_ms, reason)
            }
            Phase::VerifyingRollback { reason, written_ms } => {
                let (reason, written_ms) = (reason.clone(), *written_ms);
                self.verify_rollback(now_ms, obs, reason, written_ms)
            }
            Phase::Verifying { value, written_ms } => {
                let (value, written_ms) = (*value, *written_ms);
                self.verify(now_ms, obs, value, written_ms)
            }
            Phase::Ready => self.next_step(now_ms, obs),
        }
    }

    /// The device's answer to the last [`Action::Write`] or [`Action::RollBack`].
    pub fn write_result(
        &mut self,
        now_ms: i64,
        result: Result<(), String>,
    ) -> Result<(), MoveError> {
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Writing { value, abort } => {
                self.phase = match (result, abort) {
                    (Err(e), abort) => Phase::RollbackDue {
                        reason: format!(
                            "the write of {value} failed: {e}{}",
                            abort
                                .map(|a| format!(" (abort requested: {a})"))
                                .unwrap_or_default()
                        ),
                    },
                    (Ok(()), Some(a)) => Phase::RollbackDue {
                        reason: format!("aborted: {a}"),
                    },
                    (Ok(()), None) => {
                        self.last_ack_ms = Some(now_ms);
                        Phase::Verifying {
                            value,
                            written_ms: now_ms,
                        }
                    }
                };
                Ok(())
            }
            Phase::RollingBack { reason } => {
                let value = self.start;
                self.phase = match result {
                    Ok(()) => Phase::VerifyingRollback {
                        reason,
                        written_ms: now_ms,
                    },
                    Err(error) => Phase::Ended(Outcome::RollbackFailed {
                        value,
                        reason,
                        error,
                    }),
                };
                Ok(())
            }
            other => {
                self.phase = other;
                Err(MoveError::NoWriteOutstanding)
            }
        }
    }

    /// Cancel the move (operator, configuration reload). Before any write
    /// it ends at once; after one it rolls back; with a write outstanding
    /// the rollback follows its answer.
    pub fn abort(&mut self, now_ms: i64, reason: &str) -> Action {
        match &mut self.phase {
            Phase::Ended(o) => terminal(o),
            Phase::Ready if !self.written => self.end(Outcome::Aborted {
                reason: reason.to_string(),
            }),
            Phase::Ready | Phase::Verifying { .. } => {
                self.roll_back(now_ms, format!("aborted: {reason}"))
            }
            Phase::Writing { value, abort } => {
                let value = *value;
                abort.get_or_insert_with(|| reason.to_string());
                Action::Wait {
                    until_ms: None,
                    reason: format!(
                        "abort requested; waiting for the device's answer to the write of {value}"
                    ),
                }
            }
            Phase::RollbackDue { reason } => {
                let reason = reason.clone();
                self.roll_back(now_ms, reason)
            }
            Phase::RollingBack { .. } => Action::Wait {
                until_ms: None,
                reason: format!(
                    "already rolling back to {}; waiting for the device's answer",
                    self.start
                ),
            },
            Phase::VerifyingRollback { .. } => Action::Wait {
                until_ms: None,
                reason: format!(
                    "already rolled back to {}; waiting for its read-back",
                    self.start
                ),
            },
        }
    }

    /// The first sample stamped after the rollback's acknowledgement, within
    /// `verify_timeout_ms`, must show the start value; anything else (another
    /// value, bad quality, nothing in time) is a failed rollback.
    fn verify_rollback(
        &mut self,
        now_ms: i64,
        obs: &Observation,
        reason: String,
        written_ms: i64,
    ) -> Action {
        let value = self.start;
        let deadline = written_ms.saturating_add(self.limits.verify_timeout_ms);
        if obs.ts_ms > written_ms && obs.ts_ms <= deadline {
            return match obs.reading() {
                Ok(v) if (v - value).abs() <= self.limits.tolerance => {
                    self.end(Outcome::RolledBack { value, reason })
                }
                Ok(v) => self.end(Outcome::RollbackFailed {
                    value,
                    reason,
                    error: format!("the read-back after the rollback shows {v}, not {value}"),
                }),
                Err(why) => self.end(Outcome::RollbackFailed {
                    value,
                    reason,
                    error: format!("the read-back after the rollback: {why}"),
                }),
            };
        }
        if now_ms > deadline || obs.ts_ms > deadline {
            return self.end(Outcome::RollbackFailed {
                value,
                reason,
                error: format!(
                    "no read-back within {} ms of the rollback",
                    self.limits.verify_timeout_ms
                ),
            });
        }
        Action::Wait {
            until_ms: Some(deadline.saturating_add(1)),
            reason: format!("waiting for the read-back of the rollback to {value}"),
        }
    }

    fn end(&mut self, outcome: Outcome) -> Action {
        let action = terminal(&outcome);
        self.phase = Phase::Ended(outcome);
        action
    }

    fn roll_back(&mut self, now_ms: i64, reason: String) -> Action {
        self.phase = Phase::RollingBack {
            reason: reason.clone(),
        };
        // Exempt from the rate limit, but counted for the tag's next move.
        self.last_write_ms = Some(now_ms);
        Action::RollBack {
            value: self.start,
            reason,
        }
    }

    fn verify(&mut self, now_ms: i64, obs: &Observation, value: f64, written_ms: i64) -> Action {
        let deadline = written_ms.saturating_add(self.limits.verify_timeout_ms);
        if obs.ts_ms > written_ms && obs.ts_ms <= deadline {
            return match obs.reading() {
                Err(why) => self.roll_back(now_ms, format!("read-back of {value}: {why}")),
                Ok(v) if (v - value).abs() <= self.limits.tolerance => {
                    self.verified = value;
                    self.verified_steps += 1;
                    if value == self.target {
                        self.end(Outcome::Completed { final_value: value })
                    } else {
                        self.phase = Phase::Ready;
                        self.next_step(now_ms, obs)
                    }
                }
                Ok(v) => self.roll_back(
                    now_ms,
                    format!(
                        "read-back {v} differs from the written {value} by more than {}",
                        self.limits.tolerance
                    ),
                ),
            };
        }
        if obs.ts_ms > deadline || now_ms > deadline {
            return self.roll_back(
                now_ms,
                format!(
                    "no read-back of {value} within {} ms of the write",
                    self.limits.verify_timeout_ms
                ),
            );
        }
        Action::Wait {
            until_ms: Some(deadline.saturating_add(1)),
            reason: format!("waiting for the read-back of {value}"),
        }
    }

    fn next_step(&mut self, now_ms: i64, obs: &Observation) -> Action {
        let gate = match (
            &obs.interlock.permissive,
            &obs.interlock.state,
            obs.reading(),
        ) {
            (Check::Fail(r), _, _) => Err(format!("permissive off: {r}")),
            (_, Check::Fail(r), _) => Err(format!("state interlock: {r}")),
            (_, _, Err(r)) => Err(format!("{}: {r}", self.tag)),
            (Check::Pass, Check::Pass, Ok(v)) => Ok(v),
        };
        let value = match gate {
            Ok(v) => v,
            Err(reason) => {
                let since = *self.held_since_ms.get_or_insert(now_ms);
                let until = since.saturating_add(self.limits.hold_timeout_ms);
                if now_ms >= until {
                    return self.end(Outcome::Failed {
                        reason: format!(
                            "held for {} ms, longer than the hold timeout: {reason}",
                            now_ms.saturating_sub(since)
                        ),
                        left_at: self.verified,
                    });
                }
                return Action::Wait {
                    until_ms: Some(until),
                    reason: format!("holding: {reason}"),
                };
            }
        };
        self.held_since_ms = None;
        let fresh = self.last_ack_ms.is_none_or(|ack| obs.ts_ms > ack);
        if fresh && (value - self.verified).abs() > self.limits.tolerance {
            return self.end(Outcome::Failed {
                reason: format!(
                    "the setpoint was changed outside this move: it reads {value}, {} was expected",
                    self.verified
                ),
                left_at: self.verified,
            });
        }
        if let Some(last) = self.last_write_ms {
            let due = last.saturating_add(self.limits.min_interval_ms);
            if now_ms < due {
                return Action::Wait {
                    until_ms: Some(due),
                    reason: format!(
                        "rate limit: one write per {} ms",
                        self.limits.min_interval_ms
                    ),
                };
            }
        }
        let next = self.limits.clamp(step_towards(
            self.verified,
            self.target,
            self.limits.max_step,
        ));
        self.phase = Phase::Writing {
            value: next,
            abort: None,
        };
        self.written = true;
        self.last_write_ms = Some(now_ms);
        Action::Write { value: next }
    }
}

/// At most `max_step` from `from` towards `to`, landing exactly on `to`.
/// When the difference is above `max_step`, `from + max_step` lies strictly
/// between the two in exact arithmetic, and rounding is monotonic, so the
/// step cannot overshoot `to`.
fn step_towards(from: f64, to: f64, max_step: f64) -> f64 {
    let d = to - from;
    if d.abs() <= max_step {
        to
    } else {
        from + max_step.copysign(d)
    }
}

fn terminal(o: &Outcome) -> Action {
    match o {
        Outcome::Completed { final_value } => Action::Done {
            final_value: *final_value,
        },
        other => Action::Failed {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
