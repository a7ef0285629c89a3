//! `apos-edge`: the edge node binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod admin_cli;

/// The configuration file the commands read by default (the package's
/// conffile).
const CONFIG: &str = "/etc/apos/edge.toml";

#[derive(Debug, Parser)]
#[command(
    name = "apos-edge",
    version,
    about = "APOS edge node: PLC collection, local history, HMI, hub sync",
    long_about = "APOS edge node: collects PLC tags (Modbus TCP/RTU, OPC UA) into a local \
                  SQLite history, computes KPIs, forecasts and alarms, serves the operator HMI \
                  and syncs aggregated windows to the hub. Every command reads \
                  /etc/apos/edge.toml unless --config says otherwise."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge node until SIGTERM or SIGINT (SIGHUP reloads the
    /// configuration). Under systemd it reports readiness and feeds the
    /// watchdog (Type=notify) and logs to the journal with structured fields.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = CONFIG)]
        config: PathBuf,
        /// Log format on stderr: "text" for people, "json" for log shippers.
        /// When stderr is the systemd journal, entries go to the journal
        /// natively (fields as journal fields) whatever this says.
        #[arg(long, default_value = "text")]
        log_format: String,
    },
    /// Check a configuration file and list every problem found (exit 0
    /// valid, 1 invalid, 2 unreadable).
    Validate {
        /// Configuration file.
        #[arg(long, short, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Show a tag's recent history from the local database (trend summary).
    History {
        /// Configuration file (names the history database).
        #[arg(long, short, default_value = CONFIG)]
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
    /// OPC UA tools: browse a server, trust its certificate.
    #[command(subcommand)]
    Opcua(OpcuaCommand),
    /// Forecasting models: list them, explain a forecast.
    #[command(subcommand)]
    Forecast(ForecastCommand),
    /// KPI values stored by the KPI engine: the current window of every
    /// KPI and the last closed ones.
    Kpi {
        /// Configuration file (names the history database).
        #[arg(long, short, default_value = CONFIG)]
        config: PathBuf,
        /// Closed windows to show per KPI and window kind.
        #[arg(long, default_value_t = 3)]
        closed: usize,
    },
    /// Local HMI users: add, passwd, role, list, remove.
    #[command(subcommand)]
    User(admin_cli::UserCommand),
    /// The audit log: verify its hash chain, list entries.
    #[command(subcommand)]
    Audit(admin_cli::AuditCommand),
    /// Write the manual pages (one per command) into a directory.
    #[command(hide = true)]
    Man {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ForecastCommand {
    /// List the models in `[forecast] models_dir`, with what a load says.
    List {
        /// Configuration file (its [forecast] models_dir).
        #[arg(long, short, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Explain the forecast a model would make now from the local history:
    /// the features that move it most (exact for linear models).
    Explain {
        /// Configuration file (its [forecast] section and history database).
        #[arg(long, short, default_value = CONFIG)]
        config: PathBuf,
        /// Model name (its manifest's `name`).
        #[arg(long)]
        model: String,
        /// Forecast step to explain (0 = the first).
        #[arg(long, default_value_t = 0)]
        step: usize,
        /// How many features to show.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

/// The OPC UA PKI directory when neither the command line nor the
/// configuration names one (firmware-config's default `pki_dir`).
const PKI_DIR: &str = "/var/lib/apos/edge/pki";

#[derive(Debug, Subcommand)]
// Parsed once from the command line; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum OpcuaCommand {
    /// Walk a server's address space; print a tree or write a tag-list CSV
    /// for `[[import]]`.
    Browse {
        /// Endpoint URL, e.g. opc.tcp://10.0.0.5:4840
        #[arg(long)]
        endpoint: String,
        /// None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss.
        #[arg(long, default_value = "Basic256Sha256")]
        security_policy: String,
        /// None, Sign or SignAndEncrypt (default: SignAndEncrypt unless the policy is None).
        #[arg(long)]
        security_mode: Option<String>,
        /// User name for a user-name identity (default: anonymous).
        #[arg(long)]
        user: Option<String>,
        /// File holding the password (never pass passwords on the command line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// PKI directory (client certificate, trusted/ and rejected/ server
        /// certificates). Default: the first OPC UA device's `pki_dir` in
        /// --config, else /var/lib/apos/edge/pki.
        #[arg(long)]
        pki_dir: Option<PathBuf>,
        /// The edge node's configuration: browse as this node (its site and
        /// node id make the certificate's application URI, the same as
        /// `run`). Without it, browse uses the certificate already in the
        /// PKI directory and never replaces it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start node (default: the Objects folder), e.g. "nsu=urn:plant;s=Line1".
        /// Tag names in the CSV then start with this node's name.
        #[arg(long)]
        start: Option<String>,
        /// How many levels below the start node to walk.
        #[arg(long, default_value_t = 6)]
        depth: usize,
        /// Write a tag-list CSV here instead of printing the tree.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Device name for the CSV's `device` column.
        #[arg(long, default_value = "opcua")]
        device: String,
        /// Also put array variables in the CSV (stored as JSON text).
        #[arg(long)]
        arrays: bool,
    },
    /// Trust a server certificate that the client rejected (moves it from
    /// rejected/ to trusted/ in the PKI directory). Lists them without --name.
    Trust {
        /// PKI directory (the one of the OPC UA device, `pki_dir`).
        #[arg(long, default_value = PKI_DIR)]
        pki_dir: PathBuf,
        /// File name (or unique part of it) of the certificate in rejected/.
        #[arg(long)]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    edge_node::memory::limit_malloc_arenas(2);
    edge_node::files::private_files();
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
        Command::Opcua(cmd) => report(opcua(cmd)),
        Command::Forecast(cmd) => report(forecast(cmd)),
        Command::Kpi { config, closed } => report(kpi(&config, closed)),
        Command::User(cmd) => report(admin_cli::user(cmd)),
        Command::Audit(cmd) => report(admin_cli::audit_cmd(cmd)),
        Command::Man { out } => report(man(&out)),
    }
}

fn man(out: &std::path::Path) -> anyhow::Result<()> {
    let written = web::man::write_pages(Cli::command(), out)
        .with_context(|| format!("writing manual pages into {}", out.display()))?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
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

/// How long shutdown waits for the pipeline to drain and the history to
/// commit before giving up.
const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// How often `systemctl status` gets a fresh STATUS line.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn run(config: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("apos-edge")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // SIGHUP's default action ends the process, and `systemctl reload`
        // may send it as soon as READY=1 is out: take the signal over now.
        // (The reload listener is spawned inside the node; tokio never
        // gives a signal back to its default action.)
        let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        let notifier = web::systemd::Notifier::from_env();
        let cancel = CancellationToken::new();
        let edge = edge_node::Edge::start(&config, cancel.clone())
            .await
            .with_context(|| format!("starting with {}", config.display()))?;
        // Edge::start returned: configuration valid, history open, HMI bound.
        notifier.ready(&status_line(&edge).await);
        let stop_pings = CancellationToken::new();
        let _watchdog = notifier.spawn_watchdog(edge.heartbeats.clone(), stop_pings.clone());
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.tick().await;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = status.tick(), if notifier.is_active() => {
                    notifier.status(&status_line(&edge).await);
                }
            }
        }
        tracing::info!("shutting down: flushing history");
        // No pings once stopping (systemd no longer expects them); the stop
        // timeout is extended past the flush wait instead.
        stop_pings.cancel();
        notifier.stopping(
            "stopping: flushing history",
            FLUSH_WAIT + Duration::from_secs(10),
        );
        cancel.cancel();
        edge.join(FLUSH_WAIT).await;
        Ok(())
    })
}

/// The STATUS line `systemctl status apos-edge` shows.
async fn status_line(edge: &edge_node::Edge) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let cfg = edge.config();
    let drivers = edge.driver_status().await;
    let up = drivers.iter().filter(|d| d.connected).count();
    let h = edge.history_stats.snapshot();
    let mut s = format!(
        "collecting from {} device{} ({up} of {} links answering), {} samples stored",
        cfg.devices.len(),
        if cfg.devices.len() == 1 { "" } else { "s" },
        drivers.len(),
        h.written
    );
    if cfg.sync.is_some() {
        s += &format!(
            ", outbox {}{}",
            edge.sync_stats.depth.load(Relaxed),
            if edge.sync_stats.connected.load(Relaxed) {
                ""
            } else {
                " (hub not connected)"
            }
        );
    }
    if h.store_failing == 1 {
        s += ", HISTORY WRITES FAILING";
    }
    s
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

fn kpi(config: &std::path::Path, closed: usize) -> anyhow::Result<()> {
    let cfg = firmware_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg.kpi.is_none() {
        println!("{} defines no [[kpi]]", config.display());
    }
    let conn = rusqlite::Connection::open_with_flags(
        &cfg.storage.path,
        // Read-write without CREATE: a read-only connection cannot open a WAL database.
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )
    .with_context(|| format!("opening {}", cfg.storage.path.display()))?;
    let rows = edge_node::kpi::stored(&conn, closed)
        .with_context(|| format!("reading KPIs from {}", cfg.storage.path.display()))?;
    if rows.is_empty() {
        println!("no KPI values stored yet");
    }
    for r in rows {
        // A Bad value (too little known, or no number) is not a figure to
        // read at a glance: say so instead of printing it.
        let value = match r.value {
            _ if r.quality == "bad" => "no reliable value".to_string(),
            None => "—".to_string(),
            Some(v) => format!("{v:.4}"),
        };
        let span = format!(
            "{} – {}",
            utc(r.start_ms),
            utc(if r.closed { r.end_ms } else { r.until_ms })
        );
        println!(
            "{:<24} {:<6} {:<22} {value:>17}  {:<9} coverage {:>5.1} %{}\n    {span}\n    {}",
            r.kpi,
            r.window,
            if r.label.is_empty() {
                "(rolling)"
            } else {
                &r.label
            },
            r.quality,
            r.coverage * 100.0,
            if r.closed {
                "  closed"
            } else {
                "  (current, so far)"
            },
            r.figures,
        );
    }
    Ok(())
}

/// Unix ms as UTC, to the second.
fn utc(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
    )
    .to_string()
}

