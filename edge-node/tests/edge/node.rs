//! The `apos-edge` binary as an integrator runs it: `validate`, `run` with
//! hot reload (file change and SIGHUP), and `kill -9` of the whole process.
//!
//! The PLC is a small Modbus TCP server built on tokio-modbus's server side,
//! so these tests need no external peer.

use std::future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

const BIN: &str = env!("CARGO_BIN_EXE_apos-edge");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------- validate

#[test]
fn validate_accepts_the_shipped_example() {
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(repo_root().join("docs/config/edge.example.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("20 tags")
            && stdout.contains("5 KPIs (Europe/Berlin time)")
            && stdout.contains("3 alarms"),
        "summary should count the example's tags: {stdout}"
    );
}

#[test]
fn validate_lists_every_problem_with_location_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        r#"schema_version = 1
[node]
site_id = "s"
node_id = "n"

[storage]
path = "h.db"
retension = "7d"

[[device]]
name = "plc"
protocol = "modbus-tcp"
host = "127.0.0.1"

[[tag]]
name = "a"
device = "plc"
area = "holding"
address = 65535
type = "f32"

[[tag]]
name = "b"
device = "nope"
area = "coil"
address = 1
type = "bool"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    // Each problem names the file and line, and all three are reported at once.
    assert!(
        stderr.contains("edge.toml:8"),
        "unknown key `retension` on line 8: {stderr}"
    );
    assert!(
        stderr.contains("retention"),
        "should suggest the right key: {stderr}"
    );
    assert!(
        stderr.contains("edge.toml:19"),
        "address span crossing 65535 on line 19: {stderr}"
    );
    assert!(
        stderr.contains("edge.toml:24"),
        "unknown device on line 24: {stderr}"
    );
}

#[test]
fn validate_missing_file_exits_2() {
    let out = Command::new(BIN)
        .args(["validate", "--config", "/nonexistent/apos/edge.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/apos/edge.toml"));
}

// ------------------------------------------------------------- test PLC

/// Holding registers whose value is `address + tick`, where `tick` grows on
/// every request, so every poll yields a new value and passes the deadband.
struct CountingPlc {
    tick: Arc<AtomicU16>,
}

impl tokio_modbus::server::Service for CountingPlc {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let t = self.tick.fetch_add(1, Ordering::Relaxed);
        future::ready(match req {
            Request::ReadHoldingRegisters(addr, n) => Ok(Response::ReadHoldingRegisters(
                (addr..addr.saturating_add(n))
                    .map(|a| a.wrapping_add(t))
                    .collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

async fn spawn_plc() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tick = Arc::new(AtomicU16::new(0));
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, socket_addr| {
            let tick = tick.clone();
            async move {
                accept_tcp_connection(stream, socket_addr, move |_| {
                    Ok(Some(CountingPlc { tick: tick.clone() }))
                })
            }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    });
    addr
}

// ------------------------------------------------------------- the node

fn config(plc: SocketAddr, db: &Path, tags: &[(&str, u16)]) -> String {
    let mut s = format!(
        r#"schema_version = 1
[node]
site_id = "test-site"
node_id = "test-node"

[storage]
path = {db:?}
flush_interval = "100ms"

[[device]]
name = "plc"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"
poll_interval = "100ms"
"#,
        db = db.display().to_string(),
        port = plc.port()
    );
    for (name, address) in tags {
        s.push_str(&format!(
            "\n[[tag]]\nname = {name:?}\ndevice = \"plc\"\narea = \"holding\"\naddress = {address}\ntype = \"u16\"\n"
        ));
    }
    s
}

/// A running `apos-edge run`, its log lines collected in the background.
struct Node {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(config: &Path) -> Node {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Node { child, log }
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "apos-edge exited unexpectedly:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples stored for `tag` (0 while the database or the tag does not exist).
fn rows(db: &Path, tag: &str) -> u64 {
    edge_node::history::HistoryReader::open(db)
        .and_then(|r| r.count(tag))
        .unwrap_or(0)
}

async fn wait_until(
    what: &str,
    node: &mut Node,
    timeout: Duration,
    mut cond: impl FnMut(&Node) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond(node) {
        node.assert_running();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_applies_valid_configs_and_rejects_invalid_ones() {
    let plc = spawn_plc().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, config(plc, &db, &[("a", 0)])).unwrap();
    let mut node = Node::start(&cfg);
    let t = Duration::from_secs(30);

    wait_until("tag a stored", &mut node, t, |_| rows(&db, "a") >= 5).await;
    assert_eq!(rows(&db, "b"), 0);

    // 1. A file change with a valid config: tag b appears, a keeps flowing.
    std::fs::write(&cfg, config(plc, &db, &[("a", 0), ("b", 10)])).unwrap();
    wait_until("tag b stored after file change", &mut node, t, |_| {
        rows(&db, "b") >= 5
    })
    .await;

    // 2. An invalid config is rejected, logged, and the old one keeps running.
    std::fs::write(
        &cfg,
        config(plc, &db, &[("a", 0), ("b", 10)]).replace("poll_interval", "pol_interval"),
    )
    .unwrap();
    wait_until("rejection logged", &mut node, t, |n| {
        n.log_contains("rejected")
    })
    .await;
    assert!(
        node.log_contains("pol_interval"),
        "the rejection names the bad key:\n{}",
        node.log_text()
    );
    let (a0, b0) = (rows(&db, "a"), rows(&db, "b"));
    wait_until("old config still collecting", &mut node, t, |_| {
        rows(&db, "a") >= a0 + 5 && rows(&db, "b") >= b0 + 5
    })
    .await;

    // 3. SIGHUP picks up a config written without a file event being relied on:
    //    write it, then signal. Tag c appears, b is gone.
    std::fs::write(&cfg, config(plc, &db, &[("a", 0), ("c", 20)])).unwrap();
    node.signal("-HUP");
    wait_until("tag c stored after SIGHUP", &mut node, t, |_| {
        rows(&db, "c") >= 5
    })
    .await;
    let b1 = rows(&db, "b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rows(&db, "b"),
        b1,
        "tag b was removed from the config but is still collected"
    );

    // 4. A clean shutdown (SIGTERM) exits 0.
    node.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        node.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_node_leaves_a_sound_database_that_keeps_growing_after_restart() {
    let plc = spawn_plc().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, config(plc, &db, &[("a", 0), ("b", 1), ("c", 2)])).unwrap();
    let t = Duration::from_secs(30);

    let mut last = 0;
    for round in 0..3 {
        let mut node = Node::start(&cfg);
        wait_until("more rows", &mut node, t, |_| rows(&db, "a") >= last + 5).await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();

        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(conn);
        let now = rows(&db, "a");
        assert!(
            now >= last + 5,
            "round {round}: rows went from {last} to {now}"
        );
        last = now;
    }
}
