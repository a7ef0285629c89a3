//! Alarms (issue 16, in progress): the ISA-18.2 state machine of one alarm
//! (`machine`) and the alarm system's health after EEMUA 191 (`health`).
//! Pure: the edge's alarm engine task (next) feeds them samples, forecasts
//! and operator actions, and stores the journal. `[[alarm]]` in the
//! configuration validates into [`machine::AlarmSpec`].

pub mod health;
pub mod machine;
