//! One task per RS-485 line, serving every unit on it.
//!
//! A serial line has one master and one conversation at a time, so requests
//! are strictly serialized and separated by the line's inter-frame delay
//! (at least 3.5 character times). A unit that does not answer costs a full
//! timeout, so after a failure it is *backed off*: its polls are skipped
//! until an exponentially growing, jittered delay expires, and the healthy
//! units keep their poll rate. Its tags keep the quality of the failure
//! (`Bad(Timeout)` for a silent unit), sent once, rather than flipping to
//! `Bad(BackedOff)` and back at every retry; the unit's [`LinkState`] in the
//! line's status shows the backoff.
//!
//! After a timeout the port is reopened: a late answer would otherwise sit
//! in the buffer and be taken for the answer to the next request.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use firmware_config::{EdgeConfig, Parity, SerialLine, Transport};
use futures::FutureExt;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

use super::device::ModbusDevice;
use super::{LinkError, Seen, Watched, exception_name};
use crate::backoff::{Backoff, Jitter};
use crate::driver::{
    Driver, DriverContext, DriverStatus, LinkState, UnitStatus, WriteCommand, WriteError,
};
use crate::sample::Reason;

struct Unit {
    device: ModbusDevice,
    backoff: Backoff,
    backed_off_until: Option<Instant>,
    /// The last exception code a poll of this unit got, for its status.
    last_exception: Option<u8>,
    /// The state last logged, so changes are logged once.
    shown: Option<LinkState>,
}

/// A Modbus RTU serial line and its units.
pub struct RtuLineDriver {
    line: SerialLine,
    units: Vec<Unit>,
    port_backoff: Backoff,
    last_frame_end: Instant,
}

impl std::fmt::Debug for RtuLineDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtuLineDriver")
            .field("line", &self.line.name)
            .field("units", &self.units.len())
            .finish()
    }
}

/// A unit that was polled without a link failure: up if it returns data.
fn unit_state(u: &Unit) -> LinkState {
    match u.device.answering() {
        Some(true) => LinkState::Up,
        Some(false) => LinkState::Refusing {
            reason: match u.last_exception {
                Some(c) => format!(
                    "every read answered with exception {c:02} ({})",
                    exception_name(c)
                ),
                None => "every answer was malformed".to_owned(),
            },
        },
        None => LinkState::Connecting,
    }
}

impl RtuLineDriver {
    /// Build the driver for serial line `line` and every `modbus-rtu` device on it.
    pub fn from_config(cfg: &EdgeConfig, line: &SerialLine) -> Self {
        let units = cfg
            .devices
            .iter()
            .filter(
                |d| matches!(&d.transport, Transport::ModbusRtu { line: l, .. } if *l == line.name),
            )
            .map(|d| Unit {
                device: ModbusDevice::from_config(cfg, d),
                backoff: Backoff::new(line.unit_backoff),
                backed_off_until: None,
                last_exception: None,
                shown: None,
            })
            .collect();
        Self {
            port_backoff: Backoff::new(firmware_config::Backoff::default()),
            line: line.clone(),
            units,
            last_frame_end: Instant::now(),
        }
    }

    /// The configured inter-frame delay, never below the protocol minimum.
    fn frame_gap(&self) -> Duration {
        self.line
            .inter_frame_delay
            .max(self.line.min_inter_frame_delay())
    }

