//! The operator HMI in a real browser: `apos-demo` serves it, Debian's
//! Chromium (headless, driven by `tests/browser/hmi.mjs` through
//! playwright-core) logs in, watches live values, acknowledges and shelves
//! alarms, reads trends and forecasts, scans every page with axe-core, takes
//! screenshots into `target/hmi-screenshots/` and sees the link-lost overlay
//! when the demo is killed.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`scripts/test.sh` installs them); missing ones fail under `CI=true` and
//! skip loudly elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{bin, free_port, require_peer, workspace_root};

/// The whole browser scenario (the script budgets 180 s itself).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// The demo process, killed on drop.
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

/// What the demo printed: the HMI's URL and its users' passwords.
struct Printed {
    url: String,
    operator: String,
    admin: String,
}

fn printed(text: &str) -> Option<Printed> {
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("operator HMI:"))?
        .trim()
        .to_string();
    let password = |user: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("log in as {user} ")))
            .and_then(|l| l.split(" password ").nth(1))
            .map(|p| p.trim().to_string())
    };
    Some(Printed {
        url,
        operator: password("operator")?,
        admin: password("admin")?,
    })
}

/// Browser prerequisites; `false` when the test should skip (not in CI).
fn browser_ready(dir: &Path) -> bool {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
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

/// Raise the heater outlet setpoint (holding register 0, f32 ABCD) to 385 °C:
/// the outlet goes over `heater.outlet.hi` (375 °C) and overshoots its
/// setpoint (`heater.outlet.deviation`).
fn raise_outlet_setpoint(modbus: SocketAddr) {
    use tokio_modbus::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bits = 385.0f32.to_bits();
        let words = [(bits >> 16) as u16, (bits & 0xffff) as u16];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = async {
                let mut ctx = tcp::connect_slave(modbus, Slave(1)).await?;
                ctx.write_multiple_registers(0, &words).await??;
                let back = ctx.read_holding_registers(0, 2).await??;
                anyhow::Ok(back)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(back)) if back == words => return,
                other if Instant::now() > deadline => {
                    panic!("writing the outlet setpoint to {modbus} failed: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    });
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn the_operator_hmi_works_in_a_real_browser() {
    let browser_dir = workspace_root().join("tests/browser");
    if !browser_ready(&browser_dir) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let modbus = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = dir.path().join("demo.log");
    let mut demo = Demo {
        child: Command::new(bin("apos-demo"))
            .arg("--dir")
            .arg(dir.path().join("demo"))
            .args(["--hmi", &format!("127.0.0.1:{}", free_port())])
            .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
            .args(["--modbus", &modbus.to_string()])
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
            "the demo printed no HMI URL and passwords within 60 s:\n{}",
            demo.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    raise_outlet_setpoint(modbus);

    // target/hmi-screenshots, next to the profile folder of the binaries.
    let screenshots = bin("apos-demo")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("hmi-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let mut node = Command::new("node")
        .arg(browser_dir.join("hmi.mjs"))
        .args(["--url", &p.url, "--link-lost", "--screenshots"])
        .arg(&screenshots)
        .env("HMI_OPERATOR_PASSWORD", &p.operator)
        .env("HMI_ADMIN_PASSWORD", &p.admin)
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

    let mut output = Vec::new();
    let mut killed = false;
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            let _ = writeln!(std::io::stderr(), "hmi.mjs: {line}");
            if line.trim() == "READY_TO_KILL" && !killed {
                killed = true;
                demo.child.kill().unwrap();
                let at = now_ms();
                let _ = demo.child.wait();
                let mut s = stdin.take().unwrap();
                writeln!(s, "{at}").unwrap();
                s.flush().unwrap();
            }
            output.push(line);
        }
        if let Some(status) = node.try_wait().unwrap() {
            // the rest of its output
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
    assert!(killed, "the script never asked for the kill:\n{output}");
    assert!(output.contains("ALL CHECKS PASSED"), "{output}");
    let shots: Vec<_> = std::fs::read_dir(&screenshots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "overview",
        "tags",
        "trends",
        "forecasts",
        "kpis",
        "alarms",
        "diagnostics",
        "admin",
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
