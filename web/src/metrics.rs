//! Prometheus text exposition format 0.0.4, written by hand: the format is
//! small, and a registry crate would impose its own global state on both
//! servers.
//!
//! Counter names must end in `_total` (checked in debug builds). Families
//! keep the order they were first added in. Histograms are recorded with
//! [`Histogram`] (fixed buckets, lock-free) and written as cumulative
//! `_bucket{le=…}` series with `_sum` and `_count`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
    /// (name suffix and rendered labels, value).
    samples: Vec<(String, f64)>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `{k="v",…}` (empty without labels), with `le` last when given.
fn render_labels(labels: &[(&str, &str)], le: Option<f64>) -> String {
    let mut rendered = String::new();
    if labels.is_empty() && le.is_none() {
        return rendered;
    }
    rendered.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        debug_assert!(
            valid_name(k, false) && !k.starts_with("__") && *k != "le",
            "bad label name {k:?}"
        );
        if i > 0 {
            rendered.push(',');
        }
        rendered.push_str(k);
        rendered.push_str("=\"");
        escape_label(v, &mut rendered);
        rendered.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            rendered.push(',');
        }
        rendered.push_str("le=\"");
        format_value(le, &mut rendered);
        rendered.push('"');
    }
    rendered.push('}');
    rendered
}

impl Family {
    /// Adds one sample; `labels` are `(name, value)` pairs, values escaped here.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        debug_assert!(
            self.kind != Kind::Histogram,
            "{}: use observed()",
            self.name
        );
        self.samples.push((render_labels(labels, None), value));
        self
    }

    /// Adds one histogram series (its buckets, `_sum` and `_count`).
    pub fn observed(&mut self, labels: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Family {
        debug_assert!(
            self.kind == Kind::Histogram,
            "{}: not a histogram",
            self.name
        );
        for (le, n) in &h.buckets {
            self.samples.push((
                format!("_bucket{}", render_labels(labels, Some(*le))),
                *n as f64,
            ));
        }
        self.samples.push((
            format!("_bucket{}", render_labels(labels, Some(f64::INFINITY))),
            h.count as f64,
        ));
        let plain = render_labels(labels, None);
        self.samples.push((format!("_sum{plain}"), h.sum));
        self.samples
            .push((format!("_count{plain}"), h.count as f64));
        self
    }
}

/// Most finite bucket bounds a [`Histogram`] has.
pub const MAX_BUCKETS: usize = 24;

/// Observations in fixed buckets, recorded without a lock (a `static` or
/// one per label set). Bounds are upper bounds, ascending; `+Inf` is implied.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one past every bound.
    counts: [AtomicU64; MAX_BUCKETS + 1],
    /// The sum's f64 bits.
    sum: AtomicU64,
}

/// A histogram as read: cumulative counts per finite bound.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Panics (at compile time for a `static`) with more than
    /// [`MAX_BUCKETS`] bounds or bounds out of order.
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() <= MAX_BUCKETS, "too many histogram buckets");
        let mut i = 1;
        while i < bounds.len() {
            assert!(bounds[i - 1] < bounds[i], "histogram bounds must ascend");
            i += 1;
        }
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1],
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value (NaN is ignored).
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        // `le` is inclusive: the first bound not below the value.
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            buckets.push((*b, cumulative));
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: cumulative,
        }
    }
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Family {
        debug_assert!(valid_name(name, true), "bad metric name {name:?}");
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            debug_assert!(self.families[i].kind == kind, "{name} added as two types");
            return &mut self.families[i];
        }
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    /// A counter family; adding the same name again returns the same family.
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Family {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        self.family(name, help, Kind::Counter)
    }

    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, Kind::Gauge)
    }

    /// A histogram family (name without `_bucket`/`_sum`/`_count`); add
    /// series with [`Family::observed`].
    pub fn histogram(&mut self, name: &str, help: &str) -> &mut Family {
        debug_assert!(
            !["_bucket", "_sum", "_count", "_total"]
                .iter()
                .any(|s| name.ends_with(s)),
            "histogram {name:?} must not end in a sample suffix"
        );
        self.family(name, help, Kind::Histogram)
    }

    pub fn render(self) -> String {
        let mut out = String::new();
        for f in &self.families {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape_help(&f.help, &mut out);
            out.push_str("\n# TYPE ");
            out.push_str(&f.name);
            out.push_str(match f.kind {
                Kind::Counter => " counter\n",
                Kind::Gauge => " gauge\n",
                Kind::Histogram => " histogram\n",
            });
            for (labels, v) in &f.samples {
                out.push_str(&f.name);
                out.push_str(labels);
                out.push(' ');
                format_value(*v, &mut out);
                out.push('\n');
            }
        }
        out
    }
}

