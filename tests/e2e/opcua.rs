//! OPC UA against the Python asyncua server: subscriptions, namespace URIs,
//! cyclic reads, writes, and recovery after the server is killed.

use std::time::Duration;

use drivers::{Quality, Reason, Value, WriteRequest};

use crate::support::{DriverRun, NodeOpcUaPeer, OpcUaPeer, bin, config_header, eventually};

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
        matches!(&missing.quality, Quality::Bad(Reason::Status(m)) if m.contains("BadNodeIdUnknown")),
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
    // No sample twice: the "name" string never changes, so across the
    // reconnect its re-sent current value must not be a second sample.
    let mut good_ts: Vec<i64> = after
        .iter()
        .filter(|s| s.quality.is_good())
        .map(|s| s.ts.0)
        .collect();
    let n = good_ts.len();
    good_ts.dedup();
    assert_eq!(good_ts.len(), n, "duplicate ramp timestamps");
    let names: Vec<_> = run
        .samples_of("name")
        .into_iter()
        .filter(|s| s.quality.is_good())
        .collect();
    assert!(
        names.len() <= 2,
        "the constant name was re-sent as new samples: {names:?}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_session_needs_a_trusted_server_certificate_and_the_right_password() {
    let server_pki = tempfile::tempdir().unwrap();
    let users = tempfile::tempdir().unwrap();
    let Some(peer) = OpcUaPeer::start_with(
        0,
        &[
            "--secure",
            "--pki",
            server_pki.path().to_str().unwrap(),
            "--user-cert",
            users.path().to_str().unwrap(),
        ],
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let good_pw = dir.path().join("good.pass");
    let bad_pw = dir.path().join("bad.pass");
    std::fs::write(&good_pw, "s3cret\n").unwrap();
    std::fs::write(&bad_pw, "guess\n").unwrap();
    let cfg = |pw: &std::path::Path| {
        config_header()
            + &format!(
                "\n[[device]]\nname = \"ua\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/apos/\"\n\
                 user = \"apos\"\npassword_file = {:?}\npki_dir = {:?}\npublishing_interval = \"100ms\"\n\
                 timeout = \"10s\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n\
                 \n[[tag]]\nname = \"ramp\"\ndevice = \"ua\"\nnode = \"nsu=urn:apos:test;s=Plant.Ramp\"\n",
                peer.port,
                pw.display().to_string(),
                pki.display().to_string()
            )
    };
    // Secure by default: no security_policy in the config means
    // Basic256Sha256 + SignAndEncrypt, and the server's certificate is not
    // trusted on first use.
    let run = DriverRun::start(&cfg(&good_pw));
    let h = run.handle("ua");
    eventually(
        "untrusted-certificate error",
        Duration::from_secs(90),
        || {
            h.status()
                .last_error
                .is_some_and(|e| e.contains("not trusted"))
        },
    )
    .await;
    let err = h.status().last_error.unwrap();
    assert!(
        err.contains(&pki.join("rejected").display().to_string()),
        "names the folder: {err}"
    );
    assert!(
        err.contains(&pki.join("trusted").display().to_string()),
        "says where to move it: {err}"
    );
    assert_eq!(
        run.good_count("ramp"),
        0,
        "no data from an untrusted server"
    );
    let rejected: Vec<_> = std::fs::read_dir(pki.join("rejected"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        rejected.len(),
        1,
        "the server certificate was saved for review"
    );

    // The integrator reviews it and moves it to trusted/: data flows, encrypted.
    let file = rejected[0].path();
    std::fs::rename(&file, pki.join("trusted").join(file.file_name().unwrap())).unwrap();
    eventually("secure data", Duration::from_secs(60), || {
        run.good_count("ramp") >= 3
    })
    .await;
    run.stop().await;

    // A wrong password is a clear error, not a silent retry loop.
    let run = DriverRun::start(&cfg(&bad_pw));
    let h = run.handle("ua");
    eventually("access denied", Duration::from_secs(60), || {
        h.status()
            .last_error
            .is_some_and(|e| e.contains("rejected the user name or password"))
    })
    .await;
    assert_eq!(run.good_count("ramp"), 0);
    run.stop().await;

    // An X.509 user identity: the certificate the server maps to a user.
    let x509 = |cert: &std::path::Path, key: &std::path::Path| {
        config_header()
            + &format!(
                "\n[[device]]\nname = \"ua\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/apos/\"\n\
                 user_certificate = {:?}\nuser_key = {:?}\npki_dir = {:?}\npublishing_interval = \"100ms\"\n\
                 timeout = \"10s\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n\
                 \n[[tag]]\nname = \"ramp\"\ndevice = \"ua\"\nnode = \"nsu=urn:apos:test;s=Plant.Ramp\"\n",
                peer.port,
                cert.display().to_string(),
                key.display().to_string(),
                pki.display().to_string()
            )
    };
    let run = DriverRun::start(&x509(
        &users.path().join("user_cert.der"),
        &users.path().join("user_key.pem"),
    ));
    eventually("data as an X.509 user", Duration::from_secs(60), || {
        run.good_count("ramp") >= 3
    })
    .await;
    run.stop().await;

    // Any other certificate (here our own application certificate) is
    // refused, and the error names the file.
    let own = pki.join("own").join("cert.der");
    let run = DriverRun::start(&x509(&own, &pki.join("private").join("private.pem")));
    let h = run.handle("ua");
    eventually("user certificate rejected", Duration::from_secs(60), || {
        h.status()
            .last_error
            .is_some_and(|e| e.contains("rejected the user certificate"))
    })
    .await;
    let err = h.status().last_error.unwrap();
    assert!(err.contains(&own.display().to_string()), "{err}");
    assert_eq!(run.good_count("ramp"), 0);
    run.stop().await;
}

/// Browse each of the three test servers (asyncua, node-opcua, and the
/// plant's async-opcua server) from its Objects folder, as an integrator
/// would with `apos-edge opcua browse --csv`, and import the CSV: the
/// configuration must validate (short, valid, unique names; no session
/// diagnostics; no structures) and the tags must read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_csv_of_every_test_server_imports_into_a_config_that_reads() {
    let Some(asyncua) = OpcUaPeer::start(0).await else {
        return;
    };
    let Some(node) = NodeOpcUaPeer::start().await else {
        return;
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let plant =
        apos::plant::spawn_demo_plant("127.0.0.1:0".parse().unwrap(), 7, 10.0, cancel.clone())
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plant_ua = plant
        .serve_opcua(
            "127.0.0.1:0".parse().unwrap(),
            &dir.path().join("server-pki"),
            cancel.clone(),
        )
        .await
        .unwrap();
    let servers = [
        (
            "asyncua",
            format!("opc.tcp://127.0.0.1:{}/apos/", asyncua.port),
            "plant.ramp",
        ),
        (
            "node",
            format!("opc.tcp://127.0.0.1:{}/apos/", node.port),
            "plant.ramp",
        ),
        (
            "plant",
            format!("opc.tcp://127.0.0.1:{}/", plant_ua.port()),
            "plant.heater.outlet_temp",
        ),
    ];
    let pki = dir.path().join("pki");
    let mut cfg = config_header();
    for (name, url, _) in &servers {
        cfg += &format!(
            "\n[[device]]\nname = \"{name}\"\nprotocol = \"opcua\"\nendpoint = \"{url}\"\n\
             security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"200ms\"\ntimeout = \"5s\"\n",
            pki.display().to_string()
        );
    }
    // The integrator's first config: devices only. Browse with it, as the node.
    let node_cfg = dir.path().join("edge.toml");
    std::fs::write(&node_cfg, &cfg).unwrap();
    for (name, url, _) in &servers {
        let csv = dir.path().join(format!("{name}.csv"));
        let out = std::process::Command::new(bin("apos-edge"))
            .args([
                "opcua",
                "browse",
                "--security-policy",
                "None",
                "--endpoint",
                url,
            ])
            .arg("--config")
            .arg(&node_cfg)
            .args(["--device", name, "--csv"])
            .arg(&csv)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&csv).unwrap();
        for line in text.lines().skip(1) {
            let tag = line.split(',').next().unwrap().trim_matches('"');
            assert!(tag.len() <= 64, "{name}: {tag}");
            assert!(
                !line.contains(";g="),
                "{name}: no GUID node (a session's): {line}"
            );
            assert!(
                !line.to_lowercase().contains("sessiondiagnostics"),
                "{name}: {line}"
            );
        }
    }
    // Each CSV imports into a configuration that validates, and reads.
    // (Three whole servers from their Objects folders would share names
    // such as `server.serverstatus.state`; browse from a start object to
    // combine servers, below.)
    for (name, _, probe) in &servers {
        let one = cfg.clone()
            + &format!(
                "\n[[import]]\nfile = {:?}\n",
                dir.path().join(format!("{name}.csv")).display().to_string()
            );
        firmware_config::load_str(&dir.path().join("one.toml"), one.clone())
            .unwrap_or_else(|e| panic!("{name}: the browsed CSV does not import:\n{e}"));
        let run = DriverRun::start(&one);
        eventually(
            &format!("{name}: {probe} reads"),
            Duration::from_secs(60),
            || run.good_count(probe) >= 2,
        )
        .await;
        run.stop().await;
    }
    // From a start object, names begin with its name: two PLCs browsed
    // from their own objects cannot collide.
    let start: firmware_config::NodeRef = "nsu=urn:apos:test;s=Plant".parse().unwrap();
    let parsed = firmware_config::load_str(&node_cfg, cfg.clone()).unwrap();
    let firmware_config::Transport::OpcUa(ep) = &parsed.devices[0].transport else {
        panic!()
    };
    let id = drivers::opcua::pki::OwnIdentity::of_node("test", "e2e");
    let found = drivers::opcua::browse::browse(ep, &id, Some(&start), 2, Duration::from_secs(10))
        .await
        .unwrap();
    let (text, _) = drivers::opcua::browse::csv(&found, "asyncua", Default::default());
    assert!(
        text.contains("\"plant.ramp\",\"asyncua\",\"nsu=urn:apos:test;s=Plant.Ramp\""),
        "{text}"
    );
    let tree = drivers::opcua::browse::tree(&found);
    assert!(
        tree.contains("Ramp  nsu=urn:apos:test;s=Plant.Ramp"),
        "{tree}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stack_node_opcua_subscription_and_write() {
    let Some(peer) = NodeOpcUaPeer::start().await else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let mut cfg = config_header()
        + &format!(
            "\n[[device]]\nname = \"node\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/apos/\"\n\
             security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"100ms\"\ntimeout = \"5s\"\n",
            peer.port,
            pki.path().display().to_string()
        );
    for (name, node, extra) in [
        ("ramp", "Plant.Ramp", "sampling_interval = \"100ms\""),
        ("counter", "Plant.Counter", ""),
        ("sp", "Plant.Setpoint", "writable = true"),
    ] {
        cfg += &format!(
            "\n[[tag]]\nname = \"{name}\"\ndevice = \"node\"\nnode = \"nsu=urn:apos:test:node;s={node}\"\n{extra}\n"
        );
    }
    let run = DriverRun::start(&cfg);
    eventually("node-opcua values", Duration::from_secs(60), || {
        run.good_count("ramp") >= 5
    })
    .await;
    let ramps: Vec<f64> = run
        .samples_of("ramp")
        .iter()
        .filter_map(|s| s.value.as_ref().and_then(Value::as_f64))
        .collect();
    assert!(ramps.windows(2).all(|w| w[1] > w[0]), "{ramps:?}");
    assert!(matches!(
        run.latest("counter").unwrap().value,
        Some(Value::I64(_))
    ));
    assert_eq!(run.latest("sp").unwrap().value, Some(Value::F64(42.5)));
    run.handle("node")
        .write(WriteRequest::Tag {
            tag: "sp".into(),
            value: Value::F64(7.0),
        })
        .await
        .unwrap();
    // node-opcua reports the new value through the subscription.
    eventually("write reported back", Duration::from_secs(10), || {
        run.latest("sp").and_then(|s| s.value) == Some(Value::F64(7.0))
    })
    .await;
    run.stop().await;
}

/// A constrained server states small operation limits and refuses larger
/// calls (BadTooManyOperations / BadTooManyMonitoredItems): the driver reads
/// the limits and batches within them, so every item still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_respect_the_servers_operation_limits() {
    let Some(peer) = NodeOpcUaPeer::start_with(&["--limits"]).await else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let mut cfg = config_header()
        + &format!(
            "\n[[device]]\nname = \"node\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/apos/\"\n\
             security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"100ms\"\ntimeout = \"5s\"\n",
            peer.port,
            pki.path().display().to_string()
        );
    // 14 subscribed items (> 6 per subscription, > 4 per call) and 6 polled
    // ones (> 3 per Read).
    for i in 0..20 {
        let mode = if i >= 14 {
            "mode = \"poll\"\npoll_group = \"fast\""
        } else {
            ""
        };
        cfg += &format!(
            "\n[[tag]]\nname = \"item{i}\"\ndevice = \"node\"\nnode = \"nsu=urn:apos:test:node;s=Plant.Item{i}\"\n{mode}\n"
        );
    }
    cfg += "\n[poll_groups]\nfast = \"200ms\"\n";
    let run = DriverRun::start(&cfg);
    eventually(
        "every item within the limits",
        Duration::from_secs(60),
        || (0..20).all(|i| run.good_count(&format!("item{i}")) >= 3),
    )
    .await;
    for i in 0..20 {
        let bad: Vec<_> = run
            .samples_of(&format!("item{i}"))
            .into_iter()
            .filter(|s| s.quality != Quality::Good)
            .collect();
        assert!(bad.is_empty(), "item{i}: {bad:?}");
    }
    run.stop().await;
}
