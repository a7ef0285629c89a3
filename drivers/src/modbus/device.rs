//! One Modbus device (unit): its tags, poll groups and read plans, and the
//! poll and write operations on a connected context.

use std::collections::BTreeMap;
use std::time::Duration;

use firmware_config::{Area, DataType, Device, EdgeConfig, Tag, WordOrder};
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader, Writer};

use super::LinkError;
use super::codec;
use super::planner::{self, PlanItem, ReadRequest};
use crate::driver::{WriteError, WriteRequest};
use crate::sample::{Quality, Reason, Sample, TagName, Timestamp, Value};

/// A tag ready for decoding.
#[derive(Debug, Clone)]
pub struct TagSpec {
    pub name: TagName,
    pub area: Area,
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub writable: bool,
}

impl TagSpec {
    /// The Modbus view of `t`; `None` for tags of other protocols.
    pub fn from_tag(t: &Tag) -> Option<Self> {
        let p = t.modbus()?;
        Some(Self {
            name: TagName::from(t.name.as_str()),
            area: p.area,
            address: p.address,
            data_type: p.data_type,
            order: p.order,
            scale: t.scale,
            offset: t.offset,
            writable: t.writable,
        })
    }
}

impl TagSpec {
    fn plan_item(&self) -> PlanItem {
        PlanItem {
            area: self.area,
            address: self.address,
            // Bit areas hold one bit per address whatever the declared type.
            width: if self.area.is_bit() {
                1
            } else {
                self.data_type.width()
            },
        }
    }
}

/// Tags read at one interval, with their precomputed plan.
#[derive(Debug, Clone)]
pub struct PollGroup {
    pub interval: Duration,
    /// Indices into [`ModbusDevice::tags`].
    pub tags: Vec<usize>,
    /// Requests; their `items` index into `tags` above.
    pub plan: Vec<ReadRequest>,
    pub next_due: Instant,
}

/// A device with its compiled tags.
#[derive(Debug)]
pub struct ModbusDevice {
    pub name: String,
    pub unit_id: u8,
    pub timeout: Duration,
    pub tags: Vec<TagSpec>,
    pub groups: Vec<PollGroup>,
    /// Last quality emitted per tag: bad samples are only sent on change.
    last_quality: Vec<Option<Quality>>,
}

/// The outcome of one poll.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub samples: Vec<Sample>,
    pub requests: u64,
    /// Requests answered with an exception (the rest of the poll went on).
    pub exceptions: u64,
}

impl ModbusDevice {
    /// Compile `device`'s tags from the configuration.
    pub fn from_config(cfg: &EdgeConfig, device: &Device) -> Self {
        let tags: Vec<(TagSpec, Duration)> = cfg
            .tags_of(&device.name)
            .filter_map(|t| Some((TagSpec::from_tag(t)?, cfg.poll_interval_of(t))))
            .collect();
        Self::new(
            &device.name,
            device.transport.unit_id().unwrap_or(1),
            device.timeout,
            &device.limits,
            tags,
        )
    }

