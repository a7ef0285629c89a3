//! One Modbus device (unit): its tags, poll groups and read plans, and the
//! poll and write operations on a connected context.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use firmware_config::{Area, DataType, Device, EdgeConfig, Tag, WordOrder};
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context, Writer};
use tokio_modbus::{Request, Response};

use super::codec;
use super::planner::{self, PlanItem, ReadRequest};
use super::{LinkError, exception_name, function_code};
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
    /// Requests; their `items` index into `tags` above. Starts as the
    /// planner's coalesced plan and is refined when the device refuses a
    /// coalesced read (see [`ModbusDevice::poll`]).
    pub plan: Vec<ReadRequest>,
    pub next_due: Instant,
    /// Coalesced reads whose splitting did not help (every part was refused
    /// too): not split again, so a faulty device is not probed every poll.
    refused: Vec<(Area, u16, u16)>,
    /// Whether the group's last poll got data back (`None`: not polled yet).
    answered: Option<bool>,
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
    /// When each (function, address, count, code) exception was last
    /// logged, and how many were not logged since.
    exception_log: HashMap<RefusedRead, (Instant, u64)>,
}

/// A read (area, start, count) and how it was refused: an exception code,
/// or `None` for a malformed answer.
type RefusedRead = (Area, u16, u16, Option<u8>);

/// An exception answer of the same read is logged at most this often.
const EXCEPTION_LOG_EVERY: Duration = Duration::from_secs(600);

/// Exceptions that say "this read does not fit this device" (02 illegal
/// data address, 03 illegal data value, 04 server device failure, which
/// some devices answer for undefined registers), as opposed to "busy".
fn refuses_span(code: u8) -> bool {
    matches!(code, 2..=4)
}

/// The outcome of one poll.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub samples: Vec<Sample>,
    pub requests: u64,
    /// Requests answered with an exception (the rest of the poll went on).
    pub exceptions: u64,
    /// Answers that did not match the request (e.g. fewer registers than
    /// asked for): that request's tags are `Bad(decode)`, the poll goes on.
    pub malformed: u64,
    /// Requests answered with data.
    pub answers: u64,
    /// The last exception code of this poll, for status and logs.
    pub last_exception: Option<u8>,
}

