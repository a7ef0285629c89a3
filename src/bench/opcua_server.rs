//! An OPC UA server with N Double variables that all change every period
//! (async-opcua server side), for `apos-bench opcua`. Namespace
//! `urn:apos:bench`, node ids `s=v00000`….

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opcua::server::ServerBuilder;
use opcua::server::address_space::VariableBuilder;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::types::{DataTypeId, DataValue, NodeId, ObjectId};
use tokio_util::sync::CancellationToken;

pub const NAMESPACE_URI: &str = "urn:apos:bench";

/// Node id text of variable `i` in configuration syntax.
pub fn node(i: usize) -> String {
    format!("nsu={NAMESPACE_URI};s=v{i:05}")
}

/// Serve `items` variables updated every `period` on 127.0.0.1 (any port)
/// until `cancel` fires. Returns the bound address.
pub async fn spawn(
    items: usize,
    period: Duration,
    pki: &Path,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut builder = ServerBuilder::new_anonymous("APOS bench server")
        .application_uri("urn:apos:bench:server")
        .host("127.0.0.1")
        .port(addr.port())
        .pki_dir(pki)
        .create_sample_keypair(true)
        .trust_client_certs(true)
        .token(cancel.clone())
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NAMESPACE_URI.to_owned(),
                ..Default::default()
            },
            "bench",
        ));
    // Room for every item, in any number of subscriptions.
    let subs = &mut builder.limits_mut().subscriptions;
    subs.max_monitored_items_per_sub = items.max(1000);
    // async-opcua checks subscriptions on a 100 ms timer by default: with a
    // 100 ms publishing interval, timer jitter then skips every few
    // publishes and the benchmark measures the server's timer, not the
    // client. A 10 ms timer lets each subscription publish on time.
    subs.min_publishing_interval_ms = 10.0;
    subs.min_sampling_interval_ms = 10.0;
    subs.max_queued_notifications = 100;
    subs.max_subscriptions_per_session = 100;
    let builder = builder.subscription_poll_interval_ms(10);
    let (server, handle) = builder.build().map_err(|e| anyhow::anyhow!(e))?;
    let manager = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .ok_or_else(|| anyhow::anyhow!("bench node manager missing"))?;
    let ns = handle
        .get_namespace_index(NAMESPACE_URI)
        .ok_or_else(|| anyhow::anyhow!("bench namespace missing"))?;
    let ids: Arc<Vec<NodeId>> = Arc::new(
        (0..items)
            .map(|i| NodeId::new(ns, format!("v{i:05}")))
            .collect(),
    );
    {
        let mut space = manager.address_space().write();
        let folder = NodeId::new(ns, "Bench");
        space.add_folder(&folder, "Bench", "Bench", &ObjectId::ObjectsFolder.into());
        for (i, id) in ids.iter().enumerate() {
            let name = format!("v{i:05}");
            VariableBuilder::new(id, name.as_str(), name.as_str())
                .data_type(DataTypeId::Double)
                .value(0.0f64)
                .organized_by(folder.clone())
                .insert(&mut *space);
        }
    }
    let subs = handle.subscriptions().clone();
    let tick_cancel = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick_cancel.cancelled() => break,
                _ = tick.tick() => {
                    n += 1;
                    let values: Vec<DataValue> = (0..ids.len()).map(|i| DataValue::new_now(n as f64 + i as f64 * 1e-3)).collect();
                    let _ = manager.set_values(&subs, ids.iter().zip(values).map(|(id, dv)| (id, None, dv)));
                }
            }
        }
    });
    tokio::spawn(async move {
        if let Err(e) = server.run_with(listener).await {
            tracing::error!(error = %e, "bench OPC UA server stopped");
        }
    });
    Ok(addr)
}
