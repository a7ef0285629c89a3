//! The control socket: `apos-hub nodes` and `apos-hub checksum` while the
//! hub runs. The running hub holds the DuckDB file's lock, so the CLI asks
//! it instead, over a Unix domain socket beside the store
//! (`<storage>.sock`, mode 0600, answered only for the hub's own user and
//! root); with no hub answering, the CLI opens the file itself. Both paths
//! print the same text: [`nodes_text`] and [`checksum_text`] render it
//! from a `&Store` (the hub's read pool, or the opened file).
//!
//! ```text
//! apos-hub nodes ──connect <db>.sock──▶ hub: {"cmd":"nodes"} ──read pool──▶ "ok\n" + text
//!        └─ nobody listens ─▶ Store::open(<db>) ─▶ same text
//! ```
//!
//! The exchange: one JSON line from the client, then `ok` or
//! `error: <why>` on the first line of the answer, then the text, then the
//! hub closes the connection.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::store::{ReadPool, Store, StoreError};

/// Longest request line.
const MAX_REQUEST: u64 = 65536;
/// A client has this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests answered at once; more wait for their turn.
const CONCURRENT: usize = 4;
/// How long the CLI waits for an answer (a large fleet's listing).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the CLI waits for an export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The control socket of the hub whose store is `storage`.
pub fn socket_path(storage: &Path) -> PathBuf {
    let mut p = storage.as_os_str().to_owned();
    p.push(".sock");
    PathBuf::from(p)
}

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Nodes,
    Checksum {
        site: String,
        node: String,
    },
    /// `apos-hub export`: the hub writes the export into its state
    /// directory and answers where (etl::export::jobs::export_for_cli).
    Export {
        spec: crate::etl::export::Spec,
    },
    /// `apos-hub import` through the running hub: start importing `file`
    /// (read by the hub's user) with a saved profile or a profile's JSON
    /// (etl::import::control_answer; the answer is JSON).
    ImportStart {
        file: String,
        profile_name: Option<String>,
        profile: Option<String>,
        save_profile: bool,
    },
    /// An import's record, progress and first rejections, as JSON.
    ImportStatus {
        id: String,
    },
    /// `apos-hub sql`: a query run by the SQL sandbox as the API runs it
    /// (crate::sql::control_answer; the answer is JSON).
    Sql {
        query: String,
    },
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] crate::etl::export::ExportError),
    #[error(transparent)]
    Import(#[from] crate::etl::import::ImportError),
    #[error("{0}")]
    Sql(&'static str),
}

impl Request {
    /// The answer's text from a store; `db` is the file named to the user.
    pub fn answer(&self, store: &Store, db: &Path) -> Result<String, AnswerError> {
        match self {
            Request::Nodes => Ok(nodes_text(store, db)?),
            Request::Checksum { site, node } => Ok(checksum_text(store, site, node)?),
            Request::Export { spec } => {
                Ok(crate::etl::export::jobs::export_for_cli(store, db, spec)?)
            }
            Request::ImportStart { .. } | Request::ImportStatus { .. } => {
                Ok(crate::etl::import::control_answer(self, store, db)?)
            }
            Request::Sql { .. } => Err(AnswerError::Sql(
                "SQL is answered by the sandbox, not from a store",
            )),
        }
    }

    /// How long the CLI waits for the answer: an export takes as long as
    /// the data it writes.
    pub fn answer_timeout(&self) -> Duration {
        match self {
            // The hub stops a query at its own `[sql] timeout`.
            Request::Export { .. } | Request::Sql { .. } => EXPORT_TIMEOUT,
            _ => ANSWER_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No hub listens (no socket, or a stale one): open the file instead.
    #[error("no hub answers on {path}: {source}")]
    NoHub {
        path: String,
        source: std::io::Error,
    },
    #[error("the hub on {path} did not answer: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The hub answered with an error.
    #[error("the running hub says: {0}")]
    Hub(String),
    #[error(
        "the directory of {path} can be written by other users; the control socket is not created there"
    )]
    UnsafeDir { path: String },
}

/// Ask the hub listening on `socket` (blocking; for the CLI).
pub fn ask(socket: &Path, req: &Request) -> Result<String, ControlError> {
    let path = socket.display().to_string();
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut s =
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| ControlError::NoHub {
            path: path.clone(),
            source,
        })?;
    s.set_read_timeout(Some(req.answer_timeout())).map_err(io)?;
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(io)?;
    match answer.split_once('\n') {
        Some(("ok", text)) => Ok(text.to_owned()),
        Some((head, _)) if head.starts_with("error: ") => {
            Err(ControlError::Hub(head["error: ".len()..].to_owned()))
        }
        _ => Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an answer of apos-hub",
        ))),
    }
}

