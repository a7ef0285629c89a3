//! `apos-bench forecast`: tract against onnxruntime on the shipped ETTh1
//! model, in the same run, pinned to one core; and the whole per-tag path
//! (features from a grid window + forecast) for 1,000 tags.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use models::Forecaster;

#[derive(Debug)]
pub struct ForecastBench {
    pub tract_single_us: Vec<f64>,
    pub tract_batch: Duration,
    pub ort_single_us: Vec<f64>,
    pub ort_batch: Duration,
    pub ort_version: String,
    /// Features + forecast for every tag, one by one.
    pub per_tag_path: Duration,
    pub tags: usize,
    /// Accuracy through tract over the standard test windows.
    pub test_mse: f64,
    pub test_mae: f64,
}

fn ot(csv: &Path) -> anyhow::Result<Vec<f64>> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let i = header
        .iter()
        .position(|h| *h == "OT")
        .context("no OT column")?;
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .nth(i)
                .context("short row")?
                .parse::<f64>()
                .context("bad number")
        })
        .collect()
}

pub fn run(
    model_dir: &Path,
    csv: &Path,
    python: &Path,
    tags: usize,
    single_runs: usize,
) -> anyhow::Result<ForecastBench> {
    let f = Forecaster::load(model_dir)?;
    let ot = ot(csv)?;
    const L: usize = 336;
    const H: usize = 96;
    if ot.len() < 14_400 {
        bail!(
            "{}: {} rows, the ETTh1 protocol needs 14,400",
            csv.display(),
            ot.len()
        );
    }
    let window = |end: usize| -> anyhow::Result<Vec<f64>> {
        let w: Vec<Option<f64>> = ot[end - L..end].iter().map(|v| Some(*v)).collect();
        Ok(f.manifest.features.build(&[&w], 0)?)
    };
    // "Tags": `tags` different windows from the series.
    let ends: Vec<usize> = (0..tags)
        .map(|k| L + (k * 13) % (ot.len() - L - H))
        .collect();
    let mut rows = Vec::with_capacity(tags);
    for &e in &ends {
        rows.push(window(e)?.iter().map(|v| *v as f32).collect::<Vec<f32>>());
    }

    // tract: single-row latency, then one batched call.
    for r in rows.iter().take(50) {
        f.run_normalized(r, 1)?;
    }
    let mut tract_single_us = Vec::with_capacity(single_runs);
    for i in 0..single_runs {
        let t = Instant::now();
        f.run_normalized(&rows[i % rows.len()], 1)?;
        tract_single_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let flat: Vec<f32> = rows.concat();
    let t = Instant::now();
    f.run_normalized(&flat, rows.len())?;
    let tract_batch = t.elapsed();

    // The per-tag path as the edge runs it: grid window → features → forecast.
    let t = Instant::now();
    for &e in &ends {
        let x = window(e)?;
        f.predict(&x)?;
    }
    let per_tag_path = t.elapsed();

    // Accuracy through tract (normalised test windows, as in the papers).
    let test_ends: Vec<usize> = (11_520..=14_400 - H).collect();
    let mut x = Vec::with_capacity(test_ends.len() * L);
    for &e in &test_ends {
        x.extend(window(e)?.iter().map(|v| *v as f32));
    }
    let y = f.run_normalized(&x, test_ends.len())?;
    let (m, s) = f.manifest.output_scale;
    let (mut se, mut ae) = (0.0, 0.0);
    for (k, &e) in test_ends.iter().enumerate() {
        for h in 0..H {
            let d = f64::from(y[k * H + h]) - (ot[e + h] - m) / s;
            se += d * d;
            ae += d.abs();
        }
    }
    let n = (test_ends.len() * H) as f64;

    // onnxruntime, same inputs, same core (the caller pins this process; the
    // child inherits the affinity).
    let peer = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/onnx_bench.py");
    let req = serde_json::json!({
        "model": f.dir.join("model.onnx"),
        "rows": rows,
        "single_runs": single_runs,
    });
    let mut child = Command::new(python)
        .arg(&peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (needs onnxruntime: scripts/test.sh installs it in .venv)",
                python.display()
            )
        })?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(req.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("onnxruntime peer failed");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ort_single_us: Vec<f64> = serde_json::from_value(v["single_us"].clone())?;
    let ort_batch = Duration::from_secs_f64(v["batch_s"].as_f64().context("batch_s")?);
    Ok(ForecastBench {
        tract_single_us,
        tract_batch,
        ort_single_us,
        ort_batch,
        ort_version: v["version"].as_str().unwrap_or("?").to_string(),
        per_tag_path,
        tags,
        test_mse: se / n,
        test_mae: ae / n,
    })
}

/// Median and 99th percentile.
pub fn p50_p99(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| {
        s.get(((s.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

/// `apos-bench plant-history`: the simulated plant's history as CSV (the
/// demo model's training data, docs/models.md).
pub fn plant_history(
    out: &std::path::Path,
    seed: u64,
    time_scale: f64,
    step: Duration,
    simulated: Duration,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut plant = crate::plant::model::Plant::new(seed);
    // As the demo: one TICK of real time = TICK × time_scale simulated.
    let dt = crate::plant::TICK.as_secs_f64() * time_scale;
    let sample_every = (step.as_secs_f64() / crate::plant::TICK.as_secs_f64()).round() as u64;
    let ticks = (simulated.as_secs_f64() / dt) as u64;
    let base_s: i64 = 1_767_225_600; // 2026-01-01, arbitrary: the model has no time features
    let mut csv = String::from("ts,heater.fuel_gas_flow,heater.outlet_temp,column.feed_rate\n");
    let mut rows = 0;
    for k in 0..ticks {
        if k % sample_every.max(1) == 0 {
            let s = plant.snapshot();
            let ts = base_s as f64 + (k as f64) * crate::plant::TICK.as_secs_f64();
            writeln!(
                csv,
                "{ts:.1},{:.4},{:.4},{:.4}",
                s.fuel_gas_flow, s.outlet_temp, s.feed_rate
            )?;
            rows += 1;
        }
        plant.step(dt);
    }
    std::fs::write(out, csv)?;
    println!(
        "{rows} rows ({} simulated at ×{time_scale}, every {} real) → {}",
        humantime::format_duration(simulated),
        humantime::format_duration(step),
        out.display()
    );
    Ok(())
}
