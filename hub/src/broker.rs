//! The embedded MQTT broker (rumqttd), for hubs without an external one.
//!
//! rumqttd's limits shape what the hub relies on (see
//! `../shared/notes/mqtt.md`): it PUBACKs before anyone consumed a message
//! and may drop messages for a slow subscriber, it has no topic ACL, and it
//! persists nothing. So the broker is only transport: delivery rests on the
//! hub's own acknowledgements after commit, and node identity on each
//! batch's signature.
//!
//! rumqttd listens on loopback only, twice: one listener for node
//! connections, whose only client is the gate (`gate.rs`, the public
//! listener: handshake deadlines, logins, client ids, per-node topic ACL),
//! and one for the hub's own ingest client. Each has its own login check,
//! so a node can never log in on the hub's listener nor use the hub's
//! client id, even from the hub's own machine.
//!
//! Memory: rumqttd keeps a log of `max_segment_count` segments of
//! `max_segment_size` per topic. With every node confined to its own
//! `batch` and `status` topics (and the hub writing its `ack` topic), the
//! router holds at most [`SEGMENTS`] segments per topic, each closed once
//! it passes [`segment_size`] (so at most 3 × the largest message): 6 ×
//! the largest message per topic, three topics per node, however much a
//! node sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// User name (and client id) of the hub's own ingest client.
pub const HUB_USER: &str = "apos-hub";

/// User name (and client id) of the start-up probe.
const PROBE_USER: &str = "apos-hub-probe";

/// Segments kept per topic beyond the active one.
pub const SEGMENTS: usize = 2;

/// Size of one segment of a topic's log: twice the largest message (one
/// message always fits; a segment closes when it passes this size).
pub fn segment_size(max_message: usize) -> usize {
    max_message.saturating_mul(2).max(64 << 10)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the embedded broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    #[error("cannot start the broker: {0}")]
    Thread(std::io::Error),
}

/// Where the broker listens (both on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// For the gate: node connections.
    pub nodes: u16,
    /// For the hub's ingest client.
    pub hub: u16,
}

/// Start rumqttd on its own thread (it has no shutdown; it ends with the
/// process). `users`: node user name → password; `hub_password`: the
/// ingest client's. Returns once it accepts connections.
pub fn start(
    users: HashMap<String, String>,
    hub_password: String,
    max_message: usize,
    failed: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<Ports, BrokerError> {
    let ports = Ports {
        nodes: free_loopback_port()?,
        hub: free_loopback_port()?,
    };
    // A login of its own for the start-up probe below, on both listeners
    // (only the gate reaches the nodes' one, and it forwards node logins
    // only), so the probe never shares a client id with a real client.
    let probe_login = (PROBE_USER.to_owned(), crate::random_password());
    let mut users = users;
    users.insert(probe_login.0.clone(), probe_login.1.clone());
    let node_logins = Arc::new(users);
    let hub_logins = Arc::new(HashMap::from([
        (HUB_USER.to_owned(), hub_password),
        probe_login.clone(),
    ]));
    let server = |name: &str, port: u16, logins: Arc<HashMap<String, String>>| {
        let mut connections = ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: max_message + 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
            let logins = logins.clone();
            async move {
                // The gate has checked node logins already; this is the
                // second lock (and the only one on the hub's listener).
                // The client id must be the user name: no takeover. (The
                // probe uses a fresh id per attempt: two logins racing on
                // one client id are what rumqttd 0.20 mishandles.)
                let id_ok =
                    client_id == user || (user == PROBE_USER && client_id.starts_with(PROBE_USER));
                id_ok
                    && logins
                        .get(&user)
                        .is_some_and(|p| constant_time_eq(p.as_bytes(), pass.as_bytes()))
            }
        });
        ServerSettings {
            name: name.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: None,
            next_connection_delay_ms: 1,
            connections,
        }
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: segment_size(max_message),
            max_segment_count: SEGMENTS,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(
            [
                (
                    "nodes".to_string(),
                    server("nodes", ports.nodes, node_logins),
                ),
                ("hub".to_string(), server("hub", ports.hub, hub_logins)),
            ]
            .into(),
        ),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            // It never returns while it works: any return is a failure.
            let why = match broker.start() {
                Ok(()) => "the embedded MQTT broker stopped".to_owned(),
                Err(e) => format!("the embedded MQTT broker stopped: {e}"),
            };
            tracing::error!("{why}");
            let _ = failed.send(why);
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0u32;
    for port in [ports.nodes, ports.hub] {
        let probe = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            attempt += 1;
            let id = format!("{PROBE_USER}-{port}-{attempt}");
            if session_works(probe, &id, &probe_login) {
                break;
            }
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(probe));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(ports)
}

/// A whole MQTT session (CONNECT, CONNACK, DISCONNECT): whether the broker
/// serves `at`. A bare TCP probe would make rumqttd log an error.
fn session_works(at: SocketAddr, client_id: &str, (user, pass): &(String, String)) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&at, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut connect = rumqttc::Connect::new(client_id);
    connect.set_login(user.clone(), pass.clone());
    let mut buf = bytes::BytesMut::new();
    if connect.write(&mut buf).is_err() || s.write_all(&buf).is_err() {
        return false;
    }
    let mut ack = [0u8; 4];
    let ok = s.read_exact(&mut ack).is_ok() && ack[0] == 0x20 && ack[3] == 0;
    let _ = s.write_all(&[0xE0, 0x00]);
    ok
}

fn free_loopback_port() -> Result<u16, BrokerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Thread)?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(BrokerError::Thread)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
