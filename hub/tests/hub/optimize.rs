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

    /// Python with numpy and onnx; `None` skips, except under `CI=true`.
    fn python() -> Option<std::path::PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let found = [
            std::env::var_os("APOS_PYTHON").map(std::path::PathBuf::from),
            Some(root.join(".venv/bin/python")),
        ]
        .into_iter()
        .flatten()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import numpy, onnx"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if found.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no Python with numpy and onnx: run scripts/test.sh"
            );
            eprintln!("SKIPPED: no Python with numpy and onnx (run scripts/test.sh)");
        }
        found
    }

    /// An `[optimization.surrogate]` problem (the plant's true steady-state
    /// map as an ONNX graph, run by tract, searched by CMA-ES) proposes what
    /// the LP proposes on the same map given as linear models.
    #[test]
    fn an_onnx_surrogate_problem_reaches_the_lps_answer() {
        let Some(py) = python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let onnx = dir.path().join("plant.onnx");
        // inputs t_sp, r_sp, ambient → outputs t95, flow.
        let spec = serde_json::json!({
            "W1": [[0.0], [0.0], [0.0]], "b1": [0.0],
            "L": [[0.4, 0.9], [-6.0, 2.0], [0.1, 0.0]],
            "c": [41.2, -250.0],
        });
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/train/make_surrogate.py");
        let mut child = std::process::Command::new(&py)
            .arg(&script)
            .arg(&onnx)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(spec.to_string().as_bytes())
                .unwrap();
        }
        assert!(child.wait().unwrap().success());
        let common = "[[optimization.decision]]\ntag = \"t_sp\"\nmin = 340.0\nmax = 385.0\nmax_move = 30.0\n\
            [[optimization.decision]]\ntag = \"r_sp\"\nmin = 1.8\nmax = 2.4\n\
            [[optimization.term]]\ntag = \"flow\"\nprice = 100.0\n\
            [[optimization.constraint]]\nname = \"spec\"\ntag = \"t95\"\nmax = 180.0\n";
        let text = format!(
            "schema_version = 1\n[storage]\npath = \"/tmp/unused/fleet.duckdb\"\n\
             [[optimization]]\nname = \"lp\"\nsite = \"s\"\nnode = \"n\"\nbias_correction = false\n{common}\
             [[optimization.output]]\ntag = \"t95\"\nintercept = 41.2\ncoefficients = {{ \"t_sp\" = 0.4, \"r_sp\" = -6.0, \"ambient\" = 0.1 }}\n\
             [[optimization.output]]\ntag = \"flow\"\nintercept = -250.0\ncoefficients = {{ \"t_sp\" = 0.9, \"r_sp\" = 2.0 }}\n\
             [[optimization]]\nname = \"onnx\"\nsite = \"s\"\nnode = \"n\"\n{common}\
             [optimization.surrogate]\nmodel = {:?}\ninputs = [\"t_sp\", \"r_sp\", \"ambient\"]\noutputs = [\"t95\", \"flow\"]\n",
            onnx.display().to_string()
        );
        let cfg = hub::config::parse(Path::new("hub.toml"), &text).unwrap();
        let o = cfg.optimization.unwrap();
        let mut s = store();
        let reads = s.read_pool().unwrap();
        let lp = hub::optimize::solve(&o.problems[0], &reads, T0 + SPAN).unwrap();
        let cma = hub::optimize::solve(&o.problems[1], &reads, T0 + SPAN).unwrap();
        for (a, b) in lp.rec.setpoints.iter().zip(&cma.rec.setpoints) {
            assert_eq!(a.tag, b.tag);
            assert!(
                (a.proposed - b.proposed).abs() < 1e-3 * (a.upper - a.lower),
                "{a:?} vs {b:?}"
            );
        }
        let rel = (lp.rec.objective_proposed - cma.rec.objective_proposed).abs()
            / lp.rec.objective_proposed.abs();
        assert!(
            rel < 1e-6,
            "LP {} vs CMA-ES {}",
            lp.rec.objective_proposed,
            cma.rec.objective_proposed
        );
        assert!(cma.rec.benefit_per_hour > 0.0);
        assert!(
            cma.rec.binding.iter().any(|b| b.name == "spec"),
            "{:?}",
            cma.rec.binding
        );
        assert!(cma.json["surrogate"]["evaluations"].as_u64().unwrap() > 10);
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

