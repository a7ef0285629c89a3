//! The edges' alarm journals across the fleet (newest first, in pages)
//! and their alarm-system health reports.

use std::collections::BTreeMap;

use duckdb::ToSql;
use serde::Serialize;
use utoipa::ToSchema;

use super::{HEALTH_HISTORY_MS, ONLY, only};
use crate::store::{Store, StoreError};

/// One alarm journal entry, as the edge wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlarmEntry {
    pub site: String,
    pub node: String,
    pub alarm: String,
    /// The alarm's own journal sequence number (1, 2, 3 … per alarm).
    pub aseq: u64,
    pub ts_ms: i64,
    /// `activated`, `cleared`, `acknowledged`, `shelved` …
    pub change: String,
    /// The ISA state after the change: `normal`, `unacknowledged`, …
    pub state: String,
    /// 1 (low) … 4 (urgent).
    pub priority: u8,
    pub value: Option<f64>,
    pub by_user: Option<String>,
    pub comment: Option<String>,
}

/// Where a page of alarms ended: the sort key of its last entry. The
/// alarm name enters as its MD5 so that the key stays short whatever the
/// name's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmKey {
    pub ts_ms: i64,
    pub site: String,
    pub node: String,
    pub alarm_md5: String,
    pub aseq: u64,
    pub seq: u64,
}

impl AlarmKey {
    /// Everything but `ts_ms`, as one string (site and node identifiers
    /// hold no spaces).
    pub fn tiebreak(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.site, self.node, self.alarm_md5, self.aseq, self.seq
        )
    }

    pub fn parse(ts_ms: i64, tiebreak: &str) -> Option<AlarmKey> {
        let mut p = tiebreak.split(' ');
        let key = AlarmKey {
            ts_ms,
            site: p.next()?.to_owned(),
            node: p.next()?.to_owned(),
            alarm_md5: p.next()?.to_owned(),
            aseq: p.next()?.parse().ok()?,
            seq: p.next()?.parse().ok()?,
        };
        (p.next().is_none() && key.alarm_md5.len() == 32).then_some(key)
    }
}

/// Which journal entries to list.
#[derive(Debug, Clone, Default)]
pub struct AlarmQuery {
    pub site: Option<String>,
    pub node: Option<String>,
    /// The current (newest) entry of every alarm not `normal`, instead of
    /// the history.
    pub active: bool,
    /// `ts_ms` at or after.
    pub from_ms: Option<i64>,
    /// `ts_ms` before.
    pub to_ms: Option<i64>,
    /// Entries after this one (in the newest-first order).
    pub after: Option<AlarmKey>,
    pub limit: usize,
}

/// One point of the alarm-rate sparkline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HealthPoint {
    pub ts_ms: i64,
    pub avg_per_10min: f64,
    pub peak_per_10min: u64,
}

/// A node's latest alarm-system health report (ISA-18.2 figures).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlarmHealth {
    pub site: String,
    pub node: String,
    pub ts_ms: i64,
    /// New alarms per 10 minutes, averaged over the edge's observed period.
    pub avg_per_10min: f64,
    pub peak_per_10min: u64,
    /// Share (0–1) of the period spent in flood.
    pub flood_share: f64,
    /// Share (0–1) of activations from the ten most frequent alarms.
    pub top10_share: f64,
    pub in_flood: bool,
    /// Alarms that activated 3 or more times in 60 s.
    pub chattering: Vec<String>,
    /// Alarms active for more than 24 hours.
    pub stale: Vec<String>,
    /// Every report of the last 7 days, oldest first.
    pub history: Vec<HealthPoint>,
}

fn names(joined: String) -> Vec<String> {
    if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(',').map(str::to_owned).collect()
    }
}

