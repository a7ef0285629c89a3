//! Sample ⇄ row encoding (layout documented in [`super::schema`]).

use std::sync::Arc;

use drivers::{Quality, Reason, Sample, TagName, Timestamp, Value};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// `kind` column: which [`Value`] variant a row holds.
mod kind {
    pub const NONE: i64 = 0;
    pub const BOOL: i64 = 1;
    pub const I64: i64 = 2;
    pub const U64: i64 = 3;
    pub const F64: i64 = 4;
    pub const STRING: i64 = 5;
}

/// The value columns of one row.
#[derive(Debug, PartialEq)]
pub(crate) struct EncodedValue {
    pub value: SqlValue,
    pub text: Option<String>,
    pub kind: i64,
}

pub(crate) fn encode_value(v: Option<&Value>) -> EncodedValue {
    let (value, text, kind) = match v {
        None => (SqlValue::Null, None, kind::NONE),
        Some(Value::Bool(b)) => (SqlValue::Integer(i64::from(*b)), None, kind::BOOL),
        Some(Value::I64(i)) => (SqlValue::Integer(*i), None, kind::I64),
        Some(Value::U64(u)) => match i64::try_from(*u) {
            Ok(i) => (SqlValue::Integer(i), None, kind::U64),
            // Too big for SQLite's INTEGER: REAL for aggregates, text for
            // the exact value.
            Err(_) => (SqlValue::Real(*u as f64), Some(u.to_string()), kind::U64),
        },
        Some(Value::F64(f)) if f.is_nan() => (SqlValue::Null, None, kind::F64),
        Some(Value::F64(f)) => (SqlValue::Real(*f), None, kind::F64),
        Some(Value::String(s)) => (SqlValue::Null, Some(s.clone()), kind::STRING),
    };
    EncodedValue { value, text, kind }
}

