//! One alarm's state after ISA-18.2 / IEC 62682, with the orthogonal flags
//! of OPC UA Part 9 (pure: the caller passes the time; no I/O here).
//!
//! ```text
//!  Input (value, quality) ─▶ detector (limit + deadband, rate, discrete, quality)
//!                              │ raw condition
//!                              ▼
//!                      on-delay / off-delay ─▶ active
//!  Ack, Shelve, Unshelve, Suppress, OutOfService, Tick ─▶ acked, shelved, suppressed, out of service
//! ```
//!
//! [`step`] is `(state, event, now) -> (state, effects)`: it updates the
//! state in place and returns one [`Journal`] entry per flag that changed,
//! never more, never fewer. The ISA state an operator sees is derived from
//! the flags ([`AlarmState::isa`]). Shelved, suppressed and out-of-service
//! alarms are still evaluated and their changes journaled; only what is
//! shown differs.

/// Alarm priority: colour on the page, but also a number and a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low = 1,
    Medium = 2,
    High = 3,
    Urgent = 4,
}

/// Which side of a limit is abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    Below,
}

/// How far back over the limit the value must come to clear.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadband {
    Absolute(f64),
    /// Percent of the limit's magnitude.
    Percent(f64),
}

impl Deadband {
    fn width(self, limit: f64) -> f64 {
        match self {
            Deadband::Absolute(d) => d.abs(),
            Deadband::Percent(p) => (limit.abs() * p / 100.0).abs(),
        }
    }
}

/// What raises the condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// HI/HIHI (`Above`) and LO/LOLO (`Below`); also predictive alarms,
    /// fed the forecast's extreme over its horizon.
    Limit {
        side: Side,
        limit: f64,
        deadband: Deadband,
    },
    /// The value changes faster than `per_s` (either way).
    Rate { per_s: f64 },
    /// A state tag equals a code (a trip, say).
    Discrete { equals: f64 },
    /// The input is bad or stale.
    Quality,
}

/// An alarm's configuration, as the state machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSpec {
    pub detector: Detector,
    pub priority: Priority,
    /// The condition must hold this long before the alarm activates...
    pub on_delay_ms: i64,
    /// ...and be gone this long before it clears.
    pub off_delay_ms: i64,
    /// A latched alarm stays shown active after it clears, until acknowledged.
    pub latched: bool,
    /// An acknowledged alarm still active is annunciated again after this long.
    pub realarm_ms: Option<i64>,
}

/// A shelf: the alarm is hidden from the operator until `until_ms`, or,
/// one-shot (`None`), until it next clears.
#[derive(Debug, Clone, PartialEq)]
pub struct Shelf {
    pub until_ms: Option<i64>,
    pub by: String,
    pub reason: String,
}

/// The flags (OPC UA Part 9) and what the detector and timers remember.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlarmState {
    /// The raw condition (detector with deadband), and since when.
    pub condition: bool,
    pub condition_since_ms: i64,
    /// Active after the on/off delays.
    pub active: bool,
    pub acked: bool,
    /// Cleared but held active for the operator (latched alarms).
    pub latched: bool,
    pub shelved: Option<Shelf>,
    pub suppressed: bool,
    pub out_of_service: bool,
    /// When the alarm last went active or was re-annunciated.
    pub annunciated_ms: Option<i64>,
    /// When the alarm last went active (for "active for" on the page).
    pub active_since_ms: Option<i64>,
    /// The previous input, for rate-of-change detection.
    pub last_input: Option<(i64, f64)>,
    /// The last value seen (journaled with every change).
    pub value: Option<f64>,
    /// Sequence number of the last journal entry.
    pub seq: u64,
}

/// What an operator sees, derived from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaState {
    Normal,
    /// Active, not acknowledged.
    Unacknowledged,
    /// Active, acknowledged.
    Acknowledged,
    /// Cleared, not acknowledged yet.
    ReturnedUnacknowledged,
    Shelved,
    SuppressedByDesign,
    OutOfService,
}

impl AlarmState {
    /// A new alarm: normal, nothing pending.
    pub fn new(now_ms: i64) -> AlarmState {
        AlarmState {
            acked: true,
            condition_since_ms: now_ms,
            ..AlarmState::default()
        }
    }

    /// Active as shown: active, or latched after clearing.
    pub fn shown_active(&self) -> bool {
        self.active || self.latched
    }

