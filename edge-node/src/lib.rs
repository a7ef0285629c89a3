//! The APOS edge node as a library: the `apos-edge` binary and the demo both
//! run an [`Edge`].
//!
//! An `Edge` owns a pipeline of tasks joined by bounded channels:
//! drivers → [`pipeline::run_filter`] → history writer (see ARCHITECTURE.md).
//! Reloads replace the drivers only; everything downstream keeps running,
//! so no buffered sample is lost.

pub mod alarm;
pub mod files;
pub mod forecast;
pub mod history;
pub mod hmi;
pub mod kpi;
pub mod logging;
pub mod memory;
pub mod pipeline;
pub mod reload;
pub mod setpoint;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drivers::{DriverHandle, Sample};
use firmware_config::{ConfigError, EdgeConfig, Transport};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{FilterSettings, LiveTable, PipelineStats};

/// Capacity of the driver → filter channel, in batches. A batch is one poll
/// of one device's poll group (up to a whole device's tags), so a few batches
/// absorb a slow commit; more would only hold memory when storage falls
/// behind, and then backpressure (drivers' cycles stretching) is the honest
/// answer.
pub const SAMPLE_CHANNEL_BATCHES: usize = 8;
/// Capacity of the filter → history channel, in batches.
pub const STORE_CHANNEL_BATCHES: usize = 8;
/// Capacity of the aggregator → history writer channel (closed windows, one
/// message per second at most). Blocks when full.
pub const WINDOW_CHANNEL_BATCHES: usize = 4;
/// Filter → alarm task: sample batches of alarm inputs (blocks when full).
pub const ALARM_CHANNEL_BATCHES: usize = 16;
/// How long a watched stage (the history writer thread, the supervisor
/// loop) may go without a heartbeat before the node counts as stalled and
/// the systemd watchdog is no longer fed. Both beat at least once a second
/// when idle; the bound leaves room for a slow merge, retention step or
/// reload on a gateway's SD card, since a restart for mere slowness costs
/// the uncommitted batch.
pub const STAGE_MAX_SILENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("local history: {0}")]
    History(#[from] history::HistoryError),
    #[error("driver: {0}")]
    Driver(#[from] drivers::DriverError),
    #[error("sync: {0}")]
    Sync(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// One-line description of a configuration, for `validate` and logs.
pub fn summary(cfg: &EdgeConfig) -> String {
    let tcp = cfg
        .devices
        .iter()
        .filter(|d| matches!(d.transport, Transport::ModbusTcp { .. }))
        .count();
    let opcua = cfg
        .devices
        .iter()
        .filter(|d| d.transport.is_opcua())
        .count();
    let rtu = cfg.devices.len() - tcp - opcua;
    let first = cfg
        .sources
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!(
        "OK {first}: node {}/{}, {} device{} ({tcp} modbus-tcp, {rtu} modbus-rtu on {} serial line{}, {opcua} opcua), {} tag{}, {} file{}",
        cfg.node.site_id,
        cfg.node.node_id,
        cfg.devices.len(),
        plural(cfg.devices.len()),
        cfg.serial_lines.len(),
        plural(cfg.serial_lines.len()),
        cfg.tags.len(),
        plural(cfg.tags.len()),
        cfg.sources.len(),
        plural(cfg.sources.len()),
    ) + &match &cfg.kpi {
        Some(k) => format!(
            ", {} KPI{} ({} time)",
            k.kpis.len(),
            plural(k.kpis.len()),
            k.calendar.time_zone
        ),
        None => String::new(),
    } + &match cfg.alarms.len() {
        0 => String::new(),
        n => format!(", {n} alarm{}", plural(n)),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn load_config(path: &Path) -> Result<EdgeConfig, EdgeError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let r = firmware_config::load(&path);
        // The parse's peak is garbage now; don't keep it resident.
        memory::release_free_memory();
        r
    })
    .await
    .map_err(|e| EdgeError::Internal(format!("config loader panicked: {e}")))?
    .map_err(EdgeError::from)
}

/// A running edge node.
#[derive(Debug)]
pub struct Edge {
    /// Latest sample per tag.
    pub live: LiveTable,
    pub stats: Arc<PipelineStats>,
    pub history_stats: Arc<history::WriterStats>,
    pub sync_stats: Arc<sync::SyncStats>,
    /// Forecasting models in use (empty without `[forecast]`).
    pub models: forecast::Models,
    pub forecast_stats: Arc<forecast::ForecastStats>,
    /// The current value of every KPI window (empty without `[[kpi]]`).
    pub kpis: kpi::KpiBoard,
    pub kpi_stats: Arc<kpi::KpiStats>,
    /// The alarm task's board, notices and command channel (for the HMI).
    pub alarms: alarm::board::AlarmHandle,
    /// The operator HMI, when `[hmi]` is configured.
    pub hmi: Option<hmi::HmiHandle>,
    /// The stages the systemd watchdog waits on (history writer, supervisor).
    pub heartbeats: web::systemd::Heartbeats,
    sync_task: Option<JoinHandle<()>>,
    forecast_task: Option<JoinHandle<()>>,
    kpi_task: JoinHandle<()>,
    alarm_task: JoinHandle<()>,
    setpoint_task: Option<JoinHandle<()>>,
    config: watch::Receiver<Arc<EdgeConfig>>,
    drivers: Arc<Mutex<Vec<DriverHandle>>>,
    reloads: Arc<std::sync::atomic::AtomicU64>,
    filter: JoinHandle<()>,
    supervisor: JoinHandle<()>,
    writer: history::HistoryWriter,
}

impl Edge {
    /// Load `config_path`, open the history and start collecting. Reloads on
    /// SIGHUP and file changes until `cancel` fires. When this returns, the
    /// configuration is valid, the history and the HMI's stores are open
    /// and the HMI listens (what systemd's READY=1 promises); the MQTT
    /// client connects to the hub in the background.
    pub async fn start(config_path: &Path, cancel: CancellationToken) -> Result<Self, EdgeError> {
        let cfg = load_config(config_path).await?;
        tracing::info!("{}", summary(&cfg));
        Self::start_with(config_path.to_path_buf(), cfg, cancel).await
    }

    async fn start_with(
        config_path: PathBuf,
        cfg: EdgeConfig,
        cancel: CancellationToken,
    ) -> Result<Self, EdgeError> {
        let (store_tx, store_rx) = mpsc::channel::<Vec<Sample>>(STORE_CHANNEL_BATCHES);
        let sync_settings = sync::SyncSettings::from_config(&cfg).map_err(EdgeError::Sync)?;
        let (aggregate, outbox_input, sealed_rx) = match &cfg.sync {
            Some(s) => {
                let widths: Vec<u32> = s
                    .windows
                    .iter()
                    .map(|w| u32::try_from(w.as_millis()).unwrap_or(u32::MAX))
                    .collect();
                let grace = u32::try_from(s.grace.as_millis()).unwrap_or(u32::MAX);
                let (wtx, wrx) = mpsc::channel(WINDOW_CHANNEL_BATCHES);
                let (sealed_tx, sealed_rx) = watch::channel(0u64);
                (
                    Some(pipeline::AggregateStage::new(
                        sync::aggregate::Aggregator::new(&widths, grace),
                        wtx,
                    )),
                    Some(history::OutboxInput {
                        windows: wrx,
                        policy: sync::outbox::OutboxPolicy::from(s),
                        sealed: Some(sealed_tx),
                    }),
                    Some(sealed_rx),
                )
            }
            None => (None, None, None),
        };
        let writer = history::HistoryWriter::spawn_with_outbox(
            history::HistoryOptions::from(&cfg.storage),
            store_rx,
            outbox_input,
        )?;
        let history_stats = writer.stats();
        let heartbeats = web::systemd::Heartbeats::default();
        heartbeats.watch("history writer", &history_stats.beat, STAGE_MAX_SILENCE);
        let sync_stats = Arc::new(sync::SyncStats::default());
        let setpoints = setpoint::run::channels();
        let sync_task = match (sync_settings, sealed_rx) {
            (Some(mut settings), Some(sealed)) => {
                if cfg.write_back.is_some() {
                    settings.recommendations = Some(setpoints.recs_tx.clone());
                }
                let st = sync_stats.clone();
                let c = cancel.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = sync::run(settings, sealed, st, c).await {
                        tracing::error!(error = %e, "sync to the hub stopped");
                    }
                }))
            }
            _ => None,
        };

        let models = forecast::Models::default();
        let forecast_stats = Arc::new(forecast::ForecastStats::default());
        let forecast_task = cfg.forecast.clone().map(|f| {
            tokio::spawn(forecast::run(
                f,
                cfg.storage.path.clone(),
                cfg.sync.as_ref().map(sync::outbox::OutboxPolicy::from),
                models.clone(),
                forecast_stats.clone(),
                cancel.clone(),
            ))
        });

        let (sample_tx, sample_rx) = mpsc::channel::<Vec<Sample>>(SAMPLE_CHANNEL_BATCHES);
        let (settings_tx, settings_rx) =
            watch::channel(Arc::new(FilterSettings::from_config(&cfg)));
        let live = LiveTable::default();
        let stats = Arc::new(PipelineStats::default());
        let (alarm_tx, alarm_rx) = mpsc::channel::<Vec<Sample>>(ALARM_CHANNEL_BATCHES);
        let setpoint_alarms = alarm_tx.clone();
        let filter = tokio::spawn(pipeline::run_filter(
            sample_rx,
            store_tx,
            settings_rx,
            live.clone(),
            stats.clone(),
            aggregate,
            Some(alarm_tx),
        ));

        let driver_cancel = cancel.child_token();
        let handles = drivers::spawn_all(&cfg, sample_tx.clone(), driver_cancel.clone())?;
        let drivers = Arc::new(Mutex::new(handles));
        let cfg = Arc::new(cfg);
        let (config_tx, config_rx) = watch::channel(cfg.clone());
        let reloads = Arc::new(std::sync::atomic::AtomicU64::new(0));

        // Always running: a reload may add the first KPI.
        let kpis = kpi::KpiBoard::default();
        let kpi_stats = Arc::new(kpi::KpiStats::default());
        let kpi_task = tokio::spawn(kpi::run(
            config_rx.clone(),
            cfg.storage.path.clone(),
            cfg.sync.as_ref().map(sync::outbox::OutboxPolicy::from),
            kpis.clone(),
            kpi_stats.clone(),
            cancel.clone(),
        ));

        // Always running: a reload may add the first alarm.
        let (alarms, board) = alarm::board::channel();
        let alarm_task = tokio::spawn({
            let inputs = alarm::AlarmInputs {
                models: models.clone(),
                board,
            };
            let (cfg_rx, db, policy, c) = (
                config_rx.clone(),
                cfg.storage.path.clone(),
                cfg.sync.as_ref().map(sync::outbox::OutboxPolicy::from),
                cancel.clone(),
            );
            async move {
                if let Err(e) = alarm::run(cfg_rx, alarm_rx, db, policy, inputs, c).await {
                    tracing::error!(error = %e, "the alarm task stopped");
                }
            }
        });

        let hmi = match &cfg.hmi {
            Some(h) => Some(
                hmi::start(
                    h,
                    &cfg.storage.path,
                    cfg.sync.as_ref().map(sync::outbox::OutboxPolicy::from),
                    hmi::Parts {
                        live: live.clone(),
                        stats: stats.clone(),
                        history_stats: history_stats.clone(),
                        sync_stats: sync_stats.clone(),
                        models: models.clone(),
                        kpis: kpis.clone(),
                        alarms: alarms.clone(),
                        config: config_rx.clone(),
                        drivers: drivers.clone(),
                        setpoints: setpoints.handle.clone(),
                    },
                    cancel.clone(),
                )
                .await?,
            ),
            None => None,
        };
        // Approvals happen on the HMI and are audited there: no HMI, no
        // write-back ([setpoints] requires [hmi]).
        let setpoint_task = hmi.as_ref().map(|h| {
            let parts = setpoint::run::Parts {
                live: live.clone(),
                drivers: drivers.clone(),
                alarm_tap: setpoint_alarms,
                audit: h.state.core.audit.clone(),
                db: cfg.storage.path.clone(),
            };
            let (cfg_rx, c) = (config_rx.clone(), cancel.clone());
            tokio::spawn(async move {
                if let Err(e) = setpoint::run::run(cfg_rx, setpoints, parts, c).await {
                    tracing::error!(error = %e, "the setpoint task stopped");
                }
            })
        });

        let supervisor_beat = web::systemd::Beat::default();
        heartbeats.watch("supervisor", &supervisor_beat, STAGE_MAX_SILENCE);
        // Reload triggers listen before `start` returns, so a SIGHUP right
        // after it (READY=1, then `systemctl reload`) is not missed.
        let watch_cancel = cancel.child_token();
        let triggers = reload::spawn_triggers(&cfg.sources, watch_cancel.clone());
        let supervisor = tokio::spawn(supervise(
            Supervisor {
                beat: supervisor_beat,
                config_path,
                config_tx,
                settings_tx,
                sample_tx,
                drivers: drivers.clone(),
                driver_cancel,
                cancel,
                reloads: reloads.clone(),
                stats: stats.clone(),
                history_stats: history_stats.clone(),
                sync_stats: sync_stats.clone(),
                sync_enabled: sync_task.is_some(),
                audit: hmi.as_ref().map(|h| h.state.core.audit.clone()),
            },
            watch_cancel,
            triggers,
        ));

        Ok(Self {
            live,
            stats,
            history_stats,
            sync_stats,
            models,
            forecast_stats,
            kpis,
            kpi_stats,
            alarms,
            hmi,
            heartbeats,
            sync_task,
            forecast_task,
            kpi_task,
            alarm_task,
            setpoint_task,
            config: config_rx,
            drivers,
            reloads,
            filter,
            supervisor,
            writer,
        })
    }

    /// The configuration currently applied.
    pub fn config(&self) -> Arc<EdgeConfig> {
        self.config.borrow().clone()
    }

    /// Number of configurations applied since start (excluding the first).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Status of every running driver.
    pub async fn driver_status(&self) -> Vec<drivers::DriverStatus> {
        self.drivers
            .lock()
            .await
            .iter()
            .map(DriverHandle::status)
            .collect()
    }

    /// Wait for shutdown after the cancel token fired: drivers stop, the
    /// filter drains, the history writer commits what it holds.
    pub async fn join(self, timeout: Duration) {
        let work = async {
            let _ = self.supervisor.await;
            let _ = self.filter.await;
            let writer = self.writer;
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
            if let Some(t) = self.sync_task {
                let _ = t.await;
            }
            if let Some(t) = self.forecast_task {
                let _ = t.await;
            }
            let _ = self.kpi_task.await;
            let _ = self.alarm_task.await;
            if let Some(t) = self.setpoint_task {
                let _ = t.await;
            }
            if let Some(h) = self.hmi {
                h.join().await;
            }
        };
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::error!(
                "shutdown did not finish within {timeout:?}; uncommitted samples may be lost"
            );
        }
    }
}

