//! The listener over real sockets: plain HTTP, HTTPS, bind and file errors.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use web::serve::{TlsFiles, serve};

fn router() -> Router {
    Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    )
}

async fn get_peer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> String {
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[tokio::test]
async fn plain_http_with_connect_info_and_graceful_stop() {
    let cancel = CancellationToken::new();
    let bound = serve(
        router(),
        "127.0.0.1:0".parse().unwrap(),
        None,
        cancel.clone(),
    )
    .await
    .unwrap();
    let resp = get_peer(
        tokio::net::TcpStream::connect(bound.local_addr)
            .await
            .unwrap(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("127.0.0.1"), "{resp}");

    // The port is taken now: a second bind fails and names the address.
    let err = serve(router(), bound.local_addr, None, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bound.local_addr.to_string()), "{err}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), bound.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(bound.local_addr)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all").unwrap();
    let cases = [
        (
            TlsFiles {
                cert: missing.clone(),
                key: fixture("key.pem"),
            },
            &missing,
        ),
        (
            TlsFiles {
                cert: fixture("cert.pem"),
                key: missing.clone(),
            },
            &missing,
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                key: fixture("key.pem"),
            },
            &garbage,
        ),
        (
            TlsFiles {
                cert: fixture("cert.pem"),
                key: garbage.clone(),
            },
            &garbage,
        ),
        // A key that is really a certificate.
        (
            TlsFiles {
                cert: fixture("cert.pem"),
                key: fixture("cert.pem"),
            },
            &fixture("cert.pem"),
        ),
    ];
    for (files, named) in cases {
        let err = serve(
            router(),
            "127.0.0.1:0".parse().unwrap(),
            Some(files),
            CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains(&named.display().to_string()), "{err}");
    }
}

#[tokio::test]
async fn https_serves_and_survives_bad_handshakes() {
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let cancel = CancellationToken::new();
    let files = TlsFiles {
        cert: fixture("cert.pem"),
        key: fixture("key.pem"),
    };
    let bound = serve(
        router(),
        "127.0.0.1:0".parse().unwrap(),
        Some(files),
        cancel.clone(),
    )
    .await
    .unwrap();

    // Garbage instead of a ClientHello: counted, and the server carries on.
    let mut junk = tokio::net::TcpStream::connect(bound.local_addr)
        .await
        .unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = junk.read_to_end(&mut sink).await;

    let pem = std::fs::read(fixture("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(bound.local_addr)
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let resp = get_peer(tls).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("127.0.0.1"), "{resp}");
    assert_eq!(
        bound
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), bound.task)
        .await
        .unwrap()
        .unwrap();
}
