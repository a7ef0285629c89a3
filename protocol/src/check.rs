//! Value ranges of v1 messages, checked by the receiver after the
//! signature and before anything is stored (`docs/protocol.md`, "Value
//! ranges"). A signed message can still carry values no store can hold or
//! no reader expects (a sequence number of 2^63, a window 35 days wide, a
//! timestamp in the year 30,000): those are refused here, by name, instead
//! of failing a database commit or a report later.
//!
//! Pure: no I/O, no clock.

use crate::v1::{
    Ack, AlarmEvent, Batch, Body, Forecast, ForecastQuality, KpiResult, LostSpan, Message, Status,
    WindowSet,
};

/// Earliest timestamp accepted: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// Latest timestamp accepted: 2200-01-01T00:00:00Z (exclusive).
pub const MAX_TS_MS: i64 = 7_258_118_400_000;
/// Highest sequence number (and counter) accepted: 2^53, exact in every
/// store and in JSON. A node sealing a batch a millisecond would need
/// 285,000 years to reach it.
pub const MAX_SEQ: u64 = 1 << 53;
/// Widest aggregation window: 7 days.
pub const MAX_WIDTH_MS: u32 = 7 * 86_400_000;
/// Longest text field (tag, model, KPI, window, label, unit, version), in
/// bytes.
pub const MAX_TEXT: usize = 256;
/// Most values in one forecast.
pub const MAX_FORECAST_VALUES: usize = 100_000;
/// Longest forecast step: 7 days.
pub const MAX_STEP_MS: i64 = 7 * 86_400_000;
/// Most features in one forecast explanation.
pub const MAX_EXPLANATION: usize = 64;
/// Largest forecast error accepted (MAE in the tag's units, MAPE in %):
/// far beyond any process value, and exact as a DuckDB DOUBLE and in JSON.
pub const MAX_ERROR: f64 = 1e15;

/// A value outside its range: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn ts(field: &str, v: i64) -> Result<(), Invalid> {
    if (MIN_TS_MS..MAX_TS_MS).contains(&v) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("{v} ms is not between 2000-01-01 and 2200-01-01"),
        ))
    }
}

fn seq(field: &str, v: u64) -> Result<(), Invalid> {
    if (1..=MAX_SEQ).contains(&v) {
        Ok(())
    } else {
        Err(bad(field, format!("{v} is not between 1 and 2^53")))
    }
}

fn count(field: &str, v: u64) -> Result<(), Invalid> {
    if v <= MAX_SEQ {
        Ok(())
    } else {
        Err(bad(field, format!("{v} is above 2^53")))
    }
}

fn text(field: &str, v: &str, may_be_empty: bool) -> Result<(), Invalid> {
    if v.is_empty() && !may_be_empty {
        return Err(bad(field, "empty"));
    }
    if v.len() > MAX_TEXT {
        return Err(bad(
            field,
            format!("{} bytes, more than {MAX_TEXT}", v.len()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

/// Check a whole message.
pub fn check(m: &Message) -> Result<(), Invalid> {
    match m {
        Message::Batch(b) => batch(b),
        Message::Status(s) => status(s),
        Message::Ack(a) => ack(a),
    }
}

pub fn batch(b: &Batch) -> Result<(), Invalid> {
    seq("seq", b.seq)?;
    ts("created_ms", b.created_ms)?;
    match &b.body {
        Body::Aggregates(sets) => sets
            .iter()
            .enumerate()
            .try_for_each(|(i, s)| window_set(&format!("windows[{i}]"), s)),
        Body::Forecasts(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, f)| forecast(&format!("forecasts[{i}]"), f)),
        Body::Kpis(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, k)| kpi(&format!("kpis[{i}]"), k)),
        Body::Lost(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, l)| lost(&format!("lost[{i}]"), l)),
        Body::Alarms(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, a)| alarm(&format!("alarms[{i}]"), a)),
        Body::Audit(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, a)| audit(&format!("audit[{i}]"), a)),
        Body::AlarmHealth(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, h)| alarm_health(&format!("alarm_health[{i}]"), h)),
        Body::ForecastQuality(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, q)| forecast_quality(&format!("forecast_quality[{i}]"), q)),
    }
}

