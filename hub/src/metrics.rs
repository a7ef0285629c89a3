//! Process-wide counters: every refused login and message is counted here
//! (and logged where it happens); the hub logs them periodically.

use std::sync::atomic::{AtomicU64, Ordering};

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
pub static ACKS_SENT: AtomicU64 = AtomicU64::new(0);
pub static COMMIT_ERRORS: AtomicU64 = AtomicU64::new(0);

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
    pub acks_sent: u64,
    pub commit_errors: u64,
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
        acks_sent: l(&ACKS_SENT),
        commit_errors: l(&COMMIT_ERRORS),
    }
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
