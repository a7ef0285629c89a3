#![allow(clippy::unwrap_used)]

use protocol::v1::{Batch, Body, KpiQuality, KpiResult, Window, WindowSet};

use super::super::{Incoming, Store};
use super::kpi::KpiKey;
use super::rollup::DEFAULT_REFRESH_WINDOWS;
use super::*;

const H: i64 = 3_600_000;

/// A store and the next batch number of node s/a.
struct Fx {
    s: Store,
    seq: u64,
}

fn win(tag: &str, min: f64, max: f64, mean: f64, good: u32) -> Window {
    Window {
        tag: tag.into(),
        count: 10,
        good,
        min,
        max,
        mean,
        twa: mean,
        last: mean,
    }
}

impl Fx {
    fn new() -> Fx {
        Fx {
            s: Store::open_in_memory().unwrap(),
            seq: 0,
        }
    }

    fn body(&mut self, body: Body) {
        self.seq += 1;
        self.s
            .ingest(&[Incoming {
                site: "s".into(),
                node: "a".into(),
                raw: bytes::Bytes::new(),
                received_ms: 1,
                batch: Batch {
                    seq: self.seq,
                    created_ms: 1,
                    body,
                },
            }])
            .unwrap();
    }

    fn put(&mut self, width_ms: u32, start_ms: i64, windows: Vec<Window>) {
        self.body(Body::Aggregates(vec![WindowSet {
            width_ms,
            start_ms,
            windows,
        }]));
    }

    /// `n` windows of `width` from `t0`, value = f(i), one batch each.
    fn run(&mut self, tag: &str, width: u32, t0: i64, n: i64, f: impl Fn(i64) -> f64) {
        for i in 0..n {
            let v = f(i);
            self.put(
                width,
                t0 + i * i64::from(width),
                vec![win(tag, v - 1.0, v + 1.0, v, 10)],
            );
        }
    }
}

fn key(tag: &str) -> SeriesKey {
    SeriesKey::new("s", "a", tag)
}

#[test]
fn the_plan_takes_the_coarsest_width_that_fits_then_a_rollup() {
    let w = [10_000, 60_000, 300_000];
    let p = |b| plan(&w, b).unwrap();
    // Every width wider than the bucket: the finest, and the bucket grows.
    assert_eq!(
        p(60),
        Plan {
            width_ms: 10_000,
            rollup_ms: None,
            bucket_ms: 10_000
        }
    );
    assert_eq!(p(45_000).width_ms, 10_000);
    assert_eq!(p(45_000).bucket_ms, 50_000);
    assert_eq!(p(60_000).width_ms, 60_000);
    assert_eq!(p(299_999).width_ms, 60_000);
    assert_eq!(p(300_000).bucket_ms, 300_000);
    // A one-year chart of 1000 px: 8.76 h buckets read the hourly rollup
    // of the 5 min windows, in whole hours.
    let year = plan(&w, ceil_div(365 * 24 * H, 1000)).unwrap();
    assert_eq!(
        year,
        Plan {
            width_ms: 300_000,
            rollup_ms: Some(H),
            bucket_ms: 9 * H
        }
    );
    assert_eq!(p(30 * H).rollup_ms, Some(24 * H));
    assert_eq!(p(30 * H).bucket_ms, 48 * H);
    // A rollup never replaces windows as wide as itself.
    assert_eq!(plan(&[H as u32], 2 * H).unwrap().rollup_ms, None);
    assert_eq!(plan(&[], 1000), None);
    assert_eq!(grid(65_000, 125_000, 60_000), (60_000, 180_000));
    assert_eq!(grid(60_000, 120_000, 60_000), (60_000, 120_000));
    assert_eq!(grid(-5, 5, 10), (-10, 10));
}