fn forecast_quality(at: &str, q: &ForecastQuality) -> Result<(), Invalid> {
    text(&format!("{at}.model"), &q.model, false)?;
    text(&format!("{at}.version"), &q.version, true)?;
    text(&format!("{at}.tag"), &q.tag, false)?;
    ts(&format!("{at}.origin_ms"), q.origin_ms)?;
    ts(&format!("{at}.scored_ms"), q.scored_ms)?;
    if !(1..=MAX_STEP_MS).contains(&q.step_ms) {
        return Err(bad(
            format!("{at}.step_ms"),
            format!("{} is not between 1 ms and 7 days", q.step_ms),
        ));
    }
    if q.horizon == 0 || q.horizon as usize > MAX_FORECAST_VALUES {
        return Err(bad(
            format!("{at}.horizon"),
            format!("{} is not between 1 and {MAX_FORECAST_VALUES}", q.horizon),
        ));
    }
    if q.n > q.horizon {
        return Err(bad(
            format!("{at}.n"),
            format!("{} steps scored of a horizon of {}", q.n, q.horizon),
        ));
    }
    for (k, v) in [("mae", q.mae), ("mape", q.mape)] {
        if let Some(v) = v
            && !(v.is_finite() && (0.0..=MAX_ERROR).contains(&v))
        {
            return Err(bad(
                format!("{at}.{k}"),
                format!("{v} is not a number between 0 and 1e15"),
            ));
        }
    }
    if q.n == 0 && (q.mae.is_some() || q.mape.is_some()) {
        return Err(bad(format!("{at}.n"), "an error over no scored step"));
    }
    if q.n > 0 && q.mae.is_none() {
        return Err(bad(format!("{at}.mae"), "none, with steps scored"));
    }
    if q.explanation.len() > MAX_EXPLANATION {
        return Err(bad(
            format!("{at}.explanation"),
            format!(
                "{} features, more than {MAX_EXPLANATION}",
                q.explanation.len()
            ),
        ));
    }
    for (i, (name, c)) in q.explanation.iter().enumerate() {
        text(&format!("{at}.explanation[{i}]"), name, false)?;
        if !(c.is_finite() && c.abs() <= MAX_ERROR) {
            return Err(bad(
                format!("{at}.explanation[{i}]"),
                format!("contribution {c} is not a number within ±1e15"),
            ));
        }
    }
    Ok(())
}

fn alarm_health(at: &str, h: &crate::v1::AlarmHealth) -> Result<(), Invalid> {
    ts(&format!("{at}.ts_ms"), h.ts_ms)?;
    for (k, v) in [
        ("avg_per_10min", h.avg_per_10min),
        ("flood_share", h.flood_share),
        ("top10_share", h.top10_share),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(bad(
                format!("{at}.{k}"),
                format!("{v} is not a finite non-negative number"),
            ));
        }
    }
    if h.flood_share > 1.0 || h.top10_share > 1.0 {
        return Err(bad(at, "a share above 1"));
    }
    if h.chattering.len() > 1000 || h.stale.len() > 1000 {
        return Err(bad(at, "more than 1000 names in a list"));
    }
    for (i, n) in h.chattering.iter().chain(&h.stale).enumerate() {
        text(&format!("{at}.names[{i}]"), n, false)?;
    }
    Ok(())
}

fn audit(at: &str, a: &crate::v1::AuditRecord) -> Result<(), Invalid> {
    seq(&format!("{at}.seq"), a.seq)?;
    ts(&format!("{at}.ts_ms"), a.ts_ms)?;
    text(&format!("{at}.actor"), &a.actor, true)?;
    text(&format!("{at}.action"), &a.action, false)?;
    text(&format!("{at}.target"), &a.target, true)?;
    text(&format!("{at}.detail"), &a.detail, true)?;
    text(&format!("{at}.addr"), &a.addr, true)?;
    if a.hash.len() != 64 || !a.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("{at}.hash"), "not 64 hex digits"));
    }
    Ok(())
}

fn alarm(at: &str, a: &AlarmEvent) -> Result<(), Invalid> {
    text(&format!("{at}.alarm"), &a.alarm, false)?;
    seq(&format!("{at}.seq"), a.seq)?;
    ts(&format!("{at}.ts_ms"), a.ts_ms)?;
    text(&format!("{at}.change"), &a.change, false)?;
    text(&format!("{at}.state"), &a.state, false)?;
    if !(1..=4).contains(&a.priority) {
        return Err(bad(
            format!("{at}.priority"),
            format!("{} is not 1–4", a.priority),
        ));
    }
    if let Some(b) = &a.by {
        text(&format!("{at}.by"), b, false)?;
    }
    if let Some(c) = &a.comment {
        text(&format!("{at}.comment"), c, true)?;
    }
    Ok(())
}

fn lost(at: &str, l: &LostSpan) -> Result<(), Invalid> {
    if l.width_ms == 0 || l.width_ms > MAX_WIDTH_MS {
        return Err(bad(
            format!("{at}.width_ms"),
            format!("{} is not between 1 ms and 7 days", l.width_ms),
        ));
    }
    ts(&format!("{at}.from_ms"), l.from_ms)?;
    ts(&format!("{at}.to_ms"), l.to_ms)?;
    if l.to_ms <= l.from_ms {
        return Err(bad(
            format!("{at}.to_ms"),
            format!("{} is not after from_ms {}", l.to_ms, l.from_ms),
        ));
    }
    text(&format!("{at}.reason"), &l.reason, false)
}

