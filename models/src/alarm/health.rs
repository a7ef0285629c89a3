//! Alarm-system health after EEMUA 191 / ISA-18.2 (pure: the caller passes
//! the time; no I/O).
//!
//! - **Flood**: more than [`FLOOD_BEGINS`] new alarms in the last 10
//!   minutes begins a flood; fewer than [`FLOOD_ENDS`] ends it (the gap
//!   between the two keeps a flood from flickering).
//! - **Rate**: activations per 10-minute bucket over the reporting period
//!   (the last 24 h): the average and the peak.
//! - **Time in flood**, as a share of the time observed in the period.
//! - **Top ten**: the share of all activations that the ten most frequent
//!   alarms make (a few bad actors usually cause most of the load).
//! - **Chattering**: alarms that activated [`CHATTER_COUNT`] or more times
//!   within 60 s. **Stale**: alarms active for more than 24 h.
//!
//! Memory is bounded: the 10-minute window holds at most the activations
//! of 10 minutes, each alarm keeps at most [`CHATTER_COUNT`] recent
//! activation times, and the period is a ring of 144 buckets.

use std::collections::{HashMap, VecDeque};

pub const FLOOD_WINDOW_MS: i64 = 10 * 60_000;
pub const FLOOD_BEGINS: usize = 10;
pub const FLOOD_ENDS: usize = 5;
pub const CHATTER_WINDOW_MS: i64 = 60_000;
pub const CHATTER_COUNT: usize = 3;
pub const STALE_AFTER_MS: i64 = 24 * 3_600_000;
/// 10-minute buckets in the reporting period (24 h).
const BUCKETS: usize = 144;

/// The flood began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Began { new_alarms: usize },
    Ended { lasted_ms: i64 },
}

/// What the health figures say now.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub in_flood: bool,
    /// Activations per 10 minutes over the observed part of the period.
    pub average_per_10min: f64,
    pub peak_per_10min: u64,
    /// Share (0–1) of the observed period spent in flood.
    pub flood_share: f64,
    /// Share (0–1) of activations made by the ten most frequent alarms.
    pub top10_share: f64,
    /// The ten most frequent alarms and their activations, most first.
    pub top10: Vec<(String, u64)>,
    pub chattering: Vec<String>,
    pub stale: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Health {
    started_ms: i64,
    recent: VecDeque<i64>,
    /// In a flood: flood time is accounted up to here.
    flood_since: Option<i64>,
    /// When the current (or last) flood began.
    flood_began: i64,
    /// (bucket start, activations, flood ms) per 10 minutes, oldest first.
    buckets: VecDeque<(i64, u64, i64)>,
    /// Activations per alarm in the period (approximately: counts are
    /// kept since start and halved when a day has passed, so old bad
    /// actors fade out).
    per_alarm: HashMap<String, u64>,
    counts_since_ms: i64,
    chatter: HashMap<String, VecDeque<i64>>,
}

impl Health {
    pub fn new(now_ms: i64) -> Health {
        Health {
            started_ms: now_ms,
            recent: VecDeque::new(),
            flood_since: None,
            flood_began: now_ms,
            buckets: VecDeque::new(),
            per_alarm: HashMap::new(),
            counts_since_ms: now_ms,
            chatter: HashMap::new(),
        }
    }

