//! The second layer: raw → typed, with defaults and every semantic check.
//! Each check pushes a located diagnostic and carries on, so one run lists
//! every problem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::load::{Item, RawConfig, resolve};
use crate::model::*;
use crate::raw::{
    MODBUS_ONLY, NumOrText, OPCUA_ONLY, RTU_ONLY, RawDevice, RawSerialLine, RawTag, S,
    TAG_MODBUS_ONLY, TAG_OPCUA_ONLY, TCP_ONLY,
};

mod alarm;
mod device;
mod hmi;
mod kpi;
mod serial;
mod setpoint;
mod storage;
mod sync;
mod tag;

pub(crate) fn validate(raw: RawConfig, diags: &mut Diagnostics) -> Option<EdgeConfig> {
    let names = |items: Vec<Option<&S<String>>>| -> BTreeSet<String> {
        items
            .into_iter()
            .flatten()
            .map(|n| n.get_ref().clone())
            .collect()
    };
    let mut v = Validator {
        diags,
        declared_lines: names(
            raw.serial_lines
                .iter()
                .map(|l| l.raw.name.as_ref())
                .collect(),
        ),
        declared_devices: names(raw.devices.iter().map(|d| d.raw.name.as_ref()).collect()),
    };
    let node = v.node(&raw);
    v.schema_version(&raw);
    let poll_groups = v.poll_groups(&raw);
    let storage = v.storage(&raw);
    let mut sync = v.sync(&raw);
    if let (Some(st), Some(Some(sy))) = (&storage, &mut sync) {
        v.outbox_within_history(&raw, st, sy);
    }
    let forecast = v.forecast(&raw);
    let hmi = v.hmi(&raw, storage.as_ref());
    let serial_lines = v.serial_lines(&raw);
    let devices = v.devices(&raw, &serial_lines);
    let tags = v.tags(&raw, &devices, &poll_groups);
    let kpi = v.kpi_setup(&raw, &tags);
    let mut alarms = v.alarms(&raw, &tags, matches!(forecast, Some(Some(_))));
    let write_back = v.write_back(&raw, &tags, alarms.as_deref().unwrap_or(&[]));
    if let (Some(a), Some(Some(w))) = (&mut alarms, &write_back) {
        a.extend(setpoint::alarms(w));
    }
    if !v.diags.is_empty() {
        return None;
    }
    // Keep devices in file order, which users expect in listings and logs.
    let mut devices = devices;
    let devices = raw
        .devices
        .iter()
        .filter_map(|d| d.raw.name.as_ref())
        .filter_map(|n| devices.remove(n.get_ref()))
        .map(|(d, _)| d)
        .collect();
    Some(EdgeConfig {
        node: node?,
        serial_lines: serial_lines.into_iter().map(|(k, (l, _))| (k, l)).collect(),
        devices,
        tags,
        poll_groups: poll_groups.into_iter().map(|(k, (d, _))| (k, d)).collect(),
        storage: storage?,
        sync: sync?,
        hmi: hmi?,
        forecast: forecast?,
        kpi: kpi?,
        alarms: alarms?,
        write_back: write_back?,
        sources: raw.sources,
    })
}

struct Validator<'a> {
    diags: &'a mut Diagnostics,
    /// Names declared in the files, valid or not: a reference to a declared
    /// but invalid device is not reported again as "unknown" (its own
    /// error already is), which keeps the report free of cascades.
    declared_lines: BTreeSet<String>,
    declared_devices: BTreeSet<String>,
}

/// Where a named thing was first defined, for duplicate reports.
type Defined = (PathBuf, usize);

