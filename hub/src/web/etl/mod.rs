//! `/api/v1/etl/…` (docs/hub-api.md).

use web::routes::RouteTable;

use super::St;

/// Registers this area's routes.
pub fn add(_t: &mut RouteTable<St>) {}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi()]
pub struct Doc;
