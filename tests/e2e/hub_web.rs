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

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::browser::{self, Demo, NODE, SITE};
use crate::support::bin;

/// The whole browser scenario, including waiting for the first KPI windows.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

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
    if !browser::ready(&["playwright-core", "axe-core"], &[]) {
        return;
    }
    let mut demo = Demo::start(None, &[]);
    let (url, analyst, admin) = demo.wait_printed("hub dashboards URL and passwords", |t| {
        Some((
            browser::url_after(t, "hub dashboards")?,
            browser::password(t, "hub dashboards", "analyst")?,
            browser::password(t, "hub dashboards", "admin")?,
        ))
    });
    let viewer_password = "viewer-e2e-password-1";
    add_viewer(&demo.dir.join("hub.toml"), viewer_password);

    let screenshots = browser::screenshots("hub-screenshots");
    let shots = screenshots.display().to_string();
    let output = browser::run_script(
        "hub.mjs",
        &[
            "--url",
            &url,
            "--site",
            SITE,
            "--node",
            NODE,
            "--screenshots",
            &shots,
        ],
        &[
            ("HUB_ANALYST_PASSWORD", &analyst),
            ("HUB_ADMIN_PASSWORD", &admin),
            ("HUB_VIEWER_PASSWORD", viewer_password),
        ],
        SCRIPT_TIMEOUT,
        &mut demo,
        |_, _, _| {},
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("HUB_PAGE_LOAD bytes=")),
        "no first-load figures:\n{output}"
    );
    browser::assert_screenshots(
        &screenshots,
        &[
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
        ],
    );
}
