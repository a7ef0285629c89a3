//! `[alerts]`, `[[alert]]` and `[webhook]`: alert rules evaluated on the
//! fleet database and their delivery (docs/hub.md, "Alerts").

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    interval: Option<Spanned<String>>,
    db_file: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
}

/// Layer 1: one `[[alert]]` as written. One struct for every kind, so that
/// a field of another kind is named in the error rather than refused as
/// merely unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: Spanned<String>,
    kind: Spanned<String>,
    site: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    min_batches: Option<Spanned<i64>>,
    min_missing: Option<Spanned<i64>>,
    kpi: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    target: Option<Spanned<f64>>,
    windows: Option<Spanned<i64>>,
    above: Option<Spanned<bool>>,
    max_per_10min: Option<Spanned<i64>>,
}

/// Layer 1: `[webhook]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: Spanned<String>,
    secret_file: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
}

/// Layer 2: alerting, validated. Present when at least one rule is.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    /// How often the rules are evaluated; also the hysteresis: an alert
    /// resolves only once its condition has been false this long.
    pub interval: Duration,
    /// Alert history and delivery attempts (SQLite, 0600).
    pub db_file: PathBuf,
    /// The hub's name in webhook payloads (default: the host name).
    pub hub_name: String,
    pub rules: Vec<Rule>,
    pub webhook: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique, an identifier (letters, digits, `_`, `-`).
    pub name: String,
    /// Only nodes of this site / of this name (both optional).
    pub site: Option<String>,
    pub node: Option<String>,
    pub kind: RuleKind,
}

impl Rule {
    pub fn applies_to(&self, site: &str, node: &str) -> bool {
        self.site.as_deref().is_none_or(|s| s == site)
            && self.node.as_deref().is_none_or(|n| n == node)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Not heard from for `after`.
    NodeOffline { after: Duration },
    /// The edge's outbox rose over the whole `period` and is above `min_batches`.
    BacklogGrowing { period: Duration, min_batches: u64 },
    /// At least `min_missing` sequence numbers are missing.
    SequenceGaps { min_missing: u64 },
    /// The last `windows` closed windows of `kpi`/`window` are all below
    /// `target` (above it when `above`).
    KpiBelow {
        kpi: String,
        window: String,
        target: f64,
        windows: u32,
        above: bool,
    },
    /// The latest alarm-health report says flood, or (when set) more than
    /// `max_per_10min` activations in the last 10 minutes.
    AlarmFlood { max_per_10min: Option<u64> },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::NodeOffline { .. } => "node_offline",
            RuleKind::BacklogGrowing { .. } => "backlog_growing",
            RuleKind::SequenceGaps { .. } => "sequence_gaps",
            RuleKind::KpiBelow { .. } => "kpi_below",
            RuleKind::AlarmFlood { .. } => "alarm_flood",
        }
    }
}

/// Layer 2: webhook delivery.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC-SHA256 key (at least 16 bytes), never in the config text.
    pub secret: Vec<u8>,
    /// One attempt: connect, send, answer.
    pub timeout: Duration,
    pub max_attempts: u32,
    /// First retry delay, doubled after each failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A delivery is given up this long after its first attempt.
    pub deadline: Duration,
    /// Pending deliveries kept; when full the oldest is dropped (counted).
    pub queue: usize,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("deadline", &self.deadline)
            .field("queue", &self.queue)
            .finish()
    }
}

const KINDS: &str = "node_offline, backlog_growing, sequence_gaps, kpi_below, alarm_flood";

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "apos-hub".to_owned())
}

/// An integer within `range`, or an error at its value.
fn int(
    c: &mut Ctx<'_>,
    field: &str,
    raw: Option<&Spanned<i64>>,
    default: u64,
    (min, max): (u64, u64),
    help: &str,
) -> u64 {
    let Some(v) = raw else { return default };
    match u64::try_from(*v.get_ref()) {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            c.err(
                v.span(),
                field,
                &format!("{} is not between {min} and {max}", v.get_ref()),
                help,
            );
            default
        }
    }
}

