//! The approval queue: setpoint proposals from the hub, decided by people
//! on the edge (pure: the caller passes the time and the user's role; no
//! I/O here).
//!
//! ```text
//!  offer ─▶ Pending ──approve──▶ Approved ──started──▶ Executing ──finish(outcome)──▶ Ended
//!             │ reject ─▶ Rejected          └──────finish (the move never started)──┘
//!             │ tick past expires_ms ─▶ Expired
//!             └ a newer offer for the tag ─▶ Superseded
//! ```
//!
//! Every operation that changes the queue returns the [`Event`]s the caller
//! writes to the audit log, one per transition; an operation that returns
//! an error has changed nothing. Rules:
//!
//! - Only tags with [`Limits`] on this edge take proposals ("not a writable
//!   setpoint on this edge"); a proposal already expired is refused.
//! - One pending proposal per tag: a newer offer supersedes the pending one.
//! - Approving needs an operator (or a role of the same rank, such as
//!   analyst: [`Role::allows`]). The value written is the proposal clamped
//!   into the limits ([`Entry::to_write`], shown before approval); an
//!   engineer or admin may approve another value, which must lie within the
//!   limits. Rejecting needs an operator too, and a comment. Comments are at
//!   most [`MAX_COMMENT_CHARS`] characters; the user must be named.
//! - An expired proposal cannot be approved: [`ApprovalQueue::approve`]
//!   refuses it, and the next [`ApprovalQueue::tick`] moves it to the
//!   history with its `Expired` event (so the refusal changes nothing).
//! - One move at a time per tag: approving while another proposal for the
//!   tag is approved or executing is refused ([`QueueError::TagBusy`]).
//! - Finished proposals stay visible in a bounded history (newest first).
//!
//! The queue is in memory: after a restart the hub's next proposals fill
//! it again, and the audit log keeps what was decided.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::Serialize;
use web::access::Role;

use super::safety::{Clamped, Limits, Outcome};

/// Longest approval or rejection comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;
/// Longest user name, in characters.
pub const MAX_USER_CHARS: usize = 100;
/// Longest text field of a proposal (rationale, ids, units), in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// A sensible history length for the HMI.
pub const DEFAULT_HISTORY: usize = 100;

/// A recommendation from the hub for one tag (signature already checked).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proposal {
    /// The hub's recommendation id plus the tag: unique per proposal.
    pub id: String,
    pub tag: String,
    pub unit: String,
    /// The tag's value at the hub when it proposed.
    pub hub_value: f64,
    pub proposed: f64,
    pub benefit: f64,
    pub benefit_unit: String,
    pub rationale: String,
    /// 0..=1.
    pub confidence: f64,
    pub confidence_text: String,
    /// Unix ms; expired from this instant on.
    pub expires_ms: i64,
    pub received_ms: i64,
}

/// Who decided, when, why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub by: String,
    pub role: Role,
    pub at_ms: i64,
    pub comment: Option<String>,
}

/// Where a proposal is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Pending,
    /// Approved; the caller has not started its move yet.
    Approved,
    Executing,
    /// The move ended (or was never started: [`Outcome::Aborted`]).
    Ended {
        outcome: Outcome,
    },
    Rejected,
    Expired,
    /// A newer proposal for the tag, `by`, replaced it.
    Superseded {
        by: String,
    },
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Executing => "executing",
            Status::Ended { .. } => "ended",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Superseded { .. } => "superseded",
        }
    }

    /// Whether the tag's move is claimed (approved or running).
    fn holds_tag(&self) -> bool {
        matches!(self, Status::Approved | Status::Executing)
    }
}

/// One proposal as the HMI shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub proposal: Proposal,
    /// What approving as proposed writes: the proposal clamped into this
    /// edge's limits (as of the last offer or [`ApprovalQueue::set_limits`]).
    pub to_write: f64,
    pub clamped: Option<Clamped>,
    pub status: Status,
    /// The approval or rejection.
    pub decision: Option<Decision>,
    /// The value approved (edited or not).
    pub approved_value: Option<f64>,
    pub updated_ms: i64,
}

/// What an approval hands the caller: the move to make, and the audit.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub id: String,
    pub tag: String,
    /// Inside the tag's limits.
    pub value: f64,
    pub events: Vec<Event>,
}

