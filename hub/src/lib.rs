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

pub mod broker;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Broker, HubConfig};

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
}

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    ingest: JoinHandle<Result<(), ingest::IngestError>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl Hub {
    /// Open the store, start the broker (embedded mode) and the ingest.
    pub async fn start(cfg: HubConfig, cancel: CancellationToken) -> Result<Hub, HubError> {
        let path = cfg.storage_path.clone();
        let store = tokio::task::spawn_blocking(move || store::Store::open(&path))
            .await
            .map_err(|e| {
                HubError::Store(store::StoreError::Dir {
                    path: e.to_string(),
                    source: std::io::Error::other("store open panicked"),
                })
            })??;
        let link = match &cfg.broker {
            Broker::Embedded { listen, tls } => {
                let mut users: HashMap<String, String> = cfg
                    .nodes
                    .iter()
                    .filter_map(|((site, node), e)| {
                        e.password.clone().map(|p| (format!("{site}.{node}"), p))
                    })
                    .collect();
                let hub_password = random_password();
                users.insert(broker::HUB_USER.to_string(), hub_password.clone());
                // The hub's own client uses a plaintext loopback listener
                // when the public one is TLS.
                let (internal, tls) = match tls {
                    Some(t) => (Some(free_loopback_port()?), Some(t.clone())),
                    None => (None, None),
                };
                broker::start(*listen, tls, internal, users, cfg.max_message_size + 1024)?;
                let port = internal.unwrap_or(listen.port());
                ingest::Link {
                    host: "127.0.0.1".into(),
                    port,
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
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let ingest = tokio::spawn(ingest::run(
            link,
            Arc::new(keys),
            store,
            cfg.max_message_size,
            cfg.commit_interval,
            ready_tx,
            cancel,
        ));
        Ok(Hub { ingest, ready })
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

    /// Wait until the ingest stopped (after the cancel token fired).
    pub async fn join(self) -> Result<(), HubError> {
        match self.ingest.await {
            Ok(r) => Ok(r?),
            Err(_) => Ok(()),
        }
    }
}

fn random_password() -> String {
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

fn free_loopback_port() -> Result<u16, HubError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HubError::Broker(broker::BrokerError::Thread(e)))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| HubError::Broker(broker::BrokerError::Thread(e)))
}
