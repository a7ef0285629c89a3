//! Site reports (issue 19): made from a seeded store as HTML with every
//! section and as PDF through headless Chromium, whose text `pdftotext`
//! (poppler, an independent reader) must show; stored as HTML only with
//! the reason when Chromium is missing; made on demand through the API of
//! a started hub, listed, served with its own content policy, and
//! announced to an independent webhook receiver
//! (tests/peers/webhook_receiver.py) with a valid signature.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use hub::report::{self, Request};
use hub::store::{Incoming, Store};
use protocol::v1::{AlarmEvent, Batch, Body, KpiQuality, KpiResult, Window, WindowSet};
use serde_json::Value as J;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use web::access::Role;

use crate::support::{free_port, hub_config};

const H: i64 = 3_600_000;
const CHROMIUM: &str = "/usr/bin/chromium";
const PDFTOTEXT: &str = "/usr/bin/pdftotext";
const SECRET: &str = "webhook-secret-0123456789";

/// Chromium and pdftotext, or a loud skip (a failure under `CI=true`).
fn peers() -> bool {
    for (p, what) in [
        (CHROMIUM, "Chromium (Debian package chromium)"),
        (PDFTOTEXT, "pdftotext (Debian package poppler-utils)"),
    ] {
        if !Path::new(p).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "peer missing: {what} (CI=true: a missing peer fails)"
            );
            eprintln!("SKIPPED: peer missing: {what}");
            return false;
        }
    }
    true
}

fn incoming(seq: u64, site: &str, node: &str, body: Body) -> Incoming {
    Incoming {
        site: site.into(),
        node: node.into(),
        raw: bytes::Bytes::new(),
        received_ms: 0,
        batch: Batch {
            seq,
            created_ms: 0,
            body,
        },
    }
}

/// Two hours up to `end` of site `north`, node `n1`: tag windows, 5-minute
/// OEE values, and alarm activations; node `n2` of site `south` too.
fn seed(s: &mut Store, end: i64) {
    let start = end - 2 * H;
    let mut items = Vec::new();
    let mut seq = 0;
    for (site, node) in [("north", "n1"), ("south", "n2")] {
        let mut sets = Vec::new();
        let mut kpis = Vec::new();
        let mut t = start - start % 60_000;
        while t < end {
            let v = 100.0 + ((t / 60_000) % 9) as f64;
            sets.push(WindowSet {
                width_ms: 60_000,
                start_ms: t,
                windows: vec![Window {
                    tag: "heater.outlet_temp".into(),
                    count: 6,
                    good: 6,
                    min: v,
                    max: v,
                    mean: v,
                    twa: v,
                    last: v,
                }],
            });
            if t % 300_000 == 0 && t + 300_000 <= end {
                kpis.push(KpiResult {
                    kpi: "cdu.oee".into(),
                    window: "5m".into(),
                    label: String::new(),
                    start_ms: t,
                    end_ms: t + 300_000,
                    until_ms: t + 300_000,
                    closed: true,
                    computed_ms: t + 300_000,
                    coverage: 1.0,
                    quality: KpiQuality::Good,
                    values: vec![
                        ("oee".into(), Some(0.72)),
                        ("availability".into(), Some(0.9)),
                        ("performance".into(), Some(0.8)),
                        ("quality".into(), Some(1.0)),
                    ],
                    unit: None,
                });
            }
            t += 60_000;
        }
        seq += 1;
        items.push(incoming(seq, site, node, Body::Aggregates(sets)));
        seq += 1;
        items.push(incoming(seq, site, node, Body::Kpis(kpis)));
        let alarms = (0..3)
            .map(|k| AlarmEvent {
                alarm: "heater.outlet.hi".into(),
                seq: k + 1,
                ts_ms: end - H + k as i64 * 600_000,
                change: "activated".into(),
                state: "unacknowledged".into(),
                priority: 3,
                value: Some(380.0),
                by: None,
                comment: None,
            })
            .collect();
        seq += 1;
        items.push(incoming(seq, site, node, Body::Alarms(alarms)));
    }
    s.ingest(&items).unwrap();
}

fn now_ms() -> i64 {
    hub::web::now_ms()
}

