//! The one-command demo as a user runs it: `apos-demo` (plant → edge → hub)
//! computes OEE and forecasts live, and both reach the hub's DuckDB store,
//! read back with `apos-hub nodes` after the demo stops.

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
