//! The drivers against an in-process tokio-modbus server: fast, no Python.
//!
//! The simulated device logs every request it receives, so these tests check
//! what went over the wire (how many requests, which function codes, which
//! unit) and not only what came out of the driver. The interoperability
//! tests against an independent implementation (pymodbus) live in the
//! workspace's `tests/e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drivers::{
    Driver, DriverContext, DriverHandle, LinkState, Quality, Reason, Sample, Value, WriteError,
    WriteRequest,
};
use tokio::sync::mpsc;
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// A simulated Modbus device
// ---------------------------------------------------------------------------

/// One request as the device saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Seen {
    unit: u8,
    fc: u8,
    address: u16,
    count: u16,
}

/// How the device misbehaves.
#[derive(Debug, Default)]
struct Faults {
    /// Answer every request with this function code with an exception.
    exceptions: HashMap<u8, ExceptionCode>,
    /// Answer late.
    delay: Duration,
    /// Units that never answer (an absent RS-485 slave).
    silent: HashSet<u8>,
}

/// A register store shared by every unit id (the tests vary behaviour per
/// unit only through `Faults::silent`).
#[derive(Debug)]
struct Sim {
    holding: Mutex<Vec<u16>>,
    input: Mutex<Vec<u16>>,
    coils: Mutex<Vec<bool>>,
    discrete: Mutex<Vec<bool>>,
    seen: Mutex<Vec<Seen>>,
    faults: Mutex<Faults>,
    connections: AtomicUsize,
}

impl Sim {
    fn new() -> Arc<Sim> {
        Arc::new(Sim {
            holding: Mutex::new(vec![0; 65_536]),
            input: Mutex::new(vec![0; 65_536]),
            coils: Mutex::new(vec![false; 65_536]),
            discrete: Mutex::new(vec![false; 65_536]),
            seen: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            connections: AtomicUsize::new(0),
        })
    }

    fn set_holding(&self, address: u16, words: &[u16]) {
        let a = usize::from(address);
        self.holding.lock().unwrap()[a..a + words.len()].copy_from_slice(words);
    }