/// How the device answered one read.
#[derive(Debug)]
enum Answer {
    Data(Data),
    Exception(u8),
    /// Another number of registers (or too few bits) than asked for, the
    /// framing consistent: tokio-modbus's `Reader` methods assert on this
    /// in debug builds.
    WrongLength {
        got: usize,
    },
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
                    refused: Vec::new(),
                    answered: None,
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
            exception_log: HashMap::new(),
        }
    }

    /// The same device with fresh state (qualities, logs), keeping the
    /// compiled tags and any read plan it learned: what a restarted
    /// driver starts from.
    pub fn fresh(&self) -> Self {
        let now = Instant::now();
        Self {
            name: self.name.clone(),
            unit_id: self.unit_id,
            timeout: self.timeout,
            tags: self.tags.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| PollGroup {
                    interval: g.interval,
                    tags: g.tags.clone(),
                    plan: g.plan.clone(),
                    next_due: now,
                    refused: Vec::new(),
                    answered: None,
                })
                .collect(),
            last_quality: vec![None; self.tags.len()],
            exception_log: HashMap::new(),
        }
    }

    /// Names of every tag of this device.
    pub fn tag_names(&self) -> impl Iterator<Item = TagName> + '_ {
        self.tags.iter().map(|t| t.name.clone())
    }

    /// Whether the device returns data: `Some(true)` when any group's last
    /// poll got data, `Some(false)` when every polled group was refused
    /// (exceptions or malformed answers only), `None` before any poll.
    /// "Connected" means this, not an open socket.
    pub fn answering(&self) -> Option<bool> {
        self.groups
            .iter()
            .filter_map(|g| g.answered)
            .reduce(|a, b| a || b)
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

    /// Read group `g` once. An exception or malformed answer marks only
    /// that request's tags and the poll continues; a timeout or I/O error
    /// aborts the poll: the caller marks the tags bad and reconnects or
    /// backs off.
    ///
    /// A coalesced read refused with exception 02/03/04 is split
    /// ([`planner::split`]) and the parts are read at once, down to one
    /// read per tag; the parts that work replace it in the group's plan for
    /// later polls (logged once). If no part returns data either, the
    /// original read is kept and not split again.
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
        let mut learned = Vec::with_capacity(plan.len());
        let mut changed = false;
        for req in plan {
            match self.read_splitting(ctx, g, req, &mut out).await {
                Ok(pieces) => {
                    changed |= pieces.len() > 1;
                    learned.extend(pieces);
                }
                // The caller marks the device's tags, once it knows what
                // the failure was (a timeout after bytes arrived on a
                // serial line is a garbled answer, not silence).
                Err(e) => return Err((out, e)),
            }
        }
        if let Some(group) = self.groups.get_mut(g) {
            if changed {
                group.plan = learned;
            }
            if out.requests > 0 {
                group.answered = Some(out.answers > 0);
            }
        }
        Ok(out)
    }

    /// Read `req`; if the device refuses it as a whole, read its parts.
    /// Returns the requests that replace `req` in the plan.
    async fn read_splitting(
        &mut self,
        ctx: &mut Context,
        g: usize,
        req: ReadRequest,
        out: &mut PollOutcome,
    ) -> Result<Vec<ReadRequest>, LinkError> {
        let (answer, ts) = self.read_once(ctx, &req, out).await?;
        let splittable = match &answer {
            Answer::Exception(code) => {
                refuses_span(*code)
                    && req.items.len() > 1
                    && !self.groups[g]
                        .refused
                        .contains(&(req.area, req.start, req.count))
            }
            _ => false,
        };
        if !splittable {
            self.apply(g, &req, answer, ts, out);
            return Ok(vec![req]);
        }
        let Answer::Exception(code) = answer else {
            return Ok(vec![req]);
        };
        let items = self.plan_items(g);
        let answers_before = out.answers;
        let mut work: VecDeque<ReadRequest> = VecDeque::new();
        if let Some((a, b)) = planner::split(&req, &items) {
            work.push_back(a);
            work.push_back(b);
        }
        let mut pieces = Vec::new();
        while let Some(r) = work.pop_front() {
            let (answer, ts) = self.read_once(ctx, &r, out).await?;
            if let Answer::Exception(c) = answer
                && refuses_span(c)
                && let Some((a, b)) = planner::split(&r, &items)
            {
                work.push_front(b);
                work.push_front(a);
                continue;
            }
            self.apply(g, &r, answer, ts, out);
            pieces.push(r);
        }
        if out.answers == answers_before {
            // Nothing in it is readable: the device is failing (or the
            // whole range is wrong), not choking on a bridged gap.
            self.groups[g]
                .refused
                .push((req.area, req.start, req.count));
            return Ok(vec![req]);
        }
        let spans: Vec<String> = pieces
            .iter()
            .map(|r| format!("{}..{}", r.start, u32::from(r.start) + u32::from(r.count)))
            .collect();
        tracing::info!(
            device = %self.name,
            unit = self.unit_id,
            "the device refused the read of {} {}..{} with exception {code:02} ({}); \
             reading it as {} smaller requests from now on ({}). Set `max_gap = 0` \
             on this device to skip the probing",
            area_name(req.area),
            req.start,
            u32::from(req.start) + u32::from(req.count),
            exception_name(code),
            pieces.len(),
            spans.join(", "),
        );
        Ok(pieces)
    }

    /// The planner's view of group `g`'s tags (what `ReadRequest::items` index).
    fn plan_items(&self, g: usize) -> Vec<PlanItem> {
        self.groups[g]
            .tags
            .iter()
            .map(|&t| self.tags[t].plan_item())
            .collect()
    }

    /// One read with the device's timeout; exceptions are logged (rate-limited).
    async fn read_once(
        &mut self,
        ctx: &mut Context,
        req: &ReadRequest,
        out: &mut PollOutcome,
    ) -> Result<(Answer, Timestamp), LinkError> {
        out.requests += 1;
        let answer = match tokio::time::timeout(self.timeout, read(ctx, req)).await {
            Err(_) => return Err(LinkError::Timeout(self.timeout)),
            Ok(r) => r?,
        };
        let ts = Timestamp::now();
        match &answer {
            Answer::Data(_) => out.answers += 1,
            Answer::Exception(code) => {
                out.exceptions += 1;
                out.last_exception = Some(*code);
                self.log_exception(req, *code);
            }
            Answer::WrongLength { got } => {
                out.malformed += 1;
                if let Some(suppressed) = self.throttle(req, None) {
                    tracing::warn!(
                        device = %self.name,
                        unit = self.unit_id,
                        function = function_code(req.area),
                        address = req.start,
                        count = req.count,
                        got,
                        suppressed,
                        "malformed answer: asked for {} {}, got {got}; its tags are marked bad",
                        req.count,
                        if req.area.is_bit() { "bits" } else { "registers" },
                    );
                }
            }
        }
        Ok((answer, ts))
    }

    /// Whether to log a refused read now: `Some(times not logged since)`
    /// at most once per [`EXCEPTION_LOG_EVERY`] for the same read and code
    /// (`None`: a malformed answer), so a device that refuses every poll
    /// does not flood the log.
    fn throttle(&mut self, req: &ReadRequest, code: Option<u8>) -> Option<u64> {
        let now = Instant::now();
        let key = (req.area, req.start, req.count, code);
        match self.exception_log.get_mut(&key) {
            Some((last, n)) if now.duration_since(*last) < EXCEPTION_LOG_EVERY => {
                *n += 1;
                None
            }
            Some((last, n)) => {
                *last = now;
                Some(std::mem::take(n))
            }
            None => {
                self.exception_log.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    fn log_exception(&mut self, req: &ReadRequest, code: u8) {
        let Some(suppressed) = self.throttle(req, Some(code)) else {
            return;
        };
        tracing::warn!(
            device = %self.name,
            unit = self.unit_id,
            function = function_code(req.area),
            address = req.start,
            count = req.count,
            code,
            suppressed,
            "the device answered exception {code:02} ({}) to a read of {} {}..{}",
            exception_name(code),
            area_name(req.area),
            req.start,
            u32::from(req.start) + u32::from(req.count),
        );
    }

    /// Turn one answer into samples for `req`'s tags.
    fn apply(
        &mut self,
        g: usize,
        req: &ReadRequest,
        answer: Answer,
        ts: Timestamp,
        out: &mut PollOutcome,
    ) {
        let members = self.groups[g].tags.clone();
        match answer {
            Answer::Exception(code) => {
                let reason = Reason::Exception(code);
                for &i in &req.items {
                    self.emit_bad(members[i], &reason, ts, &mut out.samples);
                }
            }
            Answer::WrongLength { got } => {
                // Which register is missing is unknowable: none of them is trusted.
                let reason = Reason::Decode(format!(
                    "answer held {got} of {} {} read at {}",
                    req.count,
                    if req.area.is_bit() {
                        "bits"
                    } else {
                        "registers"
                    },
                    req.start
                ));
                for &i in &req.items {
                    self.emit_bad(members[i], &reason, ts, &mut out.samples);
                }
            }
            Answer::Data(data) => {
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
                        Err(e) => {
                            self.emit_bad(t, &Reason::Decode(e.to_string()), ts, &mut out.samples)
                        }
                    }
                }
            }
        }
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

/// Read `req` through `Client::call`, checking the answer's length
/// ourselves: tokio-modbus's `Reader` helpers `debug_assert` it, which
/// panicked the whole driver task on a device that answers short.
async fn read(ctx: &mut Context, req: &ReadRequest) -> Result<Answer, LinkError> {
    let request = match req.area {
        Area::Coil => Request::ReadCoils(req.start, req.count),
        Area::DiscreteInput => Request::ReadDiscreteInputs(req.start, req.count),
        Area::HoldingRegister => Request::ReadHoldingRegisters(req.start, req.count),
        Area::InputRegister => Request::ReadInputRegisters(req.start, req.count),
    };
    let want = usize::from(req.count);
    match ctx.call(request).await.map_err(LinkError::from_modbus)? {
        Err(code) => Ok(Answer::Exception(u8::from(code))),
        // Bits come packed in whole bytes: up to 7 padding bits follow.
        Ok(Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits)) => {
            if bits.len() < want {
                return Ok(Answer::WrongLength { got: bits.len() });
            }
            bits.truncate(want);
            Ok(Answer::Data(Data::Bits(bits)))
        }
        Ok(Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words)) => {
            if words.len() != want {
                return Ok(Answer::WrongLength { got: words.len() });
            }
            Ok(Answer::Data(Data::Words(words)))
        }
        // tokio-modbus has already matched the function codes.
        Ok(_) => Err(LinkError::Protocol(
            "an answer of another kind than the read asked for".into(),
        )),
    }
}

fn area_name(area: Area) -> &'static str {
    match area {
        Area::Coil => "coils",
        Area::DiscreteInput => "discrete inputs",
        Area::HoldingRegister => "holding registers",
        Area::InputRegister => "input registers",
    }
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
