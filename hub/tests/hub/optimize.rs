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
