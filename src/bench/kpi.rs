//! `apos-bench kpi`: the KPI engine's cost for 10,000 tags sampled every
//! second, against SQLite aggregating the same rows itself (the peer: a
//! `GROUP BY` per tag and minute, the least any engine reading this history
//! has to do).
//!
//! The tag set: a quarter of the KPIs are OEE (a state tag and two 16-bit
//! counters each), the rest custom expressions over one analog tag; every
//! KPI over a rolling hour, the shift and the day. The history is written
//! first (every tag, every second: the worst case for report-by-exception
//! storage), then the engine computes it slice by slice.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use drivers::{Quality, Sample, TagName, Timestamp, Value};
use edge_node::history::{HistoryOptions, HistoryReader, HistoryStore};
use edge_node::kpi::{Engine, KpiStats};
use firmware_config::{CalendarSpec, KpiDef, KpiSetup, KpiWindow};
use models::calendar::{CalendarKind, Shift};
use models::expr::KpiExpr;
use models::kpi::{GoodCount, KpiKind, StateInput, StateMap};

#[derive(Debug)]
pub struct KpiBench {
    pub tags: usize,
    pub kpis: usize,
    pub seconds: i64,
    pub samples: u64,
    pub write: Duration,
    /// The engine over the whole span: reading + computing.
    pub engine_total: Duration,
    /// Of which computing (parts, windows), without the SQLite reads.
    pub engine_compute: Duration,
    pub slices: u64,
    /// One steady-state tick (the last slice, windows included).
    pub tick: Duration,
    /// SQLite's own GROUP BY over the same rows.
    pub sqlite_group_by: Duration,
    pub group_rows: u64,
}

fn setup(tags: usize, slice: Duration) -> anyhow::Result<(KpiSetup, Vec<String>)> {
    let oee = tags / 4 / 3;
    let expr = tags - oee * 3;
    let mut names = Vec::with_capacity(tags);
    let mut kpis = Vec::with_capacity(oee + expr);
    let windows = vec![
        KpiWindow::Rolling(Duration::from_secs(3600)),
        KpiWindow::Calendar(CalendarKind::Shift),
        KpiWindow::Calendar(CalendarKind::Day),
    ];
    for i in 0..oee {
        let (s, t, r) = (
            format!("m{i}.state"),
            format!("m{i}.made"),
            format!("m{i}.scrap"),
        );
        names.extend([s.clone(), t.clone(), r.clone()]);
        kpis.push(KpiDef {
            name: format!("m{i}.oee"),
            kind: KpiKind::Oee {
                state: StateInput {
                    tag: s,
                    map: StateMap {
                        running: vec![2],
                        fault: vec![3],
                        planned_stop: vec![],
                    },
                },
                total: t,
                good: GoodCount::Reject(r),
                modulus: Some(65536.0),
                pri_ms: 1000.0,
            },
            windows: windows.clone(),
            unit: None,
            description: None,
        });
    }
    for i in 0..expr {
        let a = format!("a{i}.value");
        let known = vec![format!("{a}.mean"), format!("{a}.max")];
        let e = KpiExpr::compile(&format!("{a}.mean * 2 - {a}.max / 10"), &known)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        names.push(a);
        kpis.push(KpiDef {
            name: format!("a{i}.kpi"),
            kind: KpiKind::Expression {
                expr: e,
                modulus: None,
            },
            windows: windows.clone(),
            unit: None,
            description: None,
        });
    }
    let shifts = [("early", 360), ("late", 840), ("night", 1320)]
        .map(|(n, m)| Shift {
            name: n.into(),
            start_min: m,
        })
        .to_vec();
    Ok((
        KpiSetup {
            calendar: CalendarSpec {
                time_zone: "UTC".into(),
                week_start: 0,
                shifts,
                planned_stops: vec![],
            },
            slice,
            grace: Duration::ZERO,
            max_hold: Duration::from_secs(300),
            kpis,
        },
        names,
    ))
}

fn write_history(db: &Path, names: &[String], start: i64, seconds: i64) -> anyhow::Result<u64> {
    let mut store = HistoryStore::open(&HistoryOptions::new(db))?;
    let tags: Vec<TagName> = names.iter().map(|n| TagName::from(n.as_str())).collect();
    let mut n = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for s in 0..seconds {
        let ts = start + s * 1000;
        let batch: Vec<Sample> = tags
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let v = match names[i].rsplit_once('.').map(|p| p.1) {
                    // A fault now and then (one second in 500).
                    Some("state") => Value::U64(if (x >> 40).is_multiple_of(500) { 3 } else { 2 }),
                    Some("made") => Value::U64(((s * 3 + i as i64 * 7919) % 65536) as u64),
                    Some("scrap") => Value::U64(((s / 20 + i as i64) % 65536) as u64),
                    _ => Value::F64(50.0 + 10.0 * ((s + i as i64) as f64 / 60.0).sin()),
                };
                Sample {
                    tag: tag.clone(),
                    ts: Timestamp(ts),
                    value: Some(v),
                    quality: Quality::Good,
                }
            })
            .collect();
        store.insert(&batch)?;
        n += batch.len() as u64;
    }
    store.merge()?;
    store.close()?;
    Ok(n)
}

pub fn run(tags: usize, minutes: i64) -> anyhow::Result<KpiBench> {
    let slice = Duration::from_secs(60);
    let (setup, names) = setup(tags, slice)?;
    let kpis = setup.kpis.len();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    // A whole number of minutes inside one UTC day, well in the past.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let day = 86_400_000;
    let start = (now / day - 1) * day + 8 * 3_600_000;
    let seconds = minutes * 60;
    eprintln!("writing {tags} tags × {seconds} s of history …");
    let t = Instant::now();
    let samples = write_history(&db, &names, start, seconds).context("writing the history")?;
    let write = t.elapsed();
    let end = start + seconds * 1000;

    eprintln!("KPI engine over {kpis} KPIs …");
    let reader = HistoryReader::open(&db)?;
    let mut engine = Engine::new(setup).map_err(|e| anyhow::anyhow!(e))?;
    let stats = KpiStats::default();
    let t = Instant::now();
    engine.advance(&reader, start, end - 60_000, now, &stats)?;
    // The last slice on its own: one steady-state tick, windows included.
    let t_tick = Instant::now();
    engine.advance(&reader, start, end, now, &stats)?;
    let tick = t_tick.elapsed();
    let engine_total = t.elapsed();
    let engine_compute =
        Duration::from_micros(stats.compute_us.load(std::sync::atomic::Ordering::Relaxed));
    let slices = stats.slices.load(std::sync::atomic::Ordering::Relaxed);

    eprintln!("SQLite GROUP BY over the same rows …");
    let conn = rusqlite::Connection::open(&db)?;
    let t = Instant::now();
    let mut st = conn.prepare(
        "SELECT tag_id, ts_ms / 60000, count(*), min(value), max(value), avg(value), max(ts_ms)
         FROM samples WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY 1, 2",
    )?;
    let mut group_rows = 0u64;
    let mut rows = st.query([start, end])?;
    while let Some(r) = rows.next()? {
        let _: Option<f64> = r.get(5)?;
        group_rows += 1;
    }
    let sqlite_group_by = t.elapsed();
    Ok(KpiBench {
        tags,
        kpis,
        seconds,
        samples,
        write,
        engine_total,
        engine_compute,
        slices,
        tick,
        sqlite_group_by,
        group_rows,
    })
}
