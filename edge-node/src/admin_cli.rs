//! `apos-edge user …` and `apos-edge audit …`: local HMI users and the
//! audit log, from the gateway's shell. Every user change is audited.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Subcommand;
use web::access::Role;
use web::audit::{AuditLog, NewAudit};
use web::users::UserStore;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated
    /// and printed once.
    Add {
        name: String,
        /// viewer, operator, engineer or admin.
        #[arg(long)]
        role: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
    /// Set a user's password (generated and printed unless --password-stdin).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
    /// Change a user's role.
    Role {
        name: String,
        role: String,
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
    /// List users and roles.
    List {
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: a changed or removed entry is found.
    Verify {
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
    /// Show the newest entries.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, short, default_value = "/etc/apos-edge/edge.toml")]
        config: PathBuf,
    },
}

const ROLES: &[Role] = &[Role::Viewer, Role::Operator, Role::Engineer, Role::Admin];

fn role(s: &str) -> anyhow::Result<Role> {
    let r: Role = s.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !ROLES.contains(&r) {
        bail!("the edge's roles are viewer, operator, engineer and admin (not {s:?})");
    }
    Ok(r)
}

struct Stores {
    users: UserStore,
    audit: AuditLog,
}

fn open(config: &Path) -> anyhow::Result<Stores> {
    let cfg = firmware_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(hmi) = &cfg.hmi else {
        bail!(
            "{} has no [hmi] section: add one (docs/configuration.md) before creating users",
            config.display()
        );
    };
    if let Some(dir) = cfg.storage.path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !cfg.storage.path.exists() {
        // The edge never ran here: create the history (and its outbox) so
        // this entry can be queued for the hub like any other.
        edge_node::history::HistoryStore::open(&edge_node::history::HistoryOptions::from(
            &cfg.storage,
        ))
        .and_then(|s| s.close())
        .with_context(|| format!("creating {}", cfg.storage.path.display()))?;
    }
    let users = UserStore::open(&hmi.users_file)
        .with_context(|| format!("opening {}", hmi.users_file.display()))?;
    // The history's own schema is created by the edge; the audit table is
    // the web crate's and is created here if the edge never ran.
    let conn = rusqlite::Connection::open(&cfg.storage.path)
        .with_context(|| format!("opening {}", cfg.storage.path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let hook = cfg
        .sync
        .as_ref()
        .map(|s| edge_node::hmi::audit_hook(edge_node::sync::outbox::OutboxPolicy::from(s)));
    let audit = AuditLog::new(Arc::new(Mutex::new(conn)), hook)?;
    Ok(Stores { users, audit })
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        let p = s.lines().next().unwrap_or("").to_string();
        Ok((p, false))
    } else {
        Ok((web::users::random_password(), true))
    }
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

fn audit(s: &Stores, action: &str, target: &str, detail: String) -> anyhow::Result<()> {
    let now = drivers::Timestamp::now().as_millis();
    s.audit.append(
        NewAudit {
            actor: actor(),
            action: action.into(),
            target: target.into(),
            detail,
            addr: "cli".into(),
        },
        now,
    )?;
    Ok(())
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            role: r,
            password_stdin,
            config,
        } => {
            let r = role(&r)?;
            let s = open(&config)?;
            let (p, generated) = password(password_stdin)?;
            s.users.add(&name, r, &p)?;
            audit(&s, "user_add", &name, format!("role {}", r.as_str()))?;
            println!("added {name} ({})", r.as_str());
            if generated {
                println!(
                    "password: {p}\n(shown once; change it with `apos-edge user passwd {name}`)"
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            config,
        } => {
            let s = open(&config)?;
            let (p, generated) = password(password_stdin)?;
            s.users.set_password(&name, &p)?;
            audit(&s, "user_passwd", &name, String::new())?;
            println!(
                "password of {name} changed; a running HMI keeps its sessions until they expire"
            );
            if generated {
                println!("password: {p}");
            }
        }
        UserCommand::Role {
            name,
            role: r,
            config,
        } => {
            let r = role(&r)?;
            let s = open(&config)?;
            s.users.set_role(&name, r)?;
            audit(&s, "user_role", &name, format!("role {}", r.as_str()))?;
            println!("{name} is now {}", r.as_str());
        }
        UserCommand::List { config } => {
            let s = open(&config)?;
            let list = s.users.list()?;
            if list.is_empty() {
                println!(
                    "no users: add the first admin with `apos-edge user add NAME --role admin`"
                );
            }
            println!("{:<24} {:<10} {:<26} last login", "user", "role", "created");
            for u in list {
                let t = |ms: i64| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
                    )
                    .to_string()
                };
                println!(
                    "{:<24} {:<10} {:<26} {}",
                    u.name,
                    u.role.as_str(),
                    t(u.created_ms),
                    u.last_login_ms.map_or("never".into(), t)
                );
            }
        }
        UserCommand::Remove { name, config } => {
            let s = open(&config)?;
            s.users.remove(&name)?;
            audit(&s, "user_remove", &name, String::new())?;
            println!("removed {name}");
        }
    }
    Ok(())
}

pub fn audit_cmd(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { config } => {
            let s = open(&config)?;
            let r = s.audit.verify()?;
            match r.problem {
                None => println!("audit log OK: {} entries, hash chain intact", r.entries),
                Some(p) => bail!(
                    "audit log BROKEN at entry {}: {} ({} entries checked)",
                    p.seq,
                    p.reason,
                    r.entries
                ),
            }
        }
        AuditCommand::List { limit, config } => {
            let s = open(&config)?;
            for e in s.audit.list(None, limit)? {
                println!(
                    "{:>6} {} {:<16} {:<16} {:<20} {} {}",
                    e.seq,
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(u64::try_from(e.ts_ms).unwrap_or(0))
                    ),
                    e.actor,
                    e.action,
                    e.target,
                    e.addr,
                    e.detail
                );
            }
        }
    }
    Ok(())
}
