//! The transform stage between the drivers and storage.
//!
//! ```text
//! drivers ──[samples: bounded, BLOCKS when full]──▶ filter ──[stored: bounded, BLOCKS]──▶ history writer
//!                                                     │
//!                                                     ├──▶ live table (latest value per tag, for HMI/logs)
//!                                                     └──[alarm inputs: bounded, BLOCKS]──▶ alarm task
//! ```
//!
//! Both channels block rather than drop: if storage stalls, back-pressure
//! slows polling down instead of silently losing samples. Drivers notice
//! this as a longer cycle time, which is visible in their status.
//!
//! The filter stores a sample when its quality changes, when a numeric value
//! moves by more than the tag's deadband (any change when the deadband is
//! 0), when a non-numeric value changes, or when the tag has been silent for
//! [`HEARTBEAT`] — so that a flat signal still has points in its trend.
//!
//! Once a second it also sweeps the live table: a good value that was not
//! refreshed within [`STALE_INTERVALS`] poll intervals becomes
//! `Uncertain(Stale)` (and, being a quality change, is stored).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drivers::{Quality, Reason, Sample, TagName, Timestamp, Value};
use firmware_config::EdgeConfig;
use tokio::sync::{RwLock, mpsc, watch};

/// A flat value is still stored this often, so trends and later window
/// aggregates always have points.
pub const HEARTBEAT: Duration = Duration::from_secs(60);

/// A good value not refreshed for this many poll intervals is stale...
pub const STALE_INTERVALS: u32 = 3;
/// ...but never sooner than this (fast poll groups jitter).
pub const STALE_MIN: Duration = Duration::from_secs(2);

/// The aggregation side of the filter (with `[sync]`): every sample goes
/// into the aggregator; closed windows go to the history writer on a
/// bounded channel that blocks when full.
#[derive(Debug)]
pub struct AggregateStage {
    pub aggregator: crate::sync::aggregate::Aggregator,
    pub windows: mpsc::Sender<Vec<protocol::v1::WindowSet>>,
    pending: Vec<protocol::v1::WindowSet>,
}

impl AggregateStage {
    pub fn new(
        aggregator: crate::sync::aggregate::Aggregator,
        windows: mpsc::Sender<Vec<protocol::v1::WindowSet>>,
    ) -> Self {
        Self {
            aggregator,
            windows,
            pending: Vec::new(),
        }
    }
}

/// Per-tag settings the filter needs, rebuilt on every config (re)load.
#[derive(Debug, Clone, Default)]
pub struct FilterSettings {
    deadband: HashMap<String, f64>,
    stale_after: HashMap<String, Duration>,
    /// Tags an alarm reads (input or suppression condition): their samples
    /// go to the alarm task.
    alarm_tags: std::collections::HashSet<String>,
}

impl FilterSettings {
    pub fn from_config(cfg: &EdgeConfig) -> Self {
        Self {
            deadband: cfg
                .tags
                .iter()
                .map(|t| (t.name.clone(), t.deadband))
                .collect(),
            // Only polled tags: a subscribed OPC UA value that does not
            // change sends nothing, which means "unchanged", not "old"; its
            // driver reports a lost session as bad quality instead.
            stale_after: cfg
                .tags
                .iter()
                .filter(|t| {
                    t.opcua()
                        .is_none_or(|p| p.mode == firmware_config::OpcUaMode::Poll)
                })
                .map(|t| {
                    (
                        t.name.clone(),
                        (cfg.poll_interval_of(t) * STALE_INTERVALS).max(STALE_MIN),
                    )
                })
                .collect(),
            alarm_tags: cfg
                .alarms
                .iter()
                .flat_map(|a| {
                    std::iter::once(a.tag.clone())
                        .chain(a.suppress_when.as_ref().map(|s| s.0.clone()))
                })
                .collect(),
        }
    }
}

/// Good values in `live` that nobody refreshed in time (a hung driver, a
/// removed tag): the same value again, now `Uncertain(Stale)`, so the HMI
/// and the history show that the number is old instead of presenting it as
/// current. Tags the configuration no longer has are not reported.
pub fn stale_samples(
    live: &HashMap<TagName, Sample>,
    settings: &FilterSettings,
    now: Timestamp,
) -> Vec<Sample> {
    live.values()
        .filter(|s| s.quality.is_good())
        .filter_map(|s| {
            let limit = settings.stale_after.get(&*s.tag)?;
            let age = now.as_millis().saturating_sub(s.ts.as_millis());
            (age > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)).then(|| Sample {
                tag: s.tag.clone(),
                ts: now,
                value: s.value.clone(),
                quality: Quality::Uncertain(Reason::Stale),
            })
        })
        .collect()
}

