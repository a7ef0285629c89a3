//! Peers and data shared by the tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared ETTh1 dataset: `$APOS_SHARED_DIR/data/ETTh1.csv`, else
/// `../shared/data/ETTh1.csv` beside the project (where the project's
/// shared data lives), else beside the checkout this clone was made from.
pub fn etth1_csv() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("APOS_SHARED_DIR") {
        candidates.push(PathBuf::from(d).join("data/ETTh1.csv"));
    }
    candidates.push(repo().join("../shared/data/ETTh1.csv"));
    // A clone elsewhere (e.g. a CI scratch dir) of a checkout that has it.
    if let Some(origin) = git_origin() {
        candidates.push(origin.join("../shared/data/ETTh1.csv"));
    }
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!("the shared ETTh1 dataset is missing; looked at {candidates:?} (set APOS_SHARED_DIR)")
        })
}

/// The local directory this clone was cloned from, if any.
fn git_origin() -> Option<PathBuf> {
    let out = Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(repo())
        .output()
        .ok()?;
    let url = String::from_utf8(out.stdout).ok()?;
    let p = PathBuf::from(url.trim().trim_start_matches("file://"));
    p.is_dir().then_some(p)
}

/// The Python with numpy, onnx and onnxruntime (tests/peers/requirements.txt,
/// installed by scripts/test.sh). `None` outside CI when it is missing; under
/// CI=true a missing peer fails the test.
pub fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("APOS_PYTHON").map(PathBuf::from),
        Some(repo().join(".venv/bin/python")),
    ];
    for p in candidates.into_iter().flatten() {
        let ok = Command::new(&p)
            .args(["-c", "import numpy, onnx, onnxruntime"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "Python with numpy/onnx/onnxruntime is missing: run scripts/test.sh (it builds .venv)"
        );
    }
    eprintln!("SKIPPED: Python with numpy/onnx/onnxruntime not found (run scripts/test.sh)");
    None
}

/// Run `python args…` with `stdin`; stdout as JSON.
pub fn run_json(python: &Path, args: &[&str], stdin: &str) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// onnxruntime's outputs for `rows` through `model`.
pub fn onnxruntime(python: &Path, model: &Path, rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let req = serde_json::json!({ "model": model, "rows": rows });
    let peer = repo().join("tests/peers/onnx_peer.py");
    let v = run_json(python, &[peer.to_str().unwrap()], &req.to_string());
    serde_json::from_value(v["outputs"].clone()).unwrap()
}

/// One column of a CSV as f64.
pub fn column(path: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').nth(i).unwrap().parse().unwrap())
        .collect()
}
