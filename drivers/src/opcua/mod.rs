//! OPC UA client driver (async-opcua), one task per server.
//!
//! The task builds the client once (PKI directory, own certificate created
//! on first start, server certificates never trusted on first use), then
//! loops: connect → resolve namespace URIs → create one subscription with a
//! monitored item per subscribed tag → forward data changes as samples,
//! serve cyclic reads for `mode = "poll"` tags and writes, until the session
//! is lost; then mark every tag `Bad(ConnectionLost)` (the gap is visible,
//! never filled) and reconnect with backoff.
//!
//! Workarounds for async-opcua 0.19 (see `../shared/notes/opcua.md`):
//! - keep-alive failures must end the session (`max_failed_keep_alive_count`);
//! - after an automatic reconnect the client sends no Publish until
//!   `trigger_publish_now()` is called;
//! - discovery and connect can hang: both run under our own timeout;
//! - authentication and certificate errors are not retried like network
//!   faults (a locked-out account helps nobody): they back off to the maximum.

pub mod browse;
pub mod limits;
pub mod pki;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firmware_config::{
    DataChangeDeadband, Device, EdgeConfig, Identifier, Identity, Namespace, NodeRef,
    OpcUaEndpoint, OpcUaMode, SecretSource, SecurityMode, SecurityPolicy, Transport,
};
use futures::StreamExt;
use opcua::client::{
    ClientBuilder, DataChangeCallback, IdentityToken, MonitoredItem, Session, SessionPollResult,
};
use opcua::types::{
    AttributeId, ByteString, DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType,
    ExtensionObject, Guid, MessageSecurityMode, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NodeId, ReadValueId, StatusCode, TimestampsToReturn, Variant, WriteValue,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    /// Application URI of this edge node (also in its certificate).
    application_uri: String,
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
            application_uri: format!("urn:apos:edge:{}:{}", cfg.node.site_id, cfg.node.node_id),
            timeout: device.timeout,
            backoff: Backoff::new(device.backoff),
            last_quality: vec![None; tags.len()],
            last_good: vec![None; tags.len()],
            tags,
        })
    }

    fn client(&self) -> Result<opcua::client::Client, String> {
        build_client(&self.endpoint, &self.application_uri, self.timeout)
    }

    fn identity(&self) -> Result<IdentityToken, String> {
        identity_token(&self.endpoint)
    }

    fn emit(&mut self, i: usize, sample: Sample, out: &mut Vec<Sample>) {
        // Bad qualities are news only on a change, like the Modbus drivers.
        if !sample.quality.is_good() && self.last_quality[i].as_ref() == Some(&sample.quality) {
            return;
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
        // The source timestamp is when the value was true at the device; the
        // server timestamp is the fallback; our clock the last resort.
        let ts = dv
            .source_timestamp
            .as_ref()
            .or(dv.server_timestamp.as_ref())
            .map(|d| Timestamp(d.as_chrono().timestamp_millis()))
            .unwrap_or_else(Timestamp::now);
        let status = dv.status.unwrap_or(StatusCode::Good);
        let value = dv
            .value
            .as_ref()
            .and_then(variant_to_value)
            .map(|v| codec::scale(v, t.scale, t.offset));
        let quality = if status.is_good() {
            Quality::Good
        } else if status.is_uncertain() {
            Quality::Uncertain(Reason::Other(format!("opcua {}", status_name(status))))
        } else {
            Quality::Bad(Reason::Other(format!("opcua {}", status_name(status))))
        };
        Sample {
            tag: t.name.clone(),
            ts,
            value: if quality == Quality::Good || matches!(quality, Quality::Uncertain(_)) {
                value
            } else {
                None
            },
            quality,
        }
    }
}

