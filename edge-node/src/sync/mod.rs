//! Edge → hub sync: aggregation windows, the durable outbox, MQTT.
//!
//! ```text
//! filter ──(every sample)──▶ Aggregator ──[windows: bounded 4, BLOCKS]──▶ history writer
//!                                                                             │ one transaction:
//!                                                                             │ aggregates + outbox row
//!                                                                             ▼
//!                 hub ◀──batch (QoS 1, signed)── sync task ◀── outbox (SQLite) ◀┘
//!                 hub ──ack (signed seqs)──────▶ sync task ──▶ delete acknowledged rows
//! ```
//!
//! Delivery rests on three things (see `docs/protocol.md`): the outbox is
//! durable and written with the data; the hub acknowledges a sequence number
//! only after its own commit, and deduplicates on (node, seq); the edge
//! resends whatever is unacknowledged after `resend_after` and on every
//! reconnect. A broker PUBACK is not taken as delivery.

pub mod aggregate;
pub mod machine;
pub mod outbox;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware_config::{EdgeConfig, SecretSource};
use protocol::v1::{Message, Status};
use protocol::{Kind, NodeKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::machine::SendMachine;
use self::outbox::Outbox;
use crate::history::HistoryError;

/// Run a blocking outbox call off the async runtime.
async fn blocking<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    f: impl FnOnce(&mut Outbox) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, String> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || {
        let mut o = outbox
            .lock()
            .map_err(|_| "outbox lock poisoned".to_string())?;
        f(&mut o).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Software version reported to the hub.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Live counters of the sync task.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub connected: AtomicBool,
    pub published: AtomicU64,
    pub resent: AtomicU64,
    pub acked: AtomicU64,
    pub acks_refused: AtomicU64,
    /// Failed deletes of acknowledged batches (full disk, I/O error).
    pub delete_errors: AtomicU64,
    pub depth: AtomicU64,
    pub oldest_unacked_ms: AtomicU64,
    /// When the hub last acknowledged a batch (ms since 1970; 0 = never).
    pub last_ack_ms: std::sync::atomic::AtomicI64,
}

/// Everything the sync task needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub site: String,
    pub node: String,
    pub key: NodeKey,
    pub host: String,
    pub port: u16,
    pub tls: Option<Option<PathBuf>>,
    pub credentials: Option<(String, String)>,
    pub max_in_flight: usize,
    pub resend_after: Duration,
    pub status_interval: Duration,
    pub db: PathBuf,
    pub started_ms: i64,
    /// Where recommendations from the hub go (the setpoint task checks
    /// them); `None`: this edge does not subscribe to them.
    pub recommendations: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
}

fn read_secret(s: &SecretSource, what: &str) -> Result<String, String> {
    match s {
        SecretSource::Env(v) => {
            std::env::var(v).map_err(|_| format!("environment variable {v} ({what}) is not set"))
        }
        SecretSource::File(p) => std::fs::read_to_string(p)
            .map(|t| t.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("cannot read {what} file {}: {e}", p.display())),
    }
}

impl SyncSettings {
    /// `None` when the configuration has no `[sync]`.
    pub fn from_config(cfg: &EdgeConfig) -> Result<Option<SyncSettings>, String> {
        let Some(s) = &cfg.sync else { return Ok(None) };
        let key_text = read_secret(&s.key, "the node's signing key")?;
        let key = NodeKey::new(key_text.as_bytes())
            .ok_or("the node's signing key must be at least 16 bytes")?;
        let credentials = match &s.credentials {
            Some((u, p)) => Some((u.clone(), read_secret(p, "the MQTT password")?)),
            None => None,
        };
        protocol::topic::check_id(&cfg.node.site_id).map_err(|e| format!("site_id: {e}"))?;
        protocol::topic::check_id(&cfg.node.node_id).map_err(|e| format!("node_id: {e}"))?;
        Ok(Some(SyncSettings {
            site: cfg.node.site_id.clone(),
            node: cfg.node.node_id.clone(),
            key,
            host: s.broker_host.clone(),
            port: s.broker_port,
            tls: s.tls.clone(),
            credentials,
            max_in_flight: s.max_in_flight,
            resend_after: s.resend_after,
            status_interval: s.status_interval,
            db: cfg.storage.path.clone(),
            started_ms: drivers::Timestamp::now().as_millis(),
            recommendations: None,
        }))
    }

