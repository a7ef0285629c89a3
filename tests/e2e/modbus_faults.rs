//! Modbus devices that misbehave the way field devices do, served by peers
//! that share no code with our drivers: the raw responder
//! `tests/peers/modbus_quirks.py` (short answers, bad CRCs, closed
//! connections) and pymodbus with a sparse register map (a meter configured
//! from its datasheet, whose undefined registers answer exception 02).

use std::time::Duration;

use drivers::{LinkState, Quality, Reason, Value};
use serde_json::json;

use crate::support::{DriverRun, ModbusPeer, PtyPair, config_header, eventually, tag, tcp_device};

/// A device that answers a read of N registers with N-1 (tokio-modbus's
/// `Reader` asserted on it and killed the driver task in debug builds):
/// that request's tags go `Bad(decode)`, the rest of the device and the
/// driver go on polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_answer_marks_its_tags_bad_and_polling_goes_on() {
    let Some(short) = ModbusPeer::quirks(&json!({"units": {"1": "short"}})).await else {
        return;
    };
    let Some(fine) = ModbusPeer::quirks(&json!({"units": {"1": "ok"}})).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("shorty", short.port.unwrap(), 1, "100ms", "500ms")
        + &tcp_device("fine", fine.port.unwrap(), 1, "100ms", "500ms")
        + &tag("shorty_a", "shorty", "holding", 10, "u16", "")
        + &tag("shorty_b", "shorty", "holding", 11, "u32", "")
        + &tag("shorty_coil", "shorty", "coil", 3, "bool", "")
        + &tag("fine_a", "fine", "holding", 10, "u16", "")
        + &tag("fine_coil", "fine", "coil", 3, "bool", "");
    let run = DriverRun::start(&cfg);
    eventually("the good device is read", Duration::from_secs(10), || {
        run.good_count("fine_a") >= 3
    })
    .await;
    assert_eq!(run.latest("fine_a").unwrap().value, Some(Value::U64(10)));
    assert_eq!(
        run.latest("fine_coil").unwrap().value,
        Some(Value::Bool(true))
    );
    eventually(
        "the short answers are seen",
        Duration::from_secs(10),
        || run.latest("shorty_a").is_some() && run.latest("shorty_coil").is_some(),
    )
    .await;
    for t in ["shorty_a", "shorty_b", "shorty_coil"] {
        let s = run.latest(t).unwrap();
        assert!(
            matches!(&s.quality, Quality::Bad(Reason::Decode(m)) if m.contains("answer held")),
            "{t}: {:?}",
            s.quality
        );
        assert_eq!(run.good_count(t), 0, "{t}: no value from a short answer");
    }
    // The driver is alive: its cycles keep counting, it was never restarted.
    let before = run.handle("shorty").status();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = run.handle("shorty").status();
    assert!(after.cycles >= before.cycles + 3, "{before:?} → {after:?}");
    assert_eq!(after.restarts, 0);
    assert!(
        matches!(&after.units[0].state, LinkState::Refusing { reason } if reason.contains("malformed")),
        "a device that only answers malformed is not up: {after:?}"
    );
    assert!(!after.connected);
    // Logged once per distinct read (two: holding 10..13, coil 3), not
    // once per poll.
    let logged = crate::logs::lines("shorty")
        .into_iter()
        .filter(|l| l.contains("malformed answer"))
        .count();
    assert_eq!(logged, 2, "{:#?}", crate::logs::lines("shorty"));
    run.stop().await;
}

