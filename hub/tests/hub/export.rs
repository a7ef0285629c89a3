//! Exports (docs/export.md) through a started hub seeded like the route
//! sweep's: every kind as CSV read back by Python's `csv` module, Parquet
//! read back by PyPI `pyarrow` (an independent reader) with the same rows
//! and types as a direct DuckDB query, the partitioned tree (a .tar, read
//! with Python's `tarfile`), range edges (from inclusive, to exclusive),
//! filters, roles, problem+json for bad requests, the audit log, and the
//! CLI through the running hub and on the file.
//!
//! Parquet needs DuckDB's parquet extension built into the hub: without it
//! the Parquet tests fail (they are not skipped).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value as J, json};
use tower::ServiceExt as _;
use web::access::Role;

const BIN: &str = env!("CARGO_BIN_EXE_apos-hub");

/// The venv's Python with pyarrow (`APOS_PYTHON`, the repository's
/// `.venv`, or `python3`); `None` skips, except under `CI=true`.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let found = [
        std::env::var_os("APOS_PYTHON").map(PathBuf::from),
        Some(root.join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ]
    .into_iter()
    .flatten()
    .find(|p| {
        Command::new(p)
            .args(["-c", "import pyarrow, pyarrow.parquet, pyarrow.dataset"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with pyarrow: run scripts/test.sh (it builds .venv from tests/peers/requirements.txt)"
        );
        eprintln!("SKIPPED: no Python with pyarrow (run scripts/test.sh)");
    }
    found
}

fn py(python: &Path, script: &str, args: &[&Path]) -> J {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// CSV rows as dicts; every `*_time`/`ts` column must parse as an aware
/// datetime equal to its `*_ms` twin.
const READ_CSV: &str = r#"
import csv, json, sys, datetime
rows = list(csv.DictReader(open(sys.argv[1], newline='')))
for r in rows:
    for t, ms in [('start_time', 'start_ms'), ('end_time', None), ('ts', 'ts_ms'), ('origin_time', 'origin_ms')]:
        if t in r:
            d = datetime.datetime.fromisoformat(r[t])
            assert d.tzinfo is not None and d.utcoffset() == datetime.timedelta(0), r[t]
            if ms:
                assert round(d.timestamp() * 1000) == int(r[ms]), (r[t], r[ms])
print(json.dumps(rows))
"#;

/// A Parquet file: its schema (type names) and rows (timestamps as ms).
const READ_PARQUET: &str = r#"
import json, sys, pyarrow.parquet as pq, pyarrow as pa
t = pq.read_table(sys.argv[1])
types = {f.name: str(f.type) for f in t.schema}
rows = []
for r in t.to_pylist():
    for k, v in r.items():
        if hasattr(v, 'timestamp'):
            assert v.utcoffset().total_seconds() == 0
            r[k] = round(v.timestamp() * 1000)
    rows.append(r)
print(json.dumps({'types': types, 'rows': rows}))
"#;

/// A .tar of a hive tree: member names, and the rows pyarrow's dataset
/// reader finds in it (with the partition columns back).
const READ_TREE: &str = r#"
import json, sys, tarfile, tempfile, pyarrow.dataset as ds
d = tempfile.mkdtemp()
with tarfile.open(sys.argv[1]) as t:
    names = sorted(m.name for m in t.getmembers() if m.isfile())
    t.extractall(d)
fmt = 'parquet' if names and names[0].endswith('.parquet') else 'csv'
table = ds.dataset(d, format=fmt, partitioning='hive').to_table()
cols = table.column_names
print(json.dumps({'names': names, 'rows': table.num_rows, 'cols': cols,
                  'sites': sorted(set(map(str, table.column('site').to_pylist()))),
                  'days': sorted(set(map(str, table.column('day').to_pylist())))}))
"#;

struct Api {
    router: axum::Router,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<J>,
    ) -> (StatusCode, String, Vec<u8>) {
        self.call_as(&self.token, method, path, body).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<J>,
    ) -> (StatusCode, String, Vec<u8>) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(j) => {
                b = b.header("content-type", "application/json");
                HttpBody::from(j.to_string())
            }
            None => HttpBody::empty(),
        };
        let mut req = b.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40_001,
            ))));
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ct, bytes.to_vec())
    }

    /// Start an export, wait for it, download it into `dir`.
    async fn export(&self, body: J, dir: &Path) -> (J, PathBuf) {
        let (s, _, b) = self
            .call(Method::POST, "/api/v1/etl/exports", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
        let job: J = serde_json::from_slice(&b).unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        let end = Instant::now() + Duration::from_secs(120);
        let job = loop {
            let (s, _, b) = self
                .call(Method::GET, &format!("/api/v1/etl/exports/{id}"), None)
                .await;
            assert_eq!(s, StatusCode::OK);
            let j: J = serde_json::from_slice(&b).unwrap();
            match j["state"].as_str().unwrap() {
                "done" => break j,
                "failed" | "cancelled" => panic!("export {body} ended: {j}"),
                _ => {}
            }
            assert!(Instant::now() < end, "export still {j}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (s, ct, b) = self
            .call(
                Method::GET,
                &format!("/api/v1/etl/exports/{id}/download"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, job["media_type"].as_str().unwrap());
        assert_eq!(b.len() as u64, job["bytes"].as_u64().unwrap());
        let path = dir.join(job["file_name"].as_str().unwrap());
        std::fs::write(&path, b).unwrap();
        (job, path)
    }
}

/// (start_ms, tag, count, mean) of node a's windows, straight from DuckDB.
async fn direct_windows(
    st: &hub::web::St,
    from: i64,
    to: i64,
    tag: &str,
) -> Vec<(i64, String, u32, Option<f64>)> {
    let tag = tag.to_owned();
    st.read(move |s| {
        let mut q = s
            .connection()
            .prepare(
                "SELECT start_ms, tag, count, mean FROM aggregates
                 WHERE site = 's' AND node = 'a' AND tag = ? AND start_ms >= ? AND start_ms < ?
                 ORDER BY start_ms, width_ms",
            )
            .unwrap();
        let rows = q
            .query_map(duckdb::params![tag, from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        Ok(rows)
    })
    .await
    .unwrap()
}

async fn count(st: &hub::web::St, sql: &'static str) -> u64 {
    st.read(move |s| {
        Ok(s.connection()
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap() as u64)
    })
    .await
    .unwrap()
}

fn rfc(ms: i64) -> String {
    hub::etl::export::format_time(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_read_back_by_independent_readers() {
    crate::logs::init();
    let Some(python) = python() else { return };
    let h = crate::web::start().await;
    crate::web::seed(&h).await;
    let st = h.state();
    let api = Api {
        router: hub::web::router(st.clone()),
        token: h.token(Role::Analyst),
    };
    let out = tempfile::tempdir().unwrap();
    // The seeded 10 s windows of `temp`; the range cuts exactly on window
    // starts: the one at `from` is in, the one at `to` is out.
    let all = direct_windows(&st, i64::MIN, i64::MAX, "temp").await;
    let (from, to) = (all[100].0, all[400].0);
    let want = direct_windows(&st, from, to, "temp").await;
    assert!(want.len() >= 250, "{}", want.len());
    assert_eq!(want[0].0, from);
    assert!(want.iter().all(|w| w.0 < to));

    // CSV, filtered by site, node and tag.
    let (job, csv) = api
        .export(
            json!({"what": "windows", "from": rfc(from), "to": rfc(to), "sites": ["s"],
                   "nodes": ["a"], "tags": ["temp"], "format": "csv"}),
            out.path(),
        )
        .await;
    assert_eq!(job["rows"].as_u64().unwrap(), want.len() as u64);
    let rows = py(&python, READ_CSV, &[csv.as_path()]);
    let got: Vec<(i64, String, u32, Option<f64>)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(
                (r["site"].as_str(), r["node"].as_str()),
                (Some("s"), Some("a"))
            );
            assert_eq!(r["source"], "", "edge windows have no source");
            (
                r["start_ms"].as_str().unwrap().parse().unwrap(),
                r["tag"].as_str().unwrap().to_owned(),
                r["count"].as_str().unwrap().parse().unwrap(),
                r["mean"].as_str().unwrap().parse().ok(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // A zone other than UTC names the same instant.
    let shifted = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)))
            .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string()
    };
    let (job2, _) = api
        .export(
            json!({"what": "windows", "from": shifted(from), "to": shifted(to),
                   "nodes": ["a"], "tags": ["temp"], "format": "csv"}),
            out.path(),
        )
        .await;
    assert_eq!(job2["rows"], job["rows"]);

    // The other kinds, as CSV: every row the tables hold in the range.
    let day = 86_400_000;
    let now = hub::web::now_ms();
    for (what, sql) in [
        ("kpis", "SELECT count(*) FROM kpi_latest"),
        ("alarms", "SELECT count(*) FROM alarms"),
        (
            "forecasts",
            "SELECT sum(len(CAST(forecast AS DOUBLE[])))::BIGINT FROM forecasts",
        ),
    ] {
        let (job, file) = api
            .export(
                json!({"what": what, "from": rfc(now - day), "to": rfc(now + day), "format": "csv"}),
                out.path(),
            )
            .await;
        let rows = py(&python, READ_CSV, &[file.as_path()]);
        let n = count(&st, sql).await;
        assert!(n > 0, "{what}: seeded");
        assert_eq!(rows.as_array().unwrap().len() as u64, n, "{what}");
        assert_eq!(job["rows"].as_u64().unwrap(), n, "{what}");
    }

    // Partitioned CSV: a .tar of site=…/day=… holding every row.
    let (job, tar) = api
        .export(
            json!({"what": "windows", "from": rfc(now - day), "to": rfc(now + day),
                   "format": "csv", "partition": true}),
            out.path(),
        )
        .await;
    let tree = py(&python, READ_TREE, &[tar.as_path()]);
    let total = count(&st, "SELECT count(*) FROM aggregates").await;
    assert_eq!(tree["rows"].as_u64().unwrap(), total);
    assert_eq!(job["rows"].as_u64().unwrap(), total);
    assert_eq!(tree["sites"], json!(["s"]));
    for n in tree["names"].as_array().unwrap() {
        let n = n.as_str().unwrap();
        assert!(n.starts_with("site=s/day=20") && n.ends_with(".csv"), "{n}");
    }

    // Parquet: the same rows and types as DuckDB has them.
    let (job, pq) = api
        .export(
            json!({"what": "windows", "from": rfc(from), "to": rfc(to), "nodes": ["a"],
                   "tags": ["temp"], "format": "parquet"}),
            out.path(),
        )
        .await;
    assert_eq!(job["rows"].as_u64().unwrap(), want.len() as u64);
    let t = py(&python, READ_PARQUET, &[pq.as_path()]);
    let types = &t["types"];
    for (col, ty) in [
        ("site", "string"),
        ("tag", "string"),
        ("width_ms", "int32"),
        ("start_ms", "int64"),
        ("start_time", "timestamp[us, tz=UTC]"),
        ("end_time", "timestamp[us, tz=UTC]"),
        ("count", "uint32"),
        ("mean", "double"),
        ("source", "string"),
        ("seq", "uint64"),
    ] {
        assert_eq!(types[col], ty, "{col}: {types}");
    }
    let got: Vec<(i64, String, u32, Option<f64>)> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["start_time"], r["start_ms"]);
            assert_eq!(
                r["end_time"].as_i64().unwrap(),
                r["start_ms"].as_i64().unwrap() + r["width_ms"].as_i64().unwrap()
            );
            (
                r["start_ms"].as_i64().unwrap(),
                r["tag"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap() as u32,
                r["mean"].as_f64(),
            )
        })
        .collect();
    // The same rows; DuckDB's parallel Parquet writer keeps no order
    // between windows that share a start (the 10 s and 60 s ones).
    let key = |v: &mut Vec<(i64, String, u32, Option<f64>)>| {
        v.sort_by(|a, b| {
            (a.0, &a.1, a.2)
                .cmp(&(b.0, &b.1, b.2))
                .then(a.3.unwrap_or(f64::NAN).total_cmp(&b.3.unwrap_or(f64::NAN)))
        })
    };
    let (mut got, mut want) = (got, want.clone());
    key(&mut got);
    key(&mut want);
    // serde_json (without float_roundtrip) may miss a double by one ulp
    // when it reads Python's shortest repr: compare means to 1e-12.
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, &g.1, g.2), (w.0, &w.1, w.2));
        match (g.3, w.3) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{g:?} {w:?}"),
            (a, b) => assert_eq!(a, b),
        }
    }

    // Partitioned Parquet, read as a hive dataset.
    let (_, tar) = api
        .export(
            json!({"what": "windows", "from": rfc(now - day), "to": rfc(now + day),
                   "format": "parquet", "partition": true}),
            out.path(),
        )
        .await;
    let tree = py(&python, READ_TREE, &[tar.as_path()]);
    assert_eq!(tree["rows"].as_u64().unwrap(), total);

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bad_requests_audit_and_the_cli() {
    crate::logs::init();
    let h = crate::web::start().await;
    crate::web::seed(&h).await;
    let st = h.state();
    let api = Api {
        router: hub::web::router(st.clone()),
        token: h.token(Role::Analyst),
    };
    let now = hub::web::now_ms();
    let good = json!({"what": "alarms", "from": rfc(now - 86_400_000), "to": rfc(now + 60_000), "format": "csv"});

    // A viewer may neither start nor see exports.
    let viewer = h.token(Role::Viewer);
    for (m, p, b) in [
        (Method::POST, "/api/v1/etl/exports", Some(good.clone())),
        (Method::GET, "/api/v1/etl/exports", None),
    ] {
        let (s, ct, _) = api.call_as(&viewer, m, p, b).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(ct.starts_with("application/problem+json"), "{ct}");
    }

    // Bad requests: problem+json saying what is wrong.
    let mut no_zone = good.clone();
    no_zone["from"] = json!("2026-12-01T00:00:00");
    let mut empty = good.clone();
    empty["to"] = good["from"].clone();
    let mut bad_what = good.clone();
    bad_what["what"] = json!("samples");
    let mut extra = good.clone();
    extra["limit"] = json!(5);
    let mut ctl = good.clone();
    ctl["tags"] = json!(["a\u{1}b"]);
    for (body, says) in [
        (no_zone, "zone"),
        (empty, "empty"),
        (bad_what, "samples"),
        (extra, "limit"),
        (ctl, "control"),
    ] {
        let (s, ct, b) = api
            .call(Method::POST, "/api/v1/etl/exports", Some(body.clone()))
            .await;
        let text = String::from_utf8_lossy(&b);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(ct.starts_with("application/problem+json"), "{ct}");
        assert!(text.contains(says), "{body}: {text}");
    }
    for p in [
        "/api/v1/etl/exports/nosuchjob0000000",
        "/api/v1/etl/exports/..%2F..%2Fetc/download",
    ] {
        let (s, ct, _) = api.call(Method::GET, p, None).await;
        assert!(s == StatusCode::NOT_FOUND, "{p}: {s}");
        assert!(ct.starts_with("application/problem+json"), "{ct}");
    }

    // An export is audited: who, what and the range.
    let out = tempfile::tempdir().unwrap();
    let (job, _) = api.export(good.clone(), out.path()).await;
    let core = st.core.clone();
    let entries = tokio::task::spawn_blocking(move || core.audit.list(None, 100).unwrap())
        .await
        .unwrap();
    let e = entries
        .iter()
        .find(|e| e.action == "export" && e.target == job["id"].as_str().unwrap())
        .expect("the export is in the audit log");
    assert_eq!(e.actor, "u-analyst");
    assert!(e.detail.starts_with("alarms from "), "{}", e.detail);
    assert!(entries.iter().any(|e| e.action == "export_download"));
    // Listed, then removed.
    let (_, _, b) = api.call(Method::GET, "/api/v1/etl/exports", None).await;
    let list: J = serde_json::from_slice(&b).unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job["id"])
    );
    let p = format!("/api/v1/etl/exports/{}", job["id"].as_str().unwrap());
    assert_eq!(
        api.call(Method::DELETE, &p, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::GET, &p, None).await.0,
        StatusCode::NOT_FOUND
    );

    // The CLI through the running hub (it holds the database's lock).
    let db = st.config.storage_path.clone();
    let cli = |out: &Path| {
        Command::new(BIN)
            .arg("export")
            .arg("--db")
            .arg(&db)
            .args([
                "--what",
                "alarms",
                "--from",
                &rfc(now - 86_400_000),
                "--to",
                &rfc(now + 60_000),
            ])
            .args(["--site", "s", "--node", "b", "--format", "csv", "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let f1 = out.path().join("alarms-hub.csv");
    let o = cli(&f1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("through the running hub"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("exported 3 rows"));
    let text = std::fs::read_to_string(&f1).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("s,b,")),
        "{text}"
    );
    // The hub's copy is gone (the CLI took it).
    let exports = hub::etl::export::jobs::dir(&db);
    let left: Vec<_> = std::fs::read_dir(&exports)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|p| !p.join("job.json").exists() || {
            let j: J = serde_json::from_slice(&std::fs::read(p.join("job.json")).unwrap()).unwrap();
            j["by"] != "cli"
        }),
        "{left:?}"
    );

    // With no hub running the CLI opens the file itself: the same rows.
    // (Every read connection must be gone: DuckDB holds the file's lock
    // while one is open.)
    drop(api);
    drop(st);
    h.cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), h.hub.join()).await;
    let f2 = out.path().join("alarms-file.csv");
    let o = cli(&f2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("through the running hub"), "{err}");
    assert_eq!(std::fs::read_to_string(&f2).unwrap(), text);
    drop(h.dir);
}
