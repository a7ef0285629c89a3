//! The forecasting API end to end: a hub with `[web]`, windows, forecasts
//! and forecast scores published by a node through the real broker and
//! ingest, then every forecasting route over HTTP with a logged-in viewer,
//! against answers known from the crafted data.

use std::time::{Duration, Instant};

use ::web::access::Role;
use protocol::v1::{Batch, Body, Forecast, ForecastQuality, Message, Window, WindowSet};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{KEY_A, connect, free_port, hub_config};

const MIN: i64 = 60_000;
/// The error of each lead of every forecast.
const ERR: [f64; 3] = [1.0, -2.0, 0.5];

/// One HTTP/1.1 exchange (Connection: close): status, head, body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut rest = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest.drain(..eol + 2 + n + 2);
        }
        rest = out;
    }
    (head[9..12].parse().unwrap(), head, rest)
}

async fn get(addr: std::net::SocketAddr, path: &str, cookie: Option<&str>) -> (u16, Value) {
    let (code, head, body) = http(addr, "GET", path, cookie, None).await;
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {head}\n{}", String::from_utf8_lossy(&body)));
    (code, v)
}

async fn login(addr: std::net::SocketAddr, user: &str, password: &str) -> String {
    let (code, head, body) = http(
        addr,
        "POST",
        "/api/v1/session",
        None,
        Some(&json!({"user": user, "password": password})),
    )
    .await;
    assert_eq!(code, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    head.lines()
        .find_map(|l| {
            let l = l
                .strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))?;
            Some(l.split(';').next()?.to_string())
        })
        .unwrap()
}

/// Minute windows of "T" valued by their minute number from `t0`; four
/// forecasts, one a minute, with errors [`ERR`]; the edge's scores of them
/// with the explanation on the last.
fn batches(t0: i64) -> Vec<Message> {
    let mut bodies = vec![Body::Aggregates(
        (0..30)
            .map(|i| WindowSet {
                width_ms: MIN as u32,
                start_ms: t0 + i * MIN,
                windows: vec![Window {
                    tag: "T".into(),
                    count: 6,
                    good: 6,
                    min: i as f64,
                    max: i as f64,
                    mean: i as f64,
                    twa: i as f64,
                    last: i as f64,
                }],
            })
            .collect(),
    )];
    for k in 0..4 {
        bodies.push(Body::Forecasts(vec![Forecast {
            model: "m".into(),
            version: "3".into(),
            tag: "T".into(),
            origin_ms: t0 + k * MIN,
            step_ms: MIN,
            made_ms: t0 + k * MIN - 1,
            values: (0..3).map(|j| (k + j) as f64 + ERR[j as usize]).collect(),
        }]));
    }
    bodies.push(Body::ForecastQuality(
        (0..4)
            .map(|k| ForecastQuality {
                model: "m".into(),
                version: "3".into(),
                tag: "T".into(),
                origin_ms: t0 + k * MIN,
                scored_ms: t0 + 10 * MIN,
                step_ms: MIN,
                horizon: 3,
                mae: Some(1.0 + k as f64),
                mape: None,
                n: 3,
                explanation: if k == 3 {
                    vec![("T[t-1]".into(), 0.75), ("hour".into(), -0.25)]
                } else {
                    vec![]
                },
            })
            .collect(),
    ));
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            Message::Batch(Batch {
                seq: i as u64 + 1,
                created_ms: t0,
                body,
            })
        })
        .collect()
}

