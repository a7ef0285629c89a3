//! `apos-hub optimize mps FILE [--json]`: solve an MPS file (plain or
//! gzipped) with the hub's LP solver (`models::optimize`) and print the
//! status and the optimal objective, so anyone can check the solver on any
//! public problem (docs/benchmarks.md has the Netlib table).

use std::path::PathBuf;

use anyhow::Context as _;
use models::optimize::{lp::Status, mps};

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Solve an MPS file (fixed or free form, `.gz` read as gzip) and print
    /// its status and optimal objective.
    Mps {
        /// The MPS file.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the hub's recommendation public key (`ed25519:...`), the value of
    /// each edge's `[setpoints] hub_public_key`. The hub makes the key at its
    /// first start with optimization configured; `--create` makes it now
    /// (run it as the hub's user, so the hub can read it).
    Key {
        /// The hub configuration (its `[recommendations] key_file`).
        #[arg(long, default_value = "/etc/apos/hub.toml")]
        config: PathBuf,
        /// Make the key (0600) when the file does not exist yet.
        #[arg(long)]
        create: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Mps { file, json } => mps_file(&file, json),
        Command::Key { config, create } => key(&config, create),
    }
}

fn key(config: &std::path::Path, create: bool) -> anyhow::Result<()> {
    let cfg = hub::config::load(config)?;
    let Some(o) = cfg.optimization else {
        anyhow::bail!(
            "{} has no [[optimization]] or [recommendations]: this hub sends no recommendations",
            config.display()
        );
    };
    let key = if create || o.key_file.exists() {
        hub::optimize::load_or_create_key(&o.key_file)?
    } else {
        anyhow::bail!(
            "{} does not exist yet: start the hub once (it makes the key), or run `apos-hub optimize key --create` as the hub's user",
            o.key_file.display()
        );
    };
    println!("{}", key.public().to_text());
    Ok(())
}

fn mps_file(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let model = mps::read_mps_file(file).with_context(|| format!("reading {}", file.display()))?;
    for w in &model.warnings {
        eprintln!("{}: {w}", file.display());
    }
    let p = &model.problem;
    let s = p
        .solve()
        .with_context(|| format!("solving {} ({})", file.display(), p.name))?;
    let ms = s.solve_time.as_secs_f64() * 1000.0;
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "name": p.name,
            "status": s.status.to_string(),
            // JSON has no infinity: null when there is no optimum.
            "objective": s.objective.is_finite().then_some(s.objective),
            "rows": p.rows.len(),
            "columns": p.variables.len(),
            "iterations": s.iterations,
            "solve_ms": ms,
            "warnings": model.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!(
            "{}: {} ({} rows, {} columns)",
            file.display(),
            p.name,
            p.rows.len(),
            p.variables.len()
        );
        println!("status: {}", s.status);
        if s.status == Status::Optimal {
            println!("objective: {:.12e}", s.objective);
        }
        println!("iterations: {}, time: {ms:.1} ms", s.iterations);
    }
    Ok(())
}
