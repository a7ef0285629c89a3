//! Driving a `rumqttc` event loop safely (feature `mqtt`).
//!
//! `rumqttc::EventLoop::poll` is not cancel-safe: while it is not connected
//! it opens the TCP connection and waits for the CONNACK inside the one
//! future, and while connected it may be half-way through writing a packet.
//! Polling it as one branch of a `select!` next to a 200 ms tick drops that
//! future whenever the tick wins. A broker that took longer than the tick
//! to answer CONNECT (the hub's gate handing over a killed node's session,
//! a loaded machine) was then never connected to: every attempt was
//! abandoned and started again, without an error to log. That stalled a
//! CI run for 60 s with 7 batches waiting.
//!
//! So the event loop gets a task of its own, which is never cancelled
//! mid-poll, and hands every event to the owner through a bounded channel.
//! The channel **blocks** when full: the poller stops reading from the
//! broker until the owner catches up, which is TCP back-pressure, not loss.

use std::time::Duration;

use rumqttc::{ConnectionError, Event, EventLoop, Packet};
use tokio::sync::mpsc;

/// How long the poller waits after a connection error before the next
/// attempt: doubling from `first` up to `max`, back to `first` after a
/// CONNACK.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Events in flight between the poller and its owner. Small: an event can
/// carry a message of the largest size allowed (the hub's 2 MiB default),
/// so 64 of them let a node flooding its topic hold 128 MiB of the hub's
/// memory in this queue alone (the broker flood test caught it); 4 hold
/// at most 8 MiB and still keep the poller reading while the owner works.
pub const EVENT_QUEUE: usize = 4;

/// Poll `eventloop` in its own task until the returned receiver is dropped.
///
/// Every event and every connection error is delivered in order. After an
/// error the poller sleeps for the current backoff before it reconnects,
/// so the owner never sleeps and keeps serving its other branches. The
/// task ends soon after the receiver is dropped, even while it connects.
pub fn spawn_poller(
    mut eventloop: EventLoop,
    backoff: Backoff,
) -> (
    mpsc::Receiver<Result<Event, ConnectionError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let task = tokio::spawn(async move {
        let mut wait = backoff.first;
        loop {
            let ev = tokio::select! {
                _ = tx.closed() => break,
                ev = eventloop.poll() => ev,
            };
            let failed = ev.is_err();
            if matches!(ev, Ok(Event::Incoming(Packet::ConnAck(_)))) {
                wait = backoff.first;
            }
            if tx.send(ev).await.is_err() {
                break;
            }
            if failed {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(backoff.max);
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, MqttOptions};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A broker that reads CONNECT and answers CONNACK only after `delay`.
    /// Counts the connections it accepted.
    async fn slow_broker(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    if s.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    // CONNACK, session not present, accepted.
                    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                    let mut rest = [0u8; 256];
                    while s.read(&mut rest).await.unwrap_or(0) > 0 {}
                });
            }
        });
        (port, accepted)
    }

    fn client(port: u16) -> (AsyncClient, EventLoop) {
        let opts = MqttOptions::new("link-test", "127.0.0.1", port);
        let (client, mut ev) = AsyncClient::new(opts, 10);
        let mut net = ev.network_options();
        net.set_connection_timeout(10);
        ev.set_network_options(net);
        (client, ev)
    }

    const BACKOFF: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    /// The owner's loop as the edge writes it: a 50 ms tick beside the
    /// events. Through the poller the CONNACK arrives after the broker's
    /// 1 s delay, on the first connection.
    #[tokio::test]
    async fn a_slow_connack_is_waited_for_whatever_else_the_owner_does() {
        let (port, accepted) = slow_broker(Duration::from_secs(1)).await;
        let (_client, ev) = client(port);
        let (mut events, _task) = spawn_poller(ev, BACKOFF);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    ev = events.recv() => {
                        if matches!(ev, Some(Ok(Event::Incoming(Packet::ConnAck(_))))) {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        assert!(connected.is_ok(), "no CONNACK within 5 s");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// The pattern the poller replaces, kept as proof of the fault: with
    /// `poll()` as a `select!` branch beside the same tick, the 1 s CONNACK
    /// never arrives and the broker sees one abandoned connection per tick.
    #[tokio::test]
    async fn polling_inside_select_abandons_a_slow_connect() {
        let (port, accepted) = slow_broker(Duration::from_secs(1)).await;
        let (_client, mut ev) = client(port);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let connected = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    e = ev.poll() => {
                        if matches!(e, Ok(Event::Incoming(Packet::ConnAck(_)))) {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        assert!(
            connected.is_err(),
            "rumqttc's poll became cancel-safe: the poller may be simplified"
        );
        assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) > 5);
    }

    /// Dropping the receiver ends the task even while it is connecting,
    /// so a stopping node does not keep a half-open login behind it.
    #[tokio::test]
    async fn the_poller_ends_when_its_owner_goes() {
        let (port, accepted) = slow_broker(Duration::from_secs(3600)).await;
        let (_client, ev) = client(port);
        let (events, task) = spawn_poller(ev, BACKOFF);
        while accepted.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(events);
        let ended = tokio::time::timeout(Duration::from_secs(2), task).await;
        assert!(matches!(ended, Ok(Ok(()))), "the poller outlived its owner");
    }
}
