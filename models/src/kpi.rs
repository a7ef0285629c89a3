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
//! Not wired into the edge yet (configuration, windows, storage and
//! publishing follow).

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
        if ts <= start {
            current = state;
            prev_known = state;
            continue;
        }
        if ts >= end {
            break;
        }
        segments.push((seg_start, ts, current));
        if let Some(s) = state
            && map.fault.contains(&s)
            && prev_known.is_some_and(|p| !map.fault.contains(&p))
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
}

/// Sum the increases between consecutive known samples. A decrease is a
/// rollover when the counter was in the top quarter of `modulus` and is now
/// in the bottom quarter (it wrapped), otherwise a reset (the new value is
/// counted from zero). Without a modulus every decrease is a reset.
pub fn counter_delta(samples: &[(i64, Option<f64>)], modulus: Option<f64>) -> CounterDelta {
    let mut d = CounterDelta::default();
    let mut last: Option<f64> = None;
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
            } else {
                d.count += v;
                d.resets += 1;
            }
        }
        last = Some(v);
    }
    d
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
}

/// Coverage below which a KPI is `Bad`, not `Uncertain`.
pub const MIN_COVERAGE: f64 = 0.8;

/// OEE from the time account, produced and good quantities, and the planned
/// run time per item (ms).
pub fn oee(t: &TimeAccount, produced: &CounterDelta, good: &CounterDelta, pri_ms: f64) -> Oee {
    let known_pbt = t.pbt_ms - t.unknown_ms;
    let coverage = if t.pbt_ms > 0 {
        known_pbt as f64 / t.pbt_ms as f64
    } else {
        1.0
    };
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    // Availability over the time whose state is known.
    let availability = ratio(t.apt_ms as f64, known_pbt as f64);
    let effectiveness = ratio(pri_ms * produced.count, t.apt_ms as f64);
    let quality_ratio = ratio(good.count, produced.count);
    let oee = match (availability, effectiveness, quality_ratio) {
        (Some(a), Some(e), Some(q)) => Some(a * e * q),
        _ => None,
    };
    let failures = f64::from(t.failures);
    let mtbf_ms = ratio(t.apt_ms as f64, failures);
    let mttr_ms = ratio(t.adot_ms as f64, failures);
    let counters_gappy = produced.gaps + good.gaps > 0;
    let quality = if oee.is_none() || coverage < MIN_COVERAGE {
        KpiQuality::Bad
    } else if coverage < 1.0 || counters_gappy {
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
}
