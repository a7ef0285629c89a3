//! `[poll_groups]` and `[[tag]]`: what is read, from where, how often.

use super::*;

impl Validator<'_> {
    pub(super) fn poll_groups(
        &mut self,
        raw: &RawConfig,
    ) -> BTreeMap<String, (Duration, Range<usize>)> {
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

    pub(super) fn tags(
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

    pub(super) fn tag(
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
        let range = match &r.range {
            None => None,
            Some(rg) => match rg.get_ref().as_slice() {
                [lo, hi]
                    if lo.get_ref().is_finite()
                        && hi.get_ref().is_finite()
                        && lo.get_ref() < hi.get_ref() =>
                {
                    Some((*lo.get_ref(), *hi.get_ref()))
                }
                _ => {
                    self.push(
                        item.diag(
                            rg.span(),
                            format!("{label} › range"),
                            "a range is two finite numbers, low below high",
                        )
                        .help("write the tag's engineering range, e.g. `range = [0, 450]`"),
                    );
                    return None;
                }
            },
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
            range,
        })
    }

    /// The OPC UA part of a tag: node, sampling, queue, server-side deadband, mode.
    pub(super) fn opcua_point(
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
    pub(super) fn modbus_point(
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
                    let aliases = "IEC and common aliases work too: word, int, dword, dint, real, lreal, float, double, int16, uint32, … (docs/configuration.md, \"Type aliases\")";
                    d = match did_you_mean(other, types) {
                        Some(s) => d.help(format!(
                            "did you mean {s:?}? Types: {}; {aliases}",
                            types.join(", ")
                        )),
                        None => d.help(format!("use one of: {}; {aliases}", types.join(", "))),
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
pub(super) fn tag_keys_present(
    r: &RawTag,
    keys: &[&'static str],
) -> Vec<(&'static str, Range<usize>)> {
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

pub(super) fn parse_area(s: &str) -> Option<Area> {
    Some(match s.to_ascii_lowercase().as_str() {
        "coil" | "coils" | "0x" => Area::Coil,
        "discrete" | "discrete_input" | "discrete-input" | "di" | "1x" => Area::DiscreteInput,
        "holding" | "holding_register" | "holding-register" | "hr" | "4x" => Area::HoldingRegister,
        "input" | "input_register" | "input-register" | "ir" | "3x" => Area::InputRegister,
        _ => return None,
    })
}
