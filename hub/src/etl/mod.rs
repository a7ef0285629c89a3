//! Data exchange with other systems: historian imports ([`import`]) and
//! CSV/Parquet exports ([`export`]) (docs/import.md, docs/export.md).

pub mod export;
pub mod import;
