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

mod kpi;

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
    let sync = v.sync(&raw);
    let forecast = v.forecast(&raw);
    let serial_lines = v.serial_lines(&raw);
    let devices = v.devices(&raw, &serial_lines);
    let tags = v.tags(&raw, &devices, &poll_groups);
    let kpi = v.kpi_setup(&raw, &tags);
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
        forecast: forecast?,
        kpi: kpi?,
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

    fn poll_groups(&mut self, raw: &RawConfig) -> BTreeMap<String, (Duration, Range<usize>)> {
        let mut out = BTreeMap::new();
        for item in &raw.poll_groups {
            let (name, dur) = &item.raw;
            let field = format!("poll_groups › {}", name.get_ref());
            if !is_ident(name.get_ref(), &[]) {
                self.push(
                    item.diag(name.span(), &field, "invalid poll group name")
                        .help("use letters, digits, '-' or '_'"),
                );
                continue;
            }
            let d = dur.get_ref().0;
            if d < Duration::from_millis(10) || d > Duration::from_secs(86_400) {
                self.push(
                    item.diag(
                        dur.span(),
                        &field,
                        format!("interval {} is out of range", humantime::format_duration(d)),
                    )
                    .help("use an interval between 10ms and 1day"),
                );
                continue;
            }
            out.insert(name.get_ref().clone(), (d, name.span()));
        }
        out
    }

    fn storage(&mut self, raw: &RawConfig) -> Option<Storage> {
        let Some(item) = &raw.storage else {
            return Some(Storage {
                path: PathBuf::from("/var/lib/apos-edge/history.db"),
                retention_age: Duration::from_secs(30 * 86_400),
                retention_bytes: 1 << 30,
                batch_size: 5000,
                flush_interval: Duration::from_secs(1),
            });
        };
        let r = &item.raw;
        let path = match &r.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.push(
                    item.diag(p.span(), "storage › path", "empty path")
                        .help("give a file path, e.g. \"/var/lib/apos-edge/history.db\""),
                );
                PathBuf::new()
            }
            Some(p) => resolve(&item.src.path, p.get_ref()),
            None => PathBuf::from("/var/lib/apos-edge/history.db"),
        };
        let retention_age = self.duration(
            item,
            "storage › retention",
            &r.retention,
            Duration::from_secs(30 * 86_400),
            (
                Duration::from_secs(60),
                Duration::from_secs(100 * 365 * 86_400),
            ),
        );
        let retention_bytes = match &r.max_size {
            Some(s) if s.get_ref().0 < (1 << 20) => {
                self.push(
                    item.diag(
                        s.span(),
                        "storage › max_size",
                        format!(
                            "{} bytes is too small for a history database",
                            s.get_ref().0
                        ),
                    )
                    .help("use at least \"1MiB\"; typical values are \"512MiB\" to \"16GiB\""),
                );
                1 << 30
            }
            Some(s) => s.get_ref().0,
            None => 1 << 30,
        };
        let batch_size = self.int(
            item,
            "storage › batch_size",
            &r.batch_size,
            5000,
            (1, 1_000_000),
            "samples per insert transaction; 1000–20000 is typical",
        );
        let flush_interval = self.duration(
            item,
            "storage › flush_interval",
            &r.flush_interval,
            Duration::from_secs(1),
            (Duration::from_millis(10), Duration::from_secs(60)),
        );
        Some(Storage {
            path,
            retention_age,
            retention_bytes,
            batch_size: batch_size as usize,
            flush_interval,
        })
    }

    /// `Some(None)`: no `[forecast]`; `None`: invalid (already reported).
    fn forecast(&mut self, raw: &RawConfig) -> Option<Option<Forecast>> {
        let Some(item) = &raw.forecast else {
            return Some(None);
        };
        let r = &item.raw;
        let models_dir = match &r.models_dir {
            Some(d) => resolve(&item.src.path, d.get_ref()),
            None => {
                self.push(
                    item.diag(item.span.clone(), "forecast › models_dir", "the models directory is not set")
                        .help("add `models_dir = \"/var/lib/apos-edge/models\"`: one subdirectory per model (model.onnx + manifest.toml)"),
                );
                return None;
            }
        };
        let interval = self.duration(
            item,
            "forecast › interval",
            &r.interval,
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(86_400)),
        );
        let max_hold = self.duration(
            item,
            "forecast › max_hold",
            &r.max_hold,
            Duration::from_secs(900),
            (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        );
        let check_every = self.duration(
            item,
            "forecast › check_every",
            &r.check_every,
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let explain_max_features = self.int(
            item,
            "forecast › explain_max_features",
            &r.explain_max_features,
            64,
            (1, 100_000),
            "feature groups an explanation occludes; its cost is one model run of this many rows",
        );
        Some(Some(Forecast {
            models_dir,
            interval,
            max_hold,
            explain_max_features: explain_max_features as usize,
            check_every,
        }))
    }

    /// `Some(None)`: no `[sync]`; `None`: invalid (already reported).
    fn sync(&mut self, raw: &RawConfig) -> Option<Option<Sync>> {
        let Some(item) = &raw.sync else {
            return Some(None);
        };
        let r = &item.raw;
        let mut ok = true;
        let (broker_host, broker_port, tls) = match &r.broker {
            None => {
                self.push(
                    item.diag(item.span.clone(), "sync › broker", "the hub's MQTT broker is not set")
                        .help("add `broker = \"mqtts://hub.example:8883\"` (or `mqtt://127.0.0.1:1883` on a trusted network)"),
                );
                ok = false;
                (String::new(), 0, None)
            }
            Some(b) => match parse_broker(b.get_ref()) {
                Ok((h, p, tls)) => (
                    h,
                    p,
                    tls.then(|| {
                        r.ca_file
                            .as_ref()
                            .map(|c| resolve(&item.src.path, c.get_ref()))
                    }),
                ),
                Err(e) => {
                    self.push(
                        item.diag(b.span(), "sync › broker", e)
                            .help("write `mqtt://host:1883` or `mqtts://host:8883` (TLS)"),
                    );
                    ok = false;
                    (String::new(), 0, None)
                }
            },
        };
        if let (Some(c), Some(None) | None) = (&r.ca_file, &tls) {
            self.push(
                item.diag(
                    c.span(),
                    "sync › ca_file",
                    "`ca_file` only applies to a TLS broker",
                )
                .help("use an `mqtts://` broker URL, or remove `ca_file`"),
            );
            ok = false;
        }
        let password = self.secret(
            item,
            "sync",
            ("password_file", &r.password_file),
            ("password_env", &r.password_env),
        );
        let credentials = match (&r.user, password) {
            (Some(u), Ok(Some(p))) => Some((u.get_ref().clone(), p)),
            (Some(u), Ok(None)) => {
                self.push(
                    item.diag(u.span(), "sync › user", "a user needs a password source")
                        .help("add `password_file = \"/etc/apos-edge/mqtt.pass\"` (mode 0600) or `password_env = \"APOS_MQTT_PASSWORD\"`"),
                );
                ok = false;
                None
            }
            (None, Ok(Some(_))) => {
                let span = r
                    .password_file
                    .as_ref()
                    .or(r.password_env.as_ref())
                    .map(|s| s.span())
                    .unwrap_or(item.span.clone());
                self.push(
                    item.diag(span, "sync › user", "a password without a `user`")
                        .help("add `user = \"<node id>\"`, the MQTT user name the hub knows this node by"),
                );
                ok = false;
                None
            }
            (_, Err(())) => {
                ok = false;
                None
            }
            (None, Ok(None)) => None,
        };
        let key = match self.secret(
            item,
            "sync",
            ("key_file", &r.key_file),
            ("key_env", &r.key_env),
        ) {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                self.push(
                    item.diag(item.span.clone(), "sync › key_file", "the node's signing key is not set")
                        .help("add `key_file = \"/etc/apos-edge/node.key\"` (at least 16 random bytes, the same as in the hub's `[[node]]` entry), or `key_env`"),
                );
                ok = false;
                None
            }
            Err(()) => {
                ok = false;
                None
            }
        };
        let mut windows = Vec::new();
        match &r.windows {
            None => windows = vec![Duration::from_secs(10), Duration::from_secs(60)],
            Some(list) if list.get_ref().is_empty() => {
                self.push(
                    item.diag(list.span(), "sync › windows", "no aggregation window")
                        .help("give at least one, e.g. `windows = [\"10s\", \"1m\"]`"),
                );
                ok = false;
            }
            Some(list) => {
                for w in list.get_ref() {
                    let d = w.get_ref().0;
                    if d < Duration::from_secs(1)
                        || d > Duration::from_secs(86_400)
                        || d.subsec_nanos() != 0
                    {
                        self.push(
                            item.diag(
                                w.span(),
                                "sync › windows",
                                format!("window {} is out of range", humantime::format_duration(d)),
                            )
                            .help("use whole seconds between 1s and 1d"),
                        );
                        ok = false;
                    } else if windows.contains(&d) {
                        self.push(
                            item.diag(
                                w.span(),
                                "sync › windows",
                                format!("window {} is listed twice", humantime::format_duration(d)),
                            )
                            .help("remove the duplicate"),
                        );
                        ok = false;
                    } else {
                        windows.push(d);
                    }
                }
                windows.sort();
            }
        }
        let grace = self.duration(
            item,
            "sync › grace",
            &r.grace,
            Duration::from_secs(2),
            (Duration::ZERO, Duration::from_secs(600)),
        );
        let outbox_max_bytes = match &r.outbox_max_size {
            Some(s) if s.get_ref().0 < (64 << 10) => {
                self.push(
                    item.diag(s.span(), "sync › outbox_max_size", format!("{} bytes is too small for an outbox", s.get_ref().0))
                        .help("use at least \"64KiB\"; size it for the longest outage to ride out, e.g. \"256MiB\""),
                );
                ok = false;
                0
            }
            Some(s) => s.get_ref().0,
            None => 256 << 20,
        };
        let when_full = match r
            .when_full
            .as_ref()
            .map(|w| (w, w.get_ref().to_ascii_lowercase()))
        {
            None => WhenFull::DropOldest,
            Some((_, w)) if w == "drop_oldest" => WhenFull::DropOldest,
            Some((_, w)) if w == "reject_new" => WhenFull::RejectNew,
            Some((w, _)) => {
                self.push(
                    item.diag(w.span(), "sync › when_full", format!("unknown policy {:?}", w.get_ref()))
                        .help("use \"drop_oldest\" (keep the newest data) or \"reject_new\" (keep the oldest)"),
                );
                ok = false;
                WhenFull::DropOldest
            }
        };
        let resend_after = self.duration(
            item,
            "sync › resend_after",
            &r.resend_after,
            Duration::from_secs(10),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let max_in_flight = self.int(
            item,
            "sync › max_in_flight",
            &r.max_in_flight,
            64,
            (1, 10_000),
            "batches sent and not yet acknowledged; 16–256 is typical",
        );
        let max_batch_windows = self.int(
            item,
            "sync › max_batch_windows",
            &r.max_batch_windows,
            5000,
            (1, 100_000),
            "windows per MQTT message; 1000–10000 is typical",
        );
        let status_interval = self.duration(
            item,
            "sync › status_interval",
            &r.status_interval,
            Duration::from_secs(10),
            (Duration::from_secs(1), Duration::from_secs(3600)),
        );
        if !ok {
            return None;
        }
        Some(Some(Sync {
            broker_host,
            broker_port,
            tls,
            credentials,
            key: key?,
            windows,
            grace,
            outbox_max_bytes,
            when_full,
            resend_after,
            max_in_flight: max_in_flight as usize,
            max_batch_windows: max_batch_windows as usize,
            status_interval,
        }))
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

    fn serial_lines(&mut self, raw: &RawConfig) -> BTreeMap<String, (SerialLine, Defined)> {
        let mut out: BTreeMap<String, (SerialLine, Defined)> = BTreeMap::new();
        for item in &raw.serial_lines {
            if let Some(line) = self.serial_line(item) {
                let here = (item.src.path.clone(), item.src.locate(item.span.start).0);
                if let Some((_, (file, l))) = out.get(&line.name) {
                    let name_span = item
                        .raw
                        .name
                        .as_ref()
                        .map(|n| n.span())
                        .unwrap_or(item.span.clone());
                    self.push(
                        item.diag(
                            name_span,
                            format!("serial_line {:?}", line.name),
                            "duplicate serial line name",
                        )
                        .help(format!(
                            "first defined at {}:{l}; rename one of them",
                            file.display()
                        )),
                    );
                    continue;
                }
                out.insert(line.name.clone(), (line, here));
            }
        }
        out
    }

    fn serial_line(&mut self, item: &Item<RawSerialLine>) -> Option<SerialLine> {
        let r = &item.raw;
        let Some(name) = &r.name else {
            self.missing(
                item,
                "serial_line",
                "name",
                "add `name = \"line1\"`; devices refer to it with `line = \"line1\"`",
            );
            return None;
        };
        let label = format!("serial_line {:?}", name.get_ref());
        let path = match &r.path {
            Some(p) if !p.get_ref().trim().is_empty() => PathBuf::from(p.get_ref()),
            Some(p) => {
                self.push(
                    item.diag(
                        p.span(),
                        format!("{label} › path"),
                        "empty serial device path",
                    )
                    .help("e.g. \"/dev/ttyUSB0\" or \"/dev/serial/by-id/…\""),
                );
                return None;
            }
            None => {
                self.missing(
                    item,
                    &label,
                    "path",
                    "add `path = \"/dev/ttyUSB0\"` (prefer the stable /dev/serial/by-id/… name)",
                );
                return None;
            }
        };
        let mut ok = true;
        let baud = match &r.baud {
            None => 19_200,
            Some(b) if (50..=4_000_000).contains(b.get_ref()) => *b.get_ref() as u32,
            Some(b) => {
                self.push(
                    item.diag(
                        b.span(),
                        format!("{label} › baud"),
                        format!("impossible baud rate {}", b.get_ref()),
                    )
                    .help("common Modbus RTU rates: 9600, 19200, 38400, 57600, 115200"),
                );
                ok = false;
                19_200
            }
        };
        let parity = match r
            .parity
            .as_ref()
            .map(|p| (p, p.get_ref().to_ascii_lowercase()))
        {
            None => Parity::Even,
            Some((_, p)) if p == "none" || p == "n" => Parity::None,
            Some((_, p)) if p == "even" || p == "e" => Parity::Even,
            Some((_, p)) if p == "odd" || p == "o" => Parity::Odd,
            Some((p, _)) => {
                self.push(
                    item.diag(
                        p.span(),
                        format!("{label} › parity"),
                        format!("unknown parity {:?}", p.get_ref()),
                    )
                    .help("use \"none\", \"even\" or \"odd\" (the Modbus default is \"even\")"),
                );
                ok = false;
                Parity::Even
            }
        };
        let data_bits = match &r.data_bits {
            None => 8,
            Some(b) if *b.get_ref() == 8 => 8,
            Some(b) => {
                self.push(
                    item.diag(b.span(), format!("{label} › data_bits"), format!("{} data bits is impossible for Modbus RTU", b.get_ref()))
                        .help("Modbus RTU always uses 8 data bits (7 is only used by Modbus ASCII); remove the key or set it to 8"),
                );
                ok = false;
                8
            }
        };
        let stop_bits = match &r.stop_bits {
            None => 1,
            Some(b) if matches!(b.get_ref(), 1 | 2) => *b.get_ref() as u8,
            Some(b) => {
                self.push(
                    item.diag(
                        b.span(),
                        format!("{label} › stop_bits"),
                        format!("{} stop bits is impossible", b.get_ref()),
                    )
                    .help("use 1 or 2 (Modbus specifies 2 when parity is \"none\")"),
                );
                ok = false;
                1
            }
        };
        let mut line = SerialLine {
            name: name.get_ref().clone(),
            path,
            baud,
            parity,
            data_bits,
            stop_bits,
            inter_frame_delay: Duration::ZERO,
            unit_backoff: Backoff {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(60),
                jitter: 0.3,
            },
        };
        let min = line.min_inter_frame_delay();
        line.inter_frame_delay = match &r.inter_frame_delay {
            None => min,
            Some(d)
                if d.get_ref().0 + Duration::from_micros(1) >= min
                    && d.get_ref().0 <= Duration::from_secs(1) =>
            {
                d.get_ref().0
            }
            Some(d) => {
                self.push(
                    item.diag(d.span(), format!("{label} › inter_frame_delay"), format!(
                        "{} is impossible at {baud} baud",
                        humantime::format_duration(d.get_ref().0)
                    ))
                    .help(format!(
                        "Modbus RTU needs at least 3.5 character times between frames ({}µs here) and at most 1s; remove the key to use the minimum",
                        min.as_micros()
                    )),
                );
                ok = false;
                min
            }
        };
        line.unit_backoff.initial = self.duration(
            item,
            &format!("{label} › unit_backoff_initial"),
            &r.unit_backoff_initial,
            line.unit_backoff.initial,
            (Duration::from_millis(10), Duration::from_secs(3600)),
        );
        line.unit_backoff.max = self.duration(
            item,
            &format!("{label} › unit_backoff_max"),
            &r.unit_backoff_max,
            line.unit_backoff.max,
            (Duration::from_millis(10), Duration::from_secs(86_400)),
        );
        ok.then_some(line)
    }

    fn devices(
        &mut self,
        raw: &RawConfig,
        lines: &BTreeMap<String, (SerialLine, Defined)>,
    ) -> BTreeMap<String, (Device, Defined)> {
        let mut out: BTreeMap<String, (Device, Defined)> = BTreeMap::new();
        let mut units_on_line: HashMap<(String, u8), String> = HashMap::new();
        for item in &raw.devices {
            let Some(dev) = self.device(item, lines) else {
                continue;
            };
            let name_span = item
                .raw
                .name
                .as_ref()
                .map(|n| n.span())
                .unwrap_or(item.span.clone());
            if let Some((_, (file, l))) = out.get(&dev.name) {
                self.push(
                    item.diag(
                        name_span,
                        format!("device {:?}", dev.name),
                        "duplicate device name",
                    )
                    .help(format!(
                        "first defined at {}:{l}; device names must be unique",
                        file.display()
                    )),
                );
                continue;
            }
            if let Transport::ModbusRtu { line, unit_id } = &dev.transport
                && let Some(other) =
                    units_on_line.insert((line.clone(), *unit_id), dev.name.clone())
            {
                let span = item
                    .raw
                    .unit_id
                    .as_ref()
                    .map(|u| u.span())
                    .unwrap_or(name_span.clone());
                self.push(
                    item.diag(
                        span,
                        format!("device {:?} › unit_id", dev.name),
                        format!(
                            "unit id {unit_id} is already used by device {other:?} on line {line:?}"
                        ),
                    )
                    .help("each slave on one RS-485 line needs its own unit id"),
                );
                continue;
            }
            let here = (item.src.path.clone(), item.src.locate(item.span.start).0);
            out.insert(dev.name.clone(), (dev, here));
        }
        out
    }

    fn device(
        &mut self,
        item: &Item<RawDevice>,
        lines: &BTreeMap<String, (SerialLine, Defined)>,
    ) -> Option<Device> {
        let r = &item.raw;
        let Some(name) = &r.name else {
            self.missing(
                item,
                "device",
                "name",
                "add `name = \"plc1\"`; tags refer to it with `device = \"plc1\"`",
            );
            return None;
        };
        let label = format!("device {:?}", name.get_ref());
        if !is_ident(name.get_ref(), &['.']) {
            self.push(
                item.diag(name.span(), &label, "invalid device name")
                    .help("use letters, digits, '.', '-' or '_'"),
            );
            return None;
        }
        let Some(protocol) = &r.protocol else {
            self.missing(
                item,
                &label,
                "protocol",
                "add `protocol = \"modbus-tcp\"` or `protocol = \"modbus-rtu\"`",
            );
            return None;
        };
        let present = |keys: &[&str]| -> Vec<(&'static str, Range<usize>)> {
            let mut v = Vec::new();
            for k in keys {
                let span = match *k {
                    "host" => r.host.as_ref().map(|x| x.span()),
                    "port" => r.port.as_ref().map(|x| x.span()),
                    "connect_timeout" => r.connect_timeout.as_ref().map(|x| x.span()),
                    "line" => r.line.as_ref().map(|x| x.span()),
                    _ => None,
                };
                if let Some(s) = span {
                    let k: &'static str = match *k {
                        "host" => "host",
                        "port" => "port",
                        "connect_timeout" => "connect_timeout",
                        _ => "line",
                    };
                    v.push((k, s));
                }
            }
            v
        };
        let mut ok = true;
        let transport = match protocol.get_ref().as_str() {
            "modbus-tcp" | "modbus-rtu" if !device_keys_present(r, OPCUA_ONLY).is_empty() => {
                for (k, s) in device_keys_present(r, OPCUA_ONLY) {
                    self.push(
                        item.diag(
                            s,
                            format!("{label} › {k}"),
                            format!("`{k}` only applies to protocol \"opcua\""),
                        )
                        .help("remove it, or set `protocol = \"opcua\"`"),
                    );
                }
                return None;
            }
            "modbus-tcp" => {
                for (k, s) in present(RTU_ONLY) {
                    self.push(
                        item.diag(
                            s,
                            format!("{label} › {k}"),
                            format!("`{k}` does not apply to protocol \"modbus-tcp\""),
                        )
                        .help("remove it, or use protocol = \"modbus-rtu\" for a serial device"),
                    );
                    ok = false;
                }
                let host = match &r.host {
                    Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().clone(),
                    Some(h) => {
                        self.push(
                            item.diag(h.span(), format!("{label} › host"), "empty host")
                                .help("give an IP address or host name"),
                        );
                        return None;
                    }
                    None => {
                        self.missing(
                            item,
                            &label,
                            "host",
                            "add `host = \"192.168.1.10\"` (the PLC's address)",
                        );
                        return None;
                    }
                };
                let port = self.int(
                    item,
                    &format!("{label} › port"),
                    &r.port,
                    502,
                    (1, 65_535),
                    "Modbus TCP uses port 502 unless the device says otherwise",
                ) as u16;
                let unit_id = self.int(
                    item,
                    &format!("{label} › unit_id"),
                    &r.unit_id,
                    1,
                    (0, 255),
                    "TCP unit ids are 0–255; most PLCs answer on 1 (or 255)",
                ) as u8;
                let connect_timeout = self.duration(
                    item,
                    &format!("{label} › connect_timeout"),
                    &r.connect_timeout,
                    Duration::from_secs(3),
                    (Duration::from_millis(10), Duration::from_secs(120)),
                );
                Transport::ModbusTcp {
                    host,
                    port,
                    unit_id,
                    connect_timeout,
                }
            }
            "modbus-rtu" => {
                for (k, s) in present(TCP_ONLY) {
                    self.push(
                        item.diag(s, format!("{label} › {k}"), format!("`{k}` does not apply to protocol \"modbus-rtu\""))
                            .help("serial settings belong to the [[serial_line]] the device names with `line`"),
                    );
                    ok = false;
                }
                let Some(line) = &r.line else {
                    self.missing(
                        item,
                        &label,
                        "line",
                        "add `line = \"…\"` naming a [[serial_line]]",
                    );
                    return None;
                };
                if self.declared_lines.contains(line.get_ref())
                    && !lines.contains_key(line.get_ref())
                {
                    ok = false;
                } else if !lines.contains_key(line.get_ref()) {
                    let mut d = item.diag(
                        line.span(),
                        format!("{label} › line"),
                        format!("unknown serial line {:?}", line.get_ref()),
                    );
                    d = match did_you_mean(
                        line.get_ref(),
                        self.declared_lines.iter().map(String::as_str),
                    ) {
                        Some(s) => d.help(format!("did you mean {s:?}?")),
                        None => d.help(
                            "define it with a [[serial_line]] section (name, path, baud, parity …)",
                        ),
                    };
                    self.push(d);
                    ok = false;
                }
                let Some(unit) = &r.unit_id else {
                    self.missing(
                        item,
                        &label,
                        "unit_id",
                        "add `unit_id = N` (1–247), the slave address set on the device",
                    );
                    return None;
                };
                let unit_id = *unit.get_ref();
                if !(1..=247).contains(&unit_id) {
                    self.push(
                        item.diag(
                            unit.span(),
                            format!("{label} › unit_id"),
                            format!("unit id {unit_id} is not a valid RTU slave address"),
                        )
                        .help(
                            "RTU slave addresses are 1–247 (0 is broadcast, which gets no answer)",
                        ),
                    );
                    return None;
                }
                Transport::ModbusRtu {
                    line: line.get_ref().clone(),
                    unit_id: unit_id as u8,
                }
            }
            "opcua" | "opc-ua" => {
                for (k, s) in device_keys_present(r, MODBUS_ONLY) {
                    self.push(
                        item.diag(s, format!("{label} › {k}"), format!("`{k}` does not apply to protocol \"opcua\""))
                            .help("an OPC UA device is reached through `endpoint = \"opc.tcp://host:4840\"`"),
                    );
                    ok = false;
                }
                match self.opcua_endpoint(item, &label) {
                    Some(e) => Transport::OpcUa(e),
                    None => return None,
                }
            }
            other => {
                let mut d = item.diag(
                    protocol.span(),
                    format!("{label} › protocol"),
                    format!("unknown protocol {other:?}"),
                );
                d = match did_you_mean(other, ["modbus-tcp", "modbus-rtu", "opcua"]) {
                    Some(s) => d.help(format!("did you mean {s:?}?")),
                    None => d.help("use \"modbus-tcp\", \"modbus-rtu\" or \"opcua\""),
                };
                self.push(d);
                return None;
            }
        };
        let poll_interval = self.duration(
            item,
            &format!("{label} › poll_interval"),
            &r.poll_interval,
            Duration::from_secs(1),
            (Duration::from_millis(10), Duration::from_secs(86_400)),
        );
        let timeout = self.duration(
            item,
            &format!("{label} › timeout"),
            &r.timeout,
            Duration::from_secs(1),
            (Duration::from_millis(1), Duration::from_secs(60)),
        );
        let max_registers = self.int(
            item,
            &format!("{label} › max_registers_per_request"),
            &r.max_registers_per_request,
            125,
            (1, 125),
            "the Modbus limit is 125 registers per read; some devices need less",
        ) as u16;
        let max_bits = self.int(
            item,
            &format!("{label} › max_bits_per_request"),
            &r.max_bits_per_request,
            2000,
            (1, 2000),
            "the Modbus limit is 2000 coils or inputs per read",
        ) as u16;
        let max_gap = self.int(item, &format!("{label} › max_gap"), &r.max_gap, 16, (0, 2000), "unused registers the planner may read through to merge requests; 0 disables merging across gaps") as u16;
        let mut backoff = Backoff::default();
        backoff.initial = self.duration(
            item,
            &format!("{label} › backoff_initial"),
            &r.backoff_initial,
            backoff.initial,
            (Duration::from_millis(10), Duration::from_secs(3600)),
        );
        backoff.max = self.duration(
            item,
            &format!("{label} › backoff_max"),
            &r.backoff_max,
            backoff.max,
            (Duration::from_millis(10), Duration::from_secs(86_400)),
        );
        if backoff.max < backoff.initial {
            let span = r
                .backoff_max
                .as_ref()
                .map(|s| s.span())
                .unwrap_or(item.span.clone());
            self.push(
                item.diag(
                    span,
                    format!("{label} › backoff_max"),
                    "backoff_max is shorter than backoff_initial",
                )
                .help("backoff_max must be ≥ backoff_initial"),
            );
            ok = false;
        }
        ok.then_some(Device {
            name: name.get_ref().clone(),
            poll_interval,
            timeout,
            backoff,
            transport,
            limits: RequestLimits {
                max_registers,
                max_bits,
                max_gap,
            },
        })
    }

    fn tags(
        &mut self,
        raw: &RawConfig,
        devices: &BTreeMap<String, (Device, Defined)>,
        groups: &BTreeMap<String, (Duration, Range<usize>)>,
    ) -> Vec<Tag> {
        let mut out = Vec::with_capacity(raw.tags.len());
        let mut seen: HashMap<String, Defined> = HashMap::new();
        for item in &raw.tags {
            let Some(tag) = self.tag(item, devices, groups) else {
                continue;
            };
            let here = (item.src.path.clone(), item.src.locate(item.span.start).0);
            if let Some((file, line)) = seen.get(&tag.name) {
                let span = item
                    .raw
                    .name
                    .as_ref()
                    .map(|n| n.span())
                    .unwrap_or(item.span.clone());
                self.push(
                    item.diag(span, format!("tag {:?}", tag.name), "duplicate tag name")
                        .help(format!(
                            "first defined at {}:{line}; tag names must be unique across all files",
                            file.display()
                        )),
                );
                continue;
            }
            seen.insert(tag.name.clone(), here);
            out.push(tag);
        }
        out
    }

    fn tag(
        &mut self,
        item: &Item<RawTag>,
        devices: &BTreeMap<String, (Device, Defined)>,
        groups: &BTreeMap<String, (Duration, Range<usize>)>,
    ) -> Option<Tag> {
        let r = &item.raw;
        let Some(name) = &r.name else {
            self.missing(
                item,
                "tag",
                "name",
                "add `name = \"…\"`, unique across the configuration",
            );
            return None;
        };
        let label = format!("tag {:?}", name.get_ref());
        let f = |k: &str| format!("{label} › {k}");
        if !is_ident(name.get_ref(), &['.', ':', '/']) {
            self.push(
                item.diag(name.span(), &label, "invalid tag name")
                    .help("use 1–128 letters, digits and . _ - : / (no spaces)"),
            );
            return None;
        }
        let mut ok = true;
        let device = match &r.device {
            None => {
                self.missing(
                    item,
                    &label,
                    "device",
                    "add `device = \"…\"` naming a [[device]]",
                );
                None
            }
            Some(d) => match devices.get(d.get_ref()) {
                Some((dev, _)) => Some(dev),
                None if self.declared_devices.contains(d.get_ref()) => {
                    ok = false;
                    None
                }
                None => {
                    let mut diag = item.diag(
                        d.span(),
                        f("device"),
                        format!("unknown device {:?}", d.get_ref()),
                    );
                    diag = match did_you_mean(
                        d.get_ref(),
                        self.declared_devices.iter().map(String::as_str),
                    ) {
                        Some(s) => diag.help(format!("did you mean {s:?}?")),
                        None if self.declared_devices.is_empty() => {
                            diag.help("define the device with a [[device]] section first")
                        }
                        None => diag.help(format!(
                            "known devices: {}",
                            self.declared_devices
                                .iter()
                                .map(|k| format!("{k:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    self.push(diag);
                    None
                }
            },
        };
        let opcua = match device {
            Some(d) => d.transport.is_opcua(),
            None => r.node.is_some(),
        };
        let (area, modbus, opc) = if opcua {
            for (k, span) in tag_keys_present(r, TAG_MODBUS_ONLY) {
                self.push(
                    item.diag(span, f(k), format!("`{k}` does not apply to a tag of an OPC UA device"))
                        .help("OPC UA tags name their variable with `node = \"ns=…;s=…\"`; the server knows its type"),
                );
                ok = false;
            }
            (None, None, self.opcua_point(item, &label, device, &mut ok))
        } else {
            for (k, span) in tag_keys_present(r, TAG_OPCUA_ONLY) {
                self.push(
                    item.diag(
                        span,
                        f(k),
                        format!("`{k}` only applies to tags of OPC UA devices"),
                    )
                    .help("remove it, or point `device` at an OPC UA device"),
                );
                ok = false;
            }
            let (area, point) = self.modbus_point(item, &label, device, &mut ok);
            (area, point, None)
        };
        let numeric = modbus.map(|m| m.data_type.is_numeric()).unwrap_or(true);
        let scale = match &r.scale {
            None => 1.0,
            Some(s) if !numeric => {
                self.push(
                    item.diag(
                        s.span(),
                        f("scale"),
                        "`scale` only applies to numeric types",
                    )
                    .help("remove `scale`"),
                );
                ok = false;
                1.0
            }
            Some(s) if !s.get_ref().is_finite() || *s.get_ref() == 0.0 => {
                self.push(
                    item.diag(
                        s.span(),
                        f("scale"),
                        format!("scale {} would lose the value", s.get_ref()),
                    )
                    .help("use a finite, non-zero factor such as 0.1"),
                );
                ok = false;
                1.0
            }
            Some(s) => *s.get_ref(),
        };
        let offset = match &r.offset {
            None => 0.0,
            Some(s) if !numeric => {
                self.push(
                    item.diag(
                        s.span(),
                        f("offset"),
                        "`offset` only applies to numeric types",
                    )
                    .help("remove `offset`"),
                );
                ok = false;
                0.0
            }
            Some(s) if !s.get_ref().is_finite() => {
                self.push(
                    item.diag(s.span(), f("offset"), "offset must be a finite number")
                        .help("e.g. offset = -273.15"),
                );
                ok = false;
                0.0
            }
            Some(s) => *s.get_ref(),
        };
        let deadband = match &r.deadband {
            None => 0.0,
            Some(d) if !d.get_ref().is_finite() || *d.get_ref() < 0.0 => {
                self.push(
                    item.diag(
                        d.span(),
                        f("deadband"),
                        format!("deadband {} is invalid", d.get_ref()),
                    )
                    .help("use 0 (store every change) or a positive value in engineering units"),
                );
                ok = false;
                0.0
            }
            Some(d) => *d.get_ref(),
        };
        let poll_group = match &r.poll_group {
            None => None,
            Some(g) if groups.contains_key(g.get_ref()) => Some(g.get_ref().clone()),
            Some(g) => {
                let mut d = item.diag(
                    g.span(),
                    f("poll_group"),
                    format!("unknown poll group {:?}", g.get_ref()),
                );
                d = match did_you_mean(g.get_ref(), groups.keys().map(String::as_str)) {
                    Some(s) => d.help(format!("did you mean {s:?}?")),
                    None => d.help("define it under [poll_groups], e.g. `fast = \"250ms\"`"),
                };
                self.push(d);
                ok = false;
                None
            }
        };
        let writable = match (&r.writable, area) {
            (Some(w), Some(a)) if *w.get_ref() && !a.is_writable() => {
                self.push(
                    item.diag(
                        w.span(),
                        f("writable"),
                        format!("area {:?} is read-only in Modbus", a.as_str()),
                    )
                    .help("only coils and holding registers can be written; remove `writable`"),
                );
                ok = false;
                false
            }
            (Some(w), _) => *w.get_ref(),
            (None, _) => false,
        };
        if !ok {
            return None;
        }
        Some(Tag {
            name: name.get_ref().clone(),
            device: device?.name.clone(),
            source: match (modbus, opc) {
                (Some(m), _) => TagSource::Modbus(m),
                (None, Some(o)) => TagSource::OpcUa(o),
                (None, None) => return None,
            },
            scale,
            offset,
            unit: r.unit.as_ref().map(|u| u.get_ref().clone()),
            deadband,
            poll_group,
            writable,
            description: r.description.as_ref().map(|d| d.get_ref().clone()),
        })
    }

    /// The connection part of an OPC UA device. Secure by default: without
    /// `security_policy` the client requires Basic256Sha256 with
    /// SignAndEncrypt; running unsecured must be written down.
    fn opcua_endpoint(&mut self, item: &Item<RawDevice>, label: &str) -> Option<OpcUaEndpoint> {
        let r = &item.raw;
        let f = |k: &str| format!("{label} › {k}");
        let mut ok = true;
        let endpoint_url = match &r.endpoint {
            None => {
                self.missing(
                    item,
                    label,
                    "endpoint",
                    "add `endpoint = \"opc.tcp://10.0.0.5:4840\"`, the server's endpoint URL",
                );
                return None;
            }
            Some(e) => {
                let url = e.get_ref().trim();
                let host = url
                    .strip_prefix("opc.tcp://")
                    .map(|h| h.split(['/', ':']).next().unwrap_or(""));
                match host {
                    Some(h) if !h.is_empty() => url.to_owned(),
                    _ => {
                        self.push(
                            item.diag(e.span(), f("endpoint"), format!("{url:?} is not an opc.tcp endpoint URL"))
                                .help("write it as `opc.tcp://host:port[/path]`, e.g. \"opc.tcp://10.0.0.5:4840\""),
                        );
                        return None;
                    }
                }
            }
        };
        let policy = match &r.security_policy {
            None => SecurityPolicy::Basic256Sha256,
            Some(p) => match p
                .get_ref()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
                .as_str()
            {
                "none" => SecurityPolicy::None,
                "basic256sha256" => SecurityPolicy::Basic256Sha256,
                "aes128sha256rsaoaep" => SecurityPolicy::Aes128Sha256RsaOaep,
                "aes256sha256rsapss" => SecurityPolicy::Aes256Sha256RsaPss,
                other => {
                    let mut d = item.diag(
                        p.span(),
                        f("security_policy"),
                        format!("unknown security policy {:?}", p.get_ref()),
                    );
                    d = match did_you_mean(other, ["none", "basic256sha256", "aes128sha256rsaoaep", "aes256sha256rsapss"]) {
                        Some(_) | None => d.help("use \"None\", \"Basic256Sha256\", \"Aes128_Sha256_RsaOaep\" or \"Aes256_Sha256_RsaPss\""),
                    };
                    self.push(d);
                    ok = false;
                    SecurityPolicy::Basic256Sha256
                }
            },
        };
        let mode = match &r.security_mode {
            None if policy == SecurityPolicy::None => SecurityMode::None,
            None => SecurityMode::SignAndEncrypt,
            Some(m) => match m
                .get_ref()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
                .as_str()
            {
                "none" => SecurityMode::None,
                "sign" => SecurityMode::Sign,
                "signandencrypt" => SecurityMode::SignAndEncrypt,
                _ => {
                    self.push(
                        item.diag(
                            m.span(),
                            f("security_mode"),
                            format!("unknown security mode {:?}", m.get_ref()),
                        )
                        .help("use \"None\", \"Sign\" or \"SignAndEncrypt\""),
                    );
                    ok = false;
                    SecurityMode::SignAndEncrypt
                }
            },
        };
        if (policy == SecurityPolicy::None) != (mode == SecurityMode::None) {
            let span = r
                .security_mode
                .as_ref()
                .or(r.security_policy.as_ref())
                .map(|s| s.span())
                .unwrap_or(item.span.clone());
            self.push(
                item.diag(
                    span,
                    f("security_mode"),
                    format!("security mode {mode:?} cannot be used with policy {:?}", policy.as_str()),
                )
                .help("policy \"None\" goes with mode \"None\"; any other policy needs \"Sign\" or \"SignAndEncrypt\""),
            );
            ok = false;
        }
        let identity = match (&r.user, &r.user_certificate, &r.user_key) {
            (Some(u), None, None) => {
                let password = match (&r.password_file, &r.password_env) {
                    (Some(p), None) => {
                        Some(SecretSource::File(resolve(&item.src.path, p.get_ref())))
                    }
                    (None, Some(e)) if !e.get_ref().is_empty() => {
                        Some(SecretSource::Env(e.get_ref().clone()))
                    }
                    (None, Some(e)) => {
                        self.push(
                            item.diag(e.span(), f("password_env"), "empty variable name")
                                .help("name the environment variable that holds the password"),
                        );
                        None
                    }
                    (Some(p), Some(_)) => {
                        self.push(
                            item.diag(p.span(), f("password_file"), "both `password_file` and `password_env` are set")
                                .help("keep one: the password comes from a file or from an environment variable"),
                        );
                        None
                    }
                    (None, None) => {
                        self.push(
                            item.diag(u.span(), f("user"), "a user needs a password source")
                                .help("add `password_file = \"/etc/apos-edge/opcua.pass\"` (mode 0600) or `password_env = \"APOS_OPCUA_PASSWORD\"`; passwords are never written in the config"),
                        );
                        None
                    }
                };
                match password {
                    Some(password) => Identity::UserName {
                        user: u.get_ref().clone(),
                        password,
                    },
                    None => {
                        ok = false;
                        Identity::Anonymous
                    }
                }
            }
            (None, Some(c), Some(k)) => {
                let lower = c.get_ref().to_ascii_lowercase();
                if !(lower.ends_with(".der") || lower.ends_with(".pem")) {
                    self.push(
                        item.diag(
                            c.span(),
                            f("user_certificate"),
                            "the user certificate file must end in `.der` or `.pem`",
                        )
                        .help("the file's encoding is taken from its extension; rename it to `….der` (binary) or `….pem` (text)"),
                    );
                    ok = false;
                }
                Identity::X509 {
                    certificate: resolve(&item.src.path, c.get_ref()),
                    private_key: resolve(&item.src.path, k.get_ref()),
                }
            }
            (None, None, None) => {
                for (k, s) in device_keys_present(r, &["password_file", "password_env"]) {
                    self.push(
                        item.diag(s, f(k), format!("`{k}` without `user`"))
                            .help("add `user = \"…\"`, or remove it for anonymous access"),
                    );
                    ok = false;
                }
                Identity::Anonymous
            }
            (Some(u), _, _) => {
                self.push(
                    item.diag(u.span(), f("user"), "both a user name and a user certificate identity are set")
                        .help("choose one identity: `user` + password, or `user_certificate` + `user_key`"),
                );
                ok = false;
                Identity::Anonymous
            }
            (None, c, k) => {
                let (present, missing) = if c.is_some() {
                    (c, "user_key")
                } else {
                    (k, "user_certificate")
                };
                let span = present
                    .as_ref()
                    .map(|s| s.span())
                    .unwrap_or(item.span.clone());
                self.push(
                    item.diag(
                        span,
                        f(missing),
                        format!("an X.509 user identity also needs `{missing}`"),
                    )
                    .help("give both `user_certificate` (DER or PEM) and `user_key` (PEM)"),
                );
                ok = false;
                Identity::Anonymous
            }
        };
        let pki_dir = r
            .pki_dir
            .as_ref()
            .map(|p| resolve(&item.src.path, p.get_ref()))
            .unwrap_or_else(|| PathBuf::from("/var/lib/apos-edge/pki"));
        let session_timeout = self.duration(
            item,
            &f("session_timeout"),
            &r.session_timeout,
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(3600)),
        );
        let keep_alive = self.duration(
            item,
            &f("keep_alive"),
            &r.keep_alive,
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let publishing_interval = self.duration(
            item,
            &f("publishing_interval"),
            &r.publishing_interval,
            Duration::from_secs(1),
            (Duration::from_millis(10), Duration::from_secs(3600)),
        );
        ok.then_some(OpcUaEndpoint {
            endpoint_url,
            security_policy: policy,
            security_mode: mode,
            identity,
            pki_dir,
            session_timeout,
            keep_alive,
            publishing_interval,
        })
    }

    /// The OPC UA part of a tag: node, sampling, queue, server-side deadband, mode.
    fn opcua_point(
        &mut self,
        item: &Item<RawTag>,
        label: &str,
        device: Option<&Device>,
        ok: &mut bool,
    ) -> Option<OpcUaPoint> {
        let r = &item.raw;
        let f = |k: &str| format!("{label} › {k}");
        let node = match &r.node {
            None => {
                self.missing(
                    item,
                    label,
                    "node",
                    "add `node = \"ns=2;s=…\"` (or `nsu=<namespace URI>;s=…`), e.g. from `apos-edge opcua browse`",
                );
                None
            }
            Some(n) => match n.get_ref().parse::<NodeRef>() {
                Ok(node) => Some(node),
                Err(e) => {
                    self.push(
                        item.diag(n.span(), f("node"), format!("invalid NodeId {:?}: {e}", n.get_ref()))
                            .help("NodeIds look like `ns=2;s=Line1.Temp`, `i=2258` or `nsu=urn:vendor:plc;i=1001`"),
                    );
                    *ok = false;
                    None
                }
            },
        };
        let sampling_interval = r.sampling_interval.as_ref().map(|_| {
            self.duration(
                item,
                &f("sampling_interval"),
                &r.sampling_interval,
                Duration::from_secs(1),
                (Duration::ZERO, Duration::from_secs(86_400)),
            )
        });
        let queue_size = self.int(
            item,
            &f("queue_size"),
            &r.queue_size,
            1,
            (1, 10_000),
            "values the server may buffer per item between publishes; 1 keeps only the newest",
        ) as u32;
        let data_change_deadband = match &r.data_change_deadband {
            None => None,
            Some(d) => {
                let parsed = match d.get_ref() {
                    NumOrText::Num(x) if x.is_finite() && *x >= 0.0 => {
                        Some(DataChangeDeadband::Absolute(*x))
                    }
                    NumOrText::Num(_) => None,
                    NumOrText::Text(t) => match t.trim().strip_suffix('%') {
                        Some(p) => p
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|p| (0.0..=100.0).contains(p))
                            .map(DataChangeDeadband::Percent),
                        None => t
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite() && *x >= 0.0)
                            .map(DataChangeDeadband::Absolute),
                    },
                };
                if parsed.is_none() {
                    self.push(
                        item.diag(d.span(), f("data_change_deadband"), "invalid data-change deadband")
                            .help("use an absolute value in the variable's units (e.g. 0.5) or a percent of its EU range (e.g. \"2%\")"),
                    );
                    *ok = false;
                }
                parsed
            }
        };
        let mode = match &r.mode {
            None => OpcUaMode::Subscribe,
            Some(m) => match m.get_ref().to_ascii_lowercase().as_str() {
                "subscribe" | "subscription" => OpcUaMode::Subscribe,
                "poll" | "read" => OpcUaMode::Poll,
                other => {
                    self.push(
                        item.diag(m.span(), f("mode"), format!("unknown mode {other:?}"))
                            .help("use \"subscribe\" (default) or \"poll\" for nodes that cannot be monitored"),
                    );
                    *ok = false;
                    OpcUaMode::Subscribe
                }
            },
        };
        let _ = device;
        Some(OpcUaPoint {
            node: node?,
            sampling_interval,
            queue_size,
            data_change_deadband,
            mode,
        })
    }

    /// The Modbus part of a tag: area, address, type, order, and their fit.
    fn modbus_point(
        &mut self,
        item: &Item<RawTag>,
        label: &str,
        device: Option<&Device>,
        ok: &mut bool,
    ) -> (Option<Area>, Option<ModbusPoint>) {
        let r = &item.raw;
        let f = |k: &str| format!("{label} › {k}");
        let label = label.to_owned();
        let area = match &r.area {
            None => {
                self.missing(
                    item,
                    &label,
                    "area",
                    "add `area = \"holding\"` (or \"input\", \"coil\", \"discrete\")",
                );
                None
            }
            Some(a) => match parse_area(a.get_ref()) {
                Some(a) => Some(a),
                None => {
                    self.push(
                        item.diag(
                            a.span(),
                            f("area"),
                            format!("unknown area {:?}", a.get_ref()),
                        )
                        .help("use \"coil\", \"discrete\", \"holding\" or \"input\""),
                    );
                    None
                }
            },
        };
        let address = match &r.address {
            None => {
                self.missing(
                    item,
                    &label,
                    "address",
                    "add `address = N`, the 0-based protocol address",
                );
                None
            }
            Some(a) => {
                let n = *a.get_ref();
                if (0..=65_535).contains(&n) {
                    Some((n as u16, a.span()))
                } else {
                    let help = match n {
                        300_001..=365_536 => format!(
                            "{n} looks like a Modicon reference: use area = \"input\" and the 0-based address {}",
                            n - 300_001
                        ),
                        400_001..=465_536 => format!(
                            "{n} looks like a Modicon reference: use area = \"holding\" and the 0-based address {}",
                            n - 400_001
                        ),
                        _ => "addresses are 0-based protocol addresses, 0–65535".to_string(),
                    };
                    self.push(
                        item.diag(
                            a.span(),
                            f("address"),
                            format!("address {n} is out of range"),
                        )
                        .help(help),
                    );
                    None
                }
            }
        };
        let data_type = match &r.data_type {
            None => {
                self.missing(item, &label, "type", "add `type = \"…\"`: bool, bit, u16, i16, u32, i32, u64, i64, f32, f64 or string");
                None
            }
            Some(t) => match t.get_ref().to_ascii_lowercase().as_str() {
                "bool" | "boolean" => Some(DataType::Bool),
                "bit" => match &r.bit {
                    None => {
                        self.push(
                            item.diag(t.span(), f("bit"), "type \"bit\" needs `bit = N`")
                                .help("add `bit = N` with N from 0 (least significant) to 15"),
                        );
                        None
                    }
                    Some(b) if (0..=15).contains(b.get_ref()) => {
                        Some(DataType::Bit(*b.get_ref() as u8))
                    }
                    Some(b) => {
                        self.push(
                            item.diag(
                                b.span(),
                                f("bit"),
                                format!("bit {} does not exist in a 16-bit register", b.get_ref()),
                            )
                            .help("use 0 (least significant) to 15"),
                        );
                        None
                    }
                },
                "u16" | "uint16" | "word" => Some(DataType::U16),
                "i16" | "int16" | "int" => Some(DataType::I16),
                "u32" | "uint32" | "dword" | "udint" => Some(DataType::U32),
                "i32" | "int32" | "dint" => Some(DataType::I32),
                "u64" | "uint64" | "ulint" => Some(DataType::U64),
                "i64" | "int64" | "lint" => Some(DataType::I64),
                "f32" | "float" | "float32" | "real" => Some(DataType::F32),
                "f64" | "double" | "float64" | "lreal" => Some(DataType::F64),
                "string" | "str" => match &r.length {
                    None => {
                        self.push(
                            item.diag(t.span(), f("length"), "type \"string\" needs `length`")
                                .help("add `length = N`, the string's size in bytes (two per register)"),
                        );
                        None
                    }
                    Some(l) if (1..=250).contains(l.get_ref()) => Some(DataType::String {
                        len: *l.get_ref() as u16,
                    }),
                    Some(l) => {
                        self.push(
                            item.diag(
                                l.span(),
                                f("length"),
                                format!("string length {} is out of range", l.get_ref()),
                            )
                            .help("use 1–250 bytes (a read carries at most 125 registers)"),
                        );
                        None
                    }
                },
                other => {
                    let types = [
                        "bool", "bit", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64",
                        "string",
                    ];
                    let mut d = item.diag(t.span(), f("type"), format!("unknown type {other:?}"));
                    d = match did_you_mean(other, types) {
                        Some(s) => {
                            d.help(format!("did you mean {s:?}? Types: {}", types.join(", ")))
                        }
                        None => d.help(format!("use one of: {}", types.join(", "))),
                    };
                    self.push(d);
                    None
                }
            },
        };
        if let (Some(b), Some(dt)) = (&r.bit, data_type)
            && !matches!(dt, DataType::Bit(_))
        {
            self.push(
                item.diag(
                    b.span(),
                    f("bit"),
                    format!("`bit` only applies to type \"bit\", not {:?}", dt.name()),
                )
                .help("remove `bit`, or set `type = \"bit\"`"),
            );
            *ok = false;
        }
        if let (Some(l), Some(dt)) = (&r.length, data_type)
            && !matches!(dt, DataType::String { .. })
        {
            self.push(
                item.diag(
                    l.span(),
                    f("length"),
                    format!(
                        "`length` only applies to type \"string\", not {:?}",
                        dt.name()
                    ),
                )
                .help("remove `length`"),
            );
            *ok = false;
        }
        let order = match &r.order {
            None => WordOrder::Abcd,
            Some(o) => match o.get_ref().to_ascii_uppercase().as_str() {
                "ABCD" | "BIG" | "BIG-ENDIAN" => WordOrder::Abcd,
                "CDAB" | "WORD-SWAP" | "WORDSWAP" => WordOrder::Cdab,
                "BADC" | "BYTE-SWAP" | "BYTESWAP" => WordOrder::Badc,
                "DCBA" | "LITTLE" | "LITTLE-ENDIAN" => WordOrder::Dcba,
                _ => {
                    self.push(
                        item.diag(o.span(), f("order"), format!("unknown word order {:?}", o.get_ref()))
                            .help("use \"ABCD\" (big-endian), \"CDAB\" (word-swapped), \"BADC\" (byte-swapped) or \"DCBA\" (little-endian)"),
                    );
                    *ok = false;
                    WordOrder::Abcd
                }
            },
        };
        if let (Some(a), Some(dt)) = (area, data_type) {
            let type_span = r
                .data_type
                .as_ref()
                .map(|t| t.span())
                .unwrap_or(item.span.clone());
            if a.is_bit() && dt != DataType::Bool {
                self.push(
                    item.diag(type_span.clone(), f("type"), format!("type {:?} does not fit area {:?}", dt.name(), a.as_str()))
                        .help("coils and discrete inputs hold single bits: use `type = \"bool\"`, or a register area for numbers"),
                );
                *ok = false;
            } else if !a.is_bit() && dt == DataType::Bool {
                self.push(
                    item.diag(type_span.clone(), f("type"), format!("type \"bool\" does not fit area {:?}", a.as_str()))
                        .help("for one bit of a register use `type = \"bit\"` with `bit = N`; for a 0/1 register use \"u16\""),
                );
                *ok = false;
            }
            if let Some((addr, addr_span)) = &address {
                let end = u32::from(*addr) + u32::from(dt.width()) - 1;
                if end > 65_535 {
                    self.push(
                        item.diag(
                            addr_span.clone(),
                            f("address"),
                            format!(
                                "{} at address {addr} needs {} registers and would run past 65535",
                                dt.name(),
                                dt.width()
                            ),
                        )
                        .help(format!(
                            "the last address it may start at is {}",
                            65_536 - u32::from(dt.width())
                        )),
                    );
                    *ok = false;
                }
            }
            if let Some(dev) = device {
                let limit = if a.is_bit() {
                    dev.limits.max_bits
                } else {
                    dev.limits.max_registers
                };
                if dt.width() > limit {
                    self.push(
                        item.diag(type_span.clone(), f("type"), format!(
                            "{} needs {} registers but device {:?} reads at most {limit} per request",
                            dt.name(),
                            dt.width(),
                            dev.name
                        ))
                        .help("shorten the string or raise the device's max_registers_per_request"),
                    );
                    *ok = false;
                }
            }
        }
        let point = match (area, &address, data_type) {
            (Some(area), Some((address, _)), Some(data_type)) => Some(ModbusPoint {
                area,
                address: *address,
                data_type,
                order,
            }),
            _ => None,
        };
        (area, point)
    }
}

/// Keys of `keys` that are set on a tag, with their spans.
fn tag_keys_present(r: &RawTag, keys: &[&'static str]) -> Vec<(&'static str, Range<usize>)> {
    keys.iter()
        .filter_map(|&k| {
            let span = match k {
                "area" => r.area.as_ref().map(|x| x.span()),
                "address" => r.address.as_ref().map(|x| x.span()),
                "type" => r.data_type.as_ref().map(|x| x.span()),
                "bit" => r.bit.as_ref().map(|x| x.span()),
                "length" => r.length.as_ref().map(|x| x.span()),
                "order" => r.order.as_ref().map(|x| x.span()),
                "node" => r.node.as_ref().map(|x| x.span()),
                "sampling_interval" => r.sampling_interval.as_ref().map(|x| x.span()),
                "queue_size" => r.queue_size.as_ref().map(|x| x.span()),
                "data_change_deadband" => r.data_change_deadband.as_ref().map(|x| x.span()),
                "mode" => r.mode.as_ref().map(|x| x.span()),
                _ => None,
            };
            span.map(|s| (k, s))
        })
        .collect()
}

/// Keys of `keys` that are set on a device, with their spans.
fn device_keys_present(r: &RawDevice, keys: &[&'static str]) -> Vec<(&'static str, Range<usize>)> {
    keys.iter()
        .filter_map(|&k| {
            let span = match k {
                "host" => r.host.as_ref().map(|x| x.span()),
                "port" => r.port.as_ref().map(|x| x.span()),
                "connect_timeout" => r.connect_timeout.as_ref().map(|x| x.span()),
                "line" => r.line.as_ref().map(|x| x.span()),
                "unit_id" => r.unit_id.as_ref().map(|x| x.span()),
                "max_registers_per_request" => {
                    r.max_registers_per_request.as_ref().map(|x| x.span())
                }
                "max_bits_per_request" => r.max_bits_per_request.as_ref().map(|x| x.span()),
                "max_gap" => r.max_gap.as_ref().map(|x| x.span()),
                "endpoint" => r.endpoint.as_ref().map(|x| x.span()),
                "security_policy" => r.security_policy.as_ref().map(|x| x.span()),
                "security_mode" => r.security_mode.as_ref().map(|x| x.span()),
                "user" => r.user.as_ref().map(|x| x.span()),
                "password_file" => r.password_file.as_ref().map(|x| x.span()),
                "password_env" => r.password_env.as_ref().map(|x| x.span()),
                "user_certificate" => r.user_certificate.as_ref().map(|x| x.span()),
                "user_key" => r.user_key.as_ref().map(|x| x.span()),
                "pki_dir" => r.pki_dir.as_ref().map(|x| x.span()),
                "session_timeout" => r.session_timeout.as_ref().map(|x| x.span()),
                "keep_alive" => r.keep_alive.as_ref().map(|x| x.span()),
                "publishing_interval" => r.publishing_interval.as_ref().map(|x| x.span()),
                _ => None,
            };
            span.map(|s| (k, s))
        })
        .collect()
}

fn parse_area(s: &str) -> Option<Area> {
    Some(match s.to_ascii_lowercase().as_str() {
        "coil" | "coils" | "0x" => Area::Coil,
        "discrete" | "discrete_input" | "discrete-input" | "di" | "1x" => Area::DiscreteInput,
        "holding" | "holding_register" | "holding-register" | "hr" | "4x" => Area::HoldingRegister,
        "input" | "input_register" | "input-register" | "ir" | "3x" => Area::InputRegister,
        _ => return None,
    })
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` → (host, port, tls).
fn parse_broker(url: &str) -> Result<(String, u16, bool), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an mqtt:// or mqtts:// URL"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in {url:?}"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("no host in {url:?}"));
    }
    Ok((host.to_owned(), port, tls))
}
