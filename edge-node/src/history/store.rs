//! The synchronous write side: one connection, batched inserts, retention.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use drivers::{Sample, TagName};
use rusqlite::{Connection, TransactionBehavior, params};

use super::retention::{self, RetentionReport};
use super::{HistoryError, HistoryOptions, codec, schema};

const INSERT_SAMPLE: &str =
    "INSERT OR REPLACE INTO samples (tag_id, ts_ms, value, value_text, kind, quality, reason)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_TAG: &str = "INSERT OR IGNORE INTO tags (name) VALUES (?1)";
const SELECT_TAG: &str = "SELECT id FROM tags WHERE name = ?1";

/// The history database opened for writing. Not thread-safe by design: the
/// [`super::HistoryWriter`] thread owns it; tests and tools may use it
/// directly.
#[derive(Debug)]
pub struct HistoryStore {
    conn: Connection,
    opts: HistoryOptions,
    /// Tag name → id, so a batch costs one insert per sample.
    tag_ids: HashMap<TagName, i64>,
}

impl HistoryStore {
    /// Open or create the database at `opts.path`, migrating its schema.
    pub fn open(opts: &HistoryOptions) -> Result<Self, HistoryError> {
        let conn = schema::open_writer(&opts.path, opts.durability)?;
        Ok(Self {
            conn,
            opts: opts.clone(),
            tag_ids: HashMap::new(),
        })
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.opts
    }

    /// Insert `samples` in one transaction. Either all are stored or, on
    /// error, none (the caller keeps them and retries).
    pub fn insert(&mut self, samples: &[Sample]) -> Result<(), HistoryError> {
        if samples.is_empty() {
            return Ok(());
        }
        let result = self.insert_tx(samples);
        if result.is_err() {
            // Ids of tags created in the rolled-back transaction are gone.
            self.tag_ids.clear();
        }
        result
    }

    fn insert_tx(&mut self, samples: &[Sample]) -> Result<(), HistoryError> {
        // IMMEDIATE takes the write lock up front, so a busy database fails
        // at BEGIN (after busy_timeout) rather than midway.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_SAMPLE)?;
            for s in samples {
                let tag_id = match self.tag_ids.get(&s.tag) {
                    Some(id) => *id,
                    None => {
                        tx.prepare_cached(INSERT_TAG)?.execute([&*s.tag])?;
                        let id: i64 = tx
                            .prepare_cached(SELECT_TAG)?
                            .query_row([&*s.tag], |r| r.get(0))?;
                        self.tag_ids.insert(s.tag.clone(), id);
                        id
                    }
                };
                let v = codec::encode_value(s.value.as_ref());
                insert.execute(params![
                    tag_id,
                    s.ts.as_millis(),
                    v.value,
                    v.text,
                    v.kind,
                    s.quality.code(),
                    codec::encode_reason(&s.quality),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One bounded retention step at wall-clock time `now_ms`: deletes by age,
    /// then by size, stopping after about `budget`. Check
    /// [`RetentionReport::done`] and call again if it is false.
    pub fn retention_step(
        &mut self,
        now_ms: i64,
        budget: Duration,
    ) -> Result<RetentionReport, HistoryError> {
        let deadline = Instant::now() + budget;
        retention::step(&self.conn, &self.opts, now_ms, deadline)
    }

    /// Run retention to completion (tools and tests; the writer uses
    /// [`Self::retention_step`]).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, HistoryError> {
        let mut total = RetentionReport::default();
        loop {
            let r = self.retention_step(now_ms, Duration::from_secs(3600))?;
            total.deleted_by_age += r.deleted_by_age;
            total.deleted_by_size += r.deleted_by_size;
            total.size_bytes = r.size_bytes;
            total.done = r.done;
            if r.done {
                return Ok(total);
            }
        }
    }

    /// Size of the main database in bytes (`page_count * page_size`).
    pub fn size_bytes(&self) -> Result<u64, HistoryError> {
        schema::db_size_bytes(&self.conn)
    }

    /// Close the connection, reporting errors instead of ignoring them in
    /// `Drop`. Closing the last connection checkpoints and removes the WAL.
    pub fn close(self) -> Result<(), HistoryError> {
        self.conn.close().map_err(|(_, e)| HistoryError::Sqlite(e))
    }
}