pub(super) fn validate(
    c: &mut Ctx<'_>,
    alerts: Option<&Spanned<RawAlerts>>,
    rules: &[Spanned<RawRule>],
    webhook: Option<&Spanned<RawWebhook>>,
    storage: &Path,
) -> Option<Alerts> {
    if rules.is_empty() {
        // Settings without a rule would do nothing: say so rather than
        // let an integrator believe alerting is on.
        for span in [alerts.map(|a| a.span()), webhook.map(|w| w.span())]
            .into_iter()
            .flatten()
        {
            c.err(
                span,
                "alert",
                "alert settings without any [[alert]] rule",
                "add [[alert]] rules (docs/hub.md, \"Alerts\"), or remove the section",
            );
        }
        return None;
    }
    let raw = alerts.map(|a| a.get_ref());
    let interval = c.duration(
        "alerts › interval",
        raw.and_then(|r| r.interval.as_ref()),
        Duration::from_secs(30),
        (Duration::from_millis(100), Duration::from_secs(3600)),
        "how often the rules are evaluated, e.g. \"30s\"; an alert resolves only after its condition was false this long",
    );
    let db_file = match raw.and_then(|r| r.db_file.as_ref()) {
        Some(f) => c.resolve(f.get_ref()),
        None => storage.parent().unwrap_or(Path::new(".")).join("alerts.db"),
    };
    let hub_name = match raw.and_then(|r| r.name.as_ref()) {
        Some(n) if !n.get_ref().trim().is_empty() && n.get_ref().len() <= 128 => {
            n.get_ref().clone()
        }
        Some(n) => {
            c.err(
                n.span(),
                "alerts › name",
                "the name is empty or longer than 128 characters",
                "the hub's name in webhook payloads, e.g. \"hub-eu-1\"",
            );
            host_name()
        }
        None => host_name(),
    };
    let mut out = Vec::new();
    for r in rules {
        if let Some(rule) = rule(c, r.get_ref()) {
            if out.iter().any(|o: &Rule| o.name == rule.name) {
                c.err(
                    r.get_ref().name.span(),
                    "alert › name",
                    &format!("rule {:?} is defined twice", rule.name),
                    "give every [[alert]] its own name: alerts are identified by it",
                );
            }
            out.push(rule);
        }
    }
    let webhook = webhook.and_then(|w| validate_webhook(c, w.get_ref()));
    Some(Alerts {
        interval,
        db_file,
        hub_name,
        rules: out,
        webhook,
    })
}

