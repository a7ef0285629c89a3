//! Storage-only throughput measurement, used by `apos-bench` to separate
//! SQLite's share from the whole driver → SQLite path.

use std::path::Path;
use std::time::{Duration, Instant};

use drivers::{Quality, Sample, TagName, Timestamp, Value};
use tokio::sync::mpsc;

use super::{HistoryError, HistoryOptions, HistoryWriter};

/// Result of [`sustained_insert`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    pub samples: u64,
    pub elapsed: Duration,
    pub samples_per_sec: f64,
}

/// Push `tags`-wide batches of f64 samples through a real [`HistoryWriter`]
/// as fast as it accepts them for `duration`, then wait for the final commit.
pub fn sustained_insert(
    path: &Path,
    tags: usize,
    duration: Duration,
    batch_size: usize,
) -> Result<BenchReport, HistoryError> {
    let mut opts = HistoryOptions::new(path);
    opts.batch_size = batch_size;
    opts.retention_bytes = u64::MAX;
    let (tx, rx) = mpsc::channel::<Vec<Sample>>(64);
    let writer = HistoryWriter::spawn_with(opts, rx)?;
    let stats = writer.stats();
    let names: Vec<TagName> = (0..tags)
        .map(|i| TagName::from(format!("bench.t{i:05}")))
        .collect();
    let started = Instant::now();
    let mut ts = Timestamp::now().as_millis();
    while started.elapsed() < duration {
        ts += 1;
        let batch = names
            .iter()
            .enumerate()
            .map(|(i, n)| Sample {
                tag: n.clone(),
                ts: Timestamp(ts),
                value: Some(Value::F64(i as f64 + ts as f64 * 1e-3)),
                quality: Quality::Good,
            })
            .collect();
        if tx.blocking_send(batch).is_err() {
            break;
        }
    }
    drop(tx);
    writer.join()?;
    let elapsed = started.elapsed();
    let samples = stats.samples_written();
    Ok(BenchReport {
        samples,
        elapsed,
        samples_per_sec: samples as f64 / elapsed.as_secs_f64(),
    })
}
