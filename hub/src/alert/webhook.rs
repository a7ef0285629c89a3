//! Webhook delivery: one POST of JSON per transition, signed with
//! HMAC-SHA256, retried with exponential backoff, every attempt logged and
//! recorded in `alerts.db`.
//!
//! The queue is bounded and first in, first out: a receiver sees an
//! alert's firing before its resolve, and while the head waits for its next
//! attempt, the others wait behind it (there is one receiver: when it is
//! down, they would all fail anyway). A full queue drops its oldest waiting
//! delivery, counted, logged and recorded. Pending deliveries live in
//! memory: a restart forgets them (the history in `alerts.db` stays).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rumqttc::tokio_rustls::{TlsConnector, rustls};
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::db::{AlertDb, Delivery};
use super::{AlertState, Transition};
use crate::config::Webhook;

/// What the receiver gets (the body that is signed).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Payload<'a> {
    pub id: &'a str,
    pub rule: &'a str,
    pub kind: &'a str,
    pub site: &'a str,
    pub node: &'a str,
    pub state: AlertState,
    pub since_ms: i64,
    /// When the transition happened.
    pub ts_ms: i64,
    pub message: &'a str,
    pub value: Option<f64>,
    /// The hub's name (`[alerts] name`).
    pub hub: &'a str,
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let out = mac.finalize().into_bytes();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256=");
    for b in out {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One transition to deliver.
#[derive(Debug, Clone)]
pub struct Job {
    pub alert_id: String,
    pub state: AlertState,
    pub body: Bytes,
}

impl Job {
    pub fn new(t: &Transition, hub: &str) -> Job {
        let body = serde_json::to_vec(&Payload {
            id: &t.id,
            rule: &t.rule,
            kind: &t.kind,
            site: &t.site,
            node: &t.node,
            state: t.state,
            since_ms: t.since_ms,
            ts_ms: t.ts_ms,
            message: &t.message,
            value: t.value.filter(|v| v.is_finite()),
            hub,
        })
        .unwrap_or_default();
        Job {
            alert_id: t.id.clone(),
            state: t.state,
            body: Bytes::from(body),
        }
    }
}

#[derive(Debug)]
struct Inner {
    jobs: Mutex<VecDeque<Job>>,
    notify: Notify,
    cap: usize,
    dropped: AtomicU64,
}

/// The bounded queue between the evaluation and the delivery task.
#[derive(Debug, Clone)]
pub struct Queue(Arc<Inner>);

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue(Arc::new(Inner {
            jobs: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            cap: cap.max(1),
            dropped: AtomicU64::new(0),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.0.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a delivery; when full, the oldest waiting one is dropped and
    /// returned (the caller records it).
    pub fn push(&self, job: Job) -> Option<Job> {
        let dropped = {
            let mut q = self.lock();
            let d = if q.len() >= self.0.cap {
                q.pop_front()
            } else {
                None
            };
            q.push_back(job);
            d
        };
        if let Some(d) = &dropped {
            let n = self.0.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                alert = %d.alert_id,
                state = d.state.as_str(),
                dropped_total = n,
                "webhook queue full: the oldest waiting delivery was dropped"
            );
        }
        self.0.notify.notify_one();
        dropped
    }

    /// Deliveries dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn pop(&self) -> Job {
        loop {
            let notified = self.0.notify.notified();
            if let Some(j) = self.lock().pop_front() {
                return j;
            }
            notified.await;
        }
    }
}

/// The HTTP(S) client of one webhook.
#[derive(Clone)]
pub struct Client {
    cfg: Webhook,
    uri: hyper::Uri,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cfg", &self.cfg)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client {
    pub fn new(cfg: &Webhook) -> Result<Client, String> {
        let uri: hyper::Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("webhook url {:?}: {e}", cfg.url))?;
        let tls = if uri.scheme_str() == Some("https") {
            // The system's trust store; a certificate that fails to parse
            // is skipped, as browsers do.
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("webhook TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Client {
            cfg: cfg.clone(),
            uri,
            tls,
        })
    }

    /// One attempt: the HTTP status, or why there is none.
    pub async fn post(&self, job: &Job, attempt: u32) -> Result<u16, String> {
        match tokio::time::timeout(self.cfg.timeout, self.exchange(job, attempt)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.cfg.timeout)
            )),
        }
    }

    async fn exchange(&self, job: &Job, attempt: u32) -> Result<u16, String> {
        let host = self.uri.host().unwrap_or("").to_owned();
        let https = self.tls.is_some();
        let port = self.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = self
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or(host.clone());
        let path = self
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let req = Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("apos-hub/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-APOS-Signature", signature(&self.cfg.secret, &job.body))
            .header("X-APOS-Timestamp", crate::web::now_ms().to_string())
            .header(
                "X-APOS-Delivery",
                format!("{}/{}/{attempt}", job.alert_id, job.state.as_str()),
            )
            .body(Full::new(job.body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(bare)
                    .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
                send(stream, req).await
            }
            None => send(tcp, req).await,
        }
    }
}

