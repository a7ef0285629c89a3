//! Modbus TCP and RTU over `tokio-modbus`.
//!
//! - [`planner`] and [`codec`] are pure.
//! - [`device`] holds a device's compiled tags and poll groups and performs
//!   one poll or one write on a connected `tokio_modbus` context, turning
//!   answers into samples with transition-only bad qualities.
//! - [`tcp`]: one task per TCP device (reconnect with backoff).
//! - [`rtu`]: one task per serial line; its units are polled in turn,
//!   an unresponsive unit is backed off so it cannot stall the others.

pub mod codec;
pub mod device;
pub mod planner;
pub mod rtu;
pub mod tcp;

use std::time::Duration;

/// Why a request did not produce an answer. Exceptions are answers and are
/// handled per request; these end the poll (and, on TCP, the connection).
///
/// The texts are ours: tokio-modbus passes through `Success (os error 0)`
/// for a peer that closed the connection and `Debug` dumps of whole
/// answers for mismatches, neither of which tells an integrator anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the device closed the connection")]
    Closed,
    #[error("{0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl LinkError {
    fn from_modbus(e: tokio_modbus::Error) -> Self {
        use std::io::ErrorKind;
        use tokio_modbus::ProtocolError;
        match e {
            tokio_modbus::Error::Transport(io) => match io.kind() {
                // The codecs' verdicts: bad CRC, impossible lengths, garbage.
                ErrorKind::InvalidData => LinkError::Protocol(format!("corrupt answer ({io})")),
                ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => LinkError::Closed,
                _ => LinkError::Io(io.to_string()),
            },
            tokio_modbus::Error::Protocol(ProtocolError::HeaderMismatch { message, .. }) => {
                LinkError::Protocol(format!("answer to another request ({message})"))
            }
            tokio_modbus::Error::Protocol(ProtocolError::FunctionCodeMismatch {
                request,
                result,
            }) => {
                let got = match &result {
                    Ok(r) => r.function_code().value(),
                    Err(x) => x.function.value(),
                };
                LinkError::Protocol(format!(
                    "answer with function code {got} to a request with function code {}",
                    request.value()
                ))
            }
        }
    }

    /// The quality reason this failure gives to the tags it affects.
    pub fn reason(&self) -> crate::Reason {
        match self {
            LinkError::Timeout(_) => crate::Reason::Timeout,
            LinkError::Io(_) | LinkError::Closed => crate::Reason::ConnectionLost,
            LinkError::Protocol(m) => crate::Reason::Protocol(m.clone()),
        }
    }
}

/// The read function code of an area (FC 1–4).
pub fn function_code(area: firmware_config::Area) -> u8 {
    use firmware_config::Area;
    match area {
        Area::Coil => 1,
        Area::DiscreteInput => 2,
        Area::HoldingRegister => 3,
        Area::InputRegister => 4,
    }
}

/// The Modbus specification's name of an exception code.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// What a [`Watched`] transport saw: whether the peer closed it (a read
/// returned end of file) and how many bytes arrived. tokio-modbus reports
/// a closed stream with whatever `errno` was last set, and on RTU it drops
/// a frame with a bad CRC silently and waits on: these tell a closed link
/// and a garbled answer apart from a silent device.
#[derive(Debug, Default)]
pub struct Seen {
    eof: std::sync::atomic::AtomicBool,
    bytes: std::sync::atomic::AtomicU64,
}

impl Seen {
    pub fn eof(&self) -> bool {
        self.eof.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A transport that reports what it [`Seen`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    seen: std::sync::Arc<Seen>,
}

impl<T> Watched<T> {
    pub fn new(inner: T) -> (Self, std::sync::Arc<Seen>) {
        let seen = std::sync::Arc::new(Seen::default());
        (
            Self {
                inner,
                seen: seen.clone(),
            },
            seen,
        )
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::sync::atomic::Ordering;
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r {
            let n = buf.filled().len() - before;
            if n == 0 && buf.remaining() > 0 {
                self.seen.eof.store(true, Ordering::Relaxed);
            }
            self.seen.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
