//! The optimizer's task: runs on schedule and on threshold triggers, and
//! follows sent recommendations through the edges' audit entries to their
//! realized benefit.
//!
//! Status from the edge (audit actions written by `edge_node::setpoint`,
//! target `<run id>:<tag>`): `setpoint_proposed` → proposed (queued for an
//! operator), `setpoint_approved`, `setpoint_rejected`, `setpoint_expired`,
//! `setpoint_superseded`, `setpoint_finished` (completed / rolled back /
//! stopped), `recommendation_refused` (the edge would not queue it). For a
//! recommendation of several setpoints the newest entry wins, and it counts
//! as applied at its first completed move.
//!
//! **Realized benefit**: once an applied run has settled ([`SETTLE_WINDOWS`]
//! windows after the completion) and [`MEASURE_WINDOWS`] more windows have
//! passed, the objective is computed per window from the *measured* values
//! of its terms (Σ price × window mean) over the [`MEASURE_WINDOWS`]
//! windows before the run started and the ones after settling; the
//! realized benefit is the difference of the means (positive = better, for
//! either sense) with ± 2 standard errors, set beside the predicted one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use models::optimize::recommend::ObjectiveSense;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Optimizer, db::Run, now_ms};
use crate::config::ProblemConfig;

/// Windows after the completion before measuring (process settling).
pub const SETTLE_WINDOWS: i64 = 5;
/// Windows averaged before and after.
pub const MEASURE_WINDOWS: i64 = 10;
const TICK: Duration = Duration::from_secs(2);

pub fn start(opt: Arc<Optimizer>, cancel: CancellationToken) {
    tokio::spawn(run(opt, cancel));
}

async fn run(opt: Arc<Optimizer>, cancel: CancellationToken) {
    // When each scheduled problem runs next (problems come and go through
    // the API: keyed by name, the first run one interval after it appears).
    let mut due: BTreeMap<String, i64> = BTreeMap::new();
    // Per problem and trigger: whether the last reading was past the limit.
    let mut crossed: BTreeMap<(String, usize), bool> = BTreeMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let problems = opt.problems();
        due.retain(|name, _| problems.iter().any(|d| &d.problem.name == name));
        for d in &problems {
            let p = &d.problem;
            let next = p.every.map(|e| now + e.as_millis() as i64);
            let at = match (next, due.get(&p.name)) {
                (None, _) => None,
                (Some(n), None) => {
                    due.insert(p.name.clone(), n);
                    None
                }
                (Some(_), Some(at)) => Some(*at),
            };
            if let (Some(at), Some(n)) = (at, next)
                && now >= at
            {
                due.insert(p.name.clone(), n);
                if let Err(e) = opt.run(&p.name, "schedule").await {
                    tracing::warn!(problem = %p.name, error = %e, "scheduled optimization failed");
                }
            }
            if let Some(why) = triggered(&opt, p, &mut crossed).await
                && let Err(e) = opt.run(&p.name, &why).await
            {
                tracing::warn!(problem = %p.name, error = %e, "triggered optimization failed");
            }
        }
        if let Err(e) = follow(&opt).await {
            tracing::warn!(error = %e, "cannot follow recommendations at the edges");
        }
        if let Err(e) = realize(&opt).await {
            tracing::warn!(error = %e, "cannot measure realized benefits");
        }
    }
}

/// A trigger that has just crossed its limit (the first reading past it).
async fn triggered(
    opt: &Arc<Optimizer>,
    p: &ProblemConfig,
    crossed: &mut BTreeMap<(String, usize), bool>,
) -> Option<String> {
    if p.triggers.is_empty() {
        return None;
    }
    let tags: Vec<String> = p.triggers.iter().map(|t| t.tag.clone()).collect();
    let (site, node) = (p.site.clone(), p.node.clone());
    let reads = opt.reads.clone();
    let latest =
        tokio::task::spawn_blocking(move || reads.read(|s| s.latest_values(&site, &node, &tags)))
            .await
            .ok()?
            .ok()?;
    let mut why = None;
    for (i, t) in p.triggers.iter().enumerate() {
        let Some((v, _)) = latest.get(&t.tag) else {
            continue;
        };
        let past = t.above.is_some_and(|a| *v > a) || t.below.is_some_and(|b| *v < b);
        let was = crossed.insert((p.name.clone(), i), past);
        // The first reading after a start only arms the trigger.
        if past && was == Some(false) && why.is_none() {
            why = Some(match (t.above, t.below) {
                (Some(a), _) if *v > a => format!("trigger: {} = {v:.3} above {a}", t.tag),
                (_, Some(b)) => format!("trigger: {} = {v:.3} below {b}", t.tag),
                _ => format!("trigger: {}", t.tag),
            });
        }
    }
    why
}

