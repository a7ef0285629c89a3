//! `apos-bench anomalies`: the anomaly detector's precision and recall per
//! kind on the labelled set, and its throughput.
//!
//! The labelled set: the simulated plant ([`crate::plant::Plant`], stepped
//! offline, one second at a time, no servers) run for a few days per seed;
//! several tags averaged into 1-minute windows; anomalies of known kind,
//! time and size injected into each tag ([`models::analysis::labelled`]).
//! Windows around unit trips (the unit not running, and two hours of
//! restart after) are real process changes: no anomaly is injected there,
//! and detections there are counted apart. The same set drives
//! `tests/e2e/anomalies.rs`.

use std::time::Instant;

use models::analysis::anomaly::{Anomaly, AnomalyKind, DetectorConfig, detect};
use models::analysis::labelled::{Case, InjectConfig, KindScore, Label, evaluate, inject, matches};
use models::analysis::trend::has_cycle;

use crate::plant::{Plant, Snapshot, UnitState};

/// Windows per day (1-minute windows).
pub const DAY: usize = 1440;
/// A detection matches a label when their windows, the detection's widened
/// by this many windows on each side, overlap (and the kinds agree).
pub const TOLERANCE: usize = 10;
/// Windows blocked after the unit is back to running (restart transients).
const AFTER_TRIP: usize = 120;
/// Windows blocked before a trip (the 1-minute mean already sees it).
const BEFORE_TRIP: usize = 2;

/// How a tag is read from the plant's state.
pub type Reading = fn(&Snapshot) -> f64;

/// The plant tags of the set: (name, reading).
pub const TAGS: [(&str, Reading); 8] = [
    ("heater.outlet_temp", |s| s.outlet_temp),
    ("heater.inlet_temp", |s| s.inlet_temp),
    ("feed.rate", |s| s.feed_rate),
    ("heater.fuel_gas", |s| s.fuel_gas_flow),
    ("heater.excess_o2", |s| s.excess_o2),
    ("column.top_temp", |s| s.top_temp),
    ("naphtha.t95", |s| s.naphtha_t95),
    ("site.ambient_temp", |s| s.ambient_temp),
];

/// One tag of one plant run, in 1-minute means.
#[derive(Debug, Clone)]
pub struct BaseSeries {
    pub tag: &'static str,
    pub seed: u64,
    pub values: Vec<f64>,
    /// Windows of process events (trip, restart): see the module docs.
    pub blocked: Vec<bool>,
}

/// Run the plant `days` days from `seed` and average every tag of [`TAGS`]
/// over each minute.
pub fn plant_series(seed: u64, days: usize) -> Vec<BaseSeries> {
    let mut plant = Plant::new(seed);
    let windows = days * DAY;
    let mut sums = vec![vec![0.0; windows]; TAGS.len()];
    let mut event = vec![false; windows];
    for w in 0..windows {
        for _ in 0..60 {
            plant.step(1.0);
            let s = plant.snapshot();
            for (k, (_, read)) in TAGS.iter().enumerate() {
                sums[k][w] += read(s);
            }
            if s.state != UnitState::Running {
                event[w] = true;
            }
        }
    }
    let mut blocked = vec![false; windows];
    for (w, _) in event.iter().enumerate().filter(|(_, e)| **e) {
        let a = w.saturating_sub(BEFORE_TRIP);
        let b = (w + AFTER_TRIP + 1).min(windows);
        blocked[a..b].fill(true);
    }
    TAGS.iter()
        .zip(sums)
        .map(|((tag, _), sum)| BaseSeries {
            tag,
            seed,
            values: sum.into_iter().map(|v| v / 60.0).collect(),
            blocked: blocked.clone(),
        })
        .collect()
}

/// One series of the labelled set.
#[derive(Debug, Clone)]
pub struct LabelledSeries {
    pub base: BaseSeries,
    pub values: Vec<f64>,
    pub labels: Vec<Label>,
    /// `Some(DAY)` when the injected series has a daily cycle
    /// ([`has_cycle`]): what a caller would pass to [`detect`].
    pub period: Option<usize>,
}

/// The labelled set: every tag of `seeds` plant runs of `days` days, with
/// anomalies injected per [`InjectConfig`] (seeded from the run's seed and
/// the tag's index).
pub fn labelled_set(seeds: &[u64], days: usize, cfg: &InjectConfig) -> Vec<LabelledSeries> {
    let mut out = Vec::new();
    for &seed in seeds {
        for (k, base) in plant_series(seed, days).into_iter().enumerate() {
            let (values, labels) = inject(&base.values, &base.blocked, seed * 1000 + k as u64, cfg);
            let period = has_cycle(&values, DAY).then_some(DAY);
            out.push(LabelledSeries {
                base,
                values,
                labels,
                period,
            });
        }
    }
    out
}

/// The detector over a labelled set: detections per series.
pub fn run_detector(set: &[LabelledSeries], cfg: &DetectorConfig) -> Vec<Vec<Anomaly>> {
    set.iter()
        .map(|s| detect(&s.values, s.period, cfg))
        .collect()
}

