//! Edge → hub delivery, as processes: the real `apos-edge` reading the
//! simulated plant, the real `apos-hub` (embedded rumqttd, or an external
//! mosquitto), faults by kill -9 and broker outages, and at the end a
//! checksum of every window the edge produced against what DuckDB stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use apos::plant;
use protocol::v1::{Checksum, Window, window_digest};
use tokio_util::sync::CancellationToken;

use crate::process::{Proc, which};
use crate::support::{bin, eventually, free_port, require_peer};

const SITE: &str = "demo-refinery";
const NODE: &str = "cdu-edge-1";
const KEY: &str = "e2e-node-key-0123456789";
const PASSWORD: &str = "e2e-node-password";

/// The hub's files: config, keys, database.
struct HubSetup {
    dir: PathBuf,
    config: PathBuf,
    db: PathBuf,
    port: u16,
}

fn hub_setup(dir: &Path, external: Option<u16>) -> HubSetup {
    let port = external.unwrap_or_else(free_port);
    let broker = match external {
        None => format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n"),
        Some(p) => format!("mode = \"external\"\nurl = \"mqtt://127.0.0.1:{p}\"\n"),
    };
    hub_setup_with(dir, port, &broker)
}

/// A hub whose `[broker]` section is `broker`; `port` is where edges connect.
fn hub_setup_with(dir: &Path, port: u16, broker: &str) -> HubSetup {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("node.key"), KEY).unwrap();
    std::fs::write(dir.join("node.pass"), PASSWORD).unwrap();
    let db = dir.join("fleet.duckdb");
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "schema_version = 1\n[storage]\npath = {:?}\n[broker]\n{broker}[ingest]\ncommit_interval = \"100ms\"\nstatus_log_interval = \"1s\"\n\
             [[node]]\nsite = \"{SITE}\"\nnode = \"{NODE}\"\nkey_file = \"node.key\"\npassword_file = \"node.pass\"\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    HubSetup {
        dir: dir.to_path_buf(),
        config,
        db,
        port,
    }
}

fn start_hub(h: &HubSetup) -> Proc {
    let mut cmd = Command::new(bin("apos-hub"));
    cmd.args(["run", "--config"]).arg(&h.config);
    cmd.env("RUST_LOG", "info");
    Proc::spawn(cmd)
}

fn edge_config(plant: std::net::SocketAddr, dir: &Path, broker_port: u16) -> PathBuf {
    edge_config_with(plant, dir, &format!("mqtt://127.0.0.1:{broker_port}"), "")
}

