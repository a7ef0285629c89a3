//! `apos-bench sync`: backlog drain from an edge outbox to the hub, with the
//! embedded rumqttd and with mosquitto in the same run.
//!
//! The backlog is what `tags` tags leave in the outbox during an outage of
//! `outage` (10 s and 1 min windows, sealed exactly as the edge seals them).
//! Then the real sync task (`edge_node::sync::run`, in this process) drains
//! it through the broker into a real `apos-hub` process (DuckDB), and we
//! measure the time to an empty outbox, the hub's ingest rate and its RSS,
//! and check the hub's checksum against the edge's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_node::history::{HistoryOptions, HistoryStore};
use edge_node::sync::outbox::{Outbox, OutboxPolicy};
use firmware_config::WhenFull;
use protocol::v1::{Checksum, Window, WindowSet, window_digest};
use tokio_util::sync::CancellationToken;

use super::procstat;

const SITE: &str = "bench";
const NODE: &str = "edge";
const KEY: &str = "bench-node-key-0123456789";

/// Which broker carries the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    Mosquitto,
}

#[derive(Debug, Clone)]
pub struct DrainResult {
    pub broker: BrokerKind,
    pub windows: u64,
    pub batches: u64,
    pub bytes: u64,
    pub drain: Duration,
    pub hub_peak_rss_kib: u64,
    pub hub_cpu: Duration,
    pub checksum_ok: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Fill an edge history database with the backlog; returns its checksum.
pub fn make_backlog(
    db: &Path,
    tags: usize,
    outage: Duration,
    max_batch_windows: usize,
) -> anyhow::Result<(Checksum, u64)> {
    let mut store = HistoryStore::open(&HistoryOptions::new(db))?;
    let policy = OutboxPolicy {
        max_bytes: u64::MAX / 2,
        when_full: WhenFull::DropOldest,
        max_batch_windows,
    };
    let names: Vec<String> = (0..tags)
        .map(|i| format!("area{:02}.tag{i:05}", i % 50))
        .collect();
    let mut sum = Checksum::default();
    let t0: i64 = 1_767_225_600_000; // 2026-01-01
    let steps = (outage.as_secs() / 10) as i64;
    let mut batches = 0;
    for k in 0..steps {
        let mut sets = vec![window_set(&names, 10_000, t0 + k * 10_000, k)];
        if (k + 1) % 6 == 0 {
            sets.push(window_set(&names, 60_000, t0 + (k - 5) * 10_000, k));
        }
        for set in &sets {
            for w in &set.windows {
                sum.add(window_digest(SITE, NODE, set.width_ms, set.start_ms, w));
            }
        }
        batches += store
            .seal_windows(&sets, &policy, t0 + k * 10_000)?
            .sealed
            .len() as u64;
    }
    Ok((sum, batches))
}

fn window_set(names: &[String], width_ms: u32, start_ms: i64, k: i64) -> WindowSet {
    WindowSet {
        width_ms,
        start_ms,
        windows: names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v = (i as f64 * 0.37 + k as f64 * 0.11).sin() * 50.0 + 100.0;
                Window {
                    tag: n.clone(),
                    count: width_ms / 1000,
                    good: width_ms / 1000,
                    min: v - 1.5,
                    max: v + 1.5,
                    mean: v,
                    twa: v + 0.01,
                    last: v + 0.5,
                }
            })
            .collect(),
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A hub process (and a mosquitto for [`BrokerKind::Mosquitto`]) on a
/// free loopback port, plus the edge-side settings to reach it.
struct Rig {
    hub: Killed,
    _mosquitto: Option<Killed>,
    hub_bin: PathBuf,
    hub_db: PathBuf,
    settings: edge_node::sync::SyncSettings,
}

impl Rig {
    async fn start(
        hub_bin: &Path,
        dir: &Path,
        broker: BrokerKind,
        edge_db: &Path,
    ) -> anyhow::Result<Rig> {
        std::fs::write(dir.join("node.key"), KEY)?;
        std::fs::write(dir.join("node.pass"), "bench-pass")?;
        let port = free_port()?;
        let mosquitto = match broker {
            BrokerKind::Mosquitto => {
                let conf = dir.join("mosquitto.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
                    ),
                )?;
                let child = Command::new("/usr/sbin/mosquitto")
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting /usr/sbin/mosquitto (Debian package mosquitto)")?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some(Killed(child))
            }
            BrokerKind::Embedded => None,
        };
        let broker_toml = match broker {
            BrokerKind::Embedded => format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n"),
            BrokerKind::Mosquitto => {
                format!("mode = \"external\"\nurl = \"mqtt://127.0.0.1:{port}\"\n")
            }
        };
        let hub_db = dir.join("fleet.duckdb");
        let hub_cfg = dir.join("hub.toml");
        std::fs::write(
            &hub_cfg,
            format!(
                "schema_version = 1\n[storage]\npath = {:?}\n[broker]\n{broker_toml}[ingest]\ncommit_interval = \"200ms\"\n\
                 [[node]]\nsite = \"{SITE}\"\nnode = \"{NODE}\"\nkey_file = \"node.key\"\npassword_file = \"node.pass\"\n",
                hub_db.display().to_string()
            ),
        )?;
        let hub = Killed(
            Command::new(hub_bin)
                .args(["run", "--config"])
                .arg(&hub_cfg)
                .env("RUST_LOG", "warn")
                .stdout(std::fs::File::create(dir.join("hub.log"))?)
                .spawn()
                .with_context(|| format!("starting {}", hub_bin.display()))?,
        );
        // Wait for the hub's broker (embedded) or its connection (external).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settings = edge_node::sync::SyncSettings {
            site: SITE.into(),
            node: NODE.into(),
            key: protocol::NodeKey::new(KEY.as_bytes()).context("key")?,
            host: "127.0.0.1".into(),
            port,
            tls: None,
            credentials: Some((format!("{SITE}.{NODE}"), "bench-pass".into())),
            max_in_flight: 64,
            resend_after: Duration::from_secs(10),
            status_interval: Duration::from_secs(1),
            db: edge_db.to_path_buf(),
            started_ms: 0,
            recommendations: None,
        };
        Ok(Rig {
            hub,
            _mosquitto: mosquitto,
            hub_bin: hub_bin.to_path_buf(),
            hub_db,
            settings,
        })
    }

    fn pid(&self) -> u32 {
        self.hub.0.id()
    }

    /// Stop the hub gracefully and read its checksum of our node.
    async fn stop_and_checksum(mut self) -> anyhow::Result<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..100 {
            if self.hub.0.try_wait()?.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = Command::new(&self.hub_bin)
            .args(["checksum", "--site", SITE, "--node", NODE, "--db"])
            .arg(&self.hub_db)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn expected(c: &Checksum) -> String {
    format!("windows={} sum={:016x}", c.windows, c.sum)
}

/// Drain one backlog through `broker`.
pub async fn drain(
    hub_bin: &Path,
    dir: &Path,
    broker: BrokerKind,
    tags: usize,
    outage: Duration,
) -> anyhow::Result<DrainResult> {
    std::fs::create_dir_all(dir)?;
    let edge_db = dir.join("edge.db");
    eprintln!("  building the backlog ({tags} tags × {outage:?})…");
    let (expect, _) = make_backlog(&edge_db, tags, outage, 5000)?;
    let state = Outbox::open(&edge_db)?.state()?;
    let rig = Rig::start(hub_bin, dir, broker, &edge_db).await?;
    let hub_pid = rig.pid();
    let p0 = procstat::sample(hub_pid).context("hub not running")?;
    let cancel = CancellationToken::new();
    let stats = std::sync::Arc::new(edge_node::sync::SyncStats::default());
    let (_sealed_tx, sealed_rx) = tokio::sync::watch::channel(0u64);
    let t0 = Instant::now();
    let task = tokio::spawn(edge_node::sync::run(
        rig.settings.clone(),
        sealed_rx,
        stats.clone(),
        cancel.clone(),
    ));
    let outbox = Outbox::open(&edge_db)?;
    let mut peak = p0.peak_rss_kib;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(p) = procstat::sample(hub_pid) {
            peak = peak.max(p.rss_kib);
        } else {
            bail!("apos-hub exited during the drain");
        }
        if outbox.state()?.batches == 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("backlog not drained in 30 min");
        }
    }
    let drain = t0.elapsed();
    let p1 = procstat::sample(hub_pid).context("hub gone")?;
    cancel.cancel();
    let _ = task.await;
    let text = rig.stop_and_checksum().await?;
    Ok(DrainResult {
        broker,
        windows: expect.windows,
        batches: state.batches,
        bytes: state.bytes,
        drain,
        hub_peak_rss_kib: peak,
        hub_cpu: p1.cpu.saturating_sub(p0.cpu),
        checksum_ok: text == expected(&expect),
    })
}

