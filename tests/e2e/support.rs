//! Helpers shared by the e2e tests: independent peers (the pymodbus server
//! `tests/peers/modbus_server.py`, socat PTY pairs, the OPC UA servers), a
//! driver run that collects samples, and small config builders.
//!
//! A missing peer fails the test under `CI=true`; elsewhere it prints a loud
//! `SKIPPED:` line and the test returns early:
//!
//! ```ignore
//! let Some(peer) = ModbusPeer::start(&spec).await else { return };
//! ```
//!
//! `scripts/test.sh` installs every peer and exports `APOS_PYTHON` and
//! `APOS_PEERS_DIR`; the tests also find `.venv` on their own, so a plain
//! `cargo test` works once the script has run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a Modbus peer may take to print `READY` (Python start-up on a
/// loaded CI machine is the slow part).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The repository root (the `apos` package's manifest directory).
/// A binary of the workspace next to this test binary (built by
/// `cargo test --workspace --all-targets`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test --workspace --all-targets` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python with the peers' packages (`APOS_PYTHON`, else `.venv/bin/python`),
/// if it exists.
pub fn python() -> Option<PathBuf> {
    std::env::var_os("APOS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(workspace_root().join(".venv/bin/python")))
        .filter(|p| p.exists())
}

/// The folder with the peer scripts (`APOS_PEERS_DIR`, else `tests/peers`).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("APOS_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/peers"))
}

/// Decide what to do about a missing peer: panic in CI, skip loudly elsewhere.
/// Returns `false` (the test should return) when it does not panic.
pub fn require_peer(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("peer missing: {what}. Run scripts/test.sh, which installs the peers.");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: peer missing: {what} (run scripts/test.sh to install it)"
    );
    false
}

/// A running pymodbus server (`tests/peers/modbus_server.py`), killed on drop.
///
/// The spec is the script's JSON (see its docstring and
/// `tests/peers/README.md`): raw words per area and unit, optional injected
/// exceptions and delays.
pub struct ModbusPeer {
    /// TCP port it listens on (127.0.0.1), for `"transport": "tcp"`.
    pub port: Option<u16>,
    /// Serial device it serves, for `"transport": "rtu"`.
    pub serial: Option<PathBuf>,
    child: Child,
    script: &'static str,
    spec_file: tempfile::NamedTempFile,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ModbusPeer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The raw responder `tests/peers/modbus_quirks.py` instead of
    /// pymodbus: answers with the faults real devices have (short answers,
    /// bad CRCs, silence, a closed connection; see its docstring).
    pub async fn quirks(spec: &serde_json::Value) -> Option<ModbusPeer> {
        Self::start_script("modbus_quirks.py", spec).await
    }

    /// Start the server with `spec` and wait (asynchronously, up to 20 s) for
    /// its `READY` line. `None` = skipped (no venv, see [`require_peer`]).
    ///
    /// Panics with the server's stderr if it exits or is not ready in time:
    /// a bad spec is a bug in the test.
    pub async fn start(spec: &serde_json::Value) -> Option<ModbusPeer> {
        Self::start_script("modbus_server.py", spec).await
    }

    async fn start_script(script: &'static str, spec: &serde_json::Value) -> Option<ModbusPeer> {
        let Some(py) = python() else {
            require_peer("python venv with pymodbus (.venv)");
            return None;
        };
        let spec_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(spec_file.path(), serde_json::to_vec(spec).unwrap()).unwrap();
        let child = spawn_server(&py, script, spec_file.path());
        let mut peer = ModbusPeer {
            port: None,
            serial: None,
            child,
            script,
            spec_file,
            stderr: Arc::default(),
        };
        let ready = peer.watch_output();
        let deadline = Instant::now() + READY_TIMEOUT;
        while !peer.poll_ready(&ready, deadline) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(peer)
    }

