//! Per-tag window aggregation (pure: no clock, no I/O).
//!
//! Every sample the drivers deliver is pushed (before the storage filter,
//! so counts are true). Windows are aligned to the Unix epoch
//! (`[k·width, (k+1)·width)`), one series per configured width. A window
//! closes when the caller's clock passes its end plus a grace period;
//! samples older than the open window are late, counted, and not
//! aggregated (a window already sealed into the outbox never changes).
//!
//! Time-weighted mean: a good value holds from its timestamp until the next
//! sample of the tag, or the window's end; it carries into the next window.
//! A bad or valueless sample ends the hold, so time under bad quality is
//! left out. A window with no time under a good value has `twa` = NaN.

use std::collections::HashMap;

use drivers::{Sample, TagName};
use protocol::v1::{Window, WindowSet};

#[derive(Debug, Clone)]
struct Acc {
    start: i64,
    count: u32,
    good: u32,
    min: f64,
    max: f64,
    sum: f64,
    twa_num: f64,
    twa_den: f64,
    last: f64,
    /// The good value currently holding, since when.
    hold: Option<(i64, f64)>,
}

impl Acc {
    fn new(start: i64, hold: Option<(i64, f64)>) -> Acc {
        Acc {
            start,
            count: 0,
            good: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            twa_num: 0.0,
            twa_den: 0.0,
            last: f64::NAN,
            hold: hold.map(|(_, v)| (start, v)),
        }
    }

    /// Account the held value up to `until`.
    fn hold_until(&mut self, until: i64) {
        if let Some((since, v)) = self.hold {
            let dt = (until - since.max(self.start)).max(0) as f64;
            self.twa_num += v * dt;
            self.twa_den += dt;
        }
    }

    fn window(&self, tag: &str) -> Window {
        let no = f64::NAN;
        let has = self.good > 0;
        Window {
            tag: tag.to_owned(),
            count: self.count,
            good: self.good,
            min: if has { self.min } else { no },
            max: if has { self.max } else { no },
            mean: if has {
                self.sum / f64::from(self.good)
            } else {
                no
            },
            twa: if self.twa_den > 0.0 {
                self.twa_num / self.twa_den
            } else {
                no
            },
            last: if has { self.last } else { no },
        }
    }
}

/// Counters for the status page and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorStats {
    pub samples: u64,
    pub late: u64,
    pub windows_closed: u64,
}

/// Aggregation for a set of window widths.
#[derive(Debug)]
pub struct Aggregator {
    widths: Vec<i64>,
    grace_ms: i64,
    /// Per width: tag → open window.
    open: Vec<HashMap<TagName, Acc>>,
    stats: AggregatorStats,
}