/// Pipeline counters, cheap to read from any task.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub samples_in: AtomicU64,
    pub samples_stored: AtomicU64,
    pub samples_filtered: AtomicU64,
    pub batches_in: AtomicU64,
}

impl PipelineStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.samples_in.load(Ordering::Relaxed),
            self.samples_stored.load(Ordering::Relaxed),
            self.samples_filtered.load(Ordering::Relaxed),
        )
    }
}

/// Latest sample per tag, whatever the filter decided to store.
pub type LiveTable = Arc<RwLock<HashMap<TagName, Sample>>>;

#[derive(Debug)]
struct LastStored {
    sample: Sample,
}

/// Decide whether `new` must be stored given what was stored last.
fn should_store(last: Option<&LastStored>, new: &Sample, deadband: f64) -> bool {
    let Some(last) = last else { return true };
    let last = &last.sample;
    if last.quality != new.quality {
        return true;
    }
    if new.ts.as_millis() - last.ts.as_millis() >= HEARTBEAT.as_millis() as i64 {
        return true;
    }
    match (&last.value, &new.value) {
        (Some(Value::String(a)), Some(Value::String(b))) => a != b,
        (Some(a), Some(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if deadband > 0.0 => (x - y).abs() > deadband,
            // NaN never equals itself; store NaN only on the transition.
            (Some(x), Some(y)) => !(x == y || (x.is_nan() && y.is_nan())),
            _ => a != b,
        },
        (None, None) => false,
        _ => true,
    }
}

/// Keep a tag's samples apart in time. History is keyed by (tag,
/// millisecond), so a second sample in the same millisecond replaces the
/// first: a poll that reads a value Good and then fails later in the same
/// cycle would lose the Good value to the Bad marking. A sample that
/// differs from the previous one of its tag but carries the same
/// millisecond, or a bad marking (no value) stamped before it, is moved to
/// the millisecond after it: a marking is an event of "now" and follows
/// whatever came before. Good values with their own earlier source time
/// (out-of-order OPC UA deliveries) are left as they are.
fn order_after(prev: &Sample, s: &mut Sample) {
    let marking = s.value.is_none() && !s.quality.is_good();
    let same = prev.quality == s.quality && prev.value == s.value;
    if (s.ts == prev.ts && !same) || (s.ts < prev.ts && marking) {
        s.ts = Timestamp(prev.ts.as_millis().saturating_add(1));
    }
}

/// Run the filter stage until the input closes; then the output is dropped,
/// which lets the history writer flush and stop.
pub async fn run_filter(
    mut input: mpsc::Receiver<Vec<Sample>>,
    output: mpsc::Sender<Vec<Sample>>,
    mut settings: watch::Receiver<Arc<FilterSettings>>,
    live: LiveTable,
    stats: Arc<PipelineStats>,
    mut aggregate: Option<AggregateStage>,
    mut alarms: Option<mpsc::Sender<Vec<Sample>>>,
) {
    let mut last: HashMap<TagName, LastStored> = HashMap::new();
    let mut current = settings.borrow_and_update().clone();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            b = input.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = sweep.tick() => {
                if let Some(a) = aggregate.as_mut() {
                    let mut closed = Vec::new();
                    a.aggregator.close_until(Timestamp::now().as_millis(), &mut closed);
                    // Blocks when the writer is behind: windows are never dropped here.
                    if !closed.is_empty() && a.windows.send(closed).await.is_err() {
                        tracing::error!("history writer stopped; windows cannot be sealed");
                        aggregate = None;
                    }
                }
                let stale = stale_samples(&*live.read().await, &current, Timestamp::now());
                if stale.is_empty() {
                    continue;
                }
                tracing::warn!(tags = stale.len(), first = %stale[0].tag, "values not refreshed in time are now stale");
                stale
            }
        };
        if settings.has_changed().unwrap_or(false) {
            current = settings.borrow_and_update().clone();
        }
        let n = batch.len() as u64;
        stats.batches_in.fetch_add(1, Ordering::Relaxed);
        stats.samples_in.fetch_add(n, Ordering::Relaxed);
        let mut keep = Vec::with_capacity(batch.len());
        let mut to_alarms: Vec<Sample> = Vec::new();
        let mut batch = batch;
        {
            let mut live = live.write().await;
            for s in &mut batch {
                if let Some(prev) = live.get(&s.tag) {
                    order_after(prev, s);
                }
                live.insert(s.tag.clone(), s.clone());
            }
            if let Some(a) = aggregate.as_mut() {
                let mut closed = Vec::new();
                for s in &batch {
                    a.aggregator.push(s, &mut closed);
                }
                a.pending.extend(closed);
            }
            if !current.alarm_tags.is_empty() {
                to_alarms.extend(
                    batch
                        .iter()
                        .filter(|s| current.alarm_tags.contains(&*s.tag))
                        .cloned(),
                );
            }
            for s in batch {
                let db = current.deadband.get(&*s.tag).copied().unwrap_or(0.0);
                if should_store(last.get(&s.tag), &s, db) {
                    last.insert(s.tag.clone(), LastStored { sample: s.clone() });
                    keep.push(s);
                }
            }
        }
        stats
            .samples_filtered
            .fetch_add(n - keep.len() as u64, Ordering::Relaxed);
        // Every sample an alarm reads, not only the stored ones (a spike
        // inside the deadband of the history is still a spike). Blocks when
        // the alarm task is behind: alarm inputs are never dropped.
        if !to_alarms.is_empty()
            && let Some(tx) = &alarms
            && tx.send(to_alarms).await.is_err()
        {
            tracing::error!("the alarm task stopped; alarms are not evaluated any more");
            alarms = None;
        }
        if let Some(a) = aggregate.as_mut()
            && !a.pending.is_empty()
        {
            let closed = std::mem::take(&mut a.pending);
            if a.windows.send(closed).await.is_err() {
                aggregate = None;
            }
        }
        if keep.is_empty() {
            continue;
        }
        stats
            .samples_stored
            .fetch_add(keep.len() as u64, Ordering::Relaxed);
        if output.send(keep).await.is_err() {
            tracing::error!("history writer stopped; the pipeline cannot store samples any more");
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subscribed_opcua_tags_are_not_watched_for_staleness() {
        let cfg = firmware_config::load_str(
            std::path::Path::new("t.toml"),
            "schema_version = 1\n[node]\nsite_id = \"s\"\nnode_id = \"n\"\n\
             [[device]]\nname = \"mb\"\nprotocol = \"modbus-tcp\"\nhost = \"h\"\n\
             [[device]]\nname = \"ua\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://h:4840\"\n\
             [[tag]]\nname = \"m\"\ndevice = \"mb\"\narea = \"holding\"\naddress = 0\ntype = \"u16\"\n\
             [[tag]]\nname = \"sub\"\ndevice = \"ua\"\nnode = \"i=2258\"\n\
             [[tag]]\nname = \"poll\"\ndevice = \"ua\"\nnode = \"i=2259\"\nmode = \"poll\"\n",
        )
        .unwrap();
        let f = FilterSettings::from_config(&cfg);
        assert!(f.stale_after.contains_key("m"));
        assert!(f.stale_after.contains_key("poll"));
        assert!(
            !f.stale_after.contains_key("sub"),
            "no change is no news for a subscription"
        );
    }

    #[test]
    fn good_values_not_refreshed_in_time_become_stale() {
        let mut settings = FilterSettings::default();
        settings
            .stale_after
            .insert("fast".into(), Duration::from_secs(3));
        settings
            .stale_after
            .insert("slow".into(), Duration::from_secs(30));
        settings
            .stale_after
            .insert("bad".into(), Duration::from_secs(3));
        let mut live = HashMap::new();
        for (tag, q) in [
            ("fast", Quality::Good),
            ("slow", Quality::Good),
            ("bad", Quality::Bad(Reason::Timeout)),
            ("removed", Quality::Good),
        ] {
            live.insert(
                TagName::from(tag),
                Sample {
                    tag: tag.into(),
                    ts: Timestamp(10_000),
                    value: Some(Value::F64(1.5)),
                    quality: q,
                },
            );
        }
        assert!(stale_samples(&live, &settings, Timestamp(12_999)).is_empty());
        let stale = stale_samples(&live, &settings, Timestamp(13_001));
        assert_eq!(
            stale.len(),
            1,
            "only the fast tag is overdue; bad and unconfigured tags are not flagged"
        );
        assert_eq!(&*stale[0].tag, "fast");
        assert_eq!(stale[0].quality, Quality::Uncertain(Reason::Stale));
        assert_eq!(
            stale[0].value,
            Some(Value::F64(1.5)),
            "the last value, marked as old"
        );
        assert_eq!(stale[0].ts, Timestamp(13_001));
    }

    fn s(ts: i64, v: f64, q: Quality) -> Sample {
        Sample {
            tag: Arc::from("t"),
            ts: Timestamp(ts),
            value: Some(Value::F64(v)),
            quality: q,
        }
    }

    #[test]
    fn deadband_quality_and_heartbeat_decide_storage() {
        let last = LastStored {
            sample: s(0, 10.0, Quality::Good),
        };
        assert!(!should_store(
            Some(&last),
            &s(1000, 10.4, Quality::Good),
            0.5
        ));
        assert!(should_store(
            Some(&last),
            &s(1000, 10.6, Quality::Good),
            0.5
        ));
        assert!(should_store(Some(&last), &s(1000, 9.4, Quality::Good), 0.5));
        assert!(should_store(
            Some(&last),
            &s(1000, 10.0, Quality::Bad(Reason::Timeout)),
            0.5
        ));
        assert!(!should_store(
            Some(&last),
            &s(1000, 10.0, Quality::Good),
            0.0
        ));
        assert!(should_store(
            Some(&last),
            &s(1000, 10.000_001, Quality::Good),
            0.0
        ));
        assert!(should_store(
            Some(&last),
            &s(HEARTBEAT.as_millis() as i64, 10.0, Quality::Good),
            0.5
        ));
        assert!(should_store(None, &s(0, 1.0, Quality::Good), 0.5));
    }

    #[tokio::test]
    async fn a_marking_in_the_same_millisecond_never_replaces_a_good_value() {
        let (tx_in, rx_in) = mpsc::channel(4);
        let (tx_out, mut rx_out) = mpsc::channel(4);
        let (_set_tx, set_rx) = watch::channel(Arc::new(FilterSettings::default()));
        let task = tokio::spawn(run_filter(
            rx_in,
            tx_out,
            set_rx,
            LiveTable::default(),
            Arc::new(PipelineStats::default()),
            None,
            None,
        ));
        let bad = |ts| Sample {
            tag: Arc::from("t"),
            ts: Timestamp(ts),
            value: None,
            quality: Quality::Bad(Reason::Timeout),
        };
        // A poll read the tag Good, then failed in the same millisecond.
        tx_in
            .send(vec![s(1000, 7.0, Quality::Good), bad(1000)])
            .await
            .unwrap();
        // A marking stamped before the last value (a clock step) follows it.
        tx_in
            .send(vec![s(2000, 8.0, Quality::Good), bad(1990)])
            .await
            .unwrap();
        // The same reading re-sent is the same sample, not moved.
        tx_in
            .send(vec![
                s(3000, 9.0, Quality::Good),
                s(3000, 9.0, Quality::Good),
            ])
            .await
            .unwrap();
        drop(tx_in);
        let mut out = Vec::new();
        while let Some(b) = rx_out.recv().await {
            out.extend(b);
        }
        task.await.unwrap();
        let got: Vec<(i64, bool)> = out
            .iter()
            .map(|s| (s.ts.as_millis(), s.quality.is_good()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1000, true),
                (1001, false),
                (2000, true),
                (2001, false),
                (3000, true)
            ]
        );
    }

    #[tokio::test]
    async fn filter_passes_changes_and_counts_the_rest() {
        let (tx_in, rx_in) = mpsc::channel(4);
        let (tx_out, mut rx_out) = mpsc::channel(4);
        let mut settings = FilterSettings::default();
        settings.deadband.insert("t".into(), 1.0);
        let (_set_tx, set_rx) = watch::channel(Arc::new(settings));
        let live = LiveTable::default();
        let stats = Arc::new(PipelineStats::default());
        let task = tokio::spawn(run_filter(
            rx_in,
            tx_out,
            set_rx,
            live.clone(),
            stats.clone(),
            None,
            None,
        ));
        tx_in
            .send(vec![
                s(0, 1.0, Quality::Good),
                s(10, 1.5, Quality::Good),
                s(20, 2.5, Quality::Good),
            ])
            .await
            .unwrap();
        drop(tx_in);
        let out = rx_out.recv().await.unwrap();
        let values: Vec<_> = out.iter().map(|s| s.value.clone()).collect();
        assert_eq!(values, vec![Some(Value::F64(1.0)), Some(Value::F64(2.5))]);
        task.await.unwrap();
        assert_eq!(stats.snapshot(), (3, 2, 1));
        assert_eq!(
            live.read().await.get("t").unwrap().value,
            Some(Value::F64(2.5))
        );
    }
}
