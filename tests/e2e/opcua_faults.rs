//! OPC UA against servers that misbehave or refuse, with independent
//! stacks: asyncua (Python) behind a proxy that makes it vanish silently or
//! inside a network namespace whose packets are dropped, and node-opcua
//! with its own generated certificate and a strict trust list.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drivers::{Quality, Reason, Value};

use crate::process::Netns;
use crate::support::{
    DriverRun, NodeOpcUaPeer, OpcUaPeer, SilentProxy, bin, config_header, eventually, peers_dir,
    python, require_peer,
};

fn ua_device(name: &str, port: u16, pki: &Path, extra: &str) -> String {
    format!(
        "\n[[device]]\nname = \"{name}\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/apos/\"\n\
         security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"100ms\"\n{extra}\n",
        pki.display().to_string()
    )
}

fn ua_tag(name: &str, device: &str, node: &str) -> String {
    format!("\n[[tag]]\nname = \"{name}\"\ndevice = \"{device}\"\nnode = \"{node}\"\n")
}

/// A server that dies silently (no FIN, no RST: power loss) is noticed by
/// keep-alive, and every reconnect attempt, even one whose TCP connection
/// is accepted but whose handshake is never answered, is abandoned at our
/// deadline and retried, so the session is back as soon as the server is.
/// (async-opcua's own reconnect waited for that answer forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_vanishes_silently_is_reconnected_once_it_is_back() {
    let Some(peer) = OpcUaPeer::start(0).await else {
        return;
    };
    let proxy = SilentProxy::start(peer.port).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_header()
        + &ua_device(
            "vanisher",
            proxy.port,
            &dir.path().join("pki"),
            "keep_alive = \"1s\"\ntimeout = \"2s\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"2s\"\n",
        )
        + &ua_tag("van_ramp", "vanisher", "nsu=urn:apos:test;s=Plant.Ramp");
    let run = DriverRun::start(&cfg);
    eventually("data through the proxy", Duration::from_secs(30), || {
        run.good_count("van_ramp") >= 3
    })
    .await;
    proxy.vanish();
    let lost_at = Instant::now();
    eventually("the silent loss noticed", Duration::from_secs(20), || {
        run.latest("van_ramp").unwrap().quality == Quality::Bad(Reason::ConnectionLost)
    })
    .await;
    let noticed = lost_at.elapsed();
    // While it is gone, attempts keep coming: each one accepted and left
    // unanswered must be given up at the deadline, not waited on forever.
    let before = proxy.accepted();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = proxy.accepted() - before;
    assert!(
        attempts >= 2,
        "reconnect attempts while the server was silent: {attempts}"
    );
    let st = run.handle("vanisher").status();
    assert!(!st.connected);
    let err = st.last_error.unwrap();
    assert!(
        err.contains("within") && !err.contains("Good"),
        "a timeout of ours, said plainly: {err}"
    );
    proxy.return_();
    let back = Instant::now();
    let n = run.good_count("van_ramp");
    eventually(
        "data again once the server is back",
        Duration::from_secs(15),
        || run.good_count("van_ramp") > n,
    )
    .await;
    let logs = crate::logs::lines("vanisher");
    assert!(
        logs.iter().any(|l| l.contains("stopped answering")),
        "{logs:#?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("status=Good")),
        "a lost link is not logged as Good: {logs:#?}"
    );
    eprintln!(
        "silent loss noticed after {noticed:?}; {attempts} attempts in 12 s; back {:?} after the server returned",
        back.elapsed()
    );
    run.stop().await;
}