fn floor_to(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

impl Aggregator {
    /// `widths_ms` each > 0; `grace_ms`: how long after a window's end
    /// samples may still arrive for it (driver and pipeline latency).
    pub fn new(widths_ms: &[u32], grace_ms: u32) -> Aggregator {
        Aggregator {
            widths: widths_ms.iter().map(|&w| i64::from(w.max(1))).collect(),
            grace_ms: i64::from(grace_ms),
            open: widths_ms.iter().map(|_| HashMap::new()).collect(),
            stats: AggregatorStats::default(),
        }
    }

    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    /// Account one sample. Windows it moves past are closed into `out`.
    pub fn push(&mut self, s: &Sample, out: &mut Vec<WindowSet>) {
        self.stats.samples += 1;
        let ts = s.ts.0;
        let good_value = if s.quality.is_good() {
            s.value
                .as_ref()
                .and_then(|v| v.as_f64())
                .filter(|v| v.is_finite())
        } else {
            None
        };
        let mut late = false;
        for (wi, &width) in self.widths.iter().enumerate() {
            let start = floor_to(ts, width);
            let map = &mut self.open[wi];
            let acc = match map.get_mut(&s.tag) {
                Some(acc) if start < acc.start => {
                    late = true;
                    continue;
                }
                Some(acc) if start > acc.start => {
                    // The tag moved into a later window: close the old one.
                    acc.hold_until(acc.start + width);
                    push_window(out, width, acc.start, acc.window(&s.tag));
                    self.stats.windows_closed += 1;
                    *acc = Acc::new(start, acc.hold);
                    acc
                }
                Some(acc) => acc,
                None => map
                    .entry(s.tag.clone())
                    .or_insert_with(|| Acc::new(start, None)),
            };
            acc.hold_until(ts);
            acc.count += 1;
            match good_value {
                Some(v) => {
                    acc.good += 1;
                    acc.min = acc.min.min(v);
                    acc.max = acc.max.max(v);
                    acc.sum += v;
                    acc.last = v;
                    acc.hold = Some((ts, v));
                }
                None => acc.hold = None,
            }
        }
        if late {
            self.stats.late += 1;
        }
    }

    /// Close every window that ended at least `grace` before `now_ms`.
    pub fn close_until(&mut self, now_ms: i64, out: &mut Vec<WindowSet>) {
        for (wi, &width) in self.widths.iter().enumerate() {
            for (tag, acc) in self.open[wi].iter_mut() {
                let end = acc.start + width;
                if end + self.grace_ms <= now_ms {
                    acc.hold_until(end);
                    push_window(out, width, acc.start, acc.window(tag));
                    self.stats.windows_closed += 1;
                    // The next window starts where the clock is now; a value
                    // still holding carries into it.
                    let next = floor_to(now_ms - self.grace_ms, width);
                    *acc = Acc::new(next.max(end), acc.hold);
                }
            }
            // A tag with no sample for a whole window and no holding value
            // has nothing to report; forget it until it speaks again.
            self.open[wi].retain(|_, acc| acc.count > 0 || acc.hold.is_some());
        }
    }

    /// Close everything now (shutdown): partial windows are not sealed, so
    /// that a window is never published twice with different contents.
    pub fn open_windows(&self) -> usize {
        self.open.iter().map(HashMap::len).sum()
    }
}

/// Group windows by (width, start) into sets.
fn push_window(out: &mut Vec<WindowSet>, width: i64, start: i64, w: Window) {
    let width_ms = u32::try_from(width).unwrap_or(u32::MAX);
    match out
        .iter_mut()
        .find(|s| s.width_ms == width_ms && s.start_ms == start)
    {
        Some(set) => set.windows.push(w),
        None => out.push(WindowSet {
            width_ms,
            start_ms: start,
            windows: vec![w],
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use drivers::{Quality, Reason, Timestamp, Value};

    fn s(tag: &str, ts: i64, v: Option<f64>) -> Sample {
        Sample {
            tag: tag.into(),
            ts: Timestamp(ts),
            value: v.map(Value::F64),
            quality: if v.is_some() {
                Quality::Good
            } else {
                Quality::Bad(Reason::ConnectionLost)
            },
        }
    }

    fn only(out: &[WindowSet]) -> &Window {
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].windows.len(), 1, "{out:?}");
        &out[0].windows[0]
    }

    #[test]
    fn statistics_of_one_window_by_hand() {
        let mut a = Aggregator::new(&[10_000], 1_000);
        let mut out = Vec::new();
        // 10 at t=0 for 2 s, 20 at t=2 s for 6 s, bad from 8 s to 9 s, 40 at 9 s to the end.
        for x in [
            s("t", 0, Some(10.0)),
            s("t", 2_000, Some(20.0)),
            s("t", 8_000, None),
            s("t", 9_000, Some(40.0)),
        ] {
            a.push(&x, &mut out);
        }
        a.close_until(10_999, &mut out);
        assert!(out.is_empty(), "grace not over yet");
        a.close_until(11_000, &mut out);
        let w = only(&out);
        assert_eq!(out[0].start_ms, 0);
        assert_eq!(out[0].width_ms, 10_000);
        assert_eq!((w.count, w.good), (4, 3));
        assert_eq!((w.min, w.max, w.last), (10.0, 40.0, 40.0));
        assert!((w.mean - 70.0 / 3.0).abs() < 1e-12);
        // (10·2 + 20·6 + 40·1) / 9 s of good time.
        assert!((w.twa - 180.0 / 9.0).abs() < 1e-12, "{}", w.twa);
        assert!((w.good_fraction() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_held_value_carries_into_the_next_window_and_late_samples_are_counted() {
        let mut a = Aggregator::new(&[10_000, 60_000], 0);
        let mut out = Vec::new();
        a.push(&s("t", 5_000, Some(1.0)), &mut out);
        // The next sample is in the next 10 s window: the first closes.
        a.push(&s("t", 15_000, Some(3.0)), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(only(&out).twa, 1.0);
        out.clear();
        // Late for the 10 s series (window 0 is sealed); counted, not aggregated.
        a.push(&s("t", 9_000, Some(100.0)), &mut out);
        assert_eq!(a.stats().late, 1);
        a.close_until(20_000, &mut out);
        let w = only(&out);
        // 1.0 held from 10 s to 15 s, then 3.0 to 20 s.
        assert_eq!(out[0].start_ms, 10_000);
        assert_eq!((w.count, w.good), (1, 1));
        assert!((w.twa - 2.0).abs() < 1e-12, "{}", w.twa);
        out.clear();
        // A quiet tag with a holding value still gets its windows.
        a.close_until(30_000, &mut out);
        let w = only(&out);
        assert_eq!(out[0].start_ms, 20_000);
        assert_eq!((w.count, w.good), (0, 0));
        assert_eq!(w.twa, 3.0);
        assert!(w.mean.is_nan() && w.last.is_nan());
        out.clear();
        a.close_until(60_000, &mut out);
        // The 60 s window [0, 60 s) and the 10 s ones up to 60 s.
        let sixty: Vec<_> = out.iter().filter(|s| s.width_ms == 60_000).collect();
        assert_eq!(sixty.len(), 1);
        let w = &sixty[0].windows[0];
        // The late sample at 9 s was still inside the open 60 s window.
        assert_eq!((w.count, w.good), (3, 3));
        assert_eq!(w.max, 100.0);
    }

    #[test]
    fn a_tag_with_only_bad_samples_reports_count_without_statistics() {
        let mut a = Aggregator::new(&[1_000], 0);
        let mut out = Vec::new();
        a.push(&s("t", 100, None), &mut out);
        a.push(&s("t", 200, None), &mut out);
        a.close_until(1_000, &mut out);
        let w = only(&out);
        assert_eq!((w.count, w.good), (2, 0));
        assert!(w.min.is_nan() && w.twa.is_nan());
        out.clear();
        // Nothing holds: the tag is forgotten until it speaks again.
        a.close_until(5_000, &mut out);
        assert!(out.is_empty());
        assert_eq!(a.open_windows(), 0);
    }
}
