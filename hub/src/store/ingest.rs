//! Storing batches: one DuckDB transaction per group of whole batches,
//! appenders per table, dedup on `(site, node, seq)`.

use std::collections::{BTreeMap, HashSet};

use duckdb::{OptionalExt, params};
use protocol::v1::Body;

use super::{Incoming, IngestReport, MAX_TX_WINDOWS, Store, StoreError, forecast, registry};

impl Store {
    /// Store the batches not stored before. Transactions hold whole
    /// batches and at most [`MAX_TX_WINDOWS`] windows (one batch may exceed
    /// it alone): DuckDB 1.2 can fail a larger transaction with "INTERNAL
    /// Error: Partially optimistically written data" and then invalidates
    /// the database (see the test `a_backlog_larger_than_a_row_group_is_stored`).
    /// On error, batches of earlier transactions of this call are stored;
    /// the caller retries all and they come back as duplicates.
    pub fn ingest(&mut self, items: &[Incoming]) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut windows = 0;
            while end < items.len() {
                let n = items[end].batch.windows();
                if end > start && windows + n > MAX_TX_WINDOWS {
                    break;
                }
                windows += n;
                end += 1;
            }
            let r = self.ingest_tx(&items[start..end])?;
            report.new_batches += r.new_batches;
            report.duplicates += r.duplicates;
            report.forecasts += r.forecasts;
            report.kpis += r.kpis;
            report.windows += r.windows;
            report.lost_spans += r.lost_spans;
            report.alarm_events += r.alarm_events;
            report.audit_entries += r.audit_entries;
            report.forecast_quality += r.forecast_quality;
            report.fresh.extend(r.fresh.iter().map(|i| i + start));
            for (k, seqs) in r.committed {
                report.committed.entry(k).or_default().extend(seqs);
            }
            start = end;
        }
        Ok(report)
    }

    fn ingest_tx(&mut self, items: &[Incoming]) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let tx = self.conn.transaction()?;
        let mut seen: HashSet<(&str, &str, u64)> = HashSet::new();
        let mut fresh: Vec<&Incoming> = Vec::new();
        {
            let mut exists =
                tx.prepare("SELECT 1 FROM batches WHERE site = ? AND node = ? AND seq = ?")?;
            for (i, it) in items.iter().enumerate() {
                let key = (it.site.as_str(), it.node.as_str(), it.batch.seq);
                let dup = !seen.insert(key)
                    || exists
                        .query_row(params![it.site, it.node, it.batch.seq], |_| Ok(()))
                        .optional()?
                        .is_some();
                if dup {
                    report.duplicates += 1;
                } else {
                    fresh.push(it);
                    report.fresh.push(i);
                }
                report
                    .committed
                    .entry((it.site.clone(), it.node.clone()))
                    .or_default()
                    .push(it.batch.seq);
            }
        }
        {
            let mut batches = tx.appender("batches")?;
            // Named columns: the rest (`source`, set only by imports) stay NULL.
            let mut aggs = tx.appender_with_columns("aggregates", super::imported::EDGE_COLUMNS)?;
            let mut fcs = tx.appender("forecasts")?;
            let mut kpis = tx.appender("kpis")?;
            let mut lost = tx.appender("lost")?;
            let mut alarms = tx.appender("alarms")?;
            let mut audit = tx.appender("audit")?;
            let mut health = tx.appender("alarm_health")?;
            let mut quality = tx.appender("forecast_quality")?;
            for it in &fresh {
                let mut n = 0i32;
                let mut n_other = 0i32;
                let sets: &[protocol::v1::WindowSet] = match &it.batch.body {
                    Body::Aggregates(sets) => sets,
                    Body::Forecasts(list) => {
                        for f in list {
                            fcs.append_row(params![
                                it.site,
                                it.node,
                                f.model,
                                f.version,
                                f.tag,
                                f.origin_ms,
                                f.step_ms,
                                f.made_ms,
                                values_json(&f.values),
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.forecasts += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::Kpis(list) => {
                        for k in list {
                            kpis.append_row(params![
                                it.site,
                                it.node,
                                k.kpi,
                                k.window,
                                k.label,
                                k.start_ms,
                                k.end_ms,
                                k.until_ms,
                                k.closed,
                                k.computed_ms,
                                k.coverage,
                                k.quality.as_str(),
                                k.values.first().and_then(|v| v.1),
                                k.figures_json(),
                                k.unit,
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.kpis += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::Lost(list) => {
                        for l in list {
                            lost.append_row(params![
                                it.site,
                                it.node,
                                l.width_ms,
                                l.from_ms,
                                l.to_ms,
                                l.reason,
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.lost_spans += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::Alarms(list) => {
                        for a in list {
                            alarms.append_row(params![
                                it.site,
                                it.node,
                                a.alarm,
                                a.seq,
                                a.ts_ms,
                                a.change,
                                a.state,
                                a.priority,
                                a.value,
                                a.by,
                                a.comment,
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.alarm_events += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::Audit(list) => {
                        for a in list {
                            audit.append_row(params![
                                it.site,
                                it.node,
                                a.seq,
                                a.ts_ms,
                                a.actor,
                                a.action,
                                a.target,
                                a.detail,
                                a.addr,
                                a.hash,
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.audit_entries += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::AlarmHealth(list) => {
                        for h in list {
                            health.append_row(params![
                                it.site,
                                it.node,
                                h.ts_ms,
                                h.avg_per_10min,
                                h.peak_per_10min,
                                h.flood_share,
                                h.top10_share,
                                h.in_flood,
                                h.chattering.join(","),
                                h.stale.join(","),
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        n_other = list.len() as i32;
                        &[]
                    }
                    Body::ForecastQuality(list) => {
                        for q in list {
                            quality.append_row(params![
                                it.site,
                                it.node,
                                q.model,
                                q.version,
                                q.tag,
                                q.origin_ms,
                                q.scored_ms,
                                q.step_ms,
                                q.horizon,
                                q.mae,
                                q.mape,
                                q.n,
                                forecast::explanation_json(&q.explanation),
                                it.batch.seq
                            ])?;
                            n += 1;
                        }
                        report.forecast_quality += list.len() as u64;
                        n_other = list.len() as i32;
                        &[]
                    }
                };
                for set in sets {
                    for w in &set.windows {
                        let f = |v: f64| (!v.is_nan()).then_some(v);
                        aggs.append_row(params![
                            it.site,
                            it.node,
                            w.tag,
                            set.width_ms,
                            set.start_ms,
                            w.count,
                            w.good,
                            f(w.min),
                            f(w.max),
                            f(w.mean),
                            f(w.twa),
                            f(w.last),
                            it.batch.seq
                        ])?;
                        n += 1;
                    }
                }
                report.windows += (n - n_other) as u64;
                batches.append_row(params![
                    it.site,
                    it.node,
                    it.batch.seq,
                    it.batch.created_ms,
                    it.received_ms,
                    n
                ])?;
                report.new_batches += 1;
            }
            aggs.flush()?;
            fcs.flush()?;
            kpis.flush()?;
            lost.flush()?;
            alarms.flush()?;
            quality.flush()?;
            batches.flush()?;
        }
        // Last seen moves for new batches only: a replayed one proves
        // nothing about the node being alive.
        let mut seen: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for it in &fresh {
            let t = seen.entry((&it.site, &it.node)).or_insert(it.received_ms);
            *t = (*t).max(it.received_ms);
        }
        for ((site, node), now) in seen {
            registry::touch(&tx, site, node, now)?;
        }
        tx.commit()?;
        Ok(report)
    }
}

/// A forecast's values as a JSON array (NaN, which JSON lacks, as null).
fn values_json(v: &[f64]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|x| {
            if x.is_finite() {
                format!("{x}")
            } else {
                "null".into()
            }
        })
        .collect();
    format!("[{}]", parts.join(","))
}
