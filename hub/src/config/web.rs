//! `[web]`: the analysts' web application and REST API (docs/hub.md, "Web").

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    listen: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    /// Users, API tokens and the audit log (SQLite, 0600).
    users_file: Option<Spanned<String>>,
    metrics_token_file: Option<Spanned<String>>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Requests per second per client address (and per API token).
    rate_limit: Option<Spanned<i64>>,
    /// Requests allowed at once above the rate.
    rate_burst: Option<Spanned<i64>>,
}

/// Layer 2: validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub users_file: PathBuf,
    pub metrics_token_file: Option<PathBuf>,
    pub trusted_proxies: Vec<IpAddr>,
    pub rate_limit: u32,
    pub rate_burst: u32,
}

impl Web {
    /// Defaults for a hub whose store is at `storage`: the users file beside it.
    pub fn defaults(storage: &std::path::Path) -> Web {
        Web {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            tls: None,
            users_file: storage
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("users.db"),
            metrics_token_file: None,
            trusted_proxies: Vec::new(),
            rate_limit: 200,
            rate_burst: 400,
        }
    }

    /// How long a client waits for one more request once it used its burst.
    pub fn rate_period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.rate_limit.max(1)))
    }
}

pub(super) fn validate(c: &mut Ctx<'_>, r: &RawWeb, storage: &std::path::Path) -> Option<Web> {
    let mut w = Web::defaults(storage);
    if let Some(l) = &r.listen {
        match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => w.listen = a,
            Err(_) => c.err(
                l.span(),
                "web › listen",
                &format!("{:?} is not an address:port", l.get_ref()),
                "write e.g. \"127.0.0.1:8090\" (this machine only) or \"0.0.0.0:8443\" with TLS",
            ),
        }
    }
    match (&r.tls_cert, &r.tls_key) {
        (Some(cert), Some(key)) => {
            w.tls = Some((c.resolve(cert.get_ref()), c.resolve(key.get_ref())));
        }
        (None, None) => {}
        (Some(s), None) | (None, Some(s)) => c.err(
            s.span(),
            "web › tls_cert",
            "TLS needs both `tls_cert` and `tls_key`",
            "give the PEM certificate chain and its private key",
        ),
    }
    if let Some(f) = &r.users_file {
        w.users_file = c.resolve(f.get_ref());
    }
    if let Some(f) = &r.metrics_token_file {
        let p = c.resolve(f.get_ref());
        match std::fs::read_to_string(&p) {
            Ok(t) if t.trim().len() >= 16 => w.metrics_token_file = Some(p),
            Ok(_) => c.err(
                f.span(),
                "web › metrics_token_file",
                &format!("the token in {} is shorter than 16 characters", p.display()),
                "write a long random token, e.g. `openssl rand -hex 24 > metrics.token` (mode 0600)",
            ),
            Err(e) => c.err(
                f.span(),
                "web › metrics_token_file",
                &format!("cannot read {}: {e}", p.display()),
                "create the file (mode 0600) or fix the path; relative paths are relative to this config file",
            ),
        }
    }
    for p in r.trusted_proxies.iter().flatten() {
        match p.get_ref().parse::<IpAddr>() {
            Ok(ip) => w.trusted_proxies.push(ip),
            Err(_) => c.err(
                p.span(),
                "web › trusted_proxies",
                &format!("{:?} is not an IP address", p.get_ref()),
                "list the reverse proxies' addresses, e.g. [\"127.0.0.1\"]; only their X-Forwarded-For is believed",
            ),
        }
    }
    for (raw, field, slot, help) in [
        (
            &r.rate_limit,
            "web › rate_limit",
            &mut w.rate_limit,
            "requests per second per client address and per API token, 1 to 100000 (default 200)",
        ),
        (
            &r.rate_burst,
            "web › rate_burst",
            &mut w.rate_burst,
            "requests a client may send at once above the rate, 1 to 100000 (default 400)",
        ),
    ] {
        if let Some(v) = raw {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=100_000).contains(&n) => *slot = n,
                _ => c.err(
                    v.span(),
                    field,
                    &format!("{} is out of range", v.get_ref()),
                    help,
                ),
            }
        }
    }
    Some(w)
}
