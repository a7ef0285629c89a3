//! The client's PKI directory: what `apos-edge opcua trust` works on.
//!
//! Layout (async-opcua's): `own/cert.der`, `private/private.pem`,
//! `trusted/`, `rejected/`. A server certificate the client does not trust
//! is written to `rejected/` on connect; trusting it means moving it to
//! `trusted/` — a deliberate act, never automatic.

use std::path::{Path, PathBuf};

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
    std::fs::create_dir_all(&dir)?;
    let to = dir.join(&cert.name);
    std::fs::rename(&cert.path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lists_and_trusts_rejected_certificates() {
        let pki = tempfile_dir();
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

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("apos-pki-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
