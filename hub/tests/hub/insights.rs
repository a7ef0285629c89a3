//! Insights on scenario data whose right answer is known: crafted KPI
//! windows, forecast scores and tag windows written into a store, then
//! `hub::insight::generate` over a week (week over week). Each kind is
//! checked for its kind, its numbers and its place in the ranking, and a
//! quiet fleet must produce nothing.

use hub::insight::{self, Insight, Kind, Params};
use hub::store::{Incoming, Store};
use protocol::v1::{
    Batch, Body, Forecast, ForecastQuality, KpiQuality, KpiResult, Window, WindowSet,
};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
const WEEK: i64 = 7 * DAY;
/// Monday 2027-01-04 00:00 UTC: the current week starts here.
const T0: i64 = 1_799_020_800_000;

struct Seq(u64);

impl Seq {
    fn batch(&mut self, site: &str, node: &str, body: Body) -> Incoming {
        self.0 += 1;
        Incoming {
            site: site.into(),
            node: node.into(),
            raw: bytes::Bytes::new(),
            received_ms: T0,
            batch: Batch {
                seq: self.0,
                created_ms: T0,
                body,
            },
        }
    }
}

fn week() -> Params {
    Params {
        site: None,
        node: None,
        from_ms: T0,
        to_ms: T0 + WEEK,
        now_ms: T0 + WEEK + DAY,
    }
}

fn window(tag: &str, v: f64, good: u32) -> Window {
    Window {
        tag: tag.into(),
        count: 10,
        good,
        min: v,
        max: v,
        mean: v,
        twa: v,
        last: v,
    }
}

/// 10-minute windows of `tags` over both weeks; `f(tag, start) → (value, good)`
/// or `None` for a missing window.
fn windows(
    seq: &mut Seq,
    site: &str,
    node: &str,
    tags: &[&str],
    f: impl Fn(&str, i64) -> Option<(f64, u32)>,
) -> Vec<Incoming> {
    let w = 600_000i64;
    let mut out = Vec::new();
    let mut sets = Vec::new();
    let mut t = T0 - WEEK;
    while t < T0 + WEEK {
        let ws: Vec<Window> = tags
            .iter()
            .filter_map(|tag| f(tag, t).map(|(v, g)| window(tag, v, g)))
            .collect();
        if !ws.is_empty() {
            sets.push(WindowSet {
                width_ms: w as u32,
                start_ms: t,
                windows: ws,
            });
        }
        if sets.len() == 144 {
            out.push(seq.batch(site, node, Body::Aggregates(std::mem::take(&mut sets))));
        }
        t += w;
    }
    if !sets.is_empty() {
        out.push(seq.batch(site, node, Body::Aggregates(sets)));
    }
    out
}

/// One closed OEE shift window (8 h) with availability `a`, performance
/// `p`, quality `q` and `down_s` of fault time.
fn oee_shift(start: i64, a: f64, p: f64, q: f64, down_s: f64) -> KpiResult {
    let pbt = 8.0 * 3600.0;
    KpiResult {
        kpi: "line.oee".into(),
        window: "shift".into(),
        label: String::new(),
        start_ms: start,
        end_ms: start + 8 * H,
        until_ms: start + 8 * H,
        closed: true,
        computed_ms: start + 8 * H,
        coverage: 1.0,
        quality: KpiQuality::Good,
        values: vec![
            ("oee".into(), Some(a * p * q)),
            ("availability".into(), Some(a)),
            ("performance".into(), Some(p)),
            ("quality".into(), Some(q)),
            ("failures".into(), Some(1.0)),
            ("produced".into(), Some(1000.0)),
            ("good".into(), Some(1000.0 * q)),
            ("planned_busy_s".into(), Some(pbt)),
            ("run_s".into(), Some(pbt * a)),
            ("down_s".into(), Some(down_s)),
        ],
        unit: None,
    }
}

fn plain_kpi(kpi: &str, window: &str, start: i64, len: i64, v: f64) -> KpiResult {
    KpiResult {
        kpi: kpi.into(),
        window: window.into(),
        label: String::new(),
        start_ms: start,
        end_ms: start + len,
        until_ms: start + len,
        closed: true,
        computed_ms: start + len,
        coverage: 1.0,
        quality: KpiQuality::Good,
        values: vec![("value".into(), Some(v))],
        unit: Some("t/h".into()),
    }
}

