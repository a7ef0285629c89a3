//! `apos-hub run` as systemd runs it (`Type=notify`, `WatchdogSec=`):
//! READY=1 only once the broker's gate, the web application and the
//! control socket listen, watchdog pings at half the period, SIGHUP logged
//! and survived, STOPPING=1 and EXTEND_TIMEOUT_USEC on SIGTERM, exit 0.
//! And `apos-hub man`.

use std::process::Command;

use crate::service_support::{check_lifecycle, check_man_pages};
use crate::support::{free_port, hub_config};

const BIN: &str = env!("CARGO_BIN_EXE_apos-hub");

#[test]
fn run_speaks_the_notify_protocol_and_survives_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, web) = (free_port(), free_port());
    let path = hub_config(dir.path(), mqtt, "", 1_000_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("\n[web]\nlisten = \"127.0.0.1:{web}\"\n"));
    std::fs::write(&path, text).unwrap();
    let socket = dir.path().join("fleet.duckdb.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"]).arg(&path);
    let seen = check_lifecycle(cmd, dir.path(), &[mqtt, web], |svc| {
        // The control socket is bound before READY=1 as well.
        assert!(
            std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            "READY=1 before the control socket listens; log:\n{}",
            svc.log_text()
        );
        // SIGHUP's default action would end the hub.
        svc.signal("-HUP");
    });
    assert!(
        seen.ready_status.starts_with("ingest "),
        "STATUS with READY=1: {:?}",
        seen.ready_status
    );
    assert!(
        seen.log.contains("re-reads nothing on SIGHUP"),
        "SIGHUP is logged: {}",
        seen.log
    );
    assert!(seen.log.contains("systemd watchdog"), "{}", seen.log);
    assert!(seen.log.contains("shutting down"), "{}", seen.log);
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    check_man_pages(BIN, "apos-hub", dir.path());
}
