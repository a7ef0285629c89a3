//! The fleet registry: who has been seen when, what each node says about
//! itself, and which of its batches are missing.
//!
//! Everything here reads values that came from the network: they were
//! range-checked at the door (`protocol::check`), and the queries are
//! written so that even an extreme value costs nothing (gaps come from
//! ranges, not from walking `1..max`; numbers are read as the column's own
//! type, never cast to a narrower one).

use duckdb::{Connection, OptionalExt, params};
use protocol::v1::Status;

use super::{Store, StoreError};

/// A node as the registry sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub site: String,
    pub node: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub software_version: Option<String>,
    pub outbox_batches: Option<u64>,
    pub oldest_unacked_ms: Option<i64>,
    pub dropped_batches: Option<u64>,
    /// Batches stored, the highest seq stored or quarantined, and the seqs
    /// below it that are missing (not yet received, or dropped at the edge).
    pub batches: u64,
    pub max_seq: u64,
    pub missing: u64,
    /// Batches kept in quarantine (signed, but not storable as they are).
    pub quarantined: u64,
}

/// Sequence numbers `first..=last` that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
}

/// What became of a status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    Recorded,
    /// Not newer (by the edge's own clock) than the last one recorded: a
    /// replay, or a node whose clock went back. Not recorded.
    Stale {
        last_ts_ms: i64,
    },
}

impl Store {
    /// Record a node's status report, if it is newer than the last one
    /// recorded (its `ts_ms` strictly greater): a captured status sent
    /// again cannot make a stopped node look alive. A node whose clock
    /// steps back has its reports refused until its clock passes the last
    /// one (documented in docs/hub.md).
    pub fn status(
        &mut self,
        site: &str,
        node: &str,
        s: &Status,
        now_ms: i64,
    ) -> Result<StatusOutcome, StoreError> {
        let last: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT status_ts_ms FROM nodes WHERE site = ? AND node = ?",
                params![site, node],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(Some(last_ts_ms)) = last
            && s.ts_ms <= last_ts_ms
        {
            return Ok(StatusOutcome::Stale { last_ts_ms });
        }
        touch(&self.conn, site, node, now_ms)?;
        self.conn.execute(
            "UPDATE nodes SET software_version = ?, outbox_batches = ?, outbox_bytes = ?,
             oldest_unacked_ms = ?, last_seq = ?, dropped_batches = ?, status_ts_ms = ?
             WHERE site = ? AND node = ?",
            params![
                s.software_version,
                s.outbox_batches,
                s.outbox_bytes,
                s.oldest_unacked_ms,
                s.last_seq,
                s.dropped_batches,
                s.ts_ms,
                site,
                node
            ],
        )?;
        Ok(StatusOutcome::Recorded)
    }

