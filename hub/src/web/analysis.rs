//! `/api/v1/analysis/…` (docs/hub-api.md, "analysis" and "Grafana"):
//! stored tags, tag series downsampled per pixel bucket, statistics, the
//! KPI summary and KPI history, and the same series in the row shape the
//! Grafana Infinity data source reads. The figures come from
//! `store::series`; this module checks parameters and shapes answers.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web::access::{Access, Role};
use web::problem::Problem;
use web::routes::RouteTable;

use super::params::{self, Cursor, DEFAULT_SPAN_MS, Range};
use super::{St, now_ms};
use crate::store::{
    KpiKey, KpiPoint, KpiSummary, MAX_POINTS, MAX_SERIES, MIN_POINTS, Series, SeriesKey, TagInfo,
    TagStats,
};

/// Chart width when `points` is not given.
pub const DEFAULT_POINTS: u32 = 1000;
/// Grafana buckets are never finer than the range over this.
pub const GRAFANA_MAX_POINTS: i64 = 5000;
/// Most KPI windows one Grafana answer holds.
pub const GRAFANA_MAX_KPI_ROWS: usize = 10_000;
/// Longest tag, KPI or window name (as the protocol allows).
const MAX_TEXT: usize = protocol::check::MAX_TEXT;

/// Registers this area's routes.
pub fn add(t: &mut RouteTable<St>) {
    let viewer = Access::Role(Role::Viewer);
    t.add(Method::GET, "/api/v1/analysis/tags", viewer, tags)
        .add(Method::GET, "/api/v1/analysis/series", viewer, series)
        .add(Method::GET, "/api/v1/analysis/stats", viewer, stats)
        .add(Method::GET, "/api/v1/analysis/kpis", viewer, kpis)
        .add(
            Method::GET,
            "/api/v1/analysis/kpis/history",
            viewer,
            kpi_history,
        )
        .add(
            Method::GET,
            "/api/v1/analysis/grafana/series",
            viewer,
            grafana_series,
        )
        .add(
            Method::GET,
            "/api/v1/analysis/grafana/kpi",
            viewer,
            grafana_kpi,
        );
}

/// This area's part of the OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(tags, series, stats, kpis, kpi_history, grafana_series, grafana_kpi),
    components(schemas(
        TagList,
        TagInfo,
        SeriesAnswer,
        Series,
        TagStats,
        KpiList,
        KpiSummary,
        KpiHistory,
        KpiPoint,
        GrafanaPoint,
        GrafanaKpiPoint,
        Problem
    ))
)]
pub struct Doc;

/// The query string as pairs: repeated keys (`tag`) are kept, and every
/// value is checked here so that a bad one is a 400 that says which.
struct Q(Vec<(String, String)>);

impl Q {
    fn new(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<Q, Problem> {
        q.map(|q| Q(q.0))
            .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of `name`, if given (twice is a 400).
    fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, Problem> {
        let mut it = self.all(name);
        let v = it.next();
        if it.next().is_some() {
            return Err(Problem::bad_request(format!(
                "{name}: given more than once"
            )));
        }
        Ok(v)
    }

    fn need<'a>(&'a self, name: &'a str) -> Result<&'a str, Problem> {
        self.one(name)?
            .ok_or_else(|| Problem::bad_request(format!("{name}: required")))
    }

    fn id(&self, name: &str) -> Result<Option<String>, Problem> {
        self.one(name)?
            .map(|v| params::check_id(name, v).map(|_| v.to_owned()))
            .transpose()
    }

    fn need_id(&self, name: &str) -> Result<String, Problem> {
        let v = self.need(name)?;
        params::check_id(name, v)?;
        Ok(v.to_owned())
    }

    fn need_text(&self, name: &str) -> Result<String, Problem> {
        let v = self.need(name)?;
        text(name, v)?;
        Ok(v.to_owned())
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Problem> {
        self.one(name)?
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    Problem::bad_request(format!("{name}: {v:?} is not a whole number"))
                })
            })
            .transpose()
    }

    fn range(&self) -> Result<Range, Problem> {
        params::range(
            self.one("from")?,
            self.one("to")?,
            now_ms(),
            DEFAULT_SPAN_MS,
        )
    }
}

