//! The report task: started with the hub, it sleeps until the next
//! `[[report]]` is due, makes it on the blocking pool and announces it
//! through the webhook (`[webhook]`, signed like the alerts).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{ReportMeta, Request};
use crate::alert::AlertState;
use crate::alert::webhook::{Client, Job, schedule};
use crate::config::HubConfig;
use crate::store::ReadPool;

/// The hub's name as reports and announcements give it.
pub fn hub_name(cfg: &HubConfig) -> String {
    cfg.alerts
        .as_ref()
        .map(|a| a.hub_name.clone())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "apos-hub".into())
}

/// Start the schedule (nothing without `[[report]]`).
pub fn start(cfg: Arc<HubConfig>, reads: Arc<ReadPool>, cancel: CancellationToken) {
    if cfg.reports.is_empty() {
        return;
    }
    tokio::spawn(run(cfg, reads, cancel));
}

async fn run(cfg: Arc<HubConfig>, reads: Arc<ReadPool>, cancel: CancellationToken) {
    let dir = super::dir(&cfg.storage_path);
    let hub = hub_name(&cfg);
    let now = crate::web::now_ms();
    let mut due: Vec<Option<i64>> = cfg
        .reports
        .iter()
        .map(|r| super::schedule::next_after(&r.schedule, now))
        .collect();
    for (r, d) in cfg.reports.iter().zip(&due) {
        if let Some(d) = d {
            tracing::info!(report = %r.name, site = %r.site, next = %jiff::Timestamp::from_millisecond(*d).map(|t| t.to_string()).unwrap_or_default(), "report scheduled");
        }
    }
    loop {
        let Some(next) = due.iter().flatten().min().copied() else {
            return;
        };
        let wait = Duration::from_millis(u64::try_from(next - crate::web::now_ms()).unwrap_or(0));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        for (i, r) in cfg.reports.iter().enumerate() {
            if due[i] != Some(next) {
                continue;
            }
            due[i] = super::schedule::next_after(&r.schedule, next);
            let period = i64::try_from(r.period.as_millis()).unwrap_or(i64::MAX);
            let req = Request {
                name: r.name.clone(),
                site: r.site.clone(),
                from_ms: next.saturating_sub(period),
                to_ms: next,
                trigger: "schedule",
                chromium: r.chromium.clone(),
                hub: hub.clone(),
            };
            let (reads, dir) = (reads.clone(), dir.clone());
            let made = tokio::task::spawn_blocking(move || super::make(&reads, &dir, &req)).await;
            match made {
                Ok(Ok(meta)) => announce(&cfg, &hub, &meta, cancel.clone()),
                Ok(Err(e)) => tracing::error!(report = %r.name, error = %e, "report not made"),
                Err(e) => tracing::error!(report = %r.name, error = %e, "report task failed"),
            }
        }
    }
}

/// What the webhook receiver gets about a new report.
#[derive(Debug, Serialize)]
pub struct Announcement<'a> {
    /// Always `report`: tells it apart from alert transitions.
    pub event: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub site: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub made_ms: i64,
    pub insights: u64,
    pub pdf: bool,
    /// Paths under the hub's web address.
    pub html_path: String,
    pub pdf_path: Option<String>,
    pub hub: &'a str,
}

/// Send the announcement in the background, retried like alert deliveries
/// (`[webhook]` max_attempts, backoff); nothing without a webhook.
pub fn announce(cfg: &HubConfig, hub: &str, m: &ReportMeta, cancel: CancellationToken) {
    let Some(w) = cfg.alerts.as_ref().and_then(|a| a.webhook.clone()) else {
        return;
    };
    let body = serde_json::to_vec(&Announcement {
        event: "report",
        id: &m.id,
        name: &m.name,
        site: &m.site,
        from_ms: m.from_ms,
        to_ms: m.to_ms,
        made_ms: m.made_ms,
        insights: m.insights,
        pdf: m.pdf_bytes.is_some(),
        html_path: format!("/api/v1/reports/{}/html", m.id),
        pdf_path: m.pdf_bytes.map(|_| format!("/api/v1/reports/{}/pdf", m.id)),
        hub,
    })
    .unwrap_or_default();
    let job = Job {
        alert_id: format!("report-{}", m.id),
        state: AlertState::Firing,
        body: body.into(),
    };
    let client = match Client::new(&w) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "report not announced");
            return;
        }
    };
    tokio::spawn(async move {
        for attempt in 1..=w.max_attempts.max(1) {
            match client.post(&job, attempt).await {
                Ok(code) if (200..300).contains(&code) => {
                    tracing::info!(report = %job.alert_id, code, attempt, "report announced");
                    return;
                }
                Ok(code) => {
                    tracing::warn!(report = %job.alert_id, code, attempt, "report announcement refused")
                }
                Err(e) => {
                    tracing::warn!(report = %job.alert_id, error = %e, attempt, "report announcement failed")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(schedule(&w, attempt + 1).saturating_sub(schedule(&w, attempt))) => {}
            }
        }
    });
}
