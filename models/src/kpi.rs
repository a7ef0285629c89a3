//! The KPI engine's arithmetic, pure and I/O-free (ISO 22400-2 names).
//!
//! Inputs are a window `[start, end)` and the samples of a machine-state
//! tag and of counter tags in it (plus the last sample before `start`, which
//! says what held at the window's start). Unknown data is never invented:
//! time whose state is unknown (no sample yet, or a sample of bad quality)
//! is counted as such, and every KPI carries its coverage and a quality
//! derived from it.
//!
//! ISO 22400-2 terms used: PBT planned busy time (window minus planned
//! stops), APT actual production time (running within PBT), ADOT actual
//! unit down time (fault within PBT), PQ produced quantity, GQ good
//! quantity, PRI planned run time per item. Availability = APT / PBT,
//! effectiveness = PRI × PQ / APT, quality ratio = GQ / PQ, OEE = their
//! product. MTBF = APT / failures, MTTR = ADOT / failures.
//!
//! Windows are built from slices: each slice's [`Part`] is computed once
//! from the samples, and parts add up (time accounts, counter deltas and
//! aggregates are all sums or extremes), so a shift or a week is a fold
//! over its slices, not a re-read of its history.

/// How the state tag's codes are read.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMap {
    pub running: Vec<i64>,
    pub fault: Vec<i64>,
    /// Codes meaning a planned stop (changeover, break); also see the calendar.
    pub planned_stop: Vec<i64>,
}

/// A state sample: `None` when the value is unknown (bad quality).
pub type StateSample = (i64, Option<i64>);

/// Where the window's time went, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeAccount {
    pub window_ms: i64,
    /// Planned busy time: the window minus planned stops (calendar or state).
    pub pbt_ms: i64,
    /// Running, within planned busy time.
    pub apt_ms: i64,
    /// In a fault state, within planned busy time.
    pub adot_ms: i64,
    /// State unknown (no sample yet, or bad quality), within planned busy time.
    pub unknown_ms: i64,
    /// Transitions into a fault state from any other known state.
    pub failures: u32,
}

/// Account `[start, end)` from state samples in time order (the first may
/// be before `start`), with calendar planned stops as `[from, to)` ranges.
pub fn account(
    samples: &[StateSample],
    start: i64,
    end: i64,
    map: &StateMap,
    planned_stops: &[(i64, i64)],
) -> TimeAccount {
    let mut acc = TimeAccount {
        window_ms: (end - start).max(0),
        ..Default::default()
    };
    if end <= start {
        return acc;
    }
    // Segments of constant state: (from, to, state).
    let mut segments: Vec<(i64, i64, Option<i64>)> = Vec::new();
    let mut current: Option<i64> = None;
    let mut seg_start = start;
    let mut prev_known: Option<i64> = None;
    for &(ts, state) in samples {
        // A sample exactly at `start` is inside: a fault that begins with
        // the window is a failure of this window.
        // The last known state survives an unknown stretch: running →
        // (comms lost) → fault is a failure wherever the slices fall.
        if ts < start {
            current = state;
            if state.is_some() {
                prev_known = state;
            }
            continue;
        }
        if ts >= end {
            break;
        }
        segments.push((seg_start, ts, current));
        // A fault code that appears during a calendar planned stop (a line
        // switched off for the weekend) is not a failure.
        if let Some(s) = state
            && map.fault.contains(&s)
            && prev_known.is_some_and(|p| !map.fault.contains(&p))
            && overlap_total(ts, ts + 1, planned_stops) == 0
        {
            acc.failures += 1;
        }
        if state.is_some() {
            prev_known = state;
        }
        current = state;
        seg_start = ts;
    }
    segments.push((seg_start, end, current));

    for (from, to, state) in segments {
        // Split the segment around calendar planned stops.
        let planned = overlap_total(from, to, planned_stops);
        let busy = (to - from) - planned;
        if busy <= 0 {
            continue;
        }
        match state {
            Some(s) if map.planned_stop.contains(&s) => {}
            Some(s) if map.running.contains(&s) => {
                acc.pbt_ms += busy;
                acc.apt_ms += busy;
            }
            Some(s) if map.fault.contains(&s) => {
                acc.pbt_ms += busy;
                acc.adot_ms += busy;
            }
            Some(_) => acc.pbt_ms += busy,
            None => {
                acc.pbt_ms += busy;
                acc.unknown_ms += busy;
            }
        }
    }
    acc
}

fn overlap_total(from: i64, to: i64, ranges: &[(i64, i64)]) -> i64 {
    // Ranges may overlap each other: merge what falls inside [from, to).
    let mut clipped: Vec<(i64, i64)> = ranges
        .iter()
        .map(|&(a, b)| (a.max(from), b.min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    clipped.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(i64, i64)> = None;
    for (a, b) in clipped {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    if let Some((a, b)) = cur {
        total += b - a;
    }
    total
}

/// The increase of a counter tag over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CounterDelta {
    pub count: f64,
    /// Wraps past the modulus (e.g. a 16-bit PLC counter at 65535 → 0).
    pub rollovers: u32,
    /// Drops that are not wraps: the counter was reset; counting restarts.
    pub resets: u32,
    /// Steps skipped because a sample was unknown.
    pub gaps: u32,
    /// Small decreases (the value kept more than half of itself): meter
    /// jitter or a transient misread, not a reset; nothing is counted and
    /// the counter continues from the higher value.
    pub dips: u32,
}

/// Sum the increases between consecutive known samples. A decrease is a
/// rollover when the counter was in the top quarter of `modulus` and is now
/// in the bottom quarter (it wrapped); a reset when it lost more than half
/// its value (the new value is counted from zero); otherwise a dip (jitter,
/// a misread) that counts nothing: the count goes on from the higher value,
/// so a value that comes back is not counted twice. Without a modulus there
/// are no rollovers.
pub fn counter_delta(samples: &[(i64, Option<f64>)], modulus: Option<f64>) -> CounterDelta {
    counter_delta_from(None, samples, modulus).0
}

/// [`counter_delta`] continuing from `base` (the value counting went on
/// from at the end of the previous slice); also returns that value at the
/// end of these samples, for the next slice.
pub fn counter_delta_from(
    base: Option<f64>,
    samples: &[(i64, Option<f64>)],
    modulus: Option<f64>,
) -> (CounterDelta, Option<f64>) {
    let mut d = CounterDelta::default();
    let mut last: Option<f64> = base;
    for &(_, v) in samples {
        let Some(v) = v else {
            d.gaps += 1;
            // The increase across an unknown stretch is still
            // last → next known value; only the timing is unknown.
            continue;
        };
        if let Some(prev) = last {
            if v >= prev {
                d.count += v - prev;
            } else if let Some(m) = modulus.filter(|m| prev >= 0.75 * m && v < 0.25 * m) {
                d.count += m - prev + v;
                d.rollovers += 1;
            } else if v >= 0.5 * prev {
                d.dips += 1;
                continue;
            } else {
                d.count += v;
                d.resets += 1;
            }
        }
        last = Some(v);
    }
    (d, last)
}

/// How far a KPI can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KpiQuality {
    /// All inputs known over the whole window.
    Good,
    /// Some input time or samples unknown; the value uses what is known.
    Uncertain,
    /// Not computable (e.g. zero planned time) or too little known.
    Bad,
}

/// OEE and its factors over one window. `None` where undefined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Oee {
    pub availability: Option<f64>,
    pub effectiveness: Option<f64>,
    pub quality_ratio: Option<f64>,
    pub oee: Option<f64>,
    pub mtbf_ms: Option<f64>,
    pub mttr_ms: Option<f64>,
    /// Fraction of planned busy time whose state is known (1 when PBT is 0).
    pub coverage: f64,
    pub quality: KpiQuality,
    /// Run time credited to unknown stretches the counter bridged (see
    /// [`credited_run_ms`]).
    pub run_in_gaps_ms: f64,
    /// Performance above 100 %: flagged, never a plain figure.
    pub above_nameplate: bool,
}

