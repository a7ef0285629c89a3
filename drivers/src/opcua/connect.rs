//! Opening an OPC UA session, with our own deadline on every step, and
//! explaining what went wrong in words an integrator can act on.
//!
//! We drive every (re)connect ourselves. async-opcua 0.19's automatic
//! reconnect has no timeout on the TCP connect nor on the Hello/Acknowledge
//! exchange: a server that dies silently (power loss, no FIN or RST) while
//! a reconnect waits for it leaves the client waiting forever. So a lost
//! connection ends the session ([`Live`] stops polling the library's event
//! loop at `ConnectionLost`, before it starts its own reconnect), and the
//! driver opens a new one after its backoff, through [`open`]: endpoint
//! discovery, our check of the server certificate, connect and activation,
//! each bounded by the device's timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firmware_config::{Identity, OpcUaEndpoint, SecretSource, SecurityMode, SecurityPolicy};
use futures::StreamExt;
use opcua::client::{Client, ClientBuilder, IdentityToken, Session, SessionPollResult};
use opcua::types::{MessageSecurityMode, StatusCode};
use tokio::sync::mpsc;

use super::pki;

/// Why a session could not be opened, and whether retrying soon can help
/// (a rejected password or certificate cannot: it waits the longest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub message: String,
    pub permanent: bool,
}

impl ConnectError {
    fn transient(message: String) -> Self {
        Self {
            message,
            permanent: false,
        }
    }
    fn permanent(message: String) -> Self {
        Self {
            message,
            permanent: true,
        }
    }
    fn status(status: StatusCode, url: &str, ep: &OpcUaEndpoint, app_uri: &str) -> Self {
        Self {
            message: explain(status, url, ep, app_uri),
            permanent: is_permanent(status),
        }
    }
}

/// The async-opcua client for `endpoint`: our own certificate in
/// `pki_dir` (see [`pki::ensure_own_certificate`]), no trust on first use,
/// no automatic reconnect, the server certificate checked by us.
pub(crate) fn build_client(
    endpoint: &OpcUaEndpoint,
    identity: &pki::OwnIdentity,
    timeout: Duration,
) -> Result<Client, String> {
    pki::ensure_own_certificate(&endpoint.pki_dir, identity)?;
    ClientBuilder::new()
        .application_name(&identity.common_name)
        .application_uri(&identity.application_uri)
        .product_uri("urn:apos:edge")
        .session_name(&identity.common_name)
        .pki_dir(&endpoint.pki_dir)
        .create_sample_keypair(false)
        .trust_server_certs(false)
        // Dates, host name and URI are checked by `pki::check_server_certificate`
        // (async-opcua's own checks depend on SAN order); the trust list
        // and pinning to the checked certificate stay on.
        .verify_server_certs(false)
        .session_retry_limit(0)
        .session_timeout(u32::try_from(endpoint.session_timeout.as_millis()).unwrap_or(u32::MAX))
        .keep_alive_interval(endpoint.keep_alive)
        .max_failed_keep_alive_count(2)
        .request_timeout(timeout)
        .client()
        .map_err(|e| format!("invalid OPC UA client settings: {}", e.join("; ")))
}

/// The user identity of `endpoint`, reading the password from its source.
pub(crate) fn identity_token(endpoint: &OpcUaEndpoint) -> Result<IdentityToken, String> {
    match &endpoint.identity {
        Identity::Anonymous => Ok(IdentityToken::Anonymous),
        Identity::UserName { user, password } => {
            let secret = match password {
                SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                    format!("environment variable {var} (the OPC UA password) is not set")
                })?,
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "cannot read the OPC UA password file {}: {e}",
                            path.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            };
            Ok(IdentityToken::UserName(
                user.clone(),
                opcua::client::Password::new(secret),
            ))
        }
        Identity::X509 {
            certificate,
            private_key,
        } => IdentityToken::new_x509_path(certificate, private_key).map_err(|e| {
            format!(
                "cannot load the OPC UA user certificate {} with key {}: {e} \
                 (the certificate must be DER or PEM, the key a PEM private key)",
                certificate.display(),
                private_key.display()
            )
        }),
    }
}

/// An active session, and the connection events of its event loop.
pub(crate) struct Live {
    pub session: Arc<Session>,
    /// `ConnectionLost` (the last event: the loop is not polled further)
    /// or a fatal error. Nothing else is forwarded.
    pub events: mpsc::UnboundedReceiver<Result<SessionPollResult, StatusCode>>,
    _event_loop: AbortOnDrop,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    /// Close the session politely, while its loop still runs (a normal
    /// shutdown). After a loss there is nothing to close: just drop it.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session.disconnect()).await;
    }
}

