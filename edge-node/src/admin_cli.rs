//! `apos-edge user …` and `apos-edge audit …`: local HMI users and the
//! audit log, from the gateway's shell. Every user change is audited.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Subcommand;
use web::access::Role;
use web::admin::Admin;
use web::audit::AuditLog;
use web::tokens::TokenStore;
use web::users::UserStore;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated
    /// and printed once.
    Add {
        /// User name.
        name: String,
        /// viewer, operator, engineer or admin.
        #[arg(long)]
        role: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
    /// Set a user's password (generated and printed unless --password-stdin).
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
    /// Change a user's role.
    Role {
        /// User name.
        name: String,
        /// viewer, operator, engineer or admin.
        role: String,
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
    /// List users and roles.
    List {
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
    /// Remove a user.
    Remove {
        /// User name.
        name: String,
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: a changed or removed entry is found.
    Verify {
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
        config: PathBuf,
    },
    /// Show the newest entries.
    List {
        /// How many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The edge's configuration (its [hmi] users file and history database).
        #[arg(long, short, default_value = crate::CONFIG)]
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
    tokens: TokenStore,
    audit: AuditLog,
}

impl Stores {
    fn admin(&self) -> Admin<'_> {
        Admin {
            users: &self.users,
            tokens: &self.tokens,
            audit: &self.audit,
            program: "apos-edge",
            server: "HMI",
        }
    }
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
    let tokens = TokenStore::for_users(&users)
        .with_context(|| format!("opening the API tokens in {}", hmi.users_file.display()))?;
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
    Ok(Stores {
        users,
        tokens,
        audit,
    })
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    let out = match cmd {
        UserCommand::Add {
            name,
            role: r,
            password_stdin,
            config,
        } => {
            let r = role(&r)?;
            open(&config)?.admin().add_user(&name, r, password_stdin)?
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            config,
        } => open(&config)?.admin().set_password(&name, password_stdin)?,
        UserCommand::Role {
            name,
            role: r,
            config,
        } => {
            let r = role(&r)?;
            open(&config)?.admin().set_role(&name, r)?
        }
        UserCommand::List { config } => open(&config)?.admin().list_users()?,
        UserCommand::Remove { name, config } => open(&config)?.admin().remove_user(&name)?,
    };
    println!("{out}");
    Ok(())
}

pub fn audit_cmd(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { config } => {
            let s = open(&config)?;
            match web::admin::verdict(&s.audit.verify()?) {
                Ok(line) => println!("{line}"),
                Err(why) => bail!(why),
            }
        }
        AuditCommand::List { limit, config } => {
            let s = open(&config)?;
            println!("{}", s.admin().list_audit(limit)?);
        }
    }
    Ok(())
}