/// Coverage below which a KPI is `Bad`, not `Uncertain`.
pub const MIN_COVERAGE: f64 = 0.8;

/// OEE from the time account, produced and good quantities, and the planned
/// run time per item (ms).
pub fn oee(t: &TimeAccount, produced: &CounterDelta, good: &CounterDelta, pri_ms: f64) -> Oee {
    oee_with_credit(t, produced, good, pri_ms, t.unknown_ms)
}

/// [`oee`] where only `credit_ms` of the unknown state time had its
/// production counted (the counter had a value before the gap): that much
/// is credited with run time at the known availability. Unknown time
/// before the counter's first value (a start-up) made nothing countable
/// and gets no run time.
pub fn oee_with_credit(
    t: &TimeAccount,
    produced: &CounterDelta,
    good: &CounterDelta,
    pri_ms: f64,
    credit_ms: i64,
) -> Oee {
    let known_pbt = t.pbt_ms - t.unknown_ms;
    let coverage = if t.pbt_ms > 0 {
        known_pbt as f64 / t.pbt_ms as f64
    } else {
        1.0
    };
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let credit = credit_ms.clamp(0, t.unknown_ms) as f64;
    let run_ms = credited_run_ms(t, produced.count, pri_ms, credit);
    // Availability over the time whose state is known, plus the credited
    // stretch with its estimated run time (the same as over the known time
    // alone, unless the nameplate bound below raised the estimate).
    let availability = if known_pbt > 0 {
        ratio(run_ms, known_pbt as f64 + credit)
    } else {
        None
    };
    let effectiveness = ratio(pri_ms * produced.count, run_ms);
    let quality_ratio = ratio(good.count, produced.count);
    let oee = match (availability, effectiveness, quality_ratio) {
        (Some(a), Some(e), Some(q)) => Some(a * e * q),
        // Planned time without running, or running without output: the
        // worst case is 0, not "no number".
        (Some(0.0), _, _) => Some(0.0),
        (Some(_), Some(0.0), _) => Some(0.0),
        _ => None,
    };
    let failures = f64::from(t.failures);
    let mtbf_ms = ratio(t.apt_ms as f64, failures);
    let mttr_ms = ratio(t.adot_ms as f64, failures);
    let counters_gappy = produced.gaps + good.gaps > 0;
    // Faster than nameplate: a wrong ideal rate or counter, or production
    // the unknown stretch cannot explain. Never a plain figure.
    let above_nameplate = effectiveness.is_some_and(|e| e > 1.0 + 1e-9);
    let quality = if oee.is_none() || coverage < MIN_COVERAGE {
        KpiQuality::Bad
    } else if coverage < 1.0 || counters_gappy || above_nameplate {
        KpiQuality::Uncertain
    } else {
        KpiQuality::Good
    };
    Oee {
        availability,
        effectiveness,
        quality_ratio,
        oee,
        mtbf_ms,
        mttr_ms,
        coverage,
        quality,
        run_in_gaps_ms: run_ms - t.apt_ms as f64,
        above_nameplate,
    }
}

/// Run time over the known state time plus the `credit_ms` of unknown
/// state time the counter bridged (what was made then is counted when the
/// counter is read again).
///
/// The credited stretch gets run time at the known availability, so that
/// A × P = PRI × produced / (known PBT + credit): OEE needs no guess about
/// the unknown stretch. The split between A and P does: if the machine ran
/// more during the gap than before it, the estimate is too low and
/// performance would show above 100 %. So, with a nameplate (`pri_ms` > 0),
/// the estimate is raised to the least run time that explains the count at
/// nameplate, up to the whole stretch: performance stays at or below 100 %
/// unless even that cannot explain the count.
pub fn credited_run_ms(t: &TimeAccount, produced: f64, pri_ms: f64, credit_ms: f64) -> f64 {
    let known_pbt = (t.pbt_ms - t.unknown_ms) as f64;
    let apt = t.apt_ms as f64;
    if credit_ms <= 0.0 {
        return apt;
    }
    let a = if known_pbt > 0.0 {
        apt / known_pbt
    } else {
        0.0
    };
    let estimate = apt + a * credit_ms;
    if pri_ms > 0.0 && known_pbt > 0.0 {
        estimate.max((pri_ms * produced).min(apt + credit_ms))
    } else {
        estimate
    }
}

impl TimeAccount {
    pub fn add(&mut self, o: &TimeAccount) {
        self.window_ms += o.window_ms;
        self.pbt_ms += o.pbt_ms;
        self.apt_ms += o.apt_ms;
        self.adot_ms += o.adot_ms;
        self.unknown_ms += o.unknown_ms;
        self.failures += o.failures;
    }
}

impl CounterDelta {
    pub fn add(&mut self, o: &CounterDelta) {
        self.count += o.count;
        self.rollovers += o.rollovers;
        self.resets += o.resets;
        self.gaps += o.gaps;
        self.dips += o.dips;
    }
}

/// A numeric series as the KPI engine reads it: `(ts_ms, value)` in time
/// order, `None` where the value is unknown (bad quality, or a hold that
/// ran out, see [`hold`]).
pub type Series = [(i64, Option<f64>)];

/// Mark where a value stops being trusted: after a gap longer than
/// `max_hold_ms` between samples (and after the last sample, up to
/// `until_ms`), insert an unknown at `ts + max_hold_ms`. A state or a
/// reading is held between polls, but not across an outage.
pub fn hold(samples: &Series, max_hold_ms: i64, until_ms: i64) -> Vec<(i64, Option<f64>)> {
    let mut out = Vec::with_capacity(samples.len() + 1);
    for (i, &(ts, v)) in samples.iter().enumerate() {
        out.push((ts, v));
        let next = samples.get(i + 1).map_or(until_ms, |n| n.0);
        if v.is_some() && next - ts > max_hold_ms && ts + max_hold_ms < until_ms {
            out.push((ts + max_hold_ms, None));
        }
    }
    out
}