    fn mqtt_options(&self) -> Result<MqttOptions, String> {
        // The client id is the login (the hub's broker refuses any other,
        // and mosquitto's `use_username_as_clientid` makes it so).
        let client_id = match &self.credentials {
            Some((user, _)) => user.clone(),
            None => protocol::node_login(&self.site, &self.node),
        };
        let mut o = MqttOptions::new(client_id, &self.host, self.port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(8 << 20, 8 << 20);
        o.set_clean_session(true);
        o.set_inflight(u16::try_from(self.max_in_flight.clamp(1, 1000)).unwrap_or(100));
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u, p);
        }
        if let Some(ca) = &self.tls {
            let tls = match ca {
                Some(path) => TlsConfiguration::Simple {
                    ca: std::fs::read(path)
                        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?,
                    alpn: None,
                    client_auth: None,
                },
                None => TlsConfiguration::default(),
            };
            o.set_transport(Transport::tls_with_config(tls));
        }
        Ok(o)
    }
}

/// When to try again to delete acknowledged batches after a failure.
#[derive(Debug, Default)]
struct Retry {
    at: Option<Instant>,
    delay: Duration,
    failures: u64,
    last_log: Option<Instant>,
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    fn due(&self) -> bool {
        self.at.is_some_and(|t| Instant::now() >= t)
    }
}

/// Delete what the hub acknowledged. A failure (a full disk) leaves the
/// batches acknowledged in the machine, so they are never sent again, and
/// the delete is retried with backoff; the log says so at most once a minute.
async fn delete_acked(
    outbox: &Arc<Mutex<Outbox>>,
    machine: &mut SendMachine,
    retry: &mut Retry,
    stats: &SyncStats,
) {
    let seqs = machine.undeleted();
    if seqs.is_empty() {
        retry.at = None;
        return;
    }
    let list = seqs.clone();
    match blocking(outbox, move |o| o.delete(&list)).await {
        Ok(_) => {
            machine.on_deleted(seqs);
            if retry.failures > 0 {
                tracing::info!(
                    failures = retry.failures,
                    "acknowledged batches deleted from the outbox again"
                );
            }
            *retry = Retry::default();
        }
        Err(e) => {
            retry.failures += 1;
            stats.delete_errors.fetch_add(1, Ordering::Relaxed);
            retry.delay = (retry.delay * 2).clamp(Retry::FIRST, Retry::MAX);
            retry.at = Some(Instant::now() + retry.delay);
            if retry
                .last_log
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                retry.last_log = Some(Instant::now());
                tracing::error!(
                    error = %e,
                    batches = seqs.len(),
                    failures = retry.failures,
                    retry_in = ?retry.delay,
                    "cannot delete acknowledged batches from the outbox; they are not sent again, retrying the delete"
                );
            }
        }
    }
}

