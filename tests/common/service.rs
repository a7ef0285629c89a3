//! systemd's side of a `Type=notify` service, for the binaries' service
//! tests (included with `#[path]` by `edge-node/tests/edge` and
//! `hub/tests/hub`): a notify socket that records every datagram with its
//! arrival time, the lifecycle check both binaries must pass (READY only
//! once the port listens, WATCHDOG at half the period, STOPPING and
//! EXTEND_TIMEOUT_USEC on SIGTERM, exit 0), and the check of the man pages
//! a binary writes.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One datagram from the service: its lines, and when it arrived.
#[derive(Debug, Clone)]
pub struct Notice {
    pub at: Instant,
    pub lines: Vec<String>,
}

impl Notice {
    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    /// The value of `KEY=` in this datagram.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The service manager's notification socket.
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket { sock, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, if one arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Notice> {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    return Some(Notice {
                        at: Instant::now(),
                        lines: String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .map(str::to_owned)
                            .collect(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Datagrams until one has `line` (returned last), at most `timeout`.
    pub fn until(&self, line: &str, timeout: Duration) -> Result<Vec<Notice>, Vec<Notice>> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Some(n) = self.next(left) else { break };
            let done = n.has(line);
            seen.push(n);
            if done {
                return Ok(seen);
            }
        }
        Err(seen)
    }
}

/// A running service, its output (the binaries log to stdout) collected
/// in the background; killed on drop.
pub struct Service {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Start `cmd` as systemd would start a `Type=notify` unit with
    /// `WatchdogSec=` of `watchdog`: NOTIFY_SOCKET and WATCHDOG_USEC set,
    /// stderr not the journal.
    pub fn start(mut cmd: Command, notify: &NotifySocket, watchdog: Duration) -> Service {
        cmd.env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for pipe in [out, err] {
            let l = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            });
        }
        Service { child, log }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the service exited:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the lifecycle check saw, for the caller's own assertions.
pub struct Lifecycle {
    /// The STATUS= sent with READY=1.
    pub ready_status: String,
    pub log: String,
}

/// The whole `Type=notify` lifecycle of `cmd`, with a 2 s watchdog:
///
/// - READY=1 arrives, and at that moment every port in `ports` accepts a
///   TCP connection (a READY sent before the listeners are bound fails);
/// - `on_ready` runs (a SIGHUP, say) and the service keeps running;
/// - WATCHDOG=1 arrives repeatedly, about every second (half the period),
///   never a period apart;
/// - on SIGTERM, STOPPING=1 and then EXTEND_TIMEOUT_USEC (more than the
///   10 s flush wait) arrive, no WATCHDOG=1 after STOPPING=1, and the
///   process exits 0.
pub fn check_lifecycle(
    cmd: Command,
    dir: &Path,
    ports: &[u16],
    on_ready: impl FnOnce(&Service),
) -> Lifecycle {
    let notify = NotifySocket::bind(dir);
    let period = Duration::from_secs(2);
    let mut svc = Service::start(cmd, &notify, period);
    let before = match notify.until("READY=1", Duration::from_secs(60)) {
        Ok(seen) => seen,
        Err(seen) => panic!(
            "no READY=1 within 60 s (got {seen:?}); log:\n{}",
            svc.log_text()
        ),
    };
    // Connect at once: the listeners must exist before READY=1.
    for port in ports {
        if let Err(e) = std::net::TcpStream::connect(("127.0.0.1", *port)) {
            panic!(
                "READY=1 was sent while port {port} refused connections ({e}); log:\n{}",
                svc.log_text()
            );
        }
    }
    let ready = before.last().unwrap().clone();
    assert!(
        !before.iter().any(|n| n.has("WATCHDOG=1")),
        "WATCHDOG=1 before READY=1: {before:?}"
    );
    let ready_status = ready.value("STATUS").unwrap_or_default().to_owned();
    on_ready(&svc);

    // Watch the pings for ~5.5 s.
    let mut pings: Vec<Instant> = Vec::new();
    let mut others = Vec::new();
    let end = Instant::now() + Duration::from_millis(5_500);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match notify.next(left) {
            Some(n) if n.has("WATCHDOG=1") => pings.push(n.at),
            Some(n) => others.push(n),
            None => break,
        }
    }
    svc.assert_running();
    assert!(
        pings.len() >= 4,
        "{} WATCHDOG=1 in 5.5 s with WatchdogSec=2s (expected one a second); others: {others:?}; log:\n{}",
        pings.len(),
        svc.log_text()
    );
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        gaps.iter()
            .all(|g| *g < period - Duration::from_millis(200)),
        "a ping came almost a whole period late: {gaps:?}"
    );
    assert!(
        mean > Duration::from_millis(700) && mean < Duration::from_millis(1_400),
        "pings should come every half period (1 s), mean {mean:?}: {gaps:?}"
    );

    svc.signal("-TERM");
    let stopping = match notify.until("STOPPING=1", Duration::from_secs(10)) {
        Ok(seen) => seen,
        Err(seen) => panic!(
            "no STOPPING=1 after SIGTERM: {seen:?}; log:\n{}",
            svc.log_text()
        ),
    };
    let extend = loop {
        match notify.next(Duration::from_secs(10)) {
            Some(n) => {
                assert!(!n.has("WATCHDOG=1"), "WATCHDOG=1 after STOPPING=1");
                if let Some(v) = n.value("EXTEND_TIMEOUT_USEC") {
                    break v.parse::<u64>().unwrap();
                }
            }
            None => panic!(
                "no EXTEND_TIMEOUT_USEC after STOPPING=1 ({stopping:?}); log:\n{}",
                svc.log_text()
            ),
        }
    };
    assert!(
        extend > 10_000_000,
        "the stop timeout must be extended beyond the 10 s flush wait: {extend}"
    );
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "still running 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the stderr reader finish.
    std::thread::sleep(Duration::from_millis(100));
    let log = svc.log_text();
    assert_eq!(status.code(), Some(0), "exit status; log:\n{log}");
    while let Some(n) = notify.next(Duration::from_millis(100)) {
        assert!(!n.has("WATCHDOG=1"), "WATCHDOG=1 after STOPPING=1");
    }
    Lifecycle { ready_status, log }
}

/// The subcommand paths `bin --help` lists, recursively (without `help`).
pub fn subcommands(bin: &str) -> Vec<Vec<String>> {
    fn walk(bin: &str, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let o = Command::new(bin)
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(o.status.success(), "{bin} {path:?} --help failed");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut in_commands = false;
        for line in text.lines() {
            if line.starts_with("Commands:") {
                in_commands = true;
                continue;
            }
            if in_commands {
                if !line.starts_with("  ") {
                    in_commands = false;
                    continue;
                }
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.is_empty() || name == "help" || line.starts_with("   ") {
                    continue;
                }
                let mut sub = path.clone();
                sub.push(name.to_owned());
                out.push(sub.clone());
                walk(bin, sub, out);
            }
        }
    }
    let mut out = vec![Vec::new()];
    walk(bin, Vec::new(), &mut out);
    out
}

/// `bin man --out DIR` writes one page per command and subcommand that
/// `--help` lists, named `prog-sub-subsub.1`, nothing else, and each page
/// is valid roff for man(7) (groff finds nothing to warn about) with a
/// NAME line that mandb can index (lexgrog).
pub fn check_man_pages(bin: &str, prog: &str, dir: &Path) {
    let out = dir.join("man");
    let o = Command::new(bin)
        .args(["man", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{prog} man failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut expected: Vec<String> = subcommands(bin)
        .into_iter()
        .map(|p| {
            std::iter::once(prog.to_owned())
                .chain(p)
                .collect::<Vec<_>>()
                .join("-")
                + ".1"
        })
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected, "one page per command that --help lists");
    assert!(
        !written.iter().any(|w| w.contains("-man")),
        "the hidden man command has no page"
    );
    let groff = which("groff");
    let lexgrog = which("lexgrog");
    if groff.is_none() || lexgrog.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "groff and lexgrog (Debian: groff-base, man-db) are needed to check the man pages"
        );
        eprintln!("SKIPPED parsing the man pages: groff or lexgrog missing");
    }
    for page in &written {
        let path = out.join(page);
        let text = std::fs::read_to_string(&path).unwrap();
        let stem = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {stem} 1")), "{page}: no .TH");
        assert!(text.contains(".SH NAME"), "{page}: no NAME section");
        if let Some(groff) = &groff {
            let o = Command::new(groff)
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() && err.trim().is_empty(),
                "{page} does not parse cleanly: {err}"
            );
        }
        if let Some(lexgrog) = &lexgrog {
            let o = Command::new(lexgrog).arg(&path).output().unwrap();
            let said = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && said.contains(&format!("{stem} - ")),
                "{page}: mandb cannot read its NAME line: {said}"
            );
        }
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
