//! OPC UA against the Python asyncua server: subscriptions, namespace URIs,
//! cyclic reads, writes, and recovery after the server is killed.

use std::time::Duration;

use drivers::{Quality, Reason, Value, WriteRequest};

use crate::support::{DriverRun, OpcUaPeer, config_header, eventually};

fn config(port: u16, ns: u16, pki: &std::path::Path) -> String {
    let mut s = config_header();
    s += &format!(
        "\n[[device]]\nname = \"ua\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/apos/\"\n\
         security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"100ms\"\ntimeout = \"3s\"\n\
         keep_alive = \"1s\"\nbackoff_initial = \"300ms\"\nbackoff_max = \"2s\"\n",
        pki.display().to_string()
    );
    for (name, node, extra) in [
        (
            "ramp",
            "nsu=urn:apos:test;s=Plant.Ramp",
            "sampling_interval = \"100ms\"",
        ),
        // By index too: this server put our namespace at `ns`.
        ("counter", &*format!("ns={ns};s=Plant.Counter"), ""),
        ("toggle", "nsu=urn:apos:test;s=Plant.Toggle", ""),
        ("name", "nsu=urn:apos:test;s=Plant.Name", ""),
        (
            "sp",
            "nsu=urn:apos:test;s=Plant.Setpoint",
            "mode = \"poll\"\nwritable = true\npoll_group = \"fast\"",
        ),
        ("missing", "nsu=urn:apos:test;s=Plant.NoSuchNode", ""),
    ] {
        s +=
            &format!("\n[[tag]]\nname = \"{name}\"\ndevice = \"ua\"\nnode = \"{node}\"\n{extra}\n");
    }
    s + "\n[poll_groups]\nfast = \"200ms\"\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_values_arrive_writes_land_and_a_restart_is_a_visible_gap() {
    let Some(mut peer) = OpcUaPeer::start(0).await else {
        return;
    };
    let port = peer.port;
    let pki = tempfile::tempdir().unwrap();
    let run = DriverRun::start(&config(port, peer.ns, pki.path()));

    eventually("subscribed values", Duration::from_secs(60), || {
        run.good_count("ramp") >= 5
    })
    .await;
    let ramps: Vec<f64> = run
        .samples_of("ramp")
        .iter()
        .filter_map(|s| s.value.as_ref().and_then(Value::as_f64))
        .collect();
    assert!(
        ramps.windows(2).all(|w| w[1] > w[0]),
        "the ramp only rises: {ramps:?}"
    );
    assert!(
        matches!(run.latest("counter").unwrap().value, Some(Value::I64(_))),
        "Int32 → I64"
    );
    assert!(matches!(
        run.latest("toggle").unwrap().value,
        Some(Value::Bool(_))
    ));
    assert_eq!(
        run.latest("name").unwrap().value,
        Some(Value::String("APOS test".into()))
    );
    eventually("polled setpoint", Duration::from_secs(10), || {
        run.good_count("sp") > 0
    })
    .await;
    assert_eq!(run.latest("sp").unwrap().value, Some(Value::F64(42.5)));
    let missing = run.latest("missing").unwrap();
    assert!(
        matches!(&missing.quality, Quality::Bad(Reason::Other(m)) if m.contains("BadNodeIdUnknown")),
        "{missing:?}"
    );

    // A write lands on the server and the cyclic read sees it.
    let h = run.handle("ua");
    h.write(WriteRequest::Tag {
        tag: "sp".into(),
        value: Value::F64(55.25),
    })
    .await
    .unwrap();
    eventually("write read back", Duration::from_secs(10), || {
        run.latest("sp").and_then(|s| s.value) == Some(Value::F64(55.25))
    })
    .await;
    let err = h
        .write(WriteRequest::Tag {
            tag: "ramp".into(),
            value: Value::F64(1.0),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, drivers::WriteError::NotWritable(_)), "{err}");

    // Kill the server: the gap shows as quality.
    peer.kill();
    eventually(
        "bad quality after the server died",
        Duration::from_secs(30),
        || {
            run.latest("ramp")
                .is_some_and(|s| s.quality == Quality::Bad(Reason::ConnectionLost))
        },
    )
    .await;
    let before = run.good_count("ramp");

    // Restart on the same port: data resumes (with new values, no replay).
    let _peer2 = OpcUaPeer::start(port).await.unwrap();
    eventually("data resumes", Duration::from_secs(60), || {
        run.good_count("ramp") >= before + 5
    })
    .await;
    let after: Vec<_> = run.samples_of("ramp");
    let bad_pos = after.iter().rposition(|s| !s.quality.is_good()).unwrap();
    assert!(after[bad_pos + 1..].iter().all(|s| s.quality.is_good()));
    run.stop().await;
}
