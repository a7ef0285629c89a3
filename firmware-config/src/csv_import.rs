//! CSV register maps (`[[import]]`).
//!
//! Integrators keep register maps in spreadsheets; exporting one as CSV and
//! pointing `[[import]] file = …` at it is much less error-prone than
//! retyping hundreds of tags. Rows become ordinary tags and go through the
//! same validation, with errors located at the CSV line and column.
//!
//! Columns (header row required, any order, case-insensitive; only `name`,
//! `area`, `address` and `type` are mandatory):
//! `name, device, area, address, type, order, bit, length, scale, offset,
//! unit, deadband, poll_group, writable, description`.

use std::ops::Range;
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::load::{Item, RawConfig, resolve};
use crate::raw::{RawImport, RawTag, S};

pub const COLUMNS: &[&str] = &[
    "name",
    "device",
    "area",
    "address",
    "type",
    "order",
    "bit",
    "length",
    "scale",
    "offset",
    "unit",
    "deadband",
    "poll_group",
    "writable",
    "description",
    "node",
];
/// Columns a Modbus register map needs; an OPC UA tag list (`node` column,
/// as `apos-edge opcua browse --csv` writes) needs only `name` and `node`.
const REQUIRED: &[&str] = &["name", "area", "address", "type"];
const REQUIRED_OPCUA: &[&str] = &["name", "node"];

pub(crate) fn import(
    parent: &Arc<SourceFile>,
    span: Range<usize>,
    imp: RawImport,
    out: &mut RawConfig,
    diags: &mut Diagnostics,
) {
    let Some(file) = imp.file else {
        diags.push(
            Diagnostic::at(parent, span, "import › file", "missing key `file`")
                .help("add `file = \"registers.csv\"` (relative to this file)"),
        );
        return;
    };
    let path = resolve(&parent.path, file.get_ref());
    let text = match models::text::read_text(&path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::at(parent, file.span(), "import › file", e.to_string())
                    .help("paths are relative to the file that imports them"),
            );
            return;
        }
    };
    out.sources.push(path.clone());
    let src = Arc::new(SourceFile::new(path, text));
    parse_rows(&src, imp.device.as_ref(), out, diags);
}

