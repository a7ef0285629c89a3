//! The APOS hub as a library: the `apos-hub` binary, the demo and the tests
//! run a [`Hub`].
//!
//! ```text
//! edges ──MQTT──▶ broker (embedded rumqttd | external mosquitto/EMQX)
//!                   │ ▲
//!          batches  │ │ signed acks (after commit)
//!                   ▼ │
//!             ingest task ──[bounded]──▶ DuckDB thread (store.rs)
//! ```

pub mod alert;
pub mod broker;
pub mod config;
pub mod control;
pub mod etl;
pub mod events;
pub mod files;
pub mod gate;
pub mod ingest;
pub mod insight;
pub mod metrics;
pub mod optimize;
pub mod report;
pub mod sql;
pub mod store;
pub mod web;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Broker, HubConfig};

/// The hub's default log filter (`RUST_LOG` overrides it): `info`, without
/// rumqttd's own lines. rumqttd logs every connection at INFO and ordinary
/// disconnects at ERROR; the gate logs what matters about connections
/// (logins, refusals: rate-limited, with the peer), so the broker's lines
/// would only bury them.
pub const LOG_FILTER: &str = "info,rumqttd=off";

/// The filter the hub runs with: [`LOG_FILTER`] with `RUST_LOG` on top.
pub fn log_filter() -> String {
    merge_filter(LOG_FILTER, &std::env::var("RUST_LOG").unwrap_or_default())
}

