//! Query parameters every area shares: time ranges (RFC 3339 with an
//! explicit offset, or milliseconds since 1970 for Grafana) and cursor
//! pagination. Errors are 400 problems that say what to send instead.

use serde::{Deserialize, Serialize};
use web::problem::Problem;

/// Default span of a range when `from` is absent.
pub const DEFAULT_SPAN_MS: i64 = 24 * 3_600_000;
/// The longest range one request may ask for (ten years).
pub const MAX_SPAN_MS: i64 = 10 * 366 * 86_400_000;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A parsed `from`/`to` pair, milliseconds since 1970, `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One time parameter: RFC 3339 with `Z` or an offset; digits alone are
/// milliseconds since 1970 (what Grafana's `${__from}` sends).
pub fn parse_time(name: &str, s: &str) -> Result<i64, Problem> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| {
            Problem::bad_request(format!(
                "{name}: {s:?} is too large for milliseconds since 1970"
            ))
        });
    }
    match s.parse::<jiff::Timestamp>() {
        Ok(t) => Ok(t.as_millisecond()),
        Err(_) => Err(Problem::bad_request(format!(
            "{name}: {s:?} is not an RFC 3339 time with a time zone; write e.g. 2026-12-01T08:00:00Z or 2026-12-01T09:00:00+01:00"
        ))),
    }
}

/// `from`/`to` with defaults: `to` = now, `from` = `to` − `default_span`.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
    default_span_ms: i64,
) -> Result<Range, Problem> {
    let to_ms = match to {
        Some(t) => parse_time("to", t)?,
        None => now_ms,
    };
    let from_ms = match from {
        Some(f) => parse_time("from", f)?,
        None => to_ms.saturating_sub(default_span_ms),
    };
    if from_ms >= to_ms {
        return Err(Problem::bad_request("from must be before to"));
    }
    if to_ms - from_ms > MAX_SPAN_MS {
        return Err(Problem::bad_request("the range is longer than ten years"));
    }
    Ok(Range { from_ms, to_ms })
}

/// `limit` within 1..=MAX_LIMIT, default DEFAULT_LIMIT.
pub fn limit(l: Option<usize>) -> Result<usize, Problem> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!(
            "limit {n} is out of range: 1 to {MAX_LIMIT}"
        ))),
    }
}

/// An opaque cursor: the sort key of the last item returned, as
/// `{ts_ms}.{tiebreak}` in URL-safe text. The next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ms: i64,
    pub tiebreak: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut s = format!("{}.", self.ts_ms);
        for b in self.tiebreak.bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn decode(s: &str) -> Result<Cursor, Problem> {
        let bad =
            || Problem::bad_request("cursor: not a cursor this API returned; start without one");
        let (ts, rest) = s.split_once('.').ok_or_else(bad)?;
        let ts_ms = ts.parse::<i64>().map_err(|_| bad())?;
        if rest.len() % 2 != 0 || rest.len() > 512 {
            return Err(bad());
        }
        let bytes = (0..rest.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&rest[i..i + 2], 16).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, Problem>>()?;
        Ok(Cursor {
            ts_ms,
            tiebreak: String::from_utf8(bytes).map_err(|_| bad())?,
        })
    }
}

/// A page of a list: the items and where the next page starts (absent on
/// the last page).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A node named in a path or query: `site` and `node` identifiers as the
/// protocol allows them (else 400).
pub fn check_id(what: &str, s: &str) -> Result<(), Problem> {
    protocol::topic::check_id(s).map_err(|e| Problem::bad_request(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_need_a_zone_and_ranges_an_order() {
        assert_eq!(parse_time("from", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("from", "1970-01-01T01:00:01+01:00").unwrap(),
            1000
        );
        assert_eq!(parse_time("from", "1500").unwrap(), 1500);
        let e = parse_time("from", "2026-12-01T08:00:00").unwrap_err();
        assert!(e.detail.contains("time zone"), "{}", e.detail);
        assert!(parse_time("from", "99999999999999999999999").is_err());
        assert!(range(Some("2000"), Some("1000"), 0, 10).is_err());
        let r = range(None, Some("100000"), 0, 1000).unwrap();
        assert_eq!((r.from_ms, r.to_ms), (99_000, 100_000));
        assert!(range(Some("0"), Some("999999999999999"), 0, 1).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400() {
        let c = Cursor {
            ts_ms: -5,
            tiebreak: "plant1/edge.1 ü".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "x", "1.z", "1.abc", "a.00"] {
            assert_eq!(Cursor::decode(bad).unwrap_err().status, 400, "{bad}");
        }
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(1001)).is_err());
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }
}
