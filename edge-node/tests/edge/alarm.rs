//! The alarm engine over configured `[[alarm]]`s (issue 16, first parts):
//! samples in, every change journaled in SQLite and sealed for the hub in
//! the same transaction, sequence numbers kept across a restart.

use std::collections::HashMap;

use drivers::{Quality, Reason, Sample, TagName, Timestamp, Value};
use edge_node::alarm::{self, AlarmEngine};
use edge_node::history::{HistoryOptions, HistoryStore};
use firmware_config::WhenFull;
use models::alarm::machine::Event;
use protocol::v1::{AlarmEvent, Body};

const T0: i64 = 1_796_000_000_000; // 2026-12

fn config(dir: &std::path::Path) -> firmware_config::EdgeConfig {
    let text = format!(
        r#"schema_version = 1
[node]
site_id = "s"
node_id = "n"
[storage]
path = "{}"
[[device]]
name = "plc"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = 1502
[[tag]]
name = "temp"
device = "plc"
area = "input"
address = 0
type = "u16"
[[tag]]
name = "pump"
device = "plc"
area = "input"
address = 1
type = "u16"
[[alarm]]
name = "temp.hi"
type = "hi"
tag = "temp"
limit = 100.0
deadband = 5.0
on_delay = "10s"
priority = "high"
stale_after = "1m"
[[alarm]]
name = "temp.bad"
type = "quality"
tag = "temp"
priority = "low"
[[alarm]]
name = "flow.lo"
type = "lo"
tag = "temp"
limit = 20.0
suppress_when = "pump"
suppress_equals = 0
"#,
        dir.join("history.db").display()
    );
    firmware_config::load_str(&dir.join("edge.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn sample(tag: &str, ts: i64, v: Option<f64>) -> Sample {
    Sample {
        tag: TagName::from(tag),
        ts: Timestamp(ts),
        value: v.map(Value::F64),
        quality: if v.is_some() {
            Quality::Good
        } else {
            Quality::Bad(Reason::Timeout)
        },
    }
}

fn names(events: &[AlarmEvent]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| (e.alarm.clone(), e.change.clone(), e.state.clone()))
        .collect()
}

#[test]
fn alarms_journal_every_change_seal_it_for_the_hub_and_keep_counting_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let db = dir.path().join("history.db");
    HistoryStore::open(&HistoryOptions::new(&db))
        .unwrap()
        .close()
        .unwrap();
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let mut engine = AlarmEngine::new(cfg.alarms.clone(), &alarm::last_seqs(&conn).unwrap(), T0);
    let mut all = Vec::new();
    // The pump runs; the temperature rises past 100 for 10 s.
    all.extend(engine.on_samples(
        &[
            sample("pump", T0, Some(1.0)),
            sample("temp", T0, Some(50.0)),
        ],
        T0,
    ));
    all.extend(engine.on_samples(&[sample("temp", T0 + 1_000, Some(104.0))], T0 + 1_000));
    assert!(engine.tick(T0 + 10_000).is_empty(), "on-delay not over");
    let on = engine.tick(T0 + 11_000);
    assert_eq!(
        names(&on),
        vec![(
            "temp.hi".into(),
            "activated".into(),
            "unacknowledged".into()
        )]
    );
    assert_eq!((on[0].priority, on[0].value), (3, Some(104.0)));
    all.extend(on);
    // An operator acknowledges.
    let ack = engine
        .act(
            "temp.hi",
            &Event::Ack {
                by: "op".into(),
                comment: Some("on it".into()),
            },
            T0 + 12_000,
        )
        .unwrap();
    assert_eq!(
        names(&ack),
        vec![(
            "temp.hi".into(),
            "acknowledged".into(),
            "acknowledged".into()
        )]
    );
    assert_eq!(ack[0].by.as_deref(), Some("op"));
    all.extend(ack);
    // Inside the deadband it stays; below it clears at once (no off-delay).
    assert!(
        engine
            .on_samples(&[sample("temp", T0 + 13_000, Some(97.0))], T0 + 13_000)
            .is_empty()
    );
    let off = engine.on_samples(&[sample("temp", T0 + 14_000, Some(90.0))], T0 + 14_000);
    assert_eq!(
        names(&off),
        vec![("temp.hi".into(), "cleared".into(), "normal".into())]
    );
    all.extend(off);
    // Bad quality raises the quality alarm; the limit alarm keeps its state.
    let bad = engine.on_samples(&[sample("temp", T0 + 15_000, None)], T0 + 15_000);
    assert_eq!(
        names(&bad),
        vec![(
            "temp.bad".into(),
            "activated".into(),
            "unacknowledged".into()
        )]
    );
    all.extend(bad);
    // The pump stops: low flow is suppressed by design, still evaluated.
    let sup = engine.on_samples(
        &[
            sample("pump", T0 + 16_000, Some(0.0)),
            sample("temp", T0 + 16_000, Some(10.0)),
        ],
        T0 + 16_000,
    );
    assert_eq!(
        names(&sup),
        vec![
            ("flow.lo".into(), "suppressed".into(), "suppressed".into()),
            (
                "temp.bad".into(),
                "cleared".into(),
                "returned_unacknowledged".into()
            ),
            ("flow.lo".into(), "activated".into(), "suppressed".into()),
        ]
    );
    all.extend(sup);
    // No sample for over a minute: stale input for the limit alarm.
    let stale = engine.tick(T0 + 80_000);
    assert!(
        stale.is_empty(),
        "a stale input keeps the last known condition: {stale:?}"
    );

    // Journaled and sealed together; what the hub gets passes its checks.
    let rep = alarm::store(&mut conn, &all, Some(&policy), T0 + 80_000)
        .unwrap()
        .unwrap();
    assert_eq!(rep.sealed.len(), 1);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM alarm_journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as usize, all.len());
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM outbox", [], |r| r.get(0))
        .unwrap();
    let batch: protocol::v1::Batch = postcard::from_bytes(&payload).unwrap();
    protocol::check::batch(&batch).unwrap();
    let Body::Alarms(sent) = batch.body else {
        panic!("an alarm batch")
    };
    assert_eq!(sent, all);
    // Per alarm, sequence numbers 1, 2, 3 … without gaps.
    let mut per: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &all {
        per.entry(e.alarm.clone()).or_default().push(e.seq);
    }
    for (a, seqs) in &per {
        assert_eq!(*seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{a}");
    }

    // A restart continues each alarm's sequence.
    let mut again = AlarmEngine::new(
        cfg.alarms.clone(),
        &alarm::last_seqs(&conn).unwrap(),
        T0 + 90_000,
    );
    again.on_samples(&[sample("temp", T0 + 90_000, Some(120.0))], T0 + 90_000);
    let on = again.tick(T0 + 101_000);
    assert_eq!(on[0].alarm, "temp.hi");
    assert_eq!(on[0].seq, per["temp.hi"].len() as u64 + 1);
}

