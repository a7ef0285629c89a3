//! `manifest.toml`: what a model needs as input and what it produces.
//!
//! Two layers, as for every APOS configuration: serde structs that refuse
//! unknown keys and keep spans, then validation into [`Manifest`], whose
//! errors name the file, line, column and field and say what to do.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::features::FeatureSpec;

/// The manifest format this build reads.
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Read(#[from] crate::text::TextError),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    schema_version: Spanned<i64>,
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: String,
    input: Spanned<RawInput>,
    normalization: Spanned<BTreeMap<String, RawNorm>>,
    output: Spanned<RawOutput>,
    #[serde(default)]
    training: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    tags: Spanned<Vec<String>>,
    step: Spanned<String>,
    lags: Spanned<i64>,
    /// Informative (history needed); checked against the features.
    window: Option<Spanned<String>>,
    rolling: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    time_of_day: bool,
    #[serde(default)]
    day_of_week: bool,
    features: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNorm {
    mean: Spanned<f64>,
    std: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    tag: Spanned<String>,
    horizon: Spanned<i64>,
    step: Spanned<String>,
    normalized: bool,
    mean: Option<f64>,
    std: Option<f64>,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub features: FeatureSpec,
    /// The forecast tag, its horizon in steps, and the step.
    pub target: String,
    pub horizon: usize,
    pub output_step: Duration,
    /// How to turn the graph's output into engineering units: `y * std + mean`.
    pub output_scale: (f64, f64),
    /// Training metadata, kept as written.
    pub training: toml::Table,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = crate::text::read_text(path)?;
        Manifest::parse(&text, path)
    }

    /// `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, ManifestError> {
        let mut c = Check {
            text,
            origin,
            errors: Vec::new(),
        };
        let raw: Raw = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                c.err(
                    span,
                    "manifest",
                    e.message(),
                    "see docs/models.md for the manifest format",
                );
                return Err(ManifestError::Invalid(c.errors));
            }
        };
        if *raw.schema_version.get_ref() != SCHEMA_VERSION {
            c.err(
                raw.schema_version.span(),
                "schema_version",
                &format!(
                    "schema_version {} is not supported",
                    raw.schema_version.get_ref()
                ),
                &format!(
                    "this edge reads schema_version = {SCHEMA_VERSION}; retrain or upgrade the edge"
                ),
            );
        }
        for (field, v) in [("name", &raw.name), ("version", &raw.version)] {
            if v.get_ref().trim().is_empty() {
                c.err(
                    v.span(),
                    field,
                    "must not be empty",
                    "give the model a name and version",
                );
            }
        }
        let input = raw.input.get_ref();
        let step = c.duration(&input.step, "input › step");
        let output_step = c.duration(&raw.output.get_ref().step, "output › step");
        if let (Some(a), Some(b)) = (step, output_step)
            && a != b
        {
            c.err(
                raw.output.get_ref().step.span(),
                "output › step",
                "differs from input › step",
                "this edge forecasts on the input grid: use the same step",
            );
        }
        let tags = input.tags.get_ref().clone();
        if tags.is_empty() {
            c.err(
                input.tags.span(),
                "input › tags",
                "no input tag",
                "list the tags the model reads",
            );
        }
        let lags = c.positive(&input.lags, "input › lags", 100_000);
        let mut rolling = Vec::new();
        for (w, span) in input
            .rolling
            .iter()
            .flat_map(|r| r.get_ref().iter().map(move |w| (w, r.span())))
        {
            if (2..=100_000).contains(w) {
                rolling.push(*w as usize);
            } else {
                c.err(
                    span.clone(),
                    "input › rolling",
                    &format!("rolling window {w} is out of range"),
                    "rolling windows are 2–100000 steps",
                );
            }
        }
        let mut norm = Vec::new();
        for t in &tags {
            match raw.normalization.get_ref().get(t) {
                None => c.err(
                    raw.normalization.span(),
                    "normalization",
                    &format!("no entry for input tag {t:?}"),
                    &format!("add [normalization.{t:?}] with mean and std"),
                ),
                Some(n) => {
                    let (m, s) = (*n.mean.get_ref(), *n.std.get_ref());
                    if !m.is_finite() {
                        c.err(
                            n.mean.span(),
                            "normalization › mean",
                            "not a finite number",
                            "retrain",
                        );
                    }
                    if !(s.is_finite() && s > 0.0) {
                        c.err(
                            n.std.span(),
                            "normalization › std",
                            &format!("{s} is not a positive number"),
                            "a constant training signal cannot be normalised: retrain on varying data",
                        );
                    }
                    norm.push((m, s));
                }
            }
        }
        let out = raw.output.get_ref();
        let target = out.tag.get_ref().clone();
        if !tags.contains(&target) {
            c.err(
                out.tag.span(),
                "output › tag",
                &format!("{target:?} is not an input tag"),
                "the forecast tag must also be among input › tags",
            );
        }
        let horizon = c.positive(&out.horizon, "output › horizon", 100_000);
        let output_scale = if out.normalized {
            match (out.mean, out.std) {
                (Some(m), Some(s)) if m.is_finite() && s.is_finite() && s > 0.0 => (m, s),
                _ => {
                    c.err(
                        raw.output.span(),
                        "output",
                        "a normalized output needs a finite mean and a positive std",
                        "add mean and std (the target's training statistics)",
                    );
                    (0.0, 1.0)
                }
            }
        } else {
            (0.0, 1.0)
        };
        let (Some(step), Some(output_step), Some(lags), Some(horizon)) =
            (step, output_step, lags, horizon)
        else {
            return Err(ManifestError::Invalid(c.errors));
        };
        let spec = FeatureSpec {
            tags,
            lags,
            rolling,
            time_of_day: input.time_of_day,
            day_of_week: input.day_of_week,
            step,
            normalization: norm,
        };
        let n = spec.names().len() as i64;
        if *input.features.get_ref() != n {
            c.err(
                input.features.span(),
                "input › features",
                &format!(
                    "says {} features, but tags, lags, rolling and time features make {n}",
                    input.features.get_ref()
                ),
                "the manifest does not describe this model: retrain or correct it",
            );
        }
        if let Some(w) = &input.window
            && let Some(d) = c.duration(w, "input › window")
        {
            let need = step * spec.history() as u32;
            if d != need {
                c.err(
                    w.span(),
                    "input › window",
                    &format!(
                        "{} but the features need {}",
                        w.get_ref(),
                        humantime::format_duration(need)
                    ),
                    "correct the window or the features",
                );
            }
        }
        if !c.errors.is_empty() {
            return Err(ManifestError::Invalid(c.errors));
        }
        Ok(Manifest {
            name: raw.name.into_inner(),
            version: raw.version.into_inner(),
            description: raw.description,
            features: spec,
            target,
            horizon,
            output_step,
            output_scale,
            training: raw.training,
        })
    }
}