/// A running control socket; the file is removed when the hub stops.
#[derive(Debug)]
pub struct ControlHandle {
    pub path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlHandle {
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Serve `socket` until `cancel`, answering from `reads`. `db` is the
/// store's path as the answers name it.
pub fn serve(
    socket: PathBuf,
    db: PathBuf,
    reads: Arc<ReadPool>,
    cancel: CancellationToken,
) -> Result<ControlHandle, ControlError> {
    let path = socket.display().to_string();
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
    // Writable by others without the sticky bit: anyone could put their
    // own socket in its place and answer the CLI.
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(ControlError::UnsafeDir { path });
    }
    // Only a hub holding the store's lock gets here, so an existing socket
    // is a stale one from a hub that was killed.
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(io)?;
    // Before anyone can use it: new sockets get the umask's mode.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let owner = std::fs::metadata(&socket).map_err(io)?.uid();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    let db = Arc::new(db);
    let file = socket.clone();
    let task = tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = cancel.cancelled() => break,
                c = listener.accept() => c,
            };
            let stream = match conn {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == owner || c.uid() == 0);
            if !allowed {
                tracing::warn!("control socket: a connection from another user was refused");
                continue;
            }
            let (reads, db, slots) = (reads.clone(), db.clone(), slots.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                answer(stream, reads, db).await;
            });
        }
        let _ = std::fs::remove_file(&file);
    });
    tracing::info!(socket = %socket.display(), "control socket listening (apos-hub nodes, checksum, export)");
    Ok(ControlHandle { path: socket, task })
}

async fn answer(stream: tokio::net::UnixStream, reads: Arc<ReadPool>, db: Arc<PathBuf>) {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, MAX_REQUEST))
            .read_line(&mut line),
    )
    .await;
    let reply = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Sql { query }) => {
                crate::sql::control_answer(&reads, &db, None, query).await
            }
            Ok(req) => {
                let run =
                    tokio::task::spawn_blocking(move || reads.read(|s| Ok(req.answer(s, &db))));
                match run.await {
                    Ok(Ok(Ok(text))) => format!("ok\n{text}"),
                    Ok(Ok(Err(e))) => format!("error: {e}\n"),
                    Ok(Err(e)) => format!("error: {e}\n"),
                    Err(e) => format!("error: the query failed: {e}\n"),
                }
            }
            Err(e) => format!("error: not a request: {e}\n"),
        },
        _ => return,
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let _ = w.write_all(reply.as_bytes()).await;
        let _ = w.shutdown().await;
    })
    .await;
}

/// A timestamp for people; one that RFC 3339 cannot write (before 1970 or
/// from the year 10,000: humantime panics there) as plain milliseconds.
pub fn utc(ms: i64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    match u64::try_from(ms) {
        Ok(ms) if ms < YEAR_10000_MS => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        _ => format!("{ms} ms since 1970"),
    }
}

/// The `checksum` line: the window count and checksum of one node's
/// stored aggregates (what the fault tests compare).
pub fn checksum_text(store: &Store, site: &str, node: &str) -> Result<String, StoreError> {
    let c = store.checksum(site, node)?;
    Ok(format!("windows={} sum={:016x}\n", c.windows, c.sum))
}

