//! `apos-bench alarms`: the alarm engine's evaluation rate for many alarm
//! definitions on one core (docs/benchmarks.md).
//!
//! 10,000 alarms of mixed kinds (HI/HIHI/LO with deadband and delays, rate,
//! discrete, quality), one input tag each. Every round feeds one sample per
//! tag through `AlarmEngine::on_samples` and one `tick`; the values move so a
//! few percent of the alarms change state each round, as in a plant upset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::{Quality, Reason, Sample, Timestamp, Value};
use edge_node::alarm::AlarmEngine;
use firmware_config::AlarmDef;
use models::alarm::machine::{AlarmSpec, Deadband, Detector, Priority, Side};

#[derive(Debug)]
pub struct Report {
    pub alarms: usize,
    pub rounds: u64,
    pub evaluations: u64,
    pub ticks: u64,
    pub journal_entries: u64,
    pub elapsed: Duration,
}

fn def(i: usize) -> AlarmDef {
    let (kind, detector) = match i % 6 {
        0 => (
            "hi",
            Detector::Limit {
                side: Side::Above,
                limit: 80.0,
                deadband: Deadband::Absolute(1.0),
            },
        ),
        1 => (
            "hihi",
            Detector::Limit {
                side: Side::Above,
                limit: 95.0,
                deadband: Deadband::Absolute(1.0),
            },
        ),
        2 => (
            "lo",
            Detector::Limit {
                side: Side::Below,
                limit: 10.0,
                deadband: Deadband::Absolute(1.0),
            },
        ),
        3 => ("rate", Detector::Rate { per_s: 20.0 }),
        4 => ("discrete", Detector::Discrete { equals: 3.0 }),
        _ => ("quality", Detector::Quality),
    };
    AlarmDef {
        name: format!("a{i}"),
        tag: format!("t{i}"),
        kind: kind.into(),
        spec: AlarmSpec {
            detector,
            priority: [
                Priority::Low,
                Priority::Medium,
                Priority::High,
                Priority::Urgent,
            ][i % 4],
            on_delay_ms: if i.is_multiple_of(2) { 2_000 } else { 0 },
            off_delay_ms: if i.is_multiple_of(3) { 1_000 } else { 0 },
            latched: i.is_multiple_of(10),
            realarm_ms: None,
        },
        model: None,
        stale_after: Some(Duration::from_secs(30)),
        suppress_when: None,
        message: None,
    }
}

/// Run `rounds` rounds over `alarms` alarms, on the calling thread.
pub fn run(alarms: usize, rounds: u64) -> Report {
    let defs: Vec<AlarmDef> = (0..alarms).map(def).collect();
    let tags: Vec<Arc<str>> = (0..alarms).map(|i| Arc::from(format!("t{i}"))).collect();
    let t0 = Timestamp::now().as_millis();
    let mut engine = AlarmEngine::new(defs, &Default::default(), t0);
    let mut journal = 0u64;
    let mut evaluations = 0u64;
    let mut batch: Vec<Sample> = Vec::with_capacity(alarms);
    let start = Instant::now();
    for r in 0..rounds {
        let now = t0 + r as i64 * 1000;
        batch.clear();
        for (i, tag) in tags.iter().enumerate() {
            // A slow sine per tag, phase-shifted, crossing the limits now and then.
            let x = 50.0 + 48.0 * ((r as f64 / 40.0) + i as f64 * 0.37).sin();
            let (value, quality) = match i % 6 {
                4 => (
                    Some(Value::I64(((r as usize + i) % 5) as i64)),
                    Quality::Good,
                ),
                5 if (r as usize + i).is_multiple_of(97) => (None, Quality::Bad(Reason::Timeout)),
                _ => (Some(Value::F64(x)), Quality::Good),
            };
            batch.push(Sample {
                tag: tag.clone(),
                ts: Timestamp(now),
                value,
                quality,
            });
        }
        journal += engine.on_samples(&batch, now).len() as u64;
        journal += engine.tick(now).len() as u64;
        evaluations += alarms as u64;
    }
    Report {
        alarms,
        rounds,
        evaluations,
        ticks: rounds * alarms as u64,
        journal_entries: journal,
        elapsed: start.elapsed(),
    }
}