struct Check<'a> {
    text: &'a str,
    origin: &'a Path,
    errors: Vec<String>,
}

impl Check<'_> {
    fn err(&mut self, span: Range<usize>, field: &str, msg: &str, help: &str) {
        let (line, col) = line_col(self.text, span.start);
        self.errors.push(format!(
            "{}:{line}:{col}: {field}: {msg}\n  help: {help}",
            self.origin.display()
        ));
    }

    fn duration(&mut self, v: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(
                    v.span(),
                    field,
                    "must be longer than zero",
                    "write e.g. \"1h\" or \"1m\"",
                );
                None
            }
            Err(e) => {
                self.err(
                    v.span(),
                    field,
                    &format!("{:?} is not a duration ({e})", v.get_ref()),
                    "write e.g. \"1h\" or \"1m\"",
                );
                None
            }
        }
    }

    fn positive(&mut self, v: &Spanned<i64>, field: &str, max: i64) -> Option<usize> {
        let n = *v.get_ref();
        if (1..=max).contains(&n) {
            Some(n as usize)
        } else {
            self.err(
                v.span(),
                field,
                &format!("{n} is out of range"),
                &format!("use 1–{max}"),
            );
            None
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // Back to a character boundary: never slice inside a character.
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
schema_version = 1
name = "m"
version = "1.0.0"

[input]
tags = ["a", "b"]
step = "1m"
lags = 4
window = "10m"
rolling = [10]
time_of_day = true
day_of_week = false
features = 18

[normalization.a]
mean = 1.0
std = 2.0

[normalization.b]
mean = 0.0
std = 1.0

[output]
tag = "a"
horizon = 3
step = "1m"
normalized = true
mean = 1.0
std = 2.0
"#;

    #[test]
    fn a_good_manifest_validates() {
        let m = Manifest::parse(GOOD, Path::new("m/manifest.toml")).unwrap();
        // 2 tags × 4 lags + 2 tags × 4 rolling stats + 2 time-of-day.
        assert_eq!(m.features.names().len(), 18);
        assert_eq!(m.features.history(), 10);
        assert_eq!((m.horizon, m.output_scale), (3, (1.0, 2.0)));
    }

    #[test]
    fn errors_are_located_and_all_reported() {
        let bad = GOOD
            .replace("features = 18", "features = 17")
            .replace("std = 1.0", "std = 0.0")
            .replace("tag = \"a\"", "tag = \"c\"");
        let e = Manifest::parse(&bad, Path::new("m/manifest.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/manifest.toml:14:12: input › features"), "{e}");
        assert!(e.contains("normalization › std"), "{e}");
        assert!(e.contains("output › tag: \"c\" is not an input tag"), "{e}");
        let unknown = GOOD.replace("lags = 4", "lags = 4\nlag = 5");
        let e = Manifest::parse(&unknown, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml:10:1") && e.contains("unknown field `lag`"),
            "{e}"
        );
    }
}
