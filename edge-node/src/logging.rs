//! Log setup shared by the binaries.

use tracing_subscriber::EnvFilter;

/// Initialise tracing. `RUST_LOG` overrides the default level (`info`).
/// `format` is "json" for log shippers, anything else for people.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
