//! OPC UA client driver (async-opcua), one task per server.
//!
//! The task builds the client once (PKI directory with this node's own
//! certificate, server certificates never trusted on first use), then
//! loops: open a session ([`connect::open`]: every step under our own
//! deadline) → resolve namespace URIs → create subscriptions with a
//! monitored item per subscribed tag → forward data changes as samples,
//! serve cyclic reads for `mode = "poll"` tags and writes, until the
//! session is lost; then mark every tag `Bad(ConnectionLost)` (the gap is
//! visible, never filled) and open a new session after a backoff.
//!
//! Workarounds for async-opcua 0.19 (see `../shared/notes/opcua.md`):
//! - keep-alive failures must end the session (`max_failed_keep_alive_count`);
//! - its automatic reconnect can hang forever on a silent server and then
//!   sends no Publish: we never let it run (see [`connect`]);
//! - discovery and connect can hang: every step runs under our timeout;
//! - its server-certificate checks depend on SAN order: we check ourselves
//!   ([`pki::check_server_certificate`]);
//! - authentication and certificate errors are not retried like network
//!   faults (a locked-out account helps nobody): they wait the maximum
//!   backoff at once.

pub mod browse;
mod connect;
pub mod limits;
pub mod pki;
pub mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firmware_config::{
    DataChangeDeadband, Device, EdgeConfig, Identifier, Namespace, NodeRef, OpcUaEndpoint,
    OpcUaMode, Transport,
};
use opcua::client::{DataChangeCallback, MonitoredItem, Session, SessionPollResult};
use opcua::types::{
    AttributeId, ByteString, DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType,
    ExtensionObject, Guid, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters,
    NodeId, ReadValueId, StatusCode, TimestampsToReturn, WriteValue,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use connect::ConnectError;
use connect::status_name;
pub use value::{coerce, variant_to_value};

use crate::backoff::{Backoff, Jitter};
use crate::driver::{Driver, DriverContext, LinkState, UnitStatus, WriteError, WriteRequest};
use crate::modbus::codec;
use crate::sample::{Quality, Reason, Sample, TagName, Timestamp, Value};

/// Data changes buffered between the subscription callback (which must not
/// block the session's event loop) and the driver task.
const CHANGE_QUEUE: usize = 65_536;

#[derive(Debug, Clone)]
struct UaTag {
    name: TagName,
    node: NodeRef,
    sampling_interval: Option<Duration>,
    queue_size: u32,
    deadband: Option<DataChangeDeadband>,
    mode: OpcUaMode,
    poll_interval: Duration,
    scale: f64,
    offset: f64,
    writable: bool,
}

/// An OPC UA server and its tags.
#[derive(Debug)]
pub struct OpcUaDriver {
    name: String,
    endpoint: OpcUaEndpoint,
    /// This edge node, as its certificate and sessions name it.
    identity: pki::OwnIdentity,
    timeout: Duration,
    backoff: Backoff,
    tags: Vec<UaTag>,
    last_quality: Vec<Option<Quality>>,
    /// Source timestamp and value of the last good sample sent, per tag.
    last_good: Vec<Option<(Timestamp, Value)>>,
}

impl OpcUaDriver {
    /// Build from an `opcua` device; `None` for other kinds.
    pub fn from_config(cfg: &EdgeConfig, device: &Device) -> Option<Self> {
        let Transport::OpcUa(endpoint) = &device.transport else {
            return None;
        };
        let tags: Vec<UaTag> = cfg
            .tags_of(&device.name)
            .filter_map(|t| {
                let p = t.opcua()?;
                Some(UaTag {
                    name: TagName::from(t.name.as_str()),
                    node: p.node.clone(),
                    sampling_interval: p.sampling_interval,
                    queue_size: p.queue_size,
                    deadband: p.data_change_deadband,
                    mode: p.mode,
                    poll_interval: cfg.poll_interval_of(t),
                    scale: t.scale,
                    offset: t.offset,
                    writable: t.writable,
                })
            })
            .collect();
        Some(Self {
            name: device.name.clone(),
            endpoint: endpoint.clone(),
            identity: pki::OwnIdentity::of_node(&cfg.node.site_id, &cfg.node.node_id),
            timeout: device.timeout,
            backoff: Backoff::new(device.backoff),
            last_quality: vec![None; tags.len()],
            last_good: vec![None; tags.len()],
            tags,
        })
    }

    fn client(&self) -> Result<opcua::client::Client, String> {
        connect::build_client(&self.endpoint, &self.identity, self.timeout)
    }

    fn emit(&mut self, i: usize, sample: Sample, out: &mut Vec<Sample>) {
        let changed = self.last_quality[i].as_ref() != Some(&sample.quality);
        // Markings without a value are news only on a change, like the
        // Modbus drivers'; uncertain values are values and always go on.
        if !changed && !sample.quality.is_good() && sample.value.is_none() {
            return;
        }
        if changed
            && let Some(r @ (Reason::Unsupported(_) | Reason::ClockSkew(_))) =
                sample.quality.reason()
        {
            tracing::warn!(device = %self.name, tag = %self.tags[i].name, node = %self.tags[i].node, "{r}");
        }
        // A new subscription (after a reconnect) starts with the current
        // value, which is often the last one already delivered: same source
        // timestamp and value is the same sample, not a new one.
        if sample.quality.is_good()
            && self.last_good[i]
                .as_ref()
                .is_some_and(|(ts, v)| *ts == sample.ts && Some(v) == sample.value.as_ref())
        {
            self.last_quality[i] = Some(Quality::Good);
            return;
        }
        if sample.quality.is_good()
            && let Some(v) = &sample.value
        {
            self.last_good[i] = Some((sample.ts, v.clone()));
        }
        self.last_quality[i] = Some(sample.quality.clone());
        out.push(sample);
    }

    fn mark_all(&mut self, reason: Reason) -> Vec<Sample> {
        let ts = Timestamp::now();
        let mut out = Vec::new();
        for i in 0..self.tags.len() {
            let s = Sample {
                tag: self.tags[i].name.clone(),
                ts,
                value: None,
                quality: Quality::Bad(reason.clone()),
            };
            self.emit(i, s, &mut out);
        }
        out
    }

    fn sample(&self, i: usize, dv: &DataValue) -> Sample {
        let t = &self.tags[i];
        let (ts, skew) = timestamp(dv, Timestamp::now(), self.endpoint.clock_tolerance);
        let status = dv.status.unwrap_or(StatusCode::Good);
        let value = match dv.value.as_ref().map(variant_to_value) {
            Some(Ok(v)) => Ok(codec::scale(v, t.scale, t.offset)),
            Some(Err(e)) => Err(e.0),
            None => Err("no value in the notification".to_owned()),
        };
        let status_reason = || Reason::Status(format!("opcua {}", status.sub_code().name()));
        let (value, quality) = match value {
            _ if status.is_bad() => (None, Quality::Bad(status_reason())),
            // Never Good (or Uncertain) without a value.
            Err(e) => (None, Quality::Bad(Reason::Unsupported(e))),
            Ok(v) if status.is_uncertain() => (Some(v), Quality::Uncertain(status_reason())),
            Ok(v) => match skew {
                Some(why) => (Some(v), Quality::Uncertain(Reason::ClockSkew(why))),
                None => (Some(v), Quality::Good),
            },
        };
        Sample {
            tag: t.name.clone(),
            ts,
            value,
            quality,
        }
    }
}

/// A notification's time: the source timestamp (when the value was true at
/// the device), else the server's, else ours. One more than `tolerance`
/// ahead of our clock is not believed (a value stamped 2100 would
/// otherwise hold its tag's aggregation windows shut until then): the
/// server's timestamp replaces it if that one is plausible, else the
/// receive time, and the reason says so (the sample is then Uncertain).
/// Timestamps in the past are kept: a value unchanged since yesterday is
/// delivered with yesterday's time.
fn timestamp(dv: &DataValue, now: Timestamp, tolerance: Duration) -> (Timestamp, Option<String>) {
    let ms = |d: &opcua::types::DateTime| Timestamp(d.as_chrono().timestamp_millis());
    let limit = now
        .as_millis()
        .saturating_add(i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX));
    let plausible = |t: &Timestamp| t.as_millis() <= limit;
    let source = dv.source_timestamp.as_ref().map(ms);
    let server = dv.server_timestamp.as_ref().map(ms);
    let tol = humantime::format_duration(tolerance);
    match (source, server) {
        (Some(s), _) if plausible(&s) => (s, None),
        (Some(_), Some(v)) if plausible(&v) => (
            v,
            Some(format!(
                "source timestamp more than {tol} ahead of this node's clock; stored at the server timestamp"
            )),
        ),
        (Some(_), _) => (
            now,
            Some(format!(
                "source timestamp more than {tol} ahead of this node's clock; stored at the receive time"
            )),
        ),
        (None, Some(v)) if plausible(&v) => (v, None),
        (None, Some(_)) => (
            now,
            Some(format!(
                "server timestamp more than {tol} ahead of this node's clock; stored at the receive time"
            )),
        ),
        (None, None) => (now, None),
    }
}