    fn holding(&self, address: u16, count: usize) -> Vec<u16> {
        let a = usize::from(address);
        self.holding.lock().unwrap()[a..a + count].to_vec()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests so far matching `f`.
    fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| f(s)).count()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }

    async fn handle(&self, req: SlaveRequest<'static>) -> Result<Option<Response>, ExceptionCode> {
        let (fc, address, count) = describe(&req.request);
        self.seen.lock().unwrap().push(Seen {
            unit: req.slave,
            fc,
            address,
            count,
        });
        let (silent, delay, exception) = {
            let f = self.faults();
            (
                f.silent.contains(&req.slave),
                f.delay,
                f.exceptions.get(&fc).copied(),
            )
        };
        if silent {
            return Ok(None);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = exception {
            return Err(e);
        }
        let range = |n: usize| -> Result<std::ops::Range<usize>, ExceptionCode> {
            let a = usize::from(address);
            if a + n > 65_536 {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            Ok(a..a + n)
        };
        let n = usize::from(count);
        Ok(Some(match req.request {
            Request::ReadCoils(..) => {
                Response::ReadCoils(self.coils.lock().unwrap()[range(n)?].to_vec())
            }
            Request::ReadDiscreteInputs(..) => {
                Response::ReadDiscreteInputs(self.discrete.lock().unwrap()[range(n)?].to_vec())
            }
            Request::ReadHoldingRegisters(..) => {
                Response::ReadHoldingRegisters(self.holding.lock().unwrap()[range(n)?].to_vec())
            }
            Request::ReadInputRegisters(..) => {
                Response::ReadInputRegisters(self.input.lock().unwrap()[range(n)?].to_vec())
            }
            Request::WriteSingleCoil(a, v) => {
                self.coils.lock().unwrap()[usize::from(a)] = v;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, v) => {
                self.coils.lock().unwrap()[range(v.len())?].copy_from_slice(&v);
                Response::WriteMultipleCoils(a, count)
            }
            Request::WriteSingleRegister(a, v) => {
                self.holding.lock().unwrap()[usize::from(a)] = v;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, v) => {
                self.holding.lock().unwrap()[range(v.len())?].copy_from_slice(&v);
                Response::WriteMultipleRegisters(a, count)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        }))
    }
}

/// Function code, address and quantity of a request.
fn describe(r: &Request<'_>) -> (u8, u16, u16) {
    match r {
        Request::ReadCoils(a, n) => (1, *a, *n),
        Request::ReadDiscreteInputs(a, n) => (2, *a, *n),
        Request::ReadHoldingRegisters(a, n) => (3, *a, *n),
        Request::ReadInputRegisters(a, n) => (4, *a, *n),
        Request::WriteSingleCoil(a, _) => (5, *a, 1),
        Request::WriteSingleRegister(a, _) => (6, *a, 1),
        Request::WriteMultipleCoils(a, v) => (15, *a, v.len() as u16),
        Request::WriteMultipleRegisters(a, v) => (16, *a, v.len() as u16),
        _ => (0, 0, 0),
    }
}

/// The tokio-modbus service in front of a [`Sim`].
#[derive(Debug, Clone)]
struct Service(Arc<Sim>);

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Service {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        let sim = self.0.clone();
        Box::pin(async move { sim.handle(req).await })
    }
}

/// A Modbus TCP server for a [`Sim`] on 127.0.0.1.
struct TcpSim {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TcpSim {
    /// Listen on `port` (0 = any free one).
    async fn start(sim: &Arc<Sim>, port: u16) -> TcpSim {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let sim = sim.clone();
        let task = tokio::spawn(async move {
            let on_connected = |stream, _addr| {
                sim.connections.fetch_add(1, Ordering::SeqCst);
                let service = Service(sim.clone());
                async move { Ok(Some((service, stream))) }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
        TcpSim { port, task }
    }

    /// Stop listening and drop every connection, as a crashed PLC would.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Accepts connections and never answers.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

// ---------------------------------------------------------------------------
// Running drivers from a configuration
// ---------------------------------------------------------------------------

fn header() -> String {
    "schema_version = 1\n[node]\nsite_id = \"test\"\nnode_id = \"drivers\"\n[storage]\npath = \"unused.db\"\n".to_owned()
}

fn tcp_device(name: &str, port: u16, unit: u8, poll: &str, timeout: &str) -> String {
    format!(
        "\n[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nhost = \"127.0.0.1\"\nport = {port}\nunit_id = {unit}\n\
         poll_interval = \"{poll}\"\ntimeout = \"{timeout}\"\nconnect_timeout = \"{timeout}\"\n\
         backoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\n"
    )
}

fn tag(name: &str, device: &str, area: &str, address: u16, ty: &str, extra: &str) -> String {
    format!(
        "\n[[tag]]\nname = \"{name}\"\ndevice = \"{device}\"\narea = \"{area}\"\naddress = {address}\ntype = \"{ty}\"\n{extra}\n"
    )
}

fn config(toml: &str) -> firmware_config::EdgeConfig {
    firmware_config::load_str(std::path::Path::new("edge.toml"), toml.to_owned())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"))
}

/// Drivers started from a configuration, with every sample collected.
struct Run {
    handles: Vec<DriverHandle>,
    samples: Arc<Mutex<Vec<Sample>>>,
    cancel: CancellationToken,
}

impl Run {
    fn start(toml: &str) -> Run {
        let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(64);
        let cancel = CancellationToken::new();
        let handles = drivers::spawn_all(&config(toml), tx, cancel.clone()).unwrap();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().unwrap().extend(batch);
            }
        });
        Run {
            handles,
            samples,
            cancel,
        }
    }

    fn samples_of(&self, tag: &str) -> Vec<Sample> {
        let all = self.samples.lock().unwrap();
        all.iter().filter(|s| &*s.tag == tag).cloned().collect()
    }

    fn latest(&self, tag: &str) -> Option<Sample> {
        let all = self.samples.lock().unwrap();
        all.iter().rev().find(|s| &*s.tag == tag).cloned()
    }

    fn good(&self, tag: &str) -> usize {
        let all = self.samples.lock().unwrap();
        all.iter()
            .filter(|s| &*s.tag == tag && s.quality.is_good())
            .count()
    }

    fn bad(&self, tag: &str) -> Vec<Quality> {
        self.samples_of(tag)
            .into_iter()
            .filter(|s| !s.quality.is_good())
            .map(|s| s.quality)
            .collect()
    }

    fn handle(&self, name: &str) -> &DriverHandle {
        self.handles.iter().find(|h| h.name() == name).unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        for h in self.handles {
            tokio::time::timeout(Duration::from_secs(5), h.join())
                .await
                .expect("driver did not stop within 5 s of cancellation");
        }
    }
}

/// Poll `cond` until it holds, failing after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Big-endian bytes → registers in `order`, independently of the driver's
/// codec: CDAB reverses the words, BADC swaps the bytes of each, DCBA both.
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

// ---------------------------------------------------------------------------
// Modbus TCP
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_is_read_exactly_in_the_fewest_requests() {
    let sim = Sim::new();
    let mut tags = String::new();
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut addr = 0u16;
    let mut put = |name: String, ty: &str, extra: &str, w: Vec<u16>, value: Value| {
        sim.set_holding(addr, &w);
        tags += &tag(&name, "plc", "holding", addr, ty, extra);
        expected.push((name, value));
        addr += w.len() as u16;
    };
    let cases: [(&str, Vec<u8>, Value); 6] = [
        (
            "u32",
            3_000_000_000u32.to_be_bytes().to_vec(),
            Value::U64(3_000_000_000),
        ),
        (
            "i32",
            (-123_456_789i32).to_be_bytes().to_vec(),
            Value::I64(-123_456_789),
        ),
        (
            "f32",
            123.456f32.to_be_bytes().to_vec(),
            Value::F64(f64::from(123.456f32)),
        ),
        (
            "u64",
            0xFEDC_BA98_7654_3210u64.to_be_bytes().to_vec(),
            Value::U64(0xFEDC_BA98_7654_3210),
        ),
        (
            "i64",
            (-9_000_000_000_123i64).to_be_bytes().to_vec(),
            Value::I64(-9_000_000_000_123),
        ),
        (
            "f64",
            (-98_765.432_1f64).to_be_bytes().to_vec(),
            Value::F64(-98_765.432_1),
        ),
    ];
    for (ty, be, value) in cases {
        for order in ["ABCD", "CDAB", "BADC", "DCBA"] {
            put(
                format!("{ty}_{order}"),
                ty,
                &format!("order = \"{order}\""),
                words(&be, order),
                value.clone(),
            );
        }
    }
    put("u16".into(), "u16", "", vec![65_000], Value::U64(65_000));
    put(
        "i16".into(),
        "i16",
        "",
        vec![(-12_345i16) as u16],
        Value::I64(-12_345),
    );
    // Scaling turns an integer into an engineering float.
    put(
        "scaled".into(),
        "u16",
        "scale = 0.1\noffset = -1.0",
        vec![12_345],
        Value::F64(12_345.0 * 0.1 - 1.0),
    );
    // Two strings: high byte first, and low byte first for a byte-swapping order.
    put(
        "text".into(),
        "string",
        "length = 7",
        vec![0x4150, 0x4F53, 0x2D30, 0x3100],
        Value::String("APOS-01".into()),
    );
    put(
        "text_badc".into(),
        "string",
        "length = 8\norder = \"BADC\"",
        vec![0x5041, 0x534F, 0x3020, 0x2020],
        Value::String("APOS 0".into()),
    );
    let contiguous_end = addr;
    // Bits of one status word share its register (and its request).
    sim.set_holding(contiguous_end, &[0b10_0000]);
    tags += &tag("bit5", "plc", "holding", contiguous_end, "bit", "bit = 5");
    tags += &tag("bit4", "plc", "holding", contiguous_end, "bit", "bit = 4");
    expected.push(("bit5".into(), Value::Bool(true)));
    expected.push(("bit4".into(), Value::Bool(false)));
    // Far away: a request of its own.
    sim.set_holding(1000, &[7]);
    tags += &tag("far", "plc", "holding", 1000, "u16", "");
    expected.push(("far".into(), Value::U64(7)));
    sim.input.lock().unwrap()[7] = (-2i16) as u16;
    tags += &tag("ir", "plc", "input", 7, "i16", "");
    expected.push(("ir".into(), Value::I64(-2)));
    sim.coils.lock().unwrap()[3] = true;
    tags += &tag("coil3", "plc", "coil", 3, "bool", "");
    tags += &tag("coil4", "plc", "coil", 4, "bool", "");
    expected.push(("coil3".into(), Value::Bool(true)));
    expected.push(("coil4".into(), Value::Bool(false)));
    sim.discrete.lock().unwrap()[9] = true;
    tags += &tag("di9", "plc", "discrete", 9, "bool", "");
    expected.push(("di9".into(), Value::Bool(true)));

    let server = TcpSim::start(&sim, 0).await;
    let run = Run::start(&(header() + &tcp_device("plc", server.port, 1, "50ms", "1s") + &tags));
    eventually("every tag read twice", Duration::from_secs(10), || {
        expected.iter().all(|(t, _)| run.good(t) >= 2)
    })
    .await;
    for (t, want) in &expected {
        let got = run.latest(t).unwrap();
        assert_eq!(got.quality, Quality::Good, "{t}");
        assert_eq!(got.value.as_ref(), Some(want), "{t}");
    }
    assert!(run.bad("u16").is_empty());

    // 44 tags, 5 distinct requests: the contiguous holding block, the far
    // register, and one each for input registers, coils and discrete inputs.
    let distinct: BTreeSet<(u8, u16, u16)> = sim
        .seen()
        .iter()
        .map(|s| (s.fc, s.address, s.count))
        .collect();
    let want: BTreeSet<(u8, u16, u16)> = [
        (1, 3, 2),
        (2, 9, 1),
        (3, 0, contiguous_end + 1),
        (3, 1000, 1),
        (4, 7, 1),
    ]
    .into();
    assert_eq!(distinct, want);
    assert!(sim.seen().iter().all(|s| s.unit == 1));
    let st = run.handle("plc").status();
    assert!(st.connected);
    assert!(st.cycles >= 2);
    assert_eq!(st.requests, st.cycles * 5, "{st:?}");
    assert_eq!(st.units[0].state, LinkState::Up);
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_use_the_right_function_codes_and_bad_writes_never_reach_the_wire() {
    let sim = Sim::new();
    let server = TcpSim::start(&sim, 0).await;
    let cfg = header()
        + &tcp_device("plc", server.port, 1, "100ms", "1s")
        + &tag("sp_u16", "plc", "holding", 0, "u16", "writable = true")
        + &tag(
            "sp_f32",
            "plc",
            "holding",
            2,
            "f32",
            "order = \"CDAB\"\nwritable = true",
        )
        + &tag(
            "sp_scaled",
            "plc",
            "holding",
            4,
            "i16",
            "scale = 0.1\nwritable = true",
        )
        + &tag(
            "name",
            "plc",
            "holding",
            40,
            "string",
            "length = 4\norder = \"DCBA\"\nwritable = true",
        )
        + &tag("ro", "plc", "holding", 6, "u16", "")
        + &tag(
            "status_bit",
            "plc",
            "holding",
            7,
            "bit",
            "bit = 3\nwritable = true",
        )
        + &tag("run", "plc", "coil", 1, "bool", "writable = true");
    let run = Run::start(&cfg);
    let h = run.handle("plc");
    eventually("connected", Duration::from_secs(10), || {
        h.status().connected
    })
    .await;

    let writes = || -> Vec<Seen> {
        sim.seen()
            .into_iter()
            .filter(|s| [5, 6, 15, 16].contains(&s.fc))
            .collect()
    };
    let tag_write = |tag: &str, value: Value| WriteRequest::Tag {
        tag: tag.into(),
        value,
    };
    h.write(tag_write("sp_u16", Value::U64(500))).await.unwrap();
    h.write(tag_write("sp_f32", Value::F64(123.456)))
        .await
        .unwrap();
    h.write(tag_write("sp_scaled", Value::F64(-12.3)))
        .await
        .unwrap();
    h.write(tag_write("name", Value::String("AB".into())))
        .await
        .unwrap();
    h.write(tag_write("run", Value::Bool(true))).await.unwrap();
    h.write(WriteRequest::Registers {
        device: "plc".into(),
        address: 10,
        values: vec![7, 8, 9],
    })
    .await
    .unwrap();
    h.write(WriteRequest::Registers {
        device: "plc".into(),
        address: 20,
        values: vec![0xBEEF],
    })
    .await
    .unwrap();
    h.write(WriteRequest::Coils {
        device: "plc".into(),
        address: 30,
        values: vec![true, false, true],
    })
    .await
    .unwrap();
    h.write(WriteRequest::Coils {
        device: "plc".into(),
        address: 35,
        values: vec![true],
    })
    .await
    .unwrap();
    let seen: Vec<(u8, u16, u16)> = writes()
        .iter()
        .map(|s| (s.fc, s.address, s.count))
        .collect();
    assert_eq!(
        seen,
        vec![
            (6, 0, 1),
            (16, 2, 2),
            (6, 4, 1),
            (16, 40, 2),
            (5, 1, 1),
            (16, 10, 3),
            (6, 20, 1),
            (15, 30, 3),
            (5, 35, 1),
        ]
    );
    assert_eq!(sim.holding(0, 1), [500]);
    assert_eq!(sim.holding(2, 2), [0xE979, 0x42F6], "123.456 in CDAB");
    assert_eq!(sim.holding(4, 1), [(-123i16) as u16], "-12.3 / 0.1");
    assert_eq!(sim.holding(40, 2), [0x4241, 0], "\"AB\" low byte first");
    assert_eq!(sim.holding(10, 3), [7, 8, 9]);
    assert_eq!(sim.holding(20, 1), [0xBEEF]);
    assert_eq!(
        sim.coils.lock().unwrap()[30..36],
        [true, false, true, false, false, true]
    );
    assert!(sim.coils.lock().unwrap()[1]);

    // Refused before anything is sent.
    type Expect = fn(&WriteError) -> bool;
    let refused: Vec<(WriteRequest, Expect)> = vec![
        (
            tag_write("ro", Value::U64(1)),
            |e| matches!(e, WriteError::NotWritable(t) if t == "ro"),
        ),
        (
            tag_write("nope", Value::U64(1)),
            |e| matches!(e, WriteError::UnknownTag(t) if t == "nope"),
        ),
        (tag_write("sp_u16", Value::U64(70_000)), |e| {
            matches!(e, WriteError::Encode(_))
        }),
        (tag_write("sp_f32", Value::String("x".into())), |e| {
            matches!(e, WriteError::Encode(_))
        }),
        (tag_write("name", Value::String("toolong".into())), |e| {
            matches!(e, WriteError::Encode(_))
        }),
        // A bit inside a register cannot be written atomically.
        (tag_write("status_bit", Value::Bool(true)), |e| {
            matches!(e, WriteError::Encode(_))
        }),
        (
            WriteRequest::Registers {
                device: "other".into(),
                address: 0,
                values: vec![1],
            },
            |e| matches!(e, WriteError::UnknownDevice(d) if d == "other"),
        ),
        (
            WriteRequest::Registers {
                device: "plc".into(),
                address: 0,
                values: vec![],
            },
            |e| matches!(e, WriteError::Invalid(_)),
        ),
        (
            WriteRequest::Registers {
                device: "plc".into(),
                address: 0,
                values: vec![1; 124],
            },
            |e| matches!(e, WriteError::Invalid(_)),
        ),
        (
            WriteRequest::Coils {
                device: "plc".into(),
                address: 0,
                values: vec![true; 1969],
            },
            |e| matches!(e, WriteError::Invalid(_)),
        ),
        (
            WriteRequest::Registers {
                device: "plc".into(),
                address: 65_535,
                values: vec![1, 2],
            },
            |e| matches!(e, WriteError::Invalid(_)),
        ),
    ];
    let before = writes().len();
    for (req, ok) in refused {
        let e = h.write(req.clone()).await.unwrap_err();
        assert!(ok(&e), "{req:?} gave {e}");
    }
    assert_eq!(writes().len(), before, "a refused write reached the device");
    assert_eq!(sim.holding(6, 1), [0]);

    // The largest legal writes go through.
    h.write(WriteRequest::Registers {
        device: "plc".into(),
        address: 100,
        values: (0..123).collect(),
    })
    .await
    .unwrap();
    assert_eq!(sim.holding(222, 1), [122]);

    // A device exception comes back with its code.
    sim.faults()
        .exceptions
        .insert(6, ExceptionCode::IllegalDataValue);
    let e = h
        .write(tag_write("sp_u16", Value::U64(1)))
        .await
        .unwrap_err();
    assert_eq!(e, WriteError::Exception(3));
    sim.faults().exceptions.clear();

    // Polling went on around the writes, and reads the written values back.
    eventually("setpoints read back", Duration::from_secs(5), || {
        run.latest("sp_scaled").and_then(|s| s.value) == Some(Value::F64(-12.3))
            && run.latest("name").and_then(|s| s.value) == Some(Value::String("AB".into()))
    })
    .await;
    assert!(h.status().connected);
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_marks_only_its_request_once_and_clears() {
    let sim = Sim::new();
    sim.set_holding(0, &[11, 12]);
    sim.input.lock().unwrap()[0] = 21;
    sim.faults()
        .exceptions
        .insert(4, ExceptionCode::IllegalDataAddress);
    let server = TcpSim::start(&sim, 0).await;
    let run = Run::start(
        &(header()
            + &tcp_device("plc", server.port, 1, "20ms", "1s")
            + &tag("a", "plc", "holding", 0, "u16", "")
            + &tag("b", "plc", "holding", 1, "u16", "")
            + &tag("broken", "plc", "input", 0, "u16", "")),
    );
    eventually("good values flowing", Duration::from_secs(10), || {
        run.good("a") >= 20
    })
    .await;
    assert!(run.good("b") >= 20);
    let ex_requests = sim.count(|s| s.fc == 4);
    assert!(
        ex_requests >= 10,
        "the failing request is retried each poll"
    );
    assert_eq!(
        run.bad("broken"),
        vec![Quality::Bad(Reason::Exception(2))],
        "one sample on the transition, not one per poll"
    );
    let st = run.handle("plc").status();
    assert!(st.connected, "an exception is an answer");
    assert!(st.errors >= 10, "exceptions are counted: {st:?}");

    sim.faults().exceptions.clear();
    eventually("the tag recovers", Duration::from_secs(5), || {
        run.latest("broken").is_some_and(|s| s.quality.is_good())
    })
    .await;
    assert_eq!(run.latest("broken").unwrap().value, Some(Value::U64(21)));
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_decode_marks_only_that_tag_once() {
    let sim = Sim::new();
    sim.set_holding(0, &[0xFFFE, 42]); // not UTF-8, then a fine u16
    let server = TcpSim::start(&sim, 0).await;
    let run = Run::start(
        &(header()
            + &tcp_device("plc", server.port, 1, "20ms", "1s")
            + &tag("label", "plc", "holding", 0, "string", "length = 2")
            + &tag("n", "plc", "holding", 1, "u16", "")),
    );
    eventually("neighbour flowing", Duration::from_secs(10), || {
        run.good("n") >= 20
    })
    .await;
    assert_eq!(sim.count(|s| s.fc == 3), sim.count(|_| true), "one request");
    let bad = run.bad("label");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(matches!(bad[0], Quality::Bad(Reason::Decode(_))), "{bad:?}");
    sim.set_holding(0, &[0x4F4B]);
    eventually("the tag recovers", Duration::from_secs(5), || {
        run.latest("label").and_then(|s| s.value) == Some(Value::String("OK".into()))
    })
    .await;
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_reconnects_and_recovers() {
    let sim = Sim::new();
    sim.set_holding(0, &[5, 6]);
    let server = TcpSim::start(&sim, 0).await;
    let run = Run::start(
        &(header()
            + &tcp_device("plc", server.port, 1, "50ms", "200ms")
            + &tag("a", "plc", "holding", 0, "u16", "")
            + &tag("b", "plc", "holding", 1, "u16", "")),
    );
    eventually("reading", Duration::from_secs(10), || run.good("a") >= 3).await;
    assert_eq!(sim.connections.load(Ordering::SeqCst), 1);

    sim.faults().delay = Duration::from_millis(600);
    eventually("timeout reported", Duration::from_secs(5), || {
        run.latest("a")
            .is_some_and(|s| s.quality == Quality::Bad(Reason::Timeout))
    })
    .await;
    // After a timeout the late answer could be taken for the next one: the
    // driver drops the connection and opens a new one.
    eventually("reconnected", Duration::from_secs(5), || {
        sim.connections.load(Ordering::SeqCst) >= 3
    })
    .await;
    let st = run.handle("plc").status();
    assert!(!st.connected);
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("no answer"),
        "{st:?}"
    );

    sim.faults().delay = Duration::ZERO;
    let before = run.good("b");
    eventually("reading recovers", Duration::from_secs(10), || {
        run.good("b") >= before + 3
    })
    .await;
    assert_eq!(run.latest("b").unwrap().value, Some(Value::U64(6)));
    assert_eq!(
        run.bad("a"),
        vec![Quality::Bad(Reason::Timeout)],
        "one bad sample for the whole outage"
    );
    eventually("connected again", Duration::from_secs(5), || {
        run.handle("plc").status().connected
    })
    .await;
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_gives_bad_quality_then_reading_resumes_on_restart() {
    let sim = Sim::new();
    sim.set_holding(0, &[5]);
    let server = TcpSim::start(&sim, 0).await;
    let port = server.port;
    let run = Run::start(
        &(header()
            + &tcp_device("plc", port, 1, "50ms", "300ms")
            + &tag("a", "plc", "holding", 0, "u16", "")),
    );
    eventually("reading", Duration::from_secs(10), || run.good("a") >= 3).await;

    server.stop().await;
    eventually("quality goes bad", Duration::from_secs(5), || {
        run.latest("a").is_some_and(|s| {
            matches!(
                s.quality,
                Quality::Bad(Reason::ConnectionLost | Reason::Timeout)
            )
        })
    })
    .await;
    eventually("status down", Duration::from_secs(5), || {
        let st = run.handle("plc").status();
        !st.connected && matches!(st.units[0].state, LinkState::Down { .. })
    })
    .await;
    // Keep it down for several reconnect attempts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = run.handle("plc").status();
    assert!(st.errors >= 2, "reconnects were attempted: {st:?}");
    let e = run
        .handle("plc")
        .write(WriteRequest::Registers {
            device: "plc".into(),
            address: 0,
            values: vec![1],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::NotConnected | WriteError::Io(_)),
        "{e}"
    );

    sim.set_holding(0, &[6]);
    let server = TcpSim::start(&sim, port).await;
    eventually("reading recovers", Duration::from_secs(10), || {
        run.latest("a").and_then(|s| s.value) == Some(Value::U64(6))
    })
    .await;
    assert!(run.handle("plc").status().connected);
    assert!(
        (1..=2).contains(&run.bad("a").len()),
        "transitions only: {:?}",
        run.bad("a")
    );
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_does_not_slow_the_others() {
    let sim = Sim::new();
    let server = TcpSim::start(&sim, 0).await;
    let (dead_port, _hole) = black_hole().await;
    let run = Run::start(
        &(header()
            + &tcp_device("live1", server.port, 1, "50ms", "1s")
            + &tcp_device("live2", server.port, 2, "50ms", "1s")
            + &tcp_device("dead", dead_port, 1, "50ms", "1s")
            + &tag("v1", "live1", "holding", 0, "u16", "")
            + &tag("v2", "live2", "holding", 0, "u16", "")
            + &tag("vd", "dead", "holding", 0, "u16", "")),
    );
    eventually("live devices reading", Duration::from_secs(10), || {
        run.good("v1") > 0 && run.good("v2") > 0
    })
    .await;
    let count = |unit: u8| sim.count(|s| s.unit == unit);
    let (c1, c2) = (count(1), count(2));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ideal = t0.elapsed().as_secs_f64() / 0.05;
    // If the dead device's 1 s timeouts held up the others, they would get
    // about 2 polls each in this window instead of about 40.
    for (unit, before) in [(1, c1), (2, c2)] {
        let done = (count(unit) - before) as f64;
        assert!(
            done >= 0.4 * ideal,
            "unit {unit}: {done} polls, ideal {ideal:.0}"
        );
    }
    assert!(!run.handle("dead").status().connected);
    assert_eq!(
        run.latest("vd").map(|s| s.quality),
        Some(Quality::Bad(Reason::Timeout))
    );
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_groups_keep_their_own_intervals() {
    let sim = Sim::new();
    let server = TcpSim::start(&sim, 0).await;
    let cfg = header().replace("[storage]", "[poll_groups]\nfast = \"40ms\"\n[storage]")
        + &tcp_device("plc", server.port, 1, "400ms", "1s")
        + &tag("fast", "plc", "holding", 0, "u16", "poll_group = \"fast\"")
        + &tag("slow", "plc", "holding", 1, "u16", "");
    let run = Run::start(&cfg);
    eventually("both read", Duration::from_secs(10), || {
        run.good("fast") > 0 && run.good("slow") > 0
    })
    .await;
    // Adjacent registers, but different intervals: never merged.
    assert!(sim.seen().iter().all(|s| s.count == 1), "{:?}", sim.seen());
    let at = |a: u16| sim.count(|s| s.address == a);
    let (f0, s0) = (at(0), at(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (fast, slow) = (at(0) - f0, at(1) - s0);
    // Ideal: 50 and 5.
    assert!((3..=8).contains(&slow), "slow group polled {slow} times");
    assert!(fast >= 4 * slow, "fast {fast} vs slow {slow}");
    run.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sample_channel_blocks_the_driver_instead_of_dropping() {
    let sim = Sim::new();
    let server = TcpSim::start(&sim, 0).await;
    let cfg = config(
        &(header()
            + &tcp_device("plc", server.port, 1, "10ms", "1s")
            + &tag("a", "plc", "holding", 0, "u16", "")),
    );
    let (tx, mut rx) = mpsc::channel::<Vec<Sample>>(1);
    let cancel = CancellationToken::new();
    let handles = drivers::spawn_all(&cfg, tx, cancel.clone()).unwrap();
    eventually("channel full", Duration::from_secs(10), || {
        handles[0].status().cycles >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stuck = sim.count(|_| true);
    let cycles = handles[0].status().cycles;
    // One batch in the channel, one waiting in `send`: nothing else is polled.
    assert!(stuck <= 3, "{stuck} requests while the channel was full");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.count(|_| true), stuck, "the driver kept polling");
    assert_eq!(handles[0].status().cycles, cycles);

    // Draining releases it; every cycle's batch arrives, none was dropped.
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received < cycles + 20 {
        assert!(Instant::now() < deadline, "driver did not resume");
        let batch = rx.recv().await.unwrap();
        assert!(batch.iter().all(|s| s.quality.is_good()));
        received += 1;
    }
    // At most one batch in the channel and one in `send`.
    let cycles = handles[0].status().cycles;
    assert!(
        cycles >= received && cycles - received <= 2,
        "{cycles} cycles, {received} batches"
    );
    cancel.cancel();
    drop(rx);
    for h in handles {
        h.join().await;
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Modbus RTU on a pseudo-terminal pair
// ---------------------------------------------------------------------------

/// A Modbus RTU slave on one end of a pty pair; the driver opens the other
/// end by path, as it would open `/dev/ttyUSB0`.
struct RtuSim {
    path: String,
    _slave_end: tokio_serial::SerialStream,
    task: tokio::task::JoinHandle<()>,
}

impl RtuSim {
    fn start(sim: &Arc<Sim>) -> RtuSim {
        use tokio_serial::SerialPort;
        let (master, slave_end) = tokio_serial::SerialStream::pair().unwrap();
        let path = slave_end.name().unwrap();
        let server = tokio_modbus::server::rtu::Server::new(master);
        let service = Service(sim.clone());
        let task = tokio::spawn(async move {
            let _ = server.serve_forever(service).await;
        });
        // The slave end stays open for the test: if every slave descriptor
        // closed (the driver reopening after a timeout), reads on the master
        // end would fail and end the server.
        RtuSim {
            path,
            _slave_end: slave_end,
            task,
        }
    }
}

impl Drop for RtuSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_backs_off_a_dead_unit_and_the_live_unit_keeps_its_rate() {
    let sim = Sim::new();
    sim.set_holding(0, &[0x42F6, 0xE979, 321]);
    sim.faults().silent.insert(2);
    let line = RtuSim::start(&sim);
    let cfg = header()
        + &format!(
            "\n[[serial_line]]\nname = \"rs485\"\npath = {:?}\nbaud = 19200\nparity = \"none\"\n\
             unit_backoff_initial = \"1s\"\nunit_backoff_max = \"10s\"\n",
            line.path
        )
        + "\n[[device]]\nname = \"live\"\nprotocol = \"modbus-rtu\"\nline = \"rs485\"\nunit_id = 1\npoll_interval = \"100ms\"\ntimeout = \"500ms\"\n"
        + "\n[[device]]\nname = \"dead\"\nprotocol = \"modbus-rtu\"\nline = \"rs485\"\nunit_id = 2\npoll_interval = \"100ms\"\ntimeout = \"500ms\"\n"
        + &tag("temp", "live", "holding", 0, "f32", "")
        + &tag("count", "live", "holding", 2, "u16", "writable = true")
        + &tag("ghost", "dead", "holding", 0, "u16", "");
    let run = Run::start(&cfg);
    eventually("live unit read", Duration::from_secs(10), || {
        run.good("count") >= 2
    })
    .await;
    assert_eq!(
        run.latest("temp").unwrap().value,
        Some(Value::F64(f64::from(123.456f32)))
    );
    eventually("dead unit backed off", Duration::from_secs(10), || {
        run.handle("rs485")
            .status()
            .units
            .iter()
            .any(|u| u.device == "dead" && matches!(u.state, LinkState::BackedOff { .. }))
    })
    .await;
    let st = run.handle("rs485").status();
    assert!(st.connected, "one live unit keeps the line up: {st:?}");
    assert!(
        st.units
            .iter()
            .any(|u| u.device == "live" && u.unit_id == 1 && u.state == LinkState::Up)
    );

    // Without backoff every 100 ms cycle would also wait 500 ms for the
    // dead unit: about 5 live polls in 3 s, and about 5 dead ones. With it,
    // the dead unit is tried after 1, 2, 4 s (plus jitter).
    let live = |s: &Seen| s.unit == 1 && s.fc == 3;
    let dead = |s: &Seen| s.unit == 2;
    let (l0, d0) = (sim.count(live), sim.count(dead));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (l, d) = (sim.count(live) - l0, sim.count(dead) - d0);
    assert!(l >= 12, "live unit polled {l} times in 3 s (ideal 30)");
    assert!(d <= 3, "dead unit polled {d} times in 3 s");
    // The silent unit's tag says why, once, not at every retry.
    assert_eq!(run.bad("ghost"), vec![Quality::Bad(Reason::Timeout)]);
    assert_eq!(run.good("ghost"), 0);

    // Writes share the line: one to the live unit lands, one to the dead
    // unit times out, and the live unit keeps being read afterwards.
    let h = run.handle("rs485");
    h.write(WriteRequest::Tag {
        tag: "count".into(),
        value: Value::U64(999),
    })
    .await
    .unwrap();
    assert_eq!(sim.holding(2, 1), [999]);
    let e = h
        .write(WriteRequest::Registers {
            device: "dead".into(),
            address: 0,
            values: vec![1],
        })
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::Timeout(_)), "{e}");
    let before = run.good("count");
    eventually("live unit still read", Duration::from_secs(5), || {
        run.good("count") >= before + 3
    })
    .await;
    assert_eq!(run.latest("count").unwrap().value, Some(Value::U64(999)));
    run.stop().await;
}

// ---------------------------------------------------------------------------
// The Driver trait and its handle, with a driver of our own
// ---------------------------------------------------------------------------

/// Accepts writes to the tag "ok" and counts them in its status.
#[derive(Debug)]
struct Echo;

#[async_trait]
impl Driver for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn tags(&self) -> Vec<drivers::TagName> {
        vec!["ok".into()]
    }

    fn respawn(&self) -> Box<dyn Driver> {
        Box::new(Echo)
    }

    async fn run(self: Box<Self>, mut ctx: DriverContext) {
        ctx.status.send_modify(|s| s.connected = true);
        loop {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => break,
                Some(cmd) = ctx.writes.recv() => {
                    let r = match &cmd.request {
                        WriteRequest::Tag { tag, .. } if tag == "ok" => Ok(()),
                        WriteRequest::Tag { tag, .. } => Err(WriteError::UnknownTag(tag.clone())),
                        _ => Err(WriteError::UnknownDevice("echo".into())),
                    };
                    ctx.status.send_modify(|s| s.cycles += 1);
                    let _ = cmd.reply.send(r);
                }
            }
        }
    }
}

#[tokio::test]
async fn any_driver_gets_a_handle_with_status_and_writes() {
    let (tx, _rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let h = drivers::spawn(Box::new(Echo), tx, cancel.clone());
    assert_eq!(h.name(), "echo");
    assert_eq!(h.status().name, "echo");
    let w = |t: &str| WriteRequest::Tag {
        tag: t.into(),
        value: Value::Bool(true),
    };
    h.write(w("ok")).await.unwrap();
    assert_eq!(
        h.write(w("x")).await,
        Err(WriteError::UnknownTag("x".into()))
    );
    let st = h.status();
    assert!(st.connected);
    assert_eq!(st.cycles, 2);

    cancel.cancel();
    // Once the task is gone, a write fails instead of hanging.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), h.write(w("ok")))
            .await
            .unwrap(),
        Err(WriteError::DriverStopped)
    );
    tokio::time::timeout(Duration::from_secs(5), h.join())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// Supervision: a driver task that dies is noticed, reported and restarted
// ---------------------------------------------------------------------------

/// Serves writes to "ok"; its first `fail_first` incarnations panic (or,
/// with `by_returning`, end by themselves) at their first write or after
/// `after` has passed.
#[derive(Debug)]
struct Fragile {
    runs: Arc<AtomicUsize>,
    fail_first: usize,
    by_returning: bool,
}

#[async_trait]
impl Driver for Fragile {
    fn name(&self) -> &str {
        "fragile"
    }

    fn tags(&self) -> Vec<drivers::TagName> {
        vec!["fragile.a".into(), "fragile.b".into()]
    }

    fn respawn(&self) -> Box<dyn Driver> {
        Box::new(Fragile {
            runs: self.runs.clone(),
            fail_first: self.fail_first,
            by_returning: self.by_returning,
        })
    }

    async fn run(self: Box<Self>, mut ctx: DriverContext) {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        ctx.status.send_modify(|s| s.connected = true);
        let _ = ctx
            .send(vec![Sample {
                tag: "fragile.a".into(),
                ts: drivers::Timestamp::now(),
                value: Some(Value::U64(run as u64)),
                quality: Quality::Good,
            }])
            .await;
        if run < self.fail_first {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.by_returning {
                return;
            }
            panic!("decoder bug number {run}");
        }
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                Some(cmd) = ctx.writes.recv() => { let _ = cmd.reply.send(Ok(())); }
            }
        }
    }
}

async fn collect(rx: &mut mpsc::Receiver<Vec<Sample>>, out: &mut Vec<Sample>, within: Duration) {
    let end = tokio::time::Instant::now() + within;
    while let Ok(Some(b)) = tokio::time::timeout_at(end, rx.recv()).await {
        out.extend(b);
    }
}

#[tokio::test]
async fn a_panicking_driver_is_reported_at_once_marked_bad_and_restarted() {
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let h = drivers::spawn(
        Box::new(Fragile {
            runs: runs.clone(),
            fail_first: 2,
            by_returning: false,
        }),
        tx,
        cancel.clone(),
    );
    let mut seen = Vec::new();
    // The first failure is reported within its own poll, not at shutdown.
    collect(&mut rx, &mut seen, Duration::from_millis(500)).await;
    let bad: Vec<_> = seen
        .iter()
        .filter(|s| s.quality == Quality::Bad(Reason::DriverFailed))
        .map(|s| s.tag.to_string())
        .collect();
    assert_eq!(bad, ["fragile.a", "fragile.b"], "{seen:?}");
    let st = h.status();
    assert_eq!(st.restarts, 1);
    assert!(!st.connected);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("panicked: decoder bug number 0"),
        "{st:?}"
    );
    // A write while it waits to restart is refused, not queued forever.
    let w = WriteRequest::Tag {
        tag: "ok".into(),
        value: Value::Bool(true),
    };
    assert_eq!(h.write(w.clone()).await, Err(WriteError::NotConnected));
    // Restarted with backoff (1 s, then about 2 s), then it stays up.
    collect(&mut rx, &mut seen, Duration::from_secs(5)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "two failures, then a healthy run"
    );
    assert_eq!(h.status().restarts, 2);
    assert!(h.status().connected);
    assert_eq!(h.write(w).await, Ok(()));
    let good_runs: Vec<_> = seen
        .iter()
        .filter(|s| s.quality.is_good())
        .map(|s| s.value.clone())
        .collect();
    assert_eq!(
        good_runs,
        [
            Some(Value::U64(0)),
            Some(Value::U64(1)),
            Some(Value::U64(2))
        ]
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), h.join())
        .await
        .unwrap();
    // Cancelled on purpose: not a failure, not restarted.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_driver_that_ends_by_itself_is_a_failure_too() {
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let h = drivers::spawn(
        Box::new(Fragile {
            runs: runs.clone(),
            fail_first: 1,
            by_returning: true,
        }),
        tx,
        cancel.clone(),
    );
    let mut seen = Vec::new();
    collect(&mut rx, &mut seen, Duration::from_secs(3)).await;
    assert!(
        seen.iter()
            .any(|s| s.quality == Quality::Bad(Reason::DriverFailed))
    );
    let st = h.status();
    assert_eq!(st.restarts, 1);
    assert!(st.last_error.unwrap().contains("ended by itself"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(h.status().connected);
    cancel.cancel();
    h.join().await;
}
