//! A profile proposed from a file's header and first rows, for the user to
//! confirm or correct: delimiter, layout, the time column and its format,
//! tags with units written in the header (`FIC101 [m3/h]`).

use std::io::Read as _;
use std::path::Path;

use serde::Serialize;
use utoipa::ToSchema;

use super::mapper::unit_suffix;
use super::parse::{Cell, TimeFormat, TimeParser};
use super::source::{self, Format, ReadOptions, RowView, Sink};
use super::{ImportError, Layout, Profile, TagMap};

/// Rows read for a proposal.
const PREVIEW_ROWS: usize = 20;

/// A proposed profile and what it was made from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Proposal {
    /// `csv` or `xlsx`.
    pub format: String,
    pub profile: Profile,
    pub columns: Vec<String>,
    /// The first rows as text.
    pub preview: Vec<Vec<String>>,
}

#[derive(Default)]
struct Peek {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Per column: the cells as read (text, or numbers/serials).
    raw: Vec<Vec<RawCell>>,
}

#[derive(Debug, Clone)]
enum RawCell {
    Text(String),
    Num(f64),
    Serial(f64),
    Other,
}

impl Sink for Peek {
    fn header(&mut self, columns: &[String], _no: u64) -> Result<(), ImportError> {
        self.columns = columns.to_vec();
        self.raw = vec![Vec::new(); columns.len()];
        Ok(())
    }

    fn row(&mut self, r: &RowView<'_>) -> Result<(), ImportError> {
        self.rows.push(
            r.cells
                .iter()
                .map(|c| c.shown().unwrap_or_default())
                .collect(),
        );
        for (i, c) in r.cells.iter().enumerate().take(self.raw.len()) {
            self.raw[i].push(match c {
                Cell::Text(s) => RawCell::Text((*s).to_owned()),
                Cell::Num(v) => RawCell::Num(*v),
                Cell::Serial(v) => RawCell::Serial(*v),
                _ => RawCell::Other,
            });
        }
        if self.rows.len() >= PREVIEW_ROWS {
            return Err(ImportError::Stop);
        }
        Ok(())
    }

    fn progress(&mut self, _done: u64, _total: u64) {}
}

const PATTERNS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
];

fn delimiter_of(path: &Path) -> u8 {
    let mut head = vec![0u8; 8192];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let line = head[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
    [b',', b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',')
}

/// The time format all of `cells` parse with, if any.
fn time_format_of(cells: &[RawCell]) -> Option<String> {
    let sample: Vec<&RawCell> = cells
        .iter()
        .filter(|c| !matches!(c, RawCell::Other))
        .collect();
    if sample.is_empty() {
        return None;
    }
    // A format fits when 80 % of the cells parse: one malformed row among
    // the first twenty must not derail the proposal.
    let most = |ok: usize| ok * 5 >= sample.len() * 4;
    if most(
        sample
            .iter()
            .filter(|c| matches!(c, RawCell::Serial(_)))
            .count(),
    ) {
        return Some("excel".into());
    }
    let fits = |fmt: &str| {
        let Ok(p) = TimeParser::new(TimeFormat::parse(fmt), "UTC", true, i64::MIN, i64::MAX) else {
            return false;
        };
        most(
            sample
                .iter()
                .filter(|c| match c {
                    RawCell::Text(s) => p.time(Cell::Text(s)).is_ok(),
                    RawCell::Serial(v) => p.time(Cell::Serial(*v)).is_ok(),
                    RawCell::Num(_) | RawCell::Other => false,
                })
                .count(),
        )
    };
    if fits("rfc3339") {
        return Some("rfc3339".into());
    }
    if let Some(p) = PATTERNS.iter().find(|p| fits(p)) {
        return Some((*p).to_owned());
    }
    let nums: Vec<f64> = sample
        .iter()
        .filter_map(|c| match c {
            RawCell::Num(v) => Some(*v),
            RawCell::Text(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect();
    if nums.len() == sample.len() {
        let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
        return Some(
            if lo > 1e11 {
                "unix_ms"
            } else if lo > 1e8 {
                "unix_s"
            } else {
                "excel"
            }
            .into(),
        );
    }
    None
}

fn named(columns: &[String], names: &[&str]) -> Option<usize> {
    columns.iter().position(|c| {
        let c = c.to_ascii_lowercase();
        names.iter().any(|n| c == *n)
    })
}

/// Propose a profile for `path` (site and node as given; the user checks
/// the rest).
pub fn propose(path: &Path, site: &str, node: &str) -> Result<Proposal, ImportError> {
    let format = Format::sniff(path)?;
    let delimiter = match format {
        Format::Csv => delimiter_of(path),
        Format::Xlsx => b',',
    };
    let o = ReadOptions {
        delimiter,
        skip_rows: 0,
        sheet: None,
    };
    let mut peek = Peek::default();
    let r = match format {
        Format::Csv => source::read_csv(path, &o, &mut peek),
        Format::Xlsx => source::read_xlsx(path, &o, &mut peek),
    };
    match r {
        Ok(()) | Err(ImportError::Stop) => {}
        Err(e) => return Err(e),
    }
    let cols = &peek.columns;
    let time = named(
        cols,
        &[
            "time",
            "timestamp",
            "date",
            "datetime",
            "ts",
            "zeit",
            "zeitstempel",
            "date/time",
        ],
    )
    .or_else(|| (0..cols.len()).find(|i| time_format_of(&peek.raw[*i]).is_some()))
    .unwrap_or(0);
    let time_format = peek
        .raw
        .get(time)
        .and_then(|c| time_format_of(c))
        .unwrap_or_else(|| "rfc3339".into());
    let tag = named(
        cols,
        &[
            "tag", "tagname", "tag_name", "name", "point", "signal", "item",
        ],
    );
    let value = named(cols, &["value", "val", "wert", "pv"]);
    let quality = named(cols, &["quality", "status", "q", "qualität"]);
    let (layout, tags) = match (tag, value) {
        (Some(_), Some(_)) => (Layout::Long, Vec::new()),
        _ => (
            Layout::Wide,
            cols.iter()
                .enumerate()
                .filter(|(i, c)| *i != time && !c.is_empty())
                .map(|(_, c)| {
                    let (name, unit) = unit_suffix(c);
                    TagMap {
                        column: c.clone(),
                        tag: Some(name.to_owned()),
                        unit: unit.map(str::to_owned),
                        min: None,
                        max: None,
                    }
                })
                .collect(),
        ),
    };
    let at = |i: Option<usize>| i.and_then(|i| cols.get(i).cloned());
    let profile = Profile {
        layout,
        site: site.to_owned(),
        node: node.to_owned(),
        width_ms: super::default_width(),
        time_column: cols.get(time).cloned().unwrap_or_default(),
        time_format,
        time_zone: "UTC".into(),
        any_offset: false,
        tag_column: if layout == Layout::Long {
            at(tag)
        } else {
            None
        },
        value_column: if layout == Layout::Long {
            at(value)
        } else {
            None
        },
        quality_column: if layout == Layout::Long {
            at(quality)
        } else {
            None
        },
        good_quality: Vec::new(),
        tags,
        only_listed_tags: false,
        delimiter: (format == Format::Csv).then(|| (delimiter as char).to_string()),
        decimal_comma: false,
        skip_rows: 0,
        sheet: None,
        plausible_from: None,
        plausible_to: None,
    };
    Ok(Proposal {
        format: match format {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
        .into(),
        profile,
        columns: peek.columns,
        preview: peek.rows,
    })
}
