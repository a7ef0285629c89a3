//! The hub's configuration: a TOML file read in two layers (serde structs
//! with `deny_unknown_fields` and spans, then validation into [`HubConfig`]),
//! with errors that name the file, line, field and what to do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::NodeKey;
use serde::Deserialize;
use toml::Spanned;

mod alert;
mod optimize;
mod report;
mod sql;
mod web;
pub use alert::{Alerts, Rule, RuleKind, Webhook};
pub use optimize::{ModelSpec, Optimization, OutputSpec, ProblemConfig, SurrogateSpec, Trigger};
pub use report::{DEFAULT_CHROMIUM, Report, Schedule};
pub use sql::Sql;
pub use web::Web;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Layer 1: as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    schema_version: Spanned<i64>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    broker: RawBroker,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default, rename = "node")]
    nodes: Vec<Spanned<RawNode>>,
    /// Absent: no web server (tests, headless hubs).
    web: Option<web::RawWeb>,
    /// Alerting (docs/hub.md, "Alerts").
    alerts: Option<Spanned<alert::RawAlerts>>,
    #[serde(default, rename = "alert")]
    alert_rules: Vec<Spanned<alert::RawRule>>,
    webhook: Option<Spanned<alert::RawWebhook>>,
    /// The read-only SQL endpoint's limits (docs/hub.md, "SQL").
    sql: Option<Spanned<sql::RawSql>>,
    /// Periodic site reports (docs/hub.md, "Reports").
    #[serde(default, rename = "report")]
    reports: Vec<Spanned<report::RawReport>>,
    /// The hub's recommendation signing key and validity (docs/optimization.md).
    recommendations: Option<Spanned<optimize::RawRecommendations>>,
    /// Setpoint optimization problems (docs/optimization.md).
    #[serde(default, rename = "optimization")]
    optimizations: Vec<Spanned<optimize::RawProblem>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    mode: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    max_message_size: Option<Spanned<i64>>,
    commit_interval: Option<Spanned<String>>,
    status_log_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    site: Spanned<String>,
    node: Spanned<String>,
    key_file: Option<Spanned<String>>,
    key_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
}

/// Layer 2: validated.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub storage_path: PathBuf,
    pub broker: Broker,
    pub max_message_size: usize,
    pub commit_interval: Duration,
    pub status_log_interval: Duration,
    /// (site, node) → the node's credentials.
    pub nodes: BTreeMap<(String, String), NodeEntry>,
    /// The web application and REST API; `None` without a `[web]` section.
    pub web: Option<Web>,
    /// Alert rules and their webhook; `None` without `[[alert]]` rules.
    pub alerts: Option<Alerts>,
    /// The read-only SQL endpoint's limits (defaults without `[sql]`).
    pub sql: Sql,
    /// Scheduled site reports (`[[report]]`).
    pub reports: Vec<Report>,
    /// Optimization problems and the recommendation key; `None` without
    /// `[[optimization]]` or `[recommendations]`.
    pub optimization: Option<Optimization>,
}

