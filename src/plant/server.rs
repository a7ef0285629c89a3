//! The plant's PLC: a Modbus TCP server (tokio-modbus server side) over a
//! register image refreshed from the model, with fault switches.
//!
//! Each area is a register file of [`AREA_SIZE`] entries, as on a typical
//! PLC: reading an unmapped address inside it returns 0, reading beyond it
//! is `ILLEGAL DATA ADDRESS`. Writes are only accepted on setpoints and
//! command coils; a value outside a setpoint's range is `ILLEGAL DATA VALUE`
//! and changes nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use firmware_config::{Area, DataType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::Server;
use tokio_util::sync::CancellationToken;

use super::model::{Plant, Snapshot};
use super::registers::{self, Command, Register, Source, register_map};

/// Entries per area.
pub const AREA_SIZE: usize = 2000;

/// Switches that make the PLC misbehave, for fault tests and demos.
#[derive(Debug, Default)]
pub struct Faults {
    drop_epoch: AtomicU64,
    refuse: AtomicBool,
    exception: AtomicU8,
    delay_ms: AtomicU64,
}

impl Faults {
    /// Close every open connection (each at its next request, without answering).
    pub fn drop_connections(&self) {
        self.drop_epoch.fetch_add(1, Ordering::SeqCst);
    }
    /// Refuse (immediately close) new connections while set.
    pub fn refuse_connections(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }
    /// Answer every read with this exception code (`None` = normal).
    pub fn set_exception(&self, code: Option<u8>) {
        self.exception.store(code.unwrap_or(0), Ordering::SeqCst);
    }
    /// Delay every answer by this much.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

/// The register image and the model behind it.
#[derive(Debug)]
pub struct Shared {
    pub plant: Plant,
    holding: Vec<u16>,
    input: Vec<u16>,
    coils: Vec<bool>,
    discrete: Vec<bool>,
}

impl Shared {
    pub fn new(plant: Plant) -> Self {
        let mut s = Self {
            plant,
            holding: vec![0; AREA_SIZE],
            input: vec![0; AREA_SIZE],
            coils: vec![false; AREA_SIZE],
            discrete: vec![false; AREA_SIZE],
        };
        s.refresh();
        s
    }

    /// Copy the model's current values into the register image.
    pub fn refresh(&mut self) {
        let snap: Snapshot = self.plant.snapshot().clone();
        for r in register_map() {
            let eng = match r.source {
                Source::Measure(f) => f(&snap),
                Source::Setpoint(id) => match id {
                    super::model::SetpointId::OutletTemp => snap.sp.outlet_temp,
                    super::model::SetpointId::FeedRate => snap.sp.feed_rate,
                    super::model::SetpointId::TopPressure => snap.sp.top_pressure,
                    super::model::SetpointId::RefluxRatio => snap.sp.reflux_ratio,
                },
                Source::Command(Command::Run) => f64::from(u8::from(snap.run_cmd)),
                Source::Command(Command::FaultReset) => 0.0,
                Source::Text(t) => {
                    if let DataType::String { len } = r.data_type {
                        self.put_words(r, &registers::encode_text(t, len));
                    }
                    continue;
                }
            };
            if matches!(r.data_type, DataType::Bit(_)) {
                continue; // the status word itself is mapped too
            }
            match r.area {
                Area::Coil => self.coils[usize::from(r.address)] = eng != 0.0,
                Area::DiscreteInput => self.discrete[usize::from(r.address)] = eng != 0.0,
                _ => self.put_words(r, &registers::encode(r, eng)),
            }
        }
    }

    fn put_words(&mut self, r: &Register, words: &[u16]) {
        let file = if r.area == Area::HoldingRegister {
            &mut self.holding
        } else {
            &mut self.input
        };
        let start = usize::from(r.address);
        if let Some(dst) = file.get_mut(start..start + words.len()) {
            dst.copy_from_slice(words);
        }
    }

    fn read_words(&self, area: Area, addr: u16, n: u16) -> Result<Vec<u16>, ExceptionCode> {
        let file = if area == Area::HoldingRegister {
            &self.holding
        } else {
            &self.input
        };
        let (a, n) = (usize::from(addr), usize::from(n));
        if n == 0 || n > 125 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        file.get(a..a + n)
            .map(<[u16]>::to_vec)
            .ok_or(ExceptionCode::IllegalDataAddress)
    }

    fn read_bits(&self, area: Area, addr: u16, n: u16) -> Result<Vec<bool>, ExceptionCode> {
        let file = if area == Area::Coil {
            &self.coils
        } else {
            &self.discrete
        };
        let (a, n) = (usize::from(addr), usize::from(n));
        if n == 0 || n > 2000 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        file.get(a..a + n)
            .map(<[bool]>::to_vec)
            .ok_or(ExceptionCode::IllegalDataAddress)
    }

