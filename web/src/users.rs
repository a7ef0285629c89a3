//! User accounts in their own SQLite file, passwords as Argon2id PHC strings.
//!
//! The API is blocking; async callers use `spawn_blocking`. The file is kept
//! at mode 0600 because the hashes, while salted and slow, are still worth
//! guessing offline.

use crate::WebError;
use crate::access::Role;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Argon2 cost parameters, re-exported so callers (tests) need no argon2 dependency.
pub use argon2::Params as HashParams;

pub const NAME_MAX: usize = 64;
pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 1024;

/// OWASP's recommended Argon2id setting: 19 MiB, 2 passes, 1 lane.
pub fn owasp_params() -> HashParams {
    // The constants are within argon2's limits, so the fallback is never used;
    // it exists only so this function cannot panic.
    HashParams::new(19_456, 2, 1, None).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub last_login_ms: Option<i64>,
}

pub struct UserStore {
    conn: Mutex<Connection>,
    params: HashParams,
    /// Verified against when the user does not exist, so an unknown name
    /// costs the same time as a wrong password.
    dummy_phc: String,
    path: PathBuf,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .finish()
    }
}

pub fn check_name(name: &str) -> Result<(), WebError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > NAME_MAX || !ok_chars {
        return Err(WebError::Invalid(format!(
            "invalid user name {name:?}: use 1 to {NAME_MAX} characters from A-Z, a-z, 0-9, '.', '_' and '-'"
        )));
    }
    Ok(())
}

pub fn check_password(password: &str) -> Result<(), WebError> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(WebError::Invalid(format!(
            "password too short ({n} characters): use at least {PASSWORD_MIN}; a passphrase of a few words is easiest"
        )));
    }
    if n > PASSWORD_MAX {
        return Err(WebError::Invalid(format!(
            "password too long ({n} characters): use at most {PASSWORD_MAX}"
        )));
    }
    Ok(())
}