fn rule(c: &mut Ctx<'_>, r: &RawRule) -> Option<Rule> {
    if let Err(e) = protocol::topic::check_id(r.name.get_ref()) {
        c.err(
            r.name.span(),
            "alert › name",
            &e.to_string(),
            "use letters, digits, `_` and `-` only",
        );
    }
    for (id, field) in [(&r.site, "alert › site"), (&r.node, "alert › node")] {
        if let Some(id) = id
            && let Err(e) = protocol::topic::check_id(id.get_ref())
        {
            c.err(
                id.span(),
                field,
                &e.to_string(),
                "a site or node identifier",
            );
        }
    }
    let kind = r.kind.get_ref().as_str();
    // Which optional fields each kind reads; any other one is a mistake.
    let allowed: &[&str] = match kind {
        "node_offline" => &["for"],
        "backlog_growing" => &["for", "min_batches"],
        "sequence_gaps" => &["min_missing"],
        "kpi_below" => &["kpi", "window", "target", "windows", "above"],
        "alarm_flood" => &["max_per_10min"],
        other => {
            c.err(
                r.kind.span(),
                "alert › kind",
                &format!("unknown kind {other:?}"),
                &format!("one of {KINDS}"),
            );
            return None;
        }
    };
    let present: [(&str, Option<std::ops::Range<usize>>); 8] = [
        ("for", r.for_.as_ref().map(|v| v.span())),
        ("min_batches", r.min_batches.as_ref().map(|v| v.span())),
        ("min_missing", r.min_missing.as_ref().map(|v| v.span())),
        ("kpi", r.kpi.as_ref().map(|v| v.span())),
        ("window", r.window.as_ref().map(|v| v.span())),
        ("target", r.target.as_ref().map(|v| v.span())),
        ("windows", r.windows.as_ref().map(|v| v.span())),
        ("above", r.above.as_ref().map(|v| v.span())),
    ];
    let mut refused = false;
    for (field, span) in present
        .into_iter()
        .chain([("max_per_10min", r.max_per_10min.as_ref().map(|v| v.span()))])
    {
        if let Some(span) = span
            && !allowed.contains(&field)
        {
            c.err(
                span,
                &format!("alert › {field}"),
                &format!("`{field}` is not a setting of a {kind} rule"),
                &format!("a {kind} rule takes: {}", allowed.join(", ")),
            );
            refused = true;
        }
    }
    let day30 = Duration::from_secs(30 * 86_400);
    let kind = match kind {
        "node_offline" => RuleKind::NodeOffline {
            after: c.duration(
                "alert › for",
                r.for_.as_ref(),
                Duration::from_secs(300),
                (Duration::from_secs(1), day30),
                "how long a node may stay silent before the alert fires, e.g. \"5m\"",
            ),
        },
        "backlog_growing" => RuleKind::BacklogGrowing {
            period: c.duration(
                "alert › for",
                r.for_.as_ref(),
                Duration::from_secs(600),
                (Duration::from_secs(1), day30),
                "how long the outbox must have kept rising, e.g. \"10m\"",
            ),
            min_batches: int(
                c,
                "alert › min_batches",
                r.min_batches.as_ref(),
                100,
                (0, u64::MAX >> 1),
                "the backlog (batches in the edge's outbox) below which a rise is no alert, e.g. 100",
            ),
        },
        "sequence_gaps" => RuleKind::SequenceGaps {
            min_missing: int(
                c,
                "alert › min_missing",
                r.min_missing.as_ref(),
                1,
                (1, u64::MAX >> 1),
                "how many missing sequence numbers make an alert, e.g. 1",
            ),
        },
        "kpi_below" => {
            let mut text = |v: &Option<Spanned<String>>, field: &str, help: &str| match v {
                Some(s) if !s.get_ref().is_empty() && s.get_ref().len() <= 64 => {
                    Some(s.get_ref().clone())
                }
                Some(s) => {
                    c.err(s.span(), field, "empty or longer than 64 characters", help);
                    None
                }
                None => {
                    c.err(r.name.span(), field, "a kpi_below rule needs it", help);
                    None
                }
            };
            let kpi = text(
                &r.kpi,
                "alert › kpi",
                "the KPI's name as the edge sends it, e.g. \"oee\"",
            );
            let window = text(
                &r.window,
                "alert › window",
                "the KPI window's name as stored, e.g. \"5m\", \"1h\" or \"shift\"",
            );
            let target = match &r.target {
                Some(t) if t.get_ref().is_finite() => Some(*t.get_ref()),
                Some(t) => {
                    c.err(
                        t.span(),
                        "alert › target",
                        "not a finite number",
                        "e.g. 0.6",
                    );
                    None
                }
                None => {
                    c.err(
                        r.name.span(),
                        "alert › target",
                        &format!("rule {:?} needs a target", r.name.get_ref()),
                        "the value the KPI should reach, e.g. target = 0.6",
                    );
                    None
                }
            };
            let windows = int(
                c,
                "alert › windows",
                r.windows.as_ref(),
                3,
                (1, 1000),
                "how many closed windows in a row must miss the target, 1 to 1000",
            );
            RuleKind::KpiBelow {
                kpi: kpi?,
                window: window?,
                target: target?,
                windows: windows as u32,
                above: r.above.as_ref().is_some_and(|a| *a.get_ref()),
            }
        }
        _ => RuleKind::AlarmFlood {
            max_per_10min: r.max_per_10min.as_ref().map(|m| {
                int(
                    c,
                    "alert › max_per_10min",
                    Some(m),
                    10,
                    (1, 1_000_000),
                    "alarm activations per 10 minutes above which a node floods (ISA-18.2: 10)",
                )
            }),
        },
    };
    if refused {
        return None;
    }
    Some(Rule {
        name: r.name.get_ref().clone(),
        site: r.site.as_ref().map(|s| s.get_ref().clone()),
        node: r.node.as_ref().map(|s| s.get_ref().clone()),
        kind,
    })
}

