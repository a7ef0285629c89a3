//! The embedded broker's front door: every node connection passes through
//! here before rumqttd sees a byte of it.
//!
//! rumqttd 0.20 has three weaknesses one outside party could use to stop
//! the hub (issue 13): it performs the TLS handshake inside its accept loop
//! with no deadline (one idle socket blocks every TLS login), it lets any
//! logged-in client take another's client id (and so disconnect it, the
//! hub's own ingest included), and it has no topic ACL (a node can fill
//! topics of its own choosing, and each topic may hold up to the router's
//! whole segment budget). Rather than patch rumqttd, the hub terminates
//! the public listener itself:
//!
//! - each connection is its own task, so a slow or idle one only costs
//!   itself; the TLS handshake and the CONNECT packet must arrive within
//!   [`GateSettings::handshake_timeout`]; at most
//!   [`GateSettings::max_connections`] connections at once;
//! - the CONNECT is checked here: MQTT 3.1.1, a known node's user name
//!   and password, **the client id equal to the user name** (`{site}.{node}`,
//!   what the edge uses; so no node can take another's id, and none can
//!   take the hub's, which never comes through the gate), no will message
//!   (a will is a publish the broker sends on the client's behalf later);
//! - every later packet from the node is parsed and checked against the
//!   node's ACL before it is forwarded: PUBLISH only to its own `batch` and
//!   `status` topics at QoS 0 or 1 and not retained, SUBSCRIBE only to its
//!   own `ack` topic; anything else closes the connection.
//!
//! Accepted bytes are forwarded unchanged to rumqttd on a loopback port
//! whose only client is this gate; answers flow back unparsed. Every
//! refusal is counted ([`crate::metrics`]) and logged at most once a
//! minute per reason and peer address, with the count of those not logged.
//! With every node confined to its own three topics, the router's memory
//! is bounded by its segment settings per topic (see `broker.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::{Kind, Topic};
use rumqttc::tokio_rustls::{TlsAcceptor, rustls};
use rumqttc::{ConnAck, ConnectReturnCode, Packet, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, bump};

/// Time a new connection has for its TLS handshake and its CONNECT.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Node connections at once.
pub const MAX_CONNECTIONS: usize = 10_000;

/// What the gate needs to know.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// The public address nodes connect to.
    pub listen: SocketAddr,
    /// PEM certificate chain and key: TLS on the public listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// rumqttd's loopback listener for node connections.
    pub upstream: SocketAddr,
    /// Node user name (`{site}.{node}`) → password.
    pub users: Arc<HashMap<String, String>>,
    /// Largest packet a node may send (the hub's largest message plus
    /// the MQTT header).
    pub max_packet: usize,
    /// Time a new connection has for its TLS handshake and its CONNECT.
    pub handshake_timeout: Duration,
    /// Connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot read the TLS {what} {path}: {error}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("the TLS certificate and key do not go together: {0}")]
    Tls(String),
}