fn scored(model: &str, origin: i64, mae: f64) -> ForecastQuality {
    ForecastQuality {
        model: model.into(),
        version: "1".into(),
        tag: "fuel".into(),
        origin_ms: origin,
        scored_ms: origin + H,
        step_ms: 60_000,
        horizon: 60,
        mae: Some(mae),
        mape: Some(mae * 2.0),
        n: 60,
        explanation: Vec::new(),
    }
}

fn forecast(model: &str, origin: i64) -> Forecast {
    Forecast {
        model: model.into(),
        version: "1".into(),
        tag: "fuel".into(),
        origin_ms: origin,
        step_ms: 60_000,
        made_ms: origin,
        values: vec![1.0; 60],
    }
}

/// A quiet node: steady values, every window, stable forecasts.
fn quiet(seq: &mut Seq, node: &str) -> Vec<Incoming> {
    let mut items = windows(seq, "north", node, &["flow", "temp"], |tag, t| {
        // A daily sine with small deterministic wiggle: a living sensor.
        let x = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
        let wiggle = ((t / 600_000) % 7) as f64 * 0.01;
        Some(match tag {
            "flow" => (50.0 + 5.0 * x.sin() + wiggle, 10),
            _ => (300.0 + 3.0 * x.cos() - wiggle, 10),
        })
    });
    let shifts = (0..42)
        .map(|k| oee_shift(T0 - WEEK + k * 8 * H, 0.9, 0.9, 1.0, 0.2 * 3600.0 / 21.0))
        .collect();
    items.push(seq.batch("north", node, Body::Kpis(shifts)));
    let days = (0..5 * 7)
        .map(|d| {
            scored(
                "steady",
                T0 - 4 * WEEK + d * DAY,
                1.0 + (d % 3) as f64 * 0.05,
            )
        })
        .collect();
    items.push(seq.batch("north", node, Body::ForecastQuality(days)));
    items.push(seq.batch(
        "north",
        node,
        Body::Forecasts(vec![forecast("steady", T0 + 6 * DAY)]),
    ));
    items
}

fn store_with(items: Vec<Incoming>) -> Store {
    let mut s = Store::open_in_memory().unwrap();
    for chunk in items.chunks(50) {
        s.ingest(chunk).unwrap();
    }
    s
}

fn fig(i: &Insight, name: &str) -> f64 {
    i.figures
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value)
        .unwrap_or_else(|| panic!("{name} missing in {i:?}"))
}

fn only<'a>(all: &'a [Insight], kind: Kind, node: &str) -> &'a Insight {
    let v: Vec<&Insight> = all
        .iter()
        .filter(|i| i.kind == kind && i.node == node)
        .collect();
    assert_eq!(v.len(), 1, "one {kind:?} at {node}: {all:#?}");
    v[0]
}

#[test]
fn a_quiet_fleet_has_nothing_to_say() {
    let mut seq = Seq(0);
    let s = store_with(quiet(&mut seq, "calm-1"));
    let got = insight::generate(&s, &week()).unwrap();
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn oee_drop_is_split_into_its_factors_with_fault_time_and_state_code() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    // Week before: A 0.9, P 0.9, Q 1.0 (OEE 81 %), 1.2 h of faults in all.
    // This week: A 0.8, P 0.87, Q 0.99 (OEE 68.9 %), 4.0 h of faults.
    let mut shifts: Vec<KpiResult> = (0..21)
        .map(|k| oee_shift(T0 - WEEK + k * 8 * H, 0.9, 0.9, 1.0, 1.2 * 3600.0 / 21.0))
        .collect();
    shifts.extend((0..21).map(|k| oee_shift(T0 + k * 8 * H, 0.8, 0.87, 0.99, 4.0 * 3600.0 / 21.0)));
    items.push(seq.batch("north", "north-1", Body::Kpis(shifts)));
    // The state tag: running (2), with state 31 for 1 h last week and for
    // 4 h this week (Wednesday 10:00–14:00).
    items.extend(windows(
        &mut seq,
        "north",
        "north-1",
        &["unit.state"],
        |_, t| {
            let s31 = (T0 - WEEK + 2 * DAY + 10 * H..T0 - WEEK + 2 * DAY + 11 * H).contains(&t)
                || (T0 + 2 * DAY + 10 * H..T0 + 2 * DAY + 14 * H).contains(&t);
            Some((if s31 { 31.0 } else { 2.0 }, 10))
        },
    ));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::KpiChange, "north-1");
    assert_eq!(i.subject, "line.oee");
    assert!((fig(i, "oee_before") - 81.0).abs() < 1e-9, "{i:?}");
    let now = 0.8 * 0.87 * 0.99 * 100.0;
    assert!((fig(i, "oee_now") - now).abs() < 1e-9);
    // The Shapley shares add up to the change exactly; availability's is
    // the largest (independent arithmetic: its average marginal effect).
    let (sa, sp, sq) = (
        fig(i, "availability_share"),
        fig(i, "performance_share"),
        fig(i, "quality_share"),
    );
    assert!((sa + sp + sq - (now - 81.0)).abs() < 1e-9);
    let (a0, p0, q0, a1, p1, q1) = (0.9, 0.9, 1.0, 0.8, 0.87, 0.99);
    let want_a = (a1 - a0) * ((p0 * q0 + p1 * q1) / 3.0 + (p0 * q1 + p1 * q0) / 6.0) * 100.0;
    assert!((sa - want_a).abs() < 1e-9, "{sa} vs {want_a}");
    assert!(
        sa < sp && sp < sq && sq < 0.0,
        "all negative, availability most"
    );
    assert!((fig(i, "fault_hours_before") - 1.2).abs() < 1e-9);
    assert!((fig(i, "fault_hours_now") - 4.0).abs() < 1e-9);
    assert_eq!(fig(i, "code_unit.state"), 31.0);
    assert!(
        i.text.starts_with("OEE at node north-1 fell from 81 % to 69 % week over week; availability explains 8.8 points (fault time up from 1.2 h to 4.0 h, mostly unit.state = 31)"),
        "{}",
        i.text
    );
    assert!(
        i.link
            .starts_with("#/node?site=north&node=north-1&kpi=line.oee&window=shift&from=")
    );
    // Largest news first.
    assert_eq!(all[0].kind, Kind::KpiChange);
    assert!(all.windows(2).all(|w| w[0].importance >= w[1].importance));
}

