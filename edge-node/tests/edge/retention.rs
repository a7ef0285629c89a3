//! Retention over a simulated week (issue 14): a small `max_size`, raw
//! samples every 10 s, one-minute windows sealed into the outbox, a
//! 12-hour hub outage. Before, size retention deleted only raw samples:
//! the file grew past `max_size` on windows alone and each pass wiped
//! almost all raw history.

use std::path::Path;
use std::time::Duration;

use drivers::{Quality, Sample, TagName, Timestamp, Value};
use edge_node::history::{HistoryOptions, HistoryStore};
use edge_node::sync::outbox::{Outbox, OutboxPolicy};
use firmware_config::WhenFull;
use protocol::v1::{Window, WindowSet};
use rusqlite::Connection;

const TAGS: usize = 10;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Windows of the ten minutes starting at `start`, one set per minute.
fn windows(start: i64) -> Vec<WindowSet> {
    (0..10)
        .map(|m| WindowSet {
            width_ms: MIN as u32,
            start_ms: start + m * MIN,
            windows: (0..TAGS)
                .map(|t| Window {
                    tag: format!("t{t}"),
                    count: 6,
                    good: 6,
                    min: 1.0,
                    max: 2.0,
                    mean: 1.5,
                    twa: 1.5,
                    last: 2.0,
                })
                .collect(),
        })
        .collect()
}

/// One minute of raw samples: every 10 s, every tag.
fn samples(start: i64) -> Vec<Sample> {
    (0..6)
        .flat_map(|k| {
            (0..TAGS).map(move |t| Sample {
                tag: TagName::from(format!("t{t}").as_str()),
                ts: Timestamp(start + k * 10_000),
                value: Some(Value::F64((k * t as i64) as f64 + 0.25)),
                quality: Quality::Good,
            })
        })
        .collect()
}

/// Every window of every batch still in the outbox is in `aggregates`.
fn unacknowledged_windows_are_all_kept(c: &Connection) {
    let missing = count(
        c,
        "SELECT count(*) FROM outbox o
         WHERE (SELECT count(*) FROM aggregates a WHERE a.seq = o.seq) <> 100",
    );
    assert_eq!(
        missing, 0,
        "retention deleted windows the hub has not acknowledged"
    );
}

#[test]
fn a_week_with_a_small_max_size_keeps_the_file_bounded_and_the_newest_raw_span() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let mut o = HistoryOptions::new(&path);
    o.retention_bytes = 3 << 20;
    o.min_raw_span = Duration::from_secs(6 * 3600);
    o.aggregates_age = Duration::from_secs(2 * 86_400);
    o.retention_age = Duration::from_secs(30 * 86_400);
    let mut store = HistoryStore::open(&o).unwrap();
    let mut outbox = Outbox::open(&path).unwrap();
    let c = Connection::open(&path).unwrap();
    let policy = OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        max_batch_windows: 100,
    };
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00Z
    let outage = (t0 + 3 * DAY)..(t0 + 3 * DAY + 12 * HOUR);
    let mut totals = (0u64, 0u64, 0u64);
    let mut raw_deleted_by_size_at = None;
    let mut now = t0;
    while now < t0 + 7 * DAY {
        // Ten minutes of plant: raw samples, then the windows sealed.
        for m in 0..10 {
            store.insert(&samples(now + m * MIN)).unwrap();
        }
        let r = store
            .seal_windows(&windows(now), &policy, now + 10 * MIN)
            .unwrap();
        assert_eq!(
            r.dropped, 0,
            "the outbox bound is not what this test is about"
        );
        now += 10 * MIN;
        // The hub acknowledges everything except during its outage.
        if !outage.contains(&now) {
            let seqs = outbox.unacked(10_000).unwrap();
            outbox.delete(&seqs).unwrap();
        }
        if now % HOUR != 0 {
            continue;
        }
        let before = (
            count(&c, "SELECT count(*) FROM samples") + count(&c, "SELECT count(*) FROM inbox"),
            count(&c, "SELECT count(*) FROM aggregates"),
        );
        let r = store.enforce_retention(now).unwrap();
        let after = (
            count(&c, "SELECT count(*) FROM samples"),
            count(&c, "SELECT count(*) FROM aggregates"),
        );
        // The report says exactly what went.
        assert_eq!(
            r.deleted_by_age + r.deleted_by_size,
            (before.0 - after.0) as u64
        );
        assert_eq!(r.aggregates_deleted, (before.1 - after.1) as u64);
        totals.0 += r.deleted_by_size;
        totals.1 += r.aggregates_deleted;
        totals.2 += r.deleted_by_age;
        // Bounded: used pages and the file itself.
        assert!(!r.over_limit, "over the limit at {}h", (now - t0) / HOUR);
        assert!(
            r.size_bytes <= o.retention_bytes,
            "{} bytes used",
            r.size_bytes
        );
        let file = std::fs::metadata(&path).unwrap().len();
        assert!(file <= o.retention_bytes + (512 << 10), "file {file} bytes");
        // Raw samples of the last six hours are all there (or all since t0).
        let span_from = (now - 6 * HOUR).max(t0);
        let expected = (now - span_from) / 10_000 * TAGS as i64;
        let kept: i64 = c
            .query_row(
                "SELECT count(*) FROM samples WHERE ts_ms >= ?1",
                [span_from],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            kept, expected,
            "raw samples within min_raw_span were deleted"
        );
        unacknowledged_windows_are_all_kept(&c);
        // Acknowledged windows go before any raw sample does.
        if r.deleted_by_size > 0 {
            raw_deleted_by_size_at.get_or_insert(now);
            let first_unacked: Option<i64> = c
                .query_row("SELECT min(seq) FROM outbox", [], |r| r.get(0))
                .unwrap();
            let acked_left: i64 = c
                .query_row(
                    "SELECT count(*) FROM aggregates WHERE seq < ?1",
                    [first_unacked.unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                acked_left, 0,
                "raw samples deleted while acknowledged windows remained"
            );
        }
        // No acknowledged window older than aggregates_retention.
        let old_acked: i64 = c
            .query_row(
                "SELECT count(*) FROM aggregates WHERE start_ms < ?1
                 AND seq < coalesce((SELECT min(seq) FROM outbox), 1 << 62)",
                [now - 2 * DAY],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_acked, 0);
    }
    let (by_size, windows_deleted, by_age) = totals;
    assert!(windows_deleted > 0 && by_size > 0, "{totals:?}");
    assert_eq!(by_age, 0, "nothing is 30 days old");
    // Raw history left at the end: well beyond the guaranteed six hours
    // (windows went first), so size pressure did not wipe it.
    let oldest: i64 = c
        .query_row("SELECT min(ts_ms) FROM samples", [], |r| r.get(0))
        .unwrap();
    let span_h = (now - oldest) / HOUR;
    assert!(span_h >= 6, "{span_h} h of raw history left");
    eprintln!(
        "week: {by_size} raw samples and {windows_deleted} windows deleted (age and size); {span_h} h of raw history kept; raw deleted by size from {}h",
        raw_deleted_by_size_at.map_or(0, |t| (t - t0) / HOUR)
    );
    drop(c);
    store.close().unwrap();
    assert!(Path::new(&path).exists());
}