/// Bind the public listener and serve it until `cancel`. Binding errors
/// (a port in use, unreadable TLS files) are returned at once.
pub async fn start(
    s: GateSettings,
    cancel: CancellationToken,
    failed: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<SocketAddr, GateError> {
    let tls = s.tls.as_ref().map(|(c, k)| acceptor(c, k)).transpose()?;
    let listener = TcpListener::bind(s.listen)
        .await
        .map_err(|e| GateError::Listen(s.listen, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| GateError::Listen(s.listen, e))?;
    tracing::info!(listen = %local, tls = s.tls.is_some(), "MQTT gate listening");
    let slots = Arc::new(Semaphore::new(s.max_connections));
    let sessions = Arc::new(Sessions::default());
    let s = Arc::new(s);
    tokio::spawn(async move {
        loop {
            // Wait for a free slot before accepting: excess connections
            // wait in the kernel's backlog instead of costing a task each.
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let (tcp, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "MQTT gate cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (s, tls, cancel, sessions) =
                (s.clone(), tls.clone(), cancel.clone(), sessions.clone());
            tokio::spawn(async move {
                let _permit = permit;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = serve(tcp, peer, &s, &sessions, tls.as_ref()) => {}
                }
            });
        }
        if !cancel.is_cancelled() {
            let _ = failed.send("the MQTT gate stopped accepting connections".to_owned());
        }
    });
    Ok(local)
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, GateError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |what, path: &Path, e: &dyn std::fmt::Display| GateError::TlsFile {
        what,
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(file_err("certificate", cert, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GateError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| GateError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Why a connection was closed by the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No TLS handshake or no CONNECT within the deadline.
    Handshake(String),
    /// Not MQTT 3.1.1, or a malformed or oversized packet.
    Protocol(String),
    /// Unknown user, wrong password, or no login.
    Login(String),
    /// A client id other than the user name.
    ClientId { user: String, client_id: String },
    /// A will message, a publish or subscribe outside the node's topics,
    /// QoS 2, a retained message, a second CONNECT.
    Acl { user: String, what: String },
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Handshake(_) => "handshake",
            Refusal::Protocol(_) => "protocol",
            Refusal::Login(_) => "login",
            Refusal::ClientId { .. } => "client_id",
            Refusal::Acl { .. } => "acl",
        }
    }

    fn counter(&self) -> &'static std::sync::atomic::AtomicU64 {
        match self {
            Refusal::Handshake(_) => &metrics::GATE_HANDSHAKE_TIMEOUTS,
            Refusal::Protocol(_) => &metrics::GATE_PROTOCOL_ERRORS,
            Refusal::Login(_) => &metrics::REFUSED_LOGINS,
            Refusal::ClientId { .. } => &metrics::GATE_CLIENT_ID_REFUSED,
            Refusal::Acl { .. } => &metrics::GATE_ACL_REFUSED,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Handshake(m) | Refusal::Protocol(m) | Refusal::Login(m) => f.write_str(m),
            Refusal::ClientId { user, client_id } => write!(
                f,
                "user {user:?} connected with client id {client_id:?}; a node's client id must be its user name"
            ),
            Refusal::Acl { user, what } => write!(f, "user {user:?}: {what}"),
        }
    }
}

fn refused(peer: SocketAddr, r: &Refusal) {
    bump(r.counter(), 1);
    metrics::LOG_THROTTLE.allow(r.reason(), &peer.ip().to_string(), |suppressed| {
        tracing::warn!(%peer, reason = r.reason(), suppressed, "MQTT connection refused: {r}");
    });
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    s: &GateSettings,
    sessions: &Arc<Sessions>,
    tls: Option<&TlsAcceptor>,
) {
    let deadline = tokio::time::Instant::now() + s.handshake_timeout;
    let result = match tls {
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Err(_) => Err(Refusal::Handshake(format!(
                "no TLS handshake within {:?}",
                s.handshake_timeout
            ))),
            Ok(Err(e)) => Err(Refusal::Handshake(format!("TLS handshake failed: {e}"))),
            Ok(Ok(stream)) => relay(stream, s, sessions, deadline).await,
        },
        None => relay(tcp, s, sessions, deadline).await,
    };
    if let Err(r) = result {
        refused(peer, &r);
    }
}

/// Read one whole MQTT packet into `buf` (keeping what follows it).
/// `Ok(None)` at end of stream.
async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(BytesMut, Packet)>, Refusal> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(header) => {
                let raw = buf.split_to(header.frame_length());
                let mut copy = raw.clone();
                let packet = Packet::read(&mut copy, max)
                    .map_err(|e| Refusal::Protocol(format!("malformed MQTT packet: {e}")))?;
                return Ok(Some((raw, packet)));
            }
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(Refusal::Protocol(format!("malformed MQTT packet: {e}"))),
        }
        buf.reserve(8192);
        match r.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

