//! The KPI engine on the edge: KPIs from local history, on the plant floor
//! even when the hub is unreachable.
//!
//! ```text
//! history (SQLite, read) ──slice by slice──▶ Part per KPI (models::kpi)
//!      ├─▶ rolling windows: the last N slices, summed
//!      └─▶ calendar windows (shift, day, week): running sums, closed when
//!          the calendar moves on
//!                         ──▶ kpis table (SQLite) + outbox (Body::Kpis), one transaction
//! ```
//!
//! Every slice is computed once, `grace` after it ends; a window is a sum of
//! slices, so a week costs no more per minute than an hour. At start the
//! engine backfills from history: the current calendar windows and the
//! longest rolling window, and every calendar window that ended since the
//! last one closed on this database (the edge was down at the boundary).
//! All work runs on the blocking pool.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use firmware_config::{EdgeConfig, KpiSetup, KpiWindow};
use models::calendar::{Calendar, CalendarKind, CalendarWindow};
use models::kpi::{KpiQuality as Q, Part, evaluate, hold};
use protocol::v1::{Body, KpiQuality, KpiResult};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::history::{HistoryError, HistoryReader, queue_one};
use crate::sync::outbox::{OutboxPolicy, SealReport};

/// Beyond this much time since the last computed slice, the engine starts
/// over from history (backfill) rather than catch up slice by slice.
const MAX_CATCH_UP_MS: i64 = 8 * 86_400_000;

/// Slices read from history in one go: bounds the memory a backfill over
/// many tags needs (tags × samples per chunk).
const CHUNK_SLICES: i64 = 60;

type SeriesBuf = Vec<(i64, Option<f64>)>;

/// The latest value of every KPI window, for the HMI and the demo.
#[derive(Debug, Default, Clone)]
pub struct KpiBoard(Arc<RwLock<Vec<KpiResult>>>);

impl KpiBoard {
    pub fn all(&self) -> Vec<KpiResult> {
        self.0.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// The current value of `kpi` over `window` (e.g. `1h`, `shift`).
    pub fn get(&self, kpi: &str, window: &str) -> Option<KpiResult> {
        self.0
            .read()
            .ok()?
            .iter()
            .find(|r| r.kpi == kpi && r.window == window)
            .cloned()
    }

    fn set(&self, results: &[KpiResult]) {
        if let Ok(mut v) = self.0.write() {
            // Keep the open windows only; closed ones are in SQLite.
            v.retain(|old| {
                !results
                    .iter()
                    .any(|n| n.kpi == old.kpi && n.window == old.window)
            });
            v.extend(results.iter().filter(|r| !r.closed).cloned());
            v.sort_by(|a, b| (&a.kpi, &a.window).cmp(&(&b.kpi, &b.window)));
        }
    }
}

#[derive(Debug, Default)]
pub struct KpiStats {
    pub slices: AtomicU64,
    pub results: AtomicU64,
    pub closed_windows: AtomicU64,
    pub errors: AtomicU64,
    /// CPU time spent computing slices and windows, µs (excluding storage).
    pub compute_us: AtomicU64,
}

fn quality(q: Q) -> KpiQuality {
    match q {
        Q::Good => KpiQuality::Good,
        Q::Uncertain => KpiQuality::Uncertain,
        Q::Bad => KpiQuality::Bad,
    }
}

/// The engine's state between ticks. Pure computation over what a
/// [`HistoryReader`] returns; storage is [`store`]'s job.
#[derive(Debug)]
pub struct Engine {
    setup: KpiSetup,
    calendar: Calendar,
    slice_ms: i64,
    max_hold_ms: i64,
    /// Longest rolling window, in slices.
    ring_len: usize,
    /// The last `ring_len` slices: (start, one part per KPI).
    ring: VecDeque<(i64, Vec<Part>)>,
    /// Per KPI, per window of its list: the open calendar window, its sum,
    /// and whether the sum started with the window (a window the engine
    /// first saw mid-way is never reported as closed: its sum is partial).
    open: Vec<Vec<Option<(CalendarWindow, Part, bool)>>>,
    /// End of the last computed slice.
    done_ms: Option<i64>,
    /// Distinct input tags of all KPIs.
    tags: Vec<String>,
    /// Per KPI, each counter's value at the end of the last slice.
    carry: Vec<Vec<Option<f64>>>,
    /// Per tag, where the last read ended and its last known and last
    /// samples there: the next chunk starts from these instead of asking
    /// SQLite again (half the queries of a steady-state tick).
    tails: HashMap<String, (i64, SeriesBuf)>,
}

impl Engine {
    pub fn new(setup: KpiSetup) -> Result<Engine, String> {
        let calendar = setup.calendar.calendar().map_err(|e| e.to_string())?;
        let slice_ms = setup.slice.as_millis().max(1) as i64;
        let ring_len = setup
            .kpis
            .iter()
            .flat_map(|k| &k.windows)
            .filter_map(|w| match w {
                KpiWindow::Rolling(d) => Some((d.as_millis() as i64 / slice_ms) as usize),
                KpiWindow::Calendar(_) => None,
            })
            .max()
            .unwrap_or(0);
        let mut tags: Vec<String> = setup.kpis.iter().flat_map(|k| k.kind.all_tags()).collect();
        tags.sort();
        tags.dedup();
        Ok(Engine {
            open: setup
                .kpis
                .iter()
                .map(|k| vec![None; k.windows.len()])
                .collect(),
            max_hold_ms: setup.max_hold.as_millis() as i64,
            calendar,
            slice_ms,
            ring_len,
            ring: VecDeque::new(),
            done_ms: None,
            tags,
            tails: HashMap::new(),
            carry: vec![Vec::new(); setup.kpis.len()],
            setup,
        })
    }