/// The async-opcua client for `endpoint`: PKI in `pki_dir` (own certificate
/// created on first start), no trust on first use, our own retry policy.
pub(crate) fn build_client(
    endpoint: &OpcUaEndpoint,
    application_uri: &str,
    timeout: Duration,
) -> Result<opcua::client::Client, String> {
    ClientBuilder::new()
        .application_name("APOS edge node")
        .application_uri(application_uri)
        .product_uri("urn:apos:edge")
        .pki_dir(&endpoint.pki_dir)
        .create_sample_keypair(true)
        .trust_server_certs(false)
        .session_retry_limit(0)
        .session_timeout(u32::try_from(endpoint.session_timeout.as_millis()).unwrap_or(u32::MAX))
        .keep_alive_interval(endpoint.keep_alive)
        .max_failed_keep_alive_count(2)
        .request_timeout(timeout)
        .client()
        .map_err(|e| format!("invalid OPC UA client settings: {}", e.join("; ")))
}

/// The user identity of `endpoint`, reading the password from its source.
pub(crate) fn identity_token(endpoint: &OpcUaEndpoint) -> Result<IdentityToken, String> {
    match &endpoint.identity {
        Identity::Anonymous => Ok(IdentityToken::Anonymous),
        Identity::UserName { user, password } => {
            let secret = match password {
                SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                    format!("environment variable {var} (the OPC UA password) is not set")
                })?,
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "cannot read the OPC UA password file {}: {e}",
                            path.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            };
            Ok(IdentityToken::UserName(
                user.clone(),
                opcua::client::Password::new(secret),
            ))
        }
        Identity::X509 {
            certificate,
            private_key,
        } => IdentityToken::new_x509_path(certificate, private_key).map_err(|e| {
            format!(
                "cannot load the OPC UA user certificate {} with key {}: {e} \
                 (the certificate must be DER or PEM, the key a PEM private key)",
                certificate.display(),
                private_key.display()
            )
        }),
    }
}

/// Connect and activate a session, with our own timeout around discovery
/// and activation (async-opcua's can block for minutes).
pub(crate) async fn open_session(
    client: &mut opcua::client::Client,
    endpoint: &OpcUaEndpoint,
    timeout: Duration,
) -> Result<(Arc<Session>, tokio::task::JoinHandle<StatusCode>), (String, bool)> {
    let identity = identity_token(endpoint).map_err(|e| (e, true))?;
    let url = endpoint.endpoint_url.as_str();
    let ep = (
        url,
        policy_uri(endpoint.security_policy),
        mode(endpoint.security_mode),
    );
    let (session, event_loop) = match tokio::time::timeout(
        timeout,
        client.connect_to_matching_endpoint(ep, identity),
    )
    .await
    {
        Err(_) => return Err((format!("no answer from {url} within {timeout:?}"), false)),
        Ok(Err(e)) => return Err((explain(e.status(), url, endpoint), is_permanent(e.status()))),
        Ok(Ok(s)) => s,
    };
    let mut handle = event_loop.spawn();
    tokio::select! {
        ok = session.wait_for_connection() => if !ok {
            return Err((format!("{url}: could not activate a session"), false));
        },
        r = &mut handle => {
            let status = r.unwrap_or(StatusCode::BadUnexpectedError);
            return Err((explain(status, url, endpoint), is_permanent(status)));
        }
        _ = tokio::time::sleep(timeout) => return Err((format!("session with {url} not activated within {timeout:?}"), false)),
    }
    Ok((session, handle))
}

fn status_name(s: StatusCode) -> String {
    format!("{} ({:#010x})", s.sub_code().name(), s.bits())
}

fn policy_uri(p: SecurityPolicy) -> &'static str {
    match p {
        SecurityPolicy::None => "http://opcfoundation.org/UA/SecurityPolicy#None",
        SecurityPolicy::Basic256Sha256 => {
            "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
        }
        SecurityPolicy::Aes128Sha256RsaOaep => {
            "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"
        }
        SecurityPolicy::Aes256Sha256RsaPss => {
            "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss"
        }
    }
}

