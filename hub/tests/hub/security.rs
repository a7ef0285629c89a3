//! Fault test 5: an unauthorized client, wrong credentials, node A
//! publishing as node B, malformed and oversized payloads are all refused
//! and counted; the hub keeps running and every valid batch is stored once.

use std::time::Duration;

use protocol::v1::{Batch, Body, Message, Window, WindowSet};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

const KEY_A: &str = "key-of-node-a-0123456789";
const KEY_B: &str = "key-of-node-b-9876543210";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn batch(seq: u64) -> Message {
    Message::Batch(Batch {
        seq,
        created_ms: 1,
        body: Body::Aggregates(vec![WindowSet {
            width_ms: 1000,
            start_ms: seq as i64 * 1000,
            windows: vec![Window {
                tag: "t".into(),
                count: 1,
                good: 1,
                min: 1.0,
                max: 1.0,
                mean: 1.0,
                twa: 1.0,
                last: 1.0,
            }],
        }]),
    })
}

/// Connect; `Ok(client)` once CONNACK arrives, `Err` if the broker closes.
async fn connect(port: u16, id: &str, creds: Option<(&str, &str)>) -> Result<AsyncClient, String> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    let (client, mut el) = AsyncClient::new(o, 100);
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    return if c.code == rumqttc::ConnectReturnCode::Success {
                        Ok(())
                    } else {
                        Err(format!("{:?}", c.code))
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("timeout".into()));
    r?;
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intruders_and_garbage_are_refused_and_counted_and_valid_data_is_stored() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    for (f, v) in [
        ("a.key", KEY_A),
        ("b.key", KEY_B),
        ("a.pass", "pa"),
        ("b.pass", "pb"),
    ] {
        std::fs::write(dir.path().join(f), v).unwrap();
    }
    let port = free_port();
    let cfg_path = dir.path().join("hub.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "schema_version = 1\n[storage]\npath = \"fleet.duckdb\"\n[broker]\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\nmax_message_size = 100000\ncommit_interval = \"50ms\"\n\
             [[node]]\nsite = \"s\"\nnode = \"a\"\nkey_file = \"a.key\"\npassword_file = \"a.pass\"\n\
             [[node]]\nsite = \"s\"\nnode = \"b\"\nkey_file = \"b.key\"\npassword_file = \"b.pass\"\n"
        ),
    )
    .unwrap();
    let cfg = hub::config::load(&cfg_path).unwrap();
    let db = cfg.storage_path.clone();
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(
        h.wait_ready(Duration::from_secs(10)).await,
        "hub ingest never subscribed"
    );
    let before = hub::metrics::snapshot();

    // No credentials, wrong password, unknown user: refused at CONNECT
    // (rumqttd refuses a CONNECT without login before asking the hub, so
    // only the last three are counted by the hub).
    assert!(connect(port, "anon", None).await.is_err());
    assert!(connect(port, "wrong", Some(("s.a", "nope"))).await.is_err());
    assert!(connect(port, "who", Some(("s.zz", "pa"))).await.is_err());
    // rumqttd mishandles '/' in client ids (upstream #1062): refused.
    assert!(connect(port, "bad/id", Some(("s.a", "pa"))).await.is_err());

    // Node A, logged in properly, misbehaves in every way it can.
    let a = connect(port, "node-a", Some(("s.a", "pa"))).await.unwrap();
    let key_a = NodeKey::new(KEY_A.as_bytes()).unwrap();
    let topic_a = Topic::new("s", "a", Kind::Batch).unwrap();
    let topic_b = Topic::new("s", "b", Kind::Batch).unwrap();
    // A's batch on B's topic, signed with A's key: refused (signature).
    let forged = protocol::envelope::seal(&topic_b, &batch(1), &key_a).unwrap();
    a.publish(topic_b.to_string(), QoS::AtLeastOnce, false, forged)
        .await
        .unwrap();
    // A's own batch re-published on B's topic: refused (signature covers the topic).
    let real = protocol::envelope::seal(&topic_a, &batch(1), &key_a).unwrap();
    a.publish(topic_b.to_string(), QoS::AtLeastOnce, false, real.clone())
        .await
        .unwrap();
    // Garbage, a truncated message, an unknown node, a bad topic, too large.
    a.publish(
        topic_a.to_string(),
        QoS::AtLeastOnce,
        false,
        b"hello".to_vec(),
    )
    .await
    .unwrap();
    a.publish(
        topic_a.to_string(),
        QoS::AtLeastOnce,
        false,
        real[..real.len() - 5].to_vec(),
    )
    .await
    .unwrap();
    a.publish(
        "apos/v1/s/ghost/batch",
        QoS::AtLeastOnce,
        false,
        real.clone(),
    )
    .await
    .unwrap();
    a.publish("apos/v1/s/a.b/batch", QoS::AtLeastOnce, false, real.clone())
        .await
        .unwrap();
    // And valid batches, one of them twice.
    for seq in [1, 2, 2, 3] {
        let m = protocol::envelope::seal(&topic_a, &batch(seq), &key_a).unwrap();
        a.publish(topic_a.to_string(), QoS::AtLeastOnce, false, m)
            .await
            .unwrap();
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = hub::metrics::snapshot();
        if m.batches_new - before.batches_new >= 3
            && m.rejected_signature - before.rejected_signature >= 3
            && m.rejected_malformed - before.rejected_malformed >= 1
            && m.rejected_unknown_node - before.rejected_unknown_node >= 1
            && m.rejected_topic - before.rejected_topic >= 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters: {m:?} (before {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = hub::metrics::snapshot();
    assert!(m.refused_logins - before.refused_logins >= 3, "{m:?}");
    assert_eq!(m.batches_duplicate - before.batches_duplicate, 1, "{m:?}");
    assert_eq!(m.batches_new - before.batches_new, 3, "{m:?}");

    // Oversized: the embedded broker enforces the size limit itself and
    // closes the sender's connection; the hub never sees the message.
    let big = {
        let (c, mut el) = AsyncClient::new(
            {
                let mut o = MqttOptions::new("node-a-big", "127.0.0.1", port);
                o.set_credentials("s.a", "pa");
                o.set_max_packet_size(16 << 20, 16 << 20);
                o
            },
            10,
        );
        c.publish(
            topic_a.to_string(),
            QoS::AtLeastOnce,
            false,
            vec![0u8; 200_000],
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return "acknowledged",
                    Ok(_) => {}
                    Err(_) => return "closed",
                }
            }
        })
        .await
        .unwrap_or("timeout")
    };
    assert_eq!(
        big, "closed",
        "an oversized publish must cost the sender its connection"
    );
    // The hub still works: node B delivers normally afterwards.
    let b = connect(port, "node-b", Some(("s.b", "pb"))).await.unwrap();
    let key_b = NodeKey::new(KEY_B.as_bytes()).unwrap();
    let m = protocol::envelope::seal(&topic_b, &batch(1), &key_b).unwrap();
    b.publish(topic_b.to_string(), QoS::AtLeastOnce, false, m)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hub::metrics::snapshot().batches_new - before.batches_new < 4 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    h.join().await.unwrap();

    let store = hub::store::Store::open(&db).unwrap();
    let nodes = store.nodes().unwrap();
    let batches: Vec<(String, u64)> = nodes.iter().map(|n| (n.node.clone(), n.batches)).collect();
    assert_eq!(batches, vec![("a".to_string(), 3), ("b".to_string(), 1)]);
    assert_eq!(
        store.windows("s", "a").unwrap(),
        3,
        "each valid window once"
    );
}