    /// Whether the next advance to `boundary` should start over from
    /// history: the clock went back before the last computed slice, or
    /// jumped further ahead than [`MAX_CATCH_UP_MS`].
    pub fn must_restart(&self, boundary: i64) -> bool {
        self.done_ms
            .is_some_and(|done| boundary < done || boundary - done > MAX_CATCH_UP_MS)
    }

    /// Forget all sums: the next advance backfills from history.
    pub fn reset(&mut self) {
        self.ring.clear();
        for o in &mut self.open {
            o.iter_mut().for_each(|w| *w = None);
        }
        self.done_ms = None;
        self.tails.clear();
        self.carry.iter_mut().for_each(Vec::clear);
    }

    pub fn setup(&self) -> &KpiSetup {
        &self.setup
    }

    /// The end of the last slice that may be computed at `now_ms`.
    pub fn boundary(&self, now_ms: i64) -> i64 {
        let t = now_ms - self.setup.grace.as_millis() as i64;
        t.div_euclid(self.slice_ms) * self.slice_ms
    }

    /// Where a first run starts reading: the start of every current
    /// calendar window and of the longest rolling window, and with
    /// `previous` the previous calendar windows too.
    pub fn backfill_start(&self, boundary: i64, previous: bool) -> i64 {
        self.backfill_from(boundary, &HashMap::new(), previous)
    }

    /// Where a first run starts reading, knowing where the closed windows
    /// stored on this database end (`closed_until`: window label → the
    /// latest end of a closed window): from the first window of each kind
    /// that was never closed, so every window that ended while the edge was
    /// down is closed now (at most [`MAX_CATCH_UP_MS`] back). A kind never
    /// closed here starts at its previous window when the engine `ran_before`,
    /// else at its current one.
    pub fn backfill_from(
        &self,
        boundary: i64,
        closed_until: &HashMap<String, i64>,
        ran_before: bool,
    ) -> i64 {
        let mut from = boundary - self.ring_len as i64 * self.slice_ms;
        let floor = boundary - MAX_CATCH_UP_MS;
        for k in &self.setup.kpis {
            for w in &k.windows {
                if let KpiWindow::Calendar(kind) = w {
                    let cur = self.calendar.window_at(*kind, boundary - 1);
                    let start = match closed_until.get(&w.label()) {
                        Some(&end) if end <= cur.start_ms => {
                            self.calendar.window_at(*kind, end.max(floor)).start_ms
                        }
                        Some(_) => cur.start_ms,
                        None if ran_before => {
                            self.calendar.window_at(*kind, cur.start_ms - 1).start_ms
                        }
                        None => cur.start_ms,
                    };
                    from = from.min(start);
                }
            }
        }
        from.div_euclid(self.slice_ms) * self.slice_ms
    }