async fn send<S>(io: S, req: Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection task ends when the exchange does (or the attempt's
    // timeout drops the sender).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    Ok(resp.status().as_u16())
}

/// Deliver what the queue holds until `cancel`.
pub async fn run(client: Client, queue: Queue, db: Arc<AlertDb>, cancel: CancellationToken) {
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            j = queue.pop() => j,
        };
        if !deliver(&client, &job, &db, &cancel).await {
            return;
        }
    }
}

/// All attempts of one job; false when cancelled.
async fn deliver(
    client: &Client,
    job: &Job,
    db: &Arc<AlertDb>,
    cancel: &CancellationToken,
) -> bool {
    let cfg = &client.cfg;
    let first = Instant::now();
    let mut delay = cfg.backoff;
    for attempt in 1..=cfg.max_attempts {
        let r = client.post(job, attempt).await;
        let (ok, status, error) = match &r {
            Ok(s) if (200..300).contains(s) => (true, Some(*s), None),
            Ok(s) => (false, Some(*s), Some(format!("HTTP status {s}"))),
            Err(e) => (false, None, Some(e.clone())),
        };
        if ok {
            tracing::info!(alert = %job.alert_id, state = job.state.as_str(), attempt, status, "webhook delivered");
        } else {
            tracing::warn!(
                alert = %job.alert_id,
                state = job.state.as_str(),
                attempt,
                status,
                error = error.as_deref().unwrap_or(""),
                "webhook attempt failed"
            );
        }
        record(
            db,
            job,
            Delivery {
                state: job.state,
                attempt,
                ts_ms: crate::web::now_ms(),
                ok,
                status,
                error,
            },
        )
        .await;
        if ok {
            return true;
        }
        if attempt == cfg.max_attempts || first.elapsed() + delay > cfg.deadline {
            tracing::error!(
                alert = %job.alert_id,
                state = job.state.as_str(),
                attempts = attempt,
                "webhook delivery given up"
            );
            return true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(cfg.max_backoff);
    }
    true
}

/// Write one attempt (or a drop) to `alerts.db`, off the async threads.
pub async fn record(db: &Arc<AlertDb>, job: &Job, d: Delivery) {
    let db = db.clone();
    let id = job.alert_id.clone();
    let r = tokio::task::spawn_blocking(move || db.delivery(&id, &d)).await;
    if let Ok(Err(e)) = r {
        tracing::error!(error = %e, "cannot record a webhook attempt");
    }
}

/// How long after the first attempt the `n`th (1-based) starts at the
/// earliest, without the attempts' own time: backoff, doubling, capped.
pub fn schedule(cfg: &Webhook, n: u32) -> Duration {
    let mut at = Duration::ZERO;
    let mut delay = cfg.backoff;
    for _ in 1..n {
        at += delay;
        delay = (delay * 2).min(cfg.max_backoff);
    }
    at
}
