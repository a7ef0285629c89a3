//! The hub's Prometheus exposition (`/metrics`, docs/hub.md "Metrics"):
//! ingest rates, refusals by reason, DuckDB commit time, the store queue,
//! API latency per route, live sockets and web sessions.
//!
//! API latency is measured by [`track`], a middleware around every route
//! (and the pages' fallback), per route template (never the raw path: the
//! label set stays bounded whatever clients ask for), method and status
//! class.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use web::metrics::{Exposition, Histogram};

use super::WebState;
use crate::metrics as m;

/// API latency buckets, seconds: 0.5 ms (a cached page) to 10 s.
const API_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// (route template, method, status class) → latency.
type Series = HashMap<(String, String, &'static str), Arc<Histogram>>;

static API: LazyLock<RwLock<Series>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// The label of requests no route matched (pages, assets, unknown paths).
const FALLBACK: &str = "(pages)";

fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Record one request's latency.
pub fn observe(route: &str, method: &str, status: u16, seconds: f64) {
    let class = class(status);
    let found = API
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(route.to_owned(), method.to_owned(), class))
        .cloned();
    let h = match found {
        Some(h) => h,
        None => API
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_owned(), method.to_owned(), class))
            .or_insert_with(|| Arc::new(Histogram::new(API_BOUNDS)))
            .clone(),
    };
    h.observe(seconds);
}

/// The middleware: time every request to its response head.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(FALLBACK, |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    observe(
        &route,
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

pub fn render(st: &WebState) -> String {
    let mut e = Exposition::new();
    let s = m::snapshot();
    let counter = |e: &mut Exposition, name: &str, help: &str, v: u64| {
        e.counter(name, help).sample(&[], v as f64);
    };
    counter(
        &mut e,
        "apos_hub_batches_stored_total",
        "Batches stored (new, not duplicates).",
        s.batches_new,
    );
    counter(
        &mut e,
        "apos_hub_batches_duplicate_total",
        "Batches received again after they were stored (acknowledged again).",
        s.batches_duplicate,
    );
    counter(
        &mut e,
        "apos_hub_windows_stored_total",
        "Aggregate windows stored.",
        s.windows_stored,
    );
    counter(
        &mut e,
        "apos_hub_kpis_stored_total",
        "KPI values stored.",
        s.kpis_stored,
    );
    counter(
        &mut e,
        "apos_hub_forecasts_stored_total",
        "Forecasts stored.",
        s.forecasts_stored,
    );
    counter(
        &mut e,
        "apos_hub_alarm_events_stored_total",
        "Alarm journal entries stored.",
        s.alarm_events_stored,
    );
    counter(
        &mut e,
        "apos_hub_lost_spans_stored_total",
        "Spans of windows the edges reported they never recorded.",
        s.lost_spans_stored,
    );
    counter(
        &mut e,
        "apos_hub_batches_quarantined_total",
        "Signed batches kept in quarantine (not storable as they are).",
        s.batches_quarantined,
    );
    counter(
        &mut e,
        "apos_hub_acks_sent_total",
        "Acknowledgements published to the edges.",
        s.acks_sent,
    );
    counter(
        &mut e,
        "apos_hub_commit_errors_total",
        "DuckDB ingest commits that failed (retried; nothing is acknowledged before a commit).",
        s.commit_errors,
    );
    {
        let f = e.counter(
            "apos_hub_refused_total",
            "Messages and connections refused, by reason.",
        );
        for (reason, v) in [
            ("login", s.refused_logins),
            ("topic", s.rejected_topic),
            ("unknown_node", s.rejected_unknown_node),
            ("signature", s.rejected_signature),
            ("too_large", s.rejected_too_large),
            ("malformed", s.rejected_malformed),
            ("out_of_range", s.rejected_invalid),
            ("stale_status", s.status_stale),
            ("handshake_timeout", s.gate_handshake_timeouts),
            ("mqtt_protocol", s.gate_protocol_errors),
            ("client_id", s.gate_client_id_refused),
            ("topic_acl", s.gate_acl_refused),
        ] {
            f.sample(&[("reason", reason)], v as f64);
        }
    }
    e.histogram(
        "apos_hub_commit_seconds",
        "Time of one DuckDB ingest (all batches gathered in a commit interval).",
    )
    .observed(&[], &m::COMMIT_SECONDS.snapshot());
    e.gauge(
        "apos_hub_store_queue_depth",
        "Messages waiting for the DuckDB thread.",
    )
    .sample(&[], m::STORE_QUEUE_DEPTH.load(Relaxed) as f64);
    e.gauge(
        "apos_hub_store_queue_capacity",
        "Messages the DuckDB thread's queue holds before the ingest stops reading the broker.",
    )
    .sample(&[], crate::ingest::STORE_QUEUE as f64);
    e.gauge(
        "apos_hub_ingest_ready",
        "1 while the ingest is connected to the broker and subscribed.",
    )
    .sample(&[], if *st.ready.borrow() { 1.0 } else { 0.0 });
    {
        let series: Vec<_> = {
            let map = API.read().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<_> = map.iter().map(|(k, h)| (k.clone(), h.snapshot())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let f = e.histogram(
            "apos_hub_http_request_duration_seconds",
            "Time to the response head, per route template, method and status class.",
        );
        for ((route, method, class), snap) in &series {
            f.observed(
                &[("route", route), ("method", method), ("status", class)],
                snap,
            );
        }
    }
    e.gauge(
        "apos_hub_websocket_clients",
        "Live WebSocket connections of the dashboards.",
    )
    .sample(&[], st.ws_clients.load(Relaxed) as f64);
    e.gauge("apos_hub_web_sessions", "Logged-in web sessions.")
        .sample(&[], st.core.sessions.len() as f64);
    e.gauge(
        "apos_hub_start_time_seconds",
        "When the web application started (Unix time).",
    )
    .sample(&[], st.started_ms as f64 / 1000.0);
    e.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(class(101), "1xx");
        assert_eq!(class(204), "2xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(503), "5xx");
    }
}
