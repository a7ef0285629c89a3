//! A Modbus TCP server holding a full 65,536-word holding-register file whose
//! values move on every request, so each poll yields new values and every
//! sample passes the edge's deadband filter (a worst case for storage).
//!
//! It is deliberately trivial: in a benchmark the server must cost far less
//! than the client being measured.

use std::future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;

/// Counters of a running [`spawn`]ed server.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub requests: AtomicU64,
}

struct RegisterFile {
    tick: Arc<AtomicU16>,
    stats: Arc<ServerStats>,
}

impl tokio_modbus::server::Service for RegisterFile {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let t = self.tick.fetch_add(1, Ordering::Relaxed);
        let words = |addr: u16, n: u16| -> Result<Vec<u16>, ExceptionCode> {
            if n == 0 || n > 125 || u32::from(addr) + u32::from(n) > 65_536 {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            Ok((0..n)
                .map(|i| addr.wrapping_add(i).wrapping_mul(7).wrapping_add(t))
                .collect())
        };
        future::ready(match req {
            Request::ReadHoldingRegisters(addr, n) => {
                words(addr, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(addr, n) => {
                words(addr, n).map(Response::ReadInputRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serve on `addr` (use `127.0.0.1:0`) until `cancel` fires.
pub async fn spawn(
    addr: SocketAddr,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, Arc<ServerStats>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let tick = Arc::new(AtomicU16::new(0));
    let stats = Arc::new(ServerStats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, socket_addr| {
            let tick = tick.clone();
            let stats = st.clone();
            async move {
                accept_tcp_connection(stream, socket_addr, move |_| {
                    Ok(Some(RegisterFile {
                        tick: tick.clone(),
                        stats: stats.clone(),
                    }))
                })
            }
        };
        let on_error = |err| tracing::warn!(%err, "bench server connection error");
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = server.serve(&on_connected, on_error) => {
                if let Err(err) = r { tracing::error!(%err, "bench server stopped"); }
            }
        }
    });
    Ok((local, stats))
}
