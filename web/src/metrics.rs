//! Prometheus text exposition format 0.0.4, written by hand: the format is
//! small, and a registry crate would impose its own global state on both
//! servers.
//!
//! Counter names must end in `_total` (checked in debug builds). Families
//! keep the order they were first added in.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
pub struct Family {
    name: String,
    help: String,
    kind: Kind,
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

impl Family {
    /// Adds one sample; `labels` are `(name, value)` pairs, values escaped here.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        let mut rendered = String::new();
        if !labels.is_empty() {
            rendered.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(
                    valid_name(k, false) && !k.starts_with("__"),
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
            rendered.push('}');
        }
        self.samples.push((rendered, value));
        self
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
    fn names() {
        assert!(valid_name("a_b:c9", true));
        assert!(!valid_name("9a", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("", true));
    }
}