#[test]
fn a_spike_inside_a_bucket_stays_in_its_max_and_buckets_hold_whole_windows() {
    let mut f = Fx::new();
    // 10 s windows for 10 min, value 5; one spike to 1000 at 3 min 20 s,
    // one dip to -7 at 7 min.
    f.run("t", 10_000, 0, 60, |i| match i {
        20 => 500.0,
        42 => -3.0,
        _ => 5.0,
    });
    // Windows of that width set max = v + 1, min = v - 1: set the spike's
    // max apart from its mean.
    f.put(10_000, 200_000, vec![win("t", 4.0, 1000.0, 5.0, 10)]);
    let s = f.s.series(&key("t"), 0, 600_000, 60_000).unwrap();
    assert_eq!(s.source_width_ms, Some(10_000));
    assert_eq!(s.rollup_ms, None);
    assert_eq!(s.t, (0..10).map(|i| i * 60_000).collect::<Vec<_>>());
    assert_eq!(s.max[3], Some(1000.0), "the spike survives in its bucket");
    assert!(
        s.max
            .iter()
            .enumerate()
            .all(|(i, m)| i == 3 || *m == Some(6.0) || i == 7)
    );
    assert_eq!(s.min[7], Some(-4.0));
    assert_eq!(s.min[2], Some(4.0));
    // Bucket 3 holds 7 windows (window 20 twice, as stored): means
    // 5,5,5,5,5,500,5 → (30 + 500 + 5) / 7.
    assert!((s.mean[3].unwrap() - (5.0 * 6.0 + 500.0) / 7.0).abs() < 1e-9);
    assert_eq!(s.good_share[0], Some(1.0));
    // A range inside buckets answers whole buckets: [65 s, 125 s) → the
    // buckets at 60 s and 120 s, each with all 6 of its windows.
    let s = f.s.series(&key("t"), 65_000, 125_000, 60_000).unwrap();
    assert_eq!(s.t, vec![60_000, 120_000]);
    assert_eq!(s.mean, vec![Some(5.0), Some(5.0)]);
    // A window starting on a bucket edge belongs to the bucket it starts.
    f.put(10_000, 600_000, vec![win("t", 77.0, 77.0, 77.0, 10)]);
    let s = f.s.series(&key("t"), 540_000, 660_000, 60_000).unwrap();
    assert_eq!(s.t, vec![540_000, 600_000]);
    assert_eq!(s.max, vec![Some(6.0), Some(77.0)]);
    // Empty range: no buckets; unknown tag: no width either.
    let s = f.s.series(&key("t"), 10 * H, 11 * H, 60_000).unwrap();
    assert!(s.t.is_empty() && s.mean.is_empty());
    assert_eq!(s.source_width_ms, Some(10_000));
    let s = f.s.series(&key("nope"), 0, H, 60_000).unwrap();
    assert_eq!((s.source_width_ms, s.t.len()), (None, 0));
}

#[test]
fn buckets_read_the_coarsest_width_not_wider_than_themselves() {
    let mut f = Fx::new();
    // The same hour at two widths, told apart by their values.
    f.run("t", 10_000, 0, 360, |_| 1.0);
    f.run("t", 60_000, 0, 60, |_| 100.0);
    let s = f.s.series(&key("t"), 0, H, 30_000).unwrap();
    assert_eq!((s.source_width_ms, s.bucket_ms), (Some(10_000), 30_000));
    assert_eq!(s.t.len(), 120);
    assert!(s.mean.iter().all(|m| *m == Some(1.0)));
    let s = f.s.series(&key("t"), 0, H, 60_000).unwrap();
    assert_eq!((s.source_width_ms, s.t.len()), (Some(60_000), 60));
    assert!(s.mean.iter().all(|m| *m == Some(100.0)));
    // Finer than every width: the finest, one bucket per window.
    let s = f.s.series(&key("t"), 0, 60_000, 60).unwrap();
    assert_eq!(
        (s.source_width_ms, s.bucket_ms, s.t.len()),
        (Some(10_000), 10_000, 6)
    );
    let tags = f.s.tags(Some("s"), Some("a")).unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].widths_ms, vec![10_000, 60_000]);
    assert_eq!(
        (tags[0].first_ms, tags[0].last_ms, tags[0].windows),
        (0, H, 420)
    );
    assert!(f.s.tags(Some("other"), None).unwrap().is_empty());
}

#[test]
fn windows_without_good_samples_give_nulls_not_nan() {
    let mut f = Fx::new();
    f.run("t", 10_000, 0, 6, |_| 2.0);
    // A bucket whose only window had no good sample: NaN statistics, as
    // edges send them (stored as NULL).
    f.put(
        10_000,
        60_000,
        vec![win("t", f64::NAN, f64::NAN, f64::NAN, 0)],
    );
    let s = f.s.series(&key("t"), 0, 120_000, 60_000).unwrap();
    assert_eq!(s.t, vec![0, 60_000]);
    assert_eq!(s.min[1], None);
    assert_eq!(s.max[1], None);
    assert_eq!(s.mean[1], None);
    assert_eq!(s.good_share[1], Some(0.0));
    let j = serde_json::to_string(&s).unwrap();
    assert!(j.contains("\"mean\":[2.0,null]"), "{j}");
    assert!(!j.contains("NaN"));
    let st = f.s.tag_stats(&key("t"), 0, 120_000).unwrap();
    assert_eq!((st.windows, st.count), (7, 70));
    assert_eq!((st.min, st.max, st.mean), (Some(1.0), Some(3.0), Some(2.0)));
    assert_eq!(st.good_share, Some(60.0 / 70.0));
    assert_eq!((st.first_ms, st.last_ms), (Some(0), Some(70_000)));
}