/// Precision and recall per kind.
pub fn score(set: &[LabelledSeries], detections: &[Vec<Anomaly>]) -> Vec<KindScore> {
    let cases: Vec<Case<'_>> = set
        .iter()
        .zip(detections)
        .map(|(s, d)| Case {
            labels: &s.labels,
            detections: d,
            blocked: &s.base.blocked,
        })
        .collect();
    evaluate(&cases, TOLERANCE)
}

/// Detections on the clean base series (no injection), away from process
/// events: false alarms on normal operation, per kind.
pub fn clean_detections(set: &[LabelledSeries], cfg: &DetectorConfig) -> Vec<(AnomalyKind, usize)> {
    let mut counts: Vec<(AnomalyKind, usize)> = AnomalyKind::ALL.iter().map(|&k| (k, 0)).collect();
    for s in set {
        let period = has_cycle(&s.base.values, DAY).then_some(DAY);
        for d in detect(&s.base.values, period, cfg) {
            let a = d.start.saturating_sub(TOLERANCE);
            let b = (d.end + TOLERANCE).min(s.base.blocked.len());
            if s.base.blocked[a..b].iter().any(|&v| v) {
                continue;
            }
            if let Some(c) = counts.iter_mut().find(|c| c.0 == d.kind) {
                c.1 += 1;
            }
        }
    }
    counts
}

/// Arguments of the benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Plant runs (seeds 1..=N).
    #[arg(long, default_value_t = 6)]
    pub seeds: u64,
    /// Days per run (1-minute windows).
    #[arg(long, default_value_t = 4)]
    pub days: usize,
    /// Print every label and detection.
    #[arg(long)]
    pub verbose: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<()> {
    let seeds: Vec<u64> = (1..=args.seeds).collect();
    let t0 = Instant::now();
    let set = labelled_set(&seeds, args.days, &InjectConfig::default());
    let gen_s = t0.elapsed().as_secs_f64();
    let cfg = DetectorConfig::default();
    let points: usize = set.iter().map(|s| s.values.len()).sum();
    // Several passes so that the timing is not one short burst.
    let passes = 3;
    let t1 = Instant::now();
    let mut detections = Vec::new();
    for _ in 0..passes {
        detections = run_detector(&set, &cfg);
    }
    let det_s = t1.elapsed().as_secs_f64() / passes as f64;
    let scores = score(&set, &detections);
    let clean = clean_detections(&set, &cfg);
    let blocked: usize = set
        .iter()
        .map(|s| s.base.blocked.iter().filter(|&&b| b).count())
        .sum();

    if args.verbose {
        for (s, d) in set.iter().zip(&detections) {
            println!("{} seed {} period {:?}", s.base.tag, s.base.seed, s.period);
            for l in &s.labels {
                println!(
                    "  label {:?} {}..{} size {:.4} ({:.1})",
                    l.kind, l.start, l.end, l.size, l.relative
                );
            }
            for a in d {
                let mark = if s.labels.iter().any(|l| matches(a, l, TOLERANCE)) {
                    "ok"
                } else if s.base.blocked[a.start.saturating_sub(TOLERANCE)
                    ..(a.end + TOLERANCE).min(s.base.blocked.len())]
                    .iter()
                    .any(|&b| b)
                {
                    "event"
                } else {
                    "FALSE"
                };
                print!("{mark:>6}");
                println!(
                    "  found {:?} {}..{} size {:.4} score {:.1}",
                    a.kind, a.start, a.end, a.size, a.score
                );
            }
        }
    }
    println!(
        "labelled set: {} series ({} tags × {} plant runs × {} days of 1-minute windows), {} points, {:.1} % on process events; generated in {:.1} s",
        set.len(),
        TAGS.len(),
        seeds.len(),
        args.days,
        points,
        100.0 * blocked as f64 / points as f64,
        gen_s
    );
    println!("match tolerance: ±{TOLERANCE} windows, kinds must agree");
    println!(
        "{:<12} {:>7} {:>6} {:>6} {:>6} {:>9} {:>10} {:>7} {:>15}",
        "kind",
        "labels",
        "found",
        "true",
        "false",
        "on events",
        "precision",
        "recall",
        "clean false"
    );
    for s in &scores {
        let c = clean.iter().find(|c| c.0 == s.kind).map_or(0, |c| c.1);
        println!(
            "{:<12} {:>7} {:>6} {:>6} {:>6} {:>9} {:>10.3} {:>7.3} {:>15}",
            s.kind.as_str(),
            s.labels,
            s.found,
            s.true_detections,
            s.false_detections,
            s.on_events,
            s.precision,
            s.recall,
            c
        );
    }
    let clean_total: usize = clean.iter().map(|c| c.1).sum();
    println!(
        "clean plant data: {clean_total} detections away from process events over {:.1} tag-days",
        points as f64 / DAY as f64
    );
    println!(
        "detector: {:.3} s per pass over {} points = {:.0} points/s (this build's profile; {} series)",
        det_s,
        points,
        points as f64 / det_s,
        set.len()
    );
    Ok(())
}
