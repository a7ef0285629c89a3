//! sql (issue 19).
