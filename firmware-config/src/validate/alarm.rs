//! `[[alarm]]`: alarms on tags and forecasts, validated into the alarm
//! state machine's types (`models::alarm::machine`).

use models::alarm::machine::{AlarmSpec, Deadband, Detector, Priority, Side};

use super::*;
use crate::raw::RawAlarm;

const TYPES: &[&str] = &[
    "hi",
    "hihi",
    "lo",
    "lolo",
    "rate",
    "discrete",
    "quality",
    "predictive",
];

/// Keys each type takes, beyond name, type, tag, message, priority, the
/// delays, latched, realarm, stale_after and suppression.
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "hi" | "hihi" | "lo" | "lolo" => &["limit", "deadband", "deadband_percent"],
        "rate" => &["max_rate"],
        "discrete" => &["equals"],
        "quality" => &[],
        "predictive" => &["limit", "side", "model", "deadband", "deadband_percent"],
        _ => &[],
    }
}

/// The type-specific keys present in `r`, with their spans.
fn present(r: &RawAlarm) -> Vec<(&'static str, std::ops::Range<usize>)> {
    [
        ("limit", r.limit.as_ref().map(S::span)),
        ("deadband", r.deadband.as_ref().map(S::span)),
        ("deadband_percent", r.deadband_percent.as_ref().map(S::span)),
        ("max_rate", r.max_rate.as_ref().map(S::span)),
        ("equals", r.equals.as_ref().map(S::span)),
        ("model", r.model.as_ref().map(S::span)),
        ("side", r.side.as_ref().map(S::span)),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect()
}

impl Validator<'_> {
    pub(super) fn alarms(
        &mut self,
        raw: &RawConfig,
        tags: &[Tag],
        has_forecast: bool,
    ) -> Option<Vec<AlarmDef>> {
        // Valid tags, plus declared ones whose own errors are reported
        // already (no cascade of "unknown tag").
        let declared: BTreeSet<String> = raw
            .tags
            .iter()
            .filter_map(|t| t.raw.name.as_ref().map(|n| n.get_ref().clone()))
            .chain(tags.iter().map(|t| t.name.clone()))
            .collect();
        let mut out = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut ok = true;
        for item in &raw.alarms {
            if let Some(n) = &item.raw.name
                && !seen.insert(n.get_ref().clone())
            {
                self.push(
                    item.diag(n.span(), format!("alarm {:?} › name", n.get_ref()), "an alarm with this name is already defined")
                        .help("alarm names are unique: they name the alarm on the HMI, in the journal and at the hub"),
                );
                ok = false;
            }
            match self.alarm(item, &declared, has_forecast) {
                Some(a) => out.push(a),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn alarm(
        &mut self,
        item: &Item<RawAlarm>,
        tags: &BTreeSet<String>,
        has_forecast: bool,
    ) -> Option<AlarmDef> {
        let r = &item.raw;
        let label = match &r.name {
            Some(n) => format!("alarm {:?}", n.get_ref()),
            None => "alarm".to_string(),
        };
        let name = match &r.name {
            Some(n) if is_ident(n.get_ref(), &['.']) => Some(n.get_ref().clone()),
            Some(n) => {
                self.push(
                    item.diag(n.span(), format!("{label} › name"), "invalid alarm name")
                        .help("use letters, digits, '.', '-' or '_', e.g. name = \"heater.outlet.hi\""),
                );
                None
            }
            None => {
                self.missing(
                    item,
                    &label,
                    "name",
                    "give the alarm a unique name, e.g. name = \"heater.outlet.hi\"",
                );
                None
            }
        };
        let kind = match &r.kind {
            Some(k) if TYPES.contains(&k.get_ref().as_str()) => Some(k.get_ref().clone()),
            Some(k) => {
                let d = item.diag(
                    k.span(),
                    format!("{label} › type"),
                    format!("unknown alarm type {:?}", k.get_ref()),
                );
                self.push(match did_you_mean(k.get_ref(), TYPES.iter().copied()) {
                    Some(s) => d.help(format!("did you mean {s:?}?")),
                    None => d.help(format!("use one of: {}", TYPES.join(", "))),
                });
                None
            }
            None => {
                self.missing(
                    item,
                    &label,
                    "type",
                    &format!("set type to one of: {}", TYPES.join(", ")),
                );
                None
            }
        };
        let tag = self.alarm_tag(item, &label, "tag", &r.tag, tags, true);
        let mut ok = true;
        let priority = match r
            .priority
            .as_ref()
            .map(|p| (p, p.get_ref().to_ascii_lowercase()))
        {
            None => Priority::Medium,
            Some((_, p)) if p == "low" || p == "1" => Priority::Low,
            Some((_, p)) if p == "medium" || p == "2" => Priority::Medium,
            Some((_, p)) if p == "high" || p == "3" => Priority::High,
            Some((_, p)) if p == "urgent" || p == "4" => Priority::Urgent,
            Some((p, _)) => {
                self.push(
                    item.diag(
                        p.span(),
                        format!("{label} › priority"),
                        format!("unknown priority {:?}", p.get_ref()),
                    )
                    .help("use \"low\", \"medium\", \"high\" or \"urgent\" (1–4)"),
                );
                ok = false;
                Priority::Medium
            }
        };
        let dur = |v: &Option<S<crate::raw::Dur>>| v.as_ref().map(|d| d.get_ref().0);
        let day = Duration::from_secs(86_400);
        let on_delay = self.duration(
            item,
            &format!("{label} › on_delay"),
            &r.on_delay,
            Duration::ZERO,
            (Duration::ZERO, day),
        );
        let off_delay = self.duration(
            item,
            &format!("{label} › off_delay"),
            &r.off_delay,
            Duration::ZERO,
            (Duration::ZERO, day),
        );
        let realarm = dur(&r.realarm).map(|_| {
            self.duration(
                item,
                &format!("{label} › realarm"),
                &r.realarm,
                Duration::from_secs(3600),
                (Duration::from_secs(10), 7 * day),
            )
        });
        let stale_after = dur(&r.stale_after).map(|_| {
            self.duration(
                item,
                &format!("{label} › stale_after"),
                &r.stale_after,
                Duration::from_secs(60),
                (Duration::from_secs(1), day),
            )
        });
        let suppress_when = match &r.suppress_when {
            None => {
                if let Some(e) = &r.suppress_equals {
                    self.push(
                        item.diag(e.span(), format!("{label} › suppress_equals"), "`suppress_equals` without `suppress_when`")
                            .help("name the condition tag: suppress_when = \"pump.running\", suppress_equals = 0"),
                    );
                    ok = false;
                }
                None
            }
            Some(_) => self
                .alarm_tag(item, &label, "suppress_when", &r.suppress_when, tags, true)
                .map(|t| (t, r.suppress_equals.as_ref().map_or(0.0, |e| *e.get_ref()))),
        };
        if r.suppress_when.is_some() && suppress_when.is_none() {
            ok = false;
        }
        let kind = kind?;
        let allowed = keys_of(&kind);
        for (key, span) in present(r) {
            if !allowed.contains(&key) {
                self.push(
                    item.diag(
                        span,
                        format!("{label} › {key}"),
                        format!("`{key}` does not apply to an alarm of type {kind:?}"),
                    )
                    .help(if allowed.is_empty() {
                        format!("an alarm of type {kind:?} takes no type-specific keys")
                    } else {
                        format!("an alarm of type {kind:?} takes: {}", allowed.join(", "))
                    }),
                );
                ok = false;
            }
        }
        let num = |v: &Option<S<f64>>| v.as_ref().map(|x| *x.get_ref());
        let required = |this: &mut Self, key: &str, v: Option<f64>, help: &str| -> Option<f64> {
            match v {
                Some(x) if x.is_finite() => Some(x),
                Some(x) => {
                    this.push(
                        item.diag(
                            item.span.clone(),
                            format!("{label} › {key}"),
                            format!("{x} is not a number"),
                        )
                        .help(help.to_string()),
                    );
                    None
                }
                None => {
                    this.missing(item, &label, key, help);
                    None
                }
            }
        };
        let deadband = match (num(&r.deadband), num(&r.deadband_percent)) {
            (Some(_), Some(_)) => {
                let span = r
                    .deadband_percent
                    .as_ref()
                    .map_or(item.span.clone(), S::span);
                self.push(
                    item.diag(span, format!("{label} › deadband_percent"), "both `deadband` and `deadband_percent` are set")
                        .help("give the deadband once: in engineering units (deadband) or as a percent of the limit (deadband_percent)"),
                );
                ok = false;
                Deadband::Absolute(0.0)
            }
            (Some(d), None) if d >= 0.0 && d.is_finite() => Deadband::Absolute(d),
            (None, Some(p)) if (0.0..=50.0).contains(&p) => Deadband::Percent(p),
            (None, None) => Deadband::Absolute(0.0),
            (d, _) => {
                let (key, span) = if d.is_some() {
                    ("deadband", r.deadband.as_ref().map(S::span))
                } else {
                    ("deadband_percent", r.deadband_percent.as_ref().map(S::span))
                };
                self.push(
                    item.diag(
                        span.unwrap_or(item.span.clone()),
                        format!("{label} › {key}"),
                        "the deadband is out of range",
                    )
                    .help("a deadband is ≥ 0 in engineering units, or 0–50 % of the limit"),
                );
                ok = false;
                Deadband::Absolute(0.0)
            }
        };
        let limit_help = "the limit in the tag's engineering units, e.g. limit = 420.0";
        let detector = match kind.as_str() {
            "hi" | "hihi" | "lo" | "lolo" => required(self, "limit", num(&r.limit), limit_help)
                .map(|limit| Detector::Limit {
                    side: if kind.starts_with('h') {
                        Side::Above
                    } else {
                        Side::Below
                    },
                    limit,
                    deadband,
                }),
            "rate" => match required(
                self,
                "max_rate",
                num(&r.max_rate),
                "the largest normal change per second, in engineering units, e.g. max_rate = 5.0",
            ) {
                Some(x) if x > 0.0 => Some(Detector::Rate { per_s: x }),
                Some(_) => {
                    self.push(
                        item.diag(
                            r.max_rate.as_ref().map_or(item.span.clone(), S::span),
                            format!("{label} › max_rate"),
                            "max_rate must be greater than 0",
                        )
                        .help("the largest normal change per second"),
                    );
                    None
                }
                None => None,
            },
            "discrete" => required(
                self,
                "equals",
                num(&r.equals),
                "the state code that raises the alarm, e.g. equals = 7",
            )
            .map(|equals| Detector::Discrete { equals }),
            "quality" => Some(Detector::Quality),
            _ => {
                let side = match r
                    .side
                    .as_ref()
                    .map(|s| (s, s.get_ref().to_ascii_lowercase()))
                {
                    None => Some(Side::Above),
                    Some((_, s)) if s == "above" => Some(Side::Above),
                    Some((_, s)) if s == "below" => Some(Side::Below),
                    Some((s, _)) => {
                        self.push(
                            item.diag(
                                s.span(),
                                format!("{label} › side"),
                                format!("unknown side {:?}", s.get_ref()),
                            )
                            .help("use \"above\" (forecast to rise past the limit) or \"below\""),
                        );
                        None
                    }
                };
                if r.model.is_none() {
                    self.missing(item, &label, "model", "name the forecasting model whose output is watched (a directory in [forecast] models_dir)");
                    ok = false;
                }
                if !has_forecast {
                    let span = r.model.as_ref().map_or(item.span.clone(), S::span);
                    self.push(
                        item.diag(span, format!("{label} › model"), "a predictive alarm needs [forecast]")
                            .help("add a [forecast] section with models_dir; the alarm watches one of its models"),
                    );
                    ok = false;
                }
                match (required(self, "limit", num(&r.limit), limit_help), side) {
                    (Some(limit), Some(side)) => Some(Detector::Limit {
                        side,
                        limit,
                        deadband,
                    }),
                    _ => None,
                }
            }
        };
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (name, tag, detector) = (name?, tag?, detector?);
        ok.then(|| AlarmDef {
            name,
            tag,
            model: r.model.as_ref().map(|m| m.get_ref().clone()),
            spec: AlarmSpec {
                detector,
                priority,
                on_delay_ms: ms(on_delay),
                off_delay_ms: ms(off_delay),
                latched: r.latched.as_ref().is_some_and(|l| *l.get_ref()),
                realarm_ms: realarm.map(ms),
            },
            kind,
            stale_after,
            suppress_when,
            message: r.message.as_ref().map(|m| m.get_ref().clone()),
        })
    }

    fn alarm_tag(
        &mut self,
        item: &Item<RawAlarm>,
        label: &str,
        key: &str,
        v: &Option<S<String>>,
        tags: &BTreeSet<String>,
        required: bool,
    ) -> Option<String> {
        let Some(t) = v else {
            if required {
                self.missing(item, label, key, &format!("name the tag for `{key}`"));
            }
            return None;
        };
        if tags.contains(t.get_ref()) {
            return Some(t.get_ref().clone());
        }
        let d = item.diag(
            t.span(),
            format!("{label} › {key}"),
            format!("unknown tag {:?}", t.get_ref()),
        );
        self.push(
            match did_you_mean(t.get_ref(), tags.iter().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean {s:?}?")),
                None => d.help(
                    "alarms watch tags defined in [[tag]] sections or imported register maps",
                ),
            },
        );
        None
    }
}
