//! Signed messages with values that broke the hub: a window width no
//! column could hold (every commit failed, for every node, until a
//! restart, and then again), sequence numbers of 2^63 and 10^12, a status
//! timestamp past the year 9999, a replayed status. Through the real
//! broker and ingest, then `apos-hub nodes` on the result.

use std::time::{Duration, Instant};

use protocol::v1::{Ack, Batch, Body, Message, Status, Window, WindowSet};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::support::{KEY_A, KEY_B, batch, free_port, hub_config, options};

const NOW: i64 = 1_800_000_000_000;

fn aggregates(seq: u64, width_ms: u32) -> Message {
    Message::Batch(Batch {
        seq,
        created_ms: NOW,
        body: Body::Aggregates(vec![WindowSet {
            width_ms,
            start_ms: NOW,
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

fn status(ts_ms: i64, oldest_unacked_ms: Option<i64>) -> Message {
    Message::Status(Status {
        ts_ms,
        software_version: "test".into(),
        started_ms: NOW,
        outbox_batches: 0,
        outbox_bytes: 0,
        oldest_unacked_ms,
        last_seq: 0,
        dropped_batches: 0,
    })
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's client that collects the acknowledgements it receives.
async fn node(
    port: u16,
    user: &str,
    pass: &str,
) -> (AsyncClient, std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
    let o: MqttOptions = options(port, user, Some((user, pass)));
    let (c, mut el) = AsyncClient::new(o, 100);
    let (site, n) = user.split_once('.').unwrap();
    let key = NodeKey::new(if n == "a" { KEY_A } else { KEY_B }.as_bytes()).unwrap();
    let ack_topic = Topic::new(site, n, Kind::Ack).unwrap();
    c.subscribe(ack_topic.to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = acked.clone();
    tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev
                && let Ok(Message::Ack(Ack { ranges })) =
                    protocol::envelope::open(&ack_topic, &p.payload, &key, 1 << 20)
            {
                let mut s = sink.lock().unwrap();
                for r in ranges {
                    s.extend(r.first..=r.last);
                }
            }
        }
    });
    (c, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_values_out_of_range_cannot_stop_the_hub() {
    crate::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = hub::config::load(&hub_config(dir.path(), port, "", 100_000)).unwrap();
    let db = cfg.storage_path.clone();
    let cancel = CancellationToken::new();
    let h = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
    assert!(h.wait_ready(Duration::from_secs(10)).await);
    let before = hub::metrics::snapshot();
    let key_a = NodeKey::new(KEY_A.as_bytes()).unwrap();
    let key_b = NodeKey::new(KEY_B.as_bytes()).unwrap();
    let ta = Topic::new("s", "a", Kind::Batch).unwrap();
    let tb = Topic::new("s", "b", Kind::Batch).unwrap();
    let sa = Topic::new("s", "a", Kind::Status).unwrap();
    let (a, a_acked) = node(port, "s.a", "pa").await;
    let (b, b_acked) = node(port, "s.b", "pb").await;
    let send = |c: &AsyncClient, t: &Topic, m: &Message, k: &NodeKey| {
        let bytes = protocol::envelope::seal(t, m, k).unwrap();
        let (c, t) = (c.clone(), t.to_string());
        async move { c.publish(t, QoS::AtLeastOnce, false, bytes).await.unwrap() }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The batch that stopped all storage, then normal traffic from both.
    send(&a, &ta, &aggregates(1, 3_000_000_000), &key_a).await;
    send(&a, &ta, &aggregates(2, 10_000), &key_a).await;
    send(&b, &tb, &batch(1), &key_b).await;
    send(&b, &tb, &batch(2), &key_b).await;
    // Sequence numbers out of range, and a large valid one.
    send(&a, &ta, &aggregates(1 << 63, 10_000), &key_a).await;
    send(&a, &ta, &aggregates(0, 10_000), &key_a).await;
    send(&a, &ta, &aggregates(1_000_000_000_000, 10_000), &key_a).await;
    wait_for(
        "the valid batches acknowledged",
        Duration::from_secs(20),
        || {
            let a = a_acked.lock().unwrap();
            let b = b_acked.lock().unwrap();
            a.contains(&1) && a.contains(&2) && a.contains(&1_000_000_000_000) && b.contains(&2)
        },
    )
    .await;
    let m = hub::metrics::snapshot();
    assert!(
        m.batches_quarantined - before.batches_quarantined >= 3,
        "{m:?}"
    );
    assert!(
        !a_acked
            .lock()
            .unwrap()
            .iter()
            .any(|s| *s == 0 || *s == 1 << 63),
        "an out-of-range seq is kept, not acknowledged"
    );
    // Statuses: a valid one, the same again (a replay), one from the year
    // 11,000 (it panicked `apos-hub nodes`).
    send(&a, &sa, &status(NOW, None), &key_a).await;
    send(&a, &sa, &status(NOW + 1000, Some(NOW)), &key_a).await;
    send(&a, &sa, &status(NOW, None), &key_a).await;
    send(
        &a,
        &sa,
        &status(NOW + 2000, Some(300_000_000_000_000)),
        &key_a,
    )
    .await;
    wait_for("statuses judged", Duration::from_secs(10), || {
        let m = hub::metrics::snapshot();
        m.status_stale > before.status_stale && m.rejected_invalid > before.rejected_invalid
    })
    .await;
    cancel.cancel();
    h.join().await.unwrap();

    // What an operator runs next: it completes, promptly, and says what
    // happened.
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apos-hub"))
        .args(["nodes", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(text.contains("quarantine    3 batches"), "{text}");
    assert!(text.contains("width_ms"), "{text}");
    assert!(text.contains("highest seq 1000000000000"), "{text}");
    let store = hub::store::Store::open(&db).unwrap();
    let a = store
        .nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.node == "a")
        .unwrap();
    assert_eq!(
        a.oldest_unacked_ms,
        Some(NOW),
        "the valid status, not the replay nor the invalid one"
    );
    assert_eq!(store.windows("s", "b").unwrap(), 2, "B was never held up");
}
