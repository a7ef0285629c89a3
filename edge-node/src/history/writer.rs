//! The writer thread: the only writer of the history database.
//!
//! Batches arrive on a bounded channel from the pipeline. The thread
//! accumulates them and commits one transaction per `batch_size` samples, or
//! after `flush_interval` for a partial batch, then runs a time-boxed
//! retention step when one is due.
//!
//! If a commit fails (disk full, I/O error), the samples stay pending and
//! the commit is retried with backoff. While pending samples exceed
//! [`MAX_PENDING_BATCHES`] batches the thread stops reading the channel, so
//! the pipeline and then the drivers slow down (backpressure) instead of
//! anything being dropped. Only at shutdown, if the final commit keeps
//! failing, are samples lost — counted in `dropped` and logged as an error.
//!
//! With sync enabled, closed aggregation windows arrive on a second bounded
//! channel and are sealed at once: stored and queued in the outbox in one
//! transaction ([`HistoryStore::seal_windows`]). Windows that cannot be
//! sealed stay pending and are retried like samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drivers::{Sample, Timestamp};
use firmware_config::Storage;
use protocol::v1::WindowSet;
use tokio::sync::mpsc;

use super::pressure::Pressure;
use super::{HistoryError, HistoryOptions, HistoryStore};
use crate::sync::outbox::OutboxPolicy;

/// The outbox side of the writer: closed windows in, sealed batches out.
#[derive(Debug)]
pub struct OutboxInput {
    pub windows: mpsc::Receiver<Vec<WindowSet>>,
    pub policy: OutboxPolicy,
    /// Told the sequence numbers of newly sealed batches (never blocks).
    pub sealed: Option<tokio::sync::watch::Sender<u64>>,
}

/// Stop reading new samples above this many batches pending.
pub const MAX_PENDING_BATCHES: usize = 4;
/// Repeated alarms and errors are logged at most this often (counters stay exact).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Commit attempts at shutdown before giving up.
const FINAL_ATTEMPTS: u32 = 5;

/// Live counters of the writer, shared with status reporting.
#[derive(Debug, Default)]
pub struct WriterStats {
    received: AtomicU64,
    written: AtomicU64,
    transactions: AtomicU64,
    commit_errors: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    last_commit_us: AtomicU64,
    pub(crate) retention_deleted: AtomicU64,
    pub(crate) retention_other: AtomicU64,
    pub(crate) store_failures: AtomicU64,
    pub(crate) store_failing: AtomicU64,
    memory_windows: AtomicU64,
    over_limit: AtomicU64,
    merged: AtomicU64,
    batches_sealed: AtomicU64,
    outbox_dropped: AtomicU64,
    /// Beats each time the writer's loop turns, at least once a second
    /// (the systemd watchdog watches it: `Edge::heartbeats`).
    pub(crate) beat: web::systemd::Beat,
}

/// A copy of [`WriterStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStatsSnapshot {
    pub received: u64,
    pub written: u64,
    pub transactions: u64,
    pub commit_errors: u64,
    pub dropped: u64,
    pub pending: u64,
    pub last_commit_us: u64,
    pub retention_deleted: u64,
    /// Windows, KPI values and forecasts deleted by retention.
    pub retention_other: u64,
    /// 1 while the database is over max_size with only protected data.
    pub over_limit: u64,
    /// Failed commits and seals (full disk, I/O error), and 1 while the
    /// last one failed: samples and windows then exist in memory only.
    pub store_failures: u64,
    pub store_failing: u64,
    /// Windows waiting to be sealed (in memory only).
    pub memory_windows: u64,
    /// Samples moved from the inbox to the main table.
    pub merged: u64,
    /// Outbox batches sealed, and lost to the outbox's size bound.
    pub batches_sealed: u64,
    pub outbox_dropped: u64,
}

impl WriterStats {
    /// Samples committed to the database so far.
    pub fn samples_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> WriterStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStatsSnapshot {
            received: l(&self.received),
            written: l(&self.written),
            transactions: l(&self.transactions),
            commit_errors: l(&self.commit_errors),
            dropped: l(&self.dropped),
            pending: l(&self.pending),
            last_commit_us: l(&self.last_commit_us),
            retention_deleted: l(&self.retention_deleted),
            retention_other: l(&self.retention_other),
            over_limit: l(&self.over_limit),
            store_failures: l(&self.store_failures),
            store_failing: l(&self.store_failing),
            memory_windows: l(&self.memory_windows),
            merged: l(&self.merged),
            batches_sealed: l(&self.batches_sealed),
            outbox_dropped: l(&self.outbox_dropped),
        }
    }
}