/// 20 characters from an alphabet without look-alikes (0/O, 1/l/I), about
/// 115 bits: for first-run admin passwords printed to a console.
pub fn random_password() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl UserStore {
    pub fn open(path: &Path) -> Result<UserStore, WebError> {
        UserStore::open_with_params(path, owasp_params())
    }

    /// Like [`UserStore::open`] with other Argon2 costs; tests use tiny ones.
    /// Existing hashes keep verifying with the costs they were made with.
    pub fn open_with_params(path: &Path, params: HashParams) -> Result<UserStore, WebError> {
        let io = |source| WebError::Io {
            path: path.to_owned(),
            source,
        };
        prepare_file(path).map_err(io)?;
        let conn = Connection::open(path).map_err(|source| WebError::DbOpen {
            path: path.to_owned(),
            source,
        })?;
        // DELETE journal: the only side file is short-lived and SQLite gives
        // it the database file's mode; WAL's -shm would need its own care.
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                phc TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                last_login_ms INTEGER
            );",
        )?;
        let mut store = UserStore {
            conn: Mutex::new(conn),
            params,
            dummy_phc: String::new(),
            path: path.to_owned(),
        };
        store.dummy_phc = store.hash(&crate::util::random_token())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash(&self, password: &str) -> Result<String, WebError> {
        use rand::RngCore as _;
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| WebError::Hash(e.to_string()))?;
        self.argon()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| WebError::Hash(e.to_string()))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, WebError> {
        self.conn.lock().map_err(|_| WebError::Poisoned)
    }

    pub fn add(&self, name: &str, role: Role, password: &str) -> Result<(), WebError> {
        check_name(name)?;
        check_password(password)?;
        let phc = self.hash(password)?;
        let now = crate::util::now_ms();
        let conn = self.lock()?;
        let n = conn.execute(
            "INSERT INTO users (name, role, phc, created_ms, last_login_ms)
             VALUES (?1, ?2, ?3, ?4, NULL) ON CONFLICT(name) DO NOTHING",
            params![name, role.as_str(), phc, now],
        )?;
        if n == 0 {
            return Err(WebError::UserExists(name.to_owned()));
        }
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), WebError> {
        check_password(password)?;
        let phc = self.hash(password)?;
        let n = self.lock()?.execute(
            "UPDATE users SET phc = ?2 WHERE name = ?1",
            params![name, phc],
        )?;
        if n == 0 {
            return Err(WebError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    pub fn set_role(&self, name: &str, role: Role) -> Result<(), WebError> {
        let n = self.lock()?.execute(
            "UPDATE users SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )?;
        if n == 0 {
            return Err(WebError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), WebError> {
        let n = self
            .lock()?
            .execute("DELETE FROM users WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(WebError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<UserInfo>, WebError> {
        let conn = self.lock()?;
        let mut stmt =
            conn.prepare("SELECT name, role, created_ms, last_login_ms FROM users ORDER BY name")?;
        let rows = stmt.query_map([], raw_info)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(to_info(row?)?);
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<Option<UserInfo>, WebError> {
        let raw = self
            .lock()?
            .query_row(
                "SELECT name, role, created_ms, last_login_ms FROM users WHERE name = ?1",
                params![name],
                raw_info,
            )
            .optional()?;
        raw.map(to_info).transpose()
    }

    pub fn count(&self) -> Result<usize, WebError> {
        let n: i64 = self
            .lock()?
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// `Some(user)` when the password is right. Takes about the same time
    /// whether or not the user exists.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<UserInfo>, WebError> {
        let found = {
            let conn = self.lock()?;
            conn.query_row(
                "SELECT name, role, created_ms, last_login_ms, phc FROM users WHERE name = ?1",
                params![name],
                |r| Ok((raw_info(r)?, r.get::<_, String>(4)?)),
            )
            .optional()?
        };
        // The hash runs outside the lock so concurrent logins do not queue.
        let (raw, phc) = match found {
            Some((raw, phc)) => (Some(raw), phc),
            None => (None, self.dummy_phc.clone()),
        };
        let parsed = PasswordHash::new(&phc)
            .map_err(|e| WebError::Corrupt(format!("password hash: {e}")))?;
        let ok = self
            .argon()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        match raw {
            Some(raw) if ok => Ok(Some(to_info(raw)?)),
            _ => Ok(None),
        }
    }

    pub fn record_login(&self, name: &str, now_ms: i64) -> Result<(), WebError> {
        self.lock()?.execute(
            "UPDATE users SET last_login_ms = ?2 WHERE name = ?1",
            params![name, now_ms],
        )?;
        Ok(())
    }
}

type RawInfo = (String, String, i64, Option<i64>);

fn raw_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawInfo> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_info((name, role, created_ms, last_login_ms): RawInfo) -> Result<UserInfo, WebError> {
    let role = role
        .parse::<Role>()
        .map_err(|_| WebError::Corrupt(format!("user {name:?} has unknown role {role:?}")))?;
    Ok(UserInfo {
        name,
        role,
        created_ms,
        last_login_ms,
    })
}

/// Creates the file with mode 0600, or tightens an existing one.
#[cfg(unix)]
fn prepare_file(path: &Path) -> std::io::Result<()> {
    use std::fs::{OpenOptions, Permissions};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "user database was readable by others; setting mode 0600"
                );
                std::fs::set_permissions(path, Permissions::from_mode(0o600))?;
            }
            for side in ["-journal", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(side);
                let p = PathBuf::from(p);
                if std::fs::metadata(&p).is_ok() {
                    std::fs::set_permissions(&p, Permissions::from_mode(0o600))?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn prepare_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cheap() -> HashParams {
        HashParams::new(8, 1, 1, None).unwrap()
    }

    fn store(dir: &tempfile::TempDir) -> UserStore {
        UserStore::open_with_params(&dir.path().join("users.db"), cheap()).unwrap()
    }

    #[test]
    fn add_verify_change_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.add("alice", Role::Operator, "correct horse").unwrap();
        assert!(matches!(
            s.add("alice", Role::Admin, "another password"),
            Err(WebError::UserExists(_))
        ));
        let u = s.verify("alice", "correct horse").unwrap().unwrap();
        assert_eq!(u.role, Role::Operator);
        assert_eq!(u.last_login_ms, None);
        assert!(s.verify("alice", "correct hors").unwrap().is_none());
        assert!(s.verify("bob", "correct horse").unwrap().is_none());

        s.set_password("alice", "battery staple").unwrap();
        assert!(s.verify("alice", "correct horse").unwrap().is_none());
        assert!(s.verify("alice", "battery staple").unwrap().is_some());

        s.set_role("alice", Role::Admin).unwrap();
        s.record_login("alice", 1234).unwrap();
        let u = s.get("alice").unwrap().unwrap();
        assert_eq!((u.role, u.last_login_ms), (Role::Admin, Some(1234)));

        s.add("bob", Role::Viewer, "0123456789").unwrap();
        let names: Vec<_> = s.list().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(s.count().unwrap(), 2);
        s.remove("alice").unwrap();
        assert!(matches!(s.remove("alice"), Err(WebError::NoSuchUser(_))));
        assert!(matches!(
            s.set_role("alice", Role::Viewer),
            Err(WebError::NoSuchUser(_))
        ));
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn rules() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        for bad in ["", "a b", "ünï", "x/y", &"a".repeat(65)] {
            let e = s.add(bad, Role::Viewer, "long enough pw").unwrap_err();
            assert!(e.to_string().contains("A-Z, a-z, 0-9"), "{bad:?}: {e}");
        }
        s.add(&"a".repeat(64), Role::Viewer, "long enough pw")
            .unwrap();
        s.add("A.b_c-9", Role::Viewer, "long enough pw").unwrap();
        let e = s.add("carol", Role::Viewer, "short").unwrap_err();
        assert!(e.to_string().contains("at least 10"), "{e}");
        let e = s.add("carol", Role::Viewer, &"x".repeat(1025)).unwrap_err();
        assert!(e.to_string().contains("at most 1024"), "{e}");
        assert!(s.get("carol").unwrap().is_none());
    }

    #[test]
    fn persists_and_uses_argon2id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        {
            let s = UserStore::open_with_params(&path, cheap()).unwrap();
            s.add("alice", Role::Engineer, "correct horse").unwrap();
        }
        // Reopened with other costs: the stored hash carries its own.
        let s =
            UserStore::open_with_params(&path, HashParams::new(16, 1, 1, None).unwrap()).unwrap();
        assert!(s.verify("alice", "correct horse").unwrap().is_some());
        let phc: String = s
            .lock()
            .unwrap()
            .query_row("SELECT phc FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
    }

    #[cfg(unix)]
    #[test]
    fn file_mode_is_0600_and_fixed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("users.db");
        drop(UserStore::open_with_params(&path, cheap()).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(UserStore::open_with_params(&path, cheap()).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn random_passwords() {
        let a = random_password();
        assert_eq!(a.chars().count(), 20);
        assert!(check_password(&a).is_ok());
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(a, random_password());
    }

    #[test]
    fn owasp_params_are_as_documented() {
        let p = owasp_params();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19_456, 2, 1));
    }

    #[test]
    fn store_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<UserStore>();
    }
}