/// Rolling windows (the demo's "5m") are never closed and overlap: a new
/// one every slice. Those starting on a multiple of the span are used,
/// once each, and an OEE recovery between them is told with the fault
/// code whose time shrank (not the running code, whose time grew).
#[test]
fn rolling_windows_are_tiled_into_periods() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    let span = 5 * 60_000;
    let slice = 10_000;
    let mut rows = Vec::new();
    // Ends every 10 s over both weeks' last hour: the period compared is
    // that hour against the one before it.
    let from = T0 + WEEK - H;
    for end in (from - H + span..=T0 + WEEK).step_by(slice as usize) {
        let start = end - span;
        // Availability 0.8 before `from`, 1.0 after (OEE 72 % → 90 %).
        let a = if start >= from { 1.0 } else { 0.8 };
        let mut r = oee_shift(start, a, 0.9, 1.0, (1.0 - a) * 300.0);
        r.window = "5m".into();
        r.end_ms = end;
        r.until_ms = end;
        r.computed_ms = end;
        r.closed = false;
        for (name, v) in &mut r.values {
            if name == "planned_busy_s" {
                *v = Some(300.0);
            } else if name == "run_s" {
                *v = Some(300.0 * a);
            }
        }
        rows.push(r);
    }
    for chunk in rows.chunks(500) {
        items.push(seq.batch("north", "north-7", Body::Kpis(chunk.to_vec())));
    }
    // The fault code: 201 for 30 min of the hour before, else 0.
    items.extend(windows(
        &mut seq,
        "north",
        "north-7",
        &["unit.fault_code"],
        |_, t| {
            let f = (from - 40 * 60_000..from - 10 * 60_000).contains(&t);
            Some((if f { 201.0 } else { 0.0 }, 10))
        },
    ));
    let s = store_with(items);
    let p = Params {
        site: None,
        node: Some("north-7".into()),
        from_ms: from,
        to_ms: T0 + WEEK,
        now_ms: T0 + WEEK + DAY,
    };
    let all = insight::generate(&s, &p).unwrap();
    let i = only(&all, Kind::KpiChange, "north-7");
    assert!((fig(i, "oee_before") - 72.0).abs() < 1e-9, "{i:?}");
    assert!((fig(i, "oee_now") - 90.0).abs() < 1e-9, "{i:?}");
    assert_eq!(fig(i, "code_unit.fault_code"), 201.0, "{i:?}");
    assert!((fig(i, "code_hours_added") + 0.5).abs() < 1e-9, "{i:?}");
    assert!(
        i.text.contains("rose from 72 % to 90 %")
            && i.text
                .contains("fault time down from 12 min to 0 min, mostly unit.fault_code = 201"),
        "{}",
        i.text
    );
    // 12 tiles per hour each side, not the 360 overlapping rows.
    assert_eq!(fig(i, "windows_now"), 12.0, "{i:?}");
    assert_eq!(fig(i, "windows_before"), 12.0, "{i:?}");
    assert!(i.link.contains("window=5m"), "{}", i.link);
}

