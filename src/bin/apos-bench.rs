//! `apos-bench`: the benchmarks recorded in `docs/benchmarks.md`.
//!
//! Build in release mode first; `sustained` runs the real `apos-edge`
//! binary found next to this one:
//!
//! ```text
//! cargo build --release -p apos -p edge-node
//! target/release/apos-bench modbus
//! target/release/apos-bench sustained
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apos::bench::{procstat, server, tagset};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "apos-bench",
    about = "APOS benchmarks (see docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Poll-cycle cost of 10,000 mixed holding-register tags: our planned
    /// reads vs one request per tag, and vs pymodbus's async client.
    Modbus {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        /// Poll cycles measured per client (after one warm-up cycle).
        #[arg(long, default_value_t = 30)]
        cycles: usize,
        /// Python with pymodbus (default: .venv/bin/python, made by scripts/test.sh).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Sustained points per second from the driver into SQLite, measured on
    /// the real `apos-edge` process pinned to one core, with its CPU and RSS.
    Sustained {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        /// Poll interval of the device; 10,000 tags at 100ms asks for 100k points/s.
        #[arg(long, default_value = "100ms")]
        poll_interval: String,
        /// Warm-up before measuring.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Measurement window.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// CPU the edge process is pinned to (`taskset`); the load server runs elsewhere.
        #[arg(long, default_value_t = 1)]
        cpu: usize,
    },
    /// OPC UA: N monitored items at one sampling interval on a local server;
    /// notifications per second into the edge (stored), its CPU and RSS, and
    /// Python asyncua's client on the same items.
    Opcua {
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// How often the server changes every value; default half the
        /// interval, so that every sampling interval sees a new value.
        #[arg(long, value_parser = humantime::parse_duration)]
        change_every: Option<Duration>,
        #[arg(long, default_value_t = 1)]
        cpu: usize,
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Sync: drain the outbox backlog of an outage into the hub (DuckDB),
    /// through the embedded rumqttd and through mosquitto.
    Sync {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        /// Length of the outage whose backlog is drained.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        outage: Duration,
        /// Length of each steady-state run (0s: skip them).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        steady: Duration,
        /// Steady-state runs: how many times faster than real time windows
        /// are sealed (1 = 10k tags with 10 s and 1 min windows as configured).
        #[arg(long, value_delimiter = ',', default_value = "1,10")]
        speeds: Vec<f64>,
    },
    /// Forecasting: tract against onnxruntime on the shipped ETTh1 model
    /// (same run, this process pinned to one core), the per-tag path for
    /// 1,000 tags, and the model's ETTh1 accuracy through tract.
    Forecast {
        #[arg(long, default_value = "models/assets/etth1-ot")]
        model: PathBuf,
        #[arg(long, default_value = "../shared/data/ETTh1.csv")]
        data: PathBuf,
        /// Python with onnxruntime (scripts/test.sh builds .venv).
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        #[arg(long, default_value_t = 1000)]
        tags: usize,
        #[arg(long, default_value_t = 5000)]
        single_runs: usize,
        /// CPU to pin to (taskset).
        #[arg(long, default_value_t = 1)]
        cpu: usize,
    },
    /// Simulated-plant history for training the demo's forecasting model:
    /// the plant model stepped offline as the demo steps it, sampled on a
    /// grid in the demo's (scaled) real time, written as CSV.
    PlantHistory {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 10.0)]
        time_scale: f64,
        /// Grid step in real (demo) time.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        step: Duration,
        /// Simulated time to cover.
        #[arg(long, default_value = "72h", value_parser = humantime::parse_duration)]
        simulated: Duration,
    },
    /// The KPI engine's cost for `tags` tags sampled every second (OEE and
    /// expression KPIs over a rolling hour, the shift and the day), against
    /// SQLite's own GROUP BY over the same rows.
    Kpi {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        /// Minutes of history to compute.
        #[arg(long, default_value_t = 10)]
        minutes: i64,
    },
    /// HMI fan-out: apos-edge polling `tags` changing registers every second
    /// (the real data path) and serving its HMI; bench/hmi/fanout.mjs opens
    /// `clients` live sockets for `duration` s and measures latency, CPU, RSS.
    Hmi {
        #[arg(long, default_value_t = 1000)]
        tags: usize,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// Hub web API: wrk on the KPI summary and a tag range, apos-hub against
    /// a FastAPI + uvicorn + duckdb peer on the same data; a one-year chart
    /// over 100 M stored windows against a naive GROUP BY (bench/hub/README.md).
    Hub {
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        #[arg(long, default_value_t = 64)]
        connections: u32,
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// uvicorn worker processes of the peer (one per core).
        #[arg(long, default_value_t = 2)]
        peer_workers: u32,
        /// Python with the peer's packages (bench/hub/requirements.txt).
        #[arg(long, default_value = "bench/hub/.venv/bin/python")]
        python: PathBuf,
        /// Windows of the one-year tag.
        #[arg(long, default_value_t = 100_000_000)]
        year_points: u64,
        #[arg(long, default_value_t = 30)]
        year_runs: usize,
        #[arg(long)]
        skip_serve: bool,
        #[arg(long)]
        skip_peer: bool,
        #[arg(long)]
        skip_year: bool,
        /// Directory for the data files (the year's is ~1 GB); default the temp dir.
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// The alarm engine: evaluations per second for many alarms on one core.
    Alarms {
        #[arg(long, default_value_t = 10_000)]
        alarms: usize,
        #[arg(long, default_value_t = 300)]
        rounds: u64,
    },
    /// Storage alone: samples per second through the history writer into SQLite.
    History {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 20_000)]
        batch_size: usize,
    },
    /// Anomaly and change detection on the simulated plant with injected,
    /// labelled anomalies: precision and recall per kind.
    Anomalies(apos::bench::anomaly::Args),
    /// Historian import of a large CSV: rows/s and peak RSS against DuckDB's
    /// read_csv and pandas.
    Import(apos::bench::import::Args),
    /// Parquet export of many windows: seconds and file size.
    Export(apos::bench::export::Args),
    /// Insight generation over a large fleet's week: seconds.
    Insights(apos::bench::insights::Args),
    /// The demo's optimization problem by LP and by CMA-ES (linear models
    /// and an ONNX surrogate): objective gap, time, evaluations.
    Surrogate(apos::bench::surrogate::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Cmd::Anomalies(args) => apos::bench::anomaly::run(args).await,
        Cmd::Import(args) => apos::bench::import::run(args).await,
        Cmd::Export(args) => apos::bench::export::run(args).await,
        Cmd::Insights(args) => apos::bench::insights::run(args).await,
        Cmd::Surrogate(args) => apos::bench::surrogate::run(args).await,
        Cmd::Modbus {
            tags,
            cycles,
            python,
        } => apos::bench::modbus::run(tags, cycles, python).await,
        Cmd::Sustained {
            tags,
            poll_interval,
            warmup,
            duration,
            cpu,
        } => sustained(tags, &poll_interval, warmup, duration, cpu).await,
        Cmd::Opcua {
            items,
            interval,
            warmup,
            duration,
            change_every,
            cpu,
            python,
        } => {
            let change_every = change_every.unwrap_or(interval / 2);
            opcua(items, interval, change_every, warmup, duration, cpu, python).await
        }
        Cmd::Sync {
            tags,
            outage,
            steady,
            speeds,
        } => sync_bench(tags, outage, steady, &speeds).await,
        Cmd::Forecast {
            model,
            data,
            python,
            tags,
            single_runs,
            cpu,
        } => forecast_bench(&model, &data, &python, tags, single_runs, cpu),
        Cmd::PlantHistory {
            out,
            seed,
            time_scale,
            step,
            simulated,
        } => apos::bench::forecast::plant_history(&out, seed, time_scale, step, simulated),
        Cmd::Hmi {
            tags,
            clients,
            duration,
        } => hmi_bench(tags, clients, duration).await,
        Cmd::Hub {
            duration,
            warmup,
            connections,
            threads,
            peer_workers,
            python,
            year_points,
            year_runs,
            skip_serve,
            skip_peer,
            skip_year,
            work_dir,
        } => {
            apos::bench::hub::run(apos::bench::hub::Opts {
                hub_bin: sibling_binary("apos-hub")?,
                python,
                duration,
                warmup,
                connections,
                threads,
                peer_workers,
                year_points,
                year_runs,
                skip_serve,
                skip_peer,
                skip_year,
                work_dir,
            })
            .await
        }
        Cmd::Alarms { alarms, rounds } => {
            let r = tokio::task::spawn_blocking(move || apos::bench::alarms::run(alarms, rounds))
                .await?;
            let secs = r.elapsed.as_secs_f64();
            println!(
                "alarm engine: {} alarms (hi, hihi, lo, rate, discrete, quality; delays, deadbands, latching), {} rounds of one sample per alarm + one tick",
                r.alarms, r.rounds
            );
            println!(
                "  {:.0} sample evaluations/s and {:.0} tick evaluations/s on one core ({:.1} ms per round of {} alarms); {} journal entries ({:.1} per round)",
                r.evaluations as f64 / secs,
                r.ticks as f64 / secs,
                secs * 1000.0 / r.rounds as f64,
                r.alarms,
                r.journal_entries,
                r.journal_entries as f64 / r.rounds as f64
            );
            Ok(())
        }
        Cmd::Kpi { tags, minutes } => {
            let r =
                tokio::task::spawn_blocking(move || apos::bench::kpi::run(tags, minutes)).await??;
            let per_s = |d: Duration| d.as_secs_f64() / r.seconds as f64;
            println!(
                "KPI engine: {} tags, {} KPIs (windows 1h, shift, day), {} s of history = {} samples (written in {:.1} s)",
                r.tags,
                r.kpis,
                r.seconds,
                r.samples,
                r.write.as_secs_f64()
            );
            println!(
                "  engine, {} slices of 1 min: {:.2} s total ({:.1} ms per second of data = {:.2} % of one core), of which computing {:.2} s and reading SQLite {:.2} s",
                r.slices,
                r.engine_total.as_secs_f64(),
                per_s(r.engine_total) * 1000.0,
                per_s(r.engine_total) * 100.0,
                r.engine_compute.as_secs_f64(),
                (r.engine_total.saturating_sub(r.engine_compute)).as_secs_f64()
            );
            println!(
                "  one steady-state tick (a new minute for every KPI, its rolling hour re-summed): {:.0} ms = {:.2} % of one core",
                r.tick.as_secs_f64() * 1000.0,
                r.tick.as_secs_f64() / 60.0 * 100.0
            );
            println!(
                "  peer, SQLite GROUP BY (tag, minute) over the same rows: {:.2} s ({} groups); ratio engine / SQLite = {:.2}",
                r.sqlite_group_by.as_secs_f64(),
                r.group_rows,
                r.engine_total.as_secs_f64() / r.sqlite_group_by.as_secs_f64()
            );
            Ok(())
        }
        Cmd::History {
            tags,
            duration,
            batch_size,
        } => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("history.db");
            let r = tokio::task::spawn_blocking(move || {
                edge_node::history::bench::sustained_insert(&path, tags, duration, batch_size)
            })
            .await??;
            println!(
                "history writer: {} samples of {tags} tags in {:.1} s = {:.0} samples/s (batch {batch_size})",
                r.samples,
                r.elapsed.as_secs_f64(),
                r.samples_per_sec
            );
            Ok(())
        }
    }
}

