//! The monitoring API end to end: a hub with `[web]`, signed batches
//! published by a node through the real broker and ingest, then the fleet,
//! node, checksum, alarms and quality answers over HTTP with a logged-in
//! session.

use std::time::{Duration, Instant};

use ::web::access::Role;
use protocol::v1::{AlarmEvent, Batch, Body, Checksum, Message, Window, WindowSet, window_digest};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{KEY_A, connect, free_port, hub_config};

/// One HTTP/1.1 exchange (Connection: close): status, headers, body.
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
    let status = head[9..12].parse().unwrap();
    (status, head, rest)
}

async fn get_json(addr: std::net::SocketAddr, path: &str, cookie: &str) -> (u16, Value) {
    let (code, head, body) = http(addr, "GET", path, Some(cookie), None).await;
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {head}\n{}", String::from_utf8_lossy(&body)));
    (code, v)
}

/// Log in; the session cookie as `name=value`.
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

/// A batch of one one-second window of tag "t", `seq` seconds after `t0`.
fn batch(seq: u64, t0: i64) -> Message {
    Message::Batch(Batch {
        seq,
        created_ms: t0,
        body: Body::Aggregates(vec![WindowSet {
            width_ms: 1000,
            start_ms: t0 + seq as i64 * 1000,
            windows: vec![Window {
                tag: "t".into(),
                count: 4,
                good: 3,
                min: 1.0,
                max: 1.0,
                mean: 1.0,
                twa: 1.0,
                last: 1.0,
            }],
        }]),
    })
}

