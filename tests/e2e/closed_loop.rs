//! The closed loop end to end, against the simulated plant: a hub's signed
//! recommendation → the edge's checks and approval queue → an operator's
//! decision on the HMI API → the ramped, read-back-verified PLC write, and
//! the audit trail back to the hub's run.
//!
//! Every test checks the plant's own setpoint register (the PLC's view, via
//! the plant handle), not only what the edge reports. Crafted
//! recommendations (expired, forged, replayed, out of limits) are published
//! with `mosquitto_pub` on an external mosquitto, which lets any client
//! publish on the node's `rec` topic; the good path goes through the hub's
//! own optimizer and key. The edge's write limits are test-sized (steps of
//! [`MAX_STEP`], one write per [`MIN_INTERVAL`]), so each move takes 2–3
//! steps.

mod rig;

use std::time::{Duration, Instant};

use apos::plant::UnitState;
use protocol::recommend::SigningKey;
use serde_json::{Value as J, json};

use rig::{
    Broker, HubRun, MAX_STEP, MIN_INTERVAL, PROBE, PROBLEM, Recorder, Rig, Session, TAG, TOLERANCE,
    now_ms, recommendation, seal, until,
};

/// How much earlier than `MIN_INTERVAL` two observed writes may land: the
/// driver sends a write between reads, so its latency varies a little.
const SLACK: Duration = Duration::from_millis(300);

async fn entry(s: &Session, id: &str) -> Option<J> {
    let v = s.json("/api/v1/setpoints").await;
    v["entries"]
        .as_array()?
        .iter()
        .find(|e| e["proposal"]["id"] == id)
        .cloned()
}

async fn in_state(s: &Session, id: &str, state: &str, timeout: Duration) -> J {
    until(&format!("proposal {id} {state}"), timeout, || async move {
        entry(s, id).await.filter(|e| e["status"]["state"] == state)
    })
    .await
}

async fn approve(s: &Session, id: &str, body: J) -> rig::Resp {
    s.post(
        &format!("/api/v1/setpoints/{id}/approve"),
        &body.to_string(),
    )
    .await
}

/// The edge's audit entries whose target starts with `prefix`, oldest first.
async fn audit(admin: &Session, prefix: &str) -> Vec<J> {
    let v = admin.json("/api/v1/audit?limit=1000").await;
    let mut out: Vec<J> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"].as_str().is_some_and(|t| t.starts_with(prefix)))
        .cloned()
        .collect();
    out.reverse();
    out
}

fn actions(trail: &[J]) -> Vec<&str> {
    trail.iter().filter_map(|e| e["action"].as_str()).collect()
}

/// The setpoint move's audit trail as it must be: proposed, approved
/// (`edited` first when an engineer changed the value), started, one write
/// per step, verified, finished.
fn expected_trail(edited: bool, steps: usize) -> Vec<&'static str> {
    let mut v = vec!["setpoint_proposed"];
    if edited {
        v.push("setpoint_edited");
    }
    v.extend(["setpoint_approved", "setpoint_started"]);
    v.extend(std::iter::repeat_n("setpoint_write", steps));
    v.extend(["setpoint_verified", "setpoint_finished"]);
    v
}

fn steps_between(start: f64, target: f64) -> usize {
    (((target - start).abs() - TOLERANCE) / MAX_STEP).ceil() as usize
}