fn close(v: &Value, x: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_against_actuals_and_accuracy_over_http() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg_path = hub_config(dir.path(), port, "", 100_000);
    let mut text = std::fs::read_to_string(&cfg_path).unwrap();
    text.push_str("[web]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&cfg_path, text).unwrap();
    let cfg = hub::config::load(&cfg_path).unwrap();
    let users_file = cfg.web.as_ref().unwrap().users_file.clone();
    let cheap = ::web::users::HashParams::new(16, 1, 1, None).unwrap();
    let users = ::web::users::UserStore::open_with_params(&users_file, cheap).unwrap();
    users.add("vera", Role::Viewer, "viewer-password").unwrap();
    drop(users);
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(h.wait_ready(Duration::from_secs(10)).await);
    let addr = h.web().unwrap().local_addr;
    let viewer = login(addr, "vera", "viewer-password").await;
    let cookie = Some(viewer.as_str());

    let (code, v) = get(addr, "/api/v1/forecasting/models", cookie).await;
    assert_eq!((code, v), (200, json!({"items": []})));

    let t0 = (hub::web::now_ms() - 3_600_000) / MIN * MIN;
    let key = NodeKey::new(KEY_A.as_bytes()).unwrap();
    let topic = Topic::new("s", "a", Kind::Batch).unwrap();
    let client = connect(port, "s.a", Some(("s.a", "pa"))).await.unwrap();
    for m in batches(t0) {
        let bytes = protocol::envelope::seal(&topic, &m, &key).unwrap();
        client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }
    // The scores are the last batch: once the models list shows a score,
    // everything is stored.
    let end = Instant::now() + Duration::from_secs(20);
    let models = loop {
        let (_, v) = get(addr, "/api/v1/forecasting/models?site=s&node=a", cookie).await;
        if v["items"][0]["last_mae"].is_number() {
            break v;
        }
        assert!(Instant::now() < end, "the scores never arrived: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        models,
        json!({"items": [{"site": "s", "node": "a", "model": "m", "version": "3", "tag": "T",
            "step_ms": MIN, "horizon": 3, "forecasts": 4, "last_origin_ms": t0 + 3 * MIN,
            "last_mae": 4.0, "last_mape": null}]})
    );
    let q = format!("site=s&node=a&model=m&from={}&to={}", t0, t0 + 10 * MIN);

    let (code, page) = get(
        addr,
        &format!("/api/v1/forecasting/forecasts?{q}&limit=3"),
        cookie,
    )
    .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["items"][0]["origin_ms"], t0 + 3 * MIN);
    assert_eq!(page["items"][0]["values"], json!([4.0, 2.0, 5.5]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = get(
        addr,
        &format!("/api/v1/forecasting/forecasts?{q}&limit=3&cursor={cursor}"),
        cookie,
    )
    .await;
    assert_eq!(rest["items"][0]["origin_ms"], t0);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Lead 2: minute k+1 forecast as k+1-2, against its window (k+1).
    let (code, vs) = get(
        addr,
        &format!("/api/v1/forecasting/versus?{q}&lead=2"),
        cookie,
    )
    .await;
    assert_eq!(code, 200, "{vs}");
    assert_eq!(
        vs,
        json!({"tag": "T", "step_ms": MIN, "width_ms": MIN, "lead": 2,
            "t": (1..5).map(|k| t0 + k * MIN).collect::<Vec<_>>(),
            "forecast": [-1.0, 0.0, 1.0, 2.0], "actual": [1.0, 2.0, 3.0, 4.0],
            "truncated": false})
    );

    let (code, acc) = get(addr, &format!("/api/v1/forecasting/accuracy?{q}"), cookie).await;
    assert_eq!(code, 200, "{acc}");
    // The edge said MAE 1, 2, 3, 4; the hub finds |1|, |−2|, |0.5| on each.
    assert_eq!(acc["items"].as_array().unwrap().len(), 4);
    assert!(close(&acc["items"][2]["mae"], 3.0), "{acc}");
    assert!(close(&acc["edge"]["mae"], 2.5), "{acc}");
    assert_eq!(
        (acc["edge"]["n"].as_u64(), acc["edge"]["mape"].is_null()),
        (Some(12), true)
    );
    assert!(close(&acc["hub"]["mae"], 3.5 / 3.0), "{acc}");
    assert_eq!(acc["hub"]["n"], 12);
    assert_eq!(acc["hub"]["forecasts"], 4);
    assert!(close(&acc["hub"]["items"][1]["mae"], 3.5 / 3.0));

    let (code, e) = get(
        addr,
        "/api/v1/forecasting/explanations?site=s&node=a&model=m",
        cookie,
    )
    .await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(
        e,
        json!({"ts_ms": t0 + 10 * MIN, "origin_ms": t0 + 3 * MIN, "version": "3",
            "items": [{"feature": "T[t-1]", "contribution": 0.75},
                      {"feature": "hour", "contribution": -0.25}]})
    );

    // Refusals: problems, not panics or empty answers.
    for (path, status) in [
        ("/api/v1/forecasting/versus?site=s&node=a".to_string(), 400),
        (format!("/api/v1/forecasting/versus?{q}&lead=0"), 400),
        (
            format!("/api/v1/forecasting/forecasts?{q}&cursor=nonsense"),
            400,
        ),
        (
            "/api/v1/forecasting/accuracy?site=s&node=a&model=m&from=2026-12-01T08:00:00".into(),
            400,
        ),
        ("/api/v1/forecasting/models?site=s%2Fx".into(), 400),
    ] {
        let (code, head, body) = http(addr, "GET", &path, cookie, None).await;
        assert_eq!(code, status, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(head.contains("application/problem+json"), "{path}: {head}");
    }
    let (code, _, _) = http(addr, "GET", "/api/v1/forecasting/models", None, None).await;
    assert_eq!(code, 401);

    // Every route is in the OpenAPI document.
    let (_, doc) = get(addr, "/api/v1/openapi.json", None).await;
    for p in ["models", "forecasts", "versus", "accuracy", "explanations"] {
        let op = &doc["paths"][format!("/api/v1/forecasting/{p}")]["get"];
        assert_eq!(op["x-apos-role"], "viewer", "{p}");
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), h.join()).await;
}
