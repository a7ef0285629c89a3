//! Version 1 payloads. Encoded with postcard (see `docs/protocol.md` for
//! why); every type also serializes to JSON for the debug view.
//!
//! Compatibility rule inside v1: new `Body` variants may be appended (an
//! older hub refuses and counts them, the edge keeps them until a newer hub
//! acknowledges); fields are never added, removed or reordered.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Edge → hub: one outbox entry, on `apos/v1/{site}/{node}/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The node's sequence number: 1, 2, 3, … with no gaps, kept across
    /// restarts. The hub deduplicates on (site, node, seq).
    pub seq: u64,
    /// When the edge sealed the batch, ms since the Unix epoch.
    pub created_ms: i64,
    pub body: Body,
}

impl Batch {
    /// Rows this batch becomes in a store (windows, for aggregates).
    pub fn windows(&self) -> usize {
        match &self.body {
            Body::Aggregates(sets) => sets.iter().map(|s| s.windows.len()).sum(),
            Body::Forecasts(f) => f.len(),
            Body::Kpis(k) => k.len(),
            Body::Lost(l) => l.len(),
            Body::Alarms(a) => a.len(),
            Body::Audit(a) => a.len(),
            Body::AlarmHealth(h) => h.len(),
            Body::ForecastQuality(q) => q.len(),
        }
    }
}

/// What a batch carries. Later issues (KPIs, forecasts, alarms) append
/// variants and travel the same path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// Closed aggregation windows: one [`WindowSet`] per window width and
    /// start that closed.
    Aggregates(Vec<WindowSet>),
    /// Forecasts made on the edge (added in v1 as the second variant: old
    /// batches decode unchanged).
    Forecasts(Vec<Forecast>),
    /// KPI values computed on the edge (third variant).
    Kpis(Vec<KpiResult>),
    /// Windows the edge knows it never recorded (fourth variant): so the
    /// hub shows the hole instead of nothing.
    Lost(Vec<LostSpan>),
    /// Alarm journal entries (fifth variant): every change of an alarm's
    /// state, in the order the edge journaled them.
    Alarms(Vec<AlarmEvent>),
    /// Audit log entries (sixth variant): logins, operator actions, user
    /// changes and configuration reloads, with the edge's chain hash, so
    /// the hub holds a witness of the edge's log.
    Audit(Vec<AuditRecord>),
    /// Alarm-system health figures (seventh variant), every 10 minutes.
    AlarmHealth(Vec<AlarmHealth>),
    /// How forecasts turned out (eighth variant, number 7): one entry per
    /// forecast the edge scored, queued in the transaction that marks it
    /// scored.
    ForecastQuality(Vec<ForecastQuality>),
}

/// One scored forecast: its errors against the actual values the edge
/// recorded afterwards (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastQuality {
    pub model: String,
    pub version: String,
    /// The forecast tag (the model's target).
    pub tag: String,
    /// The scored forecast's origin: its first value is for this time.
    pub origin_ms: i64,
    /// When the edge scored it (and made the explanation).
    pub scored_ms: i64,
    pub step_ms: i64,
    /// Leads 1 … `horizon` steps are averaged (the forecast's length).
    pub horizon: u32,
    /// Mean absolute error over the `n` steps with an actual value, in the
    /// tag's units; none when no step had one.
    pub mae: Option<f64>,
    /// Mean absolute percentage error (%), over the steps whose actual is
    /// not zero; none when there are none.
    pub mape: Option<f64>,
    /// Steps scored: those with an actual value (at most `horizon`).
    pub n: u32,
    /// The model's explanation at `scored_ms`: (feature, contribution in
    /// the tag's units, averaged over the horizon), largest first, at most
    /// 64. Empty except in the last entry of a batch: one explanation per
    /// scoring pass is enough.
    pub explanation: Vec<(String, f64)>,
}

/// An edge's alarm-system figures after EEMUA 191 / ISA-18.2 at `ts_ms`
/// (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmHealth {
    pub ts_ms: i64,
    /// New alarms per 10 minutes, averaged over the observed period.
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
}

