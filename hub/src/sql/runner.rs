//! The hub side of one query: start the worker with nothing it does not
//! need, hand it the query, read its one JSON line, kill it at the timeout.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Answer, MAX_ANSWER_BYTES, SqlError, WorkerError};
use crate::config::Sql;

/// Most of the worker's stderr kept for the log.
const MAX_STDERR: u64 = 16 << 10;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// An empty directory only this user can enter, removed afterwards: the
/// worker's working directory, so a relative path resolves to nothing.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        let p = std::env::temp_dir().join(format!(
            "apos-sql-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&p)?;
        Ok(PrivateDir(p))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The worker, killed (SIGKILL) and reaped on every way out.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What the worker's stdout held: at most MAX_ANSWER_BYTES, or `None`
/// when it wrote more.
type Out = std::io::Result<Option<Vec<u8>>>;

pub(super) fn run(exe: &Path, db: &Path, cfg: &Sql, query: &str) -> Result<Answer, SqlError> {
    let wd = PrivateDir::new()
        .map_err(|e| SqlError::Worker(format!("cannot create its directory: {e}")))?;
    let threads = cfg.threads.max(1);
    // CPU seconds over all threads: a backstop should the hub not kill it.
    let cpu = cfg.timeout.as_secs().saturating_add(1) * u64::from(threads) + 1;
    let mut cmd = Command::new(exe);
    cmd.arg("sql")
        .arg("--worker")
        .arg("--worker-db")
        .arg(db)
        .arg("--worker-memory")
        .arg(cfg.memory_limit.to_string())
        .arg("--worker-threads")
        .arg(threads.to_string())
        .arg("--worker-max-rows")
        .arg(cfg.max_rows.to_string())
        .arg("--worker-cpu-seconds")
        .arg(cpu.to_string())
        .env_clear()
        .current_dir(&wd.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C to the CLI is not
        // also delivered to it (the CLI kills it itself).
        .process_group(0);
    let started = Instant::now();
    let mut w = Worker(
        cmd.spawn()
            .map_err(|e| SqlError::Worker(format!("cannot start {}: {e}", exe.display())))?,
    );
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (w.0.stdin.take(), w.0.stdout.take(), w.0.stderr.take())
    else {
        return Err(SqlError::Worker("no pipes to the worker".into()));
    };
    // The worker reads the query only once it is locked down; a long query
    // fills the pipe before that, so it is written from a thread.
    let q = query.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&q);
    });
    let (tx, rx) = mpsc::channel::<Out>();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = stdout
            .take(MAX_ANSWER_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map(|_| (buf.len() <= MAX_ANSWER_BYTES).then_some(buf));
        let _ = tx.send(r);
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut s = stderr;
        let _ = (&mut s).take(MAX_STDERR).read_to_end(&mut buf);
        let _ = std::io::copy(&mut s, &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    });
    let out = match rx.recv_timeout(cfg.timeout) {
        Ok(r) => r,
        Err(_) => {
            drop(w);
            let _ = writer.join();
            return Err(SqlError::Timeout(cfg.timeout));
        }
    };
    // Its stdout closed: it is exiting. Wait for that within what is left.
    let end = started + cfg.timeout + Duration::from_secs(1);
    let status = loop {
        match w.0.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            _ => break None,
        }
    };
    drop(w);
    let _ = writer.join();
    let stderr = err_reader.join().unwrap_or_default();
    let out = match out {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err(SqlError::TooLarge(format!(
                "the answer is larger than {} MiB; select fewer columns or rows",
                MAX_ANSWER_BYTES >> 20
            )));
        }
        Err(e) => return Err(SqlError::Worker(format!("reading its answer: {e}"))),
    };
    let Some(status) = status else {
        return Err(SqlError::Timeout(cfg.timeout));
    };
    if status.success() {
        if let Ok(a) = serde_json::from_slice::<Answer>(&out) {
            return Ok(a);
        }
        if let Ok(e) = serde_json::from_slice::<WorkerError>(&out) {
            return Err(match e.kind.as_str() {
                "memory" => SqlError::Memory(human_bytes(cfg.memory_limit), e.error),
                "too_large" => SqlError::TooLarge(e.error),
                "sql" => SqlError::Query(e.error),
                _ => SqlError::Worker(e.error),
            });
        }
    }
    let why = match status.signal() {
        Some(libc::SIGXCPU) => {
            return Err(SqlError::Timeout(cfg.timeout));
        }
        Some(libc::SIGSYS) => "it made a forbidden system call".to_owned(),
        Some(libc::SIGKILL) => "it was killed (out of memory?)".to_owned(),
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) => {
            // An allocation refused by RLIMIT_AS ends as std::bad_alloc in
            // DuckDB's C++ code when it escapes DuckDB's own accounting.
            return Err(SqlError::Memory(
                human_bytes(cfg.memory_limit),
                format!(
                    "the worker stopped with signal {}",
                    status.signal().unwrap_or(0)
                ),
            ));
        }
        Some(s) => format!("it stopped with signal {s}"),
        None => format!("it exited with {status}"),
    };
    tracing::warn!(%why, stderr = %stderr.trim(), "SQL worker failed");
    Err(SqlError::Worker(why))
}

pub(super) fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}