/// The task end to end: samples in through its channel, the journal
/// written by it, and a flood (more than 10 new alarms in 10 minutes)
/// announced in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_task_journals_what_it_sees_and_announces_a_flood() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let mut text = format!(
        "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"flood\"\n[storage]\npath = \"{}\"\n\
         [[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = 1502\n",
        db.display()
    );
    for k in 0..12 {
        text += &format!(
            "[[tag]]\nname = \"flood{k}\"\ndevice = \"plc\"\narea = \"input\"\naddress = {k}\ntype = \"u16\"\n\
             [[alarm]]\nname = \"flood{k}.bad\"\ntype = \"quality\"\ntag = \"flood{k}\"\n"
        );
    }
    let cfg = firmware_config::load_str(&dir.path().join("edge.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    HistoryStore::open(&HistoryOptions::new(&db))
        .unwrap()
        .close()
        .unwrap();
    let before = crate::logs::lines("ALARM FLOOD").len();
    let (cfg_tx, cfg_rx) = tokio::sync::watch::channel(std::sync::Arc::new(cfg));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let cancel = tokio_util::sync::CancellationToken::new();
    let (handle, board) = alarm::board::channel();
    let mut notices = handle.notices.subscribe();
    let inputs = alarm::AlarmInputs {
        models: edge_node::forecast::Models::default(),
        board,
    };
    let task = tokio::spawn(alarm::run(
        cfg_rx,
        rx,
        db.clone(),
        None,
        inputs,
        cancel.clone(),
    ));
    let now = drivers::Timestamp::now().as_millis();
    let bad: Vec<Sample> = (0..12)
        .map(|k| sample(&format!("flood{k}"), now, None))
        .collect();
    tx.send(bad).await.unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut rows = 0i64;
    for _ in 0..100 {
        rows = conn
            .query_row(
                "SELECT count(*) FROM alarm_journal WHERE change = 'activated'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if rows == 12 && crate::logs::lines("ALARM FLOOD").len() > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows, 12);
    assert_eq!(crate::logs::lines("ALARM FLOOD").len() - before, 1);
    // The HMI's side: twelve numbered notices, no gap; the board shows the
    // flood; an operator's acknowledgement is journaled and answered.
    let mut seqs = Vec::new();
    while seqs.len() < 12 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), notices.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.change, "activated");
        seqs.push(n.seq);
    }
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
    let snap = handle.snapshot();
    assert_eq!(snap.unacknowledged(), 12);
    assert!(snap.new_last_10min >= 12, "{}", snap.new_last_10min);
    let view = handle
        .act(
            "flood3.bad",
            models::alarm::machine::Event::Ack {
                by: "op".into(),
                comment: Some("seen".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!((view.state, view.acked), ("acknowledged", true));
    // "Active for" counts from the activation, not from the acknowledgement.
    let before = snap.views.iter().find(|v| v.name == "flood3.bad").unwrap();
    assert!(before.since_ms.is_some());
    assert_eq!(view.since_ms, before.since_ms);
    let by: String = conn
        .query_row(
            "SELECT by_user FROM alarm_journal WHERE alarm = 'flood3.bad' AND change = 'acknowledged'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "op");
    assert!(matches!(
        handle
            .act(
                "nope",
                models::alarm::machine::Event::Unshelve { by: "op".into() }
            )
            .await,
        Err(alarm::board::CommandError::Unknown(_))
    ));
    cancel.cancel();
    task.await.unwrap().unwrap();
    drop(cfg_tx);
}

/// A predictive alarm is active while the newest forecast crosses its
/// limit within the horizon, says when, and counts that time down.
#[test]
fn a_predictive_alarm_follows_the_forecast_and_says_when_it_crosses() {
    use models::alarm::machine::{AlarmSpec, Deadband, Detector, Priority, Side};
    let def = firmware_config::AlarmDef {
        name: "fuel.forecast_hi".into(),
        tag: "fuel".into(),
        kind: "predictive".into(),
        spec: AlarmSpec {
            detector: Detector::Limit {
                side: Side::Above,
                limit: 100.0,
                deadband: Deadband::Absolute(1.0),
            },
            priority: Priority::Medium,
            on_delay_ms: 0,
            off_delay_ms: 0,
            latched: false,
            realarm_ms: None,
        },
        model: Some("m".into()),
        stale_after: None,
        suppress_when: None,
        message: None,
    };
    let mut engine = AlarmEngine::new(vec![def], &Default::default(), T0);
    let units = std::collections::HashMap::new();
    let crossing = |_: &str| Some((T0, 60_000, vec![90.0, 95.0, 105.0, 110.0]));
    let on = engine.on_forecasts(crossing, T0);
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].change, "activated");
    assert_eq!(
        on[0].value,
        Some(110.0),
        "the forecast's extreme is the input"
    );
    let v = &engine.views(&units, T0)[0];
    let p = v.predicted.as_ref().unwrap();
    assert_eq!(
        (p.crosses_at_ms, p.crosses_in_s),
        (Some(T0 + 120_000), Some(120.0))
    );
    assert_eq!(
        engine.views(&units, T0 + 60_000)[0]
            .predicted
            .as_ref()
            .unwrap()
            .crosses_in_s,
        Some(60.0)
    );
    // The same forecast again changes nothing; a new one inside the limit clears.
    assert!(engine.on_forecasts(crossing, T0 + 1000).is_empty());
    let inside = |_: &str| Some((T0 + 60_000, 60_000, vec![90.0, 95.0, 96.0]));
    let off = engine.on_forecasts(inside, T0 + 60_000);
    assert_eq!(off[0].change, "cleared");
    let p = engine.views(&units, T0 + 60_000)[0]
        .predicted
        .clone()
        .unwrap();
    assert_eq!((p.crosses_at_ms, p.forecast_value), (None, 96.0));
}
