//! Ingest: MQTT in, DuckDB commit, signed acknowledgements out.
//!
//! ```text
//! broker ──batch/status──▶ ingest task ──[bounded 64, BLOCKS]──▶ store thread (DuckDB)
//!        ◀──ack (signed)── ingest task ◀──[committed seqs]────── store thread
//!                                      live dashboards ◀──events── store thread (after commit)
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

use crate::events::{AlarmItem, Event as Live, Events, KpiItem, NodeCause};
use crate::metrics::{self, bump};
use crate::store::{Incoming, Quarantined, StatusOutcome, Store};

/// Batches waiting for the store thread; when full, the ingest task stops
/// reading the broker (rumqttd may then drop messages for us after PUBACK:
/// the edges resend what we never acknowledged).
pub const STORE_QUEUE: usize = 64;

/// How often superseded KPI values (open shift/day/week windows re-sent as
/// they grow) are deleted, at most.
const KPI_COMPACT_EVERY: Duration = Duration::from_secs(600);
/// How often new windows are folded into the hourly/daily chart rollup
/// (`Store::refresh_rollups`); charts read the windows not folded in yet
/// directly, so this bounds their cost, not their correctness.
const ROLLUP_EVERY: Duration = Duration::from_secs(60);
/// Windows folded per step: ~0.2 s of the store thread, so a catch-up over
/// a large existing database never holds the ingest for long.
const ROLLUP_STEP: u64 = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot start the DuckDB thread: {0}")]
    Thread(std::io::Error),
    #[error("the DuckDB thread stopped")]
    StoreStopped,
    #[error("cannot read the broker's CA file {0}: {1}")]
    CaFile(std::path::PathBuf, std::io::Error),
}

/// The ingest's heartbeats: its loop and the store thread's, each at
/// least once a second (the systemd watchdog watches them).
#[derive(Debug, Clone, Default)]
pub struct Beats {
    pub ingest: web::systemd::Beat,
    pub store: web::systemd::Beat,
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
    /// Signed, but with values no store can hold (see `protocol::check`).
    Quarantine(Quarantined),
    Status {
        site: String,
        node: String,
        status: protocol::v1::Status,
    },
}