    /// Compile from explicit tags and their poll intervals.
    pub fn new(
        name: &str,
        unit_id: u8,
        timeout: Duration,
        limits: &firmware_config::RequestLimits,
        tags: Vec<(TagSpec, Duration)>,
    ) -> Self {
        let mut by_interval: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (i, (_, interval)) in tags.iter().enumerate() {
            by_interval.entry(*interval).or_default().push(i);
        }
        let specs: Vec<TagSpec> = tags.into_iter().map(|(t, _)| t).collect();
        let now = Instant::now();
        let groups = by_interval
            .into_iter()
            .map(|(interval, idx)| {
                let items: Vec<PlanItem> = idx.iter().map(|&i| specs[i].plan_item()).collect();
                PollGroup {
                    interval,
                    plan: planner::plan(&items, limits),
                    tags: idx,
                    next_due: now,
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            unit_id,
            timeout,
            last_quality: vec![None; specs.len()],
            tags: specs,
            groups,
        }
    }

    /// Index of the group due first, and when.
    pub fn next_due(&self) -> Option<(usize, Instant)> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i, g.next_due))
            .min_by_key(|(_, t)| *t)
    }

    /// Move group `g` to its next slot. Missed slots are skipped, not
    /// bursted: a device that was slow does not get hammered afterwards.
    pub fn reschedule(&mut self, g: usize, now: Instant) {
        if let Some(group) = self.groups.get_mut(g) {
            group.next_due += group.interval;
            if group.next_due <= now {
                let behind = now - group.next_due;
                let skip = (behind.as_nanos() / group.interval.as_nanos().max(1)) as u32 + 1;
                group.next_due += group.interval * skip;
            }
        }
    }

    /// Postpone every group to at least `at` (backed-off units).
    pub fn postpone(&mut self, at: Instant) {
        for g in &mut self.groups {
            g.next_due = g.next_due.max(at);
        }
    }

    fn emit_bad(&mut self, tag: usize, reason: &Reason, ts: Timestamp, out: &mut Vec<Sample>) {
        let q = Quality::Bad(reason.clone());
        if self.last_quality[tag].as_ref() != Some(&q) {
            out.push(Sample {
                tag: self.tags[tag].name.clone(),
                ts,
                value: None,
                quality: q.clone(),
            });
            self.last_quality[tag] = Some(q);
        }
    }

    /// Mark every tag bad with `reason` (sent only for tags whose quality changes).
    pub fn mark_all_bad(&mut self, reason: &Reason) -> Vec<Sample> {
        let ts = Timestamp::now();
        let mut out = Vec::new();
        for t in 0..self.tags.len() {
            self.emit_bad(t, reason, ts, &mut out);
        }
        out
    }

    /// Mark the tags of group `g` bad with `reason` (transition-only).
    pub fn mark_group_bad(&mut self, g: usize, reason: &Reason) -> Vec<Sample> {
        let ts = Timestamp::now();
        let mut out = Vec::new();
        let tags = self
            .groups
            .get(g)
            .map(|gr| gr.tags.clone())
            .unwrap_or_default();
        for t in tags {
            self.emit_bad(t, reason, ts, &mut out);
        }
        out
    }

    /// Read group `g` once. An exception answer marks only that request's
    /// tags and the poll continues; a timeout or I/O error aborts the poll
    /// (the caller reconnects or backs off) after marking the group's tags.
    pub async fn poll(
        &mut self,
        ctx: &mut Context,
        g: usize,
    ) -> Result<PollOutcome, (PollOutcome, LinkError)> {
        let mut out = PollOutcome::default();
        let Some(group) = self.groups.get(g) else {
            return Ok(out);
        };
        let plan = group.plan.clone();
        let members = group.tags.clone();
        for req in &plan {
            out.requests += 1;
            let answer = tokio::time::timeout(self.timeout, read(ctx, req)).await;
            let ts = Timestamp::now();
            match answer {
                Err(_) => {
                    let e = LinkError::Timeout(self.timeout);
                    out.samples.extend(self.mark_group_bad(g, &e.reason()));
                    return Err((out, e));
                }
                Ok(Err(e)) => {
                    let e = LinkError::from_modbus(e);
                    out.samples.extend(self.mark_group_bad(g, &e.reason()));
                    return Err((out, e));
                }
                Ok(Ok(Err(code))) => {
                    out.exceptions += 1;
                    let reason = Reason::Exception(u8::from(code));
                    for &i in &req.items {
                        self.emit_bad(members[i], &reason, ts, &mut out.samples);
                    }
                }
                Ok(Ok(Ok(data))) => {
                    for &i in &req.items {
                        let t = members[i];
                        match self.decode(t, req, &data) {
                            Ok(value) => {
                                self.last_quality[t] = Some(Quality::Good);
                                out.samples.push(Sample {
                                    tag: self.tags[t].name.clone(),
                                    ts,
                                    value: Some(value),
                                    quality: Quality::Good,
                                });
                            }
                            // A bad value is as persistent as a dead link:
                            // report it on the transition only.
                            Err(e) => self.emit_bad(
                                t,
                                &Reason::Decode(e.to_string()),
                                ts,
                                &mut out.samples,
                            ),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The engineering value of tag `t` from `req`'s response.
    fn decode(&self, t: usize, req: &ReadRequest, data: &Data) -> Result<Value, codec::CodecError> {
        let spec = &self.tags[t];
        let off = usize::from(spec.address - req.start);
        let raw = match data {
            Data::Bits(bits) => {
                bits.get(off)
                    .map(|b| Value::Bool(*b))
                    .ok_or(codec::CodecError::Length {
                        expected: off + 1,
                        got: bits.len(),
                    })
            }
            Data::Words(words) => {
                let w = usize::from(spec.data_type.width());
                match words.get(off..off + w) {
                    Some(slice) => codec::decode(slice, spec.data_type, spec.order),
                    None => Err(codec::CodecError::Length {
                        expected: off + w,
                        got: words.len(),
                    }),
                }
            }
        }?;
        Ok(codec::scale(raw, spec.scale, spec.offset))
    }

    /// Whether this device serves `request` (so an RTU line can route it).
    pub fn serves(&self, request: &WriteRequest) -> bool {
        match request {
            WriteRequest::Tag { tag, .. } => self.tags.iter().any(|t| &*t.name == tag),
            WriteRequest::Registers { device, .. } | WriteRequest::Coils { device, .. } => {
                device == &self.name
            }
        }
    }

    /// Perform a write on a connected context.
    pub async fn write(&self, ctx: &mut Context, request: &WriteRequest) -> Result<(), WriteError> {
        let op = match request {
            WriteRequest::Tag { tag, value } => {
                let spec = self
                    .tags
                    .iter()
                    .find(|t| &*t.name == tag)
                    .ok_or_else(|| WriteError::UnknownTag(tag.clone()))?;
                if !spec.writable || !spec.area.is_writable() {
                    return Err(WriteError::NotWritable(tag.clone()));
                }
                if spec.area == Area::Coil {
                    let on = match value {
                        Value::Bool(b) => *b,
                        v => v.as_f64().is_some_and(|x| x != 0.0),
                    };
                    WriteOp::Coils(spec.address, vec![on])
                } else {
                    let raw = match value {
                        Value::String(_) => value.clone(),
                        v if spec.scale != 1.0 || spec.offset != 0.0 => {
                            let eng = v.as_f64().unwrap_or(f64::NAN);
                            Value::F64(codec::unscale(eng, spec.scale, spec.offset))
                        }
                        v => v.clone(),
                    };
                    WriteOp::Registers(
                        spec.address,
                        codec::encode(&raw, spec.data_type, spec.order)?,
                    )
                }
            }
            WriteRequest::Registers { device, .. } | WriteRequest::Coils { device, .. }
                if *device != self.name =>
            {
                return Err(WriteError::UnknownDevice(device.clone()));
            }
            WriteRequest::Registers {
                address, values, ..
            } => WriteOp::Registers(*address, values.clone()),
            WriteRequest::Coils {
                address, values, ..
            } => WriteOp::Coils(*address, values.clone()),
        };
        op.check()?;
        let fut = async {
            match &op {
                WriteOp::Registers(a, v) if v.len() == 1 => {
                    ctx.write_single_register(*a, v[0]).await
                }
                WriteOp::Registers(a, v) => ctx.write_multiple_registers(*a, v).await,
                WriteOp::Coils(a, v) if v.len() == 1 => ctx.write_single_coil(*a, v[0]).await,
                WriteOp::Coils(a, v) => ctx.write_multiple_coils(*a, v).await,
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(WriteError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(WriteError::Io(e.to_string())),
            Ok(Ok(Err(code))) => Err(WriteError::Exception(u8::from(code))),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

/// Most registers one FC 16 request may carry (Modbus spec 6.12).
pub const MAX_WRITE_REGISTERS: usize = 123;
/// Most coils one FC 15 request may carry (Modbus spec 6.11).
pub const MAX_WRITE_COILS: usize = 1968;

#[derive(Debug)]
enum WriteOp {
    Registers(u16, Vec<u16>),
    Coils(u16, Vec<bool>),
}

impl WriteOp {
    /// Refuse what the protocol cannot carry before anything is sent: a
    /// device would answer with an exception at best, and splitting a write
    /// would make it non-atomic.
    fn check(&self) -> Result<(), WriteError> {
        let (address, len, max, what) = match self {
            WriteOp::Registers(a, v) => (*a, v.len(), MAX_WRITE_REGISTERS, "registers"),
            WriteOp::Coils(a, v) => (*a, v.len(), MAX_WRITE_COILS, "coils"),
        };
        if len == 0 {
            return Err(WriteError::Invalid(format!("no {what} to write")));
        }
        if len > max {
            return Err(WriteError::Invalid(format!(
                "{len} {what} in one write; Modbus allows at most {max}"
            )));
        }
        if usize::from(address) + len > 65_536 {
            return Err(WriteError::Invalid(format!(
                "{len} {what} from address {address} run past the end of the address space"
            )));
        }
        Ok(())
    }
}

/// A read response.
#[derive(Debug)]
pub enum Data {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

async fn read(ctx: &mut Context, req: &ReadRequest) -> tokio_modbus::Result<Data> {
    Ok(match req.area {
        Area::Coil => ctx.read_coils(req.start, req.count).await?.map(Data::Bits),
        Area::DiscreteInput => ctx
            .read_discrete_inputs(req.start, req.count)
            .await?
            .map(Data::Bits),
        Area::HoldingRegister => ctx
            .read_holding_registers(req.start, req.count)
            .await?
            .map(Data::Words),
        Area::InputRegister => ctx
            .read_input_registers(req.start, req.count)
            .await?
            .map(Data::Words),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(intervals: &[u64]) -> ModbusDevice {
        let tags = intervals
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let spec = TagSpec {
                    name: TagName::from(format!("t{i}").as_str()),
                    area: Area::HoldingRegister,
                    address: i as u16,
                    data_type: DataType::U16,
                    order: WordOrder::Abcd,
                    scale: 1.0,
                    offset: 0.0,
                    writable: false,
                };
                (spec, Duration::from_millis(*ms))
            })
            .collect();
        ModbusDevice::new(
            "d",
            1,
            Duration::from_secs(1),
            &firmware_config::RequestLimits::default(),
            tags,
        )
    }

    #[test]
    fn tags_are_grouped_by_interval_and_each_group_is_planned() {
        let d = device(&[100, 1000, 100, 100]);
        assert_eq!(d.groups.len(), 2);
        assert_eq!(d.groups[0].interval, Duration::from_millis(100));
        assert_eq!(d.groups[0].tags, vec![0, 2, 3]);
        // Addresses 0, 2, 3 with the default gap: one request.
        assert_eq!(d.groups[0].plan.len(), 1);
        assert_eq!(d.groups[1].tags, vec![1]);
    }

    #[test]
    fn missed_slots_are_skipped_not_bursted() {
        let mut d = device(&[100]);
        let start = d.groups[0].next_due;
        // On time: the next slot is one interval later.
        d.reschedule(0, start);
        assert_eq!(d.groups[0].next_due, start + Duration::from_millis(100));
        // 550 ms late (a slow poll): the missed slots are dropped and the
        // next one is the first slot still in the future, on the grid.
        let now = start + Duration::from_millis(650);
        d.reschedule(0, now);
        assert_eq!(d.groups[0].next_due, start + Duration::from_millis(700));
        assert!(d.groups[0].next_due > now);
        // Exactly on a slot boundary still moves forward.
        let now = d.groups[0].next_due + Duration::from_millis(100);
        d.reschedule(0, now);
        assert!(d.groups[0].next_due > now);
    }

    #[test]
    fn postpone_never_brings_a_slot_forward() {
        let mut d = device(&[100, 1000]);
        let t0 = d.groups[0].next_due;
        d.groups[1].next_due = t0 + Duration::from_secs(5);
        d.postpone(t0 + Duration::from_secs(2));
        assert_eq!(d.groups[0].next_due, t0 + Duration::from_secs(2));
        assert_eq!(d.groups[1].next_due, t0 + Duration::from_secs(5));
        assert_eq!(d.next_due(), Some((0, t0 + Duration::from_secs(2))));
    }

    #[test]
    fn bad_qualities_are_sent_on_transitions_only() {
        let mut d = device(&[100, 100]);
        assert_eq!(d.mark_all_bad(&Reason::Timeout).len(), 2);
        assert!(d.mark_all_bad(&Reason::Timeout).is_empty());
        let changed = d.mark_group_bad(0, &Reason::ConnectionLost);
        assert_eq!(changed.len(), 2);
        assert!(
            changed
                .iter()
                .all(|s| s.quality == Quality::Bad(Reason::ConnectionLost) && s.value.is_none())
        );
    }
}
