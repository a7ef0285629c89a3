//! API tokens: long-lived credentials for programs (Grafana, scripts) sent
//! as `Authorization: Bearer apos_<id>_<secret>`.
//!
//! A token is shown once, when it is made; only the SHA-256 of its secret is
//! stored, in the users file (table `api_tokens`, created by a migration on
//! `PRAGMA user_version`; the file stays 0600). SHA-256 rather than Argon2:
//! the secret is 32 random bytes (256 bits), so no guessing attack, offline
//! or not, can get anywhere whatever the hash's speed; a slow hash protects
//! low-entropy passwords and would only cost every API request tens of
//! milliseconds. The `<id>` part makes the lookup a primary-key read and the
//! comparison of the hashes is constant-time.
//!
//! A token acts with its own role, but never above its owner's current
//! role, and stops working when its owner is removed: the row names the
//! owner *and* the owner's creation time, and every use joins the users
//! table on both, so a user removed and added again does not get the old
//! tokens back.

use crate::WebError;
use crate::access::Role;
use crate::users::UserStore;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub const TOKEN_PREFIX: &str = "apos_";
pub const EXPIRY_DEFAULT_DAYS: u32 = 90;
pub const EXPIRY_MAX_DAYS: u32 = 365;
pub const TOKEN_NAME_MAX: usize = 64;
/// Tokens per user; bounds what one account can make the server store.
pub const TOKENS_PER_USER_MAX: i64 = 100;
/// `last_used_ms` is written at most this often per token: a dashboard
/// polling every second must not turn into a disk write every second.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Hex characters of the id (8 random bytes) and the secret (32 bytes).
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// The users file's schema version after this module's migration.
const SCHEMA_VERSION: i64 = 1;

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    /// Defaults to the creator's role.
    pub role: Option<Role>,
    /// Defaults to [`EXPIRY_DEFAULT_DAYS`]; 1 to [`EXPIRY_MAX_DAYS`].
    pub expires_days: Option<u32>,
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// The user who made it; it acts as this user.
    pub owner: String,
    pub role: Role,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// To the minute; `null` when never used.
    pub last_used_ms: Option<i64>,
}

/// A token just made: `token` is the only copy of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Created {
    pub info: TokenInfo,
    pub token: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// The token's role, lowered to the owner's current rank if that fell.
    pub role: Role,
    pub expires_ms: i64,
}

pub struct TokenStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Splits `apos_<id>_<secret>`; `None` for anything else.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// The id part of a bearer value shaped like an API token.
pub fn token_id(token: &str) -> Option<&str> {
    parse(token).map(|(id, _)| id)
}

fn secret_hash(id: &str, secret: &str) -> String {
    // The id is hashed in too, so a stored hash cannot be moved to another row.
    let mut h = Sha256::new();
    h.update(b"apos-api-token-v1\0");
    h.update(id.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    crate::util::hex(&h.finalize())
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore as _;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    crate::util::hex(&b)
}

pub fn check_token_name(name: &str) -> Result<(), WebError> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > TOKEN_NAME_MAX || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(format!(
            "invalid token name {name:?}: use 1 to {TOKEN_NAME_MAX} characters without control characters (e.g. \"grafana\")"
        )));
    }
    Ok(())
}

/// Whether a user of role `creator` may make a token of role `wanted`: the
/// same role, or one of a lower rank (an analyst cannot mint an operator
/// token, an engineer can).
pub fn may_grant(creator: Role, wanted: Role) -> bool {
    wanted == creator || wanted.rank() < creator.rank()
}

/// Creates the token table in the users file (idempotent; safe when a CLI
/// and the server open the file at once: the check and the change are one
/// IMMEDIATE transaction).
fn migrate(conn: &mut Connection) -> Result<(), WebError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_tokens (
                id TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                name TEXT NOT NULL,
                owner TEXT NOT NULL,
                owner_created_ms INTEGER NOT NULL,
                role TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                expires_ms INTEGER NOT NULL,
                last_used_ms INTEGER
            );
            CREATE INDEX IF NOT EXISTS api_tokens_owner ON api_tokens (owner);",
        )?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

type Row = (String, String, String, String, i64, i64, Option<i64>);
/// hash, name, owner, role, expires_ms, last_used_ms, the owner's role.
type AuthRow = (String, String, String, String, i64, Option<i64>, String);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn role_of(s: &str) -> Result<Role, WebError> {
    s.parse::<Role>()
        .map_err(|_| WebError::Corrupt(format!("API token with unknown role {s:?}")))
}

