//! Each rule of the approval queue by hand, then a property over arbitrary
//! offers and decisions by arbitrary roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

const T: &str = "TIC-101.SP";

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

fn queue(cap: usize) -> ApprovalQueue {
    ApprovalQueue::new(BTreeMap::from([(T.to_string(), lim())]), cap).unwrap()
}

fn proposal(id: &str, tag: &str, proposed: f64, expires_ms: i64) -> Proposal {
    Proposal {
        id: id.into(),
        tag: tag.into(),
        unit: "°C".into(),
        hub_value: 360.0,
        proposed,
        benefit: 12.5,
        benefit_unit: "kg/h fuel".into(),
        rationale: "lower excess air".into(),
        confidence: 0.8,
        confidence_text: "fit R² 0.93 over 30 days".into(),
        expires_ms,
        received_ms: 0,
    }
}

fn pending(q: &mut ApprovalQueue, id: &str, proposed: f64) {
    q.offer(proposal(id, T, proposed, 100_000), 0).unwrap();
}

#[test]
fn offers_only_for_writable_tags_unexpired_valid_and_new() {
    let mut q = queue(10);
    let e = q.offer(proposal("a", "FIC-7.SP", 1.0, 100), 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("not a writable setpoint on this edge"),
        "{e}"
    );
    assert!(matches!(
        q.offer(proposal("a", T, 370.0, 100), 100),
        Err(QueueError::Expired { .. })
    ));
    for bad in [
        Proposal {
            proposed: f64::NAN,
            ..proposal("a", T, 0.0, 100)
        },
        Proposal {
            confidence: 1.5,
            ..proposal("a", T, 370.0, 100)
        },
        Proposal {
            id: " ".into(),
            ..proposal("a", T, 370.0, 100)
        },
        Proposal {
            rationale: "x".repeat(MAX_TEXT_CHARS + 1),
            ..proposal("a", T, 370.0, 100)
        },
    ] {
        assert!(q.offer(bad.clone(), 0).is_err(), "{bad:?}");
    }
    assert!(q.list().is_empty());
    let ev = q.offer(proposal("a", T, 370.0, 100), 99).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].action(), ev[0].actor(), ev[0].id()),
        ("setpoint_proposed", "hub", "a")
    );
    assert_eq!(
        q.offer(proposal("a", T, 371.0, 200), 99),
        Err(QueueError::Duplicate { id: "a".into() })
    );
}

#[test]
fn a_proposal_outside_the_limits_shows_what_would_be_written() {
    let mut q = queue(10);
    let ev = q.offer(proposal("a", T, 400.0, 100), 0).unwrap();
    assert_eq!(
        ev[0].to_string(),
        format!("{T}: proposed 400, clamped to 385 (edge limit)")
    );
    let e = q.get("a").unwrap();
    assert_eq!(
        (e.to_write, e.clamped.map(|c| c.from)),
        (385.0, Some(400.0))
    );
    let a = q
        .approve("a", "olga", Role::Operator, None, None, 1)
        .unwrap();
    assert_eq!(a.value, 385.0);
    // New limits move what a pending proposal would write.
    pending(&mut q, "b", 400.0);
    q.set_limits(BTreeMap::from([(
        T.to_string(),
        Limits {
            max: 390.0,
            ..lim()
        },
    )]))
    .unwrap();
    assert_eq!(q.get("b").unwrap().to_write, 390.0);
    assert!(
        q.set_limits(BTreeMap::from([(
            T.to_string(),
            Limits {
                min: 500.0,
                ..lim()
            }
        )]))
        .is_err()
    );
}

#[test]
fn a_newer_offer_supersedes_the_pending_one() {
    let mut q = queue(10);
    pending(&mut q, "a", 370.0);
    let ev = q.offer(proposal("b", T, 372.0, 100_000), 5).unwrap();
    assert_eq!(
        ev[0],
        Event::Superseded {
            id: "a".into(),
            by: "b".into(),
            at_ms: 5
        }
    );
    assert_eq!(ev[1].action(), "setpoint_proposed");
    assert_eq!(
        q.get("a").unwrap().status,
        Status::Superseded { by: "b".into() }
    );
    let live: Vec<_> = q
        .list()
        .into_iter()
        .filter(|e| e.status == Status::Pending)
        .map(|e| e.proposal.id.clone())
        .collect();
    assert_eq!(live, vec!["b".to_string()]);
    assert!(matches!(
        q.approve("a", "olga", Role::Operator, None, None, 6),
        Err(QueueError::WrongState {
            status: "superseded",
            ..
        })
    ));
}

