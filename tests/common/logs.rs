//! Log capture for the workspace's test harnesses (included with `#[path]`
//! by `tests/e2e` and `hub/tests/hub`): tests that check what an integrator
//! would read in the log.

use std::io::Write;
use std::sync::Mutex;

/// Every log line of this test process at INFO and above, for tests that
/// check what an integrator would read (filter by a device name unique to
/// the test: tests run in parallel in one process).
static LOGS: Mutex<String> = Mutex::new(String::new());

#[derive(Clone, Copy)]
struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install the test process's log subscriber once: captured lines for
/// [`lines`], plus `RUST_LOG`-filtered output to the test writer
/// (`RUST_LOG=info cargo test ... -- --nocapture`).
pub fn init() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| LogSink)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init();
}

/// Captured log lines (see [`init`]) that contain `needle`.
pub fn lines(needle: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}