#[test]
fn statistics_known_answer() {
    let mut f = Fx::new();
    // Means 0..=100 over 101 windows.
    f.run("t", 60_000, 0, 101, |i| i as f64);
    let st = f.s.tag_stats(&key("t"), 0, 101 * 60_000).unwrap();
    assert_eq!(st.source_width_ms, Some(60_000));
    assert_eq!((st.min, st.max), (Some(-1.0), Some(101.0)));
    assert_eq!(st.mean, Some(50.0));
    assert_eq!(
        (st.p05, st.p50, st.p95),
        (Some(5.0), Some(50.0), Some(95.0))
    );
    let sd = (0..=100).map(|i| (i as f64 - 50.0).powi(2)).sum::<f64>() / 101.0;
    assert!((st.stddev.unwrap() - sd.sqrt()).abs() < 1e-9);
    let none = f.s.tag_stats(&key("t"), 10 * H, 11 * H).unwrap();
    assert_eq!((none.windows, none.mean, none.first_ms), (0, None, None));
}

/// Buckets computed in Rust from the windows put in, for comparison.
fn truth(windows: &[(i64, f64, f64, f64)], lo: i64, hi: i64, b: i64) -> Vec<(i64, f64, f64, f64)> {
    let mut m: std::collections::BTreeMap<i64, (f64, f64, f64, f64)> = Default::default();
    for &(t, mn, mx, v) in windows.iter().filter(|w| w.0 >= lo && w.0 < hi) {
        let e = m
            .entry((t - lo) / b * b + lo)
            .or_insert((f64::MAX, f64::MIN, 0.0, 0.0));
        e.0 = e.0.min(mn);
        e.1 = e.1.max(mx);
        e.2 += v;
        e.3 += 1.0;
    }
    m.into_iter()
        .map(|(t, e)| (t, e.0, e.1, e.2 / e.3))
        .collect()
}

/// Equal but for the rounding of sums taken in another order.
fn same(a: &Series, b: &Series, what: &str) {
    assert_eq!(
        (&a.t, &a.min, &a.max, &a.good_share),
        (&b.t, &b.min, &b.max, &b.good_share),
        "{what}"
    );
    assert_eq!(
        (a.bucket_ms, a.rollup_ms, a.source_width_ms),
        (b.bucket_ms, b.rollup_ms, b.source_width_ms)
    );
    for (x, y) in a.mean.iter().zip(&b.mean) {
        assert!(
            (x.unwrap() - y.unwrap()).abs() < 1e-9,
            "{what}: {x:?} {y:?}"
        );
    }
}

fn check(s: &Series, want: &[(i64, f64, f64, f64)]) {
    assert_eq!(s.t, want.iter().map(|w| w.0).collect::<Vec<_>>());
    for (i, w) in want.iter().enumerate() {
        assert_eq!((s.min[i], s.max[i]), (Some(w.1), Some(w.2)), "bucket {i}");
        assert!((s.mean[i].unwrap() - w.3).abs() < 1e-9, "bucket {i}");
    }
}