impl Store {
    /// A page of alarm journal entries, newest first, and the key of its
    /// last entry when more follow.
    pub fn alarm_page(
        &self,
        q: &AlarmQuery,
    ) -> Result<(Vec<AlarmEntry>, Option<AlarmKey>), StoreError> {
        let mut args: Vec<Box<dyn ToSql>> = only(q.site.as_deref(), q.node.as_deref())
            .into_iter()
            .map(|v| Box::new(v) as Box<dyn ToSql>)
            .collect();
        // The latest entry of each alarm must be chosen before any time
        // filter, so every filter but site/node applies outside.
        let current = if q.active {
            "QUALIFY row_number() OVER (PARTITION BY site, node, alarm
                                        ORDER BY aseq DESC, seq DESC) = 1"
        } else {
            ""
        };
        let mut outer = vec!["TRUE".to_string()];
        if q.active {
            outer.push("state <> 'normal'".into());
        }
        if let Some(f) = q.from_ms {
            outer.push("ts_ms >= ?".into());
            args.push(Box::new(f));
        }
        if let Some(t) = q.to_ms {
            outer.push("ts_ms < ?".into());
            args.push(Box::new(t));
        }
        if let Some(k) = &q.after {
            outer.push("(ts_ms, site, node, h, aseq, seq) < (?, ?, ?, ?, ?, ?)".into());
            args.push(Box::new(k.ts_ms));
            args.push(Box::new(k.site.clone()));
            args.push(Box::new(k.node.clone()));
            args.push(Box::new(k.alarm_md5.clone()));
            args.push(Box::new(k.aseq));
            args.push(Box::new(k.seq));
        }
        args.push(Box::new(q.limit as i64 + 1));
        let sql = format!(
            "SELECT site, node, alarm, aseq, ts_ms, change, state, priority, value, by_user,
                    comment, h, seq
             FROM (SELECT *, md5(alarm) AS h FROM alarms WHERE {ONLY} {current})
             WHERE {}
             ORDER BY ts_ms DESC, site DESC, node DESC, h DESC, aseq DESC, seq DESC
             LIMIT ?",
            outer.join(" AND ")
        );
        let mut st = self.conn.prepare(&sql)?;
        let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        let mut rows = st
            .query_map(refs.as_slice(), |r| {
                let e = AlarmEntry {
                    site: r.get(0)?,
                    node: r.get(1)?,
                    alarm: r.get(2)?,
                    aseq: r.get(3)?,
                    ts_ms: r.get(4)?,
                    change: r.get(5)?,
                    state: r.get(6)?,
                    priority: r.get(7)?,
                    value: r.get::<_, Option<f64>>(8)?.filter(|v| v.is_finite()),
                    by_user: r.get(9)?,
                    comment: r.get(10)?,
                };
                let k = AlarmKey {
                    ts_ms: e.ts_ms,
                    site: e.site.clone(),
                    node: e.node.clone(),
                    alarm_md5: r.get(11)?,
                    aseq: e.aseq,
                    seq: r.get(12)?,
                };
                Ok((e, k))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > q.limit;
        rows.truncate(q.limit);
        let next = if more {
            rows.last().map(|(_, k)| k.clone())
        } else {
            None
        };
        Ok((rows.into_iter().map(|(e, _)| e).collect(), next))
    }

    /// Each node's latest alarm-health report with its last 7 days of
    /// rates (before `now_ms`), by site and node.
    pub fn alarm_health(
        &self,
        site: Option<&str>,
        node: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<AlarmHealth>, StoreError> {
        let p = only(site, node);
        let mut st = self.conn.prepare(&format!(
            "SELECT site, node, ts_ms, avg_per_10min, peak_per_10min, flood_share, top10_share,
                    in_flood, chattering, stale
             FROM alarm_health WHERE {ONLY}
             QUALIFY row_number() OVER (PARTITION BY site, node ORDER BY ts_ms DESC, seq DESC) = 1
             ORDER BY site, node"
        ))?;
        let mut out: BTreeMap<(String, String), AlarmHealth> = st
            .query_map(duckdb::params_from_iter(p.iter()), |r| {
                let h = AlarmHealth {
                    site: r.get(0)?,
                    node: r.get(1)?,
                    ts_ms: r.get(2)?,
                    avg_per_10min: r.get(3)?,
                    peak_per_10min: r.get(4)?,
                    flood_share: r.get(5)?,
                    top10_share: r.get(6)?,
                    in_flood: r.get(7)?,
                    chattering: names(r.get(8)?),
                    stale: names(r.get(9)?),
                    history: Vec::new(),
                };
                Ok(((h.site.clone(), h.node.clone()), h))
            })?
            .collect::<Result<_, _>>()?;
        let mut st = self.conn.prepare(&format!(
            "SELECT site, node, ts_ms, avg_per_10min, peak_per_10min FROM alarm_health
             WHERE {ONLY} AND ts_ms >= ? AND ts_ms <= ?
             ORDER BY site, node, ts_ms"
        ))?;
        let mut args: Vec<&dyn ToSql> = p.iter().map(|v| v as &dyn ToSql).collect();
        let since = now_ms.saturating_sub(HEALTH_HISTORY_MS);
        args.push(&since);
        args.push(&now_ms);
        let mut rows = st.query(args.as_slice())?;
        while let Some(r) = rows.next()? {
            let key: (String, String) = (r.get(0)?, r.get(1)?);
            if let Some(h) = out.get_mut(&key) {
                h.history.push(HealthPoint {
                    ts_ms: r.get(2)?,
                    avg_per_10min: r.get(3)?,
                    peak_per_10min: r.get(4)?,
                });
            }
        }
        Ok(out.into_values().collect())
    }
}