fn request(chromium: Option<&str>, end: i64) -> Request {
    Request {
        name: "north-test".into(),
        site: "north".into(),
        from_ms: end - H,
        to_ms: end,
        trigger: "demand",
        chromium: chromium.map(PathBuf::from),
        hub: "test-hub".into(),
    }
}

#[test]
fn a_report_is_html_with_every_section_and_a_pdf_whose_text_says_so() {
    if !peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("fleet.duckdb")).unwrap();
    let end = now_ms() - now_ms() % 60_000;
    seed(&mut s, end);
    let reports = report::dir(&dir.path().join("fleet.duckdb"));
    assert_eq!(reports, dir.path().join("reports"));
    let m = report::make_in(&s, &reports, &request(Some(CHROMIUM), end)).unwrap();
    assert!(m.id.starts_with("north-test-"), "{m:?}");
    assert!(m.pdf_bytes.is_some() && m.pdf_note.is_none(), "{m:?}");
    let html = std::fs::read_to_string(reports.join(format!("{}.html", m.id))).unwrap();
    for s in [
        "Site report: north",
        "<h2>Summary</h2>",
        "<h2>Insights</h2>",
        "<h2>KPIs</h2>",
        "<h2>Trends</h2>",
        "<h2>Alarms</h2>",
        "<h2>Data quality</h2>",
        "@media print",
        "heater.outlet.hi",
        "cdu.oee",
    ] {
        assert!(html.contains(s), "{s} missing in the HTML");
    }
    // Only site north: south's node is not in it.
    assert!(!html.contains(">n2<"), "another site's node in the report");
    assert!(!html.contains("<script"), "a report has no script");
    let pdf = reports.join(format!("{}.pdf", m.id));
    let bytes = std::fs::read(&pdf).unwrap();
    assert_eq!(&bytes[..5], b"%PDF-");
    let out = Command::new(PDFTOTEXT)
        .arg("-layout")
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "Site report: north",
        "Summary",
        "Insights",
        "KPIs",
        "Alarms",
        "Data quality",
        "heater.outlet.hi",
        "cdu.oee",
        "72 %",
    ] {
        assert!(text.contains(s), "{s:?} missing in the PDF's text:\n{text}");
    }
    // Listed; files only by a valid id.
    let list = report::list(&reports).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0], m);
    assert!(report::file(&reports, &m.id, "pdf").is_some());
    assert!(report::file(&reports, "../fleet", "html").is_none());
    assert!(report::file(&reports, &m.id, "json").is_none());
}

#[test]
fn without_chromium_the_report_is_html_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("fleet.duckdb")).unwrap();
    let end = now_ms() - now_ms() % 60_000;
    seed(&mut s, end);
    let reports = dir.path().join("reports");
    let m = report::make_in(&s, &reports, &request(Some("/nonexistent/chromium"), end)).unwrap();
    assert_eq!(m.pdf_bytes, None);
    let note = m.pdf_note.clone().unwrap();
    assert!(
        note.contains("Chromium not found at /nonexistent/chromium"),
        "{note}"
    );
    assert!(reports.join(format!("{}.html", m.id)).is_file());
    assert!(!reports.join(format!("{}.pdf", m.id)).exists());
    // A second report of the same period gets its own id.
    let m2 = report::make_in(&s, &reports, &request(None, end)).unwrap();
    assert_ne!(m2.id, m.id);
    assert!(m2.pdf_note.unwrap().contains("no Chromium configured"));
    assert_eq!(report::list(&reports).unwrap().len(), 2);
}

/// Python for the receiver peer (as hub/tests/hub/alerts.rs finds it).
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let found = std::env::var_os("APOS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(root.join(".venv/bin/python")).filter(|p| p.exists()))
        .or_else(|| {
            Command::new("python3")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("python3"))
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python for tests/peers/webhook_receiver.py (CI=true: a missing peer fails)"
        );
        eprintln!("SKIPPED: no Python for the webhook receiver peer");
    }
    found
}