/// Time in `[start, end)` during which the series has a known value (the
/// last sample before `start` says what held at `start`).
pub fn known_ms(s: &Series, start: i64, end: i64) -> i64 {
    held(s, start, end).0
}

/// Known time in `[start, end)` and the integral of the held value over
/// it (value × ms): the history stores by exception, so a mean over time
/// must weight each value by how long it held.
pub fn held(s: &Series, start: i64, end: i64) -> (i64, f64) {
    let i = s.partition_point(|p| p.0 < start);
    let mut current = i.checked_sub(1).and_then(|k| s[k].1);
    let mut from = start;
    let (mut known, mut integral) = (0, 0.0);
    for &(ts, v) in s[i..].iter().take_while(|p| p.0 < end) {
        if let Some(c) = current {
            known += ts - from;
            integral += c * (ts - from) as f64;
        }
        current = v;
        from = ts;
    }
    if let Some(c) = current {
        known += end - from;
        integral += c * (end - from) as f64;
    }
    (known, integral)
}

/// Sample statistics of one tag over a slice or window (good samples only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Samples with a known value.
    pub n: u64,
    /// Samples whose value is unknown (bad quality).
    pub unknown: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: Option<f64>,
    pub last: Option<f64>,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            n: 0,
            unknown: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: None,
            last: None,
        }
    }
}

impl Agg {
    pub fn push(&mut self, v: Option<f64>) {
        let Some(v) = v else {
            self.unknown += 1;
            return;
        };
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.first.get_or_insert(v);
        self.last = Some(v);
    }

    /// Merge a later aggregate into this one.
    pub fn add(&mut self, o: &Agg) {
        self.n += o.n;
        self.unknown += o.unknown;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if self.first.is_none() {
            self.first = o.first;
        }
        if o.last.is_some() {
            self.last = o.last;
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// How the good quantity is counted.
#[derive(Debug, Clone, PartialEq)]
pub enum GoodCount {
    /// A counter of good items.
    Good(String),
    /// A counter of rejects (good = produced − rejects).
    Reject(String),
    /// A counter of rejects, with the KPI's `total` holding the good
    /// counter: produced = good + rejects (a PLC without a total counter).
    GoodPlusReject(String),
}

/// The machine-state input of a KPI.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInput {
    pub tag: String,
    pub map: StateMap,
}

/// What a KPI computes, with its inputs. Built by the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum KpiKind {
    /// OEE = availability × performance × quality (ISO 22400-2: performance
    /// is "effectiveness"), with MTBF/MTTR and the time account.
    Oee {
        state: StateInput,
        total: String,
        good: GoodCount,
        /// Counter modulus (e.g. 65536 for a 16-bit PLC counter).
        modulus: Option<f64>,
        /// Planned run time per item, ms (3600 s / the ideal rate per hour).
        pri_ms: f64,
    },
    /// Produced quantity per hour of the window and, with a state tag, per
    /// hour of actual production time (ISO 22400-2 throughput rate).
    Throughput {
        total: String,
        modulus: Option<f64>,
        state: Option<StateInput>,
        /// Planned run time per item (ms) when a nameplate rate is given:
        /// bounds the run time credited to unknown stretches and flags a
        /// rate above it.
        pri_ms: Option<f64>,
    },
    /// Energy used per unit of product (ISO 50001 SEC), from an energy
    /// counter and a product counter.
    SpecificEnergy {
        energy: String,
        total: String,
        modulus: Option<f64>,
    },
    /// Availability, MTBF, MTTR and failures from a state tag alone.
    Reliability { state: StateInput },
    /// A custom expression over `<tag>.<aggregate>` names and `window_h`.
    /// `modulus` is where the counters whose `delta` it uses wrap.
    Expression {
        expr: crate::expr::KpiExpr,
        modulus: Option<f64>,
    },
}

/// The aggregates an expression may use, per tag: `<tag>.<aggregate>`.
/// `mean` is over time (each value weighted by how long it held), `min`,
/// `max`, `first`, `last` and `count` over the stored samples, `delta` is
/// the counter increase (resets handled).
pub const AGGREGATES: &[&str] = &["mean", "min", "max", "first", "last", "delta", "count"];

impl KpiKind {
    /// The state tag, if the KPI has one.
    pub fn state(&self) -> Option<&StateInput> {
        match self {
            KpiKind::Oee { state, .. } | KpiKind::Reliability { state } => Some(state),
            KpiKind::Throughput { state, .. } => state.as_ref(),
            _ => None,
        }
    }

    /// The numeric input tags, in the order a [`Part`] keeps them, with the
    /// counter modulus that applies to each.
    /// Borrowed: this runs for every KPI in every slice.
    pub fn tags(&self) -> Vec<(&str, Option<f64>)> {
        match self {
            KpiKind::Oee {
                total,
                good,
                modulus,
                ..
            } => {
                let g = match good {
                    GoodCount::Good(t) | GoodCount::Reject(t) | GoodCount::GoodPlusReject(t) => t,
                };
                vec![(total, *modulus), (g, *modulus)]
            }
            KpiKind::Throughput { total, modulus, .. } => vec![(total, *modulus)],
            KpiKind::SpecificEnergy {
                energy,
                total,
                modulus,
            } => vec![(energy, None), (total, *modulus)],
            KpiKind::Reliability { .. } => vec![],
            KpiKind::Expression { expr, modulus } => {
                let mut tags: Vec<(&str, Option<f64>)> = expr
                    .variables()
                    .iter()
                    .filter_map(|v| v.rsplit_once('.').map(|(t, _)| (t, *modulus)))
                    .collect();
                tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
                tags.dedup_by(|a, b| a.0 == b.0);
                tags
            }
        }
    }

    /// Every tag the KPI reads (state tag first).
    pub fn all_tags(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state().map(|s| s.tag.clone()).into_iter().collect();
        v.extend(self.tags().into_iter().map(|(t, _)| t.to_string()));
        v
    }
}

/// One tag's share of a [`Part`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TagPart {
    pub agg: Agg,
    pub delta: CounterDelta,
    pub known_ms: i64,
    /// Held value × ms over `known_ms` (see [`held`]).
    pub integral: f64,
    /// Unknown time during which the counter had a value before: an
    /// increase made then is counted (when the next value comes).
    pub bridged_ms: i64,
}

impl TagPart {
    /// Time-weighted mean over the known time.
    pub fn mean(&self) -> Option<f64> {
        (self.known_ms > 0).then(|| self.integral / self.known_ms as f64)
    }
}