    /// The fleet registry.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "WITH b AS (SELECT site, node, count(*) AS n, max(seq) AS top FROM batches GROUP BY ALL),
                  q AS (SELECT site, node, count(*) AS n,
                               -- A quarantined number out of range is no
                               -- place in the sequence.
                               max(seq) FILTER (WHERE seq BETWEEN 1 AND 9007199254740992) AS top,
                               count(*) FILTER (WHERE seq BETWEEN 1 AND 9007199254740992) AS in_seq
                        FROM quarantine GROUP BY ALL)
             SELECT n.site, n.node, n.first_seen_ms, n.last_seen_ms, n.software_version,
                    n.outbox_batches, n.oldest_unacked_ms, n.dropped_batches,
                    coalesce(b.n, 0)::UBIGINT, coalesce(q.n, 0)::UBIGINT,
                    greatest(coalesce(b.top, 0), coalesce(q.top, 0))::UBIGINT,
                    coalesce(q.in_seq, 0)::UBIGINT
             FROM nodes n
             LEFT JOIN b ON b.site = n.site AND b.node = n.node
             LEFT JOIN q ON q.site = n.site AND q.node = n.node
             ORDER BY n.site, n.node",
        )?;
        let rows = st.query_map([], |r| {
            let batches: u64 = r.get(8)?;
            let quarantined: u64 = r.get(9)?;
            let max_seq: u64 = r.get(10)?;
            let in_sequence: u64 = r.get(11)?;
            Ok(NodeRecord {
                site: r.get(0)?,
                node: r.get(1)?,
                first_seen_ms: r.get(2)?,
                last_seen_ms: r.get(3)?,
                software_version: r.get(4)?,
                outbox_batches: r.get(5)?,
                oldest_unacked_ms: r.get(6)?,
                dropped_batches: r.get(7)?,
                batches,
                max_seq,
                missing: max_seq.saturating_sub(batches.saturating_add(in_sequence)),
                quarantined,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The missing sequence numbers of one node below its highest, as
    /// ranges, the lowest first (at most `limit` ranges). Computed from the
    /// stored sequence numbers' neighbours, so a huge sequence number costs
    /// one range, not a walk.
    pub fn gaps(&self, site: &str, node: &str, limit: usize) -> Result<Vec<Gap>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT prev + 1, seq - 1 FROM (
                 SELECT seq, lag(seq, 1, 0::UBIGINT) OVER (ORDER BY seq) AS prev FROM (
                     SELECT seq FROM batches WHERE site = ? AND node = ?
                     UNION SELECT seq FROM quarantine WHERE site = ? AND node = ?
                         AND seq BETWEEN 1 AND 9007199254740992))
             WHERE seq > prev + 1 ORDER BY seq LIMIT ?",
        )?;
        let rows = st.query_map(params![site, node, site, node, limit as i64], |r| {
            Ok(Gap {
                first: r.get(0)?,
                last: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The node has been seen now: insert it, or move its last-seen time on.
pub(super) fn touch(
    conn: &Connection,
    site: &str,
    node: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO nodes (site, node, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (site, node) DO UPDATE SET last_seen_ms = greatest(nodes.last_seen_ms, excluded.last_seen_ms)",
        params![site, node, now_ms, now_ms],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::tests::incoming;

    fn status(ts_ms: i64) -> Status {
        Status {
            ts_ms,
            software_version: "x".into(),
            started_ms: 0,
            outbox_batches: 0,
            outbox_bytes: 0,
            oldest_unacked_ms: None,
            last_seq: 0,
            dropped_batches: 0,
        }
    }

    #[test]
    fn a_replayed_status_does_not_move_last_seen() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.status("s", "a", &status(100), 1000).unwrap(),
            StatusOutcome::Recorded
        );
        assert_eq!(
            s.status("s", "a", &status(200), 2000).unwrap(),
            StatusOutcome::Recorded
        );
        // The first one again, later: refused, last seen unchanged.
        assert_eq!(
            s.status("s", "a", &status(100), 9000).unwrap(),
            StatusOutcome::Stale { last_ts_ms: 200 }
        );
        assert_eq!(s.nodes().unwrap()[0].last_seen_ms, 2000);
        // A replayed batch does not either.
        s.ingest(&[incoming("a", 1, 1)]).unwrap();
        let seen = s.nodes().unwrap()[0].last_seen_ms;
        let mut again = incoming("a", 1, 1);
        again.received_ms = seen + 50_000;
        s.ingest(&[again]).unwrap();
        assert_eq!(s.nodes().unwrap()[0].last_seen_ms, seen);
    }

    /// A sequence number of 10^12 (within the protocol's range) made
    /// `apos-hub nodes` walk a trillion numbers; gaps are ranges now.
    #[test]
    fn gaps_are_ranges_and_cost_nothing_for_huge_sequence_numbers() {
        let mut s = Store::open_in_memory().unwrap();
        s.ingest(&[
            incoming("a", 1, 1),
            incoming("a", 2, 1),
            incoming("a", 5, 1),
        ])
        .unwrap();
        s.ingest(&[incoming("a", 1_000_000_000_000, 1)]).unwrap();
        s.quarantine(&crate::store::Quarantined {
            site: "s".into(),
            node: "a".into(),
            seq: 7,
            received_ms: 1,
            reason: "test".into(),
            payload: vec![1, 2],
        })
        .unwrap();
        let started = std::time::Instant::now();
        let gaps = s.gaps("s", "a", 10).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            gaps,
            vec![
                Gap { first: 3, last: 4 },
                Gap { first: 6, last: 6 },
                Gap {
                    first: 8,
                    last: 999_999_999_999
                }
            ]
        );
        let n = &s.nodes().unwrap()[0];
        assert_eq!(
            (n.batches, n.quarantined, n.max_seq),
            (4, 1, 1_000_000_000_000)
        );
        assert_eq!(n.missing, 1_000_000_000_000 - 5);
        // The highest value a u64 column holds reads back as it is.
        s.ingest(&[incoming("b", u64::MAX, 1)]).unwrap();
        let b = s
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.node == "b")
            .unwrap();
        assert_eq!(b.max_seq, u64::MAX);
        assert_eq!(
            s.gaps("s", "b", 1).unwrap(),
            vec![Gap {
                first: 1,
                last: u64::MAX - 1
            }]
        );
    }
}
