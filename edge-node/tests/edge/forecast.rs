//! Forecasting on the edge with the shipped ETTh1 model (hourly, 336 → 96):
//! forecasts from local history, scored against what then happened, a
//! corrupt model refused while the running one stays, and a new version
//! swapped in while the scheduled task runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use drivers::{Quality, Sample, TagName, Timestamp, Value};
use edge_node::forecast::{self, ForecastStats, Models, Watch};
use edge_node::history::{HistoryOptions, HistoryReader, HistoryStore};
use tokio_util::sync::CancellationToken;

const HOUR: i64 = 3_600_000;

fn asset() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/assets/etth1-ot")
}

fn install(models_dir: &Path, name: &str) -> std::path::PathBuf {
    let d = models_dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for f in ["manifest.toml", "model.onnx"] {
        std::fs::copy(asset().join(f), d.join(f)).unwrap();
    }
    d
}

/// An oil temperature with a daily cycle, hourly, for `hours` up to `end_ms`.
fn history(path: &Path, end_ms: i64, hours: i64) {
    history_with_hole(path, end_ms, hours, 0..0);
}

/// The same, without the samples of the hours `hole` (counted back from `end_ms`).
fn history_with_hole(path: &Path, end_ms: i64, hours: i64, hole: std::ops::Range<i64>) {
    let mut store = HistoryStore::open(&HistoryOptions::new(path)).unwrap();
    let tag: TagName = "OT".into();
    let samples: Vec<Sample> = (0..hours)
        .filter(|k| !hole.contains(&(hours - 1 - k)))
        .map(|k| {
            let ts = end_ms - (hours - 1 - k) * HOUR;
            let h = ts / HOUR;
            let v = 20.0 + 5.0 * (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
            Sample {
                tag: tag.clone(),
                ts: Timestamp(ts),
                value: Some(Value::F64(v)),
                quality: Quality::Good,
            }
        })
        .collect();
    store.insert(&samples).unwrap();
    store.close().unwrap();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn forecasts_come_from_history_and_are_scored_against_the_actuals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let now = now_ms() / HOUR * HOUR;
    history(&db, now, 800);
    let models = Models::default();
    let stats = ForecastStats::default();
    let mut watch = Watch::default();
    install(&dir.path().join("models"), "oil");
    let events = forecast::refresh(&dir.path().join("models"), &models, &mut watch, &stats);
    assert!(
        events[0].contains("model etth1-ot 1.0.0 loaded"),
        "{events:?}"
    );
    let f = models.get("etth1-ot").unwrap();
    let reader = HistoryReader::open(&db).unwrap();

    // A forecast made 200 h ago: its 96 h are in the past now.
    let then = now - 200 * HOUR;
    let r = forecast::forecast_once(&reader, &f, then + 1234, Duration::from_secs(7200)).unwrap();
    assert_eq!(r.origin_ms, then + HOUR);
    assert_eq!(r.values.len(), 96);
    // A daily cycle between 15 and 25: a sane forecast stays near it.
    assert!(
        r.values.iter().all(|v| (10.0..30.0).contains(v)),
        "{:?}",
        r.values
    );
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    forecast::store(&mut conn, &r, "OT", then, None).unwrap();
    // With [sync], the same transaction queues it for the hub.
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: firmware_config::WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let rep = forecast::store(&mut conn, &r, "OT", then, Some(&policy))
        .unwrap()
        .unwrap();
    assert_eq!(rep.sealed, vec![1]);
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM outbox WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    let batch: protocol::v1::Batch = postcard::from_bytes(&payload).unwrap();
    let protocol::v1::Body::Forecasts(list) = batch.body else {
        panic!("a forecast batch")
    };
    assert_eq!(
        (
            list[0].tag.as_str(),
            list[0].origin_ms,
            list[0].values.len()
        ),
        ("OT", r.origin_ms, 96)
    );
    assert_eq!(
        forecast::score(&mut conn, &reader, &f, now, Duration::from_secs(7200)).unwrap(),
        1
    );
    let (mae, mape, n) = forecast::accuracy(&conn, "etth1-ot").unwrap().unwrap();
    assert_eq!(n, 1);
    assert!(mae > 0.0 && mae < 3.0, "MAE {mae}");
    assert!(mape.unwrap() < 15.0, "MAPE {mape:?}");

    // The explanation of the forecast it would make now adds up.
    let (origin, e) =
        forecast::explain_now(&reader, &f, now + 1, Duration::from_secs(7200), 336).unwrap();
    assert_eq!(origin, now + HOUR);
    for h in [0, 95] {
        let sum: f64 = e.contributions.iter().map(|(_, c)| c[h]).sum();
        assert!(
            (sum - (e.forecast[h] - e.baseline[h])).abs() < 1e-2,
            "step {h}"
        );
    }

    // A 5 h hole in the history, longer than the 2 h hold: no number, an
    // error that says so.
    let db2 = dir.path().join("holey.db");
    history_with_hole(&db2, now, 800, 8..13);
    let reader = HistoryReader::open(&db2).unwrap();
    let e = forecast::forecast_once(&reader, &f, now, Duration::from_secs(7200)).unwrap_err();
    assert!(e.contains("gap in the history"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_is_refused_and_a_new_version_is_swapped_in_while_forecasting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    history(&db, now_ms() / HOUR * HOUR, 400);
    let models_dir = dir.path().join("models");
    let oil = install(&models_dir, "oil");
    let cfg = firmware_config::Forecast {
        models_dir: models_dir.clone(),
        interval: Duration::from_millis(200),
        max_hold: Duration::from_secs(7200),
        explain_max_features: 64,
        check_every: Duration::from_millis(100),
    };
    let models = Models::default();
    let stats = Arc::new(ForecastStats::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(forecast::run(
        cfg,
        db.clone(),
        None,
        models.clone(),
        stats.clone(),
        cancel.clone(),
    ));
    let versions = |db: &Path| -> Vec<String> {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut st = c
            .prepare("SELECT DISTINCT version FROM forecasts ORDER BY version")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("first forecast", &|| {
        stats.runs.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(versions(&db), vec!["1.0.0"]);

    // A corrupt model.onnx: refused, version 1.0.0 keeps forecasting.
    std::fs::write(oil.join("model.onnx"), b"\x08\x07garbage").unwrap();
    wait("refusal", &|| stats.rejected.load(Ordering::Relaxed) >= 1);
    let runs = stats.runs.load(Ordering::Relaxed);
    wait("forecasts go on", &|| {
        stats.runs.load(Ordering::Relaxed) >= runs + 2
    });
    assert_eq!(
        models.list(),
        vec![("etth1-ot".to_string(), "1.0.0".to_string())]
    );

    // A valid new version: swapped in without a restart.
    std::fs::copy(asset().join("model.onnx"), oil.join("model.onnx")).unwrap();
    let manifest = std::fs::read_to_string(asset().join("manifest.toml")).unwrap();
    std::fs::write(
        oil.join("manifest.toml"),
        manifest.replace("version = \"1.0.0\"", "version = \"2.0.0\""),
    )
    .unwrap();
    wait("version 2 forecasts", &|| {
        versions(&db).contains(&"2.0.0".to_string())
    });
    assert_eq!(
        models.list(),
        vec![("etth1-ot".to_string(), "2.0.0".to_string())]
    );
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    cancel.cancel();
    task.await.unwrap();
}

/// Scoring with `[sync]` queues the scores for the hub in the transaction
/// that marks them scored: one `ForecastQuality` batch per pass, the same
/// MAE the edge keeps, the explanation on the last entry, nothing twice.
#[test]
fn scoring_queues_the_accuracy_for_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let now = now_ms() / HOUR * HOUR;
    history(&db, now, 800);
    let (models, stats, mut watch) = (
        Models::default(),
        ForecastStats::default(),
        Watch::default(),
    );
    install(&dir.path().join("models"), "oil");
    forecast::refresh(&dir.path().join("models"), &models, &mut watch, &stats);
    let f = models.get("etth1-ot").unwrap();
    let reader = HistoryReader::open(&db).unwrap();
    let hold = Duration::from_secs(7200);
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    // Two forecasts whose 96 h are over, one still running.
    for ago in [200, 150, 50] {
        let then = now - ago * HOUR;
        let r = forecast::forecast_once(&reader, &f, then + 1, hold).unwrap();
        forecast::store(&mut conn, &r, "OT", then, None).unwrap();
    }
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: firmware_config::WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let n = forecast::score_and_send(&mut conn, &reader, &f, now, hold, Some(&policy), 8).unwrap();
    assert_eq!(n, 2);
    let payloads: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, payload FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(payloads.len(), 1, "one batch for the pass");
    let batch: protocol::v1::Batch = postcard::from_bytes(&payloads[0].1).unwrap();
    protocol::check::batch(&batch).unwrap();
    let protocol::v1::Body::ForecastQuality(list) = batch.body else {
        panic!("a ForecastQuality batch")
    };
    assert_eq!(list.len(), 2);
    let local: Vec<(i64, f64, Option<f64>)> = conn
        .prepare("SELECT origin_ms, mae, mape FROM forecasts WHERE scored = 1 ORDER BY origin_ms")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(local.len(), 2, "the running forecast is not scored");
    for (q, (origin, mae, mape)) in list.iter().zip(&local) {
        assert_eq!(
            (q.model.as_str(), q.version.as_str(), q.tag.as_str()),
            ("etth1-ot", "1.0.0", "OT")
        );
        assert_eq!(
            (q.origin_ms, q.step_ms, q.horizon, q.scored_ms),
            (*origin, HOUR, 96, now)
        );
        assert_eq!(q.n, 96, "every hour has an actual");
        assert_eq!(q.mae, Some(*mae), "the MAE the edge keeps");
        assert_eq!(q.mape, *mape);
        assert!(*mae > 0.0 && *mae < 3.0, "MAE {mae}");
    }
    assert!(list[0].explanation.is_empty());
    let e = &list[1].explanation;
    assert!(
        !e.is_empty() && e.len() <= forecast::EXPLANATION_SENT,
        "{e:?}"
    );
    assert!(
        e.windows(2).all(|w| w[0].1.abs() >= w[1].1.abs()),
        "largest first: {e:?}"
    );
    // Nothing new to score: nothing more queued.
    assert_eq!(
        forecast::score_and_send(&mut conn, &reader, &f, now, hold, Some(&policy), 8).unwrap(),
        0
    );
    let batches: i64 = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, 1);
}