    /// Open the port; `Seen` counts the bytes that arrive on it.
    fn open(&self) -> Result<(Context, Arc<Seen>), String> {
        let builder = tokio_serial::new(self.line.path.to_string_lossy(), self.line.baud)
            .parity(match self.line.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            })
            .data_bits(match self.line.data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                _ => tokio_serial::DataBits::Eight,
            })
            .stop_bits(if self.line.stop_bits == 2 {
                tokio_serial::StopBits::Two
            } else {
                tokio_serial::StopBits::One
            });
        let port = tokio_serial::SerialStream::open(&builder)
            .map_err(|e| format!("cannot open serial port {}: {e}", self.line.path.display()))?;
        let (port, seen) = Watched::new(port);
        Ok((rtu::attach(port), seen))
    }

    fn publish(&self, ctx: &DriverContext, f: impl FnOnce(&mut DriverStatus)) {
        let now = Instant::now();
        let units: Vec<UnitStatus> = self
            .units
            .iter()
            .map(|u| UnitStatus {
                device: u.device.name.clone(),
                unit_id: u.device.unit_id,
                state: match u.backed_off_until {
                    Some(t) if t > now => LinkState::BackedOff {
                        failures: u.backoff.failures(),
                        retry_in: t - now,
                    },
                    _ if u.backoff.failures() > 0 => LinkState::Connecting,
                    _ => unit_state(u),
                },
            })
            .collect();
        ctx.status.send_modify(|s| {
            s.connected = units.iter().any(|u| u.state == LinkState::Up);
            s.units = units;
            f(s);
        });
    }

    /// Wait out the inter-frame gap since the last frame on the wire.
    async fn quiet_line(&self) {
        tokio::time::sleep_until(self.last_frame_end + self.frame_gap()).await;
    }

    async fn serve_write(&mut self, conn: &mut Context, cmd: WriteCommand) -> bool {
        let Some(u) = self
            .units
            .iter()
            .position(|u| u.device.serves(&cmd.request))
        else {
            let what = match &cmd.request {
                crate::WriteRequest::Tag { tag, .. } => WriteError::UnknownTag(tag.clone()),
                crate::WriteRequest::Registers { device, .. }
                | crate::WriteRequest::Coils { device, .. } => {
                    WriteError::UnknownDevice(device.clone())
                }
            };
            let _ = cmd.reply.send(Err(what));
            return true;
        };
        self.quiet_line().await;
        conn.set_slave(Slave(self.units[u].device.unit_id));
        let r = self.units[u].device.write(conn, &cmd.request).await;
        self.last_frame_end = Instant::now();
        let ok_link = !matches!(r, Err(WriteError::Timeout(_) | WriteError::Io(_)));
        match &r {
            Ok(()) => tracing::info!(line = %self.line.name, request = ?cmd.request, "write done"),
            Err(e) => {
                tracing::warn!(line = %self.line.name, request = ?cmd.request, error = %e, "write failed")
            }
        }
        let _ = cmd.reply.send(r);
        ok_link
    }
}

#[async_trait]
impl Driver for RtuLineDriver {
    fn name(&self) -> &str {
        &self.line.name
    }

    fn tags(&self) -> Vec<crate::TagName> {
        self.units
            .iter()
            .flat_map(|u| u.device.tag_names())
            .collect()
    }

    fn respawn(&self) -> Box<dyn Driver> {
        Box::new(Self {
            line: self.line.clone(),
            units: self
                .units
                .iter()
                .map(|u| Unit {
                    device: u.device.fresh(),
                    backoff: Backoff::new(self.line.unit_backoff),
                    backed_off_until: None,
                    last_exception: None,
                    shown: None,
                })
                .collect(),
            port_backoff: Backoff::new(firmware_config::Backoff::default()),
            last_frame_end: Instant::now(),
        })
    }

