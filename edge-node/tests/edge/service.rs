//! `apos-edge run` as systemd runs it (`Type=notify`, `WatchdogSec=`):
//! READY=1 only once the HMI listens, watchdog pings at half the period,
//! STOPPING=1 and EXTEND_TIMEOUT_USEC on SIGTERM, exit 0; a SIGHUP right
//! after READY=1 reloads instead of killing. And `apos-edge man`.

use std::process::Command;
use std::time::Duration;

use crate::service_support::{check_lifecycle, check_man_pages};

const BIN: &str = env!("CARGO_BIN_EXE_apos-edge");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn run_speaks_the_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let hmi = free_port();
    let config = dir.path().join("edge.toml");
    // A device nobody answers for (port 1): the node runs, collects nothing.
    std::fs::write(
        &config,
        format!(
            "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"svc\"\n\
             [storage]\npath = \"history.db\"\n\
             [hmi]\nlisten = \"127.0.0.1:{hmi}\"\n\
             [[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = 1\ntimeout = \"200ms\"\n\
             [[tag]]\nname = \"t\"\ndevice = \"plc\"\narea = \"holding\"\naddress = 0\ntype = \"u16\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"]).arg(&config);
    let seen = check_lifecycle(cmd, dir.path(), &[hmi], |svc| {
        // `systemctl reload` may come the moment READY=1 is out; SIGHUP's
        // default action would end the process.
        svc.signal("-HUP");
    });
    assert!(
        seen.ready_status.starts_with("collecting from 1 device"),
        "STATUS with READY=1: {:?}",
        seen.ready_status
    );
    assert!(
        seen.log.contains("reloading configuration"),
        "SIGHUP reloads: {}",
        seen.log
    );
    assert!(seen.log.contains("systemd watchdog"), "{}", seen.log);
    assert!(seen.log.contains("shutting down"), "{}", seen.log);
    // The history was opened where the config says and closed cleanly.
    assert!(dir.path().join("history.db").exists());
}

/// Without NOTIFY_SOCKET (not started by systemd) `run` logs nothing about
/// a watchdog even when WATCHDOG_USEC is set, and stops as before.
#[test]
fn run_without_notify_socket_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"quiet\"\n\
         [storage]\npath = \"history.db\"\n\
         [[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = 1\n\
         [[tag]]\nname = \"t\"\ndevice = \"plc\"\narea = \"holding\"\naddress = 0\ntype = \"u16\"\n",
    )
    .unwrap();
    let out = {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env("WATCHDOG_USEC", "2000000")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait_with_output().unwrap()
    };
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains("watchdog"), "{log}");
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    check_man_pages(BIN, "apos-edge", dir.path());
}