/// Open and activate a session: GetEndpoints, our check of the server's
/// certificate, connect, activate; each step within `timeout`.
pub(crate) async fn open(
    client: &mut Client,
    ep_cfg: &OpcUaEndpoint,
    app_uri: &str,
    timeout: Duration,
) -> Result<Live, ConnectError> {
    let identity = identity_token(ep_cfg).map_err(ConnectError::permanent)?;
    let url = ep_cfg.endpoint_url.as_str();
    let endpoints =
        match tokio::time::timeout(timeout, client.get_server_endpoints_from_url(url)).await {
            Err(_) => {
                return Err(ConnectError::transient(format!(
                    "{url}: no answer to GetEndpoints within {timeout:?}"
                )));
            }
            Ok(Err(e)) => return Err(ConnectError::status(e.status(), url, ep_cfg, app_uri)),
            Ok(Ok(e)) => e,
        };
    let policy = opcua::crypto::SecurityPolicy::from_uri(policy_uri(ep_cfg.security_policy));
    // By security only: the URL the server advertises may name a host,
    // port or path that a NAT, a proxy or a gateway rewrites; the one in
    // the configuration is where it is reached. A matching path wins.
    let candidates: Vec<&opcua::types::EndpointDescription> = endpoints
        .iter()
        .filter(|e| {
            e.security_mode == mode(ep_cfg.security_mode)
                && opcua::crypto::SecurityPolicy::from_uri(e.security_policy_uri.as_ref()) == policy
        })
        .collect();
    let chosen = candidates
        .iter()
        .find(|e| url_path(e.endpoint_url.as_ref()) == url_path(url))
        .or(candidates.first())
        .map(|e| (*e).clone());
    let Some(mut endpoint) = chosen else {
        let offered: Vec<String> = endpoints
            .iter()
            .map(|e| {
                let p = e.security_policy_uri.as_ref();
                format!(
                    "{} with {:?}",
                    p.rsplit('#').next().unwrap_or(p),
                    e.security_mode
                )
            })
            .collect();
        return Err(ConnectError::permanent(format!(
            "{url} offers no endpoint with {:?} and {:?}; it offers {}: set `security_policy` and `security_mode` to one of those",
            ep_cfg.security_policy,
            ep_cfg.security_mode,
            offered.join(", ")
        )));
    };
    if ep_cfg.security_policy != SecurityPolicy::None {
        let host = pki::url_host(url).unwrap_or_default();
        pki::check_server_certificate(
            &ep_cfg.pki_dir,
            endpoint.server_certificate.as_ref(),
            host,
            endpoint.server.application_uri.as_ref(),
            SystemTime::now(),
        )
        .map_err(|e| ConnectError::permanent(format!("{url}: {e}")))?;
    }
    // Connect where the configuration says, not where the server claims
    // to be (it may advertise a name or port that a NAT or firewall hides).
    endpoint.endpoint_url = url.into();
    let (session, event_loop) = client
        .connect_to_endpoint_directly(endpoint, identity)
        .map_err(|e| ConnectError::status(e.status(), url, ep_cfg, app_uri))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    // The event loop drives the whole session (every answer comes through
    // it), so it must never wait for the driver: the rare connection events
    // go out on an unbounded channel. It is not polled after
    // `ConnectionLost`, so the library's own reconnect never starts.
    let task = tokio::spawn(async move {
        let stream = event_loop.enter();
        futures::pin_mut!(stream);
        while let Some(r) = stream.next().await {
            let last = matches!(r, Err(_) | Ok(SessionPollResult::ConnectionLost(_)));
            let wanted = last || matches!(r, Ok(SessionPollResult::Reconnected(_)));
            if wanted && tx.send(r).is_err() || last {
                break;
            }
        }
    });
    let guard = AbortOnDrop(task);
    let activated = async {
        loop {
            match events.recv().await {
                Some(Ok(SessionPollResult::Reconnected(_))) => return Ok(()),
                Some(Ok(SessionPollResult::ConnectionLost(s))) | Some(Err(s)) => return Err(s),
                Some(Ok(_)) => {}
                None => return Err(StatusCode::BadConnectionClosed),
            }
        }
    };
    match tokio::time::timeout(timeout, activated).await {
        Err(_) => Err(ConnectError::transient(format!(
            "{url}: session not established within {timeout:?} (TCP connect, handshake or activation did not complete)"
        ))),
        Ok(Err(s)) => Err(ConnectError::status(s, url, ep_cfg, app_uri)),
        Ok(Ok(())) => Ok(Live {
            session,
            events,
            _event_loop: guard,
        }),
    }
}

/// The path of an `opc.tcp://host:port/path` URL, without trailing `/`.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or("", |i| &rest[i..])
        .trim_end_matches('/')
}

