//! The account and audit commands both binaries run from a shell
//! (`apos-edge user|audit …`, `apos-hub user|audit …`): one implementation
//! of adding, changing and removing users, each change audited, and of
//! listing and verifying the audit log. The binaries keep their own
//! command-line syntax (defaults, role sets) and print what these return.

use std::io::Read as _;

use crate::WebError;
use crate::access::Role;
use crate::audit::{AuditLog, NewAudit};
use crate::tokens::TokenStore;
use crate::users::UserStore;

/// A password from the first line of standard input, or a generated one;
/// true when generated (the caller prints it once).
pub fn password(from_stdin: bool) -> Result<(String, bool), WebError> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .map_err(|e| {
                WebError::Invalid(format!("reading the password from standard input: {e}"))
            })?;
        Ok((s.lines().next().unwrap_or("").to_string(), false))
    } else {
        Ok((crate::users::random_password(), true))
    }
}

/// Who ran the command, for the audit log: `cli:<login>`.
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// Milliseconds since 1970 as RFC 3339 to the second (UTC).
pub fn time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
    )
    .to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One server's account stores, as a shell command opened them.
#[derive(Debug)]
pub struct Admin<'a> {
    pub users: &'a UserStore,
    pub tokens: &'a TokenStore,
    pub audit: &'a AuditLog,
    /// The binary, for hints: `apos-edge` or `apos-hub`.
    pub program: &'static str,
    /// What runs the sessions, for hints: `HMI` or `hub`.
    pub server: &'static str,
}

impl Admin<'_> {
    /// Appends a CLI entry to the audit log.
    pub fn record(&self, action: &str, target: &str, detail: String) -> Result<(), WebError> {
        self.audit.append(
            NewAudit {
                actor: actor(),
                action: action.into(),
                target: target.into(),
                detail,
                addr: "cli".into(),
            },
            now_ms(),
        )?;
        Ok(())
    }

    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        password_stdin: bool,
    ) -> Result<String, WebError> {
        let (p, generated) = password(password_stdin)?;
        self.users.add(name, role, &p)?;
        self.record("user_add", name, format!("role {role}"))?;
        let mut out = format!("added {name} ({role})");
        if generated {
            out.push_str(&format!(
                "\npassword: {p}\n(shown once; change it with `{} user passwd {name}`)",
                self.program
            ));
        }
        Ok(out)
    }

    pub fn set_password(&self, name: &str, password_stdin: bool) -> Result<String, WebError> {
        let (p, generated) = password(password_stdin)?;
        self.users.set_password(name, &p)?;
        self.record("user_passwd", name, String::new())?;
        let mut out = format!(
            "password of {name} changed; a running {} keeps their sessions until they expire",
            self.server
        );
        if generated {
            out.push_str(&format!("\npassword: {p}"));
        }
        Ok(out)
    }

    pub fn set_role(&self, name: &str, role: Role) -> Result<String, WebError> {
        self.users.set_role(name, role)?;
        self.record("user_role", name, format!("role {role}"))?;
        Ok(format!(
            "{name} is now {role}; their API tokens act at most as {role}, a running {}'s sessions keep the old role until they end",
            self.server
        ))
    }

    /// The users as a table, or how to add the first one.
    pub fn list_users(&self) -> Result<String, WebError> {
        let list = self.users.list()?;
        if list.is_empty() {
            return Ok(format!(
                "no users: add the first admin with `{} user add NAME --role admin`",
                self.program
            ));
        }
        let mut out = format!("{:<24} {:<10} {:<22} last login", "user", "role", "created");
        for u in list {
            out.push_str(&format!(
                "\n{:<24} {:<10} {:<22} {}",
                u.name,
                u.role.as_str(),
                time(u.created_ms),
                u.last_login_ms.map_or("never".into(), time)
            ));
        }
        Ok(out)
    }

    /// Removes the user and revokes their API tokens (which already stop
    /// working with their owner; revoking also clears the rows).
    pub fn remove_user(&self, name: &str) -> Result<String, WebError> {
        self.users.remove(name)?;
        let n = self.tokens.revoke_owner(name)?;
        self.record("user_remove", name, format!("{n} API tokens revoked"))?;
        Ok(format!("removed {name} and revoked {n} API token(s)"))
    }

    /// The newest `limit` audit entries, one per line.
    pub fn list_audit(&self, limit: usize) -> Result<String, WebError> {
        Ok(self
            .audit
            .list(None, limit)?
            .iter()
            .map(|e| {
                format!(
                    "{:>6} {} {:<16} {:<16} {:<20} {} {}",
                    e.seq,
                    time(e.ts_ms),
                    e.actor,
                    e.action,
                    e.target,
                    e.addr,
                    e.detail
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// The verdict of `audit verify`: `Ok` with the line to print, or `Err`
/// with where the chain breaks.
pub fn verdict(r: &crate::audit::VerifyReport) -> Result<String, String> {
    match &r.problem {
        None => Ok(format!(
            "audit log OK: {} entries, hash chain intact",
            r.entries
        )),
        Some(p) => Err(format!(
            "audit log BROKEN at entry {}: {} ({} entries checked)",
            p.seq, p.reason, r.entries
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn every_change_is_audited_and_removal_revokes_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        let users = UserStore::open_with_params(&path, argon2::Params::new(8, 1, 1, None).unwrap())
            .unwrap();
        let tokens = TokenStore::for_users(&users).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let audit = AuditLog::new(Arc::new(Mutex::new(conn)), None).unwrap();
        let a = Admin {
            users: &users,
            tokens: &tokens,
            audit: &audit,
            program: "apos-x",
            server: "x",
        };
        assert!(a.list_users().unwrap().contains("apos-x user add NAME"));
        let out = a.add_user("ann", Role::Admin, false).unwrap();
        assert!(out.starts_with("added ann (admin)\npassword: "), "{out}");
        a.set_role("ann", Role::Viewer).unwrap();
        assert!(a.list_users().unwrap().contains("ann"));
        let out = a.remove_user("ann").unwrap();
        assert_eq!(out, "removed ann and revoked 0 API token(s)");
        let log = a.list_audit(10).unwrap();
        for action in ["user_add", "user_role", "user_remove"] {
            assert!(log.contains(action), "{log}");
        }
        assert!(verdict(&audit.verify().unwrap()).is_ok());
    }
}
