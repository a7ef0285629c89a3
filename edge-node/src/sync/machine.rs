//! The outbox's send/ack state machine (pure: the caller passes the time
//! and the outbox's unacknowledged sequence numbers; no I/O here).
//!
//! The SQLite outbox is the truth about what is unacknowledged; this
//! machine only remembers what was sent when, so that at most `window`
//! batches are in flight, each is resent `resend_after` after its last send
//! until the hub acknowledges it, and a reconnect resends everything in
//! flight at once (rumqttc drops its own pending publishes when the broker
//! has no session for us).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SendMachine {
    window: usize,
    resend_after: Duration,
    /// seq → last send time.
    inflight: BTreeMap<u64, Instant>,
    /// Every seq sent at least once that is still in the outbox, so a send
    /// after a reconnect counts as the resend it is.
    sent: BTreeSet<u64>,
    /// Acknowledged by the hub but not yet deleted from the outbox (the
    /// delete failed, e.g. on a full disk). Never sent again: the hub has
    /// them; the caller retries the delete.
    acked: BTreeSet<u64>,
    /// Which of the last `due` call's seqs were first sends (for `forget`).
    first_sends: BTreeSet<u64>,
    resends: u64,
}

impl SendMachine {
    pub fn new(window: usize, resend_after: Duration) -> SendMachine {
        SendMachine {
            window: window.max(1),
            resend_after,
            inflight: BTreeMap::new(),
            sent: BTreeSet::new(),
            acked: BTreeSet::new(),
            first_sends: BTreeSet::new(),
            resends: 0,
        }
    }

    /// The connection is (re)established: nothing sent before counts.
    pub fn on_connected(&mut self) {
        self.inflight.clear();
    }

    /// What to send now, given the outbox's oldest unacknowledged sequence
    /// numbers (ascending). Marks them sent at `now`.
    pub fn due(&mut self, now: Instant, unacked: &[u64]) -> Vec<u64> {
        // Forget entries the outbox no longer has (acknowledged and deleted,
        // or dropped when the outbox was full). Above the last listed seq
        // nothing is known, so those are kept.
        let keep = |s: &u64| match (unacked.first(), unacked.last()) {
            (Some(&first), Some(&last)) => {
                *s >= first && (*s > last || unacked.binary_search(s).is_ok())
            }
            _ => false,
        };
        self.inflight.retain(|s, _| keep(s));
        self.sent.retain(|s| keep(s));
        self.acked.retain(|s| keep(s));
        let mut out = Vec::new();
        self.first_sends.clear();
        for &seq in unacked {
            if self.acked.contains(&seq) {
                continue;
            }
            match self.inflight.get(&seq) {
                Some(&sent) if now.duration_since(sent) < self.resend_after => continue,
                Some(_) => {
                    self.resends += 1;
                    self.inflight.insert(seq, now);
                    out.push(seq);
                }
                None if self.inflight.len() < self.window => {
                    if self.sent.insert(seq) {
                        self.first_sends.insert(seq);
                    } else {
                        self.resends += 1;
                    }
                    self.inflight.insert(seq, now);
                    out.push(seq);
                }
                None => break,
            }
        }
        out
    }

