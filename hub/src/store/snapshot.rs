//! A copy of the whole fleet database in another file, for the SQL
//! sandbox (crate::sql): its worker process cannot open the live file,
//! which this process holds (DuckDB admits one process per file).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Store, StoreError};

/// Attached names are instance-wide: each copy gets its own.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Write every table, view and sequence of this database into a new
    /// database file at `to` (which must not exist), in one read
    /// transaction of this connection: a consistent copy beside the ingest.
    pub fn copy_to(&self, to: &Path) -> Result<(), StoreError> {
        let src: String = self
            .conn
            .query_row("SELECT current_database()", [], |r| r.get(0))?;
        let alias = format!("apos_sql_snapshot_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let target = to.display().to_string().replace('\'', "''");
        self.conn
            .execute_batch(&format!("ATTACH '{target}' AS {alias}"))?;
        let copied = self.conn.execute_batch(&format!(
            "COPY FROM DATABASE \"{}\" TO {alias}",
            src.replace('"', "\"\"")
        ));
        // Detach even after a failed copy: the attachment outlives this
        // connection otherwise (it belongs to the database instance).
        let detached = self.conn.execute_batch(&format!("DETACH {alias}"));
        copied?;
        detached?;
        crate::files::restrict(to);
        Ok(())
    }
}
