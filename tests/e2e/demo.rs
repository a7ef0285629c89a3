//! The one-command demo as a user runs it: `apos-demo` (plant → edge → hub)
//! computes OEE and forecasts live, and both reach the hub's DuckDB store,
//! read back with `apos-hub nodes` after the demo stops. While it runs, the
//! hub's printed URL and analyst password work: a login (curl), `/readyz`,
//! `/metrics`, the fleet API, `apos-hub nodes` through the control socket,
//! and the live WebSocket brings the demo edge's events.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{bin, free_port};

#[test]
fn the_demo_computes_oee_and_forecasts_live_and_they_reach_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    // Started from a shell with `umask 000`, as a careless one would: every
    // file the demo creates must still be private (checked at the end).
    let mut child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(bin("apos-demo"))
        .args(["--dir"])
        .arg(dir.path().join("demo"))
        .args(["--modbus", &format!("127.0.0.1:{}", free_port())])
        .args(["--opcua", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
        .args(["--hmi", &format!("127.0.0.1:{}", free_port())])
        .args(["--web", &format!("127.0.0.1:{}", free_port())])
        .args(["--print-every", "2s"])
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
        .spawn()
        .unwrap();
    // OEE from the first slices; forecasts once 2 minutes of history exist.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut oee_line = None;
    let mut forecast_line = None;
    while Instant::now() < deadline && (oee_line.is_none() || forecast_line.is_none()) {
        std::thread::sleep(Duration::from_secs(2));
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the demo exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("live:")) {
            let kpis_at_hub = line
                .split(" KPI values")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            if kpis_at_hub > 0
                && line
                    .split("OEE 5 min ")
                    .nth(1)
                    .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_digit()))
            {
                oee_line.get_or_insert_with(|| line.to_string());
            }
            if line.contains("forecast fuel_gas_flow +30 s") {
                forecast_line.get_or_insert_with(|| line.to_string());
            }
        }
    }
    if oee_line.is_some() {
        hub_web_is_live(
            &std::fs::read_to_string(&log).unwrap_or_default(),
            &dir.path().join("demo/fleet.duckdb"),
        );
    }
    // Stop it as a user would (Ctrl-C), so the hub closes its database.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the demo did not stop within 30 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let oee_line = oee_line.unwrap_or_else(|| panic!("no live OEE reached the hub:\n{text}"));
    assert!(
        oee_line.contains("availability ") && oee_line.contains("coverage "),
        "{oee_line}"
    );
    assert!(
        forecast_line.is_some(),
        "no live forecast within 5 minutes:\n{text}"
    );

    let out = Command::new(bin("apos-hub"))
        .args(["nodes", "--db"])
        .arg(dir.path().join("demo/fleet.duckdb"))
        .output()
        .unwrap();
    let nodes = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{nodes}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oee = nodes
        .lines()
        .find(|l| l.contains("kpi ") && l.contains("cdu.oee [5m]"))
        .unwrap_or_else(|| panic!("no cdu.oee at the hub:\n{nodes}"));
    let value: f64 = oee
        .split("] ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no OEE value at the hub: {oee}"));
    assert!((0.0..=1.5).contains(&value), "{oee}");
    for kpi in [
        "cdu.oee [shift",
        "cdu.throughput [5m]",
        "cdu.sec [5m]",
        "heater.efficiency [5m]",
    ] {
        assert!(nodes.contains(kpi), "{kpi} missing at the hub:\n{nodes}");
    }
    let forecasts = nodes
        .lines()
        .find(|l| l.contains("forecasts "))
        .unwrap_or_default();
    assert!(
        forecasts.contains("plant-heater-fuel"),
        "no forecast at the hub:\n{nodes}"
    );
    files_are_private(&dir.path().join("demo"));
}

