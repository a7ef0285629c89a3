//! When the history cannot be written: a full disk, an I/O error.
//!
//! The writer keeps what it could not store in memory and retries; this
//! module makes that loud and gives the disk room again:
//!
//! - **Alarm.** Every failed write is counted; an `ALARM history cannot be
//!   written` line (at most one a minute) says how many samples and windows
//!   exist only in memory, i.e. what a kill or power loss would cost now.
//!   Such a loss is reported to the hub after the restart
//!   (`protocol::v1::Body::Lost`, see `HistoryStore::seal_windows`).
//! - **Reserve.** A file of `[storage] reserve` bytes of zeros next to the
//!   database (`history.db.reserve`), written in the background at start
//!   (so it never delays the first commits). When a write fails
//!   because the disk is full, the file is deleted: that space lets SQLite
//!   grow its WAL and run the deletes below.
//! - **Room inside the file.** On a full disk the size limit drops to 90 %
//!   of what the database uses now, so retention deletes in its usual order
//!   (acknowledged windows, KPI values, forecasts, raw samples beyond
//!   `min_raw_span`) and SQLite reuses the freed pages. Once the file system
//!   has twice the reserve free again, the reserve is written back and the
//!   limit returns to `max_size`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::writer::WriterStats;
use super::{HistoryError, HistoryStore};

/// Repeated alarms are logged at most this often (counters stay exact).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How often a missing reserve is checked for room to write it back.
const RESERVE_CHECK: Duration = Duration::from_secs(30);

/// Whether `e` says the disk (or the database's quota) is full.
pub(crate) fn is_disk_full(e: &HistoryError) -> bool {
    matches!(
        e,
        HistoryError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::DiskFull
    )
}

/// Bytes available to this process on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a plain struct
    // statvfs fills in; nothing is kept after the call.
    #[allow(unsafe_code)]
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st)
    }?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Reserve `bytes` of disk blocks for `f` without writing them.
