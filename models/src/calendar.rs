//! The plant calendar: shifts, days and weeks in the plant's time zone, and
//! recurring planned stops (breaks, weekends). Pure: times in and out are
//! Unix milliseconds; the time zone rules come from the bundled tz database
//! (jiff), so a gateway without tzdata still knows when a shift starts.
//!
//! Local times that do not exist (the hour skipped when clocks go forward)
//! resolve forward, and repeated ones (clocks go back) to the earlier
//! instant, so a shift that spans a change is an hour shorter or longer, as
//! it is on the plant floor.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CalendarError {
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error("a shift calendar needs at least one shift")]
    NoShifts,
    #[error("two shifts start at the same time ({0})")]
    SameStart(String),
}

/// A shift, from its start to the next shift's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub name: String,
    /// Minutes after local midnight.
    pub start_min: u32,
}

/// A recurring planned stop, `from_min` to `to_min` local time on the given
/// weekdays (Monday = 0). `to_min <= from_min` runs past midnight; equal
/// means the whole day.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStop {
    pub name: String,
    pub from_min: u32,
    pub to_min: u32,
    pub days: [bool; 7],
}

/// Which calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalendarKind {
    Shift,
    Day,
    Week,
}

/// One calendar window, `[start_ms, end_ms)`, with a label such as
/// `2026-12-01 early`, `2026-12-01` or `week of 2026-11-30`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    tz_name: String,
    /// Sorted by start.
    shifts: Vec<Shift>,
    /// Monday = 0.
    week_start: u8,
    stops: Vec<PlannedStop>,
}

impl Calendar {
    pub fn new(
        time_zone: &str,
        mut shifts: Vec<Shift>,
        week_start: u8,
        stops: Vec<PlannedStop>,
    ) -> Result<Calendar, CalendarError> {
        let tz = TimeZone::get(time_zone).map_err(|_| CalendarError::TimeZone(time_zone.into()))?;
        shifts.sort_by_key(|s| s.start_min);
        if let Some(w) = shifts.windows(2).find(|w| w[0].start_min == w[1].start_min) {
            return Err(CalendarError::SameStart(format!(
                "`{}` and `{}`",
                w[0].name, w[1].name
            )));
        }
        Ok(Calendar {
            tz,
            tz_name: time_zone.to_string(),
            shifts,
            week_start: week_start % 7,
            stops,
        })
    }

    /// Check a time zone name without building a calendar.
    pub fn check_time_zone(name: &str) -> Result<(), CalendarError> {
        TimeZone::get(name)
            .map(|_| ())
            .map_err(|_| CalendarError::TimeZone(name.into()))
    }

    /// Why shift, day and week windows would not start on a slice boundary
    /// with slices of `slice_ms` (a slice belongs wholly to the window its
    /// start is in), or `None` when they all do: every shift start, and the
    /// time zone's offsets from UTC in the years around now, must be whole
    /// slices.
    pub fn misaligned(&self, slice_ms: i64) -> Option<String> {
        let slice_ms = slice_ms.max(1);
        for s in &self.shifts {
            if (i64::from(s.start_min) * 60_000) % slice_ms != 0 {
                return Some(format!(
                    "shift `{}` starts at {:02}:{:02}, not on a slice boundary",
                    s.name,
                    s.start_min / 60,
                    s.start_min % 60
                ));
            }
        }
        let now = Timestamp::now().as_second();
        // Offsets over three years, sampled every two weeks (covers both
        // sides of every daylight-saving change).
        let mut t = now - 366 * 86_400;
        while t < now + 2 * 366 * 86_400 {
            if let Ok(ts) = Timestamp::from_second(t) {
                let off = i64::from(self.tz.to_offset(ts).seconds()) * 1000;
                if off % slice_ms != 0 {
                    return Some(format!(
                        "{} is {} from UTC, not a whole number of slices",
                        self.tz_name,
                        self.tz.to_offset(ts)
                    ));
                }
            }
            t += 14 * 86_400;
        }
        None
    }

    pub fn time_zone(&self) -> &str {
        &self.tz_name
    }

    pub fn has_shifts(&self) -> bool {
        !self.shifts.is_empty()
    }

