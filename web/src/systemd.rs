//! systemd service integration of `apos-edge run` and `apos-hub run`
//! (units with `Type=notify` and `WatchdogSec=`): the sd_notify messages
//! ([`Notifier`]) and the heartbeat registry ([`Heartbeats`]) that decides
//! whether the watchdog is fed.
//!
//! - `READY=1` is sent by the binaries once `Edge::start` / `Hub::start`
//!   returned: configuration validated, stores open, listeners bound.
//! - `WATCHDOG=1` is sent every half `WATCHDOG_USEC`, but only while every
//!   watched stage of the pipeline has beaten recently. A stage that stops
//!   turning its loop (a hung SQLite or DuckDB call, a dead thread) stops
//!   the pings, and systemd restarts the service after `WatchdogSec=`.
//!   Pinging from a timer alone would only prove that the async runtime
//!   runs, which it does while the pipeline is stuck.
//! - `STOPPING=1` and `EXTEND_TIMEOUT_USEC=` on shutdown, while the stores
//!   flush.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent and no
//! task runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Milliseconds on the process's monotonic clock, from 1 (0 means "never").
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// How often a stage should beat when it has nothing else to do. Loops
/// that otherwise block until work arrives wake up at least this often.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// One stage's heartbeat: the stage calls [`Beat::beat`] every time its
/// loop turns. Cheap (one relaxed atomic store), cloneable, shareable
/// between threads.
#[derive(Debug, Clone, Default)]
pub struct Beat(Arc<AtomicU64>);

impl Beat {
    /// The stage is alive now.
    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    fn last_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Stage {
    name: &'static str,
    beat: Beat,
    max_silence: Duration,
    /// When the stage was registered: a stage that never beats counts as
    /// having beaten then, so it is judged stalled after `max_silence`.
    since_ms: u64,
}

/// The stages whose life the watchdog depends on. Cloning shares the
/// registry.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats(Arc<Mutex<Vec<Stage>>>);

impl Heartbeats {
    /// Watch `beat`: the pipeline counts as stalled once it has not beaten
    /// for longer than `max_silence`.
    pub fn watch(&self, name: &'static str, beat: &Beat, max_silence: Duration) {
        let stage = Stage {
            name,
            beat: beat.clone(),
            max_silence,
            since_ms: now_ms(),
        };
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stage);
    }

    /// The pipeline's health now.
    pub fn check(&self) -> Health {
        let now = now_ms();
        let stages: Vec<StageState> = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| StageState {
                name: s.name,
                last_ms: s.beat.last_ms().max(s.since_ms),
                max_silence: s.max_silence,
            })
            .collect();
        judge(&stages, now)
    }
}

/// What [`judge`] looks at for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageState {
    pub name: &'static str,
    /// Its last beat (or its registration), in ms on the monotonic clock.
    pub last_ms: u64,
    pub max_silence: Duration,
}

/// A stage that has been silent too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub name: &'static str,
    pub silent: Duration,
}

/// The verdict of [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Every stage beat within its bound: feed the watchdog.
    Alive,
    /// These stages did not: withhold the pings.
    Stalled(Vec<Stalled>),
}

/// Pure: given each stage's last beat and the time now, is the pipeline
/// alive? Silence of exactly `max_silence` still counts as alive; no
/// stage at all is alive (nothing to wait for). A beat stamped after `now`
/// (read in another order across threads) is silence 0.
pub fn judge(stages: &[StageState], now_ms: u64) -> Health {
    let stalled: Vec<Stalled> = stages
        .iter()
        .filter_map(|s| {
            let silent = Duration::from_millis(now_ms.saturating_sub(s.last_ms));
            (silent > s.max_silence).then_some(Stalled {
                name: s.name,
                silent,
            })
        })
        .collect();
    if stalled.is_empty() {
        Health::Alive
    } else {
        Health::Stalled(stalled)
    }
}

/// What the watchdog task does on one tick, from the health now and
/// whether it was withholding pings before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    Ping,
    /// Pings resume after a stall (logged once).
    Recovered,
    /// The first tick of a stall: log it, send no ping.
    StallBegins(Vec<Stalled>),
    /// Still stalled: no ping, nothing new to log.
    StillStalled,
}

/// Pure: the watchdog's step.
pub fn tick(health: Health, was_stalled: bool) -> Tick {
    match (health, was_stalled) {
        (Health::Alive, false) => Tick::Ping,
        (Health::Alive, true) => Tick::Recovered,
        (Health::Stalled(s), false) => Tick::StallBegins(s),
        (Health::Stalled(_), true) => Tick::StillStalled,
    }
}

/// Sends sd_notify messages when `NOTIFY_SOCKET` is set, else nothing.
#[derive(Debug, Clone)]
pub struct Notifier {
    active: bool,
}

