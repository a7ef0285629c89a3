//! Reading files into the raw layer: TOML (main file and includes) and CSV
//! register maps. Sections and array elements are deserialized one by one,
//! so a mistake in one tag does not hide the mistakes in the others.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::raw::{
    Dur, RawAlarm, RawCalendar, RawDevice, RawForecast, RawHmi, RawImport, RawKpi, RawKpiEngine,
    RawNode, RawSerialLine, RawSetpoint, RawSetpoints, RawStorage, RawSync, RawTag, S, field_names,
};

/// One element of the configuration with the file it came from.
#[derive(Debug)]
pub(crate) struct Item<T> {
    pub src: Arc<SourceFile>,
    /// Span of the whole element (its table), for "defined here" notes.
    pub span: Range<usize>,
    pub raw: T,
}

impl<T> Item<T> {
    pub fn diag(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(&self.src, span, field, msg)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub schema_version: Option<Item<S<i64>>>,
    pub node: Option<Item<RawNode>>,
    pub storage: Option<Item<RawStorage>>,
    pub sync: Option<Item<RawSync>>,
    pub hmi: Option<Item<RawHmi>>,
    pub forecast: Option<Item<RawForecast>>,
    pub calendar: Option<Item<RawCalendar>>,
    pub kpi_engine: Option<Item<RawKpiEngine>>,
    pub kpis: Vec<Item<RawKpi>>,
    pub alarms: Vec<Item<RawAlarm>>,
    pub setpoints: Option<Item<RawSetpoints>>,
    pub setpoint: Vec<Item<RawSetpoint>>,
    pub poll_groups: Vec<Item<(S<String>, S<Dur>)>>,
    pub serial_lines: Vec<Item<RawSerialLine>>,
    pub devices: Vec<Item<RawDevice>>,
    pub tags: Vec<Item<RawTag>>,
    pub sources: Vec<PathBuf>,
    /// Where the main file's `[node]`/`[storage]` would be reported when
    /// missing entirely.
    pub main: Option<Arc<SourceFile>>,
}

const MAIN_KEYS: &[&str] = &[
    "schema_version",
    "include",
    "import",
    "node",
    "poll_groups",
    "storage",
    "sync",
    "hmi",
    "forecast",
    "calendar",
    "kpi_engine",
    "kpi",
    "alarm",
    "setpoints",
    "setpoint",
    "serial_line",
    "device",
    "tag",
];
const INCLUDE_KEYS: &[&str] = &["import", "serial_line", "device", "tag", "alarm"];

pub(crate) fn read_main(path: &Path, text: String, out: &mut RawConfig, diags: &mut Diagnostics) {
    let src = Arc::new(SourceFile::new(path, text));
    out.main = Some(src.clone());
    out.sources.push(path.to_path_buf());
    read_toml(src, true, out, diags, &mut BTreeSet::new());
}

fn read_toml(
    src: Arc<SourceFile>,
    is_main: bool,
    out: &mut RawConfig,
    diags: &mut Diagnostics,
    seen: &mut BTreeSet<PathBuf>,
) {
    let text: &str = &src.text;
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::at(&src, span, "syntax", e.message().trim().to_string())
                    .help("fix the TOML syntax; see docs/configuration.md for the format"),
            );
        }
        return;
    }
    let allowed = if is_main { MAIN_KEYS } else { INCLUDE_KEYS };
    let root = root.into_inner();
    for (key, value) in root {
        let name = key.get_ref().as_ref();
        let key_span = key.span();
        match (name, allowed.contains(&name)) {
            (_, false) => {
                let mut d = Diagnostic::at(&src, key_span, name, "unknown top-level key");
                d = match did_you_mean(name, allowed.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None if !is_main && MAIN_KEYS.contains(&name) => d.help(format!(
                        "`{name}` may only appear in the main configuration file, not in an included file"
                    )),
                    None => d.help(format!("allowed here: {}", allowed.join(", "))),
                };
                diags.push(d);
            }
            ("schema_version", true) => {
                if let Some(v) = de_value::<S<i64>>(&src, value, "schema_version", diags) {
                    out.schema_version = Some(Item {
                        src: src.clone(),
                        span: key_span,
                        raw: v,
                    });
                }
            }
            ("node", true) => {
                let span = value.span();
                out.node = de_element::<RawNode>(&src, value, "node", diags).map(|raw| Item {
                    src: src.clone(),
                    span,
                    raw,
                });
            }
            ("storage", true) => {
                let span = value.span();
                out.storage =
                    de_element::<RawStorage>(&src, value, "storage", diags).map(|raw| Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
            }
            ("sync", true) => {
                let span = value.span();
                out.sync = de_element::<RawSync>(&src, value, "sync", diags).map(|raw| Item {
                    src: src.clone(),
                    span,
                    raw,
                });
            }
            ("hmi", true) => {
                let span = value.span();
                out.hmi = de_element::<RawHmi>(&src, value, "hmi", diags).map(|raw| Item {
                    src: src.clone(),
                    span,
                    raw,
                });
            }
            ("forecast", true) => {
                let span = value.span();
                out.forecast =
                    de_element::<RawForecast>(&src, value, "forecast", diags).map(|raw| Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
            }
            ("calendar", true) => {
                let span = value.span();
                out.calendar =
                    de_element::<RawCalendar>(&src, value, "calendar", diags).map(|raw| Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
            }
            ("kpi_engine", true) => {
                let span = value.span();
                out.kpi_engine =
                    de_element::<RawKpiEngine>(&src, value, "kpi_engine", diags).map(|raw| Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
            }
            ("kpi", true) => {
                for (raw, span) in de_array::<RawKpi>(&src, value, "kpi", diags) {
                    out.kpis.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            ("alarm", true) => {
                for (raw, span) in de_array::<RawAlarm>(&src, value, "alarm", diags) {
                    out.alarms.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            ("setpoints", true) => {
                let span = value.span();
                out.setpoints =
                    de_element::<RawSetpoints>(&src, value, "setpoints", diags).map(|raw| Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
            }
            ("setpoint", true) => {
                for (raw, span) in de_array::<RawSetpoint>(&src, value, "setpoint", diags) {
                    out.setpoint.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            ("poll_groups", true) => read_poll_groups(&src, value, out, diags),
            ("include", true) => {
                let Some(files) = de_value::<Vec<S<String>>>(&src, value, "include", diags) else {
                    continue;
                };
                for f in files {
                    let path = resolve(&src.path, f.get_ref());
                    if !seen.insert(path.clone()) {
                        diags.push(
                            Diagnostic::at(
                                &src,
                                f.span(),
                                "include",
                                format!("{} is included twice", path.display()),
                            )
                            .help("remove the duplicate entry"),
                        );
                        continue;
                    }
                    match models::text::read_text(&path) {
                        Ok(text) => {
                            out.sources.push(path.clone());
                            read_toml(
                                Arc::new(SourceFile::new(path, text)),
                                false,
                                out,
                                diags,
                                seen,
                            );
                        }
                        Err(e) => diags.push(
                            Diagnostic::at(&src, f.span(), "include", e.to_string())
                                .help("paths are relative to the file that includes them"),
                        ),
                    }
                }
            }
            ("import", true) => {
                for (imp, span) in de_array::<RawImport>(&src, value, "import", diags) {
                    crate::csv_import::import(&src, span, imp, out, diags);
                }
            }
            ("serial_line", true) => {
                for (raw, span) in de_array::<RawSerialLine>(&src, value, "serial_line", diags) {
                    out.serial_lines.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            ("device", true) => {
                for (raw, span) in de_array::<RawDevice>(&src, value, "device", diags) {
                    out.devices.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            ("tag", true) => {
                for (raw, span) in de_array::<RawTag>(&src, value, "tag", diags) {
                    out.tags.push(Item {
                        src: src.clone(),
                        span,
                        raw,
                    });
                }
            }
            (_, true) => {}
        }
    }
}

pub(crate) fn resolve(base_file: &Path, rel: &str) -> PathBuf {
    let p = Path::new(rel);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    base_file
        .parent()
        .map(|d| d.join(p))
        .unwrap_or_else(|| p.to_path_buf())
}

fn read_poll_groups(
    src: &Arc<SourceFile>,
    value: toml::Spanned<DeValue<'_>>,
    out: &mut RawConfig,
    diags: &mut Diagnostics,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        diags.push(
            Diagnostic::at(
                src,
                span,
                "poll_groups",
                "expected a table of group = duration",
            )
            .help("write `[poll_groups]` followed by lines like `fast = \"250ms\"`"),
        );
        return;
    };
    for (k, v) in table {
        let key = S::new(k.span(), k.get_ref().to_string());
        let field = format!("poll_groups › {}", key.get_ref());
        if let Some(d) = de_value::<S<Dur>>(src, v, &field, diags) {
            out.poll_groups.push(Item {
                src: src.clone(),
                span: key.span(),
                raw: (key, d),
            });
        }
    }
}

fn de_error(
    src: &SourceFile,
    e: toml::de::Error,
    fallback: Range<usize>,
    field: &str,
) -> Diagnostic {
    let span = e.span().unwrap_or(fallback);
    Diagnostic::at(src, span, field, clean_message(e.message()))
}

/// serde's messages are written for programmers; keep what an integrator
/// can act on.
fn clean_message(m: &str) -> String {
    m.trim()
        .replace("invalid type: ", "wrong type: found ")
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
}

fn de_value<'de, T: Deserialize<'de>>(
    src: &SourceFile,
    value: toml::Spanned<DeValue<'de>>,
    field: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(de_error(src, e, span, field));
            None
        }
    }
}

/// Deserialize one table element, reporting unknown keys with suggestions
/// and naming the key a type error belongs to.
fn de_element<'de, T: Deserialize<'de>>(
    src: &SourceFile,
    value: toml::Spanned<DeValue<'de>>,
    section: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        diags.push(
            Diagnostic::at(src, span, section, "expected a table").help(format!(
                "write `[{section}]` (or `[[{section}]]` for a list) followed by key = value lines"
            )),
        );
        return None;
    };
    let label = element_label(section, &table);
    let known = field_names::<T>();
    let unknown: Vec<_> = table
        .keys()
        .filter(|k| !known.contains(&k.get_ref().as_ref()))
        .map(|k| (k.get_ref().to_string(), k.span()))
        .collect();
    for (name, kspan) in &unknown {
        let mut d = Diagnostic::at(
            src,
            kspan.clone(),
            format!("{label} › {name}"),
            "unknown key",
        );
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("valid keys: {}", known.join(", "))),
        };
        diags.push(d);
    }
    if !unknown.is_empty() {
        table = table
            .into_iter()
            .filter(|(k, _)| !unknown.iter().any(|(u, _)| k.get_ref() == u))
            .collect();
    }
    let entries: Vec<(String, Range<usize>)> = table
        .iter()
        .map(|(k, v)| (k.get_ref().to_string(), k.span().start..v.span().end))
        .collect();
    let whole = toml::Spanned::new(span.clone(), DeValue::Table(table));
    match T::deserialize(ValueDeserializer::from(whole)) {
        Ok(v) => Some(v),
        Err(e) => {
            let espan = e.span().unwrap_or(span.clone());
            let key = entries
                .iter()
                .find(|(_, r)| r.start <= espan.start && espan.end <= r.end)
                .map(|(k, _)| format!("{label} › {k}"))
                .unwrap_or(label);
            diags.push(de_error(src, e, span, &key));
            None
        }
    }
}

fn de_array<'de, T: Deserialize<'de>>(
    src: &SourceFile,
    value: toml::Spanned<DeValue<'de>>,
    section: &str,
    diags: &mut Diagnostics,
) -> Vec<(T, Range<usize>)> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        diags.push(
            Diagnostic::at(src, span, section, "expected a list of tables").help(format!(
                "write each entry as `[[{section}]]` followed by its keys"
            )),
        );
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let span = item.span();
            de_element::<T>(src, item, section, diags).map(|v| (v, span))
        })
        .collect()
}

fn element_label(section: &str, table: &DeTable<'_>) -> String {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == "name")
        .and_then(|(_, v)| v.get_ref().as_str().map(|s| format!("{section} {s:?}")))
        .unwrap_or_else(|| section.to_string())
}