/// Handle of the running writer thread.
#[derive(Debug)]
pub struct HistoryWriter {
    thread: JoinHandle<Result<(), HistoryError>>,
    stats: Arc<WriterStats>,
}

impl HistoryWriter {
    /// Open the database of `storage` and start the writer thread reading `rx`.
    /// The thread ends (after committing everything) when every sender is dropped.
    pub fn spawn(storage: &Storage, rx: mpsc::Receiver<Vec<Sample>>) -> Result<Self, HistoryError> {
        Self::spawn_with(HistoryOptions::from(storage), rx)
    }

    /// Like [`Self::spawn`] with every option explicit.
    pub fn spawn_with(
        opts: HistoryOptions,
        rx: mpsc::Receiver<Vec<Sample>>,
    ) -> Result<Self, HistoryError> {
        Self::spawn_with_outbox(opts, rx, None)
    }

    /// Like [`Self::spawn_with`], also sealing windows into the outbox.
    pub fn spawn_with_outbox(
        opts: HistoryOptions,
        rx: mpsc::Receiver<Vec<Sample>>,
        outbox: Option<OutboxInput>,
    ) -> Result<Self, HistoryError> {
        // Open here so a bad path fails the node's start, not a thread later.
        let store = HistoryStore::open(&opts)?;
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || run(store, rx, outbox, &st))
            .map_err(HistoryError::Spawn)?;
        Ok(Self { thread, stats })
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Wait for the thread to finish (blocking).
    pub fn join(self) -> Result<(), HistoryError> {
        self.thread
            .join()
            .map_err(|_| HistoryError::WriterPanicked)?
    }
}