fn forecast(cmd: ForecastCommand) -> anyhow::Result<()> {
    use edge_node::forecast::{ForecastStats, Models, Watch, explain_now, refresh};
    let config = match &cmd {
        ForecastCommand::List { config } | ForecastCommand::Explain { config, .. } => config,
    };
    let cfg = firmware_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fc = cfg
        .forecast
        .as_ref()
        .with_context(|| format!("{} has no [forecast] section", config.display()))?;
    let models = Models::default();
    let events = refresh(
        &fc.models_dir,
        &models,
        &mut Watch::default(),
        &ForecastStats::default(),
    );
    match cmd {
        ForecastCommand::List { .. } => {
            if events.is_empty() {
                println!("no model in {}", fc.models_dir.display());
            }
            for e in events {
                println!("{e}");
            }
        }
        ForecastCommand::Explain {
            model, step, top, ..
        } => {
            let f = models.get(&model).with_context(|| {
                format!(
                    "no model named {model:?} loaded from {} (see `apos-edge forecast list`)",
                    fc.models_dir.display()
                )
            })?;
            anyhow::ensure!(
                step < f.manifest.horizon,
                "--step {step}: the model forecasts {} steps",
                f.manifest.horizon
            );
            let reader = edge_node::history::HistoryReader::open(&cfg.storage.path)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let (origin, e) = explain_now(&reader, &f, now, fc.max_hold, fc.explain_max_features)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let at = origin + step as i64 * f.manifest.output_step.as_millis() as i64;
            println!(
                "{} {} forecast of {} for {}: {:.4} (baseline {:.4}; method: {})",
                f.manifest.name,
                f.manifest.version,
                f.manifest.target,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64)
                ),
                e.forecast[step],
                e.baseline[step],
                e.method
            );
            let mut c: Vec<&(String, Vec<f64>)> = e.contributions.iter().collect();
            c.sort_by(|a, b| b.1[step].abs().total_cmp(&a.1[step].abs()));
            for (name, v) in c.into_iter().take(top) {
                println!("  {:>+12.4}  {name}", v[step]);
            }
        }
    }
    Ok(())
}

