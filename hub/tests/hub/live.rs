//! The hub watched while it runs: the dashboards' live WebSocket (events
//! after each commit, a lagging client closed with 4000), `/metrics`
//! through an independent parser (Python's prometheus_client), `/readyz`
//! before and after the ingest subscribes, and `apos-hub nodes` /
//! `checksum` while the hub holds the DuckDB file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use futures::{SinkExt as _, StreamExt as _};
use protocol::v1::{AlarmEvent, Batch, Body, KpiQuality, KpiResult, Message, Status};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, QoS};
use serde_json::Value as J;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use web::access::Role;

use crate::support::{KEY_A, batch, free_port, hub_config, options};
use crate::web::{WebHub, request, start};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn live(h: &WebHub, role: Role) -> Ws {
    let url = format!("{}/api/v1/live", h.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    let s = h.session(role);
    req.headers_mut().insert(
        "cookie",
        format!("apos_session={}", s.token).parse().unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// The next text frame as JSON, skipping pings (at most `within`).
async fn next(ws: &mut Ws, within: Duration) -> J {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let tungstenite::Message::Text(t) = m {
            let j: J = serde_json::from_str(&t).unwrap();
            if j["type"] != "ping" {
                return j;
            }
        }
    }
}

async fn node_a(port: u16) -> (AsyncClient, NodeKey) {
    let (c, mut el) = AsyncClient::new(options(port, "s.a", Some(("s.a", "pa"))), 100);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    (c, NodeKey::new(KEY_A.as_bytes()).unwrap())
}

async fn publish(c: &AsyncClient, key: &NodeKey, kind: Kind, m: &Message) {
    let t = Topic::new("s", "a", kind).unwrap();
    let bytes = protocol::envelope::seal(&t, m, key).unwrap();
    c.publish(t.to_string(), QoS::AtLeastOnce, false, bytes)
        .await
        .unwrap();
}

fn kpi(until_ms: i64, oee: f64) -> KpiResult {
    KpiResult {
        kpi: "oee".into(),
        window: "shift".into(),
        label: "early".into(),
        start_ms: 1_800_000_000_000,
        end_ms: 1_800_028_800_000,
        until_ms,
        closed: false,
        computed_ms: until_ms,
        coverage: 1.0,
        quality: KpiQuality::Good,
        values: vec![("oee".into(), Some(oee)), ("availability".into(), None)],
        unit: None,
    }
}

async fn metrics_text(h: &WebHub) -> String {
    let router = hub::web::router(h.state());
    let s = h.session(Role::Viewer);
    let resp = router
        .oneshot(request(&Method::GET, "/metrics", Some(&s), false))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Families as Python's prometheus_client parses them:
/// name → (type, [(sample name, labels, value)]).
fn parse_metrics(text: &str) -> Option<J> {
    let py = python()?;
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
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
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

/// One sample's value: family `name`, sample `sample`, labels containing `labels`.
fn value(fams: &J, name: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams[name][1].as_array()?.iter().find_map(|s| {
        (s[0] == sample && labels.iter().all(|(k, v)| s[1][k] == *v)).then(|| s[2].as_f64())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_follow_commits_and_metrics_parse() {
    crate::logs::init();
    let h = start().await;
    let state = h.state();
    let mut ws = live(&h, Role::Viewer).await;
    let hello = next(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(hello["type"], "hello");
    assert!(hello["now_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(state.ws_clients.load(Relaxed), 1);

    // A batch, then KPIs (the same window twice: only the newest is sent),
    // alarm journal entries and a status, each after its commit.
    let (c, key) = node_a(h.mqtt_port).await;
    let sent = Instant::now();
    publish(&c, &key, Kind::Batch, &batch(1)).await;
    let e = next(&mut ws, Duration::from_secs(10)).await;
    let latency = sent.elapsed();
    assert_eq!(e["type"], "node", "{e}");
    assert_eq!(
        (e["site"].as_str(), e["node"].as_str()),
        (Some("s"), Some("a"))
    );
    assert_eq!(e["cause"], "batch");
    assert_eq!(e["max_seq"], 1);
    assert!(e.get("software_version").is_none(), "{e}");
    let windows = state.reads.read(|s| s.windows("s", "a")).unwrap();
    assert_eq!(windows, 1, "the event comes after the commit");

    let kpis = Message::Batch(Batch {
        seq: 2,
        created_ms: 1_800_000_000_000,
        body: Body::Kpis(vec![
            kpi(1_800_000_060_000, 0.5),
            kpi(1_800_000_120_000, f64::NAN),
        ]),
    });
    publish(&c, &key, Kind::Batch, &kpis).await;
    let e = next(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(
        (e["type"].as_str(), e["max_seq"].as_u64()),
        (Some("node"), Some(2))
    );
    let e = next(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "kpis", "{e}");
    let items = e["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one per KPI window: {e}");
    assert_eq!(items[0]["until_ms"], 1_800_000_120_000i64);
    assert!(items[0]["value"].is_null(), "NaN is sent as null: {e}");
    assert_eq!(items[0]["label"], "early");

    let alarms = Message::Batch(Batch {
        seq: 3,
        created_ms: 1_800_000_000_000,
        body: Body::Alarms(vec![AlarmEvent {
            alarm: "temp.hi".into(),
            seq: 7,
            ts_ms: 1_800_000_100_000,
            change: "activated".into(),
            state: "unacknowledged".into(),
            priority: 3,
            value: Some(91.5),
            by: None,
            comment: None,
        }]),
    });
    publish(&c, &key, Kind::Batch, &alarms).await;
    let _node = next(&mut ws, Duration::from_secs(10)).await;
    let e = next(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "alarms", "{e}");
    assert_eq!(e["entries"][0]["alarm"], "temp.hi");
    assert_eq!(e["entries"][0]["seq"], 7);
    assert_eq!(e["entries"][0]["value"], 91.5);

    // The same batch again (an edge resending): stored once, no event (had
    // it sent one, it would come before the status's, committed later).
    let before = hub::metrics::snapshot().batches_duplicate;
    publish(&c, &key, Kind::Batch, &alarms).await;
    let end = Instant::now() + Duration::from_secs(10);
    while hub::metrics::snapshot().batches_duplicate == before {
        assert!(Instant::now() < end, "the duplicate was never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Message::Status(Status {
        ts_ms: hub::web::now_ms(),
        software_version: "live-1".into(),
        started_ms: 1_800_000_000_000,
        outbox_batches: 4,
        outbox_bytes: 4096,
        oldest_unacked_ms: Some(1_800_000_000_000),
        last_seq: 3,
        dropped_batches: 0,
    });
    publish(&c, &key, Kind::Status, &status).await;
    let e = next(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "node", "the duplicate sent nothing: {e}");
    assert_eq!(e["cause"], "status", "{e}");
    assert_eq!(e["software_version"], "live-1");
    assert_eq!(e["outbox_batches"], 4);

    // Metrics, read by an independent parser.
    let text = metrics_text(&h).await;
    if let Some(fams) = parse_metrics(&text) {
        for (name, kind) in [
            ("apos_hub_batches_stored", "counter"),
            ("apos_hub_windows_stored", "counter"),
            ("apos_hub_kpis_stored", "counter"),
            ("apos_hub_forecasts_stored", "counter"),
            ("apos_hub_alarm_events_stored", "counter"),
            ("apos_hub_refused", "counter"),
            ("apos_hub_commit_seconds", "histogram"),
            ("apos_hub_store_queue_depth", "gauge"),
            ("apos_hub_http_request_duration_seconds", "histogram"),
            ("apos_hub_websocket_clients", "gauge"),
            ("apos_hub_web_sessions", "gauge"),
        ] {
            assert_eq!(fams[name][0], kind, "{name} in {fams}");
        }
        let v = |n: &str, s: &str, l: &[(&str, &str)]| value(&fams, n, s, l).unwrap_or(-1.0);
        assert!(
            v(
                "apos_hub_batches_stored",
                "apos_hub_batches_stored_total",
                &[]
            ) >= 3.0
        );
        assert!(
            v(
                "apos_hub_batches_duplicate",
                "apos_hub_batches_duplicate_total",
                &[]
            ) >= 1.0
        );
        assert!(
            v(
                "apos_hub_alarm_events_stored",
                "apos_hub_alarm_events_stored_total",
                &[]
            ) >= 1.0
        );
        assert!(
            v(
                "apos_hub_commit_seconds",
                "apos_hub_commit_seconds_count",
                &[]
            ) >= 3.0,
            "every commit timed"
        );
        assert!(
            v(
                "apos_hub_commit_seconds",
                "apos_hub_commit_seconds_bucket",
                &[("le", "+Inf")]
            ) >= 3.0
        );
        assert_eq!(
            fams["apos_hub_refused"][1].as_array().unwrap().len(),
            12,
            "one series per reason"
        );
        assert_eq!(
            v(
                "apos_hub_websocket_clients",
                "apos_hub_websocket_clients",
                &[]
            ),
            1.0
        );
        assert!(v("apos_hub_web_sessions", "apos_hub_web_sessions", &[]) >= 1.0);
        // The upgrade through the real listener, per route template.
        assert!(
            v(
                "apos_hub_http_request_duration_seconds",
                "apos_hub_http_request_duration_seconds_count",
                &[
                    ("route", "/api/v1/live"),
                    ("method", "GET"),
                    ("status", "1xx")
                ]
            ) >= 1.0,
            "{text}"
        );
    }
    eprintln!("live: first event {latency:?} after the publish");

    // A client that does not keep up is closed with 4000; the others are not
    // held up meanwhile.
    let mut slow = live(&h, Role::Viewer).await;
    assert_eq!(
        next(&mut slow, Duration::from_secs(5)).await["type"],
        "hello"
    );
    let burst = hub::events::EVENTS * 4;
    for i in 0..burst {
        let _ = h.hub.events().send(hub::events::Event::Alert {
            rule: "flood".into(),
            site: "s".into(),
            node: "a".into(),
            state: "firing".into(),
            message: "x".repeat(2000),
            ts_ms: i as i64,
        });
    }
    let mut code = None;
    let mut frames = 0usize;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(f)))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => frames += 1,
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
    assert_eq!(code, Some(4000), "after {frames} frames");
    assert!(frames < burst, "{frames}");
    drop(slow);
    // The first socket lagged as well (it was not read): closed too. A new
    // one works.
    drop(ws);
    let mut again = live(&h, Role::Viewer).await;
    assert_eq!(
        next(&mut again, Duration::from_secs(5)).await["type"],
        "hello"
    );
    again.send(tungstenite::Message::Close(None)).await.unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while state.ws_clients.load(Relaxed) != 0 {
        assert!(Instant::now() < end, "clients counted down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

/// `/readyz` says 503 until the ingest is connected and subscribed, then
/// 200: the hub's external broker is unreachable at first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_the_ingest_subscribed() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), KEY_A).unwrap();
    let password = "hub-password-0123";
    std::fs::write(dir.path().join("hub.pass"), password).unwrap();
    // The broker's address: a relay that drops connections until opened.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let upstream = Arc::new(std::sync::Mutex::new(None::<u16>));
    let up = upstream.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            let Some(port) = *up.lock().unwrap() else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "schema_version = 1\n[storage]\npath = \"fleet.duckdb\"\n[broker]\nmode = \"external\"\n\
             url = \"mqtt://127.0.0.1:{relay_port}\"\nuser = \"apos-hub\"\npassword_file = \"hub.pass\"\n\
             [ingest]\ncommit_interval = \"50ms\"\n\
             [[node]]\nsite = \"s\"\nnode = \"a\"\nkey_file = \"a.key\"\n\
             [web]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(hub::config::load(&path).unwrap(), cancel.clone())
        .await
        .unwrap();
    let router = hub::web::router(h.web().unwrap().state.clone());
    let readyz = || async {
        let resp = router
            .clone()
            .oneshot(request(&Method::GET, "/readyz", None, false))
            .await
            .unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (code, serde_json::from_slice::<J>(&body).unwrap())
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = readyz().await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["store"], true, "{body}");
    assert_eq!(body["ingest"], false, "{body}");
    // The broker comes up.
    let (failed, _failures) = tokio::sync::mpsc::unbounded_channel();
    let ports = hub::broker::start(
        std::collections::HashMap::new(),
        password.into(),
        100_000,
        failed,
    )
    .unwrap();
    *upstream.lock().unwrap() = Some(ports.hub);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = readyz().await;
        if code == StatusCode::OK {
            assert_eq!(body["ready"], true);
            break;
        }
        assert!(Instant::now() < end, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), h.join()).await;
}

fn cli(args: &[&str], db: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apos-hub"))
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `apos-hub nodes` and `checksum` while the hub runs (through its control
/// socket: the hub holds the file), and the same answer from the file once
/// it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_checksum_work_while_the_hub_runs() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = hub::config::load(&hub_config(dir.path(), port, "", 100_000)).unwrap();
    let db = cfg.storage_path.clone();
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(h.wait_ready(Duration::from_secs(10)).await);
    let sock = h.control_socket().expect("a control socket").to_path_buf();
    assert_eq!(sock, hub::control::socket_path(&db));
    let (c, key) = node_a(port).await;
    for seq in 1..=3 {
        publish(&c, &key, Kind::Batch, &batch(seq)).await;
    }
    let checksum = ["checksum", "--site", "s", "--node", "a"];
    let end = Instant::now() + Duration::from_secs(20);
    let running_sum = loop {
        let d2 = db.clone();
        let (ok, out, err) = tokio::task::spawn_blocking(move || cli(&checksum, &d2))
            .await
            .unwrap();
        assert!(ok, "checksum while the hub runs: {err}");
        if out.starts_with("windows=3 ") {
            break out;
        }
        assert!(Instant::now() < end, "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let d2 = db.clone();
    let (ok, running, err) = tokio::task::spawn_blocking(move || cli(&["nodes"], &d2))
        .await
        .unwrap();
    assert!(ok, "nodes while the hub runs: {err}");
    assert!(running.starts_with("s/a\n"), "{running}");
    assert!(running.contains("3 stored, highest seq 3"), "{running}");
    cancel.cancel();
    h.join().await.unwrap();
    assert!(!sock.exists(), "the socket goes with the hub");
    let d2 = db.clone();
    let (ok, stopped, err) = tokio::task::spawn_blocking(move || cli(&["nodes"], &d2))
        .await
        .unwrap();
    assert!(ok, "nodes from the file: {err}");
    assert_eq!(stopped, running, "the same answer either way");
    let d2 = db.clone();
    let (ok, sum, _) = tokio::task::spawn_blocking(move || cli(&checksum, &d2))
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(sum, running_sum);

    // A hub that holds the file but answers nothing (its socket is gone):
    // a clear error, not a hang.
    let held = hub::store::Store::open(&db).unwrap();
    let d2 = db.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || cli(&["nodes"], &d2))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("no running hub answers") && err.contains("cannot be opened"),
        "{err}"
    );
    drop(held);
}