    /// Compute every slice from where the engine stopped (or `from_ms` on
    /// the first call) up to `boundary`, and return the closed calendar
    /// windows and the current value of every window. `None` when no new
    /// slice closed.
    pub fn advance(
        &mut self,
        reader: &HistoryReader,
        from_ms: i64,
        boundary: i64,
        now_ms: i64,
        stats: &KpiStats,
    ) -> Result<Option<Vec<KpiResult>>, HistoryError> {
        let mut start = self.done_ms.unwrap_or(from_ms);
        if start >= boundary {
            return Ok(None);
        }
        let mut out = Vec::new();
        while start < boundary {
            let end = (start + CHUNK_SLICES * self.slice_ms).min(boundary);
            let series = self.load(reader, start, end)?;
            let t0 = Instant::now();
            let empty: Vec<(i64, Option<f64>)> = Vec::new();
            let get = |t: &str| -> &[(i64, Option<f64>)] {
                series.get(t).map_or(empty.as_slice(), |v| v.as_slice())
            };
            let mut a = start;
            while a < end {
                let b = a + self.slice_ms;
                let stops = self.calendar.planned_stops(a, b);
                let parts: Vec<Part> = self
                    .setup
                    .kpis
                    .iter()
                    .zip(self.carry.iter_mut())
                    .map(|(k, c)| Part::compute_carried(&k.kind, a, b, &get, &stops, c))
                    .collect();
                self.add_slice(a, parts, now_ms, &mut out);
                stats.slices.fetch_add(1, Ordering::Relaxed);
                a = b;
            }
            stats
                .compute_us
                .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
            start = end;
        }
        self.done_ms = Some(boundary);
        let t0 = Instant::now();
        self.current(boundary, now_ms, &mut out);
        stats
            .compute_us
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(Some(out))
    }

