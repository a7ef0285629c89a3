//! `apos-hub`: the central hub.
//!
//! ```text
//! apos-hub run --config /etc/apos-hub/hub.toml
//! apos-hub validate --config /etc/apos-hub/hub.toml
//! apos-hub nodes --db /var/lib/apos-hub/fleet.duckdb      # fleet registry and gaps
//! apos-hub checksum --db … --site S --node N              # what the fault tests compare
//! apos-hub decode --topic T --key-file K < payload        # human-readable view of a message
//! apos-hub user add NAME --role admin [--password-stdin]  # web users (no default user)
//! apos-hub token create --user U --name grafana --role viewer --days 90
//! apos-hub audit verify                                   # the audit log's hash chain
//! ```

mod admin_cli;

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
    /// Web application users: add, passwd, role, list, remove.
    #[command(subcommand)]
    User(admin_cli::UserCommand),
    /// API tokens: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(admin_cli::TokenCommand),
    /// The audit log: verify its hash chain, list entries.
    #[command(subcommand)]
    Audit(admin_cli::AuditCommand),
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
            admin_cli::audit_config_change(&config, &cfg)
                .context("recording the configuration in the audit log")?;
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
            print!("{}", ask_or_open(&db, hub::control::Request::Nodes)?);
            Ok(())
        }
        Command::Checksum { db, site, node } => {
            print!(
                "{}",
                ask_or_open(&db, hub::control::Request::Checksum { site, node })?
            );
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
        Command::User(cmd) => admin_cli::user(cmd),
        Command::Token(cmd) => admin_cli::token(cmd),
        Command::Audit(cmd) => admin_cli::audit_cmd(cmd),
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

/// Ask the running hub over its control socket; with no hub answering,
/// open the file (the hub's lock is free then). The same text either way.
fn ask_or_open(db: &std::path::Path, req: hub::control::Request) -> anyhow::Result<String> {
    let socket = hub::control::socket_path(db);
    match hub::control::ask(&socket, &req) {
        Ok(text) => Ok(text),
        Err(hub::control::ControlError::NoHub { source: asked, .. }) => {
            let store = hub::store::Store::open(db).map_err(|e| {
                anyhow::anyhow!(
                    "no running hub answers on {} ({asked}), and the database cannot be opened: {e}",
                    socket.display()
                )
            })?;
            Ok(req.answer(&store, db)?)
        }
        Err(e) => Err(e.into()),
    }
}