fn opcua(cmd: OpcuaCommand) -> anyhow::Result<()> {
    match cmd {
        OpcuaCommand::Trust { pki_dir, name } => {
            let rejected = drivers::opcua::pki::rejected(&pki_dir)
                .with_context(|| format!("reading {}", pki_dir.join("rejected").display()))?;
            let Some(name) = name else {
                if rejected.is_empty() {
                    println!(
                        "no rejected certificates in {}",
                        pki_dir.join("rejected").display()
                    );
                }
                for c in &rejected {
                    println!("{}", c.name);
                }
                return Ok(());
            };
            let matching: Vec<_> = rejected.iter().filter(|c| c.name.contains(&name)).collect();
            match matching.as_slice() {
                [one] => {
                    let to = drivers::opcua::pki::trust(&pki_dir, one)?;
                    println!("trusted: {}", to.display());
                    Ok(())
                }
                [] => anyhow::bail!(
                    "no rejected certificate matches {name:?}; run without --name to list them"
                ),
                _ => anyhow::bail!(
                    "{} certificates match {name:?}; give more of the name",
                    matching.len()
                ),
            }
        }
        OpcuaCommand::Browse {
            endpoint,
            security_policy,
            security_mode,
            user,
            password_file,
            pki_dir,
            config,
            start,
            depth,
            csv,
            device,
            arrays,
        } => {
            // One identity per PKI: the node's own (from its configuration),
            // or whatever certificate the PKI already holds.
            let node_cfg = config
                .as_deref()
                .map(|c| firmware_config::load(c).map_err(|e| anyhow::anyhow!("{e}")))
                .transpose()?;
            let pki_dir = pki_dir
                .or_else(|| {
                    node_cfg
                        .as_ref()?
                        .devices
                        .iter()
                        .find_map(|d| match &d.transport {
                            firmware_config::Transport::OpcUa(ep) => Some(ep.pki_dir.clone()),
                            _ => None,
                        })
                })
                .unwrap_or_else(|| PathBuf::from(PKI_DIR));
            let identity = match &node_cfg {
                Some(c) => {
                    drivers::opcua::pki::OwnIdentity::of_node(&c.node.site_id, &c.node.node_id)
                }
                None => match drivers::opcua::pki::existing_identity(&pki_dir) {
                    Some(id) => id,
                    None => {
                        eprintln!(
                            "note: {} holds no certificate yet and no --config was given: browsing as \
                             urn:apos:edge:browse:cli. `apos-edge run` will make the node's own certificate \
                             (and keep this one aside); pass --config to browse as the node",
                            pki_dir.display()
                        );
                        drivers::opcua::pki::OwnIdentity::of_node("browse", "cli")
                    }
                },
            };
            // Build the device exactly as a config file would, so the same
            // validation (and messages) apply.
            let mut toml = format!(
                "schema_version = 1\n[node]\nsite_id = \"browse\"\nnode_id = \"cli\"\n[[device]]\nname = {device:?}\nprotocol = \"opcua\"\nendpoint = {endpoint:?}\nsecurity_policy = {security_policy:?}\npki_dir = {:?}\ntimeout = \"10s\"\n",
                pki_dir.display().to_string()
            );
            if let Some(m) = &security_mode {
                toml += &format!("security_mode = {m:?}\n");
            }
            if let Some(u) = &user {
                toml += &format!("user = {u:?}\n");
            }
            if let Some(p) = &password_file {
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                toml += &format!("password_file = {:?}\n", abs.display().to_string());
            }
            let cfg = firmware_config::load_str(std::path::Path::new("<command line>"), toml)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let firmware_config::Transport::OpcUa(ep) = &cfg.devices[0].transport else {
                anyhow::bail!("internal: not an OPC UA device");
            };
            let start = start
                .map(|s| s.parse::<firmware_config::NodeRef>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--start: {e}"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let found = rt
                .block_on(drivers::opcua::browse::browse(
                    ep,
                    &identity,
                    start.as_ref(),
                    depth,
                    Duration::from_secs(10),
                ))
                .map_err(|e| anyhow::anyhow!(e))?;
            match csv {
                Some(path) => {
                    let opts = drivers::opcua::browse::CsvOptions { arrays };
                    let (text, skipped) = drivers::opcua::browse::csv(&found, &device, opts);
                    std::fs::write(&path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!(
                        "wrote {} variables to {}; import it with [[import]] file = {:?}",
                        text.lines().count().saturating_sub(1),
                        path.display(),
                        path.display().to_string()
                    );
                    if skipped > 0 {
                        println!(
                            "left out {skipped} variables that are structures{} (see the tree without --csv)",
                            if arrays {
                                ""
                            } else {
                                " or arrays (add --arrays to include arrays as JSON text)"
                            }
                        );
                    }
                }
                None => print!("{}", drivers::opcua::browse::tree(&found)),
            }
            Ok(())
        }
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