    async fn run(mut self: Box<Self>, mut ctx: DriverContext) {
        let mut jitter = Jitter::from_name(&self.line.name);
        let cancel = ctx.cancel.clone();
        'outer: while !cancel.is_cancelled() {
            let (mut conn, seen) = match self.open() {
                Ok(c) => c,
                Err(e) => {
                    let wait = self.port_backoff.fail(jitter.next_unit());
                    tracing::warn!(line = %self.line.name, error = %e, retry_in = ?wait, "serial line unavailable");
                    let mut bad = Vec::new();
                    for u in &mut self.units {
                        bad.extend(u.device.mark_all_bad(&Reason::ConnectionLost));
                    }
                    if !ctx.send(bad).await {
                        break;
                    }
                    self.publish(&ctx, |s| {
                        s.connected = false;
                        s.errors += 1;
                        s.last_error = Some(e);
                    });
                    if !ctx.wait_disconnected(Instant::now() + wait).await {
                        break 'outer;
                    }
                    continue;
                }
            };
            self.port_backoff.reset();
            tracing::info!(line = %self.line.name, path = %self.line.path.display(), units = self.units.len(), "serial line open");
            loop {
                // The unit and group due first across the whole line.
                let next = self
                    .units
                    .iter()
                    .enumerate()
                    .filter_map(|(i, u)| u.device.next_due().map(|(g, t)| (i, g, t)))
                    .min_by_key(|(_, _, t)| *t);
                let Some((u, g, due)) = next else {
                    tokio::select! {
                        _ = cancel.cancelled() => break 'outer,
                        Some(cmd) = ctx.writes.recv() => { if !self.serve_write(&mut conn, cmd).await { continue 'outer; } }
                    }
                    continue;
                };
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'outer,
                    Some(cmd) = ctx.writes.recv() => {
                        if !self.serve_write(&mut conn, cmd).await {
                            continue 'outer;
                        }
                    }
                    _ = tokio::time::sleep_until(due) => {
                        let now = Instant::now();
                        if let Some(until) = self.units[u].backed_off_until.filter(|t| *t > now) {
                            // Not reached in practice: a failure postpones all
                            // of the unit's groups to the end of its backoff.
                            // Kept so that nothing can poll a backed-off unit.
                            let bad = self.units[u].device.mark_group_bad(g, &Reason::BackedOff);
                            self.units[u].device.reschedule(g, now);
                            self.units[u].device.postpone(until);
                            if !ctx.send(bad).await {
                                break 'outer;
                            }
                            continue;
                        }
                        self.quiet_line().await;
                        conn.set_slave(Slave(self.units[u].device.unit_id));
                        let started = Instant::now();
                        let bytes_before = seen.bytes();
                        // One unit's bug must not silence the others on the
                        // line: a panic while polling it fails that unit only.
                        let polled = AssertUnwindSafe(self.units[u].device.poll(&mut conn, g))
                            .catch_unwind()
                            .await;
                        self.last_frame_end = Instant::now();
                        let result = match polled {
                            Ok(r) => r,
                            Err(panic) => {
                                let unit = &mut self.units[u];
                                let wait = unit.backoff.fail(jitter.next_unit());
                                let until = Instant::now() + wait;
                                unit.backed_off_until = Some(until);
                                unit.device.postpone(until);
                                tracing::error!(line = %self.line.name, device = %unit.device.name, unit = unit.device.unit_id, panic = %crate::driver::panic_text(&*panic), retry_in = ?wait, "polling this unit panicked; its tags are bad, it is backed off, the rest of the line goes on");
                                let bad = unit.device.mark_all_bad(&Reason::DriverFailed);
                                self.publish(&ctx, |s| {
                                    s.errors += 1;
                                    s.last_error = Some(format!("unit {}: driver failed", self.units[u].device.unit_id));
                                });
                                if !ctx.send(bad).await {
                                    break 'outer;
                                }
                                // The conversation's state is unknown: reopen.
                                let _ = conn.disconnect().await;
                                continue 'outer;
                            }
                        };
                        let elapsed = started.elapsed();
                        self.units[u].device.reschedule(g, Instant::now());
                        match result {
                            Ok(out) => {
                                let line = &self.line.name;
                                let unit = &mut self.units[u];
                                unit.backoff.reset();
                                unit.backed_off_until = None;
                                if out.last_exception.is_some() {
                                    unit.last_exception = out.last_exception;
                                }
                                let state = unit_state(unit);
                                if unit.shown.as_ref() != Some(&state) {
                                    match &state {
                                        LinkState::Refusing { reason } => tracing::warn!(line = %line, device = %unit.device.name, unit = unit.device.unit_id, "modbus rtu unit answers but returns no data: {reason}"),
                                        LinkState::Up => tracing::info!(line = %line, device = %unit.device.name, unit = unit.device.unit_id, "modbus rtu unit answering"),
                                        _ => {}
                                    }
                                    unit.shown = Some(state);
                                }
                                self.publish(&ctx, |s| {
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
                                // tokio-modbus drops a frame with a bad CRC and
                                // waits on: bytes that came but made no answer
                                // are a garbled answer, not a silent unit.
                                let e = match e {
                                    LinkError::Timeout(_) if seen.bytes() > bytes_before => LinkError::Protocol(format!(
                                        "corrupt answer: {} bytes arrived but no valid frame (bad CRC, wrong length or noise on the line)",
                                        seen.bytes() - bytes_before
                                    )),
                                    e => e,
                                };
                                let unit = &mut self.units[u];
                                let wait = unit.backoff.fail(jitter.next_unit());
                                let until = Instant::now() + wait;
                                unit.backed_off_until = Some(until);
                                unit.device.postpone(until);
                                unit.shown = None;
                                tracing::warn!(line = %self.line.name, device = %unit.device.name, unit = unit.device.unit_id, error = %e, retry_in = ?wait, "line {}, unit {} ({}): {e}; backing the unit off", self.line.name, unit.device.unit_id, unit.device.name);
                                let mut samples = out.samples;
                                samples.extend(unit.device.mark_all_bad(&e.reason()));
                                self.publish(&ctx, |s| {
                                    s.requests += out.requests;
                                    s.errors += 1;
                                    s.last_error = Some(e.to_string());
                                });
                                if !ctx.send(samples).await {
                                    break 'outer;
                                }
                                if matches!(e, LinkError::Timeout(_) | LinkError::Protocol(_)) {
                                    // Reopen to drop any late bytes (see module docs).
                                    let _ = conn.disconnect().await;
                                    continue 'outer;
                                }
                                if matches!(e, LinkError::Io(_)) {
                                    continue 'outer;
                                }
                            }
                        }
                    }
                }
            }
        }
        ctx.status.send_modify(|s| s.connected = false);
    }
}
