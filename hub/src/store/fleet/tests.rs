#![allow(clippy::unwrap_used)]

use protocol::v1::{AlarmEvent, Batch, Body, Status, Window, WindowSet};

use super::*;
use crate::store::{Incoming, Quarantined, Store};

fn item(node: &str, seq: u64, received_ms: i64, body: Body) -> Incoming {
    Incoming {
        site: "s".into(),
        node: node.into(),
        raw: bytes::Bytes::new(),
        received_ms,
        batch: Batch {
            seq,
            created_ms: received_ms,
            body,
        },
    }
}

/// One window per tag: (tag, count, good).
fn windows(width_ms: u32, start_ms: i64, tags: &[(&str, u32, u32)]) -> Body {
    Body::Aggregates(vec![WindowSet {
        width_ms,
        start_ms,
        windows: tags
            .iter()
            .map(|&(tag, count, good)| Window {
                tag: tag.into(),
                count,
                good,
                min: 1.0,
                max: 2.0,
                mean: 1.5,
                twa: 1.5,
                last: 2.0,
            })
            .collect(),
    }])
}

fn event(alarm: &str, aseq: u64, ts_ms: i64, state: &str, priority: u8) -> AlarmEvent {
    AlarmEvent {
        alarm: alarm.into(),
        seq: aseq,
        ts_ms,
        change: "x".into(),
        state: state.into(),
        priority,
        value: Some(f64::NAN),
        by: None,
        comment: None,
    }
}

fn health(ts_ms: i64, avg: f64, in_flood: bool) -> protocol::v1::AlarmHealth {
    protocol::v1::AlarmHealth {
        ts_ms,
        avg_per_10min: avg,
        peak_per_10min: 7,
        flood_share: 0.1,
        top10_share: 0.5,
        in_flood,
        chattering: vec!["c1".into(), "c2".into()],
        stale: vec![],
    }
}

const T0: i64 = 1_800_000_000_000;
const W: u32 = 10_000;

#[test]
fn status_thresholds() {
    assert_eq!(NodeStatus::of(None, T0), NodeStatus::Never);
    assert_eq!(NodeStatus::of(Some(T0 - 120_000), T0), NodeStatus::Online);
    assert_eq!(NodeStatus::of(Some(T0 - 120_001), T0), NodeStatus::Late);
    assert_eq!(NodeStatus::of(Some(T0 - 600_000), T0), NodeStatus::Late);
    assert_eq!(NodeStatus::of(Some(T0 - 600_001), T0), NodeStatus::Offline);
    // A clock a little behind the node's: online, age 0.
    assert_eq!(NodeStatus::of(Some(T0 + 5), T0), NodeStatus::Online);
}