#[derive(Debug, Clone)]
pub enum Broker {
    /// rumqttd inside the hub; nodes log in with their MQTT password.
    Embedded {
        listen: SocketAddr,
        tls: Option<(PathBuf, PathBuf)>,
    },
    /// An external broker (mosquitto, EMQX); the hub is a client.
    External {
        host: String,
        port: u16,
        tls: bool,
        /// PEM CA certificate(s) that sign the broker's certificate; the
        /// system's trust store when absent.
        ca_file: Option<PathBuf>,
        credentials: Option<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub key: NodeKey,
    /// MQTT password for the embedded broker (user name `{site}.{node}`).
    pub password: Option<String>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<String>,
}

/// `[ingest] max_message_size` bounds: below 1 KiB no batch fits; above
/// 256 MiB MQTT cannot carry it.
const MIN_MESSAGE: usize = 1 << 10;
const MAX_MESSAGE: usize = 256 << 20;

impl Ctx<'_> {
    /// A duration within `range`, or an error located at its value.
    fn duration(
        &mut self,
        field: &str,
        raw: Option<&Spanned<String>>,
        default: Duration,
        (min, max): (Duration, Duration),
        help: &str,
    ) -> Duration {
        let Some(s) = raw else { return default };
        let range = format!(
            "between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        );
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) if (min..=max).contains(&d) => d,
            Ok(_) => {
                self.err(
                    s.span(),
                    field,
                    &format!("{:?} is not {range}", s.get_ref()),
                    help,
                );
                default
            }
            Err(e) => {
                self.err(
                    s.span(),
                    field,
                    &format!("{:?} is not a duration ({e})", s.get_ref()),
                    help,
                );
                default
            }
        }
    }

    fn err(&mut self, span: std::ops::Range<usize>, field: &str, msg: &str, help: &str) {
        let (line, col) = line_col(self.text, span.start);
        self.errors.push(format!(
            "error: {field}: {msg}\n  --> {}:{line}:{col}\n   = help: {help}",
            self.path.display()
        ));
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn secret(
        &mut self,
        field: &str,
        file: &Option<Spanned<String>>,
        env: &Option<Spanned<String>>,
    ) -> Option<String> {
        match (file, env) {
            (Some(f), _) => match std::fs::read_to_string(self.resolve(f.get_ref())) {
                Ok(t) => Some(t.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    self.err(
                        f.span(),
                        field,
                        &format!("cannot read {}: {e}", self.resolve(f.get_ref()).display()),
                        "create the file (mode 0600) or fix the path; relative paths are relative to this config file",
                    );
                    None
                }
            },
            (None, Some(v)) => match std::env::var(v.get_ref()) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.err(
                        v.span(),
                        field,
                        &format!("environment variable {} is not set", v.get_ref()),
                        "set it in the service's environment (e.g. a systemd EnvironmentFile)",
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // Back to a character boundary: never slice inside a character.
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Read and validate a hub configuration file.
pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &text)
}

/// Validate configuration text (for tests and `validate`).
/// `[[optimization]]` problems alone (what `POST /api/v1/optimization`
/// takes), validated exactly like the file's, errors located in `text`
/// under the name `source`. `storage_path` is the hub's (for nothing but
/// the default key path, which is not used here).
pub fn parse_problems(
    source: &Path,
    text: &str,
    storage_path: &Path,
) -> Result<Vec<ProblemConfig>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawProblems {
        #[serde(default, rename = "optimization")]
        optimizations: Vec<Spanned<optimize::RawProblem>>,
    }
    let raw: RawProblems = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError::Invalid(format!(
            "error: {}\n  --> {}:{line}:{col}\n   = help: send [[optimization]] tables as in docs/optimization.md",
            e.message().trim(),
            source.display()
        ))
    })?;
    let mut c = Ctx {
        path: source,
        text,
        errors: Vec::new(),
    };
    if raw.optimizations.is_empty() {
        return Err(ConfigError::Invalid(
            "no [[optimization]] table: send one or more, as in docs/optimization.md".into(),
        ));
    }
    let problems = optimize::validate(&mut c, None, &raw.optimizations, storage_path)
        .map(|o| o.problems)
        .unwrap_or_default();
    if !c.errors.is_empty() {
        let n = c.errors.len();
        return Err(ConfigError::Invalid(format!(
            "{}\n{n} problem{} found; nothing was changed.",
            c.errors.join("\n\n"),
            if n == 1 { "" } else { "s" }
        )));
    }
    Ok(problems)
}