#[test]
fn roles_decide_who_approves_and_who_edits() {
    let mut q = queue(10);
    pending(&mut q, "a", 370.0);
    assert!(matches!(
        q.approve("a", "vic", Role::Viewer, None, None, 1),
        Err(QueueError::Forbidden {
            role: Role::Viewer,
            ..
        })
    ));
    assert!(matches!(
        q.approve("a", "olga", Role::Operator, Some(368.0), None, 1),
        Err(QueueError::Forbidden {
            needed: Role::Engineer,
            ..
        })
    ));
    let e = q
        .approve("a", "eve", Role::Engineer, Some(390.0), None, 1)
        .unwrap_err();
    assert!(
        matches!(e, QueueError::OutsideLimits { value: 390.0, .. }),
        "{e}"
    );
    assert!(
        q.approve("a", "eve", Role::Engineer, Some(f64::NAN), None, 1)
            .is_err()
    );
    assert_eq!(q.get("a").unwrap().status, Status::Pending);
    // An operator may send the value as proposed.
    let a = q
        .approve("a", "olga", Role::Operator, Some(370.0), Some("ok"), 2)
        .unwrap();
    assert_eq!(a.value, 370.0);
    assert_eq!(a.events.len(), 1);
    assert_eq!(a.events[0].actor(), "olga");
    q.finish("a", Outcome::Completed { final_value: 370.0 }, 3)
        .unwrap();
    // An engineer edits within the limits: Edited, then Approved.
    pending(&mut q, "b", 370.0);
    let a = q
        .approve("b", "eve", Role::Engineer, Some(366.5), None, 4)
        .unwrap();
    assert_eq!(a.value, 366.5);
    let actions: Vec<&str> = a.events.iter().map(Event::action).collect();
    assert_eq!(actions, vec!["setpoint_edited", "setpoint_approved"]);
    let e = q.get("b").unwrap();
    assert_eq!(
        (e.approved_value, e.decision.as_ref().map(|d| d.role)),
        (Some(366.5), Some(Role::Engineer))
    );
}

#[test]
fn an_expired_proposal_cannot_be_approved_and_tick_expires_it() {
    let mut q = queue(10);
    q.offer(proposal("a", T, 370.0, 1_000), 0).unwrap();
    assert_eq!(q.next_expiry(), Some(1_000));
    assert!(q.tick(999).is_empty());
    assert_eq!(
        q.approve("a", "olga", Role::Admin, None, None, 1_000),
        Err(QueueError::Expired {
            id: "a".into(),
            expires_ms: 1_000
        })
    );
    assert_eq!(q.get("a").unwrap().status, Status::Pending);
    let ev = q.tick(1_000);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action(), "setpoint_expired");
    assert_eq!(q.get("a").unwrap().status, Status::Expired);
    assert!(matches!(
        q.approve("a", "olga", Role::Admin, None, None, 1_001),
        Err(QueueError::WrongState {
            status: "expired",
            ..
        })
    ));
    // An approved proposal does not expire.
    q.offer(proposal("b", T, 370.0, 2_000), 1_500).unwrap();
    q.approve("b", "olga", Role::Operator, None, None, 1_600)
        .unwrap();
    assert!(q.tick(5_000).is_empty());
    assert_eq!(q.get("b").unwrap().status, Status::Approved);
}

#[test]
fn rejection_needs_an_operator_and_a_comment_and_comments_are_bounded() {
    let mut q = queue(10);
    pending(&mut q, "a", 370.0);
    assert_eq!(
        q.reject("a", "olga", Role::Operator, "  ", 1),
        Err(QueueError::CommentRequired)
    );
    assert!(matches!(
        q.reject("a", "vic", Role::Viewer, "no", 1),
        Err(QueueError::Forbidden { .. })
    ));
    assert_eq!(
        q.reject("a", "", Role::Operator, "no", 1),
        Err(QueueError::EmptyUser)
    );
    let long = "x".repeat(MAX_COMMENT_CHARS + 1);
    assert!(matches!(
        q.reject("a", "olga", Role::Operator, &long, 1),
        Err(QueueError::TooLong {
            what: "comment",
            ..
        })
    ));
    assert!(matches!(
        q.approve("a", "olga", Role::Operator, None, Some(&long), 1),
        Err(QueueError::TooLong { .. })
    ));
    let ev = q
        .reject(
            "a",
            "olga",
            Role::Operator,
            &"é".repeat(MAX_COMMENT_CHARS),
            2,
        )
        .unwrap();
    assert_eq!(
        (ev[0].action(), ev[0].actor()),
        ("setpoint_rejected", "olga")
    );
    let e = q.get("a").unwrap();
    assert_eq!(e.status, Status::Rejected);
    assert_eq!(e.decision.as_ref().map(|d| d.by.as_str()), Some("olga"));
}

