//! Setpoint recommendations from the hub, approved on the edge and written
//! safely (pure cores; the task that drives them owns the I/O).
//!
//! ```text
//!  hub ──signed recommendation──▶ caller checks the signature
//!        ──offer──▶ queue::ApprovalQueue ◀──approve / reject── operator (HMI, role checked here)
//!                     │ Approval { tag, value }        ▲ started / finish(outcome)
//!                     ▼                                │
//!                   safety::Move ──Write / RollBack──▶ caller ──DriverHandle::write──▶ PLC
//!                     ▲ poll(now, Observation)            │
//!                     └── live table sample + interlocks ─┘
//! ```
//!
//! - [`queue`]: the approval queue. Proposals per writable tag (a newer one
//!   supersedes the pending one), approval by role (operators approve as
//!   proposed, engineers may edit within the edge's limits), rejection with
//!   a comment, expiry, one move at a time per tag, the execution state the
//!   HMI shows, and one audit [`queue::Event`] per transition.
//! - [`safety`]: one move of one tag: clamp into the edge's [`Limits`],
//!   ramp by `max_step` with a rate limit, verify each step by read-back,
//!   hold on closed interlocks or bad quality, roll back to the start value
//!   on a mismatch, a failed write, a missing read-back or an abort. Its
//!   module documentation lists the safety decisions.
//!
//! Neither reads a clock or touches a device: time is Unix milliseconds
//! passed in, samples and device answers are inputs, writes are returned as
//! actions. The queue is in memory; the audit log the caller writes from
//! the events is the durable record.

pub mod handle;
pub mod queue;
pub mod run;
pub mod safety;

pub use queue::{Approval, ApprovalQueue, Entry, Event, Proposal, QueueError, Status};
pub use safety::{
    Action, Check, Clamped, Interlock, Limits, Move, MoveError, Observation, Outcome, Phase,
};
