//! The hub's analysis pages in a real browser (issue 19): `apos-demo`
//! serves them; Debian's Chromium, driven by `tests/browser/hub-analysis.mjs`
//! through playwright-core, logs in as the demo's analyst, imports a
//! historian CSV with a stuck sensor through the import page, sees the
//! stuck sensor in the ranked insights list over the imported days and
//! opens its chart, makes a site report on the Reports page, renders its
//! HTML (every section), fetches its PDF (Chromium's print-to-PDF inside
//! the hub) and reads the PDF's text with `pdftotext`, counts the imported
//! windows on the SQL page and exports them as CSV on the export page.
//! Screenshots (and the PDF) go to `target/hub-analysis-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `node`, `tests/browser/node_modules` and
//! `pdftotext` (Debian poppler-utils); missing ones fail under `CI=true`
//! and skip loudly elsewhere.

use std::time::Duration;

use crate::browser::{self, Demo, NODE, SITE};

/// The whole browser scenario, including waiting for the first windows.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(420);
const PDFTOTEXT: &str = "/usr/bin/pdftotext";

#[test]
fn the_insights_and_reports_pages_work_in_a_real_browser() {
    if !browser::ready(
        &["playwright-core"],
        &[(PDFTOTEXT, "pdftotext (Debian package poppler-utils)")],
    ) {
        return;
    }
    let mut demo = Demo::start(None, &[]);
    let (url, analyst) = demo.wait_printed("hub dashboards URL and analyst password", |t| {
        Some((
            browser::url_after(t, "hub dashboards")?,
            browser::password(t, "hub dashboards", "analyst")?,
        ))
    });
    let screenshots = browser::screenshots("hub-analysis-screenshots");
    let shots = screenshots.display().to_string();
    let text = browser::run_script(
        "hub-analysis.mjs",
        &[
            "--url",
            &url,
            "--site",
            SITE,
            "--node",
            NODE,
            "--pdftotext",
            PDFTOTEXT,
            "--screenshots",
            &shots,
        ],
        &[("HUB_ANALYST_PASSWORD", &analyst)],
        SCRIPT_TIMEOUT,
        &mut demo,
        |_, _, _| {},
    );
    assert!(
        text.lines().any(|l| l.starts_with("REPORT_PDF bytes=")),
        "{text}"
    );
    // The report is stored beside the fleet database, HTML and PDF.
    let stored: Vec<String> = std::fs::read_dir(demo.dir.join("reports"))
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
    browser::assert_screenshots(
        &screenshots,
        &[
            "import-mapping",
            "import-report",
            "insights",
            "insight-chart",
            "insights-demo",
            "reports",
            "report-html",
            "report-print",
            "sql",
            "export",
        ],
    );
}
