//! The LP solver on Netlib (issue 20): every `*.mps.gz` in
//! `shared/data/netlib/` is read, solved, and compared with the optimum
//! published in that directory's README, to 1e-6 relative.

use std::path::{Path, PathBuf};
use std::time::Instant;

use models::optimize::{LpProblem, Solution, Status, read_mps_file};

/// `../shared/data/netlib` beside the workspace. `None` (said loudly) when
/// missing outside CI; under `CI=true` a missing directory fails.
fn netlib_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/netlib");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Netlib problems are missing: {} (CI=true)",
        dir.display()
    );
    eprintln!("SKIPPING the Netlib test: {} is missing", dir.display());
    None
}

/// `(file, published optimum)` from the README's table.
fn published(readme: &str) -> Vec<(String, f64)> {
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?;
            if !file.ends_with(".mps.gz") {
                return None;
            }
            let optimum = cells
                .get(3)?
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("README row `{line}`: {e}"));
            Some((file.to_string(), optimum))
        })
        .collect()
}

#[test]
fn optimize_netlib_matches_published_optima() {
    let Some(dir) = netlib_dir() else { return };
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let table = published(&readme);
    assert!(table.len() >= 10, "README table not parsed: {table:?}");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mps.gz"))
        .collect();
    files.sort();
    for (file, _) in &table {
        assert!(
            files.contains(file),
            "README lists {file}, which is not in {}",
            dir.display()
        );
    }
    eprintln!(
        "{:<18} {:>5} {:>5} {:>22} {:>22} {:>10} {:>5} {:>9} {:>9}",
        "problem",
        "rows",
        "cols",
        "objective",
        "published",
        "rel.error",
        "iter",
        "solve ms",
        "total ms"
    );
    let mut failures = Vec::new();
    for file in &files {
        let Some((_, optimum)) = table.iter().find(|(f, _)| f == file) else {
            failures.push(format!("{file}: no published optimum in the README"));
            continue;
        };
        let started = Instant::now();
        let model = read_mps_file(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
        let p = &model.problem;
        match p.solve() {
            Ok(s) if s.status == Status::Optimal => {
                let rel = (s.objective - optimum).abs() / optimum.abs().max(1e-12);
                eprintln!(
                    "{:<18} {:>5} {:>5} {:>22.12e} {:>22.12e} {:>10.2e} {:>5} {:>9.1} {:>9.1}",
                    file,
                    p.rows.len(),
                    p.variables.len(),
                    s.objective,
                    optimum,
                    rel,
                    s.iterations,
                    s.solve_time.as_secs_f64() * 1e3,
                    started.elapsed().as_secs_f64() * 1e3
                );
                if rel > 1e-6 {
                    failures.push(format!(
                        "{file}: {} vs published {optimum} (rel. error {rel:.2e})",
                        s.objective
                    ));
                }
                assert_eq!(
                    (s.values.len(), s.row_duals.len()),
                    (p.variables.len(), p.rows.len())
                );
            }
            Ok(s) => failures.push(format!("{file}: {}", s.status)),
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "Netlib failures:\n{}",
        failures.join("\n")
    );
}

/// The optimal value of a minimisation is convex in each row bound, and the
/// duals of that row are its subgradients: each reported dual must lie
/// between the backward and forward secants when the row's nearest finite
/// bound (both, for an equality) moves by ±h.
fn check_duals_bracket(name: &str, p: &LpProblem, s: &Solution) {
    let optimum = |q: &LpProblem| match q.solve() {
        Ok(t) if t.status == Status::Optimal => Some(t.objective),
        _ => None,
    };
    let mut checked = 0;
    for (i, row) in p.rows.iter().enumerate() {
        let act = s.row_activities[i];
        let upper_side = row.lower == row.upper
            || !row.lower.is_finite()
            || (row.upper.is_finite() && (row.upper - act).abs() < (act - row.lower).abs());
        let bound = if upper_side { row.upper } else { row.lower };
        let h = 1e-3 * bound.abs().max(1.0);
        let moved = |d: f64| {
            let mut q = p.clone();
            let r = &mut q.rows[i];
            if r.lower == r.upper {
                r.lower += d;
                r.upper += d;
            } else if upper_side {
                r.upper += d;
            } else {
                r.lower += d;
            }
            optimum(&q)
        };
        let (Some(up), Some(down)) = (moved(h), moved(-h)) else {
            continue;
        };
        let (back, fwd) = ((s.objective - down) / h, (up - s.objective) / h);
        let tol = 1e-4 * s.row_duals[i].abs().max(1.0);
        assert!(
            back - tol <= s.row_duals[i] && s.row_duals[i] <= fwd + tol,
            "{name} row {}: dual {} outside [{back}, {fwd}]",
            row.name,
            s.row_duals[i]
        );
        checked += 1;
    }
    eprintln!(
        "{name}: {checked} of {} row duals within their secant brackets",
        p.rows.len()
    );
    assert!(checked > p.rows.len() / 2, "{name}: too few rows checked");
}

#[test]
fn optimize_netlib_duals_are_subgradients() {
    let Some(dir) = netlib_dir() else { return };
    for name in ["afiro.mps.gz", "sc50a.mps.gz", "adlittle.mps.gz"] {
        let p = read_mps_file(&dir.join(name)).unwrap().problem;
        let s = p.solve().unwrap();
        assert_eq!(s.status, Status::Optimal);
        check_duals_bracket(name, &p, &s);
    }
}