/// One audit line per transition.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Proposed {
        id: String,
        tag: String,
        proposed: f64,
        to_write: f64,
        clamped: Option<Clamped>,
        at_ms: i64,
    },
    Superseded {
        id: String,
        by: String,
        at_ms: i64,
    },
    /// An engineer approves another value than the one proposed; followed
    /// by its `Approved`.
    Edited {
        id: String,
        user: String,
        from: f64,
        to: f64,
        at_ms: i64,
    },
    Approved {
        id: String,
        tag: String,
        user: String,
        role: Role,
        value: f64,
        comment: Option<String>,
        at_ms: i64,
    },
    Rejected {
        id: String,
        user: String,
        role: Role,
        comment: String,
        at_ms: i64,
    },
    Expired {
        id: String,
        expires_ms: i64,
        at_ms: i64,
    },
    Started {
        id: String,
        at_ms: i64,
    },
    Finished {
        id: String,
        outcome: Outcome,
        at_ms: i64,
    },
}

impl Event {
    /// The proposal it concerns (the audit's target).
    pub fn id(&self) -> &str {
        match self {
            Event::Proposed { id, .. }
            | Event::Superseded { id, .. }
            | Event::Edited { id, .. }
            | Event::Approved { id, .. }
            | Event::Rejected { id, .. }
            | Event::Expired { id, .. }
            | Event::Started { id, .. }
            | Event::Finished { id, .. } => id,
        }
    }

    /// The audit's action name.
    pub fn action(&self) -> &'static str {
        match self {
            Event::Proposed { .. } => "setpoint_proposed",
            Event::Superseded { .. } => "setpoint_superseded",
            Event::Edited { .. } => "setpoint_edited",
            Event::Approved { .. } => "setpoint_approved",
            Event::Rejected { .. } => "setpoint_rejected",
            Event::Expired { .. } => "setpoint_expired",
            Event::Started { .. } => "setpoint_started",
            Event::Finished { .. } => "setpoint_finished",
        }
    }

    /// The audit's actor: the user who decided, else "hub" or "system".
    pub fn actor(&self) -> &str {
        match self {
            Event::Edited { user, .. }
            | Event::Approved { user, .. }
            | Event::Rejected { user, .. } => user,
            Event::Proposed { .. } => "hub",
            _ => "system",
        }
    }
}

/// The audit's detail line.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Proposed {
                tag,
                proposed,
                to_write,
                clamped,
                ..
            } => match clamped {
                Some(c) => write!(
                    f,
                    "{tag}: proposed {proposed}, clamped to {} (edge limit)",
                    c.to
                ),
                None => write!(f, "{tag}: proposed {to_write}"),
            },
            Event::Superseded { by, .. } => write!(f, "superseded by {by}"),
            Event::Edited { from, to, .. } => write!(f, "value edited from {from} to {to}"),
            Event::Approved {
                tag,
                role,
                value,
                comment,
                ..
            } => {
                write!(f, "{tag} → {value} approved ({role})")?;
                match comment {
                    Some(c) => write!(f, ": {c}"),
                    None => Ok(()),
                }
            }
            Event::Rejected { role, comment, .. } => write!(f, "rejected ({role}): {comment}"),
            Event::Expired { expires_ms, .. } => write!(f, "expired at {expires_ms}"),
            Event::Started { .. } => f.write_str("move started"),
            Event::Finished { outcome, .. } => write!(f, "move {outcome}"),
        }
    }
}

/// Why an operation was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("{tag}: not a writable setpoint on this edge")]
    NotWritable { tag: String },
    #[error("{tag}: invalid limits: {reason}")]
    InvalidLimits { tag: String, reason: String },
    #[error("invalid proposal: {0}")]
    Invalid(String),
    #[error("proposal {id} expired at {expires_ms}")]
    Expired { id: String, expires_ms: i64 },
    #[error("proposal {id} is already known")]
    Duplicate { id: String },
    #[error("no proposal {id}")]
    NotFound { id: String },
    #[error("proposal {id} is {status}, not {expected}")]
    WrongState {
        id: String,
        status: &'static str,
        expected: &'static str,
    },
    #[error("the role {role} may not {what} (needs {needed} or above)")]
    Forbidden {
        role: Role,
        needed: Role,
        what: &'static str,
    },
    #[error("{tag}: {value} is outside this edge's limits [{min}, {max}]")]
    OutsideLimits {
        tag: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error(
        "{tag} has a move approved or running (proposal {running}); approve again when it has ended"
    )]
    TagBusy { tag: String, running: String },
    #[error("a rejection needs a comment")]
    CommentRequired,
    #[error("the {what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("the user is not named")]
    EmptyUser,
}