/// What one slice (or, summed, one window) contributes to a KPI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Part {
    pub span_ms: i64,
    pub account: Option<TimeAccount>,
    /// In the order of [`KpiKind::tags`].
    pub tags: Vec<TagPart>,
}

impl Part {
    /// [`Part::compute_carried`] for a slice on its own (counters start
    /// from the last known sample before `start`).
    pub fn compute<'a>(
        kind: &KpiKind,
        start: i64,
        end: i64,
        series: &dyn Fn(&str) -> &'a Series,
        planned_stops: &[(i64, i64)],
    ) -> Part {
        Self::compute_carried(kind, start, end, series, planned_stops, &mut Vec::new())
    }

    /// The part of `[start, end)`. `series(tag)` gives the tag's series
    /// after [`hold`], covering the slice and reaching back at least to the
    /// last known sample before `start`. `carry` holds each counter's value
    /// at the end of the previous slice (empty for the first slice: then
    /// the last known sample before `start` is the base).
    pub fn compute_carried<'a>(
        kind: &KpiKind,
        start: i64,
        end: i64,
        series: &dyn Fn(&str) -> &'a Series,
        planned_stops: &[(i64, i64)],
        carry: &mut Vec<Option<f64>>,
    ) -> Part {
        let account = kind.state().map(|st| {
            let s = series(&st.tag);
            // From the last known state before the slice: a failure after
            // an unknown stretch is still a change from that state.
            let before = s.partition_point(|p| p.0 < start);
            let i = s[..before]
                .iter()
                .rposition(|p| p.1.is_some())
                .unwrap_or(before.saturating_sub(1));
            let states: Vec<StateSample> = s[i..]
                .iter()
                .take_while(|p| p.0 < end)
                .map(|&(ts, v)| (ts, v.map(|x| x.round() as i64)))
                .collect();
            account(&states, start, end, &st.map, planned_stops)
        });
        let inputs = kind.tags();
        if carry.len() < inputs.len() {
            carry.resize(inputs.len(), None);
        }
        let tags = inputs
            .iter()
            .zip(carry.iter_mut())
            .map(|((tag, modulus), carried)| {
                let s = series(tag);
                let i = s.partition_point(|p| p.0 < start);
                let inside = &s[i..i + s[i..].partition_point(|p| p.0 < end)];
                let mut agg = Agg::default();
                for &(_, v) in inside {
                    agg.push(v);
                }
                // The counter's increase is counted from the last known
                // value before the slice, however old: an outage moves the
                // count into the slice after it, it does not lose it.
                let base = carried.or_else(|| s[..i].iter().rev().find_map(|p| p.1));
                let (delta, last) = counter_delta_from(base, inside, *modulus);
                *carried = last;
                let (known_ms, integral) = held(s, start, end);
                let bridged_ms = if base.is_some() {
                    (end - start) - known_ms
                } else {
                    // No value before the slice: only the time after the
                    // first known value inside it can be bridged.
                    let first = inside.iter().find(|p| p.1.is_some()).map_or(end, |p| p.0);
                    ((end - first) - held(s, first, end).0).max(0)
                };
                TagPart {
                    agg,
                    delta,
                    known_ms,
                    integral,
                    bridged_ms,
                }
            })
            .collect();
        Part {
            span_ms: end - start,
            account,
            tags,
        }
    }

    /// Add a later part of the same KPI.
    pub fn add(&mut self, o: &Part) {
        self.span_ms += o.span_ms;
        match (&mut self.account, &o.account) {
            (Some(a), Some(b)) => a.add(b),
            (a @ None, Some(b)) => *a = Some(*b),
            _ => {}
        }
        if self.tags.len() < o.tags.len() {
            self.tags.resize(o.tags.len(), TagPart::default());
        }
        for (a, b) in self.tags.iter_mut().zip(&o.tags) {
            a.agg.add(&b.agg);
            a.delta.add(&b.delta);
            a.known_ms += b.known_ms;
            a.integral += b.integral;
            a.bridged_ms += b.bridged_ms;
        }
    }
}

/// A KPI's value over one window: named figures, coverage and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiValue {
    /// The headline figure first (e.g. `oee`), then its parts.
    pub values: Vec<(String, Option<f64>)>,
    /// Fraction of the time whose inputs were known (0–1).
    pub coverage: f64,
    pub quality: KpiQuality,
}

impl KpiValue {
    pub fn headline(&self) -> Option<f64> {
        self.values.first().and_then(|v| v.1)
    }
}

fn grade(value: Option<f64>, coverage: f64, doubtful: bool) -> KpiQuality {
    if value.is_none_or(|v| !v.is_finite()) || coverage < MIN_COVERAGE {
        KpiQuality::Bad
    } else if coverage < 1.0 || doubtful {
        KpiQuality::Uncertain
    } else {
        KpiQuality::Good
    }
}