#[test]
fn the_rollup_folds_incrementally_and_answers_like_the_windows() {
    let mut f = Fx::new();
    // Three days of 5 min windows, a wave with a spike, in batches of 12.
    let mut all = Vec::new();
    let t0 = 1_800_000_000_000 - 1_800_000_000_000 % (24 * H);
    for b in 0..(3 * 24) {
        let windows: Vec<(i64, f64, f64, f64)> = (0..12)
            .map(|i| {
                let t = t0 + (b * 12 + i) * 300_000;
                let v = ((t - t0) as f64 / 7e6).sin() * 10.0;
                let mx = if b == 40 && i == 3 { 999.0 } else { v + 1.0 };
                (t, v - 1.0, mx, v)
            })
            .collect();
        f.body(Body::Aggregates(
            windows
                .iter()
                .map(|&(t, mn, mx, v)| WindowSet {
                    width_ms: 300_000,
                    start_ms: t,
                    windows: vec![win("w", mn, mx, v, 10)],
                })
                .collect(),
        ));
        all.extend(windows);
    }
    let (from, to) = (t0 + 5 * H + 123, t0 + 60 * H);
    let before = f.s.series(&key("w"), from, to, 2 * H).unwrap();
    assert_eq!(before.rollup_ms, Some(H));
    let (lo, hi) = grid(from, to, 2 * H);
    check(&before, &truth(&all, lo, hi, 2 * H));
    // Folded in small steps: every step merges into buckets already there.
    let mut steps = 0;
    loop {
        let r = f.s.refresh_rollups(97).unwrap();
        steps += 1;
        let mid = f.s.series(&key("w"), from, to, 2 * H).unwrap();
        same(&mid, &before, &format!("after {steps} steps ({r:?})"));
        if r.remaining == 0 {
            break;
        }
    }
    assert_eq!(steps, (all.len() as u64).div_ceil(97));
    assert_eq!(f.s.refresh_rollups(97).unwrap().windows, 0);
    let rows: i64 =
        f.s.conn
            .query_row(
                "SELECT count(*) FROM series_rollup WHERE level_ms = 3600000",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(rows, 72);
    // A late window in an old bucket, before and after it is folded in.
    f.put(300_000, t0 + 10 * H, vec![win("w", -50.0, 50.0, 0.0, 10)]);
    all.push((t0 + 10 * H, -50.0, 50.0, 0.0));
    let want = truth(&all, lo, hi, 2 * H);
    check(&f.s.series(&key("w"), from, to, 2 * H).unwrap(), &want);
    f.s.refresh_rollups(DEFAULT_REFRESH_WINDOWS).unwrap();
    check(&f.s.series(&key("w"), from, to, 2 * H).unwrap(), &want);
    // Daily buckets, and the catalog the tag list reads.
    let d = f.s.series(&key("w"), t0, t0 + 3 * 24 * H, 24 * H).unwrap();
    assert_eq!(d.rollup_ms, Some(24 * H));
    check(&d, &truth(&all, t0, t0 + 72 * H, 24 * H));
    let tags = f.s.tags(None, None).unwrap();
    assert_eq!(tags[0].windows, all.len() as u64);
    assert_eq!((tags[0].first_ms, tags[0].last_ms), (t0, t0 + 72 * H));
    f.s.rebuild_rollups().unwrap();
    assert_eq!(f.s.tags(None, None).unwrap(), tags);
    check(&f.s.series(&key("w"), from, to, 2 * H).unwrap(), &want);
}

fn kpi(window: &str, start_ms: i64, computed_ms: i64, value: Option<f64>) -> KpiResult {
    KpiResult {
        kpi: "line.oee".into(),
        window: window.into(),
        label: format!("w{start_ms}"),
        start_ms,
        end_ms: start_ms + H,
        until_ms: computed_ms,
        closed: computed_ms >= start_ms + H,
        computed_ms,
        coverage: 0.5,
        quality: KpiQuality::Good,
        values: vec![("oee".into(), value), ("availability".into(), Some(0.9))],
        unit: None,
    }
}

#[test]
fn kpi_summary_is_the_newest_window_and_history_pages_walk_every_window_once() {
    let mut f = Fx::new();
    // 250 hourly windows; each sent twice (open, then final), out of order.
    for i in (0..250).rev() {
        let s = i * H;
        f.body(Body::Kpis(vec![
            kpi("1h", s, s + H, Some(i as f64)),
            kpi("1h", s, s + H / 2, Some(-1.0)),
        ]));
    }
    f.body(Body::Kpis(vec![kpi("shift", 0, 10, None)]));
    let sum = f.s.kpi_summary(None, None).unwrap();
    assert_eq!(sum.len(), 2);
    assert_eq!((sum[0].window.as_str(), sum[0].value), ("1h", Some(249.0)));
    assert!(sum[0].closed);
    assert_eq!(sum[0].figures["availability"], 0.9);
    assert_eq!((sum[1].window.as_str(), sum[1].value), ("shift", None));
    assert_eq!(f.s.kpi_summary(Some("s"), Some("b")).unwrap().len(), 0);
    assert_eq!(f.s.kpi_summary(Some("s"), Some("a")).unwrap(), sum);
    let k = KpiKey {
        site: "s".into(),
        node: "a".into(),
        kpi: "line.oee".into(),
        window: "1h".into(),
    };
    let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = f.s.kpi_history(&k, 10 * H, 240 * H, after, 7).unwrap();
        pages += 1;
        let Some(last) = page.last() else { break };
        after = Some(last.start_ms);
        seen.extend(page.iter().map(|p| (p.start_ms, p.value)));
    }
    let want: Vec<(i64, Option<f64>)> = (10..240).map(|i| (i * H, Some(i as f64))).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 230usize.div_ceil(7) + 1);
}

