//! API tokens through the router: made with a login, shown once, used as
//! `Authorization: Bearer`, capped at the maker's role, audited on writes,
//! dead when revoked, expired or when the owner goes.

use crate::*;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use web::access::Role;
use web::tokens::NewToken;

fn bearer(method: Method, uri: &str, token: &str) -> axum::http::request::Builder {
    req(method, uri).header(header::AUTHORIZATION, format!("Bearer {token}"))
}

/// POST /api/v1/tokens as `l` with `body`.
async fn make(app: &App, l: &Login, body: serde_json::Value) -> Reply {
    send(
        app,
        req(Method::POST, "/api/v1/tokens")
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn token_of(app: &App, user: &str, body: serde_json::Value) -> (String, String) {
    let l = login(app, user).await;
    let r = make(app, &l, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let j = r.json();
    (
        j["id"].as_str().unwrap().to_owned(),
        j["token"].as_str().unwrap().to_owned(),
    )
}

async fn whoami(app: &App, token: &str) -> Reply {
    send(
        app,
        bearer(Method::GET, "/api/v1/thing", token)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

fn actions(app: &App) -> Vec<(String, String, String, String)> {
    app.core
        .audit
        .list(None, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor, e.target, e.detail))
        .collect()
}

#[tokio::test]
async fn lifecycle_create_use_list_revoke() {
    let app = app(Opts::default());
    let l = login(&app, "ana").await;
    let r = make(&app, &l, serde_json::json!({"name": "grafana"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let j = r.json();
    let (id, token) = (j["id"].as_str().unwrap(), j["token"].as_str().unwrap());
    assert!(token.starts_with(&format!("apos_{id}_")), "{token}");
    assert_eq!(j["role"], "analyst");
    let days = (j["expires_ms"].as_i64().unwrap() - now_ms()) as f64 / 86_400_000.0;
    assert!((89.9..=90.0).contains(&days), "{days}");

    let me = whoami(&app, token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"], "ana");
    assert_eq!(me.json()["role"], "analyst");
    assert_eq!(me.json()["anonymous"], false);
    // The session route says who the token is, without a CSRF token.
    let s = send(
        &app,
        bearer(Method::GET, "/api/v1/session", token)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .json();
    assert_eq!(
        (&s["user"], &s["role"], &s["csrf"], &s["anonymous"]),
        (
            &serde_json::json!("ana"),
            &serde_json::json!("analyst"),
            &serde_json::Value::Null,
            &serde_json::json!(false)
        )
    );

    // Listed without the secret, with the time of use.
    let list = send(
        &app,
        req(Method::GET, "/api/v1/tokens")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let text = String::from_utf8(list.body.clone()).unwrap();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "{text}");
    let items = list.json();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["name"], "grafana");
    assert_eq!(items[0]["owner"], "ana");
    assert!(items[0]["last_used_ms"].as_i64().is_some());

    let r = send(
        &app,
        req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let gone = whoami(&app, token).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert!(gone.json()["detail"].as_str().unwrap().contains("revoked"));

    let a = actions(&app);
    assert!(
        a.iter()
            .any(|(act, actor, target, detail)| act == "token_create"
                && actor == "ana"
                && target == id
                && detail.contains("name=grafana role=analyst")),
        "{a:?}"
    );
    assert!(
        a.iter()
            .any(|(act, actor, target, _)| act == "token_revoke" && actor == "ana" && target == id),
        "{a:?}"
    );
    // Reads with a token are not audited (only writes are).
    assert!(!a.iter().any(|(act, ..)| act == "token_write"), "{a:?}");
    // The secret is nowhere in the audit log either.
    assert!(!format!("{a:?}").contains(secret));
}

#[tokio::test]
async fn expired_and_owner_removed_tokens_stop_working() {
    let app = app(Opts::default());
    let tokens = app.core.tokens.clone().unwrap();
    let day = 86_400_000;
    let new = |days| NewToken {
        name: "old".into(),
        role: None,
        expires_days: Some(days),
    };
    // Made 31 days ago for 30 days.
    let old = tokens.create("eng", &new(30), now_ms() - 31 * day).unwrap();
    assert_eq!(
        whoami(&app, &old.token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = tokens.create("eng", &new(30), now_ms()).unwrap();
    assert_eq!(whoami(&app, &fresh.token).await.status, StatusCode::OK);

    app.core.users.remove("eng").unwrap();
    let r = whoami(&app, &fresh.token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A new account with the same name does not inherit the token.
    app.core
        .users
        .add("eng", Role::Engineer, &password("eng"))
        .unwrap();
    assert_eq!(
        whoami(&app, &fresh.token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Forged and malformed tokens are 401, never a fall-through to a session.
    let l = login(&app, "admin").await;
    let (id, _) = token_of(&app, "admin", serde_json::json!({"name": "x"})).await;
    for forged in [
        format!("apos_{id}_{}", "0".repeat(64)),
        format!("apos_{id}_short"),
        "apos_".to_owned(),
    ] {
        let r = send(
            &app,
            bearer(Method::GET, "/api/v1/thing", &forged)
                .header(header::COOKIE, l.cookie())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{forged}");
    }
}

#[tokio::test]
async fn role_is_capped_at_the_makers() {
    let app = app(Opts::default());
    let view = login(&app, "view").await;
    let r = make(
        &app,
        &view,
        serde_json::json!({"name": "g", "role": "engineer"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json());
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("cannot make a token with role engineer")
    );
    // A viewer may make a viewer token for read-only tools.
    let (_, viewer_token) = token_of(&app, "view", serde_json::json!({"name": "grafana"})).await;
    assert_eq!(whoami(&app, &viewer_token).await.json()["role"], "viewer");
    let ack = |t: &str| {
        bearer(Method::POST, "/api/v1/alarms/T1/ack", t)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&app, ack(&viewer_token)).await.status,
        StatusCode::FORBIDDEN
    );
    // An engineer's viewer token is a viewer too.
    let (_, eng_viewer) = token_of(
        &app,
        "eng",
        serde_json::json!({"name": "g", "role": "viewer"}),
    )
    .await;
    assert_eq!(
        send(&app, ack(&eng_viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    let (_, eng) = token_of(&app, "eng", serde_json::json!({"name": "ci"})).await;
    assert_eq!(send(&app, ack(&eng)).await.status, StatusCode::OK);
    // Admin routes refuse an engineer token.
    let r = send(
        &app,
        bearer(Method::PUT, "/api/v1/eng", &eng)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Demoting the owner lowers the token.
    app.core.users.set_role("eng", Role::Viewer).unwrap();
    assert_eq!(send(&app, ack(&eng)).await.status, StatusCode::FORBIDDEN);

    // Expiry bounds and body rules.
    let a = login(&app, "admin").await;
    for (body, status) in [
        (serde_json::json!({"name": "x", "expires_days": 366}), 400),
        (serde_json::json!({"name": "x", "expires_days": 0}), 400),
        (serde_json::json!({"name": ""}), 400),
        (serde_json::json!({"name": "x", "role": "root"}), 400),
        (serde_json::json!({"name": "x", "expiry": 3}), 400),
        (serde_json::json!({"name": "x", "expires_days": 365}), 201),
    ] {
        let r = make(&app, &a, body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {:?}", r.json());
        if status >= 400 {
            assert_eq!(r.header(header::CONTENT_TYPE), "application/problem+json");
        }
    }
}

#[tokio::test]
async fn bearer_skips_csrf_but_writes_are_audited_first() {
    let app = app(Opts::default());
    let (id, token) = token_of(&app, "op", serde_json::json!({"name": "script"})).await;
    // No CSRF header, a foreign Origin: a bearer request carries no cookie to forge.
    let r = send(
        &app,
        bearer(Method::POST, "/api/v1/alarms/T1/ack", &token)
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(String::from_utf8(r.body).unwrap(), "T1 acked by op");
    let a = actions(&app);
    assert!(
        a.iter()
            .any(|(act, actor, target, detail)| act == "token_write"
                && actor == "op"
                && target == "POST /api/v1/alarms/T1/ack"
                && detail.contains(&format!("token={id}"))),
        "{a:?}"
    );
    // The same write with the cookie session still needs its CSRF token.
    let l = login(&app, "op").await;
    let r = send(
        &app,
        req(Method::POST, "/api/v1/alarms/T1/ack")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A token cannot mint tokens (a leaked one would live forever).
    let r = send(
        &app,
        bearer(Method::POST, "/api/v1/tokens", &token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name":"more"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // No audit entry, no write: with the audit table gone the write is refused.
    app.conn
        .lock()
        .unwrap()
        .execute_batch("ALTER TABLE audit RENAME TO audit_moved")
        .unwrap();
    let r = send(
        &app,
        bearer(Method::POST, "/api/v1/alarms/T2/ack", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!String::from_utf8(r.body).unwrap().contains("acked"));
    // Reads still work.
    assert_eq!(whoami(&app, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn own_tokens_listed_and_revoked_admin_sees_all() {
    let app = app(Opts::default());
    let (ana_id, ana_token) = token_of(&app, "ana", serde_json::json!({"name": "a"})).await;
    let (eng_id, _) = token_of(&app, "eng", serde_json::json!({"name": "e"})).await;
    let list = |l: &Login| {
        req(Method::GET, "/api/v1/tokens")
            .header(header::COOKIE, l.cookie())
            .body(Body::empty())
            .unwrap()
    };
    let ids = |r: Reply| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let ana = login(&app, "ana").await;
    assert_eq!(ids(send(&app, list(&ana)).await), vec![ana_id.clone()]);
    let admin = login(&app, "admin").await;
    let all = ids(send(&app, list(&admin)).await);
    assert!(all.contains(&ana_id) && all.contains(&eng_id), "{all:?}");
    // A token lists its owner's tokens.
    let r = send(
        &app,
        bearer(Method::GET, "/api/v1/tokens", &ana_token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(ids(r), vec![ana_id.clone()]);

    let delete = |l: &Login, id: &str| {
        req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
            .header(header::COOKIE, l.cookie())
            .header("X-CSRF-Token", &l.csrf)
            .body(Body::empty())
            .unwrap()
    };
    // Someone else's token is not found; an admin may revoke it.
    assert_eq!(
        send(&app, delete(&ana, &eng_id)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, delete(&admin, &eng_id)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, delete(&admin, &eng_id)).await.status,
        StatusCode::NOT_FOUND
    );
    // Revoking with the token itself: audited as a token write and a revocation.
    let r = send(
        &app,
        bearer(
            Method::DELETE,
            &format!("/api/v1/tokens/{ana_id}"),
            &ana_token,
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let a = actions(&app);
    assert!(
        a.iter()
            .any(|(act, _, t, _)| act == "token_write" && t.starts_with("DELETE /api/v1/tokens/"))
    );
    assert_eq!(
        a.iter().filter(|(act, ..)| act == "token_revoke").count(),
        2
    );
}

#[tokio::test]
async fn only_hashes_reach_the_users_file() {
    let app = app(Opts::default());
    let (_, token) = token_of(&app, "admin", serde_json::json!({"name": "x"})).await;
    let (_, token2) = token_of(&app, "view", serde_json::json!({"name": "y"})).await;
    assert_eq!(whoami(&app, &token).await.status, StatusCode::OK);
    let bytes = std::fs::read(app.core.users.path()).unwrap();
    for t in [&token, &token2] {
        let secret = t.rsplit('_').next().unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret in the users file"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(app.core.users.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