/// A request through the hub's router as an analyst (CSRF header set).
async fn call(
    hub: &hub::Hub,
    method: Method,
    path: &str,
    body: Option<J>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let state = hub.web().unwrap().state.clone();
    let s = state
        .core
        .sessions
        .create("analyst", Role::Analyst, Instant::now());
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("cookie", format!("apos_session={}", s.token))
        .header("x-csrf-token", s.csrf.clone())
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => axum::body::Body::from(b.to_string()),
            None => axum::body::Body::empty(),
        })
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    let resp = hub::web::router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_made_through_the_api_is_listed_served_and_announced() {
    crate::logs::init();
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The independent receiver.
    std::fs::write(dir.path().join("receiver.secret"), format!("{SECRET}\n")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/webhook_receiver.py");
    let mut rx = Command::new(&py)
        .arg(script)
        .args(["--port", "0"])
        .arg("--secret-file")
        .arg(dir.path().join("receiver.secret"))
        .arg("--log")
        .arg(dir.path().join("deliveries.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(rx.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hook_port: u16 = line.trim().strip_prefix("READY ").unwrap().parse().unwrap();
    // A hub with the webhook (which needs one rule) and a daily report.
    let path = hub_config(dir.path(), free_port(), "", 1_000_000);
    std::fs::write(dir.path().join("webhook.secret"), format!("{SECRET}\n")).unwrap();
    let chromium = if Path::new(CHROMIUM).exists() {
        CHROMIUM
    } else {
        ""
    };
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:0\"\n\
         [alerts]\ninterval = \"1s\"\nname = \"test-hub\"\n\
         [[alert]]\nname = \"offline\"\nkind = \"node_offline\"\nfor = \"1h\"\n\
         [webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret_file = \"webhook.secret\"\n\
         timeout = \"2s\"\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\n\
         [[report]]\nsite = \"s\"\nperiod = \"1d\"\nat = \"06:00\"\nzone = \"Europe/Berlin\"\nchromium = \"{chromium}\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    let cfg = hub::config::load(&path).unwrap();
    let cancel = CancellationToken::new();
    let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(hub.wait_ready(Duration::from_secs(15)).await, "hub ready");

    // A bad period is a 400.
    let (st, _, _) = call(
        &hub,
        Method::POST,
        "/api/v1/reports",
        Some(serde_json::json!({"site": "s", "period": "1 fortnight"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, body) = call(
        &hub,
        Method::POST,
        "/api/v1/reports",
        Some(serde_json::json!({"site": "s", "period": "1h"})),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let m: J = serde_json::from_slice(&body).unwrap();
    let id = m["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("s-on-demand-"), "{m}");
    assert_eq!(m["trigger"], "demand");
    assert_eq!(
        m["to_ms"].as_i64().unwrap() - m["from_ms"].as_i64().unwrap(),
        H
    );

    let (st, _, body) = call(&hub, Method::GET, "/api/v1/reports", None).await;
    assert_eq!(st, StatusCode::OK);
    let list: J = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["items"][0]["id"], J::from(id.clone()));
    assert_eq!(
        list["scheduled"][0]["schedule"],
        "daily at 06:00 Europe/Berlin"
    );

    let (st, h, body) = call(
        &hub,
        Method::GET,
        &format!("/api/v1/reports/{id}/html"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(String::from_utf8_lossy(&body).contains("Site report: s"));
    let (st, _, _) = call(&hub, Method::GET, "/api/v1/reports/..%2Ffleet/html", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = call(&hub, Method::GET, "/api/v1/reports/nope/pdf", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    if !chromium.is_empty() {
        let (st, h, body) = call(
            &hub,
            Method::GET,
            &format!("/api/v1/reports/{id}/pdf"),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(h["content-type"], "application/pdf");
        assert_eq!(&body[..5], b"%PDF-");
    }

    // Announced, signed.
    let deliveries = dir.path().join("deliveries.jsonl");
    let end = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let recs: Vec<J> = std::fs::read_to_string(&deliveries)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if let Some(r) = recs.into_iter().find(|r| r["body"]["event"] == "report") {
            break r;
        }
        assert!(
            Instant::now() < end,
            "no report announcement reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rec["signature_ok"], true, "{rec}");
    let b = &rec["body"];
    assert_eq!(
        (&b["id"], &b["site"], &b["hub"]),
        (&J::from(id.clone()), &J::from("s"), &J::from("test-hub"))
    );
    assert_eq!(
        b["html_path"],
        J::from(format!("/api/v1/reports/{id}/html"))
    );
    cancel.cancel();
    let _ = rx.kill();
    let _ = rx.wait();
}
