//! The Rust feature pipeline against the training script's, on the same
//! rows, with every kind of feature (lags of two tags, rolling statistics,
//! time of day and day of week); the script's csv mode trains the model.

use std::fmt::Write;
use std::path::Path;

use models::Forecaster;

use crate::support::{onnxruntime, python, repo, run_json};

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, a Thursday
const ROWS: usize = 3000;

fn synthetic_csv(path: &Path) -> (Vec<f64>, Vec<f64>) {
    let mut text = String::from("ts,a,b\n");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..ROWS {
        let t = i as f64;
        // Deterministic, with a daily cycle and some wiggle.
        let va = 50.0
            + 10.0 * (t * std::f64::consts::TAU / 1440.0).sin()
            + ((t * 0.37).sin() * 3.1).fract();
        let vb = 3.0 + (t * 0.05).cos() * 0.7 + (t * 1.3).sin() * 0.01;
        writeln!(text, "{},{va:.6},{vb:.6}", T0 + 60 * i as i64).unwrap();
        a.push(format!("{va:.6}").parse().unwrap());
        b.push(format!("{vb:.6}").parse().unwrap());
    }
    std::fs::write(path, text).unwrap();
    (a, b)
}

#[test]
fn rust_features_equal_the_training_scripts_and_tract_equals_onnxruntime() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("history.csv");
    let (a, b) = synthetic_csv(&csv);
    let model_dir = dir.path().join("model");
    let script = repo().join("models/train/train_forecaster.py");
    let out = std::process::Command::new(&py)
        .args([script.to_str().unwrap(), "csv", "--data"])
        .arg(&csv)
        .args([
            "--target",
            "a",
            "--tags",
            "a,b",
            "--step",
            "1m",
            "--lookback",
            "30",
            "--horizon",
            "10",
            "--rolling",
            "10,60",
            "--time-features",
            "--alphas",
            "1,10",
            "--out",
        ])
        .arg(&model_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Issue 15: the manifest named ETTh1 whatever data it was given.
    let manifest = std::fs::read_to_string(model_dir.join("manifest.toml")).unwrap();
    assert!(!manifest.contains("ETTh1"), "{manifest}");
    assert!(
        manifest.contains("protocol = \"history a (inputs a, b), L=30 H=10, chronological"),
        "{manifest}"
    );
    assert!(
        manifest.contains("a from history (inputs a, b)"),
        "{manifest}"
    );
    let f = Forecaster::load(&model_dir).unwrap();
    let spec = &f.manifest.features;
    assert_eq!(spec.history(), 60);
    let ends = [60usize, 61, 777, 1500, 2999];
    let theirs = run_json(
        &py,
        &[
            script.to_str().unwrap(),
            "features",
            "--data",
            csv.to_str().unwrap(),
            "--manifest",
            model_dir.join("manifest.toml").to_str().unwrap(),
            "--ends",
            &ends.map(|e| e.to_string()).join(","),
        ],
        "",
    );
    let mut rows = Vec::new();
    for &e in &ends {
        let wa: Vec<Option<f64>> = a[e - 60..e].iter().map(|v| Some(*v)).collect();
        let wb: Vec<Option<f64>> = b[e - 60..e].iter().map(|v| Some(*v)).collect();
        let last_ms = (T0 + 60 * (e as i64 - 1)) * 1000;
        let ours = spec.build(&[&wa, &wb], last_ms).unwrap();
        let theirs: Vec<f64> = serde_json::from_value(theirs[e.to_string()].clone()).unwrap();
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours.len(), spec.names().len());
        for (k, (x, y)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                "row {e}, feature {} ({k}): rust {x} python {y}",
                spec.names()[k]
            );
        }
        rows.push(ours.iter().map(|v| *v as f32).collect::<Vec<f32>>());
    }
    let ours = f.run_normalized(&rows.concat(), rows.len()).unwrap();
    let theirs = onnxruntime(&py, &model_dir.join("model.onnx"), &rows);
    for (r, t) in theirs.iter().enumerate() {
        for (h, v) in t.iter().enumerate() {
            assert!((f64::from(ours[r * 10 + h]) - v).abs() <= 1e-5);
        }
    }
}
