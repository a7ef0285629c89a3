//! The operator HMI in a real browser: `apos-demo` serves it, Debian's
//! Chromium (headless, driven by `tests/browser/hmi.mjs` through
//! playwright-core) logs in, watches live values, acknowledges and shelves
//! alarms, reads trends and forecasts, scans every page with axe-core, takes
//! screenshots into `target/hmi-screenshots/` and sees the link-lost overlay
//! when the demo is killed.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`scripts/test.sh` installs them); missing ones fail under `CI=true` and
//! skip loudly elsewhere.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::browser::{self, Demo};
use crate::support::free_port;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// Raise the heater outlet setpoint (holding register 0, f32 ABCD) to 385 °C:
/// the outlet goes over `heater.outlet.hi` (382 °C) and overshoots its
/// setpoint (`heater.outlet.deviation`).
fn raise_outlet_setpoint(modbus: SocketAddr) {
    use tokio_modbus::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bits = 385.0f32.to_bits();
        let words = [(bits >> 16) as u16, (bits & 0xffff) as u16];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = async {
                let mut ctx = tcp::connect_slave(modbus, Slave(1)).await?;
                ctx.write_multiple_registers(0, &words).await??;
                let back = ctx.read_holding_registers(0, 2).await??;
                anyhow::Ok(back)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(back)) if back == words => return,
                other if Instant::now() > deadline => {
                    panic!("writing the outlet setpoint to {modbus} failed: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    });
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn the_operator_hmi_works_in_a_real_browser() {
    if !browser::ready(&["playwright-core", "axe-core"], &[]) {
        return;
    }
    let modbus = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut demo = Demo::start(Some(modbus), &[]);
    let (url, operator, admin) = demo.wait_printed("HMI URL and passwords", |t| {
        Some((
            browser::url_after(t, "operator HMI:")?,
            browser::password(t, "operator HMI:", "operator")?,
            browser::password(t, "operator HMI:", "admin")?,
        ))
    });
    raise_outlet_setpoint(modbus);

    let screenshots = browser::screenshots("hmi-screenshots");
    let shots = screenshots.display().to_string();
    let mut killed = false;
    let output = browser::run_script(
        "hmi.mjs",
        &["--url", &url, "--link-lost", "--screenshots", &shots],
        &[
            ("HMI_OPERATOR_PASSWORD", &operator),
            ("HMI_ADMIN_PASSWORD", &admin),
        ],
        SCRIPT_TIMEOUT,
        &mut demo,
        |line, demo, stdin| {
            // The script asks for the demo to die, to see the link-lost
            // overlay within 2 s of the kill time it is told.
            if line.trim() == "READY_TO_KILL" && !killed {
                killed = true;
                demo.child.kill().unwrap();
                let at = now_ms();
                let _ = demo.child.wait();
                let mut s = stdin.take().unwrap();
                writeln!(s, "{at}").unwrap();
                s.flush().unwrap();
            }
        },
    );
    assert!(killed, "the script never asked for the kill:\n{output}");
    browser::assert_screenshots(
        &screenshots,
        &[
            "overview",
            "tags",
            "trends",
            "forecasts",
            "kpis",
            "alarms",
            "diagnostics",
            "admin",
        ],
    );
}
