//! Child processes the e2e tests start, stop and break: [`Proc`] (output
//! kept for failure messages), [`Netns`] (a network namespace whose packets
//! a test drops), [`which`] for Debian peers.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A child process whose output lines are kept (the last [`KEEP`]: a
/// long chaos run must not grow the test's memory without bound).
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

const KEEP: usize = 20_000;

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    if log.len() >= KEEP {
                        log.pop_front();
                    }
                    log.push_back(l);
                }
            });
        }
        Proc { child, log }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (graceful: flush and close).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (`"STOP"`, `"CONT"`, `"TERM"`…) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// Whether it still runs (a stopped process runs).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// The first output line that contains `needle`, waiting up to
    /// `timeout`; panics with the output if it does not come.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline && self.running(),
                "no line with {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `n` lines, for failure messages of long runs.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(n);
        log.iter()
            .skip(skip)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Debian program by name, if installed.
pub fn which(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// A network namespace with its loopback up, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create() -> Option<Netns> {
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        if !ok(Command::new("iptables")
            .arg("--version")
            .stdout(Stdio::null()))
        {
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "apos-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        if !ok(Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::null()))
        {
            return None;
        }
        let ns = Netns { name };
        ok(Command::new("ip").args(["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]))
            .then_some(ns)
    }

    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Drop (or stop dropping) every TCP packet to or from `port`.
    pub fn drop_port(&self, port: u16, on: bool) {
        for dir in ["--dport", "--sport"] {
            let status = Command::new("ip")
                .args(["netns", "exec", &self.name, "iptables"])
                .arg(if on { "-I" } else { "-D" })
                .args(["INPUT", "-p", "tcp", dir, &port.to_string(), "-j", "DROP"])
                .status()
                .unwrap();
            assert!(status.success(), "iptables {dir} {port} {on}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
