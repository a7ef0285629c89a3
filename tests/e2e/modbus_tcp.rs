//! Modbus TCP against pymodbus: every data type in every word order read
//! exactly, bits and coils, scaling, and writes the peer stores.

use std::time::Duration;

use drivers::{Quality, Value, WriteRequest};
use serde_json::json;
use tokio_modbus::prelude::*;

use crate::support::{DriverRun, ModbusPeer, config_header, eventually, tag, tcp_device};

/// Big-endian bytes → registers in `order`, written independently of the
/// driver's codec: ABCD as is, CDAB reverses words, BADC swaps bytes, DCBA both.
fn words(be: &[u8], order: &str) -> Vec<u16> {
    let mut w: Vec<u16> = be
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if order == "CDAB" || order == "DCBA" {
        w.reverse();
    }
    if order == "BADC" || order == "DCBA" {
        w.iter_mut().for_each(|x| *x = x.swap_bytes());
    }
    w
}

struct Case {
    ty: &'static str,
    be: Vec<u8>,
    expect: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            ty: "u32",
            be: 3_000_000_000u32.to_be_bytes().to_vec(),
            expect: Value::U64(3_000_000_000),
        },
        Case {
            ty: "i32",
            be: (-123_456_789i32).to_be_bytes().to_vec(),
            expect: Value::I64(-123_456_789),
        },
        Case {
            ty: "f32",
            be: 123.456f32.to_be_bytes().to_vec(),
            expect: Value::F64(f64::from(123.456f32)),
        },
        Case {
            ty: "u64",
            be: 12_345_678_901_234_567_890u64.to_be_bytes().to_vec(),
            expect: Value::U64(12_345_678_901_234_567_890),
        },
        Case {
            ty: "i64",
            be: (-9_000_000_000_123i64).to_be_bytes().to_vec(),
            expect: Value::I64(-9_000_000_000_123),
        },
        Case {
            ty: "f64",
            be: (-98_765.432_1f64).to_be_bytes().to_vec(),
            expect: Value::F64(-98_765.432_1),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_reads_exactly() {
    // Build the register image and the matching tags.
    let mut holding: Vec<(u16, Vec<u16>)> = Vec::new();
    let mut tags = String::new();
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut addr = 0u16;
    for c in cases() {
        for order in ["ABCD", "CDAB", "BADC", "DCBA"] {
            let w = words(&c.be, order);
            let name = format!("{}_{}", c.ty, order.to_lowercase());
            tags += &tag(
                &name,
                "peer",
                "holding",
                addr,
                c.ty,
                &format!("order = \"{order}\""),
            );
            expected.push((name, c.expect.clone()));
            addr += w.len() as u16;
            holding.push((addr - w.len() as u16, w));
        }
        addr += 3; // a small hole between types, bridged by the planner
    }
    // 16-bit types, bits of a status word, a scaled value and a string.
    let base = 200;
    holding.push((base, vec![65_000, (-12_345i16) as u16, 0b10_0000, 12_345]));
    holding.push((base + 10, words(b"APOS-01\0", "ABCD")));
    tags += &tag("u16", "peer", "holding", base, "u16", "");
    tags += &tag("i16", "peer", "holding", base + 1, "i16", "");
    tags += &tag("bit5", "peer", "holding", base + 2, "bit", "bit = 5");
    tags += &tag("bit4", "peer", "holding", base + 2, "bit", "bit = 4");
    tags += &tag(
        "scaled",
        "peer",
        "holding",
        base + 3,
        "u16",
        "scale = 0.1\noffset = -1.0",
    );
    tags += &tag("text", "peer", "holding", base + 10, "string", "length = 8");
    tags += &tag("ir_i16", "peer", "input", 7, "i16", "");
    tags += &tag("coil3", "peer", "coil", 3, "bool", "");
    tags += &tag("coil4", "peer", "coil", 4, "bool", "");
    tags += &tag("di0", "peer", "discrete", 0, "bool", "");
    expected.extend([
        ("u16".to_string(), Value::U64(65_000)),
        ("i16".to_string(), Value::I64(-12_345)),
        ("bit5".to_string(), Value::Bool(true)),
        ("bit4".to_string(), Value::Bool(false)),
        ("scaled".to_string(), Value::F64(12_345.0 * 0.1 - 1.0)),
        ("text".to_string(), Value::String("APOS-01".into())),
        ("ir_i16".to_string(), Value::I64(-2)),
        ("coil3".to_string(), Value::Bool(true)),
        ("coil4".to_string(), Value::Bool(false)),
        ("di0".to_string(), Value::Bool(true)),
    ]);

    let spec = json!({"transport": "tcp", "devices": [{
        "unit": 1,
        "holding": holding,
        "input": [[7, [(-2i16) as u16]]],
        "coils": [[3, [true, false]]],
        "discrete": [[0, [true]]],
    }]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let cfg = config_header() + &tcp_device("peer", peer.port.unwrap(), 1, "200ms", "1s") + &tags;
    let run = DriverRun::start(&cfg);
    eventually("every tag read", Duration::from_secs(20), || {
        expected
            .iter()
            .all(|(t, _)| run.latest(t).is_some_and(|s| s.quality.is_good()))
    })
    .await;
    for (t, want) in &expected {
        let got = run.latest(t).unwrap();
        assert_eq!(got.quality, Quality::Good, "{t}");
        assert_eq!(got.value.as_ref(), Some(want), "{t}");
    }
    // 34 tags, 5 requests per poll: holding 0..87 (holes of 3 bridged),
    // holding 200..214, and one each for input registers, coils and
    // discrete inputs. A failed poll (none expected) would add at most 5
    // requests without a cycle.
    let status = run.handle("peer").status();
    assert!(status.connected);
    assert!(status.cycles > 0);
    assert!(
        (5 * status.cycles..=5 * status.cycles + 5).contains(&status.requests),
        "{} requests in {} polls",
        status.requests,
        status.cycles
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_in_the_peer_in_the_configured_encoding() {
    let spec = json!({"transport": "tcp", "devices": [{"unit": 1, "holding": [[0, vec![0; 20]]], "coils": [[0, vec![false; 8]]]}]});
    let Some(peer) = ModbusPeer::start(&spec).await else {
        return;
    };
    let port = peer.port.unwrap();
    let cfg = config_header()
        + &tcp_device("plc", port, 1, "200ms", "1s")
        + &tag(
            "sp_f32",
            "plc",
            "holding",
            0,
            "f32",
            "order = \"CDAB\"\nwritable = true",
        )
        + &tag(
            "sp_scaled",
            "plc",
            "holding",
            2,
            "u16",
            "scale = 0.1\nwritable = true",
        )
        + &tag(
            "sp_i32",
            "plc",
            "holding",
            4,
            "i32",
            "order = \"DCBA\"\nwritable = true",
        )
        + &tag("readonly", "plc", "holding", 6, "u16", "")
        + &tag("run", "plc", "coil", 1, "bool", "writable = true");
    let run = DriverRun::start(&cfg);
    let h = run.handle("plc");
    eventually("connected", Duration::from_secs(10), || {
        h.status().connected
    })
    .await;

    h.write(WriteRequest::Tag {
        tag: "sp_f32".into(),
        value: Value::F64(123.456),
    })
    .await
    .unwrap();
    h.write(WriteRequest::Tag {
        tag: "sp_scaled".into(),
        value: Value::F64(42.5),
    })
    .await
    .unwrap();
    h.write(WriteRequest::Tag {
        tag: "sp_i32".into(),
        value: Value::I64(-2),
    })
    .await
    .unwrap();
    h.write(WriteRequest::Tag {
        tag: "run".into(),
        value: Value::Bool(true),
    })
    .await
    .unwrap();
    h.write(WriteRequest::Registers {
        device: "plc".into(),
        address: 10,
        values: vec![7, 8, 9],
    })
    .await
    .unwrap();
    h.write(WriteRequest::Coils {
        device: "plc".into(),
        address: 4,
        values: vec![true, false, true],
    })
    .await
    .unwrap();
    // Refused before anything is sent.
    let err = h
        .write(WriteRequest::Tag {
            tag: "readonly".into(),
            value: Value::U64(1),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, drivers::WriteError::NotWritable(_)), "{err}");
    let err = h
        .write(WriteRequest::Tag {
            tag: "sp_scaled".into(),
            value: Value::F64(1e9),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, drivers::WriteError::Encode(_)), "{err}");

    // Read back with an independent client.
    let mut ctx = tcp::connect_slave(format!("127.0.0.1:{port}").parse().unwrap(), Slave(1))
        .await
        .unwrap();
    let regs = ctx.read_holding_registers(0, 13).await.unwrap().unwrap();
    assert_eq!(&regs[0..2], &[0xE979, 0x42F6], "f32 123.456 in CDAB");
    assert_eq!(regs[2], 425, "42.5 / 0.1");
    assert_eq!(&regs[4..6], &[0xFEFF, 0xFFFF], "-2 in DCBA");
    assert_eq!(regs[6], 0, "the read-only tag was not written");
    assert_eq!(&regs[10..13], &[7, 8, 9]);
    let coils = ctx.read_coils(0, 8).await.unwrap().unwrap();
    assert_eq!(&coils[..7], &[false, true, false, false, true, false, true]);
    // And the driver reads its own write back.
    eventually("setpoint read back", Duration::from_secs(5), || {
        run.latest("sp_f32")
            .and_then(|s| s.value)
            .is_some_and(|v| (v.as_f64().unwrap() - 123.456).abs() < 1e-4)
    })
    .await;
    run.stop().await;
}