/// A rough benchmark: one year of one node with 28 tags at 10 s, 1 min and
/// 5 min (~106 M windows, in ingest order), the one-year 1000 px chart of
/// one tag: the naive GROUP BY against [`Store::series`] before and after
/// the rollup. `cargo test --profile dev --workspace --lib series_100m --
/// --ignored --nocapture`; takes minutes and ~3 GB of disk.
#[test]
#[ignore]
fn series_100m() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("b.duckdb")).unwrap();
    let tags = 28i64;
    let t0 = 1_800_000_000_000 - 1_800_000_000_000 % (24 * H);
    let days: i64 = std::env::var("APOS_SERIES_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(365);
    let started = Instant::now();
    for d in 0..days {
        let day = t0 + d * 24 * H;
        s.conn
            .execute(
                "INSERT INTO aggregates (site, node, tag, width_ms, start_ms, count, good, min, max, mean, twa, last, seq)
                 SELECT 'site1', 'node1', 'tag' || lpad((i % ?1)::VARCHAR, 2, '0'), w, ?2 + (i // ?1) * w,
                        10, 10, v - 1, v + 1, v, v, v, ?3
                 FROM (SELECT w, i, sin(i / 1000.0) * 10 AS v
                       FROM (VALUES (10000), (60000), (300000)) ws(w), range(0, ?1 * 8640) r(i)
                       WHERE i < ?1 * 86400000 // w)
                 ORDER BY ?2 + (i // ?1) * w, w",
                params![tags, day, d as u64],
            )
            .unwrap();
    }
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM aggregates", [], |r| r.get(0))
        .unwrap();
    eprintln!("{n} windows generated in {:?}", started.elapsed());
    let k = SeriesKey::new("site1", "node1", "tag07");
    let (from, to) = (t0, t0 + days * 24 * H);
    let bucket = ceil_div(to - from, 1000);
    let time = |name: &str, f: &mut dyn FnMut() -> usize| {
        let mut ms: Vec<f64> = (0..9)
            .map(|_| {
                let t = Instant::now();
                let rows = f();
                assert!(rows > 0);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "{name}: p50 {:.1} ms, max {:.1} ms (9 runs)",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    };
    time("naive GROUP BY", &mut || {
        s.series_naive(&k, from, to, 1000).unwrap().len()
    });
    time("series, no rollup yet", &mut || {
        s.series(&k, from, to, bucket).unwrap().t.len()
    });
    let r = Instant::now();
    let mut calls = 0;
    while s
        .refresh_rollups(DEFAULT_REFRESH_WINDOWS)
        .unwrap()
        .remaining
        > 0
    {
        calls += 1;
    }
    eprintln!("rollup built in {:?} ({} calls)", r.elapsed(), calls + 1);
    time("series with rollup", &mut || {
        s.series(&k, from, to, bucket).unwrap().t.len()
    });
    time("tags", &mut || s.tags(None, None).unwrap().len());
    time("windows above the watermark (rowid filter)", &mut || {
        let n: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM aggregates WHERE rowid > ?",
                [n - 2],
                |r| r.get(0),
            )
            .unwrap();
        n as usize
    });
    time("stats one year", &mut || {
        s.tag_stats(&k, from, to).unwrap().windows as usize
    });
    time("series one day", &mut || {
        s.series(&k, to - 24 * H, to, 24 * H / 1000)
            .unwrap()
            .t
            .len()
    });
    // Fresh windows above the watermark: one more day.
    let t = Instant::now();
    let r = s.refresh_rollups(DEFAULT_REFRESH_WINDOWS).unwrap();
    eprintln!("refresh with nothing new: {:?} ({r:?})", t.elapsed());
}

/// Rough cost of the KPI summary: 20 nodes × 4 KPIs × a week of 5 min
/// rolling values (~160,000 rows). `cargo test --profile dev --workspace
/// --lib kpi_summary_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn kpi_summary_cost() {
    use std::time::Instant;
    let s = Store::open_in_memory().unwrap();
    s.conn
        .execute_batch(
            "INSERT INTO kpis
             SELECT 's', 'n' || (i % 20), 'k' || ((i // 20) % 4), '5m', '', t, t + 300000, t + 300000,
                    true, t + 300000, 1.0, 'good', 0.5, '{\"v\":0.5}', NULL, 1
             FROM (SELECT i, 1800000000000 + (i // 80) * 300000 AS t FROM range(0, 161280) r(i))",
        )
        .unwrap();
    for (what, site, node) in [("one node", Some("s"), Some("n7")), ("fleet", None, None)] {
        let n = 200;
        let t = Instant::now();
        for _ in 0..n {
            assert!(!s.kpi_summary(site, node).unwrap().is_empty());
        }
        eprintln!(
            "kpi summary, {what}: {:.2} ms per call",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    }
}