pub fn parse(path: &Path, text: &str) -> Result<HubConfig, ConfigError> {
    let raw: RawHub = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        // Name the key the error is on when it is a `key = value` line.
        let key = text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
            .map(|k| format!("{k}: "))
            .unwrap_or_default();
        ConfigError::Invalid(format!(
            "error: {key}{}\n  --> {}:{line}:{col}\n   = help: see docs/hub.md for every key",
            e.message().trim(),
            path.display()
        ))
    })?;
    let mut c = Ctx {
        path,
        text,
        errors: Vec::new(),
    };
    if *raw.schema_version.get_ref() != 1 {
        c.err(
            raw.schema_version.span(),
            "schema_version",
            &format!(
                "unsupported schema version {}",
                raw.schema_version.get_ref()
            ),
            "this hub reads schema_version = 1",
        );
    }
    let storage_path = raw
        .storage
        .path
        .as_ref()
        .map(|p| c.resolve(p.get_ref()))
        .unwrap_or_else(|| PathBuf::from("/var/lib/apos/hub/fleet.duckdb"));

    let b = &raw.broker;
    let mode = b
        .mode
        .as_ref()
        .map(|m| m.get_ref().as_str())
        .unwrap_or("embedded");
    let broker = match mode {
        "embedded" => {
            let listen = match &b.listen {
                None => Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
                Some(l) => {
                    match l.get_ref().parse::<SocketAddr>() {
                        Ok(a) => Some(a),
                        Err(_) => {
                            c.err(l.span(), "broker › listen", &format!("{:?} is not an address:port", l.get_ref()), "write e.g. \"0.0.0.0:8883\" (all interfaces) or \"127.0.0.1:1883\"");
                            None
                        }
                    }
                }
            };
            let tls = match (&b.tls_cert, &b.tls_key) {
                (Some(cert), Some(key)) => {
                    Some((c.resolve(cert.get_ref()), c.resolve(key.get_ref())))
                }
                (None, None) => None,
                (Some(s), None) | (None, Some(s)) => {
                    c.err(
                        s.span(),
                        "broker › tls_cert",
                        "TLS needs both `tls_cert` and `tls_key`",
                        "give the PEM certificate chain and its private key",
                    );
                    None
                }
            };
            if let Some(u) = &b.url {
                c.err(
                    u.span(),
                    "broker › url",
                    "`url` is for mode = \"external\"",
                    "remove it, or set mode = \"external\"",
                );
            }
            listen.map(|listen| Broker::Embedded { listen, tls })
        }
        "external" => {
            let parsed = match &b.url {
                None => {
                    c.err(
                        0..0,
                        "broker › url",
                        "an external broker needs `url`",
                        "add url = \"mqtt://127.0.0.1:1883\" (or mqtts://…)",
                    );
                    None
                }
                Some(u) => match parse_url(u.get_ref()) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        c.err(
                            u.span(),
                            "broker › url",
                            &e,
                            "write mqtt://host:port or mqtts://host:port",
                        );
                        None
                    }
                },
            };
            let password = c.secret("broker › password_file", &b.password_file, &b.password_env);
            let credentials = match (&b.user, password) {
                (Some(u), Some(p)) => Some((u.get_ref().clone(), p)),
                (Some(u), None) => {
                    c.err(
                        u.span(),
                        "broker › user",
                        "a user needs `password_file` or `password_env`",
                        "passwords are never written in the config",
                    );
                    None
                }
                (None, _) => None,
            };
            let ca_file = match (&b.ca_file, &parsed) {
                (Some(f), Some((_, _, false))) => {
                    c.err(
                        f.span(),
                        "broker › ca_file",
                        "`ca_file` is for TLS connections",
                        "write the url as mqtts://host:port, or remove ca_file",
                    );
                    None
                }
                (Some(f), _) => {
                    let path = c.resolve(f.get_ref());
                    if !path.is_file() {
                        c.err(
                            f.span(),
                            "broker › ca_file",
                            &format!("{} does not exist", path.display()),
                            "give the PEM file of the CA that signed the broker's certificate",
                        );
                    }
                    Some(path)
                }
                (None, _) => None,
            };
            parsed.map(|(host, port, tls)| Broker::External {
                host,
                port,
                tls,
                ca_file,
                credentials,
            })
        }
        other => {
            let span = b.mode.as_ref().map(|m| m.span()).unwrap_or(0..0);
            c.err(
                span,
                "broker › mode",
                &format!("unknown mode {other:?}"),
                "use \"embedded\" (rumqttd inside the hub) or \"external\" (mosquitto, EMQX)",
            );
            None
        }
    };

    // Every size and duration has a range: a value outside it is an error
    // here, not an overflow or a busy loop at run time.
    let max_message_size = match &raw.ingest.max_message_size {
        None => protocol::MAX_MESSAGE_BYTES,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(v) if (MIN_MESSAGE..=MAX_MESSAGE).contains(&v) => v,
            _ => {
                c.err(
                    m.span(),
                    "ingest › max_message_size",
                    &format!("{} is not between 1 KiB and 256 MiB", m.get_ref()),
                    "the largest batch an edge sends plus headroom; MQTT carries at most 256 MiB; the default is 4 MiB (4194304)",
                );
                protocol::MAX_MESSAGE_BYTES
            }
        },
    };
    let commit_interval = c.duration(
        "ingest › commit_interval",
        raw.ingest.commit_interval.as_ref(),
        Duration::from_millis(200),
        (Duration::from_millis(1), Duration::from_secs(60)),
        "how long batches gather before one commit, e.g. \"200ms\"",
    );
    let status_log_interval = c.duration(
        "ingest › status_log_interval",
        raw.ingest.status_log_interval.as_ref(),
        Duration::from_secs(30),
        (Duration::from_secs(1), Duration::from_secs(86_400)),
        "how often the counters are logged, e.g. \"30s\"",
    );

    let mut nodes = BTreeMap::new();
    for n in &raw.nodes {
        let r = n.get_ref();
        for (id, field) in [(&r.site, "node › site"), (&r.node, "node › node")] {
            if let Err(e) = protocol::topic::check_id(id.get_ref()) {
                c.err(
                    id.span(),
                    field,
                    &e.to_string(),
                    "use letters, digits, `_` and `-` only",
                );
            }
        }
        let key = match c.secret("node › key_file", &r.key_file, &r.key_env) {
            Some(k) => match NodeKey::new(k.as_bytes()) {
                Some(k) => Some(k),
                None => {
                    c.err(
                        n.span(),
                        "node › key_file",
                        "the key is shorter than 16 bytes",
                        "generate one, e.g. `head -c 32 /dev/urandom | base64 > node.key`",
                    );
                    None
                }
            },
            None => {
                c.err(
                    n.span(),
                    "node › key_file",
                    &format!(
                        "node {}/{} has no signing key",
                        r.site.get_ref(),
                        r.node.get_ref()
                    ),
                    "add key_file (or key_env): the same key as the edge's `[sync] key_file`",
                );
                None
            }
        };
        let password = c.secret("node › password_file", &r.password_file, &r.password_env);
        let id = (r.site.get_ref().clone(), r.node.get_ref().clone());
        if nodes.contains_key(&id) {
            c.err(
                n.span(),
                "node",
                &format!("node {}/{} is listed twice", id.0, id.1),
                "remove the duplicate entry",
            );
        }
        if let Some(key) = key {
            nodes.insert(id, NodeEntry { key, password });
        }
    }
    if matches!(broker, Some(Broker::Embedded { .. }))
        && let Some(n) = raw
            .nodes
            .iter()
            .find(|n| n.get_ref().password_file.is_none() && n.get_ref().password_env.is_none())
    {
        c.err(
            n.span(),
            "node › password_file",
            "the embedded broker needs a password for every node",
            "add password_file (or password_env); the node logs in as user \"{site}.{node}\"",
        );
    }
    let web = raw
        .web
        .as_ref()
        .and_then(|w| web::validate(&mut c, w, &storage_path));
    let alerts = alert::validate(
        &mut c,
        raw.alerts.as_ref(),
        &raw.alert_rules,
        raw.webhook.as_ref(),
        &storage_path,
    );
    let sql = sql::validate(&mut c, raw.sql.as_ref());
    let reports = report::validate(&mut c, &raw.reports);
    let optimization = optimize::validate(
        &mut c,
        raw.recommendations.as_ref(),
        &raw.optimizations,
        &storage_path,
    );
    if !c.errors.is_empty() {
        let n = c.errors.len();
        return Err(ConfigError::Invalid(format!(
            "{}\n{n} problem{} found; the configuration was not applied.",
            c.errors.join("\n\n"),
            if n == 1 { "" } else { "s" }
        )));
    }
    let Some(broker) = broker else {
        return Err(ConfigError::Invalid("invalid broker section".into()));
    };
    Ok(HubConfig {
        storage_path,
        broker,
        max_message_size,
        commit_interval,
        status_log_interval,
        nodes,
        web,
        alerts,
        sql,
        reports,
        optimization,
    })
}