    /// Apply a write of holding registers; all-or-nothing.
    pub fn write_registers(&mut self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let end = u32::from(addr) + words.len() as u32;
        let mut updates = Vec::new();
        let mut covered = vec![false; words.len()];
        for r in register_map()
            .iter()
            .filter(|r| r.area == Area::HoldingRegister)
        {
            let (rs, re) = (
                u32::from(r.address),
                u32::from(r.address) + u32::from(r.data_type.width()),
            );
            if re <= u32::from(addr) || rs >= end {
                continue;
            }
            let Source::Setpoint(id) = r.source else {
                return Err(ExceptionCode::IllegalDataAddress);
            };
            if rs < u32::from(addr) || re > end {
                // Half of a multi-register value cannot be applied atomically.
                return Err(ExceptionCode::IllegalDataValue);
            }
            let off = (rs - u32::from(addr)) as usize;
            let w = &words[off..off + usize::from(r.data_type.width())];
            let value = registers::decode(r, w).ok_or(ExceptionCode::IllegalDataValue)?;
            let (lo, hi) = id.limits();
            // Tolerate the rounding of scaled integers at the range ends.
            let eps = r.scale.abs() * 0.5;
            if value < lo - eps || value > hi + eps {
                return Err(ExceptionCode::IllegalDataValue);
            }
            covered[off..off + w.len()]
                .iter_mut()
                .for_each(|c| *c = true);
            updates.push((id, value.clamp(lo, hi)));
        }
        if covered.iter().any(|c| !c) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        for (id, v) in updates {
            let _ = self.plant.set(id, v);
        }
        self.refresh();
        Ok(())
    }

    /// Apply a write of coils; all-or-nothing.
    pub fn write_coils(&mut self, addr: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let mut cmds = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let a = u32::from(addr) + i as u32;
            let cmd = register_map()
                .iter()
                .find(|r| r.area == Area::Coil && u32::from(r.address) == a)
                .and_then(|r| match r.source {
                    Source::Command(c) => Some(c),
                    _ => None,
                })
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            cmds.push((cmd, *v));
        }
        for (cmd, v) in cmds {
            match cmd {
                Command::Run => self.plant.set_run(v),
                Command::FaultReset if v => self.plant.reset_fault(),
                Command::FaultReset => {}
            }
        }
        self.refresh();
        Ok(())
    }

    /// Answer one request.
    pub fn handle(&mut self, req: Request<'_>) -> Result<Response, ExceptionCode> {
        use Request as R;
        match req {
            R::ReadCoils(a, n) => self.read_bits(Area::Coil, a, n).map(Response::ReadCoils),
            R::ReadDiscreteInputs(a, n) => self
                .read_bits(Area::DiscreteInput, a, n)
                .map(Response::ReadDiscreteInputs),
            R::ReadHoldingRegisters(a, n) => self
                .read_words(Area::HoldingRegister, a, n)
                .map(Response::ReadHoldingRegisters),
            R::ReadInputRegisters(a, n) => self
                .read_words(Area::InputRegister, a, n)
                .map(Response::ReadInputRegisters),
            R::WriteSingleRegister(a, w) => self
                .write_registers(a, &[w])
                .map(|()| Response::WriteSingleRegister(a, w)),
            R::WriteMultipleRegisters(a, ws) => {
                let n = u16::try_from(ws.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                self.write_registers(a, &ws)
                    .map(|()| Response::WriteMultipleRegisters(a, n))
            }
            R::WriteSingleCoil(a, c) => self
                .write_coils(a, &[c])
                .map(|()| Response::WriteSingleCoil(a, c)),
            R::WriteMultipleCoils(a, cs) => {
                let n = u16::try_from(cs.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                self.write_coils(a, &cs)
                    .map(|()| Response::WriteMultipleCoils(a, n))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

struct PlcService {
    shared: Arc<Mutex<Shared>>,
    faults: Arc<Faults>,
}

impl tokio_modbus::server::Service for PlcService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let delay = Duration::from_millis(self.faults.delay_ms.load(Ordering::SeqCst));
        let exception = self.faults.exception.load(Ordering::SeqCst);
        let is_read = matches!(
            req,
            Request::ReadCoils(..)
                | Request::ReadDiscreteInputs(..)
                | Request::ReadHoldingRegisters(..)
                | Request::ReadInputRegisters(..)
        );
        let result = if exception != 0 && is_read {
            Err(ExceptionCode::new(exception))
        } else {
            match self.shared.lock() {
                Ok(mut s) => s.handle(req),
                Err(_) => Err(ExceptionCode::ServerDeviceFailure),
            }
        };
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            result
        })
    }
}

/// A TCP stream that fails its next read once the fault epoch moves on,
/// which makes the server close the connection without answering.
struct Droppable {
    inner: TcpStream,
    faults: Arc<Faults>,
    epoch: u64,
}

impl Droppable {
    fn dropped(&self) -> bool {
        self.faults.drop_epoch.load(Ordering::SeqCst) != self.epoch
    }
}

impl AsyncRead for Droppable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.dropped() {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Droppable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.dropped() {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve `shared` on `listener` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    faults: Arc<Faults>,
    cancel: CancellationToken,
) {
    let server = Server::new(listener);
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let shared = shared.clone();
        let faults = faults.clone();
        async move {
            if faults.refuse.load(Ordering::SeqCst) {
                tracing::debug!(%peer, "plant refusing connection (fault switch)");
                return Ok(None);
            }
            let _ = stream.set_nodelay(true);
            let epoch = faults.drop_epoch.load(Ordering::SeqCst);
            let service = PlcService {
                shared,
                faults: faults.clone(),
            };
            Ok(Some((
                service,
                Droppable {
                    inner: stream,
                    faults,
                    epoch,
                },
            )))
        }
    };
    let on_error = |err: std::io::Error| tracing::debug!(%err, "plant connection closed");
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = server.serve(&on_connected, on_error) => {
            if let Err(err) = r {
                tracing::error!(%err, "plant server stopped");
            }
        }
    }
}
