//! Historian imports (docs/import.md) through the API and the CLI, on the
//! fixtures in hub/tests/fixtures/import (made by make_fixtures.py): the
//! validation report names every malformed row and why, the stored windows
//! equal an independent pandas computation on the rows that were not
//! rejected (windows_peer.py), a re-import changes nothing, imported tags
//! show in the tag list, charts and statistics, and a viewer cannot import.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use web::access::Role;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// Python with pandas and openpyxl: `APOS_PYTHON` or the repository's
/// `.venv`. `None` skips, except under `CI=true`.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let found = std::env::var_os("APOS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(root.join(".venv/bin/python")).filter(|p| p.exists()))
        .filter(|p| {
            Command::new(p)
                .args(["-c", "import pandas, openpyxl"])
                .status()
                .is_ok_and(|s| s.success())
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with pandas and openpyxl (CI=true: a missing peer fails); run scripts/test.sh"
        );
        eprintln!("SKIPPED: no Python with pandas for the import peer");
    }
    found
}

async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    token: &str,
    body: HttpBody,
    ctype: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", ctype)
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let text = crate::web::body_text(resp).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(router: &axum::Router, path: &str, token: &str) -> (StatusCode, Value) {
    call(
        router,
        Method::GET,
        path,
        token,
        HttpBody::empty(),
        "application/json",
    )
    .await
}

/// Upload a file as the request body.
async fn upload(router: &axum::Router, token: &str, file: &Path) -> (StatusCode, Value) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    call(
        router,
        Method::POST,
        &format!("/api/v1/etl/imports/uploads?name={name}&site=north&node=historian"),
        token,
        HttpBody::from(std::fs::read(file).unwrap()),
        "application/octet-stream",
    )
    .await
}

