//! Config layer tests: the shipped example parses to what it says, and bad
//! files produce the located, actionable errors we promise (snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use firmware_config::{
    Area, DataChangeDeadband, DataType, Identifier, Identity, Namespace, NodeRef, OpcUaMode,
    Parity, SecretSource, SecurityMode, SecurityPolicy, Transport, WordOrder, load, load_str,
};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config/edge.example.toml")
}

/// `text` (the example, changed) written as `edge.toml` in a fresh
/// directory beside the files the example includes.
fn example_dir_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.path().join("tags")).unwrap();
    std::fs::create_dir_all(dir.path().join("registers")).unwrap();
    for f in ["tags/column.toml", "registers/column-plc.csv"] {
        std::fs::copy(example().parent().unwrap().join(f), dir.path().join(f)).unwrap();
    }
    (dir, path)
}

fn errors(name: &str, text: &str) -> String {
    match load_str(Path::new(name), text) {
        Ok(_) => panic!("{name} should not validate"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn example_config_parses_with_includes_and_csv_import() {
    let cfg = load(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.node.site_id, "refinery-north");
    assert_eq!(cfg.node.node_id, "cdu-gw-01");
    assert_eq!(cfg.devices.len(), 4);
    assert_eq!(cfg.devices[0].name, "heater-plc");
    assert_eq!(cfg.devices[0].limits.max_gap, 8);
    assert_eq!(cfg.poll_groups["fast"], Duration::from_millis(250));
    // main file + include + csv
    assert_eq!(cfg.sources.len(), 3);
    let sync = cfg.sync.as_ref().expect("[sync] in the example");
    assert_eq!(
        (sync.broker_host.as_str(), sync.broker_port),
        ("hub.example", 8883)
    );
    assert_eq!(
        sync.tls,
        Some(Some(PathBuf::from("/etc/apos/keys/hub-ca.crt")))
    );
    assert_eq!(
        sync.windows,
        vec![Duration::from_secs(10), Duration::from_secs(60)]
    );
    assert_eq!(sync.outbox_max_bytes, 256 << 20);
    assert_eq!(sync.when_full, firmware_config::WhenFull::DropOldest);
    assert_eq!(cfg.storage.retention_bytes, 2 << 30);
    assert_eq!(
        cfg.storage.aggregates_retention,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(cfg.storage.min_raw_span, Duration::from_secs(86_400));
    assert_eq!(cfg.storage.reserve_bytes, 32 << 20);
    // Alarms, validated into the state machine's types.
    use models::alarm::machine::{Deadband, Detector, Priority, Side};
    assert_eq!(cfg.alarms.len(), 3);
    let hi = &cfg.alarms[0];
    assert_eq!(
        (hi.name.as_str(), hi.tag.as_str()),
        ("heater.outlet.hi", "heater.outlet_temp")
    );
    assert_eq!(
        hi.spec.detector,
        Detector::Limit {
            side: Side::Above,
            limit: 365.0,
            deadband: Deadband::Absolute(2.0)
        }
    );
    assert_eq!(
        (hi.spec.on_delay_ms, hi.spec.priority),
        (10_000, Priority::High)
    );
    let flame = &cfg.alarms[1];
    assert!(flame.spec.latched);
    assert_eq!(
        flame.suppress_when,
        Some(("heater.burner_on".to_string(), 0.0))
    );
    assert_eq!(cfg.alarms[2].model.as_deref(), Some("heater-outlet"));
    assert_eq!(
        sync.key,
        SecretSource::File(PathBuf::from("/etc/apos/keys/edge-node.key"))
    );
    let forecast = cfg.forecast.as_ref().expect("[forecast] in the example");
    assert_eq!(
        (
            forecast.models_dir.as_path(),
            forecast.interval,
            forecast.max_hold,
            forecast.check_every,
            forecast.explain_max_features
        ),
        (
            Path::new("/var/lib/apos/edge/models"),
            Duration::from_secs(60),
            Duration::from_secs(900),
            Duration::from_secs(5),
            64
        )
    );
    let kpi = cfg.kpi.as_ref().expect("[[kpi]] in the example");
    assert_eq!(kpi.calendar.time_zone, "Europe/Berlin");
    assert_eq!(kpi.calendar.shifts.len(), 3);
    assert_eq!(
        kpi.calendar.planned_stops[0].days,
        [true, true, true, true, true, false, false]
    );
    assert_eq!(
        (kpi.slice, kpi.max_hold),
        (Duration::from_secs(60), Duration::from_secs(300))
    );
    let names: Vec<&str> = kpi.kpis.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cdu.oee",
            "cdu.throughput",
            "heater.sec",
            "cdu.reliability",
            "heater.excess_air"
        ]
    );
    let labels: Vec<String> = kpi.kpis[0].windows.iter().map(|w| w.label()).collect();
    assert_eq!(labels, ["1h", "shift", "day", "week"]);
    match &kpi.kpis[0].kind {
        models::kpi::KpiKind::Oee {
            state,
            good,
            modulus,
            pri_ms,
            ..
        } => {
            assert_eq!(
                (state.map.running.as_slice(), state.map.fault.as_slice()),
                (&[2][..], &[3][..])
            );
            assert_eq!(
                *good,
                models::kpi::GoodCount::Reject("unit.offspec_counter".into())
            );
            assert_eq!(*modulus, Some(65536.0));
            assert!((pri_ms - 3_600_000.0 / 320.0).abs() < 1e-9);
        }
        other => panic!("not an OEE: {other:?}"),
    }
    kpi.calendar
        .calendar()
        .expect("the example's calendar builds");
    let line = &cfg.serial_lines["rs485-1"];
    assert_eq!(
        (line.baud, line.parity, line.data_bits, line.stop_bits),
        (19200, Parity::Even, 8, 1)
    );
    // 11 bits per char at 19200 baud → 3.5 chars ≈ 2.005 ms
    assert!((line.inter_frame_delay.as_secs_f64() - 0.002_005).abs() < 1e-5);
    let rtu: Vec<_> = cfg
        .devices
        .iter()
        .filter_map(|d| match &d.transport {
            Transport::ModbusRtu { line, unit_id } => Some((line.as_str(), *unit_id)),
            Transport::ModbusTcp { .. } | Transport::OpcUa(_) => None,
        })
        .collect();
    assert_eq!(rtu, vec![("rs485-1", 7), ("rs485-1", 12)]);

    let tag = |n: &str| {
        cfg.tags
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("tag {n}"))
    };
    let mb = |n: &str| {
        *tag(n)
            .modbus()
            .unwrap_or_else(|| panic!("{n} is a Modbus tag"))
    };
    let sp = mb("heater.outlet_temp_sp");
    assert_eq!(
        (
            sp.area,
            sp.data_type,
            sp.order,
            tag("heater.outlet_temp_sp").writable
        ),
        (Area::HoldingRegister, DataType::F32, WordOrder::Cdab, true)
    );
    assert_eq!(mb("heater.flame_fault").data_type, DataType::Bit(3));
    assert_eq!(mb("heater.grade").data_type, DataType::String { len: 16 });
    assert_eq!(mb("heater.energy_total").order, WordOrder::Dcba);
    assert_eq!(
        cfg.poll_interval_of(tag("heater.outlet_temp")),
        Duration::from_millis(250)
    );
    assert_eq!(
        cfg.poll_interval_of(tag("heater.fuel_flow")),
        Duration::from_secs(1)
    );
    // from the include
    assert_eq!(mb("column.top_pressure").order, WordOrder::Badc);
    // from the CSV, device defaulted by [[import]]
    let naphtha = tag("column.naphtha_flow");
    assert_eq!(
        (
            naphtha.device.as_str(),
            mb("column.naphtha_flow").address,
            mb("column.naphtha_flow").data_type
        ),
        ("column-plc", 12, DataType::U32)
    );
    assert!((naphtha.scale - 0.001).abs() < 1e-12);
    assert_eq!(mb("column.reflux_pump_running").area, Area::DiscreteInput);
    assert_eq!(cfg.tags.len(), 20);
}

const BAD: &str = r#"schema_version = 1

[node]
site_id = "north/1"
node_id = "gw"

[poll_groups]
fast = "250ms"

[[serial_line]]
name = "rs485"
path = "/dev/ttyUSB0"
baud = 9600
data_bits = 7
stop_bits = 3
inter_frame_delay = "1ms"

[[device]]
name = "plc"
protocol = "modbus-tcp"
host = "10.0.0.1"
line = "rs485"
poll_intrval = "1s"

[[device]]
name = "meter"
protocol = "modbus-rtu"
line = "rs-485"
unit_id = 300

[[tag]]
name = "a"
device = "plc"
area = "holding"
adress = 1
address = 70000
type = "f32"

[[tag]]
name = "a"
device = "plc"
area = "holding"
address = 1
type = "u16"

[[tag]]
name = "b"
device = "plcc"
area = "coil"
address = 5
type = "f32"

[[tag]]
name = "c"
device = "plc"
area = "input"
address = 65534
type = "f64"
poll_group = "fats"

[[tag]]
name = "d"
device = "plc"
area = "input"
address = 3
type = "bool"
writable = true

[[tag]]
name = "e"
device = "plc"
area = "holding"
address = "ten"
type = "flaot"
"#;

#[test]
fn every_problem_is_reported_with_location_field_and_fix() {
    let out = errors("bad.toml", BAD);
    insta::assert_snapshot!(out);
}

#[test]
fn syntax_errors_are_located() {
    let out = errors(
        "syntax.toml",
        "schema_version = 1\n[node]\nsite_id = \"a\nnode_id = \"b\"\n",
    );
    insta::assert_snapshot!(out);
}

#[test]
fn missing_sections_and_wrong_schema_version() {
    let out = errors("empty.toml", "schema_version = 2\nstorage = 5\nnodes = 1\n");
    insta::assert_snapshot!(out);
}

#[test]
fn csv_import_errors_point_at_the_csv_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("map.csv"),
        "name,area,adress,address,type\nt1,holding,,10,u16\nt2,holding,,x,u16\nt3,coyl,,12,u16\nt1,input,,13,u16\n",
    )
    .unwrap();
    let main = dir.path().join("edge.toml");
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n\n[[import]]\nfile = \"map.csv\"\ndevice = \"plc\"\n";
    std::fs::write(&main, text).unwrap();
    let out = load(&main).unwrap_err().to_string();
    let out = out.replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!(out);
}