fn show(seen: &[(Instant, f64)]) -> String {
    let t0 = seen[0].0;
    seen.iter()
        .map(|(t, v)| format!("{v} at +{} ms", t.duration_since(t0).as_millis()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The move as the PLC saw it: from `start` straight to `target`, never a
/// change above `MAX_STEP` nor away from the target, changes at least
/// `MIN_INTERVAL` apart (less the driver's jitter), ending on the target.
fn check_ramp(seen: &[(Instant, f64)], start: f64, target: f64) {
    let all = show(seen);
    assert_eq!(seen[0].1, start, "the register before the move: {all}");
    assert_eq!(
        seen.len() - 1,
        steps_between(start, target),
        "one register change per step: {all}"
    );
    for w in seen.windows(2) {
        let d = w[1].1 - w[0].1;
        assert!(
            d.abs() <= MAX_STEP + TOLERANCE,
            "a change of {d} is above max_step {MAX_STEP}: {all}"
        );
        assert_eq!(
            d.signum(),
            (target - start).signum(),
            "every change goes towards the target: {all}"
        );
    }
    for w in seen[1..].windows(2) {
        let gap = w[1].0.duration_since(w[0].0);
        assert!(
            gap + SLACK >= MIN_INTERVAL,
            "writes {gap:?} apart, min_interval {MIN_INTERVAL:?}: {all}"
        );
    }
    let last = seen.last().unwrap().1;
    assert!(
        (last - target).abs() <= TOLERANCE,
        "ends at {last}, not {target}: {all}"
    );
}

/// The edge's write entries at least `MIN_INTERVAL` apart (less jitter).
fn check_write_times(trail: &[J]) {
    let ts: Vec<i64> = trail
        .iter()
        .filter(|e| e["action"] == "setpoint_write")
        .map(|e| e["ts_ms"].as_i64().unwrap())
        .collect();
    for w in ts.windows(2) {
        assert!(
            (w[1] - w[0]) as u128 + SLACK.as_millis() >= MIN_INTERVAL.as_millis(),
            "audited writes {} ms apart: {trail:#?}",
            w[1] - w[0]
        );
    }
}

/// A test key the edge trusts, and a rig with the edge's `max`, subscribed.
async fn crafted_rig(max: f64) -> Option<(Rig, SigningKey, Session)> {
    let (_, key) = SigningKey::generate().unwrap();
    let rig = Rig::start(&key.public().to_text(), max).await?;
    let viewer = rig.session("viewer").await;
    rig.probe(&key, 1, &viewer).await;
    Some((rig, key, viewer))
}

/// Publish a recommendation of `proposed` as `id` (sequence `seq`) and
/// wait until it is pending on the HMI; its proposal id.
async fn propose(rig: &Rig, key: &SigningKey, seq: u64, id: &str, proposed: f64) -> String {
    let current = rig.sp();
    let (topic, bytes) = seal(&recommendation(seq, id, current, proposed), key);
    rig.broker.publish(&topic, &bytes).await;
    let pid = format!("{id}:{TAG}");
    let viewer = rig.session("viewer").await;
    in_state(&viewer, &pid, "pending", Duration::from_secs(20)).await;
    pid
}

/// The good path through the hub: its optimizer's recommendation is
/// queued, an operator approves it, the plant's register ramps to the
/// target in verified steps, the edge's audit holds every step, and the
/// hub's run becomes `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_recommendation_is_approved_and_ramped_into_the_plant() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()).await else {
        return;
    };
    let key_file = dir.path().join("recommend.key");
    let hub_key = hub::optimize::load_or_create_key(&key_file)
        .unwrap()
        .public()
        .to_text();
    let hub = HubRun::start(dir.path(), &broker, &key_file, 12.0).await;
    let rig = Rig::start_with(dir, broker, &hub_key, 385.0).await;
    let analyst = hub.analyst().await;
    let analyst = &analyst;
    // A run fails until the hub holds the node's windows.
    let run = until(
        "a run the hub sends",
        Duration::from_secs(60),
        || async move {
            let r = analyst
                .post(&format!("/api/v1/optimization/{PROBLEM}/run"), "")
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            let run = r.json();
            if run["status"] == "sent" {
                return Some(run);
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            None
        },
    )
    .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let sp = run["result"]["recommendation"]["setpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tag"] == TAG)
        .unwrap_or_else(|| panic!("no {TAG} in {run}"))
        .clone();
    let current = sp["current"].as_f64().unwrap();
    let target = sp["proposed"].as_f64().unwrap();
    assert!(
        (current - rig.start_value).abs() < 1e-6,
        "the hub starts from the plant's setpoint: {sp}"
    );
    assert!(
        target - current > 2.0 * MAX_STEP,
        "the test needs a move of three steps: {sp}"
    );

    let id = format!("{run_id}:{TAG}");
    let operator = rig.session("operator").await;
    let e = in_state(&operator, &id, "pending", Duration::from_secs(30)).await;
    assert_eq!(e["proposal"]["proposed"].as_f64(), Some(target), "{e}");
    assert_eq!(e["to_write"].as_f64(), Some(target), "within limits: {e}");
    assert!(e["clamped"].is_null(), "{e}");
    assert_eq!(rig.sp(), rig.start_value, "nothing written before approval");

    let rec = Recorder::start(&rig.plant);
    let r = approve(&operator, &id, json!({"comment": "closed-loop test"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&operator, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    assert_eq!(done["status"]["outcome"]["kind"], "completed", "{done}");
    check_ramp(&seen, rig.start_value, target);
    assert!((rig.sp() - target).abs() <= TOLERANCE);

    let admin = rig.session("admin").await;
    let trail = audit(&admin, &id).await;
    assert_eq!(
        actions(&trail),
        expected_trail(false, steps_between(rig.start_value, target)),
        "{trail:#?}"
    );
    check_write_times(&trail);
    assert_eq!(trail[1]["actor"], "operator");
    let received = audit(&admin, &run_id).await;
    assert!(
        actions(&received).contains(&"recommendation_received"),
        "{received:#?}"
    );

    // The edge's audit reaches the hub through the outbox; the hub maps it
    // onto its run.
    let path = format!("/api/v1/optimization/runs/{run_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let hub_run = loop {
        let v = analyst.json(&path).await;
        if v["status"] == "completed" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the hub's run is not completed after 60 s: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(hub_run["applied_ms"].as_i64().is_some(), "{hub_run}");
    hub.stop().await;
    rig.stop().await;
}

/// A proposal above the edge's `max` is shown clamped, and approving it
/// writes no more than the limit (which is below the PLC's own range).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_beyond_the_edges_limit_is_clamped_and_written_no_further() {
    let edge_max = 370.0;
    let Some((rig, key, _)) = crafted_rig(edge_max).await else {
        return;
    };
    let operator = rig.session("operator").await;
    let proposed = 384.0; // inside the PLC's range, outside the edge's
    let id = propose(&rig, &key, 2, "clamp", proposed).await;
    let e = entry(&operator, &id).await.unwrap();
    assert_eq!(
        e["clamped"],
        json!({"from": proposed, "to": edge_max}),
        "{e}"
    );
    assert_eq!(e["to_write"].as_f64(), Some(edge_max), "{e}");

    let rec = Recorder::start(&rig.plant);
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&operator, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    assert_eq!(done["status"]["outcome"]["kind"], "completed", "{done}");
    assert_eq!(done["approved_value"].as_f64(), Some(edge_max), "{done}");
    check_ramp(&seen, rig.start_value, edge_max);
    let highest = seen.iter().map(|s| s.1).fold(f64::MIN, f64::max);
    assert!(
        highest <= edge_max + TOLERANCE,
        "wrote {highest}: {}",
        show(&seen)
    );
    let admin = rig.session("admin").await;
    let trail = audit(&admin, &id).await;
    assert!(
        trail[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("clamped to {edge_max}")),
        "{trail:#?}"
    );
    rig.stop().await;
}

/// The edge's refusals, newest first, but for [`Rig::probe`]'s.
async fn refusals(viewer: &Session) -> Vec<J> {
    let v = viewer.json("/api/v1/setpoints").await;
    v["refused"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_str().is_none_or(|id| !id.starts_with(PROBE)))
        .cloned()
        .collect()
}

/// The newest refusal, once there are more than `before`.
async fn next_refusal(viewer: &Session, before: usize) -> J {
    until("a refusal", Duration::from_secs(20), || async move {
        let r = refusals(viewer).await;
        (r.len() > before).then(|| r[0].clone())
    })
    .await
}

async fn refused_count(viewer: &Session) -> usize {
    refusals(viewer).await.len()
}

/// Expired, signed with another key, an earlier recommendation's bytes
/// again (a replay), a lower sequence number: each refused with its reason,
/// none queued. The same bytes as the last one accepted (a QoS 1
/// redelivery) are ignored: neither queued twice nor refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_replayed_and_older_recommendations_are_refused() {
    let (_, key) = SigningKey::generate().unwrap();
    let Some(rig) = Rig::start(&key.public().to_text(), 385.0).await else {
        return;
    };
    let viewer = rig.session("viewer").await;
    let start = rig.start_value;
    // The probe is a valid signature on an expired recommendation.
    let r = rig.probe(&key, 5, &viewer).await;
    assert!(r["reason"].as_str().unwrap().contains("expired"), "{r}");
    assert!(r["id"].as_str().unwrap().starts_with(PROBE), "{r}");
    let v = viewer.json("/api/v1/setpoints").await;
    assert_eq!(v["entries"], json!([]), "an expired one is not queued: {v}");
    assert_eq!(v["last_seq"], 0, "nor its sequence number taken: {v}");

    let (_, other) = SigningKey::generate().unwrap();
    let (topic, forged) = seal(&recommendation(6, "forged", start, start + 5.0), &other);
    let n = refused_count(&viewer).await;
    rig.broker.publish(&topic, &forged).await;
    let r = next_refusal(&viewer, n).await;
    assert!(r["reason"].as_str().unwrap().contains("signature"), "{r}");

    let (_, first) = seal(&recommendation(7, "first", start, start + 5.0), &key);
    rig.broker.publish(&topic, &first).await;
    in_state(
        &viewer,
        &format!("first:{TAG}"),
        "pending",
        Duration::from_secs(20),
    )
    .await;
    let (_, second) = seal(&recommendation(8, "second", start, start + 4.0), &key);
    rig.broker.publish(&topic, &second).await;
    in_state(
        &viewer,
        &format!("second:{TAG}"),
        "pending",
        Duration::from_secs(20),
    )
    .await;

    let n = refused_count(&viewer).await;
    rig.broker.publish(&topic, &first).await;
    let r = next_refusal(&viewer, n).await;
    assert_eq!(r["id"], "first", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("sequence 7 is not above 8"),
        "a replay: {r}"
    );

    // A redelivery of the last one, then an older one: the older one's
    // refusal comes next (messages are taken in order), none for the
    // redelivery.
    rig.broker.publish(&topic, &second).await;
    let (_, older) = seal(&recommendation(6, "older", start, start + 10.0), &key);
    rig.broker.publish(&topic, &older).await;
    let r = next_refusal(&viewer, n + 1).await;
    assert_eq!(r["id"], "older", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("sequence 6 is not above 8"),
        "{r}"
    );
    assert_eq!(refused_count(&viewer).await, n + 2);

    let v = viewer.json("/api/v1/setpoints").await;
    let states: Vec<(&str, &str)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["proposal"]["id"].as_str()?,
                e["status"]["state"].as_str()?,
            ))
        })
        .collect();
    let (first_id, second_id) = (format!("first:{TAG}"), format!("second:{TAG}"));
    assert_eq!(
        states,
        vec![
            (second_id.as_str(), "pending"),
            (first_id.as_str(), "superseded")
        ],
        "{v}"
    );
    assert_eq!(v["last_seq"], 8, "{v}");
    let admin = rig.session("admin").await;
    let trail = audit(&admin, "").await;
    let count = |a: &str| trail.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("recommendation_received"), 2, "{trail:#?}");
    assert!(count("recommendation_refused") >= 4, "{trail:#?}");
    assert_eq!(rig.sp(), start, "nothing was written");
    rig.stop().await;
}