/// The queue: live proposals (pending, approved, executing) and a bounded
/// history of finished ones.
#[derive(Clone, Debug)]
pub struct ApprovalQueue {
    limits: BTreeMap<String, Limits>,
    /// In arrival order.
    live: Vec<Entry>,
    /// Newest first, at most `history_cap`.
    history: VecDeque<Entry>,
    history_cap: usize,
}

fn check_limits(limits: &BTreeMap<String, Limits>) -> Result<(), QueueError> {
    for (tag, l) in limits {
        l.validate().map_err(|reason| QueueError::InvalidLimits {
            tag: tag.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn check_user(user: &str) -> Result<(), QueueError> {
    if user.trim().is_empty() {
        return Err(QueueError::EmptyUser);
    }
    if user.chars().count() > MAX_USER_CHARS {
        return Err(QueueError::TooLong {
            what: "user name",
            max: MAX_USER_CHARS,
        });
    }
    Ok(())
}

fn check_comment(comment: &str) -> Result<(), QueueError> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(QueueError::TooLong {
            what: "comment",
            max: MAX_COMMENT_CHARS,
        });
    }
    Ok(())
}

fn need(role: Role, needed: Role, what: &'static str) -> Result<(), QueueError> {
    if role.allows(needed) {
        Ok(())
    } else {
        Err(QueueError::Forbidden { role, needed, what })
    }
}

fn check_proposal(p: &Proposal) -> Result<(), QueueError> {
    if p.id.trim().is_empty() || p.tag.trim().is_empty() {
        return Err(QueueError::Invalid("empty id or tag".into()));
    }
    for (what, text) in [
        ("id", &p.id),
        ("tag", &p.tag),
        ("unit", &p.unit),
        ("benefit unit", &p.benefit_unit),
        ("rationale", &p.rationale),
        ("confidence text", &p.confidence_text),
    ] {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(QueueError::TooLong {
                what,
                max: MAX_TEXT_CHARS,
            });
        }
    }
    for (what, v) in [
        ("current value", p.hub_value),
        ("proposed value", p.proposed),
        ("benefit", p.benefit),
    ] {
        if !v.is_finite() {
            return Err(QueueError::Invalid(format!("the {what} is {v}")));
        }
    }
    if !(0.0..=1.0).contains(&p.confidence) {
        return Err(QueueError::Invalid(format!(
            "confidence {} is outside 0..1",
            p.confidence
        )));
    }
    Ok(())
}

fn clamp(limits: &Limits, proposed: f64) -> (f64, Option<Clamped>) {
    let to = limits.clamp(proposed);
    (
        to,
        (to != proposed).then_some(Clamped { from: proposed, to }),
    )
}

impl ApprovalQueue {
    /// A queue for the tags in `limits` (the writable setpoints of this
    /// edge), keeping the last `history_cap` finished proposals.
    pub fn new(
        limits: BTreeMap<String, Limits>,
        history_cap: usize,
    ) -> Result<ApprovalQueue, QueueError> {
        check_limits(&limits)?;
        Ok(ApprovalQueue {
            limits,
            live: Vec::new(),
            history: VecDeque::new(),
            history_cap,
        })
    }

    /// New limits after a configuration reload. Pending proposals show
    /// what they would now write; those for tags no longer writable stay
    /// (they expire) but cannot be approved. Moves already approved keep
    /// theirs: the caller aborts them on a reload if it must.
    pub fn set_limits(&mut self, limits: BTreeMap<String, Limits>) -> Result<(), QueueError> {
        check_limits(&limits)?;
        self.limits = limits;
        for e in &mut self.live {
            if e.status == Status::Pending
                && let Some(l) = self.limits.get(&e.proposal.tag)
            {
                (e.to_write, e.clamped) = clamp(l, e.proposal.proposed);
            }
        }
        Ok(())
    }

    pub fn limits(&self, tag: &str) -> Option<&Limits> {
        self.limits.get(tag)
    }

    /// Live proposals in arrival order, then the history, newest first.
    pub fn list(&self) -> Vec<&Entry> {
        self.live.iter().chain(self.history.iter()).collect()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.list().into_iter().find(|e| e.proposal.id == id)
    }

    /// The proposal whose move is approved or running on `tag`.
    pub fn running(&self, tag: &str) -> Option<&Entry> {
        self.live
            .iter()
            .find(|e| e.proposal.tag == tag && e.status.holds_tag())
    }

    /// When the next pending proposal expires: tick then at the latest.
    pub fn next_expiry(&self) -> Option<i64> {
        self.live
            .iter()
            .filter(|e| e.status == Status::Pending)
            .map(|e| e.proposal.expires_ms)
            .min()
    }

    /// A proposal from the hub.
    pub fn offer(&mut self, proposal: Proposal, now_ms: i64) -> Result<Vec<Event>, QueueError> {
        check_proposal(&proposal)?;
        let Some(limits) = self.limits.get(&proposal.tag) else {
            return Err(QueueError::NotWritable { tag: proposal.tag });
        };
        if now_ms >= proposal.expires_ms {
            return Err(QueueError::Expired {
                id: proposal.id,
                expires_ms: proposal.expires_ms,
            });
        }
        if self.get(&proposal.id).is_some() {
            return Err(QueueError::Duplicate { id: proposal.id });
        }
        let (to_write, clamped) = clamp(limits, proposal.proposed);
        let mut events = Vec::new();
        if let Some(i) = self
            .live
            .iter()
            .position(|e| e.proposal.tag == proposal.tag && e.status == Status::Pending)
        {
            let old = self.live.remove(i);
            events.push(Event::Superseded {
                id: old.proposal.id.clone(),
                by: proposal.id.clone(),
                at_ms: now_ms,
            });
            self.retire(
                old,
                Status::Superseded {
                    by: proposal.id.clone(),
                },
                now_ms,
            );
        }
        events.push(Event::Proposed {
            id: proposal.id.clone(),
            tag: proposal.tag.clone(),
            proposed: proposal.proposed,
            to_write,
            clamped,
            at_ms: now_ms,
        });
        self.live.push(Entry {
            proposal,
            to_write,
            clamped,
            status: Status::Pending,
            decision: None,
            approved_value: None,
            updated_ms: now_ms,
        });
        Ok(events)
    }

    /// Approve a pending proposal, as proposed (`edited_value` `None`, or
    /// the value it would write) or, for an engineer or above, another
    /// value within the limits. The caller then starts a move to
    /// [`Approval::value`].
    pub fn approve(
        &mut self,
        id: &str,
        user: &str,
        role: Role,
        edited_value: Option<f64>,
        comment: Option<&str>,
        now_ms: i64,
    ) -> Result<Approval, QueueError> {
        check_user(user)?;
        if let Some(c) = comment {
            check_comment(c)?;
        }
        need(role, Role::Operator, "approve a setpoint")?;
        let i = self.pending(id)?;
        let entry = &self.live[i];
        let p = &entry.proposal;
        if now_ms >= p.expires_ms {
            return Err(QueueError::Expired {
                id: id.to_string(),
                expires_ms: p.expires_ms,
            });
        }
        let Some(limits) = self.limits.get(&p.tag) else {
            return Err(QueueError::NotWritable { tag: p.tag.clone() });
        };
        let (as_proposed, _) = clamp(limits, p.proposed);
        let value = match edited_value {
            Some(v) if v != as_proposed => {
                need(role, Role::Engineer, "edit a proposed setpoint")?;
                if !limits.contains(v) {
                    return Err(QueueError::OutsideLimits {
                        tag: p.tag.clone(),
                        value: v,
                        min: limits.min,
                        max: limits.max,
                    });
                }
                v
            }
            _ => as_proposed,
        };
        if let Some(r) = self.running(&p.tag) {
            return Err(QueueError::TagBusy {
                tag: p.tag.clone(),
                running: r.proposal.id.clone(),
            });
        }
        let comment = comment
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let entry = &mut self.live[i];
        let mut events = Vec::new();
        if value != as_proposed {
            events.push(Event::Edited {
                id: id.to_string(),
                user: user.to_string(),
                from: as_proposed,
                to: value,
                at_ms: now_ms,
            });
        }
        events.push(Event::Approved {
            id: id.to_string(),
            tag: entry.proposal.tag.clone(),
            user: user.to_string(),
            role,
            value,
            comment: comment.clone(),
            at_ms: now_ms,
        });
        entry.to_write = as_proposed;
        entry.status = Status::Approved;
        entry.approved_value = Some(value);
        entry.decision = Some(Decision {
            by: user.to_string(),
            role,
            at_ms: now_ms,
            comment,
        });
        entry.updated_ms = now_ms;
        Ok(Approval {
            id: id.to_string(),
            tag: entry.proposal.tag.clone(),
            value,
            events,
        })
    }

    /// Reject a pending proposal (operator or above, with a comment).
    pub fn reject(
        &mut self,
        id: &str,
        user: &str,
        role: Role,
        comment: &str,
        now_ms: i64,
    ) -> Result<Vec<Event>, QueueError> {
        check_user(user)?;
        let comment = comment.trim();
        if comment.is_empty() {
            return Err(QueueError::CommentRequired);
        }
        check_comment(comment)?;
        need(role, Role::Operator, "reject a setpoint")?;
        let i = self.pending(id)?;
        let mut entry = self.live.remove(i);
        entry.decision = Some(Decision {
            by: user.to_string(),
            role,
            at_ms: now_ms,
            comment: Some(comment.to_string()),
        });
        self.retire(entry, Status::Rejected, now_ms);
        Ok(vec![Event::Rejected {
            id: id.to_string(),
            user: user.to_string(),
            role,
            comment: comment.to_string(),
            at_ms: now_ms,
        }])
    }

    /// Expire the pending proposals whose time has come.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Event> {
        let mut events = Vec::new();
        let mut i = 0;
        while i < self.live.len() {
            let e = &self.live[i];
            if e.status == Status::Pending && now_ms >= e.proposal.expires_ms {
                let e = self.live.remove(i);
                events.push(Event::Expired {
                    id: e.proposal.id.clone(),
                    expires_ms: e.proposal.expires_ms,
                    at_ms: now_ms,
                });
                self.retire(e, Status::Expired, now_ms);
            } else {
                i += 1;
            }
        }
        events
    }

    /// The caller started the approved proposal's move.
    pub fn started(&mut self, id: &str, now_ms: i64) -> Result<Vec<Event>, QueueError> {
        let i = self.live_index(id, "approved", |s| *s == Status::Approved)?;
        let e = &mut self.live[i];
        e.status = Status::Executing;
        e.updated_ms = now_ms;
        Ok(vec![Event::Started {
            id: id.to_string(),
            at_ms: now_ms,
        }])
    }

    /// The approved proposal's move ended with `outcome` (a move that could
    /// not start, e.g. nothing to do, ends [`Outcome::Aborted`]); the tag is
    /// free for the next approval.
    pub fn finish(
        &mut self,
        id: &str,
        outcome: Outcome,
        now_ms: i64,
    ) -> Result<Vec<Event>, QueueError> {
        let i = self.live_index(id, "approved or executing", Status::holds_tag)?;
        let e = self.live.remove(i);
        let event = Event::Finished {
            id: id.to_string(),
            outcome: outcome.clone(),
            at_ms: now_ms,
        };
        self.retire(e, Status::Ended { outcome }, now_ms);
        Ok(vec![event])
    }

    fn pending(&self, id: &str) -> Result<usize, QueueError> {
        self.live_index(id, "pending", |s| *s == Status::Pending)
    }

    fn live_index(
        &self,
        id: &str,
        expected: &'static str,
        ok: impl Fn(&Status) -> bool,
    ) -> Result<usize, QueueError> {
        match self.live.iter().position(|e| e.proposal.id == id) {
            Some(i) if ok(&self.live[i].status) => Ok(i),
            Some(i) => Err(QueueError::WrongState {
                id: id.to_string(),
                status: self.live[i].status.name(),
                expected,
            }),
            None => match self.history.iter().find(|e| e.proposal.id == id) {
                Some(e) => Err(QueueError::WrongState {
                    id: id.to_string(),
                    status: e.status.name(),
                    expected,
                }),
                None => Err(QueueError::NotFound { id: id.to_string() }),
            },
        }
    }

    fn retire(&mut self, mut e: Entry, status: Status, now_ms: i64) {
        e.status = status;
        e.updated_ms = now_ms;
        self.history.push_front(e);
        self.history.truncate(self.history_cap);
    }
}

#[cfg(test)]
mod tests;
