//! `apos-bench insights` (issue 19, docs/benchmarks.md): insight generation
//! over a fleet's week. Generates two weeks (the week and the one before,
//! which it is compared with) of a fleet into a temporary DuckDB file:
//! per node `--tags` tags of 10-minute windows, an OEE KPI in 8-hour
//! shifts and a throughput KPI in hours, one forecast model scored daily
//! over five weeks; some nodes with news (an OEE drop, a degraded
//! forecast, a gap, a stuck sensor). Then times `hub::insight::generate`
//! over the fleet (cold: the first run; warm: the median of the others).

use std::time::Instant;

use anyhow::Context as _;
use hub::insight::{self, Params};
use hub::store::{Incoming, Store};
use protocol::v1::{
    Batch, Body, Forecast, ForecastQuality, KpiQuality, KpiResult, Window, WindowSet,
};

/// Arguments of the benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Nodes in the fleet.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Tags per node.
    #[arg(long, default_value_t = 10)]
    tags: usize,
    /// Timed runs after the first.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
const WEEK: i64 = 7 * DAY;
/// Monday 2027-01-04 00:00 UTC: the week measured starts here.
const T0: i64 = 1_799_020_800_000;
const WIDTH: i64 = 600_000;

fn kpi(name: &str, win: &str, start: i64, len: i64, values: Vec<(&str, f64)>) -> KpiResult {
    KpiResult {
        kpi: name.into(),
        window: win.into(),
        label: String::new(),
        start_ms: start,
        end_ms: start + len,
        until_ms: start + len,
        closed: true,
        computed_ms: start + len,
        coverage: 1.0,
        quality: KpiQuality::Good,
        values: values
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .collect(),
        unit: None,
    }
}

/// One node's two weeks; `news` picks what is wrong with it (0 = nothing).
fn node(site: &str, name: &str, tags: usize, news: usize, seq: &mut u64) -> Vec<Incoming> {
    let mut out = Vec::new();
    let mut push = |body: Body, seq: &mut u64| {
        *seq += 1;
        out.push(Incoming {
            site: site.into(),
            node: name.into(),
            raw: Default::default(),
            received_ms: T0,
            batch: Batch {
                seq: *seq,
                created_ms: T0,
                body,
            },
        });
    };
    let names: Vec<String> = (0..tags).map(|k| format!("tag{k:02}")).collect();
    let mut sets = Vec::new();
    let mut t = T0 - WEEK;
    while t < T0 + WEEK {
        let gap = news == 3 && (T0 + 2 * DAY..T0 + 3 * DAY).contains(&t);
        if !gap {
            let day = (t % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
            let windows = names
                .iter()
                .enumerate()
                .map(|(k, tag)| {
                    let wiggle = ((t / WIDTH * (k as i64 + 3)) % 17) as f64 * 0.05;
                    let mut v = 100.0 + 10.0 * k as f64 + 5.0 * day.sin() + wiggle;
                    if news == 4 && k == 0 && t >= T0 + 3 * DAY {
                        v = 123.4;
                    }
                    Window {
                        tag: tag.clone(),
                        count: 10,
                        good: 10,
                        min: v - 0.5,
                        max: v + 0.5,
                        mean: v,
                        twa: v,
                        last: v,
                    }
                })
                .collect();
            sets.push(WindowSet {
                width_ms: WIDTH as u32,
                start_ms: t,
                windows,
            });
        }
        if sets.len() == 144 {
            push(Body::Aggregates(std::mem::take(&mut sets)), seq);
        }
        t += WIDTH;
    }
    if !sets.is_empty() {
        push(Body::Aggregates(sets), seq);
    }
    let mut kpis = Vec::new();
    for s in 0..42 {
        let start = T0 - WEEK + s * 8 * H;
        let a = if news == 1 && start >= T0 { 0.75 } else { 0.9 };
        kpis.push(kpi(
            "line.oee",
            "shift",
            start,
            8 * H,
            vec![
                ("oee", a * 0.9 * 0.99),
                ("availability", a),
                ("performance", 0.9),
                ("quality", 0.99),
                ("planned_busy_s", 28_800.0),
                ("produced", 1000.0),
                ("down_s", (1.0 - a) * 28_800.0),
                ("failures", 1.0),
            ],
        ));
    }
    for hr in 0..14 * 24 {
        let start = T0 - WEEK + hr * H;
        let v = 300.0 + ((hr * 7) % 11) as f64;
        kpis.push(kpi("line.rate", "1h", start, H, vec![("per_hour", v)]));
    }
    push(Body::Kpis(kpis), seq);
    let q = (0..35)
        .map(|d| {
            let origin = T0 - 4 * WEEK + d * DAY;
            ForecastQuality {
                model: "fuel".into(),
                version: "1".into(),
                tag: "tag00".into(),
                origin_ms: origin,
                scored_ms: origin + H,
                step_ms: 60_000,
                horizon: 60,
                mae: Some(if news == 2 && origin >= T0 { 3.0 } else { 1.0 }),
                mape: Some(1.0),
                n: 60,
                explanation: Vec::new(),
            }
        })
        .collect();
    push(Body::ForecastQuality(q), seq);
    push(
        Body::Forecasts(vec![Forecast {
            model: "fuel".into(),
            version: "1".into(),
            tag: "tag00".into(),
            origin_ms: T0 + 6 * DAY,
            step_ms: 60_000,
            made_ms: T0 + 6 * DAY,
            values: vec![1.0; 60],
        }]),
        seq,
    );
    out
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || bench(args))
        .await
        .context("the benchmark thread")?
}

fn bench(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let path = dir.path().join("fleet.duckdb");
    let mut store = Store::open(&path)?;
    let t = Instant::now();
    let mut seq = 0;
    let mut windows = 0usize;
    for n in 0..args.nodes {
        let items = node(
            &format!("site{}", n / 25),
            &format!("node{n:03}"),
            args.tags,
            if n % 10 < 5 { n % 10 } else { 0 },
            &mut seq,
        );
        windows += items.iter().map(|i| i.batch.windows()).sum::<usize>();
        for chunk in items.chunks(64) {
            store.ingest(chunk)?;
        }
    }
    eprintln!(
        "generated {} nodes × {} tags, two weeks of 10-min windows ({windows} items) in {:.1} s",
        args.nodes,
        args.tags,
        t.elapsed().as_secs_f64()
    );
    let reads = store.read_pool()?;
    let p = Params {
        site: None,
        node: None,
        from_ms: T0,
        to_ms: T0 + WEEK,
        now_ms: T0 + WEEK + DAY,
    };
    let mut times = Vec::new();
    let mut found = Vec::new();
    for _ in 0..=args.runs {
        let t = Instant::now();
        let pc = p.clone();
        let got = reads.read(move |s| insight::generate(s, &pc))?;
        times.push(t.elapsed().as_secs_f64());
        found = got;
    }
    let cold = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    let median = warm.get(warm.len() / 2).copied().unwrap_or(cold);
    let mut kinds = std::collections::BTreeMap::new();
    for i in &found {
        *kinds.entry(i.kind.as_str()).or_insert(0) += 1;
    }
    println!(
        "insights over a {}-node fleet's week ({} tags per node): cold {cold:.2} s, warm median {median:.2} s ({} runs); {} insights {kinds:?}",
        args.nodes,
        args.tags,
        args.runs,
        found.len()
    );
    Ok(())
}
