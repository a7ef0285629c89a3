//! `[[report]]`: periodic site reports (docs/insights.md, "Reports").
//!
//! ```toml
//! [[report]]
//! site = "north"
//! period = "7d"              # the span each report covers
//! at = "06:00"               # made at this time of day (whole-day periods) …
//! zone = "Europe/Berlin"     # … in this zone (default UTC)
//! # every = "1h"             # … or at a simple interval instead of `at`
//! # chromium = "/usr/bin/chromium"   # for the PDF; "" for HTML only
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    name: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    period: Option<Spanned<String>>,
    at: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    chromium: Option<Spanned<String>>,
}

/// When a report is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// At `minute` past local midnight (0–1439) in `zone`, every `days`
    /// days counted from Monday 1970-01-05 (so a 7-day report comes on
    /// Mondays).
    Daily {
        minute: u32,
        zone: String,
        days: u32,
    },
    /// Every so long, aligned to the epoch (a 1 h report on the hour).
    Every(Duration),
}

/// Layer 2: validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Unique; the stored files are named after it.
    pub name: String,
    pub site: String,
    /// The span each report covers, ending when it is made.
    pub period: Duration,
    pub schedule: Schedule,
    /// The Chromium used for the PDF; `None`: HTML only.
    pub chromium: Option<PathBuf>,
}

/// Chromium where Debian installs it.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const MIN_PERIOD: Duration = Duration::from_secs(60);
const MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);

pub(super) fn validate(c: &mut Ctx<'_>, raw: &[Spanned<RawReport>]) -> Vec<Report> {
    let mut out: Vec<Report> = Vec::new();
    for r in raw {
        let span = r.span();
        let r = r.get_ref();
        let Some(site) = &r.site else {
            c.err(
                span,
                "report › site",
                "a [[report]] without a site",
                "name the site it reports on, e.g. site = \"north\"",
            );
            continue;
        };
        if let Err(e) = protocol::topic::check_id(site.get_ref()) {
            c.err(
                site.span(),
                "report › site",
                &e.to_string(),
                "a site identifier",
            );
        }
        let period = match &r.period {
            Some(_) => c.duration(
                "report › period",
                r.period.as_ref(),
                Duration::from_secs(86_400),
                (MIN_PERIOD, MAX_PERIOD),
                "the span each report covers, e.g. \"1d\" or \"7d\"",
            ),
            None => {
                c.err(
                    span.clone(),
                    "report › period",
                    "a [[report]] without a period",
                    "say how long a span each report covers, e.g. period = \"7d\"",
                );
                continue;
            }
        };
        let schedule = schedule(c, r, period);
        let name = match &r.name {
            Some(n) => {
                if let Err(e) = protocol::topic::check_id(n.get_ref()) {
                    c.err(
                        n.span(),
                        "report › name",
                        &e.to_string(),
                        "letters, digits, `_` and `-`: the stored files are named after it",
                    );
                }
                n.get_ref().clone()
            }
            None => format!(
                "{}-{}",
                site.get_ref(),
                humantime::format_duration(period)
                    .to_string()
                    .replace(' ', "")
            ),
        };
        if out.iter().any(|o| o.name == name) {
            c.err(
                r.name.as_ref().map_or(span.clone(), |n| n.span()),
                "report › name",
                &format!("report {name:?} is defined twice"),
                "give each [[report]] its own name (two reports of one site and period need names)",
            );
        }
        let chromium = match &r.chromium {
            None => Some(PathBuf::from(DEFAULT_CHROMIUM)),
            Some(p) if p.get_ref().is_empty() => None,
            Some(p) => Some(c.resolve(p.get_ref())),
        };
        if let Some(schedule) = schedule {
            out.push(Report {
                name,
                site: site.get_ref().clone(),
                period,
                schedule,
                chromium,
            });
        }
    }
    out
}

