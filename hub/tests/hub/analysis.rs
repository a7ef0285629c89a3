//! The analysis API over real HTTP against a running hub: the Grafana
//! routes answer exactly the shape of the documented examples
//! (docs/grafana/example-*.json, which the dashboard's columns also name),
//! and the chart, statistics, tag and KPI routes give the known answers of
//! seeded data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use protocol::v1::{Batch, Body, KpiQuality, KpiResult, Window, WindowSet};
use serde_json::Value as J;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use web::access::Role;

use crate::support::{free_port, hub_config};

const H: i64 = 3_600_000;
/// Monday 2027-01-04 00:00 UTC.
const T0: i64 = 1_799_020_800_000;

fn docs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana")
}

fn read_json(name: &str) -> J {
    serde_json::from_str(&std::fs::read_to_string(docs().join(name)).unwrap()).unwrap()
}

/// GET over a fresh HTTP/1.1 connection: (status, body as JSON).
async fn get(base: &str, path: &str, cookie: Option<&str>) -> (u16, J) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: apos_session={c}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(J::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(len.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn incoming(seq: u64, body: Body) -> hub::store::Incoming {
    hub::store::Incoming {
        site: "s".into(),
        node: "a".into(),
        raw: bytes::Bytes::new(),
        received_ms: T0,
        batch: Batch {
            seq,
            created_ms: T0,
            body,
        },
    }
}

fn kpi(start_ms: i64, value: Option<f64>, coverage: f64) -> KpiResult {
    KpiResult {
        kpi: "line.oee".into(),
        window: "day".into(),
        label: format!("day {}", (start_ms - T0) / (24 * H)),
        start_ms,
        end_ms: start_ms + 24 * H,
        until_ms: start_ms + 24 * H,
        closed: true,
        computed_ms: start_ms + 24 * H,
        coverage,
        quality: KpiQuality::Good,
        values: vec![("oee".into(), value)],
        unit: None,
    }
}

/// Two hours of 1 min windows of `temp` (a spike at 00:37, a window
/// without good samples at 01:10) and `flow`, and 14 daily OEE values.
fn seed(db: &Path) {
    let mut s = hub::store::Store::open(db).unwrap();
    let mut items = Vec::new();
    for i in 0..120i64 {
        let v = 20.0 + i as f64 / 10.0;
        let temp = match i {
            37 => (v - 1.0, 500.0, v),
            70 => (f64::NAN, f64::NAN, f64::NAN),
            _ => (v - 1.0, v + 1.0, v),
        };
        let w = |tag: &str, (min, max, mean): (f64, f64, f64), good| Window {
            tag: tag.into(),
            count: 6,
            good,
            min,
            max,
            mean,
            twa: mean,
            last: mean,
        };
        items.push(incoming(
            i as u64 + 1,
            Body::Aggregates(vec![WindowSet {
                width_ms: 60_000,
                start_ms: T0 + i * 60_000,
                windows: vec![
                    w("temp", temp, if i == 70 { 0 } else { 6 }),
                    w("flow", (1.0, 3.0, 2.0), 6),
                ],
            }]),
        ));
    }
    let days = (0..14)
        .map(|d| {
            kpi(
                T0 - 7 * 24 * H + d * 24 * H,
                (d != 3).then_some(0.5 + d as f64 / 100.0),
                0.9,
            )
        })
        .collect();
    items.push(incoming(1000, Body::Kpis(days)));
    s.ingest(&items).unwrap();
}

/// Every key of every row, and the JSON kinds each key takes.
fn shape(rows: &J) -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut out: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for r in rows.as_array().unwrap() {
        for (k, v) in r.as_object().unwrap() {
            let kind = match v {
                J::Null => "null",
                J::Number(n) if n.is_i64() || n.is_u64() => "integer",
                J::Number(_) => "number",
                J::String(_) => "string",
                _ => "other",
            };
            out.entry(k.clone()).or_default().insert(kind);
        }
    }
    out
}

/// The live rows have exactly the example's keys in every row, and each
/// key takes only kinds the example shows (an integer where the example
/// has 1.0 is a number too).
fn assert_same_shape(example: &J, live: &J, what: &str) {
    let want = shape(example);
    let keys: BTreeSet<&String> = want.keys().collect();
    for r in live.as_array().unwrap() {
        let got: BTreeSet<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(got, keys, "{what}: row {r}");
    }
    for (k, kinds) in shape(live) {
        for kind in kinds {
            let ok = want[&k].contains(kind) || (kind == "integer" && want[&k].contains("number"));
            assert!(
                ok,
                "{what}: {k} is {kind} live, the example has {:?}",
                want[&k]
            );
        }
    }
}

/// The selectors the dashboard's query on `route` reads.
fn dashboard_columns(dash: &J, route: &str) -> BTreeSet<String> {
    let panels = dash["panels"].as_array().unwrap();
    let t = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .find(|t| t["url"].as_str().unwrap().starts_with(route))
        .unwrap();
    t["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["selector"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_routes_answer_known_values_and_the_grafana_shape() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let path = hub_config(dir.path(), free_port(), "", 1_000_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\nrate_limit = 100000\nrate_burst = 100000\n");
    std::fs::write(&path, text).unwrap();
    let cfg = hub::config::load(&path).unwrap();
    seed(&cfg.storage_path);
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    let base = h.web_url().unwrap().trim_end_matches('/').to_owned();
    let session =
        h.web()
            .unwrap()
            .state
            .core
            .sessions
            .create("analyst", Role::Viewer, Instant::now());
    let c = Some(session.token.as_str());
    let range = format!("from={T0}&to={}", T0 + 2 * H);

    // Grafana: the documented shapes, which the dashboard reads.
    let series_path = "/api/v1/analysis/grafana/series";
    let kpi_path = "/api/v1/analysis/grafana/kpi";
    let (st, rows) = get(
        &base,
        &format!("{series_path}?site=s&node=a&tag=temp&{range}&step=600000"),
        c,
    )
    .await;
    assert_eq!(st, 200, "{rows}");
    let example = read_json("example-series.json");
    assert_same_shape(&example, &rows, "grafana/series");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 12, "10 min buckets over 2 h");
    assert_eq!(rows[3]["time"], T0 + 30 * 60_000);
    assert_eq!(
        rows[3]["max"], 500.0,
        "the spike at 00:37 stays in its bucket's max"
    );
    assert!(rows[7]["min"].as_f64().unwrap() < rows[7]["max"].as_f64().unwrap());
    let (st, rows) = get(
        &base,
        &format!("{series_path}?site=s&node=a&tag=temp&{range}&step=60000"),
        c,
    )
    .await;
    assert_eq!(st, 200);
    assert_same_shape(&example, &rows, "grafana/series, 1 min");
    assert!(
        rows[70]["value"].is_null() && rows[70]["min"].is_null(),
        "{}",
        rows[70]
    );
    let kpi_range = format!("from={}&to={}", T0 - 7 * 24 * H, T0 + 7 * 24 * H);
    let (st, krows) = get(
        &base,
        &format!("{kpi_path}?site=s&node=a&kpi=line.oee&window=day&{kpi_range}"),
        c,
    )
    .await;
    assert_eq!(st, 200, "{krows}");
    assert_same_shape(&read_json("example-kpi.json"), &krows, "grafana/kpi");
    assert_eq!(krows.as_array().unwrap().len(), 14);
    assert!(krows[3]["value"].is_null());
    let dash = read_json("apos-dashboard.json");
    for (route, ex) in [
        (series_path, "example-series.json"),
        (kpi_path, "example-kpi.json"),
    ] {
        let keys: BTreeSet<String> = read_json(ex)[0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(dashboard_columns(&dash, route), keys, "{route}");
    }
    assert_eq!(dash["panels"][0]["datasource"]["uid"], "apos-hub");
    assert!(
        std::fs::read_to_string(docs().join("datasource.yaml"))
            .unwrap()
            .contains("uid: apos-hub")
    );

    // The chart route: two tags in one request, named in full.
    let (st, a) = get(
        &base,
        &format!("/api/v1/analysis/series?tag=s/a/temp&tag=s/a/flow&{range}&points=12"),
        c,
    )
    .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(
        (a["bucket_ms"].as_i64(), a["source_width_ms"].as_i64()),
        (Some(600_000), Some(60_000))
    );
    let s = &a["series"];
    assert_eq!(
        (s[0]["tag"].as_str(), s[1]["tag"].as_str()),
        (Some("temp"), Some("flow"))
    );
    assert_eq!(s[0]["t"].as_array().unwrap().len(), 12);
    assert_eq!(s[1]["mean"][0], 2.0);
    assert_eq!(s[1]["good_share"][0], 1.0);
    assert_eq!(s[0]["max"][3], 500.0);
    // Bucket 7 (01:10–01:20) holds the window without good samples.
    assert!((s[0]["good_share"][7].as_f64().unwrap() - 54.0 / 60.0).abs() < 1e-12);
    let (st, p) = get(
        &base,
        &format!("/api/v1/analysis/series?site=s&node=a&tag=temp&{range}&points=5"),
        c,
    )
    .await;
    assert_eq!((st, p["status"].as_i64()), (400, Some(400)), "{p}");

    // Statistics, tags, the KPI summary, KPI history pages and periods.
    let (st, x) = get(
        &base,
        &format!("/api/v1/analysis/stats?site=s&node=a&tag=flow&{range}"),
        c,
    )
    .await;
    assert_eq!(st, 200, "{x}");
    assert_eq!(
        (x["count"].as_i64(), x["min"].as_f64(), x["max"].as_f64()),
        (Some(720), Some(1.0), Some(3.0))
    );
    assert_eq!(
        (x["mean"].as_f64(), x["p50"].as_f64(), x["stddev"].as_f64()),
        (Some(2.0), Some(2.0), Some(0.0))
    );
    assert_eq!(
        (x["first_ms"].as_i64(), x["last_ms"].as_i64()),
        (Some(T0), Some(T0 + 2 * H))
    );
    let (_, t) = get(&base, "/api/v1/analysis/tags?site=s&node=a", c).await;
    let names: Vec<&str> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["flow", "temp"]);
    assert_eq!(t["items"][0]["widths_ms"], serde_json::json!([60000]));
    assert_eq!(t["items"][0]["windows"], 120);
    let (_, k) = get(&base, "/api/v1/analysis/kpis", c).await;
    assert_eq!(k["items"].as_array().unwrap().len(), 1, "{k}");
    assert_eq!(k["items"][0]["start_ms"], T0 + 6 * 24 * H);
    assert_eq!(k["items"][0]["value"], 0.5 + 13.0 / 100.0);
    let hist = "/api/v1/analysis/kpis/history?site=s&node=a&kpi=line.oee&window=day";
    let (mut cursor, mut seen) = (String::new(), Vec::new());
    for _ in 0..10 {
        let (st, page) = get(&base, &format!("{hist}&{kpi_range}&limit=4{cursor}"), c).await;
        assert_eq!(st, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["start_ms"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..14)
            .map(|d| T0 - 7 * 24 * H + d * 24 * H)
            .collect::<Vec<_>>()
    );
    // This week against last week: two calls.
    let week = |from: i64| format!("{hist}&from={from}&to={}", from + 7 * 24 * H);
    let (_, this) = get(&base, &week(T0), c).await;
    let (_, last) = get(&base, &week(T0 - 7 * 24 * H), c).await;
    assert_eq!(
        (
            this["items"].as_array().unwrap().len(),
            last["items"].as_array().unwrap().len()
        ),
        (7, 7)
    );
    assert!(last["items"][3]["value"].is_null());

    // Without a session: 401.
    let (st, _) = get(
        &base,
        &format!("{series_path}?site=s&node=a&tag=temp"),
        None,
    )
    .await;
    assert_eq!(st, 401);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), h.join()).await;
}
