//! The first layer: serde structs exactly as written in the file.
//!
//! Every field is optional or loosely typed (strings for enums, i64 for
//! numbers) and wrapped in `Spanned`, so that the validation layer can
//! report a precise location and a helpful message instead of serde's
//! generic "invalid value". `deny_unknown_fields` stays on as a safety net;
//! unknown keys are normally caught earlier with a "did you mean" hint.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub type S<T> = Spanned<T>;

/// A humantime duration such as `"250ms"`, `"1s"`, `"1h 30m"`, `"30d"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write it like \"500ms\", \"2s\", \"5m\" or \"30d\""
            ))
        })
    }
}

/// A byte size such as `"512MiB"`, `"2GB"` or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Str(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(Size(n)),
            Either::Str(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}; write it like \"500MB\", \"2GiB\" or a number of bytes"
                ))
            }),
        }
    }
}

pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = num * mult;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub site_id: Option<S<String>>,
    pub node_id: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<S<String>>,
    pub retention: Option<S<Dur>>,
    pub aggregates_retention: Option<S<Dur>>,
    pub max_size: Option<S<Size>>,
    pub min_raw_span: Option<S<Dur>>,
    pub reserve: Option<S<Size>>,
    pub batch_size: Option<S<i64>>,
    pub flush_interval: Option<S<Dur>>,
}

/// `[hmi]`: the operator HMI's listener and access.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHmi {
    pub listen: Option<S<String>>,
    pub tls_cert_file: Option<S<String>>,
    pub tls_key_file: Option<S<String>>,
    pub anonymous_view: Option<S<bool>>,
    pub users_file: Option<S<String>>,
    pub metrics_token_file: Option<S<String>>,
}

/// `[sync]`: edge → hub over MQTT.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub broker: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub user: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub key_env: Option<S<String>>,
    pub windows: Option<S<Vec<S<Dur>>>>,
    pub grace: Option<S<Dur>>,
    pub outbox_max_size: Option<S<Size>>,
    pub when_full: Option<S<String>>,
    pub resend_after: Option<S<Dur>>,
    pub max_in_flight: Option<S<i64>>,
    pub max_batch_windows: Option<S<i64>>,
    pub status_interval: Option<S<Dur>>,
}

/// `[forecast]`: ONNX forecasting models run on the edge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForecast {
    pub models_dir: Option<S<String>>,
    pub interval: Option<S<Dur>>,
    pub max_hold: Option<S<Dur>>,
    pub explain_max_features: Option<S<i64>>,
    pub check_every: Option<S<Dur>>,
}

/// `[calendar]`: the plant's time zone, shifts and planned stops.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub time_zone: Option<S<String>>,
    pub week_starts: Option<S<String>>,
    pub shifts: Option<S<Vec<S<RawShift>>>>,
    pub planned_stops: Option<S<Vec<S<RawPlannedStop>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShift {
    pub name: Option<S<String>>,
    pub start: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlannedStop {
    pub name: Option<S<String>>,
    pub from: Option<S<String>>,
    pub to: Option<S<String>>,
    pub days: Option<S<Vec<S<String>>>>,
}

/// `[kpi_engine]`: how KPIs are computed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKpiEngine {
    pub slice: Option<S<Dur>>,
    pub grace: Option<S<Dur>>,
    pub max_hold: Option<S<Dur>>,
}

/// `[[kpi]]`: one KPI. One flat struct for every type; the validator
/// checks which keys the type takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKpi {
    pub name: Option<S<String>>,
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub windows: Option<S<Vec<S<String>>>>,
    pub description: Option<S<String>>,
    pub unit: Option<S<String>>,
    pub state_tag: Option<S<String>>,
    pub running: Option<S<Vec<S<i64>>>>,
    pub fault: Option<S<Vec<S<i64>>>>,
    pub planned_stop_states: Option<S<Vec<S<i64>>>>,
    pub total_counter: Option<S<String>>,
    pub good_counter: Option<S<String>>,
    pub reject_counter: Option<S<String>>,
    pub counter_modulus: Option<S<f64>>,
    pub ideal_rate: Option<S<f64>>,
    pub energy_counter: Option<S<String>>,
    pub expr: Option<S<String>>,
}

/// `[setpoints]`: approved write-back of hub recommendations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSetpoints {
    pub hub_public_key: Option<S<String>>,
    pub max_pending: Option<S<i64>>,
}

/// `[[setpoint]]`: one writable setpoint and the edge's own limits on it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSetpoint {
    pub tag: Option<S<String>>,
    pub min: Option<S<f64>>,
    pub max: Option<S<f64>>,
    pub max_step: Option<S<f64>>,
    pub min_interval: Option<S<Dur>>,
    pub tolerance: Option<S<f64>>,
    pub verify_timeout: Option<S<Dur>>,
    pub permissive: Option<S<String>>,
    pub state_tag: Option<S<String>>,
    pub state_equals: Option<S<f64>>,
    pub state_name: Option<S<String>>,
}

