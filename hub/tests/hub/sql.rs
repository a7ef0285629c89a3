//! The analysts' SQL endpoint through a started hub (docs/sql.md): a
//! query answers with the windows the node sent; every way out of the
//! sandbox we know of (files, network, extensions, writes, settings) is
//! refused and writes nothing; a runaway query is stopped at the timeout
//! and a memory-hungry one at the memory limit, the hub answering on; a
//! viewer is refused; no worker process outlives its query; the CLI runs
//! the same worker against the file once the hub is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use protocol::v1::Message;
use protocol::{Kind, NodeKey, Topic};
use rumqttc::QoS;
use serde_json::{Value as J, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use web::access::Role;

use crate::support::{KEY_A, batch, connect, free_port, hub_config};

const BIN: &str = env!("CARGO_BIN_EXE_apos-hub");

async fn start_hub(dir: &Path, sql: &str) -> (hub::Hub, CancellationToken, u16) {
    let port = free_port();
    let path = hub_config(dir, port, "", 1_000_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:0\"\n[sql]\n{sql}\n"
    ));
    std::fs::write(&path, text).unwrap();
    let mut cfg = hub::config::load(&path).unwrap();
    cfg.sql.worker = Some(BIN.into());
    let cancel = CancellationToken::new();
    let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(hub.wait_ready(Duration::from_secs(15)).await, "hub ready");
    (hub, cancel, port)
}

/// Publish batches `seqs` as node s.a, signed.
async fn send(mqtt_port: u16, seqs: std::ops::RangeInclusive<u64>) {
    let c = connect(mqtt_port, "s.a", Some(("s.a", "pa")))
        .await
        .unwrap();
    let key = NodeKey::new(KEY_A.as_bytes()).unwrap();
    let topic = Topic::new("s", "a", Kind::Batch).unwrap();
    for seq in seqs {
        let m: Message = batch(seq);
        let bytes = protocol::envelope::seal(&topic, &m, &key).unwrap();
        c.publish(topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = c.disconnect().await;
}

/// POST a query as a user of `role`, with the session's CSRF header.
async fn post(hub: &hub::Hub, role: Role, query: &str) -> (StatusCode, J) {
    let state = hub.web().unwrap().state.clone();
    let s = state.core.sessions.create("ann", role, Instant::now());
    let mut req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/analysis/sql")
        .header("host", "127.0.0.1")
        .header("cookie", format!("apos_session={}", s.token))
        .header("x-csrf-token", &s.csrf)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::to_vec(&json!({ "query": query })).unwrap(),
        ))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    let resp = hub::web::router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(J::Null))
}

