//! One task per Modbus TCP device.
//!
//! The task connects (with `connect_timeout`), polls its groups when due,
//! serves writes between polls, and on a timeout or I/O error drops the
//! connection — after a timeout the stream may still deliver the late answer
//! and desynchronise transaction ids — then reconnects after an exponential
//! backoff with jitter. Other devices are other tasks, so a dead or slow
//! device only ever delays itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firmware_config::{Device, EdgeConfig, Transport};
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

use super::device::{ModbusDevice, PollOutcome};
use super::{LinkError, Seen, Watched, exception_name};
use crate::backoff::{Backoff, Jitter};
use crate::driver::{Driver, DriverContext, DriverStatus, LinkState, UnitStatus, WriteError};
use crate::sample::Reason;

/// A Modbus TCP device driver.
#[derive(Debug)]
pub struct TcpDriver {
    device: ModbusDevice,
    host: String,
    port: u16,
    connect_timeout: Duration,
    backoff: Backoff,
}

impl TcpDriver {
    /// Build from a `modbus-tcp` device of the configuration; `None` for other kinds.
    pub fn from_config(cfg: &EdgeConfig, device: &Device) -> Option<Self> {
        let Transport::ModbusTcp {
            host,
            port,
            connect_timeout,
            ..
        } = &device.transport
        else {
            return None;
        };
        Some(Self {
            device: ModbusDevice::from_config(cfg, device),
            host: host.clone(),
            port: *port,
            connect_timeout: *connect_timeout,
            backoff: Backoff::new(device.backoff),
        })
    }

    /// Connect; `Seen` tells when the device closes the connection.
    async fn connect(&self) -> Result<(Context, Arc<Seen>), String> {
        let attempt = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
                .collect();
            let mut last = format!("{} resolved to no address", self.host);
            for addr in addrs {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Polls are small request/response pairs: Nagle only adds latency.
                        let _ = stream.set_nodelay(true);
                        let (stream, seen) = Watched::new(stream);
                        return Ok((tcp::attach_slave(stream, Slave(self.device.unit_id)), seen));
                    }
                    Err(e) => last = format!("cannot connect to {addr}: {e}"),
                }
            }
            Err(last)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no connection to {}:{} within {:?}",
                self.host, self.port, self.connect_timeout
            )),
        }
    }
}

/// The device's state after a poll that completed: up only if it returned
/// data; a device that answers every read with an exception is not.
fn answered_state(dev: &ModbusDevice, out: &PollOutcome) -> LinkState {
    match dev.answering() {
        Some(false) => LinkState::Refusing {
            reason: match out.last_exception {
                Some(c) => format!(
                    "every read answered with exception {c:02} ({})",
                    exception_name(c)
                ),
                None => "every answer was malformed".to_owned(),
            },
        },
        _ => LinkState::Up,
    }
}

fn publish(
    ctx: &DriverContext,
    dev: &ModbusDevice,
    state: LinkState,
    f: impl FnOnce(&mut DriverStatus),
) {
    ctx.status.send_modify(|s| {
        s.connected = state == LinkState::Up;
        s.units = vec![UnitStatus {
            device: dev.name.clone(),
            unit_id: dev.unit_id,
            state,
        }];
        f(s);
    });
}

#[async_trait]
impl Driver for TcpDriver {
    fn name(&self) -> &str {
        &self.device.name
    }

    fn tags(&self) -> Vec<crate::TagName> {
        self.device.tag_names().collect()
    }

    fn respawn(&self) -> Box<dyn Driver> {
        let mut backoff = self.backoff.clone();
        backoff.reset();
        Box::new(Self {
            device: self.device.fresh(),
            host: self.host.clone(),
            port: self.port,
            connect_timeout: self.connect_timeout,
            backoff,
        })
    }