#[test]
fn a_plain_kpi_change_is_told_relative_to_its_mean() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    let mut rate = Vec::new();
    for d in 0..14 {
        let v = if d < 7 { 300.0 } else { 250.0 };
        rate.push(plain_kpi("line.rate", "day", T0 - WEEK + d * DAY, DAY, v));
    }
    items.push(seq.batch("north", "north-6", Body::Kpis(rate)));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::KpiChange, "north-6");
    assert_eq!((fig(i, "before"), fig(i, "now")), (300.0, 250.0));
    assert!((fig(i, "change") + 100.0 / 6.0).abs() < 1e-9);
    assert_eq!(
        i.text,
        "line.rate at node north-6 fell from 300 t/h to 250 t/h (-17 %) week over week."
    );
}

#[test]
fn degraded_forecast_accuracy_is_found_against_the_earlier_weeks() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    // Four weeks at MAE 1.0, this week at 2.5.
    let days: Vec<ForecastQuality> = (0..5 * 7)
        .map(|d| {
            let origin = T0 - 4 * WEEK + d * DAY;
            scored("fuel-2h", origin, if origin >= T0 { 2.5 } else { 1.0 })
        })
        .collect();
    items.push(seq.batch("north", "north-2", Body::ForecastQuality(days)));
    items.push(seq.batch(
        "north",
        "north-2",
        Body::Forecasts(vec![forecast("fuel-2h", T0 + 6 * DAY)]),
    ));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::ForecastDegraded, "north-2");
    assert_eq!(i.subject, "fuel-2h");
    assert!((fig(i, "mae_before") - 1.0).abs() < 1e-9);
    assert!((fig(i, "mae_now") - 2.5).abs() < 1e-9);
    assert!((fig(i, "mae_ratio") - 2.5).abs() < 1e-9);
    assert_eq!(fig(i, "forecasts_now"), 7.0);
    assert_eq!(fig(i, "forecasts_before"), 28.0);
    assert!(
        i.text.contains("mean absolute error 1.00 → 2.50 (2.5×"),
        "{}",
        i.text
    );
    assert!(i.link.starts_with("#/forecasts?site=north&node=north-2"));
}

#[test]
fn missing_windows_and_bad_samples_are_a_data_quality_problem() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    // This week: Tuesday and Wednesday missing (288 of the 1008 windows
    // due), and every window of Friday with 4 of 10 samples bad.
    items.extend(windows(&mut seq, "north", "north-3", &["flow"], |_, t| {
        let missing = (T0 + DAY..T0 + 3 * DAY).contains(&t);
        let friday = (T0 + 4 * DAY..T0 + 5 * DAY).contains(&t);
        if missing {
            None
        } else {
            let x = (t / 600_000 % 13) as f64;
            Some((10.0 + x, if friday { 6 } else { 10 }))
        }
    }));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::DataQuality, "north-3");
    let (due, missing) = (1008.0, 288.0);
    assert_eq!(fig(i, "windows_expected"), due);
    assert_eq!(fig(i, "windows_present"), due - missing);
    assert!((fig(i, "coverage") - (due - missing) / due * 100.0).abs() < 1e-9);
    assert_eq!(fig(i, "gaps"), 1.0);
    assert!((fig(i, "longest_gap_hours") - 48.0).abs() < 1e-9);
    // Bad share over the windows present: 144 windows × 4 bad of 10.
    let bad = 144.0 * 4.0 / ((due - missing) * 10.0) * 100.0;
    assert!((fig(i, "bad_share") - bad).abs() < 1e-9, "{i:?}");
    assert!(
        i.text.starts_with(
            "Data from node north-3: only 71 % of the windows due arrived (1 gap, the longest 2 days); 8"
        ) && i.text.contains(" of the samples were of bad quality; worst tag flow (coverage 71 %"),
        "{}",
        i.text
    );
    assert!(i.link.starts_with("#/quality?site=north&node=north-3"));
}

