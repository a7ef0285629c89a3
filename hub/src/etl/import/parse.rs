//! Cells to times and numbers, with the reason a cell is refused.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use super::ImportError;

/// One cell as a reader delivers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Empty,
    Text(&'a str),
    Num(f64),
    /// An Excel date/time serial (days since 1899-12-30) from a cell
    /// formatted as a date.
    Serial(f64),
    Bool(bool),
}

impl Cell<'_> {
    /// The cell as text for the report (cut to 80 characters).
    pub fn shown(&self) -> Option<String> {
        match self {
            Cell::Empty => None,
            Cell::Text(s) => Some(s.chars().take(80).collect()),
            Cell::Num(v) | Cell::Serial(v) => Some(v.to_string()),
            Cell::Bool(b) => Some(b.to_string()),
        }
    }
}

/// How the time column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 (`2026-03-01T12:00:00+01:00`; without an offset
    /// the profile's zone applies; a space may replace the `T`).
    Rfc3339,
    /// Excel serial days (cells formatted as dates in .xlsx are read so
    /// whatever the format).
    Excel,
    UnixMs,
    UnixS,
    /// A strftime pattern (jiff's `strtime`), e.g. `%d.%m.%Y %H:%M:%S`.
    Pattern(String),
}

impl TimeFormat {
    pub fn parse(s: &str) -> TimeFormat {
        match s {
            "" | "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
            "excel" => TimeFormat::Excel,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_s" => TimeFormat::UnixS,
            p => TimeFormat::Pattern(p.to_owned()),
        }
    }
}

/// Turns time cells into ms since 1970 (UTC).
#[derive(Debug, Clone)]
pub struct TimeParser {
    pub format: TimeFormat,
    pub zone: TimeZone,
    pub zone_name: String,
    /// Accept an explicit offset that differs from the zone's at that time.
    pub any_offset: bool,
    pub min_ms: i64,
    pub max_ms: i64,
}

/// Excel's day 0 of the 1900 date system as serials count it.
fn excel_epoch() -> DateTime {
    jiff::civil::date(1899, 12, 30).at(0, 0, 0, 0)
}

impl TimeParser {
    pub fn new(
        format: TimeFormat,
        zone_name: &str,
        any_offset: bool,
        min_ms: i64,
        max_ms: i64,
    ) -> Result<TimeParser, ImportError> {
        let zone = TimeZone::get(zone_name)
            .map_err(|e| ImportError::Profile(format!("time_zone {zone_name:?}: {e}")))?;
        if let TimeFormat::Pattern(p) = &format
            && !p.contains('%')
        {
            return Err(ImportError::Profile(format!(
                "time_format {p:?} is neither rfc3339, excel, unix_ms, unix_s nor a strftime pattern"
            )));
        }
        Ok(TimeParser {
            format,
            zone,
            zone_name: zone_name.to_owned(),
            any_offset,
            min_ms,
            max_ms,
        })
    }

    /// The cell's instant, or why it has none.
    pub fn time(&self, c: Cell<'_>) -> Result<i64, String> {
        let ms = match c {
            Cell::Empty => return Err("empty time cell".into()),
            Cell::Bool(_) => return Err("not a time".into()),
            Cell::Serial(d) => self.serial(d)?,
            Cell::Num(v) => match self.format {
                TimeFormat::UnixMs => v.round() as i64,
                TimeFormat::UnixS => (v * 1000.0).round() as i64,
                // A number in a text-time column of a spreadsheet is still
                // a serial (a date cell without date formatting).
                _ => self.serial(v)?,
            },
            Cell::Text(s) => self.text(s.trim())?,
        };
        if ms < self.min_ms || ms > self.max_ms {
            return Err(format!(
                "time {} outside the plausible range {} .. {}",
                crate::control::utc(ms),
                crate::control::utc(self.min_ms),
                crate::control::utc(self.max_ms)
            ));
        }
        Ok(ms)
    }

    fn serial(&self, days: f64) -> Result<i64, String> {
        if !days.is_finite() || !(0.0..2_958_466.0).contains(&days) {
            return Err(format!("{days} is not an Excel date serial"));
        }
        let ms = (days * 86_400_000.0).round() as i64;
        let dt = excel_epoch()
            .checked_add(SignedDuration::from_millis(ms))
            .map_err(|e| format!("Excel date {days}: {e}"))?;
        self.civil(dt)
    }

    fn civil(&self, dt: DateTime) -> Result<i64, String> {
        let z = dt
            .to_zoned(self.zone.clone())
            .map_err(|e| format!("{dt} in {}: {e}", self.zone_name))?;
        Ok(z.timestamp().as_millisecond())
    }

    /// An explicit offset must be the zone's at that instant (unless any
    /// offset is accepted): a historian writes one zone's offsets, so
    /// another one means a row from another zone or a shifted clock.
    fn offset_checked(&self, ts: Timestamp, off: Offset, text: &str) -> Result<i64, String> {
        let expected = self.zone.to_offset(ts);
        if !self.any_offset && expected != off {
            return Err(format!(
                "wrong zone offset: {text:?} has {off}, {} had {expected} then",
                self.zone_name
            ));
        }
        Ok(ts.as_millisecond())
    }

