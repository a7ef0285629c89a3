//! A strict MPS reader (fixed and free MPS, fields separated by whitespace,
//! so names may not contain spaces).
//!
//! Sections: `NAME`, `OBJSENSE` (`MIN`/`MAX`, as a data line or on the header
//! line), `ROWS`, `COLUMNS` (with `'MARKER'` `'INTORG'`/`'INTEND'` integer
//! blocks), `RHS`, `RANGES`, `BOUNDS`, `ENDATA`. A section header starts in
//! column 1; a data line starts with whitespace; a line starting with `*` is a
//! comment. Each section appears at most once: `NAME` first if present,
//! `OBJSENSE` anywhere, `ROWS` before `COLUMNS`, then `RHS`, `RANGES` and
//! `BOUNDS` in any order; `ENDATA` is required and nothing after it is read.
//! Other sections (`OBJSENSE` aside, e.g. `QUADOBJ`, `SOS`) are errors.
//!
//! Semantics, as the MPS standard and the Netlib collection use them:
//! - The first `N` row is the objective; later `N` rows are free rows and are
//!   dropped (their entries ignored) with a warning.
//! - A RHS value on the objective row `R` is the objective constant `−R`.
//! - `RHS`/`RANGES` lines carry one or two (row, value) pairs, after a set
//!   name that may be omitted (`blend` omits it). Only one set per section.
//! - RANGES value `R` on row with RHS `b`: `L` → `[b − |R|, b]`; `G` →
//!   `[b, b + |R|]`; `E` → `[b, b + R]` if `R ≥ 0`, `[b + R, b]` if `R < 0`.
//! - Column defaults `[0, +∞)`, integer columns (markers) included. Bounds:
//!   `UP` `LO` `FX` `MI` (lower −∞) `PL` (upper +∞) `FR` `BV` (integer
//!   `[0, 1]`) `LI` `UI` (integer, lower / upper). `SC` (semi-continuous) is
//!   refused. A bound value of magnitude ≥ 1e30 (or `inf`) is infinite.
//! - `UP` (or `UI`) with a negative value on a column whose lower bound is
//!   still the default 0 makes the lower bound −∞ (the classic rule), with a
//!   warning. If the lower bound 0 was set explicitly it is kept (the bounds
//!   then cross and the problem is infeasible), also with a warning.
//!
//! Strict: every error names the 1-based line and what is wrong; the reader
//! never panics on input. Column entries must be contiguous, an entry may not
//! repeat, RHS and RANGES may not repeat for a row, a bound or RHS on an
//! unknown column or row is an error, numbers must parse as finite `f64`
//! (`inf` only as a bound value). A file without an `N` row reads as a
//! feasibility problem (objective 0).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use thiserror::Error;

use super::lp::{LpProblem, Row, Sense, Variable};

/// Bound values at least this large (in magnitude) mean infinity.
pub const MPS_INFINITY: f64 = 1e30;

/// A model read from MPS, with the reader's warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct MpsModel {
    pub problem: LpProblem,
    pub warnings: Vec<MpsWarning>,
}

/// Something legal but worth telling (a convention was applied, a row dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpsWarning {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for MpsWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Error)]
pub enum MpsError {
    #[error("line {line}: {kind}")]
    Syntax { line: usize, kind: MpsErrorKind },
    #[error("line {line}: read error: {error}")]
    Io { line: usize, error: io::Error },
    #[error("cannot open {}: {error}", path.display())]
    Open { path: PathBuf, error: io::Error },
    #[error("{}: {error}", path.display())]
    File { path: PathBuf, error: Box<MpsError> },
}