/// Operators approve as proposed, engineers may edit within the limits,
/// viewers may not decide, a rejection needs a comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_approve_engineers_edit_viewers_cannot_and_rejections_need_a_comment() {
    let Some((rig, key, viewer)) = crafted_rig(385.0).await else {
        return;
    };
    let (operator, engineer) = (rig.session("operator").await, rig.session("engineer").await);
    let start = rig.start_value;
    let id = propose(&rig, &key, 2, "decide", start + 10.0).await;
    let reject = format!("/api/v1/setpoints/{id}/reject");

    let r = approve(&viewer, &id, json!({})).await;
    assert_eq!(r.status, 403, "a viewer approves: {}", r.body);
    let edited = start + 2.0;
    let r = approve(&operator, &id, json!({"value": edited})).await;
    assert_eq!(r.status, 403, "an operator edits: {}", r.body);
    assert!(r.body.contains("engineer"), "{}", r.body);
    let r = approve(&engineer, &id, json!({"value": 390.0})).await;
    assert_eq!(r.status, 409, "an edit outside the limits: {}", r.body);
    for body in ["", r#"{"comment": "   "}"#] {
        let r = operator.post(&reject, body).await;
        assert_eq!(
            r.status, 400,
            "a rejection without comment {body:?}: {}",
            r.body
        );
    }
    let e = entry(&viewer, &id).await.unwrap();
    assert_eq!(e["status"]["state"], "pending", "nothing decided: {e}");
    assert_eq!(rig.sp(), start);

    let rec = Recorder::start(&rig.plant);
    let r = approve(
        &engineer,
        &id,
        json!({"value": edited, "comment": "half way"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&viewer, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    assert_eq!(done["status"]["outcome"]["kind"], "completed", "{done}");
    assert_eq!(done["approved_value"].as_f64(), Some(edited), "{done}");
    assert_eq!(done["decision"]["by"], "engineer", "{done}");
    check_ramp(&seen, start, edited);
    let admin = rig.session("admin").await;
    let trail = audit(&admin, &id).await;
    assert_eq!(actions(&trail), expected_trail(true, 1), "{trail:#?}");
    assert_eq!(trail[1]["actor"], "engineer", "{trail:#?}");

    let id2 = propose(&rig, &key, 3, "decide-2", edited + 5.0).await;
    let reject2 = format!("/api/v1/setpoints/{id2}/reject");
    let r = viewer.post(&reject2, r#"{"comment": "no"}"#).await;
    assert_eq!(r.status, 403, "a viewer rejects: {}", r.body);
    let why = "not during the crude switch";
    let r = operator
        .post(&reject2, &json!({"comment": why}).to_string())
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let e = in_state(&viewer, &id2, "rejected", Duration::from_secs(10)).await;
    assert_eq!(e["decision"]["comment"], why, "{e}");
    let r = approve(&operator, &id2, json!({})).await;
    assert_eq!(
        r.status, 409,
        "a rejected proposal stays rejected: {}",
        r.body
    );
    tokio::time::sleep(MIN_INTERVAL).await;
    assert_eq!(rig.sp(), edited, "a rejection writes nothing");
    let trail = audit(&admin, &id2).await;
    assert_eq!(
        actions(&trail),
        vec!["setpoint_proposed", "setpoint_rejected"],
        "{trail:#?}"
    );
    rig.stop().await;
}

/// With the unit stopped (`unit.state` ≠ 2, `unit.running` off) an approved
/// move holds and the register does not change; once the unit runs again
/// the move goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_unit_holds_an_approved_move_until_it_runs_again() {
    let Some((rig, key, viewer)) = crafted_rig(385.0).await else {
        return;
    };
    let operator = rig.session("operator").await;
    let start = rig.start_value;
    let target = start + 10.0;
    let id = propose(&rig, &key, 2, "interlock", target).await;
    rig.plant.with_plant(|p| p.set_run(false)).unwrap();
    let rig_ref = &rig;
    until(
        "the edge sees the unit stopped",
        Duration::from_secs(20),
        || async move {
            let stopped = rig_ref.live("unit.state").await == Some(0.0)
                && rig_ref.live("unit.running").await == Some(0.0);
            stopped.then_some(())
        },
    )
    .await;

    let rec = Recorder::start(&rig.plant);
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let viewer_ref = &viewer;
    let id_ref = id.as_str();
    let held = until("the move holds", Duration::from_secs(10), || async move {
        entry(viewer_ref, id_ref).await.filter(|e| {
            e["move"]["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("holding"))
        })
    })
    .await;
    let why = held["move"]["waiting"].as_str().unwrap().to_owned();
    assert!(
        why.contains("unit.state") || why.contains("unit.running"),
        "held by the interlock: {held}"
    );
    // Long enough for two writes had nothing held it.
    tokio::time::sleep(2 * MIN_INTERVAL + SLACK).await;
    let still = entry(&viewer, &id).await.unwrap();
    assert_eq!(still["status"]["state"], "executing", "{still}");
    assert_eq!(still["move"]["steps_verified"], 0, "{still}");
    assert_eq!(rig.sp(), start, "nothing written while the unit is stopped");

    // Start the unit and run its ~30 min start-up at once.
    let restarted = Instant::now();
    let restarted_ms = now_ms();
    let state = rig
        .plant
        .with_plant(|p| {
            p.set_run(true);
            for _ in 0..400 {
                if p.snapshot().state == UnitState::Running {
                    break;
                }
                p.step(15.0);
            }
            p.snapshot().state
        })
        .unwrap();
    assert_eq!(state, UnitState::Running);
    let done = in_state(&viewer, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    assert_eq!(done["status"]["outcome"]["kind"], "completed", "{done}");
    check_ramp(&seen, start, target);
    assert!(
        seen[1].0 > restarted,
        "the first write after the restart: {}",
        show(&seen)
    );
    let admin = rig.session("admin").await;
    let trail = audit(&admin, &id).await;
    assert_eq!(actions(&trail), expected_trail(false, 2), "{trail:#?}");
    for w in trail.iter().filter(|e| e["action"] == "setpoint_write") {
        assert!(w["ts_ms"].as_i64().unwrap() >= restarted_ms, "{w}");
    }
    rig.stop().await;
}

async fn writeback_alarm(s: &Session) -> J {
    let name = format!("writeback.{TAG}");
    let v = s.json("/api/v1/alarms").await;
    v["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no alarm {name}: {v}"))
        .clone()
}

/// The PLC acknowledges the write but does not apply it (local mode): the
/// read-back catches it, the move is rolled back to the start value, and
/// the latched `writeback.<tag>` alarm is shown. With the switch off the
/// next move goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_plc_does_not_apply_is_rolled_back_with_a_latched_alarm() {
    let Some((rig, key, viewer)) = crafted_rig(385.0).await else {
        return;
    };
    let operator = rig.session("operator").await;
    let start = rig.start_value;
    let before = writeback_alarm(&viewer).await;
    assert_eq!(before["active"], false, "{before}");

    rig.plant.faults().ignore_writes(true);
    let id = propose(&rig, &key, 2, "readback", start + 10.0).await;
    let rec = Recorder::start(&rig.plant);
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&viewer, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    let outcome = &done["status"]["outcome"];
    assert_eq!(outcome["kind"], "rolled_back", "{done}");
    assert_eq!(outcome["value"].as_f64(), Some(start), "{done}");
    assert!(
        outcome["reason"].as_str().unwrap().contains("read-back"),
        "{done}"
    );
    assert_eq!(seen.len(), 1, "the PLC never took a value: {}", show(&seen));
    assert_eq!(rig.sp(), start);

    let admin = rig.session("admin").await;
    let trail = audit(&admin, &id).await;
    assert_eq!(
        actions(&trail),
        vec![
            "setpoint_proposed",
            "setpoint_approved",
            "setpoint_started",
            "setpoint_write",
            "setpoint_rollback",
            "setpoint_finished"
        ],
        "{trail:#?}"
    );
    let wrote = format!("wrote {}", start + MAX_STEP);
    assert!(
        trail[3]["detail"].as_str().unwrap().contains(&wrote),
        "{trail:#?}"
    );
    let viewer_ref = &viewer;
    let alarm = until(
        "the write-back alarm",
        Duration::from_secs(10),
        || async move {
            let a = writeback_alarm(viewer_ref).await;
            (a["active"] == true).then_some(a)
        },
    )
    .await;
    assert_eq!(alarm["latched"], true, "{alarm}");

    rig.plant.faults().ignore_writes(false);
    let id = propose(&rig, &key, 3, "after", start + MAX_STEP).await;
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&viewer, &id, "ended", Duration::from_secs(60)).await;
    assert_eq!(done["status"]["outcome"]["kind"], "completed", "{done}");
    assert_eq!(rig.sp(), start + MAX_STEP);
    rig.stop().await;
}

/// The PLC applies every write off by 2 °C. The step is caught and rolled
/// back, and the rollback's own write is read back too: the edge must not
/// report "rolled back to" the start value while the register holds
/// start + 2 (it did before rollbacks were verified; now the outcome is
/// `rollback_failed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_the_plc_alters_is_not_reported_as_restored() {
    let Some((rig, key, viewer)) = crafted_rig(385.0).await else {
        return;
    };
    let operator = rig.session("operator").await;
    let start = rig.start_value;
    let delta = 2.0;
    rig.plant.faults().alter_writes(Some(delta));
    let id = propose(&rig, &key, 2, "altered", start + 10.0).await;
    let rec = Recorder::start(&rig.plant);
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let done = in_state(&viewer, &id, "ended", Duration::from_secs(60)).await;
    let seen = rec.finish().await;
    assert_eq!(
        seen.get(1).map(|s| s.1),
        Some(start + MAX_STEP + delta),
        "the step landed off by the delta: {}",
        show(&seen)
    );
    let outcome = &done["status"]["outcome"];
    let left = rig.sp();
    assert!(
        (left - start).abs() <= TOLERANCE || outcome["kind"] != "rolled_back",
        "the edge reports {outcome} while the PLC holds {left}: {}",
        show(&seen)
    );
    rig.stop().await;
}

/// The HTTP status of a refusal comes from its kind, not from words in its
/// message: the message quotes the hub's recommendation id, and an id with
/// "role" in it once made a conflict (approving a rejected proposal) a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_answered_by_its_kind_not_by_words_in_the_proposal_id() {
    let Some((rig, key, _)) = crafted_rig(385.0).await else {
        return;
    };
    let operator = rig.session("operator").await;
    let id = propose(&rig, &key, 2, "patrol-role-7", rig.start_value + 5.0).await;
    let r = operator
        .post(
            &format!("/api/v1/setpoints/{id}/reject"),
            r#"{"comment": "not now"}"#,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = approve(&operator, &id, json!({})).await;
    assert_eq!(r.status, 409, "a rejected proposal: {}", r.body);
    rig.stop().await;
}