fn to_node_id(node: &NodeRef, session: &Session) -> Option<NodeId> {
    let ns = match &node.namespace {
        Namespace::Index(i) => *i,
        Namespace::Uri(u) => session.get_namespace_index_from_cache(u)?,
    };
    Some(match &node.identifier {
        Identifier::Numeric(n) => NodeId::new(ns, *n),
        Identifier::String(s) => NodeId::new(ns, s.as_str()),
        Identifier::Guid(g) => NodeId::new(ns, g.parse::<Guid>().ok()?),
        Identifier::Opaque(b) => NodeId::new(ns, ByteString::from_base64(b)?),
    })
}

#[async_trait]
impl Driver for OpcUaDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Vec<TagName> {
        self.tags.iter().map(|t| t.name.clone()).collect()
    }

    fn respawn(&self) -> Box<dyn Driver> {
        let mut backoff = self.backoff.clone();
        backoff.reset();
        Box::new(Self {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            identity: self.identity.clone(),
            timeout: self.timeout,
            backoff,
            tags: self.tags.clone(),
            last_quality: vec![None; self.tags.len()],
            last_good: vec![None; self.tags.len()],
        })
    }

    async fn run(mut self: Box<Self>, mut ctx: DriverContext) {
        let mut jitter = Jitter::from_name(&self.name);
        let cancel = ctx.cancel.clone();
        let publish = |ctx: &DriverContext, name: &str, state: LinkState, err: Option<String>| {
            ctx.status.send_modify(|s| {
                s.connected = state == LinkState::Up;
                s.units = vec![UnitStatus {
                    device: name.to_owned(),
                    unit_id: 0,
                    state,
                }];
                if let Some(e) = err {
                    s.errors += 1;
                    s.last_error = Some(e);
                }
            });
        };
        let mut client = loop {
            match self.client() {
                Ok(c) => break c,
                Err(e) => {
                    // The PKI directory cannot be set up (permissions, a
                    // full disk): nothing connects until it can.
                    let wait = self.backoff.fail_max(jitter.next_unit());
                    tracing::error!(device = %self.name, error = %e, retry_in = ?wait, "OPC UA client cannot start");
                    publish(
                        &ctx,
                        &self.name,
                        LinkState::Down {
                            failures: self.backoff.failures(),
                            retry_in: wait,
                        },
                        Some(e),
                    );
                    if !ctx.wait_disconnected(Instant::now() + wait).await {
                        return;
                    }
                }
            }
        };
        'outer: while !cancel.is_cancelled() {
            publish(&ctx, &self.name, LinkState::Connecting, None);
            let outcome = self.session(&mut client, &mut ctx).await;
            let bad = self.mark_all(Reason::ConnectionLost);
            if !ctx.send(bad).await {
                break;
            }
            let (wait, err) = match outcome {
                SessionEnd::Cancelled => break,
                SessionEnd::Failed { error, permanent } => {
                    // Retrying a rejected password or certificate quickly only
                    // risks locking the account: wait the longest at once.
                    let wait = if permanent {
                        self.backoff.fail_max(jitter.next_unit())
                    } else {
                        self.backoff.fail(jitter.next_unit())
                    };
                    (wait, error)
                }
            };
            tracing::warn!(device = %self.name, error = %err, retry_in = ?wait, "OPC UA session ended");
            publish(
                &ctx,
                &self.name,
                LinkState::Down {
                    failures: self.backoff.failures(),
                    retry_in: wait,
                },
                Some(err),
            );
            if !ctx.wait_disconnected(Instant::now() + wait).await {
                break 'outer;
            }
        }
        ctx.status.send_modify(|s| s.connected = false);
    }
}

