//! reports (issue 19).
