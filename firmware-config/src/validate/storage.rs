//! `[storage]` and `[forecast]`: where history lives and how forecasts run.

use super::*;

/// Largest `[storage] max_size`: 16 TiB (a bound, so no size arithmetic
/// can overflow).
const MAX_HISTORY_BYTES: u64 = 16 << 40;
/// `[storage] reserve` by default: enough for minutes of outbox and
/// history on a typical gateway once the disk is full.
const DEFAULT_RESERVE: u64 = 32 << 20;

impl Validator<'_> {
    pub(super) fn storage(&mut self, raw: &RawConfig) -> Option<Storage> {
        let Some(item) = &raw.storage else {
            return Some(Storage {
                path: PathBuf::from("/var/lib/apos/edge/history.db"),
                retention_age: Duration::from_secs(30 * 86_400),
                aggregates_retention: Duration::from_secs(7 * 86_400),
                retention_bytes: 1 << 30,
                min_raw_span: Duration::from_secs(86_400),
                reserve_bytes: DEFAULT_RESERVE,
                batch_size: 5000,
                flush_interval: Duration::from_secs(1),
            });
        };
        let r = &item.raw;
        let path = match &r.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.push(
                    item.diag(p.span(), "storage › path", "empty path")
                        .help("give a file path, e.g. \"/var/lib/apos/edge/history.db\""),
                );
                PathBuf::new()
            }
            Some(p) => resolve(&item.src.path, p.get_ref()),
            None => PathBuf::from("/var/lib/apos/edge/history.db"),
        };
        let retention_age = self.duration(
            item,
            "storage › retention",
            &r.retention,
            Duration::from_secs(30 * 86_400),
            (
                Duration::from_secs(60),
                Duration::from_secs(100 * 365 * 86_400),
            ),
        );
        let retention_bytes = match &r.max_size {
            Some(s) if s.get_ref().0 < (1 << 20) => {
                self.push(
                    item.diag(
                        s.span(),
                        "storage › max_size",
                        format!(
                            "{} bytes is too small for a history database",
                            s.get_ref().0
                        ),
                    )
                    .help("use at least \"1MiB\"; typical values are \"512MiB\" to \"16GiB\""),
                );
                1 << 30
            }
            Some(s) if s.get_ref().0 > MAX_HISTORY_BYTES => {
                self.push(
                    item.diag(
                        s.span(),
                        "storage › max_size",
                        format!("{} bytes is more than 16 TiB", s.get_ref().0),
                    )
                    .help("a gateway's history is gigabytes: typical values are \"512MiB\" to \"16GiB\""),
                );
                1 << 30
            }
            Some(s) => s.get_ref().0,
            None => 1 << 30,
        };
        let aggregates_retention = self.duration(
            item,
            "storage › aggregates_retention",
            &r.aggregates_retention,
            Duration::from_secs(7 * 86_400),
            (
                Duration::from_secs(60),
                Duration::from_secs(100 * 365 * 86_400),
            ),
        );
        let min_raw_span = self.duration(
            item,
            "storage › min_raw_span",
            &r.min_raw_span,
            Duration::from_secs(86_400).min(retention_age),
            (Duration::ZERO, Duration::from_secs(100 * 365 * 86_400)),
        );
        if let Some(m) = &r.min_raw_span
            && min_raw_span > retention_age
        {
            self.push(
                item.diag(
                    m.span(),
                    "storage › min_raw_span",
                    "min_raw_span is longer than retention",
                )
                .help("raw samples are deleted at `retention` whatever the size; make min_raw_span shorter (e.g. \"1d\")"),
            );
        }
        let reserve_bytes = match &r.reserve {
            Some(s) if s.get_ref().0 > retention_bytes => {
                self.push(
                    item.diag(
                        s.span(),
                        "storage › reserve",
                        format!(
                            "a reserve of {} bytes is more than max_size ({retention_bytes} bytes)",
                            s.get_ref().0
                        ),
                    )
                    .help("a reserve of a few percent of max_size is enough, e.g. \"32MiB\"; \"0\" turns it off"),
                );
                0
            }
            Some(s) => s.get_ref().0,
            None => DEFAULT_RESERVE.min(retention_bytes / 8),
        };
        let batch_size = self.int(
            item,
            "storage › batch_size",
            &r.batch_size,
            5000,
            (1, 1_000_000),
            "samples per insert transaction; 1000–20000 is typical",
        );
        let flush_interval = self.duration(
            item,
            "storage › flush_interval",
            &r.flush_interval,
            Duration::from_secs(1),
            (Duration::from_millis(10), Duration::from_secs(60)),
        );
        Some(Storage {
            path,
            retention_age,
            aggregates_retention,
            retention_bytes,
            min_raw_span,
            reserve_bytes,
            batch_size: batch_size as usize,
            flush_interval,
        })
    }

    /// `Some(None)`: no `[forecast]`; `None`: invalid (already reported).
    pub(super) fn forecast(&mut self, raw: &RawConfig) -> Option<Option<Forecast>> {
        let Some(item) = &raw.forecast else {
            return Some(None);
        };
        let r = &item.raw;
        let models_dir = match &r.models_dir {
            Some(d) => resolve(&item.src.path, d.get_ref()),
            None => {
                self.push(
                    item.diag(item.span.clone(), "forecast › models_dir", "the models directory is not set")
                        .help("add `models_dir = \"/usr/share/apos-edge/models\"` (the models the package ships): one subdirectory per model (model.onnx + manifest.toml)"),
                );
                return None;
            }
        };
        let interval = self.duration(
            item,
            "forecast › interval",
            &r.interval,
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(86_400)),
        );
        let max_hold = self.duration(
            item,
            "forecast › max_hold",
            &r.max_hold,
            Duration::from_secs(900),
            (Duration::from_secs(1), Duration::from_secs(7 * 86_400)),
        );
        let check_every = self.duration(
            item,
            "forecast › check_every",
            &r.check_every,
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        );
        let explain_max_features = self.int(
            item,
            "forecast › explain_max_features",
            &r.explain_max_features,
            64,
            (1, 100_000),
            "feature groups an explanation occludes; its cost is one model run of this many rows",
        );
        Some(Some(Forecast {
            models_dir,
            interval,
            max_hold,
            explain_max_features: explain_max_features as usize,
            check_every,
        }))
    }
}