fn validate_webhook(c: &mut Ctx<'_>, w: &RawWebhook) -> Option<Webhook> {
    let url = w.url.get_ref();
    let url_ok = match url.parse::<hyper::Uri>() {
        Ok(u) => {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    };
    if !url_ok {
        c.err(
            w.url.span(),
            "webhook › url",
            &format!("{url:?} is not an http:// or https:// URL"),
            "e.g. \"https://alerts.example.com/apos\"",
        );
    }
    let secret = match c.secret("webhook › secret_file", &w.secret_file, &w.secret_env) {
        Some(s) if s.len() >= 16 => Some(s.into_bytes()),
        Some(_) => {
            let span = w
                .secret_file
                .as_ref()
                .or(w.secret_env.as_ref())
                .map(|s| s.span())
                .unwrap_or(0..0);
            c.err(
                span,
                "webhook › secret_file",
                "the secret is shorter than 16 bytes",
                "generate one, e.g. `openssl rand -hex 32 > webhook.secret` (mode 0600)",
            );
            None
        }
        None => {
            if w.secret_file.is_none() && w.secret_env.is_none() {
                c.err(
                    w.url.span(),
                    "webhook › secret_file",
                    "a webhook needs a signing secret",
                    "add secret_file (or secret_env): deliveries are HMAC-SHA256 signed; the secret is never written in the config",
                );
            }
            None
        }
    };
    let timeout = c.duration(
        "webhook › timeout",
        w.timeout.as_ref(),
        Duration::from_secs(10),
        (Duration::from_millis(100), Duration::from_secs(300)),
        "how long one attempt may take, e.g. \"10s\"",
    );
    let backoff = c.duration(
        "webhook › backoff",
        w.backoff.as_ref(),
        Duration::from_secs(1),
        (Duration::from_millis(10), Duration::from_secs(3600)),
        "the first retry's delay, doubled after each failure, e.g. \"1s\"",
    );
    let max_backoff = c.duration(
        "webhook › max_backoff",
        w.max_backoff.as_ref(),
        Duration::from_secs(300).max(backoff),
        (backoff, Duration::from_secs(86_400)),
        "the longest delay between retries, at least `backoff`, e.g. \"5m\"",
    );
    let deadline = c.duration(
        "webhook › deadline",
        w.deadline.as_ref(),
        Duration::from_secs(3600),
        (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        "how long after the first attempt a delivery is given up, e.g. \"1h\"",
    );
    let max_attempts = int(
        c,
        "webhook › max_attempts",
        w.max_attempts.as_ref(),
        20,
        (1, 10_000),
        "attempts per delivery before it is given up, 1 to 10000",
    ) as u32;
    let queue = int(
        c,
        "webhook › queue",
        w.queue.as_ref(),
        1000,
        (1, 100_000),
        "deliveries kept waiting; when full the oldest is dropped (counted and logged)",
    ) as usize;
    Some(Webhook {
        url: url.clone(),
        secret: secret?,
        timeout,
        max_attempts,
        backoff,
        max_backoff,
        deadline,
        queue,
    })
    .filter(|_| url_ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::parse;

    const BASE: &str = "schema_version = 1\n[storage]\npath = \"f.duckdb\"\n";

    fn err(text: &str) -> String {
        parse(Path::new("hub.toml"), &format!("{BASE}{text}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rules_and_webhook_parse_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.secret"), "0123456789abcdef-xyz\n").unwrap();
        let text = format!(
            "{BASE}[alerts]\ninterval = \"200ms\"\nname = \"hub-eu\"\n\
             [[alert]]\nname = \"offline\"\nkind = \"node_offline\"\nfor = \"2m\"\nsite = \"plant1\"\n\
             [[alert]]\nname = \"backlog\"\nkind = \"backlog_growing\"\n\
             [[alert]]\nname = \"gaps\"\nkind = \"sequence_gaps\"\n\
             [[alert]]\nname = \"oee\"\nkind = \"kpi_below\"\nkpi = \"oee\"\nwindow = \"5m\"\ntarget = 1\n\
             [[alert]]\nname = \"flood\"\nkind = \"alarm_flood\"\nmax_per_10min = 12\n\
             [webhook]\nurl = \"http://127.0.0.1:9/hook?x=1\"\nsecret_file = \"w.secret\"\n"
        );
        let cfg = parse(&dir.path().join("hub.toml"), &text).unwrap();
        let a = cfg.alerts.unwrap();
        assert_eq!(a.interval, Duration::from_millis(200));
        assert_eq!(a.hub_name, "hub-eu");
        assert_eq!(a.db_file, dir.path().join("alerts.db"));
        assert_eq!(a.rules.len(), 5);
        assert_eq!(
            a.rules[0].kind,
            RuleKind::NodeOffline {
                after: Duration::from_secs(120)
            }
        );
        assert!(a.rules[0].applies_to("plant1", "x") && !a.rules[0].applies_to("plant2", "x"));
        assert_eq!(
            a.rules[1].kind,
            RuleKind::BacklogGrowing {
                period: Duration::from_secs(600),
                min_batches: 100
            }
        );
        assert_eq!(
            a.rules[3].kind,
            RuleKind::KpiBelow {
                kpi: "oee".into(),
                window: "5m".into(),
                target: 1.0,
                windows: 3,
                above: false
            }
        );
        let w = a.webhook.unwrap();
        assert_eq!(w.secret, b"0123456789abcdef-xyz");
        assert_eq!((w.max_attempts, w.backoff), (20, Duration::from_secs(1)));
        assert!(
            !format!("{w:?}").contains("0123456789abcdef"),
            "secret redacted"
        );
        // No rules: no alerting.
        assert!(parse(Path::new("hub.toml"), BASE).unwrap().alerts.is_none());
    }

    #[test]
    fn rule_mistakes_are_located_and_explained() {
        let rule = "[[alert]]\nname = \"r\"\n";
        for (text, at, needle) in [
            (
                format!("{rule}kind = \"node_ofline\"\n"),
                "hub.toml:6:8",
                "alert › kind: unknown kind \"node_ofline\"",
            ),
            (
                format!("{rule}kind = \"node_offline\"\nmin_batches = 5\n"),
                "hub.toml:7:15",
                "`min_batches` is not a setting of a node_offline rule",
            ),
            (
                format!("{rule}kind = \"node_offline\"\nfor = \"0s\"\n"),
                "hub.toml:7:7",
                "alert › for: \"0s\" is not between 1s and 30days",
            ),
            (
                format!("{rule}kind = \"kpi_below\"\nkpi = \"oee\"\nwindow = \"5m\"\n"),
                "hub.toml:5:8",
                "alert › target",
            ),
            (
                format!(
                    "{rule}kind = \"kpi_below\"\nkpi = \"oee\"\nwindow = \"5m\"\ntarget = 0.5\nwindows = 0\n"
                ),
                "hub.toml:10:11",
                "alert › windows: 0 is not between 1 and 1000",
            ),
            (
                format!("{rule}kind = \"sequence_gaps\"\nsite = \"a/b\"\n"),
                "hub.toml:7:8",
                "alert › site",
            ),
            (
                format!("{rule}kind = \"sequence_gaps\"\n{rule}kind = \"alarm_flood\"\n"),
                "hub.toml:8:8",
                "rule \"r\" is defined twice",
            ),
            (
                format!("{rule}kind = \"sequence_gaps\"\nfrobnicate = 1\n"),
                "hub.toml:7:1",
                "unknown field `frobnicate`",
            ),
            (
                "[webhook]\nurl = \"http://h/\"\nsecret_env = \"X\"\n".to_string(),
                "hub.toml:4:1",
                "alert settings without any [[alert]] rule",
            ),
            (
                format!(
                    "{rule}kind = \"sequence_gaps\"\n[webhook]\nurl = \"ftp://h/\"\nsecret_env = \"APOS_TEST_NO_SUCH_VAR\"\n"
                ),
                "hub.toml:8:7",
                "webhook › url: \"ftp://h/\" is not an http:// or https:// URL",
            ),
            (
                format!("{rule}kind = \"sequence_gaps\"\n[webhook]\nurl = \"http://h/\"\n"),
                "hub.toml:8:7",
                "a webhook needs a signing secret",
            ),
            (
                format!("{rule}kind = \"sequence_gaps\"\n[alerts]\ninterval = \"10ms\"\n"),
                "hub.toml:8:12",
                "alerts › interval",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(at), "{text}\n→ {e}");
            assert!(e.contains(needle), "{text}\n→ {e}");
            assert!(e.contains("help:"), "{e}");
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.secret"), "short\n").unwrap();
        let text = format!(
            "{BASE}[[alert]]\nname = \"g\"\nkind = \"sequence_gaps\"\n[webhook]\nurl = \"https://h.example/x\"\nsecret_file = \"w.secret\"\n"
        );
        let e = parse(&dir.path().join("hub.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorter than 16 bytes"), "{e}");
        assert!(e.contains("hub.toml:9:15"), "{e}");
    }
}