/// An edge syncing to `url`; `extra` lines go into `[sync]`.
fn edge_config_with(plant: std::net::SocketAddr, dir: &Path, url: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("node.key"), KEY).unwrap();
    std::fs::write(dir.join("mqtt.pass"), PASSWORD).unwrap();
    let mut text = apos::demo::edge_config(plant, &dir.join("history.db"));
    text += &format!(
        "\n[sync]\nbroker = \"{url}\"\n{extra}user = \"{SITE}.{NODE}\"\npassword_file = \"mqtt.pass\"\n\
         key_file = \"node.key\"\nwindows = [\"1s\", \"5s\"]\ngrace = \"300ms\"\nresend_after = \"2s\"\nstatus_interval = \"1s\"\n"
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_edge(config: &Path) -> Proc {
    let mut cmd = Command::new(bin("apos-edge"));
    cmd.args(["run", "--config"]).arg(config);
    cmd.env("RUST_LOG", "info");
    Proc::spawn(cmd)
}

pub(crate) fn edge_db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("history.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

pub(crate) fn outbox_depth(dir: &Path) -> i64 {
    edge_db(dir)
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap_or(-1)
}

/// Batches sealed and already deleted from the outbox (acknowledged).
fn acknowledged(dir: &Path) -> i64 {
    let depth = outbox_depth(dir);
    if depth < 0 { 0 } else { sealed(dir) - depth }
}

pub(crate) fn sealed(dir: &Path) -> i64 {
    edge_db(dir)
        .query_row("SELECT last_seq FROM outbox_state", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Checksum of every window the edge queued for the hub.
fn edge_checksum(dir: &Path) -> Checksum {
    edge_checksum_of(dir, SITE, NODE)
}

/// Checksum of every window the edge `site`/`node` in `dir` queued.
pub(crate) fn edge_checksum_of(dir: &Path, site: &str, node: &str) -> Checksum {
    let c = edge_db(dir);
    let mut st = c
        .prepare(
            "SELECT t.name, a.width_ms, a.start_ms, a.count, a.good, a.min, a.max, a.mean, a.twa, a.last
             FROM aggregates a JOIN tags t ON t.id = a.tag_id WHERE a.seq IS NOT NULL",
        )
        .unwrap();
    let mut sum = Checksum::default();
    let rows = st
        .query_map([], |r| {
            let f = |i: usize| -> rusqlite::Result<f64> {
                Ok(r.get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN))
            };
            Ok((
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
                Window {
                    tag: r.get(0)?,
                    count: r.get(3)?,
                    good: r.get(4)?,
                    min: f(5)?,
                    max: f(6)?,
                    mean: f(7)?,
                    twa: f(8)?,
                    last: f(9)?,
                },
            ))
        })
        .unwrap();
    for r in rows {
        let (width, start, w) = r.unwrap();
        sum.add(window_digest(site, node, width, start, &w));
    }
    sum
}

/// The hub's checksum, read with `apos-hub checksum` (the hub must be stopped:
/// DuckDB admits one process per file).
fn hub_checksum(h: &HubSetup) -> Checksum {
    hub_checksum_of(&h.db, SITE, NODE)
}

/// The checksum of `site`/`node` in the hub database `db` (hub stopped).
pub(crate) fn hub_checksum_of(db: &Path, site: &str, node: &str) -> Checksum {
    let out = Command::new(bin("apos-hub"))
        .args(["checksum", "--site", site, "--node", node, "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut c = Checksum::default();
    for part in text.split_whitespace() {
        if let Some(v) = part.strip_prefix("windows=") {
            c.windows = v.parse().unwrap();
        }
        if let Some(v) = part.strip_prefix("sum=") {
            c.sum = u64::from_str_radix(v, 16).unwrap();
        }
    }
    c
}

async fn plant() -> (plant::PlantHandle, CancellationToken) {
    let cancel = CancellationToken::new();
    let p = plant::spawn_demo_plant("127.0.0.1:0".parse().unwrap(), 7, 10.0, cancel.clone())
        .await
        .unwrap();
    (p, cancel)
}

/// Stop the source, let the edge drain its outbox, stop both, compare.
async fn drain_and_compare(
    plant_cancel: CancellationToken,
    edge_dir: &Path,
    mut edge: Proc,
    mut hub: Proc,
    h: &HubSetup,
) {
    plant_cancel.cancel();
    // Windows stop once every tag's last value stopped holding (bad quality).
    let mut last = -1;
    let mut stable = 0;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = sealed(edge_dir);
        stable = if s == last { stable + 1 } else { 0 };
        last = s;
        if stable >= 6 && outbox_depth(edge_dir) == 0 {
            break;
        }
    }
    assert_eq!(
        outbox_depth(edge_dir),
        0,
        "outbox drained\nedge:\n{}\nhub:\n{}",
        edge.log(),
        hub.log()
    );
    edge.stop();
    hub.stop();
    let produced = edge_checksum(edge_dir);
    assert!(produced.windows > 50, "{produced:?}");
    let stored = hub_checksum(h);
    assert_eq!(
        stored, produced,
        "every window the edge produced is in DuckDB exactly once"
    );
    let _ = &h.dir;
}

/// Faults 2 and 3 with the embedded broker: the hub (and its broker) is
/// killed with -9 mid-ingest and restarted, the edge is killed with -9
/// repeatedly during sync; then every window is in DuckDB exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_reaches_duckdb_once_through_kill_9_of_hub_and_edge() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_of_hub_and_edge(dir.path(), None).await;
}

/// Fault 4 for faults 2 and 3: the same through an external mosquitto,
/// which stays up while the hub and the edge die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_reaches_duckdb_once_through_kill_9_with_mosquitto() {
    let Some(mosq) = which("mosquitto") else {
        require_peer("mosquitto (Debian package mosquitto, installed by scripts/test.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mport, start_mosquitto) = mosquitto(&mosq, dir.path());
    let broker = start_mosquitto();
    wait_listening(mport, &broker).await;
    kill_9_of_hub_and_edge(dir.path(), Some(mport)).await;
}

async fn kill_9_of_hub_and_edge(dir: &Path, external: Option<u16>) {
    let h = hub_setup(&dir.join("hub"), external);
    let (p, plant_cancel) = plant().await;
    let edge_dir = dir.join("edge");
    let cfg = edge_config(p.addr, &edge_dir, h.port);
    let mut hub = start_hub(&h);
    let mut edge = start_edge(&cfg);
    first_acks(&edge_dir, &edge, &hub).await;
    // The hub dies mid-ingest; the edge keeps collecting into its outbox.
    hub.kill9();
    let before = sealed(&edge_dir);
    eventually(
        "edge collects while the hub is down",
        Duration::from_secs(30),
        || sealed(&edge_dir) >= before + 5,
    )
    .await;
    assert!(outbox_depth(&edge_dir) >= 5, "batches wait in the outbox");
    hub = start_hub(&h);
    // The edge dies with -9 three times while it syncs the backlog.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        edge.kill9();
        edge = start_edge(&cfg);
    }
    drain_and_compare(plant_cancel, &edge_dir, edge, hub, &h).await;
}

/// Wait up to 60 s for the first 3 batches to be acknowledged; on timeout
/// fail with both logs and the outbox's state.
async fn first_acks(edge_dir: &Path, edge: &Proc, hub: &Proc) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acknowledged(edge_dir) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "first batches acknowledged within 60 s: sealed {}, outbox {}\nedge:\n{}\nhub:\n{}",
            sealed(edge_dir),
            outbox_depth(edge_dir),
            edge.tail(60),
            hub.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fail loudly, with the broker's log, if nothing listens on `port` soon.
async fn wait_listening(port: u16, broker: &Proc) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mosquitto is not listening on {port}:\n{}", broker.log());
}

/// A mosquitto config on a free loopback port, and how to start it.
fn mosquitto(mosq: &Path, dir: &Path) -> (u16, impl Fn() -> Proc) {
    let mport = free_port();
    let mconf = dir.join("mosquitto.conf");
    std::fs::write(
        &mconf,
        format!("listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let mosq = mosq.to_path_buf();
    (mport, move || {
        let mut cmd = Command::new(&mosq);
        cmd.arg("-c").arg(&mconf);
        Proc::spawn(cmd)
    })
}

/// Fault 1 and 4: an external mosquitto broker (Debian package), down for
/// 60 s while the edge collects; after it returns every window is in DuckDB
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_s_mosquitto_outage_loses_nothing_and_duplicates_nothing() {
    let Some(mosq) = which("mosquitto") else {
        require_peer("mosquitto (Debian package mosquitto, installed by scripts/test.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mport, start_mosquitto) = mosquitto(&mosq, dir.path());
    let mut broker = start_mosquitto();
    wait_listening(mport, &broker).await;
    let h = hub_setup(&dir.path().join("hub"), Some(mport));
    let (p, plant_cancel) = plant().await;
    let edge_dir = dir.path().join("edge");
    let cfg = edge_config(p.addr, &edge_dir, mport);
    let hub = start_hub(&h);
    let edge = start_edge(&cfg);
    first_acks(&edge_dir, &edge, &hub).await;
    broker.kill9();
    let before = sealed(&edge_dir);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        sealed(&edge_dir) >= before + 40,
        "the edge kept collecting: {} → {}",
        before,
        sealed(&edge_dir)
    );
    assert!(outbox_depth(&edge_dir) >= 40);
    let broker = start_mosquitto();
    wait_listening(mport, &broker).await;
    drain_and_compare(plant_cancel, &edge_dir, edge, hub, &h).await;
}

/// MQTT over TLS, both ways the hub can run: the embedded broker's TLS
/// listener, and an external mosquitto's TLS listener (the hub a TLS client
/// too). Edges verify the broker against the test CA; every window arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_runs_over_tls_with_the_embedded_broker_and_with_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::tls::test_pki(&dir.path().join("pki"));
    let extra = format!("ca_file = {:?}\n", ca.display().to_string());

    // Embedded rumqttd with TLS.
    let port = free_port();
    let h = hub_setup_with(
        &dir.path().join("hub-embedded"),
        port,
        &format!(
            "mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let (p, plant_cancel) = plant().await;
    let edge_dir = dir.path().join("edge-embedded");
    let cfg = edge_config_with(
        p.addr,
        &edge_dir,
        &format!("mqtts://127.0.0.1:{port}"),
        &extra,
    );
    let hub = start_hub(&h);
    let edge = start_edge(&cfg);
    eventually(
        "batches acknowledged over TLS (embedded)",
        Duration::from_secs(60),
        || acknowledged(&edge_dir) >= 3,
    )
    .await;
    drain_and_compare(plant_cancel, &edge_dir, edge, hub, &h).await;

    // mosquitto with TLS; the hub connects with mqtts:// and ca_file too.
    let Some(mosq) = which("mosquitto") else {
        require_peer("mosquitto (Debian package mosquitto, installed by scripts/test.sh)");
        return;
    };
    let mport = free_port();
    let mconf = dir.path().join("mosquitto-tls.conf");
    std::fs::write(
        &mconf,
        format!(
            // `user root`: started as root, mosquitto would otherwise switch
            // to its own user, which cannot read the test's private files
            // (ignored when not root).
            "listener {mport} 127.0.0.1\ncertfile {}\nkeyfile {}\nallow_anonymous true\npersistence false\nuser root\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&mosq);
    cmd.arg("-c").arg(&mconf);
    let broker = Proc::spawn(cmd);
    wait_listening(mport, &broker).await;
    let h = hub_setup_with(
        &dir.path().join("hub-mosquitto"),
        mport,
        &format!(
            "mode = \"external\"\nurl = \"mqtts://127.0.0.1:{mport}\"\nca_file = {:?}\n",
            ca.display().to_string()
        ),
    );
    let (p, plant_cancel) = plant().await;
    let edge_dir = dir.path().join("edge-mosquitto");
    let cfg = edge_config_with(
        p.addr,
        &edge_dir,
        &format!("mqtts://127.0.0.1:{mport}"),
        &extra,
    );
    let hub = start_hub(&h);
    let edge = start_edge(&cfg);
    eventually(
        "batches acknowledged over TLS (mosquitto)",
        Duration::from_secs(60),
        || acknowledged(&edge_dir) >= 3,
    )
    .await;
    drain_and_compare(plant_cancel, &edge_dir, edge, hub, &h).await;
}

/// A TCP relay to `127.0.0.1:upstream` that holds the broker's first answer
/// on each connection (the CONNACK) for `delay`. Returns its port.
async fn slow_connack_relay(upstream: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut br, mut bw) = broker.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut bw).await });
                let mut buf = vec![0u8; 64 * 1024];
                let mut first = true;
                loop {
                    let n = match br.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if first {
                        tokio::time::sleep(delay).await;
                        first = false;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    port
}

/// A broker that takes 2 s to answer CONNECT (a loaded machine, the hub's
/// gate handing a killed node's session over) is still connected to.
/// Reproduces a CI failure: the edge polled rumqttc's event loop inside a
/// `select!` beside a 200 ms tick, so every login slower than the tick was
/// abandoned and retried, silently, and the outbox never drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_connects_to_a_broker_slow_to_answer_connect() {
    let Some(mosq) = which("mosquitto") else {
        require_peer("mosquitto (Debian package mosquitto, installed by scripts/test.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mport, start_mosquitto) = mosquitto(&mosq, dir.path());
    let broker = start_mosquitto();
    wait_listening(mport, &broker).await;
    let relay = slow_connack_relay(mport, Duration::from_secs(2)).await;
    let h = hub_setup(&dir.path().join("hub"), Some(mport));
    let (p, plant_cancel) = plant().await;
    let edge_dir = dir.path().join("edge");
    let cfg = edge_config(p.addr, &edge_dir, relay);
    let hub = start_hub(&h);
    let edge = start_edge(&cfg);
    first_acks(&edge_dir, &edge, &hub).await;
    drain_and_compare(plant_cancel, &edge_dir, edge, hub, &h).await;
}
