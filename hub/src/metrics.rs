//! Process-wide counters: every refused login and message is counted here
//! (and logged where it happens, through [`LOG_THROTTLE`]); the hub logs
//! them periodically. Counters are exact; log lines are rate-limited, so
//! nobody can grow the log without bound by sending garbage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub static REFUSED_LOGINS: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_TOPIC: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_UNKNOWN_NODE: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_SIGNATURE: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_TOO_LARGE: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_MALFORMED: AtomicU64 = AtomicU64::new(0);
pub static BATCHES_NEW: AtomicU64 = AtomicU64::new(0);
pub static BATCHES_DUPLICATE: AtomicU64 = AtomicU64::new(0);
pub static WINDOWS_STORED: AtomicU64 = AtomicU64::new(0);
pub static FORECASTS_STORED: AtomicU64 = AtomicU64::new(0);
pub static KPIS_STORED: AtomicU64 = AtomicU64::new(0);
/// Spans of windows edges reported they never recorded.
pub static LOST_SPANS_STORED: AtomicU64 = AtomicU64::new(0);
/// Alarm journal entries stored.
pub static ALARM_EVENTS_STORED: AtomicU64 = AtomicU64::new(0);
pub static ACKS_SENT: AtomicU64 = AtomicU64::new(0);
pub static COMMIT_ERRORS: AtomicU64 = AtomicU64::new(0);
pub static REJECTED_INVALID: AtomicU64 = AtomicU64::new(0);
pub static BATCHES_QUARANTINED: AtomicU64 = AtomicU64::new(0);
pub static STATUS_STALE: AtomicU64 = AtomicU64::new(0);
pub static GATE_HANDSHAKE_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
pub static GATE_PROTOCOL_ERRORS: AtomicU64 = AtomicU64::new(0);
pub static GATE_CLIENT_ID_REFUSED: AtomicU64 = AtomicU64::new(0);
pub static GATE_ACL_REFUSED: AtomicU64 = AtomicU64::new(0);

/// Seconds one DuckDB ingest (`Store::ingest`, its transactions and
/// commits) took: from 1 ms (a batch or two) to 10 s (a backlog, a slow disk).
pub static COMMIT_SECONDS: web::metrics::Histogram = web::metrics::Histogram::new(&[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]);
/// Messages waiting for the store thread (of [`crate::ingest::STORE_QUEUE`]).
pub static STORE_QUEUE_DEPTH: AtomicU64 = AtomicU64::new(0);

/// A copy of every counter, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub refused_logins: u64,
    pub rejected_topic: u64,
    pub rejected_unknown_node: u64,
    pub rejected_signature: u64,
    pub rejected_too_large: u64,
    pub rejected_malformed: u64,
    pub batches_new: u64,
    pub batches_duplicate: u64,
    pub windows_stored: u64,
    pub forecasts_stored: u64,
    pub kpis_stored: u64,
    pub lost_spans_stored: u64,
    pub alarm_events_stored: u64,
    pub acks_sent: u64,
    pub commit_errors: u64,
    pub rejected_invalid: u64,
    pub batches_quarantined: u64,
    pub status_stale: u64,
    pub gate_handshake_timeouts: u64,
    pub gate_protocol_errors: u64,
    pub gate_client_id_refused: u64,
    pub gate_acl_refused: u64,
}

pub fn snapshot() -> Snapshot {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        refused_logins: l(&REFUSED_LOGINS),
        rejected_topic: l(&REJECTED_TOPIC),
        rejected_unknown_node: l(&REJECTED_UNKNOWN_NODE),
        rejected_signature: l(&REJECTED_SIGNATURE),
        rejected_too_large: l(&REJECTED_TOO_LARGE),
        rejected_malformed: l(&REJECTED_MALFORMED),
        batches_new: l(&BATCHES_NEW),
        batches_duplicate: l(&BATCHES_DUPLICATE),
        windows_stored: l(&WINDOWS_STORED),
        forecasts_stored: l(&FORECASTS_STORED),
        kpis_stored: l(&KPIS_STORED),
        lost_spans_stored: l(&LOST_SPANS_STORED),
        alarm_events_stored: l(&ALARM_EVENTS_STORED),
        acks_sent: l(&ACKS_SENT),
        commit_errors: l(&COMMIT_ERRORS),
        rejected_invalid: l(&REJECTED_INVALID),
        batches_quarantined: l(&BATCHES_QUARANTINED),
        status_stale: l(&STATUS_STALE),
        gate_handshake_timeouts: l(&GATE_HANDSHAKE_TIMEOUTS),
        gate_protocol_errors: l(&GATE_PROTOCOL_ERRORS),
        gate_client_id_refused: l(&GATE_CLIENT_ID_REFUSED),
        gate_acl_refused: l(&GATE_ACL_REFUSED),
    }
}

/// Warnings about refused input, at most one per [`Throttle::EVERY`] per
/// reason and source (a peer address, a node): the first is logged at once,
/// later ones only say how many were not logged meanwhile.
pub static LOG_THROTTLE: Throttle = Throttle::new();

/// (reason, source) → when last logged, and how many since.
type Seen = HashMap<(&'static str, String), (Instant, u64)>;

#[derive(Debug)]
pub struct Throttle {
    seen: Mutex<Option<Seen>>,
}

impl Throttle {
    pub const EVERY: Duration = Duration::from_secs(60);
    /// Sources remembered at most; beyond, the memory starts over (a flood
    /// from many addresses still logs at most this many lines a minute).
    const MAX_SOURCES: usize = 4096;

    pub const fn new() -> Throttle {
        Throttle {
            seen: Mutex::new(None),
        }
    }

    /// Call `log(suppressed)` if this (reason, source) may log now.
    pub fn allow(&self, reason: &'static str, source: &str, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let suppressed = {
            let Ok(mut guard) = self.seen.lock() else {
                return;
            };
            let map = guard.get_or_insert_with(HashMap::new);
            if map.len() >= Self::MAX_SOURCES && !map.contains_key(&(reason, source.to_owned())) {
                map.clear();
            }
            match map.get_mut(&(reason, source.to_owned())) {
                Some((last, n)) if now.duration_since(*last) < Self::EVERY => {
                    *n += 1;
                    return;
                }
                Some((last, n)) => {
                    *last = now;
                    std::mem::take(n)
                }
                None => {
                    map.insert((reason, source.to_owned()), (now, 0));
                    0
                }
            }
        };
        log(suppressed);
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