fn parse_url(url: &str) -> Result<(String, u16, bool), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an mqtt:// or mqtts:// URL"));
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((
            h.to_owned(),
            p.parse().map_err(|_| format!("invalid port in {url:?}"))?,
            tls,
        )),
        None if !rest.is_empty() => Ok((rest.to_owned(), if tls { 8883 } else { 1883 }, tls)),
        _ => Err(format!("no host in {url:?}")),
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A problem with a fitted and a given model, a disturbance, a limit.
    pub const DEMO_LIKE_PROBLEM: &str = r#"
[[optimization]]
name = "m"
site = "s"
node = "n"
every = "15m"
[[optimization.decision]]
tag = "t_sp"
min = 340.0
max = 385.0
[[optimization.decision]]
tag = "r_sp"
min = 1.0
max = 3.0
[[optimization.output]]
tag = "flow"
inputs = ["t_sp", "ambient.temp"]
[[optimization.output]]
tag = "t95"
intercept = 41.2
coefficients = { "t_sp" = 0.4 }
[[optimization.term]]
tag = "flow"
price = 600.0
[[optimization.constraint]]
name = "spec"
tag = "t95"
max = 180.0
"#;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config/hub.example.toml");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(
            dir.path().join("keys/plant1.edge1.key"),
            "0123456789abcdef0123\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("keys/plant1.edge1.pass"), "pw\n").unwrap();
        for f in ["webhook.secret", "keys/webhook.secret"] {
            std::fs::write(dir.path().join(f), "0123456789abcdef0123\n").unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            // The example's secrets under /etc/apos/keys/ (the package's
            // layout; /etc/apos-hub/keys/ before it) come from `dir`.
            .replace("/etc/apos-hub/", &format!("{}/", dir.path().display()))
            .replace("/etc/apos/", &format!("{}/", dir.path().display()));
        let cfg = parse(&path, &text).unwrap();
        assert_eq!(cfg.nodes.len(), 1);
        let n = &cfg.nodes[&("plant1".to_string(), "edge1".to_string())];
        assert_eq!(n.password.as_deref(), Some("pw"));
        assert!(matches!(cfg.broker, Broker::Embedded { tls: Some(_), .. }));
        let alerts = cfg.alerts.unwrap();
        assert_eq!((alerts.rules.len(), alerts.webhook.is_some()), (5, true));
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let text = "schema_version = 1\n[broker]\nmode = \"embeded\"\n[[node]]\nsite = \"a/b\"\nnode = \"n\"\n";
        let err = parse(Path::new("hub.toml"), text).unwrap_err().to_string();
        assert!(
            err.contains("broker › mode: unknown mode \"embeded\""),
            "{err}"
        );
        assert!(err.contains("hub.toml:3:8"), "{err}");
        assert!(err.contains("node › site"), "{err}");
        assert!(err.contains("hub.toml:5:8"), "{err}");
        assert!(err.contains("has no signing key"), "{err}");
        let err = parse(Path::new("hub.toml"), "schema_version = 1\n[brokr]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `brokr`"), "{err}");
        assert!(err.contains("hub.toml:2:"), "{err}");
    }

    /// Values that panicked or hollowed out a running hub while `validate`
    /// said OK: each is now refused at its line.
    #[test]
    fn sizes_and_durations_out_of_range_are_refused_where_they_are_written() {
        let base = "schema_version = 1\n[storage]\npath = \"f.duckdb\"\n[ingest]\n";
        for (line, field) in [
            (
                "max_message_size = 18446744073709551615",
                "max_message_size",
            ),
            ("max_message_size = 4611686018427387904", "max_message_size"),
            ("max_message_size = 0", "max_message_size"),
            ("max_message_size = -5", "max_message_size"),
            ("status_log_interval = \"0s\"", "status_log_interval"),
            ("commit_interval = \"500000000000y\"", "commit_interval"),
            ("commit_interval = \"0s\"", "commit_interval"),
            ("commit_interval = \"2h\"", "commit_interval"),
        ] {
            let err = parse(Path::new("hub.toml"), &format!("{base}{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("hub.toml:5:"), "{line}: {err}");
            assert!(err.contains(field), "{line}: {err}");
        }
        let ok = parse(
            Path::new("hub.toml"),
            &format!("{base}max_message_size = 1048576\ncommit_interval = \"50ms\"\nstatus_log_interval = \"1m\"\n"),
        )
        .unwrap();
        assert_eq!(ok.max_message_size, 1 << 20);
        assert_eq!(ok.commit_interval, Duration::from_millis(50));
    }
}