/// `[[alarm]]`: one alarm. One flat struct for every type; the validator
/// checks which keys the type takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarm {
    pub name: Option<S<String>>,
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub tag: Option<S<String>>,
    pub message: Option<S<String>>,
    pub priority: Option<S<String>>,
    pub limit: Option<S<f64>>,
    pub deadband: Option<S<f64>>,
    pub deadband_percent: Option<S<f64>>,
    pub max_rate: Option<S<f64>>,
    pub equals: Option<S<f64>>,
    pub model: Option<S<String>>,
    pub side: Option<S<String>>,
    pub on_delay: Option<S<Dur>>,
    pub off_delay: Option<S<Dur>>,
    pub latched: Option<S<bool>>,
    pub realarm: Option<S<Dur>>,
    pub stale_after: Option<S<Dur>>,
    pub suppress_when: Option<S<String>>,
    pub suppress_equals: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSerialLine {
    pub name: Option<S<String>>,
    pub path: Option<S<String>>,
    pub baud: Option<S<i64>>,
    pub parity: Option<S<String>>,
    pub data_bits: Option<S<i64>>,
    pub stop_bits: Option<S<i64>>,
    pub inter_frame_delay: Option<S<Dur>>,
    pub unit_backoff_initial: Option<S<Dur>>,
    pub unit_backoff_max: Option<S<Dur>>,
}

/// Both Modbus flavours share one flat struct; the validator checks which
/// keys belong to which `protocol`, which gives far better messages than an
/// internally tagged serde enum (and keeps spans working).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: Option<S<String>>,
    pub protocol: Option<S<String>>,
    // modbus-tcp
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub connect_timeout: Option<S<Dur>>,
    // modbus-rtu
    pub line: Option<S<String>>,
    // common
    pub unit_id: Option<S<i64>>,
    pub timeout: Option<S<Dur>>,
    pub poll_interval: Option<S<Dur>>,
    pub max_registers_per_request: Option<S<i64>>,
    pub max_bits_per_request: Option<S<i64>>,
    pub max_gap: Option<S<i64>>,
    pub backoff_initial: Option<S<Dur>>,
    pub backoff_max: Option<S<Dur>>,
    // opcua
    pub endpoint: Option<S<String>>,
    pub security_policy: Option<S<String>>,
    pub security_mode: Option<S<String>>,
    pub user: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub user_certificate: Option<S<String>>,
    pub user_key: Option<S<String>>,
    pub pki_dir: Option<S<String>>,
    pub session_timeout: Option<S<Dur>>,
    pub keep_alive: Option<S<Dur>>,
    pub publishing_interval: Option<S<Dur>>,
    pub clock_tolerance: Option<S<Dur>>,
}

pub const TCP_ONLY: &[&str] = &["host", "port", "connect_timeout"];
pub const RTU_ONLY: &[&str] = &["line"];
pub const MODBUS_ONLY: &[&str] = &[
    "host",
    "port",
    "connect_timeout",
    "line",
    "unit_id",
    "max_registers_per_request",
    "max_bits_per_request",
    "max_gap",
];
pub const OPCUA_ONLY: &[&str] = &[
    "endpoint",
    "security_policy",
    "security_mode",
    "user",
    "password_file",
    "password_env",
    "user_certificate",
    "user_key",
    "pki_dir",
    "session_timeout",
    "keep_alive",
    "publishing_interval",
    "clock_tolerance",
];

/// A number or a text, e.g. `data_change_deadband = 0.5` or `"2%"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrText {
    Num(f64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTag {
    pub name: Option<S<String>>,
    pub device: Option<S<String>>,
    pub area: Option<S<String>>,
    pub address: Option<S<i64>>,
    #[serde(rename = "type")]
    pub data_type: Option<S<String>>,
    pub bit: Option<S<i64>>,
    pub length: Option<S<i64>>,
    pub order: Option<S<String>>,
    pub scale: Option<S<f64>>,
    pub offset: Option<S<f64>>,
    pub unit: Option<S<String>>,
    pub deadband: Option<S<f64>>,
    pub poll_group: Option<S<String>>,
    pub writable: Option<S<bool>>,
    pub description: Option<S<String>>,
    /// Engineering range `[low, high]`: the trend's default Y scale.
    pub range: Option<S<Vec<S<f64>>>>,
    // opcua
    pub node: Option<S<String>>,
    pub sampling_interval: Option<S<Dur>>,
    pub queue_size: Option<S<i64>>,
    pub data_change_deadband: Option<S<NumOrText>>,
    pub mode: Option<S<String>>,
}

pub const TAG_MODBUS_ONLY: &[&str] = &["area", "address", "type", "bit", "length", "order"];
pub const TAG_OPCUA_ONLY: &[&str] = &[
    "node",
    "sampling_interval",
    "queue_size",
    "data_change_deadband",
    "mode",
];

/// `[[import]]`: a CSV register map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    pub file: Option<S<String>>,
    /// Device for rows whose `device` column is absent or empty.
    pub device: Option<S<String>>,
}

/// The field names serde knows for `T`, read from its derived
/// `deserialize_struct` call, so the "unknown key" check can never drift
/// from the struct definitions.
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn field_names_follow_the_struct() {
        let names = field_names::<RawTag>();
        assert!(names.contains(&"type"));
        assert!(names.contains(&"address"));
        assert!(!names.contains(&"data_type"));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5 kB"), Some(1500));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
