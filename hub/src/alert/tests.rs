#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{Rule, RuleKind};

const INTERVAL: i64 = 1000;

fn rule(name: &str, kind: RuleKind) -> Rule {
    Rule {
        name: name.into(),
        site: None,
        node: None,
        kind,
    }
}

fn node(n: &str) -> NodeFacts {
    NodeFacts {
        site: "s".into(),
        node: n.into(),
        ..NodeFacts::default()
    }
}

fn machine(rules: Vec<Rule>) -> Machine {
    Machine::new(rules, Duration::from_millis(INTERVAL as u64), 0)
}

fn gaps(min: u64) -> Rule {
    rule("gaps", RuleKind::SequenceGaps { min_missing: min })
}

#[test]
fn offline_fires_after_its_period_and_resolves_one_interval_after_it_is_heard_again() {
    let mut m = machine(vec![rule(
        "off",
        RuleKind::NodeOffline {
            after: Duration::from_secs(5),
        },
    )]);
    let mut a = node("a");
    a.last_seen_ms = Some(0);
    assert!(m.step(4_000, std::slice::from_ref(&a)).is_empty());
    let t = m.step(5_000, std::slice::from_ref(&a));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].state, AlertState::Firing);
    assert_eq!(t[0].id, "off/s/a/5000");
    assert_eq!(t[0].value, Some(5.0));
    assert!(
        t[0].message.contains("s/a: not heard from for 5s"),
        "{}",
        t[0].message
    );
    // Heard from again: false once, not yet resolved.
    a.last_seen_ms = Some(5_500);
    assert!(m.step(6_000, std::slice::from_ref(&a)).is_empty());
    let t = m.step(7_000, std::slice::from_ref(&a));
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].state, t[0].id.as_str(), t[0].since_ms, t[0].ts_ms),
        (AlertState::Resolved, "off/s/a/5000", 5_000, 7_000)
    );
    // A node the hub never heard from counts from the hub's start.
    let b = node("b");
    let t = m.step(8_000, std::slice::from_ref(&b));
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t[0].message.contains("never heard from"),
        "{}",
        t[0].message
    );
}

#[test]
fn filters_restrict_rules_to_their_site_and_node() {
    let mut r = gaps(1);
    r.node = Some("b".into());
    let mut m = machine(vec![r]);
    let mut a = node("a");
    a.missing = 3;
    let mut b = node("b");
    b.missing = 3;
    let t = m.step(0, &[a, b]);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].node, "b");
}

#[test]
fn backlog_must_rise_over_the_whole_period_and_reach_the_minimum() {
    let mut m = machine(vec![rule(
        "backlog",
        RuleKind::BacklogGrowing {
            period: Duration::from_secs(10),
            min_batches: 100,
        },
    )]);
    let at = |b: u64| {
        let mut n = node("a");
        n.outbox_batches = Some(b);
        n
    };
    // Rising, but not yet observed for a whole period.
    for (t, b) in [(0, 90), (5_000, 95), (9_000, 120)] {
        assert!(m.step(t, &[at(b)]).is_empty(), "{t}");
    }
    // Observed since 0, risen 90 → 130 without a fall: fires.
    let t = m.step(10_000, &[at(130)]);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].value, Some(130.0));
    // A fall within the period: no longer rising; resolves after an interval.
    assert!(m.step(11_000, &[at(125)]).is_empty());
    let t = m.step(12_000, &[at(125)]);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].state, AlertState::Resolved);
    // Below the minimum it never fires, however steep.
    let mut m = machine(vec![rule(
        "backlog",
        RuleKind::BacklogGrowing {
            period: Duration::from_secs(2),
            min_batches: 100,
        },
    )]);
    for (i, b) in [1u64, 10, 20, 40, 80].into_iter().enumerate() {
        assert!(m.step(i as i64 * 1000, &[at(b)]).is_empty());
    }
    assert_eq!(m.step(5_000, &[at(100)]).len(), 1);
}

