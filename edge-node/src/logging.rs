//! Log setup shared by the binaries.

use tracing_subscriber::EnvFilter;

/// The default filter: `info`, minus what libraries say that we say better
/// ourselves (every connection event of a driver is logged by the driver,
/// with the device's name).
///
/// - `opcua_client::config`: "Endpoint config contains no endpoints" at
///   every start: we pass endpoints per session, not in the client config.
/// - `opcua_client::session::event_loop`: "Transport disconnected: Good"
///   at every normal disconnect; losses are logged by the driver.
/// - `opcua_client::transport`: connection errors (refused, closed by the
///   peer) that the driver reports as a session failure with a hint.
/// - `tokio_modbus`: frames dropped for a bad CRC, without line or unit;
///   the RTU driver reports the unit's garbled answer instead.
/// - `rumqttd` (the demo runs a hub): see `hub::LOG_FILTER`.
pub const DEFAULT_FILTER: &str = "info,opcua_client::config=error,opcua_client::session::event_loop=error,opcua_client::transport=off,tokio_modbus=off,rumqttd=off";

/// Initialise tracing. `RUST_LOG` overrides [`DEFAULT_FILTER`].
/// `format` is "json" for log shippers, anything else for people.
pub fn init(format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if format == "json" {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests, embedding in the demo) keeps the first one.
    let _ = result;
}
