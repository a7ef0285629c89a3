//! The outbox's send/ack state machine (pure: the caller passes the time
//! and the outbox's unacknowledged sequence numbers; no I/O here).
//!
//! The SQLite outbox is the truth about what is unacknowledged; this
//! machine only remembers what was sent when, so that at most `window`
//! batches are in flight, each is resent `resend_after` after its last send
//! until the hub acknowledges it, and a reconnect resends everything in
//! flight at once (rumqttc drops its own pending publishes when the broker
//! has no session for us).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct SendMachine {
    window: usize,
    resend_after: Duration,
    /// seq → last send time.
    inflight: BTreeMap<u64, Instant>,
    resends: u64,
}

impl SendMachine {
    pub fn new(window: usize, resend_after: Duration) -> SendMachine {
        SendMachine {
            window: window.max(1),
            resend_after,
            inflight: BTreeMap::new(),
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
        // Forget in-flight entries the outbox no longer has (acknowledged,
        // or dropped when the outbox was full).
        if let (Some(&first), Some(&last)) = (unacked.first(), unacked.last()) {
            self.inflight
                .retain(|s, _| *s >= first && (*s > last || unacked.binary_search(s).is_ok()));
        } else {
            self.inflight.clear();
        }
        let mut out = Vec::new();
        for &seq in unacked {
            match self.inflight.get(&seq) {
                Some(&sent) if now.duration_since(sent) < self.resend_after => continue,
                Some(_) => {
                    self.resends += 1;
                    self.inflight.insert(seq, now);
                    out.push(seq);
                }
                None if self.inflight.len() < self.window => {
                    self.inflight.insert(seq, now);
                    out.push(seq);
                }
                None => break,
            }
        }
        out
    }

    /// The hub committed these: they leave the flight window.
    pub fn on_acked(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            self.inflight.remove(&s);
        }
    }

    /// A send that did not happen after all (the client's queue was full).
    pub fn forget(&mut self, seq: u64) {
        self.inflight.remove(&seq);
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
}