#[test]
fn kpi_rules_need_n_closed_windows_all_off_target_and_never_count_unknowns() {
    let below = rule(
        "oee",
        RuleKind::KpiBelow {
            kpi: "oee".into(),
            window: "5m".into(),
            target: 0.6,
            windows: 3,
            above: false,
        },
    );
    let mut m = machine(vec![below]);
    assert_eq!(m.kpi_needs(), vec![("oee".into(), "5m".into(), 3)]);
    let with = |v: Vec<Option<f64>>| {
        let mut n = node("a");
        n.kpis.insert(("oee".into(), "5m".into()), v);
        n
    };
    assert!(m.step(0, &[with(vec![Some(0.5), Some(0.5)])]).is_empty());
    assert!(
        m.step(1, &[with(vec![Some(0.5), None, Some(0.5)])])
            .is_empty()
    );
    assert!(
        m.step(2, &[with(vec![Some(0.5), Some(0.7), Some(0.5)])])
            .is_empty()
    );
    let t = m.step(
        3,
        &[with(vec![Some(0.55), Some(0.5), Some(0.4), Some(0.9)])],
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].value, Some(0.55));
    let mut m = machine(vec![rule(
        "energy",
        RuleKind::KpiBelow {
            kpi: "oee".into(),
            window: "5m".into(),
            target: 0.6,
            windows: 1,
            above: true,
        },
    )]);
    assert!(m.step(0, &[with(vec![Some(0.5)])]).is_empty());
    assert_eq!(m.step(1, &[with(vec![Some(0.61)])]).len(), 1);
}

#[test]
fn flood_from_the_health_report_or_the_journal_rate() {
    let mut m = machine(vec![rule(
        "flood",
        RuleKind::AlarmFlood {
            max_per_10min: Some(10),
        },
    )]);
    let mut a = node("a");
    a.activations_10min = 10;
    assert!(m.step(0, std::slice::from_ref(&a)).is_empty());
    a.activations_10min = 11;
    assert_eq!(m.step(1, std::slice::from_ref(&a)).len(), 1);
    let mut m = machine(vec![rule(
        "flood",
        RuleKind::AlarmFlood {
            max_per_10min: None,
        },
    )]);
    a.activations_10min = 1000;
    assert!(m.step(0, std::slice::from_ref(&a)).is_empty());
    a.in_flood = Some(true);
    assert_eq!(m.step(1, std::slice::from_ref(&a)).len(), 1);
}

#[test]
fn restored_alerts_resolve_instead_of_firing_again() {
    let mut m = machine(vec![gaps(1)]);
    m.restore([
        Active {
            id: "gaps/s/a/5".into(),
            rule: "gaps".into(),
            site: "s".into(),
            node: "a".into(),
            since_ms: 5,
            message: String::new(),
            value: None,
        },
        // Of a rule no longer configured: ignored.
        Active {
            id: "old/s/a/5".into(),
            rule: "old".into(),
            site: "s".into(),
            node: "a".into(),
            since_ms: 5,
            message: String::new(),
            value: None,
        },
    ]);
    assert_eq!(m.firing(), 1);
    let mut a = node("a");
    a.missing = 2;
    assert!(m.step(10, std::slice::from_ref(&a)).is_empty());
    a.missing = 0;
    assert!(m.step(20, std::slice::from_ref(&a)).is_empty());
    let t = m.step(20 + INTERVAL, std::slice::from_ref(&a));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].id, "gaps/s/a/5");
    // A node that vanished from the facts resolves too.
    a.missing = 2;
    assert_eq!(m.step(5_000, std::slice::from_ref(&a)).len(), 1);
    assert!(m.step(6_000, &[]).is_empty());
    assert_eq!(m.step(7_000, &[]).len(), 1);
}

/// Reference model of the hysteresis, per key: fire when the condition
/// holds; resolve at the first evaluation where it has been false at every
/// evaluation since one at least an interval ago.
fn checked(steps: &[(i64, bool, bool)]) -> Result<(), TestCaseError> {
    // (gap to the previous evaluation, condition of node a, of node b)
    let mut m = machine(vec![gaps(1)]);
    let mut now = 0i64;
    let mut firing: [Option<String>; 2] = [None, None];
    let mut false_since: [Option<i64>; 2] = [None, None];
    let mut ids = std::collections::BTreeSet::new();
    let mut run = |m: &mut Machine, now: i64, conds: [bool; 2]| -> Result<(), TestCaseError> {
        let facts: Vec<NodeFacts> = ["a", "b"]
            .iter()
            .zip(conds)
            .map(|(n, c)| {
                let mut f = node(n);
                f.missing = if c { 3 } else { 0 };
                f
            })
            .collect();
        let ts = m.step(now, &facts);
        for (i, n) in ["a", "b"].iter().enumerate() {
            let mine: Vec<&Transition> = ts.iter().filter(|t| t.node == *n).collect();
            prop_assert!(mine.len() <= 1, "one transition per key and step: {mine:?}");
            let expect = match (&firing[i], conds[i]) {
                (None, true) => Some(AlertState::Firing),
                (Some(_), false) => {
                    let since = *false_since[i].get_or_insert(now);
                    (now - since >= INTERVAL).then_some(AlertState::Resolved)
                }
                (Some(_), true) => {
                    false_since[i] = None;
                    None
                }
                (None, false) => None,
            };
            prop_assert_eq!(
                mine.first().map(|t| t.state),
                expect,
                "node {} at {}",
                n,
                now
            );
            if let Some(t) = mine.first() {
                match t.state {
                    AlertState::Firing => {
                        prop_assert!(ids.insert(t.id.clone()), "a new id per firing");
                        firing[i] = Some(t.id.clone());
                        false_since[i] = None;
                    }
                    AlertState::Resolved => {
                        // Exactly the firing it ends, and only once.
                        prop_assert_eq!(firing[i].take(), Some(t.id.clone()));
                        false_since[i] = None;
                    }
                }
            }
        }
        Ok(())
    };
    for &(gap, a, b) in steps {
        now += gap;
        run(&mut m, now, [a, b])?;
    }
    // Quiet afterwards: every firing gets its one resolve.
    for _ in 0..3 {
        now += INTERVAL;
        run(&mut m, now, [false, false])?;
    }
    prop_assert!(firing.iter().all(Option::is_none), "{firing:?}");
    prop_assert_eq!(m.firing(), 0);
    Ok(())
}

