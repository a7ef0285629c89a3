//! `/api/v1/etl/…` (docs/hub-api.md): imports of historian exports
//! ([`import`]) and exports as CSV or Parquet ([`export`]).

pub mod export;
pub mod import;

use web::routes::RouteTable;

use super::St;

/// Registers this area's routes.
pub fn add(t: &mut RouteTable<St>) {
    import::add(t);
    export::add(t);
}
