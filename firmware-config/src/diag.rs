//! Located, actionable configuration errors.
//!
//! Integrators read these on a gateway console, often over a slow SSH link,
//! so every problem names the file, line and column, the field, what is
//! wrong and what to do, and all problems are reported in one go.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A loaded source file with a line index for offset → line/column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        // Lines end in LF, CRLF or a lone CR (old Mac-style files, which
        // some spreadsheet exports still write).
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        line_starts.extend(bytes.iter().enumerate().filter_map(|(i, &b)| {
            let lone_cr = b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
            (b == b'\n' || lone_cr).then_some(i + 1)
        }));
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }

    /// Text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }
}

/// Longest source excerpt shown under an error, in characters: a CSV row
/// can be megabytes long, and thousands of errors each copying it took a
/// gigabyte.
pub const SNIPPET_CHARS: usize = 120;

/// Problems kept (and shown) at most; the rest are counted.
pub const MAX_REPORTED: usize = 100;

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The offending source line (an excerpt of at most [`SNIPPET_CHARS`]
    /// around the column), where the caret goes in it (0-based) and how
    /// many characters to underline. Empty when not available.
    pub snippet: String,
    pub caret: usize,
    pub underline: usize,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    /// The field, as a path a human can find: `tag "tic101.pv" › address`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(
        src: &SourceFile,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = src.locate(span.start);
        let full = src.line_text(line);
        // Underline only what sits on the first line of the span.
        let span_chars = src
            .text
            .get(span.clone())
            .map(|s| {
                s.lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(SNIPPET_CHARS)
                    .count()
            })
            .unwrap_or(1);
        // The whole line if it is short, else an excerpt around the
        // column: a little before, more after.
        let long = full.chars().nth(SNIPPET_CHARS).is_some();
        let first = if long {
            (column - 1).saturating_sub(SNIPPET_CHARS / 3)
        } else {
            0
        };
        let mut snippet: String = full.chars().skip(first).take(SNIPPET_CHARS).collect();
        let mut caret = column - 1 - first;
        if first > 0 {
            snippet.insert(0, '…');
            caret += 1;
        }
        let shown = snippet.chars().count();
        if full.chars().count() > first + SNIPPET_CHARS {
            snippet.push('…');
        }
        let line_rest = shown.saturating_sub(caret);
        Self {
            location: Location {
                file: src.path.clone(),
                line,
                column,
                snippet,
                caret,
                underline: span_chars.clamp(1, line_rest.max(1)),
            },
            field: field.into(),
            message: message.into(),
            help: None,
        }
    }

    /// A problem located at a whole file (e.g. it cannot be read).
    pub fn in_file(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: Location {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                snippet: String::new(),
                caret: 0,
                underline: 0,
            },
            field: field.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.location;
        writeln!(f, "error: {}: {}", self.field, self.message)?;
        let gutter = l.line.to_string().len();
        writeln!(
            f,
            "{:gutter$}--> {}:{}:{}",
            "",
            l.file.display(),
            l.line,
            l.column
        )?;
        if !l.snippet.is_empty() {
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", l.line, l.snippet)?;
            writeln!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(l.caret),
                "^".repeat(l.underline)
            )?;
        }
        if let Some(h) = &self.help {
            let gutter = if l.snippet.is_empty() {
                2
            } else {
                l.line.to_string().len() + 1
            };
            writeln!(f, "{:gutter$}= help: {h}", "")?;
        }
        Ok(())
    }
}

/// Every problem found in one load, in file order: the first
/// [`MAX_REPORTED`] in full, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>, usize);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        if self.0.len() < MAX_REPORTED {
            self.0.push(d);
        } else {
            self.1 += 1;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Every problem found, shown or not.
    pub fn len(&self) -> usize {
        self.0.len() + self.1
    }
    /// Whether further problems are only counted: callers with thousands
    /// of them (a CSV map) then skip building each one.
    pub fn is_full(&self) -> bool {
        self.0.len() >= MAX_REPORTED
    }
    /// Count a problem not worth building (see [`Self::is_full`]).
    pub fn count_more(&mut self) {
        self.1 += 1;
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    pub(crate) fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.location.file, a.location.line, a.location.column).cmp(&(
                &b.location.file,
                b.location.line,
                b.location.column,
            ))
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        if self.1 > 0 {
            writeln!(
                f,
                "… and {} more problem{} not shown (fix these first).",
                self.1,
                if self.1 == 1 { "" } else { "s" }
            )?;
        }
        let n = self.len();
        write!(
            f,
            "{n} problem{} found; the configuration was not applied.",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// "did you mean …" for a misspelt key or name.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_handles_first_middle_and_last_lines() {
        let src = SourceFile::new("x.toml", "a = 1\nbé = 2\nc = 3");
        assert_eq!(src.locate(0), (1, 1));
        assert_eq!(src.locate(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(src.locate(10), (2, 4));
        assert_eq!(src.locate(src.text.len()), (3, 6));
        assert_eq!(src.line_text(2), "bé = 2");
    }

    #[test]
    fn suggestions_only_for_close_words() {
        assert_eq!(did_you_mean("adress", ["address", "area"]), Some("address"));
        assert_eq!(did_you_mean("zzz", ["address", "area"]), None);
    }
}