/// A rendered exposition as an HTTP answer.
pub fn response(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn renders_families_labels_and_special_values() {
        let mut e = Exposition::new();
        e.counter("apos_requests_total", "Requests served.\nBy route.")
            .sample(&[("route", "/a"), ("code", "200")], 3.0)
            .sample(&[("route", "we\"ird\\path\n")], 0.5);
        e.gauge("apos_temp", "Temperature")
            .sample(&[], f64::NAN)
            .sample(&[("x", "p")], f64::INFINITY)
            .sample(&[("x", "n")], f64::NEG_INFINITY)
            .sample(&[("x", "big")], 1.5e300);
        e.counter("apos_requests_total", "ignored")
            .sample(&[("route", "/b")], 1.0);
        let text = e.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "# HELP apos_requests_total Requests served.\\nBy route."
        );
        assert_eq!(lines[1], "# TYPE apos_requests_total counter");
        assert_eq!(lines[2], "apos_requests_total{route=\"/a\",code=\"200\"} 3");
        assert_eq!(
            lines[3],
            r#"apos_requests_total{route="we\"ird\\path\n"} 0.5"#
        );
        assert_eq!(lines[4], "apos_requests_total{route=\"/b\"} 1");
        assert_eq!(lines[5], "# HELP apos_temp Temperature");
        assert_eq!(lines[6], "# TYPE apos_temp gauge");
        assert_eq!(lines[7], "apos_temp NaN");
        assert_eq!(lines[8], "apos_temp{x=\"p\"} +Inf");
        assert_eq!(lines[9], "apos_temp{x=\"n\"} -Inf");
        let big: f64 = lines[10].rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(big, 1.5e300);
        assert!(text.ends_with('\n'));
    }

    #[test]
    #[should_panic(expected = "_total")]
    #[cfg(debug_assertions)]
    fn counter_without_total_is_caught_in_debug() {
        Exposition::new().counter("apos_requests", "x");
    }

    #[test]
    fn response_content_type() {
        let r = response(String::new());
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        static H: Histogram = Histogram::new(&[0.125, 1.0]);
        for v in [0.0625, 0.125, 0.5, 3.0, f64::NAN] {
            H.observe(v);
        }
        let snap = H.snapshot();
        assert_eq!(snap.buckets, vec![(0.125, 2), (1.0, 3)], "le is inclusive");
        assert_eq!(snap.count, 4);
        assert_eq!(snap.sum, 3.6875);
        let mut e = Exposition::new();
        e.histogram("apos_x_seconds", "X.")
            .observed(&[("route", "/a")], &snap)
            .observed(&[], &Histogram::new(&[1.0]).snapshot());
        let text = e.render();
        let want = "# HELP apos_x_seconds X.\n# TYPE apos_x_seconds histogram\n\
            apos_x_seconds_bucket{route=\"/a\",le=\"0.125\"} 2\n\
            apos_x_seconds_bucket{route=\"/a\",le=\"1\"} 3\n\
            apos_x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n\
            apos_x_seconds_sum{route=\"/a\"} 3.6875\n\
            apos_x_seconds_count{route=\"/a\"} 4\n\
            apos_x_seconds_bucket{le=\"1\"} 0\n\
            apos_x_seconds_bucket{le=\"+Inf\"} 0\n\
            apos_x_seconds_sum 0\n\
            apos_x_seconds_count 0\n";
        assert_eq!(text, want);
    }

    #[test]
    fn names() {
        assert!(valid_name("a_b:c9", true));
        assert!(!valid_name("9a", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("", true));
    }
}