/// One entry of an edge's hash-chained audit log (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The entry's number in the edge's log: 1, 2, 3 …
    pub seq: u64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub addr: String,
    /// SHA-256 of the entry and its predecessor's hash (lowercase hex).
    pub hash: String,
}

/// One change of one alarm (ISA-18.2 / OPC UA Part 9 flags; docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEvent {
    pub alarm: String,
    /// The alarm's journal sequence number: 1, 2, 3, … per alarm, kept
    /// across restarts.
    pub seq: u64,
    pub ts_ms: i64,
    /// What changed: `activated`, `cleared`, `realarmed`, `acknowledged`,
    /// `unlatched`, `shelved`, `unshelved`, `suppressed`, `unsuppressed`,
    /// `out_of_service`, `in_service`.
    pub change: String,
    /// The ISA state after it: `normal`, `unacknowledged`, `acknowledged`,
    /// `returned_unacknowledged`, `shelved`, `suppressed`, `out_of_service`.
    pub state: String,
    /// 1 (low) … 4 (urgent).
    pub priority: u8,
    pub value: Option<f64>,
    /// Who did it (acknowledge, shelve …); none for the process's own changes.
    pub by: Option<String>,
    pub comment: Option<String>,
}

/// A stretch with no windows of one width: every window starting in
/// `from_ms .. to_ms` was never sealed (the edge was stopped, or killed
/// while it could not store them). Found when the edge seals its first
/// windows after a start; `reason` says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostSpan {
    pub width_ms: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub reason: String,
}

/// One KPI over one window. The edge re-sends a window's value as it
/// grows (the current shift, the last hour); the receiver keeps the one
/// with the latest `computed_ms` per (kpi, window, start_ms). `closed`
/// marks a calendar window that is over: its value is final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiResult {
    pub kpi: String,
    /// `1h`, `15m`, … (rolling) or `shift`, `day`, `week` (calendar).
    pub window: String,
    /// E.g. `2026-12-01 early`, `week of 2026-11-30`; empty for rolling.
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The time the value covers so far: `end_ms` when closed.
    pub until_ms: i64,
    pub closed: bool,
    pub computed_ms: i64,
    /// Fraction of the window's time whose inputs were known, 0–1.
    pub coverage: f64,
    pub quality: KpiQuality,
    /// The headline figure first (e.g. `oee`), then its parts; `None`
    /// where the figure is undefined (e.g. no planned time).
    pub values: Vec<(String, Option<f64>)>,
    pub unit: Option<String>,
}

impl KpiResult {
    /// The figures as a JSON object (`null` where undefined), as both
    /// stores keep them.
    pub fn figures_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|(k, x)| {
                let x = x
                    .filter(|x| x.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number);
                (k.clone(), x)
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// How far a KPI value can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KpiQuality {
    Good,
    /// Some input time unknown or samples bad; the value uses what is known.
    Uncertain,
    /// Not computable, or too little known (coverage below 80 %).
    Bad,
}

impl KpiQuality {
    pub fn as_str(&self) -> &'static str {
        match self {
            KpiQuality::Good => "good",
            KpiQuality::Uncertain => "uncertain",
            KpiQuality::Bad => "bad",
        }
    }
}

/// One forecast of one model: `values[k]` is the forecast for
/// `origin_ms + k * step_ms`, in the tag's engineering units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub model: String,
    pub version: String,
    pub tag: String,
    pub origin_ms: i64,
    pub step_ms: i64,
    /// When the edge made it.
    pub made_ms: i64,
    pub values: Vec<f64>,
}

/// Every tag's statistics over one window `[start_ms, start_ms + width_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSet {
    pub width_ms: u32,
    pub start_ms: i64,
    pub windows: Vec<Window>,
}

