//! The report as one self-contained HTML page: no script, no outside
//! resource (Chromium prints it with the network off), styles inline with
//! a print stylesheet (A4, page breaks kept out of tables' rows, the grey
//! screen background dropped). Every text from the database is escaped.

use std::fmt::Write as _;

use super::content::{Content, trends};
use crate::insight::text::{num, pct, span};
use crate::insight::{Figure, Insight};

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 13px/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1a1a1a;
       background: #d9d9d9; margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 2rem; background: #ececec; }
h1 { font-size: 1.5rem; margin: .2rem 0; }
h2 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; border-bottom: 1px solid #999; padding-bottom: .15rem; }
.sub { color: #444; margin: 0 0 .6rem; }
table { border-collapse: collapse; width: 100%; background: #f7f7f7; }
th, td { border: 1px solid #bbb; padding: .2rem .4rem; text-align: left; vertical-align: top; }
th { background: #dedede; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
ol.insights { padding-left: 1.4rem; }
ol.insights li { margin: .35rem 0; }
.figs { color: #444; font-size: .92em; }
.kind { font-weight: 600; }
.bad { outline: 2px solid #b00020; outline-offset: -2px; }
.note { color: #444; font-size: .92em; }
.none { color: #444; font-style: italic; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body, main { background: #fff; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  tr, li { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

fn figures(f: &[Figure]) -> String {
    f.iter()
        .filter(|f| f.unit != "ms")
        .filter_map(|f| {
            f.value.map(|v| {
                let u = if f.unit.is_empty() {
                    String::new()
                } else {
                    format!(" {}", f.unit)
                };
                format!("{} {}{u}", f.name.replace('_', " "), num(v))
            })
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn insight_list(out: &mut String, items: &[&Insight]) {
    out.push_str("<ol class=\"insights\">");
    for i in items {
        let _ = write!(
            out,
            "<li data-kind=\"{}\"><span class=\"kind\">{}</span> ({}/{}, importance {:.0}): {}<br><span class=\"figs\">{}</span></li>",
            i.kind.as_str(),
            esc(i.kind.title()),
            esc(&i.site),
            esc(&i.node),
            i.importance,
            esc(&i.text),
            esc(&figures(&i.figures))
        );
    }
    out.push_str("</ol>");
}

fn opt(v: Option<f64>, ratio: bool) -> String {
    match v {
        Some(v) if ratio => pct(v),
        Some(v) => num(v),
        None => "–".into(),
    }
}

pub fn render(c: &Content, hub: &str, made_ms: i64) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let title = format!(
        "Site report {} · {} – {}",
        c.site,
        time(c.from_ms),
        time(c.to_ms)
    );
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><main>",
        esc(&title)
    );
    let _ = write!(
        o,
        "<h1>Site report: {}</h1><p class=\"sub\">{} to {} ({}), compared with the {} before. Made {} by hub {}.</p>",
        esc(&c.site),
        time(c.from_ms),
        time(c.to_ms),
        span(c.to_ms - c.from_ms),
        span(c.to_ms - c.from_ms),
        time(made_ms),
        esc(hub)
    );
    // Summary.
    let tot = c.quality.nodes.iter().fold((0u64, 0u64), |a, n| {
        (a.0 + n.totals.expected, a.1 + n.totals.present)
    });
    let activations: u64 = c.alarms.iter().map(|a| a.activations).sum();
    let _ = write!(
        o,
        "<h2>Summary</h2><p data-testid=\"report-summary\">{} insight{}, {} KPI{}, {} alarm activation{} over {} alarm{}, data coverage {}.</p>",
        c.insights.len(),
        if c.insights.len() == 1 { "" } else { "s" },
        c.kpis.len(),
        if c.kpis.len() == 1 { "" } else { "s" },
        activations,
        if activations == 1 { "" } else { "s" },
        c.alarms.len(),
        if c.alarms.len() == 1 { "" } else { "s" },
        if tot.0 > 0 {
            pct(tot.1 as f64 / tot.0 as f64)
        } else {
            "– (no windows due)".into()
        }
    );
    // Insights.
    o.push_str("<h2>Insights</h2>");
    if c.insights.is_empty() {
        o.push_str("<p class=\"none\">Nothing stands out in this period.</p>");
    } else {
        insight_list(&mut o, &c.insights.iter().collect::<Vec<_>>());
    }
    // KPIs.
    o.push_str("<h2>KPIs</h2>");
    if c.kpis.is_empty() {
        o.push_str("<p class=\"none\">No KPI windows in this period.</p>");
    } else {
        o.push_str("<table><thead><tr><th>Node</th><th>KPI</th><th>Window</th><th class=\"num\">Mean</th><th class=\"num\">Period before</th><th class=\"num\">Min</th><th class=\"num\">Max</th><th>Unit</th><th class=\"num\">Windows</th></tr></thead><tbody>");
        for k in &c.kpis {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&k.node),
                esc(&k.kpi),
                esc(&k.window),
                opt(k.mean, k.ratio),
                opt(k.mean_before, k.ratio),
                opt(k.min, k.ratio),
                opt(k.max, k.ratio),
                esc(if k.ratio {
                    "%"
                } else {
                    k.unit.as_deref().unwrap_or("")
                }),
                k.windows
            );
        }
        o.push_str("</tbody></table><p class=\"note\">Means weighted by window length over closed windows; one window kind per KPI.</p>");
    }
    // Trends.
    o.push_str("<h2>Trends</h2>");
    let tr = trends(c);
    if tr.is_empty() {
        o.push_str("<p class=\"none\">No KPI trends significantly (Mann-Kendall, α = 0.01) in this period.</p>");
    } else {
        insight_list(&mut o, &tr);
    }
    // Alarms.
    o.push_str("<h2>Alarms</h2>");
    if c.alarms.is_empty() {
        o.push_str("<p class=\"none\">No alarm journal entries in this period.</p>");
    } else {
        o.push_str("<table><thead><tr><th>Node</th><th>Alarm</th><th class=\"num\">Priority</th><th class=\"num\">Activations</th><th>Last state</th><th>Last change</th></tr></thead><tbody>");
        for a in c.alarms.iter().take(30) {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.node),
                esc(&a.alarm),
                a.priority,
                a.activations,
                esc(&a.last_state),
                time(a.last_ms)
            );
        }
        o.push_str("</tbody></table>");
        if c.alarms.len() > 30 || c.alarms_truncated {
            let _ = write!(
                o,
                "<p class=\"note\">{} alarms in all{}; the 30 most active are shown.</p>",
                c.alarms.len(),
                if c.alarms_truncated {
                    format!(" from the newest {} journal entries", c.alarm_entries)
                } else {
                    String::new()
                }
            );
        }
    }
    // Data quality.
    o.push_str("<h2>Data quality</h2>");
    if c.quality.nodes.is_empty() {
        o.push_str("<p class=\"none\">No windows from this site in this period.</p>");
    } else {
        o.push_str("<table><thead><tr><th>Node</th><th class=\"num\">Tags</th><th class=\"num\">Windows due</th><th class=\"num\">Present</th><th class=\"num\">Coverage</th><th class=\"num\">Gaps</th><th class=\"num\">Longest gap</th><th class=\"num\">Bad quality</th></tr></thead><tbody>");
        for n in &c.quality.nodes {
            let t = &n.totals;
            let low = t.coverage.is_some_and(|c| c < 0.95);
            let bad = t.bad_share.is_some_and(|b| b > 0.05);
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td></tr>",
                esc(&n.node),
                t.tags,
                t.expected,
                t.present,
                if low { " bad" } else { "" },
                t.coverage.map_or("–".into(), pct),
                t.gaps,
                if t.longest_gap_ms > 0 {
                    span(t.longest_gap_ms)
                } else {
                    "–".into()
                },
                if bad { " bad" } else { "" },
                t.bad_share.map_or("–".into(), pct)
            );
        }
        o.push_str("</tbody></table><p class=\"note\">Coverage: windows of each tag's finest width that arrived, of those due; outlined below 95 %, bad quality above 5 %.</p>");
    }
    o.push_str("</main></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