#[test]
fn csv_header_errors_point_at_the_header_after_comment_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("map.csv"),
        "# Energy meter EM-24, register map rev. 3\n# exported 2026-11-30\nname,area,adress,type\nt1,holding,10,u16\n",
    )
    .unwrap();
    let main = dir.path().join("edge.toml");
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n\n[[import]]\nfile = \"map.csv\"\ndevice = \"plc\"\n";
    std::fs::write(&main, text).unwrap();
    let out = load(&main).unwrap_err().to_string();
    // Both header errors (the misspelt column, the missing `address`) are
    // on line 3, the header, and quote it.
    assert!(out.contains("map.csv:3:11"), "{out}");
    assert!(out.contains("map.csv:3:1"), "{out}");
    assert!(!out.contains("map.csv:1:"), "{out}");
    assert!(out.contains("name,area,adress,type"), "{out}");
    assert!(!out.contains("| # Energy meter"), "{out}");
}

#[test]
fn documented_type_aliases_are_accepted_in_csv_and_toml() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = [
        ("word", "u16"),
        ("INT", "i16"),
        ("dword", "u32"),
        ("udint", "u32"),
        ("dint", "i32"),
        ("ulint", "u64"),
        ("lint", "i64"),
        ("Real", "f32"),
        ("float", "f32"),
        ("float32", "f32"),
        ("lreal", "f64"),
        ("double", "f64"),
        ("int16", "i16"),
        ("uint32", "u32"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (alias, _))| format!("t{i},holding,{},{alias}\n", i * 4))
    .collect();
    std::fs::write(
        dir.path().join("map.csv"),
        format!("name,area,address,type\n{rows}"),
    )
    .unwrap();
    let main = dir.path().join("edge.toml");
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n[storage]\npath = \"h.db\"\n\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n\n[[import]]\nfile = \"map.csv\"\ndevice = \"plc\"\n";
    std::fs::write(&main, text).unwrap();
    let cfg = load(&main).unwrap();
    let names: Vec<&str> = cfg
        .tags
        .iter()
        .map(|t| t.modbus().unwrap().data_type.name())
        .collect();
    assert_eq!(
        names,
        [
            "u16", "i16", "u32", "u32", "i32", "u64", "i64", "f32", "f32", "f32", "f64", "f64",
            "i16", "u32"
        ]
    );
    // The docs list exactly these.
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    for alias in [
        "`word`", "`int`", "`dword`", "`udint`", "`dint`", "`ulint`", "`lint`", "`real`",
        "`float`", "`lreal`", "`double`",
    ] {
        assert!(docs.contains(alias), "{alias} is documented");
    }
}

