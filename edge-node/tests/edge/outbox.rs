//! The outbox: windows sealed with their aggregates in one transaction,
//! read back in order, deleted only when acknowledged, bounded in size.

use edge_node::history::{HistoryOptions, HistoryStore};
use edge_node::sync::outbox::{Outbox, OutboxPolicy};
use firmware_config::WhenFull;
use protocol::v1::{Body, Window, WindowSet};

fn sets(start: i64, tags: usize) -> Vec<WindowSet> {
    vec![WindowSet {
        width_ms: 10_000,
        start_ms: start,
        windows: (0..tags)
            .map(|i| Window {
                tag: format!("tag{i:03}"),
                count: 10,
                good: 9,
                min: 0.0,
                max: i as f64,
                mean: 1.0,
                twa: 1.5,
                last: 2.0,
            })
            .collect(),
    }]
}

fn policy(max_bytes: u64, when_full: WhenFull) -> OutboxPolicy {
    OutboxPolicy {
        max_bytes,
        when_full,
        max_batch_windows: 40,
    }
}

#[test]
fn sealed_batches_are_numbered_split_stored_and_deleted_only_when_acked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    // 100 windows, at most 40 per batch: batches 1, 2, 3.
    let r = store
        .seal_windows(&sets(0, 100), &policy(1 << 20, WhenFull::DropOldest), 5)
        .unwrap();
    assert_eq!(r.sealed, vec![1, 2, 3]);
    assert_eq!(r.dropped, 0);
    let mut outbox = Outbox::open(&path).unwrap();
    assert_eq!(outbox.unacked(10).unwrap(), vec![1, 2, 3]);
    let mut tags = Vec::new();
    for seq in 1..=3 {
        let b = outbox.load(seq).unwrap().unwrap();
        assert_eq!(b.seq, seq);
        let Body::Aggregates(s) = b.body else {
            panic!("only aggregates are sealed here")
        };
        tags.extend(s.into_iter().flat_map(|s| s.windows).map(|w| w.tag));
    }
    assert_eq!(tags.len(), 100);
    assert_eq!(tags[0], "tag000");
    assert_eq!(tags[99], "tag099");
    // Numbering continues after a reopen.
    drop(store);
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    let r = store
        .seal_windows(&sets(10_000, 10), &policy(1 << 20, WhenFull::DropOldest), 6)
        .unwrap();
    assert_eq!(r.sealed, vec![4]);
    // An acknowledgement deletes exactly what it names.
    assert_eq!(outbox.delete(&[2, 4, 99]).unwrap(), 2);
    assert_eq!(outbox.unacked(10).unwrap(), vec![1, 3]);
    let st = outbox.state().unwrap();
    assert_eq!((st.batches, st.last_seq, st.dropped), (2, 4, 0));
    assert_eq!(st.oldest_created_ms, Some(5));
    // The aggregates are stored, batch number included.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM aggregates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 110);
}

#[test]
fn a_full_outbox_drops_the_oldest_or_rejects_the_newest_and_counts_it() {
    for when_full in [WhenFull::DropOldest, WhenFull::RejectNew] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
        let one = store
            .seal_windows(&sets(0, 40), &policy(1 << 20, when_full), 1)
            .unwrap();
        assert_eq!(one.sealed, vec![1]);
        let outbox = Outbox::open(&path).unwrap();
        let size = outbox.state().unwrap().bytes;
        // Room for two batches of this size.
        let bound = policy(size * 2 + size / 2, when_full);
        let mut dropped = 0;
        let mut dropped_seqs = Vec::new();
        for k in 1..5 {
            let r = store
                .seal_windows(&sets(k * 10_000, 40), &bound, 1)
                .unwrap();
            dropped += r.dropped;
            dropped_seqs.extend(r.dropped_seqs);
        }
        let st = outbox.state().unwrap();
        assert_eq!(st.batches, 2, "{when_full:?}");
        assert!(st.bytes <= bound.max_bytes);
        assert_eq!(dropped, 3, "{when_full:?}");
        assert_eq!(st.dropped, 3);
        let kept = outbox.unacked(10).unwrap();
        match when_full {
            WhenFull::DropOldest => assert_eq!(kept, vec![4, 5]),
            WhenFull::RejectNew => assert_eq!(kept, vec![1, 2]),
        }
        // Issue 14: a refused batch took no sequence number, so the hub saw
        // no gap for it. Now every lost batch has one, and the next batch
        // that fits comes after them.
        match when_full {
            WhenFull::DropOldest => assert_eq!(dropped_seqs, vec![1, 2, 3]),
            WhenFull::RejectNew => assert_eq!(dropped_seqs, vec![3, 4, 5]),
        }
        assert_eq!(st.last_seq, 5, "{when_full:?}");
        assert_eq!(st.lost(), 3);
        // Either way every window is kept in the local aggregates.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM aggregates", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
    }
}