fn alarms(seq: u64, t0: i64) -> Message {
    let e = |alarm: &str, aseq: u64, ts_ms: i64, state: &str, priority: u8| AlarmEvent {
        alarm: alarm.into(),
        seq: aseq,
        ts_ms,
        change: "activated".into(),
        state: state.into(),
        priority,
        value: Some(1.5),
        by: None,
        comment: None,
    };
    Message::Batch(Batch {
        seq,
        created_ms: t0,
        body: Body::Alarms(vec![
            e("urgent", 1, t0, "unacknowledged", 4),
            e("low", 1, t0 + 1, "unacknowledged", 1),
            e("low", 2, t0 + 2, "normal", 1),
        ]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_api_shows_what_a_node_published() {
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
    users
        .add("ed", Role::Engineer, "engineer-password")
        .unwrap();
    drop(users);

    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(h.wait_ready(Duration::from_secs(10)).await);
    let addr = h.web().unwrap().local_addr;
    let viewer = login(addr, "vera", "viewer-password").await;

    // Nothing published yet: both configured nodes, never seen.
    let (code, v) = get_json(addr, "/api/v1/monitoring/fleet", &viewer).await;
    assert_eq!(code, 200, "{v}");
    let statuses: Vec<(&str, &str)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![("a", "never"), ("b", "never")]);

    // Node a publishes batches 1 and 3 (2 is missing) and alarm entries.
    let key = NodeKey::new(KEY_A.as_bytes()).unwrap();
    let topic = Topic::new("s", "a", Kind::Batch).unwrap();
    let client = connect(port, "s.a", Some(("s.a", "pa"))).await.unwrap();
    // An hour ago, so that the quality report counts the windows as due.
    let t0 = (hub::web::now_ms() - 3_600_000) / 1000 * 1000;
    let sent = [batch(1, t0), batch(3, t0), alarms(4, t0)];
    for m in &sent {
        let bytes = protocol::envelope::seal(&topic, m, &key).unwrap();
        client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }
    let end = Instant::now() + Duration::from_secs(20);
    let a = loop {
        let (_, v) = get_json(addr, "/api/v1/monitoring/fleet", &viewer).await;
        let a = v["nodes"][0].clone();
        if a["batches"] == 3 {
            break a;
        }
        assert!(Instant::now() < end, "node a never showed its batches: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a["status"], "online", "{a}");
    assert_eq!(a["configured"], true);
    assert_eq!(
        (a["max_seq"].as_u64(), a["missing"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(a["windows"], 2);
    assert_eq!(
        a["alarms_active"],
        json!({"p1": 0, "p2": 0, "p3": 0, "p4": 1})
    );
    assert!(a["age_s"].as_i64().unwrap() < 60, "{a}");
    assert_eq!(a["in_flood"], Value::Null);

    let (code, d) = get_json(addr, "/api/v1/monitoring/nodes/s/a", &viewer).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["gaps"], json!([{"first": 2, "last": 2}]));
    assert_eq!(d["node"], "a");
    let (code, p) = get_json(addr, "/api/v1/monitoring/nodes/s/nobody", &viewer).await;
    assert_eq!((code, p["status"].as_u64()), (404, Some(404)), "{p}");
    let (code, _) = get_json(addr, "/api/v1/monitoring/nodes/s/no%20id", &viewer).await;
    assert_eq!(code, 400);

    // The checksum: engineers only; equal to the sum of what was sent.
    let (code, _) = get_json(addr, "/api/v1/monitoring/nodes/s/a/checksum", &viewer).await;
    assert_eq!(code, 403);
    let engineer = login(addr, "ed", "engineer-password").await;
    let (code, c) = get_json(addr, "/api/v1/monitoring/nodes/s/a/checksum", &engineer).await;
    assert_eq!(code, 200, "{c}");
    let mut expect = Checksum::default();
    for m in &sent {
        if let Message::Batch(Batch {
            body: Body::Aggregates(sets),
            ..
        }) = m
        {
            for set in sets {
                for w in &set.windows {
                    expect.add(window_digest("s", "a", set.width_ms, set.start_ms, w));
                }
            }
        }
    }
    assert_eq!(
        c,
        json!({"site": "s", "node": "a", "windows": 2, "sum": format!("{:016x}", expect.sum)})
    );

    // The alarm history, one entry per page, newest first.
    let mut path = "/api/v1/monitoring/alarms?limit=1".to_string();
    let mut seen = Vec::new();
    loop {
        let (code, page) = get_json(addr, &path, &viewer).await;
        assert_eq!(code, 200, "{page}");
        for e in page["items"].as_array().unwrap() {
            seen.push((
                e["alarm"].as_str().unwrap().to_string(),
                e["aseq"].as_u64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/monitoring/alarms?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![("low".into(), 2), ("low".into(), 1), ("urgent".into(), 1)]
    );
    let (_, active) = get_json(addr, "/api/v1/monitoring/alarms?active=true", &viewer).await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active["items"][0]["alarm"], "urgent");

    // Data quality over the batches' own period: 2 of 3 one-second windows.
    let q = format!(
        "/api/v1/monitoring/quality?node=a&from={}&to={}",
        t0 + 1000,
        t0 + 4000
    );
    let (code, qv) = get_json(addr, &q, &viewer).await;
    assert_eq!(code, 200, "{qv}");
    let tag = &qv["nodes"][0]["tags"][0];
    assert_eq!(
        (tag["expected"].as_u64(), tag["present"].as_u64()),
        (Some(3), Some(2)),
        "{qv}"
    );
    assert_eq!(tag["gaps"], 1);
    assert_eq!(tag["bad_share"], 0.25);

    // Parameters are checked; no session, no answer.
    for bad in [
        "/api/v1/monitoring/alarms?active=maybe",
        "/api/v1/monitoring/alarms?limit=0",
        "/api/v1/monitoring/alarms?cursor=garbage",
        "/api/v1/monitoring/quality?from=2026-12-01T08:00:00",
        "/api/v1/monitoring/alarm-health?site=a%2Fb",
    ] {
        let (code, head, _) = http(addr, "GET", bad, Some(&viewer), None).await;
        assert_eq!(code, 400, "{bad}");
        assert!(head.contains("application/problem+json"), "{bad}: {head}");
    }
    let (code, _, _) = http(addr, "GET", "/api/v1/monitoring/fleet", None, None).await;
    assert_eq!(code, 401);

    // Every route is in the OpenAPI document with its role and schema.
    let (code, _, body) = http(addr, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    for (path, role) in [
        ("/api/v1/monitoring/fleet", "viewer"),
        ("/api/v1/monitoring/nodes/{site}/{node}", "viewer"),
        (
            "/api/v1/monitoring/nodes/{site}/{node}/checksum",
            "engineer",
        ),
        ("/api/v1/monitoring/alarms", "viewer"),
        ("/api/v1/monitoring/alarm-health", "viewer"),
        ("/api/v1/monitoring/quality", "viewer"),
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["x-apos-role"], role, "{path}: {op}");
        assert!(
            op["responses"]["200"]["content"]["application/json"]["schema"].is_object(),
            "{path}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Fleet",
        "FleetNode",
        "NodeDetail",
        "AlarmPage",
        "Quality",
        "AlarmHealthList",
    ] {
        assert!(schemas[name].is_object(), "{name} missing");
    }

    cancel.cancel();
    h.join().await.unwrap();
}