struct Supervisor {
    /// Beats while the loop turns (the systemd watchdog watches it).
    beat: web::systemd::Beat,
    config_path: PathBuf,
    config_tx: watch::Sender<Arc<EdgeConfig>>,
    settings_tx: watch::Sender<Arc<FilterSettings>>,
    /// The supervisor's own sender keeps the sample channel open across
    /// reloads; dropping it at shutdown lets the pipeline drain and stop.
    sample_tx: mpsc::Sender<Vec<Sample>>,
    drivers: Arc<Mutex<Vec<DriverHandle>>>,
    driver_cancel: CancellationToken,
    cancel: CancellationToken,
    reloads: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<PipelineStats>,
    history_stats: Arc<history::WriterStats>,
    sync_stats: Arc<sync::SyncStats>,
    sync_enabled: bool,
    /// The HMI's audit log: configuration reloads are recorded in it.
    audit: Option<Arc<web::audit::AuditLog>>,
}

/// Record a configuration change (or a refused one) in the audit log.
async fn audit_reload(s: &Supervisor, action: &str, detail: String) {
    let Some(audit) = s.audit.clone() else { return };
    let entry = web::audit::NewAudit {
        actor: "system".into(),
        action: action.into(),
        target: s.config_path.display().to_string(),
        detail,
        addr: String::new(),
    };
    let r = tokio::task::spawn_blocking(move || {
        audit.append(entry, drivers::Timestamp::now().as_millis())
    })
    .await;
    if !matches!(r, Ok(Ok(_))) {
        tracing::error!("the audit log could not record a configuration reload");
    }
}