/// `defaults` with `user` (the `RUST_LOG` text) on top. `RUST_LOG` adds to
/// the defaults rather than replacing them: `RUST_LOG=info` must not bring
/// back a library's per-connection noise (one ERROR line per timed-out
/// reconnect, say). A default for a target the user names, or the default
/// level when the user gives one, gives way to the user's.
fn merge_filter(defaults: &str, user: &str) -> String {
    let target = |d: &str| -> Option<String> {
        let head = d.split('=').next().unwrap_or("").trim();
        let bare_level = !d.contains('=')
            && ["trace", "debug", "info", "warn", "error", "off"]
                .contains(&head.to_ascii_lowercase().as_str());
        (!bare_level).then(|| head.split('[').next().unwrap_or("").to_owned())
    };
    let user: Vec<&str> = user
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let named: Vec<Option<String>> = user.iter().map(|d| target(d)).collect();
    let mut out: Vec<&str> = defaults
        .split(',')
        .filter(|d| !named.contains(&target(d)))
        .collect();
    out.extend(user);
    out.join(",")
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Gate(#[from] gate::GateError),
    #[error(transparent)]
    Web(#[from] web::WebStartError),
    #[error(transparent)]
    Alert(#[from] alert::AlertError),
    #[error(transparent)]
    Optimize(#[from] optimize::OptimizeError),
}

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    ingest: JoinHandle<Result<(), ingest::IngestError>>,
    ready: tokio::sync::watch::Receiver<bool>,
    /// Why a part of the hub stopped by itself (the broker thread, the
    /// gate), first come; the ingest is watched through its handle.
    failures: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Kept so that `failures` only ends with the hub.
    _failure_tx: tokio::sync::mpsc::UnboundedSender<String>,
    cancel: CancellationToken,
    /// The web application, when `[web]` is configured.
    web: Option<web::WebHandle>,
    events: events::Events,
    /// `apos-hub nodes` and `checksum` while the hub runs.
    control: Option<control::ControlHandle>,
    /// Read connections to the fleet database (this hub's, not the process's).
    reads: Option<Arc<store::ReadPool>>,
    /// The stages the systemd watchdog waits on (ingest loop, store thread).
    heartbeats: ::web::systemd::Heartbeats,
}

/// How long the ingest loop or the store thread may go without a heartbeat
/// before the hub counts as stalled and the systemd watchdog is no longer
/// fed. Both beat at least once a second when idle; the bound leaves room
/// for a commit retried batch by batch and for the ingest waiting on a
/// full store queue meanwhile.
pub const STAGE_MAX_SILENCE: std::time::Duration = std::time::Duration::from_secs(60);

impl Hub {
    /// Open the store, start the broker (embedded mode) and the ingest.
    /// When this returns, the configuration is valid, the fleet database
    /// is open, and the embedded broker's gate, the web application and
    /// the control socket listen (what systemd's READY=1 promises); the
    /// ingest connects to the broker in the background ([`Hub::is_ready`]).
    pub async fn start(cfg: HubConfig, cancel: CancellationToken) -> Result<Hub, HubError> {
        let (failure_tx, failures) = tokio::sync::mpsc::unbounded_channel();
        let path = cfg.storage_path.clone();
        let store = tokio::task::spawn_blocking(move || {
            let mut s = store::Store::open(&path)?;
            let reads = s.read_pool()?;
            Ok::<_, store::StoreError>((s, reads))
        })
        .await
        .map_err(|e| {
            HubError::Store(store::StoreError::Dir {
                path: e.to_string(),
                source: std::io::Error::other("store open panicked"),
            })
        })??;
        let link = match &cfg.broker {
            Broker::Embedded { listen, tls } => {
                let users: HashMap<String, String> = cfg
                    .nodes
                    .iter()
                    .filter_map(|((site, node), e)| {
                        e.password
                            .clone()
                            .map(|p| (protocol::node_login(site, node), p))
                    })
                    .collect();
                let hub_password = random_password();
                let ports = broker::start(
                    users.clone(),
                    hub_password.clone(),
                    cfg.max_message_size,
                    failure_tx.clone(),
                )?;
                // The public listener is ours: see gate.rs.
                gate::start(
                    gate::GateSettings {
                        listen: *listen,
                        tls: tls.clone(),
                        upstream: std::net::SocketAddr::from(([127, 0, 0, 1], ports.nodes)),
                        users: Arc::new(users),
                        max_packet: cfg.max_message_size + 1024,
                        handshake_timeout: gate::HANDSHAKE_TIMEOUT,
                        max_connections: gate::MAX_CONNECTIONS,
                    },
                    cancel.clone(),
                    failure_tx.clone(),
                )
                .await?;
                ingest::Link {
                    host: "127.0.0.1".into(),
                    port: ports.hub,
                    tls: false,
                    ca_file: None,
                    credentials: Some((broker::HUB_USER.to_string(), hub_password)),
                }
            }
            Broker::External {
                host,
                port,
                tls,
                ca_file,
                credentials,
            } => ingest::Link {
                host: host.clone(),
                port: *port,
                tls: *tls,
                ca_file: ca_file.clone(),
                credentials: credentials.clone(),
            },
        };
        let keys: BTreeMap<_, _> = cfg
            .nodes
            .iter()
            .map(|(k, e)| (k.clone(), e.key.clone()))
            .collect();
        let (store, reads) = store;
        let control = match control::serve(
            control::socket_path(&cfg.storage_path),
            cfg.storage_path.clone(),
            reads.clone(),
            cancel.clone(),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no control socket: `apos-hub nodes` and `apos-hub checksum` work only while the hub is stopped");
                None
            }
        };
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let events = events::channel();
        let cfg = Arc::new(cfg);
        // Recommendations go out through the ingest's MQTT client.
        let (recs_tx, recs_rx) = tokio::sync::mpsc::channel(optimize::OUTGOING_QUEUE);
        let optimizer = match &cfg.optimization {
            Some(o) => {
                let (o, path, reads) = (o.clone(), cfg.storage_path.clone(), reads.clone());
                let opt = tokio::task::spawn_blocking(move || {
                    optimize::Optimizer::new(o, &path, reads, recs_tx)
                })
                .await
                .map_err(|e| optimize::OptimizeError::Key {
                    path: String::new(),
                    why: e.to_string(),
                })??;
                let opt = Arc::new(opt);
                optimize::track::start(opt.clone(), cancel.clone());
                Some(opt)
            }
            None => None,
        };
        let web = match &cfg.web {
            Some(w) => Some(
                web::start(
                    cfg.clone(),
                    w,
                    reads.clone(),
                    ready.clone(),
                    events.clone(),
                    optimizer.clone(),
                    cancel.clone(),
                )
                .await?,
            ),
            None => None,
        };
        // Alert rules read through the same pool (docs/hub.md, "Alerts").
        alert::start(cfg.clone(), reads.clone(), events.clone(), cancel.clone()).await?;
        // Scheduled site reports (`[[report]]`, docs/insights.md).
        report::run::start(cfg.clone(), reads.clone(), cancel.clone());
        let beats = ingest::Beats::default();
        let heartbeats = ::web::systemd::Heartbeats::default();
        heartbeats.watch("ingest", &beats.ingest, STAGE_MAX_SILENCE);
        heartbeats.watch("store thread", &beats.store, STAGE_MAX_SILENCE);
        let ingest = tokio::spawn(ingest::run(
            link,
            Arc::new(keys),
            store,
            cfg.max_message_size,
            cfg.commit_interval,
            ready_tx,
            events.clone(),
            beats,
            recs_rx,
            cancel.clone(),
        ));
        Ok(Hub {
            ingest,
            ready,
            failures,
            _failure_tx: failure_tx,
            cancel,
            web,
            events,
            reads: Some(reads),
            control,
            heartbeats,
        })
    }

    /// The stages the systemd watchdog waits on.
    pub fn heartbeats(&self) -> &::web::systemd::Heartbeats {
        &self.heartbeats
    }

    /// The web application's address, when it runs.
    pub fn web_url(&self) -> Option<String> {
        self.web.as_ref().map(|w| w.url())
    }

    /// The web application, when it runs.
    pub fn web(&self) -> Option<&web::WebHandle> {
        self.web.as_ref()
    }

    /// Read connections to this hub's fleet database (tests and tools that
    /// run beside the hub; the process-wide counters in [`metrics`] are
    /// shared by every hub in the process).
    pub fn reads(&self) -> Option<&Arc<store::ReadPool>> {
        self.reads.as_ref()
    }

    /// The live events the ingest sends after each commit.
    pub fn events(&self) -> &events::Events {
        &self.events
    }

    /// Wait until a part of the hub stops by itself (returns why): the hub
    /// then cannot do its work, and the process should end so that the
    /// service manager restarts it, rather than run on hollow.
    pub async fn failed(&mut self) -> String {
        tokio::select! {
            why = self.failures.recv() => why.unwrap_or_else(|| "unknown".to_owned()),
            r = &mut self.ingest => {
                // The ingest ended: if nobody asked it to, that is a failure.
                let why = match r {
                    Ok(Ok(())) if self.cancel.is_cancelled() => "stopped".to_owned(),
                    Ok(Ok(())) => "the ingest ended by itself".to_owned(),
                    Ok(Err(e)) => format!("the ingest failed: {e}"),
                    Err(e) => format!("the ingest task failed: {e}"),
                };
                // Keep `join` working after this.
                self.ingest = tokio::spawn(async { Ok(()) });
                why
            }
        }
    }

    /// Wait until the ingest is connected to the broker and subscribed, at
    /// most `timeout`. True when it is. Edges resend anything published
    /// before, so this only matters for prompt starts (demo, tests).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.ready.clone();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the ingest is currently connected and subscribed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The control socket's path, when it runs.
    pub fn control_socket(&self) -> Option<&std::path::Path> {
        self.control.as_ref().map(|c| c.path.as_path())
    }

    /// Wait until the ingest stopped (after the cancel token fired).
    pub async fn join(self) -> Result<(), HubError> {
        let r = self.ingest.await;
        // The control socket's file goes with the hub.
        if let Some(c) = self.control {
            c.join().await;
        }
        match r {
            Ok(r) => Ok(r?),
            Err(_) => Ok(()),
        }
    }
}

pub(crate) fn random_password() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        // No /dev/urandom (not Linux): the std hasher's per-process random
        // keys, mixed with the time. The password only guards a loopback
        // listener for the life of this process.
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A hub whose ingest is `ingest`, with the failure channel's sender.
    fn hub_with(
        ingest: JoinHandle<Result<(), ingest::IngestError>>,
    ) -> (Hub, tokio::sync::mpsc::UnboundedSender<String>) {
        let (tx, failures) = tokio::sync::mpsc::unbounded_channel();
        let (_, ready) = tokio::sync::watch::channel(false);
        let hub = Hub {
            ingest,
            ready,
            failures,
            _failure_tx: tx.clone(),
            cancel: CancellationToken::new(),
            web: None,
            events: events::channel(),
            control: None,
            reads: None,
            heartbeats: ::web::systemd::Heartbeats::default(),
        };
        (hub, tx)
    }

    /// What `apos-hub run` waits on: the first part that stops by itself
    /// is reported (and `run` then exits with an error).
    #[tokio::test]
    async fn a_part_that_stops_by_itself_is_reported() {
        // The store thread died: the ingest ends with an error.
        let (mut hub, _tx) = hub_with(tokio::spawn(async {
            Err(ingest::IngestError::StoreStopped)
        }));
        let why = hub.failed().await;
        assert_eq!(why, "the ingest failed: the DuckDB thread stopped");
        // `join` still works after the report.
        assert!(hub.join().await.is_ok());

        // The ingest ended without an error and without being asked to.
        let (mut hub, _tx) = hub_with(tokio::spawn(async { Ok(()) }));
        assert_eq!(hub.failed().await, "the ingest ended by itself");

        // The ingest task panicked.
        let (mut hub, _tx) = hub_with(tokio::spawn(async { panic!("boom") }));
        assert!(hub.failed().await.starts_with("the ingest task failed"));

        // The broker thread or the gate reported its end.
        let (mut hub, tx) = hub_with(tokio::spawn(std::future::pending()));
        tx.send("the embedded broker stopped".into()).unwrap();
        assert_eq!(hub.failed().await, "the embedded broker stopped");

        // Asked to stop: not a failure.
        let (mut hub, _tx) = hub_with(tokio::spawn(async { Ok(()) }));
        hub.cancel.cancel();
        assert_eq!(hub.failed().await, "stopped");
    }

    /// A part that keeps working is no failure: `failed` stays pending.
    #[tokio::test]
    async fn a_working_hub_reports_nothing() {
        let (mut hub, _tx) = hub_with(tokio::spawn(std::future::pending()));
        let r = tokio::time::timeout(std::time::Duration::from_millis(200), hub.failed()).await;
        assert!(r.is_err(), "{r:?}");
    }
}
