//! The listener: plain HTTP through `axum::serve`, or HTTPS through a
//! rustls accept loop. Both give handlers `ConnectInfo<SocketAddr>`.
//!
//! [`serve`] binds before it returns, so a busy port or a bad certificate is
//! an error at start-up that names the address or the file, never a log
//! line from a background task.

use crate::WebError;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// A client that has not finished the TLS handshake by then is dropped, so
/// slow or silent clients cannot hold connection slots.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TLS connections; further clients wait in the kernel backlog.
pub const MAX_TLS_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct Bound {
    pub local_addr: SocketAddr,
    /// Ends after cancellation once the open HTTP connections have finished.
    pub task: JoinHandle<()>,
    /// Failed or timed-out TLS handshakes (always 0 for plain HTTP).
    pub tls_handshake_failures: Arc<AtomicU64>,
}

pub async fn serve(
    router: Router,
    bind: SocketAddr,
    tls: Option<TlsFiles>,
    cancel: CancellationToken,
) -> Result<Bound, WebError> {
    let acceptor = match &tls {
        Some(files) => Some(TlsAcceptor::from(Arc::new(tls_config(files)?))),
        None => None,
    };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| WebError::Bind { addr: bind, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| WebError::Bind { addr: bind, source })?;
    let failures = Arc::new(AtomicU64::new(0));
    let task = match acceptor {
        None => tokio::spawn(async move {
            let result = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
            if let Err(e) = result {
                tracing::error!(addr = %local_addr, error = %e, "HTTP server failed");
            }
        }),
        Some(acceptor) => tokio::spawn(tls_loop(
            listener,
            acceptor,
            router,
            cancel,
            failures.clone(),
        )),
    };
    tracing::info!(addr = %local_addr, tls = tls.is_some(), "web server listening");
    Ok(Bound {
        local_addr,
        task,
        tls_handshake_failures: failures,
    })
}

fn tls_err(path: &Path, reason: impl Into<String>) -> WebError {
    WebError::Tls {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Loads the certificate chain and key and builds the server config.
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, WebError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| tls_err(p, format!("cannot read: {e}")));
    let cert_pem = read(&files.cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&files.cert, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(&files.cert, "no CERTIFICATE block found"));
    }
    let key_pem = read(&files.key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(&files.key, format!("not a PEM key file: {e}")))?
        .ok_or_else(|| tls_err(&files.key, "no PRIVATE KEY block found"))?;
    // An explicit provider: the process default is ambiguous when more than
    // one rustls backend is compiled in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&files.key, format!("key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn tls_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    cancel: CancellationToken,
    failures: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TLS_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let cancel = cancel.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = tower::ServiceExt::map_request(
                router,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                },
            );
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    // Wait for the open connections to finish their graceful shutdown, like
    // axum::serve does for plain HTTP.
    let all = u32::try_from(MAX_TLS_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}
