//! Starting and stopping independent peers for the e2e tests: the pymodbus
//! server (`tests/peers/modbus_server.py`) and socat PTY pairs.
//!
//! A missing peer fails the test under `CI=true`; elsewhere it prints a loud
//! `SKIPPED:` line and the test returns early.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python with the peers' packages (`APOS_PYTHON`, else `.venv/bin/python`).
pub fn python() -> Option<PathBuf> {
    std::env::var_os("APOS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(workspace_root().join(".venv/bin/python")))
        .filter(|p| p.exists())
}

pub fn peers_dir() -> PathBuf {
    std::env::var_os("APOS_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/peers"))
}

/// Decide what to do about a missing peer: panic in CI, skip loudly elsewhere.
pub fn require_peer(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("peer missing: {what}. Run scripts/test.sh, which installs the peers.");
    }
    eprintln!("SKIPPED: peer missing: {what} (run scripts/test.sh to install it)");
    false
}

/// A running pymodbus server.
pub struct ModbusPeer {
    pub port: Option<u16>,
    pub serial: Option<PathBuf>,
    child: Child,
    spec_file: tempfile::NamedTempFile,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ModbusPeer {
    /// Start the server with `spec` (see the script's docs). `None` = skipped.
    pub async fn start(spec: &serde_json::Value) -> Option<ModbusPeer> {
        let Some(py) = python() else {
            require_peer("python venv with pymodbus (.venv)");
            return None;
        };
        let spec_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(spec_file.path(), serde_json::to_vec(spec).unwrap()).unwrap();
        let mut peer = Self::spawn(&py, spec_file)?;
        peer.wait_ready();
        Some(peer)
    }

    fn spawn(py: &Path, spec_file: tempfile::NamedTempFile) -> Option<ModbusPeer> {
        let script = peers_dir().join("modbus_server.py");
        let child = Command::new(py)
            .arg(&script)
            .arg(spec_file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", py.display(), script.display()));
        Some(ModbusPeer {
            port: None,
            serial: None,
            child,
            spec_file,
            stderr: Default::default(),
        })
    }

    fn wait_ready(&mut self) {
        // Drain stderr continuously: a peer that logs every frame would
        // otherwise fill the pipe and freeze mid-test.
        let stderr = self.child.stderr.take().unwrap();
        let log = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                if l.len() > 200 {
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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(p) = line.strip_prefix("READY port=") {
                        self.port = Some(p.trim().parse().unwrap());
                        return;
                    }
                    if let Some(s) = line.strip_prefix("READY serial=") {
                        self.serial = Some(PathBuf::from(s.trim()));
                        return;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        panic!(
                            "modbus peer exited ({status}) before READY:\n{}",
                            self.stderr_tail()
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = self.child.kill();
                        panic!("modbus peer not READY within 20 s:\n{}", self.stderr_tail());
                    }
                }
            }
        }
    }

    /// The last lines the peer wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Kill the server (SIGKILL), as a crashing PLC gateway would vanish.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again with the same spec, on the same port/serial path.
    pub fn restart(&mut self) {
        self.kill();
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.spec_file.path()).unwrap()).unwrap();
        if let Some(port) = self.port {
            spec["port"] = port.into();
        }
        std::fs::write(self.spec_file.path(), serde_json::to_vec(&spec).unwrap()).unwrap();
        let py = python().unwrap();
        let script = peers_dir().join("modbus_server.py");
        self.child = Command::new(py)
            .arg(script)
            .arg(self.spec_file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.wait_ready();
    }
}

impl Drop for ModbusPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A socat pseudo-terminal pair: a virtual RS-485 line.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn start() -> Option<PtyPair> {
        if Command::new("socat").arg("-V").output().is_err() {
            require_peer("socat (Debian package)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create the PTY pair"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PtyPair {
            a,
            b,
            child,
            _dir: dir,
        })
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
        // Driver logs show with `RUST_LOG=info cargo test ... -- --nocapture`.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
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
}

impl NodeOpcUaPeer {
    /// `None` = skipped (node or the installed node-opcua package missing).
    pub async fn start() -> Option<NodeOpcUaPeer> {
        let dir = peers_dir().join("node");
        if Command::new("node").arg("--version").output().is_err()
            || !dir.join("node_modules/node-opcua").exists()
        {
            require_peer("node and node-opcua (tests/peers/node, installed by scripts/test.sh)");
            return None;
        }
        let child = Command::new("node")
            .arg(dir.join("opcua_server.js"))
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the peer from here on, so every path kills and reaps it.
        let mut peer = NodeOpcUaPeer { port: 0, child };
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
                return Some(peer);
            }
        }
    }
}

impl Drop for NodeOpcUaPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