    fn bucket(&mut self, now_ms: i64) -> &mut (i64, u64, i64) {
        let start = now_ms.div_euclid(FLOOD_WINDOW_MS) * FLOOD_WINDOW_MS;
        if self.buckets.back().is_none_or(|b| b.0 < start) {
            self.buckets.push_back((start, 0, 0));
            while self.buckets.len() > BUCKETS {
                self.buckets.pop_front();
            }
        }
        // Just pushed or already there.
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    /// Account flood time up to `now_ms` into the buckets it falls in.
    fn account_flood(&mut self, now_ms: i64) {
        let Some(since) = self.flood_since else {
            return;
        };
        let mut t = since;
        while t < now_ms {
            let end = ((t.div_euclid(FLOOD_WINDOW_MS) + 1) * FLOOD_WINDOW_MS).min(now_ms);
            self.bucket(t).2 += end - t;
            t = end;
        }
        self.flood_since = Some(now_ms);
    }

    /// An alarm became active (a new alarm, not a re-alarm).
    pub fn activated(&mut self, alarm: &str, now_ms: i64) -> Option<Flood> {
        self.bucket(now_ms).1 += 1;
        if now_ms - self.counts_since_ms > STALE_AFTER_MS {
            self.per_alarm.retain(|_, n| {
                *n /= 2;
                *n > 0
            });
            self.counts_since_ms = now_ms;
        }
        *self.per_alarm.entry(alarm.to_owned()).or_default() += 1;
        let times = self.chatter.entry(alarm.to_owned()).or_default();
        times.push_back(now_ms);
        while times.len() > CHATTER_COUNT {
            times.pop_front();
        }
        self.recent.push_back(now_ms);
        self.tick(now_ms)
    }

    /// Time passes: old activations leave the 10-minute window.
    pub fn tick(&mut self, now_ms: i64) -> Option<Flood> {
        while self
            .recent
            .front()
            .is_some_and(|t| now_ms - t >= FLOOD_WINDOW_MS)
        {
            self.recent.pop_front();
        }
        self.account_flood(now_ms);
        match self.flood_since {
            None if self.recent.len() > FLOOD_BEGINS => {
                self.flood_since = Some(now_ms);
                self.flood_began = now_ms;
                Some(Flood::Began {
                    new_alarms: self.recent.len(),
                })
            }
            Some(_) if self.recent.len() < FLOOD_ENDS => {
                self.flood_since = None;
                Some(Flood::Ended {
                    lasted_ms: now_ms - self.flood_began,
                })
            }
            _ => None,
        }
    }

    /// New alarms in the last 10 minutes (as of the last tick).
    pub fn recent_count(&self) -> usize {
        self.recent.len()
    }

    /// The figures at `now_ms`; `active_since` lists the alarms active now
    /// and since when (for stale alarms).
    pub fn report<'a>(
        &mut self,
        now_ms: i64,
        active_since: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> HealthReport {
        self.tick(now_ms);
        let period_start = now_ms - BUCKETS as i64 * FLOOD_WINDOW_MS;
        let observed_ms = (now_ms - self.started_ms.max(period_start)).max(1);
        let in_period = self
            .buckets
            .iter()
            .filter(|b| b.0 >= period_start - FLOOD_WINDOW_MS);
        let (total, flood_ms, peak) = in_period.fold((0u64, 0i64, 0u64), |(t, f, p), b| {
            (t + b.1, f + b.2, p.max(b.1))
        });
        let mut top: Vec<(String, u64)> = self
            .per_alarm
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let all: u64 = top.iter().map(|t| t.1).sum();
        top.truncate(10);
        let top_sum: u64 = top.iter().map(|t| t.1).sum();
        let mut chattering: Vec<String> = self
            .chatter
            .iter()
            .filter(|(_, t)| {
                t.len() >= CHATTER_COUNT
                    && t.back()
                        .zip(t.front())
                        .is_some_and(|(b, f)| b - f <= CHATTER_WINDOW_MS)
                    && t.back().is_some_and(|b| now_ms - b <= CHATTER_WINDOW_MS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        chattering.sort();
        let mut stale: Vec<String> = active_since
            .into_iter()
            .filter(|(_, since)| now_ms - since > STALE_AFTER_MS)
            .map(|(k, _)| k.to_owned())
            .collect();
        stale.sort();
        HealthReport {
            in_flood: self.flood_since.is_some(),
            average_per_10min: total as f64 * FLOOD_WINDOW_MS as f64 / observed_ms as f64,
            peak_per_10min: peak,
            flood_share: (flood_ms as f64 / observed_ms as f64).min(1.0),
            top10_share: if all > 0 {
                top_sum as f64 / all as f64
            } else {
                0.0
            },
            top10: top,
            chattering,
            stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn more_than_ten_in_ten_minutes_is_a_flood_fewer_than_five_ends_it() {
        let mut h = Health::new(0);
        for k in 0..10 {
            assert_eq!(h.activated(&format!("a{k}"), k * 30_000), None);
        }
        let began = h.activated("a10", 300_000);
        assert_eq!(began, Some(Flood::Began { new_alarms: 11 }));
        assert_eq!(h.tick(400_000), None);
        // At 13.5 min the first eight have left the window: 3 remain.
        let ended = h.tick(810_000);
        assert_eq!(ended, Some(Flood::Ended { lasted_ms: 510_000 }));
        let r = h.report(810_000, []);
        assert!(!r.in_flood);
        assert!(
            (r.flood_share - 510_000.0 / 810_000.0).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(r.peak_per_10min, 11);
    }

    #[test]
    fn rates_top_ten_chattering_and_stale() {
        let mut h = Health::new(0);
        // One alarm chatters: three activations within 40 s.
        for t in [0, 20_000, 40_000] {
            h.activated("pump.trip", t);
        }
        // Eleven others once each, spread over an hour.
        for k in 0..11 {
            h.activated(&format!("tag{k:02}.hi"), 5 * MIN + k * 5 * MIN);
        }
        let now = 60 * MIN;
        let r = h.report(
            now,
            [
                ("column.lo", now - 25 * 3_600_000),
                ("heater.hi", now - MIN),
            ],
        );
        // 14 activations in an hour: 14 / 6 per 10 minutes.
        assert!((r.average_per_10min - 14.0 / 6.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.top10[0], ("pump.trip".to_string(), 3));
        assert!((r.top10_share - 12.0 / 14.0).abs() < 1e-9);
        // The chattering stopped 59 minutes ago: no longer listed.
        assert!(r.chattering.is_empty());
        assert_eq!(r.stale, vec!["column.lo".to_string()]);
        // While it chatters, it is.
        let mut c = Health::new(0);
        for t in [0, 20_000, 40_000] {
            c.activated("pump.trip", t);
        }
        c.activated("slow.hi", 0);
        c.activated("slow.hi", 61_000);
        c.activated("slow.hi", 122_000);
        assert_eq!(c.report(130_000, []).chattering, Vec::<String>::new());
        let mut c = Health::new(0);
        for t in [0, 20_000, 40_000] {
            c.activated("pump.trip", t);
        }
        assert_eq!(
            c.report(50_000, []).chattering,
            vec!["pump.trip".to_string()]
        );
    }
}
