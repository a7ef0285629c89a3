//! The feature pipeline: from local history to the vector a model reads.
//!
//! Twin of `features()` in `models/train/train_forecaster.py`; the two must
//! agree to the last bit that f64 allows (a test runs both on the same rows).
//! The vector, in order (see [`FeatureSpec::names`]):
//!
//! 1. per tag, its last `lags` values on the step grid, oldest first,
//!    z-normalised with the tag's training mean and std;
//! 2. per tag and rolling window `w`: mean, population std, min and max of
//!    its last `w` values (mean, min, max z-normalised; std divided by std);
//! 3. if enabled, time of day and day of week of the forecast origin (the
//!    last grid point plus one step), each as a (sin, cos) pair, UTC.
//!
//! The grid comes from [`resample`]: the value at a grid point is the last
//! sample at or before it (a historian's "previous value"), held for at
//! most a configurable time; older than that it is missing.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeatureError {
    #[error(
        "tag {tag}: {missing} of the last {needed} grid points have no value (gap in the history)"
    )]
    Missing {
        tag: String,
        missing: usize,
        needed: usize,
    },
    #[error("expected {expected} tags' windows, got {got}")]
    Tags { expected: usize, got: usize },
    #[error("tag {tag}: needs {needed} values, got {got}")]
    Short {
        tag: String,
        needed: usize,
        got: usize,
    },
}

/// What a model reads, from its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub tags: Vec<String>,
    pub lags: usize,
    /// Rolling windows, in steps.
    pub rolling: Vec<usize>,
    pub time_of_day: bool,
    pub day_of_week: bool,
    pub step: Duration,
    /// Per tag: (mean, std) of the training data.
    pub normalization: Vec<(f64, f64)>,
}

const ROLLING: [&str; 4] = ["mean", "std", "min", "max"];

impl FeatureSpec {
    /// Grid points of history a feature vector needs per tag.
    pub fn history(&self) -> usize {
        self.rolling.iter().copied().fold(self.lags, usize::max)
    }

    /// The feature names, in vector order (as the training script writes them).
    pub fn names(&self) -> Vec<String> {
        let mut n = Vec::new();
        for t in &self.tags {
            n.extend((0..self.lags).rev().map(|k| format!("{t}[t-{k}]")));
        }
        for t in &self.tags {
            for w in &self.rolling {
                n.extend(ROLLING.iter().map(|s| format!("{t}.rolling_{s}_{w}")));
            }
        }
        if self.time_of_day {
            n.extend(["time_of_day.sin".into(), "time_of_day.cos".into()]);
        }
        if self.day_of_week {
            n.extend(["day_of_week.sin".into(), "day_of_week.cos".into()]);
        }
        n
    }