#[derive(Debug, Clone)]
pub struct SteadyResult {
    pub broker: BrokerKind,
    /// Windows sealed per second (offered) and acknowledged per second.
    pub offered: f64,
    pub acked: f64,
    /// Seal → acknowledgement (outbox row deleted), 50 ms resolution.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub max_backlog: u64,
    pub hub_cpu: f64,
    pub hub_peak_rss_kib: u64,
    pub checksum_ok: bool,
}

/// Live sync: `tags` tags with 10 s and 1 min windows, sealed as the edge
/// seals them but `speed` times faster than real time, for `duration`,
/// while the sync task runs. Measures seal → ack latency.
pub async fn steady(
    hub_bin: &Path,
    dir: &Path,
    broker: BrokerKind,
    tags: usize,
    speed: f64,
    duration: Duration,
) -> anyhow::Result<SteadyResult> {
    std::fs::create_dir_all(dir)?;
    let edge_db = dir.join("edge.db");
    // Create the schema before the sync task opens the outbox.
    drop(HistoryStore::open(&HistoryOptions::new(&edge_db))?);
    let rig = Rig::start(hub_bin, dir, broker, &edge_db).await?;
    let hub_pid = rig.pid();
    let p0 = procstat::sample(hub_pid).context("hub not running")?;
    let cancel = CancellationToken::new();
    let stats = std::sync::Arc::new(edge_node::sync::SyncStats::default());
    let (sealed_tx, sealed_rx) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(edge_node::sync::run(
        rig.settings.clone(),
        sealed_rx,
        stats.clone(),
        cancel.clone(),
    ));
    // The sealer: one 10 s window set every 10 s / speed, a 1 min set every sixth.
    let seal_times: std::sync::Arc<std::sync::Mutex<Vec<(u64, Instant)>>> = Default::default();
    let sealer = {
        let seal_times = seal_times.clone();
        let edge_db = edge_db.clone();
        std::thread::spawn(move || -> anyhow::Result<Checksum> {
            let mut store = HistoryStore::open(&HistoryOptions::new(&edge_db))?;
            let policy = OutboxPolicy {
                max_bytes: u64::MAX / 2,
                when_full: WhenFull::DropOldest,
                max_batch_windows: 5000,
            };
            let names: Vec<String> = (0..tags)
                .map(|i| format!("area{:02}.tag{i:05}", i % 50))
                .collect();
            let period = Duration::from_secs_f64(10.0 / speed);
            let steps = (duration.as_secs_f64() / period.as_secs_f64()).ceil() as i64;
            let t0 = Instant::now();
            let ts0: i64 = 1_767_225_600_000;
            let mut sum = Checksum::default();
            for k in 0..steps {
                let due = t0 + period.mul_f64(k as f64 + 1.0);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let mut sets = vec![window_set(&names, 10_000, ts0 + k * 10_000, k)];
                if (k + 1) % 6 == 0 {
                    sets.push(window_set(&names, 60_000, ts0 + (k - 5) * 10_000, k));
                }
                for set in &sets {
                    for w in &set.windows {
                        sum.add(window_digest(SITE, NODE, set.width_ms, set.start_ms, w));
                    }
                }
                let report = store.seal_windows(&sets, &policy, ts0 + k * 10_000)?;
                let now = Instant::now();
                let mut times = seal_times.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for &seq in &report.sealed {
                    times.push((seq, now));
                }
                if let Some(&last) = report.sealed.last() {
                    sealed_tx.send_replace(last);
                }
            }
            Ok(sum)
        })
    };
    let outbox = Outbox::open(&edge_db)?;
    let t0 = Instant::now();
    let mut peak = p0.peak_rss_kib;
    let mut latencies: Vec<Duration> = Vec::new();
    let mut next_unseen = 0usize;
    let mut max_backlog = 0;
    let mut last_ack = t0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        if let Some(p) = procstat::sample(hub_pid) {
            peak = peak.max(p.rss_kib);
        } else {
            bail!("apos-hub exited during the run");
        }
        let st = outbox.state()?;
        max_backlog = max_backlog.max(st.batches);
        let oldest = outbox.unacked(1)?.first().copied();
        let times = seal_times
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        while next_unseen < times.len() {
            let (seq, sealed_at) = times[next_unseen];
            let acked = oldest.is_none_or(|o| seq < o);
            if !acked {
                break;
            }
            latencies.push(now.saturating_duration_since(sealed_at));
            last_ack = now;
            next_unseen += 1;
        }
        if sealer.is_finished() && next_unseen == times.len() && st.batches == 0 {
            break;
        }
        if t0.elapsed() > duration * 3 + Duration::from_secs(60) {
            bail!(
                "the sync did not keep up: {} batches still in the outbox",
                st.batches
            );
        }
    }
    let p1 = procstat::sample(hub_pid).context("hub gone")?;
    let sum = sealer
        .join()
        .map_err(|_| anyhow::anyhow!("sealer panicked"))??;
    cancel.cancel();
    let _ = task.await;
    let text = rig.stop_and_checksum().await?;
    latencies.sort();
    let pct = |q: f64| -> Duration {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let run = duration.as_secs_f64();
    Ok(SteadyResult {
        broker,
        offered: sum.windows as f64 / run,
        acked: sum.windows as f64 / last_ack.duration_since(t0).as_secs_f64().max(run),
        p50: pct(0.5),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        max_backlog,
        hub_cpu: p1.cpu.saturating_sub(p0.cpu).as_secs_f64()
            / last_ack.duration_since(t0).as_secs_f64(),
        hub_peak_rss_kib: peak,
        checksum_ok: text == expected(&sum),
    })
}

/// The `apos-hub` binary next to this one.
pub fn hub_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .map(|d| d.join("apos-hub"))
        .context("no parent dir")?;
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p hub`",
            p.display()
        );
    }
    Ok(p)
}
