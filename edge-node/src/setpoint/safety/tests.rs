//! Each rule of a move by hand, then property tests that drive moves the
//! way the caller does through arbitrary samples, answers and aborts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

fn lim() -> Limits {
    Limits {
        min: 300.0,
        max: 385.0,
        max_step: 5.0,
        min_interval_ms: 10_000,
        tolerance: 0.1,
        verify_timeout_ms: 5_000,
        hold_timeout_ms: 60_000,
    }
}

fn obs(v: f64, ts_ms: i64) -> Observation {
    Observation {
        value: Some(v),
        ts_ms,
        quality: Check::Pass,
        interlock: Interlock::clear(),
    }
}

fn bad(v: f64, ts_ms: i64, why: &str) -> Observation {
    Observation {
        quality: Check::Fail(why.into()),
        ..obs(v, ts_ms)
    }
}

fn gates(v: f64, ts_ms: i64, permissive: Check, state: Check) -> Observation {
    Observation {
        interlock: Interlock { permissive, state },
        ..obs(v, ts_ms)
    }
}

/// The wait's time; panics on any other action.
fn until(a: &Action) -> Option<i64> {
    match a {
        Action::Wait { until_ms, .. } => *until_ms,
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn start(start: f64, requested: f64) -> Move {
    Move::new("TIC-101.SP", lim(), start, requested, 0)
        .unwrap()
        .0
}

/// A plant that applies every write at once and is sampled 1 ms after each
/// poll's start: returns the writes with their times.
fn run_healthy(mv: &mut Move, mut now: i64) -> Vec<(i64, f64)> {
    let mut plant = mv.start_value();
    let mut writes = Vec::new();
    for _ in 0..1_000 {
        match mv.poll(now, &obs(plant, now)) {
            Action::Write { value } => {
                writes.push((now, value));
                plant = value;
                mv.write_result(now, Ok(())).unwrap();
                now += 1;
            }
            Action::Wait {
                until_ms: Some(u), ..
            } => now = now.max(u),
            Action::Done { .. } | Action::Failed { .. } => return writes,
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the move did not end: {mv:?}");
}

#[test]
fn ramps_by_max_step_and_lands_on_the_target_at_the_rate_limit() {
    let mut mv = start(360.0, 372.0);
    let writes = run_healthy(&mut mv, 1_000);
    let values: Vec<f64> = writes.iter().map(|w| w.1).collect();
    assert_eq!(values, vec![365.0, 370.0, 372.0]);
    let times: Vec<i64> = writes.iter().map(|w| w.0).collect();
    assert_eq!(times, vec![1_000, 11_000, 21_000]);
    assert_eq!(
        mv.outcome(),
        Some(&Outcome::Completed { final_value: 372.0 })
    );
    assert_eq!(mv.verified_steps(), 3);
    // Downwards too, and the terminal action repeats.
    let mut mv = start(372.0, 360.0);
    let values: Vec<f64> = run_healthy(&mut mv, 0).iter().map(|w| w.1).collect();
    assert_eq!(values, vec![367.0, 362.0, 360.0]);
    assert_eq!(
        mv.poll(99_999, &obs(0.0, 0)),
        Action::Done { final_value: 360.0 }
    );
}

#[test]
fn requests_are_clamped_and_reported() {
    let (mv, c) = Move::new("t", lim(), 360.0, 400.0, 0).unwrap();
    assert_eq!(
        c,
        Some(Clamped {
            from: 400.0,
            to: 385.0
        })
    );
    assert_eq!(mv.target(), 385.0);
    let (mv, c) = Move::new("t", lim(), 360.0, -1e300, 0).unwrap();
    assert_eq!((mv.target(), c.map(|c| c.to)), (300.0, Some(300.0)));
    let (mv, c) = Move::new("t", lim(), 360.0, 370.0, 0).unwrap();
    assert_eq!((mv.target(), c), (370.0, None));
}

#[test]
fn refusals_at_creation() {
    let new = |s: f64, r: f64| Move::new("t", lim(), s, r, 0).map(|_| ()).unwrap_err();
    assert!(matches!(
        new(360.0, f64::NAN),
        MoveError::NotFinite {
            what: "requested value",
            ..
        }
    ));
    assert!(matches!(
        new(360.0, f64::INFINITY),
        MoveError::NotFinite { .. }
    ));
    assert!(matches!(
        new(f64::NEG_INFINITY, 360.0),
        MoveError::NotFinite {
            what: "current value",
            ..
        }
    ));
    for outside in [299.9, 390.0] {
        let e = new(outside, 350.0);
        assert!(matches!(e, MoveError::StartOutsideLimits { .. }), "{e}");
        assert!(e.to_string().contains("control system"), "{e}");
    }
    // Within tolerance, also when the clamp lands there.
    assert!(matches!(new(360.0, 360.05), MoveError::NothingToDo { .. }));
    assert_eq!(
        new(385.0, 999.0),
        MoveError::NothingToDo {
            tag: "t".into(),
            current: 385.0,
            target: 385.0,
            clamped: Some(Clamped {
                from: 999.0,
                to: 385.0
            }),
        }
    );
    let breaks: [fn(&mut Limits); 8] = [
        |l| l.min = 400.0,
        |l| l.max_step = 0.0,
        |l| l.tolerance = 5.0,
        |l| l.tolerance = -0.1,
        |l| l.min_interval_ms = -1,
        |l| l.verify_timeout_ms = 0,
        |l| l.hold_timeout_ms = 0,
        |l| l.max = f64::INFINITY,
    ];
    for f in breaks {
        let mut bad = lim();
        f(&mut bad);
        let e = Move::new("t", bad.clone(), 360.0, 370.0, 0)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, MoveError::InvalidLimits { .. }), "{bad:?}");
    }
}

#[test]
fn the_rate_limit_counts_from_the_previous_write_even_of_an_earlier_move() {
    let mut mv = start(360.0, 362.0).with_previous_write(Some(-4_000));
    assert_eq!(
        mv.poll(0, &obs(360.0, 0)),
        Action::Wait {
            until_ms: Some(6_000),
            reason: "rate limit: one write per 10000 ms".into()
        }
    );
    assert_eq!(until(&mv.poll(5_999, &obs(360.0, 5_999))), Some(6_000));
    assert_eq!(
        mv.poll(6_000, &obs(360.0, 6_000)),
        Action::Write { value: 362.0 }
    );
    assert_eq!(mv.last_write_ms(), Some(6_000));
}

/// A move that wrote 365 (acknowledged at 100).
fn written() -> Move {
    let mut mv = start(360.0, 372.0);
    assert_eq!(mv.poll(0, &obs(360.0, 0)), Action::Write { value: 365.0 });
    mv.write_result(100, Ok(())).unwrap();
    mv
}

fn rolled_back(mv: &mut Move, a: Action, why: &str) {
    match a {
        Action::RollBack { value, reason } => {
            assert_eq!(value, 360.0);
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    // Exactly once; then the rollback's answer and its read-back end the move.
    assert_eq!(until(&mv.poll(200, &obs(360.0, 200))), None);
    mv.write_result(300, Ok(())).unwrap();
    assert_eq!(mv.outcome(), None, "restored only once read back");
    // A sample from before the acknowledgement proves nothing.
    assert!(matches!(
        mv.poll(350, &obs(360.0, 300)),
        Action::Wait { .. }
    ));
    assert!(matches!(
        mv.poll(400, &obs(360.0, 400)),
        Action::Failed { .. }
    ));
    assert!(matches!(mv.outcome(), Some(Outcome::RolledBack { value, .. }) if *value == 360.0));
}

/// A rollback the PLC alters (or ignores), or one never read back, is a
/// failed rollback, not a restored value (found by the closed-loop test
/// against the plant's `alter_writes`).
#[test]
fn a_rollback_is_restored_only_when_read_back() {
    for (sample, want) in [
        (Some(obs(362.0, 400)), "shows 362"),
        (Some(obs(365.0, 400)), "shows 365"),
        (
            Some(Observation {
                quality: Check::Fail("quality bad".into()),
                ..obs(360.0, 400)
            }),
            "quality bad",
        ),
        (None, "no read-back within"),
    ] {
        let mut mv = written();
        let a = mv.poll(150, &obs(367.0, 150));
        assert!(
            matches!(a, Action::RollBack { value, .. } if value == 360.0),
            "{a:?}"
        );
        mv.write_result(300, Ok(())).unwrap();
        let end = match &sample {
            Some(o) => mv.poll(450, o),
            // Past verify_timeout_ms after the acknowledgement, nothing seen.
            None => mv.poll(300 + mv.limits().verify_timeout_ms + 1, &obs(365.0, 250)),
        };
        assert!(matches!(end, Action::Failed { .. }), "{end:?}");
        match mv.outcome() {
            Some(Outcome::RollbackFailed { value, error, .. }) => {
                assert_eq!(*value, 360.0);
                assert!(error.contains(want), "{error} lacks {want}");
            }
            other => panic!("{sample:?}: {other:?}"),
        }
    }
}

#[test]
fn verification_ignores_older_samples_and_accepts_a_match_within_tolerance() {
    let mut mv = written();
    // Stamped at the acknowledgement itself: may predate the write.
    let a = mv.poll(150, &obs(360.0, 100));
    assert_eq!(
        a,
        Action::Wait {
            until_ms: Some(5_101),
            reason: "waiting for the read-back of 365".into()
        }
    );
    assert_eq!(until(&mv.poll(200, &obs(365.05, 101))), Some(10_000));
    assert_eq!(mv.last_verified(), 365.0);
    assert_eq!(mv.phase(), &Phase::Ready);
}

#[test]
fn a_read_back_mismatch_rolls_back() {
    let mut mv = written();
    let a = mv.poll(200, &obs(362.0, 150));
    rolled_back(&mut mv, a, "differs from the written 365");
}

#[test]
fn bad_quality_while_verifying_rolls_back() {
    let mut mv = written();
    let a = mv.poll(200, &bad(365.0, 150, "bad (timeout)"));
    rolled_back(&mut mv, a, "bad (timeout)");
    // A Good sample without a number is no read-back either.
    let mut mv = written();
    let a = mv.poll(
        200,
        &Observation {
            value: None,
            ..obs(0.0, 150)
        },
    );
    rolled_back(&mut mv, a, "no numeric value");
}

#[test]
fn no_read_back_in_time_rolls_back() {
    let mut mv = written();
    assert_eq!(until(&mv.poll(5_100, &obs(360.0, 50))), Some(5_101));
    let a = mv.poll(5_101, &obs(360.0, 50));
    rolled_back(&mut mv, a, "no read-back of 365 within 5000 ms");
    // A matching sample stamped after the deadline is too late.
    let mut mv = written();
    let a = mv.poll(5_200, &obs(365.0, 5_101));
    rolled_back(&mut mv, a, "within 5000 ms");
    // One stamped in time but polled late still counts.
    let mut mv = written();
    assert_eq!(until(&mv.poll(9_000, &obs(365.0, 5_100))), Some(10_000));
}

#[test]
fn a_write_error_rolls_back_and_a_failed_rollback_is_reported() {
    let mut mv = start(360.0, 372.0);
    assert_eq!(mv.poll(0, &obs(360.0, 0)), Action::Write { value: 365.0 });
    mv.write_result(100, Err("exception 4".into())).unwrap();
    let a = mv.poll(150, &obs(360.0, 150));
    rolled_back(&mut mv, a, "the write of 365 failed: exception 4");

    let mut mv = start(360.0, 372.0);
    mv.poll(0, &obs(360.0, 0));
    mv.write_result(100, Err("timeout".into())).unwrap();
    assert!(matches!(
        mv.poll(150, &obs(360.0, 150)),
        Action::RollBack { .. }
    ));
    mv.write_result(200, Err("not connected".into())).unwrap();
    assert_eq!(
        mv.outcome(),
        Some(&Outcome::RollbackFailed {
            value: 360.0,
            reason: "the write of 365 failed: timeout".into(),
            error: "not connected".into()
        })
    );
    assert_eq!(
        mv.write_result(300, Ok(())),
        Err(MoveError::NoWriteOutstanding)
    );
}

#[test]
fn closed_gates_hold_the_next_write_until_the_hold_timeout() {
    let off = |why: &str| Check::Fail(why.into());
    let closed = [
        (
            gates(360.0, 0, off("HS-1 off"), Check::Pass),
            "permissive off: HS-1 off",
        ),
        (
            gates(360.0, 0, Check::Pass, off("mode is MAN")),
            "state interlock: mode is MAN",
        ),
        (bad(360.0, 0, "uncertain"), "uncertain"),
        (
            Observation {
                value: Some(f64::NAN),
                ..obs(360.0, 0)
            },
            "no numeric value",
        ),
    ];
    for (o, why) in closed {
        let mut mv = start(360.0, 372.0);
        for t in [0, 30_000, 59_999] {
            match mv.poll(t, &o) {
                Action::Wait {
                    until_ms: Some(60_000),
                    reason,
                } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(matches!(mv.poll(60_000, &o), Action::Failed { .. }));
        assert!(
            matches!(mv.outcome(), Some(Outcome::Failed { left_at, .. }) if *left_at == 360.0),
            "{why}"
        );
    }
    // A gate that reopens resets the hold and the write goes out.
    let mut mv = start(360.0, 372.0);
    mv.poll(0, &bad(360.0, 0, "bad"));
    assert_eq!(
        mv.poll(50_000, &obs(360.0, 50_000)),
        Action::Write { value: 365.0 }
    );
}

#[test]
fn interlocks_are_not_consulted_while_verifying() {
    let mut mv = written();
    let o = gates(365.0, 150, Check::Fail("off".into()), Check::Pass);
    // Verified, then the next step is held by the permissive.
    match mv.poll(200, &o) {
        Action::Wait { reason, .. } => assert!(reason.contains("permissive"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(mv.last_verified(), 365.0);
}

#[test]
fn a_setpoint_changed_by_someone_else_ends_the_move_without_writing() {
    let mut mv = start(360.0, 372.0);
    let a = mv.poll(0, &obs(361.0, 0));
    assert!(matches!(a, Action::Failed { .. }), "{a:?}");
    assert!(matches!(mv.outcome(), Some(Outcome::Failed { left_at, .. }) if *left_at == 360.0));
    // After a verified step: a later sample elsewhere.
    let mut mv = written();
    mv.poll(200, &obs(365.0, 150));
    let a = mv.poll(20_000, &obs(350.0, 19_000));
    assert!(matches!(a, Action::Failed { reason } if reason.contains("changed outside")));
}

#[test]
fn abort_before_any_write_ends_quietly_and_after_one_rolls_back() {
    let mut mv = start(360.0, 372.0);
    mv.poll(0, &bad(360.0, 0, "bad"));
    assert!(matches!(
        mv.abort(10, "operator cancelled"),
        Action::Failed { .. }
    ));
    assert_eq!(
        mv.outcome(),
        Some(&Outcome::Aborted {
            reason: "operator cancelled".into()
        })
    );
    // While verifying.
    let mut mv = written();
    let a = mv.abort(150, "config reload");
    rolled_back(&mut mv, a, "aborted: config reload");
    // Between verified steps.
    let mut mv = written();
    mv.poll(200, &obs(365.0, 150));
    let a = mv.abort(300, "operator cancelled");
    rolled_back(&mut mv, a, "aborted: operator cancelled");
    // With a write outstanding: its answer first, then the rollback.
    let mut mv = start(360.0, 372.0);
    mv.poll(0, &obs(360.0, 0));
    assert_eq!(until(&mv.abort(10, "stop")), None);
    assert_eq!(until(&mv.poll(20, &obs(360.0, 20))), None);
    mv.write_result(100, Ok(())).unwrap();
    let a = mv.poll(150, &obs(365.0, 150));
    rolled_back(&mut mv, a, "aborted: stop");
}

#[test]
fn observations_from_live_samples() {
    use drivers::{Quality, Reason, Sample, Timestamp, Value};
    let s = Sample {
        tag: "t".into(),
        ts: Timestamp(1_234),
        value: Some(Value::F64(365.5)),
        quality: Quality::Good,
    };
    let o = Observation::from_sample(Some(&s), Interlock::clear());
    assert_eq!(o, obs(365.5, 1_234));
    let bad = Sample {
        quality: Quality::Bad(Reason::Timeout),
        value: None,
        ..s
    };
    let o = Observation::from_sample(Some(&bad), Interlock::clear());
    assert!(
        matches!(&o.quality, Check::Fail(r) if r.contains("bad")),
        "{o:?}"
    );
    let none = Observation::from_sample(None, Interlock::clear());
    assert!(!none.quality.passes());
}

// ---- properties ----

#[derive(Clone, Debug)]
enum Place {
    /// min + f·(max − min)
    Inside(f64),
    Below(f64),
    Above(f64),
    Any(f64),
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        12 => (0.0f64..=1.0).prop_map(Place::Inside),
        1 => (0.0f64..1e4).prop_map(Place::Below),
        1 => (0.0f64..1e4).prop_map(Place::Above),
        1 => any::<f64>().prop_map(Place::Any),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(1e308), Just(-1e308)]
            .prop_map(Place::Any),
    ]
}

fn at(p: &Place, l: &Limits) -> f64 {
    match *p {
        Place::Inside(f) => l.min + f * (l.max - l.min),
        Place::Below(d) => l.min - d,
        Place::Above(d) => l.max + d,
        Place::Any(v) => v,
    }
}

/// Valid limits with at most ~50 steps across the whole range.
fn limits() -> impl Strategy<Value = Limits> {
    (
        -1e6f64..1e6,
        0.0f64..1e4,
        prop_oneof![3 => 0.02f64..0.3, 1 => 0.3f64..2.0],
        0i64..20_000,
        prop_oneof![3 => 0.0f64..0.2, 1 => 0.2f64..0.9],
        prop_oneof![1 => 1i64..1_000, 3 => 5_000i64..60_000],
        1i64..60_000,
    )
        .prop_map(|(min, span, frac, interval, tol, verify, hold)| {
            let max_step = (span * frac).max(1e-3);
            Limits {
                min,
                max: min + span,
                max_step,
                min_interval_ms: interval,
                tolerance: max_step * tol,
                verify_timeout_ms: verify,
                hold_timeout_ms: hold,
            }
        })
}

#[derive(Clone, Debug)]
enum Seen {
    Plant,
    Other(f64),
    Missing,
}

#[derive(Clone, Debug)]
enum Input {
    Advance(i64),
    Poll {
        seen: Seen,
        age: i64,
        good: bool,
        permissive: bool,
        state: bool,
    },
    /// The device's answer to the outstanding write; `applied`: whether the
    /// plant took the value (an error may still have applied it).
    Answer {
        ok: bool,
        applied: bool,
    },
    Abort,
}

/// `noise` (0..1): how often a sample, a gate or an answer goes wrong.
fn input(noise: f64) -> impl Strategy<Value = Input> {
    let seen = prop_oneof![
        (1_000.0 * (1.0 - noise)) as u32 + 1 => Just(Seen::Plant),
        (500.0 * noise) as u32 + 1 => (-1e6f64..1e6).prop_map(Seen::Other),
        (500.0 * noise) as u32 + 1 => Just(Seen::Missing),
    ];
    let fine = |p: f64| prop::bool::weighted(1.0 - p * noise);
    prop_oneof![
        60 => (0i64..3_000).prop_map(Input::Advance),
        20 => (0i64..25_000).prop_map(Input::Advance),
        120 => (
            seen,
            prop_oneof![3 => -50i64..500, 1 => 500i64..3_000],
            fine(0.5),
            fine(1.0),
            fine(1.0),
        )
            .prop_map(|(seen, age, good, permissive, state)| Input::Poll { seen, age, good, permissive, state }),
        80 => (fine(0.7), fine(0.5))
            .prop_map(|(ok, applied)| Input::Answer { ok, applied }),
        1 => Just(Input::Abort),
    ]
}

/// The caller and the plant, checking every action against the rules.
struct Harness {
    mv: Move,
    l: Limits,
    now: i64,
    plant: f64,
    /// The write the device has not answered: (value, is a rollback).
    outstanding: Option<(f64, bool)>,
    /// The previous step's value (the start at first): the next step is
    /// measured from it, since a step goes out only once it is verified.
    prev: f64,
    /// Whether the previous step was acknowledged (when) and read back.
    acked_at: Option<i64>,
    prev_verified: bool,
    last_step_ms: Option<i64>,
    rolled_back: bool,
    steps: Vec<f64>,
    ended: Option<Action>,
}

impl Harness {
    fn new(mv: Move) -> Harness {
        Harness {
            l: mv.limits().clone(),
            plant: mv.start_value(),
            prev: mv.start_value(),
            mv,
            now: 0,
            outstanding: None,
            acked_at: None,
            prev_verified: true,
            last_step_ms: None,
            rolled_back: false,
            steps: Vec::new(),
            ended: None,
        }
    }

    /// Checks one action; `gates_open`: whether the observation just given
    /// (if any) allowed a write.
    fn act(&mut self, a: Action, gates_open: bool) -> Result<(), TestCaseError> {
        if let Some(end) = &self.ended {
            prop_assert_eq!(&a, end, "a finished move changed its answer");
            return Ok(());
        }
        match a {
            Action::Write { value } => {
                prop_assert!(gates_open, "a write while a gate was closed");
                prop_assert!(!self.rolled_back, "a write after a rollback");
                prop_assert!(self.outstanding.is_none(), "a second write outstanding");
                prop_assert!(self.l.contains(value), "{} outside {:?}", value, self.l);
                let slack = 1e-9 * value.abs().max(self.prev.abs()).max(1.0);
                prop_assert!(
                    (value - self.prev).abs() <= self.l.max_step + slack,
                    "step {} → {} exceeds {}",
                    self.prev,
                    value,
                    self.l.max_step
                );
                prop_assert!(
                    self.prev_verified,
                    "a step before the previous one was verified"
                );
                if let Some(t) = self.last_step_ms {
                    prop_assert!(
                        self.now - t >= self.l.min_interval_ms,
                        "writes at {} and {}",
                        t,
                        self.now
                    );
                }
                self.outstanding = Some((value, false));
                self.prev = value;
                self.prev_verified = false;
                self.acked_at = None;
                self.last_step_ms = Some(self.now);
                self.steps.push(value);
            }
            Action::RollBack { value, .. } => {
                prop_assert!(!self.rolled_back, "a second rollback");
                prop_assert!(
                    self.outstanding.is_none(),
                    "a rollback with a write outstanding"
                );
                prop_assert_eq!(value.to_bits(), self.mv.start_value().to_bits());
                self.rolled_back = true;
                self.outstanding = Some((value, true));
            }
            Action::Wait { until_ms, .. } => {
                if let Some(u) = until_ms {
                    prop_assert!(u > self.now, "a wait for the past: {} at {}", u, self.now);
                }
            }
            Action::Done { final_value } => {
                prop_assert_eq!(final_value, self.mv.target());
                prop_assert_eq!(self.steps.last().copied(), Some(final_value));
                prop_assert!(!self.rolled_back);
                self.ended = Some(Action::Done { final_value });
            }
            Action::Failed { reason } => {
                let o = self.mv.outcome().cloned();
                prop_assert!(
                    o.is_some() && !matches!(o, Some(Outcome::Completed { .. })),
                    "{:?}",
                    o
                );
                prop_assert_eq!(
                    self.rolled_back,
                    matches!(
                        o,
                        Some(Outcome::RolledBack { .. } | Outcome::RollbackFailed { .. })
                    ),
                    "{:?}",
                    o
                );
                if matches!(o, Some(Outcome::Aborted { .. })) {
                    prop_assert!(self.steps.is_empty(), "aborted quietly after writing");
                }
                self.ended = Some(Action::Failed { reason });
            }
        }
        prop_assert_eq!(self.ended.is_some(), self.mv.is_finished());
        Ok(())
    }

    fn observe(&mut self, o: &Observation) {
        if let (Some(t), Some(v), Check::Pass) = (self.acked_at, o.value, &o.quality)
            && o.ts_ms > t
            && o.ts_ms <= t + self.l.verify_timeout_ms
            && (v - self.prev).abs() <= self.l.tolerance
        {
            self.prev_verified = true;
        }
    }

    fn answer(&mut self, ok: bool, applied: bool) -> Result<(), TestCaseError> {
        let phase = self.mv.phase().clone();
        let r = self
            .mv
            .write_result(self.now, if ok { Ok(()) } else { Err("refused".into()) });
        match self.outstanding.take() {
            None => {
                prop_assert_eq!(r, Err(MoveError::NoWriteOutstanding));
                prop_assert_eq!(self.mv.phase(), &phase);
            }
            Some((value, rollback)) => {
                prop_assert!(r.is_ok(), "{:?}", r);
                if applied {
                    self.plant = value;
                }
                if ok && !rollback {
                    self.acked_at = Some(self.now);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Whatever the samples, answers and aborts, every write is inside the
    /// limits, one step from the previous verified write, after the rate
    /// limit, with the gates just seen open; a rollback writes exactly the
    /// start value; and once everything is healthy, the move ends.
    #[test]
    fn every_write_is_safe_and_every_move_ends(
        l in limits(),
        s in place(),
        r in place(),
        inputs in (0.0f64..0.4).prop_flat_map(|noise| prop::collection::vec(input(noise), 0..200)),
    ) {
        let (start_value, requested) = (at(&s, &l), at(&r, &l));
        let (mv, clamped) = match Move::new("t", l.clone(), start_value, requested, 0) {
            Ok(m) => m,
            Err(e) => {
                let ok = match e {
                    MoveError::NotFinite { .. } => !start_value.is_finite() || !requested.is_finite(),
                    MoveError::StartOutsideLimits { .. } => start_value.is_finite() && !l.contains(start_value),
                    MoveError::NothingToDo { target, .. } => (target - start_value).abs() <= l.tolerance && l.contains(target),
                    _ => false,
                };
                prop_assert!(ok, "refused {} → {}: {:?}", start_value, requested, e);
                return Ok(());
            }
        };
        prop_assert!(start_value.is_finite() && requested.is_finite() && l.contains(start_value));
        prop_assert!(l.contains(mv.target()));
        prop_assert_eq!(clamped.is_some(), !l.contains(requested));
        prop_assert!((mv.target() - start_value).abs() > l.tolerance);

        let mut h = Harness::new(mv);
        for i in inputs {
            match i {
                Input::Advance(dt) => h.now += dt,
                Input::Poll { seen, age, good, permissive, state } => {
                    let gate = |b: bool| if b { Check::Pass } else { Check::Fail("closed".into()) };
                    let o = Observation {
                        value: match seen { Seen::Plant => Some(h.plant), Seen::Other(v) => Some(v), Seen::Missing => None },
                        ts_ms: h.now - age,
                        quality: gate(good),
                        interlock: Interlock { permissive: gate(permissive), state: gate(state) },
                    };
                    let open = permissive && state && good && o.value.is_some();
                    h.observe(&o);
                    let a = h.mv.poll(h.now, &o);
                    h.act(a, open)?;
                }
                Input::Answer { ok, applied } => h.answer(ok, applied)?,
                Input::Abort => {
                    let a = h.mv.abort(h.now, "cancelled");
                    h.act(a, false)?;
                }
            }
        }
        // Healthy from now on: answered, applied, sampled, gates open.
        for _ in 0..400 {
            if h.mv.is_finished() {
                break;
            }
            if h.outstanding.is_some() {
                h.answer(true, true)?;
            }
            h.now += 1;
            let o = obs(h.plant, h.now);
            h.observe(&o);
            let a = h.mv.poll(h.now, &o);
            let until = match &a { Action::Wait { until_ms, .. } => *until_ms, _ => None };
            h.act(a, true)?;
            if let Some(u) = until {
                h.now = h.now.max(u - 1);
            }
        }
        prop_assert!(h.mv.is_finished(), "not ended: {:?}", h.mv);
    }

    /// A healthy plant and no interference: the move completes at the
    /// target in full steps, the last one landing on it.
    #[test]
    fn a_healthy_move_completes_in_full_steps(
        l in limits(),
        s in 0.0f64..=1.0,
        r in 0.0f64..=1.0,
        t0 in -1_000_000i64..1_000_000,
    ) {
        let start_value = l.clamp(l.min + s * (l.max - l.min));
        let requested = l.clamp(l.min + r * (l.max - l.min));
        prop_assume!((l.clamp(requested) - start_value).abs() > l.tolerance);
        let (mut mv, _) = Move::new("t", l.clone(), start_value, requested, t0).unwrap();
        let writes = run_healthy(&mut mv, t0);
        prop_assert_eq!(mv.outcome(), Some(&Outcome::Completed { final_value: mv.target() }));
        let mut prev = start_value;
        for (i, &(t, w)) in writes.iter().enumerate() {
            let slack = 1e-9 * w.abs().max(prev.abs()).max(1.0);
            let d = (w - prev).abs();
            prop_assert!(d <= l.max_step + slack);
            if i + 1 < writes.len() {
                prop_assert!(d >= l.max_step - slack, "a short step {} → {} before the last", prev, w);
                prop_assert!((w - prev).signum() == (mv.target() - start_value).signum());
                prop_assert!(writes[i + 1].0 - t >= l.min_interval_ms);
            }
            prev = w;
        }
        prop_assert_eq!(prev, mv.target());
    }
}
