//! Answers cached until the data behind them changes: the KPI summary is
//! the dashboards' and integrations' most frequent call, and KPI values
//! change only when the store thread commits new ones, which it announces
//! ([`Event::Kpis`]). So the cache is exact, not a time-to-live guess: a
//! commit of KPI values (or a missed announcement, when the listener lags)
//! empties it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events};

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

    /// Empty the cache on every KPI commit until `cancel`.
    pub async fn follow(self: std::sync::Arc<Self>, events: Events, cancel: CancellationToken) {
        let mut rx = events.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                e = rx.recv() => match e {
                    Ok(Event::Kpis { .. }) | Err(RecvError::Lagged(_)) => self.invalidate(),
                    Ok(_) => {}
                    Err(RecvError::Closed) => return,
                },
            }
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
        let task = tokio::spawn(c.clone().follow(events.clone(), cancel.clone()));
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
}