fn info(
    (id, name, owner, role, created_ms, expires_ms, last_used_ms): Row,
) -> Result<TokenInfo, WebError> {
    Ok(TokenInfo {
        id,
        name,
        owner,
        role: role_of(&role)?,
        created_ms,
        expires_ms,
        last_used_ms,
    })
}

const INFO_COLUMNS: &str = "id, name, owner, role, created_ms, expires_ms, last_used_ms";

impl TokenStore {
    /// The token table in `users`' file (which [`UserStore::open`] made 0600).
    pub fn for_users(users: &UserStore) -> Result<TokenStore, WebError> {
        TokenStore::open_existing(users.path())
    }

    fn open_existing(path: &Path) -> Result<TokenStore, WebError> {
        let mut conn = Connection::open_with_flags(
            path,
            // No CREATE: the users store creates the file with its mode.
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| WebError::DbOpen {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(TokenStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, WebError> {
        self.conn.lock().map_err(|_| WebError::Poisoned)
    }

    /// Makes a token for `owner` (who must exist) acting as `req.role`,
    /// which `owner`'s current role must allow ([`may_grant`]).
    pub fn create(&self, owner: &str, req: &NewToken, now_ms: i64) -> Result<Created, WebError> {
        check_token_name(&req.name)?;
        let days = req.expires_days.unwrap_or(EXPIRY_DEFAULT_DAYS);
        if !(1..=EXPIRY_MAX_DAYS).contains(&days) {
            return Err(WebError::Invalid(format!(
                "expires_days {days} is out of range: a token lives 1 to {EXPIRY_MAX_DAYS} days (default {EXPIRY_DEFAULT_DAYS})"
            )));
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (owner_role, owner_created_ms): (String, i64) = tx
            .query_row(
                "SELECT role, created_ms FROM users WHERE name = ?1",
                params![owner],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| WebError::NoSuchUser(owner.to_owned()))?;
        let owner_role = role_of(&owner_role)?;
        let role = req.role.unwrap_or(owner_role);
        if !may_grant(owner_role, role) {
            return Err(WebError::Invalid(format!(
                "{owner} is {owner_role} and cannot make a token with role {role}: a token's role is the owner's or a lower one"
            )));
        }
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM api_tokens WHERE owner = ?1",
            params![owner],
            |r| r.get(0),
        )?;
        if count >= TOKENS_PER_USER_MAX {
            return Err(WebError::Invalid(format!(
                "{owner} already has {count} API tokens; revoke unused ones first"
            )));
        }
        let id = random_hex(ID_HEX / 2);
        let secret = random_hex(SECRET_HEX / 2);
        let expires_ms = now_ms.saturating_add(i64::from(days) * DAY_MS);
        tx.execute(
            "INSERT INTO api_tokens (id, hash, name, owner, owner_created_ms, role, created_ms, expires_ms, last_used_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
            params![
                id,
                secret_hash(&id, &secret),
                req.name,
                owner,
                owner_created_ms,
                role.as_str(),
                now_ms,
                expires_ms
            ],
        )?;
        tx.commit()?;
        Ok(Created {
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
            info: TokenInfo {
                id,
                name: req.name.clone(),
                owner: owner.to_owned(),
                role,
                created_ms: now_ms,
                expires_ms,
                last_used_ms: None,
            },
        })
    }

    /// The token's use, when `presented` is a live token of an existing
    /// owner; records the time of use (to the minute).
    pub fn authenticate(&self, presented: &str, now_ms: i64) -> Result<Option<TokenUse>, WebError> {
        let Some((id, secret)) = parse(presented) else {
            return Ok(None);
        };
        let conn = self.lock()?;
        let found: Option<AuthRow> = conn
            .query_row(
                "SELECT t.hash, t.name, t.owner, t.role, t.expires_ms, t.last_used_ms, u.role
                 FROM api_tokens t JOIN users u
                   ON u.name = t.owner AND u.created_ms = t.owner_created_ms
                 WHERE t.id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .optional()?;
        let expected = found.as_ref().map_or("", |f| f.0.as_str());
        // Hash and compare even for an unknown id, so both take the same time.
        let matches = crate::util::ct_eq(secret_hash(id, secret).as_bytes(), expected.as_bytes());
        let Some((_, name, owner, role, expires_ms, last_used_ms, owner_role)) = found else {
            return Ok(None);
        };
        if !matches || now_ms >= expires_ms {
            return Ok(None);
        }
        let (role, owner_role) = (role_of(&role)?, role_of(&owner_role)?);
        let role = if role.rank() > owner_role.rank() {
            owner_role
        } else {
            role
        };
        if last_used_ms.is_none_or(|t| now_ms - t >= LAST_USED_RESOLUTION_MS) {
            // A failure to record the time must not refuse a valid token.
            if let Err(e) = conn.execute(
                "UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            ) {
                tracing::warn!(error = %e, "could not record an API token's last use");
            }
        }
        Ok(Some(TokenUse {
            id: id.to_owned(),
            name,
            owner,
            role,
            expires_ms,
        }))
    }

    /// Tokens of `owner`, or of everyone with `None`; newest first.
    /// Expired tokens are listed too (until revoked), so that a tool that
    /// stopped working can be explained.
    pub fn list(&self, owner: Option<&str>) -> Result<Vec<TokenInfo>, WebError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {INFO_COLUMNS} FROM api_tokens WHERE (?1 IS NULL OR owner = ?1)
             ORDER BY created_ms DESC, id"
        ))?;
        let rows = stmt.query_map(params![owner], row)?;
        rows.map(|r| info(r?)).collect()
    }

    pub fn get(&self, id: &str) -> Result<Option<TokenInfo>, WebError> {
        let raw = self
            .lock()?
            .query_row(
                &format!("SELECT {INFO_COLUMNS} FROM api_tokens WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()?;
        raw.map(info).transpose()
    }

    /// Deletes the token; `false` when there was none.
    pub fn revoke(&self, id: &str) -> Result<bool, WebError> {
        let n = self
            .lock()?
            .execute("DELETE FROM api_tokens WHERE id = ?1", params![id])?;
        Ok(n > 0)
    }

    /// Deletes every token of `owner` (a removed account); the number deleted.
    pub fn revoke_owner(&self, owner: &str) -> Result<usize, WebError> {
        Ok(self
            .lock()?
            .execute("DELETE FROM api_tokens WHERE owner = ?1", params![owner])?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::users::HashParams;

    fn stores(dir: &tempfile::TempDir) -> (UserStore, TokenStore) {
        let users = UserStore::open_with_params(
            &dir.path().join("users.db"),
            HashParams::new(8, 1, 1, None).unwrap(),
        )
        .unwrap();
        users.add("ana", Role::Analyst, "long enough pw").unwrap();
        users.add("eng", Role::Engineer, "long enough pw").unwrap();
        let tokens = TokenStore::for_users(&users).unwrap();
        (users, tokens)
    }

    fn req(name: &str, role: Option<Role>, days: Option<u32>) -> NewToken {
        NewToken {
            name: name.into(),
            role,
            expires_days: days,
        }
    }

    #[test]
    fn format_parses_strictly() {
        let id = "0123456789abcdef";
        let secret = "a".repeat(64);
        let t = format!("apos_{id}_{secret}");
        assert_eq!(parse(&t), Some((id, secret.as_str())));
        assert_eq!(token_id(&t), Some(id));
        for bad in [
            format!("apos_{id}{secret}"),
            format!("apos_{id}_{secret}x"),
            format!("apos_{}_{secret}", &id[1..]),
            format!("apos_{id}_{}", "g".repeat(64)),
            format!("xpos_{id}_{secret}"),
            String::new(),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn lifecycle_expiry_and_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let (_users, tokens) = stores(&dir);
        let now = 1_000_000;
        let c = tokens
            .create("ana", &req("grafana", None, None), now)
            .unwrap();
        assert_eq!(c.info.role, Role::Analyst);
        assert_eq!(c.info.expires_ms, now + 90 * DAY_MS);
        assert!(parse(&c.token).is_some(), "{}", c.token);

        let u = tokens.authenticate(&c.token, now + 1).unwrap().unwrap();
        assert_eq!((u.owner.as_str(), u.role), ("ana", Role::Analyst));
        assert_eq!(
            tokens.get(&c.info.id).unwrap().unwrap().last_used_ms,
            Some(now + 1)
        );
        // Within the resolution the stored time stays; after it, it moves.
        tokens.authenticate(&c.token, now + 5_000).unwrap().unwrap();
        assert_eq!(
            tokens.get(&c.info.id).unwrap().unwrap().last_used_ms,
            Some(now + 1)
        );
        tokens
            .authenticate(&c.token, now + 61_000)
            .unwrap()
            .unwrap();
        assert_eq!(
            tokens.get(&c.info.id).unwrap().unwrap().last_used_ms,
            Some(now + 61_000)
        );

        // A wrong secret with the right id, and a well-formed unknown id.
        let (id, secret) = parse(&c.token).unwrap();
        let mut wrong = secret.to_owned();
        wrong.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert!(
            tokens
                .authenticate(&format!("apos_{id}_{wrong}"), now)
                .unwrap()
                .is_none()
        );
        assert!(
            tokens
                .authenticate(&format!("apos_{}_{secret}", "f".repeat(16)), now)
                .unwrap()
                .is_none()
        );

        // Expiry is exclusive.
        assert!(
            tokens
                .authenticate(&c.token, c.info.expires_ms - 1)
                .unwrap()
                .is_some()
        );
        assert!(
            tokens
                .authenticate(&c.token, c.info.expires_ms)
                .unwrap()
                .is_none()
        );

        assert!(tokens.revoke(&c.info.id).unwrap());
        assert!(!tokens.revoke(&c.info.id).unwrap());
        assert!(tokens.authenticate(&c.token, now + 2).unwrap().is_none());
    }

    #[test]
    fn role_cap_and_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (users, tokens) = stores(&dir);
        let now = 5;
        let e = tokens
            .create("ana", &req("x", Some(Role::Engineer), None), now)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot make a token with role engineer"),
            "{e}"
        );
        // Same rank, other job: not granted either.
        assert!(
            tokens
                .create("ana", &req("x", Some(Role::Operator), None), now)
                .is_err()
        );
        assert!(
            tokens
                .create("ana", &req("x", Some(Role::Viewer), None), now)
                .is_ok()
        );
        assert!(
            tokens
                .create("eng", &req("x", Some(Role::Operator), None), now)
                .is_ok()
        );
        for days in [0, 366] {
            let e = tokens
                .create("ana", &req("x", None, Some(days)), now)
                .unwrap_err();
            assert!(e.to_string().contains("1 to 365 days"), "{e}");
        }
        assert!(
            tokens
                .create("ana", &req("x", None, Some(365)), now)
                .is_ok()
        );
        for name in ["", "  ", "a\nb", &"n".repeat(65)] {
            assert!(
                tokens.create("ana", &req(name, None, None), now).is_err(),
                "{name:?}"
            );
        }
        assert!(matches!(
            tokens.create("nobody", &req("x", None, None), now),
            Err(WebError::NoSuchUser(_))
        ));

        // An engineer token of a user demoted to viewer acts as a viewer.
        let c = tokens.create("eng", &req("ci", None, None), now).unwrap();
        users.set_role("eng", Role::Viewer).unwrap();
        assert_eq!(
            tokens.authenticate(&c.token, now).unwrap().unwrap().role,
            Role::Viewer
        );
        users.set_role("eng", Role::Admin).unwrap();
        assert_eq!(
            tokens.authenticate(&c.token, now).unwrap().unwrap().role,
            Role::Engineer
        );
    }

    #[test]
    fn removed_owner_and_re_added_name_do_not_revive_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (users, tokens) = stores(&dir);
        let c = tokens.create("eng", &req("ci", None, None), 5).unwrap();
        users.remove("eng").unwrap();
        assert!(tokens.authenticate(&c.token, 6).unwrap().is_none());
        std::thread::sleep(std::time::Duration::from_millis(3));
        users.add("eng", Role::Engineer, "long enough pw").unwrap();
        assert!(tokens.authenticate(&c.token, 7).unwrap().is_none());
        assert_eq!(tokens.revoke_owner("eng").unwrap(), 1);
        assert!(tokens.list(None).unwrap().is_empty());
    }

    #[test]
    fn only_the_hash_is_stored_and_migration_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (users, tokens) = stores(&dir);
        let c = tokens
            .create("ana", &req("grafana", None, None), 5)
            .unwrap();
        tokens.create("eng", &req("ci", None, None), 6).unwrap();
        let (_, secret) = parse(&c.token).unwrap();
        drop(tokens);
        let bytes = std::fs::read(users.path()).unwrap();
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!has(secret.as_bytes()), "the secret is in the file");
        assert!(has(c.info.id.as_bytes()), "the id is");
        // Reopened: same table, tokens still there.
        let again = TokenStore::for_users(&users).unwrap();
        assert_eq!(again.list(None).unwrap().len(), 2);
        assert_eq!(again.list(Some("ana")).unwrap().len(), 1);
        assert!(again.authenticate(&c.token, 7).unwrap().is_some());
    }
}