#[test]
fn fleet_rows_count_alarms_by_priority_and_show_silent_nodes() {
    let mut s = Store::open_in_memory().unwrap();
    s.ingest(&[
        item(
            "a",
            1,
            T0 - 60_000,
            windows(W, T0, &[("t", 1, 1), ("u", 1, 1)]),
        ),
        item("a", 3, T0 - 60_000, windows(W, T0 + 10_000, &[("t", 1, 1)])),
        item(
            "a",
            4,
            T0 - 60_000,
            Body::Alarms(vec![
                event("hi_p4", 1, T0, "unacknowledged", 4),
                event("hi_p4", 2, T0 + 1, "acknowledged", 4),
                event("cleared_p2", 1, T0, "unacknowledged", 2),
                event("cleared_p2", 2, T0 + 1, "normal", 2),
                event("shelved_p1", 1, T0, "shelved", 1),
                event("ret_p3", 1, T0, "unacknowledged", 3),
                event("ret_p3", 2, T0 + 5, "returned_unacknowledged", 3),
                event("other_p3", 1, T0, "unacknowledged", 3),
            ]),
        ),
        item(
            "a",
            5,
            T0 - 60_000,
            Body::AlarmHealth(vec![
                health(T0 + 600_000, 2.0, true),
                health(T0, 1.0, false),
            ]),
        ),
        item(
            "a",
            6,
            T0 - 60_000,
            Body::Lost(vec![protocol::v1::LostSpan {
                width_ms: W,
                from_ms: T0 - 100_000,
                to_ms: T0,
                reason: "stopped".into(),
            }]),
        ),
        item("late", 1, T0 - 300_000, windows(W, T0, &[("t", 1, 1)])),
        item("gone", 1, T0 - 3_600_000, windows(W, T0, &[("t", 1, 1)])),
    ])
    .unwrap();
    s.status(
        "s",
        "a",
        &Status {
            ts_ms: T0,
            software_version: "1.2.3".into(),
            started_ms: 0,
            outbox_batches: 4,
            outbox_bytes: 4096,
            oldest_unacked_ms: Some(T0 - 90_000),
            last_seq: 9,
            dropped_batches: 0,
        },
        T0 - 30_000,
    )
    .unwrap();
    s.quarantine(&Quarantined {
        site: "s".into(),
        node: "a".into(),
        seq: 7,
        received_ms: T0 - 40_000,
        reason: "width".into(),
        payload: vec![1],
    })
    .unwrap();
    let cfg = vec![
        ("s".to_string(), "a".to_string()),
        ("s".to_string(), "silent".to_string()),
    ];
    let rows = s.fleet(&cfg, T0).unwrap();
    let names: Vec<(&str, NodeStatus, bool)> = rows
        .iter()
        .map(|r| (r.node.as_str(), r.status, r.configured))
        .collect();
    assert_eq!(
        names,
        vec![
            ("a", NodeStatus::Online, true),
            ("gone", NodeStatus::Offline, false),
            ("late", NodeStatus::Late, false),
            ("silent", NodeStatus::Never, true),
        ]
    );
    let a = &rows[0];
    assert_eq!(
        a.alarms_active,
        ByPriority {
            p1: 0,
            p2: 0,
            p3: 2,
            p4: 1
        }
    );
    assert_eq!(a.alarms_hidden, 1);
    assert_eq!(
        a.in_flood,
        Some(true),
        "the newest report, not the last sent"
    );
    assert_eq!((a.batches, a.max_seq, a.missing), (5, 7, 1));
    assert_eq!((a.windows, a.lost_spans, a.quarantined), (3, 1, 1));
    assert_eq!((a.last_seen_ms, a.age_s), (Some(T0 - 30_000), Some(30)));
    assert_eq!((a.outbox_batches, a.outbox_bytes), (Some(4), Some(4096)));
    assert_eq!(a.oldest_unacked_age_s, Some(90));
    assert_eq!(a.software_version.as_deref(), Some("1.2.3"));
    let silent = &rows[3];
    assert_eq!(
        (silent.last_seen_ms, silent.batches, silent.in_flood),
        (None, 0, None)
    );
    // Nothing from "late" about alarms: zeros, no flood report.
    assert_eq!(rows[2].alarms_active, ByPriority::default());
    assert_eq!(rows[2].in_flood, None);

    let d = s.fleet_node(&cfg, "s", "a", T0).unwrap().unwrap();
    assert_eq!(d.row, rows[0]);
    assert_eq!(d.gaps, vec![SeqRange { first: 2, last: 2 }]);
    assert_eq!(d.lost.len(), 1);
    assert_eq!(d.quarantine[0].seq, 7);
    let d = s.fleet_node(&cfg, "s", "silent", T0).unwrap().unwrap();
    assert_eq!(d.row.status, NodeStatus::Never);
    assert!(d.gaps.is_empty());
    assert!(s.fleet_node(&cfg, "s", "nobody", T0).unwrap().is_none());
    assert!(s.fleet_node(&cfg, "x", "a", T0).unwrap().is_none());
}

