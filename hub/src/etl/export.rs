//! Windows, KPIs, forecasts and alarms out as CSV or Parquet (docs/export.md).
