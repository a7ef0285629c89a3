use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in this crate. Messages are written for the
/// person who has to fix it: they name the file, the address or the rule.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Input that breaks a rule (user name, password, role name); the
    /// message says what is allowed.
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} already exists; use set-password or set-role to change it")]
    UserExists(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database {path}: {source}")]
    DbOpen {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS file {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    /// A thread panicked while holding one of our locks; the data behind it
    /// may be half-updated, so we refuse rather than guess.
    #[error("internal lock poisoned by an earlier panic")]
    Poisoned,
}