async fn relay<S>(
    mut client: S,
    s: &GateSettings,
    sessions: &Arc<Sessions>,
    deadline: tokio::time::Instant,
) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf = BytesMut::with_capacity(8192);
    let first = tokio::time::timeout_at(deadline, read_packet(&mut client, &mut buf, s.max_packet))
        .await
        .map_err(|_| {
            Refusal::Handshake(format!("no MQTT CONNECT within {:?}", s.handshake_timeout))
        })??;
    let (connect_raw, connect) = match first {
        Some((raw, Packet::Connect(c))) => (raw, c),
        // Closed without a word: a port probe or a health check, not an attack.
        None if buf.is_empty() => return Ok(()),
        None => {
            return Err(Refusal::Protocol(
                "closed in the middle of its first packet".to_owned(),
            ));
        }
        Some(_) => {
            return Err(Refusal::Protocol(
                "the first packet was not a CONNECT".to_owned(),
            ));
        }
    };
    let user = match check_connect(&connect, &s.users) {
        Ok(u) => u,
        Err(r) => {
            let code = match &r {
                Refusal::ClientId { .. } => ConnectReturnCode::BadClientId,
                Refusal::Login(_) => ConnectReturnCode::BadUserNamePassword,
                _ => ConnectReturnCode::NotAuthorized,
            };
            let mut out = BytesMut::new();
            if ConnAck::new(code, false).write(&mut out).is_ok() {
                let _ = client.write_all(&out).await;
                let _ = client.flush().await;
            }
            return Err(r);
        }
    };
    // One session per node at a time, handed over cleanly (see `Sessions`);
    // a login already replaced by a newer one while it waited ends here.
    let Some(turn) = sessions.take_turn(&user).await else {
        return Ok(());
    };
    let Ok(mut upstream) = TcpStream::connect(s.upstream).await else {
        tracing::error!(upstream = %s.upstream, "the embedded broker does not accept connections");
        return Ok(());
    };
    let _ = upstream.set_nodelay(true);
    // Forward the CONNECT and relay rumqttd's CONNACK before anything else,
    // and never close the broker's side before that CONNACK: a link that
    // breaks while rumqttd sets it up leaves a stale entry behind, and the
    // next login with that client id then panics rumqttd's listener and
    // poisons a lock every later login needs (rumqttd 0.20, broker.rs:544).
    let mut connack = [0u8; 4];
    let acked = async {
        upstream.write_all(&connect_raw).await?;
        upstream.read_exact(&mut connack).await?;
        client.write_all(&connack).await?;
        client.flush().await
    };
    if tokio::time::timeout(s.handshake_timeout, acked)
        .await
        .is_err()
        || connack[3] != 0
    {
        return Ok(());
    }
    metrics::LOG_THROTTLE.allow("login", &user, |not_logged| {
        tracing::info!(node = %user, logins_not_logged = not_logged, "node connected");
    });
    let (mut up_r, mut up_w) = upstream.into_split();
    let (mut cl_r, mut cl_w) = tokio::io::split(client);
    let acl = Acl::for_user(&user);
    let to_broker = async {
        loop {
            match read_packet(&mut cl_r, &mut buf, s.max_packet).await? {
                None => return Ok(()),
                Some((raw, packet)) => {
                    acl.check(&packet).map_err(|what| Refusal::Acl {
                        user: user.clone(),
                        what,
                    })?;
                    if up_w.write_all(&raw).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    };
    let to_client = async {
        let _ = tokio::io::copy(&mut up_r, &mut cl_w).await;
        let _ = cl_w.shutdown().await;
    };
    // Whichever side ends first ends the connection; so does a newer
    // login of the same node.
    tokio::select! {
        r = to_broker => r,
        () = to_client => Ok(()),
        () = turn.stop.cancelled() => Ok(()),
    }
}

/// The live session of each node, so that a new login of a node replaces
/// its old session through the gate (closed, then a short pause) instead
/// of reaching rumqttd while the old one is still being set up or torn
/// down: that race on one client id is what breaks rumqttd 0.20.
#[derive(Debug, Default)]
pub struct Sessions {
    live: std::sync::Mutex<HashMap<String, LiveSession>>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct LiveSession {
    id: u64,
    stop: CancellationToken,
    done: tokio::sync::watch::Receiver<bool>,
}

/// A node's turn: ends its session when `stop` fires; tells the next one
/// when it is over (on drop).
#[derive(Debug)]
struct Turn {
    sessions: Arc<Sessions>,
    user: String,
    id: u64,
    stop: CancellationToken,
    done: tokio::sync::watch::Sender<bool>,
}

/// How long the previous session of a node may take to close, and the
/// pause after it before the new one reaches the broker.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);
const HANDOVER_PAUSE: Duration = Duration::from_millis(200);

impl Sessions {
    /// Wait until the node's previous session (and any login that was
    /// waiting for it) is over; `None` if a newer login replaced this one
    /// meanwhile. A storm of logins thus collapses to the newest.
    async fn take_turn(self: &Arc<Self>, user: &str) -> Option<Turn> {
        let stop = CancellationToken::new();
        let (done, rx) = tokio::sync::watch::channel(false);
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let previous = match self.live.lock() {
            Ok(mut live) => live.insert(
                user.to_owned(),
                LiveSession {
                    id,
                    stop: stop.clone(),
                    done: rx,
                },
            ),
            Err(_) => None,
        };
        // Whatever happens next, those after this one wait for it (drop).
        let turn = Turn {
            sessions: self.clone(),
            user: user.to_owned(),
            id,
            stop,
            done,
        };
        if let Some(mut p) = previous {
            p.stop.cancel();
            // Always wait for the predecessor, even once replaced: "done"
            // must mean that nothing of this node is left at the broker.
            let _ = tokio::time::timeout(HANDOVER_WAIT, p.done.wait_for(|d| *d)).await;
            if turn.stop.is_cancelled() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(HANDOVER_PAUSE) => {}
                () = turn.stop.cancelled() => return None,
            }
        }
        Some(turn)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.done.send(true);
        if let Ok(mut live) = self.sessions.live.lock()
            && live.get(&self.user).is_some_and(|l| l.id == self.id)
        {
            live.remove(&self.user);
        }
    }
}

/// The node user a CONNECT logs in as, if it may.
fn check_connect(c: &rumqttc::Connect, users: &HashMap<String, String>) -> Result<String, Refusal> {
    let Some(login) = &c.login else {
        return Err(Refusal::Login(format!(
            "client id {:?} sent no user name",
            truncate(&c.client_id)
        )));
    };
    let known = users
        .get(&login.username)
        .is_some_and(|p| constant_time_eq(p.as_bytes(), login.password.as_bytes()));
    if !known {
        return Err(Refusal::Login(format!(
            "unknown user or wrong password for user {:?}",
            truncate(&login.username)
        )));
    }
    if c.client_id != login.username {
        return Err(Refusal::ClientId {
            user: login.username.clone(),
            client_id: truncate(&c.client_id),
        });
    }
    if c.last_will.is_some() {
        return Err(Refusal::Acl {
            user: login.username.clone(),
            what: "a will message (the broker would publish it for the node later)".to_owned(),
        });
    }
    Ok(login.username.clone())
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// What one node may do: publish its batches and statuses, read its acks
/// and its recommendations.
#[derive(Debug)]
struct Acl {
    publish: [String; 2],
    subscribe: [String; 2],
}

impl Acl {
    fn for_user(user: &str) -> Acl {
        let (site, node) = user.split_once('.').unwrap_or((user, ""));
        let topic = |k| {
            Topic::new(site, node, k)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        Acl {
            publish: [topic(Kind::Batch), topic(Kind::Status)],
            subscribe: [topic(Kind::Ack), topic(Kind::Recommendation)],
        }
    }

    fn check(&self, p: &Packet) -> Result<(), String> {
        match p {
            Packet::Publish(p) => {
                if !self.publish.contains(&p.topic) || self.publish[0].is_empty() {
                    return Err(format!(
                        "publish to {:?}, not one of its own topics",
                        truncate(&p.topic)
                    ));
                }
                if p.qos == QoS::ExactlyOnce {
                    return Err("publish at QoS 2".to_owned());
                }
                if p.retain {
                    return Err("retained publish".to_owned());
                }
                Ok(())
            }
            Packet::Subscribe(s) => {
                match s.filters.iter().find(|f| !self.subscribe.contains(&f.path)) {
                    Some(f) => Err(format!(
                        "subscribe to {:?}, not its own acknowledgements or recommendations",
                        truncate(&f.path)
                    )),
                    None => Ok(()),
                }
            }
            Packet::Connect(_) => Err("a second CONNECT".to_owned()),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Err("QoS 2 handshake packets".to_owned())
            }
            // PUBACK, UNSUBSCRIBE, PINGREQ, DISCONNECT, and answers a
            // client should not send (the broker ignores or refuses them).
            _ => Ok(()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rumqttc::{LastWill, Publish, Subscribe};

    fn users() -> HashMap<String, String> {
        [("s1.n1".to_string(), "pw".to_string())].into()
    }

    fn connect(id: &str, user: Option<(&str, &str)>) -> rumqttc::Connect {
        let mut c = rumqttc::Connect::new(id);
        if let Some((u, p)) = user {
            c.set_login(u, p);
        }
        c
    }

    #[test]
    fn logins_must_be_known_and_use_their_own_client_id() {
        let u = users();
        assert_eq!(
            check_connect(&connect("s1.n1", Some(("s1.n1", "pw"))), &u),
            Ok("s1.n1".into())
        );
        assert!(matches!(
            check_connect(&connect("s1.n1", None), &u),
            Err(Refusal::Login(_))
        ));
        assert!(matches!(
            check_connect(&connect("s1.n1", Some(("s1.n1", "wrong"))), &u),
            Err(Refusal::Login(_))
        ));
        assert!(matches!(
            check_connect(&connect("apos-hub-ingest-1", Some(("s1.n1", "pw"))), &u),
            Err(Refusal::ClientId { .. })
        ));
        let mut willing = connect("s1.n1", Some(("s1.n1", "pw")));
        willing.last_will = Some(LastWill::new(
            "apos/v1/s1/n2/batch",
            "x",
            QoS::AtLeastOnce,
            false,
        ));
        assert!(matches!(
            check_connect(&willing, &u),
            Err(Refusal::Acl { .. })
        ));
    }

    #[test]
    fn a_node_publishes_and_reads_only_its_own_topics() {
        let acl = Acl::for_user("s1.n1");
        let publish = |t: &str, q, retain| {
            let mut p = Publish::new(t, q, vec![1]);
            p.retain = retain;
            Packet::Publish(p)
        };
        assert!(
            acl.check(&publish("apos/v1/s1/n1/batch", QoS::AtLeastOnce, false))
                .is_ok()
        );
        assert!(
            acl.check(&publish("apos/v1/s1/n1/status", QoS::AtMostOnce, false))
                .is_ok()
        );
        for bad in [
            "apos/v1/s1/n2/batch",
            "apos/v1/s1/n1/ack",
            "junk/1",
            "apos/v1/s1/n1/batch/x",
        ] {
            assert!(
                acl.check(&publish(bad, QoS::AtLeastOnce, false)).is_err(),
                "{bad}"
            );
        }
        assert!(
            acl.check(&publish("apos/v1/s1/n1/batch", QoS::ExactlyOnce, false))
                .is_err()
        );
        assert!(
            acl.check(&publish("apos/v1/s1/n1/batch", QoS::AtLeastOnce, true))
                .is_err()
        );
        let sub = |t: &str| Packet::Subscribe(Subscribe::new(t, QoS::AtLeastOnce));
        assert!(acl.check(&sub("apos/v1/s1/n1/ack")).is_ok());
        for bad in [
            "apos/v1/+/+/ack",
            "#",
            "apos/v1/s1/n2/ack",
            "apos/v1/s1/n1/batch",
        ] {
            assert!(acl.check(&sub(bad)).is_err(), "{bad}");
        }
        // A user name that is not a node's allows nothing.
        let none = Acl::for_user("nodot");
        assert!(
            none.check(&publish("apos/v1/nodot//batch", QoS::AtLeastOnce, false))
                .is_err()
        );
    }

    #[tokio::test]
    async fn packets_are_framed_whatever_the_read_sizes() {
        let mut bytes = BytesMut::new();
        let mut c = connect("s1.n1", Some(("s1.n1", "pw")));
        c.keep_alive = 30;
        Packet::Connect(c).write(&mut bytes, 1 << 20).unwrap();
        let mut p = Publish::new("apos/v1/s1/n1/batch", QoS::AtLeastOnce, vec![7u8; 5000]);
        p.pkid = 1;
        Packet::Publish(p).write(&mut bytes, 1 << 20).unwrap();
        let wire = bytes.to_vec();
        // One byte at a time.
        let (mut tx, mut rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            tx.write_all(&wire).await.unwrap();
        });
        let mut buf = BytesMut::new();
        let (raw1, p1) = read_packet(&mut rx, &mut buf, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(p1, Packet::Connect(_)));
        let (raw2, p2) = read_packet(&mut rx, &mut buf, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(p2, Packet::Publish(ref p) if p.payload.len() == 5000));
        assert_eq!(raw1.len() + raw2.len(), bytes.len());
        writer.await.unwrap();
        assert!(
            read_packet(&mut rx, &mut buf, 1 << 20)
                .await
                .unwrap()
                .is_none()
        );
        // Oversized: refused before it is read.
        let mut big = BytesMut::new();
        let mut p = Publish::new("t", QoS::AtLeastOnce, vec![0u8; 3000]);
        p.pkid = 2;
        Packet::Publish(p).write(&mut big, 1 << 20).unwrap();
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&big).await.unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            read_packet(&mut rx, &mut buf, 1000).await,
            Err(Refusal::Protocol(_))
        ));
    }
}