    /// The last lines (at most 200) the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Kill the server (SIGKILL), as a crashing PLC or gateway vanishes:
    /// open connections are reset, new ones refused.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again with the same spec (fresh registers) on the same port
    /// or serial path. Blocks the calling thread until `READY` (about a
    /// second); the e2e tests run on a multi-thread runtime, so drivers keep
    /// running meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.spec_file.path()).unwrap()).unwrap();
        if let Some(port) = self.port {
            spec["port"] = port.into();
        }
        std::fs::write(self.spec_file.path(), serde_json::to_vec(&spec).unwrap()).unwrap();
        let py = python().expect("the venv vanished between start and restart");
        self.child = spawn_server(&py, self.script, self.spec_file.path());
        self.stderr.lock().unwrap().clear();
        let ready = self.watch_output();
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.poll_ready(&ready, deadline) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start threads that drain the child's pipes: stderr into the tail
    /// buffer (a peer that logs every frame would otherwise fill the pipe and
    /// freeze mid-test), stdout lines into the returned channel.
    fn watch_output(&mut self) -> Receiver<String> {
        let stderr = self.child.stderr.take().unwrap();
        let log = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                if l.len() >= 200 {
                    l.remove(0);
                }
                l.push(line);
            }
        });
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// One non-blocking look for `READY`: true once seen (port or serial
    /// recorded); panics if the server died or the deadline passed.
    fn poll_ready(&mut self, lines: &Receiver<String>, deadline: Instant) -> bool {
        loop {
            match lines.try_recv() {
                Ok(line) => {
                    if let Some(p) = line.strip_prefix("READY port=") {
                        self.port = Some(p.trim().parse().unwrap());
                        return true;
                    }
                    if let Some(s) = line.strip_prefix("READY serial=") {
                        self.serial = Some(PathBuf::from(s.trim()));
                        return true;
                    }
                }
                Err(TryRecvError::Empty) => break,
                // stdout closed: the server is exiting; report it below.
                Err(TryRecvError::Disconnected) => break,
            }
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            // Let the stderr thread catch the last lines (the traceback).
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "modbus peer exited ({status}) before READY:\n{}",
                self.stderr_tail()
            );
        }
        if Instant::now() > deadline {
            self.kill();
            panic!(
                "modbus peer not READY within {READY_TIMEOUT:?}:\n{}",
                self.stderr_tail()
            );
        }
        false
    }
}

impl Drop for ModbusPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_server(py: &Path, script: &str, spec: &Path) -> Child {
    let script = peers_dir().join(script);
    Command::new(py)
        .arg(&script)
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", py.display(), script.display()))
}

