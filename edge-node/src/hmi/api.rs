//! The JSON API's handlers (docs/hmi-api.md). Reads of SQLite run on the
//! blocking pool; everything else reads the running edge's shared state.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use models::alarm::machine::Event;
use serde::Deserialize;
use serde_json::{Value as J, json};
use web::problem::Problem;
use web::routes::Caller;

use super::St;
use crate::alarm::board::CommandError;
use crate::history::HistoryReader;

fn now_ms() -> i64 {
    drivers::Timestamp::now().as_millis()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Problem::internal(e)),
        Err(e) => Err(Problem::internal(e.to_string())),
    }
}

pub async fn asset(State(st): State<St>, uri: Uri, headers: HeaderMap) -> Response {
    st.assets
        .response(uri.path().trim_start_matches('/'), &headers)
}

pub async fn health(State(st): State<St>) -> Response {
    Json(json!({"status": "ok", "data_path_ok": st.fanout_data_ok()})).into_response()
}

pub async fn openapi(State(st): State<St>) -> Response {
    let table = super::routes(st.core.clone());
    Json(super::metrics::openapi(&table)).into_response()
}

pub fn hub_link(st: &St) -> J {
    let cfg = st.config.borrow().clone();
    let y = &st.sync_stats;
    json!({
        "enabled": cfg.sync.is_some(),
        "connected": y.connected.load(Relaxed),
        "outbox_depth": y.depth.load(Relaxed),
        "oldest_unacked_s": y.oldest_unacked_ms.load(Relaxed) / 1000,
        "acked": y.acked.load(Relaxed),
        "last_ack_ms": Some(y.last_ack_ms.load(Relaxed)).filter(|t| *t > 0),
    })
}