proptest! {
    /// No flapping: a firing alert survives any false run shorter than an
    /// interval; each firing has exactly one resolve, with its id.
    #[test]
    fn hysteresis_matches_the_model(
        steps in proptest::collection::vec((1i64..2500, any::<bool>(), any::<bool>()), 0..200)
    ) {
        checked(&steps)?;
    }

    /// Conditions that flicker faster than the interval never resolve an
    /// alert: one firing, one resolve at the end.
    #[test]
    fn flicker_within_the_interval_never_resolves(
        pattern in proptest::collection::vec(any::<bool>(), 1..100)
    ) {
        let mut m = machine(vec![gaps(1)]);
        let mut transitions = Vec::new();
        let mut now = 0;
        let mut f = node("a");
        f.missing = 1;
        transitions.extend(m.step(now, std::slice::from_ref(&f)));
        for c in pattern {
            // Every other evaluation at most is false: never a full interval.
            now += INTERVAL / 2 - 1;
            f.missing = u64::from(c);
            transitions.extend(m.step(now, std::slice::from_ref(&f)));
            now += INTERVAL / 2 - 1;
            f.missing = 1;
            transitions.extend(m.step(now, std::slice::from_ref(&f)));
        }
        prop_assert_eq!(transitions.len(), 1, "{:?}", transitions);
        f.missing = 0;
        transitions.extend(m.step(now + 1, std::slice::from_ref(&f)));
        transitions.extend(m.step(now + 1 + INTERVAL, std::slice::from_ref(&f)));
        prop_assert_eq!(transitions.len(), 2);
        prop_assert_eq!(transitions[1].state, AlertState::Resolved);
        prop_assert_eq!(&transitions[1].id, &transitions[0].id);
    }
}

#[test]
fn signatures_are_hmac_sha256_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        webhook::signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let t = Transition {
        id: "r/s/a/1".into(),
        rule: "r".into(),
        kind: "node_offline".into(),
        site: "s".into(),
        node: "a".into(),
        state: AlertState::Firing,
        since_ms: 1,
        ts_ms: 1,
        message: "m".into(),
        value: Some(f64::NAN),
    };
    let j: serde_json::Value = serde_json::from_slice(&webhook::Job::new(&t, "hub").body).unwrap();
    assert_eq!(j["state"], "firing");
    assert_eq!(j["hub"], "hub");
    assert!(j["value"].is_null());
}

#[test]
fn the_queue_is_bounded_and_drops_the_oldest() {
    let q = webhook::Queue::new(2);
    let job = |id: &str| webhook::Job {
        alert_id: id.into(),
        state: AlertState::Firing,
        body: bytes::Bytes::new(),
    };
    assert!(q.push(job("1")).is_none());
    assert!(q.push(job("2")).is_none());
    assert_eq!(q.push(job("3")).unwrap().alert_id, "1");
    assert_eq!((q.len(), q.dropped()), (2, 1));
}

#[test]
fn retries_back_off_doubling_up_to_the_cap() {
    let w = crate::config::Webhook {
        url: "http://127.0.0.1:1/".into(),
        secret: vec![0; 16],
        timeout: Duration::from_secs(1),
        max_attempts: 10,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(5),
        deadline: Duration::from_secs(3600),
        queue: 10,
    };
    let at: Vec<u64> = (1..=6)
        .map(|n| webhook::schedule(&w, n).as_secs())
        .collect();
    assert_eq!(at, vec![0, 1, 3, 7, 12, 17]);
}
