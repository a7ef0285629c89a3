//! Alarms (issue 16, in progress): the ISA-18.2 state machine of one alarm.
//! Configuration (`[[alarm]]`), the engine task that feeds it samples and
//! forecasts, the journal in SQLite and the outbox, and the HMI come next.

pub mod machine;
