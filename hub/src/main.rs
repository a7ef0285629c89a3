//! `apos-hub`: the central hub.
//!
//! ```text
//! apos-hub run --config /etc/apos-hub/hub.toml
//! apos-hub validate --config /etc/apos-hub/hub.toml
//! apos-hub nodes --db /var/lib/apos-hub/fleet.duckdb      # fleet registry and gaps
//! apos-hub checksum --db … --site S --node N              # what the fault tests compare
//! apos-hub decode --topic T --key-file K < payload        # human-readable view of a message
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "apos-hub",
    version,
    about = "APOS hub: broker, ingest into DuckDB, fleet registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub until SIGINT/SIGTERM.
    Run {
        #[arg(long, default_value = "/etc/apos-hub/hub.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0 valid, 1 invalid, 2 unreadable).
    Validate {
        #[arg(long, default_value = "/etc/apos-hub/hub.toml")]
        config: PathBuf,
    },
    /// Print the fleet registry: nodes, last seen, backlog, gaps.
    Nodes {
        #[arg(long)]
        db: PathBuf,
    },
    /// Print the window count and checksum of one node's stored aggregates.
    Checksum {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        site: String,
        #[arg(long)]
        node: String,
    },
    /// Verify and print a message read from stdin as JSON.
    Decode {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        key_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match hub::config::load(&config) {
            Ok(cfg) => {
                println!(
                    "OK {}: {} node{}, broker {}, store {}",
                    config.display(),
                    cfg.nodes.len(),
                    if cfg.nodes.len() == 1 { "" } else { "s" },
                    match &cfg.broker {
                        hub::Broker::Embedded { listen, tls } => format!(
                            "embedded on {listen}{}",
                            if tls.is_some() { " (TLS)" } else { "" }
                        ),
                        hub::Broker::External {
                            host, port, tls, ..
                        } => format!(
                            "external mqtt{}://{host}:{port}",
                            if *tls { "s" } else { "" }
                        ),
                    },
                    cfg.storage_path.display()
                );
                ExitCode::SUCCESS
            }
            Err(hub::config::ConfigError::Read { path, source }) => {
                eprintln!("error: cannot read {path}: {source}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        other => match run(other) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run { config } => {
            hub::files::private_files();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(hub::log_filter()))
                .init();
            let cfg = hub::config::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            rt.block_on(async move {
                let cancel = CancellationToken::new();
                let status_every = cfg.status_log_interval;
                let hub = hub::Hub::start(cfg, cancel.clone()).await?;
                tracing::info!("apos-hub running");
                let c = cancel.clone();
                tokio::spawn(async move {
                    let mut t = tokio::time::interval(status_every);
                    t.tick().await;
                    loop {
                        tokio::select! {
                            _ = c.cancelled() => break,
                            _ = t.tick() => {
                                let m = hub::metrics::snapshot();
                                tracing::info!(?m, "hub status");
                            }
                        }
                    }
                });
                let mut hub = hub;
                let failure = tokio::select! {
                    () = shutdown_signal() => None,
                    why = hub.failed() => Some(why),
                };
                match &failure {
                    None => tracing::info!("shutting down"),
                    Some(why) => tracing::error!(
                        "{why}: the hub cannot do its work; stopping so that the service manager restarts it"
                    ),
                }
                cancel.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), hub.join()).await;
                match failure {
                    None => anyhow::Ok(()),
                    Some(why) => Err(anyhow::anyhow!(why)),
                }
            })
        }
        Command::Nodes { db } => {
            let store = hub::store::Store::open(&db)?;
            let nodes = store.nodes()?;
            if nodes.is_empty() {
                println!("no node has delivered anything to {} yet", db.display());
            }
            for n in nodes {
                let gaps = store.gaps(&n.site, &n.node, 20)?;
                println!("{}/{}", n.site, n.node);
                println!(
                    "  software      {}",
                    n.software_version
                        .as_deref()
                        .unwrap_or("(no status received)")
                );
                println!("  first seen    {}", utc(n.first_seen_ms));
                println!("  last seen     {}", utc(n.last_seen_ms));
                println!(
                    "  batches       {} stored, highest seq {}, {} missing below it{}",
                    n.batches,
                    n.max_seq,
                    n.missing,
                    if gaps.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (first: {})",
                            gaps.iter()
                                .map(|g| if g.first == g.last {
                                    g.first.to_string()
                                } else {
                                    format!("{}–{}", g.first, g.last)
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
                let (events, active) = store.alarms(&n.site, &n.node)?;
                if events > 0 {
                    println!(
                        "  alarms        {events} journal entries; {} not normal{}",
                        active.len(),
                        if active.is_empty() { "" } else { ":" }
                    );
                    for (alarm, state, priority, since) in active.iter().take(20) {
                        println!(
                            "                P{priority} {alarm}: {state} since {}",
                            utc(*since)
                        );
                    }
                }
                let (lost, spans) = store.lost_spans(&n.site, &n.node, 10)?;
                if lost > 0 {
                    println!(
                        "  lost windows  {lost} spans the edge reports it never recorded (newest first):"
                    );
                    for (width, from, to, reason) in spans {
                        println!(
                            "                {} windows {} – {} ({}): {reason}",
                            humantime::format_duration(std::time::Duration::from_millis(
                                u64::from(width)
                            )),
                            utc(from),
                            utc(to),
                            humantime::format_duration(std::time::Duration::from_millis(
                                u64::try_from(to - from).unwrap_or(0)
                            )),
                        );
                    }
                }
                if n.quarantined > 0 {
                    println!(
                        "  quarantine    {} batches kept but not stored (signed, with values no store can hold):",
                        n.quarantined
                    );
                    for (seq, received, reason) in
                        store.quarantined(&n.site, &n.node)?.iter().take(10)
                    {
                        println!(
                            "                seq {seq}, received {}: {reason}",
                            utc(*received)
                        );
                    }
                }
                let (forecasts, newest) = store.forecasts(&n.site, &n.node)?;
                match newest {
                    Some((model, origin, values)) => println!(
                        "  forecasts     {forecasts} stored; newest: {model} from {}: {}",
                        utc(origin),
                        values.chars().take(80).collect::<String>()
                    ),
                    None => println!("  forecasts     none"),
                }
                let kpis = store.kpis(&n.site, &n.node)?;
                if kpis.is_empty() {
                    println!("  kpis          none");
                }
                // The current (newest) window of each KPI and window kind.
                let mut shown = std::collections::BTreeSet::new();
                for k in kpis {
                    if !shown.insert((k.kpi.clone(), k.window.clone())) {
                        continue;
                    }
                    println!(
                        "  kpi           {} [{}{}] {} ({}, coverage {:.1} %{})",
                        k.kpi,
                        k.window,
                        if k.label.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", k.label)
                        },
                        k.value.map_or("—".into(), |v| format!("{v:.4}")),
                        k.quality,
                        k.coverage * 100.0,
                        if k.closed { ", final" } else { "" }
                    );
                }
                println!(
                    "  edge outbox   {} batches waiting, oldest {}, {} dropped at the edge (reported)",
                    n.outbox_batches.map_or("?".into(), |b| b.to_string()),
                    n.oldest_unacked_ms.map_or("-".into(), utc),
                    n.dropped_batches.map_or("?".into(), |b| b.to_string()),
                );
            }
            Ok(())
        }
        Command::Checksum { db, site, node } => {
            let store = hub::store::Store::open(&db)?;
            let c = store.checksum(&site, &node)?;
            println!("windows={} sum={:016x}", c.windows, c.sum);
            Ok(())
        }
        Command::Decode { topic, key_file } => {
            let t = protocol::Topic::parse(&topic)?;
            let key_text = std::fs::read_to_string(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            let key = protocol::NodeKey::new(key_text.trim_end_matches(['\r', '\n']).as_bytes())
                .context("the key is shorter than 16 bytes")?;
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            let msg = protocol::envelope::open(&t, &bytes, &key, usize::MAX)?;
            println!("{}", msg.to_json());
            Ok(())
        }
        Command::Validate { .. } => Ok(()),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A timestamp for people; one that RFC 3339 cannot write (before 1970 or
/// from the year 10,000: humantime panics there) as plain milliseconds.
fn utc(ms: i64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    match u64::try_from(ms) {
        Ok(ms) if ms < YEAR_10000_MS => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        _ => format!("{ms} ms since 1970"),
    }
}
