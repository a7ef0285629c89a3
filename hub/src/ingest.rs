//! Ingest: MQTT in, DuckDB commit, signed acknowledgements out.
//!
//! ```text
//! broker ──batch/status──▶ ingest task ──[bounded 64, BLOCKS]──▶ store thread (DuckDB)
//!        ◀──ack (signed)── ingest task ◀──[committed seqs]────── store thread
//! ```
//!
//! The hub is an MQTT client of the broker in both modes (embedded rumqttd
//! or external mosquitto/EMQX), so the delivery path is one code path.
//! A message is checked in this order, cheapest first, and every refusal is
//! counted and logged: size, topic, known node, signature, body. Nothing
//! from the network can panic this task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::v1::{Ack, Message};
use protocol::{Kind, NodeKey, ProtocolError, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, bump};
use crate::store::{Incoming, Store};

/// Batches waiting for the store thread; when full, the ingest task stops
/// reading the broker (rumqttd may then drop messages for us after PUBACK:
/// the edges resend what we never acknowledged).
pub const STORE_QUEUE: usize = 64;

/// How often superseded KPI values (open shift/day/week windows re-sent as
/// they grow) are deleted, at most.
const KPI_COMPACT_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot start the DuckDB thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot read the broker's CA file {0}: {1}")]
    CaFile(std::path::PathBuf, std::io::Error),
}

/// Where the ingest client connects.
#[derive(Debug, Clone)]
pub struct Link {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<std::path::PathBuf>,
    pub credentials: Option<(String, String)>,
}

enum ToStore {
    Batch(Incoming),
    Status {
        site: String,
        node: String,
        status: protocol::v1::Status,
    },
}

