//! `apos-demo`: the whole system on one machine with one command.
//!
//! Starts the simulated refinery unit (Modbus TCP and OPC UA), a hub with
//! its embedded MQTT broker and DuckDB store, and an edge node that reads
//! the plant and syncs 10 s / 1 min windows to the hub, printing where to
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
    about = "APOS demo plant: simulated refinery unit → edge node → hub"
)]
struct Args {
    /// Where the simulated plant serves Modbus TCP.
    #[arg(long, default_value = "127.0.0.1:5020")]
    modbus: SocketAddr,
    /// Where the simulated plant serves OPC UA.
    #[arg(long, default_value = "127.0.0.1:4840")]
    opcua: SocketAddr,
    /// Where the hub's embedded MQTT broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: SocketAddr,
    /// Where the operator HMI listens (loopback: the demo's users have
    /// printed passwords).
    #[arg(long, default_value = "127.0.0.1:8080")]
    hmi: SocketAddr,
    /// Where the hub's web application (fleet dashboards, REST API, live
    /// updates, /metrics) listens (loopback: its users have printed
    /// passwords).
    #[arg(long, default_value = "127.0.0.1:8090")]
    web: SocketAddr,
    /// Simulated seconds per real second (1 = real time).
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// Seed of the process model (same seed, same plant).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Working directory for the generated config and the history database.
    #[arg(long, default_value = "target/apos-demo")]
    dir: PathBuf,
    /// Leave out the heater trip staged 8 minutes after the start (it
    /// gives the hub's insights and reports a change to explain).
    #[arg(long)]
    no_staged_trip: bool,
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
    edge_node::files::private_files();
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
    // The demo's node credentials: generated once per demo directory, never
    // a fixed default.
    let secret = |name: &str| -> anyhow::Result<PathBuf> {
        let p = std::path::absolute(args.dir.join(name)).context("resolving a key path")?;
        if !p.exists() {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            // 0600 from the start: a secret is never readable by others.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .and_then(|mut f| f.write_all(random_secret().as_bytes()))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(p)
    };
    let key_file = secret("node.key")?;
    let pass_file = secret("node.pass")?;
    let hub_db =
        std::path::absolute(args.dir.join("fleet.duckdb")).context("resolving the hub path")?;
    // The hub's own users file: the edge HMI's users are not the hub's.
    let hub_users_file =
        std::path::absolute(args.dir.join("hub-users.db")).context("resolving the users path")?;
    // The hub's recommendation key, made here (0600) so the edge's
    // configuration can name its public half before either starts.
    let recommend_key =
        std::path::absolute(args.dir.join("recommend.key")).context("resolving the key path")?;
    let hub_public_key = hub::optimize::load_or_create_key(&recommend_key)?
        .public()
        .to_text();
    let hub_toml = format!(
        "schema_version = 1\n[storage]\npath = {:?}\n[broker]\nmode = \"embedded\"\nlisten = \"{}\"\n\
         [ingest]\nstatus_log_interval = \"60s\"\n[[node]]\nsite = \"demo-refinery\"\nnode = \"cdu-edge-1\"\n\
         key_file = {:?}\npassword_file = {:?}\n[web]\nlisten = \"{}\"\nusers_file = {:?}\n\
         [[report]]\nname = \"demo-hourly\"\nsite = \"demo-refinery\"\nperiod = \"1h\"\nevery = \"10m\"\n{}",
        hub_db.display().to_string(),
        args.mqtt,
        key_file.display().to_string(),
        pass_file.display().to_string(),
        args.web,
        hub_users_file.display().to_string(),
        apos::demo::optimization_config(&recommend_key)
    );
    // The hub's analysts: new random passwords at every start, never a
    // fixed default (created before the hub opens the file).
    let hub_users = apos::demo::hub_users(&hub_users_file)?;
    let hub_config_path = args.dir.join("hub.toml");
    std::fs::write(&hub_config_path, &hub_toml)
        .with_context(|| format!("writing {}", hub_config_path.display()))?;
    let hub_cfg = hub::config::load(&hub_config_path)?;
    let hub_cancel = CancellationToken::new();
    let hub = hub::Hub::start(hub_cfg, hub_cancel.clone())
        .await
        .with_context(|| {
            format!(
                "starting the hub (MQTT on {}, web on {})",
                args.mqtt, args.web
            )
        })?;

    let toml = toml
        + &format!(
            "\n[sync]\nbroker = \"mqtt://{}\"\nuser = \"demo-refinery.cdu-edge-1\"\npassword_file = {:?}\nkey_file = {:?}\n",
            args.mqtt,
            pass_file.display().to_string(),
            key_file.display().to_string()
        );
    // The demo's forecasting model (trained on simulator history at the
    // default ×10 time scale: models/train, docs/models.md), unpacked next to
    // the generated configuration.
    let model_dir = args.dir.join("models/plant-heater-fuel");
    std::fs::create_dir_all(&model_dir)
        .with_context(|| format!("creating {}", model_dir.display()))?;
    for (name, bytes) in [
        (
            "manifest.toml",
            &include_bytes!("../models/assets/plant-heater-fuel/manifest.toml")[..],
        ),
        (
            "model.onnx",
            &include_bytes!("../models/assets/plant-heater-fuel/model.onnx")[..],
        ),
    ] {
        std::fs::write(model_dir.join(name), bytes)
            .with_context(|| format!("writing {}", model_dir.join(name).display()))?;
    }
    let toml = toml
        + &format!(
            "\n[forecast]\nmodels_dir = {:?}\ninterval = \"5s\"\nmax_hold = \"1m\"\ncheck_every = \"5s\"\n",
            std::path::absolute(args.dir.join("models"))
                .context("resolving the models directory")?
                .display()
                .to_string()
        );
    let toml = toml + &apos::demo::kpi_config(args.time_scale);
    let toml = toml + &apos::demo::setpoints_config(&hub_public_key);
    let users_file =
        std::path::absolute(args.dir.join("users.db")).context("resolving the users path")?;
    let toml = toml
        + &format!(
            "\n[hmi]\nlisten = \"{}\"\nusers_file = {:?}\n",
            args.hmi,
            users_file.display().to_string()
        );
    std::fs::write(&config_path, toml)
        .with_context(|| format!("writing {}", config_path.display()))?;
    // The demo's HMI users: new random passwords at every start, never a
    // fixed default.
    let demo_users = apos::demo::hmi_users(&users_file)?;

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
    println!(
        "  hub: MQTT broker {}; fleet store (DuckDB) {}; 10 s and 1 min windows are synced",
        args.mqtt,
        hub_db.display()
    );
    println!(
        "  forecast: heater.fuel_gas_flow 2 min ahead (model {}; first after 2 min of history){}",
        model_dir.display(),
        if (args.time_scale - 10.0).abs() > 1e-9 {
            " — trained at --time-scale 10, so off at other scales"
        } else {
            ""
        }
    );
    println!(
        "  KPIs: OEE, throughput, specific energy (5 min and current shift) and heater efficiency, computed on the edge and sent to the hub"
    );
    if let Some(h) = &edge.hmi {
        println!("  operator HMI:                 {}", h.url());
        for (user, role, password) in &demo_users {
            println!("    log in as {user:<10} ({role:<8}) password {password}");
        }
    }
    if let Some(url) = hub.web_url() {
        println!(
            "  hub dashboards and API:       {url}   (live updates, /metrics, /api/v1/openapi.json)"
        );
        for (user, role, password) in &hub_users {
            println!("    log in as {user:<10} ({role:<8}) password {password}");
        }
    }
    println!("  edge configuration:           {}", config_path.display());
    println!("  local history (SQLite):       {}", history_path.display());
    println!(
        "  trend from the CLI:           cargo run -p edge-node -- history --config {} --tag heater.outlet_temp --since 10m",
        config_path.display()
    );
    if let Some(url) = hub.web_url() {
        println!(
            "  insights and reports:         {url}#/insights?range=1h   {url}#/reports{}",
            if args.no_staged_trip {
                String::new()
            } else {
                format!(
                    "   (a heater trip is staged {} after the start, reset {} later: --no-staged-trip leaves it out)",
                    humantime::format_duration(apos::demo::STAGED_TRIP_AFTER),
                    humantime::format_duration(apos::demo::STAGED_TRIP_FOR)
                )
            }
        );
    }
    if let (Some(url), Some(h)) = (hub.web_url(), &edge.hmi) {
        println!(
            "  setpoint optimization:        {url}#/optimization (cdu-margin every 5 min, or Run now as analyst) → approve on {}#/approvals as operator",
            h.url()
        );
    }
    println!(
        "  live values are logged below every {}; Ctrl-C stops.",
        humantime::format_duration(args.print_every)
    );
    println!();

    if !args.no_staged_trip {
        tokio::spawn(apos::demo::staged_trip(plant.clone(), plant_cancel.clone()));
    }
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
    hub_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), hub.join()).await;
    plant_cancel.cancel();
    Ok(())
}

/// 32 random hex characters from the OS (via std's randomly keyed hasher).
fn random_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..2u64)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}