async fn sustained(
    tags: usize,
    poll_interval: &str,
    warmup: Duration,
    duration: Duration,
    cpu: usize,
) -> anyhow::Result<()> {
    let edge_bin = sibling_binary("apos-edge")?;
    let cancel = CancellationToken::new();
    let (addr, server_stats) = server::spawn("127.0.0.1:0".parse()?, cancel.clone()).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    let text = tagset::edge_config(addr, tags, poll_interval, &db);
    let parsed = firmware_config::load_str(&cfg, text.clone())
        .map_err(|e| anyhow::anyhow!("bench config invalid: {e}"))?;
    let device = parsed.device("plc").context("bench device missing")?;
    let plan_len = drivers::modbus::device::ModbusDevice::from_config(&parsed, device).groups[0]
        .plan
        .len();
    std::fs::write(&cfg, text)?;

    // Keep this process (the load server) off the edge's core.
    let other = if cpu == 0 { 1 } else { 0 };
    pin(std::process::id(), other);
    let mut child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(&edge_bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("TOKIO_WORKER_THREADS", "1")
        .envs(
            std::env::var("MALLOC_ARENA_MAX")
                .ok()
                .map(|v| ("MALLOC_ARENA_MAX", v)),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} under taskset", edge_bin.display()))?;
    let pid = child.id();
    eprintln!(
        "edge pid {pid} pinned to cpu {cpu}: {tags} tags every {poll_interval}; warming up {warmup:?}"
    );
    tokio::time::sleep(warmup).await;

    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = || -> anyhow::Result<u64> {
        Ok(conn.query_row(
            "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM inbox)",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let (rows0, p0, req0, t0) = (
        count()?,
        procstat::sample(pid),
        server_stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        Instant::now(),
    );
    let mut peak_rss = 0;
    let end = t0 + duration;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(p) = procstat::sample(pid) {
            peak_rss = peak_rss.max(p.rss_kib);
        } else {
            bail!("apos-edge exited during the benchmark");
        }
    }
    let (rows1, p1, req1, elapsed) = (
        count()?,
        procstat::sample(pid),
        server_stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        t0.elapsed(),
    );
    let _ = child.kill();
    let _ = child.wait();
    cancel.cancel();

    let (Some(p0), Some(p1)) = (p0, p1) else {
        bail!("could not read /proc for pid {pid}")
    };
    let secs = elapsed.as_secs_f64();
    let pts = (rows1 - rows0) as f64 / secs;
    let cpu_pct = (p1.cpu - p0.cpu).as_secs_f64() / secs * 100.0;
    let requested = tags as f64 / humantime::parse_duration(poll_interval)?.as_secs_f64();
    let req_s = (req1 - req0) as f64 / secs;
    let polled = req_s / plan_len as f64 * tags as f64;
    println!(
        "| tags | poll interval | asked pts/s | polled pts/s | stored pts/s | Modbus req/s | edge CPU (one core) | edge RSS max sampled / VmHWM |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {tags} | {poll_interval} | {requested:.0} | {polled:.0} | {pts:.0} | {req_s:.0} | {cpu_pct:.0} % | {:.1} MiB / {:.1} MiB |",
        peak_rss as f64 / 1024.0,
        p1.peak_rss_kib as f64 / 1024.0,
    );
    eprintln!("stored < polled by what the deadband filter drops (bit tags that did not change)");
    Ok(())
}

/// Pin every thread of `pid` to `cpu`; benchmarks still run (less
/// precisely) where `taskset` is missing.
fn pin(pid: u32, cpu: usize) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: taskset failed; figures are not pinned to one core");
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| Path::new(name).to_path_buf());
    if !path.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p edge-node`",
            path.display()
        );
    }
    Ok(path)
}

async fn opcua(
    items: usize,
    interval: Duration,
    change_every: Duration,
    warmup: Duration,
    duration: Duration,
    cpu: usize,
    python: Option<PathBuf>,
) -> anyhow::Result<()> {
    use apos::bench::opcua_server;
    let edge_bin = sibling_binary("apos-edge")?;
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir()?;
    let other = if cpu == 0 { 1 } else { 0 };
    pin(std::process::id(), other);
    let addr = opcua_server::spawn(
        items,
        change_every,
        &dir.path().join("server-pki"),
        cancel.clone(),
    )
    .await?;
    let endpoint = format!("opc.tcp://{addr}/");
    let db = dir.path().join("history.db");
    let mut cfg = format!(
        "schema_version = 1\n[node]\nsite_id = \"bench\"\nnode_id = \"ua\"\n[storage]\npath = {:?}\nbatch_size = 20000\n\
         [[device]]\nname = \"ua\"\nprotocol = \"opcua\"\nendpoint = \"{endpoint}\"\nsecurity_policy = \"None\"\n\
         pki_dir = {:?}\npublishing_interval = \"{}ms\"\ntimeout = \"30s\"\n",
        db.display().to_string(),
        dir.path().join("edge-pki").display().to_string(),
        interval.as_millis()
    );
    for i in 0..items {
        cfg += &format!(
            "\n[[tag]]\nname = \"t{i:05}\"\ndevice = \"ua\"\nnode = \"{}\"\nsampling_interval = \"{}ms\"\n",
            opcua_server::node(i),
            interval.as_millis()
        );
    }
    let cfg_path = dir.path().join("edge.toml");
    std::fs::write(&cfg_path, cfg)?;
    let mut child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(&edge_bin)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env(
            "TOKIO_WORKER_THREADS",
            std::env::var("APOS_BENCH_EDGE_WORKERS").unwrap_or_else(|_| "1".into()),
        )
        .env(
            "RUST_LOG",
            std::env::var("APOS_BENCH_EDGE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // The edge logs to stdout; show it only when asked (APOS_BENCH_EDGE_LOG=info).
        .stdout(if std::env::var_os("APOS_BENCH_EDGE_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .with_context(|| format!("starting {}", edge_bin.display()))?;
    let pid = child.id();
    eprintln!(
        "edge pid {pid} on cpu {cpu}: {items} items sampled every {interval:?}, changing every {change_every:?}; warming up {warmup:?}"
    );
    tokio::time::sleep(warmup).await;
    let count = || -> anyhow::Result<u64> {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(conn.query_row(
            "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM inbox)",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let (r0, p0, t0) = (count()?, procstat::sample(pid), Instant::now());
    let mut peak = 0;
    while t0.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match procstat::sample(pid) {
            Some(p) => peak = peak.max(p.rss_kib),
            None => bail!("apos-edge exited during the benchmark"),
        }
    }
    let (r1, p1, secs) = (count()?, procstat::sample(pid), t0.elapsed().as_secs_f64());
    let _ = child.kill();
    let _ = child.wait();
    let (Some(p0), Some(p1)) = (p0, p1) else {
        bail!("could not read /proc for pid {pid}")
    };
    let ours = (r1 - r0) as f64 / secs;
    let ours_cpu = (p1.cpu - p0.cpu).as_secs_f64() / secs * 100.0;

    let python = python
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/asyncua_client_bench.py");
    let peer = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(&python)
        .arg(&script)
        .args(["--endpoint", &endpoint, "--items", &items.to_string()])
        .args(["--interval-ms", &interval.as_millis().to_string()])
        .args([
            "--warmup",
            &warmup.as_secs_f64().to_string(),
            "--duration",
            &duration.as_secs_f64().to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    cancel.cancel();
    let asked = items as f64 / interval.as_secs_f64();
    println!("| client | asked notifications/s | received/s | CPU (one core) | RSS |");
    println!("|---|---|---|---|---|");
    println!(
        "| apos-edge (received, decoded and stored in SQLite) | {asked:.0} | {ours:.0} | {ours_cpu:.0} % | {:.1} MiB |",
        peak as f64 / 1024.0
    );
    if peer.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&peer.stdout)?;
        let f = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        println!(
            "| Python asyncua 2.1.0 client (received, counted) | {asked:.0} | {:.0} | {:.0} % | {:.1} MiB |",
            f("notifications_per_s"),
            f("cpu_percent"),
            f("max_rss_kb") / 1024.0
        );
        println!(
            "\nratio: apos-edge receives {:.1}× the asyncua client's rate",
            ours / f("notifications_per_s")
        );
    } else {
        eprintln!(
            "asyncua client failed: {}",
            String::from_utf8_lossy(&peer.stderr)
        );
    }
    Ok(())
}

async fn sync_bench(
    tags: usize,
    outage: Duration,
    steady_for: Duration,
    speeds: &[f64],
) -> anyhow::Result<()> {
    use apos::bench::sync::{BrokerKind, drain, hub_binary, steady};
    let hub = hub_binary()?;
    let dir = tempfile::tempdir()?;
    println!(
        "| broker | windows | batches | MiB | drain | windows/s into DuckDB | hub CPU | hub peak RSS | checksum |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for (i, b) in [BrokerKind::Embedded, BrokerKind::Mosquitto]
        .into_iter()
        .enumerate()
    {
        eprintln!("{b:?}:");
        let r = drain(&hub, &dir.path().join(format!("run{i}")), b, tags, outage).await?;
        let rate = r.windows as f64 / r.drain.as_secs_f64();
        rates.push(rate);
        println!(
            "| {} | {} | {} | {:.1} | {:.1} s | {:.0} | {:.0} % | {:.1} MiB | {} |",
            match b {
                BrokerKind::Embedded => "embedded rumqttd 0.20",
                BrokerKind::Mosquitto => "mosquitto (Debian)",
            },
            r.windows,
            r.batches,
            r.bytes as f64 / 1048576.0,
            r.drain.as_secs_f64(),
            rate,
            r.hub_cpu.as_secs_f64() / r.drain.as_secs_f64() * 100.0,
            r.hub_peak_rss_kib as f64 / 1024.0,
            if r.checksum_ok { "equal" } else { "DIFFERENT" }
        );
    }
    println!(
        "\nbacklog drain, ratio embedded / mosquitto: {:.2}",
        rates[0] / rates[1]
    );
    if steady_for.is_zero() {
        return Ok(());
    }
    println!(
        "\n| broker | speed | windows/s sealed | windows/s acknowledged | seal→ack p50 | p99 | max | max outbox | hub CPU | hub peak RSS | checksum |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &speed in speeds {
        for (i, b) in [BrokerKind::Embedded, BrokerKind::Mosquitto]
            .into_iter()
            .enumerate()
        {
            eprintln!("steady {b:?} ×{speed}:");
            let d = dir.path().join(format!("steady{speed}-{i}"));
            let r = steady(&hub, &d, b, tags, speed, steady_for).await?;
            println!(
                "| {} | ×{speed} | {:.0} | {:.0} | {:.2} s | {:.2} s | {:.2} s | {} batches | {:.0} % | {:.1} MiB | {} |",
                match r.broker {
                    BrokerKind::Embedded => "embedded rumqttd 0.20",
                    BrokerKind::Mosquitto => "mosquitto (Debian)",
                },
                r.offered,
                r.acked,
                r.p50.as_secs_f64(),
                r.p99.as_secs_f64(),
                r.max.as_secs_f64(),
                r.max_backlog,
                r.hub_cpu * 100.0,
                r.hub_peak_rss_kib as f64 / 1024.0,
                if r.checksum_ok { "equal" } else { "DIFFERENT" }
            );
        }
    }
    Ok(())
}

fn forecast_bench(
    model: &std::path::Path,
    data: &std::path::Path,
    python: &std::path::Path,
    tags: usize,
    single_runs: usize,
    cpu: usize,
) -> anyhow::Result<()> {
    use apos::bench::forecast::{p50_p99, run};
    pin(std::process::id(), cpu);
    let r = run(model, data, python, tags, single_runs)?;
    let (t50, t99) = p50_p99(&r.tract_single_us);
    let (o50, o99) = p50_p99(&r.ort_single_us);
    println!(
        "ETTh1 model {} (336 → 96), one core (cpu {cpu}), {single_runs} single-row runs each",
        model.display()
    );
    println!();
    println!("| runtime | single forecast p50 | p99 | {tags} rows in one call |");
    println!("|---|---|---|---|");
    println!(
        "| tract-onnx 0.23.9 (Rust, in process) | {t50:.1} µs | {t99:.1} µs | {:.2} ms |",
        r.tract_batch.as_secs_f64() * 1e3
    );
    println!(
        "| onnxruntime {} (Python API, 1 thread) | {o50:.1} µs | {o99:.1} µs | {:.2} ms |",
        r.ort_version,
        r.ort_batch.as_secs_f64() * 1e3
    );
    println!();
    println!(
        "ratio tract / onnxruntime: single {:.2}, batch {:.2} (below 1: tract faster)",
        t50 / o50,
        r.tract_batch.as_secs_f64() / r.ort_batch.as_secs_f64()
    );
    let per_tag = r.per_tag_path.as_secs_f64() / r.tags as f64;
    println!(
        "per-tag path (features from a {} h window + forecast): {:.1} µs per tag; {} tags per minute use {:.3} % of one core",
        336,
        per_tag * 1e6,
        r.tags,
        per_tag * r.tags as f64 / 60.0 * 100.0
    );
    println!(
        "ETTh1 test (2785 windows, normalised) through tract: MSE {:.4} MAE {:.4}",
        r.test_mse, r.test_mae
    );
    Ok(())
}

/// `apos-bench hmi`: the edge found next to this binary.
async fn hmi_bench(tags: usize, clients: usize, duration: u64) -> anyhow::Result<()> {
    apos::bench::hmi::run(&sibling_binary("apos-edge")?, tags, clients, duration).await
}
