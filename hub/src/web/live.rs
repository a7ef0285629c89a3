//! The dashboards' live WebSocket (`GET /api/v1/live`, viewer): a `hello`,
//! then every [`Event`] as the hub commits it, and a `ping` every
//! [`PING`] so a page can tell a dead link from a quiet fleet
//! (docs/hub-api.md, "Live updates").
//!
//! The socket carries changes only: a page first fetches what it shows
//! over REST, then applies events. Events come from one bounded broadcast
//! ([`crate::events::EVENTS`] slots); a socket that falls that far behind
//! is closed with code [`CLOSE_LAGGING`] and its page refetches, so a slow
//! client never holds memory or slows the ingest or the others.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast;
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::{St, now_ms};
use crate::events::Event;

/// A `ping` frame this often.
pub const PING: Duration = Duration::from_secs(5);
/// Close code for a socket that lagged (the page refetches and reconnects).
pub const CLOSE_LAGGING: u16 = 4000;
/// A send that takes longer drops the socket (the client stopped reading).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers the live route.
pub fn add(t: &mut RouteTable<St>) {
    t.add(
        Method::GET,
        "/api/v1/live",
        Access::Role(Role::Viewer),
        upgrade,
    );
}

/// An `Origin`, when sent, must be this server (a page of another site
/// must not open a socket with the user's cookie; SameSite=Strict already
/// keeps the cookie away, this holds even without it).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

/// Live updates: node status, new KPI values, alarm journal entries, alerts.
#[utoipa::path(get, path = "/api/v1/live", tag = "monitoring",
    description = "WebSocket (upgrade). Frames are JSON text: `{type:\"hello\",now_ms}` first, then `node`, `kpis`, `alarms` and `alert` events as the hub commits them, and `{type:\"ping\",now_ms}` every 5 s. A client that falls 1024 events behind is closed with code 4000: refetch over REST, then reconnect.",
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 400, description = "not a WebSocket upgrade", body = web::problem::Problem, content_type = "application/problem+json")))]
pub async fn upgrade(
    State(st): State<St>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !same_origin(&headers) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "the Origin header does not match this server",
        )
        .into_response();
    }
    match ws {
        Ok(ws) => ws
            .max_message_size(64 * 1024)
            .on_upgrade(move |socket| client(socket, st)),
        Err(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            format!("this route is a WebSocket: {e}"),
        )
        .into_response(),
    }
}

struct ClientGuard(St);
impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Relaxed);
    }
}

async fn client(mut socket: WebSocket, st: St) {
    st.ws_clients.fetch_add(1, Relaxed);
    let _guard = ClientGuard(st.clone());
    // Subscribed before the hello: whatever the page fetches after it sees
    // the hello, later changes arrive here.
    let mut events = st.events.subscribe();
    let hello = json!({"type": "hello", "now_ms": now_ms()}).to_string();
    if send(&mut socket, hello).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let text = tokio::select! {
            e = events.recv() => match e {
                Ok(e) => frame(&e),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    lagging(socket).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ping.tick() => json!({"type": "ping", "now_ms": now_ms()}).to_string(),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // The page sends nothing that matters; pings are answered by axum.
                Some(Ok(_)) => continue,
            },
        };
        if send(&mut socket, text).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

fn frame(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialize a live event");
        json!({"type": "error"}).to_string()
    })
}

async fn send(socket: &mut WebSocket, text: String) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn lagging(mut socket: WebSocket) {
    tracing::debug!("a live socket fell behind; closed so its page refetches");
    let _ = tokio::time::timeout(
        SEND_TIMEOUT,
        socket.send(Message::Close(Some(CloseFrame {
            code: CLOSE_LAGGING,
            reason: "lagging".into(),
        }))),
    )
    .await;
}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(upgrade))]
pub struct Doc;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn foreign_origins_are_refused() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h), "no Origin: not a browser page");
        h.insert(header::HOST, HeaderValue::from_static("hub:8090"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://hub:8090"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil:8090"),
        );
        assert!(!same_origin(&h));
    }
}