    pub fn isa(&self) -> IsaState {
        if self.out_of_service {
            IsaState::OutOfService
        } else if self.suppressed {
            IsaState::SuppressedByDesign
        } else if self.shelved.is_some() {
            IsaState::Shelved
        } else {
            match (self.shown_active(), self.acked) {
                (true, false) => IsaState::Unacknowledged,
                (true, true) => IsaState::Acknowledged,
                (false, false) => IsaState::ReturnedUnacknowledged,
                (false, true) => IsaState::Normal,
            }
        }
    }
}

/// What happens to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new input sample; `None` is bad quality, `stale` an input that
    /// stopped updating.
    Input {
        ts_ms: i64,
        value: Option<f64>,
        stale: bool,
    },
    /// Time passes (delays, shelf expiry, re-alarm).
    Tick,
    Ack {
        by: String,
        comment: Option<String>,
    },
    Shelve {
        by: String,
        reason: String,
        until_ms: Option<i64>,
    },
    Unshelve {
        by: String,
    },
    /// Suppression by design: a condition tag says the alarm does not
    /// apply (a pump that is stopped cannot have low flow).
    Suppress(bool),
    OutOfService {
        on: bool,
        by: String,
    },
}

/// Which flag changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Activated,
    Cleared,
    /// Re-annunciated: still active, acknowledgement required again.
    Realarmed,
    Acknowledged,
    /// A latched alarm's hold released (acknowledged after clearing).
    Unlatched,
    Shelved,
    Unshelved,
    Suppressed,
    Unsuppressed,
    OutOfService,
    InService,
}

/// One journal entry: exactly one per flag change.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    pub seq: u64,
    pub ts_ms: i64,
    pub change: Change,
    /// The ISA state after this change.
    pub state: IsaState,
    pub value: Option<f64>,
    pub by: Option<String>,
    pub comment: Option<String>,
}

/// Whether the detector's condition holds for `value`, given whether it
/// held before (deadband hysteresis).
fn condition(
    spec: &AlarmSpec,
    st: &AlarmState,
    ts_ms: i64,
    value: Option<f64>,
    stale: bool,
) -> bool {
    match spec.detector {
        Detector::Quality => value.is_none() || stale,
        // A bad or stale input cannot say the condition is gone (or
        // there): keep what was known.
        _ if value.is_none() || stale => st.condition,
        Detector::Limit {
            side,
            limit,
            deadband,
        } => {
            let v = value.unwrap_or(f64::NAN);
            let db = if st.condition {
                deadband.width(limit)
            } else {
                0.0
            };
            match side {
                Side::Above => v > limit - db,
                Side::Below => v < limit + db,
            }
        }
        Detector::Rate { per_s } => match (st.last_input, value) {
            (Some((t0, v0)), Some(v)) if ts_ms > t0 => {
                ((v - v0) / ((ts_ms - t0) as f64 / 1000.0)).abs() > per_s
            }
            _ => st.condition,
        },
        Detector::Discrete { equals } => value.is_some_and(|v| v == equals),
    }
}

