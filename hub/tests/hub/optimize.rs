//! `apos-hub optimize mps` as the built binary: every Netlib problem of
//! `shared/data/netlib` (beside the repository) to its published optimum
//! (the table in that folder's README) within 1e-6 relative, as the
//! command prints it; a malformed file is refused with its line number.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_apos-hub");

fn netlib() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/netlib");
    if d.join("README.md").exists() {
        return Some(d);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Netlib problems are missing: {}",
        d.display()
    );
    eprintln!("SKIPPED: no Netlib problems at {}", d.display());
    None
}

#[test]
fn the_command_matches_every_published_netlib_optimum() {
    let Some(dir) = netlib() else { return };
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let mut checked = 0;
    for line in readme.lines() {
        // | afiro.mps.gz | 28 | -4.6475314286E+02 |
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(file), Some(opt)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let Ok(published) = opt.parse::<f64>() else {
            continue;
        };
        if !file.ends_with(".mps.gz") {
            continue;
        }
        let out = Command::new(BIN)
            .args(["optimize", "mps", "--json"])
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "optimal", "{file}: {v}");
        let got = v["objective"].as_f64().unwrap();
        let rel = (got - published).abs() / published.abs().max(1.0);
        eprintln!(
            "{file}: {got:.10e} vs {published:.10e} (rel {rel:.1e}, {} ms)",
            v["solve_ms"]
        );
        assert!(rel < 1e-6, "{file}: {got} vs published {published}");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} problems in the README");
}

#[test]
fn a_malformed_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.mps");
    std::fs::write(
        &f,
        "NAME BAD\nROWS\n N obj\n L c1\nCOLUMNS\n x obj 1 c1 one\nRHS\n rhs c1 4\nENDATA\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["optimize", "mps"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 6"), "{err}");
}

// ---------------------------------------------------------------- fitted models

mod fitted {
    use std::path::Path;

    use hub::store::{Incoming, Store};
    use protocol::v1::{Batch, Body, Window, WindowSet};

    const MIN: i64 = 60_000;
    const T0: i64 = 1_799_020_800_000;
    const SPAN: i64 = 2 * 24 * 60 * MIN;

