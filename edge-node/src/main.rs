//! `apos-edge`: the edge node binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "apos-edge",
    version,
    about = "APOS edge node: PLC collection, local history, HMI, hub sync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge node.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
        /// Log format: "text" for people, "json" for log shippers.
        #[arg(long, default_value = "text")]
        log_format: String,
    },
    /// Check a configuration file and list every problem found.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show a tag's recent history from the local database (trend summary).
    History {
        #[arg(long, short)]
        config: PathBuf,
        /// Tag name.
        #[arg(long)]
        tag: String,
        /// How far back, e.g. "15m", "2h", "7d".
        #[arg(long, default_value = "1h")]
        since: String,
        /// Number of buckets (min/max/avg each).
        #[arg(long, default_value_t = 12)]
        buckets: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Run { config, log_format } => {
            edge_node::logging::init(&log_format);
            report(run(config))
        }
        Command::History {
            config,
            tag,
            since,
            buckets,
        } => report(history(config, &tag, &since, buckets)),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match firmware_config::load(path) {
        Ok(cfg) => {
            println!("{}", edge_node::summary(&cfg));
            ExitCode::SUCCESS
        }
        Err(firmware_config::ConfigError::Invalid(d)) => {
            eprintln!("{d}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(config: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("apos-edge")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let edge = edge_node::Edge::start(&config, cancel.clone())
            .await
            .with_context(|| format!("starting with {}", config.display()))?;
        shutdown_signal().await;
        tracing::info!("shutting down: flushing history");
        cancel.cancel();
        edge.join(Duration::from_secs(10)).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn history(config: PathBuf, tag: &str, since: &str, buckets: u32) -> anyhow::Result<()> {
    let cfg = firmware_config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let since =
        humantime::parse_duration(since).with_context(|| format!("invalid --since {since:?}"))?;
    let text = edge_node::history_report(&cfg, tag, since, buckets)?;
    print!("{text}");
    Ok(())
}
