//! The client's PKI directory: this node's own certificate, the server
//! certificates it trusts, and what `apos-edge opcua trust` works on.
//!
//! Layout (async-opcua's): `own/cert.der`, `private/private.pem`,
//! `trusted/`, `rejected/`. A server certificate the client does not trust
//! is written to `rejected/` on connect; trusting it means moving it to
//! `trusted/`, a deliberate act, never automatic.
//!
//! Why we do some of async-opcua's work ourselves:
//! - **Our certificate.** async-opcua's sample key pair says `ST=Dublin,
//!   C=IE`, is valid for a year, is never reissued when the application URI
//!   changes (a node then fails with `BadCertificateUriInvalid` against
//!   every strict server), and its key file gets the umask's permissions.
//!   [`ensure_own_certificate`] makes one that names this node, reissues it
//!   when the URI no longer matches, and keeps the key 0600 in 0700
//!   directories whatever the umask.
//! - **The server's certificate.** async-opcua 0.19 checks the host name
//!   against every subjectAltName entry but the first, and the application
//!   URI against the first only: node-opcua's certificates (DNS, IP, URI)
//!   fail although they are correct. [`check_server_certificate`] does the
//!   same checks in any SAN order (trust list, validity, host name,
//!   application URI); the client then connects to exactly that
//!   certificate with async-opcua's own date/host/URI checks off (its trust
//!   list check and certificate pinning stay on).

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use opcua::crypto::{CertificateStore, X509, X509Data};
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A certificate waiting in `rejected/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub path: PathBuf,
    /// File name, which async-opcua makes `CN=<name> [<sha1 thumbprint>].der`.
    pub name: String,
}

/// Certificates in `<pki>/rejected`, sorted by name.
pub fn rejected(pki: &Path) -> std::io::Result<Vec<Rejected>> {
    let dir = pki.join("rejected");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<Rejected> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "der"))
        .map(|e| Rejected {
            name: e.file_name().to_string_lossy().into_owned(),
            path: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Move a rejected certificate to `<pki>/trusted`. Returns its new path.
pub fn trust(pki: &Path, cert: &Rejected) -> std::io::Result<PathBuf> {
    let dir = pki.join("trusted");
    make_private_dir(&dir)?;
    let to = dir.join(&cert.name);
    std::fs::rename(&cert.path, &to)?;
    Ok(to)
}

/// Create `dir` (and missing parents) and make it 0700, whatever the umask.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Who this node is, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnIdentity {
    /// `urn:apos:edge:<site>:<node>`: the same for `run` and `browse`, so
    /// one PKI directory holds one identity.
    pub application_uri: String,
    /// Subject common name, e.g. `APOS edge north.gw-1`.
    pub common_name: String,
    /// Subject organizational unit: the site.
    pub organizational_unit: String,
}

impl OwnIdentity {
    /// The identity of edge node `node` at site `site`.
    pub fn of_node(site: &str, node: &str) -> Self {
        Self {
            application_uri: format!("urn:apos:edge:{site}:{node}"),
            common_name: format!("APOS edge {site}.{node}"),
            organizational_unit: site.to_owned(),
        }
    }
}

/// The identity of the certificate already in `pki`, if there is one:
/// tools such as `browse` adopt it, so they never replace the node's own
/// certificate (which servers may have been told to trust).
pub fn existing_identity(pki: &Path) -> Option<OwnIdentity> {
    if !pki.join("private/private.pem").exists() {
        return None;
    }
    let der = std::fs::read(pki.join("own/cert.der")).ok()?;
    let uri = Sans::of(&der).ok()?.uris.into_iter().next()?;
    let cn = X509::from_der(&der)
        .ok()
        .and_then(|x| x.common_name().ok())
        .map(|c| c.trim_start_matches("CN=").to_owned())
        .unwrap_or_else(|| uri.clone());
    Some(OwnIdentity {
        application_uri: uri,
        common_name: cn,
        organizational_unit: String::new(),
    })
}

/// What [`ensure_own_certificate`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCertificate {
    pub cert_path: PathBuf,
    /// SHA-1 thumbprint, lowercase hex, as servers show it.
    pub thumbprint: String,
    /// Whether it was made now (first start, or the URI changed).
    pub created: bool,
    /// When the URI changed: where the old certificate and key were moved.
    pub replaced: Option<PathBuf>,
}

/// Validity of the certificates we make. Renewal is manual (delete
/// `own/cert.der` and `private/private.pem`, restart): servers must trust
/// the new one, so it should not happen silently every year.
pub const OWN_CERT_DAYS: u32 = 5 * 365;

/// Make sure `<pki>` holds a certificate and key for `id`: create them on
/// first start, reissue them when the existing certificate was made for
/// another application URI (the old pair is kept as `*.old-<thumbprint>`),
/// and in every case leave the directories 0700 and the key 0600.
pub fn ensure_own_certificate(pki: &Path, id: &OwnIdentity) -> Result<OwnCertificate, String> {
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    for dir in [
        pki.to_path_buf(),
        pki.join("own"),
        pki.join("private"),
        pki.join("trusted"),
        pki.join("rejected"),
    ] {
        make_private_dir(&dir).map_err(|e| io("cannot create the PKI directory", &dir, e))?;
    }
    let cert_path = pki.join("own/cert.der");
    let key_path = pki.join("private/private.pem");
    let mut replaced = None;
    if cert_path.exists() && key_path.exists() {
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("cannot restrict", &key_path, e))?;
        let der = std::fs::read(&cert_path).map_err(|e| io("cannot read", &cert_path, e))?;
        let uris = Sans::of(&der).map(|s| s.uris).unwrap_or_default();
        if uris.contains(&id.application_uri) {
            let x509 = X509::from_der(&der)
                .map_err(|e| format!("{} is not a certificate: {e}", cert_path.display()))?;
            return Ok(OwnCertificate {
                cert_path,
                thumbprint: x509.thumbprint().as_hex_string(),
                created: false,
                replaced: None,
            });
        }
        // Made for another identity (another site/node id, or by an older
        // version for `browse`): strict servers refuse it with
        // BadCertificateUriInvalid. Keep it, and make the right one.
        let old = X509::from_der(&der)
            .map(|x| x.thumbprint().as_hex_string())
            .unwrap_or_else(|_| "unreadable".into());
        let old_cert = pki.join(format!("own/cert.der.old-{old}"));
        let old_key = pki.join(format!("private/private.pem.old-{old}"));
        std::fs::rename(&cert_path, &old_cert).map_err(|e| io("cannot move", &cert_path, e))?;
        std::fs::rename(&key_path, &old_key).map_err(|e| io("cannot move", &key_path, e))?;
        tracing::warn!(
            pki = %pki.display(),
            was = ?uris,
            now = %id.application_uri,
            old = %old_cert.display(),
            "the OPC UA certificate in this PKI was made for another application URI; a new one \
             was issued, and servers that trusted the old one must now trust {}",
            cert_path.display()
        );
        replaced = Some(old_cert);
    } else {
        // Half a pair is no pair: make both anew (keeping nothing that
        // could be mistaken for the current key).
        for p in [&cert_path, &key_path] {
            if p.exists() {
                let aside = p.with_extension(format!(
                    "{}.orphan",
                    p.extension().and_then(|e| e.to_str()).unwrap_or("")
                ));
                std::fs::rename(p, &aside).map_err(|e| io("cannot move", p, e))?;
            }
        }
    }
    let data = X509Data {
        key_size: 2048,
        common_name: id.common_name.clone(),
        organization: "APOS".into(),
        organizational_unit: id.organizational_unit.clone(),
        // No invented country or state: the subject says what we know.
        country: String::new(),
        state: String::new(),
        alt_host_names: X509Data::alt_host_names(&id.application_uri, None, true, true, true),
        certificate_duration_days: OWN_CERT_DAYS,
    };
    let (cert, key) = X509::cert_and_pkey(&data)
        .map_err(|e| format!("cannot create this node's OPC UA certificate: {e}"))?;
    let pem = key
        .to_der()
        .map_err(|e| format!("cannot encode the private key: {e}"))?
        .to_pem("PRIVATE KEY", x509_cert::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode the private key: {e}"))?;
    // The key is created 0600 (umask can only remove bits) and set so
    // explicitly: it never exists with wider permissions.
    write_new(&key_path, pem.as_bytes(), 0o600)?;
    let der = cert
        .to_der()
        .map_err(|e| format!("cannot encode the certificate: {e}"))?;
    write_new(&cert_path, &der, 0o644)?;
    tracing::info!(
        uri = %id.application_uri,
        subject = %cert.subject_name(),
        cert = %cert_path.display(),
        thumbprint = %cert.thumbprint().as_hex_string(),
        "created this node's OPC UA certificate; servers that check client certificates must trust it"
    );
    Ok(OwnCertificate {
        cert_path,
        thumbprint: cert.thumbprint().as_hex_string(),
        created: true,
        replaced,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// The subjectAltName entries of a DER certificate, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
}

impl Sans {
    pub fn of(der: &[u8]) -> Result<Sans, String> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("not a DER X.509 certificate: {e}"))?;
        let mut out = Sans::default();
        let Some((_, san)) = cert
            .tbs_certificate
            .get::<SubjectAltName>()
            .map_err(|e| format!("unreadable subjectAltName: {e}"))?
        else {
            return Ok(out);
        };
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => out.dns.push(d.as_str().to_owned()),
                GeneralName::UniformResourceIdentifier(u) => out.uris.push(u.as_str().to_owned()),
                GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                    4 => {
                        let b: [u8; 4] = ip.as_bytes().try_into().unwrap_or_default();
                        out.ips.push(IpAddr::from(b));
                    }
                    16 => {
                        let b: [u8; 16] = ip.as_bytes().try_into().unwrap_or_default();
                        out.ips.push(IpAddr::from(b));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether `host` (a DNS name or an IP literal, IPv6 with or without
    /// brackets) is one of these names, whatever their order.
    pub fn has_host(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip) || self.dns.iter().any(|d| d == bare),
            Err(_) => self.dns.iter().any(|d| d.eq_ignore_ascii_case(bare)),
        }
    }
}

/// Why a server certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerCertError {
    #[error(
        "the server's certificate ({subject}, thumbprint {thumbprint}) is not trusted: it was saved as {saved}; if this is the right server, trust it with `apos-edge opcua trust` (or move the file to {trusted})"
    )]
    Untrusted {
        subject: String,
        thumbprint: String,
        saved: String,
        trusted: String,
    },
    #[error("the server's certificate is not valid until {0} (check the clocks of both machines)")]
    NotYetValid(String),
    #[error("the server's certificate expired on {0}: the server needs a new one")]
    Expired(String),
    #[error(
        "the host name {host:?} of the endpoint URL is not in the server's certificate (it names {names}); connect by one of those names, or give the server a certificate for this one"
    )]
    HostName { host: String, names: String },
    #[error(
        "the server's certificate is for application URI(s) {found:?}, but the server says it is {claimed:?}"
    )]
    ApplicationUri { claimed: String, found: Vec<String> },
    #[error("the server sent an unreadable certificate: {0}")]
    Unreadable(String),
    #[error("cannot use the PKI directory: {0}")]
    Io(String),
}

/// Check a server certificate before connecting to it: trusted (in
/// `trusted/` under async-opcua's file name, byte for byte; otherwise it is
/// saved in `rejected/`), valid now, issued for `host` and for the
/// application URI the server claims. SAN entries may come in any order.
pub fn check_server_certificate(
    pki: &Path,
    der: &[u8],
    host: &str,
    application_uri: &str,
    now: SystemTime,
) -> Result<(), ServerCertError> {
    let x509 = X509::from_der(der).map_err(|e| ServerCertError::Unreadable(e.to_string()))?;
    let name = CertificateStore::cert_file_name(&x509);
    let trusted_dir = pki.join("trusted");
    let trusted = trusted_dir.join(&name);
    let rejected = pki.join("rejected").join(&name);
    let io = |e: std::io::Error| ServerCertError::Io(e.to_string());
    let is_trusted = match std::fs::read(&trusted) {
        Ok(bytes) => bytes == der,
        Err(_) => {
            // Trusted under another file name (copied in by hand): give it
            // the name async-opcua looks for.
            let other = std::fs::read_dir(&trusted_dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == der));
            if other {
                write_new(&trusted, der, 0o644).map_err(ServerCertError::Io)?;
            }
            other
        }
    };
    if !is_trusted {
        make_private_dir(&pki.join("rejected")).map_err(io)?;
        std::fs::write(&rejected, der).map_err(io)?;
        return Err(ServerCertError::Untrusted {
            subject: x509.subject_name(),
            thumbprint: x509.thumbprint().as_hex_string(),
            saved: rejected.display().to_string(),
            trusted: trusted_dir.display().to_string(),
        });
    }
    // async-opcua refuses a certificate that is in both folders.
    if rejected.exists() {
        std::fs::remove_file(&rejected).map_err(io)?;
    }
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| ServerCertError::Unreadable(e.to_string()))?;
    let validity = &cert.tbs_certificate.validity;
    let since = validity.not_before.to_unix_duration();
    let until = validity.not_after.to_unix_duration();
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let text =
        |d: Duration| humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + d).to_string();
    if now_unix < since {
        return Err(ServerCertError::NotYetValid(text(since)));
    }
    if now_unix > until {
        return Err(ServerCertError::Expired(text(until)));
    }
    let sans = Sans::of(der).map_err(ServerCertError::Unreadable)?;
    if !sans.has_host(host) {
        let mut names: Vec<String> = sans.dns.clone();
        names.extend(sans.ips.iter().map(IpAddr::to_string));
        return Err(ServerCertError::HostName {
            host: host.to_owned(),
            names: names.join(", "),
        });
    }
    if !application_uri.is_empty() && !sans.uris.iter().any(|u| u == application_uri) {
        return Err(ServerCertError::ApplicationUri {
            claimed: application_uri.to_owned(),
            found: sans.uris,
        });
    }
    Ok(())
}

/// The host part of an `opc.tcp://host:port/path` URL.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("apos-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn lists_and_trusts_rejected_certificates() {
        let pki = tempdir("list");
        assert!(rejected(&pki).unwrap().is_empty());
        std::fs::create_dir_all(pki.join("rejected")).unwrap();
        std::fs::write(pki.join("rejected/CN=b [22].der"), b"x").unwrap();
        std::fs::write(pki.join("rejected/CN=a [11].der"), b"y").unwrap();
        std::fs::write(pki.join("rejected/notes.txt"), b"z").unwrap();
        let r = rejected(&pki).unwrap();
        assert_eq!(
            r.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["CN=a [11].der", "CN=b [22].der"]
        );
        let to = trust(&pki, &r[0]).unwrap();
        assert_eq!(std::fs::read(to).unwrap(), b"y");
        assert_eq!(rejected(&pki).unwrap().len(), 1);
        std::fs::remove_dir_all(&pki).unwrap();
    }

    /// One certificate per identity: made once with our subject, key 0600
    /// in 0700 folders, kept while the URI matches, reissued when it does
    /// not (the `browse`/`run` fight), the old pair kept aside.
    #[test]
    fn own_certificate_names_the_node_and_follows_its_uri() {
        let pki = tempdir("own");
        // An integrator's loose folder permissions are tightened.
        std::fs::create_dir_all(pki.join("private")).unwrap();
        std::fs::set_permissions(pki.join("private"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let a = OwnIdentity::of_node("north", "gw-1");
        let made = ensure_own_certificate(&pki, &a).unwrap();
        assert!(made.created);
        let der = std::fs::read(&made.cert_path).unwrap();
        let x = X509::from_der(&der).unwrap();
        let subject = x.subject_name();
        assert!(subject.contains("APOS edge north.gw-1"), "{subject}");
        assert!(
            !subject.contains("Dublin") && !subject.contains("IE"),
            "{subject}"
        );
        let sans = Sans::of(&der).unwrap();
        assert_eq!(sans.uris, ["urn:apos:edge:north:gw-1"]);
        assert!(sans.has_host("localhost") && sans.has_host("127.0.0.1"));
        assert_eq!(mode(&pki.join("private/private.pem")), 0o600);
        for d in ["", "own", "private", "trusted", "rejected"] {
            assert_eq!(mode(&pki.join(d)), 0o700, "{d}");
        }
        // Same identity: the same certificate.
        let again = ensure_own_certificate(&pki, &a).unwrap();
        assert!(!again.created);
        assert_eq!(again.thumbprint, made.thumbprint);
        // Another URI: reissued, the old pair kept.
        let b = OwnIdentity::of_node("north", "gw-2");
        let re = ensure_own_certificate(&pki, &b).unwrap();
        assert!(re.created);
        assert_ne!(re.thumbprint, made.thumbprint);
        let old = re.replaced.unwrap();
        assert_eq!(std::fs::read(old).unwrap(), der);
        assert_eq!(
            Sans::of(&std::fs::read(&re.cert_path).unwrap())
                .unwrap()
                .uris,
            ["urn:apos:edge:north:gw-2"]
        );
        std::fs::remove_dir_all(&pki).unwrap();
    }

    /// A certificate with its SANs in node-opcua's order (DNS, IP, URI)
    /// passes; wrong host, wrong URI, untrusted and expired ones do not,
    /// each with its own error.
    #[test]
    fn server_certificates_are_checked_whatever_the_san_order() {
        let pki = tempdir("server");
        // A "server" certificate with its SANs as node-opcua orders them:
        // DNS, IP, then the URI.
        let mut data = X509Data {
            key_size: 2048,
            common_name: "peer".into(),
            organization: "t".into(),
            organizational_unit: String::new(),
            country: String::new(),
            state: String::new(),
            alt_host_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()].into(),
            certificate_duration_days: 30,
        };
        data.alt_host_names.add_uri("urn:peer:server");
        let (cert, _) = X509::cert_and_pkey(&data).unwrap();
        let der = cert.to_der().unwrap();
        let sans = Sans::of(&der).unwrap();
        assert_eq!(sans.uris, ["urn:peer:server"]);
        let now = SystemTime::now();
        let check = |host: &str, uri: &str| check_server_certificate(&pki, &der, host, uri, now);
        // Unknown: saved in rejected/, not trusted.
        assert!(matches!(
            check("localhost", "urn:peer:server"),
            Err(ServerCertError::Untrusted { .. })
        ));
        let r = rejected(&pki).unwrap();
        assert_eq!(r.len(), 1);
        trust(&pki, &r[0]).unwrap();
        assert_eq!(check("localhost", "urn:peer:server"), Ok(()));
        assert_eq!(check("LOCALHOST", "urn:peer:server"), Ok(()));
        assert_eq!(check("127.0.0.1", "urn:peer:server"), Ok(()));
        assert!(matches!(
            check("10.0.0.9", "urn:peer:server"),
            Err(ServerCertError::HostName { .. })
        ));
        assert!(matches!(
            check("localhost", "urn:other"),
            Err(ServerCertError::ApplicationUri { .. })
        ));
        let later = now + Duration::from_secs(40 * 86_400);
        assert!(matches!(
            check_server_certificate(&pki, &der, "localhost", "urn:peer:server", later),
            Err(ServerCertError::Expired(_))
        ));
        std::fs::remove_dir_all(&pki).unwrap();
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("opc.tcp://plc-1:4840/ua"), Some("plc-1"));
        assert_eq!(url_host("opc.tcp://10.0.0.5:4840"), Some("10.0.0.5"));
        assert_eq!(url_host("opc.tcp://[::1]:4840/x"), Some("::1"));
        assert_eq!(url_host("opc.tcp://host"), Some("host"));
        assert_eq!(url_host("nonsense"), None);
    }
}