/// The same on a shared RS-485 line: unit 2 answers short, unit 1 must keep
/// its rate (before, the whole line's task died and both went stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_answer_on_one_rtu_unit_leaves_the_line_running() {
    let Some(pty) = PtyPair::start() else { return };
    let spec = json!({"transport": "rtu", "serial": pty.a, "units": {"1": "ok", "2": "short"}});
    let Some(_peer) = ModbusPeer::quirks(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &format!(
            "\n[[serial_line]]\nname = \"bus\"\npath = {:?}\nbaud = 19200\nparity = \"none\"\n",
            pty.b.display().to_string()
        )
        + "\n[[device]]\nname = \"healthy\"\nprotocol = \"modbus-rtu\"\nline = \"bus\"\nunit_id = 1\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n"
        + "\n[[device]]\nname = \"broken\"\nprotocol = \"modbus-rtu\"\nline = \"bus\"\nunit_id = 2\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n"
        + &tag("h_reg", "healthy", "holding", 5, "u16", "")
        + &tag("b_reg", "broken", "holding", 5, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("both units polled", Duration::from_secs(10), || {
        run.good_count("h_reg") >= 2 && run.latest("b_reg").is_some()
    })
    .await;
    let n = run.good_count("h_reg");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        run.good_count("h_reg") >= n + 5,
        "the healthy unit keeps its 100 ms rate: {n} → {}",
        run.good_count("h_reg")
    );
    assert_eq!(run.latest("h_reg").unwrap().value, Some(Value::U64(5)));
    assert!(
        matches!(
            &run.latest("b_reg").unwrap().quality,
            Quality::Bad(Reason::Decode(_))
        ),
        "{:?}",
        run.latest("b_reg")
    );
    let st = run.handle("bus").status();
    assert_eq!(st.restarts, 0);
    let state = |d: &str| {
        st.units
            .iter()
            .find(|u| u.device == d)
            .map(|u| u.state.clone())
    };
    assert_eq!(state("healthy"), Some(LinkState::Up));
    assert!(
        matches!(state("broken"), Some(LinkState::Refusing { .. })),
        "{st:?}"
    );
    run.stop().await;
}

