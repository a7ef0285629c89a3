//! Alerting through a started hub: a node that stops sending fires
//! `node_offline`, delivered to an independent receiver
//! (tests/peers/webhook_receiver.py, Python's http.server and hmac) that
//! checks the signature; the receiver down, failing with 500, then back;
//! the API lists the alert with every delivery attempt.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use protocol::v1::Message;
use protocol::{Kind, NodeKey, Topic};
use rumqttc::QoS;
use serde_json::Value as J;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use web::access::Role;

use crate::support::{KEY_A, batch, connect, free_port, hub_config};

const SECRET: &str = "webhook-secret-0123456789";

/// Python for the peer: `APOS_PYTHON`, the repository's `.venv`, or
/// `python3`. `None` skips the test, except under `CI=true`.
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

/// The Python receiver, stoppable and restartable on the same port.
struct Receiver {
    python: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Receiver {
    fn start(python: PathBuf, dir: &Path, port: u16) -> Receiver {
        std::fs::write(dir.join("receiver.secret"), format!("{SECRET}\n")).unwrap();
        let mut r = Receiver {
            python,
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/webhook_receiver.py");
        let mut child = Command::new(&self.python)
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--secret-file")
            .arg(self.dir.join("receiver.secret"))
            .arg("--log")
            .arg(self.dir.join("deliveries.jsonl"))
            .arg("--fail-file")
            .arg(self.dir.join("fail"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        self.port = port.parse().unwrap();
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn fail_with(&self, status: Option<u16>) {
        let f = self.dir.join("fail");
        match status {
            Some(s) => std::fs::write(f, s.to_string()).unwrap(),
            None => {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    fn records(&self) -> Vec<J> {
        std::fs::read_to_string(self.dir.join("deliveries.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Wait until a record matches.
    async fn wait_for(&self, what: &str, within: Duration, f: impl Fn(&J) -> bool) -> J {
        let end = Instant::now() + within;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| f(r)) {
                return r;
            }
            assert!(
                Instant::now() < end,
                "receiver never saw {what}: {:#?}",
                self.records()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A hub with `[web]`, one `node_offline` rule on node s.a (`for_`), a
/// 200 ms evaluation and a webhook to 127.0.0.1:`hook_port` retried every
/// 100–400 ms.
async fn start_hub(dir: &Path, for_: &str, hook_port: u16) -> (hub::Hub, CancellationToken, u16) {
    let port = free_port();
    let path = hub_config(dir, port, "", 1_000_000);
    std::fs::write(dir.join("webhook.secret"), format!("{SECRET}\n")).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:0\"\n\
         [alerts]\ninterval = \"200ms\"\nname = \"test-hub\"\n\
         [[alert]]\nname = \"offline\"\nkind = \"node_offline\"\nfor = \"{for_}\"\nnode = \"a\"\n\
         [webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret_file = \"webhook.secret\"\n\
         timeout = \"2s\"\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\nmax_attempts = 1000\n"
    ));
    std::fs::write(&path, text).unwrap();
    let cfg = hub::config::load(&path).unwrap();
    let cancel = CancellationToken::new();
    let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(hub.wait_ready(Duration::from_secs(15)).await, "hub ready");
    (hub, cancel, port)
}

/// GET an API path as a viewer, through the hub's own router (as the
/// listener hands requests to it); the JSON answer.
async fn api(hub: &hub::Hub, path: &str) -> J {
    let state = hub.web().unwrap().state.clone();
    let s = state
        .core
        .sessions
        .create("viewer", Role::Viewer, Instant::now());
    let mut req = axum::http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("cookie", format!("apos_session={}", s.token))
        .body(axum::body::Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    let resp = hub::web::router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Publish batches `seqs` as node s.a, signed.
async fn send(mqtt_port: u16, seqs: std::ops::Range<u64>) {
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = c.disconnect().await;
}

/// The body of a signed, firing or resolved delivery of rule `offline`.
fn delivered(r: &J, state: &str) -> bool {
    r["signature_ok"] == true && r["status"] == 200 && r["body"]["state"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_sending_fires_node_offline_then_resolves() {
    crate::logs::init();
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(py, dir.path(), 0);
    let (hub, cancel, mqtt) = start_hub(dir.path(), "2s", rx.port).await;
    let mut live = hub.events().subscribe();
    // The node sends for 3 s, longer than the rule's 2 s: nothing fires.
    let t0 = Instant::now();
    let mut seq = 1;
    while t0.elapsed() < Duration::from_secs(3) {
        send(mqtt, seq..seq + 1).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(rx.records().is_empty(), "{:?}", rx.records());
    assert_eq!(
        api(&hub, "/api/v1/monitoring/alerts").await["items"],
        J::Array(vec![])
    );
    // Then it stops: within 2 s and an interval or two, the alert fires.
    let stopped = Instant::now();
    let fired = rx
        .wait_for("a signed firing delivery", Duration::from_secs(10), |r| {
            delivered(r, "firing")
        })
        .await;
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "fired {after:?} after the node stopped"
    );
    let b = &fired["body"];
    assert_eq!(
        (&b["rule"], &b["kind"], &b["site"], &b["node"], &b["hub"]),
        (
            &J::from("offline"),
            &J::from("node_offline"),
            &J::from("s"),
            &J::from("a"),
            &J::from("test-hub")
        )
    );
    let id = b["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("offline/s/a/"), "{id}");
    assert_eq!(fired["delivery"], format!("{id}/firing/1"));
    assert_eq!(fired["content_type"], "application/json");
    assert_eq!(fired["path"], "/hook");
    assert!(b["value"].as_f64().unwrap() >= 2.0, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("not heard from"),
        "{b}"
    );
    // On the live broadcast and in the API, with the delivery.
    let ev = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(hub::events::Event::Alert { rule, state, .. }) = live.recv().await
                && rule == "offline"
            {
                return state;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ev, "firing");
    let page = api(&hub, "/api/v1/monitoring/alerts?state=active").await;
    let a = &page["items"][0];
    assert_eq!(
        (&a["id"], &a["state"]),
        (&J::from(id.clone()), &J::from("firing"))
    );
    assert!(a["resolved_ms"].is_null());
    assert_eq!(a["deliveries"][0]["ok"], true);
    assert_eq!(a["deliveries"][0]["status"], 200);
    let rules = api(&hub, "/api/v1/monitoring/alert-rules").await;
    assert_eq!(rules["rules"][0]["kind"], "node_offline");
    assert_eq!(rules["rules"][0]["for_ms"], 2000);
    assert_eq!(rules["interval_ms"], 200);
    // It speaks again: resolved, same id, exactly once.
    send(mqtt, seq..seq + 1).await;
    let resolved = rx
        .wait_for("a signed resolved delivery", Duration::from_secs(10), |r| {
            delivered(r, "resolved")
        })
        .await;
    assert_eq!(resolved["body"]["id"], J::from(id.clone()));
    assert_eq!(resolved["delivery"], format!("{id}/resolved/1"));
    assert!(
        api(&hub, "/api/v1/monitoring/alerts").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = api(&hub, "/api/v1/monitoring/alerts?state=all").await;
    assert_eq!(all["items"][0]["state"], "resolved");
    assert!(all["items"][0]["resolved_ms"].as_i64().is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let n = |state: &str| {
        rx.records()
            .iter()
            .filter(|r| r["body"]["state"] == state)
            .count()
    };
    assert_eq!((n("firing"), n("resolved")), (1, 1), "{:#?}", rx.records());
    // One log line per transition.
    let logged = |what: &str| {
        crate::logs::lines(&id)
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    assert_eq!((logged("alert firing"), logged("alert resolved")), (1, 1));
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.join()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_then_fails_then_comes_back_gets_the_delivery() {
    crate::logs::init();
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A port the receiver will come back on; nothing listens there yet.
    let mut rx = Receiver::start(py, dir.path(), 0);
    rx.stop();
    // Node s.a never sends: after 1 s the alert fires ("never heard from").
    let (hub, cancel, _mqtt) = start_hub(dir.path(), "1s", rx.port).await;
    let end = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let page = api(&hub, "/api/v1/monitoring/alerts").await;
        let d = page["items"][0]["deliveries"].clone();
        if d.as_array().is_some_and(|d| d.len() >= 3) {
            break d;
        }
        assert!(Instant::now() < end, "no failed attempts recorded: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, d) in failed.as_array().unwrap().iter().take(3).enumerate() {
        assert_eq!(d["attempt"], i + 1, "{failed}");
        assert_eq!(d["ok"], false);
        assert!(d["status"].is_null());
        assert!(d["error"].as_str().unwrap().contains("connect"), "{d}");
    }
    // It comes back, answering 500 at first: recorded with the status.
    rx.fail_with(Some(500));
    rx.restart();
    let first = rx
        .wait_for("an attempt answered 500", Duration::from_secs(5), |r| {
            r["status"] == 500
        })
        .await;
    assert_eq!(first["signature_ok"], true, "{first}");
    rx.fail_with(None);
    let ok = rx
        .wait_for("the delivery", Duration::from_secs(5), |r| {
            delivered(r, "firing")
        })
        .await;
    let id = ok["body"]["id"].as_str().unwrap().to_owned();
    let attempt: u32 = ok["delivery"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempt > 4, "{ok}");
    // The API has every attempt: the refused connections, the 500s, the 200.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = api(&hub, "/api/v1/monitoring/alerts").await;
    let a = &page["items"][0];
    assert_eq!(a["id"], J::from(id.clone()));
    let d = a["deliveries"].as_array().unwrap();
    assert_eq!(d.len() as u32, attempt, "{a}");
    assert!(
        d.iter()
            .any(|d| d["status"] == 500 && d["error"] == "HTTP status 500")
    );
    let last = d.last().unwrap();
    assert_eq!(
        (&last["ok"], &last["status"]),
        (&J::from(true), &J::from(200))
    );
    // Delivered once: no attempt after the 200.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.records().iter().filter(|r| r["status"] == 200).count(),
        1
    );
    // Every attempt is in the log too.
    let logged = |what: &str| {
        crate::logs::lines(&id)
            .iter()
            .filter(|l| l.contains(what))
            .count() as u32
    };
    assert_eq!(logged("webhook attempt failed"), attempt - 1);
    assert_eq!(logged("webhook delivered"), 1);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.join()).await;
}