/// A tag, KPI or window name: what the protocol lets an edge send.
fn text(name: &str, v: &str) -> Result<(), Problem> {
    if v.is_empty() || v.len() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(Problem::bad_request(format!(
            "{name}: 1 to {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

/// The series of a request: `tag=NAME` with `site` and `node`, or
/// `tag=SITE/NODE/NAME` without them.
fn series_keys(q: &Q) -> Result<Vec<SeriesKey>, Problem> {
    let site = q.id("site")?;
    let node = q.id("node")?;
    let tags: Vec<&str> = q.all("tag").collect();
    if tags.is_empty() {
        return Err(Problem::bad_request(
            "tag: required (repeat it for several tags)",
        ));
    }
    if tags.len() > MAX_SERIES {
        return Err(Problem::bad_request(format!(
            "tag: {} given, at most {MAX_SERIES}",
            tags.len()
        )));
    }
    tags.into_iter()
        .map(|t| match (&site, &node) {
            (Some(s), Some(n)) => {
                text("tag", t)?;
                Ok(SeriesKey::new(s, n, t))
            }
            (None, None) => {
                let mut parts = t.splitn(3, '/');
                let (Some(s), Some(n), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Problem::bad_request(format!(
                        "tag: {t:?} needs site and node parameters, or the form SITE/NODE/TAG"
                    )));
                };
                params::check_id("site", s)?;
                params::check_id("node", n)?;
                text("tag", name)?;
                Ok(SeriesKey::new(s, n, name))
            }
            _ => Err(Problem::bad_request(
                "site and node: give both (then tag is a name) or neither (then tag is SITE/NODE/TAG)",
            )),
        })
        .collect()
}

/// Optional `site` and `node` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeFilter {
    /// Only this site.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    /// Only nodes of this name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
}

/// Every stored tag.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList {
    pub items: Vec<TagInfo>,
}

/// The tags stored for the fleet, a site or a node: their window widths
/// and the span they cover.
#[utoipa::path(get, path = "/api/v1/analysis/tags", tag = "analysis",
    params(NodeFilter),
    responses((status = 200, description = "tags by site, node and name", body = TagList),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn tags(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<TagList>, Problem> {
    let q = Q::new(q)?;
    let (site, node) = (q.id("site")?, q.id("node")?);
    let items = st
        .read(move |s| s.tags(site.as_deref(), node.as_deref()))
        .await?;
    Ok(Json(TagList { items }))
}

/// Parameters of a tag chart.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Site of every `tag` (with `node`); leave both out to write each tag
    /// as `SITE/NODE/TAG`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: Option<String>,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: Option<String>,
    /// A tag; repeat for several series on one chart (at most 8).
    pub tag: Vec<String>,
    /// Start (RFC 3339 or ms since 1970); default `to` − 24 h.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End; default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Buckets across the range, 10–5000 (default 1000): the chart's width
    /// in pixels.
    pub points: Option<i64>,
}

/// Tag series, one row per pixel bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesAnswer {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The bucket asked for: the range over `points`. Each series states
    /// the bucket it used (a whole number of its source windows).
    pub bucket_ms: i64,
    /// The widest source window width among the series (null: none has
    /// windows).
    pub source_width_ms: Option<u32>,
    pub series: Vec<Series>,
}

/// Any tags over any range, downsampled in the database: per bucket the
/// min, max, time-weighted mean and good share, from the coarsest stored
/// window width not wider than the bucket (or the hourly or daily rollup).
/// Buckets without windows are absent; the answer covers every whole
/// bucket that overlaps the range.
#[utoipa::path(get, path = "/api/v1/analysis/series", tag = "analysis",
    params(SeriesParams),
    responses((status = 200, description = "the series, in the order asked", body = SeriesAnswer),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn series(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = Q::new(q)?;
    let keys = series_keys(&q)?;
    let r = q.range()?;
    let points = q.int("points")?.unwrap_or(i64::from(DEFAULT_POINTS));
    if !(i64::from(MIN_POINTS)..=i64::from(MAX_POINTS)).contains(&points) {
        return Err(Problem::bad_request(format!(
            "points: {points} is out of range: {MIN_POINTS} to {MAX_POINTS}"
        )));
    }
    let bucket = crate::store::ceil_div(r.to_ms - r.from_ms, points);
    let nodes: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.site.clone(), k.node.clone()))
        .collect();
    let mut key = format!("{}|{}|{bucket}", r.from_ms, r.to_ms);
    for k in &keys {
        // Identifiers cannot hold '/' or '|' (params::check_id), tag names
        // go last and are length-prefixed so no two requests share a key.
        key.push_str(&format!("|{}/{}/{}:{}", k.site, k.node, k.tag.len(), k.tag));
    }
    if let Some(b) = st.series_cache.get(&key, &nodes) {
        return Ok(json_bytes(b));
    }
    let stamp = st.series_cache.stamp(&nodes);
    let series = st
        .read(move |s| {
            keys.iter()
                .map(|k| s.series(k, r.from_ms, r.to_ms, bucket))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let answer = SeriesAnswer {
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        bucket_ms: bucket,
        source_width_ms: series.iter().filter_map(|s| s.source_width_ms).max(),
        series,
    };
    let b = bytes::Bytes::from(
        serde_json::to_vec(&answer).map_err(|e| Problem::internal(e.to_string()))?,
    );
    st.series_cache.put(key, &nodes, stamp, b.clone());
    Ok(json_bytes(b))
}

fn json_bytes(b: bytes::Bytes) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        b,
    )
        .into_response()
}

