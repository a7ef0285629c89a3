//! export (issue 19).
