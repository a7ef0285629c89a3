//! `[sql]`: limits of the analysts' read-only SQL endpoint (docs/hub.md, "SQL").

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

/// Layer 1: as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSql {}

/// Layer 2: validated. Defaults apply without a `[sql]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sql {}

pub(super) fn validate(_c: &mut Ctx<'_>, _raw: Option<&Spanned<RawSql>>) -> Sql {
    Sql::default()
}
