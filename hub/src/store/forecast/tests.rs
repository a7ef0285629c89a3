//! Known answers: crafted windows and forecasts whose errors are known,
//! through the real ingest.
#![allow(clippy::unwrap_used)]

use protocol::v1::{Batch, Body, Forecast, ForecastQuality, Window, WindowSet};

use crate::store::{Incoming, Store};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
/// The error of each lead of every forecast.
const ERR: [f64; 3] = [1.0, -2.0, 0.5];

fn incoming(seq: u64, body: Body) -> Incoming {
    Incoming {
        site: "s".into(),
        node: "a".into(),
        raw: bytes::Bytes::new(),
        received_ms: T0,
        batch: Batch {
            seq,
            created_ms: T0,
            body,
        },
    }
}

fn window(v: f64) -> Window {
    Window {
        tag: "T".into(),
        count: 6,
        good: 6,
        min: v,
        max: v,
        // The mean differs: the actual is the time-weighted mean.
        mean: v + 1000.0,
        twa: v,
        last: v,
    }
}

fn forecast(k: i64, made_ms: i64, values: Vec<f64>) -> Forecast {
    Forecast {
        model: "m".into(),
        version: "2".into(),
        tag: "T".into(),
        origin_ms: T0 + k * MIN,
        step_ms: MIN,
        made_ms,
        values,
    }
}

fn quality(k: i64, mae: Option<f64>, explanation: Vec<(String, f64)>) -> ForecastQuality {
    ForecastQuality {
        model: "m".into(),
        version: "2".into(),
        tag: "T".into(),
        origin_ms: T0 + k * MIN,
        scored_ms: T0 + (10 + k) * MIN,
        step_ms: MIN,
        horizon: 3,
        mae,
        mape: mae.map(|m| m * 10.0),
        n: if mae.is_some() { 3 } else { 0 },
        explanation,
    }
}

/// Minute windows whose value is the minute's number (none for minute 6),
/// 10-second windows of -999 (not the width closest to the step), five
/// forecasts made each minute with errors [`ERR`] (the last one with no
/// number at lead 2), and an older forecast for minute 0 that a newer one
/// replaces.
fn store() -> Store {
    let mut s = Store::open_in_memory().unwrap();
    let mut items = Vec::new();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for i in (0..20).filter(|i| *i != 6) {
        items.push(incoming(
            next(),
            Body::Aggregates(vec![WindowSet {
                width_ms: MIN as u32,
                start_ms: T0 + i * MIN,
                windows: vec![window(i as f64)],
            }]),
        ));
    }
    for i in 0..60 {
        items.push(incoming(
            next(),
            Body::Aggregates(vec![WindowSet {
                width_ms: 10_000,
                start_ms: T0 + i * 10_000,
                windows: vec![window(-999.0)],
            }]),
        ));
    }
    items.push(incoming(
        next(),
        Body::Forecasts(vec![forecast(0, T0 - 2 * MIN, vec![50.0; 3])]),
    ));
    for k in 0..5 {
        let mut values: Vec<f64> = (0..3).map(|j| (k + j) as f64 + ERR[j as usize]).collect();
        if k == 4 {
            values[1] = f64::NAN;
        }
        items.push(incoming(
            next(),
            Body::Forecasts(vec![forecast(k, T0 + k * MIN - 1, values)]),
        ));
    }
    let early = vec![("old".to_string(), 9.0)];
    let latest = vec![("a".to_string(), 2.0), ("b".to_string(), -1.0)];
    items.push(incoming(
        next(),
        Body::ForecastQuality(vec![
            quality(0, Some(1.0), vec![]),
            quality(1, Some(2.0), early),
        ]),
    ));
    items.push(incoming(
        next(),
        Body::ForecastQuality(vec![
            quality(2, Some(3.0), vec![]),
            quality(3, Some(4.0), vec![]),
            quality(4, None, latest),
        ]),
    ));
    let r = s.ingest(&items).unwrap();
    assert_eq!(r.forecast_quality, 5);
    assert_eq!(r.forecasts, 6);
    s
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn forecast_quality_rows_are_stored_once() {
    let mut s = store();
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM forecast_quality", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5);
    // A resent batch is a duplicate, not a second row.
    let again = incoming(
        86,
        Body::ForecastQuality(vec![quality(0, Some(1.0), vec![])]),
    );
    let r = s.ingest(&[again]).unwrap();
    assert_eq!((r.duplicates, r.forecast_quality), (1, 0));
    let (mae, mape, n, expl): (Option<f64>, Option<f64>, u32, String) = s
        .conn
        .query_row(
            "SELECT mae, mape, n, explanation FROM forecast_quality WHERE origin_ms = ?",
            [T0 + 4 * MIN],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((mae, mape, n), (None, None, 0));
    assert_eq!(
        expl,
        r#"[{"contribution":2.0,"feature":"a"},{"contribution":-1.0,"feature":"b"}]"#
    );
}

#[test]
fn models_list_the_newest_forecast_and_score() {
    let s = store();
    let m = s.forecast_models(None, None).unwrap();
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(
        (m.model.as_str(), m.version.as_str(), m.tag.as_str()),
        ("m", "2", "T")
    );
    assert_eq!((m.step_ms, m.horizon, m.forecasts), (MIN, 3, 6));
    assert_eq!(m.last_origin_ms, T0 + 4 * MIN);
    assert_eq!(
        (m.last_mae, m.last_mape),
        (None, None),
        "the newest score had no actual"
    );
    assert!(s.forecast_models(Some("s"), Some("b")).unwrap().is_empty());
    assert_eq!(s.forecast_models(Some("s"), None).unwrap().len(), 1);
}

#[test]
fn forecasts_page_newest_first() {
    let s = store();
    let (page, next) = s
        .forecast_page("s", "a", "m", T0, T0 + 10 * MIN, None, 2)
        .unwrap();
    assert_eq!(
        page.iter().map(|f| f.origin_ms).collect::<Vec<_>>(),
        vec![T0 + 4 * MIN, T0 + 3 * MIN]
    );
    assert_eq!(page[0].values, vec![Some(5.0), None, Some(6.5)]);
    let (rest, end) = s
        .forecast_page("s", "a", "m", T0, T0 + 10 * MIN, next, 10)
        .unwrap();
    assert_eq!(rest.len(), 4, "both forecasts for minute 0");
    assert_eq!(end, None);
}

#[test]
fn versus_pairs_each_forecast_with_the_window_at_its_lead() {
    let s = store();
    let v = s
        .forecast_versus("s", "a", "m", T0, T0 + 10 * MIN, 2)
        .unwrap();
    assert_eq!(
        (v.tag.as_deref(), v.step_ms, v.width_ms),
        (Some("T"), Some(MIN), Some(MIN))
    );
    assert_eq!(v.t, (0..5).map(|k| T0 + (k + 1) * MIN).collect::<Vec<_>>());
    // Lead 2 forecasts minute k+1 as k+1-2; the newer forecast for minute 0 wins.
    assert_eq!(
        v.forecast,
        vec![Some(-1.0), Some(0.0), Some(1.0), Some(2.0), None]
    );
    assert_eq!(
        v.actual,
        vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)]
    );
    let v3 = s
        .forecast_versus("s", "a", "m", T0, T0 + 10 * MIN, 3)
        .unwrap();
    assert_eq!(v3.actual[4], None, "no window for minute 6");
    assert_eq!(v3.forecast[4], Some(6.5));
    let none = s
        .forecast_versus("s", "a", "other", T0, T0 + 10 * MIN, 1)
        .unwrap();
    assert!(none.tag.is_none() && none.t.is_empty());
}

