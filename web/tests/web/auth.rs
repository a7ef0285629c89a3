//! Login, sessions, CSRF, roles, anonymous view, audit and the metrics token.

use crate::*;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};

#[tokio::test]
async fn login_right_and_wrong_password() {
    let app = app(Opts::default());
    let wrong = send(&app, login_req("op", "not-the-password")).await;
    let unknown = send(&app, login_req("nobody", "not-the-password")).await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");
        assert_eq!(r.json()["detail"], "wrong user name or password");
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
    let ok = send(&app, login_req("op", &password("op"))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let body = ok.json();
    assert_eq!(body["user"], "op");
    assert_eq!(body["role"], "operator");
    let csrf = body["csrf"].as_str().unwrap();
    assert!(csrf.len() >= 43);
    let expires = body["expires_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (expires - now - 24 * 3600 * 1000).abs() < 60_000,
        "{expires} vs {now}"
    );
    assert_eq!(app.core.sessions.len(), 1);
    let last_login = app.core.users.get("op").unwrap().unwrap().last_login_ms;
    assert!(last_login.is_some_and(|t| (t - now).abs() < 60_000));

    // The session answers GET /api/v1/session with the same CSRF token.
    let cookie = ok
        .header(header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let s = send(
        &app,
        req(Method::GET, "/api/v1/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.json()["csrf"], csrf);
    assert_eq!(s.json()["anonymous"], false);
    assert_eq!(s.json()["user"], "op");
}

#[tokio::test]
async fn login_needs_json() {
    let app = app(Opts::default());
    let r = send(
        &app,
        req(Method::POST, "/api/v1/session")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("user=op&password=password-of-op"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = send(
        &app,
        req(Method::POST, "/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from("{\"user\": 1}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.core.sessions.len(), 0);
}

#[tokio::test]
async fn cookie_flags() {
    for secure in [false, true] {
        let app = app(Opts {
            secure_cookie: secure,
            ..Opts::default()
        });
        let l = login(&app, "view").await;
        let parts: Vec<&str> = l.set_cookie.split("; ").collect();
        assert!(parts[0].starts_with("apos_session="));
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
            assert!(parts.contains(&flag), "{flag} missing: {}", l.set_cookie);
        }
        assert_eq!(parts.contains(&"Secure"), secure, "{}", l.set_cookie);
    }
}

#[tokio::test]
async fn throttle_after_five_failures() {
    let app = app(Opts::default());
    for i in 0..5 {
        let r = send(&app, login_req("eng", "wrong-password")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Even the right password is refused while locked out.
    let r = send(&app, login_req("eng", &password("eng"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(app.core.sessions.len(), 0);
    // Another account from the same address is not locked.
    login(&app, "op").await;
}

#[tokio::test]
async fn csrf_and_origin() {
    let app = app(Opts::default());
    let l = login(&app, "op").await;
    let post = || req(Method::POST, "/api/v1/alarms/T1/ack").header(header::COOKIE, l.cookie());
    let r = send(&app, post().body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("missing or wrong CSRF token")
    );

    let r = send(
        &app,
        post()
            .header("X-CSRF-Token", "nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The session token is not the CSRF token.
    let r = send(
        &app,
        post()
            .header("X-CSRF-Token", &l.token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = send(
        &app,
        post()
            .header("X-CSRF-Token", &l.csrf)
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["detail"].as_str().unwrap().contains("Origin"));

    for origin in [
        None,
        Some("http://gw.local:8080"),
        Some("https://gw.local:8080"),
    ] {
        let mut b = post().header("X-CSRF-Token", &l.csrf);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        let r = send(&app, b.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{origin:?}");
        assert_eq!(String::from_utf8(r.body).unwrap(), "T1 acked by op");
    }
}

fn concrete(path: &str) -> String {
    path.replace("{name}", "X")
}

#[tokio::test]
async fn every_protected_route_needs_a_session_and_the_role() {
    let app = app(Opts::default());
    let protected: Vec<_> = app
        .routes
        .iter()
        .filter(|r| r.access != web::access::Access::Public)
        .collect();
    assert!(protected.len() >= 9, "{protected:?}");
    for r in &protected {
        let resp = send(
            &app,
            req(r.method.clone(), &concrete(r.path))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{} {}",
            r.method,
            r.path
        );
    }
    let mut checked_403 = 0;
    for (user, role) in USERS {
        for r in &protected {
            let web::access::Access::Role(needed) = r.access else {
                unreachable!()
            };
            // A fresh session each time: DELETE /api/v1/session ends it.
            let l = login(&app, user).await;
            let resp = send(
                &app,
                req(r.method.clone(), &concrete(r.path))
                    .header(header::COOKIE, l.cookie())
                    .header("X-CSRF-Token", &l.csrf)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            if role.allows(needed)
                && r.path.starts_with("/api/v1/tokens")
                && r.method != Method::GET
            {
                // Without a body or an existing id: refused for what was sent, not who sent it.
                assert!(
                    resp.status == StatusCode::UNSUPPORTED_MEDIA_TYPE
                        || resp.status == StatusCode::NOT_FOUND,
                    "{user} on {} {}: {}",
                    r.method,
                    r.path,
                    resp.status
                );
            } else if role.allows(needed) {
                assert!(
                    resp.status.is_success(),
                    "{user} on {} {}: {}",
                    r.method,
                    r.path,
                    resp.status
                );
            } else {
                assert_eq!(
                    resp.status,
                    StatusCode::FORBIDDEN,
                    "{user} on {} {}",
                    r.method,
                    r.path
                );
                checked_403 += 1;
            }
        }
    }
    assert!(checked_403 >= 10, "{checked_403}");
    // Public routes answer without a session.
    let r = send(
        &app,
        req(Method::GET, "/api/v1/health")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn analyst_and_operator_share_a_rank() {
    let app = app(Opts::default());
    let l = login(&app, "ana").await;
    let r = send(
        &app,
        req(Method::POST, "/api/v1/alarms/T2/ack")
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn anonymous_view() {
    let open = app(Opts {
        anonymous_view: true,
        ..Opts::default()
    });
    let closed = app(Opts::default());
    let get = |p: &str| req(Method::GET, p).body(Body::empty()).unwrap();

    let r = send(&open, get("/api/v1/thing")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["anonymous"], true);
    assert_eq!(r.json()["role"], "viewer");
    assert_eq!(r.json()["addr"], "192.0.2.7");
    assert_eq!(
        send(&closed, get("/api/v1/thing")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let r = send(&open, get("/api/v1/session")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        serde_json::json!({"user": null, "role": "viewer", "csrf": null, "expires_ms": null, "anonymous": true})
    );
    assert_eq!(
        send(&closed, get("/api/v1/session")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Anonymous view stops at viewer reads.
    assert_eq!(
        send(&open, get("/api/v1/eng")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&open, get("/api/v1/users")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(
        &open,
        req(Method::POST, "/api/v1/alarms/T1/ack")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &open,
        req(Method::DELETE, "/api/v1/session")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A logged-in user is still themselves.
    let l = login(&open, "eng").await;
    let r = send(
        &open,
        req(Method::GET, "/api/v1/thing")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["user"], "eng");
    assert_eq!(r.json()["anonymous"], false);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = app(Opts::default());
    let l = login(&app, "view").await;
    let r = send(
        &app,
        req(Method::DELETE, "/api/v1/session")
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let sc = r.header(header::SET_COOKIE);
    assert!(
        sc.starts_with("apos_session=;") && sc.contains("Max-Age=0"),
        "{sc}"
    );
    let r = send(
        &app,
        req(Method::GET, "/api/v1/session")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn audit_records_logins_and_verifies() {
    let app = app(Opts::default());
    let bad = send(&app, login_req("mallory\nINJECT", "whatever-password")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let l = login(&app, "op").await;
    let r = send(
        &app,
        req(Method::DELETE, "/api/v1/session")
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let admin = login(&app, "admin").await;
    let get = |uri: &str| {
        req(Method::GET, uri)
            .header(header::COOKIE, admin.cookie())
            .body(Body::empty())
            .unwrap()
    };
    let page = send(&app, get("/api/v1/audit")).await;
    assert_eq!(page.status, StatusCode::OK);
    let entries = page.json()["entries"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["addr"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ip = "192.0.2.7".to_owned();
    assert_eq!(
        summary,
        [
            ("login".into(), "admin".into(), ip.clone()),
            ("logout".into(), "op".into(), ip.clone()),
            ("login".into(), "op".into(), ip.clone()),
            ("login_failed".into(), "mallory?INJECT".into(), ip.clone()),
        ]
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [4, 3, 2, 1]);

    let older = send(&app, get("/api/v1/audit?before=3&limit=1"))
        .await
        .json();
    assert_eq!(older["entries"].as_array().unwrap().len(), 1);
    assert_eq!(older["entries"][0]["seq"], 2);

    let v = send(&app, get("/api/v1/audit/verify")).await;
    assert_eq!(
        v.json(),
        serde_json::json!({"ok": true, "entries": 4, "problem": null})
    );

    app.conn
        .lock()
        .unwrap()
        .execute("UPDATE audit SET actor = 'someone' WHERE seq = 2", [])
        .unwrap();
    let v = send(&app, get("/api/v1/audit/verify")).await.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problem"]["seq"], 2);
}

#[tokio::test]
async fn metrics_bearer_token() {
    let app = app(Opts {
        metrics_token: Some("s3cret-token".into()),
        ..Opts::default()
    });
    let with = |uri: &str, auth: &str| {
        req(Method::GET, uri)
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&app, with("/metrics", "Bearer s3cret-token")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), web::metrics::CONTENT_TYPE);
    assert_eq!(
        send(&app, with("/metrics", "Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with("/api/v1/thing", "Bearer s3cret-token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let none = crate::app(Opts::default());
    assert_eq!(
        send(&none, with("/metrics", "Bearer s3cret-token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A viewer session works too.
    let l = login(&none, "view").await;
    let r = send(
        &none,
        req(Method::GET, "/metrics")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_or_forged_cookie_is_401() {
    let app = app(Opts::default());
    login(&app, "admin").await;
    let r = send(
        &app,
        req(Method::GET, "/api/v1/users")
            .header(header::COOKIE, "apos_session=forged")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_list_for_admin() {
    let app = app(Opts::default());
    let l = login(&app, "admin").await;
    let r = send(
        &app,
        req(Method::GET, "/api/v1/users")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["admin", "ana", "eng", "op", "view"]);
    assert!(
        r.body.windows(3).all(|w| w != b"phc"),
        "hashes never leave the store"
    );
}
