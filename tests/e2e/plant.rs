//! The simulated plant's PLC as a client sees it: the whole register map
//! decoded by our drivers, setpoint writes, range checks and fault switches.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apos::plant::{self, UnitState};
use drivers::{Quality, Value, WriteRequest};
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::support::{DriverRun, eventually};

async fn start(time_scale: f64) -> (plant::PlantHandle, CancellationToken) {
    let cancel = CancellationToken::new();
    let p = plant::spawn_demo_plant(
        "127.0.0.1:0".parse().unwrap(),
        7,
        time_scale,
        cancel.clone(),
    )
    .await
    .unwrap();
    (p, cancel)
}

async fn client(addr: SocketAddr) -> client::Context {
    tcp::connect_slave(addr, Slave(1)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_configuration_reads_every_register_with_plausible_values() {
    let (p, cancel) = start(10.0).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = apos::demo::edge_config(p.addr, &dir.path().join("h.db"));
    let run = DriverRun::start(&toml);
    let names: Vec<&str> = plant::register_map().iter().map(|r| r.name).collect();
    eventually("every register read", Duration::from_secs(15), || {
        names.iter().all(|n| run.good_count(n) > 0)
    })
    .await;
    let snap = p.snapshot().unwrap();
    let num = |t: &str| run.latest(t).unwrap().value.unwrap().as_f64().unwrap();
    assert!((num("heater.outlet_temp") - snap.outlet_temp).abs() < 5.0);
    assert!((num("heater.outlet_temp_sp") - 360.0).abs() < 1e-3);
    assert!(
        (num("column.top_pressure") - 1.5).abs() < 0.05,
        "scaled u16"
    );
    assert!(
        (300.0..700.0).contains(&num("column.feed_rate")),
        "BADC f32"
    );
    assert!(num("unit.energy_total") > 0.0, "f64");
    assert_eq!(num("unit.state"), f64::from(UnitState::Running as u16));
    assert_eq!(
        run.latest("unit.running").unwrap().value,
        Some(Value::Bool(true)),
        "bit of the status word"
    );
    assert_eq!(
        run.latest("unit.name").unwrap().value,
        Some(Value::String("CDU-1".into()))
    );
    assert_eq!(
        run.latest("unit.run_cmd").unwrap().value,
        Some(Value::Bool(true))
    );
    run.stop().await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setpoint_write_moves_the_process_and_out_of_range_is_refused() {
    let (p, cancel) = start(200.0).await; // 20 simulated seconds per 100 ms
    let dir = tempfile::tempdir().unwrap();
    let run = DriverRun::start(&apos::demo::edge_config(p.addr, &dir.path().join("h.db")));
    let h = &run.handles[0];
    eventually("connected", Duration::from_secs(10), || {
        h.status().connected
    })
    .await;
    let fuel0 = p.snapshot().unwrap().fuel_gas_flow;

    h.write(WriteRequest::Tag {
        tag: "heater.outlet_temp_sp".into(),
        value: Value::F64(375.0),
    })
    .await
    .unwrap();
    assert_eq!(p.snapshot().unwrap().sp.outlet_temp, 375.0);
    eventually(
        "outlet temperature follows",
        Duration::from_secs(20),
        || {
            let s = p.snapshot().unwrap();
            (s.outlet_temp - 375.0).abs() < 3.0 && s.fuel_gas_flow > fuel0
        },
    )
    .await;

    let err = h
        .write(WriteRequest::Tag {
            tag: "heater.outlet_temp_sp".into(),
            value: Value::F64(500.0),
        })
        .await
        .unwrap_err();
    assert_eq!(err, drivers::WriteError::Exception(3), "ILLEGAL DATA VALUE");
    assert_eq!(
        p.snapshot().unwrap().sp.outlet_temp,
        375.0,
        "nothing changed"
    );
    // A measurement is not writable at the PLC either.
    let mut c = client(p.addr).await;
    let r = c.write_single_register(500, 1).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    // Stop via the run coil.
    h.write(WriteRequest::Tag {
        tag: "unit.run_cmd".into(),
        value: Value::Bool(false),
    })
    .await
    .unwrap();
    eventually("unit stops", Duration::from_secs(10), || {
        p.snapshot().unwrap().state == UnitState::Stopped
    })
    .await;
    run.stop().await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_switches_drop_refuse_raise_exceptions_and_delay() {
    let (p, cancel) = start(1.0).await;
    let mut c = client(p.addr).await;
    assert!(c.read_input_registers(0, 10).await.unwrap().is_ok());

    p.faults().set_exception(Some(4));
    assert_eq!(
        c.read_input_registers(0, 10).await.unwrap(),
        Err(ExceptionCode::ServerDeviceFailure)
    );
    p.faults().set_exception(None);

    p.faults().set_delay(Duration::from_millis(300));
    let t = Instant::now();
    assert!(c.read_input_registers(0, 2).await.unwrap().is_ok());
    assert!(t.elapsed() >= Duration::from_millis(300));
    p.faults().set_delay(Duration::ZERO);

    p.faults().drop_connections();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_input_registers(0, 2))
        .await
        .unwrap();
    assert!(r.is_err(), "the connection is dropped: {r:?}");

    p.faults().refuse_connections(true);
    let mut c2 = client(p.addr).await; // TCP accepts, then the PLC hangs up
    let r = tokio::time::timeout(Duration::from_secs(5), c2.read_input_registers(0, 2))
        .await
        .unwrap();
    assert!(r.is_err(), "refused: {r:?}");
    p.faults().refuse_connections(false);
    let mut c3 = client(p.addr).await;
    assert!(c3.read_input_registers(0, 2).await.unwrap().is_ok());

    // The driver sees the exception switch as a quality.
    let dir = tempfile::tempdir().unwrap();
    let run = DriverRun::start(&apos::demo::edge_config(p.addr, &dir.path().join("h.db")));
    eventually("reading", Duration::from_secs(10), || {
        run.good_count("heater.outlet_temp") > 0
    })
    .await;
    p.faults().set_exception(Some(2));
    eventually("exception quality", Duration::from_secs(10), || {
        run.latest("heater.outlet_temp")
            .is_some_and(|s| s.quality == Quality::Bad(drivers::Reason::Exception(2)))
    })
    .await;
    run.stop().await;
    cancel.cancel();
}

#[test]
fn docs_plant_md_has_the_current_register_map() {
    let doc =
        std::fs::read_to_string(crate::support::workspace_root().join("docs/plant.md")).unwrap();
    let table = plant::registers::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/plant.md is out of date; replace its register table with:\n\n{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plant_over_opcua_subscribes_and_takes_range_checked_setpoints() {
    let (p, cancel) = start(10.0).await;
    let dir = tempfile::tempdir().unwrap();
    let ua = p
        .serve_opcua(
            "127.0.0.1:0".parse().unwrap(),
            &dir.path().join("server-pki"),
            cancel.clone(),
        )
        .await
        .unwrap();
    let cfg = crate::support::config_header()
        + &format!(
            "\n[[device]]\nname = \"plant-ua\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{}/\"\n\
             security_policy = \"None\"\npki_dir = {:?}\npublishing_interval = \"200ms\"\ntimeout = \"5s\"\n",
            ua.port(),
            dir.path().join("client-pki").display().to_string()
        )
        + "\n[[tag]]\nname = \"outlet\"\ndevice = \"plant-ua\"\nnode = \"nsu=urn:apos:plant;s=heater.outlet_temp\"\n"
        + "\n[[tag]]\nname = \"state\"\ndevice = \"plant-ua\"\nnode = \"nsu=urn:apos:plant;s=unit.state\"\n"
        + "\n[[tag]]\nname = \"sp\"\ndevice = \"plant-ua\"\nnode = \"nsu=urn:apos:plant;s=heater.outlet_temp_sp\"\nwritable = true\n";
    let run = DriverRun::start(&cfg);
    eventually("plant values over OPC UA", Duration::from_secs(60), || {
        run.good_count("outlet") >= 3
    })
    .await;
    let snap = p.snapshot().unwrap();
    let outlet = run
        .latest("outlet")
        .unwrap()
        .value
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        (outlet - snap.outlet_temp).abs() < 5.0,
        "{outlet} vs {}",
        snap.outlet_temp
    );
    assert_eq!(
        run.latest("state").unwrap().value,
        Some(Value::U64(2)),
        "running"
    );
    let h = run.handle("plant-ua");
    h.write(WriteRequest::Tag {
        tag: "sp".into(),
        value: Value::F64(370.0),
    })
    .await
    .unwrap();
    assert_eq!(p.snapshot().unwrap().sp.outlet_temp, 370.0);
    let err = h
        .write(WriteRequest::Tag {
            tag: "sp".into(),
            value: Value::F64(999.0),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BadOutOfRange"), "{err}");
    assert_eq!(p.snapshot().unwrap().sp.outlet_temp, 370.0);
    run.stop().await;

    // Engineering units, as an independent client (Python asyncua) sees them.
    if let Some(py) = crate::support::python() {
        let out = std::process::Command::new(py)
            .arg(crate::support::peers_dir().join("opcua_describe.py"))
            .arg(format!("opc.tcp://127.0.0.1:{}/", ua.port()))
            .args([
                "nsu=urn:apos:plant;s=heater.outlet_temp",
                "nsu=urn:apos:plant;s=heater.outlet_temp_sp",
                "nsu=urn:apos:plant;s=unit.state",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let described: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let cel = i64::from_be_bytes([0, 0, 0, 0, 0, b'C', b'E', b'L']);
        assert_eq!(described[0]["eu"]["display_name"], "°C", "{described:?}");
        assert_eq!(described[0]["eu"]["unit_id"], cel);
        assert_eq!(
            described[0]["eu"]["namespace"],
            "http://www.opcfoundation.org/UA/units/un/cefact"
        );
        assert_eq!(described[0]["type_definition"], "i=2368", "AnalogItemType");
        assert_eq!(
            described[1]["eu_range"],
            serde_json::json!([330.0, 385.0]),
            "{described:?}"
        );
        assert!(described[2].get("eu").is_none(), "a state code has no unit");
    } else {
        crate::support::require_peer("Python asyncua (APOS_PYTHON)");
    }
    cancel.cancel();
}