async fn devices(st: &St) -> Vec<J> {
    let cfg = st.config.borrow().clone();
    let statuses: Vec<drivers::DriverStatus> =
        st.drivers.lock().await.iter().map(|d| d.status()).collect();
    let live = st.live.read().await;
    // The newest good sample of each device's tags: its last good poll.
    let mut last_good: HashMap<&str, i64> = HashMap::new();
    for t in &cfg.tags {
        if let Some(s) = live.get(t.name.as_str())
            && s.quality.is_good()
        {
            let e = last_good.entry(t.device.as_str()).or_insert(0);
            *e = (*e).max(s.ts.as_millis());
        }
    }
    statuses
        .iter()
        .map(|s| {
            let protocol = cfg.device(&s.name).map(|d| {
                if d.transport.is_opcua() {
                    "opcua"
                } else if matches!(d.transport, firmware_config::Transport::ModbusTcp { .. }) {
                    "modbus-tcp"
                } else {
                    "modbus-rtu"
                }
            });
            // An RTU line's driver is named after the line: its devices'
            // newest sample counts.
            let good = last_good.get(s.name.as_str()).copied().or_else(|| {
                s.units
                    .iter()
                    .filter_map(|u| last_good.get(u.device.as_str()).copied())
                    .max()
            });
            json!({
                "name": s.name,
                "protocol": protocol.unwrap_or("modbus-rtu"),
                "connected": s.connected,
                "last_good_ms": good,
                "cycle_ms": s.last_cycle.map(|d| d.as_secs_f64() * 1000.0),
                "cycles": s.cycles,
                "requests": s.requests,
                "errors": s.errors,
                "last_error": s.last_error,
                "restarts": s.restarts,
                "units": s.units.iter().map(|u| json!({"device": u.device, "unit_id": u.unit_id, "state": format!("{:?}", u.state)})).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn kpi_json(r: &protocol::v1::KpiResult) -> J {
    let get = |k: &str| r.values.iter().find(|(n, _)| n == k).and_then(|(_, v)| *v);
    let kind = r.values.first().map(|(n, _)| n.as_str()).unwrap_or("");
    let factors = (kind == "oee").then(|| {
        json!({"availability": get("availability"), "performance": get("performance"), "quality": get("quality")})
    });
    json!({
        "name": r.kpi,
        "kind": kind,
        "window": r.window,
        "label": r.label,
        "start_ms": r.start_ms,
        "end_ms": r.closed.then_some(r.end_ms),
        "until_ms": r.until_ms,
        "closed": r.closed,
        "value": r.values.first().and_then(|(_, v)| *v).filter(|v| v.is_finite()),
        "unit": r.unit,
        "target": J::Null,
        "quality": format!("{:?}", r.quality).to_lowercase(),
        "coverage": r.coverage,
        "factors": factors,
    })
}

pub async fn overview(State(st): State<St>) -> Response {
    let cfg = st.config.borrow().clone();
    let board = st.alarms.snapshot();
    let count = |p: u8| {
        board
            .views
            .iter()
            .filter(|v| {
                v.priority == p
                    && v.active
                    && v.state != "shelved"
                    && v.state != "suppressed"
                    && v.state != "out_of_service"
            })
            .count()
    };
    Json(json!({
        "node": {"site": cfg.node.site_id, "node": cfg.node.node_id, "version": env!("CARGO_PKG_VERSION"), "started_ms": st.started_ms},
        "now_ms": now_ms(),
        "devices": devices(&st).await,
        "kpis": st.kpis.all().iter().map(kpi_json).collect::<Vec<_>>(),
        "alarms": {"urgent": count(4), "high": count(3), "medium": count(2), "low": count(1),
                    "unacknowledged": board.unacknowledged(), "flood": board.health.in_flood,
                    "new_last_10min": board.new_last_10min},
        "hub": hub_link(&st),
    }))
    .into_response()
}

pub async fn tags(State(st): State<St>) -> Response {
    let cfg = st.config.borrow().clone();
    let live = st.live.read().await;
    let mut limits: HashMap<&str, Vec<J>> = HashMap::new();
    for a in &cfg.alarms {
        if let models::alarm::machine::Detector::Limit { limit, .. } = a.spec.detector
            && a.model.is_none()
        {
            limits.entry(a.tag.as_str()).or_default().push(
                json!({"alarm": a.name, "kind": a.kind, "value": limit, "priority": a.spec.priority as u8}),
            );
        }
    }
    let out: Vec<J> = cfg
        .tags
        .iter()
        .map(|t| {
            let kind = match live.get(t.name.as_str()).and_then(|s| s.value.as_ref()) {
                Some(drivers::Value::Bool(_)) => "bool",
                Some(drivers::Value::String(_)) => "text",
                _ => "number",
            };
            // Three missed polls (at least 5 s) make a value stale on the page.
            let stale_after = (cfg.poll_interval_of(t).as_millis() as i64 * 3).max(5_000);
            json!({
                "name": t.name, "device": t.device, "unit": t.unit, "description": t.description,
                "kind": kind, "range": t.range.map(|(a, b)| [a, b]), "stale_after_ms": stale_after,
                "writable": t.writable, "limits": limits.get(t.name.as_str()).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Json(out).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Range {
    from: Option<i64>,
    to: Option<i64>,
    points: Option<usize>,
    tags: Option<String>,
}

fn range(q: &Range) -> Result<(i64, i64, usize), Problem> {
    let to = q.to.unwrap_or_else(now_ms);
    let from = q.from.unwrap_or(to - 3_600_000);
    if from >= to {
        return Err(Problem::bad_request(
            "`from` must be before `to` (milliseconds since 1970)",
        ));
    }
    let points = q.points.unwrap_or(600);
    if !(1..=5000).contains(&points) {
        return Err(Problem::bad_request("`points` must be 1 to 5000"));
    }
    Ok((from, to, points))
}

fn bucket_json(b: &crate::history::Bucket) -> J {
    let num = |v: f64| (b.count > 0 && v.is_finite()).then_some(v);
    json!({
        "t": b.start_ms, "min": num(b.min), "max": num(b.max), "avg": num(b.avg),
        "last": b.last_text.clone().map(J::String).unwrap_or(J::Null),
        "n": b.samples, "good": b.good_fraction,
    })
}

pub async fn history(
    State(st): State<St>,
    Path(tag): Path<String>,
    Query(q): Query<Range>,
) -> Response {
    let cfg = st.config.borrow().clone();
    let Some(t) = cfg.tags.iter().find(|t| t.name == tag) else {
        return Problem::new(StatusCode::NOT_FOUND, format!("no tag named {tag:?}"))
            .into_response();
    };
    let unit = t.unit.clone();
    let (from, to, points) = match range(&q) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let db = cfg.storage.path.clone();
    let name = tag.clone();
    let rows = blocking(move || {
        let r = HistoryReader::open(&db).map_err(|e| e.to_string())?;
        r.downsample(&name, from, to, points)
            .map_err(|e| e.to_string())
    })
    .await;
    match rows {
        Ok(rows) => Json(json!({
            "tag": tag, "unit": unit, "from_ms": from, "to_ms": to,
            "buckets": rows.iter().map(bucket_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn history_csv(State(st): State<St>, Query(q): Query<Range>) -> Response {
    let cfg = st.config.borrow().clone();
    let names: Vec<String> = q
        .tags
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() || names.len() > 32 {
        return Problem::bad_request("give 1 to 32 tags: ?tags=a,b").into_response();
    }
    if let Some(n) = names
        .iter()
        .find(|n| !cfg.tags.iter().any(|t| &t.name == *n))
    {
        return Problem::new(StatusCode::NOT_FOUND, format!("no tag named {n:?}")).into_response();
    }
    let (from, to, points) = match range(&q) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let db = cfg.storage.path.clone();
    let out = blocking(move || {
        let r = HistoryReader::open(&db).map_err(|e| e.to_string())?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
            "time",
            "tag",
            "min",
            "avg",
            "max",
            "last",
            "samples",
            "good_fraction",
        ]);
        for n in &names {
            for b in r
                .downsample(n, from, to, points)
                .map_err(|e| e.to_string())?
            {
                let t = std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(u64::try_from(b.start_ms).unwrap_or(0));
                let num = |v: f64| {
                    if b.count > 0 {
                        v.to_string()
                    } else {
                        String::new()
                    }
                };
                let _ = w.write_record([
                    humantime::format_rfc3339_millis(t).to_string(),
                    n.clone(),
                    num(b.min),
                    num(b.avg),
                    num(b.max),
                    b.last_text.clone().unwrap_or_default(),
                    b.samples.to_string(),
                    b.good_fraction.to_string(),
                ]);
            }
        }
        w.into_inner().map_err(|e| e.to_string())
    })
    .await;
    match out {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"apos-history.csv\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn kpis(State(st): State<St>) -> Response {
    let db = st.config.borrow().storage.path.clone();
    let current = st.kpis.all();
    let closed = blocking(move || {
        let c = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        crate::kpi::stored(&c, 50).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_default();
    let mut out: Vec<J> = current.iter().map(kpi_json).collect();
    for k in closed.iter().filter(|k| k.closed) {
        out.push(json!({
            "name": k.kpi, "kind": J::Null, "window": k.window, "label": k.label,
            "start_ms": k.start_ms, "end_ms": k.end_ms, "until_ms": k.until_ms, "closed": true,
            "value": k.value.filter(|v| v.is_finite()), "unit": J::Null, "target": J::Null,
            "quality": k.quality, "coverage": k.coverage, "factors": J::Null,
        }));
    }
    Json(out).into_response()
}

pub async fn forecasts(State(st): State<St>) -> Response {
    let cfg = st.config.borrow().clone();
    let (Some(fc), db) = (cfg.forecast.clone(), cfg.storage.path.clone()) else {
        return Json(json!([])).into_response();
    };
    let units: HashMap<String, Option<String>> = cfg
        .tags
        .iter()
        .map(|t| (t.name.clone(), t.unit.clone()))
        .collect();
    let models = st.models.clone();
    let out = blocking(move || {
        let reader = HistoryReader::open(&db).map_err(|e| e.to_string())?;
        let now = now_ms();
        let mut out = Vec::new();
        for (name, _) in models.list() {
            let Some(f) = models.get(&name) else { continue };
            let m = &f.manifest;
            let latest = models.latest(&name);
            let (mae, mape, n) = latest
                .as_ref()
                .and_then(|l| l.accuracy)
                .map_or((None, None, 0), |(a, b, n)| (Some(a), b, n));
            let points: Vec<J> = latest
                .as_ref()
                .map(|l| {
                    let r = &l.forecast;
                    r.values
                        .iter()
                        .enumerate()
                        .map(|(k, v)| {
                            let band = mae.unwrap_or(0.0);
                            json!({"t": r.origin_ms + k as i64 * r.step_ms, "value": v, "lo": v - band, "hi": v + band})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let horizon_ms = i64::try_from(m.output_step.as_millis()).unwrap_or(0) * m.horizon as i64;
            let actual: Vec<J> = reader
                .downsample(&m.target, now - 4 * horizon_ms.max(60_000), now, 240)
                .unwrap_or_default()
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| json!({"t": b.start_ms, "value": b.avg}))
                .collect();
            let explanation: Vec<J> = match crate::forecast::explain_now(&reader, &f, now, fc.max_hold, fc.explain_max_features) {
                Ok((_, e)) => {
                    let mut c: Vec<(String, f64)> = e
                        .contributions
                        .iter()
                        .map(|(n, v)| (n.clone(), v.iter().sum::<f64>() / v.len().max(1) as f64))
                        .collect();
                    c.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
                    c.truncate(8);
                    c.into_iter().map(|(feature, contribution)| json!({"feature": feature, "contribution": contribution})).collect()
                }
                Err(_) => Vec::new(),
            };
            out.push(json!({
                "model": name, "target": m.target, "unit": units.get(&m.target).cloned().flatten(),
                "issued_ms": latest.as_ref().map(|l| l.forecast.origin_ms),
                "horizon_s": horizon_ms / 1000, "points": points, "actual": actual,
                "mae": mae, "mape": mape, "accuracy_n": n, "explanation": explanation,
            }));
        }
        Ok(out)
    })
    .await;
    match out {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn alarms(State(st): State<St>) -> Response {
    let b = st.alarms.snapshot();
    Json(json!({"seq": b.seq, "flood": b.health.in_flood, "new_last_10min": b.new_last_10min, "alarms": b.views}))
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct Page {
    before: Option<i64>,
    limit: Option<usize>,
}

pub async fn alarm_history(State(st): State<St>, Query(q): Query<Page>) -> Response {
    let db = st.config.borrow().storage.path.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q.before.unwrap_or(i64::MAX);
    let rows = blocking(move || {
        let c = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        let mut s = c
            .prepare(
                "SELECT rowid, ts_ms, alarm, change, state, priority, value, by_user, comment
                 FROM alarm_journal WHERE rowid < ?1 ORDER BY rowid DESC LIMIT ?2",
            )
            .map_err(|e| e.to_string())?;
        let rows = s
            .query_map(rusqlite::params![before, limit as i64], |r| {
                Ok(json!({
                    "seq": r.get::<_, i64>(0)?, "ts_ms": r.get::<_, i64>(1)?, "alarm": r.get::<_, String>(2)?,
                    "change": r.get::<_, String>(3)?, "state": r.get::<_, String>(4)?, "priority": r.get::<_, i64>(5)?,
                    "value": r.get::<_, Option<f64>>(6)?, "by": r.get::<_, Option<String>>(7)?, "comment": r.get::<_, Option<String>>(8)?,
                }))
            })
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(rows)
    })
    .await;
    match rows {
        Ok(entries) => Json(json!({"entries": entries})).into_response(),
        Err(p) => p.into_response(),
    }
}

pub async fn diagnostics(State(st): State<St>) -> Response {
    let cfg = st.config.borrow().clone();
    let h = st.history_stats.snapshot();
    let (seen, stored, filtered) = st.stats.snapshot();
    let db = cfg.storage.path.clone();
    let (size, free) = blocking(move || {
        let size: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
            .map(|m| m.len())
            .sum();
        Ok((size, db.parent().and_then(crate::history::free_bytes)))
    })
    .await
    .unwrap_or((0, None));
    let y = &st.sync_stats;
    let board = st.alarms.snapshot();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": (now_ms() - st.started_ms) / 1000,
        "devices": devices(&st).await,
        "hub": hub_link(&st),
        "outbox": {"depth": y.depth.load(Relaxed), "oldest_unacked_s": y.oldest_unacked_ms.load(Relaxed) / 1000,
                   "sealed": h.batches_sealed, "published": y.published.load(Relaxed), "acked": y.acked.load(Relaxed),
                   "resent": y.resent.load(Relaxed), "dropped": h.outbox_dropped},
        "storage": {"path": cfg.storage.path, "size_bytes": size, "max_size_bytes": cfg.storage.retention_bytes,
                    "free_bytes": free, "retention_s": cfg.storage.retention_age.as_secs(),
                    "over_limit": h.over_limit == 1, "write_failures": h.store_failures},
        "samples": {"seen": seen, "stored": stored, "filtered": filtered},
        "alarm_health": board.health,
        "websocket_clients": st.ws_clients.load(Relaxed),
    }))
    .into_response()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShelveBody {
    reason: String,
    minutes: Option<u32>,
    one_shot: Option<bool>,
}

fn text(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

async fn act(
    st: &St,
    caller: &Caller,
    name: &str,
    event: Event,
    action: &str,
    detail: String,
) -> Response {
    let who = caller.user.clone().unwrap_or_default();
    match st.alarms.act(name, event).await {
        Ok(view) => {
            let audit = st.core.audit.clone();
            let entry = web::audit::NewAudit {
                actor: who,
                action: action.into(),
                target: name.into(),
                detail,
                addr: caller.addr_string(),
            };
            let logged = tokio::task::spawn_blocking(move || audit.append(entry, now_ms())).await;
            if !matches!(logged, Ok(Ok(_))) {
                tracing::error!(
                    alarm = name,
                    action,
                    "ALARM the audit log could not record an operator action"
                );
            }
            Json(view).into_response()
        }
        Err(CommandError::Unknown(n)) => {
            Problem::new(StatusCode::NOT_FOUND, format!("no alarm named {n:?}")).into_response()
        }
        Err(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

pub async fn ack(
    State(st): State<St>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let b: AckBody = match body(&bytes) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let comment = b.comment.map(|c| text(&c, 500)).filter(|c| !c.is_empty());
    let ev = Event::Ack {
        by: caller.user.clone().unwrap_or_default(),
        comment: comment.clone(),
    };
    act(
        &st,
        &caller,
        &name,
        ev,
        "alarm_ack",
        comment.unwrap_or_default(),
    )
    .await
}

pub async fn shelve(
    State(st): State<St>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let b: ShelveBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return Problem::bad_request(format!("invalid JSON body: {e}; send {{\"reason\": \"…\", \"minutes\": 60}} or {{\"reason\": \"…\", \"one_shot\": true}}")).into_response(),
    };
    let reason = text(&b.reason, 500);
    if reason.trim().is_empty() {
        return Problem::bad_request("a shelve needs a reason").into_response();
    }
    let until = match (b.minutes, b.one_shot) {
        (Some(m), None | Some(false)) if (1..=1440).contains(&m) => {
            Some(now_ms() + i64::from(m) * 60_000)
        }
        (None, Some(true)) => None,
        _ => {
            return Problem::bad_request(
                "give `minutes` (1 to 1440) or `one_shot: true`, not both",
            )
            .into_response();
        }
    };
    let detail = match until {
        Some(_) => format!("{} min: {reason}", b.minutes.unwrap_or(0)),
        None => format!("one-shot: {reason}"),
    };
    let ev = Event::Shelve {
        by: caller.user.clone().unwrap_or_default(),
        reason,
        until_ms: until,
    };
    act(&st, &caller, &name, ev, "alarm_shelve", detail).await
}

pub async fn unshelve(State(st): State<St>, caller: Caller, Path(name): Path<String>) -> Response {
    let ev = Event::Unshelve {
        by: caller.user.clone().unwrap_or_default(),
    };
    act(&st, &caller, &name, ev, "alarm_unshelve", String::new()).await
}
