//! `apos-demo`: the whole system on one machine with one command.
//!
//! Starts the simulated refinery unit as a Modbus TCP server, writes an edge
//! configuration for it, and runs an edge node against it, printing where to
//! look and a few live values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "apos-demo",
    about = "APOS demo plant: simulated refinery unit → edge node"
)]
struct Args {
    /// Where the simulated plant serves Modbus TCP.
    #[arg(long, default_value = "127.0.0.1:5020")]
    modbus: SocketAddr,
    /// Where the simulated plant serves OPC UA.
    #[arg(long, default_value = "127.0.0.1:4840")]
    opcua: SocketAddr,
    /// Simulated seconds per real second (1 = real time).
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// Seed of the process model (same seed, same plant).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Working directory for the generated config and the history database.
    #[arg(long, default_value = "target/apos-demo")]
    dir: PathBuf,
    /// How often to print live values.
    #[arg(long, default_value = "5s", value_parser = humantime_arg)]
    print_every: Duration,
}

fn humantime_arg(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    edge_node::logging::init("text");
    let cancel = CancellationToken::new();
    // The plant outlives the edge at shutdown, so the edge's sessions close
    // cleanly instead of seeing the servers vanish.
    let plant_cancel = CancellationToken::new();

    let plant = apos::plant::spawn_demo_plant(
        args.modbus,
        args.seed,
        args.time_scale,
        plant_cancel.clone(),
    )
    .await
    .with_context(|| format!("starting the simulated plant on {}", args.modbus))?;

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let config_path = args.dir.join("edge.toml");
    let history_path = args.dir.join("history.db");
    let ua = plant
        .serve_opcua(
            args.opcua,
            &args.dir.join("plant-pki"),
            plant_cancel.clone(),
        )
        .await
        .with_context(|| format!("starting the plant's OPC UA server on {}", args.opcua))?;
    // Absolute: paths in the generated config are relative to its own folder.
    let edge_pki =
        std::path::absolute(args.dir.join("edge-pki")).context("resolving the PKI directory")?;
    let history_path = std::path::absolute(&history_path).context("resolving the history path")?;
    let toml = apos::demo::edge_config_mixed(
        plant.addr,
        Some(apos::demo::OpcUaSource {
            addr: ua,
            pki_dir: &edge_pki,
        }),
        &history_path,
    );
    std::fs::write(&config_path, toml)
        .with_context(|| format!("writing {}", config_path.display()))?;

    let edge = edge_node::Edge::start(&config_path, cancel.clone())
        .await
        .context("starting the edge node")?;

    println!();
    println!("APOS demo is running.");
    println!(
        "  simulated plant (Modbus TCP):  {}   register map: docs/plant.md",
        plant.addr
    );
    println!(
        "  simulated plant (OPC UA):      opc.tcp://{ua}/   namespace {}; column.* and product.* are read over OPC UA",
        apos::plant::opcua::NAMESPACE_URI
    );
    println!("  edge configuration:           {}", config_path.display());
    println!("  local history (SQLite):       {}", history_path.display());
    println!(
        "  trend from the CLI:           cargo run -p edge-node -- history --config {} --tag heater.outlet_temp --since 10m",
        config_path.display()
    );
    println!(
        "  live values are logged below every {}; Ctrl-C stops.",
        humantime::format_duration(args.print_every)
    );
    println!();

    let mut tick = tokio::time::interval(args.print_every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => apos::demo::print_live(&edge).await,
        }
    }
    cancel.cancel();
    edge.join(Duration::from_secs(10)).await;
    plant_cancel.cancel();
    Ok(())
}