    /// The "plant": a step-tested outlet temperature and reflux, an ambient
    /// disturbance, first-order lags (so the rows after a step are not
    /// steady), and the true linear steady-state gains the fit must find.
    fn plant(t: i64, tag: &str) -> f64 {
        let k = (t - T0) / (90 * MIN);
        let t_sp = [350.0, 360.0, 355.0, 370.0, 365.0, 358.0, 362.0][(k % 7) as usize];
        let r_sp = [2.0, 2.4, 2.2, 1.9, 2.3][((k / 2) % 5) as usize];
        let amb = 14.0 + 7.0 * ((t - T0) as f64 / (86_400_000.0) * std::f64::consts::TAU).sin();
        // Minutes since the last step of either setpoint: lags settle in ~15 min.
        let since = ((t - T0) % (90 * MIN)) as f64 / MIN as f64;
        let settle = 1.0 - (-since / 3.0).exp();
        let noise = (((t / MIN) * 2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
        match tag {
            "t_sp" => t_sp,
            "r_sp" => r_sp,
            "ambient" => amb,
            // Lagging only right after a step: its steady value is linear.
            "t95" => {
                (41.2 + 0.4 * t_sp - 6.0 * r_sp + 0.1 * amb) * settle
                    + 170.0 * (1.0 - settle)
                    + 0.05 * noise
            }
            "flow" => {
                (-250.0 + 0.9 * t_sp + 2.0 * r_sp) * settle + 80.0 * (1.0 - settle) + 0.1 * noise
            }
            _ => f64::NAN,
        }
    }

    fn store() -> Store {
        let mut s = Store::open_in_memory().unwrap();
        let mut seq = 0;
        let mut sets = Vec::new();
        let mut t = T0;
        let flush = |s: &mut Store, seq: &mut u64, sets: &mut Vec<WindowSet>| {
            *seq += 1;
            s.ingest(&[Incoming {
                site: "s".into(),
                node: "n".into(),
                raw: bytes::Bytes::new(),
                received_ms: T0,
                batch: Batch {
                    seq: *seq,
                    created_ms: T0,
                    body: Body::Aggregates(std::mem::take(sets)),
                },
            }])
            .unwrap();
        };
        while t < T0 + SPAN {
            let windows = ["t_sp", "r_sp", "ambient", "t95", "flow"]
                .iter()
                .map(|tag| {
                    let v = plant(t, tag);
                    Window {
                        tag: (*tag).into(),
                        count: 6,
                        good: 6,
                        min: v,
                        max: v,
                        mean: v,
                        twa: v,
                        last: v,
                    }
                })
                .collect();
            sets.push(WindowSet {
                width_ms: MIN as u32,
                start_ms: t,
                windows,
            });
            if sets.len() == 240 {
                flush(&mut s, &mut seq, &mut sets);
            }
            t += MIN;
        }
        if !sets.is_empty() {
            flush(&mut s, &mut seq, &mut sets);
        }
        s
    }

    const PROBLEM: &str = r#"schema_version = 1
[storage]
path = "/tmp/unused/fleet.duckdb"
[[optimization]]
name = "m"
site = "s"
node = "n"
window = "1m"
history = "2d"
margin_sigmas = 2.0
[[optimization.decision]]
tag = "t_sp"
min = 340.0
max = 385.0
max_move = 30.0
[[optimization.decision]]
tag = "r_sp"
min = 1.8
max = 2.4
[[optimization.output]]
tag = "t95"
unit = "°C"
inputs = ["t_sp", "r_sp", "ambient"]
[[optimization.output]]
tag = "flow"
unit = "m³/h"
inputs = ["t_sp", "r_sp"]
[[optimization.term]]
tag = "flow"
price = 100.0
[[optimization.constraint]]
name = "naphtha 95 % spec"
tag = "t95"
max = 180.0
"#;

    /// Fitted on steady windows only, the models find the plant's true
    /// gains despite the lags, and the optimum sits on the spec less the
    /// stated safety margin.
    #[test]
    fn models_fitted_from_history_find_the_true_gains_and_the_optimum() {
        let mut s = store();
        let reads = s.read_pool().unwrap();
        let cfg = hub::config::parse(Path::new("hub.toml"), PROBLEM).unwrap();
        let p = &cfg.optimization.unwrap().problems[0];
        let solved = hub::optimize::solve(p, &reads, T0 + SPAN).unwrap();
        let m = &solved.json["models"]["t95"];
        let coef = |name: &str| {
            let i = m["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .position(|x| x == name)
                .unwrap();
            m["coefficients"][i].as_f64().unwrap()
        };
        for (name, truth) in [("t_sp", 0.4), ("r_sp", -6.0), ("ambient", 0.1)] {
            let c = coef(name);
            assert!(
                (c - truth).abs() < 0.02 * truth.abs().max(1.0),
                "{name}: {c} vs {truth}"
            );
        }
        let q = &m["quality"];
        assert!(q["r2_test"].as_f64().unwrap() > 0.99, "{q}");
        let steady = q["steady_rows"].as_u64().unwrap();
        let total = q["total_rows"].as_u64().unwrap();
        // The rows right after each step are not steady: some, not all, are used.
        assert!(steady > 200 && steady < total, "{steady} of {total}");
        let rec = &solved.rec;
        let sigma = q["residual_std"].as_f64().unwrap();
        let t95 = rec.outputs.iter().find(|o| o.tag == "t95").unwrap();
        assert!(
            (t95.proposed - (180.0 - 2.0 * sigma)).abs() < 1e-6,
            "{t95:?} σ {sigma}"
        );
        assert!(rec.benefit_per_hour > 0.0);
        assert!(
            rec.binding.iter().any(|b| b.name == "naphtha 95 % spec"),
            "{:?}",
            rec.binding
        );
    }

    /// Without movement in a setpoint there is nothing to fit: the run
    /// fails and says which setpoint and what to do.
    #[test]
    fn a_setpoint_that_never_moved_is_named() {
        let mut s = Store::open_in_memory().unwrap();
        for (seq, day) in (1u64..).zip(0..2) {
            let sets = (0..1440)
                .map(|i| {
                    let t = T0 + day * 1440 * MIN + i * MIN;
                    let windows = ["t_sp", "r_sp", "ambient", "t95", "flow"]
                        .iter()
                        .map(|tag| {
                            let v = if *tag == "t_sp" { 360.0 } else { plant(t, tag) };
                            Window {
                                tag: (*tag).into(),
                                count: 6,
                                good: 6,
                                min: v,
                                max: v,
                                mean: v,
                                twa: v,
                                last: v,
                            }
                        })
                        .collect();
                    WindowSet {
                        width_ms: MIN as u32,
                        start_ms: t,
                        windows,
                    }
                })
                .collect();
            s.ingest(&[Incoming {
                site: "s".into(),
                node: "n".into(),
                raw: bytes::Bytes::new(),
                received_ms: T0,
                batch: Batch {
                    seq,
                    created_ms: T0,
                    body: Body::Aggregates(sets),
                },
            }])
            .unwrap();
        }
        let reads = s.read_pool().unwrap();
        let cfg = hub::config::parse(Path::new("hub.toml"), PROBLEM).unwrap();
        let p = &cfg.optimization.unwrap().problems[0];
        let e = hub::optimize::solve(p, &reads, T0 + SPAN).unwrap_err();
        assert!(e.contains("t_sp did not vary"), "{e}");
        assert!(e.contains("step-test it or supply a model"), "{e}");
    }
}

/// The optimizer follows an edge's write-back through its audit entries:
/// only the `setpoint_` and `recommendation_` ones, in order, from where it
/// stopped.
#[test]
fn audit_entries_are_read_by_prefix_from_a_position() {
    use hub::store::{Incoming, Store};
    use protocol::v1::{AuditRecord, Batch, Body};
    let mut s = Store::open_in_memory().unwrap();
    let actions = [
        "login",
        "setpoint_proposed",
        "alarm_ack",
        "recommendation_refused",
        "setpoint_finished",
    ];
    let records = actions
        .iter()
        .enumerate()
        .map(|(i, a)| AuditRecord {
            seq: i as u64 + 1,
            ts_ms: 1_799_000_000_000 + i as i64,
            actor: "system".into(),
            action: (*a).into(),
            target: "m-1:t".into(),
            detail: String::new(),
            addr: String::new(),
            hash: format!("{i:064x}"),
        })
        .collect();
    s.ingest(&[Incoming {
        site: "s".into(),
        node: "n".into(),
        raw: bytes::Bytes::new(),
        received_ms: 0,
        batch: Batch {
            seq: 1,
            created_ms: 0,
            body: Body::Audit(records),
        },
    }])
    .unwrap();
    let got: Vec<(u64, String)> = s
        .audit_after("s", "n", &["setpoint_", "recommendation_"], 0)
        .unwrap()
        .into_iter()
        .map(|e| (e.aseq, e.action))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "setpoint_proposed".to_owned()),
            (4, "recommendation_refused".to_owned()),
            (5, "setpoint_finished".to_owned()),
        ]
    );
    let later = s.audit_after("s", "n", &["setpoint_"], 2).unwrap();
    assert_eq!(later.iter().map(|e| e.aseq).collect::<Vec<_>>(), vec![5]);
    assert!(
        s.audit_after("s", "other", &["setpoint_"], 0)
            .unwrap()
            .is_empty()
    );
}
