//! `apos-hub`: the central hub.
//!
//! ```text
//! apos-hub run --config /etc/apos/hub.toml
//! apos-hub validate --config /etc/apos/hub.toml
//! apos-hub nodes --db /var/lib/apos/hub/fleet.duckdb      # fleet registry and gaps
//! apos-hub checksum --db … --site S --node N              # what the fault tests compare
//! apos-hub decode --topic T --key-file K < payload        # human-readable view of a message
//! apos-hub user add NAME --role admin [--password-stdin]  # web users (no default user)
//! apos-hub token create --user U --name grafana --role viewer --days 90
//! apos-hub audit verify                                   # the audit log's hash chain
//! ```

mod admin_cli;
mod export_cli;
mod import_cli;
mod optimize_cli;
mod report_cli;
mod sql_cli;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The configuration file the commands read by default (the package's
/// conffile).
const CONFIG: &str = "/etc/apos/hub.toml";
/// The fleet database at the configuration's default `[storage] path`.
const FLEET_DB: &str = "/var/lib/apos/hub/fleet.duckdb";
/// How long shutdown waits for the ingest to commit what it holds.
const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// How often `systemctl status` gets a fresh STATUS line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "apos-hub",
    version,
    about = "APOS hub: broker, ingest into DuckDB, fleet registry",
    long_about = "APOS hub: receives the edges' signed batches over MQTT (embedded broker or \
                  an external one), stores them in DuckDB, keeps the fleet registry and serves \
                  the analysts' web application. Commands read /etc/apos/hub.toml unless \
                  --config says otherwise."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub until SIGINT/SIGTERM (SIGHUP is logged and ignored: the
    /// hub re-reads nothing; restart it to apply a changed configuration).
    /// Under systemd it reports readiness and feeds the watchdog
    /// (Type=notify) and logs to the journal with structured fields.
    Run {
        /// Configuration file.
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0 valid, 1 invalid, 2 unreadable).
    Validate {
        /// Configuration file.
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Print the fleet registry: nodes, last seen, backlog, gaps (asks the
    /// running hub, else opens the database).
    Nodes {
        /// The fleet database (`[storage] path`).
        #[arg(long, default_value = FLEET_DB)]
        db: PathBuf,
    },
    /// Print the window count and checksum of one node's stored aggregates.
    Checksum {
        /// The fleet database (`[storage] path`).
        #[arg(long, default_value = FLEET_DB)]
        db: PathBuf,
        /// The node's site id.
        #[arg(long)]
        site: String,
        /// The node's id.
        #[arg(long)]
        node: String,
    },
    /// Verify and print a message read from stdin as JSON.
    Decode {
        /// The MQTT topic it was published on, e.g. apos/v1/SITE/NODE/batch.
        #[arg(long)]
        topic: String,
        /// File holding the node's signing key.
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
    /// Import a historian export (CSV or .xlsx) with a saved or given
    /// column mapping; prints progress and a validation report.
    Import(import_cli::Args),
    /// Export windows, KPIs, forecasts or alarms as CSV or Parquet.
    Export(export_cli::Args),
    /// Run a read-only SQL query in the locked-down worker process.
    Sql(sql_cli::Args),
    /// Site reports: make one now, list the stored ones.
    Report(report_cli::Args),
    /// The LP solver: `optimize mps FILE` solves an MPS file and prints
    /// its status and optimal objective.
    Optimize(optimize_cli::Args),
    /// Write the manual pages (one per command) into a directory.
    #[command(hide = true)]
    Man {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
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
            let filter = hub::log_filter();
            if !web::journal::init_if_connected(&filter) {
                tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                    .init();
            }
            let cfg = hub::config::load(&config)?;
            admin_cli::audit_config_change(&config, &cfg)
                .context("recording the configuration in the audit log")?;
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            rt.block_on(async move {
                // SIGHUP's default action ends the process, and a habit
                // (or a unit copied from the edge's) may send it.
                ignore_sighup()?;
                let notifier = web::systemd::Notifier::from_env();
                let cancel = CancellationToken::new();
                let status_every = cfg.status_log_interval;
                let hub = hub::Hub::start(cfg, cancel.clone()).await?;
                tracing::info!("apos-hub running");
                // Hub::start returned: store open, gate, web and control
                // socket bound.
                notifier.ready(&status_line(&hub));
                let stop_pings = CancellationToken::new();
                let _watchdog =
                    notifier.spawn_watchdog(hub.heartbeats().clone(), stop_pings.clone());
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
                let shutdown = shutdown_signal();
                tokio::pin!(shutdown);
                let mut status = tokio::time::interval(STATUS_EVERY);
                status.tick().await;
                let failure = loop {
                    tokio::select! {
                        () = &mut shutdown => break None,
                        why = hub.failed() => break Some(why),
                        _ = status.tick(), if notifier.is_active() => {
                            notifier.status(&status_line(&hub));
                        }
                    }
                };
                match &failure {
                    None => tracing::info!("shutting down"),
                    Some(why) => tracing::error!(
                        "{why}: the hub cannot do its work; stopping so that the service manager restarts it"
                    ),
                }
                stop_pings.cancel();
                notifier.stopping(
                    "stopping: committing what the ingest holds",
                    FLUSH_WAIT + Duration::from_secs(10),
                );
                cancel.cancel();
                let _ = tokio::time::timeout(FLUSH_WAIT, hub.join()).await;
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
        Command::Import(args) => import_cli::run(args),
        Command::Export(args) => export_cli::run(args),
        Command::Sql(args) => sql_cli::run(args),
        Command::Report(args) => report_cli::run(args),
        Command::Optimize(args) => optimize_cli::run(args),
        Command::Man { out } => {
            let written = web::man::write_pages(Cli::command(), &out)
                .with_context(|| format!("writing manual pages into {}", out.display()))?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
        Command::Validate { .. } => Ok(()),
    }
}

/// Log SIGHUP instead of dying of it: the hub re-reads nothing.
fn ignore_sighup() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::warn!(
                "SIGHUP received: apos-hub re-reads nothing on SIGHUP and keeps running; restart it to apply a changed configuration"
            );
        }
    });
    Ok(())
}

/// The STATUS line `systemctl status apos-hub` shows. The counters are
/// process-wide (one hub per process outside tests).
fn status_line(hub: &hub::Hub) -> String {
    let m = hub::metrics::snapshot();
    format!(
        "ingest {}, {} batches stored ({} duplicates), {} quarantined, {} commit errors",
        if hub.is_ready() {
            "subscribed"
        } else {
            "connecting to the broker"
        },
        m.batches_new,
        m.batches_duplicate,
        m.batches_quarantined,
        m.commit_errors
    )
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` explains every subcommand and argument, and clap's own
    /// consistency checks pass.
    #[test]
    fn help_is_complete() {
        super::Cli::command().debug_assert();
        assert_eq!(
            web::man::undocumented(&super::Cli::command()),
            Vec::<String>::new()
        );
    }
}