fn schedule(c: &mut Ctx<'_>, r: &RawReport, period: Duration) -> Option<Schedule> {
    match (&r.at, &r.every) {
        (Some(at), Some(every)) => {
            c.err(
                every.span(),
                "report › every",
                "`at` and `every` together",
                "give a time of day (`at`, for periods of whole days) or an interval (`every`), not both",
            );
            let _ = at;
            None
        }
        (Some(at), None) => {
            let minute = match parse_hhmm(at.get_ref()) {
                Some(m) => m,
                None => {
                    c.err(
                        at.span(),
                        "report › at",
                        &format!("{:?} is not a time of day", at.get_ref()),
                        "write HH:MM on a 24-hour clock, e.g. \"06:00\"",
                    );
                    return None;
                }
            };
            if !period.as_secs().is_multiple_of(86_400) || period.subsec_nanos() != 0 {
                c.err(
                    r.period.as_ref().map_or(at.span(), |p| p.span()),
                    "report › period",
                    "`at` needs a period of whole days",
                    "use e.g. period = \"1d\" or \"7d\" with `at`, or `every` for shorter periods",
                );
                return None;
            }
            let zone = match &r.zone {
                None => "UTC".to_owned(),
                Some(z) => {
                    if jiff::tz::TimeZone::get(z.get_ref()).is_err() {
                        c.err(
                            z.span(),
                            "report › zone",
                            &format!("unknown time zone {:?}", z.get_ref()),
                            "an IANA zone name, e.g. \"Europe/Berlin\" or \"UTC\"",
                        );
                        return None;
                    }
                    z.get_ref().clone()
                }
            };
            Some(Schedule::Daily {
                minute,
                zone,
                days: u32::try_from(period.as_secs() / 86_400).unwrap_or(1),
            })
        }
        (None, every) => {
            if let Some(z) = &r.zone {
                c.err(
                    z.span(),
                    "report › zone",
                    "`zone` without `at`",
                    "a zone only places `at`, the time of day; remove it or add `at`",
                );
            }
            let d = c.duration(
                "report › every",
                every.as_ref(),
                period,
                (MIN_PERIOD, MAX_PERIOD),
                "how often a report is made, e.g. \"1h\"",
            );
            Some(Schedule::Every(d))
        }
    }
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    const BASE: &str = "schema_version = 1\n[storage]\npath = \"f.duckdb\"\n";

    fn err(text: &str) -> String {
        parse(Path::new("hub.toml"), &format!("{BASE}{text}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reports_parse_with_defaults() {
        let cfg = parse(
            Path::new("/etc/apos/hub.toml"),
            &format!(
                "{BASE}[[report]]\nsite = \"north\"\nperiod = \"7d\"\nat = \"06:30\"\nzone = \"Europe/Berlin\"\n\
                 [[report]]\nname = \"demo\"\nsite = \"north\"\nperiod = \"1h\"\nevery = \"10m\"\nchromium = \"\"\n\
                 [[report]]\nsite = \"south\"\nperiod = \"1d\"\n"
            ),
        )
        .unwrap();
        let r = &cfg.reports;
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "north-7days");
        assert_eq!(
            r[0].schedule,
            Schedule::Daily {
                minute: 390,
                zone: "Europe/Berlin".into(),
                days: 7
            }
        );
        assert_eq!(r[0].chromium.as_deref(), Some(Path::new(DEFAULT_CHROMIUM)));
        assert_eq!(r[1].schedule, Schedule::Every(Duration::from_secs(600)));
        assert_eq!(r[1].chromium, None);
        assert_eq!(r[2].schedule, Schedule::Every(Duration::from_secs(86_400)));
    }

    #[test]
    fn mistakes_are_located() {
        let e = err("[[report]]\nsite = \"north\"\nperiod = \"1d\"\nat = \"25:00\"\n");
        assert!(
            e.contains("report › at") && e.contains("hub.toml:7:6"),
            "{e}"
        );
        let e = err("[[report]]\nsite = \"north\"\nperiod = \"90m\"\nat = \"06:00\"\n");
        assert!(e.contains("`at` needs a period of whole days"), "{e}");
        let e = err(
            "[[report]]\nsite = \"north\"\nperiod = \"1d\"\nat = \"06:00\"\nzone = \"Mars/Base\"\n",
        );
        assert!(e.contains("unknown time zone"), "{e}");
        let e =
            err("[[report]]\nsite = \"north\"\nperiod = \"1d\"\nat = \"06:00\"\nevery = \"1h\"\n");
        assert!(e.contains("not both"), "{e}");
        let e = err("[[report]]\nperiod = \"1d\"\n");
        assert!(e.contains("without a site"), "{e}");
        let e = err("[[report]]\nsite = \"north\"\n");
        assert!(e.contains("without a period"), "{e}");
        let e = err("[[report]]\nsite = \"north\"\nperiod = \"1s\"\n");
        assert!(e.contains("report › period"), "{e}");
        let e = err(
            "[[report]]\nsite = \"north\"\nperiod = \"1d\"\n[[report]]\nsite = \"north\"\nperiod = \"1d\"\n",
        );
        assert!(e.contains("defined twice"), "{e}");
        let e = err("[[report]]\nsite = \"north\"\nperiod = \"1d\"\ncolour = \"red\"\n");
        assert!(e.contains("colour"), "{e}");
    }
}
