//! The web core shared by the edge HMI (`apos-edge`) and the hub web app.
//!
//! One home for everything both servers must do the same way: user accounts
//! ([`users`]), sessions and login throttling ([`session`]), the access
//! levels and the route table that enforces them together with CSRF
//! ([`access`], [`routes`]), the hash-chained audit log ([`audit`]), the
//! session and token API ([`auth_api`]), API tokens ([`tokens`]), rate
//! limits and the client address behind trusted proxies ([`ratelimit`]),
//! embedded page assets ([`assets`]), Prometheus text exposition
//! ([`metrics`]), RFC 9457 errors ([`problem`]) and the HTTP/HTTPS listener
//! ([`serve`]); and the service plumbing of both binaries: sd_notify
//! readiness, watchdog and heartbeats ([`systemd`]), native journald
//! logging with structured fields ([`journal`]), man pages ([`man`]).
//!
//! Storage APIs ([`users::UserStore`], [`tokens::TokenStore`],
//! [`audit::AuditLog`]) are blocking:
//! async callers run them with `tokio::task::spawn_blocking`.

pub mod access;
pub mod admin;
pub mod assets;
pub mod audit;
pub mod auth_api;
pub mod journal;
pub mod man;
pub mod metrics;
pub mod problem;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod session;
pub mod systemd;
pub mod tokens;
pub mod users;

mod error;
mod util;

pub use error::WebError;
