//! The hub's web application through its own route table: every
//! non-public route refuses without credentials (401), with every weaker
//! role (403) and, for state changes, without the CSRF token (403); the
//! route table and `/api/v1/openapi.json` list the same operations. The
//! list comes from `hub::web::routes`, so a new route cannot escape.
//!
//! Also what the schemathesis test shares: a running hub with `[web]`
//! (real broker, ingest and listener) seeded with every body kind through
//! MQTT, signed as an edge signs them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use protocol::v1::{
    Ack, AlarmEvent, AlarmHealth, AuditRecord, Batch, Body, Forecast, ForecastQuality, KpiQuality,
    KpiResult, LostSpan, Message, Status, Window, WindowSet,
};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use web::access::{Access, Role};
use web::session::Session;

use crate::support::{KEY_A, KEY_B, free_port, hub_config, options};

/// A running hub with its web application on an ephemeral port.
pub struct WebHub {
    pub hub: hub::Hub,
    pub cancel: CancellationToken,
    pub mqtt_port: u16,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl WebHub {
    pub fn state(&self) -> hub::web::St {
        self.hub
            .web()
            .expect("[web] starts the web app")
            .state
            .clone()
    }

    /// A session of user `u-ROLE` (created with that role if new), made
    /// directly in the session store: the login route itself is swept like
    /// any other.
    pub fn session(&self, role: Role) -> Session {
        let name = self.user(role);
        self.state()
            .core
            .sessions
            .create(&name, role, Instant::now())
    }

    fn user(&self, role: Role) -> String {
        let name = format!("u-{}", role.as_str());
        let users = &self.state().core.users;
        if users.get(&name).unwrap().is_none() {
            users
                .add(&name, role, &web::users::random_password())
                .unwrap();
        }
        name
    }

    /// An API token of user `u-ROLE` acting with that role.
    pub fn token(&self, role: Role) -> String {
        let owner = self.user(role);
        let tokens = self
            .state()
            .core
            .tokens
            .clone()
            .expect("API tokens enabled");
        let new = web::tokens::NewToken {
            name: format!("test-{}", role.as_str()),
            role: Some(role),
            expires_days: Some(1),
        };
        tokens.create(&owner, &new, now_ms()).unwrap().token
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.hub.join()).await;
    }
}