    /// The hub committed these: they leave the flight window and are never
    /// sent again, whether or not the outbox manages to delete them.
    pub fn on_acked(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            self.inflight.remove(&s);
            self.sent.remove(&s);
            self.acked.insert(s);
        }
    }

    /// The outbox deleted these (acknowledged) batches.
    pub fn on_deleted(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            self.acked.remove(&s);
        }
    }

    /// Acknowledged batches the outbox still has to delete.
    pub fn undeleted(&self) -> Vec<u64> {
        self.acked.iter().copied().collect()
    }

    /// A send that did not happen after all (the client's queue was full).
    pub fn forget(&mut self, seq: u64) {
        self.inflight.remove(&seq);
        if self.first_sends.remove(&seq) {
            self.sent.remove(&seq);
        } else {
            self.resends = self.resends.saturating_sub(1);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// When `due` may next return something for what is in flight.
    pub fn next_resend(&self) -> Option<Instant> {
        self.inflight.values().min().map(|t| *t + self.resend_after)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sends_within_the_window_resends_after_the_timeout_and_on_reconnect() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = SendMachine::new(3, Duration::from_secs(10));
        let outbox: Vec<u64> = (1..=5).collect();
        assert_eq!(m.due(t0, &outbox), vec![1, 2, 3]);
        assert_eq!(m.due(t0 + s, &outbox), Vec::<u64>::new(), "window full");
        // 2 is acknowledged (the outbox deletes it): 4 may go.
        m.on_acked([2]);
        let outbox = vec![1, 3, 4, 5];
        assert_eq!(m.due(t0 + 2 * s, &outbox), vec![4]);
        // 10 s after their send, 1 and 3 go again; 4 is not due yet.
        assert_eq!(m.due(t0 + 10 * s, &outbox), vec![1, 3]);
        assert_eq!(m.resends(), 2);
        // A reconnect: everything in flight is resent at once.
        m.on_connected();
        assert_eq!(m.due(t0 + 11 * s, &outbox), vec![1, 3, 4]);
        // Acks that arrive for batches no longer in the outbox change nothing.
        m.on_acked([99]);
        assert_eq!(m.in_flight(), 3);
    }

    #[test]
    fn batches_that_left_the_outbox_leave_the_window() {
        let t0 = Instant::now();
        let mut m = SendMachine::new(2, Duration::from_secs(10));
        assert_eq!(m.due(t0, &[1, 2, 3]), vec![1, 2]);
        // 1 and 2 were dropped (outbox full, drop oldest): 3 and 4 go.
        assert_eq!(m.due(t0, &[3, 4]), vec![3, 4]);
        assert_eq!(m.due(t0, &[]), Vec::<u64>::new());
        assert_eq!(m.in_flight(), 0);
        assert!(m.next_resend().is_none());
    }

    /// Issue 14: with the disk full the delete of acknowledged batches
    /// failed, and they were sent again at once (hundreds of duplicates a
    /// second, none counted as resends).
    #[test]
    fn an_acknowledged_batch_the_outbox_cannot_delete_is_never_sent_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = SendMachine::new(4, Duration::from_secs(10));
        let outbox: Vec<u64> = (1..=6).collect();
        assert_eq!(m.due(t0, &outbox), vec![1, 2, 3, 4]);
        // The hub acknowledges 1..=3; the delete fails: still in the outbox.
        m.on_acked([1, 2, 3]);
        assert_eq!(m.undeleted(), vec![1, 2, 3]);
        // Not sent again, now or after resend_after; they do not hold the window.
        assert_eq!(m.due(t0 + s, &outbox), vec![5, 6]);
        for k in 2..40 {
            let due = m.due(t0 + k * s, &outbox);
            assert!(
                due.iter().all(|q| *q > 3),
                "acknowledged batch resent: {due:?}"
            );
        }
        // A reconnect does not bring them back either.
        m.on_connected();
        assert_eq!(m.due(t0 + 41 * s, &outbox), vec![4, 5, 6]);
        // The delete finally works: they leave the machine.
        m.on_deleted([1, 2, 3]);
        assert!(m.undeleted().is_empty());
    }

    #[test]
    fn every_second_send_of_a_batch_counts_as_a_resend() {
        let t0 = Instant::now();
        let mut m = SendMachine::new(2, Duration::from_secs(10));
        assert_eq!(m.due(t0, &[1, 2]), vec![1, 2]);
        assert_eq!(m.resends(), 0);
        // After a reconnect both go again: two resends.
        m.on_connected();
        assert_eq!(m.due(t0, &[1, 2]), vec![1, 2]);
        assert_eq!(m.resends(), 2);
        // A send the client could not queue is not a send at all.
        m.on_connected();
        assert_eq!(m.due(t0, &[1, 2, 3]), vec![1, 2]);
        m.forget(2);
        assert_eq!(m.resends(), 3);
        m.on_acked([1]);
        m.on_deleted([1]);
        assert_eq!(m.due(t0, &[2, 3]), vec![2, 3]);
        assert_eq!(m.resends(), 4, "2 was sent before, 3 was not");
    }
}
