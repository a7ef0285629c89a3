//! The embedded broker's availability under attack: idle sockets in front
//! of TLS logins, and a node trying to pin the broker's memory. The hub
//! runs as its own process (`apos-hub run`) so its memory is its own.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};

use crate::support::{connect_with, free_port, hub_config, options, rss};

/// `apos-hub run` with `config`, killed on drop.
struct HubProcess(Child);

impl HubProcess {
    fn start(config: &std::path::Path, port: u16) -> HubProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_apos-hub"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut p = HubProcess(child);
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = p.0.try_wait() {
                let mut err = String::new();
                let _ = p.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!("apos-hub exited ({status}):\n{err}");
            }
            assert!(Instant::now() < end, "apos-hub did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_options(port: u16, ca: &std::path::Path) -> MqttOptions {
    let mut o = MqttOptions::new("s.a", "localhost", port);
    o.set_credentials("s.a", "pa");
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: std::fs::read(ca).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    o
}

/// rumqttd performed the TLS handshake in its accept loop with no deadline:
/// one idle TCP connection blocked every TLS login. Through the gate, 50
/// idle sockets cost nothing: a TLS login still takes well under 2 s, and
/// the idle ones are closed after the 10 s handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_block_tls_logins() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::tls::test_pki(&dir.path().join("pki"));
    let port = free_port();
    let cfg = hub_config(
        dir.path(),
        port,
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
        100_000,
    );
    let _hub = HubProcess::start(&cfg, port);
    let idle: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let client = connect_with(tls_options(port, &ca)).await;
    let took = started.elapsed();
    assert!(client.is_ok(), "{:?}", client.err());
    assert!(
        took < Duration::from_secs(2),
        "TLS login took {took:?} behind 50 idle sockets"
    );
    // The idle ones are closed by the gate at its deadline.
    let end = Instant::now() + Duration::from_secs(20);
    for mut s in idle {
        s.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "an idle socket is closed"
        );
    }
    assert!(
        Instant::now() < end,
        "idle sockets closed within the deadline"
    );
    eprintln!("TLS login behind 50 idle sockets: {took:?}");
}

/// A logged-in node floods its own batch topic with 1.2 GiB and tries
/// topics of its own: the broker's memory stays bounded (rumqttd kept ten
/// 100 MiB segments per topic, 1.55 GiB after this attack) and the extra
/// topics cost the node its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_pin_the_brokers_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let max_message = 1 << 20;
    let cfg = hub_config(dir.path(), port, "", max_message);
    let hub = HubProcess::start(&cfg, port);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = rss(hub.pid()).unwrap();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let sampler = {
        let (peak, pid) = (peak.clone(), hub.pid());
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss(pid) {
                    peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // 1.2 GiB of (unsigned, so refused by the ingest) batches, at QoS 1.
    let mut o = options(port, "s.a", Some(("s.a", "pa")));
    o.set_inflight(100);
    let a = connect_with(o).await.unwrap();
    let payload = vec![0x5Au8; max_message - 512];
    let started = Instant::now();
    let total = 1200usize;
    for _ in 0..total {
        a.publish(
            "apos/v1/s/a/batch",
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        )
        .await
        .unwrap();
    }
    // Topics of its own choosing: refused (the first publish ends it).
    let pinned = crate::support::events_until_closed(
        options(port, "s.a", Some(("s.a", "pa"))),
        Duration::from_secs(10),
        |c| {
            let c = c.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for t in ["pin/1", "pin/2"] {
                    for _ in 0..300 {
                        if c.publish(t, QoS::AtLeastOnce, false, payload.clone())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        },
    )
    .await;
    assert!(
        pinned.last().is_some_and(|l| l.starts_with("closed")),
        "{pinned:#?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = started.elapsed();
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let after = rss(hub.pid()).unwrap();
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "1.2 GiB flood in {took:?}: hub RSS {:.0} MiB at rest, peak {:.0} MiB, {:.0} MiB after",
        mib(base),
        mib(peak),
        mib(after)
    );
    // The stated bound: the flood adds at most 200 MiB at its peak (the
    // router's log of the node's topic is 3 × 2 MiB, the ingest's event
    // queue (protocol::link::EVENT_QUEUE) 4 × 2 MiB; the rest is the
    // connection's buffers and the ingest reading and refusing). With a
    // 64-event queue this measured +154 MiB alone and +248 MiB beside the
    // rest of the harness (2026-12-03).
    const BOUND: u64 = 200 << 20;
    assert!(
        peak < base + BOUND,
        "peak RSS {:.0} MiB over a {:.0} MiB base",
        mib(peak),
        mib(base)
    );
    assert!(after < base + BOUND, "{:.0} MiB held after", mib(after));
}

/// rumqttd 0.20 panics (and poisons a lock every later login needs) when a
/// client id logs in again while its previous link is still being set up
/// or has broken during set-up (seen here when the start-up probe and the
/// ingest shared a client id). The gate hands a node's sessions over one
/// at a time; this storm of logins closed right after their CONNECT must
/// leave the broker serving everyone. (The race itself is rare: this test
/// did not reproduce it with the hand-over switched off, so it guards the
/// outcome, not the mechanism.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storms_do_not_break_the_broker() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = hub_config(dir.path(), port, "", 100_000);
    let _hub = HubProcess::start(&cfg, port);
    let mut connect = bytes::BytesMut::new();
    let mut c = rumqttc::Connect::new("s.a");
    c.set_login("s.a", "pa");
    c.write(&mut connect).unwrap();
    for i in 0..60 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&connect).unwrap();
        if i % 3 == 0 {
            // Sometimes a little later, sometimes at once.
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(s);
    }
    // The storm's logins are still being handed over one to the next (the
    // newest to arrive wins): let them settle, then log in as everyone would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (user, pass) in [("s.a", "pa"), ("s.b", "pb")] {
        let c = connect_with(options(port, user, Some((user, pass)))).await;
        assert!(c.is_ok(), "{user} after the storm: {:?}", c.err());
    }
}
