//! `apos-hub user …`, `apos-hub token …` and `apos-hub audit …`: the web
//! application's accounts, API tokens and audit log, from the hub's shell.
//! Everything lives in the users file (`[web] users_file`, by default
//! `users.db` beside the fleet database); every change is audited there.
//! There is no default user or password: the first admin comes from
//! `apos-hub user add NAME --role admin`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Subcommand;
use sha2::{Digest, Sha256};
use web::access::Role;
use web::admin::{Admin, time};
use web::audit::{AuditLog, NewAudit};
use web::tokens::{NewToken, TokenStore};
use web::users::UserStore;

use crate::CONFIG;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin a random password is generated
    /// and printed once.
    Add {
        /// User name.
        name: String,
        /// viewer, analyst, engineer or admin.
        #[arg(long)]
        role: String,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Set a user's password (generated and printed unless --password-stdin).
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Change a user's role (their API tokens never act above it).
    Role {
        /// User name.
        name: String,
        /// viewer, analyst, engineer or admin.
        role: String,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// List users and roles.
    List {
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Remove a user and revoke their API tokens.
    Remove {
        /// User name.
        name: String,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for a user; the token is printed once.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// What it is for, e.g. "grafana".
        #[arg(long)]
        name: String,
        /// The user's role (the default) or a lower one.
        #[arg(long)]
        role: Option<String>,
        /// Days until it expires, 1 to 365.
        #[arg(long, default_value_t = web::tokens::EXPIRY_DEFAULT_DAYS)]
        days: u32,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// List API tokens (never their secrets).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Revoke an API token by its id; it stops working at once.
    Revoke {
        /// The token's id (as `token list` shows it).
        id: String,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: a changed, removed or reordered
    /// entry is found (exit status 1).
    Verify {
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
    /// Show the newest entries.
    List {
        /// How many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The hub's configuration (its [web] users file).
        #[arg(long, default_value = CONFIG)]
        config: PathBuf,
    },
}

/// The hub's roles (operator is the edge's).
const ROLES: &[Role] = &[Role::Viewer, Role::Analyst, Role::Engineer, Role::Admin];

fn role(s: &str) -> anyhow::Result<Role> {
    let r: Role = s.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !ROLES.contains(&r) {
        bail!("the hub's roles are viewer, analyst, engineer and admin (not {s:?})");
    }
    Ok(r)
}

/// The users file of the hub configured in `config`.
pub fn users_file(cfg: &hub::HubConfig) -> PathBuf {
    cfg.web.as_ref().map_or_else(
        || hub::config::Web::defaults(&cfg.storage_path).users_file,
        |w| w.users_file.clone(),
    )
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
            program: "apos-hub",
            server: "hub",
        }
    }
}

fn open_file(users_file: &Path) -> anyhow::Result<Stores> {
    let users =
        UserStore::open(users_file).with_context(|| format!("opening {}", users_file.display()))?;
    let tokens = TokenStore::for_users(&users)
        .with_context(|| format!("opening the API tokens in {}", users_file.display()))?;
    let conn = rusqlite::Connection::open(users_file)
        .with_context(|| format!("opening {}", users_file.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let audit = AuditLog::new(Arc::new(Mutex::new(conn)), None)?;
    Ok(Stores {
        users,
        tokens,
        audit,
    })
}

fn open(config: &Path) -> anyhow::Result<Stores> {
    hub::files::private_files();
    let cfg = hub::config::load(config)?;
    open_file(&users_file(&cfg))
}

fn now_ms() -> i64 {
    hub::web::now_ms()
}

fn audit(s: &Stores, action: &str, target: &str, detail: String) -> anyhow::Result<()> {
    Ok(s.admin().record(action, target, detail)?)
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

pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            user,
            name,
            role: r,
            days,
            config,
        } => {
            let r = r.as_deref().map(role).transpose()?;
            let s = open(&config)?;
            let req = NewToken {
                name,
                role: r,
                expires_days: Some(days),
            };
            let c = s.tokens.create(&user, &req, now_ms())?;
            let detail = format!(
                "name={} role={} owner={user} expires_ms={}",
                c.info.name, c.info.role, c.info.expires_ms
            );
            if let Err(e) = audit(&s, "token_create", &c.info.id, detail) {
                // No token may exist without its audit entry.
                let _ = s.tokens.revoke(&c.info.id);
                return Err(e.context("the token was not made"));
            }
            println!(
                "API token {} for {user} ({}, \"{}\"), expires {}:",
                c.info.id,
                c.info.role,
                c.info.name,
                time(c.info.expires_ms)
            );
            println!("{}", c.token);
            println!(
                "(shown once: store it now; send it as `Authorization: Bearer <token>`; revoke with `apos-hub token revoke {}`)",
                c.info.id
            );
        }
        TokenCommand::List { user, config } => {
            let s = open(&config)?;
            let list = s.tokens.list(user.as_deref())?;
            if list.is_empty() {
                println!("no API tokens");
                return Ok(());
            }
            println!(
                "{:<16} {:<16} {:<9} {:<20} {:<22} last used",
                "id", "user", "role", "name", "expires"
            );
            let now = now_ms();
            for t in list {
                println!(
                    "{:<16} {:<16} {:<9} {:<20} {:<22} {}",
                    t.id,
                    t.owner,
                    t.role.as_str(),
                    t.name,
                    if t.expires_ms <= now {
                        format!("EXPIRED {}", time(t.expires_ms))
                    } else {
                        time(t.expires_ms)
                    },
                    t.last_used_ms.map_or("never".into(), time)
                );
            }
        }
        TokenCommand::Revoke { id, config } => {
            let s = open(&config)?;
            let Some(info) = s.tokens.get(&id)? else {
                bail!("no API token with id {id:?}; `apos-hub token list` shows them");
            };
            s.tokens.revoke(&id)?;
            audit(
                &s,
                "token_revoke",
                &id,
                format!("name={} owner={}", info.name, info.owner),
            )?;
            println!("revoked {id} ({}, {})", info.owner, info.name);
        }
    }
    Ok(())
}

pub fn audit_cmd(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { config } => {
            hub::files::private_files();
            let cfg = hub::config::load(&config)?;
            let path = users_file(&cfg);
            if !path.exists() {
                bail!(
                    "{} does not exist: nothing has been audited yet",
                    path.display()
                );
            }
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .with_context(|| format!("opening {}", path.display()))?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            match web::admin::verdict(&web::audit::verify_conn(&conn)?) {
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

/// Records "config loaded" with the SHA-256 of the configuration file's
/// text in the audit log, when it differs from the last one recorded (so a
/// restart with the same file adds nothing). Called by `apos-hub run`
/// before the hub starts; `Ok(true)` when an entry was written. Only the
/// file itself is hashed, not the key files it names.
pub fn audit_config_change(config: &Path, cfg: &hub::HubConfig) -> anyhow::Result<bool> {
    let text = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
    let digest: String = Sha256::digest(&text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let detail = format!("sha256={digest}");
    let path = users_file(cfg);
    let s = open_file(&path)?;
    let last: Option<String> = {
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.query_row(
            "SELECT detail FROM audit WHERE action = 'config_loaded' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?
    };
    if last.as_deref() == Some(detail.as_str()) {
        return Ok(false);
    }
    s.audit.append(
        NewAudit {
            actor: "apos-hub".into(),
            action: "config_loaded".into(),
            target: std::fs::canonicalize(config)
                .unwrap_or_else(|_| config.to_owned())
                .display()
                .to_string(),
            detail,
            addr: "local".into(),
        },
        now_ms(),
    )?;
    Ok(true)
}