#[test]
fn one_move_per_tag_and_the_execution_state() {
    let mut q = queue(10);
    pending(&mut q, "a", 370.0);
    q.approve("a", "olga", Role::Operator, None, None, 1)
        .unwrap();
    assert_eq!(q.running(T).map(|e| e.proposal.id.as_str()), Some("a"));
    pending(&mut q, "b", 372.0);
    assert_eq!(
        q.approve("b", "olga", Role::Operator, None, None, 2),
        Err(QueueError::TagBusy {
            tag: T.into(),
            running: "a".into()
        })
    );
    assert!(matches!(
        q.started("b", 2),
        Err(QueueError::WrongState {
            status: "pending",
            ..
        })
    ));
    assert_eq!(
        q.started("zz", 2),
        Err(QueueError::NotFound { id: "zz".into() })
    );
    assert_eq!(q.started("a", 3).unwrap()[0].action(), "setpoint_started");
    assert_eq!(q.get("a").unwrap().status, Status::Executing);
    let outcome = Outcome::RolledBack {
        value: 360.0,
        reason: "read-back mismatch".into(),
    };
    let ev = q.finish("a", outcome.clone(), 4).unwrap();
    assert_eq!(ev[0].to_string(), format!("move {outcome}"));
    assert_eq!(q.get("a").unwrap().status, Status::Ended { outcome });
    assert!(
        q.finish("a", Outcome::Completed { final_value: 1.0 }, 5)
            .is_err()
    );
    assert!(q.running(T).is_none());
    assert_eq!(
        q.approve("b", "olga", Role::Operator, None, None, 6)
            .unwrap()
            .value,
        372.0
    );
}

#[test]
fn the_history_is_bounded_newest_first() {
    let mut q = queue(3);
    for i in 0..5 {
        pending(&mut q, &format!("p{i}"), 370.0);
        q.reject(&format!("p{i}"), "olga", Role::Operator, "no", i)
            .unwrap();
    }
    let ids: Vec<&str> = q.list().iter().map(|e| e.proposal.id.as_str()).collect();
    assert_eq!(ids, vec!["p4", "p3", "p2"]);
    assert!(q.get("p0").is_none());
}

// ---- property ----

const TAGS: [&str; 3] = ["A", "B", "C"]; // C has no limits here

fn qlimits() -> BTreeMap<String, Limits> {
    BTreeMap::from([
        ("A".to_string(), lim()),
        (
            "B".to_string(),
            Limits {
                min: -5.0,
                max: 5.0,
                max_step: 1.0,
                tolerance: 0.01,
                ..lim()
            },
        ),
    ])
}