fn parse_rows(
    src: &Arc<SourceFile>,
    default_device: Option<&S<String>>,
    out: &mut RawConfig,
    diags: &mut Diagnostics,
) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(src.text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            diags.push(Diagnostic::at(
                src,
                0..0,
                "header",
                format!("cannot read the CSV header: {e}"),
            ));
            return;
        }
    };
    let mut columns: Vec<Option<&'static str>> = Vec::new();
    // The header is the first row that is not a comment: errors about it
    // point at it, not at a comment line above it.
    // (The csv crate gives the header record no position.)
    let (header_no, header_start) = header_position(&src.text);
    let header_line = src.line_text(header_no).to_string();
    let header_span = header_start..header_start + header_line.len();
    let mut cursor = 0usize;
    for h in headers.iter() {
        let span = find_span(&header_line, header_start, h, &mut cursor);
        let lower = h.to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == lower) {
            Some(c) => columns.push(Some(c)),
            None => {
                columns.push(None);
                if diags.is_full() {
                    diags.count_more();
                    continue;
                }
                let mut d = Diagnostic::at(src, span, format!("column {h:?}"), "unknown column");
                d = match did_you_mean(&lower, COLUMNS.iter().copied()) {
                    Some(s) => d.help(format!(
                        "did you mean `{s}`? Valid columns: {}",
                        COLUMNS.join(", ")
                    )),
                    None => d.help(format!("valid columns: {}", COLUMNS.join(", "))),
                };
                diags.push(d);
            }
        }
    }
    let required = if columns.contains(&Some("node")) {
        REQUIRED_OPCUA
    } else {
        REQUIRED
    };
    for req in required {
        if !columns.contains(&Some(*req)) {
            diags.push(
                Diagnostic::at(
                    src,
                    header_span.clone(),
                    "header",
                    format!("required column `{req}` is missing"),
                )
                .help(format!(
                    "the header row must include: {} (or, for OPC UA tags: {})",
                    REQUIRED.join(", "),
                    REQUIRED_OPCUA.join(", ")
                )),
            );
        }
    }
    if !columns.contains(&Some("device")) && default_device.is_none() {
        diags.push(
            Diagnostic::at(
                src,
                header_span,
                "header",
                "no `device` column and no default device",
            )
            .help("add a `device` column, or `device = \"…\"` to the [[import]] entry"),
        );
        return;
    }
    for record in rdr.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let off = e.position().map(|p| p.byte() as usize).unwrap_or(0);
                diags.push(Diagnostic::at(
                    src,
                    off..off,
                    "row",
                    format!("malformed CSV row: {e}"),
                ));
                continue;
            }
        };
        let Some(pos) = record.position() else {
            continue;
        };
        let line_start = pos.byte() as usize;
        let line_no = pos.line() as usize;
        let line_text = src.line_text(line_no).to_string();
        if record.iter().all(str::is_empty) {
            continue;
        }
        let mut tag = RawTag::default();
        let mut cursor = 0usize;
        let errors_before = diags.len();
        let row_label = columns
            .iter()
            .position(|c| *c == Some("name"))
            .and_then(|i| record.get(i))
            .filter(|n| !n.is_empty())
            .map(|n| format!("tag {n:?}"))
            .unwrap_or_else(|| format!("row {line_no}"));
        for (i, value) in record.iter().enumerate() {
            let rel = find_span(&line_text, 0, value, &mut cursor);
            let span = (line_start + rel.start)..(line_start + rel.end);
            if value.is_empty() {
                continue;
            }
            let Some(Some(col)) = columns.get(i) else {
                continue;
            };
            let field = || format!("{row_label} › {col}");
            let s = |v: &str| Some(S::new(span.clone(), v.to_string()));
            let int = |diags: &mut Diagnostics| match value.parse::<i64>() {
                Ok(n) => Some(S::new(span.clone(), n)),
                Err(_) => {
                    diags.push(
                        Diagnostic::at(
                            src,
                            span.clone(),
                            field(),
                            format!("{value:?} is not a whole number"),
                        )
                        .help("write a whole decimal number, e.g. 100"),
                    );
                    None
                }
            };
            let float = |diags: &mut Diagnostics| match value.parse::<f64>() {
                Ok(n) => Some(S::new(span.clone(), n)),
                Err(_) => {
                    diags.push(
                        Diagnostic::at(
                            src,
                            span.clone(),
                            field(),
                            format!("{value:?} is not a number"),
                        )
                        .help("use a decimal number with a dot, e.g. 0.1"),
                    );
                    None
                }
            };
            match *col {
                "name" => tag.name = s(value),
                "device" => tag.device = s(value),
                "area" => tag.area = s(value),
                "type" => tag.data_type = s(value),
                "order" => tag.order = s(value),
                "unit" => tag.unit = s(value),
                "poll_group" => tag.poll_group = s(value),
                "description" => tag.description = s(value),
                "node" => tag.node = s(value),
                "address" => tag.address = int(diags),
                "bit" => tag.bit = int(diags),
                "length" => tag.length = int(diags),
                "scale" => tag.scale = float(diags),
                "offset" => tag.offset = float(diags),
                "deadband" => tag.deadband = float(diags),
                "writable" => match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" | "rw" => tag.writable = Some(S::new(span.clone(), true)),
                    "false" | "no" | "0" | "ro" => tag.writable = Some(S::new(span.clone(), false)),
                    _ => diags.push(
                        Diagnostic::at(
                            src,
                            span.clone(),
                            field(),
                            format!("{value:?} is not a yes/no value"),
                        )
                        .help("write true or false"),
                    ),
                },
                _ => {}
            }
        }
        if diags.len() > errors_before {
            // The row's own errors are reported; validating the rest of it
            // would only add "missing key" noise.
            continue;
        }
        if tag.device.is_none() {
            tag.device = default_device.cloned();
        }
        let span = line_start..(line_start + line_text.len());
        out.tags.push(Item {
            src: src.clone(),
            span,
            raw: tag,
        });
    }
}

/// Line number (1-based) and byte offset of the header: the first line
/// that is neither blank nor a `#` comment, as the reader sees it.
fn header_position(text: &str) -> (usize, usize) {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\r', '\n']);
        if !body.trim().is_empty() && !body.starts_with('#') {
            return (i + 1, offset);
        }
        offset += line.len();
    }
    (1, 0)
}

/// Byte range of `needle` in `line`, searching from `*cursor` so that equal
/// values in one row map to their own columns.
fn find_span(line: &str, base: usize, needle: &str, cursor: &mut usize) -> Range<usize> {
    let from = (*cursor).min(line.len());
    match line.get(from..).and_then(|rest| rest.find(needle)) {
        Some(i) if !needle.is_empty() => {
            let start = from + i;
            *cursor = start + needle.len();
            (base + start)..(base + start + needle.len())
        }
        _ => {
            // Empty cell: point at the next separator.
            let next = line
                .get(from..)
                .and_then(|r| r.find(','))
                .map(|i| from + i)
                .unwrap_or(line.len());
            *cursor = next + 1;
            (base + next)..(base + next)
        }
    }
}
