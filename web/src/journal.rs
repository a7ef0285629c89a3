//! Native journald logging for both binaries: when systemd started us
//! (`JOURNAL_STREAM` names our stderr), every `tracing` event goes to the
//! journal as one entry whose structured fields — the event's and those of
//! its enclosing spans (`device`, `tag`, `node`, `seq`, …) — are journal
//! fields (`DEVICE=`, `TAG=`, …), not text inside `MESSAGE=`. So
//! `journalctl -u apos-edge DEVICE=heater-plc` finds a device's lines.
//!
//! The journal client is `systemd-journal-logger`: it takes a `log::Record`
//! with key-values, so [`JournalLayer`] builds one from each event
//! ([`Entry`], unit-tested without a journal). It writes to
//! `/run/systemd/journal/socket` (the native protocol; a memfd for large
//! entries). Priorities: ERROR 3, WARN 4, INFO 5, DEBUG 6, TRACE 7.

use std::fmt::Write as _;

use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is connected to the journal (systemd's `JOURNAL_STREAM`
/// matches stderr's device and inode).
pub fn connected() -> bool {
    systemd_journal_logger::connected_to_journal()
}

/// If stderr is the journal, install a global subscriber that logs natively
/// to it with `filter` (an `EnvFilter` directive string) and return true.
/// Otherwise, or if the journal socket does not answer, install nothing and
/// return false: the caller sets up its stderr output as usual.
pub fn init_if_connected(filter: &str) -> bool {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if !connected() {
        return false;
    }
    let journal = match JournalLog::new() {
        Ok(j) => j,
        Err(e) => {
            // The subscriber does not exist yet: say it on stderr, which
            // the journal records as plain text.
            eprintln!(
                "JOURNAL_STREAM names stderr, but the journal socket does not answer ({e}); logging text to stderr"
            );
            return false;
        }
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(filter))
        .with(JournalLayer::new(journal))
        .try_init()
        .is_ok()
}

/// Where [`JournalLayer`] sends its records: the journal, or a test's
/// collector.
pub trait Sink: Send + Sync + 'static {
    fn send(&self, record: &log::Record<'_>);
}

impl Sink for JournalLog {
    fn send(&self, record: &log::Record<'_>) {
        // Nowhere to report a failed log write; journald counts its drops.
        let _ = self.journal_send(record);
    }
}

/// A `tracing_subscriber` layer that sends every event to a [`Sink`] as a
/// `log::Record` whose key-values are the event's and its spans' fields.
#[derive(Debug)]
pub struct JournalLayer<S> {
    sink: S,
}

impl<S: Sink> JournalLayer<S> {
    pub fn new(sink: S) -> Self {
        JournalLayer { sink }
    }
}

/// One journal entry, before it becomes a `log::Record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub level: tracing::Level,
    pub target: String,
    pub module: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
    /// Journal field names (already valid: see [`journal_key`]) and
    /// values; spans' fields first (outermost first), then the event's. A
    /// name appears once: the innermost value wins.
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// Hand `f` the `log::Record` that systemd-journal-logger sends.
    pub fn with_record<R>(&self, f: impl FnOnce(&log::Record<'_>) -> R) -> R {
        let kvs: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let kvs: &[(&str, &str)] = &kvs;
        let level = match self.level {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        f(&log::Record::builder()
            .level(level)
            .target(&self.target)
            .module_path(self.module.as_deref())
            .file(self.file.as_deref())
            .line(self.line)
            .args(format_args!("{}", self.message))
            .key_values(&kvs)
            .build())
    }
}

/// Fields the logger writes itself; a `tracing` field of the same name
/// would make them multi-valued (journalctl shows only the first), so it
/// is renamed `APOS_<NAME>`.
const RESERVED: [&str; 8] = [
    "PRIORITY",
    "MESSAGE",
    "SYSLOG_PID",
    "SYSLOG_IDENTIFIER",
    "CODE_FILE",
    "CODE_MODULE",
    "CODE_LINE",
    "TARGET",
];

/// A `tracing` field name as a journal field name: ASCII upper case,
/// digits and `_` only, not starting with `_` (trusted fields) or a digit,
/// at most 64 bytes; the same rules as systemd-journal-logger's escaping,
/// applied here so that the keys are final and testable.
pub fn journal_key(name: &str) -> String {
    let mut k: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if k.is_empty() {
        k = "EMPTY".into();
    }
    if k.starts_with(|c: char| c == '_' || c.is_ascii_digit()) {
        k = format!("ESCAPED_{k}");
    }
    if RESERVED.contains(&k.as_str()) {
        k = format!("APOS_{k}");
    }
    k.truncate(64);
    k
}

/// Fields recorded on a span, kept in its extensions.
#[derive(Debug, Default)]
struct SpanFields(Vec<(String, String)>);

#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Vec<(String, String)>,
}

impl Collect {
    fn put(&mut self, field: &Field, value: String) {
        let name = field.name();
        if name == "message" {
            self.message = Some(value);
        } else if name.starts_with("log.") {
            // tracing-log's copies of a `log` record's metadata: already
            // in the normalized metadata (target, file, line).
        } else {
            merge(&mut self.fields, journal_key(name), value);
        }
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, s);
    }
}