fn run(
    mut store: HistoryStore,
    mut rx: mpsc::Receiver<Vec<Sample>>,
    mut outbox: Option<OutboxInput>,
    stats: &WriterStats,
) -> Result<(), HistoryError> {
    let mut windows: Vec<WindowSet> = Vec::new();
    let mut windows_open = outbox.is_some();
    // A tiny runtime only to wait on the channel with a timeout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(HistoryError::Spawn)?;
    let opts = store.options().clone();
    let batch_size = opts.batch_size.max(1);
    let mut pending: Vec<Sample> = Vec::with_capacity(batch_size);
    let mut oldest_pending: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    let mut retry_delay = Duration::from_millis(100);
    let mut next_retention = Instant::now();
    let mut next_merge = Instant::now() + opts.merge_interval;
    let mut retention_unfinished = false;
    let mut last_over_limit_log: Option<Instant> = None;
    let mut full_log = Tally::default();
    let mut pressure = Pressure::new(&opts.path, opts.reserve_bytes);
    let mut open = true;

    while open || !pending.is_empty() || !windows.is_empty() {
        stats.beat.beat();
        let now = Instant::now();
        if !windows.is_empty()
            && retry_at.is_none_or(|t| now >= t)
            && let Some(ob) = &outbox
        {
            match store.seal_windows(&windows, &ob.policy, Timestamp::now().as_millis()) {
                Ok(r) => {
                    windows.clear();
                    stats.memory_windows.store(0, Ordering::Relaxed);
                    pressure.succeeded(stats);
                    retry_at = None;
                    retry_delay = Duration::from_millis(100);
                    stats
                        .batches_sealed
                        .fetch_add(r.sealed.len() as u64, Ordering::Relaxed);
                    if r.dropped > 0 {
                        stats.outbox_dropped.fetch_add(r.dropped, Ordering::Relaxed);
                        full_log.add(r.dropped, r.dropped_bytes);
                        if let Some((batches, bytes)) = full_log.due() {
                            tracing::error!(
                                dropped_batches = batches,
                                dropped_bytes = bytes,
                                dropped_total = stats.outbox_dropped.load(Ordering::Relaxed),
                                policy = ?ob.policy.when_full,
                                max_bytes = ob.policy.max_bytes,
                                "ALARM outbox full: batches for the hub were dropped (counts since the last such line; at most one a minute)"
                            );
                        }
                    }
                    if let (Some(tx), Some(&last)) = (&ob.sealed, r.sealed.last()) {
                        let _ = tx.send(last);
                    }
                }
                Err(e) => {
                    stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                    let n: usize = windows.iter().map(|s| s.windows.len()).sum();
                    stats.memory_windows.store(n as u64, Ordering::Relaxed);
                    pressure.failed(
                        &e,
                        &mut store,
                        stats,
                        pending.len(),
                        n,
                        Timestamp::now().as_millis(),
                    );
                    retry_at = Some(now + retry_delay);
                    retry_delay = (retry_delay * 2).min(Duration::from_secs(5));
                    if !open {
                        if stats.commit_errors.load(Ordering::Relaxed) >= u64::from(FINAL_ATTEMPTS)
                        {
                            return Err(e);
                        }
                        std::thread::sleep(retry_delay);
                    }
                }
            }
            continue;
        }
        let must_commit = pending.len() >= batch_size
            || oldest_pending.is_some_and(|t| now >= t + opts.flush_interval)
            || (!open && !pending.is_empty());
        if must_commit && retry_at.is_none_or(|t| now >= t) {
            match commit(&mut store, &mut pending, stats) {
                Ok(()) => {
                    oldest_pending = None;
                    retry_at = None;
                    retry_delay = Duration::from_millis(100);
                    pressure.succeeded(stats);
                }
                Err(e) => {
                    stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                    let n: usize = windows.iter().map(|s| s.windows.len()).sum();
                    pressure.failed(
                        &e,
                        &mut store,
                        stats,
                        pending.len(),
                        n,
                        Timestamp::now().as_millis(),
                    );
                    if !open
                        && stats.commit_errors.load(Ordering::Relaxed) >= u64::from(FINAL_ATTEMPTS)
                    {
                        stats
                            .dropped
                            .fetch_add(pending.len() as u64, Ordering::Relaxed);
                        tracing::error!(
                            lost = pending.len(),
                            "shutting down with uncommittable samples; they are lost"
                        );
                        return Err(e);
                    }
                    retry_at = Some(now + retry_delay);
                    retry_delay = (retry_delay * 2).min(Duration::from_secs(5));
                    if !open {
                        std::thread::sleep(retry_delay);
                    }
                }
            }
            continue;
        }
        let inbox = store.inbox_rows();
        if retry_at.is_none() && inbox > 0 && (inbox >= opts.merge_rows || now >= next_merge) {
            let started = Instant::now();
            match store.merge() {
                Ok(n) => {
                    stats.merged.fetch_add(n, Ordering::Relaxed);
                    tracing::debug!(samples = n, took = ?started.elapsed(), "history inbox merged");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history merge failed; retrying at the next interval")
                }
            }
            next_merge = Instant::now() + opts.merge_interval;
            continue;
        }
        if (retention_unfinished || now >= next_retention) && retry_at.is_none() {
            pressure.tick(&mut store);
            match store.retention_step(Timestamp::now().as_millis(), opts.retention_budget) {
                Ok(r) => {
                    stats
                        .retention_deleted
                        .fetch_add(r.deleted_by_age + r.deleted_by_size, Ordering::Relaxed);
                    stats.retention_other.fetch_add(
                        r.total() - r.deleted_by_age - r.deleted_by_size,
                        Ordering::Relaxed,
                    );
                    stats
                        .over_limit
                        .store(u64::from(r.over_limit), Ordering::Relaxed);
                    if r.total() > 0 {
                        tracing::info!(
                            samples_by_age = r.deleted_by_age,
                            samples_by_size = r.deleted_by_size,
                            windows = r.aggregates_deleted,
                            kpi_values = r.kpis_deleted,
                            forecasts = r.forecasts_deleted,
                            size_bytes = r.size_bytes,
                            "history retention deleted"
                        );
                    }
                    if r.over_limit
                        && last_over_limit_log.is_none_or(|t: Instant| t.elapsed() >= LOG_EVERY)
                    {
                        last_over_limit_log = Some(Instant::now());
                        tracing::error!(
                            size_bytes = r.size_bytes,
                            max_size = opts.retention_bytes,
                            min_raw_span = ?opts.min_raw_span,
                            "ALARM history over max_size with only protected data left (raw samples within min_raw_span, windows not acknowledged by the hub); raise max_size or lower min_raw_span"
                        );
                    }
                    retention_unfinished = !r.done;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history retention step failed; retrying later");
                    retention_unfinished = false;
                }
            }
            next_retention = Instant::now() + opts.retention_interval;
        }
        if !open {
            continue;
        }
        // Wait for more samples, unless too much is pending already.
        let deadline = [
            oldest_pending.map(|t| t + opts.flush_interval),
            retry_at,
            Some(next_retention),
            (store.inbox_rows() > 0).then_some(next_merge),
            retention_unfinished.then_some(now),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(1))
        // Wake at least once per beat interval, idle or not: a writer that
        // waits on an empty channel is alive.
        .min(now + web::systemd::BEAT_EVERY);
        let wait = deadline.saturating_duration_since(Instant::now());
        if pending.len() >= batch_size * MAX_PENDING_BATCHES {
            std::thread::sleep(wait.min(Duration::from_millis(100)));
            continue;
        }
        enum Got {
            Samples(Option<Vec<Sample>>),
            Windows(Option<Vec<WindowSet>>),
        }
        let got = rt.block_on(async {
            let win = async {
                match outbox.as_mut() {
                    Some(ob) if windows_open => ob.windows.recv().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::time::timeout(wait, async {
                tokio::select! {
                    w = win => Got::Windows(w),
                    s = rx.recv() => Got::Samples(s),
                }
            })
            .await
        });
        let got = match got {
            Ok(Got::Windows(Some(w))) => {
                windows.extend(w);
                continue;
            }
            Ok(Got::Windows(None)) => {
                windows_open = false;
                continue;
            }
            Ok(Got::Samples(s)) => Ok(s),
            Err(e) => Err(e),
        };
        match got {
            Ok(Some(batch)) => {
                accept(batch, &mut pending, &mut oldest_pending, stats);
                // Drain what is already queued without waiting.
                while pending.len() < batch_size {
                    match rx.try_recv() {
                        Ok(batch) => accept(batch, &mut pending, &mut oldest_pending, stats),
                        Err(_) => break,
                    }
                }
            }
            Ok(None) => {
                open = false;
                // Windows still queued, or about to be (the aggregator's
                // sender goes with the pipeline), are sealed before the end:
                // dropping the channel here lost up to its capacity in sets.
                if windows_open && let Some(ob) = outbox.as_mut() {
                    rt.block_on(async {
                        let deadline = tokio::time::sleep(Duration::from_secs(5));
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                w = ob.windows.recv() => match w {
                                    Some(w) => windows.extend(w),
                                    None => break,
                                },
                                () = &mut deadline => {
                                    tracing::warn!("the aggregator did not close its channel at shutdown; sealing what arrived");
                                    break;
                                }
                            }
                        }
                    });
                    windows_open = false;
                }
            }
            Err(_) => {}
        }
    }
    stats.pending.store(0, Ordering::Relaxed);
    store.close()
}