/// One tag over one window. `count` counts every sample seen in the window
/// (any quality); the statistics are over the `good` ones, with numeric
/// values. When `good == 0` the statistics are NaN and mean "no value".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub tag: String,
    pub count: u32,
    pub good: u32,
    pub min: f64,
    pub max: f64,
    /// Arithmetic mean of the good samples.
    pub mean: f64,
    /// Time-weighted mean: each good value holds until the next sample (or
    /// the window's end); time under a bad quality is left out.
    pub twa: f64,
    /// The last good value in the window.
    pub last: f64,
}

impl Window {
    /// Fraction of samples with good quality, 0…1.
    pub fn good_fraction(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            f64::from(self.good) / f64::from(self.count)
        }
    }
}

/// Hub → edge, on `apos/v1/{site}/{node}/ack`: sequence numbers the hub has
/// durably committed (duplicates included: they were committed before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Inclusive ranges, ascending, not overlapping.
    pub ranges: Vec<SeqRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

impl Ack {
    /// Collapse sequence numbers into ranges.
    pub fn from_seqs(mut seqs: Vec<u64>) -> Ack {
        seqs.sort_unstable();
        seqs.dedup();
        let mut ranges: Vec<SeqRange> = Vec::new();
        for s in seqs {
            match ranges.last_mut() {
                Some(r) if r.last + 1 == s => r.last = s,
                _ => ranges.push(SeqRange { first: s, last: s }),
            }
        }
        Ack { ranges }
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .iter()
            .any(|r| (r.first..=r.last).contains(&seq))
    }

    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|r| r.first..=r.last)
    }
}

/// Edge → hub, on `apos/v1/{site}/{node}/status`: the node's own view,
/// for the fleet registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub ts_ms: i64,
    pub software_version: String,
    pub started_ms: i64,
    /// Unacknowledged batches and their size.
    pub outbox_batches: u64,
    pub outbox_bytes: u64,
    /// Creation time of the oldest unacknowledged batch.
    pub oldest_unacked_ms: Option<i64>,
    /// Highest sequence number sealed so far.
    pub last_seq: u64,
    /// Batches dropped because the outbox was full, since the node's
    /// outbox was created.
    pub dropped_batches: u64,
}

/// Any v1 message, as decoded from an envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Batch(Batch),
    Ack(Ack),
    Status(Status),
}

impl Message {
    pub fn kind(&self) -> crate::Kind {
        match self {
            Message::Batch(_) => crate::Kind::Batch,
            Message::Ack(_) => crate::Kind::Ack,
            Message::Status(_) => crate::Kind::Status,
        }
    }

    /// The human-readable debug view.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("<{e}>"))
    }
}

