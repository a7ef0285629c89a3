//! The live WebSocket (`/api/v1/live`): a snapshot, then deltas of the
//! latest value per tag every 200 ms, every alarm transition numbered, and
//! a status heartbeat every second (docs/hmi-api.md, "Live updates").
//!
//! One fanout task scans the live table and serialises each delta once;
//! every socket gets the same `Arc<str>`. A socket that falls 16 frames
//! (about 3 s) behind is closed with code 4000 and the page reconnects to
//! a fresh snapshot: a slow tablet never holds memory or slows the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use drivers::{Quality, Sample, TagName, Value};
use serde_json::{Value as J, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::St;

/// Deltas are cut this often.
pub const FLUSH: Duration = Duration::from_millis(200);
/// Frames a socket may fall behind before it is closed and resyncs.
pub const FRAME_QUEUE: usize = 16;
/// No sample for this long: the data path is reported lost.
pub const DATA_PATH_TIMEOUT_MS: i64 = 5_000;
/// Close code for a socket that lagged (the page reconnects at once).
pub const CLOSE_LAGGING: u16 = 4000;

/// The shared frames (deltas and status), serialised once.
#[derive(Debug, Clone)]
pub struct Fanout {
    frames: broadcast::Sender<Arc<str>>,
}

/// The fanout task, before it runs.
#[derive(Debug)]
pub struct FanoutRun {
    frames: broadcast::Sender<Arc<str>>,
}

pub fn quality(q: &Quality) -> (&'static str, Option<String>) {
    match q {
        Quality::Good => ("good", None),
        Quality::Uncertain(r) => ("uncertain", Some(r.to_string())),
        Quality::Bad(r) => ("bad", Some(r.to_string())),
    }
}

pub fn value_json(v: &Option<Value>) -> J {
    match v {
        None => J::Null,
        Some(Value::Bool(b)) => J::Bool(*b),
        Some(Value::I64(i)) => json!(i),
        Some(Value::U64(u)) => json!(u),
        Some(Value::F64(f)) if f.is_finite() => json!(f),
        Some(Value::F64(_)) => J::Null,
        Some(Value::String(s)) => J::String(s.clone()),
    }
}

pub fn live_json(s: &Sample) -> J {
    let (q, r) = quality(&s.quality);
    json!({"tag": &*s.tag, "v": value_json(&s.value), "q": q, "r": r, "ts": s.ts.as_millis()})
}

fn now_ms() -> i64 {
    drivers::Timestamp::now().as_millis()
}

impl Fanout {
    pub fn new() -> (Fanout, FanoutRun) {
        let (frames, _) = broadcast::channel(FRAME_QUEUE);
        (
            Fanout {
                frames: frames.clone(),
            },
            FanoutRun { frames },
        )
    }
}

/// The status block of snapshots and heartbeats.
pub async fn status(st: &St) -> J {
    let statuses: Vec<drivers::DriverStatus> =
        st.drivers.lock().await.iter().map(|d| d.status()).collect();
    let board = st.alarms.snapshot();
    json!({
        "data_path_ok": st.fanout_data_ok(),
        "hub": super::api::hub_link(st),
        "devices_up": statuses.iter().filter(|s| s.connected).count(),
        "devices": statuses.len(),
        "unacknowledged": board.unacknowledged(),
        "flood": board.health.in_flood,
        "new_last_10min": board.new_last_10min,
    })
}

impl super::HmiState {
    /// Whether samples reached the live table in the last 5 s.
    pub fn fanout_data_ok(&self) -> bool {
        now_ms() - self.last_sample_ms.load(Relaxed) <= DATA_PATH_TIMEOUT_MS
    }
}

impl FanoutRun {
    pub async fn run(self, st: St, cancel: CancellationToken) {
        let mut sent: HashMap<TagName, (i64, u8)> = HashMap::new();
        let mut flush = tokio::time::interval(FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = st.stats.samples_in.load(Relaxed);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = flush.tick() => {}
            }
            ticks += 1;
            let seen = st.stats.samples_in.load(Relaxed);
            if seen != last_seen {
                last_seen = seen;
                st.last_sample_ms.store(now_ms(), Relaxed);
            }
            if self.frames.receiver_count() == 0 {
                // Nobody watching: keep `sent` honest for the next client
                // anyway (it gets a snapshot first).
                sent.clear();
                continue;
            }
            let changed: Vec<J> = {
                let live = st.live.read().await;
                let mut out = Vec::new();
                for (tag, s) in live.iter() {
                    let key = (s.ts.as_millis(), s.quality.code());
                    if sent.get(tag) != Some(&key) {
                        sent.insert(tag.clone(), key);
                        out.push(live_json(s));
                    }
                }
                out
            };
            if !changed.is_empty() {
                let frame = json!({"type": "delta", "now_ms": now_ms(), "tags": changed});
                let _ = self.frames.send(Arc::from(frame.to_string()));
            }
            if ticks.is_multiple_of(5) {
                let frame =
                    json!({"type": "status", "now_ms": now_ms(), "status": status(&st).await});
                let _ = self.frames.send(Arc::from(frame.to_string()));
            }
        }
    }
}

pub async fn upgrade(State(st): State<St>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| client(socket, st))
}

struct ClientGuard(St);
impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Relaxed);
    }
}

async fn snapshot(st: &St) -> (String, u64) {
    let tags: Vec<J> = st.live.read().await.values().map(live_json).collect();
    let board = st.alarms.snapshot();
    let frame = json!({
        "type": "snapshot",
        "now_ms": now_ms(),
        "alarm_seq": board.seq,
        "tags": tags,
        "alarms": board.views,
        "status": status(st).await,
    });
    (frame.to_string(), board.seq)
}

async fn client(mut socket: WebSocket, st: St) {
    st.ws_clients.fetch_add(1, Relaxed);
    let _guard = ClientGuard(st.clone());
    // Subscribe before the snapshot so nothing falls between them.
    let mut frames = st.fanout.frames.subscribe();
    let mut notices = st.alarms.notices.subscribe();
    let (snap, mut alarm_seq) = snapshot(&st).await;
    if socket.send(Message::Text(snap.into())).await.is_err() {
        return;
    }
    loop {
        let msg = tokio::select! {
            f = frames.recv() => match f {
                Ok(frame) => Message::Text(Utf8Bytes::from(&*frame)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    lagging(socket).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            n = notices.recv() => match n {
                // Notices the snapshot already covers are skipped.
                Ok(n) if n.seq <= alarm_seq => continue,
                Ok(n) => {
                    alarm_seq = n.seq;
                    Message::Text(json!({"type": "alarm", "seq": n.seq, "change": n.change, "alarm": n.alarm}).to_string().into())
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    lagging(socket).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // The page sends nothing that matters; pings are answered by axum.
                Some(Ok(_)) => continue,
            },
        };
        let send = tokio::time::timeout(Duration::from_secs(5), socket.send(msg)).await;
        if !matches!(send, Ok(Ok(()))) {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn lagging(mut socket: WebSocket) {
    tracing::debug!("a live socket fell behind; closed so it resyncs");
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_LAGGING,
            reason: "lagging".into(),
        })))
        .await;
}
