//! Prometheus `/metrics` (text format 0.0.4, through `web::metrics`) and the
//! OpenAPI document, generated from the route table so neither can miss a
//! route.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value as J, json};
use web::access::Access;
use web::metrics::Exposition;
use web::routes::RouteTable;

use super::St;

pub async fn metrics(State(st): State<St>) -> Response {
    let statuses: Vec<drivers::DriverStatus> =
        st.drivers.lock().await.iter().map(|d| d.status()).collect();
    let mut e = Exposition::new();
    {
        let f = e.gauge(
            "apos_edge_driver_cycle_seconds",
            "Duration of the driver's most recent poll cycle.",
        );
        for s in &statuses {
            if let Some(c) = s.last_cycle {
                f.sample(&[("device", &s.name)], c.as_secs_f64());
            }
        }
    }
    {
        let f = e.gauge(
            "apos_edge_driver_connected",
            "1 while at least one device of the driver answers.",
        );
        for s in &statuses {
            f.sample(&[("device", &s.name)], if s.connected { 1.0 } else { 0.0 });
        }
    }
    {
        let f = e.counter(
            "apos_edge_driver_requests_total",
            "Requests sent to the device.",
        );
        for s in &statuses {
            f.sample(&[("device", &s.name)], s.requests as f64);
        }
    }
    {
        let f = e.counter(
            "apos_edge_driver_errors_total",
            "Requests that failed (timeouts, exceptions, I/O errors).",
        );
        for s in &statuses {
            f.sample(&[("device", &s.name)], s.errors as f64);
        }
    }
    {
        let f = e.counter(
            "apos_edge_driver_restarts_total",
            "Times the driver task failed and was restarted.",
        );
        for s in &statuses {
            f.sample(&[("device", &s.name)], s.restarts as f64);
        }
    }
    let (seen, stored, filtered) = st.stats.snapshot();
    e.counter(
        "apos_edge_samples_collected_total",
        "Samples read from devices.",
    )
    .sample(&[], seen as f64);
    e.counter(
        "apos_edge_samples_stored_total",
        "Samples the filter passed to the history.",
    )
    .sample(&[], stored as f64);
    e.counter(
        "apos_edge_samples_filtered_total",
        "Samples the deadband filter dropped as unchanged.",
    )
    .sample(&[], filtered as f64);
    e.counter(
        "apos_edge_history_samples_committed_total",
        "Samples committed to the SQLite history.",
    )
    .sample(&[], st.history_stats.samples_written() as f64);
    let h = st.history_stats.snapshot();
    e.counter(
        "apos_edge_history_write_failures_total",
        "Failed history commits and seals.",
    )
    .sample(&[], h.store_failures as f64);
    let y = &st.sync_stats;
    e.gauge(
        "apos_edge_outbox_depth_batches",
        "Batches in the outbox not acknowledged by the hub.",
    )
    .sample(&[], y.depth.load(Relaxed) as f64);
    e.gauge(
        "apos_edge_outbox_oldest_unacked_age_seconds",
        "Age of the oldest batch the hub has not acknowledged.",
    )
    .sample(&[], y.oldest_unacked_ms.load(Relaxed) as f64 / 1000.0);
    e.counter(
        "apos_edge_outbox_dropped_batches_total",
        "Batches lost to the outbox's size bound.",
    )
    .sample(&[], h.outbox_dropped as f64);
    e.gauge(
        "apos_edge_hub_connected",
        "1 while the MQTT session to the hub is up.",
    )
    .sample(&[], if y.connected.load(Relaxed) { 1.0 } else { 0.0 });
    let board = st.alarms.snapshot();
    {
        let f = e.gauge(
            "apos_edge_alarms_active",
            "Alarms shown active, by priority.",
        );
        for p in 1..=4u8 {
            let n = board
                .views
                .iter()
                .filter(|v| v.priority == p && v.active)
                .count();
            f.sample(
                &[("priority", crate::alarm::board::priority_name(p))],
                n as f64,
            );
        }
    }
    e.gauge(
        "apos_edge_alarms_unacknowledged",
        "Alarms waiting for an acknowledgement.",
    )
    .sample(&[], board.unacknowledged() as f64);
    e.gauge(
        "apos_edge_alarm_flood",
        "1 during an alarm flood (more than 10 new alarms in 10 minutes).",
    )
    .sample(&[], if board.health.in_flood { 1.0 } else { 0.0 });
    e.gauge(
        "apos_edge_websocket_clients",
        "Live WebSocket connections of the HMI.",
    )
    .sample(&[], st.ws_clients.load(Relaxed) as f64);
    e.gauge("apos_edge_hmi_sessions", "Logged-in HMI sessions.")
        .sample(&[], st.core.sessions.len() as f64);
    web::metrics::response(e.render())
}

/// An OpenAPI 3.1 document with one operation per route of the table, its
/// access level as a security requirement, merged with the session API's
/// own annotated document.
pub fn openapi(table: &RouteTable<St>) -> J {
    use utoipa::OpenApi as _;
    let base = web::auth_api::ApiDoc::openapi();
    let mut doc = serde_json::to_value(&base).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({"title": "APOS edge HMI API", "version": env!("CARGO_PKG_VERSION"),
        "description": "The operator HMI's API (docs/hmi-api.md). Viewer, operator and admin routes need the session cookie; state changes need the X-CSRF-Token header."});
    doc["components"]["securitySchemes"]["session"] =
        json!({"type": "apiKey", "in": "cookie", "name": web::routes::SESSION_COOKIE});
    for r in table.routes() {
        let method = r.method.as_str().to_lowercase();
        let path = &mut doc["paths"][r.path];
        if path.get(&method).is_some() {
            continue;
        }
        let params: Vec<J> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let (security, role) = match r.access {
            Access::Public => (json!([]), "public".to_string()),
            Access::Role(role) => (json!([{"session": []}]), role.as_str().to_string()),
        };
        let mut responses = json!({"200": {"description": "OK"}});
        if role != "public" {
            responses["401"] = json!({"description": "no session (application/problem+json)"});
            responses["403"] = json!({"description": "role too weak, or CSRF token missing (application/problem+json)"});
        }
        path[&method] = json!({
            "summary": format!("{} {} ({role})", r.method, r.path),
            "operationId": format!("{}{}", method, r.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "security": security,
            "x-apos-access": role,
            "responses": responses,
        });
    }
    doc
}
