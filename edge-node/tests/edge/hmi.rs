//! The HMI's routes through the real router (`oneshot`), against a running
//! edge: every non-public route refuses without a session (401) and with
//! too weak a role (403); the list comes from the route table itself, so a
//! new route cannot escape the sweep. `/metrics` is parsed by an independent
//! parser (Python's prometheus_client).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use edge_node::hmi;
use tower::ServiceExt as _;
use web::access::{Access, Role};

async fn edge(dir: &std::path::Path) -> (edge_node::Edge, tokio_util::sync::CancellationToken) {
    let db = dir.join("history.db");
    let text = format!(
        "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"hmi\"\n[storage]\npath = \"{}\"\n\
         [hmi]\nlisten = \"127.0.0.1:0\"\n\
         [[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = 1\n\
         [[tag]]\nname = \"temp\"\ndevice = \"plc\"\narea = \"input\"\naddress = 0\ntype = \"u16\"\nunit = \"degC\"\nrange = [0, 500]\n\
         [[alarm]]\nname = \"temp.hi\"\ntype = \"hi\"\ntag = \"temp\"\nlimit = 90.0\n",
        db.display()
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let edge = edge_node::Edge::start(&path, cancel.clone()).await.unwrap();
    (edge, cancel)
}

fn request(method: &Method, path: &str, session: Option<&web::session::Session>) -> Request<Body> {
    let path = path.replace("{tag}", "temp").replace("{name}", "temp.hi");
    let mut b = Request::builder().method(method).uri(path);
    if let Some(s) = session {
        b = b
            .header("cookie", format!("apos_session={}", s.token))
            .header("x-csrf-token", &s.csrf);
    }
    let body = if *method == Method::POST {
        b = b.header("content-type", "application/json");
        Body::from("{\"reason\": \"sweep\", \"minutes\": 5}")
    } else {
        Body::empty()
    };
    b.body(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_its_role_and_metrics_parse() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, cancel) = edge(dir.path()).await;
    let h = edge.hmi.as_ref().expect("[hmi] starts the HMI");
    let state = h.state.clone();
    let router = hmi::router(state.clone());
    let table = hmi::routes(state.core.clone());
    let routes = table.routes().to_vec();
    assert!(routes.len() >= 20, "{} routes", routes.len());
    let ranks = [Role::Viewer, Role::Operator, Role::Engineer, Role::Admin];
    // Fresh sessions for every route: the sweep also logs out.
    let sessions = || -> Vec<_> {
        ranks
            .iter()
            .map(|r| {
                (
                    *r,
                    state
                        .core
                        .sessions
                        .create(&format!("u-{}", r.as_str()), *r, Instant::now()),
                )
            })
            .collect()
    };
    let mut checked = 0;
    for r in &routes {
        let needed = match r.access {
            Access::Public => continue,
            Access::Role(role) => role,
        };
        let sessions = sessions();
        let resp = router
            .clone()
            .oneshot(request(&r.method, r.path, None))
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{} {} without a session",
            r.method,
            r.path
        );
        for (role, s) in &sessions {
            let resp = router
                .clone()
                .oneshot(request(&r.method, r.path, Some(s)))
                .await
                .unwrap();
            if role.allows(needed) {
                assert!(
                    resp.status() != StatusCode::UNAUTHORIZED
                        && resp.status() != StatusCode::FORBIDDEN,
                    "{} {} as {}: {}",
                    r.method,
                    r.path,
                    role.as_str(),
                    resp.status()
                );
            } else {
                assert_eq!(
                    resp.status(),
                    StatusCode::FORBIDDEN,
                    "{} {} as {}",
                    r.method,
                    r.path,
                    role.as_str()
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} protected routes");
    let sessions = sessions();
    // Writes are operator's and need the CSRF token.
    let op = &sessions[1].1;
    let mut no_csrf = request(&Method::POST, "/api/v1/alarms/{name}/ack", Some(op));
    no_csrf.headers_mut().remove("x-csrf-token");
    assert_eq!(
        router.clone().oneshot(no_csrf).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // The shelve of the sweep went through, and was audited with its reason.
    let audit = state.core.audit.list(None, 50).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "alarm_shelve"
            && e.target == "temp.hi"
            && e.detail.contains("sweep")),
        "{audit:?}"
    );
    assert!(state.core.audit.verify().unwrap().ok);
    // Every route is in the OpenAPI document.
    let resp = router
        .clone()
        .oneshot(request(&Method::GET, "/api/v1/openapi.json", None))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    for r in &routes {
        assert!(
            doc["paths"][r.path][r.method.as_str().to_lowercase()].is_object(),
            "{} {} missing from the OpenAPI document",
            r.method,
            r.path
        );
    }

    // /metrics through an independent parser.
    let resp = router
        .clone()
        .oneshot(request(&Method::GET, "/metrics", Some(&sessions[0].1)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    if let Some(py) = python() {
        let out = std::process::Command::new(py)
            .args([
                "-c",
                "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                 fams = {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples]) for f in p(sys.stdin.read())}\n\
                 print(json.dumps(fams))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(&text)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fams: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The parser strips `_total` from counter family names.
        for (name, kind) in [
            ("apos_edge_driver_requests", "counter"),
            ("apos_edge_driver_errors", "counter"),
            ("apos_edge_driver_connected", "gauge"),
            ("apos_edge_samples_collected", "counter"),
            ("apos_edge_samples_stored", "counter"),
            ("apos_edge_outbox_depth_batches", "gauge"),
            ("apos_edge_outbox_oldest_unacked_age_seconds", "gauge"),
            ("apos_edge_alarms_active", "gauge"),
            ("apos_edge_alarms_unacknowledged", "gauge"),
            ("apos_edge_websocket_clients", "gauge"),
        ] {
            assert_eq!(fams[name][0], kind, "{name} in {fams}");
        }
        let active = fams["apos_edge_alarms_active"][1].as_array().unwrap();
        assert_eq!(active.len(), 4, "one sample per priority: {active:?}");
        let plc = &fams["apos_edge_driver_connected"][1][0];
        assert_eq!(plc[1]["device"], "plc");
        assert_eq!(plc[2], 0.0, "the PLC at port 1 is not connected");
    }
    // The listener serves the pages with the strict CSP, compressed.
    let resp = router
        .clone()
        .oneshot(
            Request::get("/")
                .header("accept-encoding", "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    // A configuration reload lands in the audit log, and so does a refused one.
    let cfg_path = dir.path().join("edge.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, text.replace("limit = 90.0", "limit = 95.0")).unwrap();
    let audited = |action: &'static str| {
        let audit = state.core.audit.clone();
        async move {
            for _ in 0..100 {
                if audit
                    .list(None, 100)
                    .unwrap()
                    .iter()
                    .any(|e| e.action == action)
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(audited("config_reload").await, "reload not audited");
    std::fs::write(&cfg_path, "schema_version = 1\n[nod]\n").unwrap();
    assert!(
        audited("config_rejected").await,
        "refused reload not audited"
    );
    assert!(state.core.audit.verify().unwrap().ok);
    cancel.cancel();
    edge.join(Duration::from_secs(10)).await;
}

fn python() -> Option<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in [
        std::env::var_os("APOS_PYTHON").map(PathBuf::from),
        Some(repo.join(".venv/bin/python")),
    ]
    .into_iter()
    .flatten()
    {
        if std::process::Command::new(&p)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("Python with prometheus_client is missing: run scripts/test.sh (it builds .venv)");
    }
    eprintln!(
        "SKIPPED the metrics parse: Python with prometheus_client not found (run scripts/test.sh)"
    );
    None
}

/// Audit entries go to the hub: each one is queued in the outbox in the
/// transaction that writes it, cut to the protocol's bounds, and the batch
/// passes the hub's checks.
#[test]
fn audit_entries_are_queued_for_the_hub_with_their_hash() {
    use edge_node::history::{HistoryOptions, HistoryStore};
    use firmware_config::WhenFull;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    HistoryStore::open(&HistoryOptions::new(&db))
        .unwrap()
        .close()
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let log = web::audit::AuditLog::new(
        std::sync::Arc::new(std::sync::Mutex::new(conn)),
        Some(hmi::audit_hook(policy)),
    )
    .unwrap();
    let long = "x\ny".repeat(400);
    let e = log
        .append(
            web::audit::NewAudit {
                actor: "system".into(),
                action: "config_rejected".into(),
                target: "/etc/apos/edge.toml".into(),
                detail: long,
                addr: String::new(),
            },
            1_796_000_000_000,
        )
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM outbox", [], |r| r.get(0))
        .unwrap();
    let batch: protocol::v1::Batch = postcard::from_bytes(&payload).unwrap();
    protocol::check::batch(&batch).unwrap();
    let protocol::v1::Body::Audit(sent) = batch.body else {
        panic!("an audit batch")
    };
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].seq, sent[0].hash.as_str()), (1, e.hash.as_str()));
    assert_eq!(sent[0].detail.len(), protocol::check::MAX_TEXT);
    assert!(!sent[0].detail.contains('\n'));
}

/// The alarm-system figures go to the hub in a batch that passes its checks.
#[test]
fn alarm_health_is_queued_for_the_hub() {
    use edge_node::history::{HistoryOptions, HistoryStore};
    use firmware_config::WhenFull;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    HistoryStore::open(&HistoryOptions::new(&db))
        .unwrap()
        .close()
        .unwrap();
    let conn = std::sync::Mutex::new(rusqlite::Connection::open(&db).unwrap());
    let policy = edge_node::sync::outbox::OutboxPolicy {
        max_bytes: 1 << 20,
        when_full: WhenFull::DropOldest,
        max_batch_windows: 5000,
    };
    let figures = edge_node::alarm::board::HealthView {
        avg_per_10min: 2.5,
        peak_per_10min: 14,
        flood_percent: 12.5,
        top10_share: 0.8,
        top10: vec![("a".into(), 9)],
        chattering: vec!["pump.flow.lo".into()],
        stale: vec![],
        in_flood: true,
    };
    edge_node::alarm::send_health(&conn, &figures, &policy, 1_796_000_000_000).unwrap();
    let c = conn.lock().unwrap();
    let payload: Vec<u8> = c
        .query_row("SELECT payload FROM outbox", [], |r| r.get(0))
        .unwrap();
    let batch: protocol::v1::Batch = postcard::from_bytes(&payload).unwrap();
    protocol::check::batch(&batch).unwrap();
    let protocol::v1::Body::AlarmHealth(sent) = batch.body else {
        panic!("an alarm health batch")
    };
    assert_eq!(sent[0].flood_share, 0.125);
    assert_eq!(sent[0].chattering, vec!["pump.flow.lo".to_string()]);
    assert!(sent[0].in_flood);
}