    async fn run(mut self: Box<Self>, mut ctx: DriverContext) {
        let mut jitter = Jitter::from_name(&self.device.name);
        let cancel = ctx.cancel.clone();
        'outer: while !cancel.is_cancelled() {
            publish(&ctx, &self.device, LinkState::Connecting, |_| {});
            let (mut conn, seen) = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    let wait = self.backoff.fail(jitter.next_unit());
                    tracing::warn!(device = %self.device.name, error = %e, retry_in = ?wait, "modbus tcp connect failed");
                    let bad = self.device.mark_all_bad(&Reason::ConnectionLost);
                    if !ctx.send(bad).await {
                        break;
                    }
                    publish(
                        &ctx,
                        &self.device,
                        LinkState::Down {
                            failures: self.backoff.failures(),
                            retry_in: wait,
                        },
                        |s| {
                            s.errors += 1;
                            s.last_error = Some(e);
                        },
                    );
                    if !ctx.wait_disconnected(Instant::now() + wait).await {
                        break 'outer;
                    }
                    continue;
                }
            };
            tracing::debug!(device = %self.device.name, host = %self.host, port = self.port, "modbus tcp connection open");
            // A TCP connection is not yet a device that answers (a gateway
            // may accept for a dead slave): stay `Connecting` until a poll
            // returns data, and say so once when that changes.
            let mut shown: Option<LinkState> = None;
            loop {
                let Some((g, due)) = self.device.next_due() else {
                    // No tags: just serve writes.
                    tokio::select! {
                        _ = cancel.cancelled() => break 'outer,
                        Some(cmd) = ctx.writes.recv() => {
                            let r = self.device.write(&mut conn, &cmd.request).await;
                            let _ = cmd.reply.send(r);
                        }
                    }
                    continue;
                };
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'outer,
                    Some(cmd) = ctx.writes.recv() => {
                        let r = self.device.write(&mut conn, &cmd.request).await;
                        let failed_link = matches!(r, Err(WriteError::Timeout(_) | WriteError::Io(_)));
                        if let Err(e) = &r {
                            tracing::warn!(device = %self.device.name, request = ?cmd.request, error = %e, "write failed");
                        } else {
                            tracing::info!(device = %self.device.name, request = ?cmd.request, "write done");
                        }
                        let _ = cmd.reply.send(r);
                        if failed_link {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(due) => {
                        let started = Instant::now();
                        let result = self.device.poll(&mut conn, g).await;
                        let elapsed = started.elapsed();
                        self.device.reschedule(g, Instant::now());
                        match result {
                            Ok(out) => {
                                self.backoff.reset();
                                let state = answered_state(&self.device, &out);
                                if shown.as_ref() != Some(&state) {
                                    match &state {
                                        LinkState::Refusing { reason } => tracing::warn!(device = %self.device.name, host = %self.host, port = self.port, unit = self.device.unit_id, "modbus tcp device answers but returns no data: {reason}"),
                                        _ => tracing::info!(device = %self.device.name, host = %self.host, port = self.port, unit = self.device.unit_id, "modbus tcp device answering"),
                                    }
                                    shown = Some(state.clone());
                                }
                                publish(&ctx, &self.device, state, |s| {
                                    s.cycles += 1;
                                    s.requests += out.requests;
                                    s.errors += out.exceptions + out.malformed;
                                    s.last_cycle = Some(elapsed);
                                });
                                if !ctx.send(out.samples).await {
                                    break 'outer;
                                }
                            }
                            Err((out, e)) => {
                                // tokio-modbus reports a closed stream with a stale errno.
                                let e = if seen.eof() && matches!(e, LinkError::Io(_)) { LinkError::Closed } else { e };
                                let wait = self.backoff.fail(jitter.next_unit());
                                tracing::warn!(device = %self.device.name, host = %self.host, port = self.port, unit = self.device.unit_id, error = %e, retry_in = ?wait, "modbus tcp poll failed; reconnecting");
                                let mut samples = out.samples;
                                samples.extend(self.device.mark_all_bad(&e.reason()));
                                publish(
                                    &ctx,
                                    &self.device,
                                    LinkState::Down { failures: self.backoff.failures(), retry_in: wait },
                                    |s| {
                                        s.requests += out.requests;
                                        s.errors += 1;
                                        s.last_error = Some(e.to_string());
                                    },
                                );
                                if !ctx.send(samples).await {
                                    break 'outer;
                                }
                                let _ = conn.disconnect().await;
                                if !ctx.wait_disconnected(Instant::now() + wait).await {
                                    break 'outer;
                                }
                                continue 'outer;
                            }
                        }
                    }
                }
            }
        }
        publish(
            &ctx,
            &self.device,
            LinkState::Down {
                failures: 0,
                retry_in: Duration::ZERO,
            },
            |_| {},
        );
    }
}
