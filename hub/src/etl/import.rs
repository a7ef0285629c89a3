//! Historian exports (CSV, .xlsx) into the fleet database (docs/import.md).
