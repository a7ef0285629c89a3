//! Fault behaviour against pymodbus: exceptions, a killed peer, dead
//! devices (one that never answers, one that refuses) among live ones.

use std::time::{Duration, Instant};

use drivers::{Quality, Reason};
use serde_json::json;

use crate::support::{DriverRun, ModbusPeer, config_header, eventually, tag, tcp_device};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_marks_only_its_tags_and_the_rest_keep_flowing() {
    let spec = json!({"transport": "tcp", "devices": [{
        "unit": 1,
        "holding": [[0, [11, 12]]],
        "input": [[0, [21]]],
        "exception": {"input": 2},
    }]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("plc", peer.port.unwrap(), 1, "100ms", "1s")
        + &tag("ok_a", "plc", "holding", 0, "u16", "")
        + &tag("ok_b", "plc", "holding", 1, "u16", "")
        + &tag("broken", "plc", "input", 0, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("good values flowing", Duration::from_secs(10), || {
        run.good_count("ok_a") >= 10
    })
    .await;
    let bad = run.samples_of("broken");
    assert!(!bad.is_empty());
    assert!(
        bad.iter()
            .all(|s| s.quality == Quality::Bad(Reason::Exception(2)) && s.value.is_none()),
        "{bad:?}"
    );
    assert_eq!(
        bad.len(),
        1,
        "a persistent bad quality is sent once, on the transition"
    );
    assert!(run.good_count("ok_b") >= 10);
    assert!(
        run.handle("plc").status().connected,
        "an exception is an answer: still connected"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_turns_tags_bad_and_reading_recovers_after_restart() {
    let spec = json!({"transport": "tcp", "devices": [{"unit": 1, "holding": [[0, [5, 6]]]}]});
    let Some(mut peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("plc", peer.port.unwrap(), 1, "100ms", "500ms")
        + &tag("a", "plc", "holding", 0, "u16", "")
        + &tag("b", "plc", "holding", 1, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("reading", Duration::from_secs(10), || {
        run.good_count("a") >= 5
    })
    .await;

    peer.kill();
    eventually("quality goes bad", Duration::from_secs(10), || {
        run.latest("a").is_some_and(|s| {
            matches!(
                s.quality,
                Quality::Bad(Reason::ConnectionLost | Reason::Timeout)
            )
        })
    })
    .await;
    assert!(!run.handle("plc").status().connected);
    let before = run.good_count("a");

    peer.restart();
    eventually("reading recovers", Duration::from_secs(15), || {
        run.good_count("a") >= before + 5
    })
    .await;
    let b = run.latest("b").unwrap();
    assert_eq!(b.quality, Quality::Good);
    assert_eq!(b.value, Some(drivers::Value::U64(6)));
    // Exactly one bad transition per tag for the outage (not one per poll).
    let bad_a = run
        .samples_of("a")
        .iter()
        .filter(|s| !s.quality.is_good())
        .count();
    assert!(
        (1..=2).contains(&bad_a),
        "{bad_a} bad samples for one outage"
    );
    run.stop().await;
}

/// Accepts connections and never answers: the worst kind of dead device.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

/// A port where nothing listens: connections are refused at once.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_devices_do_not_slow_the_live_ones() {
    let spec = json!({"transport": "tcp", "devices": [{"unit": 1, "holding": [[0, [1]]]}, {"unit": 2, "holding": [[0, [2]]]}]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let port = peer.port.unwrap();
    let (dead_port, _hole) = black_hole().await;
    let refused_port = closed_port().await;
    let interval = Duration::from_millis(100);
    let cfg = config_header()
        + &tcp_device("live1", port, 1, "100ms", "2s")
        + &tcp_device("live2", port, 2, "100ms", "2s")
        + &tcp_device("dead", dead_port, 1, "100ms", "2s")
        + &tcp_device("gone", refused_port, 1, "100ms", "2s")
        + &tag("v1", "live1", "holding", 0, "u16", "")
        + &tag("v2", "live2", "holding", 0, "u16", "")
        + &tag("vd", "dead", "holding", 0, "u16", "")
        + &tag("vg", "gone", "holding", 0, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("live devices reading", Duration::from_secs(10), || {
        run.good_count("v1") > 0 && run.good_count("v2") > 0
    })
    .await;

    let (c1, c2) = (
        run.handle("live1").status().cycles,
        run.handle("live2").status().cycles,
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let elapsed = t0.elapsed();
    let ideal = elapsed.as_secs_f64() / interval.as_secs_f64();
    for (name, before) in [("live1", c1), ("live2", c2)] {
        let st = run.handle(name).status();
        let done = (st.cycles - before) as f64;
        // Each dead request blocks for the full 2 s timeout: if it delayed
        // the live devices, they would manage at most ~2 cycles here.
        assert!(
            done >= 0.5 * ideal,
            "{name}: {done} cycles in {elapsed:?}, ideal {ideal}"
        );
        assert!(
            st.last_cycle.unwrap() < Duration::from_millis(500),
            "{name}: {:?}",
            st.last_cycle
        );
    }
    let dead = run.handle("dead").status();
    assert!(!dead.connected);
    assert_eq!(
        run.latest("vd").map(|s| s.quality),
        Some(Quality::Bad(Reason::Timeout))
    );
    // A refused connection is a lost connection, retried with backoff.
    let gone = run.handle("gone").status();
    assert!(!gone.connected);
    assert!(gone.errors >= 2, "{gone:?}");
    assert_eq!(
        run.samples_of("vg")
            .into_iter()
            .map(|s| s.quality)
            .collect::<Vec<_>>(),
        vec![Quality::Bad(Reason::ConnectionLost)]
    );
    run.stop().await;
}