    fn text(&self, s: &str) -> Result<i64, String> {
        if s.is_empty() {
            return Err("empty time cell".into());
        }
        let unparseable = |e: &dyn std::fmt::Display| format!("unparseable time {s:?}: {e}");
        match &self.format {
            TimeFormat::Rfc3339 => {
                let (civil, off) = split_offset(s);
                let dt: DateTime = civil
                    .replacen(' ', "T", 1)
                    .parse()
                    .map_err(|e| unparseable(&e))?;
                match off {
                    None => self.civil(dt),
                    Some(o) => {
                        let off = parse_offset(o).ok_or_else(|| unparseable(&"bad offset"))?;
                        let ts = off.to_timestamp(dt).map_err(|e| unparseable(&e))?;
                        self.offset_checked(ts, off, s)
                    }
                }
            }
            TimeFormat::Excel => {
                let v: f64 = s.parse().map_err(|e| unparseable(&e))?;
                self.serial(v)
            }
            TimeFormat::UnixMs => s
                .parse::<f64>()
                .map(|v| v.round() as i64)
                .map_err(|e| unparseable(&e)),
            TimeFormat::UnixS => s
                .parse::<f64>()
                .map(|v| (v * 1000.0).round() as i64)
                .map_err(|e| unparseable(&e)),
            TimeFormat::Pattern(p) => {
                let tm = jiff::fmt::strtime::parse(p, s).map_err(|e| unparseable(&e))?;
                match tm.offset() {
                    Some(off) => {
                        let ts = tm.to_timestamp().map_err(|e| unparseable(&e))?;
                        self.offset_checked(ts, off, s)
                    }
                    None => self.civil(tm.to_datetime().map_err(|e| unparseable(&e))?),
                }
            }
        }
    }
}

/// `2026-03-01T12:00:00+01:00` → (`2026-03-01T12:00:00`, `+01:00`).
fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(civil) = s.strip_suffix(['Z', 'z']) {
        return (civil, Some("Z"));
    }
    // The offset's sign comes after the time (the date has '-' too).
    let tail_from = s.find(['T', 't', ' ']).map(|i| i + 1).unwrap_or(s.len());
    match s[tail_from..].rfind(['+', '-']) {
        Some(i) => (&s[..tail_from + i], Some(&s[tail_from + i..])),
        None => (s, None),
    }
}

fn parse_offset(o: &str) -> Option<Offset> {
    if o == "Z" {
        return Some(Offset::UTC);
    }
    let sign = match o.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = o[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 && digits.len() != 2 {
        return None;
    }
    let h: i32 = digits.get(0..2)?.parse().ok()?;
    let m: i32 = digits.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
    if h > 23 || m > 59 {
        return None;
    }
    Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// A cell as a number, or why not.
pub fn number(c: Cell<'_>, decimal_comma: bool) -> Result<f64, String> {
    let v = match c {
        Cell::Empty => return Err("empty cell".into()),
        Cell::Num(v) | Cell::Serial(v) => v,
        Cell::Bool(b) => f64::from(u8::from(b)),
        Cell::Text(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Err("empty cell".into());
            }
            let parsed = if decimal_comma {
                t.replace('.', "").replace(',', ".").parse::<f64>()
            } else {
                t.parse::<f64>()
            };
            match parsed {
                Ok(v) => v,
                Err(_) => {
                    let shown: String = t.chars().take(40).collect();
                    return Err(format!("text in a number column: {shown:?}"));
                }
            }
        }
    };
    if !v.is_finite() {
        return Err(format!("{v} is not a finite number"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(fmt: &str, zone: &str) -> TimeParser {
        TimeParser::new(TimeFormat::parse(fmt), zone, false, 0, i64::MAX / 2).unwrap()
    }

    #[test]
    fn times_in_a_zone_and_with_offsets() {
        let b = p("rfc3339", "Europe/Berlin");
        // Winter: +01:00.
        assert_eq!(
            b.time(Cell::Text("2026-01-15 12:00:00")).unwrap(),
            1_768_474_800_000
        );
        // UTC times in a file said to be in Berlin time: refused.
        assert!(
            b.time(Cell::Text("2026-01-15T11:00:00Z"))
                .unwrap_err()
                .starts_with("wrong zone offset")
        );
        assert!(
            b.time(Cell::Text("2026-01-15T12:00:00+01:00")).is_ok(),
            "matching offset"
        );
        let e = b.time(Cell::Text("2026-01-15T12:00:00+05:00")).unwrap_err();
        assert!(e.starts_with("wrong zone offset"), "{e}");
        assert!(
            b.time(Cell::Text("15.01.2026"))
                .unwrap_err()
                .starts_with("unparseable time")
        );
        let d = p("%d.%m.%Y %H:%M:%S", "Europe/Berlin");
        assert_eq!(
            d.time(Cell::Text("15.01.2026 12:00:00")).unwrap(),
            1_768_474_800_000
        );
        let x = p("excel", "UTC");
        // 2026-01-15 12:00 UTC is serial 46037.5.
        assert_eq!(x.time(Cell::Num(46037.5)).unwrap(), 1_768_478_400_000);
    }

    #[test]
    fn numbers() {
        assert_eq!(number(Cell::Text(" 1.5 "), false).unwrap(), 1.5);
        assert_eq!(number(Cell::Text("1.234,5"), true).unwrap(), 1234.5);
        assert!(
            number(Cell::Text("abc"), false)
                .unwrap_err()
                .starts_with("text")
        );
        assert_eq!(number(Cell::Empty, false).unwrap_err(), "empty cell");
        assert!(number(Cell::Text("NaN"), false).is_err());
    }
}