/// What a lost connection's status means.
pub(crate) fn lost(status: StatusCode) -> String {
    match status.sub_code().name() {
        // async-opcua closes with Good when it gives up on keep-alives.
        "Good" => "the server stopped answering (keep-alive requests unanswered)".to_owned(),
        "BadCommunicationError" => "the server closed the connection".to_owned(),
        "BadConnectionClosed" => "the connection was reset or timed out".to_owned(),
        _ => format!("the connection was lost: {}", status_name(status)),
    }
}

pub(crate) fn status_name(s: StatusCode) -> String {
    format!("{} ({:#010x})", s.sub_code().name(), s.bits())
}

fn policy_uri(p: SecurityPolicy) -> &'static str {
    match p {
        SecurityPolicy::None => "http://opcfoundation.org/UA/SecurityPolicy#None",
        SecurityPolicy::Basic256Sha256 => {
            "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
        }
        SecurityPolicy::Aes128Sha256RsaOaep => {
            "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"
        }
        SecurityPolicy::Aes256Sha256RsaPss => {
            "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss"
        }
    }
}

fn mode(m: SecurityMode) -> MessageSecurityMode {
    match m {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

/// Errors that retrying will not fix: wait the maximum backoff.
pub(crate) fn is_permanent(status: StatusCode) -> bool {
    let name = status.sub_code().name();
    name.starts_with("BadCertificate")
        || matches!(
            name,
            "BadUserAccessDenied"
                | "BadIdentityTokenRejected"
                | "BadIdentityTokenInvalid"
                | "BadSecurityChecksFailed"
                | "BadSecurityPolicyRejected"
        )
}

/// What an operator should do about a status a connect attempt ended with.
///
/// Our own check of the server's certificate runs before we connect, so a
/// certificate status here is the *server's* verdict on *our* certificate.
fn explain(status: StatusCode, url: &str, ep: &OpcUaEndpoint, app_uri: &str) -> String {
    let own = own_cert_text(&ep.pki_dir);
    let hint = match status.sub_code().name() {
        "BadUserAccessDenied" | "BadIdentityTokenRejected" | "BadIdentityTokenInvalid" => {
            match &ep.identity {
                Identity::X509 { certificate, .. } => format!(
                    "the server rejected the user certificate {}; ask its administrator to map this certificate to a user",
                    certificate.display()
                ),
                Identity::Anonymous => "the server refuses anonymous sessions; configure `user` + a password source, or `user_certificate` + `user_key`".to_string(),
                Identity::UserName { .. } => "the server rejected the user name or password; check `user` and the password source".to_string(),
            }
        }
        "BadSecurityChecksFailed"
        | "BadCertificateUntrusted"
        | "BadCertificateInvalid"
        | "BadCertificateIssuerUntrusted"
        | "BadCertificateRevoked"
        | "BadCertificateUseNotAllowed" => format!(
            "the server refused this node's certificate ({own}); add it to the server's trust list \
             (its administrator, or the server's PKI `trusted` folder), then this node retries by itself"
        ),
        "BadCertificateUriInvalid" => format!(
            "the server says this node's certificate does not match its application URI {app_uri} ({own}); \
             if the server pinned an older certificate of this node, trust the current one there"
        ),
        "BadCertificateTimeInvalid" => format!(
            "the server finds this node's certificate expired or not yet valid ({own}); check both clocks"
        ),
        "BadCertificateHostNameInvalid" => format!(
            "the server does not accept the host names in this node's certificate ({own})"
        ),
        "BadTcpEndpointUrlInvalid"
        | "BadConnectionRejected"
        | "BadNotConnected"
        | "BadConnectionClosed"
        | "BadCommunicationError"
        | "BadTimeout" => "check that the server is running and reachable".to_string(),
        _ => String::new(),
    };
    if hint.is_empty() {
        format!("{url}: {}", status_name(status))
    } else {
        format!("{url}: {}: {hint}", status_name(status))
    }
}

/// `<pki>/own/cert.der, thumbprint …`, for messages.
fn own_cert_text(pki: &Path) -> String {
    let path = pki.join("own/cert.der");
    match std::fs::read(&path)
        .ok()
        .and_then(|d| opcua::crypto::X509::from_der(&d).ok())
    {
        Some(x) => format!(
            "{}, thumbprint {}",
            path.display(),
            x.thumbprint().as_hex_string()
        ),
        None => path.display().to_string(),
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_and_certificate_failures_are_not_retried_fast() {
        assert!(is_permanent(StatusCode::BadUserAccessDenied));
        assert!(is_permanent(StatusCode::BadCertificateUntrusted));
        assert!(!is_permanent(StatusCode::BadCommunicationError));
    }

    #[test]
    fn a_keep_alive_loss_is_not_reported_as_good() {
        assert!(!lost(StatusCode::Good).contains("Good"));
        assert!(lost(StatusCode::Good).contains("stopped answering"));
    }
}
