//! `[setpoints]` and `[[setpoint]]`: which tags the hub may propose values
//! for, and the limits the edge enforces on every write (docs/configuration.md,
//! "Setpoints").

use models::alarm::machine::{AlarmSpec, Detector, Priority};

use super::*;
use crate::raw::RawSetpoint;

/// Name of a setpoint's write-back alarm, and of the internal signal that
/// drives it (1 after a rollback; the alarm is latched).
pub fn alarm_name(tag: &str) -> String {
    format!("writeback.{tag}")
}

/// The write-back alarms the `[[setpoint]]`s add to the configured ones.
pub(super) fn alarms(w: &WriteBack) -> Vec<AlarmDef> {
    w.setpoints
        .iter()
        .map(|s| AlarmDef {
            name: s.alarm.clone(),
            tag: s.alarm.clone(),
            kind: "discrete".to_owned(),
            spec: AlarmSpec {
                detector: Detector::Discrete { equals: 1.0 },
                priority: Priority::High,
                on_delay_ms: 0,
                off_delay_ms: 0,
                latched: true,
                realarm_ms: None,
            },
            model: None,
            stale_after: None,
            suppress_when: None,
            message: Some(format!(
                "a write to {} did not take and was rolled back (the audit log says why)",
                s.tag
            )),
        })
        .collect()
}