const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Run the node's control loop. `triggers` (stopped by `watch_cancel`)
/// watch the configuration's files and SIGHUP from before `start` returned.
async fn supervise(
    mut s: Supervisor,
    mut watch_cancel: CancellationToken,
    mut triggers: mpsc::Receiver<reload::Trigger>,
) {
    let mut watched = s.config_tx.borrow().sources.clone();
    let mut status = tokio::time::interval(STATUS_EVERY);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status.tick().await;
    let mut heartbeat = tokio::time::interval(web::systemd::BEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        s.beat.beat();
        tokio::select! {
            _ = s.cancel.cancelled() => break,
            _ = heartbeat.tick() => {}
            _ = status.tick() => log_status(&s).await,
            t = triggers.recv() => {
                let Some(trigger) = t else {
                    // Trigger tasks ended (cancelled): nothing more to watch.
                    s.cancel.cancelled().await;
                    break;
                };
                // Re-arm the watcher only when the set of files changed:
                // events between the old watcher's end and the new one's
                // start would be lost. When it must be re-armed, read the
                // files once more afterwards for a write in that gap.
                while reload(&mut s, trigger).await {
                    let sources = s.config_tx.borrow().sources.clone();
                    if sources == watched {
                        break;
                    }
                    watch_cancel.cancel();
                    watch_cancel = s.cancel.child_token();
                    triggers = reload::spawn_triggers(&sources, watch_cancel.clone());
                    watched = sources;
                }
            }
        }
    }
    s.driver_cancel.cancel();
    let handles = std::mem::take(&mut *s.drivers.lock().await);
    for h in handles {
        h.join().await;
    }
}