fn allocate(f: &std::fs::File, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let len =
        libc::off_t::try_from(bytes).map_err(|_| std::io::Error::other("reserve too large"))?;
    // SAFETY: a valid open file descriptor, offset 0 and a positive length;
    // posix_fallocate only allocates blocks for it.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// The reserve file beside the database.
#[derive(Debug)]
struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    fn present(&self) -> bool {
        self.bytes > 0 && self.path.metadata().is_ok_and(|m| m.len() >= self.bytes)
    }

    /// Allocate the reserve as real blocks, not a sparse file: with
    /// `posix_fallocate` where the file system has it (no data is written,
    /// so a start costs no I/O), else by writing zeros.
    fn create(&self) -> std::io::Result<()> {
        let result = (|| {
            let mut f = std::fs::File::create(&self.path)?;
            if allocate(&f, self.bytes).is_ok() {
                return Ok(());
            }
            let chunk = vec![0u8; 1 << 20];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }

    fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// The writer's state of mind about its storage.
#[derive(Debug)]
pub(crate) struct Pressure {
    reserve: Reserve,
    failing_since: Option<Instant>,
    failures: u64,
    last_log: Option<Instant>,
    /// The alarm line of the current episode was logged.
    announced: bool,
    /// The size limit is lowered because the disk filled.
    disk_full: bool,
    next_reserve_check: Instant,
}

impl Pressure {
    /// Write the reserve if it is missing (a failure is logged, not fatal).
    pub(crate) fn new(db: &Path, reserve_bytes: u64) -> Pressure {
        let mut name = db.as_os_str().to_owned();
        name.push(".reserve");
        let reserve = Reserve {
            path: PathBuf::from(name),
            bytes: reserve_bytes,
        };
        if reserve.bytes == 0 {
            let _ = std::fs::remove_file(&reserve.path);
        } else if !reserve.present() {
            // On a thread of its own: tens of MiB and an fsync must not
            // delay the writer's first commits.
            let r = Reserve {
                path: reserve.path.clone(),
                bytes: reserve.bytes,
            };
            let spawned = std::thread::Builder::new()
                .name("history-reserve".into())
                .spawn(move || {
                    if let Err(e) = r.create() {
                        tracing::warn!(path = %r.path.display(), bytes = r.bytes, error = %e,
                            "cannot write the storage reserve; a full disk will stop the history sooner");
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start writing the storage reserve");
            }
        }
        Pressure {
            reserve,
            failing_since: None,
            failures: 0,
            last_log: None,
            announced: false,
            disk_full: false,
            next_reserve_check: Instant::now() + RESERVE_CHECK,
        }
    }

    /// A commit or seal failed with `e`; `samples` and `windows` are held
    /// in memory only. On a full disk, makes room (see the module docs).
    pub(crate) fn failed(
        &mut self,
        e: &HistoryError,
        store: &mut HistoryStore,
        stats: &WriterStats,
        samples: usize,
        windows: usize,
        now_ms: i64,
    ) {
        self.failures += 1;
        stats.store_failures.fetch_add(1, Ordering::Relaxed);
        stats.store_failing.store(1, Ordering::Relaxed);
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_log = Some(Instant::now());
            self.announced = true;
            tracing::error!(
                error = %e,
                samples_in_memory = samples,
                windows_in_memory = windows,
                failed_writes = self.failures,
                failing_for = ?since.elapsed(),
                "ALARM history cannot be written: samples and windows are held in memory only and are lost if the edge stops now (retrying; at most one such line a minute)"
            );
        }
        if !is_disk_full(e) {
            return;
        }
        let released = self.reserve.present() && self.reserve.release();
        let used = store.size_bytes().unwrap_or(0);
        let limit = used / 10 * 9;
        store.set_size_limit_override(Some(limit));
        if released || !self.disk_full {
            tracing::error!(
                reserve_released = released,
                reserve_bytes = self.reserve.bytes,
                used_bytes = used,
                limit_bytes = limit,
                "ALARM disk full: released the storage reserve and lowered the history's size limit to make room inside the database"
            );
        }
        self.disk_full = true;
        match store.retention_step(now_ms, Duration::from_secs(2)) {
            Ok(r) => {
                stats
                    .retention_deleted
                    .fetch_add(r.deleted_by_age + r.deleted_by_size, Ordering::Relaxed);
                stats.retention_other.fetch_add(
                    r.aggregates_deleted + r.kpis_deleted + r.forecasts_deleted,
                    Ordering::Relaxed,
                );
                // Counted in the writer's stats; at debug level because a
                // flapping disk would repeat it many times a minute.
                tracing::debug!(
                    samples = r.deleted_by_age + r.deleted_by_size,
                    windows = r.aggregates_deleted,
                    kpi_values = r.kpis_deleted,
                    forecasts = r.forecasts_deleted,
                    used_bytes = r.size_bytes,
                    "history retention on a full disk"
                );
            }
            Err(e) => tracing::debug!(error = %e, "retention on a full disk failed too"),
        }
    }

    /// A write worked.
    pub(crate) fn succeeded(&mut self, stats: &WriterStats) {
        if let Some(since) = self.failing_since.take() {
            // Paired with the alarm line, so a disk that flaps between full
            // and not still logs at most two lines a minute.
            if std::mem::take(&mut self.announced) {
                tracing::warn!(
                    failed_writes = self.failures,
                    after = ?since.elapsed(),
                    "history is written again; nothing held in memory was lost"
                );
            }
            self.failures = 0;
            stats.store_failing.store(0, Ordering::Relaxed);
        }
    }

    /// Now and then: once the disk has room again, restore the reserve and
    /// the normal size limit.
    pub(crate) fn tick(&mut self, store: &mut HistoryStore) {
        if Instant::now() < self.next_reserve_check || self.failing_since.is_some() {
            return;
        }
        self.next_reserve_check = Instant::now() + RESERVE_CHECK;
        if !self.disk_full && (self.reserve.bytes == 0 || self.reserve.present()) {
            return;
        }
        let dir = self
            .reserve
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let room = free_bytes(dir).unwrap_or(0);
        if room < self.reserve.bytes.saturating_mul(2).max(1 << 20) {
            return;
        }
        if self.reserve.bytes > 0
            && !self.reserve.present()
            && let Err(e) = self.reserve.create()
        {
            tracing::warn!(error = %e, "cannot write the storage reserve back yet");
            return;
        }
        store.set_size_limit_override(None);
        if self.disk_full {
            tracing::warn!(
                free_bytes = room,
                "the disk has room again: storage reserve restored, history size limit back to max_size"
            );
        }
        self.disk_full = false;
    }
}