/// The `nodes` listing: the fleet registry, gaps, alarms, lost spans,
/// quarantine, forecasts, KPIs and each edge's outbox.
pub fn nodes_text(store: &Store, db: &Path) -> Result<String, StoreError> {
    let mut o = String::new();
    let nodes = store.nodes()?;
    if nodes.is_empty() {
        let _ = writeln!(o, "no node has delivered anything to {} yet", db.display());
    }
    for n in nodes {
        let gaps = store.gaps(&n.site, &n.node, 20)?;
        let _ = writeln!(o, "{}/{}", n.site, n.node);
        let _ = writeln!(
            o,
            "  software      {}",
            n.software_version
                .as_deref()
                .unwrap_or("(no status received)")
        );
        let _ = writeln!(o, "  first seen    {}", utc(n.first_seen_ms));
        let _ = writeln!(o, "  last seen     {}", utc(n.last_seen_ms));
        let _ = writeln!(
            o,
            "  batches       {} stored, highest seq {}, {} missing below it{}",
            n.batches,
            n.max_seq,
            n.missing,
            if gaps.is_empty() {
                String::new()
            } else {
                format!(
                    " (first: {})",
                    gaps.iter()
                        .map(|g| if g.first == g.last {
                            g.first.to_string()
                        } else {
                            format!("{}–{}", g.first, g.last)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let (events, active) = store.alarms(&n.site, &n.node)?;
        if events > 0 {
            let _ = writeln!(
                o,
                "  alarms        {events} journal entries; {} not normal{}",
                active.len(),
                if active.is_empty() { "" } else { ":" }
            );
            for (alarm, state, priority, since) in active.iter().take(20) {
                let _ = writeln!(
                    o,
                    "                P{priority} {alarm}: {state} since {}",
                    utc(*since)
                );
            }
        }
        let (lost, spans) = store.lost_spans(&n.site, &n.node, 10)?;
        if lost > 0 {
            let _ = writeln!(
                o,
                "  lost windows  {lost} spans the edge reports it never recorded (newest first):"
            );
            for (width, from, to, reason) in spans {
                let _ = writeln!(
                    o,
                    "                {} windows {} – {} ({}): {reason}",
                    humantime::format_duration(Duration::from_millis(u64::from(width))),
                    utc(from),
                    utc(to),
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(to - from).unwrap_or(0)
                    )),
                );
            }
        }
        if n.quarantined > 0 {
            let _ = writeln!(
                o,
                "  quarantine    {} batches kept but not stored (signed, with values no store can hold):",
                n.quarantined
            );
            for (seq, received, reason) in store.quarantined(&n.site, &n.node)?.iter().take(10) {
                let _ = writeln!(
                    o,
                    "                seq {seq}, received {}: {reason}",
                    utc(*received)
                );
            }
        }
        let (forecasts, newest) = store.forecasts(&n.site, &n.node)?;
        match newest {
            Some((model, origin, values)) => {
                let _ = writeln!(
                    o,
                    "  forecasts     {forecasts} stored; newest: {model} from {}: {}",
                    utc(origin),
                    values.chars().take(80).collect::<String>()
                );
            }
            None => {
                let _ = writeln!(o, "  forecasts     none");
            }
        }
        let kpis = store.kpis(&n.site, &n.node)?;
        if kpis.is_empty() {
            let _ = writeln!(o, "  kpis          none");
        }
        // The current (newest) window of each KPI and window kind.
        let mut shown = std::collections::BTreeSet::new();
        for k in kpis {
            if !shown.insert((k.kpi.clone(), k.window.clone())) {
                continue;
            }
            let _ = writeln!(
                o,
                "  kpi           {} [{}{}] {} ({}, coverage {:.1} %{})",
                k.kpi,
                k.window,
                if k.label.is_empty() {
                    String::new()
                } else {
                    format!(" {}", k.label)
                },
                k.value.map_or("—".into(), |v| format!("{v:.4}")),
                k.quality,
                k.coverage * 100.0,
                if k.closed { ", final" } else { "" }
            );
        }
        let _ = writeln!(
            o,
            "  edge outbox   {} batches waiting, oldest {}, {} dropped at the edge (reported)",
            n.outbox_batches.map_or("?".into(), |b| b.to_string()),
            n.oldest_unacked_ms.map_or("-".into(), utc),
            n.dropped_batches.map_or("?".into(), |b| b.to_string()),
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        let r = Request::Checksum {
            site: "s".into(),
            node: "n".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"cmd":"checksum","site":"s","node":"n"}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"nodes"}"#).unwrap(),
            Request::Nodes
        );
        assert_eq!(
            socket_path(Path::new("/var/lib/apos/hub/fleet.duckdb")),
            Path::new("/var/lib/apos/hub/fleet.duckdb.sock")
        );
    }

    /// The socket answers what the file would, refuses garbage, and is
    /// created 0600; a directory others can write is refused.
    #[tokio::test]
    async fn the_socket_answers_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fleet.duckdb");
        let mut store = Store::open(&db).unwrap();
        let reads = store.read_pool().unwrap();
        let sock = socket_path(&db);
        // A stale socket file from a killed hub is replaced.
        std::fs::write(&sock, b"").unwrap();
        let cancel = CancellationToken::new();
        let h = serve(sock.clone(), db.clone(), reads, cancel.clone()).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s2 = sock.clone();
        let got = tokio::task::spawn_blocking(move || ask(&s2, &Request::Nodes))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, nodes_text(&store, &db).unwrap());
        assert!(got.starts_with("no node has delivered anything"), "{got}");
        let s2 = sock.clone();
        let got = tokio::task::spawn_blocking(move || {
            ask(
                &s2,
                &Request::Checksum {
                    site: "s".into(),
                    node: "n".into(),
                },
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, "windows=0 sum=0000000000000000\n");
        // Not a request: an error line, and the hub carries on.
        let mut raw = tokio::net::UnixStream::connect(&sock).await.unwrap();
        raw.write_all(b"drop table nodes\n").await.unwrap();
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut raw, &mut text)
            .await
            .unwrap();
        assert!(text.starts_with("error: not a request"), "{text}");
        store.ping().unwrap();
        cancel.cancel();
        h.join().await;
        assert!(!sock.exists(), "removed when the hub stops");
        let s2 = sock.clone();
        let r = tokio::task::spawn_blocking(move || ask(&s2, &Request::Nodes))
            .await
            .unwrap();
        assert!(matches!(r, Err(ControlError::NoHub { .. })), "{r:?}");

        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let r = serve(
            open.join("x.sock"),
            db.clone(),
            store.read_pool().unwrap(),
            CancellationToken::new(),
        );
        assert!(matches!(r, Err(ControlError::UnsafeDir { .. })), "{r:?}");
    }
}
