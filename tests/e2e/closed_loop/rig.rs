//! What the closed-loop tests run: the simulated plant, an external
//! mosquitto (the embedded broker's gate lets no client but the hub's own
//! publish on a node's `rec` topic, so crafted recommendations need a broker
//! that lets `mosquitto_pub` in), an in-process edge with `[setpoints]`,
//! optionally an in-process hub with an `[[optimization]]` problem, HTTP
//! sessions on their APIs (a small HTTP/1.1 client: the root package has no
//! HTTP client dependency), and a recorder of the plant's setpoint register.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use apos::plant::{self, PlantHandle};
use protocol::recommend::{Recommendation, Setpoint, SigningKey};
use serde_json::{Value as J, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use web::access::Role;

use crate::process::{Proc, which};
use crate::support::{free_port, require_peer};

pub const SITE: &str = "demo-refinery";
pub const NODE: &str = "cdu-edge-1";
/// The setpoint every test moves (f32 holding register, plant range 330–385).
pub const TAG: &str = "heater.outlet_temp_sp";
pub const EDGE_MIN: f64 = 340.0;
pub const MAX_STEP: f64 = 5.0;
pub const MIN_INTERVAL: Duration = Duration::from_millis(1500);
pub const TOLERANCE: f64 = 0.01;
const NODE_KEY: &str = "closed-loop-node-key-0123456789";
/// The id prefix of [`Rig::probe`]'s recommendations.
pub const PROBE: &str = "probe";

/// Poll `f` every 100 ms until it gives a value or `timeout` passes.
pub async fn until<T, Fut>(what: &str, timeout: Duration, mut f: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn now_ms() -> i64 {
    drivers::Timestamp::now().as_millis()
}

/// A recommendation for [`TAG`] on this node, valid for 10 minutes.
pub fn recommendation(seq: u64, id: &str, current: f64, proposed: f64) -> Recommendation {
    let now = now_ms();
    Recommendation {
        seq,
        id: id.to_owned(),
        site: SITE.to_owned(),
        node: NODE.to_owned(),
        problem: "closed-loop-test".to_owned(),
        issued_ms: now,
        expires_ms: now + 600_000,
        setpoints: vec![Setpoint {
            tag: TAG.to_owned(),
            unit: "°C".to_owned(),
            current,
            proposed,
        }],
        benefit_per_hour: 120.0,
        benefit_per_year: 120.0 * 8000.0,
        benefit_unit: "$/h".to_owned(),
        confidence: 0.8,
        confidence_text: "a test's proposal".to_owned(),
        rationale: "crafted by tests/e2e/closed_loop.rs".to_owned(),
    }
}

pub fn seal(rec: &Recommendation, key: &SigningKey) -> (String, Vec<u8>) {
    let (topic, bytes) = protocol::recommend::seal(rec, key).unwrap();
    (topic.to_string(), bytes)
}

/// An external mosquitto on a free loopback port, anonymous, and its
/// command-line publisher.
pub struct Broker {
    pub port: u16,
    proc: Proc,
    publisher: PathBuf,
    dir: PathBuf,
}

impl Broker {
    /// `None` (after a loud skip) when mosquitto is missing outside CI.
    pub async fn start(dir: &Path) -> Option<Broker> {
        let (Some(mosq), Some(publisher)) = (which("mosquitto"), which("mosquitto_pub")) else {
            require_peer(
                "mosquitto and mosquitto_pub (Debian packages mosquitto and mosquitto-clients)",
            );
            return None;
        };
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let mut cmd = Command::new(mosq);
        cmd.arg("-c").arg(&conf);
        let proc = Proc::spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto is not listening on {port}:\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Broker {
            port,
            proc,
            publisher,
            dir: dir.to_path_buf(),
        })
    }

    /// Publish `bytes` on `topic` (QoS 1) as a client of no node.
    pub async fn publish(&self, topic: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new_in(&self.dir).unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let mut cmd = Command::new(&self.publisher);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-f"])
            .arg(file.path());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub: {}\nbroker:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.proc.log()
        );
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> J {
        serde_json::from_str(&self.body).unwrap_or(J::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    out
}

/// One request on its own connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> Resp {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 30 s"));
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: not HTTP: {buf:?}"));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A logged-in user of the HMI or the hub's web API.
#[derive(Debug, Clone)]
pub struct Session {
    pub addr: SocketAddr,
    pub user: String,
    cookie: String,
    csrf: String,
}

impl Session {
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> Session {
        let body = json!({"user": user, "password": password}).to_string();
        let r = http(addr, "POST", "/api/v1/session", &[], Some(&body)).await;
        assert_eq!(r.status, 200, "login as {user}: {}", r.body);
        let cookie = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no session cookie: {r:?}"))
            .to_owned();
        let csrf = r.json()["csrf"].as_str().unwrap().to_owned();
        Session {
            addr,
            user: user.to_owned(),
            cookie,
            csrf,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        http(
            self.addr,
            "GET",
            path,
            &[("Cookie", self.cookie.clone())],
            None,
        )
        .await
    }

    /// A state-changing request: cookie, CSRF token and our own Origin.
    pub async fn post(&self, path: &str, body: &str) -> Resp {
        http(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", self.cookie.clone()),
                ("x-csrf-token", self.csrf.clone()),
                ("Origin", format!("http://{}", self.addr)),
            ],
            Some(body),
        )
        .await
    }

    /// GET that must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> J {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path} as {}: {}", self.user, r.body);
        r.json()
    }
}

/// Users with new random passwords in a users file: (name, password).
fn make_users(file: &Path, users: &[(&str, Role)]) -> Vec<(String, String)> {
    let store = web::users::UserStore::open(file).unwrap();
    users
        .iter()
        .map(|(name, role)| {
            let pw = web::users::random_password();
            store.add(name, *role, &pw).unwrap();
            ((*name).to_owned(), pw)
        })
        .collect()
}

/// The edge's `[setpoints]` for [`TAG`]: the demo's interlocks (permissive
/// `unit.running`, `unit.state` = 2), test-sized intervals, `max` given.
fn setpoints_toml(hub_key: &str, max: f64) -> String {
    format!(
        "\n[setpoints]\nhub_public_key = \"{hub_key}\"\n\n[[setpoint]]\ntag = \"{TAG}\"\n\
         min = {EDGE_MIN:?}\nmax = {max:?}\nmax_step = {MAX_STEP:?}\nmin_interval = \"{}ms\"\n\
         tolerance = {TOLERANCE:?}\nverify_timeout = \"3s\"\npermissive = \"unit.running\"\n\
         state_tag = \"unit.state\"\nstate_equals = 2\nstate_name = \"running\"\n",
        MIN_INTERVAL.as_millis()
    )
}

/// The plant, the broker and an edge reading the plant over Modbus TCP,
/// syncing to the broker, with the HMI and `[setpoints]`.
pub struct Rig {
    _dir: tempfile::TempDir,
    pub plant: PlantHandle,
    plant_cancel: CancellationToken,
    pub broker: Broker,
    pub edge: Option<edge_node::Edge>,
    edge_cancel: CancellationToken,
    pub hmi: SocketAddr,
    users: Vec<(String, String)>,
    /// The setpoint's value when the edge was ready.
    pub start_value: f64,
}

impl Rig {
    /// A rig whose edge trusts `hub_key` (text form) and writes [`TAG`]
    /// within [`EDGE_MIN`] … `max`. `None` when mosquitto is missing
    /// outside CI.
    pub async fn start(hub_key: &str, max: f64) -> Option<Rig> {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path()).await?;
        Some(Rig::start_with(dir, broker, hub_key, max).await)
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        broker: Broker,
        hub_key: &str,
        max: f64,
    ) -> Rig {
        let plant_cancel = CancellationToken::new();
        let plant = plant::spawn_demo_plant(
            "127.0.0.1:0".parse().unwrap(),
            7,
            10.0,
            plant_cancel.clone(),
        )
        .await
        .unwrap();
        let d = dir.path();
        std::fs::write(d.join("node.key"), NODE_KEY).unwrap();
        std::fs::write(d.join("mqtt.pass"), "closed-loop-mqtt-password").unwrap();
        let users_file = d.join("users.db");
        let users = make_users(
            &users_file,
            &[
                ("viewer", Role::Viewer),
                ("operator", Role::Operator),
                ("engineer", Role::Engineer),
                ("admin", Role::Admin),
            ],
        );
        let mut toml = apos::demo::edge_config(plant.addr, &d.join("history.db"));
        toml += &format!(
            "\n[sync]\nbroker = \"mqtt://127.0.0.1:{}\"\nuser = \"{SITE}.{NODE}\"\npassword_file = {:?}\n\
             key_file = {:?}\nwindows = [\"1s\", \"5s\"]\ngrace = \"300ms\"\nresend_after = \"2s\"\nstatus_interval = \"1s\"\n",
            broker.port,
            d.join("mqtt.pass").display().to_string(),
            d.join("node.key").display().to_string()
        );
        toml += &format!(
            "\n[hmi]\nlisten = \"127.0.0.1:0\"\nusers_file = {:?}\n",
            users_file.display().to_string()
        );
        toml += &setpoints_toml(hub_key, max);
        let path = d.join("edge.toml");
        std::fs::write(&path, toml).unwrap();
        let edge_cancel = CancellationToken::new();
        let edge = edge_node::Edge::start(&path, edge_cancel.clone())
            .await
            .unwrap();
        let hmi = edge.hmi.as_ref().expect("[hmi] starts the HMI").local_addr;
        let mut rig = Rig {
            _dir: dir,
            plant,
            plant_cancel,
            broker,
            edge: Some(edge),
            edge_cancel,
            hmi,
            users,
            start_value: f64::NAN,
        };
        rig.start_value = rig.ready().await;
        rig
    }

    fn edge(&self) -> &edge_node::Edge {
        self.edge.as_ref().unwrap()
    }

    /// The edge's latest Good numeric value of `tag`.
    pub async fn live(&self, tag: &str) -> Option<f64> {
        let live = self.edge().live.read().await;
        live.get(tag)
            .filter(|s| s.quality.is_good())
            .and_then(|s| s.value.as_ref().and_then(drivers::Value::as_f64))
    }

    /// Wait until the edge reads the setpoint and a running unit and is
    /// connected to the broker; the setpoint's value.
    async fn ready(&self) -> f64 {
        let v = until(
            "the edge reads the plant",
            Duration::from_secs(30),
            || async {
                let running = self.live("unit.state").await == Some(2.0)
                    && self.live("unit.running").await == Some(1.0);
                self.live(TAG).await.filter(|_| running)
            },
        )
        .await;
        until("the edge's MQTT link", Duration::from_secs(30), || async {
            self.edge()
                .sync_stats
                .connected
                .load(std::sync::atomic::Ordering::Relaxed)
                .then_some(())
        })
        .await;
        let plant = self.sp();
        assert_eq!(v, plant, "the edge reads the plant's setpoint");
        v
    }

    /// The plant's setpoint register now (the PLC's own view).
    pub fn sp(&self) -> f64 {
        self.plant.snapshot().unwrap().sp.outlet_temp
    }

    pub async fn session(&self, user: &str) -> Session {
        let pw = &self
            .users
            .iter()
            .find(|(u, _)| u == user)
            .unwrap_or_else(|| panic!("no user {user}"))
            .1;
        Session::login(self.hmi, user, pw).await
    }

    /// Publish an expired recommendation until the edge refuses it: then
    /// its subscription to the `rec` topic stands (a message published
    /// before it is lost). Expiry is checked before anything is stored, so
    /// `seq` stays free for the test. Each attempt's id starts with
    /// [`PROBE`] (a slow edge may refuse two). The refusal.
    pub async fn probe(&self, key: &SigningKey, seq: u64, viewer: &Session) -> J {
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 1.. {
            let id = format!("{PROBE}-{attempt}");
            let mut rec = recommendation(seq, &id, self.start_value, self.start_value + 1.0);
            rec.issued_ms -= 120_000;
            rec.expires_ms = rec.issued_ms + 60_000;
            let (topic, bytes) = seal(&rec, key);
            self.broker.publish(&topic, &bytes).await;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let v = viewer.json("/api/v1/setpoints").await;
                if let Some(r) = v["refused"].as_array().and_then(|r| r.first()) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the edge never answered a recommendation on its rec topic"
            );
        }
        unreachable!()
    }

    pub async fn stop(mut self) {
        self.edge_cancel.cancel();
        if let Some(e) = self.edge.take() {
            e.join(Duration::from_secs(10)).await;
        }
        self.plant_cancel.cancel();
    }
}