/// A socat pseudo-terminal pair: a virtual RS-485 line. Put the server on
/// `a` and the master under test on `b`. Killed on drop.
///
/// Linux PTYs carry no parity (setting it fails with EINVAL), so RTU tests
/// over a pair use parity none on both ends.
pub struct PtyPair {
    /// One end (a symlink to a `/dev/pts/N`), for the peer.
    pub a: PathBuf,
    /// The other end, for the master under test.
    pub b: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl PtyPair {
    /// Start socat and wait until both links exist. `None` = skipped (socat
    /// is not installed, see [`require_peer`]).
    pub fn start() -> Option<PtyPair> {
        if Command::new("socat").arg("-V").output().is_err() {
            require_peer("socat (Debian package)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
        // stderr goes to a file, not a pipe nobody reads, so socat can never
        // block on it; it is shown if the pair does not come up.
        let log = std::fs::File::create(dir.path().join("socat.log")).unwrap();
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut pair = PtyPair { a, b, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(pair.a.exists() && pair.b.exists()) {
            let exited = pair.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(pair.dir.path().join("socat.log"));
                panic!(
                    "socat did not create the PTY pair ({exited:?}):\n{}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(pair)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drivers started from a configuration text, with every sample collected.
pub struct DriverRun {
    pub handles: Vec<drivers::DriverHandle>,
    samples: std::sync::Arc<std::sync::Mutex<Vec<drivers::Sample>>>,
    cancel: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl DriverRun {
    /// Validate `toml` exactly as the edge node does, then start its drivers.
    pub fn start(toml: &str) -> DriverRun {
        crate::logs::init();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        let cfg = firmware_config::load_str(&path, toml.to_owned())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<drivers::Sample>>(64);
        let cancel = tokio_util::sync::CancellationToken::new();
        let handles = drivers::spawn_all(&cfg, tx, cancel.clone()).unwrap();
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = samples.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().unwrap().extend(batch);
            }
        });
        DriverRun {
            handles,
            samples,
            cancel,
            _dir: dir,
        }
    }

    pub fn samples_of(&self, tag: &str) -> Vec<drivers::Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| &*s.tag == tag)
            .cloned()
            .collect()
    }

    pub fn latest(&self, tag: &str) -> Option<drivers::Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| &*s.tag == tag)
            .cloned()
    }

    pub fn good_count(&self, tag: &str) -> usize {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| &*s.tag == tag && s.quality.is_good())
            .count()
    }

    pub fn handle(&self, name: &str) -> &drivers::DriverHandle {
        self.handles.iter().find(|h| h.name() == name).unwrap()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        for h in self.handles {
            h.join().await;
        }
    }
}

/// Header of a test edge configuration (node and storage are required).
pub fn config_header() -> String {
    "schema_version = 1\n[node]\nsite_id = \"test\"\nnode_id = \"e2e\"\n[storage]\npath = \"unused.db\"\n".to_owned()
}

/// A `[[device]]` entry for a Modbus TCP device on 127.0.0.1.
pub fn tcp_device(name: &str, port: u16, unit: u8, poll: &str, timeout: &str) -> String {
    format!(
        "\n[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nunit_id = {unit}\n\
         poll_interval = \"{poll}\"\ntimeout = \"{timeout}\"\nconnect_timeout = \"{timeout}\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n"
    )
}

/// A `[[tag]]` entry; `extra` is appended verbatim (e.g. `order = "cdab"`).
pub fn tag(name: &str, device: &str, area: &str, address: u16, ty: &str, extra: &str) -> String {
    format!(
        "\n[[tag]]\nname = \"{name}\"\ndevice = \"{device}\"\narea = \"{area}\"\naddress = {address}\ntype = \"{ty}\"\n{extra}\n"
    )
}

/// A running Python asyncua OPC UA server (`tests/peers/opcua_server.py`).
pub struct OpcUaPeer {
    pub port: u16,
    /// Namespace index of `urn:apos:test` on this server.
    pub ns: u16,
    child: Child,
}

impl OpcUaPeer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start it on `port` (0 = any free one). `None` = skipped.
    pub async fn start(port: u16) -> Option<OpcUaPeer> {
        Self::start_with(port, &[]).await
    }