    fn local_date(&self, t_ms: i64) -> Date {
        Timestamp::from_millisecond(t_ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
            .date()
    }

    /// `date` at `min` minutes after local midnight, in Unix ms. Minutes
    /// past 24 h roll into the next day.
    fn at(&self, date: Date, min: u32) -> i64 {
        let date = add_days(date, i64::from(min / 1440));
        let min = min % 1440;
        date.at((min / 60) as i8, (min % 60) as i8, 0, 0)
            .to_zoned(self.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(i64::MIN)
    }

    /// The window of `kind` that contains `t_ms`. `Shift` without shifts
    /// falls back to the day.
    pub fn window_at(&self, kind: CalendarKind, t_ms: i64) -> CalendarWindow {
        let date = self.local_date(t_ms);
        match kind {
            CalendarKind::Shift if !self.shifts.is_empty() => {
                // Shift starts from the day before to the day after, in order.
                let mut starts: Vec<(i64, Date, &Shift)> = Vec::new();
                for d in [-1, 0, 1, 2] {
                    let day = add_days(date, d);
                    for s in &self.shifts {
                        starts.push((self.at(day, s.start_min), day, s));
                    }
                }
                starts.sort_by_key(|s| s.0);
                let i = starts.partition_point(|s| s.0 <= t_ms).saturating_sub(1);
                let (start, day, shift) = starts[i];
                let end = starts.get(i + 1).map_or(start + 86_400_000, |s| s.0);
                CalendarWindow {
                    start_ms: start,
                    end_ms: end,
                    label: format!("{day} {}", shift.name),
                }
            }
            CalendarKind::Shift | CalendarKind::Day => CalendarWindow {
                start_ms: self.at(date, 0),
                end_ms: self.at(add_days(date, 1), 0),
                label: date.to_string(),
            },
            CalendarKind::Week => {
                let offset = (weekday_index(date.weekday()) + 7 - self.week_start) % 7;
                let first = add_days(date, -i64::from(offset));
                CalendarWindow {
                    start_ms: self.at(first, 0),
                    end_ms: self.at(add_days(first, 7), 0),
                    label: format!("week of {first}"),
                }
            }
        }
    }

    /// The planned stops that overlap `[from_ms, to_ms)`, clipped to it.
    pub fn planned_stops(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        if self.stops.is_empty() || to_ms <= from_ms {
            return out;
        }
        let mut day = add_days(self.local_date(from_ms), -1);
        let last = add_days(self.local_date(to_ms), 1);
        while day <= last {
            let wd = weekday_index(day.weekday()) as usize;
            for s in self.stops.iter().filter(|s| s.days[wd]) {
                let a = self.at(day, s.from_min);
                let to_min = if s.to_min <= s.from_min {
                    s.to_min + 1440
                } else {
                    s.to_min
                };
                let b = self.at(day, to_min);
                let (a, b) = (a.max(from_ms), b.min(to_ms));
                if a < b {
                    out.push((a, b));
                }
            }
            day = add_days(day, 1);
        }
        out.sort_unstable();
        out
    }
}

fn add_days(d: Date, n: i64) -> Date {
    d.checked_add(Span::new().days(n)).unwrap_or(d)
}

fn weekday_index(w: Weekday) -> u8 {
    w.to_monday_zero_offset() as u8
}

/// Parse `HH:MM` (00:00–24:00) into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// Parse a weekday name (`mon`, `Monday`, …) into Monday = 0.
pub fn parse_weekday(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        // `get`, not `[..3]`: the third byte may be inside a character.
        .position(|d| s.get(..3).is_some_and(|p| d.starts_with(p)) && is_day_name(&s))
        .map(|i| i as u8)
}

fn is_day_name(s: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .any(|full| full.starts_with(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const H: i64 = 3_600_000;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn three_shifts(tz: &str) -> Calendar {
        let shifts = [("early", 6 * 60), ("late", 14 * 60), ("night", 22 * 60)]
            .map(|(n, m)| Shift {
                name: n.into(),
                start_min: m,
            })
            .to_vec();
        Calendar::new(tz, shifts, 0, vec![]).unwrap()
    }

    #[test]
    fn shifts_cross_midnight_and_belong_to_the_day_they_start() {
        let c = three_shifts("Europe/Berlin");
        // 01:30 Berlin on 1 Dec = 00:30 UTC: in the night shift of 30 Nov.
        let w = c.window_at(CalendarKind::Shift, ms("2026-12-01T00:30:00Z"));
        assert_eq!(w.label, "2026-11-30 night");
        assert_eq!(w.start_ms, ms("2026-11-30T21:00:00Z"));
        assert_eq!(w.end_ms, ms("2026-12-01T05:00:00Z"));
        let w = c.window_at(CalendarKind::Shift, ms("2026-12-01T05:00:00Z"));
        assert_eq!(w.label, "2026-12-01 early");
        assert_eq!(w.end_ms - w.start_ms, 8 * H);
    }

    #[test]
    fn daylight_saving_makes_shifts_and_days_shorter_or_longer() {
        let c = three_shifts("Europe/Berlin");
        // Clocks go forward on 29 Mar 2026 at 02:00 local: the night shift
        // of the 28th is 7 h, the day 23 h.
        let w = c.window_at(CalendarKind::Shift, ms("2026-03-29T00:30:00Z"));
        assert_eq!(w.label, "2026-03-28 night");
        assert_eq!(w.end_ms - w.start_ms, 7 * H);
        let d = c.window_at(CalendarKind::Day, ms("2026-03-29T12:00:00Z"));
        assert_eq!(d.end_ms - d.start_ms, 23 * H);
        // Back on 25 Oct: 25 h.
        let d = c.window_at(CalendarKind::Day, ms("2026-10-25T12:00:00Z"));
        assert_eq!(d.end_ms - d.start_ms, 25 * H);
    }

    #[test]
    fn weeks_start_on_the_configured_day() {
        let mut c = three_shifts("UTC");
        // 2026-12-02 is a Wednesday.
        let w = c.window_at(CalendarKind::Week, ms("2026-12-02T10:00:00Z"));
        assert_eq!(w.label, "week of 2026-11-30");
        assert_eq!(w.end_ms - w.start_ms, 7 * 24 * H);
        c.week_start = 6; // Sunday
        let w = c.window_at(CalendarKind::Week, ms("2026-12-02T10:00:00Z"));
        assert_eq!(w.label, "week of 2026-11-29");
    }

    #[test]
    fn planned_stops_recur_on_their_days_and_are_clipped() {
        let mut weekdays = [true; 7];
        weekdays[5] = false;
        weekdays[6] = false;
        let stops = vec![
            PlannedStop {
                name: "lunch".into(),
                from_min: 12 * 60,
                to_min: 12 * 60 + 30,
                days: weekdays,
            },
            PlannedStop {
                name: "maintenance".into(),
                from_min: 23 * 60,
                to_min: 60,
                days: [false, false, false, false, false, false, true],
            },
        ];
        let c = Calendar::new("UTC", vec![], 0, stops).unwrap();
        // Fri 4 Dec 12:15 → Mon 7 Dec 12:10.
        let s = c.planned_stops(ms("2026-12-04T12:15:00Z"), ms("2026-12-07T12:10:00Z"));
        assert_eq!(
            s,
            vec![
                (ms("2026-12-04T12:15:00Z"), ms("2026-12-04T12:30:00Z")),
                (ms("2026-12-06T23:00:00Z"), ms("2026-12-07T01:00:00Z")),
                (ms("2026-12-07T12:00:00Z"), ms("2026-12-07T12:10:00Z")),
            ]
        );
    }

    #[test]
    fn slices_must_start_shifts_and_days() {
        let c = three_shifts("Europe/Berlin");
        assert_eq!(c.misaligned(60_000), None);
        assert_eq!(c.misaligned(3_600_000), None);
        assert!(c.misaligned(7 * 60_000).unwrap().contains("shift `early`"));
        // India is 5:30 from UTC: days start on the half hour.
        let india = Calendar::new("Asia/Kolkata", vec![], 0, vec![]).unwrap();
        assert_eq!(india.misaligned(30 * 60_000), None);
        assert!(india.misaligned(3_600_000).unwrap().contains("+05:30"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(
            Calendar::new("Europe/Atlantis", vec![], 0, vec![]).unwrap_err(),
            CalendarError::TimeZone("Europe/Atlantis".into())
        );
        let dup = vec![
            Shift {
                name: "a".into(),
                start_min: 0,
            },
            Shift {
                name: "b".into(),
                start_min: 0,
            },
        ];
        assert!(Calendar::new("UTC", dup, 0, vec![]).is_err());
        assert_eq!(parse_hhmm("06:30"), Some(390));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("25:00"), None);
        assert_eq!(parse_weekday("Saturday"), Some(5));
        assert_eq!(parse_weekday("mon"), Some(0));
        assert_eq!(parse_weekday("moon"), None);
    }
}