fn mode(m: SecurityMode) -> MessageSecurityMode {
    match m {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

/// OPC UA variant → our value. Arrays and structures are not tag values.
pub fn variant_to_value(v: &Variant) -> Option<Value> {
    Some(match v {
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(x) => Value::I64(i64::from(*x)),
        Variant::Int16(x) => Value::I64(i64::from(*x)),
        Variant::Int32(x) => Value::I64(i64::from(*x)),
        Variant::Int64(x) => Value::I64(*x),
        Variant::Byte(x) => Value::U64(u64::from(*x)),
        Variant::UInt16(x) => Value::U64(u64::from(*x)),
        Variant::UInt32(x) => Value::U64(u64::from(*x)),
        Variant::UInt64(x) => Value::U64(*x),
        Variant::Float(x) => Value::F64(f64::from(*x)),
        Variant::Double(x) => Value::F64(*x),
        Variant::String(s) => Value::String(s.as_ref().to_owned()),
        Variant::LocalizedText(t) => Value::String(t.text.as_ref().to_owned()),
        Variant::DateTime(d) => Value::String(d.as_chrono().to_rfc3339()),
        _ => return None,
    })
}

/// Our value → a variant of the same type as `like` (the node's current
/// value), so a write never changes a node's DataType.
pub fn coerce(value: &Value, like: &Variant) -> Result<Variant, String> {
    let f = value.as_f64();
    let int = |lo: f64, hi: f64| -> Result<i128, String> {
        let x = f.ok_or("a number is needed")?;
        if !x.is_finite() || x < lo || x > hi {
            return Err(format!("{x} does not fit the node's type"));
        }
        Ok(x.round() as i128)
    };
    Ok(match like {
        Variant::Boolean(_) => Variant::Boolean(match value {
            Value::Bool(b) => *b,
            _ => f.ok_or("a boolean is needed")? != 0.0,
        }),
        Variant::SByte(_) => Variant::SByte(int(-128.0, 127.0)? as i8),
        Variant::Byte(_) => Variant::Byte(int(0.0, 255.0)? as u8),
        Variant::Int16(_) => Variant::Int16(int(-32768.0, 32767.0)? as i16),
        Variant::UInt16(_) => Variant::UInt16(int(0.0, 65535.0)? as u16),
        Variant::Int32(_) => Variant::Int32(int(i32::MIN as f64, i32::MAX as f64)? as i32),
        Variant::UInt32(_) => Variant::UInt32(int(0.0, u32::MAX as f64)? as u32),
        Variant::Int64(_) => match value {
            Value::I64(v) => Variant::Int64(*v),
            _ => Variant::Int64(int(i64::MIN as f64, i64::MAX as f64)? as i64),
        },
        Variant::UInt64(_) => match value {
            Value::U64(v) => Variant::UInt64(*v),
            _ => Variant::UInt64(int(0.0, u64::MAX as f64)? as u64),
        },
        Variant::Float(_) => Variant::Float(f.ok_or("a number is needed")? as f32),
        Variant::Double(_) => Variant::Double(f.ok_or("a number is needed")?),
        Variant::String(_) => Variant::String(value.to_string().trim_matches('"').into()),
        other => {
            return Err(format!(
                "writing to a node of type {:?} is not supported",
                other.type_id()
            ));
        }
    })
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

/// Errors that retrying will not fix: wait the maximum backoff.
fn is_permanent(status: StatusCode) -> bool {
    let name = status.sub_code().name();
    name.starts_with("BadCertificate")
        || matches!(
            name,
            "BadUserAccessDenied"
                | "BadIdentityTokenRejected"
                | "BadIdentityTokenInvalid"
                | "BadSecurityChecksFailed"
        )
}

#[async_trait]
impl Driver for OpcUaDriver {
    fn name(&self) -> &str {
        &self.name
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
        let mut client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(device = %self.name, error = %e, "OPC UA driver cannot start");
                publish(&ctx, &self.name, LinkState::Connecting, Some(e));
                cancel.cancelled().await;
                return;
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
                    let mut wait = self.backoff.fail(jitter.next_unit());
                    if permanent {
                        // Retrying a rejected password or certificate quickly only
                        // risks locking the account: wait the longest.
                        for _ in 0..16 {
                            wait = self.backoff.fail(jitter.next_unit());
                        }
                    }
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
        let identity = match self.identity() {
            Ok(i) => i,
            Err(e) => return fail(e, true),
        };
        let url = self.endpoint.endpoint_url.clone();
        let endpoint = (
            url.as_str(),
            policy_uri(self.endpoint.security_policy),
            mode(self.endpoint.security_mode),
        );
        let connect_timeout = self.timeout.max(Duration::from_secs(5));
        let (session, event_loop) = match tokio::time::timeout(
            connect_timeout,
            client.connect_to_matching_endpoint(endpoint, identity),
        )
        .await
        {
            Err(_) => {
                return fail(
                    format!("no answer from {url} within {connect_timeout:?}"),
                    false,
                );
            }
            Ok(Err(e)) => {
                let status = e.status();
                return fail(explain(status, &url, &self.endpoint), is_permanent(status));
            }
            Ok(Ok(s)) => s,
        };
        // Run the event loop as a stream we poll ourselves, so its events
        // (connection lost, reconnected) reach this task.
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Result<SessionPollResult, StatusCode>>();
        // The event loop drives the whole session (every request's answer
        // comes through it), so it must never wait for this task: only the
        // rare connection events are forwarded, on an unbounded channel.
        // (Forwarding every transport event on a bounded channel deadlocked
        // the session while thousands of items were being created.)
        let el = tokio::spawn(async move {
            let stream = event_loop.enter();
            futures::pin_mut!(stream);
            while let Some(r) = stream.next().await {
                let end = r.is_err();
                let wanted = matches!(
                    r,
                    Err(_)
                        | Ok(SessionPollResult::ConnectionLost(_))
                        | Ok(SessionPollResult::ReconnectFailed(_))
                        | Ok(SessionPollResult::Reconnected(_))
                );
                if wanted && ev_tx.send(r).is_err() || end {
                    break;
                }
            }
        });
        let _abort = AbortOnDrop(el);

        // Wait until the session is active (or the loop reports failure).
        let connected = async {
            loop {
                match ev_rx.recv().await {
                    Some(Ok(SessionPollResult::Reconnected(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(s)) => return Err(s),
                    None => return Err(StatusCode::BadConnectionClosed),
                }
            }
        };
        match tokio::time::timeout(connect_timeout, connected).await {
            Err(_) => {
                return fail(
                    format!("session with {url} not activated within {connect_timeout:?}"),
                    false,
                );
            }
            Ok(Err(s)) => return fail(explain(s, &url, &self.endpoint), is_permanent(s)),
            Ok(Ok(())) => {}
        }
        if let Err(e) = session.read_namespace_array().await {
            return fail(
                format!("cannot read the server's namespace array: {e}"),
                false,
            );
        }

        let limits = self.operation_limits(&session).await;

        // Resolve every tag's node.
        let mut node_ids: Vec<Option<NodeId>> = Vec::with_capacity(self.tags.len());
        let mut out = Vec::new();
        for i in 0..self.tags.len() {
            let id = to_node_id(&self.tags[i].node, &session);
            match &id {
                Some(_) => {}
                None => {
                    let s = Sample {
                        tag: self.tags[i].name.clone(),
                        ts: Timestamp::now(),
                        value: None,
                        quality: Quality::Bad(Reason::Other(format!(
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
                                        quality: Quality::Bad(Reason::Other(format!(
                                            "cannot monitor {}: opcua {}",
                                            self.tags[i].node,
                                            status_name(r.result.status_code)
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
        let end = loop {
            tokio::select! {
                _ = cancel.cancelled() => break SessionEnd::Cancelled,
                ev = ev_rx.recv() => match ev {
                    Some(Ok(SessionPollResult::ConnectionLost(s))) => {
                        // The client reconnects by itself; meanwhile the gap is visible.
                        let bad = self.mark_all(Reason::ConnectionLost);
                        tracing::warn!(device = %self.name, status = %status_name(s), "OPC UA connection lost; reconnecting");
                        ctx.status.send_modify(|st| st.connected = false);
                        if !ctx.send(bad).await { break SessionEnd::Cancelled; }
                    }
                    Some(Ok(SessionPollResult::Reconnected(mode))) => {
                        tracing::info!(device = %self.name, ?mode, "OPC UA reconnected");
                        // async-opcua 0.19 sends no Publish after a reconnect until told to.
                        session.trigger_publish_now();
                        ctx.status.send_modify(|st| st.connected = true);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(s)) => break SessionEnd::Failed { error: explain(s, &url, &self.endpoint), permanent: is_permanent(s) },
                    None => break SessionEnd::Failed { error: "session event loop ended".into(), permanent: false },
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
                    let r = self.write(&session, &node_ids, &cmd.request).await;
                    match &r {
                        Ok(()) => tracing::info!(device = %self.name, request = ?cmd.request, "write done"),
                        Err(e) => tracing::warn!(device = %self.name, request = ?cmd.request, error = %e, "write failed"),
                    }
                    let _ = cmd.reply.send(r);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
        end
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

/// What an operator should do about a connect failure.
fn explain(status: StatusCode, url: &str, ep: &OpcUaEndpoint) -> String {
    let name = status.sub_code().name();
    let hint = match name {
        "BadUserAccessDenied" | "BadIdentityTokenRejected" | "BadIdentityTokenInvalid" => {
            match &ep.identity {
                Identity::X509 { certificate, .. } => format!(
                    "the server rejected the user certificate {}; ask its administrator to map this certificate to a user",
                    certificate.display()
                ),
                Identity::Anonymous => "the server refuses anonymous sessions; configure `user` + a password source, or `user_certificate` + `user_key`".to_string(),
                Identity::UserName { .. } => "the server rejected the user name or password; check `user` and the password source".to_string(),
            }
        }
        "BadCertificateUntrusted" | "BadSecurityChecksFailed" => format!(
            "the server's certificate is not trusted: it was saved in {}; if it is the right server, move it to {}",
            ep.pki_dir.join("rejected").display(),
            ep.pki_dir.join("trusted").display()
        ),
        "BadCertificateHostNameInvalid" => {
            "the host name in the endpoint URL is not in the server certificate".to_string()
        }
        "BadTcpEndpointUrlInvalid"
        | "BadConnectionRejected"
        | "BadNotConnected"
        | "BadCommunicationError" => "check that the server is running and reachable".to_string(),
        _ => String::new(),
    };
    if hint.is_empty() {
        format!("{url}: {}", status_name(status))
    } else {
        format!("{url}: {}: {hint}", status_name(status))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn variants_map_to_values() {
        assert_eq!(variant_to_value(&Variant::Int32(-5)), Some(Value::I64(-5)));
        assert_eq!(
            variant_to_value(&Variant::UInt64(u64::MAX)),
            Some(Value::U64(u64::MAX))
        );
        assert_eq!(
            variant_to_value(&Variant::Float(1.5)),
            Some(Value::F64(1.5))
        );
        assert_eq!(
            variant_to_value(&Variant::Boolean(true)),
            Some(Value::Bool(true))
        );
        assert_eq!(
            variant_to_value(&Variant::String("x".into())),
            Some(Value::String("x".into()))
        );
        assert_eq!(variant_to_value(&Variant::Empty), None);
    }

    #[test]
    fn writes_keep_the_node_type_and_refuse_what_does_not_fit() {
        assert!(matches!(
            coerce(&Value::F64(7.6), &Variant::Int16(0)),
            Ok(Variant::Int16(8))
        ));
        assert!(
            matches!(coerce(&Value::F64(2.5), &Variant::Float(0.0)), Ok(Variant::Float(x)) if x == 2.5)
        );
        assert!(matches!(
            coerce(&Value::I64(1), &Variant::Boolean(false)),
            Ok(Variant::Boolean(true))
        ));
        assert!(matches!(
            coerce(&Value::U64(u64::MAX), &Variant::UInt64(0)),
            Ok(Variant::UInt64(u64::MAX))
        ));
        assert!(coerce(&Value::F64(70_000.0), &Variant::Int16(0)).is_err());
        assert!(coerce(&Value::F64(-1.0), &Variant::Byte(0)).is_err());
        assert!(coerce(&Value::F64(f64::NAN), &Variant::Int32(0)).is_err());
        assert!(coerce(&Value::String("a".into()), &Variant::Double(0.0)).is_err());
    }

    #[test]
    fn credential_and_certificate_failures_are_not_retried_fast() {
        assert!(is_permanent(StatusCode::BadUserAccessDenied));
        assert!(is_permanent(StatusCode::BadCertificateUntrusted));
        assert!(!is_permanent(StatusCode::BadCommunicationError));
    }
}