#[test]
fn a_stuck_sensor_is_found_and_nothing_else() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    // temp: alive, then from Thursday 00:00 stuck at 351.2 (4 of 7 days).
    // press: alive, then from Tuesday drifting up by 20 over 6 days.
    items.extend(windows(
        &mut seq,
        "north",
        "north-4",
        &["temp", "press"],
        |tag, t| {
            let x = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
            let wiggle = ((t / 600_000) % 7) as f64 * 0.05;
            Some(match tag {
                "temp" if t >= T0 + 3 * DAY => (351.2, 10),
                "temp" => (350.0 + 3.0 * x.sin() + wiggle, 10),
                _ => {
                    let drift = if t > T0 + DAY {
                        (t - T0 - DAY) as f64 / (6 * DAY) as f64 * 20.0
                    } else {
                        0.0
                    };
                    (10.0 + 0.5 * x.cos() + wiggle + drift, 10)
                }
            })
        },
    ));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let stuck: Vec<&Insight> = all.iter().filter(|i| i.kind == Kind::SensorStuck).collect();
    assert_eq!(stuck.len(), 1, "{all:#?}");
    let i = stuck[0];
    assert_eq!((i.node.as_str(), i.subject.as_str()), ("north-4", "temp"));
    assert_eq!(fig(i, "value"), 351.2);
    // 96 h stuck, to within one bucket of the detector's input.
    let bucket_h = fig(i, "bucket_ms") / 3.6e6;
    assert!((fig(i, "hours") - 96.0).abs() <= bucket_h + 1e-9, "{i:?}");
    assert!(i.text.contains("read 351 without change"), "{}", i.text);
    assert!(
        i.link
            .starts_with("#/tags?site=north&node=north-4&tag=temp&from=")
    );
    // The drifting `press` (+20 over 6 days on a daily wave of ±0.5) is
    // not reported by the detector at this resolution: a known gap (see
    // the report of issue 19); nothing else is reported either.
    assert!(
        all.iter()
            .filter(|i| matches!(i.kind, Kind::SensorStuck | Kind::SensorDrift))
            .all(|i| i.node == "north-4"),
        "{all:#?}"
    );
}

/// A sensor stuck twice in the period is one insight, about its longer
/// stretch.
#[test]
fn a_sensor_stuck_twice_is_told_once() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    items.extend(windows(&mut seq, "north", "north-8", &["level"], |_, t| {
        let x = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
        let wiggle = ((t / 600_000) % 7) as f64 * 0.05;
        Some(if (T0..T0 + 36 * H).contains(&t) {
            (42.0, 10)
        } else if (T0 + 3 * DAY..T0 + 5 * DAY).contains(&t) {
            (47.5, 10)
        } else {
            (45.0 + 2.0 * x.sin() + wiggle, 10)
        })
    }));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::SensorStuck, "north-8");
    assert_eq!(fig(i, "value"), 47.5, "{i:?}");
    let bucket_h = fig(i, "bucket_ms") / 3.6e6;
    assert!((fig(i, "hours") - 48.0).abs() <= bucket_h + 1e-9, "{i:?}");
}

#[test]
fn a_steady_kpi_trend_is_significant_with_its_sens_slope() {
    let mut seq = Seq(0);
    let mut items = quiet(&mut seq, "calm-1");
    // Hourly yield: flat last week, rising 0.05 %/h this week (+8.4 over
    // the week, 8 % of the mean: below the 10 % of a change, above the 5 %
    // of a trend), with a little deterministic noise.
    let hours: Vec<KpiResult> = (0..14 * 24)
        .map(|h| {
            let start = T0 - WEEK + h * H;
            let noise = 0.3 * ((h as f64) * 1.7).sin();
            let ramp = if start >= T0 {
                0.05 * ((start - T0) / H) as f64
            } else {
                0.0
            };
            plain_kpi("line.yield", "1h", start, H, 50.0 + ramp + noise)
        })
        .collect();
    items.push(seq.batch("north", "north-5", Body::Kpis(hours)));
    let s = store_with(items);
    let all = insight::generate(&s, &week()).unwrap();
    let i = only(&all, Kind::KpiTrend, "north-5");
    assert_eq!(i.subject, "line.yield");
    assert!((fig(i, "slope_per_window") - 0.05).abs() < 0.005, "{i:?}");
    assert!((fig(i, "slope_per_day") - 1.2).abs() < 0.12, "{i:?}");
    assert!(fig(i, "p_value") < 0.01);
    assert_eq!(fig(i, "windows"), 168.0);
    assert!(
        i.text
            .starts_with("line.yield at node north-5 rose steadily by "),
        "{}",
        i.text
    );
    assert!(
        all.iter()
            .all(|i| !(i.kind == Kind::KpiChange && i.node == "north-5")),
        "8 % is below the change threshold: {all:#?}"
    );
}