fn window_set(at: &str, s: &WindowSet) -> Result<(), Invalid> {
    if s.width_ms == 0 || s.width_ms > MAX_WIDTH_MS {
        return Err(bad(
            format!("{at}.width_ms"),
            format!("{} is not between 1 ms and 7 days", s.width_ms),
        ));
    }
    ts(&format!("{at}.start_ms"), s.start_ms)?;
    for (j, w) in s.windows.iter().enumerate() {
        text(&format!("{at}.tag[{j}]"), &w.tag, false)?;
        if w.good > w.count {
            return Err(bad(
                format!("{at}.{}.good", w.tag),
                format!("{} good of {} samples", w.good, w.count),
            ));
        }
    }
    Ok(())
}

fn forecast(at: &str, f: &Forecast) -> Result<(), Invalid> {
    text(&format!("{at}.model"), &f.model, false)?;
    text(&format!("{at}.version"), &f.version, true)?;
    text(&format!("{at}.tag"), &f.tag, false)?;
    ts(&format!("{at}.origin_ms"), f.origin_ms)?;
    ts(&format!("{at}.made_ms"), f.made_ms)?;
    if !(1..=MAX_STEP_MS).contains(&f.step_ms) {
        return Err(bad(
            format!("{at}.step_ms"),
            format!("{} is not between 1 ms and 7 days", f.step_ms),
        ));
    }
    if f.values.len() > MAX_FORECAST_VALUES {
        return Err(bad(
            format!("{at}.values"),
            format!("{} values, more than {MAX_FORECAST_VALUES}", f.values.len()),
        ));
    }
    Ok(())
}

fn kpi(at: &str, k: &KpiResult) -> Result<(), Invalid> {
    text(&format!("{at}.kpi"), &k.kpi, false)?;
    text(&format!("{at}.window"), &k.window, false)?;
    text(&format!("{at}.label"), &k.label, true)?;
    if let Some(u) = &k.unit {
        text(&format!("{at}.unit"), u, true)?;
    }
    for (f, v) in [
        ("start_ms", k.start_ms),
        ("end_ms", k.end_ms),
        ("until_ms", k.until_ms),
        ("computed_ms", k.computed_ms),
    ] {
        ts(&format!("{at}.{f}"), v)?;
    }
    if !(k.start_ms <= k.until_ms && k.until_ms <= k.end_ms) {
        return Err(bad(
            format!("{at}.until_ms"),
            "not within the window (start ≤ until ≤ end)",
        ));
    }
    if !(0.0..=1.0).contains(&k.coverage) {
        return Err(bad(
            format!("{at}.coverage"),
            format!("{} is not between 0 and 1", k.coverage),
        ));
    }
    if k.values.len() > 64 {
        return Err(bad(format!("{at}.values"), "more than 64 figures"));
    }
    for (name, _) in &k.values {
        text(&format!("{at}.values"), name, false)?;
    }
    Ok(())
}

pub fn status(s: &Status) -> Result<(), Invalid> {
    ts("ts_ms", s.ts_ms)?;
    ts("started_ms", s.started_ms)?;
    text("software_version", &s.software_version, true)?;
    if let Some(o) = s.oldest_unacked_ms {
        ts("oldest_unacked_ms", o)?;
    }
    count("outbox_batches", s.outbox_batches)?;
    count("outbox_bytes", s.outbox_bytes)?;
    count("last_seq", s.last_seq)?;
    count("dropped_batches", s.dropped_batches)
}

