//! The reports routes (docs/hub-api.md).

use web::routes::RouteTable;

use super::St;

/// Registers these routes.
pub fn add(_t: &mut RouteTable<St>) {}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi()]
pub struct Doc;