/// Evaluate `kind` over a window's summed part.
pub fn evaluate(kind: &KpiKind, p: &Part) -> KpiValue {
    let span = p.span_ms.max(1) as f64;
    let tag_cov = |t: &TagPart| t.known_ms as f64 / span;
    let min_cov = |tags: &[TagPart]| tags.iter().map(tag_cov).fold(1.0_f64, f64::min);
    let gappy = |tags: &[TagPart]| {
        tags.iter()
            .any(|t| t.delta.gaps > 0 || t.agg.unknown > 0 || t.delta.resets > 0)
    };
    let hours = |ms: f64| ms / 3_600_000.0;
    let secs = |ms: Option<f64>| ms.map(|m| m / 1000.0);
    let acc = p.account.unwrap_or_default();
    match kind {
        KpiKind::Oee { good, pri_ms, .. } => {
            let produced = p.tags.first().map(|t| t.delta).unwrap_or_default();
            let other = p.tags.get(1).map(|t| t.delta).unwrap_or_default();
            let (produced, good_delta) = match good {
                GoodCount::Good(_) => (produced, other),
                GoodCount::Reject(_) => (
                    produced,
                    CounterDelta {
                        count: (produced.count - other.count).max(0.0),
                        ..other
                    },
                ),
                // The first counter is the good one: produced = good + rejects.
                GoodCount::GoodPlusReject(_) => (
                    CounterDelta {
                        count: produced.count + other.count,
                        gaps: produced.gaps + other.gaps,
                        resets: produced.resets + other.resets,
                        rollovers: produced.rollovers + other.rollovers,
                        dips: produced.dips + other.dips,
                    },
                    produced,
                ),
            };
            let bridged = p.tags.first().map_or(0, |t| t.bridged_ms);
            let o = oee_with_credit(&acc, &produced, &good_delta, *pri_ms, bridged);

            let coverage = o.coverage.min(min_cov(&p.tags));
            let quality = grade(
                o.oee,
                coverage,
                gappy(&p.tags) || o.quality != KpiQuality::Good,
            );
            KpiValue {
                values: vec![
                    ("oee".into(), o.oee),
                    ("availability".into(), o.availability),
                    ("performance".into(), o.effectiveness),
                    ("quality".into(), o.quality_ratio),
                    ("mtbf_s".into(), secs(o.mtbf_ms)),
                    ("mttr_s".into(), secs(o.mttr_ms)),
                    ("failures".into(), Some(f64::from(acc.failures))),
                    ("produced".into(), Some(produced.count)),
                    ("good".into(), Some(good_delta.count)),
                    ("planned_busy_s".into(), Some(acc.pbt_ms as f64 / 1000.0)),
                    ("run_s".into(), Some(acc.apt_ms as f64 / 1000.0)),
                    ("down_s".into(), Some(acc.adot_ms as f64 / 1000.0)),
                    ("run_in_gaps_s".into(), Some(o.run_in_gaps_ms / 1000.0)),
                    (
                        "above_nameplate".into(),
                        Some(f64::from(u8::from(o.above_nameplate))),
                    ),
                    ("state_coverage".into(), Some(o.coverage)),
                    ("counter_coverage".into(), Some(min_cov(&p.tags))),
                ],
                coverage,
                quality,
            }
        }
        KpiKind::Throughput { state, pri_ms, .. } => {
            let t = p.tags.first().copied().unwrap_or_default();
            let per_h = Some(t.delta.count / hours(span));
            // Production the counter bridged across unknown state time is
            // divided by run time credited the same way as OEE's (see
            // [`credited_run_ms`]), not by the known run time alone.
            let credit = t.bridged_ms.clamp(0, acc.unknown_ms) as f64;
            let run_ms = credited_run_ms(&acc, t.delta.count, pri_ms.unwrap_or(0.0), credit);
            let per_run_h = (run_ms > 0.0).then(|| t.delta.count / hours(run_ms));
            let above_nameplate = match (per_run_h, pri_ms) {
                (Some(r), Some(pri)) if *pri > 0.0 => r > 3_600_000.0 / pri * (1.0 + 1e-9),
                _ => false,
            };
            let counter_coverage = tag_cov(&t);
            let mut coverage = counter_coverage;
            let state_coverage = (state.is_some() && acc.pbt_ms > 0)
                .then(|| (acc.pbt_ms - acc.unknown_ms) as f64 / acc.pbt_ms as f64);
            if let Some(c) = state_coverage {
                coverage = coverage.min(c);
            }
            let mut values = vec![
                ("per_hour".into(), per_h),
                ("produced".into(), Some(t.delta.count)),
            ];
            if state.is_some() {
                values.push(("per_run_hour".into(), per_run_h));
                values.push((
                    "run_in_gaps_s".into(),
                    Some((run_ms - acc.apt_ms as f64) / 1000.0),
                ));
                values.push(("state_coverage".into(), state_coverage));
                values.push(("counter_coverage".into(), Some(counter_coverage)));
                if pri_ms.is_some() {
                    values.push((
                        "above_nameplate".into(),
                        Some(f64::from(u8::from(above_nameplate))),
                    ));
                }
            }
            KpiValue {
                quality: grade(per_h, coverage, gappy(&p.tags) || above_nameplate),
                values,
                coverage,
            }
        }
        KpiKind::SpecificEnergy { .. } => {
            let energy = p.tags.first().map(|t| t.delta.count).unwrap_or(0.0);
            let produced = p.tags.get(1).map(|t| t.delta.count).unwrap_or(0.0);
            let sec = (produced > 0.0).then(|| energy / produced);
            let coverage = min_cov(&p.tags);
            KpiValue {
                values: vec![
                    ("sec".into(), sec),
                    ("energy".into(), Some(energy)),
                    ("produced".into(), Some(produced)),
                ],
                quality: grade(sec, coverage, gappy(&p.tags)),
                coverage,
            }
        }
        KpiKind::Reliability { .. } => {
            let o = oee(
                &acc,
                &CounterDelta::default(),
                &CounterDelta::default(),
                0.0,
            );
            let coverage = o.coverage;
            KpiValue {
                values: vec![
                    ("availability".into(), o.availability),
                    ("mtbf_s".into(), secs(o.mtbf_ms)),
                    ("mttr_s".into(), secs(o.mttr_ms)),
                    ("failures".into(), Some(f64::from(acc.failures))),
                ],
                quality: grade(o.availability, coverage, false),
                coverage,
            }
        }
        KpiKind::Expression { expr, .. } => {
            let tags = kind.tags();
            let mut vars = std::collections::HashMap::new();
            vars.insert("window_h".to_string(), hours(span));
            for ((tag, _), t) in tags.iter().zip(&p.tags) {
                let figures = [
                    ("mean", t.mean()),
                    ("min", (t.agg.n > 0).then_some(t.agg.min)),
                    ("max", (t.agg.n > 0).then_some(t.agg.max)),
                    ("first", t.agg.first),
                    ("last", t.agg.last),
                    ("delta", (t.agg.n > 0).then_some(t.delta.count)),
                    ("count", Some(t.agg.n as f64)),
                ];
                for (name, v) in figures {
                    if let Some(v) = v {
                        vars.insert(format!("{tag}.{name}"), v);
                    }
                }
            }
            // A missing input (no good sample in the window) is no number.
            let value = expr.eval(&vars).ok().filter(|v| v.is_finite());
            let coverage = min_cov(&p.tags);
            KpiValue {
                values: vec![("value".into(), value)],
                quality: grade(value, coverage, gappy(&p.tags)),
                coverage,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MIN: i64 = 60_000;

    fn map() -> StateMap {
        // 2 running, 1 stopped, 3 fault, 4 changeover (planned).
        StateMap {
            running: vec![2],
            fault: vec![3],
            planned_stop: vec![4],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn an_hour_computed_by_hand() {
        // 0–60 min: running from before the window, fault 10–15, running,
        // a 10 min planned break in the calendar at 30–40, stopped 50–55.
        let s = [
            (-5 * MIN, Some(2)),
            (10 * MIN, Some(3)),
            (15 * MIN, Some(2)),
            (50 * MIN, Some(1)),
            (55 * MIN, Some(2)),
        ];
        let t = account(&s, 0, 60 * MIN, &map(), &[(30 * MIN, 40 * MIN)]);
        assert_eq!(t.pbt_ms, 50 * MIN);
        assert_eq!(t.apt_ms, 40 * MIN); // 60 − 5 fault − 10 break − 5 stopped
        assert_eq!(t.adot_ms, 5 * MIN);
        assert_eq!((t.failures, t.unknown_ms), (1, 0));
        // 1000 made at 2 s per item planned, 950 good.
        let produced = counter_delta(&[(0, Some(5000.0)), (60 * MIN, Some(6000.0))], None);
        let good = counter_delta(&[(0, Some(100.0)), (60 * MIN, Some(1050.0))], None);
        let o = oee(&t, &produced, &good, 2000.0);
        assert!(close(o.availability.unwrap(), 40.0 / 50.0));
        assert!(close(
            o.effectiveness.unwrap(),
            2000.0 * 1000.0 / (40.0 * MIN as f64)
        ));
        assert!(close(o.quality_ratio.unwrap(), 0.95));
        assert!(close(
            o.oee.unwrap(),
            0.8 * (2_000_000.0 / 2_400_000.0) * 0.95
        ));
        assert!(close(o.mtbf_ms.unwrap(), 40.0 * MIN as f64));
        assert!(close(o.mttr_ms.unwrap(), 5.0 * MIN as f64));
        assert_eq!(o.quality, KpiQuality::Good);
    }

    #[test]
    fn zero_planned_time_is_not_a_number() {
        // A whole window of planned stop (calendar) — and of changeover state.
        let s = [(-MIN, Some(2))];
        let t = account(&s, 0, 60 * MIN, &map(), &[(0, 60 * MIN)]);
        assert_eq!((t.pbt_ms, t.apt_ms), (0, 0));
        let t2 = account(&[(-MIN, Some(4))], 0, 60 * MIN, &map(), &[]);
        assert_eq!(t2.pbt_ms, 0);
        let none = CounterDelta::default();
        let o = oee(&t, &none, &none, 1000.0);
        assert_eq!((o.availability, o.oee), (None, None));
        assert_eq!(o.quality, KpiQuality::Bad);
    }

    #[test]
    fn a_shift_in_fault_or_without_output_is_zero_not_undefined() {
        let none = CounterDelta::default();
        // The whole hour in fault: availability 0, OEE 0, fully known.
        let t = account(&[(-MIN, Some(3))], 0, 60 * MIN, &map(), &[]);
        let o = oee(&t, &none, &none, 1000.0);
        assert_eq!(
            (o.availability, o.oee, o.quality),
            (Some(0.0), Some(0.0), KpiQuality::Good)
        );
        // Running all hour, nothing made.
        let t = account(&[(-MIN, Some(2))], 0, 60 * MIN, &map(), &[]);
        let o = oee(&t, &none, &none, 1000.0);
        assert_eq!((o.effectiveness, o.oee), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn unknown_state_time_does_not_inflate_performance() {
        // 9 of 60 minutes unknown, running the rest at the ideal rate of
        // one item a second; the counter ran through the gap: 3600 made.
        let s = [(-MIN, Some(2)), (20 * MIN, None), (29 * MIN, Some(2))];
        let t = account(&s, 0, 60 * MIN, &map(), &[]);
        let made = counter_delta(&[(0, Some(0.0)), (60 * MIN, Some(3600.0))], None);
        let o = oee(&t, &made, &made, 1000.0);
        assert!(close(o.availability.unwrap(), 1.0));
        assert!(close(o.effectiveness.unwrap(), 1.0), "{o:?}");
        assert!(close(o.oee.unwrap(), 1.0));
        assert_eq!(o.quality, KpiQuality::Uncertain);
    }

    /// Issue 15: 11 of 60 minutes unknown; the known 49 had 10 minutes of
    /// fault (availability 39/49), the gap ran flat out. Credited at the
    /// known availability, the gap got 8.76 min of run time for 11 min of
    /// production: performance 1.046. Now the least run time that explains
    /// the count at nameplate: performance 1, availability the truth.
    #[test]
    fn the_gap_gets_the_run_time_its_count_needs_at_nameplate() {
        let s = [
            (-MIN, Some(2)),
            (10 * MIN, Some(3)),
            (20 * MIN, Some(2)),
            (30 * MIN, None),
            (41 * MIN, Some(2)),
        ];
        let t = account(&s, 0, 60 * MIN, &map(), &[]);
        assert_eq!((t.apt_ms, t.unknown_ms), (39 * MIN, 11 * MIN));
        // One item a second whenever running: 50 minutes of it.
        let made = counter_delta(&[(0, Some(0.0)), (60 * MIN, Some(3000.0))], None);
        let o = oee(&t, &made, &made, 1000.0);
        assert!(close(o.effectiveness.unwrap(), 1.0), "{o:?}");
        assert!(close(o.availability.unwrap(), 50.0 / 60.0), "{o:?}");
        assert!(close(o.oee.unwrap(), 50.0 / 60.0));
        assert!(close(o.run_in_gaps_ms, 11.0 * MIN as f64));
        assert!(!o.above_nameplate);
        // More than even the whole gap could make: shown, but flagged.
        let too_many = counter_delta(&[(0, Some(0.0)), (60 * MIN, Some(4000.0))], None);
        let o = oee(&t, &too_many, &too_many, 1000.0);
        assert!(o.effectiveness.unwrap() > 1.0 && o.above_nameplate);
        assert_ne!(o.quality, KpiQuality::Good);
        // OEE = PRI × good / PBT either way: the split needs no guess.
        assert!(close(o.oee.unwrap(), 4000.0 / 3600.0));
    }

    #[test]
    fn a_start_up_without_history_does_not_deflate_performance() {
        // Data begins 30 min into the hour: running at the ideal rate (one
        // item a second) from then on. Performance is 100 %, not 50 %.
        let kind = KpiKind::Oee {
            state: StateInput {
                tag: "s".into(),
                map: map(),
            },
            total: "c".into(),
            good: GoodCount::Reject("r".into()),
            modulus: None,
            pri_ms: 1000.0,
        };
        let state: Vec<(i64, Option<f64>)> = vec![(30 * MIN, Some(2.0))];
        let made: Vec<(i64, Option<f64>)> = (30..=60)
            .map(|m| (m * MIN, Some((m - 30) as f64 * 60.0)))
            .collect();
        let rej: Vec<(i64, Option<f64>)> = vec![(30 * MIN, Some(0.0))];
        let series = |t: &str| -> &Series {
            match t {
                "s" => &state,
                "c" => &made,
                _ => &rej,
            }
        };
        let mut carry = Vec::new();
        let mut sum = Part::default();
        for k in 0..6 {
            sum.add(&Part::compute_carried(
                &kind,
                k * 10 * MIN,
                (k + 1) * 10 * MIN,
                &series,
                &[],
                &mut carry,
            ));
        }
        let v = evaluate(&kind, &sum);
        let perf = v
            .values
            .iter()
            .find(|x| x.0 == "performance")
            .unwrap()
            .1
            .unwrap();
        assert!((perf - 29.0 / 30.0).abs() < 1e-9, "{v:?}");
        assert!((v.coverage - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_failure_after_lost_comms_counts_wherever_the_slices_fall() {
        // Running, then bad quality, then fault: one failure, whether the
        // minute is one slice or two.
        let s = [(0, Some(2)), (30_000, None), (90_000, Some(3))];
        assert_eq!(account(&s, 0, 120_000, &map(), &[]).failures, 1);
        let a = account(&s, 0, 60_000, &map(), &[]).failures;
        let states: Vec<(i64, Option<f64>)> =
            s.iter().map(|&(t, v)| (t, v.map(|x| x as f64))).collect();
        let kind = KpiKind::Reliability {
            state: StateInput {
                tag: "s".into(),
                map: map(),
            },
        };
        let series = |_: &str| -> &Series { &states };
        let b = Part::compute(&kind, 60_000, 120_000, &series, &[])
            .account
            .unwrap()
            .failures;
        assert_eq!(a + b, 1);
        // A fault code inside a calendar planned stop is not a failure.
        let off = [(0, Some(2)), (MIN, Some(3))];
        assert_eq!(
            account(&off, 0, 2 * MIN, &map(), &[(MIN, 2 * MIN)]).failures,
            0
        );
    }

    #[test]
    fn a_dip_is_not_a_reset_and_is_not_counted_twice() {
        // Meter jitter and a transient misread: nothing counted for them.
        let d = counter_delta(
            &[
                (0, Some(120_000.4)),
                (1, Some(120_000.3)),
                (2, Some(120_000.5)),
                (3, Some(70_000.0)),
                (4, Some(120_001.0)),
            ],
            None,
        );
        assert!((d.count - 0.6).abs() < 1e-6, "{d:?}");
        assert_eq!((d.dips, d.resets), (2, 0));
        // Losing more than half is a reset: counting restarts from the new value.
        let d = counter_delta(&[(0, Some(5000.0)), (1, Some(12.0)), (2, Some(20.0))], None);
        assert_eq!((d.count, d.resets), (20.0, 1));
        // Across slices, the carried value makes the sum the same.
        let s = [(0, Some(1000.0)), (10, Some(990.0)), (20, Some(1005.0))];
        let kind = KpiKind::Throughput {
            total: "c".into(),
            modulus: None,
            state: None,
            pri_ms: None,
        };
        let series = |_: &str| -> &Series { &s };
        let mut carry = Vec::new();
        let a = Part::compute_carried(&kind, 0, 15, &series, &[], &mut carry);
        let b = Part::compute_carried(&kind, 15, 30, &series, &[], &mut carry);
        assert_eq!(a.tags[0].delta.count + b.tags[0].delta.count, 5.0);
    }

    #[test]
    fn counter_rollover_and_reset() {
        // A 16-bit counter wraps 65530 → 4 (10 counted), then the PLC resets
        // it to 0 and it counts to 7 (7 counted).
        let m = Some(65536.0);
        let d = counter_delta(
            &[
                (0, Some(65500.0)),
                (1, Some(65530.0)),
                (2, Some(4.0)),
                (3, Some(20.0)),
                (4, Some(0.0)),
                (5, Some(7.0)),
            ],
            m,
        );
        assert_eq!(d.count, 30.0 + 10.0 + 16.0 + 0.0 + 7.0);
        assert_eq!((d.rollovers, d.resets), (1, 1));
        // A drop in mid-range is a reset, not a wrap.
        let d = counter_delta(&[(0, Some(30000.0)), (1, Some(100.0))], m);
        assert_eq!((d.count, d.rollovers, d.resets), (100.0, 0, 1));
    }

    #[test]
    fn a_flapping_state_counts_every_failure_and_all_its_time() {
        // Running/fault every minute for 10 minutes: 5 failures, 5 min each.
        let s: Vec<StateSample> = (0..10)
            .map(|k| (k * MIN, Some(if k % 2 == 0 { 2 } else { 3 })))
            .collect();
        let t = account(&s, 0, 10 * MIN, &map(), &[]);
        assert_eq!((t.apt_ms, t.adot_ms, t.failures), (5 * MIN, 5 * MIN, 5));
        // A repeated fault sample is not a new failure.
        let s = [
            (0, Some(2)),
            (MIN, Some(3)),
            (2 * MIN, Some(3)),
            (3 * MIN, Some(2)),
        ];
        assert_eq!(account(&s, 0, 4 * MIN, &map(), &[]).failures, 1);
    }

    #[test]
    fn missing_data_lowers_coverage_and_flags_the_kpi() {
        // No state before 15 min, and a bad-quality stretch 40–45.
        let s = [(15 * MIN, Some(2)), (40 * MIN, None), (45 * MIN, Some(2))];
        let t = account(&s, 0, 60 * MIN, &map(), &[]);
        assert_eq!(
            (t.pbt_ms, t.unknown_ms, t.apt_ms),
            (60 * MIN, 20 * MIN, 40 * MIN)
        );
        let produced = counter_delta(
            &[(0, Some(0.0)), (30 * MIN, None), (60 * MIN, Some(100.0))],
            None,
        );
        assert_eq!((produced.count, produced.gaps), (100.0, 1));
        let o = oee(&t, &produced, &produced, 1000.0);
        assert!(close(o.coverage, 40.0 / 60.0));
        // Availability over the known time only, and flagged Bad below 80 %.
        assert!(close(o.availability.unwrap(), 1.0));
        assert_eq!(o.quality, KpiQuality::Bad);
        // 10 % unknown: still a number, but Uncertain.
        let s = [(6 * MIN, Some(2))];
        let t = account(&s, 0, 60 * MIN, &map(), &[]);
        let full = counter_delta(&[(0, Some(0.0)), (60 * MIN, Some(100.0))], None);
        let o = oee(&t, &full, &full, 1000.0);
        assert!(close(o.coverage, 0.9));
        assert_eq!(o.quality, KpiQuality::Uncertain);
    }
    #[test]
    fn a_window_is_the_sum_of_its_slices() {
        // A state flapping at odd times, a 16-bit counter that wraps, a bad
        // stretch and an outage longer than the hold: a window summed from
        // 7-minute slices equals the same window computed in one piece.
        let kind = KpiKind::Oee {
            state: StateInput {
                tag: "state".into(),
                map: map(),
            },
            total: "total".into(),
            good: GoodCount::Reject("reject".into()),
            modulus: Some(65536.0),
            pri_ms: 500.0,
        };
        let mut state = Vec::new();
        let mut total = Vec::new();
        let mut reject = Vec::new();
        let (mut c, mut r) = (65000.0, 10.0);
        let mut x: u64 = 7;
        for k in 0..3600i64 {
            let ts = k * 1000;
            if (1500..1800).contains(&k) {
                continue; // outage: longer than the 60 s hold
            }
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let code = match (x >> 33) % 20 {
                // A fault that starts exactly on a slice boundary.
                _ if k % 420 == 0 => Some(3.0),
                _ if k % 420 == 419 => Some(2.0),
                0 => Some(3.0),
                1 => Some(1.0),
                2 if k > 900 && k < 1000 => None,
                _ => Some(2.0),
            };
            state.push((ts, code));
            c = (c + ((x >> 40) % 3) as f64) % 65536.0;
            r += ((x >> 45) % 2) as f64 * 0.25;
            total.push((ts, if k % 97 == 5 { None } else { Some(c) }));
            reject.push((ts, Some(r.floor())));
        }
        let end = 3_600_000;
        let held: Vec<Vec<(i64, Option<f64>)>> = [&state, &total, &reject]
            .iter()
            .map(|s| hold(s, 60_000, end))
            .collect();
        let series = |t: &str| -> &Series {
            match t {
                "state" => &held[0],
                "total" => &held[1],
                _ => &held[2],
            }
        };
        let stops = [(600_000, 900_000)];
        let whole = Part::compute(&kind, 0, end, &series, &stops);
        let mut summed = Part::default();
        let mut carry = Vec::new();
        for k in 0..(end / 420_000 + 1) {
            let (a, b) = (k * 420_000, ((k + 1) * 420_000).min(end));
            if a < b {
                let clip: Vec<(i64, i64)> = stops
                    .iter()
                    .map(|&(x, y)| (x.max(a), y.min(b)))
                    .filter(|(x, y)| x < y)
                    .collect();
                summed.add(&Part::compute_carried(
                    &kind, a, b, &series, &clip, &mut carry,
                ));
            }
        }
        let (w, s) = (whole.account.unwrap(), summed.account.unwrap());
        assert_eq!(
            (w.pbt_ms, w.apt_ms, w.adot_ms, w.unknown_ms),
            (s.pbt_ms, s.apt_ms, s.adot_ms, s.unknown_ms)
        );
        assert_eq!(w.failures, s.failures);
        assert!(w.failures > 50 && w.unknown_ms >= 300_000 - 60_000);
        for (a, b) in whole.tags.iter().zip(&summed.tags) {
            assert!(close(a.delta.count, b.delta.count), "{a:?} vs {b:?}");
            assert_eq!(a.delta.rollovers, b.delta.rollovers);
            assert_eq!(a.known_ms, b.known_ms);
            assert!((a.integral - b.integral).abs() < 1e-6 * a.integral.abs().max(1.0));
            assert_eq!(
                (a.agg.n, a.agg.unknown, a.agg.min, a.agg.max),
                (b.agg.n, b.agg.unknown, b.agg.min, b.agg.max)
            );
            assert_eq!((a.agg.first, a.agg.last), (b.agg.first, b.agg.last));
        }
        assert_eq!(whole.tags[0].delta.rollovers, 1);
        let (vw, vs) = (evaluate(&kind, &whole), evaluate(&kind, &summed));
        assert!(close(vw.headline().unwrap(), vs.headline().unwrap()));
        // The outage and the bad stretch are visible, not hidden.
        assert!(
            vw.coverage < 1.0 && vw.quality != KpiQuality::Good,
            "{vw:?}"
        );
    }

    #[test]
    fn hold_marks_outages_as_unknown() {
        let s = [(0, Some(1.0)), (1000, Some(1.0)), (100_000, Some(2.0))];
        let h = hold(&s, 5000, 200_000);
        assert_eq!(
            h,
            vec![
                (0, Some(1.0)),
                (1000, Some(1.0)),
                (6000, None),
                (100_000, Some(2.0)),
                (105_000, None)
            ]
        );
        assert_eq!(known_ms(&h, 0, 200_000), 6000 + 5000);
        assert_eq!(known_ms(&h, 3000, 4000), 1000);
    }

    #[test]
    fn specific_energy_and_throughput_from_counters() {
        let energy = [
            (0, Some(100.0)),
            (1_800_000, Some(110.0)),
            (3_600_000, Some(125.0)),
        ];
        let product = [
            (0, Some(65500.0)),
            (1_800_000, Some(64.0)),
            (3_600_000, Some(164.0)),
        ];
        let kind = KpiKind::SpecificEnergy {
            energy: "e".into(),
            total: "p".into(),
            modulus: Some(65536.0),
        };
        let series = |t: &str| -> &Series { if t == "e" { &energy } else { &product } };
        let p = Part::compute(&kind, 0, 3_600_001, &series, &[]);
        let v = evaluate(&kind, &p);
        // 25 energy units for 100 + 100 product units.
        assert_eq!(v.values[0], ("sec".into(), Some(25.0 / 200.0)));
        assert_eq!(v.quality, KpiQuality::Good);
        let t = KpiKind::Throughput {
            total: "p".into(),
            modulus: Some(65536.0),
            state: None,
            pri_ms: None,
        };
        let v = evaluate(&t, &Part::compute(&t, 0, 3_600_000, &series, &[]));
        assert!(close(v.headline().unwrap(), 100.0 + 100.0 - 100.0));
    }

    #[test]
    fn expressions_see_aggregates_and_missing_inputs_are_bad() {
        let known: Vec<String> = ["a.mean", "a.max", "b.delta", "window_h"]
            .map(String::from)
            .to_vec();
        let expr = crate::expr::KpiExpr::compile("a.mean * 2 + a.max + b.delta / window_h", &known)
            .unwrap();
        let kind = KpiKind::Expression {
            expr,
            modulus: None,
        };
        let a = [(0, Some(1.0)), (1_800_000, Some(3.0))];
        let b = [(0, Some(10.0)), (1_800_000, Some(40.0))];
        let series = |t: &str| -> &Series { if t == "a" { &a } else { &b } };
        let v = evaluate(&kind, &Part::compute(&kind, 0, 3_600_000, &series, &[]));
        // a: 1 for half the hour, 3 for the other half: mean 2 over time.
        assert!(close(v.headline().unwrap(), 2.0 * 2.0 + 3.0 + 30.0));
        // Stored by exception: 1 held for 50 min, then 3 for 10 min.
        let a2 = [(0, Some(1.0)), (3_000_000, Some(3.0))];
        let series = |t: &str| -> &Series { if t == "a" { &a2 } else { &b } };
        let p = Part::compute(&kind, 0, 3_600_000, &series, &[]);
        assert!(close(p.tags[0].mean().unwrap(), (50.0 + 30.0) / 60.0));
        let none: [(i64, Option<f64>); 1] = [(0, None)];
        let series = |t: &str| -> &Series { if t == "a" { &a } else { &none } };
        let v = evaluate(&kind, &Part::compute(&kind, 0, 3_600_000, &series, &[]));
        assert_eq!((v.headline(), v.quality), (None, KpiQuality::Bad));
    }
}