#[derive(Clone, Debug)]
enum Op {
    Offer {
        tag: usize,
        proposed: f64,
        expires_in: i64,
    },
    Approve {
        pick: usize,
        role: usize,
        edit: Option<f64>,
    },
    Reject {
        pick: usize,
        role: usize,
        comment: bool,
    },
    Tick,
    Advance(i64),
    Start(usize),
    Finish(usize),
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -10.0f64..400.0,
        1 => any::<f64>(),
        1 => prop_oneof![Just(385.0), Just(300.0), Just(5.0), Just(-5.0), Just(385.0 + 1e-9)],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..TAGS.len(), value(), -1_000i64..30_000)
            .prop_map(|(tag, proposed, expires_in)| Op::Offer { tag, proposed, expires_in }),
        5 => (any::<usize>(), 0..Role::ALL.len(), prop::option::of(value()))
            .prop_map(|(pick, role, edit)| Op::Approve { pick, role, edit }),
        2 => (any::<usize>(), 0..Role::ALL.len(), any::<bool>())
            .prop_map(|(pick, role, comment)| Op::Reject { pick, role, comment }),
        2 => Just(Op::Tick),
        3 => (0i64..10_000).prop_map(Op::Advance),
        2 => any::<usize>().prop_map(Op::Start),
        2 => any::<usize>().prop_map(Op::Finish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// No sequence approves a value outside the tag's limits, lets a viewer
    /// approve or an operator edit, approves after expiry or while the tag
    /// has a move; a refusal changes nothing; at most one pending proposal
    /// and one move per tag; the history stays bounded.
    #[test]
    fn approvals_stay_inside_the_rules(ops in prop::collection::vec(op(), 1..120)) {
        let cap = 8;
        let mut q = ApprovalQueue::new(qlimits(), cap).unwrap();
        let limits = qlimits();
        let mut now = 0i64;
        // id → (tag, proposed, expires_ms), every id offered so far.
        let mut offered: Vec<(String, String, f64, i64)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            let before: Vec<Entry> = q.list().into_iter().cloned().collect();
            let pick = |p: usize| offered.get(p % offered.len().max(1)).cloned();
            let result: Result<Vec<Event>, QueueError> = match op {
                Op::Offer { tag, proposed, expires_in } => {
                    let id = format!("r{n}/{}", TAGS[tag]);
                    let r = q.offer(proposal(&id, TAGS[tag], proposed, now + expires_in), now);
                    if r.is_ok() {
                        prop_assert!(limits.contains_key(TAGS[tag]) && expires_in > 0 && proposed.is_finite());
                        offered.push((id, TAGS[tag].to_string(), proposed, now + expires_in));
                    }
                    r
                }
                Op::Approve { pick: p, role, edit } => {
                    let Some((id, tag, proposed, expires)) = pick(p) else { continue };
                    let role = Role::ALL[role];
                    let busy = q.running(&tag).is_some();
                    let was_pending = before.iter().any(|e| e.proposal.id == id && e.status == Status::Pending);
                    let r = q.approve(&id, "u", role, edit, None, now);
                    if let Ok(a) = &r {
                        let l = &limits[&tag];
                        prop_assert!(role.allows(Role::Operator), "{:?} approved", role);
                        prop_assert!(l.contains(a.value), "{} approved outside {:?}", a.value, l);
                        prop_assert!(now < expires, "approved at {} after expiry {}", now, expires);
                        prop_assert!(!busy && was_pending);
                        if a.value != l.clamp(proposed) {
                            prop_assert!(role.allows(Role::Engineer), "{:?} edited", role);
                            prop_assert_eq!(edit, Some(a.value));
                        }
                        prop_assert!(matches!(a.events.last(), Some(Event::Approved { value, .. }) if *value == a.value), "{:?}", a.events);
                    }
                    r.map(|a| a.events)
                }
                Op::Reject { pick: p, role, comment } => {
                    let Some((id, ..)) = pick(p) else { continue };
                    let role = Role::ALL[role];
                    let r = q.reject(&id, "u", role, if comment { "because" } else { "" }, now);
                    if r.is_ok() {
                        prop_assert!(role.allows(Role::Operator) && comment);
                    }
                    r
                }
                Op::Tick => {
                    let ev = q.tick(now);
                    for e in &ev {
                        let Event::Expired { id, .. } = e else { panic!("{e:?}") };
                        let o = offered.iter().find(|o| &o.0 == id).unwrap();
                        prop_assert!(now >= o.3);
                    }
                    Ok(ev)
                }
                Op::Advance(dt) => {
                    now += dt;
                    continue;
                }
                Op::Start(p) => {
                    let Some((id, ..)) = pick(p) else { continue };
                    q.started(&id, now)
                }
                Op::Finish(p) => {
                    let Some((id, ..)) = pick(p) else { continue };
                    q.finish(&id, Outcome::Completed { final_value: 0.0 }, now)
                }
            };
            let after: Vec<Entry> = q.list().into_iter().cloned().collect();
            match result {
                Err(e) => prop_assert_eq!(&before, &after, "{} changed the queue", e),
                Ok(ev) => prop_assert_eq!(ev.is_empty(), before == after),
            }
            for tag in TAGS {
                let of = |f: fn(&Status) -> bool| after.iter().filter(|e| e.proposal.tag == tag && f(&e.status)).count();
                prop_assert!(of(|s| *s == Status::Pending) <= 1);
                prop_assert!(of(|s| matches!(s, Status::Approved | Status::Executing)) <= 1);
            }
            let finished = after.iter().filter(|e| !matches!(e.status, Status::Pending | Status::Approved | Status::Executing)).count();
            prop_assert!(finished <= cap);
        }
    }
}