/// Run until `cancel`. `store` is moved to a dedicated thread.
pub async fn run(
    link: Link,
    keys: Arc<BTreeMap<(String, String), NodeKey>>,
    store: Store,
    max_message: usize,
    commit_interval: Duration,
    ready: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) -> Result<(), IngestError> {
    let (to_store, from_ingest) = mpsc::channel::<ToStore>(STORE_QUEUE);
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<BTreeMap<(String, String), Vec<u64>>>();
    let store_thread = std::thread::Builder::new()
        .name("duckdb-ingest".into())
        .spawn(move || store_loop(store, from_ingest, acks_tx, commit_interval))
        .map_err(IngestError::Thread)?;

    // The client id is the login, as for nodes (a broker that binds ids
    // to logins then protects the hub's session too).
    let client_id = link
        .credentials
        .as_ref()
        .map_or_else(|| crate::broker::HUB_USER.to_owned(), |(u, _)| u.clone());
    let mut opts = MqttOptions::new(client_id, &link.host, link.port);
    opts.set_keep_alive(Duration::from_secs(10));
    // Read somewhat larger messages than we accept, so that an oversized
    // one coming through an external broker is refused and counted here
    // instead of costing the hub its connection.
    opts.set_max_packet_size(max_message.saturating_mul(4) + 1024, max_message + 1024);
    opts.set_clean_session(true);
    opts.set_inflight(500);
    if let Some((u, p)) = &link.credentials {
        opts.set_credentials(u, p);
    }
    if link.tls {
        let tls = match &link.ca_file {
            Some(path) => rumqttc::TlsConfiguration::Simple {
                ca: std::fs::read(path).map_err(|e| IngestError::CaFile(path.clone(), e))?,
                alpn: None,
                client_auth: None,
            },
            None => rumqttc::TlsConfiguration::default(),
        };
        opts.set_transport(Transport::tls_with_config(tls));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    eventloop.set_network_options(net);
    let mut backoff = Duration::from_millis(200);
    let mut last_err: Option<Instant> = None;
    // SUBACKs still expected after the last CONNACK.
    let mut awaiting_suback = 0usize;

    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            acks = acks_rx.recv() => {
                let Some(acks) = acks else { break };
                for ((site, node), seqs) in acks {
                    let Some(key) = keys.get(&(site.clone(), node.clone())) else { continue };
                    let Ok(topic) = Topic::new(&site, &node, Kind::Ack) else { continue };
                    match protocol::envelope::seal(&topic, &Message::Ack(Ack::from_seqs(seqs)), key) {
                        Ok(bytes) => {
                            if let Err(e) = client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, bytes) {
                                // Not acknowledged now: the edge resends and we ack the duplicate.
                                tracing::warn!(%topic, error = %e, "cannot queue an acknowledgement");
                            } else {
                                bump(&metrics::ACKS_SENT, 1);
                            }
                        }
                        Err(e) => tracing::error!(%topic, error = %e, "cannot seal an acknowledgement"),
                    }
                }
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(200);
                    tracing::info!(host = %link.host, port = link.port, "hub ingest connected to the broker");
                    awaiting_suback = 0;
                    for kind in [Kind::Batch, Kind::Status] {
                        match client.try_subscribe(Topic::filter_all(kind), QoS::AtLeastOnce) {
                            Ok(()) => awaiting_suback += 1,
                            Err(e) => tracing::error!(error = %e, "cannot subscribe"),
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    awaiting_suback = awaiting_suback.saturating_sub(1);
                    if awaiting_suback == 0 {
                        ready.send_replace(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let received_ms = now_ms();
                    match check(&p.topic, &p.payload, &keys, max_message) {
                        Ok((topic, Message::Batch(batch))) => {
                            let item = ToStore::Batch(Incoming { site: topic.site, node: topic.node, batch, received_ms });
                            if to_store.send(item).await.is_err() {
                                tracing::error!("the store thread stopped");
                                break;
                            }
                        }
                        Ok((topic, Message::Status(status))) => {
                            let _ = to_store.send(ToStore::Status { site: topic.site, node: topic.node, status }).await;
                        }
                        Ok((topic, Message::Ack(_))) => {
                            tracing::debug!(%topic, "ignoring an ack seen on our own subscription");
                        }
                        Err(e) => refuse(&p.topic, p.payload.len(), &e),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    ready.send_replace(false);
                    if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(error = %e, host = %link.host, port = link.port, "hub ingest cannot reach the broker; retrying");
                        last_err = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    drop(to_store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    Ok(())
}

/// Why a message was refused, for counting.
#[derive(Debug)]
pub enum Refusal {
    Topic(ProtocolError),
    UnknownNode(String, String),
    Protocol(ProtocolError),
}

fn check(
    topic: &str,
    payload: &[u8],
    keys: &BTreeMap<(String, String), NodeKey>,
    max: usize,
) -> Result<(Topic, Message), Refusal> {
    if payload.len() > max {
        return Err(Refusal::Protocol(ProtocolError::TooLarge(
            payload.len(),
            max,
        )));
    }
    let t = Topic::parse(topic).map_err(Refusal::Topic)?;
    let key = keys
        .get(&(t.site.clone(), t.node.clone()))
        .ok_or_else(|| Refusal::UnknownNode(t.site.clone(), t.node.clone()))?;
    let msg = protocol::envelope::open(&t, payload, key, max).map_err(Refusal::Protocol)?;
    Ok((t, msg))
}

/// Count a refused message exactly; log it at most once a minute per
/// reason and topic (anyone who can publish could otherwise grow the log
/// without bound).
fn refuse(topic: &str, len: usize, r: &Refusal) {
    let topic: String = topic.chars().take(200).collect();
    let (counter, reason): (&std::sync::atomic::AtomicU64, &'static str) = match r {
        Refusal::Topic(_) => (&metrics::REJECTED_TOPIC, "bad topic"),
        Refusal::UnknownNode(..) => (&metrics::REJECTED_UNKNOWN_NODE, "unknown node"),
        Refusal::Protocol(ProtocolError::BadSignature) => {
            (&metrics::REJECTED_SIGNATURE, "signature")
        }
        Refusal::Protocol(ProtocolError::TooLarge(..)) => {
            (&metrics::REJECTED_TOO_LARGE, "too large")
        }
        Refusal::Protocol(_) => (&metrics::REJECTED_MALFORMED, "malformed"),
    };
    bump(counter, 1);
    metrics::LOG_THROTTLE.allow(reason, &topic, |suppressed| match r {
        Refusal::Topic(e) => {
            tracing::warn!(%topic, bytes = len, error = %e, suppressed, "message refused: bad topic");
        }
        Refusal::UnknownNode(site, node) => {
            tracing::warn!(%topic, %site, %node, suppressed, "message refused: node not in the hub's configuration");
        }
        Refusal::Protocol(e) => {
            tracing::warn!(%topic, bytes = len, error = %e, suppressed, "message refused");
        }
    });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The DuckDB side: gather for `commit_interval`, commit, report what is
/// durable. Commits are retried; nothing is acknowledged before one succeeds.
fn store_loop(
    mut store: Store,
    mut rx: mpsc::Receiver<ToStore>,
    acks: mpsc::UnboundedSender<BTreeMap<(String, String), Vec<u64>>>,
    commit_interval: Duration,
) {
    let mut pending: Vec<Incoming> = Vec::new();
    let mut compacted = Instant::now();
    // Windows in `pending`, kept as they arrive rather than summed per poll.
    let mut pending_windows = 0usize;
    let mut open = true;
    while open || !pending.is_empty() {
        if open {
            let first = if pending.is_empty() {
                rx.blocking_recv()
            } else {
                rx.try_recv().ok()
            };
            match first {
                Some(m) => pending_windows += accept(&mut store, m, &mut pending),
                None if pending.is_empty() => open = false,
                None => {}
            }
            let deadline = Instant::now() + commit_interval;
            // Bound what waits in memory: commit at the latest after one
            // transaction's worth of windows.
            while open
                && pending_windows < crate::store::MAX_TX_WINDOWS
                && Instant::now() < deadline
            {
                match rx.try_recv() {
                    Ok(m) => pending_windows += accept(&mut store, m, &mut pending),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_millis(2).min(commit_interval))
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        match store.ingest(&pending) {
            Ok(r) => {
                bump(&metrics::BATCHES_NEW, r.new_batches);
                bump(&metrics::BATCHES_DUPLICATE, r.duplicates);
                bump(&metrics::WINDOWS_STORED, r.windows);
                bump(&metrics::FORECASTS_STORED, r.forecasts);
                bump(&metrics::KPIS_STORED, r.kpis);
                pending.clear();
                pending_windows = 0;
                let _ = acks.send(r.committed);
                if r.kpis > 0 && compacted.elapsed() >= KPI_COMPACT_EVERY {
                    compacted = Instant::now();
                    match store.compact_kpis() {
                        Ok(n) => tracing::debug!(rows = n, "superseded KPI values compacted"),
                        Err(e) => tracing::warn!(error = %e, "cannot compact KPI values"),
                    }
                }
            }
            Err(e) => {
                bump(&metrics::COMMIT_ERRORS, 1);
                tracing::error!(error = %e, batches = pending.len(), "DuckDB commit failed; reopening the database and retrying (nothing acknowledged)");
                std::thread::sleep(Duration::from_secs(1));
                if let Err(e) = store.reopen() {
                    tracing::error!(error = %e, "cannot reopen the DuckDB database");
                }
            }
        }
    }
}

/// Queue a batch (returns its rows) or record a status at once (0).
fn accept(store: &mut Store, m: ToStore, pending: &mut Vec<Incoming>) -> usize {
    match m {
        ToStore::Batch(b) => {
            let n = b.batch.windows();
            pending.push(b);
            n
        }
        ToStore::Status { site, node, status } => {
            if let Err(e) = store.status(&site, &node, &status, now_ms()) {
                tracing::warn!(%site, %node, error = %e, "cannot record a node status");
            }
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refusals_are_classified() {
        let keys: BTreeMap<_, _> = [(
            ("s".to_string(), "a".to_string()),
            NodeKey::new(b"0123456789abcdef").unwrap(),
        )]
        .into();
        assert!(matches!(
            check("apos/v1/s/b/batch", b"xx", &keys, 100),
            Err(Refusal::UnknownNode(..))
        ));
        assert!(matches!(
            check("nope", b"xx", &keys, 100),
            Err(Refusal::Topic(_))
        ));
        assert!(matches!(
            check("apos/v1/s/a/batch", &[0u8; 200], &keys, 100),
            Err(Refusal::Protocol(ProtocolError::TooLarge(..)))
        ));
        assert!(matches!(
            check("apos/v1/s/a/batch", &[0u8; 50], &keys, 100),
            Err(Refusal::Protocol(ProtocolError::BadMagic))
        ));
    }
}