/// Upload and import `file` with `profile`; wait for the end. Returns the
/// start answer and the final status.
async fn import(
    router: &axum::Router,
    token: &str,
    file: &Path,
    profile: &Value,
) -> (StatusCode, Value, Value) {
    let (s, up) = upload(router, token, file).await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    let body = json!({"upload": up["upload"], "profile": profile, "profile_name": "p1", "save_profile": true});
    let (s, started) = call(
        router,
        Method::POST,
        "/api/v1/etl/imports",
        token,
        HttpBody::from(body.to_string()),
        "application/json",
    )
    .await;
    assert!(s.is_success(), "{s} {started}");
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, st) = get(router, &format!("/api/v1/etl/imports/{id}"), token).await;
        assert_eq!(s, StatusCode::OK, "{st}");
        if st["record"]["status"] != "running" {
            return (s, started, st);
        }
        assert!(Instant::now() < deadline, "import {id} still running: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rejections(
    router: &axum::Router,
    token: &str,
    id: &str,
) -> Vec<(u64, Option<String>, String)> {
    let (s, page) = get(
        router,
        &format!("/api/v1/etl/imports/{id}/rejections?limit=10000"),
        token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["column"].as_str().map(str::to_owned),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `expected` (row, column, reason prefix) is what the report says, in order.
fn assert_report(got: &[(u64, Option<String>, String)], expected: &[(u64, Option<&str>, &str)]) {
    let shown: Vec<String> = got.iter().map(|g| format!("{g:?}")).collect();
    assert_eq!(got.len(), expected.len(), "report: {shown:#?}");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!((g.0, g.1.as_deref()), (e.0, e.1), "report: {shown:#?}");
        assert!(
            g.2.starts_with(e.2),
            "row {}: {:?} should start with {:?}",
            g.0,
            g.2,
            e.2
        );
    }
}

/// The stored windows of `id` against the peer's from the accepted rows.
fn assert_windows_match(h: &crate::web::WebHub, id: &str, peer_spec: Value) {
    let Some(py) = python() else { return };
    let stored = h
        .hub
        .reads()
        .unwrap()
        .read(|s| s.import_windows(id))
        .unwrap();
    let mut child = Command::new(py)
        .arg(fixture("windows_peer.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(peer_spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "peer failed");
    let peer: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stored.len(),
        peer.len(),
        "windows: stored {stored:?}\npeer {peer:?}"
    );
    let close = |a: Option<f64>, b: &Value| match (a, b.as_f64()) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => false,
    };
    for (s, p) in stored.iter().zip(&peer) {
        assert_eq!(s.0, p[0].as_str().unwrap(), "{s:?} vs {p}");
        assert_eq!(s.1, p[1].as_i64().unwrap(), "{s:?} vs {p}");
        assert_eq!(u64::from(s.2), p[2].as_u64().unwrap(), "count {s:?} vs {p}");
        assert_eq!(u64::from(s.3), p[3].as_u64().unwrap(), "good {s:?} vs {p}");
        for (k, name) in ["min", "max", "mean", "twa", "last"].iter().enumerate() {
            assert!(close(s.4[k], &p[4 + k]), "{name}: {s:?} vs {p}");
        }
    }
}

fn long_profile() -> Value {
    json!({
        "layout": "long", "site": "north", "node": "historian", "width_ms": 60000,
        "time_column": "Timestamp", "time_format": "rfc3339", "time_zone": "Europe/Berlin",
        "tag_column": "Tag", "value_column": "Value", "quality_column": "Quality",
        "tags": [{"column": "FIC101.PV", "tag": "fic101.pv", "unit": "m3/h", "min": 0.0, "max": 500.0}],
        "plausible_from": "2000-01-01T00:00:00Z"
    })
}

const LONG_REJECTED: &[(u64, Option<&str>, &str)] = &[
    (12, Some("Timestamp"), "unparseable time"),
    (22, Some("Value"), "text in a number column"),
    (32, Some("Value"), "empty cell"),
    (42, Some("Value"), "duplicate of row 41"),
    (52, Some("Timestamp"), "wrong zone offset"),
    (62, Some("Value"), "value 9999 outside the tag's range"),
    (72, Some("Timestamp"), "time "),
];

fn rejected_spec(got: &[(u64, Option<String>, String)]) -> Value {
    Value::Array(got.iter().map(|g| json!([g.0, g.1])).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_long_form_report_windows_charts_and_idempotent_reimport() {
    crate::logs::init();
    let h = crate::web::start().await;
    let router = hub::web::router(h.state());
    let analyst = h.token(Role::Analyst);
    let viewer = h.token(Role::Viewer);
    let (_, started, st) = import(&router, &analyst, &fixture("long.csv"), &long_profile()).await;
    assert_eq!(started["already_imported"], false);
    let r = &st["record"];
    assert_eq!(r["status"], "done", "{st}");
    let id = r["id"].as_str().unwrap().to_string();
    // 127 data rows, 7 rejected, every other one stored.
    assert_eq!(
        (r["rows_total"].as_u64(), r["rows_rejected"].as_u64()),
        (Some(127), Some(7)),
        "{r}"
    );
    assert_eq!(r["rows_accepted"].as_u64(), Some(120));
    assert_eq!(r["samples"].as_u64(), Some(120));
    let got = rejections(&router, &viewer, &id).await;
    assert_report(&got, LONG_REJECTED);
    let mut peer_rejected = rejected_spec(&got);
    // The peer maps the listed tag itself.
    assert_windows_match(
        &h,
        &id,
        json!({"file": fixture("long.csv"), "layout": "long", "time_col": "Timestamp",
               "tag_col": "Tag", "value_col": "Value", "quality_col": "Quality",
               "zone": "Europe/Berlin", "width_ms": 60000, "rejected": peer_rejected.take(),
               "rename": {"FIC101.PV": "fic101.pv"}}),
    );

    // The same file and profile again: nothing new.
    let windows = r["windows"].as_u64().unwrap();
    let (s, up) = upload(&router, &analyst, &fixture("long.csv")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, again) = call(
        &router,
        Method::POST,
        "/api/v1/etl/imports",
        &analyst,
        HttpBody::from(json!({"upload": up["upload"], "profile_name": "p1"}).to_string()),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["already_imported"], true);
    assert_eq!(again["id"], id.as_str());
    let stored = h
        .hub
        .reads()
        .unwrap()
        .read(|s| s.import_windows(&id))
        .unwrap();
    assert_eq!(stored.len() as u64, windows);
    let total: u64 = h
        .hub
        .reads()
        .unwrap()
        .read(|s| s.windows("north", "historian"))
        .unwrap();
    assert_eq!(total, windows, "no duplicate windows");

    // Beside the edges' tags, in charts and statistics.
    let (s, tags) = get(
        &router,
        "/api/v1/analysis/tags?site=north&node=historian",
        &viewer,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["TI200.PV", "fic101.pv"], "{tags}");
    let range = "from=2026-01-15T06:00:00Z&to=2026-01-15T08:00:00Z";
    let (s, series) = get(
        &router,
        &format!(
            "/api/v1/analysis/series?site=north&node=historian&tag=fic101.pv&{range}&points=100"
        ),
        &viewer,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{series}");
    assert!(
        !series["series"][0]["t"].as_array().unwrap().is_empty(),
        "{series}"
    );
    let (s, stats) = get(
        &router,
        &format!("/api/v1/analysis/stats?site=north&node=historian&tag=fic101.pv&{range}"),
        &viewer,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stats}");
    assert_eq!(stats["max"].as_f64(), Some(19.0), "{stats}");

    // The saved profile is listed and can be read back.
    let (s, p) = get(&router, "/api/v1/etl/import-profiles/p1", &viewer).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["time_zone"], "Europe/Berlin");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_wide_form_truncated_and_empty_files() {
    crate::logs::init();
    let h = crate::web::start().await;
    let router = hub::web::router(h.state());
    let analyst = h.token(Role::Analyst);
    let profile = json!({
        "layout": "wide", "site": "north", "node": "historian", "width_ms": 60000,
        "time_column": "Time", "time_format": "excel", "time_zone": "Europe/Berlin",
        "tags": [{"column": "FIC101.PV [m3/h]", "tag": "fic101.pv", "unit": "m3/h"},
                 {"column": "TI200.PV [degC]", "tag": "ti200.pv", "unit": "degC"}]
    });
    let (_, _, st) = import(&router, &analyst, &fixture("wide.xlsx"), &profile).await;
    let r = &st["record"];
    assert_eq!(r["status"], "done", "{st}");
    let id = r["id"].as_str().unwrap().to_string();
    let got = rejections(&router, &analyst, &id).await;
    assert_report(
        &got,
        &[
            (6, Some("FIC101.PV [m3/h]"), "text in a number column"),
            (9, Some("TI200.PV [degC]"), "empty cell"),
            (12, Some("Time"), "unparseable time"),
            (42, Some("FIC101.PV [m3/h]"), "duplicate of row 41"),
            (42, Some("TI200.PV [degC]"), "duplicate of row 41"),
        ],
    );
    assert_eq!(r["rows_total"].as_u64(), Some(41));
    assert_eq!(r["rows_rejected"].as_u64(), Some(4));
    assert_windows_match(
        &h,
        &id,
        json!({"file": fixture("wide.xlsx"), "layout": "wide", "time_col": "Time",
               "zone": "Europe/Berlin", "width_ms": 60000, "rejected": rejected_spec(&got),
               "tags": {"FIC101.PV [m3/h]": "fic101.pv", "TI200.PV [degC]": "ti200.pv"}}),
    );

    // A CSV cut in its last line: that line is rejected, the rest stored.
    let (_, _, st) = import(
        &router,
        &analyst,
        &fixture("truncated.csv"),
        &long_profile(),
    )
    .await;
    let r = &st["record"];
    assert_eq!(r["status"], "done", "{st}");
    let got = rejections(&router, &analyst, r["id"].as_str().unwrap()).await;
    let mut expected = LONG_REJECTED.to_vec();
    expected.push((129, None, "truncated last line"));
    assert_report(&got, &expected);
    assert_eq!(r["rows_accepted"].as_u64(), Some(120));

    // A damaged workbook: the import fails with a clear error, nothing stored.
    let (_, _, st) = import(&router, &analyst, &fixture("truncated.xlsx"), &profile).await;
    let r = &st["record"];
    assert_eq!(r["status"], "failed", "{st}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("not a readable .xlsx workbook"),
        "{r}"
    );
    assert_eq!(r["windows"].as_u64(), Some(0));

    // An empty file: refused at the start.
    let (s, up) = upload(&router, &analyst, &fixture("empty.csv")).await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        up["proposal_error"].as_str().unwrap().contains("0 bytes"),
        "{up}"
    );
    let (s, p) = call(
        &router,
        Method::POST,
        "/api/v1/etl/imports",
        &analyst,
        HttpBody::from(json!({"upload": up["upload"], "profile": long_profile()}).to_string()),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("empty (0 bytes)"),
        "{p}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_import_and_a_proposal_reads_the_header() {
    crate::logs::init();
    let h = crate::web::start().await;
    let router = hub::web::router(h.state());
    let viewer = h.token(Role::Viewer);
    let analyst = h.token(Role::Analyst);
    let (s, _) = upload(&router, &viewer, &fixture("long.csv")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &router,
        Method::POST,
        "/api/v1/etl/imports",
        &viewer,
        HttpBody::from(json!({"upload": "x", "profile_name": "p"}).to_string()),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &router,
        Method::PUT,
        "/api/v1/etl/import-profiles/p",
        &viewer,
        HttpBody::from(long_profile().to_string()),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The analyst's upload gets a proposal from the header.
    let (s, up) = upload(&router, &analyst, &fixture("long.csv")).await;
    assert_eq!(s, StatusCode::CREATED);
    let p = &up["proposal"]["profile"];
    assert_eq!(p["layout"], "long", "{up}");
    assert_eq!(p["time_column"], "Timestamp");
    assert_eq!(
        (p["tag_column"].as_str(), p["value_column"].as_str()),
        (Some("Tag"), Some("Value"))
    );
    let (s, up) = upload(&router, &analyst, &fixture("wide.xlsx")).await;
    assert_eq!(s, StatusCode::CREATED);
    let p = &up["proposal"]["profile"];
    assert_eq!(
        (p["layout"].as_str(), p["time_format"].as_str()),
        (Some("wide"), Some("excel")),
        "{up}"
    );
    assert_eq!(p["tags"][0]["unit"], "m3/h");
    h.stop().await;
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apos-hub"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_alone_and_through_the_running_hub() {
    crate::logs::init();
    // No hub: the CLI opens the database itself.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.duckdb");
    let mapping = format!("{}", long_profile());
    let file = fixture("long.csv");
    let args = |db: &Path| {
        vec![
            "import".to_string(),
            file.display().to_string(),
            "--mapping".into(),
            mapping.clone(),
            "--db".into(),
            db.display().to_string(),
        ]
    };
    let a = args(&db);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, text) = cli(&a);
    assert!(ok, "{text}");
    assert!(
        text.contains("127 read, 120 accepted, 7 rejected"),
        "{text}"
    );
    assert!(
        text.contains("row 42, column Value: duplicate of row 41"),
        "{text}"
    );
    let (ok, text) = cli(&a);
    assert!(ok, "{text}");
    assert!(text.contains("already imported"), "{text}");

    // A running hub holds its database: the CLI goes through it.
    let h = crate::web::start().await;
    let hub_db = h.dir.path().join("fleet.duckdb");
    let a = args(&hub_db);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, text) = tokio::task::spawn_blocking({
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        move || cli(&a.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(ok, "{text}");
    assert!(
        text.contains("127 read, 120 accepted, 7 rejected"),
        "{text}"
    );
    let n = h
        .hub
        .reads()
        .unwrap()
        .read(|s| s.windows("north", "historian"))
        .unwrap();
    assert!(n > 0);
    h.stop().await;
}