/// Map the edges' new audit entries onto the runs they concern.
pub async fn follow(opt: &Arc<Optimizer>) -> Result<(), String> {
    opt.db
        .expire_undelivered(now_ms())
        .map_err(|e| e.to_string())?;
    let nodes: std::collections::BTreeSet<(String, String)> = opt
        .problems()
        .iter()
        .map(|d| (d.problem.site.clone(), d.problem.node.clone()))
        .collect();
    for (site, node) in nodes {
        let after = opt.db.audit_read(&site, &node).map_err(|e| e.to_string())?;
        let reads = opt.reads.clone();
        let (s2, n2) = (site.clone(), node.clone());
        let entries = tokio::task::spawn_blocking(move || {
            reads.read(|s| s.audit_after(&s2, &n2, &["setpoint_", "recommendation_"], after))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut last = after;
        for e in &entries {
            last = last.max(e.aseq);
            let run_id = e.target.split(':').next().unwrap_or_default();
            let status = match e.action.as_str() {
                "setpoint_proposed" => "proposed",
                "setpoint_approved" => "approved",
                "setpoint_rejected" => "rejected",
                "setpoint_expired" => "expired",
                "setpoint_superseded" => "superseded",
                "setpoint_started" => "executing",
                "recommendation_refused" => "refused",
                "setpoint_finished" if e.detail.contains("completed") => "completed",
                "setpoint_finished" if e.detail.contains("rolled back") => "rolled_back",
                "setpoint_finished" => "failed",
                _ => continue,
            };
            let mut note = format!("{}: {}", e.actor, e.detail);
            let mut status = status;
            let mut applied = None;
            if status == "completed" {
                // Applied when every move of the run has completed: the
                // settling time counts from the last one.
                let moves = opt
                    .db
                    .run(run_id)
                    .ok()
                    .flatten()
                    .and_then(|r| r.result)
                    .and_then(|r| r["recommendation"]["setpoints"].as_array().cloned())
                    .map_or(1, |sps| {
                        sps.iter()
                            .filter(|s| s["proposed"].as_f64() != s["current"].as_f64())
                            .count() as u64
                    });
                let reads = opt.reads.clone();
                let (s2, n2, id) = (site.clone(), node.clone(), run_id.to_owned());
                let done = tokio::task::spawn_blocking(move || {
                    reads.read(|s| s.completed_moves(&s2, &n2, &id))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                if done >= moves {
                    applied = Some(e.ts_ms);
                } else {
                    status = "executing";
                    note = format!("{done} of {moves} moves completed; {note}");
                }
            }
            opt.db
                .set_status(run_id, status, e.ts_ms, &note, applied)
                .map_err(|e| e.to_string())?;
        }
        if last > after {
            opt.db
                .set_audit_read(&site, &node, last)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Measure the realized benefit of applied runs that have settled.
pub async fn realize(opt: &Arc<Optimizer>) -> Result<(), String> {
    let now = now_ms();
    for run in opt.db.awaiting_realized().map_err(|e| e.to_string())? {
        let Some(p) = opt.problem(&run.problem) else {
            continue;
        };
        let Some(applied) = run.applied_ms else {
            continue;
        };
        let w = p.window.as_millis() as i64;
        let after_from = (applied + SETTLE_WINDOWS * w) / w * w + w;
        let after_to = after_from + MEASURE_WINDOWS * w;
        if now < after_to + w {
            continue;
        }
        let before_to = run.started_ms / w * w;
        let before_from = before_to - MEASURE_WINDOWS * w;
        let value = measure(
            opt,
            &p,
            &run,
            (before_from, before_to),
            (after_from, after_to),
        )
        .await?;
        opt.db
            .set_realized(&run.id, &value)
            .map_err(|e| e.to_string())?;
        tracing::info!(run = %run.id, realized = %value, "realized benefit measured");
    }
    Ok(())
}

async fn measure(
    opt: &Arc<Optimizer>,
    p: &ProblemConfig,
    run: &Run,
    before: (i64, i64),
    after: (i64, i64),
) -> Result<serde_json::Value, String> {
    let tags: Vec<String> = p.terms.iter().map(|t| t.tag.clone()).collect();
    let width = u32::try_from(p.window.as_millis()).unwrap_or(u32::MAX);
    let (site, node) = (p.site.clone(), p.node.clone());
    let reads = opt.reads.clone();
    let (b, a) = tokio::task::spawn_blocking(move || {
        let b = reads.read(|s| s.aligned_means(&site, &node, width, &tags, before.0, before.1))?;
        let a = reads.read(|s| s.aligned_means(&site, &node, width, &tags, after.0, after.1))?;
        Ok::<_, crate::store::StoreError>((b, a))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let objective = |al: &crate::store::optimize::Aligned| -> Vec<f64> {
        (0..al.t.len())
            .filter_map(|i| {
                p.terms.iter().try_fold(0.0, |acc, t| {
                    let v = al.columns.get(&t.tag)?.get(i).copied()?;
                    v.is_finite().then_some(acc + t.price * v)
                })
            })
            .collect()
    };
    let (ob, oa) = (objective(&b), objective(&a));
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n.max(1.0);
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (m, var.sqrt(), v.len())
    };
    let predicted = run
        .result
        .as_ref()
        .and_then(|r| r["recommendation"]["benefit_per_hour"].as_f64());
    if ob.len() < 3 || oa.len() < 3 {
        return Ok(json!({
            "measured": false,
            "why": format!("too few complete windows to compare ({} before, {} after)", ob.len(), oa.len()),
            "predicted_per_hour": predicted,
        }));
    }
    let ((mb, sb, nb), (ma, sa, na)) = (stats(&ob), stats(&oa));
    let sign = match p.sense {
        ObjectiveSense::Maximize => 1.0,
        ObjectiveSense::Minimize => -1.0,
    };
    let realized = sign * (ma - mb);
    let spread = 2.0 * (sb * sb / nb as f64 + sa * sa / na as f64).sqrt();
    Ok(json!({
        "measured": true,
        "unit": p.unit,
        "before": { "from_ms": before.0, "to_ms": before.1, "mean": mb, "sd": sb, "windows": nb },
        "after": { "from_ms": after.0, "to_ms": after.1, "mean": ma, "sd": sa, "windows": na },
        "realized_per_hour": realized,
        "spread_per_hour": spread,
        "predicted_per_hour": predicted,
        "within_spread": predicted.map(|pr| (pr - realized).abs() <= spread),
    }))
}
