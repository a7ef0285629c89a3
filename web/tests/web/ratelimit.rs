//! Rate limits through the router: per client address (tower_governor
//! layer) and per API token (the guard), and the client address behind a
//! trusted reverse proxy, which the login throttle and the audit log use.

use crate::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use std::net::SocketAddr;
use web::ratelimit::RateConfig;

const PROXY: &str = "10.0.0.1";

fn limited(per_second: u32, burst: u32, proxies: &[&str]) -> App {
    app(Opts {
        anonymous_view: true,
        rate: Some(RateConfig {
            per_second,
            burst,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        }),
        ..Opts::default()
    })
}

/// A request from TCP peer `peer` (an IP), with an optional X-Forwarded-For.
fn from(peer: &str, uri: &str, xff: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::HOST, "hub.local")
        .extension(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40000)));
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    b.body(Body::empty()).unwrap()
}

fn assert_429(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");
    let secs: u64 = r.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
    assert_eq!(r.json()["status"], 429);
}

#[tokio::test]
async fn address_limit_answers_429_after_the_burst() {
    let app = limited(1, 3, &[]);
    for i in 0..3 {
        let r = send(&app, from("192.0.2.10", "/api/v1/health", None)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let r = send(&app, from("192.0.2.10", "/api/v1/health", None)).await;
    assert_429(&r);
    assert!(r.json()["detail"].as_str().unwrap().contains("address"));
    // Pages outside the route table count too.
    assert_429(&send(&app, from("192.0.2.10", "/extra", None)).await);
    // Another address has its own bucket.
    assert_eq!(
        send(&app, from("192.0.2.11", "/api/v1/health", None))
            .await
            .status,
        StatusCode::OK
    );
    // An IPv6 host cannot escape by rotating within its /64.
    for i in 0..3 {
        let peer = format!("2001:db8:1:2::{i:x}");
        assert_eq!(
            send(&app, from(&peer, "/api/v1/health", None)).await.status,
            StatusCode::OK
        );
    }
    assert_429(&send(&app, from("2001:db8:1:2::ff", "/api/v1/health", None)).await);
    // The bucket refills at the rate.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        send(&app, from("192.0.2.10", "/api/v1/health", None))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let app = limited(1, 2, &[PROXY]);
    let addr = |r: Reply| r.json()["addr"].as_str().unwrap_or("").to_owned();
    // Through the proxy: the client it names.
    let r = send(
        &app,
        from(PROXY, "/api/v1/thing", Some("198.51.100.1, 203.0.113.5")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(addr(r), "203.0.113.5");
    // Straight from a client: its made-up header is ignored.
    let r = send(
        &app,
        from("192.0.2.20", "/api/v1/thing", Some("203.0.113.99")),
    )
    .await;
    assert_eq!(addr(r), "192.0.2.20");

    // Buckets follow the forwarded client: two clients behind one proxy.
    let r = send(&app, from(PROXY, "/api/v1/health", Some("203.0.113.5"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_429(&send(&app, from(PROXY, "/api/v1/health", Some("203.0.113.5"))).await);
    assert_eq!(
        send(&app, from(PROXY, "/api/v1/health", Some("203.0.113.6")))
            .await
            .status,
        StatusCode::OK
    );
    // A client cannot escape its bucket by prepending addresses through the proxy.
    assert_429(
        &send(
            &app,
            from(PROXY, "/api/v1/health", Some("1.2.3.4, 203.0.113.5")),
        )
        .await,
    );
    // Nor by sending the header straight to us.
    for i in 0..2 {
        send(
            &app,
            from(
                "192.0.2.21",
                "/api/v1/health",
                Some(&format!("198.51.100.{i}")),
            ),
        )
        .await;
    }
    assert_429(
        &send(
            &app,
            from("192.0.2.21", "/api/v1/health", Some("198.51.100.77")),
        )
        .await,
    );
}

#[tokio::test]
async fn login_throttle_and_audit_see_the_forwarded_client() {
    let app = limited(1000, 1000, &[PROXY]);
    let login_from = |client: &str, pw: &str| {
        let mut r = login_req("op", pw);
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(PROXY.parse().unwrap(), 40000)));
        r.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        r
    };
    for _ in 0..20 {
        let r = send(&app, login_from("203.0.113.5", "wrong-password!")).await;
        assert!(
            r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::TOO_MANY_REQUESTS,
            "{}",
            r.status
        );
    }
    let failed = app
        .core
        .audit
        .list(None, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "login_failed")
        .collect::<Vec<_>>();
    assert!(failed.len() >= 5, "{failed:?}");
    assert!(failed.iter().all(|e| e.addr == "203.0.113.5"), "{failed:?}");
}

#[tokio::test]
async fn each_api_token_has_its_own_bucket() {
    let app = limited(1, 3, &[]);
    let tokens = app.core.tokens.clone().unwrap();
    let new = web::tokens::NewToken {
        name: "grafana".into(),
        role: None,
        expires_days: None,
    };
    let t = tokens
        .create("view", &new, crate::tokens::now_ms())
        .unwrap();
    let t2 = tokens
        .create("view", &new, crate::tokens::now_ms())
        .unwrap();
    let with = |peer: &str, token: &str| {
        let mut r = from(peer, "/api/v1/thing", None);
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        r
    };
    // From three addresses (each well within its own limit) the token's
    // fourth request is over the token's limit.
    for i in 0..3 {
        let r = send(&app, with(&format!("192.0.2.{}", 30 + i), &t.token)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let r = send(&app, with("192.0.2.40", &t.token)).await;
    assert_429(&r);
    assert!(r.json()["detail"].as_str().unwrap().contains("API token"));
    // Another token of the same user is not affected.
    assert_eq!(
        send(&app, with("192.0.2.41", &t2.token)).await.status,
        StatusCode::OK
    );
    // Made-up token ids are refused (401) and count against the address only.
    let fake = format!("apos_{}_{}", "1".repeat(16), "2".repeat(64));
    for _ in 0..3 {
        assert_eq!(
            send(&app, with("192.0.2.50", &fake)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_429(&send(&app, with("192.0.2.50", &fake)).await);
}