#[test]
fn alarm_pages_walk_every_entry_once_newest_first() {
    let mut s = Store::open_in_memory().unwrap();
    // Ties on ts_ms across nodes and alarms; the same alarm on two nodes.
    s.ingest(&[
        item(
            "a",
            1,
            T0,
            Body::Alarms(vec![
                event("x", 1, T0, "unacknowledged", 2),
                event("y", 1, T0, "unacknowledged", 3),
                event("x", 2, T0 + 10, "acknowledged", 2),
                event("y", 2, T0 + 20, "normal", 3),
            ]),
        ),
        item(
            "b",
            1,
            T0,
            Body::Alarms(vec![
                event("x", 1, T0, "unacknowledged", 2),
                event("x", 2, T0 + 10, "normal", 2),
                event(&"long".repeat(60), 1, T0 + 10, "shelved", 1),
            ]),
        ),
    ])
    .unwrap();
    let walk = |active: bool, from_ms: Option<i64>| {
        let mut q = AlarmQuery {
            active,
            from_ms,
            limit: 2,
            ..AlarmQuery::default()
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (items, next) = s.alarm_page(&q).unwrap();
            assert!(items.len() <= 2);
            pages += 1;
            seen.extend(items);
            match next {
                Some(k) => {
                    // The key survives the text form the cursor carries.
                    q.after = Some(AlarmKey::parse(k.ts_ms, &k.tiebreak()).unwrap());
                }
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        seen
    };
    let all = walk(false, None);
    assert_eq!(all.len(), 7);
    let mut keys: Vec<(String, String, u64)> = all
        .iter()
        .map(|e| (e.node.clone(), e.alarm.clone(), e.aseq))
        .collect();
    assert!(
        all.windows(2).all(|p| p[0].ts_ms >= p[1].ts_ms),
        "newest first"
    );
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 7, "every entry exactly once");
    assert!(
        all.iter().all(|e| e.value.is_none()),
        "NaN is no JSON number"
    );

    let active = walk(true, None);
    let mut names: Vec<(String, String, String)> = active
        .iter()
        .map(|e| {
            (
                e.node.clone(),
                e.alarm.chars().take(4).collect(),
                e.state.clone(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("a".into(), "x".into(), "acknowledged".into()),
            ("b".into(), "long".into(), "shelved".into()),
        ]
    );
    // A time filter applies to the entries, after the newest one per alarm
    // is chosen: "y" on a is normal now, whatever the range.
    let recent = walk(false, Some(T0 + 10));
    assert_eq!(recent.len(), 4);
    let active_recent = walk(true, Some(T0 + 10));
    assert_eq!(active_recent.len(), 2);
    let q = AlarmQuery {
        node: Some("b".into()),
        limit: 100,
        ..AlarmQuery::default()
    };
    assert_eq!(s.alarm_page(&q).unwrap().0.len(), 3);
}

#[test]
fn alarm_health_has_the_newest_report_and_a_week_of_history() {
    let mut s = Store::open_in_memory().unwrap();
    let day = 86_400_000;
    s.ingest(&[item(
        "a",
        1,
        T0,
        Body::AlarmHealth(vec![
            health(T0 - 8 * day, 9.0, false),
            health(T0 - day, 1.0, false),
            health(T0, 3.0, true),
        ]),
    )])
    .unwrap();
    let h = s.alarm_health(None, None, T0 + 1).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].ts_ms, h[0].avg_per_10min, h[0].in_flood),
        (T0, 3.0, true)
    );
    assert_eq!(h[0].chattering, vec!["c1", "c2"]);
    assert!(h[0].stale.is_empty());
    let pts: Vec<f64> = h[0].history.iter().map(|p| p.avg_per_10min).collect();
    assert_eq!(pts, vec![1.0, 3.0]);
    assert!(s.alarm_health(Some("s"), Some("b"), T0).unwrap().is_empty());
}