/// The same fault with real dropped packets: the server and the edge run
/// in a network namespace of their own, and iptables drops every packet
/// of the session for 20 s (SYNs of new attempts included). Needs root,
/// `ip` and `iptables` (installed by scripts/test.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_packet_partition_heals_within_the_backoff_schedule() {
    let Some(py) = python() else {
        require_peer("python venv with asyncua (.venv)");
        return;
    };
    let Some(ns) = Netns::create() else {
        require_peer("root with `ip netns` and `iptables` (scripts/test.sh installs iptables)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = 4840;
    // The server, inside the namespace, on its loopback.
    let mut server = ns
        .command(&py)
        .arg(peers_dir().join("opcua_server.py"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("READY"))
    });
    assert!(
        ready.join().unwrap().is_some(),
        "asyncua not READY in the namespace"
    );
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "schema_version = 1\n[node]\nsite_id = \"test\"\nnode_id = \"netns\"\n[storage]\npath = {:?}\nflush_interval = \"200ms\"\n{}{}",
            db.display().to_string(),
            ua_device(
                "ua",
                port,
                &dir.path().join("pki"),
                "keep_alive = \"1s\"\ntimeout = \"2s\"\nbackoff_initial = \"500ms\"\nbackoff_max = \"3s\"\n"
            ),
            ua_tag("ramp", "ua", "nsu=urn:apos:test;s=Plant.Ramp")
        ),
    )
    .unwrap();
    let mut edge = ns
        .command(&bin("apos-edge"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let last_good = |after: i64| -> Option<i64> {
        let r = edge_node::history::HistoryReader::open(&db).ok()?;
        r.range("ramp", after, i64::MAX, 100_000)
            .ok()?
            .iter()
            .filter(|s| s.quality.is_good())
            .map(|s| s.ts.as_millis())
            .max()
    };
    eventually(
        "values stored before the partition",
        Duration::from_secs(60),
        || last_good(0).is_some(),
    )
    .await;
    ns.drop_port(port, true);
    tokio::time::sleep(Duration::from_secs(20)).await;
    ns.drop_port(port, false);
    let healed = drivers::Timestamp::now().as_millis();
    let heal = Instant::now();
    eventually(
        "values again after the partition",
        Duration::from_secs(30),
        || last_good(healed).is_some(),
    )
    .await;
    let took = heal.elapsed();
    let _ = edge.kill();
    let out = edge.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    // Backoff max 3 s + a connect of at most 2 s (+ the store's flush).
    assert!(
        took < Duration::from_secs(12),
        "healed after {took:?}:\n{log}"
    );
    let r = edge_node::history::HistoryReader::open(&db).unwrap();
    assert!(
        r.range("ramp", 0, i64::MAX, 100_000)
            .unwrap()
            .iter()
            .any(|s| s.quality == Quality::Bad(Reason::ConnectionLost)),
        "the partition is a visible gap"
    );
    let _ = server.kill();
    let _ = server.wait();
    eprintln!("partition healed; values back {took:?} after");
}

/// node-opcua with its own generated certificate (SANs DNS, IP, URI: the
/// order async-opcua 0.19 rejects) and a strict trust list:
/// 1. the edge first finds the server's certificate untrusted and says so
///    (saved in rejected/);
/// 2. once trusted, the server refuses *our* certificate, and the edge says
///    that, naming our certificate (it used to blame the server's);
/// 3. once the server trusts ours, a Basic256Sha256 SignAndEncrypt session
///    carries data, with no host-name complaint about the SAN order.
///
/// Along the way: our certificate names this node (not Dublin), and the
/// session is named after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_session_with_node_opcua_and_both_trust_lists() {
    let dir = tempfile::tempdir().unwrap();
    let server_pki = dir.path().join("server-pki");
    let Some(peer) = NodeOpcUaPeer::start_with(&[
        "--secure",
        "--strict",
        "--pki",
        server_pki.to_str().unwrap(),
    ])
    .await
    else {
        return;
    };
    let pki = dir.path().join("pki");
    let cfg = config_header()
        + &format!(
            "\n[[device]]\nname = \"strict\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/apos/\"\n\
             security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\npki_dir = {:?}\n\
             publishing_interval = \"100ms\"\ntimeout = \"5s\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"2s\"\n",
            peer.port,
            pki.display().to_string()
        )
        + &ua_tag(
            "strict_ramp",
            "strict",
            "nsu=urn:apos:test:node;s=Plant.Ramp",
        );
    let run = DriverRun::start(&cfg);
    // 1. Their certificate is new to us.
    eventually(
        "server certificate rejected by us",
        Duration::from_secs(30),
        || !drivers::opcua::pki::rejected(&pki).unwrap().is_empty(),
    )
    .await;
    let err = run.handle("strict").status().last_error.unwrap_or_default();
    assert!(
        err.contains("not trusted") && err.contains("rejected"),
        "{err}"
    );
    // Backoff max is a maximum, even for these.
    let st = run.handle("strict").status();
    if let drivers::LinkState::Down { retry_in, .. } = &st.units[0].state {
        assert!(*retry_in <= Duration::from_secs(2), "{retry_in:?}");
    }
    let theirs = drivers::opcua::pki::rejected(&pki).unwrap();
    drivers::opcua::pki::trust(&pki, &theirs[0]).unwrap();
    // 2. Now they do not trust ours: they say so, and so do we.
    let ours = eventually_some(
        "our certificate in their rejected/",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(server_pki.join("rejected"))
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "pem" || x == "der"))
        },
    )
    .await;
    eventually("the refusal explained", Duration::from_secs(15), || {
        run.handle("strict")
            .status()
            .last_error
            .is_some_and(|e| e.contains("the server refused this node's certificate"))
    })
    .await;
    let err = run.handle("strict").status().last_error.unwrap();
    assert!(
        err.contains(&pki.join("own/cert.der").display().to_string()),
        "{err}"
    );
    assert!(
        !err.contains("move it to"),
        "no advice about the wrong certificate: {err}"
    );
    assert!(
        drivers::opcua::pki::rejected(&pki).unwrap().is_empty(),
        "nothing of theirs was rejected this time"
    );
    // Our certificate, as the server saw it, names this node.
    let text = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(&ours)
        .args(if ours.extension().is_some_and(|x| x == "der") {
            &["-inform", "DER"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("APOS edge test.e2e"), "{text}");
    assert!(text.contains("urn:apos:edge:test:e2e"), "{text}");
    assert!(!text.contains("Dublin"), "{text}");
    // 3. The server trusts us: the session comes up by itself.
    let trusted = server_pki.join("trusted/certs");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::rename(&ours, trusted.join(ours.file_name().unwrap())).unwrap();
    eventually(
        "secure session carries data",
        Duration::from_secs(30),
        || run.good_count("strict_ramp") >= 3,
    )
    .await;
    assert!(
        peer.output()
            .iter()
            .any(|l| l == "SESSION name=APOS edge test.e2e"),
        "{:?}",
        peer.output()
    );
    run.stop().await;
}

async fn eventually_some<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Arrays are stored as JSON text, structures are refused by name: never
/// Good without a value. A value stamped 2100 is stored at the server's
/// time and flagged, so its tag's windows keep closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_structures_and_a_clock_from_the_future() {
    let Some(peer) = OpcUaPeer::start(0).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_header()
        + &ua_device(
            "shapes",
            peer.port,
            &dir.path().join("pki"),
            "timeout = \"5s\"\n",
        )
        + &ua_tag("shape_ns", "shapes", "i=2255")
        + &ua_tag("shape_status", "shapes", "i=2256")
        + &ua_tag("shape_future", "shapes", "nsu=urn:apos:test;s=Plant.Future");
    let run = DriverRun::start(&cfg);
    eventually("all three seen", Duration::from_secs(30), || {
        run.latest("shape_ns").is_some()
            && run.latest("shape_status").is_some()
            && run.samples_of("shape_future").len() >= 3
    })
    .await;
    let ns = run.latest("shape_ns").unwrap();
    assert_eq!(ns.quality, Quality::Good);
    let Some(Value::String(text)) = &ns.value else {
        panic!("{ns:?}")
    };
    let list: Vec<String> = serde_json::from_str(text).unwrap();
    assert_eq!(list[0], "http://opcfoundation.org/UA/");
    assert!(list.contains(&"urn:apos:test".to_owned()), "{list:?}");
    let status = run.latest("shape_status").unwrap();
    assert!(
        matches!(&status.quality, Quality::Bad(Reason::Unsupported(m)) if m.contains("structure")),
        "{status:?}"
    );
    assert_eq!(status.value, None);
    for s in run.samples_of("shape_status") {
        assert!(!s.quality.is_good(), "never Good without a value: {s:?}");
    }
    let now = drivers::Timestamp::now().as_millis();
    let future = run.samples_of("shape_future");
    for s in &future {
        assert!(
            (s.ts.as_millis() - now).abs() < 60_000,
            "stored near now, not in 2100: {s:?}"
        );
        assert!(
            matches!(&s.quality, Quality::Uncertain(Reason::ClockSkew(m)) if m.contains("server timestamp")),
            "{s:?}"
        );
        assert!(s.value.is_some());
    }
    let warned = crate::logs::lines("shape_future");
    assert_eq!(
        warned
            .iter()
            .filter(|l| l.contains("source timestamp replaced"))
            .count(),
        1,
        "logged once: {warned:#?}"
    );
    run.stop().await;
}

