//! The hub's analysis pages in a real browser (issue 19): `apos-demo`
//! serves them; Debian's Chromium, driven by `tests/browser/hub-analysis.mjs`
//! through playwright-core, logs in as the demo's analyst, sees a ranked
//! insights list with items whose links open their charts, makes a site
//! report on the Reports page, renders its HTML (every section), fetches
//! its PDF (Chromium's print-to-PDF inside the hub) and reads the PDF's
//! text with `pdftotext`, and loads the import, export and SQL pages.
//! Screenshots (and the PDF) go to `target/hub-analysis-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `node`, `tests/browser/node_modules` and
//! `pdftotext` (Debian poppler-utils); missing ones fail under `CI=true`
//! and skip loudly elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{bin, free_port, require_peer, workspace_root};

/// The whole browser scenario, including waiting for the first windows.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(420);
const SITE: &str = "demo-refinery";
const NODE: &str = "cdu-edge-1";
const PDFTOTEXT: &str = "/usr/bin/pdftotext";

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

/// The hub dashboards' URL and the analyst's password, as the demo prints them.
fn printed(text: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("hub dashboards"))?;
    let url = lines[at]
        .split_whitespace()
        .find(|w| w.starts_with("http"))?
        .to_string();
    let password = lines[at + 1..]
        .iter()
        .find(|l| l.trim_start().starts_with("log in as analyst "))
        .and_then(|l| l.split(" password ").nth(1))
        .map(|p| p.trim().to_string())?;
    Some((url, password))
}

fn ready(dir: &Path) -> bool {
    if !Path::new("/usr/bin/chromium").exists() {
        return require_peer("Chromium (/usr/bin/chromium, Debian package chromium)");
    }
    if !Path::new(PDFTOTEXT).exists() {
        return require_peer("pdftotext (Debian package poppler-utils)");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return require_peer("node (Debian package nodejs)");
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return require_peer(&format!(
            "playwright-core in {}/node_modules (npm ci there)",
            dir.display()
        ));
    }
    true
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn the_insights_and_reports_pages_work_in_a_real_browser() {
    let browser_dir = workspace_root().join("tests/browser");
    if !ready(&browser_dir) {
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
    let output = |d: &Demo| std::fs::read_to_string(&d.log).unwrap_or_default();
    let started = Instant::now();
    let (url, analyst) = loop {
        if let Some(p) = printed(&output(&demo)) {
            break p;
        }
        if let Ok(Some(status)) = demo.child.try_wait() {
            panic!(
                "the demo exited ({status}):\n{}\n{}",
                output(&demo),
                std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the demo printed no hub dashboards URL within 60 s:\n{}",
            output(&demo)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let screenshots = bin("apos-demo")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("hub-analysis-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut node = Command::new("node")
        .arg(browser_dir.join("hub-analysis.mjs"))
        .args([
            "--url",
            &url,
            "--site",
            SITE,
            "--node",
            NODE,
            "--pdftotext",
            PDFTOTEXT,
        ])
        .arg("--screenshots")
        .arg(&screenshots)
        .env("HUB_ANALYST_PASSWORD", &analyst)
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
    let mut lines = Vec::new();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let _ = writeln!(std::io::stderr(), "hub-analysis.mjs: {line}");
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
                SCRIPT_TIMEOUT.as_secs(),
                lines.join("\n"),
                tail(&output(&demo), 40)
            );
        }
    };
    let text = lines.join("\n");
    assert!(
        status.success(),
        "the browser checks failed ({status}):\n{text}\n--- demo (last lines) ---\n{}",
        tail(&output(&demo), 40)
    );
    assert!(text.contains("ALL CHECKS PASSED"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("REPORT_PDF bytes=")),
        "{text}"
    );
    // The report is stored beside the fleet database, HTML and PDF.
    let stored: Vec<String> = std::fs::read_dir(demo_dir.join("reports"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for ext in ["html", "pdf", "json"] {
        assert!(
            stored.iter().any(|f| f.ends_with(&format!(".{ext}"))),
            "no .{ext} report stored: {stored:?}"
        );
    }
    let shots: Vec<String> = std::fs::read_dir(&screenshots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "insights",
        "reports",
        "report-html",
        "report-print",
        "import",
        "export",
        "sql",
    ] {
        assert!(
            shots.contains(&format!("{page}.png")),
            "no screenshot of {page} in {}: {shots:?}",
            screenshots.display()
        );
    }
}