#[test]
fn quality_counts_holes_and_bad_samples() {
    let mut s = Store::open_in_memory().unwrap();
    let from = T0;
    let to = T0 + 100_000; // ten 10 s windows due
    let mut items = Vec::new();
    let mut seq = 0;
    let mut push = |node: &str, width: u32, start: i64, tags: &[(&str, u32, u32)]| {
        seq += 1;
        items.push(item(node, seq, T0, windows(width, start, tags)));
    };
    for k in 0..10 {
        let start = from + k * 10_000;
        // "t": a hole of three windows (k = 3, 4, 5) and one of one (k = 8).
        if ![3, 4, 5, 8].contains(&k) {
            push("a", W, start, &[("t", 4, if k == 0 { 1 } else { 4 })]);
        }
        // "late_start": the first two missing.
        if k >= 2 {
            push("a", W, start, &[("late_start", 2, 2)]);
        }
        // "fine": both 1 s and 10 s windows; the 1 s ones are judged.
        push("a", W, start, &[("fine", 10, 10)]);
    }
    for k in 0..100 {
        if k != 50 {
            push("a", 1000, from + k * 1000, &[("fine", 1, 0)]);
        }
    }
    // "silent": only in the period before.
    push("a", W, from - 50_000, &[("silent", 1, 1)]);
    // A window sent twice (two batches) counts once.
    push("b", W, from, &[("t", 5, 5)]);
    push("b", W, from, &[("t", 5, 5)]);
    // Outside the period.
    push("b", W, to, &[("t", 5, 0)]);
    // "c" came online during the period (k = 4): nothing was due before
    // its first window, but its tag "late" starting after "t" (k = 6) has
    // missed two.
    for k in 4..10 {
        push("c", W, from + k * 10_000, &[("t", 1, 1)]);
        if k >= 6 {
            push("c", W, from + k * 10_000, &[("late", 1, 1)]);
        }
    }
    s.ingest(&items).unwrap();

    let q = s.quality(None, None, from, to, to + 120_000).unwrap();
    assert_eq!(q.until_ms, to);
    assert_eq!(q.nodes.len(), 3);
    let c = &q.nodes[2];
    assert_eq!(c.node, "c");
    assert_eq!(
        (
            c.tags[0].tag.as_str(),
            c.tags[0].expected,
            c.tags[0].present
        ),
        ("late", 6, 4)
    );
    assert_eq!((c.tags[0].gaps, c.tags[0].longest_gap_ms), (1, 20_000));
    assert_eq!(
        (
            c.tags[1].tag.as_str(),
            c.tags[1].expected,
            c.tags[1].present
        ),
        ("t", 6, 6)
    );
    assert_eq!((c.totals.coverage, c.totals.gaps), (Some(10.0 / 12.0), 1));
    let a = &q.nodes[0];
    let tag = |name: &str| a.tags.iter().find(|t| t.tag == name).unwrap().clone();
    let t = tag("t");
    assert_eq!((t.width_ms, t.expected, t.present), (W, 10, 6));
    assert_eq!(t.coverage, Some(0.6));
    assert_eq!((t.gaps, t.longest_gap_ms), (2, 30_000));
    // 6 windows of 4 samples; 3 bad in the first.
    let bad = t.bad_share.unwrap();
    assert!((bad - 3.0 / 24.0).abs() < 1e-12, "{bad}");
    let l = tag("late_start");
    assert_eq!((l.present, l.gaps, l.longest_gap_ms), (8, 1, 20_000));
    assert_eq!(l.bad_share, Some(0.0));
    let f = tag("fine");
    assert_eq!((f.width_ms, f.expected, f.present), (1000, 100, 99));
    assert_eq!(
        (f.gaps, f.longest_gap_ms, f.bad_share),
        (1, 1000, Some(1.0))
    );
    let z = tag("silent");
    assert_eq!((z.expected, z.present, z.coverage), (10, 0, Some(0.0)));
    assert_eq!((z.gaps, z.longest_gap_ms, z.bad_share), (1, 100_000, None));
    assert_eq!(a.totals.tags, 4);
    assert_eq!(a.totals.expected, 130);
    assert_eq!(a.totals.present, 6 + 8 + 99);
    assert_eq!(a.totals.gaps, 5);
    assert_eq!(a.totals.longest_gap_ms, 100_000);
    // good / count over every tag: t 21/24, late_start 16/16, fine 0/99.
    let tb = a.totals.bad_share.unwrap();
    assert!((tb - (1.0 - 37.0 / 139.0)).abs() < 1e-12, "{tb}");
    let b = &q.nodes[1].tags[0];
    assert_eq!((b.present, b.gaps, b.longest_gap_ms), (1, 1, 90_000));
    assert_eq!(b.bad_share, Some(0.0));

    // Judged earlier: windows ending within the last 2 minutes are not due.
    let q = s
        .quality(Some("s"), Some("a"), from, to, from + 70_000 + 120_000)
        .unwrap();
    assert_eq!(q.until_ms, from + 70_000);
    assert_eq!(q.nodes.len(), 1);
    let t = q.nodes[0].tags.iter().find(|t| t.tag == "t").unwrap();
    assert_eq!((t.expected, t.present, t.gaps), (7, 4, 1));
    // Nothing due at all: coverage undefined.
    let q = s.quality(Some("s"), Some("a"), from, to, from).unwrap();
    let t = q.nodes[0].tags.iter().find(|t| t.tag == "t").unwrap();
    assert_eq!(
        (t.expected, t.coverage, t.gaps, t.longest_gap_ms),
        (0, None, 0, 0)
    );
}

