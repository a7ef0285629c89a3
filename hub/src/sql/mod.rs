//! Analysts' read-only SQL, run in a separate, locked-down process (docs/hub.md, "SQL").