impl Notifier {
    /// From the environment systemd gives the main process.
    pub fn from_env() -> Notifier {
        Notifier {
            active: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` set).
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.active {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            // Not fatal: the service runs on; systemd may time the start
            // out or miss a ping, and says so in its own log.
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// `READY=1` with a status line. Send it only once the configuration
    /// is validated, the stores are open and the listeners are bound.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A `STATUS=` line (`systemctl status` shows it).
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `STOPPING=1`, then `EXTEND_TIMEOUT_USEC=` for `flush`: the stop
    /// timeout then runs from now for at least that long, whatever is
    /// left of `TimeoutStopSec=`.
    pub fn stopping(&self, status: &str, flush: Duration) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
        let usec = u32::try_from(flush.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// The watchdog period systemd asked for (`WATCHDOG_USEC`, for this
    /// process), when it did.
    pub fn watchdog_period(&self) -> Option<Duration> {
        if !self.active {
            return None;
        }
        sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
    }

    /// Ping the watchdog every half period while `beats` says the pipeline
    /// is alive, until `cancel`. `None` when systemd asked for no
    /// watchdog. Must run inside a tokio runtime.
    pub fn spawn_watchdog(
        &self,
        beats: Heartbeats,
        cancel: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let period = self.watchdog_period()?;
        let every = period / 2;
        let me = self.clone();
        tracing::info!(
            period = ?period,
            "systemd watchdog: pinging every {every:?} while the pipeline is alive"
        );
        Some(tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut stalled = false;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = t.tick() => {}
                }
                match tick(beats.check(), stalled) {
                    Tick::Ping => me.send(&[NotifyState::Watchdog]),
                    Tick::Recovered => {
                        stalled = false;
                        tracing::warn!("the pipeline beats again; watchdog pings resume");
                        me.send(&[NotifyState::Watchdog]);
                    }
                    Tick::StallBegins(s) => {
                        stalled = true;
                        let list: Vec<String> = s
                            .iter()
                            .map(|s| format!("{} silent for {:?}", s.name, s.silent))
                            .collect();
                        tracing::error!(
                            stages = %list.join(", "),
                            "pipeline stalled: watchdog pings withheld, so systemd restarts the service after WatchdogSec"
                        );
                        me.status(&format!("stalled: {}", list.join(", ")));
                    }
                    Tick::StillStalled => {}
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn stage(name: &'static str, last_ms: u64, max_silence: Duration) -> StageState {
        StageState {
            name,
            last_ms,
            max_silence,
        }
    }

    #[test]
    fn every_stage_within_its_bound_is_alive() {
        let stages = [
            stage("writer", 9_000, 2 * S),
            stage("supervisor", 5_000, 10 * S),
        ];
        assert_eq!(judge(&stages, 10_000), Health::Alive);
        // Exactly at the bound still counts.
        assert_eq!(judge(&stages, 11_000), Health::Alive);
        assert_eq!(judge(&[], 1 << 40), Health::Alive);
    }

    #[test]
    fn one_silent_stage_stalls_the_pipeline_and_is_named() {
        let stages = [
            stage("writer", 9_000, 2 * S),
            stage("supervisor", 5_000, 10 * S),
        ];
        assert_eq!(
            judge(&stages, 11_001),
            Health::Stalled(vec![Stalled {
                name: "writer",
                silent: Duration::from_millis(2_001)
            }])
        );
        // Both, each with its own silence.
        assert_eq!(
            judge(&stages, 15_500),
            Health::Stalled(vec![
                Stalled {
                    name: "writer",
                    silent: Duration::from_millis(6_500)
                },
                Stalled {
                    name: "supervisor",
                    silent: Duration::from_millis(10_500)
                },
            ])
        );
    }

    #[test]
    fn a_beat_read_after_now_is_no_silence() {
        assert_eq!(judge(&[stage("w", 10_001, S)], 10_000), Health::Alive);
    }

    #[test]
    fn the_watchdog_pings_only_while_alive_and_logs_each_change_once() {
        let stalled = Health::Stalled(vec![Stalled {
            name: "w",
            silent: 3 * S,
        }]);
        assert_eq!(tick(Health::Alive, false), Tick::Ping);
        assert!(matches!(tick(stalled.clone(), false), Tick::StallBegins(s) if s[0].name == "w"));
        assert_eq!(tick(stalled, true), Tick::StillStalled);
        assert_eq!(tick(Health::Alive, true), Tick::Recovered);
    }

    /// The registry over real beats: a stage that never beats stalls after
    /// its bound from registration; beating brings it back.
    #[test]
    fn registry_judges_real_beats() {
        let beats = Heartbeats::default();
        let quiet = Beat::default();
        let busy = Beat::default();
        beats.watch("quiet", &quiet, Duration::from_millis(50));
        beats.watch("busy", &busy, Duration::from_secs(60));
        busy.beat();
        assert_eq!(beats.check(), Health::Alive);
        std::thread::sleep(Duration::from_millis(120));
        match beats.check() {
            Health::Stalled(s) => {
                assert_eq!(s.len(), 1);
                assert_eq!(s[0].name, "quiet");
                assert!(s[0].silent > Duration::from_millis(50), "{s:?}");
            }
            Health::Alive => panic!("a stage silent for 120 ms with a 50 ms bound is stalled"),
        }
        quiet.beat();
        assert_eq!(beats.check(), Health::Alive);
        // Clones share the registry.
        let copy = beats.clone();
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(copy.check(), Health::Stalled(_)));
    }

    #[test]
    fn nothing_is_sent_without_notify_socket() {
        // The test process has no NOTIFY_SOCKET (cargo is not systemd);
        // if it had, this test would say nothing about the code.
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            return;
        }
        let n = Notifier::from_env();
        assert!(!n.is_active());
        assert_eq!(n.watchdog_period(), None);
    }
}