pub fn ack(a: &Ack) -> Result<(), Invalid> {
    for (i, r) in a.ranges.iter().enumerate() {
        seq(&format!("ranges[{i}].first"), r.first)?;
        seq(&format!("ranges[{i}].last"), r.last)?;
        if r.first > r.last {
            return Err(bad(format!("ranges[{i}]"), "first after last"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::v1::{KpiQuality, Window};

    const NOW: i64 = 1_800_000_000_000;

    fn window(tag: &str) -> Window {
        Window {
            tag: tag.into(),
            count: 2,
            good: 1,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            twa: 1.0,
            last: 1.0,
        }
    }

    fn aggregates(width_ms: u32, start_ms: i64) -> Batch {
        Batch {
            seq: 1,
            created_ms: NOW,
            body: Body::Aggregates(vec![WindowSet {
                width_ms,
                start_ms,
                windows: vec![window("t")],
            }]),
        }
    }

    #[test]
    fn what_an_edge_sends_passes() {
        assert_eq!(batch(&aggregates(10_000, NOW)), Ok(()));
        let s = Status {
            ts_ms: NOW,
            software_version: "0.1.0".into(),
            started_ms: NOW - 1000,
            outbox_batches: 3,
            outbox_bytes: 1000,
            oldest_unacked_ms: Some(NOW - 500),
            last_seq: 42,
            dropped_batches: 0,
        };
        assert_eq!(status(&s), Ok(()));
    }

    #[test]
    fn forecast_quality_is_checked_field_by_field() {
        let ok = crate::v1::tests::quality();
        let b = |q: ForecastQuality| Batch {
            seq: 1,
            created_ms: NOW,
            body: Body::ForecastQuality(vec![ok.clone(), q]),
        };
        assert_eq!(batch(&b(ok.clone())), Ok(()));
        let mut none = ok.clone();
        (none.mae, none.mape, none.n, none.explanation) = (None, None, 0, vec![]);
        assert_eq!(batch(&b(none)), Ok(()), "a forecast with no actual yet");
        let refused = |f: &dyn Fn(&mut ForecastQuality), field: &str| {
            let mut q = ok.clone();
            f(&mut q);
            let e = batch(&b(q)).unwrap_err();
            assert_eq!(e.field, format!("forecast_quality[1].{field}"), "{e}");
        };
        refused(&|q| q.model.clear(), "model");
        refused(&|q| q.tag = "a\nb".into(), "tag");
        refused(&|q| q.version = "v".repeat(300), "version");
        refused(&|q| q.origin_ms = 0, "origin_ms");
        refused(&|q| q.scored_ms = i64::MAX, "scored_ms");
        refused(&|q| q.step_ms = 0, "step_ms");
        refused(&|q| q.step_ms = MAX_STEP_MS + 1, "step_ms");
        refused(&|q| q.horizon = 0, "horizon");
        refused(&|q| q.horizon = 100_001, "horizon");
        refused(&|q| q.n = 97, "n");
        refused(&|q| q.mae = Some(f64::NAN), "mae");
        refused(&|q| q.mae = Some(f64::INFINITY), "mae");
        refused(&|q| q.mae = Some(-1.0), "mae");
        refused(&|q| q.mape = Some(f64::NAN), "mape");
        refused(&|q| q.mape = Some(1e300), "mape");
        refused(&|q| q.n = 0, "n");
        refused(&|q| q.mae = None, "mae");
        refused(
            &|q| q.explanation = vec![("x".into(), 1.0); 65],
            "explanation",
        );
        refused(&|q| q.explanation[1].0.clear(), "explanation[1]");
        refused(&|q| q.explanation[0].1 = f64::NAN, "explanation[0]");
        refused(
            &|q| q.explanation[0].1 = f64::NEG_INFINITY,
            "explanation[0]",
        );
    }

    #[test]
    fn values_no_store_can_hold_are_refused_by_name() {
        // The width that failed every DuckDB commit.
        let e = batch(&aggregates(3_000_000_000, NOW)).unwrap_err();
        assert_eq!(e.field, "windows[0].width_ms");
        assert!(batch(&aggregates(0, NOW)).is_err());
        assert!(batch(&aggregates(1000, i64::MAX)).is_err());
        let mut b = aggregates(1000, NOW);
        b.seq = 0;
        assert_eq!(batch(&b).unwrap_err().field, "seq");
        b.seq = 1 << 63;
        assert_eq!(batch(&b).unwrap_err().field, "seq");
        b.seq = 1_000_000_000_000;
        assert_eq!(batch(&b), Ok(()), "large but sane");
        let mut b = aggregates(1000, NOW);
        if let Body::Aggregates(sets) = &mut b.body {
            sets[0].windows[0].good = 3;
        }
        assert!(batch(&b).is_err());
        let mut b = aggregates(1000, NOW);
        if let Body::Aggregates(sets) = &mut b.body {
            sets[0].windows[0].tag = "x".repeat(300);
        }
        assert!(batch(&b).is_err());
        let s = Status {
            ts_ms: NOW,
            software_version: String::new(),
            started_ms: NOW,
            outbox_batches: 0,
            outbox_bytes: 0,
            // Past the year 9999: this panicked `apos-hub nodes`.
            oldest_unacked_ms: Some(300_000_000_000_000),
            last_seq: 0,
            dropped_batches: 0,
        };
        assert_eq!(status(&s).unwrap_err().field, "oldest_unacked_ms");
        let k = KpiResult {
            kpi: "oee".into(),
            window: "1h".into(),
            label: String::new(),
            start_ms: NOW,
            end_ms: NOW + 10,
            until_ms: NOW + 20,
            closed: false,
            computed_ms: NOW,
            coverage: 0.5,
            quality: KpiQuality::Good,
            values: vec![],
            unit: None,
        };
        let b = Batch {
            seq: 1,
            created_ms: NOW,
            body: Body::Kpis(vec![k]),
        };
        assert_eq!(batch(&b).unwrap_err().field, "kpis[0].until_ms");
    }
}