/// Run until `cancel`. `store` is moved to a dedicated thread, which
/// sends what each commit stored on `events`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    link: Link,
    keys: Arc<BTreeMap<(String, String), NodeKey>>,
    store: Store,
    max_message: usize,
    commit_interval: Duration,
    ready: tokio::sync::watch::Sender<bool>,
    events: Events,
    beats: Beats,
    mut recommendations: mpsc::Receiver<crate::optimize::Outgoing>,
    cancel: CancellationToken,
) -> Result<(), IngestError> {
    let (to_store, from_ingest) = mpsc::channel::<ToStore>(STORE_QUEUE);
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<BTreeMap<(String, String), Vec<u64>>>();
    let out = Out {
        acks: acks_tx,
        events,
    };
    // The store thread waits on its queue with a timeout (so it beats
    // while idle): a tiny runtime of its own for that.
    let wait_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(IngestError::Thread)?;
    let store_beat = beats.store.clone();
    let store_thread = std::thread::Builder::new()
        .name("duckdb-ingest".into())
        .spawn(move || {
            store_loop(
                store,
                from_ingest,
                out,
                commit_interval,
                wait_rt,
                store_beat,
            )
        })
        .map_err(IngestError::Thread)?;
    let queued = |tx: &mpsc::Sender<ToStore>| {
        metrics::STORE_QUEUE_DEPTH.store(
            (tx.max_capacity() - tx.capacity()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    };

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
    // Its own task: `poll()` must never be cancelled by the heartbeat or
    // the acknowledgements below (see `protocol::link`).
    let (mut events, poller) = protocol::link::spawn_poller(
        eventloop,
        protocol::link::Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
    );
    let mut last_err: Option<Instant> = None;
    // SUBACKs still expected after the last CONNACK.
    let mut awaiting_suback = 0usize;
    // The store thread went away (a panic, a fatal error): nothing more
    // can be stored, so the hub must not carry on as if it could.
    let mut stopped = false;

    let mut heartbeat = tokio::time::interval(web::systemd::BEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beats.ingest.beat();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = heartbeat.tick() => {}
            Some((topic, bytes)) = recommendations.recv() => {
                // QoS 1: the edge's persistent session keeps it while it is away.
                match client.try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes) {
                    Ok(()) => tracing::info!(%topic, "recommendation published"),
                    Err(e) => tracing::warn!(%topic, error = %e, "cannot queue a recommendation; the next run proposes again"),
                }
            }
            acks = acks_rx.recv() => {
                let Some(acks) = acks else {
                    stopped = !cancel.is_cancelled();
                    break;
                };
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
            ev = events.recv() => match ev {
                None => {
                    stopped = !cancel.is_cancelled();
                    break;
                }
                Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    tracing::info!(host = %link.host, port = link.port, "hub ingest connected to the broker");
                    awaiting_suback = 0;
                    for kind in [Kind::Batch, Kind::Status] {
                        match client.try_subscribe(Topic::filter_all(kind), QoS::AtLeastOnce) {
                            Ok(()) => awaiting_suback += 1,
                            Err(e) => tracing::error!(error = %e, "cannot subscribe"),
                        }
                    }
                }
                Some(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    awaiting_suback = awaiting_suback.saturating_sub(1);
                    if awaiting_suback == 0 {
                        ready.send_replace(true);
                    }
                }
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let received_ms = now_ms();
                    match check(&p.topic, &p.payload, &keys, max_message) {
                        Ok((topic, Message::Batch(batch))) => {
                            let item = match protocol::check::batch(&batch) {
                                Ok(()) => ToStore::Batch(Incoming { site: topic.site, node: topic.node, batch, received_ms, raw: p.payload.clone() }),
                                Err(e) => ToStore::Quarantine(Quarantined {
                                    site: topic.site,
                                    node: topic.node,
                                    seq: batch.seq,
                                    received_ms,
                                    reason: format!("value out of range: {e}"),
                                    payload: p.payload.to_vec(),
                                }),
                            };
                            if to_store.send(item).await.is_err() {
                                stopped = true;
                                break;
                            }
                            queued(&to_store);
                        }
                        Ok((topic, Message::Status(status))) => {
                            if let Err(e) = protocol::check::status(&status) {
                                refuse(&p.topic, p.payload.len(), &Refusal::Invalid(e));
                                continue;
                            }
                            let _ = to_store.send(ToStore::Status { site: topic.site, node: topic.node, status }).await;
                            queued(&to_store);
                        }
                        Ok((topic, Message::Ack(_))) => {
                            tracing::debug!(%topic, "ignoring an ack seen on our own subscription");
                        }
                        Err(e) => refuse(&p.topic, p.payload.len(), &e),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ready.send_replace(false);
                    if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(error = %e, host = %link.host, port = link.port, "hub ingest cannot reach the broker; retrying");
                        last_err = Some(Instant::now());
                    }
                }
            }
        }
    }
    drop(events);
    let _ = poller.await;
    drop(to_store);
    let joined = tokio::task::spawn_blocking(move || store_thread.join()).await;
    if stopped || matches!(joined, Ok(Err(_))) {
        return Err(IngestError::StoreStopped);
    }
    Ok(())
}