/// One tag over a range.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagParams {
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: String,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: String,
    pub tag: String,
    /// Start (RFC 3339 or ms since 1970); default `to` − 24 h.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End; default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

fn one_tag(q: &Q) -> Result<SeriesKey, Problem> {
    let site = q.need_id("site")?;
    let node = q.need_id("node")?;
    let tag = q.need_text("tag")?;
    Ok(SeriesKey::new(&site, &node, &tag))
}

/// Statistics of one tag over a range, from its windows: exact count, min,
/// max and time-weighted mean; stddev and quantiles of the window means.
#[utoipa::path(get, path = "/api/v1/analysis/stats", tag = "analysis",
    params(TagParams),
    responses((status = 200, description = "the statistics (nulls when there are no windows)", body = TagStats),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn stats(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<TagStats>, Problem> {
    let q = Q::new(q)?;
    let k = one_tag(&q)?;
    let r = q.range()?;
    Ok(Json(
        st.read(move |s| s.tag_stats(&k, r.from_ms, r.to_ms))
            .await?,
    ))
}

/// The newest value of every KPI window kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct KpiList {
    pub items: Vec<KpiSummary>,
}

/// The KPI summary: the newest value of each KPI and window kind (shift,
/// day, week, rolling) of a node, a site or the whole fleet.
#[utoipa::path(get, path = "/api/v1/analysis/kpis", tag = "analysis",
    params(NodeFilter),
    responses((status = 200, description = "by site, node, kpi, window", body = KpiList),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn kpis(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = Q::new(q)?;
    let (site, node) = (q.id("site")?, q.id("node")?);
    let key = (site.clone(), node.clone());
    let body = match st.kpi_cache.get(&key) {
        Some(b) => b,
        None => {
            let generation = st.kpi_cache.generation();
            let items = st
                .read(move |s| s.kpi_summary(site.as_deref(), node.as_deref()))
                .await?;
            let b = bytes::Bytes::from(
                serde_json::to_vec(&KpiList { items })
                    .map_err(|e| Problem::internal(e.to_string()))?,
            );
            st.kpi_cache.put(key, generation, b.clone());
            b
        }
    };
    Ok(json_bytes(body))
}

/// One KPI of one node over a range.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KpiParams {
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: String,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: String,
    /// The KPI (e.g. `line.oee`).
    pub kpi: String,
    /// The window kind: `shift`, `day`, `week` or a rolling length.
    pub window: String,
    /// Windows starting at or after (RFC 3339 or ms since 1970); default
    /// `to` − 24 h.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Windows starting before; default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

/// A page of KPI windows, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct KpiHistory {
    pub items: Vec<KpiPoint>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

fn kpi_key(q: &Q) -> Result<KpiKey, Problem> {
    Ok(KpiKey {
        site: q.need_id("site")?,
        node: q.need_id("node")?,
        kpi: q.need_text("kpi")?,
        window: q.need_text("window")?,
    })
}

/// The windows of one KPI that start in the range, closed and current,
/// oldest first, each with its newest value. This week against last week
/// is two calls, one per week.
#[utoipa::path(get, path = "/api/v1/analysis/kpis/history", tag = "analysis",
    params(KpiParams),
    responses((status = 200, description = "a page of windows", body = KpiHistory),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn kpi_history(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<KpiHistory>, Problem> {
    let q = Q::new(q)?;
    let k = kpi_key(&q)?;
    let r = q.range()?;
    let limit = match q.int("limit")? {
        None => params::limit(None)?,
        Some(n) => params::limit(Some(usize::try_from(n).unwrap_or(0)))?,
    };
    let after = q
        .one("cursor")?
        .map(|c| Cursor::decode(c).map(|c| c.ts_ms))
        .transpose()?;
    let mut items = st
        .read(move |s| s.kpi_history(&k, r.from_ms, r.to_ms, after, limit + 1))
        .await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|p| {
            Cursor {
                ts_ms: p.start_ms,
                tiebreak: String::new(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(KpiHistory { items, next_cursor }))
}

/// One bucket of a tag, as Grafana's Infinity data source reads it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GrafanaPoint {
    /// Bucket start, ms since 1970 (Infinity column type `timestamp_epoch`).
    pub time: i64,
    /// Time-weighted mean.
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One KPI window, as Grafana's Infinity data source reads it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GrafanaKpiPoint {
    /// Window start, ms since 1970.
    pub time: i64,
    pub value: Option<f64>,
    pub coverage: Option<f64>,
}

/// A tag for Grafana.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrafanaSeriesParams {
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: String,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: String,
    pub tag: String,
    /// `${__from}`: ms since 1970 (or RFC 3339).
    pub from: Option<String>,
    /// `${__to}`.
    pub to: Option<String>,
    /// `${__interval_ms}`: the bucket; never finer than the range / 5000.
    pub step: Option<i64>,
}

/// One tag as rows `{time, value, min, max}` for the Grafana Infinity data
/// source (docs/grafana/README.md); bucket = max(step, range / 5000).
#[utoipa::path(get, path = "/api/v1/analysis/grafana/series", tag = "analysis",
    params(GrafanaSeriesParams),
    responses((status = 200, description = "rows, oldest first", body = Vec<GrafanaPoint>),
              (status = 400, description = "bad parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn grafana_series(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<GrafanaPoint>>, Problem> {
    let q = Q::new(q)?;
    let k = one_tag(&q)?;
    let r = q.range()?;
    let span = r.to_ms - r.from_ms;
    let step = match q.int("step")? {
        Some(s) if s < 0 => return Err(Problem::bad_request("step: must not be negative")),
        Some(s) => s,
        None => crate::store::ceil_div(span, i64::from(DEFAULT_POINTS)),
    };
    let bucket = step.max(crate::store::ceil_div(span, GRAFANA_MAX_POINTS));
    let s = st
        .read(move |s| s.series(&k, r.from_ms, r.to_ms, bucket))
        .await?;
    Ok(Json(
        (0..s.t.len())
            .map(|i| GrafanaPoint {
                time: s.t[i],
                value: s.mean[i],
                min: s.min[i],
                max: s.max[i],
            })
            .collect(),
    ))
}

/// A KPI for Grafana.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrafanaKpiParams {
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub site: String,
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub node: String,
    pub kpi: String,
    pub window: String,
    /// `${__from}`.
    pub from: Option<String>,
    /// `${__to}`.
    pub to: Option<String>,
}

/// One KPI as rows `{time, value, coverage}` for the Grafana Infinity data
/// source: every window starting in the range (at most 10,000).
#[utoipa::path(get, path = "/api/v1/analysis/grafana/kpi", tag = "analysis",
    params(GrafanaKpiParams),
    responses((status = 200, description = "rows, oldest first", body = Vec<GrafanaKpiPoint>),
              (status = 400, description = "bad parameter, or more than 10,000 windows", body = Problem, content_type = "application/problem+json")))]
pub async fn grafana_kpi(
    State(st): State<St>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<GrafanaKpiPoint>>, Problem> {
    let q = Q::new(q)?;
    let k = kpi_key(&q)?;
    let r = q.range()?;
    let rows = st
        .read(move |s| s.kpi_history(&k, r.from_ms, r.to_ms, None, GRAFANA_MAX_KPI_ROWS + 1))
        .await?;
    if rows.len() > GRAFANA_MAX_KPI_ROWS {
        return Err(Problem::bad_request(format!(
            "more than {GRAFANA_MAX_KPI_ROWS} windows in the range; narrow it"
        )));
    }
    Ok(Json(
        rows.into_iter()
            .map(|p| GrafanaKpiPoint {
                time: p.start_ms,
                value: p.value,
                coverage: p.coverage,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(s: &str) -> Q {
        Q(s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect())
    }

    #[test]
    fn tags_are_named_with_site_and_node_or_in_full() {
        let k = series_keys(&q("site=s&node=a&tag=x/y&tag=z")).unwrap();
        assert_eq!(
            k,
            vec![
                SeriesKey::new("s", "a", "x/y"),
                SeriesKey::new("s", "a", "z")
            ]
        );
        let k = series_keys(&q("tag=s/a/x/y&tag=t/b/z")).unwrap();
        assert_eq!(
            k,
            vec![
                SeriesKey::new("s", "a", "x/y"),
                SeriesKey::new("t", "b", "z")
            ]
        );
        for bad in [
            "",
            "site=s&tag=x",
            "tag=x",
            "tag=s!/a/x",
            "site=s&node=a&tag=",
            "site=s&site=t&node=a&tag=x",
            "site=s&node=a&tag=1&tag=2&tag=3&tag=4&tag=5&tag=6&tag=7&tag=8&tag=9",
        ] {
            assert_eq!(series_keys(&q(bad)).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(q("limit=x").int("limit").unwrap_err().status, 400);
    }
}