/// Run until `cancel`: publish the outbox, delete what the hub acknowledges.
/// `sealed` wakes the task when the writer queues a batch.
pub async fn run(
    settings: SyncSettings,
    mut sealed: watch::Receiver<u64>,
    stats: Arc<SyncStats>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let outbox = Arc::new(Mutex::new(
        Outbox::open(&settings.db).map_err(|e| e.to_string())?,
    ));
    let opts = settings.mqtt_options()?;
    let (client, mut eventloop) = AsyncClient::new(opts, settings.max_in_flight * 2 + 16);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    // Longer than the hub's gate may hold a login while it hands the node's
    // previous session over (up to 5 s, plus the broker's CONNACK): a
    // shorter timeout gave up on logins the gate was about to accept, and
    // under load that became a reconnect loop.
    net.set_connection_timeout(15);
    eventloop.set_network_options(net);
    // Its own task: `poll()` must never be cancelled by the tick below
    // (see `protocol::link`).
    let (mut events, poller) = protocol::link::spawn_poller(
        eventloop,
        protocol::link::Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(10),
        },
    );

    let batch_topic =
        Topic::new(&settings.site, &settings.node, Kind::Batch).map_err(|e| e.to_string())?;
    let ack_topic =
        Topic::new(&settings.site, &settings.node, Kind::Ack).map_err(|e| e.to_string())?;
    let status_topic =
        Topic::new(&settings.site, &settings.node, Kind::Status).map_err(|e| e.to_string())?;
    let ack_topic_text = ack_topic.to_string();
    let rec_topic_text = Topic::new(&settings.site, &settings.node, Kind::Recommendation)
        .map_err(|e| e.to_string())?
        .to_string();

    let mut sealed_open = true;
    let mut machine = SendMachine::new(settings.max_in_flight, settings.resend_after);
    let mut connected = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(settings.status_interval);
    let mut last_error_log: Option<Instant> = None;
    let mut delete_retry = Retry::default();

    loop {
        let mut send_now = false;
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = events.recv() => match ev {
                None => return Err("the MQTT event loop stopped".into()),
                Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    connected = true;
                    stats.connected.store(true, Ordering::Relaxed);
                    machine.on_connected();
                    tracing::info!(broker = %format!("{}:{}", settings.host, settings.port), "sync connected to the hub's broker");
                    if let Err(e) = client.try_subscribe(ack_topic_text.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "cannot subscribe to acknowledgements");
                    }
                    if settings.recommendations.is_some()
                        && let Err(e) = client.try_subscribe(rec_topic_text.clone(), QoS::AtLeastOnce)
                    {
                        tracing::warn!(error = %e, "cannot subscribe to recommendations");
                    }
                    send_now = true;
                }
                Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == rec_topic_text => {
                    // Checked (signature, freshness) by the setpoint task;
                    // a full queue drops it (counted): the hub proposes again.
                    if let Some(tx) = &settings.recommendations
                        && tx.try_send(p.payload.clone()).is_err()
                    {
                        tracing::warn!("recommendation dropped: the setpoint task is busy");
                    }
                }
                Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == ack_topic_text => {
                    match protocol::envelope::open(&ack_topic, &p.payload, &settings.key, protocol::MAX_MESSAGE_BYTES) {
                        Ok(Message::Ack(ack)) => {
                            let seqs: Vec<u64> = ack.seqs().collect();
                            stats.acked.fetch_add(seqs.len() as u64, Ordering::Relaxed);
                            stats.last_ack_ms.store(drivers::Timestamp::now().as_millis(), Ordering::Relaxed);
                            machine.on_acked(seqs.iter().copied());
                            delete_acked(&outbox, &mut machine, &mut delete_retry, &stats).await;
                            send_now = true;
                        }
                        Ok(_) | Err(_) => {
                            stats.acks_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(topic = %p.topic, bytes = p.payload.len(), "refused an acknowledgement that does not verify");
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if connected {
                        tracing::warn!(error = %e, "sync lost the hub's broker; unacknowledged batches stay in the outbox");
                    } else if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(error = %e, broker = %format!("{}:{}", settings.host, settings.port), "sync cannot reach the hub's broker; collecting into the outbox");
                        last_error_log = Some(Instant::now());
                    }
                    connected = false;
                    stats.connected.store(false, Ordering::Relaxed);
                }
            },
            _ = tick.tick() => send_now = true,
            r = sealed.changed(), if sealed_open => {
                // Err: the writer is gone (shutdown); keep sending what is queued.
                sealed_open = r.is_ok();
                send_now = true;
            }
            _ = status_tick.tick() => {
                if let Ok(st) = blocking(&outbox, |o| o.state()).await {
                    let now = drivers::Timestamp::now().as_millis();
                    stats.depth.store(st.batches, Ordering::Relaxed);
                    stats.oldest_unacked_ms.store(st.oldest_created_ms.map_or(0, |t| (now - t).max(0) as u64), Ordering::Relaxed);
                    let msg = Message::Status(Status {
                        ts_ms: now,
                        software_version: VERSION.to_owned(),
                        started_ms: settings.started_ms,
                        outbox_batches: st.batches,
                        outbox_bytes: st.bytes,
                        oldest_unacked_ms: st.oldest_created_ms,
                        last_seq: st.last_seq,
                        dropped_batches: st.lost(),
                    });
                    if connected && let Ok(bytes) = protocol::envelope::seal(&status_topic, &msg, &settings.key) {
                        let _ = client.try_publish(status_topic.to_string(), QoS::AtMostOnce, false, bytes);
                    }
                }
            }
        }
        if delete_retry.due() {
            delete_acked(&outbox, &mut machine, &mut delete_retry, &stats).await;
        }
        if !(send_now && connected) {
            continue;
        }
        // Acknowledged batches not deleted yet are listed too; skip past them.
        let limit = settings.max_in_flight * 2 + machine.undeleted().len();
        let unacked = match blocking(&outbox, move |o| o.unacked(limit)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                continue;
            }
        };
        let before = machine.resends();
        let due = machine.due(Instant::now(), &unacked);
        stats
            .resent
            .fetch_add(machine.resends() - before, Ordering::Relaxed);
        if due.is_empty() {
            continue;
        }
        let loaded = blocking(&outbox, move |o| {
            let mut out = Vec::with_capacity(due.len());
            for s in due {
                if let Some(b) = o.load(s)? {
                    out.push(b);
                }
            }
            Ok(out)
        })
        .await;
        let batches = match loaded {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot load outbox batches");
                continue;
            }
        };
        for b in batches {
            let seq = b.seq;
            match protocol::envelope::seal(&batch_topic, &Message::Batch(b), &settings.key) {
                Ok(bytes) => {
                    if client
                        .try_publish(batch_topic.to_string(), QoS::AtLeastOnce, false, bytes)
                        .is_err()
                    {
                        // The client's queue is full: try again next round.
                        machine.forget(seq);
                        break;
                    }
                    stats.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(seq, error = %e, "cannot encode an outbox batch"),
            }
        }
    }
    // The poller sends the DISCONNECT; keep taking its events until the
    // link closes or a second has passed.
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = events.recv().await {}
        })
        .await;
    }
    drop(events);
    let _ = poller.await;
    Ok(())
}