/// Why a message was refused, for counting.
#[derive(Debug)]
pub enum Refusal {
    Topic(ProtocolError),
    UnknownNode(String, String),
    Protocol(ProtocolError),
    /// Signed and decodable, with values out of range (statuses; batches
    /// are quarantined instead).
    Invalid(protocol::check::Invalid),
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
        Refusal::Invalid(_) => (&metrics::REJECTED_INVALID, "out of range"),
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
        Refusal::Invalid(e) => {
            tracing::warn!(%topic, bytes = len, error = %e, suppressed, "message refused: value out of range");
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
    acks: Out,
    commit_interval: Duration,
    wait_rt: tokio::runtime::Runtime,
    beat: web::systemd::Beat,
) {
    let depth = |rx: &mpsc::Receiver<ToStore>| {
        metrics::STORE_QUEUE_DEPTH.store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
    };
    let mut pending: Vec<Incoming> = Vec::new();
    let mut compacted = Instant::now();
    // Windows in `pending`, kept as they arrive rather than summed per poll.
    let mut pending_windows = 0usize;
    let mut open = true;
    let mut rollup = Rollup::default();
    while open || !pending.is_empty() {
        beat.beat();
        rollup.step(&mut store);
        if open {
            let first = if pending.is_empty() && !rollup.behind() {
                // The timer is made inside the runtime (it needs its clock).
                let waited = wait_rt.block_on(async {
                    tokio::time::timeout(web::systemd::BEAT_EVERY, rx.recv()).await
                });
                match waited {
                    Ok(m) => m,
                    // Idle: turn the loop, which beats.
                    Err(_) => continue,
                }
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if pending.is_empty() {
                            // Catching up on the rollup, nothing to store.
                            continue;
                        }
                        None
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            depth(&rx);
            match first {
                Some(m) => pending_windows += accept(&mut store, m, &mut pending, &acks),
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
                    Ok(m) => {
                        depth(&rx);
                        pending_windows += accept(&mut store, m, &mut pending, &acks);
                    }
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
        let started = Instant::now();
        let stored = store.ingest(&pending);
        metrics::COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        match stored {
            Ok(r) => {
                counted(&r);
                publish(&acks.events, &pending, &r.fresh);
                pending.clear();
                pending_windows = 0;
                let kpis = r.kpis;
                rollup.dirty |= r.windows > 0;
                let _ = acks.acks.send(r.committed);
                if kpis > 0 && compacted.elapsed() >= KPI_COMPACT_EVERY {
                    compacted = Instant::now();
                    match store.compact_kpis() {
                        Ok(n) => tracing::debug!(rows = n, "superseded KPI values compacted"),
                        Err(e) => tracing::warn!(error = %e, "cannot compact KPI values"),
                    }
                }
            }
            Err(e) => {
                bump(&metrics::COMMIT_ERRORS, 1);
                tracing::error!(error = %e, batches = pending.len(), "DuckDB commit failed; reopening the database and storing the batches one by one");
                std::thread::sleep(Duration::from_secs(1));
                if let Err(e) = store.reopen() {
                    tracing::error!(error = %e, "cannot reopen the DuckDB database");
                }
                isolate(&mut store, &mut pending, &acks);
                pending_windows = pending.iter().map(|i| i.batch.windows()).sum();
                if !pending.is_empty() {
                    // The database itself refuses writes: wait, then retry.
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    }
}

/// When the store thread folds new windows into the chart rollup: every
/// [`ROLLUP_EVERY`] after windows arrived, and step by step while behind
/// (the first start on an existing database).
#[derive(Debug)]
struct Rollup {
    last: Instant,
    /// Windows arrived since the last step.
    dirty: bool,
    /// Windows the last step left to fold.
    remaining: u64,
    /// After an error, wait a whole period before trying again.
    failed: bool,
}

impl Default for Rollup {
    fn default() -> Self {
        // Due at once: a start on an existing database catches up first.
        Rollup {
            last: Instant::now() - ROLLUP_EVERY,
            dirty: true,
            remaining: 0,
            failed: false,
        }
    }
}

impl Rollup {
    fn behind(&self) -> bool {
        self.remaining > 0 && !self.failed
    }

    fn step(&mut self, store: &mut Store) {
        let due = self.last.elapsed() >= ROLLUP_EVERY && (self.dirty || self.failed);
        if !(self.behind() || due) {
            return;
        }
        self.last = Instant::now();
        self.dirty = false;
        match store.refresh_rollups(ROLLUP_STEP) {
            Ok(r) => {
                self.remaining = r.remaining;
                self.failed = false;
                if r.windows > 0 {
                    tracing::debug!(
                        windows = r.windows,
                        remaining = r.remaining,
                        "chart rollup refreshed"
                    );
                }
            }
            Err(e) => {
                self.failed = true;
                tracing::warn!(error = %e, "cannot refresh the chart rollup; charts read the raw windows meanwhile");
            }
        }
    }
}

fn counted(r: &crate::store::IngestReport) {
    bump(&metrics::BATCHES_NEW, r.new_batches);
    bump(&metrics::BATCHES_DUPLICATE, r.duplicates);
    bump(&metrics::WINDOWS_STORED, r.windows);
    bump(&metrics::FORECASTS_STORED, r.forecasts);
    bump(&metrics::KPIS_STORED, r.kpis);
    bump(&metrics::LOST_SPANS_STORED, r.lost_spans);
    bump(&metrics::ALARM_EVENTS_STORED, r.alarm_events);
}

type Acks = mpsc::UnboundedSender<BTreeMap<(String, String), Vec<u64>>>;

/// Where the store thread reports what it committed.
struct Out {
    /// Sequence numbers to acknowledge.
    acks: Acks,
    /// The live dashboards (and the alerting).
    events: Events,
}

/// Tell the live dashboards what the commit just stored: per node, one
/// `node` event (new batches), the newest value of each KPI window and the
/// new alarm journal entries. Built from the committed batches themselves
/// (`fresh`: not duplicates), so the store thread runs no query for it.
fn publish(events: &Events, items: &[Incoming], fresh: &[usize]) {
    if events.receiver_count() == 0 || fresh.is_empty() {
        return;
    }
    #[derive(Default)]
    struct PerNode<'a> {
        batches: u64,
        max_seq: u64,
        last_seen_ms: i64,
        /// (kpi, window, start_ms) → the newest result for it.
        kpis: BTreeMap<(&'a str, &'a str, i64), &'a protocol::v1::KpiResult>,
        alarms: Vec<(u64, &'a protocol::v1::AlarmEvent)>,
    }
    let mut nodes: BTreeMap<(&str, &str), PerNode<'_>> = BTreeMap::new();
    for it in fresh.iter().filter_map(|i| items.get(*i)) {
        let n = nodes.entry((&it.site, &it.node)).or_default();
        n.batches += 1;
        n.max_seq = n.max_seq.max(it.batch.seq);
        n.last_seen_ms = n.last_seen_ms.max(it.received_ms);
        match &it.batch.body {
            protocol::v1::Body::Kpis(list) => {
                for k in list {
                    let slot = n.kpis.entry((&k.kpi, &k.window, k.start_ms)).or_insert(k);
                    if (k.computed_ms, k.until_ms) >= (slot.computed_ms, slot.until_ms) {
                        *slot = k;
                    }
                }
            }
            protocol::v1::Body::Alarms(list) => {
                n.alarms.extend(list.iter().map(|a| (it.batch.seq, a)));
            }
            _ => {}
        }
    }
    for ((site, node), n) in nodes {
        let _ = events.send(Live::Node {
            site: site.to_owned(),
            node: node.to_owned(),
            cause: NodeCause::Batch,
            last_seen_ms: n.last_seen_ms,
            batches: n.batches,
            max_seq: n.max_seq,
            status: None,
        });
        if !n.kpis.is_empty() {
            let _ = events.send(Live::Kpis {
                site: site.to_owned(),
                node: node.to_owned(),
                items: n.kpis.values().map(|k| KpiItem::from(*k)).collect(),
            });
        }
        if !n.alarms.is_empty() {
            let mut alarms = n.alarms;
            // In the edge's order: batch by batch, each journal in order.
            alarms.sort_by_key(|(seq, _)| *seq);
            let _ = events.send(Live::Alarms {
                site: site.to_owned(),
                node: node.to_owned(),
                entries: alarms
                    .into_iter()
                    .map(|(_, a)| AlarmItem::from(a))
                    .collect(),
            });
        }
    }
}

/// After a failed commit: store the batches one at a time. A batch that
/// fails alone twice while the database takes other writes cannot be
/// stored as it is: it goes to quarantine (acknowledged, see
/// [`quarantine`]) so that the others are not held up by it forever. If
/// the database takes no writes at all, everything stays pending.
fn isolate(store: &mut Store, pending: &mut Vec<Incoming>, acks: &Out) {
    let mut failed = Vec::new();
    let mut works = false;
    for it in pending.drain(..) {
        match store.ingest(std::slice::from_ref(&it)) {
            Ok(r) => {
                works = true;
                counted(&r);
                publish(&acks.events, std::slice::from_ref(&it), &r.fresh);
                let _ = acks.acks.send(r.committed);
            }
            Err(_) => {
                let _ = store.reopen();
                match store.ingest(std::slice::from_ref(&it)) {
                    Ok(r) => {
                        works = true;
                        counted(&r);
                        publish(&acks.events, std::slice::from_ref(&it), &r.fresh);
                        let _ = acks.acks.send(r.committed);
                    }
                    Err(e) => failed.push((it, e.to_string())),
                }
            }
        }
    }
    if failed.is_empty() {
        return;
    }
    works = works || store.probe_write().is_ok();
    for (it, error) in failed {
        if !works {
            pending.push(it);
            continue;
        }
        let q = Quarantined {
            site: it.site.clone(),
            node: it.node.clone(),
            seq: it.batch.seq,
            received_ms: it.received_ms,
            reason: format!("the store refused it: {error}"),
            payload: it.raw.to_vec(),
        };
        if !quarantine(store, q, acks) {
            pending.push(it);
        }
    }
}

/// Keep a batch that cannot be stored, count it, log it (an alarm: its
/// data is not in the fleet tables), and acknowledge it: kept whole with
/// its reason, it is not lost, and the edge's outbox moves on instead of
/// resending it forever (docs/hub.md, "Quarantine"). A batch whose own
/// sequence number is out of range is kept but not acknowledged (there is
/// no valid number to acknowledge). False if it could not be kept.
fn quarantine(store: &mut Store, q: Quarantined, acks: &Out) -> bool {
    match store.quarantine(&q) {
        Ok(new) => {
            if new {
                bump(&metrics::BATCHES_QUARANTINED, 1);
                metrics::LOG_THROTTLE.allow("quarantine", &format!("{}/{}", q.site, q.node), |suppressed| {
                    tracing::error!(site = %q.site, node = %q.node, seq = q.seq, reason = %q.reason, suppressed,
                        "ALARM: batch quarantined: signed by the node but not storable; kept in the quarantine table and acknowledged");
                });
            }
            if (1..=protocol::check::MAX_SEQ).contains(&q.seq) {
                let _ = acks
                    .acks
                    .send(BTreeMap::from([((q.site, q.node), vec![q.seq])]));
            }
            true
        }
        Err(e) => {
            tracing::error!(site = %q.site, node = %q.node, seq = q.seq, error = %e, "cannot quarantine a batch");
            false
        }
    }
}

/// Queue a batch (returns its rows), or record a status or a quarantined
/// batch at once (0).
fn accept(store: &mut Store, m: ToStore, pending: &mut Vec<Incoming>, acks: &Out) -> usize {
    match m {
        ToStore::Batch(b) => {
            let n = b.batch.windows();
            pending.push(b);
            n
        }
        ToStore::Quarantine(q) => {
            quarantine(store, q, acks);
            0
        }
        ToStore::Status { site, node, status } => {
            let now = now_ms();
            match store.status(&site, &node, &status, now) {
                Ok(StatusOutcome::Recorded) => {
                    if acks.events.receiver_count() > 0 {
                        let _ = acks.events.send(Live::Node {
                            cause: NodeCause::Status,
                            last_seen_ms: now,
                            batches: 0,
                            max_seq: 0,
                            status: Some((&status).into()),
                            site,
                            node,
                        });
                    }
                }
                Ok(StatusOutcome::Stale { last_ts_ms }) => {
                    bump(&metrics::STATUS_STALE, 1);
                    metrics::LOG_THROTTLE.allow("stale status", &format!("{site}/{node}"), |suppressed| {
                        tracing::warn!(%site, %node, ts_ms = status.ts_ms, last_ts_ms, suppressed,
                            "status refused: not newer than the last one recorded (a replay, or the node's clock went back)");
                    });
                }
                Err(e) => tracing::warn!(%site, %node, error = %e, "cannot record a node status"),
            }
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use protocol::v1::{Batch, Body, Window, WindowSet};

    fn item(node: &str, seq: u64, width_ms: u32) -> Incoming {
        Incoming {
            site: "s".into(),
            node: node.into(),
            received_ms: 1000,
            raw: bytes::Bytes::from_static(b"signed bytes"),
            batch: Batch {
                seq,
                created_ms: 1,
                body: Body::Aggregates(vec![WindowSet {
                    width_ms,
                    start_ms: 0,
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
            },
        }
    }

    /// One batch the store cannot take (a width the column cannot hold: it
    /// failed every commit and stopped all storage) no longer holds up the
    /// others: they are stored and acknowledged, it is quarantined and
    /// acknowledged.
    #[test]
    fn a_batch_the_store_cannot_take_is_quarantined_and_the_rest_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("fleet.duckdb")).unwrap();
        let mut pending = vec![
            item("a", 1, 1000),
            item("a", 2, 3_000_000_000),
            item("b", 1, 1000),
        ];
        assert!(
            store.ingest(&pending).is_err(),
            "the poison batch fails the commit"
        );
        store.reopen().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let events = crate::events::channel();
        let mut live = events.subscribe();
        let out = Out { acks: tx, events };
        isolate(&mut store, &mut pending, &out);
        assert!(pending.is_empty(), "nothing left pending");
        let mut acked: Vec<(String, u64)> = Vec::new();
        while let Ok(m) = rx.try_recv() {
            for ((_, node), seqs) in m {
                acked.extend(seqs.into_iter().map(|s| (node.clone(), s)));
            }
        }
        acked.sort();
        assert_eq!(acked, [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
        // The live dashboards hear of the stored batches, not the poison one.
        let mut heard = Vec::new();
        while let Ok(e) = live.try_recv() {
            if let Live::Node { node, max_seq, .. } = e {
                heard.push((node, max_seq));
            }
        }
        assert_eq!(heard, [("a".into(), 1), ("b".into(), 1)]);
        let q = store.quarantined("s", "a").unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, 2);
        assert!(q[0].2.contains("the store refused it"), "{}", q[0].2);
        assert_eq!(store.windows("s", "a").unwrap(), 1);
        assert_eq!(store.windows("s", "b").unwrap(), 1);
        // The quarantined seq is not a gap.
        let a = store
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.node == "a")
            .unwrap();
        assert_eq!((a.batches, a.quarantined, a.missing), (1, 1, 0));
    }

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