/// What an integrator sees from `apos-edge run` with an OPC UA device,
/// started under umask 000: the private key 0600 in 0700 folders, the
/// history 0640; no library noise at start ("Endpoint config contains no
/// endpoints") and no ERROR lines at a normal shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_history_are_private_and_a_normal_run_is_quiet() {
    let Some(peer) = OpcUaPeer::start(0).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let db = dir.path().join("history.db");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "schema_version = 1\n[node]\nsite_id = \"test\"\nnode_id = \"quiet\"\n[storage]\npath = {:?}\nflush_interval = \"200ms\"\n{}{}",
            db.display().to_string(),
            ua_device("ua", peer.port, &pki, "timeout = \"5s\"\n"),
            ua_tag("ramp", "ua", "nsu=urn:apos:test;s=Plant.Ramp")
        ),
    )
    .unwrap();
    let edge = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' run --config '{}'",
            bin("apos-edge").display(),
            cfg.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = edge.id();
    let stored = || {
        edge_node::history::HistoryReader::open(&db)
            .ok()
            .and_then(|r| r.count("ramp").ok())
            .unwrap_or(0)
    };
    eventually("values stored", Duration::from_secs(60), || stored() >= 3).await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let out = edge.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pki.join("private/private.pem")), 0o600);
    for d in ["", "private", "own", "trusted", "rejected"] {
        assert_eq!(mode(&pki.join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(&db), 0o640, "history database");
    assert!(
        !log.contains("Endpoint config contains no endpoints"),
        "{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a normal run logs no errors: {errors:#?}"
    );
}

/// `browse` and `run` share one PKI directory and one identity: a browse
/// before the node's first run makes a certificate for itself; the run then
/// reissues it for the node (keeping the old one) instead of failing with
/// BadCertificateUriInvalid forever against a strict server; later browses
/// adopt the node's certificate instead of replacing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_and_run_share_one_pki_without_fighting() {
    let Some(peer) = NodeOpcUaPeer::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let url = format!("opc.tcp://127.0.0.1:{}/apos/", peer.port);
    let browse = || {
        let out = Command::new(bin("apos-edge"))
            .args([
                "opcua",
                "browse",
                "--security-policy",
                "None",
                "--depth",
                "2",
            ])
            .args(["--endpoint", &url, "--pki-dir"])
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let uri_of = || {
        drivers::opcua::pki::Sans::of(&std::fs::read(pki.join("own/cert.der")).unwrap())
            .unwrap()
            .uris
    };
    assert!(browse().contains("Plant/"));
    assert_eq!(uri_of(), ["urn:apos:edge:browse:cli"]);
    // The node runs with the same PKI: node-opcua checks the URI in the
    // certificate against the session's, even with security None.
    let cfg = config_header()
        + &format!(
            "\n[[device]]\nname = \"shared\"\nprotocol = \"opcua\"\nendpoint = \"{url}\"\n\
             security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"100ms\"\ntimeout = \"5s\"\n",
            pki.display().to_string()
        )
        + &ua_tag(
            "shared_ramp",
            "shared",
            "nsu=urn:apos:test:node;s=Plant.Ramp",
        );
    let run = DriverRun::start(&cfg);
    eventually(
        "the node reads with the shared PKI",
        Duration::from_secs(30),
        || run.good_count("shared_ramp") >= 3,
    )
    .await;
    run.stop().await;
    assert_eq!(uri_of(), ["urn:apos:edge:test:e2e"]);
    let kept = std::fs::read_dir(pki.join("own"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("cert.der.old-"));
    assert!(kept, "the browse certificate is kept aside");
    let warned = crate::logs::lines("was made for another application URI");
    assert!(!warned.is_empty(), "the reissue is logged");
    // A later browse adopts the node's certificate.
    let before = std::fs::read(pki.join("own/cert.der")).unwrap();
    browse();
    assert_eq!(std::fs::read(pki.join("own/cert.der")).unwrap(), before);
}
