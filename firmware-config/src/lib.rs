//! The APOS appliance's configuration model.
//!
//! Two layers: [`raw`] serde structs that mirror the file (every field
//! spanned, unknown keys rejected), and the validated [`model`] that the
//! rest of the system consumes. [`load`] reads a file (plus its includes
//! and CSV imports) and returns either a complete [`EdgeConfig`] or every
//! problem found, each with file, line, column, field and a fix.

mod csv_import;
pub mod diag;
mod load;
pub mod model;
mod raw;
mod validate;

use std::path::Path;

pub use csv_import::COLUMNS as CSV_COLUMNS;
pub use diag::{Diagnostic, Diagnostics};
pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Io(#[from] models::text::TextError),
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl ConfigError {
    /// The located problems, if this is a validation failure.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            ConfigError::Io(_) => None,
        }
    }
}

/// Load and validate an edge configuration file.
pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
    let text = models::text::read_text(path)?;
    load_str(path, text)
}

/// Validate configuration text as if it had been read from `path`
/// (includes and imports are resolved relative to it).
pub fn load_str(path: &Path, text: impl Into<String>) -> Result<EdgeConfig, ConfigError> {
    let mut diags = Diagnostics::default();
    let mut raw = load::RawConfig::default();
    load::read_main(path, text.into(), &mut raw, &mut diags);
    // After a syntax error the document is incomplete, and validating it
    // would only add misleading "missing …" errors. Other problems (unknown
    // keys, bad values) still let the rest be validated: more problems per
    // run, fewer round trips for the integrator.
    let syntax_error = diags.iter().any(|d| d.field == "syntax");
    let cfg = if syntax_error {
        None
    } else {
        validate::validate(raw, &mut diags)
    };
    match cfg {
        Some(cfg) if diags.is_empty() => Ok(cfg),
        _ => {
            diags.sort();
            Err(ConfigError::Invalid(diags))
        }
    }
}
