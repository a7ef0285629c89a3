//! Read connections for the web API: more connections to the store's own
//! DuckDB instance, so queries run beside the ingest thread (DuckDB gives
//! each its own snapshot) and never take the file lock twice.
//!
//! Queries are blocking: callers run [`ReadPool::read`] on the blocking
//! pool. After a failed commit the ingest thread reopens the database; it
//! closes the pool first ([`ReadPool::suspend`]: no new checkout, wait for
//! the readers in flight), because DuckDB admits one instance per file.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Store, StoreError};

/// At most this many idle connections are kept (each holds little).
const MAX_IDLE: usize = 8;

#[derive(Debug, Default)]
struct Inner {
    /// Source of new connections; `None` while suspended.
    base: Option<duckdb::Connection>,
    idle: Vec<duckdb::Connection>,
    in_use: usize,
    generation: u64,
}

/// A pool of read connections to one [`Store`]'s database.
#[derive(Debug, Default)]
pub struct ReadPool {
    inner: Mutex<Inner>,
    returned: Condvar,
}

/// Why a read found no connection.
pub const SUSPENDED: &str = "the fleet database is being reopened after an error; try again";

impl ReadPool {
    pub(super) fn new(base: duckdb::Connection) -> Arc<ReadPool> {
        Arc::new(ReadPool {
            inner: Mutex::new(Inner {
                base: Some(base),
                ..Inner::default()
            }),
            returned: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on a read-only view of the store (blocking).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (conn, generation) = {
            let mut g = self.lock();
            let conn = match g.idle.pop() {
                Some(c) => c,
                None => match &g.base {
                    Some(b) => b.try_clone()?,
                    None => return Err(StoreError::Busy(SUSPENDED)),
                },
            };
            g.in_use += 1;
            (conn, g.generation)
        };
        let store = Store {
            conn,
            path: None,
            pool: None,
        };
        let out = f(&store);
        let mut g = self.lock();
        g.in_use -= 1;
        if g.generation == generation && g.base.is_some() && g.idle.len() < MAX_IDLE {
            g.idle.push(store.conn);
        }
        drop(g);
        self.returned.notify_all();
        out
    }

    /// Close the pool: no new reads; wait (at most `wait`) for the ones in
    /// flight, then drop every connection. True when none is left open.
    pub(super) fn suspend(&self, wait: Duration) -> bool {
        let mut g = self.lock();
        g.base = None;
        g.idle.clear();
        g.generation += 1;
        let (g, _) = self
            .returned
            .wait_timeout_while(g, wait, |g| g.in_use > 0)
            .unwrap_or_else(|p| p.into_inner());
        g.in_use == 0
    }

    /// Open the pool again on a (re)opened database.
    pub(super) fn resume(&self, base: duckdb::Connection) {
        let mut g = self.lock();
        g.base = Some(base);
        g.idle.clear();
        g.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn readers_see_committed_rows_and_reopen_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("f.duckdb")).unwrap();
        let pool = store.read_pool().unwrap();
        assert_eq!(pool.read(|s| s.nodes()).unwrap().len(), 0);
        store
            .ingest(&[super::super::tests::incoming("n1", 1, 3)])
            .unwrap();
        assert_eq!(pool.read(|s| s.nodes()).unwrap().len(), 1);
        // A reader in flight holds the instance: reopen waits for it.
        let p2 = pool.clone();
        let reader = std::thread::spawn(move || {
            p2.read(|s| {
                std::thread::sleep(Duration::from_millis(300));
                s.nodes()
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        store.reopen().unwrap();
        assert_eq!(reader.join().unwrap().unwrap().len(), 1);
        assert_eq!(pool.read(|s| s.nodes()).unwrap().len(), 1);
        store
            .ingest(&[super::super::tests::incoming("n2", 1, 3)])
            .unwrap();
        assert_eq!(pool.read(|s| s.nodes()).unwrap().len(), 2);
    }
}
