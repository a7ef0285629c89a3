//! The embedded MQTT broker (rumqttd), for hubs without an external one.
//!
//! rumqttd's limits shape what the hub relies on (see
//! `../shared/notes/mqtt.md`): it PUBACKs before anyone consumed a message
//! and may drop messages for a slow subscriber, it has no topic ACL, and it
//! persists nothing. So the broker is only transport: delivery rests on the
//! hub's own acknowledgements after commit, and node identity on each
//! batch's signature. What the broker does enforce is who may connect:
//! every node with its own user name (`{site}.{node}`) and password.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

/// User name the hub's own ingest client logs in with.
pub const HUB_USER: &str = "apos-hub";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the embedded broker did not start listening on {0} within 10 s (is the port in use?)")]
    NotListening(SocketAddr),
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
    #[error("TLS file {0} does not exist")]
    TlsFile(PathBuf),
}

/// Start rumqttd on its own thread (it has no shutdown; it ends with the
/// process). `users`: user name → password. Returns once it accepts
/// connections.
pub fn start(
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    internal_port: Option<u16>,
    users: HashMap<String, String>,
    max_payload: usize,
) -> Result<(), BrokerError> {
    if let Some((cert, key)) = &tls {
        for f in [cert, key] {
            if !f.exists() {
                return Err(BrokerError::TlsFile(f.clone()));
            }
        }
    }
    let users = Arc::new(users);
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: max_payload,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let users = users.clone();
        async move {
            // rumqttd mishandles `/` in client ids (upstream #1062: the
            // listener can end up refusing everyone); refuse them here.
            if client_id.contains('/') || client_id.is_empty() {
                tracing::warn!(%client_id, "MQTT client id refused");
                crate::metrics::REFUSED_LOGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            let ok = users.get(&user).is_some_and(|p| constant_time_eq(p.as_bytes(), pass.as_bytes()));
            if !ok {
                tracing::warn!(%client_id, %user, "MQTT login refused (unknown user or wrong password)");
                crate::metrics::REFUSED_LOGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }
    });
    let internal = internal_port.map(|port| ServerSettings {
        name: "internal".into(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    });
    let server = ServerSettings {
        name: "apos".into(),
        listen,
        tls: tls.map(|(cert, key)| TlsConfig::Rustls {
            capath: None,
            certpath: cert.display().to_string(),
            keypath: key.display().to_string(),
        }),
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(
            std::iter::once(("apos".to_string(), server))
                .chain(internal.map(|s| ("internal".to_string(), s)))
                .collect(),
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
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = match internal_port {
        Some(p) => SocketAddr::from(([127, 0, 0, 1], p)),
        None if listen.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        None => listen,
    };
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(listen))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
