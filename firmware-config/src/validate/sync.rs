//! `[sync]`: the hub connection, the outbox and the aggregation windows.

use super::*;

/// Largest `[sync] outbox_max_size`: 1 TiB.
const MAX_OUTBOX_BYTES: u64 = 1 << 40;

impl Validator<'_> {
    /// `Some(None)`: no `[sync]`; `None`: invalid (already reported).
    /// The outbox lives in the history database and retention never
    /// deletes it, so it may take at most half of `[storage] max_size`: by
    /// default it is capped there, a larger explicit bound is an error.
    pub(super) fn outbox_within_history(
        &mut self,
        raw: &RawConfig,
        storage: &Storage,
        sync: &mut Sync,
    ) {
        let half = storage.retention_bytes / 2;
        if sync.outbox_max_bytes <= half {
            return;
        }
        let explicit = raw
            .sync
            .as_ref()
            .and_then(|item| item.raw.outbox_max_size.as_ref().map(|s| (item, s)));
        match explicit {
            Some((item, s)) => self.push(
                item.diag(
                    s.span(),
                    "sync › outbox_max_size",
                    format!(
                        "{} bytes is more than half of [storage] max_size ({} bytes)",
                        s.get_ref().0,
                        storage.retention_bytes
                    ),
                )
                .help("the outbox lives in the history database and is never deleted by retention: lower outbox_max_size or raise [storage] max_size"),
            ),
            None => sync.outbox_max_bytes = half.max(64 << 10),
        }
    }

    pub(super) fn sync(&mut self, raw: &RawConfig) -> Option<Option<Sync>> {
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
                        .help("add `password_file = \"/etc/apos/keys/edge-mqtt.pass\"` (mode 0640, group apos-edge) or `password_env = \"APOS_MQTT_PASSWORD\"`"),
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
                        .help("add `key_file = \"/etc/apos/keys/edge-node.key\"` (at least 16 random bytes, the same as in the hub's `[[node]]` entry), or `key_env`"),
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
            Some(s) if s.get_ref().0 > MAX_OUTBOX_BYTES => {
                self.push(
                    item.diag(s.span(), "sync › outbox_max_size", format!("{} bytes is more than 1 TiB", s.get_ref().0))
                        .help("size it for the longest outage to ride out, e.g. \"256MiB\"; it must fit on the gateway's disk"),
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
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` → (host, port, tls).
pub(super) fn parse_broker(url: &str) -> Result<(String, u16, bool), String> {
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
