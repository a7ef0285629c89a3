//! What the browser tests (hmi.rs, hub_web.rs, hub_analysis_web.rs)
//! share: the prerequisites, an `apos-demo` on free ports with what it
//! printed, a script of `tests/browser/` run under node with its lines
//! streamed and a deadline, and the screenshots it must leave.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{bin, free_port, require_peer, workspace_root};

/// The demo's node (src/demo.rs).
pub const SITE: &str = "demo-refinery";
pub const NODE: &str = "cdu-edge-1";

/// `tests/browser`, where the scripts and their node_modules are.
pub fn scripts_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

/// Chromium, node and the node modules named (and any further programs,
/// `(path, what to install)`); `false` when the test should skip (never
/// under `CI=true`, where a missing one fails).
pub fn ready(modules: &[&str], programs: &[(&str, &str)]) -> bool {
    if !Path::new("/usr/bin/chromium").exists() {
        return require_peer("Chromium (/usr/bin/chromium, Debian package chromium)");
    }
    for (path, what) in programs {
        if !Path::new(path).exists() {
            return require_peer(what);
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        return require_peer("node (Debian package nodejs)");
    }
    let dir = scripts_dir();
    for m in modules {
        if !dir
            .join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
        {
            return require_peer(&format!(
                "{m} in {}/node_modules (npm ci there)",
                dir.display()
            ));
        }
    }
    true
}

/// A running `apos-demo` in a directory of its own; killed when dropped.
pub struct Demo {
    pub child: Child,
    /// The demo's working directory (`--dir`).
    pub dir: PathBuf,
    log: PathBuf,
    err: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Start the demo with every server on a free loopback port (the
    /// plant's Modbus on `modbus` if given), plus `extra` arguments.
    pub fn start(modbus: Option<SocketAddr>, extra: &[&str]) -> Demo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let log = tmp.path().join("demo.log");
        let err = tmp.path().join("demo.err");
        let port = || format!("127.0.0.1:{}", free_port());
        let modbus = modbus.map_or_else(port, |a| a.to_string());
        let child = Command::new(bin("apos-demo"))
            .arg("--dir")
            .arg(&dir)
            .args(["--hmi", &port()])
            .args(["--web", &port()])
            .args(["--mqtt", &port()])
            .args(["--modbus", &modbus])
            .args(["--opcua", &port()])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Demo {
            child,
            dir,
            log,
            err,
            _tmp: tmp,
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (at most 60 s) until `parse` finds `what` in the printed text.
    pub fn wait_printed<T>(&mut self, what: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(p) = parse(&self.output()) {
                return p;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited ({status}):\n{}\n{}",
                    self.output(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the demo printed no {what} within 60 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last `n` lines it printed.
    pub fn tail(&self, n: usize) -> String {
        let text = self.output();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The password printed for `user` (`log in as USER (role) password PW`)
/// in the lines of `text` after the first one starting with `after`.
pub fn password(text: &str, after: &str, user: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(after))?;
    lines[at..]
        .iter()
        .find(|l| l.trim_start().starts_with(&format!("log in as {user} ")))
        .and_then(|l| l.split(" password ").nth(1))
        .map(|p| p.trim().to_string())
}

/// The first `http…` word on the first line starting with `label`.
pub fn url_after(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))?
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .map(str::to_string)
}

/// `target/<name>`, next to the binaries' profile folder, emptied.
pub fn screenshots(name: &str) -> PathBuf {
    let dir = bin("apos-demo")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Run `node tests/browser/<script> args…` with `env`, its output lines
/// echoed to stderr and handed to `on_line` (with the script's stdin) as
/// they come, and kill it after `timeout`. Asserts it succeeded and
/// printed `ALL CHECKS PASSED`; returns its output.
pub fn run_script(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    demo: &mut Demo,
    mut on_line: impl FnMut(&str, &mut Demo, &mut Option<ChildStdin>),
) -> String {
    let mut node = Command::new("node")
        .arg(scripts_dir().join(script))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(node.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(node.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut stdin = node.stdin.take();
    let mut lines = Vec::new();
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            let _ = writeln!(std::io::stderr(), "{script}: {line}");
            on_line(&line, demo, &mut stdin);
            lines.push(line);
        }
        if let Some(status) = node.try_wait().unwrap() {
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                lines.push(line);
            }
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            panic!(
                "the browser checks did not finish within {} s:\n{}\n--- demo ---\n{}",
                timeout.as_secs(),
                lines.join("\n"),
                demo.tail(40)
            );
        }
    };
    let text = lines.join("\n");
    assert!(
        status.success(),
        "the browser checks failed ({status}):\n{text}\n--- demo (last lines) ---\n{}",
        demo.tail(40)
    );
    assert!(text.contains("ALL CHECKS PASSED"), "{text}");
    text
}

/// Every `<name>.png` is in `dir`.
pub fn assert_screenshots(dir: &Path, names: &[&str]) {
    let shots: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for page in names {
        assert!(
            shots.contains(&format!("{page}.png")),
            "no screenshot of {page} in {}: {shots:?}",
            dir.display()
        );
    }
}