#[test]
fn include_errors_are_located_in_the_included_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tags.toml"), "[[tag]]\nname = \"x\"\ndevice = \"plc\"\narea = \"holding\"\naddress = 1\ntype = \"u32\"\nbit = 2\n\n[node]\nsite_id = \"z\"\n").unwrap();
    let main = dir.path().join("edge.toml");
    std::fs::write(
        &main,
        "schema_version = 1\ninclude = [\"tags.toml\", \"missing.toml\"]\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n",
    )
    .unwrap();
    let out = load(&main).unwrap_err().to_string();
    let out = out.replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!(out);
}

#[test]
fn register_span_crossing_65535_is_rejected_but_ending_on_it_is_fine() {
    let base = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n[[device]]\nname = \"p\"\nprotocol = \"modbus-tcp\"\nhost = \"h\"\n";
    let ok = format!(
        "{base}[[tag]]\nname = \"t\"\ndevice = \"p\"\narea = \"holding\"\naddress = 65534\ntype = \"u32\"\n"
    );
    let cfg = load_str(Path::new("ok.toml"), ok).unwrap();
    assert_eq!(cfg.tags[0].modbus().unwrap().end_address(), 65535);
    let bad = format!(
        "{base}[[tag]]\nname = \"t\"\ndevice = \"p\"\narea = \"holding\"\naddress = 65535\ntype = \"u32\"\n"
    );
    let err = load_str(Path::new("bad.toml"), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("would run past 65535"), "{err}");
    assert!(err.contains("bad.toml:13:11"), "{err}");
}

