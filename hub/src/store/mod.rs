//! Fleet data in DuckDB: idempotent ingest of batches, the fleet registry,
//! gaps, and the checksum the fault tests compare.
//!
//! Synchronous by design: one [`Store`] is owned by the ingest thread (DuckDB
//! work never runs on the async runtime). Every [`Store::ingest`] call is
//! one transaction; the caller acknowledges batches only after it returns.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::{Connection, OptionalExt, params};
use protocol::v1::{Batch, Checksum, Window, window_digest};

mod alerts;
mod fleet;
pub mod forecast;
pub mod imported;
mod ingest;
pub mod optimize;
mod read;
mod registry;
mod schema;
mod series;
mod snapshot;

pub use fleet::{
    AlarmEntry, AlarmHealth, AlarmKey, AlarmQuery, ByPriority, FleetNode, HEALTH_HISTORY_MS,
    HealthPoint, LATE_WITHIN_MS, LostEntry, NodeDetail, NodeStatus, ONLINE_WITHIN_MS,
    QUALITY_LAG_MS, Quality, QualityNode, QualityTotals, QuarantineEntry, SeqRange, TagQuality,
};
pub use read::ReadPool;
pub use series::kpi::{KpiKey, KpiPoint, KpiSummary};
pub use series::rollup::{DEFAULT_REFRESH_WINDOWS, RollupReport};
pub use series::{
    MAX_POINTS, MAX_SERIES, MIN_POINTS, Plan, Series, SeriesKey, TagInfo, TagStats, ceil_div, grid,
    plan,
};

pub use registry::{Gap, NodeRecord, StatusOutcome};
use schema::SCHEMA;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("duckdb: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Busy(&'static str),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// An alarm's latest state at the hub: (alarm, state, priority, since).
pub type AlarmRow = (String, String, u8, i64);

/// A reported lost span: (width_ms, from_ms, to_ms, reason).
pub type LostRow = (u32, i64, i64, String);

/// One batch to ingest, already verified.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub site: String,
    pub node: String,
    pub batch: Batch,
    pub received_ms: i64,
    /// The signed message as received: what quarantine keeps if the batch
    /// cannot be stored.
    pub raw: bytes::Bytes,
}

/// A signed batch that cannot be stored as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub site: String,
    pub node: String,
    pub seq: u64,
    pub received_ms: i64,
    pub reason: String,
    pub payload: Vec<u8>,
}

/// What one ingest did, per batch: committed now, or already there.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// (site, node) → every seq now durably stored (new and duplicate).
    pub committed: BTreeMap<(String, String), Vec<u64>>,
    pub new_batches: u64,
    pub duplicates: u64,
    /// Forecasts stored (in new batches).
    pub forecasts: u64,
    /// KPI values stored (in new batches).
    pub kpis: u64,
    /// Spans of windows the edges reported they never recorded.
    pub lost_spans: u64,
    /// Alarm journal entries stored.
    pub alarm_events: u64,
    pub audit_entries: u64,
    /// Scored forecasts (protocol `ForecastQuality`) stored.
    pub forecast_quality: u64,
    pub windows: u64,
    /// Indices (into the items given) of the batches stored now, not
    /// duplicates: what the live events report after the commit.
    pub fresh: Vec<usize>,
}

/// Most windows per DuckDB transaction: below one row group (122,880 rows),
/// so DuckDB never writes a transaction's rows optimistically.
pub const MAX_TX_WINDOWS: usize = 100_000;

/// The newest value of one KPI window (`kpi_latest`).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiRow {
    pub kpi: String,
    pub window: String,
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub closed: bool,
    pub coverage: f64,
    pub quality: String,
    pub value: Option<f64>,
    /// Every figure as a JSON object (`null` where undefined).
    pub figures: String,
}

