//! Data-quality problems: a node whose windows did not all arrive
//! (coverage), with long gaps, or with many samples of bad quality, from
//! the same figures as the data-quality page (`Store::quality`).

use super::text::{pct, span};
use super::{Figure, Insight, Kind, Params, importance, link};
use crate::store::{Store, StoreError};

/// Fewer of the windows due than this arrived…
pub const MIN_COVERAGE: f64 = 0.95;
/// …or more of the samples than this were of bad quality.
pub const MAX_BAD_SHARE: f64 = 0.05;

pub(super) fn problems(store: &Store, p: &Params) -> Result<Vec<Insight>, StoreError> {
    let q = store.quality(
        p.site.as_deref(),
        p.node.as_deref(),
        p.from_ms,
        p.to_ms,
        p.now_ms,
    )?;
    let mut out = Vec::new();
    for n in &q.nodes {
        let t = &n.totals;
        let missing = t.coverage.map_or(0.0, |c| 1.0 - c);
        let bad = t.bad_share.unwrap_or(0.0);
        if missing <= 1.0 - MIN_COVERAGE && bad <= MAX_BAD_SHARE {
            continue;
        }
        // The tag that is worst off, by the same measure.
        let worst = n.tags.iter().max_by(|a, b| {
            let s = |t: &crate::store::TagQuality| {
                (1.0 - t.coverage.unwrap_or(1.0)).max(t.bad_share.unwrap_or(0.0))
            };
            s(a).total_cmp(&s(b))
        });
        let mut said = Vec::new();
        if missing > 1.0 - MIN_COVERAGE {
            said.push(format!(
                "only {} of the windows due arrived ({} gap{}, the longest {})",
                pct(1.0 - missing),
                t.gaps,
                if t.gaps == 1 { "" } else { "s" },
                span(t.longest_gap_ms)
            ));
        }
        if bad > MAX_BAD_SHARE {
            said.push(format!("{} of the samples were of bad quality", pct(bad)));
        }
        let mut text = format!("Data from node {}: {}", n.node, said.join("; "));
        if let Some(w) = worst {
            text.push_str(&format!(
                "; worst tag {} (coverage {}, bad {})",
                w.tag,
                w.coverage.map_or("–".into(), pct),
                w.bad_share.map_or("–".into(), pct)
            ));
        }
        text.push('.');
        out.push(Insight {
            kind: Kind::DataQuality,
            site: n.site.clone(),
            node: n.node.clone(),
            subject: worst.map(|w| w.tag.clone()).unwrap_or_default(),
            text,
            importance: importance(20.0 + 70.0 * missing.max(bad)),
            figures: vec![
                Figure::new("coverage", t.coverage.map(|c| c * 100.0), "%"),
                Figure::new("windows_expected", Some(t.expected as f64), ""),
                Figure::new("windows_present", Some(t.present as f64), ""),
                Figure::new("gaps", Some(t.gaps as f64), ""),
                Figure::new(
                    "longest_gap_hours",
                    Some(t.longest_gap_ms as f64 / 3.6e6),
                    "h",
                ),
                Figure::new("bad_share", t.bad_share.map(|b| b * 100.0), "%"),
                Figure::new("tags", Some(t.tags as f64), ""),
            ],
            link: link("quality", &n.site, &n.node, "", p.from_ms, p.to_ms),
            from_ms: p.from_ms,
            to_ms: p.to_ms,
        });
    }
    Ok(out)
}