/// Issue 14: under drop_oldest a batch published and stored by the hub was
/// dropped before its ack arrived, and counted as lost although the hub had
/// it (52 counted, 51 missing). An ack naming a dropped batch now takes it
/// off the losses; under reject_new the refused batch's seq stays a hole.
#[test]
fn a_dropped_batch_the_hub_acknowledges_after_all_is_not_counted_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    store
        .seal_windows(&sets(0, 40), &policy(1 << 20, WhenFull::DropOldest), 1)
        .unwrap();
    let mut outbox = Outbox::open(&path).unwrap();
    let size = outbox.state().unwrap().bytes;
    let bound = policy(size * 2 + size / 2, WhenFull::DropOldest);
    for k in 1..5 {
        store
            .seal_windows(&sets(k * 10_000, 40), &bound, 1)
            .unwrap();
    }
    // 1, 2, 3 were dropped; 1 and 2 had reached the hub, whose ack arrives now
    // together with 4's.
    assert_eq!(outbox.unacked(10).unwrap(), vec![4, 5]);
    let still_queued = outbox.delete(&[1, 2, 4]).unwrap();
    assert_eq!(still_queued, 1);
    let st = outbox.state().unwrap();
    assert_eq!((st.dropped, st.dropped_delivered, st.lost()), (3, 2, 1));
    // An ack repeated (the hub acks duplicates too) is not counted twice.
    outbox.delete(&[1, 2]).unwrap();
    assert_eq!(outbox.state().unwrap().lost(), 1);
}

/// Issue 14: windows the edge held in memory when it was killed (the disk
/// was full) were lost and the hub saw no gap. Now the first seal after a
/// start reports every width's unsealed stretch as a `Body::Lost` batch,
/// saying whether the edge had stopped cleanly.
#[test]
fn windows_never_sealed_before_a_restart_are_reported_to_the_hub() {
    use protocol::v1::LostSpan;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let p = policy(1 << 20, WhenFull::DropOldest);
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    let first = store.seal_windows(&sets(0, 3), &p, 1).unwrap();
    assert!(first.lost.is_empty(), "a new database lost nothing");
    store.seal_windows(&sets(10_000, 3), &p, 2).unwrap();
    store.close().unwrap();

    // A clean stop; the edge comes back 50 s later.
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    let r = store.seal_windows(&sets(70_000, 3), &p, 3).unwrap();
    assert_eq!(
        r.lost,
        vec![LostSpan {
            width_ms: 10_000,
            from_ms: 20_000,
            to_ms: 70_000,
            reason: "the edge was stopped".into()
        }]
    );
    // Reported once per start, and contiguous windows lose nothing.
    let r = store.seal_windows(&sets(80_000, 3), &p, 4).unwrap();
    assert!(r.lost.is_empty());
    // Killed (no clean close): the reason says so.
    drop(store);
    let mut store = HistoryStore::open(&HistoryOptions::new(&path)).unwrap();
    let r = store.seal_windows(&sets(150_000, 3), &p, 5).unwrap();
    assert_eq!(r.lost.len(), 1);
    assert_eq!((r.lost[0].from_ms, r.lost[0].to_ms), (90_000, 150_000));
    assert!(
        r.lost[0].reason.contains("without a clean shutdown"),
        "{}",
        r.lost[0].reason
    );
    // The report is a batch of its own in the outbox, ahead of the windows.
    let outbox = Outbox::open(&path).unwrap();
    let seqs = outbox.unacked(100).unwrap();
    let bodies: Vec<Body> = seqs
        .iter()
        .map(|s| outbox.load(*s).unwrap().unwrap().body)
        .collect();
    let lost: Vec<&Body> = bodies
        .iter()
        .filter(|b| matches!(b, Body::Lost(_)))
        .collect();
    assert_eq!(lost.len(), 2);
    assert!(matches!(bodies[bodies.len() - 2], Body::Lost(_)));
}

/// Issue 14: `ALARM outbox full` was one ERROR line per dropped batch
/// (about one a second through an overflow). Now at most one a minute,
/// with the count since the last line, while the counters stay exact.
#[test]
fn an_overflowing_outbox_alarms_at_most_once_a_minute_with_exact_counts() {
    use edge_node::history::{HistoryWriter, OutboxInput};
    crate::logs::init();
    let before = crate::logs::lines("ALARM outbox full").len();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let (_samples_tx, samples_rx) = tokio::sync::mpsc::channel(4);
    let (windows_tx, windows_rx) = tokio::sync::mpsc::channel(4);
    let writer = HistoryWriter::spawn_with_outbox(
        HistoryOptions::new(&path),
        samples_rx,
        Some(OutboxInput {
            windows: windows_rx,
            policy: policy(64 << 10, WhenFull::RejectNew),
            sealed: None,
        }),
    )
    .unwrap();
    let stats = writer.stats();
    for k in 0..300 {
        windows_tx.blocking_send(sets(k * 10_000, 40)).unwrap();
    }
    drop(windows_tx);
    drop(_samples_tx);
    writer.join().unwrap();
    let st = Outbox::open(&path).unwrap().state().unwrap();
    assert!(st.dropped > 200, "{st:?}");
    assert_eq!(stats.snapshot().outbox_dropped, st.dropped);
    assert_eq!(st.last_seq, 300, "every batch has a seq, sealed or refused");
    assert_eq!(st.batches + st.dropped, 300);
    let alarms = crate::logs::lines("ALARM outbox full");
    assert_eq!(alarms.len() - before, 1, "{alarms:#?}");
}