impl MpsError {
    /// The line of a syntax or read error.
    pub fn line(&self) -> Option<usize> {
        match self {
            MpsError::Syntax { line, .. } | MpsError::Io { line, .. } => Some(*line),
            MpsError::Open { .. } => None,
            MpsError::File { error, .. } => error.line(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MpsErrorKind {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("unknown section `{0}`")]
    UnknownSection(String),
    #[error("section {0} appears twice")]
    SectionTwice(&'static str),
    #[error("section {section} is misplaced: {reason}")]
    Misplaced {
        section: &'static str,
        reason: &'static str,
    },
    #[error("section header {section} takes no arguments, found `{found}`")]
    HeaderArguments {
        section: &'static str,
        found: String,
    },
    #[error("data line outside a data section")]
    DataOutsideSection,
    #[error("{section}: {found} fields, expected {expected}")]
    FieldCount {
        section: &'static str,
        found: usize,
        expected: &'static str,
    },
    #[error("unknown row type `{0}` (expected N, E, L or G)")]
    RowType(String),
    #[error("duplicate row `{0}`")]
    DuplicateRow(String),
    #[error("unknown row `{0}`")]
    UnknownRow(String),
    #[error("unknown column `{0}`")]
    UnknownColumn(String),
    #[error("column `{0}` appears again after other columns (entries must be contiguous)")]
    ColumnNotContiguous(String),
    #[error("column `{column}` has a second entry in row `{row}`")]
    DuplicateEntry { column: String, row: String },
    #[error("bad marker `{0}` (expected 'INTORG' or 'INTEND')")]
    BadMarker(String),
    #[error("marker {0} out of order")]
    MarkerOrder(&'static str),
    #[error("integer block ('INTORG') not closed by 'INTEND' at the end of COLUMNS")]
    UnclosedMarker,
    #[error("bad number `{0}`")]
    BadNumber(String),
    #[error("number `{0}` is not finite")]
    NotFinite(String),
    #[error("{section}: second set `{found}` (only one set is supported; the first was `{first}`)")]
    SecondSet {
        section: &'static str,
        first: String,
        found: String,
    },
    #[error("{section}: row `{row}` given twice")]
    Repeated { section: &'static str, row: String },
    #[error("RANGES on the objective row `{0}`")]
    RangeOnObjective(String),
    #[error("unknown bound type `{0}` (expected UP, LO, FX, MI, PL, FR, BV, LI or UI)")]
    BoundType(String),
    #[error("semi-continuous bound (SC) on `{0}`: not supported")]
    SemiContinuous(String),
    #[error("bound {kind} {value} on `{column}` is impossible")]
    BadBound {
        kind: String,
        column: String,
        value: String,
    },
    #[error("OBJSENSE given twice")]
    SenseTwice,
    #[error("bad OBJSENSE `{0}` (expected MIN or MAX)")]
    ObjSense(String),
    #[error("unexpected end of file: missing ENDATA")]
    MissingEndata,
}

/// Reads an MPS file; a gzip file (by its magic bytes, whatever its name) is
/// decompressed on the fly.
pub fn read_mps_file(path: &Path) -> Result<MpsModel, MpsError> {
    let file = File::open(path).map_err(|error| MpsError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    let mut reader = BufReader::new(file);
    let in_file = |error| MpsError::File {
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    let gzip = reader
        .fill_buf()
        .map_err(|error| in_file(MpsError::Io { line: 1, error }))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        read_mps(BufReader::new(MultiGzDecoder::new(reader))).map_err(in_file)
    } else {
        read_mps(reader).map_err(in_file)
    }
}

/// Reads an MPS model from any buffered reader.
pub fn read_mps<R: BufRead>(mut input: R) -> Result<MpsModel, MpsError> {
    let mut r = Reader::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        r.line += 1;
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|error| MpsError::Io {
                line: r.line,
                error,
            })?;
        if n == 0 {
            return Err(r.err(MpsErrorKind::MissingEndata));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| r.err(MpsErrorKind::NotUtf8))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.starts_with('*') || text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if text.starts_with(char::is_whitespace) {
            r.data(&fields)?;
        } else if r.header(&fields)? {
            return r.finish();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Name,
    ObjSense,
    Rows,
    Columns,
    Rhs,
    Ranges,
    Bounds,
}

impl Section {
    fn label(self) -> &'static str {
        match self {
            Section::None => "(none)",
            Section::Name => "NAME",
            Section::ObjSense => "OBJSENSE",
            Section::Rows => "ROWS",
            Section::Columns => "COLUMNS",
            Section::Rhs => "RHS",
            Section::Ranges => "RANGES",
            Section::Bounds => "BOUNDS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowType {
    E,
    L,
    G,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowRef {
    Objective,
    /// A later N row: dropped.
    Free,
    Constraint(usize),
}

#[derive(Debug, Default)]
struct Reader {
    line: usize,
    section: Option<Section>,
    seen: Vec<Section>,
    /// OBJSENSE given (on the header or a data line).
    sense_given: bool,
    problem: LpProblem,
    warnings: Vec<MpsWarning>,
    rows: HashMap<String, RowRef>,
    row_types: Vec<RowType>,
    rhs: Vec<Option<f64>>,
    ranges: Vec<Option<f64>>,
    objective_rhs: Option<f64>,
    columns: HashMap<String, usize>,
    /// Per constraint row: the last column with an entry in it (+1; 0 none).
    last_column_in_row: Vec<usize>,
    objective_set: Vec<bool>,
    lower_explicit: Vec<bool>,
    integer_block: bool,
    rhs_set: Option<String>,
    range_set: Option<String>,
    bound_set: Option<String>,
}

type Res<T = ()> = Result<T, MpsError>;

impl Reader {
    fn err(&self, kind: MpsErrorKind) -> MpsError {
        MpsError::Syntax {
            line: self.line,
            kind,
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!(line = self.line, "MPS: {message}");
        self.warnings.push(MpsWarning {
            line: self.line,
            message,
        });
    }

    /// A section header; `true` at ENDATA.
    fn header(&mut self, fields: &[&str]) -> Res<bool> {
        let Some((&name, args)) = fields.split_first() else {
            return Ok(false);
        };
        let section = match name {
            "NAME" => Section::Name,
            "OBJSENSE" => Section::ObjSense,
            "ROWS" => Section::Rows,
            "COLUMNS" => Section::Columns,
            "RHS" => Section::Rhs,
            "RANGES" => Section::Ranges,
            "BOUNDS" => Section::Bounds,
            "ENDATA" => {
                self.close_section()?;
                return Ok(true);
            }
            other => return Err(self.err(MpsErrorKind::UnknownSection(other.to_string()))),
        };
        self.close_section()?;
        let label = section.label();
        if self.seen.contains(&section) {
            return Err(self.err(MpsErrorKind::SectionTwice(label)));
        }
        let misplaced = |reason| MpsErrorKind::Misplaced {
            section: label,
            reason,
        };
        match section {
            Section::Name if !self.seen.is_empty() => {
                return Err(self.err(misplaced("it must come first")));
            }
            Section::Columns if !self.seen.contains(&Section::Rows) => {
                return Err(self.err(misplaced("it must come after ROWS")));
            }
            Section::Rhs | Section::Ranges | Section::Bounds
                if !self.seen.contains(&Section::Columns) =>
            {
                return Err(self.err(misplaced("it must come after COLUMNS")));
            }
            Section::Rows if self.seen.contains(&Section::Columns) => {
                return Err(self.err(misplaced("it must come before COLUMNS")));
            }
            _ => {}
        }
        match (section, args) {
            (Section::Name, args) => {
                self.problem.name = args.first().map(|s| s.to_string()).unwrap_or_default()
            }
            (Section::ObjSense, [sense]) => self.sense(sense)?,
            (_, []) => {}
            (_, args) => {
                return Err(self.err(MpsErrorKind::HeaderArguments {
                    section: label,
                    found: args.join(" "),
                }));
            }
        }
        self.seen.push(section);
        self.section = Some(section);
        Ok(false)
    }

    fn close_section(&mut self) -> Res {
        if self.section == Some(Section::Columns) && self.integer_block {
            return Err(self.err(MpsErrorKind::UnclosedMarker));
        }
        Ok(())
    }

    fn sense(&mut self, word: &str) -> Res {
        if self.sense_given {
            return Err(self.err(MpsErrorKind::SenseTwice));
        }
        self.problem.sense = match word.to_ascii_uppercase().as_str() {
            "MIN" | "MINIMIZE" | "MINIMISE" => Sense::Minimize,
            "MAX" | "MAXIMIZE" | "MAXIMISE" => Sense::Maximize,
            _ => return Err(self.err(MpsErrorKind::ObjSense(word.to_string()))),
        };
        self.sense_given = true;
        Ok(())
    }

    fn data(&mut self, f: &[&str]) -> Res {
        match self.section.unwrap_or(Section::None) {
            Section::None | Section::Name => Err(self.err(MpsErrorKind::DataOutsideSection)),
            Section::ObjSense => match f {
                [word] => self.sense(word),
                _ => Err(self.count("OBJSENSE", f.len(), "1")),
            },
            Section::Rows => self.row(f),
            Section::Columns => self.column(f),
            Section::Rhs => self.rhs(f, false),
            Section::Ranges => self.rhs(f, true),
            Section::Bounds => self.bound(f),
        }
    }

    fn count(&self, section: &'static str, found: usize, expected: &'static str) -> MpsError {
        self.err(MpsErrorKind::FieldCount {
            section,
            found,
            expected,
        })
    }

    fn row(&mut self, f: &[&str]) -> Res {
        let [kind, name] = f else {
            return Err(self.count("ROWS", f.len(), "2 (type, name)"));
        };
        if self.rows.contains_key(*name) {
            return Err(self.err(MpsErrorKind::DuplicateRow(name.to_string())));
        }
        let row_type = match kind.to_ascii_uppercase().as_str() {
            "N" => {
                let has_objective = self.rows.values().any(|r| *r == RowRef::Objective);
                if has_objective {
                    self.warn(format!(
                        "N row `{name}` after the objective: a free row, dropped"
                    ));
                    self.rows.insert(name.to_string(), RowRef::Free);
                } else {
                    self.problem.objective_name = name.to_string();
                    self.rows.insert(name.to_string(), RowRef::Objective);
                }
                return Ok(());
            }
            "E" => RowType::E,
            "L" => RowType::L,
            "G" => RowType::G,
            _ => return Err(self.err(MpsErrorKind::RowType(kind.to_string()))),
        };
        self.rows.insert(
            name.to_string(),
            RowRef::Constraint(self.problem.rows.len()),
        );
        self.problem.rows.push(Row {
            name: name.to_string(),
            coefficients: Vec::new(),
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
        });
        self.row_types.push(row_type);
        self.rhs.push(None);
        self.ranges.push(None);
        self.last_column_in_row.push(0);
        Ok(())
    }

    fn row_ref(&self, name: &str) -> Res<RowRef> {
        self.rows
            .get(name)
            .copied()
            .ok_or_else(|| self.err(MpsErrorKind::UnknownRow(name.to_string())))
    }

    fn number(&self, s: &str) -> Res<f64> {
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(v) if v.is_infinite() => Err(self.err(MpsErrorKind::NotFinite(s.to_string()))),
            _ => Err(self.err(MpsErrorKind::BadNumber(s.to_string()))),
        }
    }

    fn column(&mut self, f: &[&str]) -> Res {
        if let [_, "'MARKER'", marker] = f {
            return match (*marker, self.integer_block) {
                ("'INTORG'", false) => {
                    self.integer_block = true;
                    Ok(())
                }
                ("'INTEND'", true) => {
                    self.integer_block = false;
                    Ok(())
                }
                ("'INTORG'", true) => Err(self.err(MpsErrorKind::MarkerOrder(
                    "'INTORG' inside an integer block",
                ))),
                ("'INTEND'", false) => {
                    Err(self.err(MpsErrorKind::MarkerOrder("'INTEND' without 'INTORG'")))
                }
                _ => Err(self.err(MpsErrorKind::BadMarker(marker.to_string()))),
            };
        }
        let (name, pairs) = match f {
            [name, rest @ ..] if rest.len() == 2 || rest.len() == 4 => (*name, rest),
            _ => {
                return Err(self.count(
                    "COLUMNS",
                    f.len(),
                    "3 or 5 (column, row, value[, row, value])",
                ));
            }
        };
        let j = match self.columns.get(name) {
            Some(&j) if j + 1 == self.problem.variables.len() => j,
            Some(_) => return Err(self.err(MpsErrorKind::ColumnNotContiguous(name.to_string()))),
            None => {
                let j = self.problem.variables.len();
                self.columns.insert(name.to_string(), j);
                self.problem.variables.push(Variable {
                    name: name.to_string(),
                    lower: 0.0,
                    upper: f64::INFINITY,
                    cost: 0.0,
                    integer: self.integer_block,
                });
                self.objective_set.push(false);
                self.lower_explicit.push(false);
                j
            }
        };
        for pair in pairs.chunks(2) {
            let [row, value] = pair else { continue };
            let value = self.number(value)?;
            let duplicate = MpsErrorKind::DuplicateEntry {
                column: name.to_string(),
                row: row.to_string(),
            };
            match self.row_ref(row)? {
                RowRef::Objective => {
                    if self.objective_set[j] {
                        return Err(self.err(duplicate));
                    }
                    self.objective_set[j] = true;
                    self.problem.variables[j].cost = value;
                }
                RowRef::Free => {}
                RowRef::Constraint(i) => {
                    if self.last_column_in_row[i] == j + 1 {
                        return Err(self.err(duplicate));
                    }
                    self.last_column_in_row[i] = j + 1;
                    self.problem.rows[i].coefficients.push((j, value));
                }
            }
        }
        Ok(())
    }

    /// RHS (`range == false`) or RANGES data: `[set] row value [row value]`.
    fn rhs(&mut self, f: &[&str], range: bool) -> Res {
        let section = if range { "RANGES" } else { "RHS" };
        let (set, pairs) = match f.len() {
            2 | 4 => ("", f),
            3 | 5 => (f[0], &f[1..]),
            n => return Err(self.count(section, n, "2 to 5 ([set], row, value[, row, value])")),
        };
        let slot = if range {
            &mut self.range_set
        } else {
            &mut self.rhs_set
        };
        let first = slot.get_or_insert_with(|| set.to_string()).clone();
        if first != set {
            return Err(self.err(MpsErrorKind::SecondSet {
                section,
                first,
                found: set.to_string(),
            }));
        }
        for pair in pairs.chunks(2) {
            let [row, value] = pair else { continue };
            let value = self.number(value)?;
            let repeated = MpsErrorKind::Repeated {
                section,
                row: row.to_string(),
            };
            match (self.row_ref(row)?, range) {
                (RowRef::Objective, false) => {
                    if self.objective_rhs.is_some() {
                        return Err(self.err(repeated));
                    }
                    self.objective_rhs = Some(value);
                }
                (RowRef::Objective, true) => {
                    return Err(self.err(MpsErrorKind::RangeOnObjective(row.to_string())));
                }
                (RowRef::Free, _) => {
                    self.warn(format!("{section} on the dropped free row `{row}` ignored"))
                }
                (RowRef::Constraint(i), _) => {
                    let line = self.line;
                    let target = if range {
                        &mut self.ranges[i]
                    } else {
                        &mut self.rhs[i]
                    };
                    if target.is_some() {
                        return Err(MpsError::Syntax {
                            line,
                            kind: repeated,
                        });
                    }
                    *target = Some(value);
                }
            }
        }
        Ok(())
    }

    fn bound(&mut self, f: &[&str]) -> Res {
        let Some(kind) = f.first().map(|k| k.to_ascii_uppercase()) else {
            return Ok(());
        };
        if kind == "SC" {
            let column = f
                .get(if f.len() >= 4 { 2 } else { 1 })
                .copied()
                .unwrap_or("?");
            return Err(self.err(MpsErrorKind::SemiContinuous(column.to_string())));
        }
        let needs_value = match kind.as_str() {
            "UP" | "LO" | "FX" | "LI" | "UI" => true,
            "MI" | "PL" | "FR" | "BV" => false,
            _ => return Err(self.err(MpsErrorKind::BoundType(f[0].to_string()))),
        };
        let (set, column, value) = match (needs_value, f) {
            (true, [_, set, column, value]) => (*set, *column, Some(*value)),
            (true, [_, column, value]) => ("", *column, Some(*value)),
            (false, [_, column]) => ("", *column, None),
            // `MI SET X` or `BV X 1`: a set name if the last field is a column.
            (false, [_, a, b]) if self.columns.contains_key(*b) => (*a, *b, None),
            (false, [_, a, b]) => ("", *a, Some(*b)),
            (false, [_, set, column, value]) => (*set, *column, Some(*value)),
            _ => {
                let expected = if needs_value {
                    "3 or 4 (type, [set], column, value)"
                } else {
                    "2 to 4 (type, [set], column, [value])"
                };
                return Err(self.count("BOUNDS", f.len(), expected));
            }
        };
        let first = self
            .bound_set
            .get_or_insert_with(|| set.to_string())
            .clone();
        if first != set {
            return Err(self.err(MpsErrorKind::SecondSet {
                section: "BOUNDS",
                first,
                found: set.to_string(),
            }));
        }
        let j = *self
            .columns
            .get(column)
            .ok_or_else(|| self.err(MpsErrorKind::UnknownColumn(column.to_string())))?;
        let value = match value {
            None => f64::NAN,
            Some(s) => match s.parse::<f64>() {
                Ok(v) if v.is_nan() => return Err(self.err(MpsErrorKind::BadNumber(s.to_string()))),
                Ok(v) if v.abs() >= MPS_INFINITY => v.signum() * f64::INFINITY,
                Ok(v) => v,
                Err(_) => return Err(self.err(MpsErrorKind::BadNumber(s.to_string()))),
            },
        };
        let impossible = match kind.as_str() {
            "UP" | "UI" => value == f64::NEG_INFINITY,
            "LO" | "LI" => value == f64::INFINITY,
            "FX" => value.is_infinite(),
            _ => false,
        };
        if impossible {
            return Err(self.err(MpsErrorKind::BadBound {
                kind,
                column: column.to_string(),
                value: value.to_string(),
            }));
        }
        let explicit = self.lower_explicit[j];
        let mut warning = None;
        let v = &mut self.problem.variables[j];
        match kind.as_str() {
            "UP" | "UI" => {
                v.upper = value;
                if value < 0.0 && v.lower == 0.0 {
                    if explicit {
                        warning = Some(format!(
                            "{kind} {value} on `{column}` below its explicit lower bound 0: bounds cross, the problem is infeasible"
                        ));
                    } else {
                        v.lower = f64::NEG_INFINITY;
                        warning = Some(format!(
                            "{kind} {value} on `{column}` with the default lower bound 0: lower bound set to -inf (MPS convention)"
                        ));
                    }
                }
                v.integer |= kind == "UI";
            }
            "LO" | "LI" => {
                v.lower = value;
                v.integer |= kind == "LI";
            }
            "FX" => {
                v.lower = value;
                v.upper = value;
            }
            "MI" => v.lower = f64::NEG_INFINITY,
            "PL" => v.upper = f64::INFINITY,
            "FR" => {
                v.lower = f64::NEG_INFINITY;
                v.upper = f64::INFINITY;
            }
            _ => {
                // BV
                v.lower = 0.0;
                v.upper = 1.0;
                v.integer = true;
            }
        }
        if !matches!(kind.as_str(), "UP" | "UI" | "PL") {
            self.lower_explicit[j] = true;
        }
        if let Some(w) = warning {
            self.warn(w);
        }
        Ok(())
    }

    fn finish(mut self) -> Res<MpsModel> {
        for (i, row) in self.problem.rows.iter_mut().enumerate() {
            let b = self.rhs[i].unwrap_or(0.0);
            let (lower, upper) = match (self.row_types[i], self.ranges[i]) {
                (RowType::E, None) => (b, b),
                (RowType::L, None) => (f64::NEG_INFINITY, b),
                (RowType::G, None) => (b, f64::INFINITY),
                (RowType::L, Some(r)) => (b - r.abs(), b),
                (RowType::G, Some(r)) => (b, b + r.abs()),
                (RowType::E, Some(r)) if r >= 0.0 => (b, b + r),
                (RowType::E, Some(r)) => (b + r, b),
            };
            row.lower = lower;
            row.upper = upper;
        }
        if let Some(r) = self.objective_rhs {
            self.problem.objective_constant = 0.0 - r;
        }
        let crossed: Vec<String> = self
            .problem
            .variables
            .iter()
            .filter(|v| v.lower > v.upper)
            .map(|v| v.name.clone())
            .collect();
        if !crossed.is_empty() {
            self.warn(format!(
                "bounds cross (lower > upper) on {}: the problem is infeasible",
                crossed.join(", ")
            ));
        }
        Ok(MpsModel {
            problem: self.problem,
            warnings: self.warnings,
        })
    }
}

#[cfg(test)]
mod tests;