#[test]
fn rtu_units_must_be_unique_per_line() {
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n[[serial_line]]\nname = \"l\"\npath = \"/dev/ttyS0\"\n[[device]]\nname = \"a\"\nprotocol = \"modbus-rtu\"\nline = \"l\"\nunit_id = 3\n[[device]]\nname = \"b\"\nprotocol = \"modbus-rtu\"\nline = \"l\"\nunit_id = 3\n";
    let err = load_str(Path::new("u.toml"), text).unwrap_err().to_string();
    assert!(
        err.contains("unit id 3 is already used by device \"a\""),
        "{err}"
    );
}

const OPCUA_BASE: &str = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n";

#[test]
fn opcua_devices_and_tags_parse_with_secure_defaults() {
    let text = format!(
        "{OPCUA_BASE}
[[device]]
name = \"ua\"
protocol = \"opcua\"
endpoint = \"opc.tcp://10.0.0.5:4840/plant\"
user = \"apos\"
password_env = \"APOS_UA_PASSWORD\"
pki_dir = \"pki\"
publishing_interval = \"500ms\"

[[device]]
name = \"lab\"
protocol = \"opcua\"
endpoint = \"opc.tcp://lab:48010\"
security_policy = \"None\"

[[tag]]
name = \"temp\"
device = \"ua\"
node = \"nsu=urn:apos:plant;s=Heater.OutletTemp\"
sampling_interval = \"100ms\"
queue_size = 5
data_change_deadband = \"0.5%\"
scale = 1.8
offset = 32.0
unit = \"°F\"

[[tag]]
name = \"sp\"
device = \"ua\"
node = \"ns=2;i=1001\"
data_change_deadband = 0.2
writable = true

[[tag]]
name = \"status\"
device = \"lab\"
node = \"i=2259\"
mode = \"poll\"
"
    );
    let cfg = load_str(Path::new("/etc/apos/ua.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let Transport::OpcUa(ua) = &cfg.device("ua").unwrap().transport else {
        panic!()
    };
    assert_eq!(
        ua.security_policy,
        SecurityPolicy::Basic256Sha256,
        "secure unless told otherwise"
    );
    assert_eq!(ua.security_mode, SecurityMode::SignAndEncrypt);
    assert_eq!(
        ua.identity,
        Identity::UserName {
            user: "apos".into(),
            password: SecretSource::Env("APOS_UA_PASSWORD".into())
        }
    );
    assert_eq!(
        ua.pki_dir,
        Path::new("/etc/apos/pki"),
        "relative to the config file"
    );
    assert_eq!(ua.publishing_interval, Duration::from_millis(500));
    let Transport::OpcUa(lab) = &cfg.device("lab").unwrap().transport else {
        panic!()
    };
    assert_eq!(
        (lab.security_policy, lab.security_mode),
        (SecurityPolicy::None, SecurityMode::None)
    );
    assert_eq!(lab.identity, Identity::Anonymous);

    let temp = cfg.tags[0].opcua().unwrap();
    assert_eq!(
        temp.node.to_string(),
        "nsu=urn:apos:plant;s=Heater.OutletTemp"
    );
    assert_eq!(temp.node.namespace, Namespace::Uri("urn:apos:plant".into()));
    assert_eq!(temp.sampling_interval, Some(Duration::from_millis(100)));
    assert_eq!(temp.queue_size, 5);
    assert_eq!(
        temp.data_change_deadband,
        Some(DataChangeDeadband::Percent(0.5))
    );
    assert_eq!(temp.mode, OpcUaMode::Subscribe);
    assert_eq!(cfg.tags[0].scale, 1.8);
    let sp = cfg.tags[1].opcua().unwrap();
    assert_eq!(sp.node.identifier, Identifier::Numeric(1001));
    assert_eq!(
        sp.data_change_deadband,
        Some(DataChangeDeadband::Absolute(0.2))
    );
    assert!(cfg.tags[1].writable);
    assert_eq!(cfg.tags[2].opcua().unwrap().mode, OpcUaMode::Poll);
    assert!(cfg.tags[2].modbus().is_none());
}

#[test]
fn node_ids_round_trip_and_bad_ones_say_why() {
    for ok in [
        "i=2258",
        "ns=2;s=Line 1.Temp",
        "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63",
        "ns=1;b=M/RbKBsRVkePCePcx24oRA==",
        "nsu=http://opcfoundation.org/UA/DI/;i=15001",
    ] {
        assert_eq!(ok.parse::<NodeRef>().unwrap().to_string(), ok);
    }
    assert_eq!("ns=0;i=85".parse::<NodeRef>().unwrap().to_string(), "i=85");
    for bad in [
        "",
        "ns=2",
        "ns=x;i=1",
        "ns=70000;i=1",
        "ns=1;i=-1",
        "s=",
        "q=1",
        "ns=1;g=123",
        "b=***",
        "nsu=;i=1",
    ] {
        assert!(
            bad.parse::<NodeRef>().is_err(),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn opcua_mistakes_are_located_and_explained() {
    let out = errors(
        "ua.toml",
        &format!(
            "{OPCUA_BASE}
[[device]]
name = \"ua\"
protocol = \"opcua\"
endpoint = \"http://10.0.0.5:4840\"
host = \"10.0.0.5\"

[[device]]
name = \"ua2\"
protocol = \"opcua\"
endpoint = \"opc.tcp://h:4840\"
security_policy = \"None\"
security_mode = \"SignAndEncrypt\"
user = \"op\"

[[device]]
name = \"ua3\"
protocol = \"opcua\"
endpoint = \"opc.tcp://h:4840\"
security_policy = \"Basic128Rsa15\"
user_certificate = \"user.der\"

[[device]]
name = \"mb\"
protocol = \"modbus-tcp\"
host = \"h\"
endpoint = \"opc.tcp://h:4840\"

[[device]]
name = \"ua4\"
protocol = \"opcua\"
endpoint = \"opc.tcp://h:4840\"
user_certificate = \"user.crt\"
user_key = \"user.pem\"

[[device]]
name = \"ok\"
protocol = \"opcua\"
endpoint = \"opc.tcp://h:4840\"

[[tag]]
name = \"t1\"
device = \"ok\"
node = \"ns=2;x=1\"
area = \"holding\"
data_change_deadband = \"lots\"
mode = \"stream\"

[[tag]]
name = \"t2\"
device = \"ok\"
"
        ),
    );
    insta::assert_snapshot!(out);
}

#[test]
fn sync_mistakes_are_located_and_explained() {
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\
[sync]\n\
broker = \"tcp://hub:1883\"\n\
user = \"s.n\"\n\
windows = [\"10s\", \"10s\", \"500ms\"]\n\
when_full = \"panic\"\n\
outbox_max_size = \"1KiB\"\n\
max_in_flight = 0\n\
key_file = \"k\"\n\
key_env = \"K\"\n";
    let out = errors("sync.toml", text);
    insta::assert_snapshot!(out);
}

/// Issue 14: the storage bounds that cannot work together are refused with
/// their place; defaults that would not fit are capped instead.
#[test]
fn storage_bounds_that_contradict_each_other_are_located() {
    let base = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n";
    let text = format!(
        "{base}[storage]\nretention = \"2h\"\nmax_size = \"4MiB\"\nmin_raw_span = \"1d\"\nreserve = \"8MiB\"\n\
         [sync]\nbroker = \"mqtt://hub\"\nkey_env = \"K\"\noutbox_max_size = \"3MiB\"\n"
    );
    let out = errors("storage.toml", &text);
    assert!(out.contains("storage › min_raw_span"), "{out}");
    assert!(
        out.contains("min_raw_span is longer than retention"),
        "{out}"
    );
    assert!(out.contains("storage › reserve"), "{out}");
    assert!(out.contains("sync › outbox_max_size"), "{out}");
    assert!(
        out.contains("more than half of [storage] max_size"),
        "{out}"
    );
    assert!(out.contains("storage.toml:"), "located: {out}");
    // Left to their defaults, the outbox, the reserve and the raw span fit.
    let ok = format!(
        "{base}[storage]\nretention = \"2h\"\nmax_size = \"4MiB\"\n[sync]\nbroker = \"mqtt://hub\"\nkey_env = \"K\"\n"
    );
    let cfg = load_str(Path::new("ok.toml"), &ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sync.unwrap().outbox_max_bytes, 2 << 20);
    assert_eq!(cfg.storage.reserve_bytes, 512 << 10);
    assert_eq!(cfg.storage.min_raw_span, Duration::from_secs(7200));
}

/// `[[alarm]]` mistakes, each located with its fix (issue 16).
#[test]
fn alarm_mistakes_are_located_and_explained() {
    let base = std::fs::read_to_string(example()).unwrap();
    let at = base
        .find("# ---------------------------------------------------------------- devices")
        .unwrap();
    let bad = r#"[[alarm]]
name = "a1"
type = "hii"
tag = "heater.outlet_temp"

[[alarm]]
name = "a2"
type = "hi"
tag = "heater.outlet_tmp"
limit = 10.0
deadband = 1.0
deadband_percent = 5.0
priority = "critical"

[[alarm]]
name = "a3"
type = "lo"
tag = "heater.outlet_temp"
equals = 3

[[alarm]]
name = "a4"
type = "rate"
tag = "heater.outlet_temp"
max_rate = -1.0
on_delay = "3d"

[[alarm]]
name = "a4"
type = "predictive"
tag = "heater.outlet_temp"
limit = 1.0
side = "up"

[[alarm]]
name = "a6"
type = "discrete"
tag = "heater.flame_fault"
suppress_equals = 1
"#;
    let text = format!("{}{bad}\n{}", &base[..at], &base[at..]);
    let (dir, path) = example_dir_with(&text);
    let out = match load(&path) {
        Ok(_) => panic!("should not validate"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "<dir>"),
    };
    insta::assert_snapshot!(out);
}

/// Issue 15: OEE from good + reject counters needs no total; one counter
/// alone says too little, and the error says which to add.
#[test]
fn oee_takes_two_of_total_good_and_reject_counters() {
    let base = std::fs::read_to_string(example()).unwrap();
    let at = base
        .find("# ---------------------------------------------------------------- devices")
        .unwrap();
    let with = |kpi: &str| {
        let (_dir, path) = example_dir_with(&format!("{}{kpi}\n{}", &base[..at], &base[at..]));
        load(&path).map_err(|e| e.to_string())
    };
    let oee = |counters: &str| {
        format!(
            "[[kpi]]\nname = \"x\"\ntype = \"oee\"\nstate_tag = \"unit.state\"\nrunning = [2]\n{counters}\nideal_rate = 10.0\n"
        )
    };
    let cfg = with(&oee(
        "good_counter = \"unit.product_counter\"\nreject_counter = \"unit.offspec_counter\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let x = cfg
        .kpi
        .unwrap()
        .kpis
        .into_iter()
        .find(|k| k.name == "x")
        .unwrap();
    assert!(
        matches!(&x.kind, models::kpi::KpiKind::Oee { total, good: models::kpi::GoodCount::GoodPlusReject(r), .. }
            if total == "unit.product_counter" && r == "unit.offspec_counter"),
        "{:?}",
        x.kind
    );
    let e = with(&oee("total_counter = \"unit.product_counter\"")).unwrap_err();
    assert!(
        e.contains("kpi \"x\" › good_counter") && e.contains("reject_counter"),
        "{e}"
    );
    let e = with(&oee("good_counter = \"unit.product_counter\"")).unwrap_err();
    assert!(
        e.contains("kpi \"x\" › total_counter") && e.contains("good_counter` and `reject_counter"),
        "{e}"
    );
}

#[test]
fn kpi_mistakes_are_located_and_explained() {
    let base = std::fs::read_to_string(example()).unwrap();
    let start = base
        .find("# ------------------------------------------------------------ KPI engine")
        .unwrap();
    let end = base
        .find("# ---------------------------------------------------------------- devices")
        .unwrap();
    let bad = r#"[calendar]
time_zone = "Europe/Berln"
week_starts = "funday"
shifts = [{ name = "early", start = "06:00" }, { name = "late", start = "6:00" }, { name = "night", start = "25:00" }]
planned_stops = [{ name = "lunch", from = "12:00", days = ["mon", "caturday"] }]

[kpi_engine]
slice = "1m"
grace = "0s"

[[kpi]]
name = "oee"
type = "oee"
windows = ["90s", "shift", "month"]
state_tag = "unit.stat"
running = [2]
fault = [2]
total_counter = "unit.product_counter"
good_counter = "unit.product_counter"
reject_counter = "unit.offspec_counter"
counter_modulus = 1
ideal_rate = -5.0

[[kpi]]
name = "oee"
type = "througput"

[[kpi]]
name = "excess_air"
type = "expression"
expr = "flue.o2.maen / (21 - flue.o2.mean"
energy_counter = "heater.energy_total"

[[kpi]]
name = "sec"
type = "expression"
expr = "flue.o2.maen * 2"
"#;
    let text = format!("{}{bad}\n{}", &base[..start], &base[end..]);
    let (dir, path) = example_dir_with(&text);
    let out = match load(&path) {
        Ok(_) => panic!("should not validate"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "<dir>"),
    };
    insta::assert_snapshot!(out);
}

/// Multi-byte characters where a weekday is parsed panicked `validate`
/// (a byte slice inside a character).
#[test]
fn non_ascii_weekdays_are_errors_not_panics() {
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\
                [calendar]\ntime_zone = \"UTC\"\nweek_starts = \"ab€\"\n\
                shifts = [{ name = \"day\", start = \"06:00\" }]\n\
                planned_stops = [{ name = \"x\", from = \"12:00\", to = \"12:30\", days = [\"mo€\", \"€€€\", \"é\"] }]\n";
    let err = load_str(Path::new("cal.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("week_starts"), "{err}");
    assert!(err.contains("cal.toml:7:"), "{err}");
    assert!(err.contains("mo€"), "{err}");
}

/// A CSV map with CR-only line endings and an error on every row: the
/// errors point at the right lines, each shows a bounded excerpt, and
/// only the first 100 are shown (the rest counted). The same for a header
/// of 100,000 unknown columns (an allocation failure before).
#[test]
fn huge_csv_mistakes_are_bounded_and_cr_lines_are_lines() {
    let dir = tempfile::tempdir().unwrap();
    let filler = "x".repeat(400);
    let rows: String = (0..2000)
        .map(|i| format!("t{i},holding,{i},bogus{i},{filler}\r"))
        .collect();
    std::fs::write(
        dir.path().join("map.csv"),
        format!("name,area,address,type,description\r{rows}"),
    )
    .unwrap();
    let main = dir.path().join("edge.toml");
    let text = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\n\n[[import]]\nfile = \"map.csv\"\ndevice = \"plc\"\n";
    std::fs::write(&main, text).unwrap();
    let out = load(&main).unwrap_err().to_string();
    // Row 3 (t1) is on line 3, with CR line endings.
    assert!(
        out.contains("map.csv:3:"),
        "{}",
        &out[..2000.min(out.len())]
    );
    assert!(out.contains("bogus1"), "{}", &out[..2000.min(out.len())]);
    assert!(
        out.contains("and 1900 more problems not shown"),
        "{}",
        &out[out.len().saturating_sub(500)..]
    );
    assert!(out.contains("2000 problems found"));
    assert!(out.len() < 200_000, "{} bytes of errors", out.len());
    for l in out.lines() {
        assert!(
            l.chars().count() < 600,
            "a line of {} characters",
            l.chars().count()
        );
    }

    let header: Vec<String> = (0..100_000).map(|i| format!("col{i}")).collect();
    std::fs::write(
        dir.path().join("map.csv"),
        format!(
            "name,area,address,type,{}\nt,holding,1,u16\n",
            header.join(",")
        ),
    )
    .unwrap();
    let out = load(&main).unwrap_err().to_string();
    assert!(
        out.contains("100000 problems found"),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
    assert!(out.len() < 200_000, "{} bytes of errors", out.len());
}

/// Invalid UTF-8 is located; a device or a directory is refused before a
/// byte is read (`include = ["/dev/zero"]` read until memory ran out).
#[test]
fn unreadable_files_are_located_and_devices_refused() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("edge.toml");
    std::fs::write(&main, b"schema_version = 1\n[node]\nsite_id = \"s\xff\"\n").unwrap();
    let out = load(&main).unwrap_err().to_string();
    assert!(out.contains("edge.toml:3:13"), "{out}");
    assert!(out.contains("not valid UTF-8"), "{out}");
    std::fs::write(&main, "schema_version = 1\ninclude = [\"/dev/zero\", \"sub\", \"bad.toml\"]\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("bad.toml"), b"[[tag]]\nname = \"\xe9\"\n").unwrap();
    let out = load(&main).unwrap_err().to_string();
    assert!(out.contains("/dev/zero is not a regular file"), "{out}");
    assert!(out.contains("sub is not a regular file"), "{out}");
    assert!(out.contains("bad.toml:2:9"), "{out}");
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, b"name,area,address,type\nt\xfe,holding,1,u16\n").unwrap();
    std::fs::write(&main, "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n[[device]]\nname = \"plc\"\nprotocol = \"modbus-tcp\"\nhost = \"h\"\n[[import]]\nfile = \"m.csv\"\ndevice = \"plc\"\n").unwrap();
    let out = load(&main).unwrap_err().to_string();
    assert!(out.contains("m.csv:2:2"), "{out}");
}

/// Issue 16: `[hmi]` mistakes are located and say what to write.
#[test]
fn hmi_mistakes_are_located_and_explained() {
    let base = "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n";
    let text = format!(
        "{base}[hmi]\nlisten = \"localhost:80a\"\ntls_cert_file = \"cert.pem\"\nanonymous_viewing = true\n\
         [[tag]]\nname = \"t\"\ndevice = \"nope\"\naddress = 0\nrange = [5, 1]\n"
    );
    let out = errors("hmi.toml", &text);
    insta::assert_snapshot!(out);
    let ok =
        format!("{base}[storage]\npath = \"/srv/h/history.db\"\n[hmi]\nlisten = \"10.0.0.5\"\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("edge.toml");
    std::fs::write(&p, ok).unwrap();
    let cfg = firmware_config::load(&p).unwrap();
    let hmi = cfg.hmi.unwrap();
    assert_eq!(hmi.listen.to_string(), "10.0.0.5:8080");
    assert_eq!(hmi.users_file, std::path::Path::new("/srv/h/users.db"));
    assert!(!hmi.anonymous_view && hmi.tls.is_none());
    // The shipped example turns the HMI on, with TLS.
    let ex = firmware_config::load(&example()).unwrap();
    assert!(ex.hmi.unwrap().tls.is_some());
}

/// Issue 20: `[[setpoint]]` mistakes, each located with its fix; a good one
/// becomes limits and its latched write-back alarm.
#[test]
fn setpoint_mistakes_are_located_and_explained() {
    let base = std::fs::read_to_string(example()).unwrap();
    let at = base
        .find("# ---------------------------------------------------------------- devices")
        .unwrap();
    let key = format!("ed25519:{}", "ab".repeat(32));
    let head = if base.contains("\n[setpoints]") {
        String::new()
    } else {
        format!("[setpoints]\nhub_public_key = \"{key}\"\n\n")
    };
    let good = r#"[[setpoint]]
tag = "heater.outlet_temp_sp"
min = 340.0
max = 380.0
max_step = 2.0
min_interval = "20s"
state_tag = "unit.state"
state_equals = 2
state_name = "running"
"#;
    let text = format!("{}{head}{good}\n{}", &base[..at], &base[at..]);
    let (_dir, path) = example_dir_with(&text);
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let wb = cfg.write_back.as_ref().expect("[setpoints]");
    let sp = wb
        .setpoints
        .iter()
        .find(|s| s.tag == "heater.outlet_temp_sp")
        .expect("the setpoint");
    assert_eq!((sp.min, sp.max, sp.max_step), (340.0, 380.0, 2.0));
    assert_eq!(sp.min_interval, std::time::Duration::from_secs(20));
    assert_eq!(sp.state.as_ref().map(|s| s.equals), Some(2.0));
    let alarm = cfg
        .alarms
        .iter()
        .find(|a| a.name == "writeback.heater.outlet_temp_sp")
        .expect("the write-back alarm");
    assert!(alarm.spec.latched);

    let bad = r#"[[setpoint]]
tag = "heater.outlet_temp"
min = 340.0
max = 380.0
max_step = 2.0

[[setpoint]]
tag = "heater.outlet_temp_spp"
min = 1.0
max = 2.0
max_step = 1.0

[[setpoint]]
tag = "heater.outlet_temp_sp"
min = 380.0
max = 340.0
max_step = 0.0
state_tag = "unit.state"
"#;
    let text = format!("{}{head}{bad}\n{}", &base[..at], &base[at..]);
    let (dir, path) = example_dir_with(&text);
    let out = match load(&path) {
        Ok(_) => panic!("should not validate"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "<dir>"),
    };
    for want in [
        "the tag is not writable",
        "unknown tag \"heater.outlet_temp_spp\"",
        "did you mean \"heater.outlet_temp_sp\"",
        "max 340 is not above min 380",
        "max_step",
        "`state_tag` without `state_equals`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Every problem is located in the file.
    assert!(out.contains("edge.toml:"), "{out}");

    // Without [setpoints], a [[setpoint]] is an error that says what to add.
    if head.is_empty() {
        return;
    }
    let text = format!("{}{good}\n{}", &base[..at], &base[at..]);
    let (_dir, path) = example_dir_with(&text);
    let out = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(out.contains("without `[setpoints]`"), "{out}");
}
