//! The simulated plant: a fired heater feeding a crude distillation unit,
//! served by a simulated PLC over Modbus TCP. See `docs/plant.md`.
//!
//! - [`model`]: the deterministic process model (pure, seeded).
//! - [`registers`]: the PLC's register map and encoding.
//! - [`server`]: the Modbus TCP server with fault switches.

pub mod model;
pub mod opcua;
pub mod registers;
mod rng;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use model::{Plant, SetpointId, Setpoints, Snapshot, UnitState};
pub use registers::{Register, register_map};
pub use server::Faults;

/// Real time between model steps.
pub const TICK: Duration = Duration::from_millis(100);

/// Errors starting the plant.
#[derive(Debug, thiserror::Error)]
pub enum PlantError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running simulated plant.
#[derive(Debug, Clone)]
pub struct PlantHandle {
    /// Where the PLC listens (the actual port when 0 was asked for).
    pub addr: SocketAddr,
    shared: Arc<Mutex<server::Shared>>,
    faults: Arc<Faults>,
}

impl PlantHandle {
    /// The process state now.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.shared.lock().ok().map(|s| s.plant.snapshot().clone())
    }

    /// Fault switches of the PLC.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Also serve the plant over OPC UA on `addr` (port 0 = any free one);
    /// the server's certificate lives in `pki_dir`. Returns the bound address.
    pub async fn serve_opcua(
        &self,
        addr: SocketAddr,
        pki_dir: &std::path::Path,
        cancel: CancellationToken,
    ) -> Result<SocketAddr, PlantError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| PlantError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| PlantError::Bind { addr, source })?;
        let shared = self.shared.clone();
        let pki = pki_dir.to_path_buf();
        tokio::spawn(async move {
            if let Err(e) = opcua::serve(listener, shared, &pki, cancel).await {
                tracing::error!(error = %e, "plant OPC UA server stopped");
            }
        });
        tracing::info!(addr = %bound, "simulated plant OPC UA server running");
        Ok(bound)
    }

    /// Change the model directly (e.g. force a trip), then refresh the registers.
    pub fn with_plant<R>(&self, f: impl FnOnce(&mut Plant) -> R) -> Option<R> {
        let mut s = self.shared.lock().ok()?;
        let r = f(&mut s.plant);
        s.refresh();
        Some(r)
    }
}

/// Start the plant: the model advances `time_scale` simulated seconds per
/// real second, and its PLC serves Modbus TCP on `addr` until `cancel` fires.
pub async fn spawn_demo_plant(
    addr: SocketAddr,
    seed: u64,
    time_scale: f64,
    cancel: CancellationToken,
) -> Result<PlantHandle, PlantError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| PlantError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| PlantError::Bind { addr, source })?;
    let shared = Arc::new(Mutex::new(server::Shared::new(Plant::new(seed))));
    let faults = Arc::new(Faults::default());

    let sim = shared.clone();
    let sim_cancel = cancel.clone();
    let dt = TICK.as_secs_f64() * time_scale.max(0.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sim_cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Ok(mut s) = sim.lock() {
                        s.plant.step(dt);
                        s.refresh();
                    }
                }
            }
        }
    });
    tokio::spawn(server::serve(
        listener,
        shared.clone(),
        faults.clone(),
        cancel,
    ));
    tracing::info!(%addr, seed, time_scale, "simulated plant running");
    Ok(PlantHandle {
        addr,
        shared,
        faults,
    })
}
