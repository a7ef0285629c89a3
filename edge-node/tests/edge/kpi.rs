//! The KPI engine over local history: a whole shift computed by hand (OEE
//! with a planned break, two faults, a stop and a 16-bit counter that
//! wraps), an edge outage showing up as coverage and quality, the values
//! stored and queued for the hub, and a restart that closes the same
//! window to the same value.

use std::path::Path;
use std::time::Duration;

use drivers::{Quality, Sample, TagName, Timestamp, Value};
use edge_node::history::{HistoryOptions, HistoryReader, HistoryStore};
use edge_node::kpi::{self, Engine, KpiStats};
use firmware_config::KpiSetup;
use models::calendar::CalendarKind;
use protocol::v1::{KpiQuality, KpiResult};

const MIN: i64 = 60_000;
const STEP: i64 = 10_000;

fn config(dir: &Path) -> firmware_config::EdgeConfig {
    config_with(dir, "1m", "")
}

fn config_with(dir: &Path, slice: &str, extra: &str) -> firmware_config::EdgeConfig {
    let text = config_text(dir, slice, extra);
    firmware_config::load_str(&dir.join("edge.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn config_text(dir: &Path, slice: &str, extra: &str) -> String {
    format!(
        r#"schema_version = 1
[node]
site_id = "s"
node_id = "n"
[storage]
path = "{}"
[calendar]
time_zone = "UTC"
shifts = [{{ name = "early", start = "06:00" }}, {{ name = "late", start = "14:00" }}, {{ name = "night", start = "22:00" }}]
# A 30-minute planned break one hour into every shift.
planned_stops = [
  {{ name = "b1", from = "07:00", to = "07:30" }},
  {{ name = "b2", from = "15:00", to = "15:30" }},
  {{ name = "b3", from = "23:00", to = "23:30" }},
]
[kpi_engine]
slice = "{slice}"
grace = "1s"
max_hold = "5m"
[[device]]
name = "plc"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = 1502
[[tag]]
name = "state"
device = "plc"
area = "input"
address = 0
type = "u16"
[[tag]]
name = "made"
device = "plc"
area = "input"
address = 1
type = "u16"
[[tag]]
name = "scrap"
device = "plc"
area = "input"
address = 2
type = "u16"
[[tag]]
name = "good"
device = "plc"
area = "input"
address = 3
type = "u16"
[[kpi]]
name = "line.oee"
type = "oee"
windows = ["1h", "shift"]
state_tag = "state"
running = [2]
fault = [3]
total_counter = "made"
reject_counter = "scrap"
counter_modulus = 65536
ideal_rate = 360.0
[[kpi]]
name = "line.rate"
type = "expression"
windows = ["shift"]
expr = "made.count / window_h"
# The same OEE from a PLC without a total counter (issue 15).
[[kpi]]
name = "line.oee_gr"
type = "oee"
windows = ["shift"]
state_tag = "state"
running = [2]
fault = [3]
good_counter = "good"
reject_counter = "scrap"
counter_modulus = 65536
ideal_rate = 360.0
[[kpi]]
name = "line.output"
type = "throughput"
windows = ["shift"]
state_tag = "state"
running = [2]
fault = [3]
total_counter = "made"
counter_modulus = 65536
ideal_rate = 360.0
# Wrapping counters in an expression (issue 15).
[[kpi]]
name = "line.made"
type = "expression"
windows = ["shift"]
expr = "made.delta"
counter_modulus = 65536
{extra}
"#,
        dir.join("history.db").display()
    )
}

/// The state in minute `m` of the shift: running, a fault 120–150, stopped
/// 300–320, a fault 400–410.
fn state_at(m: i64) -> u16 {
    match m {
        120..150 | 400..410 => 3,
        300..320 => 0,
        _ => 2,
    }
}

struct Expected {
    produced: f64,
    good: f64,
}

/// Write the shift `[s, s + 8 h)` every 10 s, skipping `[hole)` minutes;
/// one item per sample while running outside the break, every 20th scrap.
fn write_shift(db: &Path, s: i64, hole: std::ops::Range<i64>) -> Expected {
    let mut store = HistoryStore::open(&HistoryOptions::new(db)).unwrap();
    let (state, made, scrap, good): (TagName, TagName, TagName, TagName) =
        ("state".into(), "made".into(), "scrap".into(), "good".into());
    let sample = |tag: &TagName, ts: i64, v: u16| Sample {
        tag: tag.clone(),
        ts: Timestamp(ts),
        value: Some(Value::U64(u64::from(v))),
        quality: Quality::Good,
    };
    let (mut c, mut r, mut g) = (65_000u16, 7u16, 65_300u16);
    let mut exp = Expected {
        produced: 0.0,
        good: 0.0,
    };
    // What held before the shift began.
    let mut samples = vec![
        sample(&state, s - STEP, 2),
        sample(&made, s - STEP, c),
        sample(&scrap, s - STEP, r),
        sample(&good, s - STEP, g),
    ];
    for k in 0..(8 * 60 * MIN / STEP) {
        let ts = s + k * STEP;
        let m = (ts - s) / MIN;
        let st = state_at(m);
        if st == 2 && !(60..90).contains(&m) {
            c = c.wrapping_add(1);
            exp.produced += 1.0;
            if exp.produced as i64 % 20 == 0 {
                r += 1;
            } else {
                exp.good += 1.0;
                g = g.wrapping_add(1);
            }
        }
        if hole.contains(&m) {
            continue;
        }
        samples.push(sample(&state, ts, st));
        samples.push(sample(&made, ts, c));
        samples.push(sample(&scrap, ts, r));
        samples.push(sample(&good, ts, g));
    }
    store.insert(&samples).unwrap();
    store.close().unwrap();
    exp
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The previous shift's window (it has ended) and a setup. These tests
/// run on the wall clock: near a shift change, wait until it has passed,
/// so that "the previous shift" stays the same while a test runs.
fn kpi_setup(dir: &Path) -> (KpiSetup, models::calendar::CalendarWindow) {
    let cfg = config(dir);
    let setup = cfg.kpi.clone().unwrap();
    let cal = setup.calendar.calendar().unwrap();
    let mut current = cal.window_at(CalendarKind::Shift, now_ms());
    let left = current.end_ms - now_ms();
    if left < 90_000 {
        std::thread::sleep(Duration::from_millis(left.max(0) as u64 + 1000));
        current = cal.window_at(CalendarKind::Shift, now_ms());
    }
    let previous = cal.window_at(CalendarKind::Shift, current.start_ms - 1);
    assert_eq!(previous.end_ms - previous.start_ms, 8 * 60 * MIN);
    (setup, previous)
}

fn closed_shift<'a>(results: &'a [KpiResult], kpi: &str, start: i64) -> &'a KpiResult {
    results
        .iter()
        .find(|r| r.kpi == kpi && r.window == "shift" && r.closed && r.start_ms == start)
        .unwrap_or_else(|| panic!("no closed shift for {kpi} in {results:#?}"))
}

fn value(r: &KpiResult, name: &str) -> Option<f64> {
    r.values.iter().find(|v| v.0 == name).and_then(|v| v.1)
}

/// The previous shift written to history (without the minutes in `hole`)
/// and an engine advanced over it to now, the previous windows included.
struct Computed {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    shift: models::calendar::CalendarWindow,
    expected: Expected,
    engine: Engine,
    reader: HistoryReader,
    now: i64,
    boundary: i64,
    from: i64,
    stats: KpiStats,
    results: Vec<KpiResult>,
}

fn compute_previous_shift(hole: std::ops::Range<i64>) -> Computed {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let (setup, shift) = kpi_setup(dir.path());
    let expected = write_shift(&db, shift.start_ms, hole);
    let mut engine = Engine::new(setup).unwrap();
    let reader = HistoryReader::open(&db).unwrap();
    let now = now_ms();
    let boundary = engine.boundary(now);
    let from = engine.backfill_start(boundary, true);
    let stats = KpiStats::default();
    let results = engine
        .advance(&reader, from, boundary, now, &stats)
        .unwrap()
        .unwrap();
    Computed {
        dir,
        db,
        shift,
        expected,
        engine,
        reader,
        now,
        boundary,
        from,
        stats,
        results,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_shift_of_history_gives_the_oee_computed_by_hand() {
    let Computed {
        dir,
        db,
        shift,
        expected: exp,
        engine,
        reader,
        now,
        boundary,
        from,
        stats,
        results,
    } = compute_previous_shift(0..0);
    assert!(from <= shift.start_ms);
    let r = closed_shift(&results, "line.oee", shift.start_ms);
    // Planned busy 480 − 30 = 450 min; down (fault) 30 + 10; stopped 20.
    let (pbt, adot, apt) = (450.0 * 60.0, 40.0 * 60.0, 390.0 * 60.0);
    assert_eq!(value(r, "planned_busy_s"), Some(pbt));
    assert_eq!(value(r, "down_s"), Some(adot));
    assert_eq!(value(r, "run_s"), Some(apt));
    assert_eq!(value(r, "failures"), Some(2.0));
    assert_eq!(value(r, "produced"), Some(exp.produced));
    assert_eq!(value(r, "good"), Some(exp.good));
    assert!(exp.produced > 536.0, "the counter wrapped past 65535");
    let availability = apt / pbt;
    let performance = exp.produced * 10.0 / apt;
    let quality = exp.good / exp.produced;
    assert!(close(value(r, "availability").unwrap(), availability));
    assert!(close(value(r, "performance").unwrap(), performance));
    assert!(close(value(r, "quality").unwrap(), quality));
    assert!(close(
        value(r, "oee").unwrap(),
        availability * performance * quality
    ));
    assert!(close(value(r, "mtbf_s").unwrap(), apt / 2.0));
    assert!(close(value(r, "mttr_s").unwrap(), adot / 2.0));
    assert_eq!((r.coverage, r.quality), (1.0, KpiQuality::Good));
    assert_eq!(r.end_ms - r.start_ms, 8 * 60 * MIN);
    // The expression sees the window's sample count and length.
    let e = closed_shift(&results, "line.rate", shift.start_ms);
    assert!(close(e.values[0].1.unwrap(), 2880.0 / 8.0));
    // A clock that jumps back, or days ahead, makes the engine start over.
    assert!(!engine.must_restart(boundary + 60_000));
    assert!(engine.must_restart(boundary - 60_000));
    assert!(engine.must_restart(boundary + 9 * 86_400_000));
    // The current windows come too, not closed.
    assert!(
        results
            .iter()
            .any(|r| r.kpi == "line.oee" && r.window == "1h" && !r.closed)
    );

    // Stored, and queued for the hub in the same transaction.
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: firmware_config::WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let rep = kpi::store(
        &mut conn,
        &results,
        Some(&policy),
        now,
        Duration::from_secs(86_400),
    )
    .unwrap()
    .unwrap();
    assert_eq!(rep.sealed.len(), 1);
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM outbox", [], |r| r.get(0))
        .unwrap();
    let batch: protocol::v1::Batch = postcard::from_bytes(&payload).unwrap();
    let protocol::v1::Body::Kpis(sent) = batch.body else {
        panic!("a KPI batch")
    };
    assert_eq!(sent, results);
    let stored = kpi::stored(&conn, 5).unwrap();
    let row = stored
        .iter()
        .find(|s| s.kpi == "line.oee" && s.window == "shift" && s.closed)
        .unwrap();
    assert!(close(row.value.unwrap(), value(r, "oee").unwrap()));

    // A restart closes the same shift again, to the same value.
    drop(engine);
    let (setup2, _) = kpi_setup(dir.path());
    let mut again = Engine::new(setup2).unwrap();
    let results2 = again
        .advance(&reader, from, boundary, now, &stats)
        .unwrap()
        .unwrap();
    assert_eq!(closed_shift(&results2, "line.oee", shift.start_ms), r);
}

#[test]
fn an_outage_lowers_coverage_and_flags_the_value() {
    // No samples for minutes 200–240 (the edge was down).
    let Computed { shift, results, .. } = compute_previous_shift(200..240);
    let r = closed_shift(&results, "line.oee", shift.start_ms);
    // The last sample before the hole is at 199:50; held for 5 min, the
    // state is unknown from 204:50 to 240:00.
    let unknown_s = (240.0 - 204.0 - 50.0 / 60.0) * 60.0;
    let coverage = (450.0 * 60.0 - unknown_s) / (450.0 * 60.0);
    assert!(close(r.coverage, coverage), "{} vs {coverage}", r.coverage);
    assert_eq!(r.quality, KpiQuality::Uncertain);
    // Nothing produced in the hole is lost: the counter's jump is counted
    // after it (the same total as without the outage).
    let full = {
        let d2 = tempfile::tempdir().unwrap();
        write_shift(&d2.path().join("history.db"), shift.start_ms, 0..0).produced
    };
    assert_eq!(value(r, "produced"), Some(full));
    // The machine ran at nameplate through the hole, more than in the
    // known time (which had faults). Issue 15: performance came out above
    // 100 % (the hole was credited with run time at the known
    // availability, too little for what it made) and per-run-hour
    // throughput divided the hole's production by the known run time
    // alone. Now the credited run time is the least that explains the
    // count at nameplate: every factor is the truth.
    let (pbt, apt) = (450.0 * 60.0, 390.0 * 60.0);
    assert!(close(value(r, "performance").unwrap(), 1.0), "{r:#?}");
    assert!(
        close(value(r, "availability").unwrap(), apt / pbt),
        "{r:#?}"
    );
    assert!(close(
        value(r, "run_s").unwrap() + value(r, "run_in_gaps_s").unwrap(),
        apt
    ));
    assert_eq!(value(r, "above_nameplate"), Some(0.0));
    let q = full.round() as i64;
    assert!(q > 0);
    let t = closed_shift(&results, "line.output", shift.start_ms);
    assert!(close(value(t, "per_run_hour").unwrap(), 360.0), "{t:#?}");
    assert!(close(value(t, "produced").unwrap(), full));
    // Coverage states both denominators.
    assert!(close(value(r, "state_coverage").unwrap(), coverage));
    assert!(value(r, "counter_coverage").unwrap() < 1.0);
}

/// Issue 15: a PLC with good and reject counters but no total gives the
/// same OEE as total and rejects; `delta` in an expression wraps at the
/// KPI's `counter_modulus` instead of losing the counts as a reset.
#[test]
fn good_and_reject_counters_and_wrapping_expression_counters() {
    let Computed {
        shift,
        expected,
        results,
        ..
    } = compute_previous_shift(0..0);
    let a = closed_shift(&results, "line.oee", shift.start_ms);
    let b = closed_shift(&results, "line.oee_gr", shift.start_ms);
    for name in [
        "oee",
        "availability",
        "performance",
        "quality",
        "produced",
        "good",
    ] {
        assert!(
            close(value(a, name).unwrap(), value(b, name).unwrap()),
            "{name}: {a:#?} vs {b:#?}"
        );
    }
    assert_eq!(value(b, "produced"), Some(expected.produced));
    assert_eq!(b.quality, KpiQuality::Good);
    // `made` wrapped past 65535 during the shift.
    let e = closed_shift(&results, "line.made", shift.start_ms);
    assert_eq!(e.values[0].1, Some(expected.produced), "{e:#?}");
    assert_eq!(e.quality, KpiQuality::Good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_ticks_every_slice_and_picks_up_a_reloaded_kpi() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let (_, shift) = kpi_setup(dir.path());
    write_shift(&db, shift.start_ms, 0..0);
    let cfg = config_with(dir.path(), "1s", "");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(cfg));
    let board = kpi::KpiBoard::default();
    let stats = Arc::new(KpiStats::default());
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(kpi::run(
        rx,
        db.clone(),
        None,
        board.clone(),
        stats.clone(),
        cancel.clone(),
    ));
    let wait_for = |kpi: &'static str| {
        let board = board.clone();
        async move {
            // Up to a minute: the first tick backfills up to two shifts of 1 s slices.
            for _ in 0..600 {
                if let Some(r) = board.get(kpi, "shift") {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{kpi} never computed: {:?}", board.all());
        }
    };
    let oee = wait_for("line.oee").await;
    assert!(!oee.closed);
    assert_eq!(oee.start_ms, shift.end_ms, "the current shift");
    // The current shift has no samples after the previous one ended: once
    // the last state's hold (5 min) has run out, the state is unknown, so
    // no OEE and a Bad flag, not a number.
    if now_ms() - oee.start_ms > 6 * MIN {
        assert_eq!(oee.quality, KpiQuality::Bad);
    }
    // First run on this database: the previous shift is not closed (the
    // engine may have seen only its end).
    let closed = |db: &Path| {
        let conn = rusqlite::Connection::open(db).unwrap();
        kpi::stored(&conn, 1)
            .unwrap()
            .into_iter()
            .find(|s| s.kpi == "line.oee" && s.window == "shift" && s.closed)
    };
    assert!(closed(&db).is_none());
    // A reload adds a KPI; the task rebuilds its engine.
    let extra = r#"
[[kpi]]
name = "line.avail"
type = "reliability"
windows = ["shift"]
state_tag = "state"
running = [2]
fault = [3]
"#;
    tx.send(Arc::new(config_with(dir.path(), "1s", extra)))
        .unwrap();
    wait_for("line.avail").await;
    // Ticks keep coming, one per slice.
    let before = stats.slices.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = stats.slices.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before, "{before} → {after}");
    // The rebuilt engine ran before on this database: it recomputes the
    // previous shift from history, whole, and closes it.
    let row = closed(&db).unwrap();
    assert_eq!(
        (row.start_ms, row.quality.as_str(), row.coverage),
        (shift.start_ms, "good", 1.0)
    );
    assert!(row.value.is_some() && row.label == shift.label, "{row:?}");
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn a_window_first_seen_midway_is_never_reported_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let (setup, shift) = kpi_setup(dir.path());
    write_shift(&db, shift.start_ms, 0..0);
    let mut engine = Engine::new(setup).unwrap();
    let reader = HistoryReader::open(&db).unwrap();
    let now = now_ms();
    // Start reading 30 minutes into the shift: its sum would miss them.
    let results = engine
        .advance(
            &reader,
            shift.start_ms + 30 * MIN,
            shift.end_ms + 10 * MIN,
            now,
            &KpiStats::default(),
        )
        .unwrap()
        .unwrap();
    assert!(
        !results.iter().any(|r| r.closed),
        "{:#?}",
        results.iter().filter(|r| r.closed).collect::<Vec<_>>()
    );
    // The next shift, seen from its start, is current and complete so far.
    assert!(
        results
            .iter()
            .any(|r| r.window == "shift" && r.start_ms == shift.end_ms && !r.closed)
    );
}

#[test]
fn apos_edge_kpi_lists_current_and_closed_windows() {
    let Computed {
        dir,
        db,
        shift,
        now,
        results,
        ..
    } = compute_previous_shift(0..0);
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    kpi::store(&mut conn, &results, None, now, Duration::from_secs(86_400)).unwrap();
    let oee = value(closed_shift(&results, "line.oee", shift.start_ms), "oee").unwrap();
    // The binary reads the same database through the same config.
    let toml = dir.path().join("edge.toml");
    std::fs::write(&toml, config_text(dir.path(), "1m", "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apos-edge"))
        .args(["kpi", "--config"])
        .arg(&toml)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("line.oee") && l.contains(&shift.label) && l.contains("closed"))
        .unwrap_or_else(|| panic!("no closed shift listed:\n{stdout}"));
    assert!(line.contains(&format!("{oee:.4}")), "{line}");
    assert!(stdout.contains("(current, so far)"), "{stdout}");
    // Issue 15: every row says what span it covers, rolling ones included.
    let span = |ms: i64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
            .to_string()
    };
    assert!(
        stdout.contains(&format!(
            "{} – {}",
            span(shift.start_ms),
            span(shift.end_ms)
        )),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let rolling = lines
        .iter()
        .position(|l| l.starts_with("line.oee ") && l.contains("(rolling)"))
        .unwrap_or_else(|| panic!("no rolling row:\n{stdout}"));
    assert!(
        lines[rolling + 1].contains("Z – "),
        "{}",
        lines[rolling + 1]
    );
    // The current shift has no samples: its Bad value is not printed as a number.
    let current = stdout
        .lines()
        .find(|l| l.starts_with("line.oee ") && l.contains("shift") && l.contains("(current"))
        .unwrap_or_else(|| panic!("no current shift row:\n{stdout}"));
    if current.contains("bad") {
        assert!(current.contains("no reliable value"), "{current}");
    }
}

#[test]
fn after_a_long_outage_every_window_that_ended_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let (setup, previous) = kpi_setup(dir.path());
    let cal = setup.calendar.calendar().unwrap();
    // The edge last closed the shift before `two_back`, then was down for
    // two shifts: history exists for `two_back`, nothing for `previous`.
    let two_back = cal.window_at(CalendarKind::Shift, previous.start_ms - 1);
    write_shift(&db, two_back.start_ms, 0..0);
    let mut engine = Engine::new(setup).unwrap();
    let reader = HistoryReader::open(&db).unwrap();
    let now = now_ms();
    let boundary = engine.boundary(now);
    let closed: std::collections::HashMap<String, i64> =
        [("shift".to_string(), two_back.start_ms)].into();
    let from = engine.backfill_from(boundary, &closed, true);
    assert!(from <= two_back.start_ms);
    let results = engine
        .advance(&reader, from, boundary, now, &KpiStats::default())
        .unwrap()
        .unwrap();
    let r2 = closed_shift(&results, "line.oee", two_back.start_ms);
    assert_eq!((r2.quality, r2.coverage), (KpiQuality::Good, 1.0));
    // The shift with no history at all is closed too, and says so.
    let r1 = closed_shift(&results, "line.oee", previous.start_ms);
    assert_eq!(r1.quality, KpiQuality::Bad);
    assert!(r1.coverage < 0.02, "{}", r1.coverage);
}

/// Issue 15: a shift's final value was ready at its last slice, but the
/// window was marked closed only when the next window's first slice was
/// added (65 s late with 1-minute slices, an hour late with `slice =
/// "1h"`). Advanced exactly to the shift's end, the engine closes it.
#[test]
fn a_shift_closes_with_its_last_slice_not_one_slice_later() {
    for slice in ["1m", "1h"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.db");
        let (_, shift) = kpi_setup(dir.path());
        let setup = config_with(dir.path(), slice, "").kpi.unwrap();
        write_shift(&db, shift.start_ms, 0..0);
        let mut engine = Engine::new(setup).unwrap();
        let reader = HistoryReader::open(&db).unwrap();
        let stats = KpiStats::default();
        let results = engine
            .advance(&reader, shift.start_ms, shift.end_ms, now_ms(), &stats)
            .unwrap()
            .unwrap();
        let r = closed_shift(&results, "line.oee", shift.start_ms);
        assert_eq!(r.until_ms, shift.end_ms, "slice {slice}");
        // Closed once: the next slice does not close it again.
        let later = engine
            .advance(
                &reader,
                shift.start_ms,
                shift.end_ms + 3_600_000,
                now_ms(),
                &stats,
            )
            .unwrap()
            .unwrap();
        assert!(
            !later
                .iter()
                .any(|r| r.closed && r.window == "shift" && r.start_ms == shift.start_ms),
            "slice {slice}: closed twice"
        );
    }
}
