//! Numbers as the sentences say them: few digits, always with a unit.

/// A value with about three significant digits (no exponent for ordinary
/// plant values).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    let d = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else if a == 0.0 {
        0
    } else {
        (2.0 - a.log10().floor()).clamp(2.0, 6.0) as usize
    };
    let s = format!("{v:.d$}");
    if s == "-0" { "0".into() } else { s }
}

/// A ratio (0–1) as percent: `0.8123` → `81 %`.
pub fn pct(f: f64) -> String {
    if !f.is_finite() {
        return "–".into();
    }
    let p = f * 100.0;
    if p.abs() >= 10.0 || p == p.round() {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// A change of a ratio in percentage points, unsigned: `0.09` → `9 points`.
pub fn points(d: f64) -> String {
    let p = (d * 100.0).abs();
    let s = if p >= 10.0 || p == p.round() {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    };
    format!("{s} point{}", if s == "1" { "" } else { "s" })
}

/// Hours with one decimal: `4320 s` → `1.2 h`.
pub fn hours(s: f64) -> String {
    let h = s / 3600.0;
    if h.abs() < 1.0 {
        // "0.1 h" reads worse than "6 min", and "0.0 h" hides a few minutes.
        format!("{:.0} min", s / 60.0)
    } else if h.abs() >= 100.0 {
        format!("{h:.0} h")
    } else {
        format!("{h:.1} h")
    }
}

/// A span in ms the way a person says it: `7 days`, `6 h`, `30 min`.
pub fn span(ms: i64) -> String {
    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;
    const MIN: i64 = 60_000;
    if ms >= DAY && ms % DAY == 0 {
        let d = ms / DAY;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else if ms >= HOUR && ms % HOUR == 0 {
        format!("{} h", ms / HOUR)
    } else if ms >= MIN {
        let m = ms as f64 / MIN as f64;
        if m >= 90.0 {
            format!("{:.1} h", m / 60.0)
        } else {
            format!("{m:.0} min")
        }
    } else {
        format!("{:.0} s", ms as f64 / 1000.0)
    }
}

/// "week over week", "day over day", else "against the previous 6 h".
pub fn over(period_ms: i64) -> String {
    match period_ms {
        604_800_000 => "week over week".into(),
        86_400_000 => "day over day".into(),
        3_600_000 => "hour over hour".into(),
        p => format!("against the previous {}", span(p)),
    }
}

/// "rose" or "fell".
pub fn moved(delta: f64) -> &'static str {
    if delta >= 0.0 { "rose" } else { "fell" }
}

/// A value with its unit (`300 m3/h`), or the bare number.
pub fn with_unit(v: f64, unit: Option<&str>) -> String {
    match unit.filter(|u| !u.is_empty()) {
        Some(u) => format!("{} {u}", num(v)),
        None => num(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers() {
        assert_eq!(pct(0.8123), "81 %");
        assert_eq!(pct(0.055), "5.5 %");
        assert_eq!(points(0.09), "9 points");
        assert_eq!(points(0.01), "1 point");
        assert_eq!(hours(4320.0), "1.2 h");
        assert_eq!(over(604_800_000), "week over week");
        assert_eq!(over(6 * 3_600_000), "against the previous 6 h");
        assert_eq!(num(351.24), "351");
        assert_eq!(num(0.00123), "0.00123");
        assert_eq!(with_unit(2.5, Some("m3/h")), "2.50 m3/h");
    }
}
