//! The mosquitto configuration and ACL that `docs/hub.md` gives, run as
//! written (only paths and the port filled in): a node publishes only its
//! own topics, reads only its own acknowledgements, and cannot take
//! another's session; the hub, an ordinary client, stores what is allowed.
//! The configuration is read from the document, so the two cannot drift.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio_util::sync::CancellationToken;

use crate::support::{KEY_A, KEY_B, batch, free_port};

/// The `# /etc/mosquitto/conf.d/apos.conf` and `# /etc/mosquitto/apos.acl`
/// parts of the documented block.
fn documented() -> (String, String) {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/hub.md"))
        .unwrap();
    let block = doc
        .split("```text\n")
        .find(|b| b.contains("acl_file"))
        .and_then(|b| b.split("```").next())
        .expect("docs/hub.md has the mosquitto block");
    let (conf, acl) = block
        .split_once("# /etc/mosquitto/apos.acl\n")
        .expect("the block has the ACL part");
    (conf.to_owned(), acl.to_owned())
}

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn tls_client(id: &str, user: &str, pass: &str, port: u16, ca: &Path) -> MqttOptions {
    let mut o = MqttOptions::new(id, "localhost", port);
    o.set_credentials(user, pass);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: std::fs::read(ca).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_mosquitto_acl_confines_each_node() {
    let (Some(mosq), Some(passwd)) = (which("mosquitto"), which("mosquitto_passwd")) else {
        assert!(
            std::env::var("CI").is_err(),
            "mosquitto (Debian package mosquitto) is required under CI"
        );
        eprintln!("SKIPPED: mosquitto missing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::tls::test_pki(&dir.path().join("pki"));
    let port = free_port();
    let (conf, acl) = documented();
    // Fill in this test's paths and port; everything else as documented.
    let conf = conf
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace("/etc/mosquitto/certs/broker.crt", &cert.display().to_string())
        .replace("/etc/mosquitto/certs/broker.key", &key.display().to_string())
        .replace("/etc/mosquitto/passwd", &dir.path().join("passwd").display().to_string())
        .replace("/etc/mosquitto/apos.acl", &dir.path().join("apos.acl").display().to_string())
        .replace("# /etc/mosquitto/conf.d/apos.conf\n", "")
        // The tests run as root, with files in a private folder.
        + "user root\npersistence false\n";
    // A second node, with the ACL entry the document prescribes per node.
    let edge1: String = acl
        .split("\n\n")
        .find(|b| b.contains("user plant1.edge1"))
        .unwrap()
        .to_owned();
    let acl = format!("{acl}\n{}\n", edge1.replace("edge1", "edge2"));
    std::fs::write(dir.path().join("apos.acl"), acl).unwrap();
    std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
    let pw = dir.path().join("passwd");
    for (i, (u, p)) in [
        ("apos-hub", "hubpw"),
        ("plant1.edge1", "p1"),
        ("plant1.edge2", "p2"),
    ]
    .iter()
    .enumerate()
    {
        let mut c = Command::new(&passwd);
        if i == 0 {
            c.arg("-c");
        }
        assert!(
            c.arg("-b")
                .arg(&pw)
                .args([u, p])
                .status()
                .unwrap()
                .success()
        );
    }
    let broker = Mosquitto(
        Command::new(&mosq)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "mosquitto did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The hub, as a client of it.
    for (f, v) in [("e1.key", KEY_A), ("e2.key", KEY_B), ("hub.pass", "hubpw")] {
        std::fs::write(dir.path().join(f), v).unwrap();
    }
    std::fs::write(
        dir.path().join("hub.toml"),
        format!(
            "schema_version = 1\n[storage]\npath = \"fleet.duckdb\"\n[broker]\nmode = \"external\"\n\
             url = \"mqtts://localhost:{port}\"\nca_file = {:?}\nuser = \"apos-hub\"\npassword_file = \"hub.pass\"\n\
             [ingest]\ncommit_interval = \"50ms\"\n\
             [[node]]\nsite = \"plant1\"\nnode = \"edge1\"\nkey_file = \"e1.key\"\n\
             [[node]]\nsite = \"plant1\"\nnode = \"edge2\"\nkey_file = \"e2.key\"\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    let cfg = hub::config::load(&dir.path().join("hub.toml")).unwrap();
    let db = cfg.storage_path.clone();
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(
        h.wait_ready(Duration::from_secs(10)).await,
        "hub not subscribed"
    );

    let t = |node: &str, kind| Topic::new("plant1", node, kind).unwrap();
    let key1 = NodeKey::new(KEY_A.as_bytes()).unwrap();
    // edge1 on its own client: publishes its batch and one on edge2's topic,
    // subscribes to its own acks and to edge2's.
    let (e1, mut el1) = AsyncClient::new(
        tls_client("plant1.edge1", "plant1.edge1", "p1", port, &ca),
        100,
    );
    e1.subscribe(t("edge1", Kind::Ack).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    e1.subscribe(t("edge2", Kind::Ack).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let own = protocol::envelope::seal(&t("edge1", Kind::Batch), &batch(1), &key1).unwrap();
    e1.publish(
        t("edge1", Kind::Batch).to_string(),
        QoS::AtLeastOnce,
        false,
        own,
    )
    .await
    .unwrap();
    // Signed for edge2's topic with edge1's key: only the ACL stops it
    // before the hub's signature check would.
    let cross = protocol::envelope::seal(&t("edge2", Kind::Batch), &batch(1), &key1).unwrap();
    e1.publish(
        t("edge2", Kind::Batch).to_string(),
        QoS::AtLeastOnce,
        false,
        cross,
    )
    .await
    .unwrap();
    let mut subacks = Vec::new();
    let mut acked = false;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && !(acked && subacks.len() == 2) {
        match tokio::time::timeout(Duration::from_millis(500), el1.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(s)))) => subacks.push(s.return_codes),
            Ok(Ok(Event::Incoming(Packet::Publish(p))))
                if p.topic == t("edge1", Kind::Ack).to_string() =>
            {
                acked = true
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("edge1 lost its connection: {e}"),
        }
    }
    assert!(acked, "edge1 got the hub's ack on its own topic");
    // mosquitto 2.0 grants every SUBSCRIBE but delivers only what the ACL
    // allows: edge1 must never see an ack on edge2's topic (below).
    assert_eq!(subacks.len(), 2, "{subacks:?}");
    // edge2 logs in with edge1's client id: mosquitto makes its client id
    // its user name, so edge1 keeps its session.
    let (e2, mut el2) = AsyncClient::new(
        tls_client("plant1.edge1", "plant1.edge2", "p2", port, &ca),
        100,
    );
    let key2 = NodeKey::new(KEY_B.as_bytes()).unwrap();
    let m2 = protocol::envelope::seal(&t("edge2", Kind::Batch), &batch(1), &key2).unwrap();
    e2.publish(
        t("edge2", Kind::Batch).to_string(),
        QoS::AtLeastOnce,
        false,
        m2,
    )
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut e2_acked = false;
    e2.subscribe(t("edge2", Kind::Ack).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    while Instant::now() < end && !e2_acked {
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_millis(500), el2.poll()).await
        {
            e2_acked = p.topic == t("edge2", Kind::Ack).to_string();
        }
        // edge1 stays connected and sees nothing of edge2's.
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(10), el1.poll()).await {
            match r {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    assert_ne!(
                        p.topic,
                        t("edge2", Kind::Ack).to_string(),
                        "edge1 read edge2's ack"
                    )
                }
                Ok(_) => {}
                Err(e) => panic!("edge1 was disconnected by edge2's login: {e}"),
            }
        }
    }
    assert!(e2_acked, "edge2's own batch acknowledged");
    cancel.cancel();
    h.join().await.unwrap();
    drop(broker);
    let store = hub::store::Store::open(&db).unwrap();
    let batches: Vec<(String, u64)> = store
        .nodes()
        .unwrap()
        .iter()
        .map(|n| (n.node.clone(), n.batches))
        .collect();
    // edge2's one batch is its own; edge1's cross-topic one was not stored.
    assert_eq!(
        batches,
        vec![("edge1".to_string(), 1), ("edge2".to_string(), 1)]
    );
}
