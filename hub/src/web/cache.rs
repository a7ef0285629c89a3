//! Answers cached until the data behind them changes. The store thread
//! announces every commit ([`Event`]), so these caches are exact, not a
//! time-to-live guess:
//!
//! - [`KpiCache`]: the KPI summary, the dashboards' and integrations' most
//!   frequent call; emptied by any commit of KPI values.
//! - [`SeriesCache`]: downsampled tag ranges; an answer is valid while no
//!   node it reads from has stored a new batch (a late window can land in
//!   any range, so every batch of the node counts). Many analysts on one
//!   chart, or a Grafana panel over a fixed range, then cost one query.
//!
//! A missed announcement (the listener lagged) empties both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events, NodeCause};

/// Most cached answers; the key comes from the query, so it is bounded.
const MAX_ENTRIES: usize = 1024;

type Key = (Option<String>, Option<String>);

/// Serialised KPI summaries by (site, node) filter.
#[derive(Debug, Default)]
pub struct KpiCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<Key, (u64, Bytes)>>,
}

impl KpiCache {
    /// The generation a read starts under: an answer read under an older
    /// one than the current is never stored.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &Key) -> Option<Bytes> {
        let now = self.generation();
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.get(key)
            .filter(|(gen_, _)| *gen_ == now)
            .map(|(_, b)| b.clone())
    }

    pub fn put(&self, key: Key, generation: u64, body: Bytes) {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if generation != self.generation() {
            return;
        }
        if g.len() >= MAX_ENTRIES {
            g.clear();
        }
        g.insert(key, (generation, body));
    }

    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Serialised answers that read given nodes' windows.
#[derive(Debug, Default)]
pub struct SeriesCache {
    /// Bumped when announcements were missed: everything is stale.
    epoch: AtomicU64,
    /// Per node, bumped by each stored batch.
    nodes: Mutex<HashMap<(String, String), u64>>,
    entries: Mutex<HashMap<String, (Stamp, Bytes)>>,
}

/// The generations an answer was read under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    nodes: Vec<u64>,
}

impl SeriesCache {
    /// The current generations of `nodes` (take it before reading).
    pub fn stamp(&self, nodes: &[(String, String)]) -> Stamp {
        let g = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            nodes: nodes
                .iter()
                .map(|n| g.get(n).copied().unwrap_or(0))
                .collect(),
        }
    }

    pub fn get(&self, key: &str, nodes: &[(String, String)]) -> Option<Bytes> {
        let now = self.stamp(nodes);
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.get(key)
            .filter(|(stamp, _)| *stamp == now)
            .map(|(_, b)| b.clone())
    }

    /// Keep `body` if nothing it read changed since `stamp` was taken.
    pub fn put(&self, key: String, nodes: &[(String, String)], stamp: Stamp, body: Bytes) {
        if self.stamp(nodes) != stamp {
            return;
        }
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_ENTRIES {
            g.clear();
        }
        g.insert(key, (stamp, body));
    }

    fn node_stored(&self, site: &str, node: &str) {
        let mut g = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded by the configured fleet: only signed batches get here.
        *g.entry((site.to_owned(), node.to_owned())).or_insert(0) += 1;
    }

    fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Keep both caches true to the store until `cancel`.
pub async fn follow(
    kpis: std::sync::Arc<KpiCache>,
    series: std::sync::Arc<SeriesCache>,
    events: Events,
    cancel: CancellationToken,
) {
    let mut rx = events.subscribe();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            e = rx.recv() => match e {
                Ok(Event::Kpis { .. }) => kpis.invalidate(),
                Ok(Event::Node { site, node, cause: NodeCause::Batch, .. }) => {
                    series.node_stored(&site, &node);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    kpis.invalidate();
                    series.invalidate();
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_answer_read_before_a_commit_is_never_served_after_it() {
        let c = KpiCache::default();
        let k: Key = (Some("s".into()), None);
        let g = c.generation();
        c.put(k.clone(), g, Bytes::from_static(b"old"));
        assert_eq!(c.get(&k).unwrap(), "old");
        // A read starts, a commit lands, the read finishes: not stored.
        let g = c.generation();
        c.invalidate();
        c.put(k.clone(), g, Bytes::from_static(b"stale"));
        assert!(c.get(&k).is_none());
    }

    #[tokio::test]
    async fn a_kpi_commit_empties_the_cache() {
        let c = std::sync::Arc::new(KpiCache::default());
        let events = crate::events::channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follow(
            c.clone(),
            Default::default(),
            events.clone(),
            cancel.clone(),
        ));
        tokio::task::yield_now().await;
        let k: Key = (None, None);
        c.put(k.clone(), c.generation(), Bytes::from_static(b"x"));
        let ev = Event::Kpis {
            site: "s".into(),
            node: "n".into(),
            items: vec![],
        };
        events.send(ev).unwrap();
        for _ in 0..100 {
            if c.get(&k).is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(c.get(&k).is_none());
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_series_answer_lives_until_one_of_its_nodes_stores_a_batch() {
        let c = SeriesCache::default();
        let a = ("s".to_string(), "a".to_string());
        let b = ("s".to_string(), "b".to_string());
        let both = [a.clone(), b.clone()];
        let st = c.stamp(&both);
        c.put("k".into(), &both, st, Bytes::from_static(b"x"));
        assert_eq!(c.get("k", &both).unwrap(), "x");
        // Another node's batch changes nothing here.
        c.node_stored("s", "other");
        assert!(c.get("k", &both).is_some());
        c.node_stored("s", "b");
        assert!(c.get("k", &both).is_none());
        // Read under the old generation, finished after a batch: not kept.
        let st = c.stamp(&both);
        c.node_stored("s", "a");
        c.put("k".into(), &both, st, Bytes::from_static(b"stale"));
        assert!(c.get("k", &both).is_none());
        let st = c.stamp(&both);
        c.put("k".into(), &both, st, Bytes::from_static(b"y"));
        c.invalidate();
        assert!(c.get("k", &both).is_none());
    }
}
