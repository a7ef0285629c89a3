//! `[[device]]`: Modbus TCP/RTU devices and OPC UA servers.

use super::*;

impl Validator<'_> {
    pub(super) fn devices(
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

    pub(super) fn device(
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

    /// The connection part of an OPC UA device. Secure by default: without
    /// `security_policy` the client requires Basic256Sha256 with
    /// SignAndEncrypt; running unsecured must be written down.
    pub(super) fn opcua_endpoint(
        &mut self,
        item: &Item<RawDevice>,
        label: &str,
    ) -> Option<OpcUaEndpoint> {
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
                                .help("add `password_file = \"/etc/apos/keys/edge-opcua.pass\"` (mode 0640, group apos-edge) or `password_env = \"APOS_OPCUA_PASSWORD\"`; passwords are never written in the config"),
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
            .unwrap_or_else(|| PathBuf::from("/var/lib/apos/edge/pki"));
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
        let clock_tolerance = self.duration(
            item,
            &f("clock_tolerance"),
            &r.clock_tolerance,
            Duration::from_secs(300),
            (Duration::from_secs(1), Duration::from_secs(86_400)),
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
            clock_tolerance,
        })
    }
}

/// Keys of `keys` that are set on a device, with their spans.
pub(super) fn device_keys_present(
    r: &RawDevice,
    keys: &[&'static str],
) -> Vec<(&'static str, Range<usize>)> {
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
                "clock_tolerance" => r.clock_tolerance.as_ref().map(|x| x.span()),
                _ => None,
            };
            span.map(|s| (k, s))
        })
        .collect()
}
