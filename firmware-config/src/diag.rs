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
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
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

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The offending source line and how many characters to underline,
    /// for a caret snippet. Empty when not available.
    pub snippet: String,
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
        let snippet = src.line_text(line).to_string();
        // Underline only what sits on the first line of the span.
        let line_rest = snippet.chars().count().saturating_sub(column - 1);
        let span_chars = src
            .text
            .get(span.clone())
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1);
        Self {
            location: Location {
                file: src.path.clone(),
                line,
                column,
                snippet,
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
                " ".repeat(l.column - 1),
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

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
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
        let n = self.0.len();
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