fn key_text_ok(k: &str) -> bool {
    k.strip_prefix("ed25519:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Validator<'_> {
    pub(super) fn write_back(
        &mut self,
        raw: &RawConfig,
        tags: &[Tag],
        alarms: &[AlarmDef],
    ) -> Option<Option<WriteBack>> {
        let Some(item) = &raw.setpoints else {
            if let Some(first) = raw.setpoint.first() {
                self.push(
                    first
                        .diag(first.span.clone(), "setpoint", "`[[setpoint]]` without `[setpoints]`")
                        .help("add a `[setpoints]` section with `hub_public_key = \"ed25519:…\"` (`apos-hub optimize key` prints it)"),
                );
                return None;
            }
            return Some(None);
        };
        let mut ok = true;
        for (present, what, why) in [
            (
                raw.hmi.is_some(),
                "[hmi]",
                "operators approve recommendations on the HMI",
            ),
            (
                raw.sync.is_some(),
                "[sync]",
                "recommendations arrive over the hub link",
            ),
        ] {
            if !present {
                self.push(
                    item.diag(
                        item.span.clone(),
                        "setpoints",
                        format!("`[setpoints]` needs {what}"),
                    )
                    .help(format!("add {what}: {why}")),
                );
                ok = false;
            }
        }
        let hub_public_key = match &item.raw.hub_public_key {
            Some(k) if key_text_ok(k.get_ref().trim()) => k.get_ref().trim().to_owned(),
            Some(k) => {
                self.push(
                    item.diag(
                        k.span(),
                        "setpoints › hub_public_key",
                        "not an Ed25519 public key",
                    )
                    .help(
                        "paste what `apos-hub optimize key` prints: `ed25519:` and 64 hex digits",
                    ),
                );
                ok = false;
                String::new()
            }
            None => {
                self.missing(
                    item,
                    "setpoints",
                    "hub_public_key",
                    "paste what `apos-hub optimize key` prints on the hub: only recommendations signed by that key are queued",
                );
                ok = false;
                String::new()
            }
        };
        let max_pending = match &item.raw.max_pending {
            None => 32,
            Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.push(
                    item.diag(
                        n.span(),
                        "setpoints › max_pending",
                        format!("{} is not in 1 … 1000", n.get_ref()),
                    )
                    .help("how many proposals may wait for approval; the default is 32"),
                );
                ok = false;
                32
            }
        };
        let by_name: HashMap<&str, &Tag> = tags.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut setpoints = Vec::new();
        let mut seen = BTreeSet::new();
        for sp in &raw.setpoint {
            match self.setpoint(sp, &by_name, alarms) {
                Some(d) => {
                    if !seen.insert(d.tag.clone()) {
                        self.push(
                            sp.diag(
                                sp.span.clone(),
                                format!("setpoint {:?}", d.tag),
                                "this tag already has a `[[setpoint]]`",
                            )
                            .help("one `[[setpoint]]` per tag: merge the two"),
                        );
                        ok = false;
                    }
                    setpoints.push(d);
                }
                None => ok = false,
            }
        }
        ok.then_some(Some(WriteBack {
            hub_public_key,
            max_pending,
            setpoints,
        }))
    }

    fn setpoint(
        &mut self,
        item: &Item<RawSetpoint>,
        tags: &HashMap<&str, &Tag>,
        alarms: &[AlarmDef],
    ) -> Option<SetpointDef> {
        let r = &item.raw;
        let Some(tag_s) = &r.tag else {
            self.missing(
                item,
                "setpoint",
                "tag",
                "name the writable tag, e.g. tag = \"heater.outlet_temp_sp\"",
            );
            return None;
        };
        let label = format!("setpoint {:?}", tag_s.get_ref());
        let mut ok = true;
        let known = |v: &mut Self, key: &str, t: &S<String>| -> Option<&Tag> {
            match tags.get(t.get_ref().as_str()) {
                Some(t) => Some(*t),
                None => {
                    let d = item.diag(
                        t.span(),
                        format!("{label} › {key}"),
                        format!("unknown tag {:?}", t.get_ref()),
                    );
                    v.push(match did_you_mean(t.get_ref(), tags.keys().copied()) {
                        Some(s) => d.help(format!("did you mean {s:?}?")),
                        None => d.help(
                            "name a tag defined in a [[tag]] section or an imported register map",
                        ),
                    });
                    None
                }
            }
        };
        let tag = known(self, "tag", tag_s);
        if let Some(t) = tag
            && !t.writable
        {
            self.push(
                item.diag(tag_s.span(), format!("{label} › tag"), "the tag is not writable")
                    .help("add `writable = true` to the tag (a holding register, coil or writable OPC UA node)"),
            );
            ok = false;
        }
        let alarm = alarm_name(tag_s.get_ref());
        if alarms.iter().any(|a| a.name == alarm) {
            self.push(
                item.diag(
                    tag_s.span(),
                    format!("{label} › tag"),
                    format!("an `[[alarm]]` is already named {alarm:?}"),
                )
                .help("that name is the setpoint's own write-back alarm: rename the [[alarm]]"),
            );
            ok = false;
        }
        let num = |v: &mut Self, key: &str, x: &Option<S<f64>>| -> Option<f64> {
            match x {
                None => {
                    v.missing(
                        item,
                        &label,
                        key,
                        &format!("give `{key}` in the tag's units"),
                    );
                    None
                }
                Some(x) if x.get_ref().is_finite() => Some(*x.get_ref()),
                Some(x) => {
                    v.push(item.diag(x.span(), format!("{label} › {key}"), "not a finite number"));
                    None
                }
            }
        };
        let min = num(self, "min", &r.min);
        let max = num(self, "max", &r.max);
        let max_step = num(self, "max_step", &r.max_step);
        if let (Some(lo), Some(hi), Some(m)) = (min, max, &r.max) {
            if lo >= hi {
                self.push(
                    item.diag(
                        m.span(),
                        format!("{label} › max"),
                        format!("max {hi} is not above min {lo}"),
                    )
                    .help("min and max are the absolute bounds of every write"),
                );
                ok = false;
            }
            if let Some((rlo, rhi)) = tag.and_then(|t| t.range)
                && (lo < rlo || hi > rhi)
            {
                self.push(
                    item.diag(
                        m.span(),
                        format!("{label} › min/max"),
                        format!("{lo} … {hi} reaches outside the tag's range {rlo} … {rhi}"),
                    )
                    .help("narrow min/max to within the tag's `range`"),
                );
                ok = false;
            }
        }
        if let (Some(s), Some(sp)) = (max_step, &r.max_step)
            && s <= 0.0
        {
            self.push(
                item.diag(sp.span(), format!("{label} › max_step"), "must be above 0")
                    .help("the largest change one write may make; larger moves are ramped"),
            );
            ok = false;
        }
        let tolerance = match &r.tolerance {
            None => {
                // A register's resolution, or f32 rounding at the bound,
                // and always below a tenth of a step (a step that did not
                // take must not pass its read-back).
                let scale = tag.map_or(0.0, |t| t.scale.abs());
                let span = max.unwrap_or(1.0).abs().max(min.unwrap_or(0.0).abs());
                scale
                    .max(1e-4 * span)
                    .min(max_step.unwrap_or(f64::INFINITY).abs() / 10.0)
            }
            Some(t)
                if t.get_ref().is_finite()
                    && *t.get_ref() >= 0.0
                    && max_step.is_none_or(|s| *t.get_ref() < s) =>
            {
                *t.get_ref()
            }
            Some(t) if max_step.is_some_and(|s| *t.get_ref() >= s) => {
                self.push(
                    item.diag(t.span(), format!("{label} › tolerance"), "not below max_step")
                        .help("a read-back within the tolerance verifies a step, so a step that did not take would pass: make it smaller than max_step (the register's resolution is usually right)"),
                );
                ok = false;
                0.0
            }
            Some(t) => {
                self.push(item.diag(
                    t.span(),
                    format!("{label} › tolerance"),
                    "must be a number ≥ 0",
                ));
                ok = false;
                0.0
            }
        };
        let min_interval = self.duration(
            item,
            &format!("{label} › min_interval"),
            &r.min_interval,
            Duration::from_secs(10),
            (Duration::ZERO, Duration::from_secs(86_400)),
        );
        let verify_timeout = self.duration(
            item,
            &format!("{label} › verify_timeout"),
            &r.verify_timeout,
            Duration::from_secs(10),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let permissive = match &r.permissive {
            None => None,
            Some(p) => match known(self, "permissive", p) {
                Some(t) => Some(t.name.clone()),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let state = match (&r.state_tag, &r.state_equals) {
            (None, None) => {
                if let Some(n) = &r.state_name {
                    self.push(
                        item.diag(n.span(), format!("{label} › state_name"), "`state_name` without `state_tag`")
                            .help("name the state tag and value: state_tag = \"unit.state\", state_equals = 2, state_name = \"running\""),
                    );
                    ok = false;
                }
                None
            }
            (Some(t), Some(e)) => match known(self, "state_tag", t) {
                Some(tag) => Some(StateInterlock {
                    tag: tag.name.clone(),
                    equals: *e.get_ref(),
                    name: r.state_name.as_ref().map_or_else(
                        || format!("{} = {}", tag.name, e.get_ref()),
                        |n| n.get_ref().clone(),
                    ),
                }),
                None => {
                    ok = false;
                    None
                }
            },
            (Some(t), None) => {
                self.push(
                    item.diag(
                        t.span(),
                        format!("{label} › state_tag"),
                        "`state_tag` without `state_equals`",
                    )
                    .help("give the value the state tag must have, e.g. state_equals = 2"),
                );
                ok = false;
                None
            }
            (None, Some(e)) => {
                self.push(
                    item.diag(
                        e.span(),
                        format!("{label} › state_equals"),
                        "`state_equals` without `state_tag`",
                    )
                    .help("name the state tag, e.g. state_tag = \"unit.state\""),
                );
                ok = false;
                None
            }
        };
        let tag = tag?;
        if !ok {
            return None;
        }
        Some(SetpointDef {
            tag: tag.name.clone(),
            unit: tag.unit.clone(),
            min: min?,
            max: max?,
            max_step: max_step?,
            min_interval,
            tolerance,
            verify_timeout,
            permissive,
            state,
            alarm,
        })
    }
}