/// A fingerprint of one stored window, the same on both sides: the edge
/// computes it over what it produced, the hub over what it stored, and the
/// fault tests compare the sums ([`Checksum`]).
pub fn window_digest(site: &str, node: &str, width_ms: u32, start_ms: i64, w: &Window) -> u64 {
    let mut h = Sha256::new();
    for s in [site, node, &w.tag] {
        h.update((s.len() as u32).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.update(width_ms.to_le_bytes());
    h.update(start_ms.to_le_bytes());
    h.update(w.count.to_le_bytes());
    h.update(w.good.to_le_bytes());
    for f in [w.min, w.max, w.mean, w.twa, w.last] {
        // NaN has many bit patterns; all mean "no value".
        let bits = if f.is_nan() { u64::MAX } else { f.to_bits() };
        h.update(bits.to_le_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// An order-independent checksum of a set of windows: their number and the
/// wrapping sum of their digests. Equal checksums mean the same multiset of
/// windows (with overwhelming probability); a duplicate or a loss changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    pub windows: u64,
    pub sum: u64,
}

impl Checksum {
    pub fn add(&mut self, digest: u64) {
        self.windows += 1;
        self.sum = self.sum.wrapping_add(digest);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn w(tag: &str, v: f64) -> Window {
        Window {
            tag: tag.into(),
            count: 10,
            good: 9,
            min: v - 1.0,
            max: v + 1.0,
            mean: v,
            twa: v,
            last: v,
        }
    }

    pub(crate) fn quality() -> ForecastQuality {
        ForecastQuality {
            model: "etth1-ot".into(),
            version: "1.0.0".into(),
            tag: "OT".into(),
            origin_ms: 1_800_000_000_000,
            scored_ms: 1_800_400_000_000,
            step_ms: 3_600_000,
            horizon: 96,
            mae: Some(0.75),
            mape: None,
            n: 95,
            explanation: vec![("OT[t-1]".into(), 1.25), ("hour_sin".into(), -0.5)],
        }
    }

    #[test]
    fn forecast_quality_round_trips_as_variant_7() {
        let b = Batch {
            seq: 9,
            created_ms: 1_800_400_000_000,
            body: Body::ForecastQuality(vec![quality()]),
        };
        let topic = crate::Topic::new("s", "n", crate::Kind::Batch).unwrap();
        let key = crate::NodeKey::new(b"0123456789abcdef").unwrap();
        let m = Message::Batch(b.clone());
        let sealed = crate::envelope::seal(&topic, &m, &key).unwrap();
        let opened = crate::envelope::open(&topic, &sealed, &key, 1 << 20).unwrap();
        assert_eq!(opened, m);
        assert_eq!(b.windows(), 1);
        // Appended, never inserted: the body's tag is its position (7), so
        // every older variant keeps its encoding.
        let body = postcard::to_stdvec(&b.body).unwrap();
        assert_eq!(body[0], 7);
        let older = postcard::to_stdvec(&Body::Lost(vec![])).unwrap();
        assert_eq!(older, vec![3, 0]);
        // A hub built before variant 7 cannot decode it: it refuses the
        // batch (counted as malformed) and never acknowledges it, so the
        // edge keeps it until a newer hub takes it.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum OldBody {
            Aggregates(Vec<WindowSet>),
            Forecasts(Vec<Forecast>),
            Kpis(Vec<KpiResult>),
            Lost(Vec<LostSpan>),
            Alarms(Vec<AlarmEvent>),
            Audit(Vec<AuditRecord>),
            AlarmHealth(Vec<AlarmHealth>),
        }
        assert!(postcard::from_bytes::<OldBody>(&body).is_err());
        assert!(postcard::from_bytes::<OldBody>(&older).is_ok());
    }

    #[test]
    fn acks_collapse_into_ranges() {
        let a = Ack::from_seqs(vec![5, 1, 2, 3, 7, 8, 3]);
        assert_eq!(
            a.ranges,
            vec![
                SeqRange { first: 1, last: 3 },
                SeqRange { first: 5, last: 5 },
                SeqRange { first: 7, last: 8 }
            ]
        );
        assert!(a.contains(2) && !a.contains(4) && a.contains(8));
        assert_eq!(a.seqs().collect::<Vec<_>>(), vec![1, 2, 3, 5, 7, 8]);
    }

    #[test]
    fn checksums_see_a_duplicate_a_loss_and_a_changed_value() {
        let ws = [w("a", 1.0), w("b", 2.0), w("c", 3.0)];
        let sum = |items: &[&Window]| {
            let mut c = Checksum::default();
            for x in items {
                c.add(window_digest("s", "n", 10_000, 0, x));
            }
            c
        };
        let all = sum(&[&ws[0], &ws[1], &ws[2]]);
        assert_eq!(all, sum(&[&ws[2], &ws[0], &ws[1]]), "order does not matter");
        assert_ne!(all, sum(&[&ws[0], &ws[1]]));
        assert_ne!(all, sum(&[&ws[0], &ws[1], &ws[2], &ws[2]]));
        let mut changed = ws[1].clone();
        changed.last = 2.5;
        assert_ne!(all, sum(&[&ws[0], &changed, &ws[2]]));
        assert_ne!(
            window_digest("s", "n", 10_000, 0, &ws[0]),
            window_digest("s", "n", 60_000, 0, &ws[0])
        );
        assert_eq!(w("a", f64::NAN).good_fraction(), 0.9);
    }
}