/// A meter configured straight from its datasheet: the default `max_gap`
/// bridges registers the meter does not define, and it answers the
/// coalesced read with exception 02. Every tag must still be read, with a
/// learned plan of a few requests, logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datasheet_register_map_reads_every_tag_by_default() {
    // Defined: 0..3, 10..12, 20..24; holes of 7 and 8 registers, which the
    // default max_gap (16) bridges into one read of 0..24.
    let spec = json!({"devices": [{"unit": 1, "sparse": true,
        "holding": [[0, [0x4348, 0x0000]], [2, [230]], [10, [7]], [11, [8]], [20, [1, 2, 3, 4]]],
        "input": [[100, [55]]]}]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("meter_ds", peer.port.unwrap(), 1, "100ms", "500ms")
        + &tag("ds_power", "meter_ds", "holding", 0, "f32", "")
        + &tag("ds_volts", "meter_ds", "holding", 2, "u16", "")
        + &tag("ds_a", "meter_ds", "holding", 10, "u16", "")
        + &tag("ds_b", "meter_ds", "holding", 11, "u16", "")
        + &tag("ds_energy", "meter_ds", "holding", 20, "u64", "")
        + &tag("ds_freq", "meter_ds", "input", 100, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("every tag good", Duration::from_secs(10), || {
        [
            "ds_power",
            "ds_volts",
            "ds_a",
            "ds_b",
            "ds_energy",
            "ds_freq",
        ]
        .iter()
        .all(|t| run.latest(t).is_some_and(|s| s.quality.is_good()))
    })
    .await;
    assert_eq!(
        run.latest("ds_power").unwrap().value,
        Some(Value::F64(200.0))
    );
    assert_eq!(run.latest("ds_volts").unwrap().value, Some(Value::U64(230)));
    assert_eq!(run.latest("ds_b").unwrap().value, Some(Value::U64(8)));
    assert_eq!(
        run.latest("ds_energy").unwrap().value,
        Some(Value::U64(0x0001_0002_0003_0004))
    );
    // No tag was ever reported bad: the probing is invisible in the data.
    for t in ["ds_power", "ds_volts", "ds_a", "ds_b", "ds_energy"] {
        assert!(
            run.samples_of(t).iter().all(|s| s.quality.is_good()),
            "{t}: {:?}",
            run.samples_of(t)
        );
    }
    // The learned plan sticks: holding 0..3, 10..12, 20..24 and input 100
    // are four requests per poll, not a re-probe every time.
    let a = run.handle("meter_ds").status();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = run.handle("meter_ds").status();
    let per_cycle = (b.requests - a.requests) as f64 / (b.cycles - a.cycles) as f64;
    assert_eq!(per_cycle, 4.0, "{a:?} → {b:?}");
    assert_eq!(b.units[0].state, LinkState::Up);
    let logs = crate::logs::lines("meter_ds");
    let learned: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("smaller requests"))
        .collect();
    assert_eq!(learned.len(), 1, "logged once: {logs:#?}");
    assert!(
        learned[0].contains("holding registers 0..24 with exception 02 (illegal data address)")
            && learned[0].contains("0..3, 10..12, 20..24"),
        "{}",
        learned[0]
    );
    run.stop().await;
}

/// A device whose every answer is an exception is not "up", says so once,
/// and logs its exceptions with device, unit, function, address and code,
/// rate-limited rather than once per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_only_answers_exceptions_is_not_up_and_says_why() {
    let spec = json!({"devices": [{"unit": 3, "holding": [[0, [1, 2, 3]]],
        "exception": {"holding": 4}}]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("refuser", peer.port.unwrap(), 3, "50ms", "500ms")
        + &tag("ref_a", "refuser", "holding", 0, "u16", "")
        + &tag("ref_b", "refuser", "holding", 2, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("polled for a while", Duration::from_secs(10), || {
        run.handle("refuser").status().cycles >= 20
    })
    .await;
    let st = run.handle("refuser").status();
    assert!(!st.connected, "{st:?}");
    assert!(
        matches!(&st.units[0].state, LinkState::Refusing { reason } if reason.contains("exception 04 (server device failure)")),
        "{st:?}"
    );
    assert_eq!(
        run.latest("ref_a").unwrap().quality,
        Quality::Bad(Reason::Exception(4))
    );
    let logs = crate::logs::lines("refuser");
    let exceptions: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("answered exception 04"))
        .collect();
    // One line per distinct read (the coalesced one and the two single
    // reads it was split into), not one per poll of 20+.
    assert!(
        (1..=3).contains(&exceptions.len()),
        "rate-limited: {exceptions:#?}"
    );
    for field in ["unit=3", "function=3", "address=0", "code=4"] {
        assert!(
            exceptions[0].contains(field),
            "{field} in {}",
            exceptions[0]
        );
    }
    assert!(
        logs.iter()
            .any(|l| l.contains("answers but returns no data")),
        "{logs:#?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("device answering")),
        "never claimed to be answering: {logs:#?}"
    );
    run.stop().await;
}

/// A device that closes the connection is reported in our words, not as
/// `Success (os error 0)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_closes_the_connection_is_reported_as_such() {
    let Some(peer) = ModbusPeer::quirks(&json!({"units": {"1": "close"}})).await else {
        return;
    };
    let cfg = config_header()
        + &tcp_device("closer", peer.port.unwrap(), 1, "100ms", "500ms")
        + &tag("closer_a", "closer", "holding", 0, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("a failed poll", Duration::from_secs(10), || {
        run.handle("closer").status().last_error.is_some()
    })
    .await;
    let err = run.handle("closer").status().last_error.unwrap();
    assert_eq!(err, "the device closed the connection");
    assert_eq!(
        run.latest("closer_a").unwrap().quality,
        Quality::Bad(Reason::ConnectionLost)
    );
    let logs = crate::logs::lines("closer");
    assert!(
        !logs.iter().any(|l| l.contains("os error")),
        "no pass-through errno text: {logs:#?}"
    );
    run.stop().await;
}

/// A unit answering with a bad CRC: the message names the line and the
/// unit, and the reason is a short code, not a dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_rtu_answer_names_line_and_unit() {
    let Some(pty) = PtyPair::start() else { return };
    let spec = json!({"transport": "rtu", "serial": pty.a, "units": {"7": "crc"}});
    let Some(_peer) = ModbusPeer::quirks(&spec).await else {
        return;
    };
    let cfg = config_header()
        + &format!(
            "\n[[serial_line]]\nname = \"crcline\"\npath = {:?}\nbaud = 19200\nparity = \"none\"\n",
            pty.b.display().to_string()
        )
        + "\n[[device]]\nname = \"garbler\"\nprotocol = \"modbus-rtu\"\nline = \"crcline\"\nunit_id = 7\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n"
        + &tag("garbled", "garbler", "holding", 5, "u16", "");
    let run = DriverRun::start(&cfg);
    eventually("the bad frame seen", Duration::from_secs(10), || {
        run.latest("garbled").is_some()
    })
    .await;
    let q = run.latest("garbled").unwrap().quality;
    assert!(
        matches!(&q, Quality::Bad(Reason::Protocol(m)) if m.starts_with("corrupt answer")),
        "{q:?}"
    );
    eventually("logged", Duration::from_secs(5), || {
        crate::logs::lines("garbler")
            .iter()
            .any(|l| l.contains("line crcline, unit 7 (garbler)"))
    })
    .await;
    run.stop().await;
}