/// Start a hub (embedded broker, nodes s.a and s.b) with `[web]` on
/// 127.0.0.1:0; the rate limit is raised so that sweeps and fuzzing
/// measure the routes, not the limiter.
pub async fn start() -> WebHub {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = hub_config(dir.path(), port, "", 1_000_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\nrate_limit = 100000\nrate_burst = 100000\n");
    std::fs::write(&path, text).unwrap();
    let cfg = hub::config::load(&path).unwrap();
    let cancel = CancellationToken::new();
    let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(hub.wait_ready(Duration::from_secs(15)).await, "hub ready");
    let base = hub.web_url().unwrap().trim_end_matches('/').to_string();
    WebHub {
        hub,
        cancel,
        mqtt_port: port,
        base,
        dir,
    }
}

pub fn now_ms() -> i64 {
    hub::web::now_ms()
}

fn window(tag: &str, i: i64) -> Window {
    let v = 50.0 + 10.0 * ((i as f64) / 30.0).sin();
    Window {
        tag: tag.into(),
        count: 10,
        good: 10,
        min: v - 1.0,
        max: v + 1.0,
        mean: v,
        twa: v,
        last: v,
    }
}

/// Every body kind an edge sends, about the last three hours of one node.
/// The match below is exhaustive on purpose: a new `Body` variant must be
/// seeded here before it compiles, so the fuzzing sees it.
pub fn bodies(node: &str, now: i64) -> Vec<Body> {
    let t0 = now - 3 * 3_600_000;
    let t0 = t0 - t0.rem_euclid(60_000);
    let mut out = Vec::new();
    // 10 s windows of two tags for 3 h, 60 window sets per batch; one tag
    // has a window without good samples (NaN statistics, as edges send).
    let sets: Vec<WindowSet> = (0..1080)
        .map(|i| {
            let mut windows = vec![window("temp", i), window("flow", i + 7)];
            if i == 500 {
                windows[1] = Window {
                    good: 0,
                    min: f64::NAN,
                    max: f64::NAN,
                    mean: f64::NAN,
                    twa: f64::NAN,
                    last: f64::NAN,
                    ..windows[1].clone()
                };
            }
            WindowSet {
                width_ms: 10_000,
                start_ms: t0 + i * 10_000,
                windows,
            }
        })
        .collect();
    out.extend(sets.chunks(60).map(|c| Body::Aggregates(c.to_vec())));
    out.push(Body::Aggregates(
        (0..180)
            .map(|i| WindowSet {
                width_ms: 60_000,
                start_ms: t0 + i * 60_000,
                windows: vec![window("temp", i * 6), window("flow", i * 6 + 7)],
            })
            .collect(),
    ));
    out.push(Body::Forecasts(vec![Forecast {
        model: "temp-nbeats".into(),
        version: "1".into(),
        tag: "temp".into(),
        origin_ms: now - 3_600_000,
        step_ms: 60_000,
        made_ms: now - 3_600_000,
        values: (0..120).map(|k| 50.0 + (k as f64) / 10.0).collect(),
    }]));
    let hour = now - now.rem_euclid(3_600_000);
    let kpis = (0..3)
        .flat_map(|h| {
            let start = hour - (h + 1) * 3_600_000;
            [
                KpiResult {
                    kpi: "oee".into(),
                    window: "1h".into(),
                    label: String::new(),
                    start_ms: start,
                    end_ms: start + 3_600_000,
                    until_ms: start + 3_600_000,
                    closed: true,
                    computed_ms: start + 3_600_000,
                    coverage: 1.0,
                    quality: KpiQuality::Good,
                    values: vec![
                        ("oee".into(), Some(0.71 + h as f64 / 100.0)),
                        ("availability".into(), Some(0.9)),
                        ("performance".into(), Some(0.85)),
                        ("quality".into(), Some(0.93)),
                    ],
                    unit: None,
                },
                KpiResult {
                    kpi: "specific_energy".into(),
                    window: "1h".into(),
                    label: String::new(),
                    start_ms: start,
                    end_ms: start + 3_600_000,
                    until_ms: start + 3_600_000,
                    closed: true,
                    computed_ms: start + 3_600_000,
                    coverage: 0.5,
                    quality: KpiQuality::Bad,
                    // Undefined figure: null at the hub, never NaN in JSON.
                    values: vec![("specific_energy".into(), None)],
                    unit: Some("kWh/t".into()),
                },
            ]
        })
        .collect();
    out.push(Body::Kpis(kpis));
    out.push(Body::Lost(vec![LostSpan {
        width_ms: 10_000,
        from_ms: t0 - 600_000,
        to_ms: t0,
        reason: "stopped".into(),
    }]));
    out.push(Body::Alarms(vec![
        AlarmEvent {
            alarm: "temp.hi".into(),
            seq: 1,
            ts_ms: now - 1_800_000,
            change: "activated".into(),
            state: "unacknowledged".into(),
            priority: 3,
            value: Some(91.0),
            by: None,
            comment: None,
        },
        AlarmEvent {
            alarm: "temp.hi".into(),
            seq: 2,
            ts_ms: now - 1_700_000,
            change: "acknowledged".into(),
            state: "acknowledged".into(),
            priority: 3,
            value: Some(92.0),
            by: Some("op".into()),
            comment: Some("seen".into()),
        },
        AlarmEvent {
            alarm: "flow.lo".into(),
            seq: 1,
            ts_ms: now - 600_000,
            change: "activated".into(),
            state: "unacknowledged".into(),
            priority: 4,
            value: None,
            by: None,
            comment: None,
        },
    ]));
    out.push(Body::Audit(vec![AuditRecord {
        seq: 1,
        ts_ms: now - 7_200_000,
        actor: "admin".into(),
        action: "login".into(),
        target: String::new(),
        detail: String::new(),
        addr: "127.0.0.1".into(),
        hash: "ab".repeat(32),
    }]));
    out.push(Body::ForecastQuality(
        (0..3)
            .map(|k| ForecastQuality {
                model: "temp-nbeats".into(),
                version: "1".into(),
                tag: "temp".into(),
                origin_ms: now - (k + 3) * 3_600_000,
                scored_ms: now - (k + 1) * 3_600_000,
                step_ms: 60_000,
                horizon: 120,
                // The first scoring had no actuals yet: no error figures.
                mae: (k > 0).then_some(0.4 * k as f64),
                mape: (k > 0).then_some(0.8 * k as f64),
                n: if k > 0 { 120 } else { 0 },
                explanation: if k == 2 {
                    vec![("temp[t-1]".into(), 1.2), ("flow[t-1]".into(), -0.3)]
                } else {
                    vec![]
                },
            })
            .collect(),
    ));
    out.push(Body::AlarmHealth(vec![AlarmHealth {
        ts_ms: now - 300_000,
        avg_per_10min: 1.5,
        peak_per_10min: 4,
        flood_share: 0.0,
        top10_share: 1.0,
        in_flood: false,
        chattering: vec![],
        stale: vec![format!("{node}.stale")],
    }]));
    for b in &out {
        // Exhaustive: see the function's comment.
        match b {
            Body::Aggregates(_)
            | Body::Forecasts(_)
            | Body::Kpis(_)
            | Body::Lost(_)
            | Body::Alarms(_)
            | Body::Audit(_)
            | Body::AlarmHealth(_)
            | Body::ForecastQuality(_) => {}
        }
    }
    out
}

/// Publish every body kind and a status for nodes s.a and s.b, signed, and
/// wait until the hub acknowledged all of them (they are committed).
pub async fn seed(h: &WebHub) {
    let now = now_ms();
    for (node, key) in [("a", KEY_A), ("b", KEY_B)] {
        let login = format!("s.{node}");
        let pass = if node == "a" { "pa" } else { "pb" };
        let (c, mut el) = AsyncClient::new(options(h.mqtt_port, &login, Some((&login, pass))), 100);
        let key = NodeKey::new(key.as_bytes()).unwrap();
        let ack_topic = Topic::new("s", node, Kind::Ack).unwrap();
        c.subscribe(ack_topic.to_string(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let sink = acked.clone();
        let k2 = key.clone();
        let poll = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev
                    && let Ok(Message::Ack(Ack { ranges })) =
                        protocol::envelope::open(&ack_topic, &p.payload, &k2, 1 << 20)
                {
                    let mut s = sink.lock().unwrap();
                    for r in ranges {
                        s.extend(r.first..=r.last);
                    }
                }
            }
        });
        let bt = Topic::new("s", node, Kind::Batch).unwrap();
        let st = Topic::new("s", node, Kind::Status).unwrap();
        let bodies = bodies(node, now);
        let n = bodies.len() as u64;
        for (i, body) in bodies.into_iter().enumerate() {
            let m = Message::Batch(Batch {
                seq: i as u64 + 1,
                created_ms: now,
                body,
            });
            let bytes = protocol::envelope::seal(&bt, &m, &key).unwrap();
            c.publish(bt.to_string(), QoS::AtLeastOnce, false, bytes)
                .await
                .unwrap();
        }
        let status = Message::Status(Status {
            ts_ms: now,
            software_version: "sweep-1".into(),
            started_ms: now - 4 * 3_600_000,
            outbox_batches: 0,
            outbox_bytes: 0,
            oldest_unacked_ms: None,
            last_seq: n,
            dropped_batches: 0,
        });
        let bytes = protocol::envelope::seal(&st, &status, &key).unwrap();
        c.publish(st.to_string(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < n as usize {
            assert!(
                Instant::now() < end,
                "node {node}: {} of {n} batches acknowledged",
                acked.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = c.disconnect().await;
        poll.abort();
    }
}

/// Plausible values for path parameters: the seeded site, node, tag, KPI,
/// model and alarm; anything else gets a token a handler can look up and
/// not find (404 is a fine answer; the sweep is about 401/403).
pub fn fill(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let name = rest[open + 1..close].trim_start_matches('*');
        out.push_str(match name {
            "site" => "s",
            "node" => "a",
            "tag" => "temp",
            "kpi" => "oee",
            "model" => "temp-nbeats",
            "alarm" | "name" => "temp.hi",
            // Never a user the sweep logs in as: a DELETE would remove it.
            "user" | "username" => "nobody",
            "rule" => "offline",
            "id" | "seq" => "1",
            _ => "x",
        });
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// The access guard's 403 for too weak a role (`Problem::forbidden`).
const ROLE_REFUSAL: &str = "your role does not allow this";

fn is_write(m: &Method) -> bool {
    !(m == Method::GET || m == Method::HEAD || m == Method::OPTIONS)
}

/// A request as the listener hands it to the router (with the peer
/// address, which rate limiting and the audit log read).
/// What a request presents.
#[derive(Clone, Copy)]
pub enum Cred<'a> {
    None,
    /// The session cookie, with or without its CSRF header.
    Session(&'a Session, bool),
    /// `Authorization: Bearer …` (an API token needs no CSRF header).
    Token(&'a str),
}

/// A request with a session (and its CSRF header when `csrf`), or none.
pub fn request(
    method: &Method,
    path: &str,
    session: Option<&Session>,
    csrf: bool,
) -> Request<HttpBody> {
    request_with(
        method,
        path,
        session.map_or(Cred::None, |s| Cred::Session(s, csrf)),
    )
}

/// A request as the listener hands it to the router (with the peer
/// address, which rate limiting and the audit log read).
pub fn request_with(method: &Method, path: &str, cred: Cred<'_>) -> Request<HttpBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(fill(path))
        .header("host", "127.0.0.1");
    match cred {
        Cred::None => {}
        Cred::Session(s, csrf) => {
            b = b.header("cookie", format!("apos_session={}", s.token));
            if csrf {
                b = b.header("x-csrf-token", &s.csrf);
            }
        }
        Cred::Token(t) => b = b.header("authorization", format!("Bearer {t}")),
    }
    let body = if is_write(method) {
        b = b.header("content-type", "application/json");
        HttpBody::from("{}")
    } else {
        HttpBody::empty()
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_its_role_csrf_and_is_documented() {
    crate::logs::init();
    let h = start().await;
    seed(&h).await;
    let state = h.state();
    let router = hub::web::router(state.clone());
    let routes = hub::web::routes(state.core.clone()).routes().to_vec();
    assert!(routes.len() >= 8, "{} routes", routes.len());
    let tokens: std::collections::HashMap<Role, String> =
        Role::ALL.into_iter().map(|r| (r, h.token(r))).collect();
    let mut protected = 0;
    let mut writes = 0;
    for r in &routes {
        let Access::Role(needed) = r.access else {
            continue;
        };
        protected += 1;
        let what = format!("{} {}", r.method, r.path);
        let mut methods = vec![r.method.clone()];
        if r.method == Method::GET {
            methods.push(Method::HEAD);
        }
        for m in &methods {
            for cred in [Cred::None, Cred::Token("apos_unknown_0123456789")] {
                let resp = router
                    .clone()
                    .oneshot(request_with(m, r.path, cred))
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED,
                    "{m} {} without valid credentials",
                    r.path
                );
            }
        }
        // Fresh sessions per route: a swept logout ends its own session.
        for role in Role::ALL {
            let s = h.session(role);
            for (how, cred) in [
                ("session", Cred::Session(&s, true)),
                ("token", Cred::Token(&tokens[&role])),
            ] {
                let resp = router
                    .clone()
                    .oneshot(request_with(&r.method, r.path, cred))
                    .await
                    .unwrap();
                let status = resp.status();
                let body = body_text(resp).await;
                if role.allows(needed) {
                    // A handler may still refuse on its own grounds (e.g. a
                    // token may not make tokens), never with the guard's
                    // role refusal.
                    assert!(
                        status != StatusCode::UNAUTHORIZED
                            && !(status == StatusCode::FORBIDDEN && body.contains(ROLE_REFUSAL))
                            && status != StatusCode::INTERNAL_SERVER_ERROR,
                        "{what} as {role} ({how}; needs {needed}): {status} {body}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{what} as {role} ({how}; needs {needed})"
                    );
                    let p: serde_json::Value = serde_json::from_str(&body)
                        .unwrap_or_else(|e| panic!("{what} as {role}: {e}: {body}"));
                    assert_eq!(p["status"], 403, "{what} as {role}: RFC 9457 body {body}");
                    assert!(body.contains(ROLE_REFUSAL), "{what} as {role}: {body}");
                }
            }
        }
        if is_write(&r.method) {
            writes += 1;
            let s = h.session(Role::Admin);
            let resp = router
                .clone()
                .oneshot(request_with(&r.method, r.path, Cred::Session(&s, false)))
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{what} without the CSRF header"
            );
            let mut req = request_with(&r.method, r.path, Cred::Session(&s, true));
            req.headers_mut()
                .insert("origin", "http://evil.example".parse().unwrap());
            let resp = router.clone().oneshot(req).await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{what} from a foreign Origin"
            );
        }
    }
    assert!(protected >= 5, "{protected} protected routes");
    eprintln!(
        "route sweep: {} routes, {protected} protected, {writes} state-changing",
        routes.len()
    );

    // The route table and the OpenAPI document list the same operations.
    let resp = router
        .clone()
        .oneshot(request_with(
            &Method::GET,
            "/api/v1/openapi.json",
            Cred::None,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let table: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.path.to_string(), r.method.as_str().to_lowercase()))
        .collect();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .iter()
                // An operation is an object; `null` is not one (serde_json's
                // IndexMut inserts nulls for paths it is asked about).
                .filter(|(_, op)| op.is_object())
                .map(|(k, _)| k)
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "in the route table but not in /api/v1/openapi.json: {undocumented:?}; \
         documented but not routed: {unrouted:?}"
    );
    // What the document says about access is what the table enforces.
    for r in &routes {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        match r.access {
            Access::Public => assert_eq!(
                op["security"],
                serde_json::json!([]),
                "{} {}",
                r.method,
                r.path
            ),
            Access::Role(role) => {
                assert_eq!(op["x-apos-role"], role.as_str(), "{} {}", r.method, r.path);
                assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object());
            }
        }
    }
    h.stop().await;
}

pub async fn body_text(resp: axum::response::Response) -> String {
    let b = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&b).into_owned()
}