/// The hub's web application as the demo prints it, while the demo runs.
fn hub_web_is_live(log: &str, db: &std::path::Path) {
    let url = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("hub dashboards and API:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no hub URL printed:\n{log}"))
        .trim_end_matches('/')
        .to_string();
    // The analyst's line follows the hub URL (the HMI has its own admin).
    let hub_part = log.split("hub dashboards and API:").nth(1).unwrap_or("");
    let password = hub_part
        .lines()
        .find(|l| l.trim_start().starts_with("log in as analyst "))
        .and_then(|l| l.split(" password ").nth(1))
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|| panic!("no analyst password printed:\n{log}"));
    let jar = tempfile::NamedTempFile::new().unwrap();
    let curl = |args: &[&str]| -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-m", "20", "-w", "\n%{http_code}", "-c"])
            .arg(jar.path())
            .arg("-b")
            .arg(jar.path())
            .args(args)
            .output()
            .expect("curl (Debian package curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    };
    let (code, body) = curl(&[&format!("{url}/metrics")]);
    assert_eq!(code, 401, "metrics need a login: {body}");
    let login = serde_json::json!({"user": "analyst", "password": password}).to_string();
    let (code, body) = curl(&[
        "-H",
        "content-type: application/json",
        "--data",
        &login,
        &format!("{url}/api/v1/session"),
    ]);
    assert_eq!(code, 200, "login as analyst: {body}");
    let (code, body) = curl(&[&format!("{url}/readyz")]);
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = curl(&[&format!("{url}/metrics")]);
    assert_eq!(code, 200, "{metrics}");
    let stored: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("apos_hub_batches_stored_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no batch counter:\n{metrics}"));
    assert!(stored > 0.0, "{metrics}");
    assert!(
        metrics.contains("apos_hub_commit_seconds_count"),
        "{metrics}"
    );
    let (code, fleet) = curl(&[&format!("{url}/api/v1/monitoring/fleet")]);
    if code != 404 {
        assert_eq!(code, 200, "{fleet}");
        assert!(fleet.contains("cdu-edge-1"), "{fleet}");
    }
    // `apos-hub nodes` while the demo's hub holds the database.
    let out = Command::new(bin("apos-hub"))
        .args(["nodes", "--db"])
        .arg(db)
        .output()
        .unwrap();
    let nodes = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && nodes.starts_with("demo-refinery/cdu-edge-1"),
        "{nodes}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Live: the demo edge's next commit or status arrives on the socket.
    let cookie = std::fs::read_to_string(jar.path())
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 7 && f[5] == "apos_session").then(|| f[6].to_string())
        })
        .expect("a session cookie");
    let host = url.trim_start_matches("http://");
    let events = live_frames(host, &cookie, Duration::from_secs(60), |f| {
        f["type"] == "node" && f["node"] == "cdu-edge-1"
    });
    assert_eq!(events[0]["type"], "hello", "{events:?}");
    assert!(
        events
            .iter()
            .any(|f| f["type"] == "node" && f["site"] == "demo-refinery"),
        "{events:?}"
    );
}

/// A minimal WebSocket client (std only): the frames of `/api/v1/live`
/// until `done` says so or `within` passes.
fn live_frames(
    host: &str,
    cookie: &str,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    write!(
        s,
        "GET /api/v1/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: apos_session={cookie}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let end = Instant::now() + within;
    let mut frames = Vec::new();
    while Instant::now() < end {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).unwrap();
        match h[0] & 0x0f {
            1 => {
                let f: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                let stop = done(&f);
                frames.push(f);
                if stop {
                    break;
                }
            }
            8 => panic!("the hub closed the live socket: {payload:?}"),
            _ => {}
        }
    }
    frames
}

/// Every file under `dir`: keys, passwords and private keys 0600 at most,
/// databases 0640 at most, nothing writable by others (certificates are
/// public and may be readable).
fn files_are_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o777;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p.clone());
                assert_eq!(
                    mode & 0o002,
                    0,
                    "{} is writable by others ({mode:o})",
                    p.display()
                );
                continue;
            }
            seen += 1;
            assert_eq!(
                mode & 0o002,
                0,
                "{} is writable by others ({mode:o})",
                p.display()
            );
            let secret = name.ends_with(".key")
                || name.ends_with(".pass")
                || p.components().any(|c| c.as_os_str() == "private");
            if secret {
                assert_eq!(mode & 0o077, 0, "secret {} is {mode:o}", p.display());
            }
            if name.contains(".db") || name.contains(".duckdb") {
                assert_eq!(mode & 0o137, 0, "database {} is {mode:o}", p.display());
            }
        }
    }
    assert!(seen >= 8, "only {seen} files under {}", dir.display());
}
