//! `[hmi]`: the operator HMI's listener, TLS files and access switches.

use super::*;
use crate::raw::RawHmi;

/// Port of the HMI when `listen` gives none.
pub const DEFAULT_HMI_PORT: u16 = 8080;

impl Validator<'_> {
    pub(super) fn hmi(
        &mut self,
        raw: &RawConfig,
        storage: Option<&Storage>,
    ) -> Option<Option<Hmi>> {
        let Some(item) = &raw.hmi else {
            return Some(None);
        };
        let r: &RawHmi = &item.raw;
        let mut ok = true;
        let listen = match &r.listen {
            None => std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_HMI_PORT)),
            Some(l) => match parse_listen(l.get_ref()) {
                Ok(a) => a,
                Err(e) => {
                    self.push(item.diag(l.span(), "hmi › listen", e).help(
                        "write an address and port, e.g. \"0.0.0.0:8080\" (every interface), \"127.0.0.1:8080\" or \"[::]:8443\"",
                    ));
                    ok = false;
                    std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_HMI_PORT))
                }
            },
        };
        let file = |v: &mut Self, key: &str, f: &Option<S<String>>| -> Option<PathBuf> {
            let f = f.as_ref()?;
            if f.get_ref().trim().is_empty() {
                v.push(
                    item.diag(f.span(), format!("hmi › {key}"), "empty path")
                        .help("give a file path, or remove the key"),
                );
                return None;
            }
            Some(resolve(&item.src.path, f.get_ref()))
        };
        let cert = file(self, "tls_cert_file", &r.tls_cert_file);
        let key = file(self, "tls_key_file", &r.tls_key_file);
        let tls = match (&r.tls_cert_file, &r.tls_key_file, cert, key) {
            // Read (and checked) when the HMI starts, like every key file:
            // `validate` may run where the certificate is not installed yet.
            (_, _, Some(cert_file), Some(key_file)) => Some(HmiTls {
                cert_file,
                key_file,
            }),
            (Some(c), None, _, _) => {
                self.push(
                    item.diag(c.span(), "hmi › tls_cert_file", "a certificate needs its private key")
                        .help("add `tls_key_file = \"…\"` (PEM), or remove `tls_cert_file` to serve plain HTTP"),
                );
                ok = false;
                None
            }
            (None, Some(k), _, _) => {
                self.push(
                    item.diag(k.span(), "hmi › tls_key_file", "a private key needs its certificate")
                        .help("add `tls_cert_file = \"…\"` (PEM chain), or remove `tls_key_file` to serve plain HTTP"),
                );
                ok = false;
                None
            }
            _ => {
                if r.tls_cert_file.is_some() || r.tls_key_file.is_some() {
                    ok = false;
                }
                None
            }
        };
        let users_file = match file(self, "users_file", &r.users_file) {
            Some(p) => p,
            None if r.users_file.is_some() => {
                ok = false;
                PathBuf::new()
            }
            None => storage
                .and_then(|s| s.path.parent())
                .map(|d| d.join("users.db"))
                .unwrap_or_else(|| PathBuf::from("/var/lib/apos/edge/users.db")),
        };
        let metrics_token_file = file(self, "metrics_token_file", &r.metrics_token_file);
        if r.metrics_token_file.is_some() && metrics_token_file.is_none() {
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Some(Hmi {
            listen,
            tls,
            anonymous_view: r.anonymous_view.as_ref().is_some_and(|b| *b.get_ref()),
            users_file,
            metrics_token_file,
        }))
    }
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    // Port 0 (any free port) is allowed: tests use it, and the edge logs
    // the address it got.
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, DEFAULT_HMI_PORT));
    }
    Err(format!("{s:?} is not an IP address and port"))
}