#[test]
fn accuracy_reports_the_edge_scores_and_the_hub_cross_check() {
    let s = store();
    let a = s
        .forecast_accuracy("s", "a", "m", T0, T0 + 10 * MIN)
        .unwrap();
    assert_eq!(a.bucket_ms, 600);
    // The edge: MAE 1, 2, 3, 4 over 3 steps each, and one with nothing scored.
    assert_eq!(a.items.len(), 5);
    assert!(close(a.items[1].mae, 2.0) && close(a.items[1].mape, 20.0));
    assert_eq!((a.items[4].mae, a.items[4].n), (None, 0));
    assert!(close(a.edge.mae, 2.5), "{:?}", a.edge);
    assert!(close(a.edge.mape, 25.0));
    assert_eq!((a.edge.n, a.edge.forecasts), (12, 5));
    // The hub: |errors| 1, 2, 0.5 on every forecast; the last has only
    // lead 1 (no number at lead 2, no window for lead 3).
    let h = &a.hub;
    assert_eq!(
        (h.n, h.forecasts, h.width_ms, h.truncated),
        (13, 5, Some(MIN), false)
    );
    assert!(close(h.mae, 15.0 / 13.0), "{h:?}");
    assert!(close(h.items[0].mae, 3.5 / 3.0), "{:?}", h.items[0]);
    assert_eq!(h.items[0].n, 3);
    // MAPE leaves out the zero actual of minute 0: |1/1|… by hand.
    let mut ape = vec![2.0 / 1.0, 0.5 / 2.0];
    for k in 1..4 {
        ape.extend((0..3).map(|j| (ERR[j] / (k + j) as f64).abs()));
    }
    ape.push(1.0 / 4.0);
    let mape = ape.iter().sum::<f64>() / ape.len() as f64 * 100.0;
    assert!(close(h.mape, mape), "{:?} vs {mape}", h.mape);
    // A narrow range: one bucket merges nothing it should not.
    let one = s
        .forecast_accuracy("s", "a", "m", T0 + MIN, T0 + 2 * MIN)
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert!(close(one.edge.mae, 2.0) && close(one.hub.mae, 3.5 / 3.0));
}

#[test]
fn the_latest_explanation_wins() {
    let s = store();
    let e = s.forecast_explanation("s", "a", "m").unwrap();
    assert_eq!(
        (e.ts_ms, e.origin_ms),
        (Some(T0 + 14 * MIN), Some(T0 + 4 * MIN))
    );
    assert_eq!(e.version.as_deref(), Some("2"));
    assert_eq!(
        e.items
            .iter()
            .map(|c| (c.feature.as_str(), c.contribution))
            .collect::<Vec<_>>(),
        vec![("a", 2.0), ("b", -1.0)]
    );
    assert_eq!(
        s.forecast_explanation("s", "a", "x").unwrap(),
        Default::default()
    );
}