/// Apply `event` at `now_ms`: update `st`, return one journal entry per
/// flag that changed.
pub fn step(spec: &AlarmSpec, st: &mut AlarmState, event: &Event, now_ms: i64) -> Vec<Journal> {
    let mut out = Vec::new();
    let mut by: Option<String> = None;
    let mut comment: Option<String> = None;
    let mut log =
        |st: &mut AlarmState, change: Change, by: &Option<String>, comment: &Option<String>| {
            st.seq += 1;
            out.push(Journal {
                seq: st.seq,
                ts_ms: now_ms,
                change,
                state: st.isa(),
                value: st.value,
                by: by.clone(),
                comment: comment.clone(),
            });
        };
    match event {
        Event::Input {
            ts_ms,
            value,
            stale,
        } => {
            let c = condition(spec, st, *ts_ms, *value, *stale);
            if c != st.condition {
                st.condition = c;
                st.condition_since_ms = *ts_ms;
            }
            if value.is_some() {
                st.value = *value;
            }
            if let Some(v) = value {
                st.last_input = Some((*ts_ms, *v));
            }
        }
        Event::Tick => {}
        Event::Ack {
            by: who,
            comment: c,
        } => {
            by = Some(who.clone());
            comment = c.clone();
            if !st.acked {
                st.acked = true;
                // Re-alarm counts from the acknowledgement: an alarm acked
                // late is not re-annunciated the same instant.
                if st.active {
                    st.annunciated_ms = Some(now_ms);
                }
                log(st, Change::Acknowledged, &by, &comment);
            }
            if st.latched && !st.active {
                st.latched = false;
                log(st, Change::Unlatched, &by, &comment);
            }
        }
        Event::Shelve {
            by: who,
            reason,
            until_ms,
        } => {
            by = Some(who.clone());
            comment = Some(reason.clone());
            let shelf = Shelf {
                until_ms: *until_ms,
                by: who.clone(),
                reason: reason.clone(),
            };
            if st.shelved.as_ref() != Some(&shelf) {
                st.shelved = Some(shelf);
                log(st, Change::Shelved, &by, &comment);
            }
        }
        Event::Unshelve { by: who } => {
            by = Some(who.clone());
            if st.shelved.take().is_some() {
                log(st, Change::Unshelved, &by, &comment);
            }
        }
        Event::Suppress(on) => {
            if st.suppressed != *on {
                st.suppressed = *on;
                let change = if *on {
                    Change::Suppressed
                } else {
                    Change::Unsuppressed
                };
                log(st, change, &by, &comment);
            }
        }
        Event::OutOfService { on, by: who } => {
            by = Some(who.clone());
            if st.out_of_service != *on {
                st.out_of_service = *on;
                let change = if *on {
                    Change::OutOfService
                } else {
                    Change::InService
                };
                log(st, change, &by, &comment);
            }
        }
    }
    // Time-driven changes, after every event: the delays, the shelf's
    // expiry, re-alarm. Entries from them carry no user.
    let (by, comment) = (None, None);
    let held_ms = now_ms - st.condition_since_ms;
    if st.condition && !st.active && held_ms >= spec.on_delay_ms {
        st.active = true;
        st.acked = false;
        st.annunciated_ms = Some(now_ms);
        st.active_since_ms = Some(now_ms);
        if spec.latched {
            st.latched = true;
        }
        log(st, Change::Activated, &by, &comment);
    } else if !st.condition && st.active && held_ms >= spec.off_delay_ms {
        st.active = false;
        log(st, Change::Cleared, &by, &comment);
        // A one-shot shelf lasts until the alarm clears.
        if st.shelved.as_ref().is_some_and(|s| s.until_ms.is_none()) {
            st.shelved = None;
            log(st, Change::Unshelved, &by, &comment);
        }
    } else if st.active
        && st.acked
        && let (Some(every), Some(at)) = (spec.realarm_ms, st.annunciated_ms)
        && now_ms - at >= every
    {
        st.acked = false;
        st.annunciated_ms = Some(now_ms);
        log(st, Change::Realarmed, &by, &comment);
    }
    if st
        .shelved
        .as_ref()
        .is_some_and(|s| s.until_ms.is_some_and(|u| now_ms >= u))
    {
        st.shelved = None;
        log(st, Change::Unshelved, &by, &comment);
    }
    out
}