/// Apply a new configuration if it is valid and different. Returns whether
/// it was applied.
async fn reload(s: &mut Supervisor, trigger: reload::Trigger) -> bool {
    tracing::info!(?trigger, path = %s.config_path.display(), "reloading configuration");
    let new = match load_config(&s.config_path).await {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!("new configuration rejected; the current one keeps running:\n{e}");
            audit_reload(
                s,
                "config_rejected",
                e.to_string().chars().take(2000).collect(),
            )
            .await;
            return false;
        }
    };
    let old = s.config_tx.borrow().clone();
    if *old == new {
        tracing::info!("configuration unchanged");
        return false;
    }
    if old.storage != new.storage {
        tracing::warn!("storage settings changed; they take effect at the next restart");
    }
    if old.node != new.node {
        tracing::warn!("node identity changed; it takes effect at the next restart");
    }
    // Stop the old drivers first so two pollers never talk to one device
    // (RTU lines allow a single master). Samples they already sent stay in
    // the channel and are stored.
    s.driver_cancel.cancel();
    {
        let mut drivers = s.drivers.lock().await;
        for h in std::mem::take(&mut *drivers) {
            h.join().await;
        }
        s.driver_cancel = s.cancel.child_token();
        match drivers::spawn_all(&new, s.sample_tx.clone(), s.driver_cancel.clone()) {
            Ok(h) => *drivers = h,
            Err(e) => {
                tracing::error!(error = %e, "cannot start drivers for the new configuration; restarting the old ones");
                match drivers::spawn_all(&old, s.sample_tx.clone(), s.driver_cancel.clone()) {
                    Ok(h) => *drivers = h,
                    Err(e) => tracing::error!(error = %e, "cannot restart the old drivers either"),
                }
                return false;
            }
        }
    }
    s.settings_tx
        .send_replace(Arc::new(FilterSettings::from_config(&new)));
    tracing::info!("configuration applied: {}", summary(&new));
    audit_reload(s, "config_reload", summary(&new)).await;
    s.config_tx.send_replace(Arc::new(new));
    s.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    true
}

