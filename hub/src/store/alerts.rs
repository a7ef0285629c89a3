//! What the alert rules read (`crate::alert`): a few grouped queries per
//! evaluation, whatever the fleet's size, never a query per node.

use std::collections::BTreeMap;

use duckdb::params;

use super::{Store, StoreError};
use crate::alert::NodeFacts;

impl Store {
    /// Every node stored or `configured`, with what the alert rules look
    /// at; `kpis` lists (kpi, window, n): the newest `n` closed windows.
    pub fn alert_facts(
        &self,
        configured: &[(String, String)],
        kpis: &[(String, String, u32)],
        now_ms: i64,
    ) -> Result<Vec<NodeFacts>, StoreError> {
        let mut out: BTreeMap<(String, String), NodeFacts> = configured
            .iter()
            .map(|(s, n)| {
                (
                    (s.clone(), n.clone()),
                    NodeFacts {
                        site: s.clone(),
                        node: n.clone(),
                        ..NodeFacts::default()
                    },
                )
            })
            .collect();
        for r in self.nodes()? {
            let f = out
                .entry((r.site.clone(), r.node.clone()))
                .or_insert_with(|| NodeFacts {
                    site: r.site.clone(),
                    node: r.node.clone(),
                    ..NodeFacts::default()
                });
            f.last_seen_ms = Some(r.last_seen_ms);
            f.outbox_batches = r.outbox_batches;
            f.missing = r.missing;
        }
        let mut st = self.conn.prepare(
            "SELECT site, node, in_flood FROM alarm_health
             QUALIFY row_number() OVER (PARTITION BY site, node ORDER BY ts_ms DESC, seq DESC) = 1",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        for row in rows {
            let (s, n, flood) = row?;
            if let Some(f) = out.get_mut(&(s, n)) {
                f.in_flood = Some(flood);
            }
        }
        let mut st = self.conn.prepare(
            "SELECT site, node, count(*)::UBIGINT FROM alarms
             WHERE change = 'activated' AND ts_ms > ? GROUP BY ALL",
        )?;
        let rows = st.query_map(params![now_ms.saturating_sub(600_000)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        for row in rows {
            let (s, n, count) = row?;
            if let Some(f) = out.get_mut(&(s, n)) {
                f.activations_10min = count;
            }
        }
        let mut st = self.conn.prepare(
            "SELECT site, node, value FROM kpi_latest WHERE kpi = ? AND win = ? AND closed
             QUALIFY row_number() OVER (PARTITION BY site, node ORDER BY start_ms DESC) <= ?
             ORDER BY site, node, start_ms DESC",
        )?;
        for (kpi, win, n) in kpis {
            let rows = st.query_map(params![kpi, win, n], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                ))
            })?;
            for row in rows {
                let (s, n, v) = row?;
                if let Some(f) = out.get_mut(&(s, n)) {
                    f.kpis
                        .entry((kpi.clone(), win.clone()))
                        .or_default()
                        .push(v.filter(|v| v.is_finite()));
                }
            }
        }
        Ok(out.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use protocol::v1::{AlarmEvent, AlarmHealth, Batch, Body, KpiQuality, KpiResult};

    use super::*;
    use crate::store::Incoming;
    use crate::store::tests::incoming;

    fn with(node: &str, seq: u64, body: Body) -> Incoming {
        let mut i = incoming(node, seq, 1);
        i.batch = Batch {
            seq,
            created_ms: 0,
            body,
        };
        i
    }

    fn kpi(start_ms: i64, closed: bool, v: Option<f64>) -> KpiResult {
        KpiResult {
            kpi: "oee".into(),
            window: "5m".into(),
            label: String::new(),
            start_ms,
            end_ms: start_ms + 300_000,
            until_ms: start_ms + 300_000,
            closed,
            computed_ms: start_ms + 300_000,
            coverage: 1.0,
            quality: KpiQuality::Good,
            values: vec![("oee".into(), v)],
            unit: None,
        }
    }

    fn alarm(seq: u64, ts_ms: i64, change: &str) -> AlarmEvent {
        AlarmEvent {
            alarm: format!("a{seq}"),
            seq,
            ts_ms,
            change: change.into(),
            state: "unacknowledged".into(),
            priority: 2,
            value: None,
            by: None,
            comment: None,
        }
    }

    fn health(ts_ms: i64, in_flood: bool) -> AlarmHealth {
        AlarmHealth {
            ts_ms,
            avg_per_10min: 1.0,
            peak_per_10min: 1,
            flood_share: 0.0,
            top10_share: 0.0,
            in_flood,
            chattering: vec![],
            stale: vec![],
        }
    }

    #[test]
    fn facts_come_from_grouped_queries_per_node() {
        let mut s = Store::open_in_memory().unwrap();
        let now = 10_000_000;
        s.ingest(&[
            incoming("a", 1, 1),
            incoming("a", 4, 1),
            with(
                "a",
                2,
                Body::Kpis(vec![
                    kpi(0, true, Some(0.5)),
                    kpi(300_000, true, None),
                    kpi(600_000, true, Some(0.4)),
                    // Open: not counted.
                    kpi(900_000, false, Some(0.9)),
                ]),
            ),
            with(
                "b",
                1,
                Body::Alarms(vec![
                    alarm(1, now - 60_000, "activated"),
                    alarm(2, now - 30_000, "activated"),
                    alarm(3, now - 20_000, "acknowledged"),
                    // Older than 10 minutes.
                    alarm(4, now - 700_000, "activated"),
                ]),
            ),
            with("b", 2, Body::AlarmHealth(vec![health(1, true)])),
            with("b", 3, Body::AlarmHealth(vec![health(2, false)])),
        ])
        .unwrap();
        let configured = [("s".to_string(), "c".to_string())];
        let need = [("oee".to_string(), "5m".to_string(), 2)];
        let f = s.alert_facts(&configured, &need, now).unwrap();
        let by = |n: &str| f.iter().find(|x| x.node == n).unwrap();
        let a = by("a");
        assert_eq!(a.missing, 1, "seq 3 missing");
        assert!(a.last_seen_ms.is_some());
        assert_eq!(
            a.kpis[&("oee".to_string(), "5m".to_string())],
            vec![Some(0.4), None]
        );
        let b = by("b");
        assert_eq!((b.activations_10min, b.in_flood), (2, Some(false)));
        // Configured, never heard from.
        let c = by("c");
        assert_eq!((c.last_seen_ms, c.in_flood), (None, None));
    }
}