    /// Build the vector from each tag's last [`Self::history`] grid values
    /// (oldest first; `None` = missing) and the last grid point's time.
    pub fn build(
        &self,
        windows: &[&[Option<f64>]],
        last_ms: i64,
    ) -> Result<Vec<f64>, FeatureError> {
        if windows.len() != self.tags.len() {
            return Err(FeatureError::Tags {
                expected: self.tags.len(),
                got: windows.len(),
            });
        }
        let need = self.history();
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(windows.len());
        for (tag, w) in self.tags.iter().zip(windows) {
            if w.len() < need {
                return Err(FeatureError::Short {
                    tag: tag.clone(),
                    needed: need,
                    got: w.len(),
                });
            }
            let w = &w[w.len() - need..];
            let missing = w
                .iter()
                .filter(|v| v.is_none_or(|x| !x.is_finite()))
                .count();
            if missing > 0 {
                return Err(FeatureError::Missing {
                    tag: tag.clone(),
                    missing,
                    needed: need,
                });
            }
            values.push(w.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
        }
        let mut out = Vec::with_capacity(self.names().len());
        for (v, &(m, s)) in values.iter().zip(&self.normalization) {
            out.extend(v[v.len() - self.lags..].iter().map(|x| (x - m) / s));
        }
        for (v, &(m, s)) in values.iter().zip(&self.normalization) {
            for &w in &self.rolling {
                let x = &v[v.len() - w..];
                let n = x.len() as f64;
                // Same order of operations as numpy: sum / n, then the
                // mean of squared deviations.
                let mean = pairwise_sum(x) / n;
                let dev: Vec<f64> = x.iter().map(|a| (a - mean) * (a - mean)).collect();
                let std = (pairwise_sum(&dev) / n).sqrt();
                let min = x.iter().copied().fold(f64::INFINITY, f64::min);
                let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                out.extend([(mean - m) / s, std / s, (min - m) / s, (max - m) / s]);
            }
        }
        let origin_s = last_ms.div_euclid(1000) + self.step.as_secs() as i64;
        if self.time_of_day {
            let a = std::f64::consts::TAU * (origin_s.rem_euclid(86_400)) as f64 / 86_400.0;
            out.extend([a.sin(), a.cos()]);
        }
        if self.day_of_week {
            // 1970-01-01 was a Thursday; Monday = 0.
            let dow = (origin_s.div_euclid(86_400) + 3).rem_euclid(7);
            let a = std::f64::consts::TAU * dow as f64 / 7.0;
            out.extend([a.sin(), a.cos()]);
        }
        Ok(out)
    }
}

/// numpy's summation for contiguous f64 arrays: pairwise, with 8-way
/// unrolled blocks of up to 128 elements, so that means agree bit for bit
/// with the training script.
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for x in a {
            res += x;
        }
        res
    } else if n <= BLOCK {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        while i + 8 <= n {
            for (k, rk) in r.iter_mut().enumerate() {
                *rk += a[i + k];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Sample-and-hold onto the grid `first_ms, first_ms + step, …` (`points`
/// points): the value at a grid point is the last sample at or before it,
/// if that sample is good and at most `max_hold` old. `samples` are
/// (ms, value) in time order, `None` for a sample that is not good (it
/// ends the hold: the value is unknown from then on).
pub fn resample(
    samples: &[(i64, Option<f64>)],
    first_ms: i64,
    step: Duration,
    points: usize,
    max_hold: Duration,
) -> Vec<Option<f64>> {
    let step_ms = step.as_millis() as i64;
    let hold_ms = max_hold.as_millis() as i64;
    let mut out = Vec::with_capacity(points);
    let mut i = 0;
    let mut last: Option<(i64, Option<f64>)> = None;
    for k in 0..points {
        let t = first_ms + k as i64 * step_ms;
        while i < samples.len() && samples[i].0 <= t {
            last = Some(samples[i]);
            i += 1;
        }
        out.push(
            last.filter(|(ts, _)| t - ts <= hold_ms)
                .and_then(|(_, v)| v),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec() -> FeatureSpec {
        FeatureSpec {
            tags: vec!["a".into()],
            lags: 3,
            rolling: vec![4],
            time_of_day: true,
            day_of_week: true,
            step: Duration::from_secs(3600),
            normalization: vec![(10.0, 2.0)],
        }
    }

    #[test]
    fn features_computed_by_hand() {
        let w = [Some(10.0), Some(12.0), Some(14.0), Some(16.0)];
        // Last point 1970-01-05 (a Monday) 05:00 UTC; origin 06:00.
        let last_ms = (4 * 86_400 + 5 * 3600) * 1000;
        let f = spec().build(&[&w], last_ms).unwrap();
        let expect = [
            1.0,
            2.0,
            3.0,               // lags 12, 14, 16 → (x − 10) / 2
            1.5,               // mean 13 → 1.5
            5f64.sqrt() / 2.0, // population std √5, / 2
            0.0,               // min 10
            3.0,               // max 16
            1.0,
            0.0, // 06:00 = a quarter of the day: sin 1, cos 0
            0.0,
            1.0, // Monday: angle 0
        ];
        assert_eq!(f.len(), expect.len());
        for (a, b) in f.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{f:?}");
        }
        assert_eq!(spec().names().len(), f.len());
    }

    #[test]
    fn gaps_and_short_history_are_errors_not_numbers() {
        let w = [Some(1.0), None, Some(1.0), Some(2.0)];
        assert_eq!(
            spec().build(&[&w], 0),
            Err(FeatureError::Missing {
                tag: "a".into(),
                missing: 1,
                needed: 4
            })
        );
        let w = [Some(1.0), Some(2.0)];
        assert!(matches!(
            spec().build(&[&w], 0),
            Err(FeatureError::Short { .. })
        ));
    }

    #[test]
    fn resampling_holds_the_previous_value_for_a_while() {
        let s = [(0, Some(1.0)), (1500, Some(2.0)), (1700, Some(3.0))];
        let g = resample(
            &s,
            0,
            Duration::from_secs(1),
            6,
            Duration::from_millis(2500),
        );
        assert_eq!(
            g,
            vec![Some(1.0), Some(1.0), Some(3.0), Some(3.0), Some(3.0), None]
        );
        // A bad sample ends the hold.
        let s = [(0, Some(1.0)), (1500, None), (3200, Some(4.0))];
        let g = resample(&s, 0, Duration::from_secs(1), 5, Duration::from_secs(60));
        assert_eq!(g, vec![Some(1.0), Some(1.0), None, None, Some(4.0)]);
    }

    #[test]
    fn pairwise_sum_matches_a_plain_sum_closely() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let plain: f64 = v.iter().sum();
        assert!((pairwise_sum(&v) - plain).abs() < 1e-10);
    }
}