/// Set `key` to `value`, replacing an earlier value of the same key.
fn merge(fields: &mut Vec<(String, String)>, key: String, value: String) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

impl<S, K> Layer<S> for JournalLayer<K>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    K: Sink,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut c = Collect::default();
        attrs.record(&mut c);
        span.extensions_mut().insert(SpanFields(c.fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut c = Collect::default();
        values.record(&mut c);
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanFields>() {
            Some(f) => {
                for (k, v) in c.fields {
                    merge(&mut f.0, k, v);
                }
            }
            None => ext.insert(SpanFields(c.fields)),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let entry = entry(event, &ctx);
        entry.with_record(|r| self.sink.send(r));
    }
}

/// The entry for `event` in its spans (pure but for the span registry).
fn entry<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Entry
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut c = Collect::default();
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            if let Some(f) = span.extensions().get::<SpanFields>() {
                for (k, v) in &f.0 {
                    merge(&mut c.fields, k.clone(), v.clone());
                }
            }
        }
    }
    event.record(&mut c);
    // Events that came from the `log` crate (through tracing-log) carry
    // their real target and location in the normalized metadata.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    Entry {
        level: *meta.level(),
        target: meta.target().to_owned(),
        module: meta.module_path().map(str::to_owned),
        file: meta.file().map(str::to_owned),
        line: meta.line(),
        message: c.message.unwrap_or_default(),
        fields: c.fields,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What the journal client would read from a record.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        level: log::Level,
        target: String,
        file: Option<String>,
        line: Option<u32>,
        message: String,
        kv: Vec<(String, String)>,
    }

    #[derive(Clone, Default)]
    struct Collector(Arc<Mutex<Vec<Seen>>>);

    impl Sink for Collector {
        fn send(&self, r: &log::Record<'_>) {
            struct Kv(Vec<(String, String)>);
            impl<'k> log::kv::VisitSource<'k> for Kv {
                fn visit_pair(
                    &mut self,
                    key: log::kv::Key<'k>,
                    value: log::kv::Value<'k>,
                ) -> Result<(), log::kv::Error> {
                    self.0.push((key.as_str().to_owned(), value.to_string()));
                    Ok(())
                }
            }
            let mut kv = Kv(Vec::new());
            r.key_values().visit(&mut kv).unwrap();
            self.0.lock().unwrap().push(Seen {
                level: r.level(),
                target: r.target().to_owned(),
                file: r.file().map(str::to_owned),
                line: r.line(),
                message: r.args().to_string(),
                kv: kv.0,
            });
        }
    }

    fn kv(seen: &Seen, key: &str) -> Option<String> {
        seen.kv
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn event_and_span_fields_become_journal_fields() {
        let sink = Collector::default();
        let subscriber = tracing_subscriber::registry().with(JournalLayer::new(sink.clone()));
        let line = tracing::subscriber::with_default(subscriber, || {
            let outer =
                tracing::info_span!("sync", node = "cdu-gw-01", seq = tracing::field::Empty);
            let _o = outer.enter();
            outer.record("seq", 42u64);
            let inner = tracing::info_span!("device", device = "heater-plc", node = "inner");
            let _i = inner.enter();
            let err = std::io::Error::other("timed out");
            tracing::warn!(tag = "heater.outlet_temp", value = 361.5, ok = false, error = %err, "read failed after {} tries", 3);
            line!() - 1
        });
        let seen = sink.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let s = &seen[0];
        assert_eq!(s.level, log::Level::Warn);
        assert_eq!(s.message, "read failed after 3 tries");
        assert_eq!(s.target, module_path!());
        assert_eq!(s.line, Some(line));
        assert!(s.file.as_deref().unwrap().ends_with("journal.rs"), "{s:?}");
        // Keys are final journal field names, with their values as text.
        assert_eq!(kv(s, "DEVICE").as_deref(), Some("heater-plc"));
        assert_eq!(kv(s, "TAG").as_deref(), Some("heater.outlet_temp"));
        assert_eq!(
            kv(s, "SEQ").as_deref(),
            Some("42"),
            "recorded on the span later"
        );
        assert_eq!(kv(s, "VALUE").as_deref(), Some("361.5"));
        assert_eq!(kv(s, "OK").as_deref(), Some("false"));
        assert_eq!(kv(s, "ERROR").as_deref(), Some("timed out"));
        // The innermost span's value wins, once.
        assert_eq!(kv(s, "NODE").as_deref(), Some("inner"));
        assert_eq!(s.kv.iter().filter(|(k, _)| k == "NODE").count(), 1);
        // The message is not repeated as a field, and nothing else leaks in.
        let mut keys: Vec<&str> = s.kv.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["DEVICE", "ERROR", "NODE", "OK", "SEQ", "TAG", "VALUE"]
        );
    }

    #[test]
    fn an_event_outside_spans_has_only_its_own_fields_and_levels_map() {
        let sink = Collector::default();
        let subscriber = tracing_subscriber::registry().with(JournalLayer::new(sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "apos::test", site = "north", "plain");
            tracing::info!("no fields");
            tracing::debug!(x = 1, "d");
            tracing::trace!("t");
        });
        let seen = sink.0.lock().unwrap().clone();
        let levels: Vec<log::Level> = seen.iter().map(|s| s.level).collect();
        assert_eq!(
            levels,
            [
                log::Level::Error,
                log::Level::Info,
                log::Level::Debug,
                log::Level::Trace
            ]
        );
        assert_eq!(seen[0].target, "apos::test");
        assert_eq!(seen[0].kv, [("SITE".to_string(), "north".to_string())]);
        assert!(seen[1].kv.is_empty());
    }

    #[test]
    fn field_names_are_valid_journal_names() {
        assert_eq!(journal_key("device"), "DEVICE");
        assert_eq!(journal_key("outbox_depth"), "OUTBOX_DEPTH");
        assert_eq!(journal_key("r#type"), "R_TYPE");
        assert_eq!(journal_key("http.status"), "HTTP_STATUS");
        assert_eq!(journal_key("_trusted"), "ESCAPED__TRUSTED");
        assert_eq!(journal_key("1st"), "ESCAPED_1ST");
        assert_eq!(journal_key(""), "EMPTY");
        // The logger's own fields are not shadowed.
        assert_eq!(journal_key("target"), "APOS_TARGET");
        assert_eq!(journal_key("priority"), "APOS_PRIORITY");
        assert_eq!(journal_key(&"x".repeat(100)).len(), 64);
    }
}
