//! `[calendar]`, `[kpi_engine]` and `[[kpi]]`: the KPI engine's
//! configuration (docs/kpi.md).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use models::calendar::{Calendar, CalendarKind, PlannedStop, Shift, parse_hhmm, parse_weekday};
use models::expr::{ExprError, KpiExpr};
use models::kpi::{AGGREGATES, GoodCount, KpiKind, StateInput, StateMap};

use super::{Validator, is_ident};
use crate::diag::did_you_mean;
use crate::load::{Item, RawConfig};
use crate::model::{CalendarSpec, KpiDef, KpiSetup, KpiWindow, Tag};
use crate::raw::{RawKpi, S};

/// Slices in a rolling window at most: it is re-summed every slice.
const MAX_ROLLING_SLICES: u128 = 10_080;

const TYPES: &[&str] = &[
    "oee",
    "throughput",
    "specific_energy",
    "reliability",
    "expression",
];

/// Keys each type takes, beyond name, type, windows, description and unit.
fn keys_of(kind: &str) -> &'static [&'static str] {
    const STATE: [&str; 4] = ["state_tag", "running", "fault", "planned_stop_states"];
    match kind {
        "oee" => &[
            "state_tag",
            "running",
            "fault",
            "planned_stop_states",
            "total_counter",
            "good_counter",
            "reject_counter",
            "counter_modulus",
            "ideal_rate",
        ],
        "throughput" => &[
            "state_tag",
            "running",
            "fault",
            "planned_stop_states",
            "total_counter",
            "counter_modulus",
            "ideal_rate",
        ],
        "specific_energy" => &["energy_counter", "total_counter", "counter_modulus"],
        "reliability" => &STATE,
        "expression" => &["expr", "counter_modulus"],
        _ => &[],
    }
}

/// The type-specific keys present in `r`, with their spans.
fn present(r: &RawKpi) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut v = Vec::new();
    let mut add = |k: &'static str, span: Option<std::ops::Range<usize>>| {
        if let Some(s) = span {
            v.push((k, s));
        }
    };
    add("state_tag", r.state_tag.as_ref().map(S::span));
    add("running", r.running.as_ref().map(S::span));
    add("fault", r.fault.as_ref().map(S::span));
    add(
        "planned_stop_states",
        r.planned_stop_states.as_ref().map(S::span),
    );
    add("total_counter", r.total_counter.as_ref().map(S::span));
    add("good_counter", r.good_counter.as_ref().map(S::span));
    add("reject_counter", r.reject_counter.as_ref().map(S::span));
    add("counter_modulus", r.counter_modulus.as_ref().map(S::span));
    add("ideal_rate", r.ideal_rate.as_ref().map(S::span));
    add("energy_counter", r.energy_counter.as_ref().map(S::span));
    add("expr", r.expr.as_ref().map(S::span));
    v
}

