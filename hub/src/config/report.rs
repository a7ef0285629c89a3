//! `[[report]]`: periodic site reports (docs/hub.md, "Reports").

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {}

/// Layer 2: validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {}

pub(super) fn validate(_c: &mut Ctx<'_>, _raw: &[Spanned<RawReport>]) -> Vec<Report> {
    Vec::new()
}
