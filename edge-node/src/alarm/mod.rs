//! Alarms (issue 16, in progress): the ISA-18.2 state machine of one alarm
//! (`machine`) and the alarm system's health after EEMUA 191 (`health`).
//! Configuration (`[[alarm]]`), the engine task that feeds it samples and
//! forecasts, the journal in SQLite and the outbox, and the HMI come next.

pub mod health;
pub mod machine;