/// An in-process hub on the rig's broker, with one `[[optimization]]`
/// problem on [`TAG`] and an analyst.
pub struct HubRun {
    pub hub: hub::Hub,
    cancel: CancellationToken,
    pub web: SocketAddr,
    analyst: String,
}

/// The hub's problem: maximize the value of diesel, whose flow rises with
/// the outlet temperature (the demo's given model, `src/demo.rs`), moved
/// at most `max_move` per recommendation, within the demo's bounds.
pub const PROBLEM: &str = "closed-loop";

impl HubRun {
    pub async fn start(dir: &Path, broker: &Broker, key_file: &Path, max_move: f64) -> HubRun {
        let h = dir.join("hub");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(h.join("node.key"), NODE_KEY).unwrap();
        let users_file = h.join("users.db");
        let analyst = make_users(&users_file, &[("analyst", Role::Analyst)])
            .remove(0)
            .1;
        let text = format!(
            "schema_version = 1\n[storage]\npath = {:?}\n[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"\n\
             [ingest]\ncommit_interval = \"100ms\"\n\
             [[node]]\nsite = \"{SITE}\"\nnode = \"{NODE}\"\nkey_file = {:?}\n\
             [web]\nlisten = \"127.0.0.1:0\"\nusers_file = {:?}\n\
             [recommendations]\nkey_file = {:?}\nvalid_for = \"30m\"\n\
             [[optimization]]\nname = \"{PROBLEM}\"\nsite = \"{SITE}\"\nnode = \"{NODE}\"\nobjective = \"maximize\"\n\
             unit = \"$/h\"\nwindow = \"1s\"\n\
             [[optimization.decision]]\ntag = \"{TAG}\"\nunit = \"°C\"\nmin = 340.0\nmax = 385.0\nmax_move = {max_move:?}\n\
             [[optimization.output]]\ntag = \"product.diesel_flow\"\nunit = \"m³/h\"\nintercept = -345.6\n\
             coefficients = {{ \"{TAG}\" = 0.96 }}\n\
             [[optimization.term]]\ntag = \"product.diesel_flow\"\nprice = 620.0\n",
            h.join("fleet.duckdb").display().to_string(),
            broker.port,
            h.join("node.key").display().to_string(),
            users_file.display().to_string(),
            key_file.display().to_string(),
        );
        let path = h.join("hub.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = hub::config::load(&path).unwrap();
        let cancel = CancellationToken::new();
        let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
        assert!(
            hub.wait_ready(Duration::from_secs(20)).await,
            "the hub's ingest is subscribed on mosquitto"
        );
        let web = hub.web().expect("[web] starts the web app").local_addr;
        HubRun {
            hub,
            cancel,
            web,
            analyst,
        }
    }

    pub async fn analyst(&self) -> Session {
        Session::login(self.web, "analyst", &self.analyst).await
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.hub.join()).await;
    }
}

/// Every change of the plant's setpoint register, sampled every 5 ms.
pub struct Recorder {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<(Instant, f64)>>,
}

impl Recorder {
    pub fn start(plant: &PlantHandle) -> Recorder {
        let p = plant.clone();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let read = || p.snapshot().unwrap().sp.outlet_temp;
            let mut seen = vec![(Instant::now(), read())];
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                let v = read();
                if seen.last().is_some_and(|l| l.1 != v) {
                    seen.push((Instant::now(), v));
                }
            }
            seen
        });
        Recorder { stop, task }
    }

    /// The first value and every change after it.
    pub async fn finish(self) -> Vec<(Instant, f64)> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}