/// (model, origin_ms, values as JSON) of a node's newest forecast.
pub type NewestForecast = (String, i64, String);

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: Option<std::path::PathBuf>,
    /// The web API's read connections, closed around a reopen.
    pool: Option<std::sync::Arc<ReadPool>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(series::SCHEMA)?;
        conn.execute_batch(imported::SCHEMA)?;
        crate::files::restrict(path);
        Ok(Store {
            conn,
            path: Some(path.to_path_buf()),
            pool: None,
        })
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(series::SCHEMA)?;
        conn.execute_batch(imported::SCHEMA)?;
        Ok(Store {
            conn,
            path: None,
            pool: None,
        })
    }

    /// Close and open the database file again: after a fatal error DuckDB
    /// invalidates the open database and refuses everything until then.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        if let Some(path) = self.path.clone() {
            let pool = self.pool.take();
            if let Some(p) = &pool
                && !p.suspend(std::time::Duration::from_secs(30))
            {
                tracing::warn!(
                    "a web query still holds the fleet database after 30 s; reopening anyway"
                );
            }
            // Close the invalidated instance first: DuckDB admits one per file.
            let placeholder = Connection::open_in_memory()?;
            drop(std::mem::replace(&mut self.conn, placeholder));
            *self = Store::open(&path)?;
            if let Some(p) = pool {
                p.resume(self.conn.try_clone()?);
                self.pool = Some(p);
            }
        }
        Ok(())
    }

    /// Read connections to this database for the web API (one pool per
    /// store; later calls return the same pool).
    pub fn read_pool(&mut self) -> Result<std::sync::Arc<ReadPool>, StoreError> {
        if let Some(p) = &self.pool {
            return Ok(p.clone());
        }
        let p = ReadPool::new(self.conn.try_clone()?);
        self.pool = Some(p.clone());
        Ok(p)
    }

    /// The newest `limit` spans a node reported it never recorded, newest
    /// first, and how many there are: (width_ms, from_ms, to_ms, reason).
    pub fn lost_spans(
        &self,
        site: &str,
        node: &str,
        limit: usize,
    ) -> Result<(u64, Vec<LostRow>), StoreError> {
        let total: u64 = self.conn.query_row(
            "SELECT count(*) FROM lost WHERE site = ? AND node = ?",
            params![site, node],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare(
            "SELECT width_ms, from_ms, to_ms, reason FROM lost WHERE site = ? AND node = ?
             ORDER BY from_ms DESC, width_ms LIMIT ?",
        )?;
        let rows = st.query_map(params![site, node, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok((total, rows.collect::<Result<_, _>>()?))
    }

    /// A node's alarms as the hub last heard of them: (alarm, state,
    /// priority, since) for every alarm whose newest entry is not `normal`,
    /// most urgent first; and the number of journal entries stored.
    pub fn alarms(&self, site: &str, node: &str) -> Result<(u64, Vec<AlarmRow>), StoreError> {
        let total: u64 = self.conn.query_row(
            "SELECT count(*) FROM alarms WHERE site = ? AND node = ?",
            params![site, node],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare(
            "SELECT alarm, state, priority, ts_ms FROM alarms WHERE site = ? AND node = ?
             QUALIFY row_number() OVER (PARTITION BY alarm ORDER BY aseq DESC) = 1
             ORDER BY priority DESC, ts_ms",
        )?;
        let rows = st.query_map(params![site, node], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let all: Vec<AlarmRow> = rows.collect::<Result<_, _>>()?;
        Ok((total, all.into_iter().filter(|a| a.1 != "normal").collect()))
    }

    /// The distinct start times of a node's windows of one width, ascending:
    /// where they are not `width_ms` apart, nothing was stored.
    pub fn window_starts(
        &self,
        site: &str,
        node: &str,
        width_ms: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT start_ms FROM aggregates
             WHERE site = ? AND node = ? AND width_ms = ? ORDER BY start_ms",
        )?;
        let rows = st.query_map(params![site, node, width_ms], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the database takes a write at all (a row in and out of the
    /// `probe` table, committed).
    pub fn probe_write(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN; INSERT INTO probe VALUES (1); DELETE FROM probe; COMMIT;")?;
        Ok(())
    }

    /// Keep a batch that cannot be stored, with the reason. Returns whether
    /// it is new (a replay of a quarantined batch is not).
    pub fn quarantine(&mut self, q: &Quarantined) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            params![q.site, q.node, q.seq, q.received_ms, q.reason, q.payload],
        )?;
        if n > 0 {
            registry::touch(&self.conn, &q.site, &q.node, q.received_ms)?;
        }
        Ok(n > 0)
    }

    /// The quarantined batches of a node: (seq, received_ms, reason).
    pub fn quarantined(
        &self,
        site: &str,
        node: &str,
    ) -> Result<Vec<(u64, i64, String)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT seq, received_ms, reason FROM quarantine WHERE site = ? AND node = ? ORDER BY seq",
        )?;
        let rows = st.query_map(params![site, node], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checksum of every stored window of one node (see
    /// [`protocol::v1::Checksum`]).
    pub fn checksum(&self, site: &str, node: &str) -> Result<Checksum, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT tag, width_ms, start_ms, count, good, min, max, mean, twa, last
             FROM aggregates WHERE site = ? AND node = ?",
        )?;
        let mut c = Checksum::default();
        let mut rows = st.query(params![site, node])?;
        while let Some(r) = rows.next()? {
            let g = |i: usize| -> Result<f64, duckdb::Error> {
                Ok(r.get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN))
            };
            let w = Window {
                tag: r.get(0)?,
                count: r.get(3)?,
                good: r.get(4)?,
                min: g(5)?,
                max: g(6)?,
                mean: g(7)?,
                twa: g(8)?,
                last: g(9)?,
            };
            let width: i32 = r.get(1)?;
            c.add(window_digest(site, node, width as u32, r.get(2)?, &w));
        }
        Ok(c)
    }

    /// Rows stored for one node (windows).
    /// Forecasts stored for a node, and the newest one's (model, origin, first value).
    pub fn forecasts(
        &self,
        site: &str,
        node: &str,
    ) -> Result<(u64, Option<NewestForecast>), StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*)::BIGINT FROM forecasts WHERE site = ? AND node = ?",
            params![site, node],
            |r| r.get(0),
        )?;
        let newest = self
            .conn
            .query_row(
                "SELECT model, origin_ms, forecast FROM forecasts WHERE site = ? AND node = ?
                 ORDER BY made_ms DESC LIMIT 1",
                params![site, node],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok((n as u64, newest))
    }

    /// Delete the values of shift, day and week windows that a newer value
    /// of the same window supersedes (the edge re-sends an open window as
    /// it grows). Rolling windows are kept: each row is its own window, a
    /// time series of the rolling value. Returns the rows deleted.
    pub fn compact_kpis(&mut self) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM kpis AS k
             WHERE k.win IN ('shift', 'day', 'week') AND EXISTS (
                 SELECT 1 FROM kpis AS n
                 WHERE n.site = k.site AND n.node = k.node AND n.kpi = k.kpi
                   AND n.win = k.win AND n.start_ms = k.start_ms
                   AND (n.computed_ms > k.computed_ms
                        OR n.computed_ms = k.computed_ms AND n.seq > k.seq))",
            [],
        )?;
        Ok(n as u64)
    }

    /// The newest value of every KPI window of a node, newest window first.
    pub fn kpis(&self, site: &str, node: &str) -> Result<Vec<KpiRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT kpi, win, label, start_ms, end_ms, closed, coverage, quality, value, figures
             FROM kpi_latest WHERE site = ? AND node = ?
             ORDER BY kpi, win, start_ms DESC",
        )?;
        let rows = st
            .query_map(params![site, node], |r| {
                Ok(KpiRow {
                    kpi: r.get(0)?,
                    window: r.get(1)?,
                    label: r.get(2)?,
                    start_ms: r.get(3)?,
                    end_ms: r.get(4)?,
                    closed: r.get(5)?,
                    coverage: r.get(6)?,
                    quality: r.get(7)?,
                    value: r.get(8)?,
                    figures: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The DuckDB connection itself, for work the store does not wrap:
    /// exports run `COPY … TO` on a clone of it (etl::export).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The database answers a query (readiness).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn windows(&self, site: &str, node: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM aggregates WHERE site = ? AND node = ?",
            params![site, node],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use protocol::v1::Body;
    use protocol::v1::WindowSet;

    pub(super) fn incoming(node: &str, seq: u64, tags: usize) -> Incoming {
        Incoming {
            site: "s".into(),
            node: node.into(),
            raw: bytes::Bytes::new(),
            received_ms: 1000_i64.saturating_add(seq.min(1 << 53) as i64),
            batch: Batch {
                seq,
                created_ms: seq as i64,
                body: Body::Aggregates(vec![WindowSet {
                    width_ms: 10_000,
                    start_ms: seq as i64 * 10_000,
                    windows: (0..tags)
                        .map(|i| Window {
                            tag: format!("area{:02}.tag{i:05}", i % 50),
                            count: 3,
                            good: if i == 0 { 0 } else { 3 },
                            min: if i == 0 { f64::NAN } else { 1.0 },
                            max: 2.0,
                            mean: 1.5,
                            twa: 1.5,
                            last: 2.0,
                        })
                        .collect(),
                }]),
            },
        }
    }

    #[test]
    fn duplicates_are_dropped_gaps_are_visible_and_checksums_match() {
        let mut s = Store::open_in_memory().unwrap();
        let r = s
            .ingest(&[
                incoming("a", 1, 3),
                incoming("a", 2, 3),
                incoming("a", 2, 3),
            ])
            .unwrap();
        assert_eq!((r.new_batches, r.duplicates, r.windows), (2, 1, 6));
        assert_eq!(r.committed[&("s".into(), "a".into())], vec![1, 2, 2]);
        // Late and out of order: 5 before 3 and 4.
        let r = s
            .ingest(&[incoming("a", 5, 3), incoming("a", 1, 3)])
            .unwrap();
        assert_eq!((r.new_batches, r.duplicates), (1, 1));
        assert_eq!(
            s.gaps("s", "a", 10).unwrap(),
            vec![Gap { first: 3, last: 4 }]
        );
        let n = &s.nodes().unwrap()[0];
        assert_eq!((n.batches, n.max_seq, n.missing), (3, 5, 2));
        s.ingest(&[incoming("a", 4, 3), incoming("a", 3, 3)])
            .unwrap();
        assert!(s.gaps("s", "a", 10).unwrap().is_empty());

        // What the edge produced, summed independently, equals what is stored.
        let mut expect = Checksum::default();
        for seq in 1..=5 {
            let Body::Aggregates(sets) = incoming("a", seq, 3).batch.body else {
                unreachable!()
            };
            for set in sets {
                for w in &set.windows {
                    expect.add(window_digest("s", "a", set.width_ms, set.start_ms, w));
                }
            }
        }
        assert_eq!(s.checksum("s", "a").unwrap(), expect);
        assert_eq!(s.windows("s", "a").unwrap(), 15);
    }

    /// A backlog arriving at once: more rows than a DuckDB row group
    /// (122,880) in one call. DuckDB 1.2 failed such a transaction with
    /// "INTERNAL Error: Partially optimistically written data", forever
    /// (the apos-bench sync drain of a 10 min outage found it).
    #[test]
    fn a_backlog_larger_than_a_row_group_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("fleet.duckdb")).unwrap();
        let items: Vec<Incoming> = (1..=60).map(|seq| incoming("a", seq, 5000)).collect();
        s.ingest(&items[..1]).unwrap();
        let status = protocol::v1::Status {
            ts_ms: 1,
            software_version: "x".into(),
            started_ms: 0,
            outbox_batches: 60,
            outbox_bytes: 1,
            oldest_unacked_ms: Some(1),
            last_seq: 60,
            dropped_batches: 0,
        };
        s.status("s", "a", &status, 5).unwrap();
        for chunk in [1..6, 6..50, 50..60] {
            let r = s.ingest(&items[chunk.clone()]).unwrap();
            assert_eq!(r.new_batches as usize, chunk.len());
            assert_eq!(r.committed[&("s".into(), "a".into())].len(), chunk.len());
        }
        let mut expect = Checksum::default();
        for it in &items {
            let Body::Aggregates(sets) = &it.batch.body else {
                unreachable!()
            };
            for set in sets {
                for w in &set.windows {
                    expect.add(window_digest("s", "a", set.width_ms, set.start_ms, w));
                }
            }
        }
        assert_eq!(s.checksum("s", "a").unwrap(), expect);
    }
}

#[cfg(test)]
mod forecast_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use protocol::v1::Body;
    use protocol::v1::Forecast;

    #[test]
    fn kpis_are_stored_and_the_newest_value_per_window_wins() {
        let mut s = Store::open_in_memory().unwrap();
        let k = |computed_ms: i64, oee: Option<f64>, closed: bool| protocol::v1::KpiResult {
            kpi: "line.oee".into(),
            window: "shift".into(),
            label: "2026-12-01 early".into(),
            start_ms: 0,
            end_ms: 28_800_000,
            until_ms: computed_ms,
            closed,
            computed_ms,
            coverage: 0.9,
            quality: protocol::v1::KpiQuality::Uncertain,
            values: vec![("oee".into(), oee), ("mtbf_s".into(), None)],
            unit: None,
        };
        let batch = |seq: u64, list| Incoming {
            raw: bytes::Bytes::new(),
            site: "s".into(),
            node: "a".into(),
            received_ms: 1,
            batch: Batch {
                seq,
                created_ms: 1,
                body: Body::Kpis(list),
            },
        };
        // Sent out of order: the final value (computed last) arrives first.
        let r = s
            .ingest(&[
                batch(2, vec![k(28_800_000, Some(0.75), true)]),
                batch(1, vec![k(3_600_000, None, false)]),
                batch(1, vec![k(3_600_000, None, false)]),
            ])
            .unwrap();
        assert_eq!(
            (r.new_batches, r.duplicates, r.kpis, r.windows),
            (2, 1, 2, 0)
        );
        let rows = s.kpis("s", "a").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].value, rows[0].closed), (Some(0.75), true));
        assert_eq!(rows[0].figures, r#"{"mtbf_s":null,"oee":0.75}"#);
        assert_eq!(rows[0].quality, "uncertain");
        // Compaction keeps the final value of the shift and drops the
        // superseded one; a rolling window's rows are all kept.
        let mut rolling = k(3_600_000, Some(0.5), false);
        rolling.window = "1h".into();
        let mut rolling2 = rolling.clone();
        rolling2.start_ms += 60_000;
        rolling2.computed_ms += 60_000;
        s.ingest(&[batch(3, vec![rolling, rolling2])]).unwrap();
        assert_eq!(s.compact_kpis().unwrap(), 1);
        let left: Vec<(String, bool)> = {
            let mut st = s
                .conn
                .prepare("SELECT win, closed FROM kpis ORDER BY win, computed_ms")
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(
            left,
            vec![
                ("1h".to_string(), false),
                ("1h".to_string(), false),
                ("shift".to_string(), true)
            ]
        );
        assert_eq!(s.compact_kpis().unwrap(), 0);
    }

    #[test]
    fn forecasts_are_stored_once_beside_the_windows() {
        let mut s = Store::open_in_memory().unwrap();
        let f = Forecast {
            model: "m".into(),
            version: "1".into(),
            tag: "t".into(),
            origin_ms: 60_000,
            step_ms: 5000,
            made_ms: 59_000,
            values: vec![1.5, f64::NAN, 2.5],
        };
        let item = Incoming {
            raw: bytes::Bytes::new(),
            site: "s".into(),
            node: "a".into(),
            received_ms: 1,
            batch: Batch {
                seq: 1,
                created_ms: 1,
                body: Body::Forecasts(vec![f]),
            },
        };
        let r = s.ingest(&[item.clone(), item]).unwrap();
        assert_eq!(
            (r.new_batches, r.duplicates, r.forecasts, r.windows),
            (1, 1, 1, 0)
        );
        let (n, values): (i64, String) = s
            .conn
            .query_row(
                "SELECT count(*), any_value(forecast) FROM forecasts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, values.as_str()), (1, "[1.5,null,2.5]"));
        assert!(s.gaps("s", "a", 10).unwrap().is_empty());
    }
}
