//! `apos-hub report`: make a site report now, list the stored ones
//! (docs/insights.md, "Reports").
//!
//! `make` opens the fleet database itself, so it works while the hub is
//! stopped; while the hub runs (it holds DuckDB's file lock) make the
//! report through the API (`POST /api/v1/reports`) or the Reports page.

use std::path::PathBuf;

use anyhow::Context as _;

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Make a report of one site now (HTML, and PDF through Chromium).
    Make {
        /// The hub configuration (storage path, `[[report]]` settings).
        #[arg(long, default_value = "/etc/apos/hub.toml")]
        config: PathBuf,
        /// The site.
        #[arg(long)]
        site: String,
        /// The span covered, ending at `--to`: e.g. 1d, 7d, 6h.
        #[arg(long, default_value = "1d")]
        period: String,
        /// End of the period: RFC 3339 with a zone; default now.
        #[arg(long)]
        to: Option<String>,
        /// The report's name (file names start with it); default `<site>-on-demand`.
        #[arg(long)]
        name: Option<String>,
        /// Chromium for the PDF (default: the `[[report]]` of the site, else /usr/bin/chromium).
        #[arg(long, conflicts_with = "no_pdf")]
        chromium: Option<PathBuf>,
        /// HTML only.
        #[arg(long)]
        no_pdf: bool,
    },
    /// List the stored reports, newest first.
    List {
        /// The hub configuration (where the reports are stored).
        #[arg(long, default_value = "/etc/apos/hub.toml")]
        config: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Make {
            config,
            site,
            period,
            to,
            name,
            chromium,
            no_pdf,
        } => {
            let cfg = hub::config::load(&config)?;
            let period = humantime::parse_duration(&period)
                .with_context(|| format!("--period {period:?}: not a duration (e.g. 1d, 6h)"))?;
            let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
            if !(60_000..=366 * 86_400_000).contains(&period_ms) {
                anyhow::bail!("--period: between 1 minute and 366 days");
            }
            let to_ms = match to {
                Some(t) => t
                    .parse::<jiff::Timestamp>()
                    .with_context(|| format!("--to {t:?}: not an RFC 3339 time with a zone"))?
                    .as_millisecond(),
                None => hub::web::now_ms(),
            };
            let configured = cfg.reports.iter().find(|r| r.site == site);
            let chromium = if no_pdf {
                None
            } else {
                chromium.or_else(|| match configured {
                    Some(r) => r.chromium.clone(),
                    None => Some(PathBuf::from(hub::config::DEFAULT_CHROMIUM)),
                })
            };
            let req = hub::report::Request {
                name: name.unwrap_or_else(|| format!("{site}-on-demand")),
                site,
                from_ms: to_ms - period_ms,
                to_ms,
                trigger: "demand",
                chromium,
                hub: hub::report::run::hub_name(&cfg),
            };
            let store = hub::store::Store::open(&cfg.storage_path).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}\n(while the hub runs it holds the database: make the report with POST /api/v1/reports or on the Reports page)",
                    cfg.storage_path.display()
                )
            })?;
            let dir = hub::report::dir(&cfg.storage_path);
            let m = hub::report::make_in(&store, &dir, &req)?;
            println!("report {}", m.id);
            println!("  html {}", dir.join(format!("{}.html", m.id)).display());
            match (&m.pdf_bytes, &m.pdf_note) {
                (Some(_), _) => println!("  pdf  {}", dir.join(format!("{}.pdf", m.id)).display()),
                (None, Some(why)) => println!("  {why}"),
                (None, None) => {}
            }
            println!("  {} insights", m.insights);
            Ok(())
        }
        Cmd::List { config } => {
            let cfg = hub::config::load(&config)?;
            let dir = hub::report::dir(&cfg.storage_path);
            let list = hub::report::list(&dir)?;
            if list.is_empty() {
                println!("no reports in {}", dir.display());
            }
            for m in list {
                let t = |ms: i64| {
                    jiff::Timestamp::from_millisecond(ms)
                        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default()
                };
                println!(
                    "{}  {}  {} – {} UTC  {} insights  {}  {}",
                    m.id,
                    m.site,
                    t(m.from_ms),
                    t(m.to_ms),
                    m.insights,
                    if m.pdf_bytes.is_some() {
                        "html+pdf"
                    } else {
                        "html"
                    },
                    m.trigger
                );
            }
            Ok(())
        }
    }
}
