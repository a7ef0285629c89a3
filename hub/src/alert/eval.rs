//! The evaluation task: every `[alerts] interval`, read the facts through
//! the web read pool (DuckDB snapshot beside the ingest thread), step the
//! machine, and hand each transition to the log, `alerts.db`, the live
//! broadcast and the webhook queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::db::{AlertDb, DbError, Delivery};
use super::webhook::{self, Job, Queue};
use super::{AlertState, Machine, Transition};
use crate::config::HubConfig;
use crate::events::{Event, Events};
use crate::store::{ReadPool, StoreError};
use crate::web::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Webhook(String),
    #[error("alerting start: {0}")]
    Internal(String),
}

/// The running alerting, for whoever wants to look (tests, metrics).
#[derive(Debug, Clone)]
pub struct Alerting {
    pub db: Arc<AlertDb>,
    pub queue: Option<Queue>,
}

/// Open `alerts.db`, take up the alerts that were firing, and start the
/// evaluation (and webhook) tasks; `None` without `[[alert]]` rules.
pub async fn start(
    cfg: Arc<HubConfig>,
    reads: Arc<ReadPool>,
    events: Events,
    cancel: CancellationToken,
) -> Result<Option<Alerting>, AlertError> {
    let Some(a) = cfg.alerts.clone() else {
        return Ok(None);
    };
    let path = a.db_file.clone();
    let names: Vec<String> = a.rules.iter().map(|r| r.name.clone()).collect();
    let started = now_ms();
    let (db, active) = tokio::task::spawn_blocking(move || {
        let db = AlertDb::open(&path)?;
        let retired = db.retire(&names, started)?;
        if retired > 0 {
            tracing::info!(
                retired,
                "alerts of rules no longer configured marked resolved"
            );
        }
        let active = db.active()?;
        Ok::<_, DbError>((Arc::new(db), active))
    })
    .await
    .map_err(|e| AlertError::Internal(e.to_string()))??;
    let mut machine = Machine::new(a.rules.clone(), a.interval, started);
    let restored = active.len();
    machine.restore(active);
    let queue = match &a.webhook {
        Some(w) => {
            let client = webhook::Client::new(w).map_err(AlertError::Webhook)?;
            let q = Queue::new(w.queue);
            tokio::spawn(webhook::run(client, q.clone(), db.clone(), cancel.clone()));
            Some(q)
        }
        None => None,
    };
    tracing::info!(
        rules = a.rules.len(),
        interval = %humantime::format_duration(a.interval),
        webhook = a.webhook.is_some(),
        firing = restored,
        "alerting started"
    );
    let configured: Vec<(String, String)> = cfg.nodes.keys().cloned().collect();
    tokio::spawn(run(
        Loop {
            machine,
            configured,
            reads,
            db: db.clone(),
            events,
            queue: queue.clone(),
            hub: a.hub_name.clone(),
            interval: a.interval,
        },
        cancel,
    ));
    Ok(Some(Alerting { db, queue }))
}

struct Loop {
    machine: Machine,
    configured: Vec<(String, String)>,
    reads: Arc<ReadPool>,
    db: Arc<AlertDb>,
    events: Events,
    queue: Option<Queue>,
    hub: String,
    interval: Duration,
}

async fn run(mut l: Loop, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(l.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let needs = l.machine.kpi_needs();
    let mut last_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let (reads, configured, needs2) = (l.reads.clone(), l.configured.clone(), needs.clone());
        let facts = tokio::task::spawn_blocking(move || {
            reads.read(|s| s.alert_facts(&configured, &needs2, now))
        })
        .await;
        // No facts, no evaluation: a missed read must not resolve (or
        // fire) anything.
        let facts = match facts {
            Ok(Ok(f)) => f,
            Ok(Err(StoreError::Busy(why))) => {
                tracing::debug!(why, "alert evaluation skipped");
                continue;
            }
            Ok(Err(e)) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "alert evaluation skipped: the fleet database query failed");
                    last_warning = Some(Instant::now());
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "alert facts query panicked");
                continue;
            }
        };
        let transitions = l.machine.step(now, &facts);
        if transitions.is_empty() {
            continue;
        }
        publish(&l, transitions).await;
    }
}

async fn publish(l: &Loop, transitions: Vec<Transition>) {
    for t in &transitions {
        match t.state {
            AlertState::Firing => tracing::warn!(
                alert = %t.id, rule = %t.rule, kind = %t.kind, site = %t.site, node = %t.node,
                "alert firing: {}", t.message
            ),
            AlertState::Resolved => tracing::info!(
                alert = %t.id, rule = %t.rule, kind = %t.kind, site = %t.site, node = %t.node,
                "alert resolved: {}", t.message
            ),
        }
    }
    // Recorded before it is queued: every delivery attempt refers to a row.
    let db = l.db.clone();
    let ts = transitions.clone();
    let stored = tokio::task::spawn_blocking(move || {
        for t in &ts {
            db.record(t)?;
        }
        Ok::<_, DbError>(())
    })
    .await;
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot record alert transitions"),
        Err(e) => tracing::error!(error = %e, "recording alert transitions panicked"),
    }
    for t in transitions {
        // Nobody listening is fine: the dashboards may all be closed.
        let _ = l.events.send(Event::Alert {
            rule: t.rule.clone(),
            site: t.site.clone(),
            node: t.node.clone(),
            state: t.state.as_str().to_owned(),
            message: t.message.clone(),
            ts_ms: t.ts_ms,
        });
        if let Some(q) = &l.queue
            && let Some(dropped) = q.push(Job::new(&t, &l.hub))
        {
            webhook::record(
                &l.db,
                &dropped,
                Delivery {
                    state: dropped.state,
                    attempt: 0,
                    ts_ms: now_ms(),
                    ok: false,
                    status: None,
                    error: Some(format!(
                        "dropped: the webhook queue was full ({} dropped since start)",
                        q.dropped()
                    )),
                },
            )
            .await;
        }
    }
}
