//! `/api/v1/etl/…`: exports.

use web::routes::RouteTable;

use crate::web::St;

/// Registers these routes.
pub fn add(_t: &mut RouteTable<St>) {}

/// These routes' part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi()]
pub struct Doc;