impl Validator<'_> {
    /// `Some(None)`: no `[[kpi]]`; `None`: invalid (already reported).
    pub(super) fn kpi_setup(&mut self, raw: &RawConfig, tags: &[Tag]) -> Option<Option<KpiSetup>> {
        let calendar = self.calendar(raw);
        // Samples reach the history up to one flush interval late; a slice
        // is computed `grace` after it ends, so grace must cover that.
        let flush = raw
            .storage
            .as_ref()
            .and_then(|s| s.raw.flush_interval.as_ref())
            .map_or(Duration::from_secs(1), |d| d.get_ref().0);
        let default_grace = Duration::from_secs(5).max(flush + Duration::from_secs(1));
        let (mut slice, grace, max_hold) = match &raw.kpi_engine {
            Some(item) => {
                let r = &item.raw;
                (
                    self.duration(
                        item,
                        "kpi_engine › slice",
                        &r.slice,
                        Duration::from_secs(60),
                        (Duration::from_secs(1), Duration::from_secs(3600)),
                    ),
                    self.duration(
                        item,
                        "kpi_engine › grace",
                        &r.grace,
                        default_grace,
                        (Duration::ZERO, Duration::from_secs(600)),
                    ),
                    // The history stores an unchanged value once a minute
                    // (the filter's heartbeat): a shorter hold would call
                    // a steady state unknown.
                    self.duration(
                        item,
                        "kpi_engine › max_hold",
                        &r.max_hold,
                        Duration::from_secs(300),
                        (Duration::from_secs(90), Duration::from_secs(86_400)),
                    ),
                )
            }
            None => (
                Duration::from_secs(60),
                default_grace,
                Duration::from_secs(300),
            ),
        };
        if grace < flush
            && let Some(item) = &raw.kpi_engine
            && let Some(g) = &item.raw.grace
        {
            self.push(
                item.diag(g.span(), "kpi_engine › grace", format!("{} is shorter than [storage] flush_interval ({})", humantime::format_duration(grace), humantime::format_duration(flush)))
                    .help("samples are committed up to one flush interval late; a shorter grace computes slices before their samples are in: set grace to at least flush_interval + 1s"),
            );
        }
        // A slice belongs to the window its start is in: slices that divide
        // an hour start shifts and days on a slice boundary.
        if !3_600_000u128.is_multiple_of(slice.as_millis().max(1))
            && let Some(item) = &raw.kpi_engine
            && let Some(v) = &item.raw.slice
        {
            self.push(
                item.diag(v.span(), "kpi_engine › slice", format!("{} does not divide an hour", humantime::format_duration(slice)))
                    .help("choose a slice that divides an hour (10s, 1m, 5m, 15m, 30m …) so that shifts and days start on a slice boundary"),
            );
            slice = Duration::from_secs(60);
        }
        // Shift and day windows must start on a slice boundary.
        if let (Some(cal), Some(item)) = (calendar.as_ref(), &raw.kpi_engine)
            && let Ok(c) = cal.calendar()
            && let Some(why) = c.misaligned(slice.as_millis() as i64)
        {
            let span = item.raw.slice.as_ref().map_or(item.span.clone(), S::span);
            self.push(
                item.diag(span, "kpi_engine › slice", format!("with a slice of {}, {why}", humantime::format_duration(slice)))
                    .help("a slice belongs to the window it starts in: choose a slice that divides every shift start and the time zone's UTC offset (e.g. 15m or 30m for offsets like +05:30)"),
            );
        }
        // Names a KPI may read: the valid tags, plus the declared ones whose
        // own errors are already reported (no cascade of "unknown tag").
        let valid: BTreeSet<String> = tags.iter().map(|t| t.name.clone()).collect();
        let declared: BTreeSet<String> = raw
            .tags
            .iter()
            .filter_map(|t| t.raw.name.as_ref().map(|n| n.get_ref().clone()))
            .chain(valid.iter().cloned())
            .collect();
        let mut known_vars: Vec<String> = vec!["window_h".into()];
        for t in &declared {
            for a in AGGREGATES {
                known_vars.push(format!("{t}.{a}"));
            }
        }
        // Shifts as written, valid or not: a bad shift is reported once, not
        // again by every KPI with a shift window.
        let has_shifts = raw
            .calendar
            .as_ref()
            .and_then(|c| c.raw.shifts.as_ref())
            .is_some_and(|s| !s.get_ref().is_empty());
        let mut kpis = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut ok = true;
        for item in &raw.kpis {
            match self.kpi(item, &declared, &known_vars, slice, has_shifts) {
                Some(k) => {
                    let line = item.src.locate(item.span.start).0;
                    if let Some(first) = seen.insert(k.name.clone(), line) {
                        let span = item.raw.name.as_ref().map_or(item.span.clone(), S::span);
                        self.push(
                            item.diag(span, format!("kpi {:?}", k.name), "duplicate KPI name")
                                .help(format!(
                                    "first defined on line {first}; KPI names must be unique"
                                )),
                        );
                        ok = false;
                    }
                    kpis.push(k);
                }
                None => ok = false,
            }
        }
        let calendar = calendar?;
        if !ok {
            return None;
        }
        if kpis.is_empty() {
            return Some(None);
        }
        Some(Some(KpiSetup {
            calendar,
            slice,
            grace,
            max_hold,
            kpis,
        }))
    }

    fn calendar(&mut self, raw: &RawConfig) -> Option<CalendarSpec> {
        let Some(item) = &raw.calendar else {
            return Some(CalendarSpec {
                time_zone: "UTC".into(),
                week_start: 0,
                shifts: vec![],
                planned_stops: vec![],
            });
        };
        let r = &item.raw;
        let mut ok = true;
        let time_zone = match &r.time_zone {
            None => "UTC".to_string(),
            Some(tz) => {
                if Calendar::check_time_zone(tz.get_ref()).is_err() {
                    self.push(
                        item.diag(
                            tz.span(),
                            "calendar › time_zone",
                            format!("unknown time zone {:?}", tz.get_ref()),
                        )
                        .help("use an IANA name such as \"Europe/Berlin\", \"America/Chicago\" or \"UTC\""),
                    );
                    ok = false;
                }
                tz.get_ref().clone()
            }
        };
        let week_start = match &r.week_starts {
            None => 0,
            Some(w) => match parse_weekday(w.get_ref()) {
                Some(d) => d,
                None => {
                    self.push(
                        item.diag(
                            w.span(),
                            "calendar › week_starts",
                            format!("{:?} is not a weekday", w.get_ref()),
                        )
                        .help("write \"monday\" … \"sunday\" (or mon … sun)"),
                    );
                    ok = false;
                    0
                }
            },
        };
        let mut shifts = Vec::new();
        for s in r.shifts.iter().flat_map(|v| v.get_ref()) {
            let sr = s.get_ref();
            let field = format!(
                "calendar › shifts › {}",
                sr.name.as_ref().map_or("?".into(), |n| n.get_ref().clone())
            );
            let name = match &sr.name {
                Some(n) if is_ident(n.get_ref(), &[]) => n.get_ref().clone(),
                Some(n) => {
                    self.push(
                        item.diag(n.span(), &field, "invalid shift name")
                            .help("use letters, digits, '-' or '_'"),
                    );
                    ok = false;
                    continue;
                }
                None => {
                    self.push(
                        item.diag(s.span(), &field, "a shift needs a `name`")
                            .help("write { name = \"early\", start = \"06:00\" }"),
                    );
                    ok = false;
                    continue;
                }
            };
            match sr.start.as_ref().map(|t| (t, parse_hhmm(t.get_ref()))) {
                Some((_, Some(m))) if m < 1440 => shifts.push(Shift { name, start_min: m }),
                Some((t, _)) => {
                    self.push(
                        item.diag(
                            t.span(),
                            &field,
                            format!("{:?} is not a time of day", t.get_ref()),
                        )
                        .help("write the local start time as \"HH:MM\", 00:00 to 23:59"),
                    );
                    ok = false;
                }
                None => {
                    self.push(
                        item.diag(s.span(), &field, "a shift needs a `start`")
                            .help("write the local start time, e.g. start = \"06:00\"; a shift runs until the next one starts"),
                    );
                    ok = false;
                }
            }
        }
        let mut by_start: HashMap<u32, &str> = HashMap::new();
        for sh in &shifts {
            if let Some(other) = by_start.insert(sh.start_min, &sh.name) {
                let span = r.shifts.as_ref().map_or(item.span.clone(), S::span);
                self.push(
                    item.diag(
                        span,
                        "calendar › shifts",
                        format!("shifts `{other}` and `{}` start at the same time", sh.name),
                    )
                    .help("each shift runs from its start to the next shift's start; give them different starts"),
                );
                ok = false;
            }
        }
        let mut planned_stops = Vec::new();
        for p in r.planned_stops.iter().flat_map(|v| v.get_ref()) {
            let pr = p.get_ref();
            let name = pr
                .name
                .as_ref()
                .map_or("planned stop".to_string(), |n| n.get_ref().clone());
            let field = format!("calendar › planned_stops › {name}");
            let time = |v: &Option<S<String>>, key: &str, this: &mut Self| -> Option<u32> {
                match v.as_ref().map(|t| (t, parse_hhmm(t.get_ref()))) {
                    Some((_, Some(m))) => Some(m % 1440),
                    Some((t, None)) => {
                        this.push(
                            item.diag(
                                t.span(),
                                &field,
                                format!("`{key}`: {:?} is not a time of day", t.get_ref()),
                            )
                            .help("write local time as \"HH:MM\""),
                        );
                        None
                    }
                    None => {
                        this.push(
                            item.diag(p.span(), &field, format!("a planned stop needs `{key}`"))
                                .help("write { name = \"lunch\", from = \"12:00\", to = \"12:30\", days = [\"mon\", \"tue\"] }; `to` before `from` runs past midnight"),
                        );
                        None
                    }
                }
            };
            let from = time(&pr.from, "from", self);
            let to = time(&pr.to, "to", self);
            let mut days = [true; 7];
            if let Some(list) = &pr.days {
                days = [false; 7];
                for d in list.get_ref() {
                    match parse_weekday(d.get_ref()) {
                        Some(i) => days[i as usize] = true,
                        None => {
                            self.push(
                                item.diag(
                                    d.span(),
                                    &field,
                                    format!("{:?} is not a weekday", d.get_ref()),
                                )
                                .help("write \"mon\" … \"sun\" (or full names)"),
                            );
                            ok = false;
                        }
                    }
                }
            }
            match (from, to) {
                (Some(from_min), Some(to_min)) => planned_stops.push(PlannedStop {
                    name,
                    from_min,
                    to_min,
                    days,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(CalendarSpec {
            time_zone,
            week_start,
            shifts,
            planned_stops,
        })
    }

    fn kpi(
        &mut self,
        item: &Item<RawKpi>,
        tags: &BTreeSet<String>,
        known_vars: &[String],
        slice: Duration,
        has_shifts: bool,
    ) -> Option<KpiDef> {
        let r = &item.raw;
        let label = match &r.name {
            Some(n) => format!("kpi {:?}", n.get_ref()),
            None => "kpi".to_string(),
        };
        let name = match &r.name {
            Some(n) if is_ident(n.get_ref(), &['.']) => Some(n.get_ref().clone()),
            Some(n) => {
                self.push(
                    item.diag(n.span(), format!("{label} › name"), "invalid KPI name")
                        .help("use letters, digits, '.', '-' or '_' (it names the KPI in the HMI and at the hub)"),
                );
                None
            }
            None => {
                self.missing(
                    item,
                    &label,
                    "name",
                    "give the KPI a unique name, e.g. name = \"line1_oee\"",
                );
                None
            }
        };
        let kind_name = match &r.kind {
            Some(k) if TYPES.contains(&k.get_ref().as_str()) => Some(k.get_ref().clone()),
            Some(k) => {
                let mut d = item.diag(
                    k.span(),
                    format!("{label} › type"),
                    format!("unknown KPI type {:?}", k.get_ref()),
                );
                d = match did_you_mean(k.get_ref(), TYPES.iter().copied()) {
                    Some(s) => d.help(format!("did you mean {s:?}?")),
                    None => d.help(format!("use one of: {}", TYPES.join(", "))),
                };
                self.push(d);
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
        let windows = self.kpi_windows(item, &label, slice, has_shifts);
        let kind_name = kind_name?;
        let allowed = keys_of(&kind_name);
        let mut ok = true;
        for (key, span) in present(r) {
            if !allowed.contains(&key) {
                self.push(
                    item.diag(
                        span,
                        format!("{label} › {key}"),
                        format!("`{key}` does not apply to a KPI of type {kind_name:?}"),
                    )
                    .help(format!(
                        "a KPI of type {kind_name:?} takes: {}",
                        allowed.join(", ")
                    )),
                );
                ok = false;
            }
        }
        let kind = match kind_name.as_str() {
            "oee" => {
                let state = self.state_input(item, &label, tags, true);
                // Two of total, good and reject counters say what was made
                // and what was good; all three could disagree, one is not
                // enough.
                let (total, good) = match (&r.total_counter, &r.good_counter, &r.reject_counter) {
                    (Some(_), Some(_), Some(rj)) => {
                        self.push(
                            item.diag(rj.span(), format!("{label} › reject_counter"), "`total_counter`, `good_counter` and `reject_counter` are all set")
                                .help("name two of them: total + good, total + rejects (good = total − rejects), or good + rejects (total = good + rejects)"),
                        );
                        (None, None)
                    }
                    (_, Some(_), Some(_)) => {
                        let good =
                            self.tag_ref(item, &label, "good_counter", &r.good_counter, tags, true);
                        let rej = self
                            .tag_ref(
                                item,
                                &label,
                                "reject_counter",
                                &r.reject_counter,
                                tags,
                                true,
                            )
                            .map(GoodCount::GoodPlusReject);
                        (good, rej)
                    }
                    (t, g, rj) => {
                        let total = self.tag_ref(item, &label, "total_counter", t, tags, false);
                        if t.is_none() {
                            self.missing(item, &label, "total_counter", "name the counter of everything produced (`total_counter`), or give both `good_counter` and `reject_counter` (total = good + rejects)");
                        }
                        let good = match (g, rj) {
                            (Some(_), _) => self
                                .tag_ref(item, &label, "good_counter", g, tags, true)
                                .map(GoodCount::Good),
                            (None, Some(_)) => self
                                .tag_ref(item, &label, "reject_counter", rj, tags, true)
                                .map(GoodCount::Reject),
                            (None, None) => {
                                self.missing(item, &label, "good_counter", "name the counter of good items (`good_counter`) or of rejects (`reject_counter`)");
                                None
                            }
                        };
                        (total, good)
                    }
                };
                let modulus = self.modulus(item, &label);
                let rate = match &r.ideal_rate {
                    Some(v) if *v.get_ref() > 0.0 && v.get_ref().is_finite() => Some(*v.get_ref()),
                    Some(v) => {
                        self.push(
                            item.diag(v.span(), format!("{label} › ideal_rate"), format!("{} is not a rate", v.get_ref()))
                                .help("the ideal (nameplate) rate in counter units per hour, greater than 0"),
                        );
                        None
                    }
                    None => {
                        self.missing(item, &label, "ideal_rate", "the ideal (nameplate) rate in counter units per hour, e.g. ideal_rate = 300.0; performance = actual ÷ ideal");
                        None
                    }
                };
                match (state, total, good, modulus, rate) {
                    (Some(Some(state)), Some(total), Some(good), Some(modulus), Some(rate)) => {
                        Some(KpiKind::Oee {
                            state,
                            total,
                            good,
                            modulus,
                            pri_ms: 3_600_000.0 / rate,
                        })
                    }
                    _ => None,
                }
            }
            "throughput" => {
                let state = self.state_input(item, &label, tags, false);
                let total =
                    self.tag_ref(item, &label, "total_counter", &r.total_counter, tags, true);
                let modulus = self.modulus(item, &label);
                let rate = match &r.ideal_rate {
                    None => Some(None),
                    Some(v) if *v.get_ref() > 0.0 && v.get_ref().is_finite() => {
                        Some(Some(*v.get_ref()))
                    }
                    Some(v) => {
                        self.push(
                            item.diag(v.span(), format!("{label} › ideal_rate"), format!("{} is not a rate", v.get_ref()))
                                .help("the ideal (nameplate) rate in counter units per hour, greater than 0; leave it out if there is none"),
                        );
                        None
                    }
                };
                match (state, total, modulus, rate) {
                    (Some(state), Some(total), Some(modulus), Some(rate)) => {
                        Some(KpiKind::Throughput {
                            total,
                            modulus,
                            state,
                            pri_ms: rate.map(|r| 3_600_000.0 / r),
                        })
                    }
                    _ => None,
                }
            }
            "specific_energy" => {
                let energy = self.tag_ref(
                    item,
                    &label,
                    "energy_counter",
                    &r.energy_counter,
                    tags,
                    true,
                );
                let total =
                    self.tag_ref(item, &label, "total_counter", &r.total_counter, tags, true);
                let modulus = self.modulus(item, &label);
                match (energy, total, modulus) {
                    (Some(energy), Some(total), Some(modulus)) => Some(KpiKind::SpecificEnergy {
                        energy,
                        total,
                        modulus,
                    }),
                    _ => None,
                }
            }
            "reliability" => match self.state_input(item, &label, tags, true) {
                Some(Some(state)) => Some(KpiKind::Reliability { state }),
                _ => None,
            },
            _ => match &r.expr {
                None => {
                    self.missing(item, &label, "expr", "write the KPI as an expression over <tag>.<aggregate>, e.g. expr = \"heater.duty.mean / column.feed_rate.mean\"");
                    None
                }
                Some(e) => match (
                    KpiExpr::compile(e.get_ref(), known_vars),
                    self.modulus(item, &label),
                ) {
                    (Ok(expr), Some(modulus)) => Some(KpiKind::Expression { expr, modulus }),
                    (Ok(_), None) => None,
                    (Err(err), _) => {
                        let help = match &err {
                            ExprError::Unknown { .. } => format!(
                                "names are <tag>.<aggregate> with aggregate one of {}, or window_h (the window's length in hours)",
                                AGGREGATES.join(", ")
                            ),
                            ExprError::Syntax(_) => "check brackets and operators; see docs/kpi.md for the expression syntax".into(),
                            _ => "the expression must give a number; functions are those of evalexpr (min, max, math::ln, …)".into(),
                        };
                        self.push(
                            item.diag(e.span(), format!("{label} › expr"), err.to_string())
                                .help(help),
                        );
                        None
                    }
                },
            },
        };
        let (name, kind, windows) = (name?, kind?, windows?);
        ok.then_some(KpiDef {
            name,
            kind,
            windows,
            unit: r.unit.as_ref().map(|u| u.get_ref().clone()),
            description: r.description.as_ref().map(|d| d.get_ref().clone()),
        })
    }

    fn kpi_windows(
        &mut self,
        item: &Item<RawKpi>,
        label: &str,
        slice: Duration,
        has_shifts: bool,
    ) -> Option<Vec<KpiWindow>> {
        let Some(list) = &item.raw.windows else {
            return Some(vec![
                KpiWindow::Rolling(Duration::from_secs(3600)),
                KpiWindow::Calendar(if has_shifts {
                    CalendarKind::Shift
                } else {
                    CalendarKind::Day
                }),
            ]);
        };
        let field = format!("{label} › windows");
        let mut out = Vec::new();
        let mut ok = true;
        for w in list.get_ref() {
            let text = w.get_ref().trim();
            let win = match text {
                "shift" if !has_shifts => {
                    self.push(
                        item.diag(w.span(), &field, "a shift window needs a shift calendar")
                            .help("define the shifts in [calendar], e.g. shifts = [{ name = \"early\", start = \"06:00\" }, { name = \"late\", start = \"14:00\" }, { name = \"night\", start = \"22:00\" }]"),
                    );
                    ok = false;
                    continue;
                }
                "shift" => KpiWindow::Calendar(CalendarKind::Shift),
                "day" => KpiWindow::Calendar(CalendarKind::Day),
                "week" => KpiWindow::Calendar(CalendarKind::Week),
                other => match humantime::parse_duration(other) {
                    Ok(d)
                        if d >= slice
                            && d <= Duration::from_secs(31 * 86_400)
                            && d.as_millis() % slice.as_millis().max(1) == 0
                            && d.as_millis() / slice.as_millis().max(1) <= MAX_ROLLING_SLICES =>
                    {
                        KpiWindow::Rolling(d)
                    }
                    Ok(d) => {
                        self.push(
                            item.diag(w.span(), &field, format!("rolling window {} does not fit the engine's slice of {}", humantime::format_duration(d), humantime::format_duration(slice)))
                                .help(format!("a rolling window is a whole number of slices ([kpi_engine] slice), at most 31 days and {MAX_ROLLING_SLICES} slices (the engine re-sums them every slice); for longer spans use a larger slice or a day/week window")),
                        );
                        ok = false;
                        continue;
                    }
                    Err(_) => {
                        self.push(
                            item.diag(w.span(), &field, format!("{other:?} is not a window"))
                                .help("write \"shift\", \"day\", \"week\" or a rolling duration such as \"1h\" or \"15m\""),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if out.contains(&win) {
                self.push(
                    item.diag(w.span(), &field, format!("window {text:?} is listed twice"))
                        .help("remove the duplicate"),
                );
                ok = false;
                continue;
            }
            out.push(win);
        }
        if out.is_empty() && ok {
            self.push(
                item.diag(list.span(), &field, "no windows")
                    .help("list at least one window, e.g. windows = [\"1h\", \"shift\", \"day\"]"),
            );
            ok = false;
        }
        ok.then_some(out)
    }

    fn tag_ref(
        &mut self,
        item: &Item<RawKpi>,
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
        let mut d = item.diag(
            t.span(),
            format!("{label} › {key}"),
            format!("unknown tag {:?}", t.get_ref()),
        );
        d = match did_you_mean(t.get_ref(), tags.iter().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean {s:?}?")),
            None => d.help("KPIs read tags defined in [[tag]] sections or imported register maps"),
        };
        self.push(d);
        None
    }

    fn modulus(&mut self, item: &Item<RawKpi>, label: &str) -> Option<Option<f64>> {
        match &item.raw.counter_modulus {
            None => Some(None),
            Some(m) if *m.get_ref() >= 2.0 && m.get_ref().is_finite() => Some(Some(*m.get_ref())),
            Some(m) => {
                self.push(
                    item.diag(m.span(), format!("{label} › counter_modulus"), format!("{} is not a counter modulus", m.get_ref()))
                        .help("the value at which the PLC counter wraps to 0, e.g. 65536 for a 16-bit counter; leave it out for counters that do not wrap"),
                );
                None
            }
        }
    }

    /// `Some(None)`: no state tag and none required.
    fn state_input(
        &mut self,
        item: &Item<RawKpi>,
        label: &str,
        tags: &BTreeSet<String>,
        required: bool,
    ) -> Option<Option<StateInput>> {
        let r = &item.raw;
        if r.state_tag.is_none() && !required {
            return Some(None);
        }
        let tag = self.tag_ref(item, label, "state_tag", &r.state_tag, tags, required);
        let codes = |v: &Option<S<Vec<S<i64>>>>| -> Vec<i64> {
            v.as_ref()
                .map(|l| l.get_ref().iter().map(|c| *c.get_ref()).collect())
                .unwrap_or_default()
        };
        let map = StateMap {
            running: codes(&r.running),
            fault: codes(&r.fault),
            planned_stop: codes(&r.planned_stop_states),
        };
        let mut ok = true;
        if map.running.is_empty() {
            let span = r
                .running
                .as_ref()
                .map_or(item.span.start..item.span.start, S::span);
            self.push(
                item.diag(span, format!("{label} › running"), "no running state codes")
                    .help("list the state tag's values that mean running, e.g. running = [2]; also fault = [3] and planned_stop_states = [4] where they apply"),
            );
            ok = false;
        }
        let lists = [
            ("running", &map.running),
            ("fault", &map.fault),
            ("planned_stop_states", &map.planned_stop),
        ];
        for (i, (a, la)) in lists.iter().enumerate() {
            for (b, lb) in &lists[i + 1..] {
                if let Some(c) = la.iter().find(|c| lb.contains(c)) {
                    let span = match *b {
                        "fault" => r.fault.as_ref(),
                        _ => r.planned_stop_states.as_ref(),
                    }
                    .map_or(item.span.clone(), S::span);
                    self.push(
                        item.diag(span, format!("{label} › {b}"), format!("state {c} is in both `{a}` and `{b}`"))
                            .help("a state code means one thing: running, fault or planned stop (other codes count as stopped)"),
                    );
                    ok = false;
                }
            }
        }
        let tag = tag?;
        ok.then_some(Some(StateInput { tag, map }))
    }
}