    /// Start it with extra arguments (e.g. `--secure --pki DIR`).
    pub async fn start_with(port: u16, args: &[&str]) -> Option<OpcUaPeer> {
        let Some(py) = python() else {
            require_peer("python venv with asyncua (.venv)");
            return None;
        };
        let script = peers_dir().join("opcua_server.py");
        let mut child = Command::new(&py)
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", py.display(), script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("asyncua peer not READY within 30 s (is asyncua installed in .venv?)")
            });
        let field = |k: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("bad READY line {line:?}"))
        };
        Some(OpcUaPeer {
            port: field("port="),
            ns: field("ns="),
            child,
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OpcUaPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running node-opcua server (`tests/peers/node/opcua_server.js`): a
/// second, independent OPC UA stack.
pub struct NodeOpcUaPeer {
    pub port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NodeOpcUaPeer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` = skipped (node or the installed node-opcua package missing).
    pub async fn start() -> Option<NodeOpcUaPeer> {
        Self::start_with(&[]).await
    }

    /// Start it with extra arguments (e.g. `--limits`).
    pub async fn start_with(args: &[&str]) -> Option<NodeOpcUaPeer> {
        let dir = peers_dir().join("node");
        if Command::new("node").arg("--version").output().is_err()
            || !dir.join("node_modules/node-opcua").exists()
        {
            require_peer("node and node-opcua (tests/peers/node, installed by scripts/test.sh)");
            return None;
        }
        let child = Command::new("node")
            .arg(dir.join("opcua_server.js"))
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the peer from here on, so every path kills and reaps it.
        let mut peer = NodeOpcUaPeer {
            port: 0,
            child,
            lines: Arc::default(),
        };
        let stdout = peer.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("node-opcua peer not READY within 60 s"));
            if let Some(p) = line.strip_prefix("READY port=") {
                peer.port = p.trim().parse().unwrap();
                // Later lines (e.g. `SESSION name=…`) are kept for tests.
                let lines = peer.lines.clone();
                std::thread::spawn(move || {
                    while let Ok(l) = rx.recv() {
                        lines.lock().unwrap().push(l);
                    }
                });
                return Some(peer);
            }
        }
    }

    /// What the peer printed after `READY`.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for NodeOpcUaPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 that can make a server vanish *silently*, as a
/// power loss or a cut cable does: no FIN, no RST ever reaches the client.
///
/// - [`SilentProxy::vanish`]: every open connection stops carrying data in
///   both directions (its sockets stay open), and new connections are
///   accepted but never answered (a client waits mid-handshake).
/// - [`SilentProxy::return_`]: new connections are forwarded again; the
///   ones that went silent stay silent forever (their peer is gone).
pub struct SilentProxy {
    pub port: u16,
    epoch: Arc<std::sync::atomic::AtomicU64>,
    up: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    pub async fn start(upstream: u16) -> SilentProxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let epoch = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicU64::new(0));
        let (e, u, a) = (epoch.clone(), up.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    break;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let mine = e.load(Ordering::SeqCst);
                let forward = u.load(Ordering::SeqCst);
                let e = e.clone();
                conns.spawn(async move {
                    if !forward {
                        // Accepted, never answered (the socket stays open).
                        std::future::pending::<()>().await;
                        drop(client);
                        return;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, e.clone(), mine), pump(sr, cw, e, mine));
                });
            }
        });
        SilentProxy {
            port,
            epoch,
            up,
            accepted,
            task,
        }
    }

    /// The server vanishes without a trace (see the type's docs).
    pub fn vanish(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The server is reachable again for new connections.
    pub fn return_(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections accepted so far (each reconnect attempt is one).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Copy `from` to `to` until the proxy's epoch moves past `mine`; then
/// (or when either side closes) hold both open and carry nothing: a
/// vanished peer sends no FIN.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    epoch: Arc<std::sync::atomic::AtomicU64>,
    mine: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 65536];
    while epoch.load(std::sync::atomic::Ordering::SeqCst) == mine {
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        if epoch.load(std::sync::atomic::Ordering::SeqCst) != mine
            || to.write_all(&buf[..n]).await.is_err()
        {
            break;
        }
    }
    std::future::pending::<()>().await;
    drop((from, to));
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TCP addresses process `pid` listens on, from its socket inodes
/// and the kernel's tables (`/proc/<pid>/fd`, `/proc/net/tcp{,6}`).
pub fn listening_addrs(pid: u32) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A = LISTEN), inode
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let (ip, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let ip: IpAddr = if v6 {
                let mut b = [0u8; 16];
                for (k, word) in (0..4).map(|k| &ip[8 * k..8 * k + 8]).enumerate() {
                    let w = u32::from_str_radix(word, 16).unwrap().swap_bytes();
                    b[4 * k..4 * k + 4].copy_from_slice(&w.to_be_bytes());
                }
                Ipv6Addr::from(b).into()
            } else {
                Ipv4Addr::from(u32::from_str_radix(ip, 16).unwrap().swap_bytes()).into()
            };
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

/// The peers themselves, checked with clients that share no code with our
/// drivers (tokio-modbus over TCP, hand-built RTU frames over the PTY pair):
/// when a driver test fails, these say whether to suspect the harness.
mod selftest {
    use super::*;
    use serde_json::json;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use tokio_modbus::prelude::*;

    async fn connect(port: u16, unit: u8) -> tokio_modbus::client::Context {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        tokio_modbus::client::tcp::connect_slave(addr, Slave(unit))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_peer_serves_its_words_and_keeps_writes() {
        let spec = json!({"transport": "tcp", "port": 0, "devices": [{
            "unit": 1,
            "holding": [[10, [0x1234, 0xABCD, 7]]],
            "input": [[0, [42]]],
            "coils": [[3, [true, false, true]]],
        }]});
        let Some(peer) = ModbusPeer::start(&spec).await else {
            return;
        };
        let port = peer.port.unwrap();
        assert_ne!(port, 0);
        let mut plc = connect(port, 1).await;

        let hr = plc.read_holding_registers(10, 3).await.unwrap().unwrap();
        assert_eq!(hr, [0x1234, 0xABCD, 7]);
        let gap = plc.read_holding_registers(0, 1).await.unwrap().unwrap();
        assert_eq!(gap, [0], "unconfigured addresses below the end read 0");
        let ir = plc.read_input_registers(0, 1).await.unwrap().unwrap();
        assert_eq!(ir, [42]);
        let coils = plc.read_coils(3, 3).await.unwrap().unwrap();
        assert_eq!(coils, [true, false, true]);

        plc.write_multiple_registers(11, &[0xBEEF, 0])
            .await
            .unwrap()
            .unwrap();
        plc.write_single_coil(4, true).await.unwrap().unwrap();
        let hr = plc.read_holding_registers(10, 3).await.unwrap().unwrap();
        assert_eq!(hr, [0x1234, 0xBEEF, 0]);
        let coils = plc.read_coils(3, 3).await.unwrap().unwrap();
        assert_eq!(coils, [true, true, true]);

        let past_end = plc.read_holding_registers(1000, 1).await.unwrap();
        assert_eq!(past_end, Err(ExceptionCode::IllegalDataAddress));

        // An unconfigured unit id gets no answer at all, as an absent slave.
        let mut absent = connect(port, 9).await;
        let silent = tokio::time::timeout(
            Duration::from_millis(500),
            absent.read_holding_registers(10, 1),
        )
        .await;
        assert!(silent.is_err(), "unit 9 answered: {silent:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_peer_injects_exceptions_and_delays() {
        let spec = json!({"devices": [
            {"unit": 1, "holding": [[0, [1]]], "input": [[0, [2]]], "exception": {"holding": 4}},
            {"unit": 2, "holding": [[0, [3]]], "delay_ms": 300},
        ]});
        let Some(peer) = ModbusPeer::start(&spec).await else {
            return;
        };
        let port = peer.port.unwrap();

        let mut failing = connect(port, 1).await;
        let read = failing.read_holding_registers(0, 1).await.unwrap();
        assert_eq!(read, Err(ExceptionCode::ServerDeviceFailure));
        let write = failing.write_single_register(0, 5).await.unwrap();
        assert_eq!(write, Err(ExceptionCode::ServerDeviceFailure));
        let other_area = failing.read_input_registers(0, 1).await.unwrap().unwrap();
        assert_eq!(other_area, [2], "only the holding area fails");

        let mut slow = connect(port, 2).await;
        let t = Instant::now();
        let hr = slow.read_holding_registers(0, 1).await.unwrap().unwrap();
        let took = t.elapsed();
        assert_eq!(hr, [3]);
        assert!(took >= Duration::from_millis(290), "answered in {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_peer_refuses_and_restarts_fresh_on_the_same_port() {
        let spec = json!({"devices": [{"unit": 1, "holding": [[0, [5]]]}]});
        let Some(mut peer) = ModbusPeer::start(&spec).await else {
            return;
        };
        let port = peer.port.unwrap();
        let mut plc = connect(port, 1).await;
        plc.write_single_register(0, 99).await.unwrap().unwrap();

        peer.kill();
        let after_kill =
            tokio::time::timeout(Duration::from_secs(5), plc.read_holding_registers(0, 1))
                .await
                .expect("a read on a killed peer's connection must fail, not hang");
        assert!(after_kill.is_err(), "killed peer answered: {after_kill:?}");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());

        peer.restart();
        assert_eq!(peer.port, Some(port));
        let mut plc = connect(port, 1).await;
        let hr = plc.read_holding_registers(0, 1).await.unwrap().unwrap();
        assert_eq!(hr, [5], "a restarted peer starts from its spec");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_with_a_bad_spec_fails_loudly() {
        if python().is_none() {
            require_peer("python venv with pymodbus (.venv)");
            return;
        }
        let spec = json!({"devices": [{"unit": 1, "holdings": [[0, [1]]]}]});
        let started = tokio::spawn(async move { ModbusPeer::start(&spec).await.is_some() });
        let err = started.await.expect_err("a misspelt area must not start");
        let msg = err
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(msg.contains("unknown keys ['holdings']"), "{msg}");
    }

    /// CRC-16/MODBUS, appended low byte first.
    fn rtu_frame(adu: &[u8]) -> Vec<u8> {
        let mut crc: u16 = 0xFFFF;
        for &b in adu {
            crc ^= u16::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xA001
                } else {
                    crc >> 1
                };
            }
        }
        let mut frame = adu.to_vec();
        frame.extend(crc.to_le_bytes());
        frame
    }

    /// The master's end of the line, byte by byte.
    struct Line {
        port: std::fs::File,
        bytes: Receiver<u8>,
    }

    impl Line {
        fn open(path: &Path) -> Line {
            let port = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let mut reader = port.try_clone().unwrap();
            let (tx, bytes) = std::sync::mpsc::channel();
            // Ends when socat is killed (the read fails) or the test is over.
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                while reader.read_exact(&mut b).is_ok() && tx.send(b[0]).is_ok() {}
            });
            Line { port, bytes }
        }

        /// Send `frame`, return what arrives until the line is quiet for
        /// `quiet` (an RTU slave answers in one burst); empty if nothing
        /// comes within 2 s.
        fn ask(&mut self, frame: &[u8], quiet: Duration) -> Vec<u8> {
            self.port.write_all(frame).unwrap();
            let mut answer = Vec::new();
            let mut wait = Duration::from_secs(2);
            while let Ok(b) = self.bytes.recv_timeout(wait) {
                answer.push(b);
                wait = quiet;
            }
            answer
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rtu_peer_over_a_pty_pair_answers_only_its_unit() {
        let Some(pty) = PtyPair::start() else { return };
        let spec = json!({"transport": "rtu", "serial": pty.a, "baud": 19200, "parity": "N",
            "devices": [{"unit": 3, "holding": [[0, [0x0102, 0x0D0A]]]}]});
        let Some(peer) = ModbusPeer::start(&spec).await else {
            return;
        };
        assert_eq!(peer.serial.as_deref(), Some(pty.a.as_path()));
        let mut line = Line::open(&pty.b);
        let quiet = Duration::from_millis(100);

        // 0x0D 0x0A in the data: the pair must be raw, not a text terminal.
        let read = rtu_frame(&[3, 0x03, 0, 0, 0, 2]);
        let answer = line.ask(&read, quiet);
        assert_eq!(answer, rtu_frame(&[3, 0x03, 4, 0x01, 0x02, 0x0D, 0x0A]));

        let write = rtu_frame(&[3, 0x06, 0, 1, 0xBE, 0xEF]);
        assert_eq!(line.ask(&write, quiet), write, "FC06 echoes the request");
        let answer = line.ask(&read, quiet);
        assert_eq!(answer, rtu_frame(&[3, 0x03, 4, 0x01, 0x02, 0xBE, 0xEF]));

        let absent = line.ask(&rtu_frame(&[4, 0x03, 0, 0, 0, 1]), quiet);
        assert!(absent.is_empty(), "unit 4 answered {absent:02x?}");
        let answer = line.ask(&read, quiet);
        assert_eq!(answer.len(), 9, "the line still works after silence");
    }

    /// Every peer a test starts listens on loopback only (node-opcua's
    /// `hostname` option did not bind it; `host` does).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_test_peer_listens_on_loopback_only() {
        let check = |what: &str, pid: u32| {
            let addrs = listening_addrs(pid);
            assert!(!addrs.is_empty(), "{what} (pid {pid}) listens nowhere?");
            for a in &addrs {
                assert!(a.ip().is_loopback(), "{what} listens on {a}: {addrs:?}");
            }
        };
        let spec = json!({"devices": [{"unit": 1, "holding": [[0, [1]]]}]});
        if let Some(p) = ModbusPeer::start(&spec).await {
            check("modbus_server.py", p.pid());
        }
        if let Some(p) = ModbusPeer::quirks(&json!({"units": {"1": "ok"}})).await {
            check("modbus_quirks.py", p.pid());
        }
        if let Some(p) = OpcUaPeer::start(0).await {
            check("opcua_server.py", p.pid());
        }
        if let Some(p) = NodeOpcUaPeer::start().await {
            check("node opcua_server.js", p.pid());
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        if let Some(p) =
            NodeOpcUaPeer::start_with(&["--secure", "--pki", pki.to_str().unwrap()]).await
        {
            check("node opcua_server.js --secure", p.pid());
        }
    }
}
