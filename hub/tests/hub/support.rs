//! What the hub's tests share: configs, signed batches, MQTT clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::v1::{Batch, Body, Message, Window, WindowSet};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

pub const KEY_A: &str = "key-of-node-a-0123456789";
pub const KEY_B: &str = "key-of-node-b-9876543210";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A batch of one window (in 2027).
pub fn batch(seq: u64) -> Message {
    const T0: i64 = 1_800_000_000_000;
    Message::Batch(Batch {
        seq,
        created_ms: T0,
        body: Body::Aggregates(vec![WindowSet {
            width_ms: 1000,
            start_ms: T0 + seq as i64 * 1000,
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

/// Keys and passwords of nodes s.a and s.b in `dir`, and a hub config
/// (embedded broker on `port`, plus `broker_extra` lines in `[broker]`).
pub fn hub_config(dir: &Path, port: u16, broker_extra: &str, max_message: usize) -> PathBuf {
    for (f, v) in [
        ("a.key", KEY_A),
        ("b.key", KEY_B),
        ("a.pass", "pa"),
        ("b.pass", "pb"),
    ] {
        std::fs::write(dir.join(f), v).unwrap();
    }
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "schema_version = 1\n[storage]\npath = \"fleet.duckdb\"\n[broker]\nlisten = \"127.0.0.1:{port}\"\n{broker_extra}\n\
             [ingest]\nmax_message_size = {max_message}\ncommit_interval = \"50ms\"\n\
             [[node]]\nsite = \"s\"\nnode = \"a\"\nkey_file = \"a.key\"\npassword_file = \"a.pass\"\n\
             [[node]]\nsite = \"s\"\nnode = \"b\"\nkey_file = \"b.key\"\npassword_file = \"b.pass\"\n"
        ),
    )
    .unwrap();
    path
}

/// How a connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Accepted,
    Refused(rumqttc::ConnectReturnCode),
    Closed(String),
    Timeout,
}

/// MQTT options for a client of 127.0.0.1:`port`.
pub fn options(port: u16, id: &str, creds: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    o
}

/// Connect; the client (its event loop polled in the background) once
/// CONNACK says yes, else how the attempt ended.
pub async fn connect_with(o: MqttOptions) -> Result<AsyncClient, Login> {
    let (client, mut el) = AsyncClient::new(o, 100);
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    return if c.code == rumqttc::ConnectReturnCode::Success {
                        Login::Accepted
                    } else {
                        Login::Refused(c.code)
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    return Login::Refused(code);
                }
                Err(e) => return Login::Closed(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or(Login::Timeout);
    if r != Login::Accepted {
        return Err(r);
    }
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    Ok(client)
}

pub async fn connect(
    port: u16,
    id: &str,
    creds: Option<(&str, &str)>,
) -> Result<AsyncClient, Login> {
    connect_with(options(port, id, creds)).await
}

/// Connect and run a script against the event loop: every event it sees
/// until it closes, at most `within`.
pub async fn events_until_closed(
    o: MqttOptions,
    within: Duration,
    f: impl FnOnce(&AsyncClient),
) -> Vec<String> {
    let (client, mut el) = AsyncClient::new(o, 100);
    f(&client);
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(within, async {
        loop {
            match el.poll().await {
                Ok(e) => seen.push(format!("{e:?}")),
                Err(e) => {
                    seen.push(format!("closed: {e}"));
                    return;
                }
            }
        }
    })
    .await;
    seen
}

/// Resident memory of process `pid`, in bytes (`None` once it is gone).
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