/// Worker processes of the hub in `dir` (their `--worker-db` is in it).
fn workers(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("--worker") && cmd.contains(&needle) {
            // A zombie still has its command line until it is reaped.
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_query_a_snapshot_and_every_escape_is_refused() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let (hub, cancel, mqtt) = start_hub(
        dir.path(),
        "timeout = \"3s\"\nmemory_limit = \"64MiB\"\nthreads = 1\nmax_rows = 5\n\
         snapshot_refresh = \"1s\"\nconcurrency = 1",
    )
    .await;
    send(mqtt, 1..=3).await;
    let q = "SELECT site, node, count(*) AS windows, sum(mean) AS total, \
             min(start_ms) AS first FROM aggregates GROUP BY ALL";
    // The snapshot may predate the commit: at most a refresh later it
    // has the three windows.
    let end = Instant::now() + Duration::from_secs(20);
    let a = loop {
        let (st, a) = post(&hub, Role::Analyst, q).await;
        assert_eq!(st, StatusCode::OK, "{a}");
        if a["rows"] == json!([["s", "a", 3, 3.0, 1_800_000_001_000i64]]) {
            break a;
        }
        assert!(Instant::now() < end, "never saw the three windows: {a}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let types: Vec<&str> = a["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["VARCHAR", "VARCHAR", "BIGINT", "DOUBLE", "BIGINT"]);
    assert_eq!(a["columns"][2]["name"], "windows");
    assert_eq!(
        (&a["truncated"], &a["row_count"]),
        (&json!(false), &json!(1))
    );
    let as_of = a["as_of_ms"].as_i64().unwrap();
    let now = hub::web::now_ms();
    assert!(
        as_of <= now && now - as_of < 60_000,
        "as_of {as_of}, now {now}"
    );
    assert!(workers(dir.path()).is_empty(), "{:?}", workers(dir.path()));

    // The row cap: 5 of 10 rows, flagged.
    let (st, a) = post(&hub, Role::Analyst, "SELECT range AS i FROM range(10)").await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["rows"], json!([[0], [1], [2], [3], [4]]));
    assert_eq!(
        (&a["truncated"], &a["row_count"]),
        (&json!(true), &json!(5))
    );

    // Viewers may not; admins may.
    let (st, _) = post(&hub, Role::Viewer, "SELECT 1").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, a) = post(&hub, Role::Admin, "SELECT 1 AS one").await;
    assert_eq!((st, &a["rows"]), (StatusCode::OK, &json!([[1]])));

    // Every query is in the audit log with its text.
    let state = hub.web().unwrap().state.clone();
    let log = state.core.audit.list(None, 1000).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "sql_query" && e.detail == q && e.actor == "ann"),
        "{log:#?}"
    );

    // The ways out. Each must be refused by DuckDB (422) and leave no file.
    let d = dir.path().display().to_string();
    let before = files_under(dir.path());
    let escapes = [
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        "SELECT * FROM read_csv_auto('/etc/passwd')".to_owned(),
        "SELECT * FROM '/etc/passwd'".to_owned(),
        "SELECT * FROM read_text('/etc/passwd')".to_owned(),
        "SELECT * FROM read_blob('/etc/hostname')".to_owned(),
        "SELECT * FROM glob('/etc/*')".to_owned(),
        format!("SELECT * FROM read_text('{d}/hub.toml')"),
        format!("SELECT * FROM read_parquet('{d}/fleet.duckdb')"),
        format!("COPY (SELECT 1) TO '{d}/copied.csv'"),
        format!("COPY aggregates TO '{d}/copied.parquet' (FORMAT parquet)"),
        "COPY aggregates TO '/tmp/apos-sql-escape.csv'".to_owned(),
        format!("EXPORT DATABASE '{d}/exported'"),
        format!("ATTACH '{d}/attached.duckdb' AS x"),
        format!("ATTACH '{d}/fleet.duckdb' AS live"),
        "ATTACH ':memory:' AS m".to_owned(),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
        "SELECT * FROM read_csv('https://example.invalid/x.csv')".to_owned(),
        "CREATE TABLE x (i INTEGER)".to_owned(),
        "CREATE VIEW v AS SELECT 1".to_owned(),
        "INSERT INTO aggregates SELECT * FROM aggregates".to_owned(),
        "UPDATE aggregates SET mean = 0".to_owned(),
        "DELETE FROM aggregates".to_owned(),
        "DROP TABLE aggregates".to_owned(),
        "SET enable_external_access = true".to_owned(),
        "SET lock_configuration = false".to_owned(),
        "RESET lock_configuration".to_owned(),
        "SET memory_limit = '100GB'".to_owned(),
        "SET threads = 64".to_owned(),
        "SET temp_directory = '/tmp'".to_owned(),
        "SET allow_unsigned_extensions = true".to_owned(),
        "PRAGMA memory_limit = '100GB'".to_owned(),
        "PRAGMA threads = 64".to_owned(),
        "PRAGMA enable_profiling".to_owned(),
        "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')".to_owned(),
    ];
    for e in &escapes {
        let (st, p) = post(&hub, Role::Analyst, e).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}: {p}");
        assert!(!p["detail"].as_str().unwrap_or("").is_empty(), "{e}: {p}");
        assert!(
            workers(dir.path()).is_empty(),
            "{e}: {:?}",
            workers(dir.path())
        );
    }
    // The environment is empty: getenv (if DuckDB has it) has nothing.
    let (st, p) = post(&hub, Role::Analyst, "SELECT getenv('HOME') AS h").await;
    assert!(
        st == StatusCode::UNPROCESSABLE_ENTITY
            || (st == StatusCode::OK && p["rows"][0][0].is_null()),
        "{st}: {p}"
    );
    assert!(!Path::new("/tmp/apos-sql-escape.csv").exists());
    // Nothing was written beside the database; the data is intact.
    let after: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("fleet.duckdb.sql"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|f| !f.starts_with("fleet.duckdb.sql"))
        .collect();
    assert_eq!(after, before);
    let windows = state.reads.read(|s| s.windows("s", "a")).unwrap();
    assert_eq!(windows, 3);
    let (st, a) = post(&hub, Role::Analyst, "SELECT count(*) AS n FROM aggregates").await;
    assert_eq!((st, &a["rows"]), (StatusCode::OK, &json!([[3]])), "{a}");

    // A runaway query is stopped at the timeout; meanwhile a second query
    // is refused (concurrency 1); afterwards the hub answers at once.
    let started = Instant::now();
    let long = {
        let hub_ref = &hub;
        async move {
            post(
                hub_ref,
                Role::Analyst,
                "SELECT count(*) FROM range(1000000) a CROSS JOIN range(1000000) b",
            )
            .await
        }
    };
    let busy = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        post(&hub, Role::Analyst, "SELECT 1").await
    };
    let ((st, p), (busy_st, busy_p)) = tokio::join!(long, busy);
    let took = started.elapsed();
    assert_eq!(st, StatusCode::REQUEST_TIMEOUT, "{p}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "stopped after {took:?}"
    );
    assert_eq!(busy_st, StatusCode::TOO_MANY_REQUESTS, "{busy_p}");
    assert!(workers(dir.path()).is_empty(), "{:?}", workers(dir.path()));
    let t = Instant::now();
    let (st, a) = post(&hub, Role::Analyst, "SELECT 42 AS answer").await;
    assert_eq!((st, &a["rows"]), (StatusCode::OK, &json!([[42]])), "{a}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A query needing far more than 64 MiB hits the memory limit.
    let (st, p) = post(
        &hub,
        Role::Analyst,
        "SELECT count(*) FROM (SELECT DISTINCT range::VARCHAR || 'x' FROM range(20000000))",
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("memory"), "{p}");
    assert!(workers(dir.path()).is_empty(), "{:?}", workers(dir.path()));
    // A syntax error is a clear 422 too.
    let (st, p) = post(&hub, Role::Analyst, "SELEC 1").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("syntax"), "{p}");

    // The CLI asks the running hub (control socket): same sandbox.
    let config = dir.path().join("hub.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["sql", "--json", "--config"])
            .arg(config)
            .arg("SELECT count(*) AS n FROM aggregates")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: J = serde_json::from_str(&text).unwrap();
    assert_eq!(a["rows"], json!([[3]]));
    assert!(workers(dir.path()).is_empty(), "{:?}", workers(dir.path()));

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.join()).await;
    assert!(workers(dir.path()).is_empty(), "{:?}", workers(dir.path()));

    // With no hub running, the CLI runs the same worker on the file. This
    // test process still holds a DuckDB instance of the stopped in-process
    // hub (one process per file), so the CLI gets a copy of the hub's
    // directory: the database, its WAL, the config and the key files.
    let cli_dir = dir.path().join("cli");
    std::fs::create_dir(&cli_dir).unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), cli_dir.join(e.file_name())).unwrap();
        }
    }
    let out = std::process::Command::new(BIN)
        .args(["sql", "--json", "--config"])
        .arg(cli_dir.join("hub.toml"))
        .arg("SELECT count(*) AS n FROM aggregates")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: J = serde_json::from_str(&text).unwrap();
    assert_eq!(a["rows"], json!([[3]]));
    let out = std::process::Command::new(BIN)
        .args(["sql", "--config"])
        .arg(cli_dir.join("hub.toml"))
        .arg(format!("COPY aggregates TO '{d}/cli.csv'"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.path().join("cli.csv").exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disabled") || err.contains("ermission"),
        "{err}"
    );
}
