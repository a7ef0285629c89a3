//! When the next report is due ([`Schedule`]): a simple interval aligned
//! to the epoch, or a time of day in a zone every so many days (civil
//! time, so a 06:00 report stays at 06:00 across a DST change).

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::config::Schedule;

/// The first time strictly after `after_ms` the schedule names, ms since
/// 1970; `None` when the zone is unknown (validation prevents that).
pub fn next_after(s: &Schedule, after_ms: i64) -> Option<i64> {
    match s {
        Schedule::Every(d) => {
            let d = i64::try_from(d.as_millis()).ok()?.max(1);
            Some((after_ms.div_euclid(d) + 1) * d)
        }
        Schedule::Daily { minute, zone, days } => {
            let tz = TimeZone::get(zone).ok()?;
            let days = i64::from((*days).max(1));
            let start = jiff::Timestamp::from_millisecond(after_ms)
                .ok()?
                .to_zoned(tz.clone())
                .date();
            // Day 0 of the cycle: Monday 1970-01-05.
            let monday = Date::new(1970, 1, 5).ok()?;
            for i in 0..=days + 1 {
                let d = start.checked_add(jiff::Span::new().days(i)).ok()?;
                let n = i64::from(monday.until(d).ok()?.get_days());
                if n.rem_euclid(days) != 0 {
                    continue;
                }
                let at = d
                    .at((*minute / 60) as i8, (*minute % 60) as i8, 0, 0)
                    .to_zoned(tz.clone())
                    .ok()?
                    .timestamp()
                    .as_millisecond();
                if at > after_ms {
                    return Some(at);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn intervals_align_to_the_epoch() {
        let s = Schedule::Every(Duration::from_secs(3600));
        assert_eq!(
            next_after(&s, ms("2026-12-03T09:41:00Z")),
            Some(ms("2026-12-03T10:00:00Z"))
        );
        assert_eq!(
            next_after(&s, ms("2026-12-03T10:00:00Z")),
            Some(ms("2026-12-03T11:00:00Z"))
        );
    }

    #[test]
    fn times_of_day_follow_the_zone_and_weeks_start_on_monday() {
        let daily = Schedule::Daily {
            minute: 6 * 60,
            zone: "Europe/Berlin".into(),
            days: 1,
        };
        // Winter: 06:00 in Berlin is 05:00 UTC; summer: 04:00 UTC.
        assert_eq!(
            next_after(&daily, ms("2026-12-03T09:00:00Z")),
            Some(ms("2026-12-04T05:00:00Z"))
        );
        assert_eq!(
            next_after(&daily, ms("2026-07-01T03:00:00Z")),
            Some(ms("2026-07-01T04:00:00Z"))
        );
        let weekly = Schedule::Daily {
            minute: 0,
            zone: "UTC".into(),
            days: 7,
        };
        // 2026-12-03 is a Thursday: the next Monday is 2026-12-07.
        assert_eq!(
            next_after(&weekly, ms("2026-12-03T09:00:00Z")),
            Some(ms("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            next_after(&weekly, ms("2026-12-07T00:00:00Z")),
            Some(ms("2026-12-14T00:00:00Z"))
        );
    }
}