    /// Every input tag's series over `[from, to)`, with the sample before
    /// `from` (and the last known one, for counters), after [`hold`].
    fn load(
        &mut self,
        reader: &HistoryReader,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, SeriesBuf>, HistoryError> {
        let mut out = HashMap::with_capacity(self.tags.len());
        let value = |s: &drivers::Sample| {
            s.value
                .as_ref()
                .and_then(|v| v.as_f64())
                .filter(|_| s.quality.is_good())
        };
        for tag in &self.tags {
            let mut v: Vec<(i64, Option<f64>)> = Vec::new();
            if let Some((_, tail)) = self.tails.get(tag).filter(|t| t.0 == from) {
                v.extend_from_slice(tail);
            } else if let Some(prev) = reader.last_before(tag, from)? {
                // A counter counts on from its last known value and a state
                // change is judged from the last known state, however old.
                if value(&prev).is_none()
                    && let Some((ts, known)) = reader.last_known_before(tag, prev.ts.0)?
                {
                    v.push((ts, Some(known)));
                }
                v.push((prev.ts.0, value(&prev)));
            }
            v.extend(reader.numeric_range(tag, from, to)?);
            let mut tail: SeriesBuf = v
                .iter()
                .rev()
                .find(|p| p.1.is_some())
                .copied()
                .into_iter()
                .collect();
            if let Some(&last) = v.last()
                && tail.last() != Some(&last)
            {
                tail.push(last);
            }
            self.tails.insert(tag.clone(), (to, tail));
            out.insert(tag.clone(), hold(&v, self.max_hold_ms, to));
        }
        Ok(out)
    }

    fn add_slice(&mut self, start: i64, parts: Vec<Part>, now_ms: i64, out: &mut Vec<KpiResult>) {
        // Once per slice, not per KPI: time-zone arithmetic is not free.
        let [shift, day, week] = [CalendarKind::Shift, CalendarKind::Day, CalendarKind::Week]
            .map(|k| self.calendar.window_at(k, start));
        for (ki, k) in self.setup.kpis.iter().enumerate() {
            for (wi, w) in k.windows.iter().enumerate() {
                let cw = match w {
                    KpiWindow::Rolling(_) => continue,
                    KpiWindow::Calendar(CalendarKind::Shift) => &shift,
                    KpiWindow::Calendar(CalendarKind::Day) => &day,
                    KpiWindow::Calendar(CalendarKind::Week) => &week,
                };
                let slot = &mut self.open[ki][wi];
                match slot {
                    Some((open, _, _)) if open == cw => {}
                    _ => {
                        if let Some((open, sum, complete)) = slot.take()
                            && complete
                        {
                            out.push(result(k, w, &open, &sum, open.end_ms, true, now_ms));
                        }
                        let complete = cw.start_ms >= start;
                        *slot = Some((cw.clone(), Part::default(), complete));
                    }
                }
                let mut finished = false;
                if let Some((open, sum, complete)) = slot.as_mut() {
                    sum.add(&parts[ki]);
                    // The window's last slice: its final value is ready
                    // now, not when the next window's first slice comes
                    // (a whole slice later, an hour with `slice = "1h"`).
                    if start + self.slice_ms >= open.end_ms {
                        if *complete {
                            out.push(result(k, w, open, sum, open.end_ms, true, now_ms));
                        }
                        finished = true;
                    }
                }
                if finished {
                    *slot = None;
                }
            }
        }
        if self.ring_len > 0 {
            self.ring.push_back((start, parts));
            while self.ring.len() > self.ring_len {
                self.ring.pop_front();
            }
        }
    }

    fn current(&self, boundary: i64, now_ms: i64, out: &mut Vec<KpiResult>) {
        for (ki, k) in self.setup.kpis.iter().enumerate() {
            for (wi, w) in k.windows.iter().enumerate() {
                match w {
                    KpiWindow::Rolling(d) => {
                        let from = boundary - d.as_millis() as i64;
                        let mut sum = Part::default();
                        for (_, parts) in self.ring.iter().filter(|(s, _)| *s >= from) {
                            sum.add(&parts[ki]);
                        }
                        let cw = CalendarWindow {
                            start_ms: from,
                            end_ms: boundary,
                            label: String::new(),
                        };
                        out.push(result(k, w, &cw, &sum, boundary, false, now_ms));
                    }
                    KpiWindow::Calendar(_) => {
                        if let Some((cw, sum, _)) = &self.open[ki][wi] {
                            out.push(result(k, w, cw, sum, boundary, false, now_ms));
                        }
                    }
                }
            }
        }
    }
}

fn result(
    k: &firmware_config::KpiDef,
    w: &KpiWindow,
    cw: &CalendarWindow,
    sum: &Part,
    until_ms: i64,
    closed: bool,
    now_ms: i64,
) -> KpiResult {
    let v = evaluate(&k.kind, sum);
    KpiResult {
        kpi: k.name.clone(),
        window: w.label(),
        label: cw.label.clone(),
        start_ms: cw.start_ms,
        end_ms: cw.end_ms,
        until_ms: if closed { cw.end_ms } else { until_ms },
        closed,
        computed_ms: now_ms,
        coverage: v.coverage,
        quality: quality(v.quality),
        values: v.values,
        unit: k.unit.clone(),
    }
}

/// Store results (upsert per window) and, with sync, seal them into the
/// outbox in the same transaction. Rows older than `keep` are deleted.
pub fn store(
    conn: &mut Connection,
    results: &[KpiResult],
    outbox: Option<&OutboxPolicy>,
    now_ms: i64,
    keep: Duration,
) -> Result<Option<SealReport>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO kpis
             (kpi, win, start_ms, label, end_ms, until_ms, closed, computed_ms, coverage, quality, value, figures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for r in results {
            st.execute(params![
                r.kpi,
                r.window,
                r.start_ms,
                r.label,
                r.end_ms,
                r.until_ms,
                r.closed,
                r.computed_ms,
                r.coverage,
                r.quality.as_str(),
                r.values.first().and_then(|v| v.1).filter(|v| v.is_finite()),
                r.figures_json()
            ])?;
        }
        tx.execute(
            "DELETE FROM kpis WHERE computed_ms < ?1",
            [now_ms - keep.as_millis() as i64],
        )?;
    }
    let report = match outbox {
        Some(policy) if !results.is_empty() => {
            let body = Body::Kpis(results.to_vec());
            let report = queue_one(&tx, &body, policy, now_ms)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            Some(report)
        }
        _ => None,
    };
    tx.commit()?;
    Ok(report)
}

/// Per window label (`shift`, `day`, …), the latest end of a closed window
/// stored here.
pub fn closed_until(conn: &Connection) -> Result<HashMap<String, i64>, rusqlite::Error> {
    let mut st = conn.prepare("SELECT win, max(end_ms) FROM kpis WHERE closed = 1 GROUP BY win")?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// Whether the engine ran on this database before (any KPI row).
pub fn ran_before(conn: &Connection) -> Result<bool, rusqlite::Error> {
    conn.query_row("SELECT 1 FROM kpis LIMIT 1", [], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

/// The stored value of one window, for `apos-edge kpi` and tests:
/// One stored KPI window, for `apos-edge kpi` and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKpi {
    pub kpi: String,
    pub window: String,
    /// The calendar label (`2026-12-01 early`); empty for rolling windows.
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// How far the value is computed (the end, once closed).
    pub until_ms: i64,
    pub closed: bool,
    pub quality: String,
    pub coverage: f64,
    pub value: Option<f64>,
    /// Every figure, as JSON.
    pub figures: String,
}

/// Stored windows, newest first: each KPI's current windows and the last
/// `closed` closed ones.
pub fn stored(conn: &Connection, closed: usize) -> Result<Vec<StoredKpi>, rusqlite::Error> {
    let mut st = conn.prepare(
        "SELECT kpi, win, label, start_ms, end_ms, until_ms, closed, quality, coverage, value, figures FROM (
             SELECT *, row_number() OVER (PARTITION BY kpi, win, closed ORDER BY start_ms DESC) AS k
             FROM kpis)
         WHERE closed = 1 AND k <= ?1 OR closed = 0 AND k = 1
         ORDER BY kpi, win, start_ms DESC",
    )?;
    st.query_map([closed as i64], |r| {
        Ok(StoredKpi {
            kpi: r.get(0)?,
            window: r.get(1)?,
            label: r.get(2)?,
            start_ms: r.get(3)?,
            end_ms: r.get(4)?,
            until_ms: r.get(5)?,
            closed: r.get(6)?,
            quality: r.get(7)?,
            coverage: r.get(8)?,
            value: r.get(9)?,
            figures: r.get(10)?,
        })
    })?
    .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One tick: open the databases, advance, store, publish. Blocking.
fn tick(
    engine: &mut Engine,
    history: &std::path::Path,
    outbox: Option<&OutboxPolicy>,
    keep: Duration,
    board: &KpiBoard,
    stats: &KpiStats,
) -> Result<usize, String> {
    let now = now_ms();
    let boundary = engine.boundary(now);
    let reader = HistoryReader::open(history).map_err(|e| e.to_string())?;
    let mut conn = Connection::open(history).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // The clock went back, or jumped far ahead (an RTC set by NTP after a
    // cold start): start over from history instead of waiting for the old
    // time or computing empty days.
    if engine.must_restart(boundary) {
        tracing::warn!(
            from_ms = engine.done_ms,
            to_ms = boundary,
            "KPI engine: the clock jumped; recomputing from history"
        );
        engine.reset();
    }
    let from = if engine.done_ms.is_none() {
        let previous = ran_before(&conn).map_err(|e| e.to_string())?;
        let closed = closed_until(&conn).map_err(|e| e.to_string())?;
        let from = engine.backfill_from(boundary, &closed, previous);
        tracing::info!(
            kpis = engine.setup.kpis.len(),
            slices = (boundary - from) / engine.slice_ms,
            "KPI engine: computing from local history"
        );
        from
    } else {
        boundary
    };
    let t0 = Instant::now();
    let results = match engine.advance(&reader, from, boundary, now, stats) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(0),
        Err(e) => {
            // Part of the slices may be in the sums: start over from history.
            engine.reset();
            return Err(format!("cannot read the history: {e}"));
        }
    };
    let closed = results.iter().filter(|r| r.closed).count();
    match store(&mut conn, &results, outbox, now, keep) {
        Ok(Some(rep)) if rep.dropped > 0 => tracing::error!(
            dropped = rep.dropped,
            "ALARM outbox full: batches dropped while queueing KPI values"
        ),
        Ok(_) => {}
        Err(e) => {
            // Closed windows in `results` would be lost: recompute them.
            engine.reset();
            return Err(format!("cannot store KPI values: {e}"));
        }
    }
    for r in results.iter().filter(|r| r.closed) {
        tracing::info!(
            kpi = %r.kpi,
            window = %r.window,
            label = %r.label,
            value = r.values.first().and_then(|v| v.1),
            quality = r.quality.as_str(),
            coverage = r.coverage,
            "KPI window closed"
        );
    }
    stats
        .results
        .fetch_add(results.len() as u64, Ordering::Relaxed);
    stats
        .closed_windows
        .fetch_add(closed as u64, Ordering::Relaxed);
    board.set(&results);
    tracing::debug!(
        results = results.len(),
        took_ms = t0.elapsed().as_millis() as u64,
        "KPIs computed"
    );
    Ok(results.len())
}

/// Run until `cancel`: a tick every slice (just after its grace), and a new
/// engine when the KPI configuration changes (reload).
pub async fn run(
    mut config: watch::Receiver<Arc<EdgeConfig>>,
    history: PathBuf,
    outbox: Option<OutboxPolicy>,
    board: KpiBoard,
    stats: Arc<KpiStats>,
    cancel: CancellationToken,
) {
    let mut engine: Option<Engine> = None;
    let mut setup: Option<KpiSetup> = None;
    let mut keep;
    loop {
        {
            let cfg = config.borrow_and_update().clone();
            // KPI values live as long as the samples they come from.
            keep = cfg.storage.retention_age;
            if cfg.kpi != setup {
                setup = cfg.kpi.clone();
                engine = match setup.clone().map(Engine::new) {
                    Some(Ok(e)) => Some(e),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "KPI engine: cannot use the configuration");
                        None
                    }
                    None => None,
                };
                if let Some(s) = &setup {
                    tracing::info!(kpis = s.kpis.len(), slice = %humantime::format_duration(s.slice), time_zone = %s.calendar.time_zone, "KPI engine configured");
                }
            }
        }
        let wait = match &engine {
            Some(e) => {
                let slice = e.slice_ms;
                let grace = e.setup.grace.as_millis() as i64;
                let now = now_ms();
                let next = (now - grace).div_euclid(slice) * slice + slice + grace;
                Duration::from_millis((next - now).clamp(10, slice + grace) as u64 + 20)
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = config.changed() => {
                if r.is_err() {
                    break;
                }
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(mut e) = engine.take() else {
            continue;
        };
        let (h, b, st) = (history.clone(), board.clone(), stats.clone());
        let r = tokio::task::spawn_blocking(move || {
            let r = tick(&mut e, &h, outbox.as_ref(), keep, &b, &st);
            (e, r)
        })
        .await;
        match r {
            Ok((e, r)) => {
                if let Err(err) = r {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "KPI engine: this slice will be retried");
                }
                engine = Some(e);
            }
            Err(err) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %err, "KPI engine task failed; restarting from history");
                engine = setup.clone().and_then(|s| Engine::new(s).ok());
            }
        }
    }
}
