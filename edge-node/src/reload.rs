//! Reload triggers: SIGHUP and changes to any file the config was built from.
//!
//! Triggers go into a channel of capacity 1 that *drops* when full: a
//! pending reload will read the newest files anyway, so coalescing a burst
//! of editor writes into one reload is exactly what we want.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a reload was requested (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChanged,
}

/// Editors write files in several steps; wait for the burst to settle.
const SETTLE: Duration = Duration::from_millis(300);

/// Watch `files` (their directories, since editors replace files by rename)
/// and SIGHUP. Returns the receiver of triggers; watching stops when
/// `cancel` fires. The watcher is re-armed with new paths by calling this
/// again after a successful reload.
pub fn spawn_triggers(files: &[PathBuf], cancel: CancellationToken) -> mpsc::Receiver<Trigger> {
    let (tx, rx) = mpsc::channel(1);
    spawn_sighup(tx.clone(), cancel.clone());
    spawn_file_watch(files.to_vec(), tx, cancel);
    rx
}

fn spawn_sighup(tx: mpsc::Sender<Trigger>, cancel: CancellationToken) {
    // Listen before returning, not inside the task: a SIGHUP sent the
    // moment `Edge::start` returns (systemd's READY=1, then `systemctl
    // reload`) would otherwise be missed.
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on signal is disabled");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() { return; }
                    let _ = tx.try_send(Trigger::Signal);
                }
            }
        }
    });
}

fn spawn_file_watch(files: Vec<PathBuf>, tx: mpsc::Sender<Trigger>, cancel: CancellationToken) {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let watched: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let names = watched.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let relevant = ev.paths.iter().any(|p| names.iter().any(|n| n == p));
            let modifying = !matches!(ev.kind, notify::EventKind::Access(_));
            if relevant && modifying {
                let _ = raw_tx.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch config files; use SIGHUP to reload");
            return;
        }
    };
    let mut dirs: Vec<&Path> = watched.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory; use SIGHUP to reload");
        }
    }
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with this task
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                got = raw_rx.recv() => {
                    if got.is_none() { return; }
                    // Debounce: swallow the rest of the burst.
                    tokio::time::sleep(SETTLE).await;
                    while raw_rx.try_recv().is_ok() {}
                    let _ = tx.try_send(Trigger::FileChanged);
                }
            }
        }
    });
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