enum SessionEnd {
    Cancelled,
    Failed { error: String, permanent: bool },
}

impl OpcUaDriver {
    /// One session, from connect to loss.
    async fn session(
        &mut self,
        client: &mut opcua::client::Client,
        ctx: &mut DriverContext,
    ) -> SessionEnd {
        let fail = |error: String, permanent: bool| SessionEnd::Failed { error, permanent };
        let url = self.endpoint.endpoint_url.clone();
        let connect_timeout = self.timeout.max(Duration::from_secs(5));
        let live = match connect::open(
            client,
            &self.endpoint,
            &self.identity.application_uri,
            connect_timeout,
        )
        .await
        {
            Ok(l) => l,
            Err(e) => return fail(e.message, e.permanent),
        };
        let mut live = live;
        let end = self.serve(&mut live, &url, ctx).await;
        if matches!(end, SessionEnd::Cancelled) {
            live.close().await;
        }
        end
    }

    /// Subscribe, then forward data, serve reads and writes until the
    /// session ends.
    async fn serve(
        &mut self,
        live: &mut connect::Live,
        url: &str,
        ctx: &mut DriverContext,
    ) -> SessionEnd {
        let fail = |error: String, permanent: bool| SessionEnd::Failed { error, permanent };
        let session = live.session.clone();
        let session = &session;
        if let Err(e) = session.read_namespace_array().await {
            return fail(
                format!("cannot read the server's namespace array: {e}"),
                false,
            );
        }

        let limits = self.operation_limits(session).await;

        // Resolve every tag's node.
        let mut node_ids: Vec<Option<NodeId>> = Vec::with_capacity(self.tags.len());
        let mut out = Vec::new();
        for i in 0..self.tags.len() {
            let id = to_node_id(&self.tags[i].node, session);
            match &id {
                Some(_) => {}
                None => {
                    let s = Sample {
                        tag: self.tags[i].name.clone(),
                        ts: Timestamp::now(),
                        value: None,
                        quality: Quality::Bad(Reason::Status(format!(
                            "namespace of {} is not on this server",
                            self.tags[i].node
                        ))),
                    };
                    self.emit(i, s, &mut out);
                }
            }
            node_ids.push(id);
        }

        // Subscriptions within the server's limits, all feeding one queue.
        let (dc_tx, mut dc_rx) = mpsc::channel::<(u32, DataValue)>(CHANGE_QUEUE);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let publishing = self.endpoint.publishing_interval;
        let keep_alive_count = ((self.endpoint.keep_alive.as_secs_f64() / publishing.as_secs_f64())
            .ceil() as u32)
            .max(1);
        // One monitored item per distinct node (the first tag's parameters
        // win); its client handle is its index + 1, so a notification finds
        // its tags without hashing or cloning the NodeId.
        let mut requests: Vec<MonitoredItemCreateRequest> = Vec::new();
        let mut item_tags: Vec<Vec<usize>> = Vec::new();
        let mut item_of_node: HashMap<&NodeId, usize> = HashMap::new();
        for (i, (t, id)) in self.tags.iter().zip(&node_ids).enumerate() {
            let Some(id) = id else { continue };
            if t.mode != OpcUaMode::Subscribe {
                continue;
            }
            if let Some(&j) = item_of_node.get(id) {
                item_tags[j].push(i);
                continue;
            }
            let filter = t.deadband.map(|d| {
                let (kind, value) = match d {
                    DataChangeDeadband::Absolute(v) => (DeadbandType::Absolute, v),
                    DataChangeDeadband::Percent(v) => (DeadbandType::Percent, v),
                };
                ExtensionObject::from_message(DataChangeFilter {
                    trigger: DataChangeTrigger::StatusValue,
                    deadband_type: kind as u32,
                    deadband_value: value,
                })
            });
            item_of_node.insert(id, requests.len());
            item_tags.push(vec![i]);
            requests.push(MonitoredItemCreateRequest {
                item_to_monitor: ReadValueId {
                    node_id: id.clone(),
                    attribute_id: AttributeId::Value as u32,
                    ..Default::default()
                },
                monitoring_mode: MonitoringMode::Reporting,
                requested_parameters: MonitoringParameters {
                    client_handle: u32::try_from(requests.len() + 1).unwrap_or(u32::MAX),
                    sampling_interval: t.sampling_interval.unwrap_or(publishing).as_secs_f64()
                        * 1000.0,
                    filter: filter.unwrap_or_default(),
                    queue_size: t.queue_size,
                    discard_oldest: true,
                },
            });
        }
        drop(item_of_node);
        let mut sub_ids = Vec::new();
        for per_sub in requests.chunks(limits.items_per_subscription) {
            let tx = dc_tx.clone();
            let dropped_cb = dropped.clone();
            let callback = DataChangeCallback::new(move |dv: DataValue, item: &MonitoredItem| {
                // Never block the session's event loop.
                if tx.try_send((item.client_handle(), dv)).is_err() {
                    dropped_cb.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            // Publishing starts only once every item of every subscription
            // exists, so no notification races the creation of the rest.
            let sub = match session
                .create_subscription(
                    publishing,
                    keep_alive_count * 3,
                    keep_alive_count,
                    0,
                    0,
                    false,
                    callback,
                )
                .await
            {
                Ok(id) => id,
                Err(e) => return fail(format!("cannot create a subscription: {e}"), false),
            };
            sub_ids.push(sub);
            for chunk in per_sub.chunks(limits.items_per_call) {
                match session
                    .create_monitored_items(sub, TimestampsToReturn::Both, chunk.to_vec())
                    .await
                {
                    Ok(results) => {
                        for (req, r) in chunk.iter().zip(results) {
                            if !r.result.status_code.is_good() {
                                let j = req.requested_parameters.client_handle as usize - 1;
                                for &i in &item_tags[j] {
                                    let s = Sample {
                                        tag: self.tags[i].name.clone(),
                                        ts: Timestamp::now(),
                                        value: None,
                                        quality: Quality::Bad(Reason::Status(format!(
                                            "opcua {} (cannot monitor {})",
                                            r.result.status_code.sub_code().name(),
                                            self.tags[i].node,
                                        ))),
                                    };
                                    self.emit(i, s, &mut out);
                                }
                            }
                        }
                    }
                    Err(e) => return fail(format!("cannot create monitored items: {e}"), false),
                }
            }
        }
        drop(dc_tx);
        if !sub_ids.is_empty()
            && let Err(e) = session.set_publishing_mode(&sub_ids, true).await
        {
            return fail(format!("cannot enable publishing: {e}"), false);
        }
        session.trigger_publish_now();
        self.backoff.reset();
        tracing::info!(device = %self.name, %url, items = requests.len(), "OPC UA subscribed");
        ctx.status.send_modify(|s| {
            s.connected = true;
            s.units = vec![UnitStatus {
                device: self.name.clone(),
                unit_id: 0,
                state: LinkState::Up,
            }];
        });
        if !ctx.send(std::mem::take(&mut out)).await {
            return SessionEnd::Cancelled;
        }

        // Cyclic reads for poll-mode tags, at the shortest of their intervals.
        let poll_tags: Vec<usize> = (0..self.tags.len())
            .filter(|&i| self.tags[i].mode == OpcUaMode::Poll && node_ids[i].is_some())
            .collect();
        let poll_every = poll_tags
            .iter()
            .map(|&i| self.tags[i].poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let cancel = ctx.cancel.clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break SessionEnd::Cancelled,
                ev = live.events.recv() => match ev {
                    // We reconnect ourselves, with a deadline on every step
                    // (the library's own reconnect can hang): end the session.
                    Some(Ok(SessionPollResult::ConnectionLost(s))) => {
                        break SessionEnd::Failed { error: format!("{url}: {}", connect::lost(s)), permanent: false };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(s)) => break SessionEnd::Failed { error: format!("{url}: the session ended: {}", status_name(s)), permanent: connect::is_permanent(s) },
                    None => break SessionEnd::Failed { error: format!("{url}: the session ended"), permanent: false },
                },
                Some((handle, dv)) = dc_rx.recv() => {
                    let mut batch = Vec::new();
                    self.on_change(&item_tags, handle, &dv, &mut batch);
                    while let Ok((handle, dv)) = dc_rx.try_recv() {
                        self.on_change(&item_tags, handle, &dv, &mut batch);
                        if batch.len() >= 10_000 { break; }
                    }
                    let lost = dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
                    if lost > 0 {
                        tracing::error!(device = %self.name, lost, "OPC UA data changes dropped: the pipeline is not keeping up");
                    }
                    if !ctx.send(batch).await { break SessionEnd::Cancelled; }
                }
                _ = poll.tick(), if !poll_tags.is_empty() => {
                    let mut batch = Vec::new();
                    for chunk in poll_tags.chunks(limits.nodes_per_read) {
                        let reads: Vec<ReadValueId> = chunk.iter().filter_map(|&i| Some(ReadValueId {
                            node_id: node_ids[i].clone()?,
                            attribute_id: AttributeId::Value as u32,
                            ..Default::default()
                        })).collect();
                        match tokio::time::timeout(self.timeout, session.read(&reads, TimestampsToReturn::Both, 0.0)).await {
                            Ok(Ok(values)) => {
                                for (&i, dv) in chunk.iter().zip(values.iter()) {
                                    let s = self.sample(i, dv);
                                    self.emit(i, s, &mut batch);
                                }
                            }
                            Ok(Err(e)) => tracing::warn!(device = %self.name, error = %e, "OPC UA cyclic read failed"),
                            Err(_) => tracing::warn!(device = %self.name, "OPC UA cyclic read timed out"),
                        }
                    }
                    if !batch.is_empty() && !ctx.send(batch).await { break SessionEnd::Cancelled; }
                }
                Some(cmd) = ctx.writes.recv() => {
                    let r = self.write(session, &node_ids, &cmd.request).await;
                    match &r {
                        Ok(()) => tracing::info!(device = %self.name, request = ?cmd.request, "write done"),
                        Err(e) => tracing::warn!(device = %self.name, request = ?cmd.request, error = %e, "write failed"),
                    }
                    let _ = cmd.reply.send(r);
                }
            }
        }
    }

    /// The server's operation limits (defaults for what it does not state).
    async fn operation_limits(&self, session: &Session) -> limits::OperationLimits {
        let reads: Vec<ReadValueId> = limits::nodes()
            .into_iter()
            .map(|node_id| ReadValueId {
                node_id,
                attribute_id: AttributeId::Value as u32,
                ..Default::default()
            })
            .collect();
        let l = match tokio::time::timeout(
            self.timeout,
            session.read(&reads, TimestampsToReturn::Neither, 0.0),
        )
        .await
        {
            Ok(Ok(values)) => limits::OperationLimits::from_values(&values),
            Ok(Err(e)) => {
                tracing::debug!(device = %self.name, error = %e, "server operation limits not readable; using defaults");
                limits::OperationLimits::default()
            }
            Err(_) => limits::OperationLimits::default(),
        };
        tracing::debug!(device = %self.name, ?l, "OPC UA operation limits");
        l
    }

    fn on_change(
        &mut self,
        item_tags: &[Vec<usize>],
        handle: u32,
        dv: &DataValue,
        out: &mut Vec<Sample>,
    ) {
        // Handles are ours (index + 1); anything else is ignored.
        let tags = (handle as usize)
            .checked_sub(1)
            .and_then(|j| item_tags.get(j));
        for &i in tags.map(Vec::as_slice).unwrap_or(&[]) {
            let s = self.sample(i, dv);
            self.emit(i, s, out);
        }
    }

    async fn write(
        &self,
        session: &Session,
        node_ids: &[Option<NodeId>],
        req: &WriteRequest,
    ) -> Result<(), WriteError> {
        let WriteRequest::Tag { tag, value } = req else {
            return Err(WriteError::Io(
                "raw register and coil writes are Modbus-only".into(),
            ));
        };
        let i = self
            .tags
            .iter()
            .position(|t| &*t.name == tag)
            .ok_or_else(|| WriteError::UnknownTag(tag.clone()))?;
        let t = &self.tags[i];
        if !t.writable {
            return Err(WriteError::NotWritable(tag.clone()));
        }
        let node = node_ids[i].clone().ok_or(WriteError::NotConnected)?;
        // Read the node's current value so the write keeps its DataType.
        let read = ReadValueId {
            node_id: node.clone(),
            attribute_id: AttributeId::Value as u32,
            ..Default::default()
        };
        let current = match tokio::time::timeout(
            self.timeout,
            session.read(&[read], TimestampsToReturn::Neither, 0.0),
        )
        .await
        {
            Err(_) => return Err(WriteError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(WriteError::Io(e.to_string())),
            Ok(Ok(v)) => v
                .into_iter()
                .next()
                .and_then(|dv| dv.value)
                .ok_or(WriteError::Io("node has no value".into()))?,
        };
        let raw = match value {
            Value::String(_) | Value::Bool(_) => value.clone(),
            v => Value::F64(codec::unscale(
                v.as_f64().unwrap_or(f64::NAN),
                t.scale,
                t.offset,
            )),
        };
        let variant = coerce(&raw, &current).map_err(|e| {
            WriteError::Encode(codec::CodecError::Range {
                value: e,
                ty: "node",
            })
        })?;
        let wv = WriteValue {
            node_id: node,
            attribute_id: AttributeId::Value as u32,
            value: DataValue::value_only(variant),
            ..Default::default()
        };
        match tokio::time::timeout(self.timeout, session.write(&[wv])).await {
            Err(_) => Err(WriteError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(WriteError::Io(e.to_string())),
            Ok(Ok(codes)) => match codes.first() {
                Some(c) if c.is_good() => Ok(()),
                Some(c) => Err(WriteError::Io(format!(
                    "server refused the write: {}",
                    status_name(*c)
                ))),
                None => Err(WriteError::Io("empty write response".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dv(source: Option<i64>, server: Option<i64>) -> DataValue {
        let t = |ms: i64| opcua::types::DateTime::from(chrono_from_ms(ms));
        DataValue {
            value: Some(opcua::types::Variant::Double(1.0)),
            status: Some(StatusCode::Good),
            source_timestamp: source.map(t),
            server_timestamp: server.map(t),
            ..Default::default()
        }
    }

    fn chrono_from_ms(ms: i64) -> opcua::types::DateTimeUtc {
        opcua::types::DateTimeUtc::from_timestamp_millis(ms).unwrap()
    }

    /// A value stamped in 2100 must not be believed (it held its tag's
    /// aggregation windows shut): the server's time or ours replaces it,
    /// and the sample says so.
    #[test]
    fn future_source_timestamps_are_replaced_and_flagged() {
        let now = Timestamp(1_800_000_000_000);
        let tol = Duration::from_secs(300);
        let y2100 = 4_102_444_800_000;
        // Plausible: kept, even an old one (a value unchanged since yesterday).
        assert_eq!(
            timestamp(&dv(Some(now.0 - 5_000), None), now, tol),
            (Timestamp(now.0 - 5_000), None)
        );
        assert_eq!(
            timestamp(&dv(Some(now.0 - 86_400_000), None), now, tol).0,
            Timestamp(now.0 - 86_400_000)
        );
        assert_eq!(
            timestamp(&dv(Some(now.0 + 60_000), None), now, tol).1,
            None,
            "within tolerance"
        );
        // The source clock is wrong, the server's is fine.
        let (ts, why) = timestamp(&dv(Some(y2100), Some(now.0 - 10)), now, tol);
        assert_eq!(ts, Timestamp(now.0 - 10));
        assert!(why.unwrap().contains("server timestamp"));
        // Both wrong: receive time.
        let (ts, why) = timestamp(&dv(Some(y2100), Some(y2100)), now, tol);
        assert_eq!(ts, now);
        assert!(why.unwrap().contains("receive time"));
        let (ts, why) = timestamp(&dv(None, None), now, tol);
        assert_eq!((ts, why), (now, None));
    }
}
