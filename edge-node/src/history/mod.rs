//! Local history: every stored sample, in one SQLite file.
//!
//! ```text
//!  pipeline ──Vec<Sample>──▶ HistoryWriter thread ──▶ HistoryStore ──▶ SQLite (WAL)
//!                            (batches, retention)                       ▲
//!  HMI / CLI ──────────────▶ HistoryReader (own connection) ────────────┘
//! ```
//!
//! - [`HistoryWriter`] owns the only write connection, on a dedicated OS
//!   thread. It commits one transaction per `batch_size` samples or per
//!   `flush_interval`, whichever comes first, and runs retention in bounded
//!   steps between batches.
//! - [`HistoryStore`] is the synchronous core the writer drives; tests and
//!   maintenance tools can use it directly.
//! - [`HistoryReader`] answers range, downsampling and latest-value queries
//!   on its own connection (WAL lets it read while the writer commits).
//!
//! # Durability
//!
//! The database runs in WAL mode. A commit is a single append to the WAL, so
//! killing the process (even `kill -9`) loses at most the batch that was not
//! committed yet and never corrupts the file (tested by killing a child
//! process mid-stream). [`Durability`] chooses what a power loss may cost;
//! see there.
//!
//! # Storage layout
//!
//! See [`schema`] for the tables and for how values, qualities and reasons
//! are encoded.

mod codec;
mod pressure;
pub use pressure::free_bytes;
mod query;
mod retention;
pub mod schema;
mod store;
mod writer;

pub mod bench;

use std::path::PathBuf;
use std::time::Duration;

use firmware_config::Storage;

pub use query::{Bucket, HistoryReader};
pub use retention::RetentionReport;
pub use store::HistoryStore;
pub(crate) use store::queue_one;
pub use writer::{HistoryWriter, OutboxInput, WriterStats, WriterStatsSnapshot};

/// Everything that can go wrong with the local history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite refused an operation (I/O error, disk full, corrupt file, …).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A batch could not be encoded for the outbox.
    #[error("encoding an outbox batch: {0}")]
    Encode(String),
    /// The database file could not be opened or created.
    #[error("cannot open history database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer APOS whose schema this one does not know.
    #[error("history database schema version {found} is newer than supported version {supported}")]
    UnsupportedSchema { found: i64, supported: i64 },
    /// The file exists but no writer has created the schema yet.
    #[error("history database {0} has not been initialised by a writer yet")]
    NotInitialized(PathBuf),
    /// A query was given arguments it cannot answer (e.g. zero buckets).
    #[error("invalid history query: {0}")]
    InvalidQuery(String),
    /// The writer thread could not be started.
    #[error("cannot start the history writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread panicked (a bug); its uncommitted batch is lost.
    #[error("the history writer thread panicked")]
    WriterPanicked,
    /// A blocking query task was cancelled or panicked.
    #[error("history query task failed: {0}")]
    Task(String),
}

/// What a committed transaction survives.
///
/// Both levels survive a process crash: in WAL mode a committed transaction
/// is in the operating system's page cache once `COMMIT` returns, and the
/// kernel writes it out even if the process is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL`: no fsync per commit, only at checkpoints. A
    /// power loss or kernel crash may lose the transactions committed since
    /// the last checkpoint (never corrupt the file). Fastest, and kind to
    /// flash storage.
    Normal,
    /// `synchronous = FULL`: the WAL is fsynced at every commit, so committed
    /// batches also survive a power loss (given storage that honours flushes).
    /// The default: commits are batched, so the cost is one fsync per batch,
    /// at most a few per second on a typical plant.
    #[default]
    Full,
}

/// Settings of a history database (writer side).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryOptions {
    pub path: PathBuf,
    /// Samples, KPI values and forecasts older than this are deleted.
    pub retention_age: Duration,
    /// Windows the hub acknowledged are deleted after this long.
    pub aggregates_age: Duration,
    /// Size retention never deletes raw samples newer than this.
    pub min_raw_span: Duration,
    /// Upper bound of the main database file (`page_count * page_size`);
    /// above it retention deletes in a fixed order (docs/configuration.md). The WAL comes on top and is
    /// truncated to at most [`schema::JOURNAL_SIZE_LIMIT`] after checkpoints.
    pub retention_bytes: u64,
    /// Max samples per insert transaction.
    pub batch_size: usize,
    /// A partial batch is committed after at most this long.
    pub flush_interval: Duration,
    pub durability: Durability,
    /// How often retention is checked when nothing is pending.
    pub retention_interval: Duration,
    /// Rows deleted per retention transaction, so a large backlog never holds
    /// the write lock (and ingest) for long.
    pub retention_chunk: usize,
    /// Max time one retention step may take before ingest resumes; an
    /// unfinished step continues after the next batch.
    pub retention_budget: Duration,
    /// Disk space kept in a file beside the database, released when the
    /// disk fills (0: none).
    pub reserve_bytes: u64,
    /// The inbox is merged into the main table at least this often...
    pub merge_interval: Duration,
    /// ...or as soon as it holds this many samples (see [`schema`]).
    pub merge_rows: u64,
}

impl HistoryOptions {
    /// Defaults for everything the configuration file does not say.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            retention_age: Duration::from_secs(30 * 86_400),
            aggregates_age: Duration::from_secs(7 * 86_400),
            min_raw_span: Duration::from_secs(86_400),
            retention_bytes: 1 << 30,
            reserve_bytes: 0,
            batch_size: 5000,
            flush_interval: Duration::from_secs(1),
            durability: Durability::default(),
            retention_interval: Duration::from_secs(60),
            retention_chunk: 10_000,
            retention_budget: Duration::from_millis(100),
            merge_interval: Duration::from_secs(2),
            merge_rows: 500_000,
        }
    }
}

impl From<&Storage> for HistoryOptions {
    fn from(s: &Storage) -> Self {
        Self {
            retention_age: s.retention_age,
            aggregates_age: s.aggregates_retention,
            min_raw_span: s.min_raw_span,
            retention_bytes: s.retention_bytes,
            reserve_bytes: s.reserve_bytes,
            batch_size: s.batch_size,
            flush_interval: s.flush_interval,
            ..Self::new(&s.path)
        }
    }
}