fn is_ident(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn missing<T>(&mut self, item: &Item<T>, label: &str, key: &str, help: &str) {
        let span = item.span.start..item.span.start;
        self.push(
            item.diag(
                span,
                format!("{label} › {key}"),
                format!("missing required key `{key}`"),
            )
            .help(help),
        );
    }

    fn schema_version(&mut self, raw: &RawConfig) {
        match &raw.schema_version {
            None => {
                if let Some(main) = &raw.main {
                    self.push(
                        Diagnostic::at(main, 0..0, "schema_version", "missing `schema_version`")
                            .help(format!(
                                "add `schema_version = {SCHEMA_VERSION}` at the top of the file"
                            )),
                    );
                }
            }
            Some(item) if *item.raw.get_ref() != i64::from(SCHEMA_VERSION) => {
                let found = *item.raw.get_ref();
                self.push(
                    item.diag(item.raw.span(), "schema_version", format!("unsupported schema version {found}"))
                        .help(format!(
                            "this apos-edge understands schema_version = {SCHEMA_VERSION}; upgrade apos-edge or convert the file"
                        )),
                );
            }
            Some(_) => {}
        }
    }

    fn node(&mut self, raw: &RawConfig) -> Option<NodeIdentity> {
        let Some(item) = &raw.node else {
            if let Some(main) = &raw.main {
                self.push(
                    Diagnostic::at(main, 0..0, "node", "missing `[node]` section")
                        .help("add `[node]` with `site_id = \"…\"` and `node_id = \"…\"`"),
                );
            }
            return None;
        };
        let id = |key: &str, v: &Option<S<String>>, this: &mut Self| -> Option<String> {
            let Some(v) = v else {
                this.missing(
                    item,
                    "node",
                    key,
                    &format!("add `{key} = \"…\"` (letters, digits, '-' and '_')"),
                );
                return None;
            };
            if !is_ident(v.get_ref(), &[]) {
                this.push(
                    item.diag(v.span(), format!("node › {key}"), format!("{:?} is not a valid identifier", v.get_ref()))
                        .help("use 1–128 letters, digits, '-' or '_': it becomes part of MQTT topics, where '/', '+' and '#' are special"),
                );
                return None;
            }
            Some(v.get_ref().clone())
        };
        let site_id = id("site_id", &item.raw.site_id, self);
        let node_id = id("node_id", &item.raw.node_id, self);
        Some(NodeIdentity {
            site_id: site_id?,
            node_id: node_id?,
        })
    }

    fn duration(
        &mut self,
        item: &Item<impl Sized>,
        field: &str,
        v: &Option<S<crate::raw::Dur>>,
        default: Duration,
        range: (Duration, Duration),
    ) -> Duration {
        let Some(v) = v else { return default };
        let d = v.get_ref().0;
        if d < range.0 || d > range.1 {
            self.push(
                item.diag(
                    v.span(),
                    field,
                    format!("{} is out of range", humantime::format_duration(d)),
                )
                .help(format!(
                    "use a duration between {} and {}",
                    humantime::format_duration(range.0),
                    humantime::format_duration(range.1)
                )),
            );
            return default;
        }
        d
    }

    fn int(
        &mut self,
        item: &Item<impl Sized>,
        field: &str,
        v: &Option<S<i64>>,
        default: i64,
        range: (i64, i64),
        help: &str,
    ) -> i64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if n < range.0 || n > range.1 {
            self.push(
                item.diag(
                    v.span(),
                    field,
                    format!("{n} is out of range {}..={}", range.0, range.1),
                )
                .help(help),
            );
            return default;
        }
        n
    }

    /// A secret from a file or an environment variable key pair:
    /// `Ok(None)` when neither is set, `Err` when both are (reported).
    fn secret(
        &mut self,
        item: &Item<impl Sized>,
        section: &str,
        file: (&str, &Option<S<String>>),
        env: (&str, &Option<S<String>>),
    ) -> Result<Option<SecretSource>, ()> {
        match (file.1, env.1) {
            (Some(f), Some(_)) => {
                self.push(
                    item.diag(
                        f.span(),
                        format!("{section} › {}", file.0),
                        format!("both `{}` and `{}` are set", file.0, env.0),
                    )
                    .help("keep one: the secret comes from a file or from an environment variable"),
                );
                Err(())
            }
            (Some(f), None) => Ok(Some(SecretSource::File(resolve(
                &item.src.path,
                f.get_ref(),
            )))),
            (None, Some(e)) => Ok(Some(SecretSource::Env(e.get_ref().clone()))),
            (None, None) => Ok(None),
        }
    }
}