async fn log_status(s: &Supervisor) {
    let (seen, stored, filtered) = s.stats.snapshot();
    let drivers = s.drivers.lock().await;
    let statuses: Vec<_> = drivers.iter().map(|d| d.status()).collect();
    let up = statuses.iter().filter(|st| st.connected).count();
    let restarts: u64 = statuses.iter().map(|st| st.restarts).sum();
    tracing::info!(
        devices_up = up,
        devices = drivers.len(),
        driver_restarts = restarts,
        samples_seen = seen,
        samples_stored = stored,
        samples_filtered = filtered,
        history_committed = s.history_stats.samples_written(),
        history_write_failures = s.history_stats.snapshot().store_failures,
        history_failing = s.history_stats.snapshot().store_failing == 1,
        history_over_limit = s.history_stats.snapshot().over_limit == 1,
        "status"
    );
    if s.sync_enabled {
        use std::sync::atomic::Ordering::Relaxed;
        let h = s.history_stats.snapshot();
        let y = &s.sync_stats;
        tracing::info!(
            connected = y.connected.load(Relaxed),
            batches_sealed = h.batches_sealed,
            published = y.published.load(Relaxed),
            resent = y.resent.load(Relaxed),
            acknowledged = y.acked.load(Relaxed),
            outbox_depth = y.depth.load(Relaxed),
            oldest_unacked_s = y.oldest_unacked_ms.load(Relaxed) / 1000,
            outbox_dropped = h.outbox_dropped,
            acks_refused = y.acks_refused.load(Relaxed),
            outbox_delete_errors = y.delete_errors.load(Relaxed),
            "sync"
        );
    }
}