/// Counts of a repeated event, logged at most once per [`LOG_EVERY`]: the
/// first at once, later lines with everything since the previous line.
#[derive(Debug, Default)]
struct Tally {
    last: Option<Instant>,
    count: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, count: u64, bytes: u64) {
        self.count += count;
        self.bytes += bytes;
    }

    /// The counts to log now, if a line is due.
    fn due(&mut self) -> Option<(u64, u64)> {
        if self.count == 0 || self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some((
            std::mem::take(&mut self.count),
            std::mem::take(&mut self.bytes),
        ))
    }
}

fn accept(
    batch: Vec<Sample>,
    pending: &mut Vec<Sample>,
    oldest: &mut Option<Instant>,
    stats: &WriterStats,
) {
    if batch.is_empty() {
        return;
    }
    stats
        .received
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    oldest.get_or_insert_with(Instant::now);
    pending.extend(batch);
    stats.pending.store(pending.len() as u64, Ordering::Relaxed);
}

fn commit(
    store: &mut HistoryStore,
    pending: &mut Vec<Sample>,
    stats: &WriterStats,
) -> Result<(), HistoryError> {
    let started = Instant::now();
    store.insert(pending)?;
    stats.last_commit_us.store(
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    stats
        .written
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    stats.transactions.fetch_add(1, Ordering::Relaxed);
    pending.clear();
    stats.pending.store(0, Ordering::Relaxed);
    Ok(())
}
