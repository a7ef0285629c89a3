//! Modbus RTU over a socat PTY pair against pymodbus's serial server: two
//! unit ids on one line, one of them dead.

use std::time::{Duration, Instant};

use drivers::{LinkState, Quality, Reason, Value};
use serde_json::json;

use crate::support::{DriverRun, ModbusPeer, PtyPair, config_header, eventually, tag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_is_backed_off_and_the_live_unit_keeps_its_rate() {
    let Some(pty) = PtyPair::start() else { return };
    let spec = json!({"transport": "rtu", "serial": pty.a, "baud": 19200, "parity": "N", "devices": [{
        "unit": 1,
        "holding": [[0, [0x42F6, 0xE979, 321]]],
        "coils": [[0, [true]]],
    }]});
    let Some(_peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &format!(
            "\n[[serial_line]]\nname = \"rs485\"\npath = {:?}\nbaud = 19200\nparity = \"none\"\n\
             unit_backoff_initial = \"2s\"\nunit_backoff_max = \"10s\"\n",
            pty.b.display().to_string()
        )
        + "\n[[device]]\nname = \"live\"\nprotocol = \"modbus-rtu\"\nline = \"rs485\"\nunit_id = 1\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n"
        + "\n[[device]]\nname = \"dead\"\nprotocol = \"modbus-rtu\"\nline = \"rs485\"\nunit_id = 2\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n"
        + &tag("temp", "live", "holding", 0, "f32", "")
        + &tag("count", "live", "holding", 2, "u16", "")
        + &tag("run", "live", "coil", 0, "bool", "")
        + &tag("ghost", "dead", "holding", 0, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("live unit read", Duration::from_secs(15), || {
        run.good_count("count") >= 3
    })
    .await;
    assert_eq!(
        run.latest("temp").unwrap().value,
        Some(Value::F64(f64::from(123.456f32)))
    );
    assert_eq!(run.latest("run").unwrap().value, Some(Value::Bool(true)));

    eventually("dead unit backed off", Duration::from_secs(10), || {
        run.handle("rs485")
            .status()
            .units
            .iter()
            .any(|u| u.device == "dead" && matches!(u.state, LinkState::BackedOff { .. }))
    })
    .await;
    let ghost: Vec<_> = run
        .samples_of("ghost")
        .into_iter()
        .map(|s| s.quality)
        .collect();
    // Why it is bad, sent once: not again at every retry after a backoff.
    assert_eq!(ghost, vec![Quality::Bad(Reason::Timeout)]);

    // With backoff, the dead unit costs one 300 ms timeout per backoff period;
    // without it, every 100 ms cycle of the live unit would wait 300 ms.
    let before = run.good_count("count");
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rate = (run.good_count("count") - before) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        rate >= 4.0,
        "live unit read {rate:.1} times/s (ideal 10; ~2.5 if every cycle waited for the dead unit)"
    );
    assert!(run.latest("count").unwrap().quality.is_good());

    // Writes share the line with the polls and land in the slave.
    let h = run.handle("rs485");
    h.write(drivers::WriteRequest::Registers {
        device: "live".into(),
        address: 2,
        values: vec![999],
    })
    .await
    .unwrap();
    eventually("written value read back", Duration::from_secs(5), || {
        run.latest("count").and_then(|s| s.value) == Some(Value::U64(999))
    })
    .await;
    let err = h
        .write(drivers::WriteRequest::Registers {
            device: "nope".into(),
            address: 0,
            values: vec![1],
        })
        .await
        .unwrap_err();
    assert_eq!(err, drivers::WriteError::UnknownDevice("nope".into()));
    // Several backoff periods later, still that one sample.
    assert_eq!(run.samples_of("ghost").len(), 1);
    run.stop().await;
}
