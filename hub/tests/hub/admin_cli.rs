//! `apos-hub user|token|audit` run as the built binary, against the users
//! file of a configuration, and while an `apos-hub run` of the same
//! configuration serves the web app: a CLI-made token works over HTTP, a
//! failed login and the loaded configuration land in the audit log, the
//! rate limit answers 429, and `audit verify` finds a changed entry.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, hub_config};

const BIN: &str = env!("CARGO_BIN_EXE_apos-hub");

fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--config")
        .arg(config)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(config: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = cli(config, args, stdin);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(config: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = cli(config, args, stdin);
    assert!(!o.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One HTTP/1.1 request on a fresh connection: (status, head, body).
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get(port: u16, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"),
    )
}

struct Running(std::process::Child);

impl Running {
    fn start(config: &Path, web_port: u16) -> Running {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Running(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", web_port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "hub web did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM (a clean stop), then make sure.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn audit_actions(config: &Path) -> Vec<String> {
    ok(config, &["audit", "list", "--limit", "1000"], None)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn cli_users_tokens_audit_and_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let config = hub_config(dir.path(), free_port(), "", 1_000_000);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[web]\nlisten = \"127.0.0.1:{web_port}\"\nusers_file = \"users.db\"\nrate_limit = 1\nrate_burst = 6\n"
    ));
    std::fs::write(&config, &text).unwrap();
    let users_db = dir.path().join("users.db");

    // Users: from stdin, generated, and refused roles.
    let out = ok(
        &config,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(out.contains("added alice (admin)"), "{out}");
    assert!(!out.contains("password:"), "{out}");
    let err = fails(
        &config,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(err.contains("viewer, analyst, engineer and admin"), "{err}");
    let out = ok(
        &config,
        &["user", "add", "carol", "--role", "analyst"],
        None,
    );
    assert!(out.contains("password: "), "{out}");
    let err = fails(
        &config,
        &[
            "user",
            "add",
            "dave",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(err.contains("at least 10"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&users_db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Tokens: capped at the user's role, expiry bounded, printed once.
    let err = fails(
        &config,
        &[
            "token", "create", "--user", "carol", "--name", "g", "--role", "engineer",
        ],
        None,
    );
    assert!(
        err.contains("cannot make a token with role engineer"),
        "{err}"
    );
    let err = fails(
        &config,
        &[
            "token", "create", "--user", "carol", "--name", "g", "--days", "400",
        ],
        None,
    );
    assert!(err.contains("1 to 365 days"), "{err}");
    let out = ok(
        &config,
        &[
            "token", "create", "--user", "carol", "--name", "grafana", "--role", "viewer",
            "--days", "30",
        ],
        None,
    );
    let token = out
        .lines()
        .find(|l| l.starts_with("apos_"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let id = token.split('_').nth(1).unwrap().to_owned();
    let secret = token.rsplit('_').next().unwrap().to_owned();
    let list = ok(&config, &["token", "list"], None);
    assert!(
        list.contains(&id) && list.contains("grafana") && list.contains("viewer"),
        "{list}"
    );
    assert!(!list.contains(&secret), "{list}");
    let file = std::fs::read(&users_db).unwrap();
    assert!(!file.windows(secret.len()).any(|w| w == secret.as_bytes()));

    {
        let _hub = Running::start(&config, web_port);
        // The CLI's token works over HTTP, as the user and role it was made for.
        let (status, _, body) = get(web_port, "/api/v1/session", Some(&token));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["user"].as_str(), v["role"].as_str()),
            (Some("carol"), Some("viewer"))
        );
        // A failed login is refused and audited.
        let body = r#"{"user":"alice","password":"not the password"}"#;
        let (status, _, _) = http(
            web_port,
            &format!(
                "POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(status, 401);
        // Tokens can be made while the hub runs (SQLite, not the DuckDB lock).
        ok(
            &config,
            &["token", "create", "--user", "alice", "--name", "ci"],
            None,
        );
        // Burst of 6 at 1/s: a quick run of requests meets 429 + Retry-After.
        let mut limited = None;
        for _ in 0..12 {
            let (status, head, body) = get(web_port, "/healthz", None);
            if status == 429 {
                limited = Some((head, body));
                break;
            }
        }
        let (head, body) = limited.expect("no 429 within 12 quick requests");
        assert!(head.contains("retry-after: "), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
        assert!(body.contains("\"status\":429"), "{body}");
    }
    let actions = audit_actions(&config);
    let count = |what: &str| actions.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count(" config_loaded "), 1, "{actions:#?}");
    assert_eq!(count(" user_add "), 2, "{actions:#?}");
    assert_eq!(count(" token_create "), 2, "{actions:#?}");
    assert!(
        actions
            .iter()
            .any(|l| l.contains(" login_failed ") && l.contains("127.0.0.1")),
        "{actions:#?}"
    );
    assert!(actions.iter().all(|l| !l.contains(&secret)));

    // The same configuration again: nothing new; a changed one: recorded.
    drop(Running::start(&config, web_port));
    assert_eq!(
        audit_actions(&config)
            .iter()
            .filter(|l| l.contains(" config_loaded "))
            .count(),
        1
    );
    std::fs::write(&config, format!("{text}\n# tuned\n")).unwrap();
    drop(Running::start(&config, web_port));
    assert_eq!(
        audit_actions(&config)
            .iter()
            .filter(|l| l.contains(" config_loaded "))
            .count(),
        2
    );

    // Removing the owner kills the token; the chain verifies until changed.
    let out = ok(&config, &["user", "remove", "carol"], None);
    assert!(out.contains("revoked 1"), "{out}");
    let users = web::users::UserStore::open(&users_db).unwrap();
    let tokens = web::tokens::TokenStore::for_users(&users).unwrap();
    assert!(
        tokens
            .authenticate(&token, hub::web::now_ms())
            .unwrap()
            .is_none()
    );
    let out = ok(&config, &["audit", "verify"], None);
    assert!(out.contains("hash chain intact"), "{out}");
    rusqlite::Connection::open(&users_db)
        .unwrap()
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2", [])
        .unwrap();
    let err = fails(&config, &["audit", "verify"], None);
    assert!(err.contains("BROKEN at entry 2"), "{err}");
}