/// When [`step`] with [`Event::Tick`] may next change something (a delay
/// ending, a shelf expiring, a re-alarm), so the caller can sleep until then.
pub fn next_due(spec: &AlarmSpec, st: &AlarmState) -> Option<i64> {
    let delay = match (st.condition, st.active) {
        (true, false) => Some(st.condition_since_ms + spec.on_delay_ms),
        (false, true) => Some(st.condition_since_ms + spec.off_delay_ms),
        _ => None,
    };
    let realarm = match (st.active && st.acked, spec.realarm_ms, st.annunciated_ms) {
        (true, Some(every), Some(at)) => Some(at + every),
        _ => None,
    };
    let shelf = st.shelved.as_ref().and_then(|s| s.until_ms);
    [delay, realarm, shelf].into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn hi(limit: f64) -> AlarmSpec {
        AlarmSpec {
            detector: Detector::Limit {
                side: Side::Above,
                limit,
                deadband: Deadband::Absolute(2.0),
            },
            priority: Priority::High,
            on_delay_ms: 5_000,
            off_delay_ms: 3_000,
            latched: false,
            realarm_ms: None,
        }
    }

    fn input(ts_ms: i64, v: f64) -> Event {
        Event::Input {
            ts_ms,
            value: Some(v),
            stale: false,
        }
    }

    fn ack() -> Event {
        Event::Ack {
            by: "op".into(),
            comment: Some("seen".into()),
        }
    }

    #[test]
    fn a_limit_alarm_waits_its_delays_and_clears_past_the_deadband() {
        let spec = hi(100.0);
        let mut st = AlarmState::new(0);
        assert!(step(&spec, &mut st, &input(0, 101.0), 0).is_empty());
        // On-delay: not yet at 4 s, active at 5 s.
        assert!(step(&spec, &mut st, &Event::Tick, 4_000).is_empty());
        let j = step(&spec, &mut st, &Event::Tick, 5_000);
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Activated, IsaState::Unacknowledged)
        );
        assert_eq!(j[0].value, Some(101.0));
        // Inside the deadband (99 > 100 − 2) the condition still holds.
        step(&spec, &mut st, &input(6_000, 99.0), 6_000);
        assert!(st.condition);
        let j = step(&spec, &mut st, &ack(), 7_000);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Acknowledged, IsaState::Acknowledged)
        );
        assert_eq!(j[0].by.as_deref(), Some("op"));
        // Below the deadband: clears after the off-delay.
        step(&spec, &mut st, &input(8_000, 97.0), 8_000);
        assert!(step(&spec, &mut st, &Event::Tick, 10_000).is_empty());
        let j = step(&spec, &mut st, &Event::Tick, 11_000);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Cleared, IsaState::Normal)
        );
        assert_eq!(next_due(&spec, &st), None);
    }

    #[test]
    fn a_latched_alarm_holds_until_reset_and_realarms_when_acknowledged_too_long() {
        let spec = AlarmSpec {
            latched: true,
            realarm_ms: Some(60_000),
            on_delay_ms: 0,
            off_delay_ms: 0,
            ..hi(100.0)
        };
        let mut st = AlarmState::new(0);
        step(&spec, &mut st, &input(0, 120.0), 0);
        assert_eq!(st.isa(), IsaState::Unacknowledged);
        step(&spec, &mut st, &ack(), 1_000);
        let j = step(&spec, &mut st, &Event::Tick, 61_000);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Realarmed, IsaState::Unacknowledged)
        );
        step(&spec, &mut st, &ack(), 62_000);
        // Cleared, but latched: still shown active until reset.
        step(&spec, &mut st, &input(63_000, 50.0), 63_000);
        assert_eq!(st.isa(), IsaState::Acknowledged);
        let j = step(&spec, &mut st, &ack(), 64_000);
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Unlatched, IsaState::Normal)
        );
    }

    #[test]
    fn shelving_hides_but_the_alarm_is_still_evaluated_and_journaled() {
        let spec = AlarmSpec {
            on_delay_ms: 0,
            off_delay_ms: 0,
            ..hi(100.0)
        };
        let mut st = AlarmState::new(0);
        let j = step(
            &spec,
            &mut st,
            &Event::Shelve {
                by: "op".into(),
                reason: "sensor being replaced".into(),
                until_ms: Some(600_000),
            },
            0,
        );
        assert_eq!(
            (j[0].change, j[0].comment.as_deref()),
            (Change::Shelved, Some("sensor being replaced"))
        );
        let j = step(&spec, &mut st, &input(1_000, 150.0), 1_000);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Activated, IsaState::Shelved)
        );
        assert_eq!(next_due(&spec, &st), Some(600_000));
        // The shelf runs out: the operator sees the alarm, unacknowledged.
        let j = step(&spec, &mut st, &Event::Tick, 600_000);
        assert_eq!(
            (j[0].change, j[0].state),
            (Change::Unshelved, IsaState::Unacknowledged)
        );
        // A one-shot shelf ends when the alarm clears.
        step(
            &spec,
            &mut st,
            &Event::Shelve {
                by: "op".into(),
                reason: "known".into(),
                until_ms: None,
            },
            601_000,
        );
        let j = step(&spec, &mut st, &input(602_000, 10.0), 602_000);
        let changes: Vec<Change> = j.iter().map(|e| e.change).collect();
        assert_eq!(changes, vec![Change::Cleared, Change::Unshelved]);
        assert_eq!(st.isa(), IsaState::ReturnedUnacknowledged);
    }

    #[test]
    fn detectors_rate_discrete_and_quality() {
        let rate = AlarmSpec {
            detector: Detector::Rate { per_s: 2.0 },
            on_delay_ms: 0,
            ..hi(0.0)
        };
        let mut st = AlarmState::new(0);
        step(&rate, &mut st, &input(0, 10.0), 0);
        step(&rate, &mut st, &input(1_000, 11.0), 1_000);
        assert!(!st.condition);
        step(&rate, &mut st, &input(2_000, 14.0), 2_000);
        assert!(st.condition && st.active);
        let trip = AlarmSpec {
            detector: Detector::Discrete { equals: 7.0 },
            on_delay_ms: 0,
            ..hi(0.0)
        };
        let mut st = AlarmState::new(0);
        step(&trip, &mut st, &input(0, 7.0), 0);
        assert!(st.active);
        let q = AlarmSpec {
            detector: Detector::Quality,
            on_delay_ms: 0,
            ..hi(0.0)
        };
        let mut st = AlarmState::new(0);
        step(
            &q,
            &mut st,
            &Event::Input {
                ts_ms: 0,
                value: None,
                stale: false,
            },
            0,
        );
        assert!(st.active);
        // A limit alarm keeps its condition through bad quality.
        let spec = AlarmSpec {
            on_delay_ms: 0,
            ..hi(100.0)
        };
        let mut st = AlarmState::new(0);
        step(&spec, &mut st, &input(0, 120.0), 0);
        step(
            &spec,
            &mut st,
            &Event::Input {
                ts_ms: 1_000,
                value: None,
                stale: false,
            },
            1_000,
        );
        assert!(st.condition && st.active);
    }

    fn event() -> impl Strategy<Value = (u16, Event)> {
        // (ms since the previous event, event)
        let dt = 0u16..8_000;
        let ev = prop_oneof![
            6 => (80.0f64..120.0, any::<bool>(), any::<bool>()).prop_map(|(v, bad, stale)| Event::Input {
                ts_ms: 0,
                value: (!bad).then_some(v),
                stale: stale && v > 115.0,
            }),
            2 => Just(Event::Tick),
            1 => Just(Event::Ack { by: "op".into(), comment: None }),
            1 => (proptest::option::of(1_000i64..60_000)).prop_map(|d| Event::Shelve {
                by: "op".into(),
                reason: "r".into(),
                until_ms: d,
            }),
            1 => Just(Event::Unshelve { by: "op".into() }),
            1 => any::<bool>().prop_map(Event::Suppress),
            1 => any::<bool>().prop_map(|on| Event::OutOfService { on, by: "eng".into() }),
        ];
        (dt, ev)
    }

    fn flags(st: &AlarmState) -> (bool, bool, bool, Option<Shelf>, bool, bool) {
        (
            st.active,
            st.acked,
            st.latched,
            st.shelved.clone(),
            st.suppressed,
            st.out_of_service,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// An alarm never shows as normal while its condition has held
        /// beyond its on-delay, unless shelved, suppressed or out of
        /// service; every change of a flag has exactly one journal entry,
        /// numbered without gaps, and nothing else has one.
        #[test]
        fn never_normal_while_its_condition_holds_and_one_entry_per_change(
            latched in any::<bool>(),
            realarm in proptest::option::of(10_000i64..100_000),
            on_delay in 0i64..10_000,
            off_delay in 0i64..10_000,
            events in proptest::collection::vec(event(), 1..120),
        ) {
            let spec = AlarmSpec { latched, realarm_ms: realarm, on_delay_ms: on_delay, off_delay_ms: off_delay, ..hi(100.0) };
            let mut st = AlarmState::new(0);
            let mut now = 0i64;
            let mut seq = 0u64;
            for (dt, ev) in events {
                now += i64::from(dt);
                let ev = match ev {
                    Event::Input { value, stale, .. } => Event::Input { ts_ms: now, value, stale },
                    Event::Shelve { by, reason, until_ms } => Event::Shelve { by, reason, until_ms: until_ms.map(|d| now + d) },
                    e => e,
                };
                let before = flags(&st);
                let journal = step(&spec, &mut st, &ev, now);
                let after = flags(&st);
                prop_assert_eq!(journal.is_empty(), before == after, "{:?} → {:?}: {:?}", before, after, journal);
                for j in &journal {
                    seq += 1;
                    prop_assert_eq!(j.seq, seq);
                    prop_assert_eq!(j.ts_ms, now);
                }
                if let Some(last) = journal.last() {
                    prop_assert_eq!(last.state, st.isa());
                }
                let hidden = st.shelved.is_some() || st.suppressed || st.out_of_service;
                if st.condition && now - st.condition_since_ms >= spec.on_delay_ms && !hidden {
                    prop_assert_ne!(st.isa(), IsaState::Normal, "{:?}", st);
                }
                // Time-driven changes are never left pending.
                if let Some(due) = next_due(&spec, &st) {
                    prop_assert!(due > now, "due {} at {}: {:?}", due, now, st);
                }
            }
        }
    }
}