/// Rebuild a value from its columns. Never fails: a row that does not match
/// its `kind` (a damaged or hand-edited file) yields the closest value.
pub(crate) fn decode_value(value: ValueRef<'_>, text: Option<&str>, k: i64) -> Option<Value> {
    let num = match value {
        ValueRef::Integer(i) => Some(Num::I(i)),
        ValueRef::Real(f) => Some(Num::F(f)),
        ValueRef::Text(_) | ValueRef::Blob(_) | ValueRef::Null => None,
    };
    match (k, num) {
        (kind::BOOL, Some(n)) => Some(Value::Bool(n.as_f64() != 0.0)),
        (kind::I64, Some(Num::I(i))) => Some(Value::I64(i)),
        (kind::U64, _) if text.is_some() => match text.map(str::parse::<u64>) {
            Some(Ok(u)) => Some(Value::U64(u)),
            _ => num.map(|n| Value::F64(n.as_f64())),
        },
        (kind::U64, Some(Num::I(i))) => Some(u64::try_from(i).map_or(Value::I64(i), Value::U64)),
        // NUMERIC affinity stores an integral REAL (2.0) as INTEGER 2: the
        // kind column restores the float.
        (kind::F64, Some(n)) => Some(Value::F64(n.as_f64())),
        (kind::F64, None) => Some(Value::F64(f64::NAN)),
        (kind::STRING, _) => Some(Value::String(text.unwrap_or_default().to_owned())),
        (kind::NONE, None) => None,
        (_, Some(Num::I(i))) => Some(Value::I64(i)),
        (_, Some(Num::F(f))) => Some(Value::F64(f)),
        (_, None) => text.map(|t| Value::String(t.to_owned())),
    }
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

pub(crate) fn encode_reason(q: &Quality) -> Option<String> {
    let r = q.reason()?;
    Some(match r {
        Reason::Exception(c) => format!("exception:{c}"),
        Reason::Timeout => "timeout".to_owned(),
        Reason::ConnectionLost => "connection_lost".to_owned(),
        Reason::BackedOff => "backed_off".to_owned(),
        Reason::Stale => "stale".to_owned(),
        Reason::Decode(m) => format!("decode:{m}"),
        Reason::Protocol(m) => format!("protocol:{m}"),
        Reason::DriverFailed => "driver_failed".to_owned(),
        Reason::Unsupported(m) => format!("unsupported:{m}"),
        Reason::Status(m) => format!("status:{m}"),
        Reason::ClockSkew(m) => format!("clock_skew:{m}"),
        Reason::Other(m) => format!("other:{m}"),
    })
}

fn decode_reason(text: Option<&str>) -> Reason {
    let Some(text) = text else {
        return Reason::Other(String::new());
    };
    match text {
        "timeout" => return Reason::Timeout,
        "connection_lost" => return Reason::ConnectionLost,
        "backed_off" => return Reason::BackedOff,
        "stale" => return Reason::Stale,
        "driver_failed" => return Reason::DriverFailed,
        _ => {}
    }
    match text.split_once(':') {
        Some(("exception", c)) => c
            .parse()
            .map_or_else(|_| Reason::Other(text.to_owned()), Reason::Exception),
        Some(("decode", m)) => Reason::Decode(m.to_owned()),
        Some(("protocol", m)) => Reason::Protocol(m.to_owned()),
        Some(("unsupported", m)) => Reason::Unsupported(m.to_owned()),
        Some(("status", m)) => Reason::Status(m.to_owned()),
        Some(("clock_skew", m)) => Reason::ClockSkew(m.to_owned()),
        Some(("other", m)) => Reason::Other(m.to_owned()),
        _ => Reason::Other(text.to_owned()),
    }
}

pub(crate) fn decode_quality(code: i64, reason: Option<&str>) -> Quality {
    match code {
        0 => Quality::Good,
        1 => Quality::Uncertain(decode_reason(reason)),
        2 => Quality::Bad(decode_reason(reason)),
        other => Quality::Bad(Reason::Other(format!(
            "unknown stored quality code {other}"
        ))),
    }
}

/// Column list shared by every query that rebuilds samples; matches
/// [`sample_from_row`] (offset by `first`).
pub(crate) const SAMPLE_COLUMNS: &str = "ts_ms, value, value_text, kind, quality, reason";

/// Rebuild a sample from [`SAMPLE_COLUMNS`] starting at column `first`.
pub(crate) fn sample_from_row(
    tag: &TagName,
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Sample> {
    let ts: i64 = row.get(first)?;
    let value = row.get_ref(first + 1)?;
    let text: Option<&str> = match row.get_ref(first + 2)? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    let value = decode_value(value, text, row.get(first + 3)?);
    let reason: Option<String> = row.get(first + 5)?;
    Ok(Sample {
        tag: Arc::clone(tag),
        ts: Timestamp(ts),
        value,
        quality: decode_quality(row.get(first + 4)?, reason.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Option<Value>) -> Option<Value> {
        let e = encode_value(v.as_ref());
        let value = match &e.value {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        };
        decode_value(value, e.text.as_deref(), e.kind)
    }

    #[test]
    fn values_round_trip_exactly() {
        let cases = [
            None,
            Some(Value::Bool(true)),
            Some(Value::Bool(false)),
            Some(Value::I64(i64::MIN)),
            Some(Value::I64((1 << 53) + 1)),
            Some(Value::U64(u64::MAX)),
            Some(Value::U64(7)),
            Some(Value::F64(-1.5)),
            Some(Value::F64(f64::INFINITY)),
            Some(Value::String(String::new())),
            Some(Value::String("héllo: wörld".into())),
        ];
        for v in cases {
            assert_eq!(round_trip(v.clone()), v);
        }
    }

    #[test]
    fn nan_survives_as_nan() {
        let back = round_trip(Some(Value::F64(f64::NAN)));
        assert!(
            matches!(back, Some(Value::F64(f)) if f.is_nan()),
            "{back:?}"
        );
    }

    #[test]
    fn reasons_round_trip() {
        let reasons = [
            Reason::Exception(2),
            Reason::Exception(255),
            Reason::Timeout,
            Reason::ConnectionLost,
            Reason::BackedOff,
            Reason::Stale,
            Reason::Decode("bad utf-8: 0xff".into()),
            Reason::Protocol("answer to another request".into()),
            Reason::DriverFailed,
            Reason::Unsupported("ExtensionObject".into()),
            Reason::Status("opcua BadNodeIdUnknown".into()),
            Reason::ClockSkew("+2h ahead".into()),
            Reason::Other(String::new()),
            Reason::Other("timeout".into()),
        ];
        for r in reasons {
            for q in [Quality::Uncertain(r.clone()), Quality::Bad(r.clone())] {
                let text = encode_reason(&q);
                assert_eq!(decode_quality(i64::from(q.code()), text.as_deref()), q);
            }
        }
        assert_eq!(encode_reason(&Quality::Good), None);
        assert_eq!(decode_quality(0, None), Quality::Good);
    }

    #[test]
    fn damaged_rows_decode_without_panicking() {
        assert_eq!(
            decode_quality(2, Some("exception:x")),
            Quality::Bad(Reason::Other("exception:x".into()))
        );
        assert_eq!(
            decode_quality(9, None),
            Quality::Bad(Reason::Other("unknown stored quality code 9".into()))
        );
        assert_eq!(
            decode_value(ValueRef::Real(2.5), None, 99),
            Some(Value::F64(2.5))
        );
        assert_eq!(decode_value(ValueRef::Null, Some("x"), kind::U64), None);
        assert_eq!(
            decode_value(ValueRef::Integer(-1), None, kind::U64),
            Some(Value::I64(-1))
        );
    }
}
