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

/// Initialise tracing: [`DEFAULT_FILTER`] with `RUST_LOG` on top (see
/// [`merge_filter`]). When systemd connected stderr to the journal, events
/// go to the journal natively, their fields as journal fields
/// ([`web::journal`]); otherwise to stderr, `format` "json" for log
/// shippers, anything else for people.
pub fn init(format: &str) {
    let user = std::env::var("RUST_LOG").unwrap_or_default();
    let directives = merge_filter(DEFAULT_FILTER, &user);
    if web::journal::init_if_connected(&directives) {
        return;
    }
    let filter = EnvFilter::new(directives);
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

/// `defaults` with `user` (the `RUST_LOG` text) on top. `RUST_LOG` adds to
/// the defaults rather than replacing them: `RUST_LOG=info` must not bring
/// back a library's per-connection noise (one ERROR line per timed-out
/// reconnect, say). A default for a target the user names, or the default
/// level when the user gives one, gives way to the user's.
pub fn merge_filter(defaults: &str, user: &str) -> String {
    let target = |d: &str| -> Option<String> {
        let head = d.split('=').next().unwrap_or("").trim();
        let bare_level = !d.contains('=')
            && ["trace", "debug", "info", "warn", "error", "off"]
                .contains(&head.to_ascii_lowercase().as_str());
        (!bare_level).then(|| head.split('[').next().unwrap_or("").to_owned())
    };
    let user: Vec<&str> = user
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let named: Vec<Option<String>> = user.iter().map(|d| target(d)).collect();
    let mut out: Vec<&str> = defaults
        .split(',')
        .filter(|d| !named.contains(&target(d)))
        .collect();
    out.extend(user);
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::merge_filter;

    #[test]
    fn rust_log_adds_to_the_defaults_and_wins_where_it_names_a_target() {
        let d = "info,tokio_modbus=off,rumqttd=off";
        // Issue 14: RUST_LOG=info replaced the defaults and brought back a
        // library's per-connection ERROR lines.
        assert_eq!(merge_filter(d, "info"), "tokio_modbus=off,rumqttd=off,info");
        assert_eq!(merge_filter(d, ""), d);
        assert_eq!(
            merge_filter(d, "debug,rumqttd=warn"),
            "tokio_modbus=off,debug,rumqttd=warn"
        );
        assert_eq!(
            merge_filter(d, "edge_node::sync=debug"),
            format!("{d},edge_node::sync=debug")
        );
    }
}