/// Render a tag's recent trend from the local history (for `apos-edge history`).
pub fn history_report(
    cfg: &EdgeConfig,
    tag: &str,
    since: Duration,
    buckets: u32,
) -> Result<String, EdgeError> {
    use std::fmt::Write;
    let reader = history::HistoryReader::open(&cfg.storage.path)?;
    let to = drivers::Timestamp::now().as_millis();
    let from = to - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
    let rows = reader.downsample(tag, from, to, buckets as usize)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{tag}: {} bucket(s) over the last {}",
        rows.len(),
        humantime::format_duration(since)
    );
    let _ = writeln!(
        out,
        "{:<26} {:>8} {:>14} {:>14} {:>14} {:>7}  note",
        "bucket start (UTC)", "samples", "min", "avg", "max", "good"
    );
    for b in rows {
        let start =
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(b.start_ms).unwrap_or(0));
        let stats = if b.count > 0 {
            format!("{:>14.4} {:>14.4} {:>14.4}", b.min, b.avg, b.max)
        } else {
            // Nothing numeric to summarise: no NaN columns.
            format!("{:>14} {:>14} {:>14}", "-", "-", "-")
        };
        let mut note = Vec::new();
        if let Some(t) = &b.last_text {
            note.push(format!("last {t:?}"));
        }
        if let Some(q) = &b.bad_reason {
            note.push(format!("last not good: {q}"));
        }
        let _ = writeln!(
            out,
            "{:<26} {:>8} {stats} {:>6.0}%  {}",
            humantime::format_rfc3339_millis(start).to_string(),
            b.samples,
            b.good_fraction * 100.0,
            note.join("; ")
        );
    }
    Ok(out)
}