/// Timing on a large table (run with `--ignored --nocapture`): 20 nodes ×
/// 200 tags × 10 s windows, `APOS_FLEET_DAYS` days (1: 34.5 M windows);
/// the fleet overview and quality reports (docs/hub-api.md has figures).
#[test]
#[ignore]
fn timing_on_millions_of_windows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("f.duckdb")).unwrap();
    let started = std::time::Instant::now();
    let days: i64 = std::env::var("APOS_FLEET_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    let per_node = days * 8640;
    for n in 0..20 {
        s.conn
            .execute(
                "INSERT INTO aggregates (site, node, tag, width_ms, start_ms, count, good, min, max, mean, twa, last, seq)
                 SELECT 's', 'n' || ?, 'tag' || (i % 200), 10000, ? + (i // 200) * 10000,
                        10, CASE WHEN i % 97 = 0 THEN 5 ELSE 10 END, 1, 2, 1.5, 1.5, 2, 1 + i // 200
                 FROM range(?) t(i)
                 WHERE (i // 200) % 1000 <> 7",
                params![n, T0, per_node * 200],
            )
            .unwrap();
        s.ingest(&[item(&format!("n{n}"), 1, T0, windows(W, T0, &[]))])
            .unwrap();
    }
    let rows: i64 = s
        .conn
        .query_row("SELECT count(*) FROM aggregates", [], |r| r.get(0))
        .unwrap();
    eprintln!("{rows} windows written in {:?}", started.elapsed());
    let now = T0 + days * 86_400_000;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let f = s.fleet(&[], now).unwrap();
        eprintln!("fleet: {} nodes in {:?}", f.len(), t.elapsed());
        let t = std::time::Instant::now();
        let q = s
            .quality(None, None, now - 86_400_000, now, now + 200_000)
            .unwrap();
        let tags: usize = q.nodes.iter().map(|n| n.tags.len()).sum();
        eprintln!("quality 24 h: {tags} tags in {:?}", t.elapsed());
        assert_eq!(tags, 4000);
        // One window in every 1000 left out: 9 holes a day per tag.
        let t0 = &q.nodes[0].totals;
        assert!(
            days != 1 || (t0.gaps, t0.expected) == (200 * 9, 200 * 8640),
            "{t0:?}"
        );
        let t = std::time::Instant::now();
        let q = s
            .quality(Some("s"), Some("n3"), now - 3_600_000, now, now + 200_000)
            .unwrap();
        eprintln!(
            "quality 1 h, one node: {:?} {:?}",
            q.nodes[0].totals,
            t.elapsed()
        );
    }
}

/// The bitmap arithmetic against a plain walk over the windows: random
/// holes (single windows, runs across 64-window block borders, whole
/// blocks), random period bounds, several tags and widths.
#[test]
fn quality_matches_a_plain_walk_on_random_holes() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for round in 0..6 {
        let mut s = Store::open_in_memory().unwrap();
        let mut items = Vec::new();
        let mut truth: Vec<(String, u32, Vec<bool>)> = Vec::new();
        for t in 0..4 {
            let width: u32 = [1000, 5000, 10_000][rand(3) as usize];
            let n = 300 + rand(300) as usize;
            let hole_rate = [0, 3, 30, 80][rand(4) as usize];
            let mut present = vec![false; n];
            let mut k = 0;
            while k < n {
                if rand(100) < hole_rate {
                    // A run of holes of 1 to 150 windows.
                    k += 1 + rand(150) as usize;
                } else {
                    present[k] = true;
                    k += 1;
                }
            }
            let tag = format!("t{t}");
            for (k, p) in present.iter().enumerate() {
                if *p {
                    let start = T0 + k as i64 * i64::from(width);
                    items.push(item(
                        "a",
                        items.len() as u64 + 1,
                        T0,
                        windows(width, start, &[(&tag, 2, 1)]),
                    ));
                }
            }
            truth.push((tag, width, present));
        }
        s.ingest(&items).unwrap();
        let from = T0 + rand(40_000) as i64;
        let to = T0 + 300_000 + rand(3_000_000) as i64;
        let q = s.quality(None, None, from, to, to + 120_000).unwrap();
        let rows = &q.nodes[0].tags;
        // Nothing is due before the node's first window.
        let node_first = truth
            .iter()
            .filter_map(|(_, w, p)| {
                let k = p.iter().position(|p| *p)?;
                Some(T0 + k as i64 * i64::from(*w))
            })
            .min()
            .unwrap_or(i64::MAX);
        for (tag, width, present) in &truth {
            let w = i64::from(*width);
            let got = rows.iter().find(|r| &r.tag == tag);
            // Windows due: start >= from, end <= to.
            let due: Vec<bool> = (0..)
                .map(|k| T0 + k * w)
                .take_while(|start| start + w <= to)
                .enumerate()
                .filter(|(_, start)| *start >= from && *start >= node_first / w * w)
                .map(|(k, _)| present.get(k).copied().unwrap_or(false))
                .collect();
            let Some(got) = got else {
                // Only a tag with no window in the period and the one
                // before may be missing.
                assert!(!due.iter().any(|p| *p), "{tag} missing in round {round}");
                continue;
            };
            let mut gaps = 0;
            let mut longest = 0;
            let mut run = 0;
            for p in due.iter().chain(std::iter::once(&true)) {
                if *p {
                    if run > 0 {
                        gaps += 1;
                        longest = longest.max(run);
                    }
                    run = 0;
                } else {
                    run += 1;
                }
            }
            let ctx = format!("round {round}, {tag} width {w}, from {from}, to {to}");
            assert_eq!(got.width_ms, *width, "{ctx}");
            assert_eq!(got.expected as usize, due.len(), "{ctx}");
            assert_eq!(
                got.present as usize,
                due.iter().filter(|p| **p).count(),
                "{ctx}"
            );
            assert_eq!(got.gaps, gaps, "{ctx}");
            assert_eq!(got.longest_gap_ms, longest * w, "{ctx}");
        }
    }
}
