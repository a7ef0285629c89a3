//! The shipped ETTh1 model: tract against onnxruntime, and its accuracy
//! under the standard protocol, recomputed here through tract.

use models::Forecaster;

use crate::support::{column, etth1_csv, onnxruntime, python, repo};

const L: usize = 336;
const H: usize = 96;

fn model() -> Forecaster {
    Forecaster::load(&repo().join("models/assets/etth1-ot")).unwrap()
}

/// Feature vector (normalised lags) for the window whose targets start at `end`.
fn window(f: &Forecaster, ot: &[f64], end: usize) -> Vec<f64> {
    let w: Vec<Option<f64>> = ot[end - L..end].iter().map(|v| Some(*v)).collect();
    f.manifest.features.build(&[&w], 0).unwrap()
}

#[test]
fn tract_equals_onnxruntime_within_1e_5() {
    let Some(py) = python() else { return };
    let f = model();
    let ot = column(&etth1_csv(), "OT");
    let rows: Vec<Vec<f32>> = [336, 5000, 11520, 13000, 14304]
        .iter()
        .map(|&e| window(&f, &ot, e).iter().map(|v| *v as f32).collect())
        .collect();
    let flat: Vec<f32> = rows.concat();
    let ours = f.run_normalized(&flat, rows.len()).unwrap();
    let theirs = onnxruntime(&py, &f.dir.join("model.onnx"), &rows);
    let mut worst = 0f64;
    for (r, t) in theirs.iter().enumerate() {
        assert_eq!(t.len(), H);
        for (h, v) in t.iter().enumerate() {
            worst = worst.max((f64::from(ours[r * H + h]) - v).abs());
        }
    }
    assert!(worst <= 1e-5, "tract and onnxruntime differ by {worst}");
    // And the outputs are not trivial.
    assert!(ours.iter().any(|v| v.abs() > 0.1));
}

#[test]
fn etth1_accuracy_through_tract_matches_the_standard_protocol() {
    let f = model();
    let ot = column(&etth1_csv(), "OT");
    assert_eq!(ot.len(), 17_420);
    let (m, s) = f.manifest.output_scale;
    // Test windows: targets in rows [11520, 14400), inputs reach back L rows.
    let ends: Vec<usize> = (11_520..=14_400 - H).collect();
    assert_eq!(ends.len(), 2785);
    let mut x = Vec::with_capacity(ends.len() * L);
    for &e in &ends {
        x.extend(window(&f, &ot, e).iter().map(|v| *v as f32));
    }
    let y = f.run_normalized(&x, ends.len()).unwrap();
    let (mut se, mut ae, mut se_naive, mut ae_naive) = (0.0, 0.0, 0.0, 0.0);
    for (k, &e) in ends.iter().enumerate() {
        let last = (ot[e - 1] - m) / s;
        for h in 0..H {
            let truth = (ot[e + h] - m) / s;
            let d = f64::from(y[k * H + h]) - truth;
            se += d * d;
            ae += d.abs();
            se_naive += (last - truth) * (last - truth);
            ae_naive += (last - truth).abs();
        }
    }
    let n = (ends.len() * H) as f64;
    let (mse, mae) = (se / n, ae / n);
    // The protocol reproduces the published naive baseline (0.069 / 0.203)…
    assert!(
        (se_naive / n - 0.0693).abs() < 5e-4,
        "naive MSE {}",
        se_naive / n
    );
    assert!(
        (ae_naive / n - 0.2033).abs() < 5e-4,
        "naive MAE {}",
        ae_naive / n
    );
    // …and the shipped model beats DLinear (0.056 / 0.180) and PatchTST/42
    // (0.055 / 0.179), as the manifest records.
    assert!(mse < 0.055 && mae < 0.179, "MSE {mse} MAE {mae}");
    let recorded = f.manifest.training["test_mse"].as_float().unwrap();
    assert!(
        (mse - recorded).abs() < 1e-4,
        "tract {mse} vs training {recorded}"
    );
}

