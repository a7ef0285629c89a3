//! The plant's PLC: a Modbus TCP server (tokio-modbus server side) over a
//! register image refreshed from the model, with fault switches.
//!
//! Each area is a register file of [`AREA_SIZE`] entries, as on a typical
//! PLC: reading an unmapped address inside it returns 0, reading beyond it
//! is `ILLEGAL DATA ADDRESS`. Writes are only accepted on setpoints and
//! command coils; a value outside a setpoint's range is `ILLEGAL DATA VALUE`
//! and changes nothing. The write switches of [`Faults`] make an accepted
//! setpoint write not take, as a PLC in local/manual mode does: the master
//! gets the normal answer either way, so only a read-back can tell.

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
    ignore_writes: AtomicBool,
    /// `f64::to_bits` of the offset added to written setpoints (0.0: off).
    alter_writes: AtomicU64,
}

/// How the PLC applies an accepted setpoint write (holding registers).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum WriteMode {
    /// As written.
    #[default]
    Apply,
    /// Acknowledged, not applied.
    Ignore,
    /// Applied off by this much, kept inside the setpoint's range.
    Offset(f64),
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
    /// Acknowledge setpoint writes normally but apply nothing while set
    /// (range checks still answer `ILLEGAL DATA VALUE`). Coils are not affected.
    pub fn ignore_writes(&self, on: bool) {
        self.ignore_writes.store(on, Ordering::SeqCst);
    }
    /// Apply setpoint writes off by `delta` (`None` or 0 = normal), clamped
    /// into the setpoint's range; the answer is normal. [`Faults::ignore_writes`]
    /// wins when both are set.
    pub fn alter_writes(&self, delta: Option<f64>) {
        let d = delta.filter(|d| d.is_finite()).unwrap_or(0.0);
        self.alter_writes.store(d.to_bits(), Ordering::SeqCst);
    }
    /// What the write switches make of the next setpoint write.
    pub fn write_mode(&self) -> WriteMode {
        if self.ignore_writes.load(Ordering::SeqCst) {
            return WriteMode::Ignore;
        }
        let d = f64::from_bits(self.alter_writes.load(Ordering::SeqCst));
        if d == 0.0 {
            WriteMode::Apply
        } else {
            WriteMode::Offset(d)
        }
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
        self.write_registers_as(addr, words, WriteMode::Apply)
    }

    /// [`Shared::write_registers`] under a fault switch: the checks and the
    /// answer are the same; `mode` decides what reaches the model.
    pub fn write_registers_as(
        &mut self,
        addr: u16,
        words: &[u16],
        mode: WriteMode,
    ) -> Result<(), ExceptionCode> {
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
            let (lo, hi) = id.limits();
            let applied = match mode {
                WriteMode::Apply => v,
                WriteMode::Ignore => continue,
                WriteMode::Offset(d) => (v + d).clamp(lo, hi),
            };
            let _ = self.plant.set(id, applied);
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
        self.handle_as(req, WriteMode::Apply)
    }

    /// Answer one request, applying setpoint writes as `mode` says.
    pub fn handle_as(
        &mut self,
        req: Request<'_>,
        mode: WriteMode,
    ) -> Result<Response, ExceptionCode> {
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
                .write_registers_as(a, &[w], mode)
                .map(|()| Response::WriteSingleRegister(a, w)),
            R::WriteMultipleRegisters(a, ws) => {
                let n = u16::try_from(ws.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                self.write_registers_as(a, &ws, mode)
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
                Ok(mut s) => s.handle_as(req, self.faults.write_mode()),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::borrow::Cow;

    use super::*;

    fn plc() -> Shared {
        Shared::new(Plant::new(7))
    }

    fn outlet_sp() -> &'static Register {
        register_map()
            .iter()
            .find(|r| r.name == "heater.outlet_temp_sp")
            .unwrap()
    }

    /// The function-16 write a master sends for `value`, answered under `mode`.
    fn write(s: &mut Shared, value: f64, mode: WriteMode) -> Result<Response, ExceptionCode> {
        let r = outlet_sp();
        let words = registers::encode(r, value);
        s.handle_as(
            Request::WriteMultipleRegisters(r.address, Cow::Owned(words)),
            mode,
        )
    }

    /// The setpoint as a master reads it back, and as the model holds it.
    fn read_back(s: &mut Shared) -> (f64, f64) {
        let r = outlet_sp();
        let Ok(Response::ReadHoldingRegisters(words)) = s.handle(Request::ReadHoldingRegisters(
            r.address,
            r.data_type.width(),
        )) else {
            panic!("no read answer");
        };
        (
            registers::decode(r, &words).unwrap(),
            s.plant.snapshot().sp.outlet_temp,
        )
    }

    #[test]
    fn the_switches_map_to_write_modes() {
        let f = Faults::default();
        assert_eq!(f.write_mode(), WriteMode::Apply);
        f.alter_writes(Some(1.5));
        assert_eq!(f.write_mode(), WriteMode::Offset(1.5));
        f.ignore_writes(true);
        assert_eq!(f.write_mode(), WriteMode::Ignore, "ignoring wins");
        f.ignore_writes(false);
        f.alter_writes(None);
        assert_eq!(f.write_mode(), WriteMode::Apply);
        f.alter_writes(Some(f64::NAN));
        assert_eq!(f.write_mode(), WriteMode::Apply, "a NaN offset is off");
    }

    #[test]
    fn an_ignored_write_is_acknowledged_and_changes_nothing() {
        let mut s = plc();
        let before = read_back(&mut s);
        let r = outlet_sp();
        let answer = write(&mut s, before.1 + 7.0, WriteMode::Ignore).unwrap();
        assert_eq!(
            answer,
            Response::WriteMultipleRegisters(r.address, r.data_type.width()),
            "the normal answer"
        );
        assert_eq!(read_back(&mut s), before);
        // Out of range is still refused, as without the switch.
        assert_eq!(
            write(&mut s, 999.0, WriteMode::Ignore),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn an_altered_write_lands_off_by_the_delta_inside_the_range() {
        let mut s = plc();
        let r = outlet_sp();
        let answer = write(&mut s, 370.0, WriteMode::Offset(2.5)).unwrap();
        assert_eq!(
            answer,
            Response::WriteMultipleRegisters(r.address, r.data_type.width())
        );
        assert_eq!(read_back(&mut s), (372.5, 372.5));
        write(&mut s, 370.0, WriteMode::Offset(-4.0)).unwrap();
        assert_eq!(read_back(&mut s).1, 366.0);
        let (_, hi) = crate::plant::SetpointId::OutletTemp.limits();
        write(&mut s, hi - 1.0, WriteMode::Offset(10.0)).unwrap();
        assert_eq!(read_back(&mut s).1, hi, "clamped into the setpoint's range");
    }

    #[test]
    fn with_the_switches_off_writes_apply_as_before() {
        let mut s = plc();
        write(&mut s, 371.0, WriteMode::Apply).unwrap();
        assert_eq!(read_back(&mut s), (371.0, 371.0));
        assert_eq!(
            write(&mut s, 999.0, WriteMode::Apply),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(read_back(&mut s).1, 371.0);
        // Coils do not go through the write switches.
        s.handle_as(Request::WriteSingleCoil(0, false), WriteMode::Ignore)
            .unwrap();
        assert!(!s.plant.snapshot().run_cmd);
    }
}
