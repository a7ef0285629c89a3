//! The hub's dashboards in a real browser: `apos-demo --web` serves them,
//! `apos-hub user add` makes a viewer in the running hub's users file, and
//! Debian's Chromium (headless, driven by `tests/browser/hub.mjs` through
//! playwright-core) logs in, sees the demo node online and live on the
//! fleet overview, draws a KPI trend and a tag chart with data, renders
//! every page, keeps a viewer out of the admin pages, creates an API token,
//! intercepts every request (none may leave the hub's host), scans every
//! page with axe-core, measures the first load and saves screenshots into
//! `target/hub-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`scripts/test.sh` installs them); missing ones fail under `CI=true` and
//! skip loudly elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{bin, free_port, require_peer, workspace_root};

/// The whole browser scenario, including waiting for the first KPI windows.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The demo's node (src/demo.rs).
const SITE: &str = "demo-refinery";
const NODE: &str = "cdu-edge-1";

struct Demo {
    child: Child,
    log: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What the demo printed about the hub dashboards: the URL and its users'
/// passwords (the lines after the URL; the HMI's users come before it).
struct Printed {
    url: String,
    analyst: String,
    admin: String,
}

fn printed(text: &str) -> Option<Printed> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("hub dashboards"))?;
    let url = lines[at]
        .split_whitespace()
        .find(|w| w.starts_with("http"))?
        .to_string();
    let password = |user: &str| {
        lines[at + 1..]
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("log in as {user} ")))
            .and_then(|l| l.split(" password ").nth(1))
            .map(|p| p.trim().to_string())
    };
    Some(Printed {
        url,
        analyst: password("analyst")?,
        admin: password("admin")?,
    })
}

fn browser_ready(dir: &Path) -> bool {
    if !Path::new("/usr/bin/chromium").exists() {
        return require_peer("Chromium (/usr/bin/chromium, Debian package chromium)");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return require_peer("node (Debian package nodejs)");
    }
    for m in ["playwright-core", "axe-core"] {
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

/// `apos-hub user add viewer --role viewer --password-stdin --config hub.toml`
/// against the running demo's hub (the users file is SQLite: it takes the
/// row while the hub serves).
fn add_viewer(hub_toml: &Path, password: &str) {
    let mut child = Command::new(bin("apos-hub"))
        .args([
            "user",
            "add",
            "viewer",
            "--role",
            "viewer",
            "--password-stdin",
            "--config",
        ])
        .arg(hub_toml)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apos-hub user add viewer failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_hub_dashboards_work_in_a_real_browser() {
    let browser_dir = workspace_root().join("tests/browser");
    if !browser_ready(&browser_dir) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let log = dir.path().join("demo.log");
    let mut demo = Demo {
        child: Command::new(bin("apos-demo"))
            .arg("--dir")
            .arg(&demo_dir)
            .args(["--hmi", &format!("127.0.0.1:{}", free_port())])
            .args(["--web", &format!("127.0.0.1:{}", free_port())])
            .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
            .args(["--modbus", &format!("127.0.0.1:{}", free_port())])
            .args(["--opcua", &format!("127.0.0.1:{}", free_port())])
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let started = Instant::now();
    let p = loop {
        if let Some(p) = printed(&demo.output()) {
            break p;
        }
        if let Ok(Some(status)) = demo.child.try_wait() {
            panic!(
                "the demo exited ({status}):\n{}\n{}",
                demo.output(),
                std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the demo printed no hub dashboards URL and passwords within 60 s:\n{}",
            demo.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let viewer_password = "viewer-e2e-password-1";
    add_viewer(&demo_dir.join("hub.toml"), viewer_password);

    let screenshots = bin("apos-demo")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("hub-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut node = Command::new("node")
        .arg(browser_dir.join("hub.mjs"))
        .args([
            "--url",
            &p.url,
            "--site",
            SITE,
            "--node",
            NODE,
            "--screenshots",
        ])
        .arg(&screenshots)
        .env("HUB_ANALYST_PASSWORD", &p.analyst)
        .env("HUB_ADMIN_PASSWORD", &p.admin)
        .env("HUB_VIEWER_PASSWORD", viewer_password)
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
    let mut output = Vec::new();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let _ = writeln!(std::io::stderr(), "hub.mjs: {line}");
            output.push(line);
        }
        if let Some(status) = node.try_wait().unwrap() {
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                output.push(line);
            }
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            panic!(
                "the browser checks did not finish within {} s:\n{}\n--- demo ---\n{}",
                SCRIPT_TIMEOUT.as_secs(),
                output.join("\n"),
                tail(&demo.output(), 40)
            );
        }
    };
    let output = output.join("\n");
    assert!(
        status.success(),
        "the browser checks failed ({status}):\n{output}\n--- demo (last lines) ---\n{}",
        tail(&demo.output(), 40)
    );
    assert!(output.contains("ALL CHECKS PASSED"), "{output}");
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("HUB_PAGE_LOAD bytes=")),
        "no first-load figures:\n{output}"
    );
    let shots: Vec<_> = std::fs::read_dir(&screenshots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "login",
        "fleet",
        "node",
        "tags",
        "forecasts",
        "alarms",
        "quality",
        "alerts",
        "admin",
        "admin-viewer",
    ] {
        assert!(
            shots.contains(&format!("{page}.png")),
            "no screenshot of {page} in {}: {shots:?}",
            screenshots.display()
        );
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
