//! Insights: what changed in the fleet and why, in plain language, each
//! with the numbers behind it, an importance for ranking and a link to the
//! chart that shows it (docs/insights.md).
//!
//! ```text
//! Store (read pool) ──KPI windows──▶ kpi::changes  (period over period, OEE split by Shapley)
//!                   ──KPI windows──▶ kpi::trends   (Mann-Kendall + Sen's slope)
//!                   ──forecast scores▶ forecast::degraded
//!                   ──quality()──▶ quality::problems
//!                   ──series()──▶ sensor::stuck_or_drifting (models::analysis::anomaly)
//!                                     └──▶ rank (importance, then kind) ──▶ Vec<Insight>
//! ```
//!
//! Everything here is synchronous and reads through a [`Store`]: callers
//! run it on the blocking pool (web, report loop) or a thread (bench).
//! The thresholds are constants so that the documentation and the tests
//! name the same numbers.

mod forecast;
mod kpi;
mod quality;
mod sensor;
pub mod text;
mod trend;

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{Store, StoreError};

pub use kpi::{KpiWindows, Shapley, shapley};

/// Each KPI of the scope (one window kind per KPI) with its closed windows
/// in the period before and the current one.
pub fn kpi_windows(
    store: &Store,
    p: &Params,
    keys: &[crate::store::KpiSummary],
) -> Result<Vec<KpiWindows>, StoreError> {
    kpi::load(store, p, keys)
}

/// The windows carry OEE's factors (their values are ratios).
pub fn is_oee_like(ws: &[crate::store::KpiPoint]) -> bool {
    kpi::is_oee(ws)
}

/// What an insight is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A KPI that changed period over period.
    KpiChange,
    /// A forecast model whose error grew against its earlier accuracy.
    ForecastDegraded,
    /// A sensor whose value stopped moving.
    SensorStuck,
    /// A sensor that drifts away from its level.
    SensorDrift,
    /// Windows missing, gaps, or samples of bad quality.
    DataQuality,
    /// A KPI with a significant monotonic trend.
    KpiTrend,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KpiChange => "kpi_change",
            Kind::ForecastDegraded => "forecast_degraded",
            Kind::SensorStuck => "sensor_stuck",
            Kind::SensorDrift => "sensor_drift",
            Kind::DataQuality => "data_quality",
            Kind::KpiTrend => "kpi_trend",
        }
    }

    /// The heading the page and the report group by.
    pub fn title(self) -> &'static str {
        match self {
            Kind::KpiChange => "KPI change",
            Kind::ForecastDegraded => "Forecast accuracy",
            Kind::SensorStuck => "Stuck sensor",
            Kind::SensorDrift => "Drifting sensor",
            Kind::DataQuality => "Data quality",
            Kind::KpiTrend => "KPI trend",
        }
    }
}

/// One number behind an insight.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Figure {
    /// What it is, e.g. `oee_before`, `fault_hours_now`.
    pub name: String,
    /// Null where undefined.
    pub value: Option<f64>,
    /// Unit as shown (`%`, `h`, `points`, the tag's unit); empty when none.
    pub unit: String,
}

impl Figure {
    pub fn new(name: &str, value: Option<f64>, unit: &str) -> Figure {
        Figure {
            name: name.to_owned(),
            value: value.filter(|v| v.is_finite()),
            unit: unit.to_owned(),
        }
    }
}

/// One insight.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Insight {
    pub kind: Kind,
    pub site: String,
    pub node: String,
    /// The KPI, tag or model it is about (empty for a whole node).
    pub subject: String,
    /// One sentence in plain language.
    pub text: String,
    /// 0–100: how much it matters; the list is sorted by it.
    pub importance: f64,
    /// The numbers the sentence is made of.
    pub figures: Vec<Figure>,
    /// The hub page (a `#/…` route) with the chart that shows it.
    pub link: String,
    /// The period the insight describes.
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What to look at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Params {
    pub site: Option<String>,
    pub node: Option<String>,
    /// The current period is `[from, to)`; it is compared with as long a
    /// period just before it (week over week when it is 7 days long).
    pub from_ms: i64,
    pub to_ms: i64,
    /// The store's notion of now (quality judges only windows already due).
    pub now_ms: i64,
}

impl Params {
    pub fn period_ms(&self) -> i64 {
        (self.to_ms - self.from_ms).max(1)
    }

    /// The period before the current one.
    pub fn before(&self) -> (i64, i64) {
        (self.from_ms - self.period_ms(), self.from_ms)
    }

    fn applies(&self, site: &str, node: &str) -> bool {
        self.site.as_deref().is_none_or(|s| s == site)
            && self.node.as_deref().is_none_or(|n| n == node)
    }
}

/// The default period: a week (week over week).
pub const DEFAULT_PERIOD_MS: i64 = 7 * 86_400_000;

/// At most this many insights are returned (the most important).
pub const MAX_INSIGHTS: usize = 200;

/// Every insight of the fleet (or of a site or node) over a period, most
/// important first.
pub fn generate(store: &Store, p: &Params) -> Result<Vec<Insight>, StoreError> {
    let mut out = Vec::new();
    let mut lap = Lap::new();
    let keys = store.kpi_summary(p.site.as_deref(), p.node.as_deref())?;
    let windows = kpi::load(store, p, &keys)?;
    lap.mark("kpi_load");
    out.extend(kpi::changes(store, p, &windows)?);
    lap.mark("kpi_changes");
    out.extend(trend::trends(p, &windows));
    lap.mark("trends");
    out.extend(forecast::degraded(store, p)?);
    lap.mark("forecasts");
    out.extend(quality::problems(store, p)?);
    lap.mark("quality");
    out.extend(sensor::stuck_or_drifting(store, p)?);
    lap.mark("sensors");
    tracing::debug!(stages = %lap.0, insights = out.len(), "insights generated");
    rank(&mut out);
    out.truncate(MAX_INSIGHTS);
    Ok(out)
}

/// Time spent per stage, for the debug log (which stage to speed up).
struct Lap(String, std::time::Instant);

impl Lap {
    fn new() -> Lap {
        Lap(String::new(), std::time::Instant::now())
    }
    fn mark(&mut self, stage: &str) {
        let ms = self.1.elapsed().as_millis();
        self.0.push_str(&format!("{stage} {ms} ms "));
        self.1 = std::time::Instant::now();
    }
}

/// Most important first; ties by kind, site, node, subject so that the
/// order is stable.
pub fn rank(v: &mut [Insight]) {
    v.sort_by(|a, b| {
        b.importance
            .total_cmp(&a.importance)
            .then(a.kind.cmp(&b.kind))
            .then_with(|| (&a.site, &a.node, &a.subject).cmp(&(&b.site, &b.node, &b.subject)))
    });
}

/// `s` percent-encoded for a URL query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hub page `page` for one node over `[from, to)` with more query
/// parameters (already encoded).
pub(crate) fn link(page: &str, site: &str, node: &str, extra: &str, from: i64, to: i64) -> String {
    format!(
        "#/{page}?site={}&node={}{extra}&from={from}&to={to}",
        enc(site),
        enc(node)
    )
}

/// Clamp an importance into 0–100.
pub(crate) fn importance(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 100.0)
    } else {
        0.0
    }
}