#[test]
fn explanations_add_up_for_the_linear_model() {
    let f = model();
    let ot = column(&etth1_csv(), "OT");
    let x = window(&f, &ot, 12_000);
    for max in [L, 12] {
        let e = f.explain(&x, max).unwrap();
        assert_eq!(e.contributions.len(), max.min(L));
        for h in 0..H {
            let sum: f64 = e.contributions.iter().map(|(_, c)| c[h]).sum();
            let delta = e.forecast[h] - e.baseline[h];
            // Exact in real numbers; float32 rounding only.
            assert!(
                (sum - delta).abs() < 2e-3 * (1.0 + delta.abs()),
                "h {h}: {sum} vs {delta}"
            );
        }
    }
    // The most recent lag matters most for the next hour (NLinear).
    let e = f.explain(&x, L).unwrap();
    let top = e
        .contributions
        .iter()
        .max_by(|a, b| a.1[0].abs().total_cmp(&b.1[0].abs()))
        .unwrap();
    assert_eq!(top.0, "OT[t-0]");
}

#[test]
fn a_corrupt_or_mismatched_model_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("models/assets/etth1-ot");
    std::fs::copy(src.join("manifest.toml"), dir.path().join("manifest.toml")).unwrap();
    std::fs::write(dir.path().join("model.onnx"), b"not a model").unwrap();
    let e = Forecaster::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cannot load the ONNX graph"), "{e}");

    std::fs::copy(src.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
    let text = std::fs::read_to_string(src.join("manifest.toml")).unwrap();
    std::fs::write(
        dir.path().join("manifest.toml"),
        text.replace("horizon = 96", "horizon = 48"),
    )
    .unwrap();
    let e = Forecaster::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("does not match the manifest") && e.contains("48"),
        "{e}"
    );
}

/// 1,000 seeded mutations of a shipped model (bytes flipped, runs
/// overwritten, the file cut short): every load returns (a model or an
/// error), none unwinds through the caller. tract panicked on 4 of 1,000
/// such files, which took `apos-edge forecast list` down with exit 101 and
/// left a running edge without a word about the refused model.
#[test]
fn damaged_models_are_refused_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("models/assets/plant-heater-fuel");
    std::fs::copy(src.join("manifest.toml"), dir.path().join("manifest.toml")).unwrap();
    let good = std::fs::read(src.join("model.onnx")).unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    let (mut loaded, mut refused, mut caught) = (0, 0, 0);
    for i in 0..1000 {
        let mut bytes = good.clone();
        match i % 4 {
            0 => {
                for _ in 0..1 + rnd(8) {
                    let at = rnd(bytes.len());
                    bytes[at] ^= 1 << rnd(8);
                }
            }
            1 => {
                let at = rnd(bytes.len());
                let len = (1 + rnd(16)).min(bytes.len() - at);
                let v = rnd(256) as u8;
                bytes[at..at + len].fill(v);
            }
            2 => bytes.truncate(rnd(bytes.len())),
            _ => {
                // A length or tag byte set to an extreme.
                let at = rnd(bytes.len());
                bytes[at] = if rnd(2) == 0 { 0xFF } else { 0x00 };
            }
        }
        std::fs::write(dir.path().join("model.onnx"), &bytes).unwrap();
        let result = std::panic::catch_unwind(|| Forecaster::load(dir.path()));
        match result {
            Err(_) => panic!("mutation {i}: a panic unwound through Forecaster::load"),
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => {
                refused += 1;
                if e.to_string().contains("the ONNX loader failed") {
                    caught += 1;
                }
            }
        }
    }
    eprintln!(
        "1000 mutated models: {loaded} loaded, {refused} refused ({caught} of them tract panics caught)"
    );
    // Many mutations only change weights (and load); the rest are refused,
    // and among those, tract's panics were caught (the seed reproduces 3).
    assert!(refused >= 200, "refused: {refused}");
    assert!(
        caught >= 1,
        "no tract panic among the mutations: the test lost its teeth"
    );
}
