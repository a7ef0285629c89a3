//! insights (issue 19).
