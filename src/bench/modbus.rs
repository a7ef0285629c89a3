//! `apos-bench modbus`: cost of one poll cycle over 10,000 mixed tags.
//!
//! Four clients read the same registers from the same local server (the
//! fast Rust register file of [`super::server`], so the server is not what is
//! measured), one after the other:
//! our driver with the planner's coalesced requests, our driver with one
//! request per tag, and pymodbus's async client with each of the same two
//! request lists.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use drivers::modbus::device::ModbusDevice;
use drivers::modbus::planner::{self, PlanItem};
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{server, tagset};

/// Timing of one client over several cycles.
#[derive(Debug, Clone)]
pub struct CycleStats {
    pub client: String,
    pub requests_per_cycle: usize,
    pub cycles: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Samples decoded per cycle (ours only).
    pub values: Option<usize>,
}

fn stats(client: &str, requests: usize, mut ms: Vec<f64>, values: Option<usize>) -> CycleStats {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    CycleStats {
        client: client.to_owned(),
        requests_per_cycle: requests,
        cycles: ms.len(),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        values,
    }
}

async fn ours(
    addr: std::net::SocketAddr,
    dev: &mut ModbusDevice,
    cycles: usize,
    label: &str,
) -> anyhow::Result<CycleStats> {
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await?;
    let requests = dev.groups[0].plan.len();
    let mut times = Vec::with_capacity(cycles);
    let mut values = 0;
    for i in 0..=cycles {
        let t = Instant::now();
        let out = dev
            .poll(&mut ctx, 0)
            .await
            .map_err(|(_, e)| anyhow::anyhow!("poll failed: {e}"))?;
        let el = t.elapsed();
        if out.samples.iter().any(|s| !s.quality.is_good()) {
            bail!(
                "bad samples in benchmark: {:?}",
                out.samples.iter().find(|s| !s.quality.is_good())
            );
        }
        values = out.samples.len();
        if i > 0 {
            times.push(el.as_secs_f64() * 1e3);
        }
    }
    Ok(stats(label, requests, times, Some(values)))
}

fn pymodbus(
    python: &PathBuf,
    addr: std::net::SocketAddr,
    plan: &[(u16, u16)],
    cycles: usize,
    label: &str,
) -> anyhow::Result<CycleStats> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/pymodbus_client_bench.py");
    let dir = tempfile::tempdir()?;
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, serde_json::to_string(plan)?)?;
    let out = Command::new(python)
        .arg(&script)
        .args([
            "--host",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
            "--cycles",
            &cycles.to_string(),
            "--plan",
        ])
        .arg(&plan_path)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "pymodbus client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing the pymodbus client's JSON")?;
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    Ok(CycleStats {
        client: label.to_owned(),
        requests_per_cycle: plan.len(),
        cycles: f("cycles") as usize,
        mean_ms: f("mean_cycle_ms"),
        p50_ms: f("p50_cycle_ms"),
        p99_ms: f("p99_cycle_ms"),
        values: None,
    })
}

/// Run the benchmark and print a Markdown table.
pub async fn run(tags: usize, cycles: usize, python: Option<PathBuf>) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let (addr, _stats) = server::spawn("127.0.0.1:0".parse()?, cancel.clone()).await?;
    let dir = tempfile::tempdir()?;
    let text = tagset::edge_config(addr, tags, "1s", &dir.path().join("unused.db"));
    let cfg_path = dir.path().join("bench.toml");
    let cfg = firmware_config::load_str(&cfg_path, text)
        .map_err(|e| anyhow::anyhow!("bench config invalid: {e}"))?;
    let device = cfg.device("plc").context("bench device missing")?;
    let mut planned = ModbusDevice::from_config(&cfg, device);
    let mut per_tag = ModbusDevice::from_config(&cfg, device);
    let items: Vec<PlanItem> = planned.groups[0]
        .tags
        .iter()
        .map(|&i| {
            let t = &planned.tags[i];
            PlanItem {
                area: t.area,
                address: t.address,
                width: t.data_type.width(),
            }
        })
        .collect();
    per_tag.groups[0].plan = planner::plan_per_tag(&items);
    let to_pairs = |d: &ModbusDevice| {
        d.groups[0]
            .plan
            .iter()
            .map(|r| (r.start, r.count))
            .collect::<Vec<_>>()
    };
    let (planned_pairs, per_tag_pairs) = (to_pairs(&planned), to_pairs(&per_tag));
    let n_tags = planned.tags.len();
    let registers: u32 = planned_pairs.iter().map(|p| u32::from(p.1)).sum();
    eprintln!(
        "{n_tags} tags; planned: {} requests covering {registers} registers; per tag: {} requests",
        planned_pairs.len(),
        per_tag_pairs.len()
    );

    let per_tag_cycles = (cycles / 5).max(3);
    let mut rows = vec![
        ours(addr, &mut planned, cycles, "apos driver, planned").await?,
        ours(
            addr,
            &mut per_tag,
            per_tag_cycles,
            "apos driver, one request per tag",
        )
        .await?,
    ];
    let python = python
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    if python.exists() {
        rows.push(pymodbus(
            &python,
            addr,
            &planned_pairs,
            cycles,
            "pymodbus async client, same planned requests",
        )?);
        rows.push(pymodbus(
            &python,
            addr,
            &per_tag_pairs,
            per_tag_cycles,
            "pymodbus async client, one request per tag",
        )?);
    } else {
        eprintln!(
            "warning: {} not found (run scripts/test.sh once); skipping pymodbus",
            python.display()
        );
    }
    cancel.cancel();

    println!("| client | requests/cycle | cycles | mean cycle | p50 | p99 | values/cycle |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            r.client,
            r.requests_per_cycle,
            r.cycles,
            r.mean_ms,
            r.p50_ms,
            r.p99_ms,
            r.values.map_or("–".to_string(), |v| v.to_string())
        );
    }
    if rows.len() == 4 {
        println!();
        println!(
            "ratios: planned/per-tag requests = 1/{:.0}; apos planned is {:.1}× faster than pymodbus on the same requests; {:.1}× faster than pymodbus per tag",
            rows[1].requests_per_cycle as f64 / rows[0].requests_per_cycle as f64,
            rows[2].mean_ms / rows[0].mean_ms,
            rows[3].mean_ms / rows[0].mean_ms,
        );
    }
    Ok(())
}