/// Problems defined through the API: validated like the file's (errors
/// located), kept across a restart, not allowed to replace the file's,
/// removable, engineers only; and run on demand.
#[tokio::test]
async fn problems_defined_through_the_api_are_validated_kept_and_removable() {
    use std::time::Duration;
    use web::access::Role;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let path = crate::support::hub_config(dir.path(), port, "", 1_000_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\nrate_limit = 100000\nrate_burst = 100000\n");
    // A file problem (a second, API-defined one must not replace it).
    text.push_str("\n[[optimization]]\nname = \"file-one\"\nsite = \"s\"\nnode = \"a\"\n[[optimization.decision]]\ntag = \"x\"\nmin = 0.0\nmax = 1.0\n[[optimization.term]]\ntag = \"x\"\nprice = 1.0\n");
    std::fs::write(&path, &text).unwrap();
    let start = || async {
        let cfg = hub::config::load(&path).unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let hub = hub::Hub::start(cfg, cancel.clone()).await.unwrap();
        (hub, cancel)
    };
    let (hub, cancel) = start().await;
    let state = hub.web().unwrap().state.clone();
    let login = |role: Role| {
        let name = format!("u-{}", role.as_str());
        if state.core.users.get(&name).unwrap().is_none() {
            state
                .core
                .users
                .add(&name, role, &web::users::random_password())
                .unwrap();
        }
        state
            .core
            .sessions
            .create(&name, role, std::time::Instant::now())
    };
    let client = reqwest_like::Client::new(&state);
    let eng = login(Role::Engineer);
    let analyst = login(Role::Analyst);
    let good = "[[optimization]]\nname = \"api-one\"\nsite = \"s\"\nnode = \"a\"\n[[optimization.decision]]\ntag = \"y\"\nmin = 0.0\nmax = 2.0\n[[optimization.term]]\ntag = \"y\"\nprice = 3.0\n";
    let bad = "[[optimization]]\nname = \"api-two\"\nsite = \"s\"\nnode = \"a\"\n[[optimization.decision]]\ntag = \"y\"\nmin = 5.0\nmax = 2.0\n";
    // Analysts may run, not define.
    let (st, _) = client
        .post(
            &analyst,
            "/api/v1/optimization",
            &serde_json::json!({ "toml": good }),
        )
        .await;
    assert_eq!(st, 403);
    let (st, body) = client
        .post(
            &eng,
            "/api/v1/optimization",
            &serde_json::json!({ "toml": bad }),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("min 5 is not below max 2") && body.contains("request:8:7"),
        "{body}"
    );
    let (st, body) = client
        .post(
            &eng,
            "/api/v1/optimization",
            &serde_json::json!({ "toml": good }),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let clash = good.replace("api-one", "file-one");
    let (st, body) = client
        .post(
            &eng,
            "/api/v1/optimization",
            &serde_json::json!({ "toml": clash }),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    let (_, list) = client.get(&eng, "/api/v1/optimization").await;
    assert!(
        list.contains("\"api-one\"") && list.contains("\"file-one\""),
        "{list}"
    );
    // Kept across a restart.
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.join()).await;
    let (hub, cancel) = start().await;
    let state = hub.web().unwrap().state.clone();
    let name = "u-engineer";
    let eng = state
        .core
        .sessions
        .create(name, Role::Engineer, std::time::Instant::now());
    let client = reqwest_like::Client::new(&state);
    let (_, list) = client.get(&eng, "/api/v1/optimization").await;
    assert!(list.contains("\"api-one\""), "{list}");
    // A run on demand of a problem without data fails, and says why.
    let (st, body) = client
        .post(
            &eng,
            "/api/v1/optimization/api-one/run",
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert!(
        body.contains("\"outcome\":\"failed\"") && body.contains("no data for y"),
        "{body}"
    );
    let (st, _) = client.delete(&eng, "/api/v1/optimization/file-one").await;
    assert_eq!(st, 409);
    let (st, _) = client.delete(&eng, "/api/v1/optimization/api-one").await;
    assert_eq!(st, 204);
    let (_, list) = client.get(&eng, "/api/v1/optimization").await;
    assert!(!list.contains("\"api-one\""), "{list}");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), hub.join()).await;
}

/// Requests through the hub's router, as its listener hands them over
/// (peer address for the rate limit and the audit), with session and CSRF.
mod reqwest_like {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use tower::ServiceExt as _;

    pub struct Client {
        router: axum::Router,
    }

    impl Client {
        pub fn new(state: &hub::web::St) -> Client {
            Client {
                router: hub::web::router(state.clone()),
            }
        }

        async fn call(
            &self,
            s: &web::session::Session,
            method: &str,
            path: &str,
            body: Option<&serde_json::Value>,
        ) -> (u16, String) {
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1")
                .header("cookie", format!("apos_session={}", s.token))
                .header("x-csrf-token", &s.csrf)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                ))
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_001))));
            let res = self.router.clone().oneshot(req).await.unwrap();
            let st = res.status().as_u16();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            (st, String::from_utf8_lossy(&bytes).into_owned())
        }

        pub async fn get(&self, s: &web::session::Session, path: &str) -> (u16, String) {
            self.call(s, "GET", path, None).await
        }

        pub async fn post(
            &self,
            s: &web::session::Session,
            path: &str,
            body: &serde_json::Value,
        ) -> (u16, String) {
            self.call(s, "POST", path, Some(body)).await
        }

        pub async fn delete(&self, s: &web::session::Session, path: &str) -> (u16, String) {
            self.call(s, "DELETE", path, None).await
        }
    }
}
