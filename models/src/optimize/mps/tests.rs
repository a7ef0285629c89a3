//! The MPS reader: sections, RANGES and bound rules, markers, located
//! errors, round trips, and no panic on any input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::Write as _;

use proptest::prelude::*;

use super::*;
use crate::optimize::lp::{SolveError, Status};

const INF: f64 = f64::INFINITY;

fn read(text: &str) -> MpsModel {
    read_mps(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn bounds(m: &MpsModel, name: &str) -> (f64, f64, bool) {
    let v = &m.problem.variables[m.problem.variable_index(name).unwrap()];
    (v.lower, v.upper, v.integer)
}

fn row_bounds(m: &MpsModel, name: &str) -> (f64, f64) {
    let r = &m.problem.rows[m.problem.row_index(name).unwrap()];
    (r.lower, r.upper)
}

const FIXED: &str = "\
NAME          TESTLP
ROWS
 N  COST
 L  LIM1
 G  LIM2
 E  MYEQN
COLUMNS
    X1        COST         1.0   LIM1         1.0
    X1        LIM2         1.0
    X2        COST         2.0   LIM1         1.0
    X2        MYEQN       -1.0
    X3        COST        -1.0   MYEQN        1.0
RHS
    RHS       COST        -2.5
    RHS       LIM1         4.0   LIM2         1.0
    RHS       MYEQN        7.0
BOUNDS
 UP BND       X1           4.0
 LO BND       X2          -1.0
 UP BND       X2           1.0
ENDATA
";

#[test]
fn fixed_format_problem_reads_and_solves() {
    let m = read(FIXED);
    let p = &m.problem;
    assert_eq!(
        (p.name.as_str(), p.objective_name.as_str()),
        ("TESTLP", "COST")
    );
    assert_eq!(p.sense, Sense::Minimize);
    assert_eq!(
        p.objective_constant, 2.5,
        "RHS −2.5 on the objective is the constant +2.5"
    );
    assert_eq!(
        p.variables.iter().map(|v| v.cost).collect::<Vec<_>>(),
        [1.0, 2.0, -1.0]
    );
    assert_eq!(p.rows[0].coefficients, [(0, 1.0), (1, 1.0)]);
    assert_eq!(row_bounds(&m, "LIM1"), (-INF, 4.0));
    assert_eq!(row_bounds(&m, "LIM2"), (1.0, INF));
    assert_eq!(row_bounds(&m, "MYEQN"), (7.0, 7.0));
    assert_eq!(bounds(&m, "X1"), (0.0, 4.0, false));
    assert_eq!(bounds(&m, "X2"), (-1.0, 1.0, false));
    assert_eq!(bounds(&m, "X3"), (0.0, INF, false));
    assert!(m.warnings.is_empty());
    // min x1 + x2 − 4.5 after x3 = 7 + x2: x1 = 1, x2 = −1, objective −4.5.
    let s = p.solve().unwrap();
    assert_eq!(s.status, Status::Optimal);
    assert!((s.objective + 4.5).abs() < 1e-9, "{}", s.objective);
    assert!((s.dual(p, "LIM2").unwrap() - 1.0).abs() < 1e-8);
    assert!((s.dual(p, "MYEQN").unwrap() + 1.0).abs() < 1e-8);
}

#[test]
fn free_format_objsense_and_omitted_set_names() {
    for sense in ["OBJSENSE MAX\n", "OBJSENSE\n    MAXIMIZE\n"] {
        let text = format!(
            "NAME free\n{sense}ROWS\n N obj\n L c\n G d\nCOLUMNS\n x obj 1 c 1\n x d 1\nRHS\n c 4 d 1\nRANGES\n d 2\nENDATA\n"
        );
        let m = read(&text);
        assert_eq!(m.problem.sense, Sense::Maximize);
        assert_eq!(row_bounds(&m, "d"), (1.0, 3.0));
        let s = m.problem.solve().unwrap();
        assert!((s.objective - 3.0).abs() < 1e-9, "{}", s.objective);
    }
}

#[test]
fn ranges_follow_the_sign_rules() {
    let m = read(
        "NAME r\nROWS\n N obj\n L l\n L lneg\n G g\n G gneg\n E ep\n E en\n E ez\nCOLUMNS\n x obj 1 l 1\n x lneg 1 g 1\n x gneg 1 ep 1\n x en 1 ez 1\n\
         RHS\n rhs l 10 lneg 10\n rhs g 10 gneg 10\n rhs ep 10 en 10\n rhs ez 10\n\
         RANGES\n rng l 3 lneg -3\n rng g 3 gneg -3\n rng ep 3 en -3\n rng ez 0\nENDATA\n",
    );
    for (row, want) in [
        ("l", (7.0, 10.0)),
        ("lneg", (7.0, 10.0)),
        ("g", (10.0, 13.0)),
        ("gneg", (10.0, 13.0)),
        ("ep", (10.0, 13.0)),
        ("en", (7.0, 10.0)),
        ("ez", (10.0, 10.0)),
    ] {
        assert_eq!(row_bounds(&m, row), want, "{row}");
    }
}

/// One line per element.
fn text(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

#[test]
fn every_bound_type() {
    let lines = [
        "NAME b",
        "ROWS",
        " N obj",
        "COLUMNS",
        " up obj 1",
        " lo obj 1",
        " fx obj 1",
        " mi obj 1",
        " pl obj 1",
        " fr obj 1",
        " bv obj 1",
        " bv2 obj 1",
        " li obj 1",
        " ui obj 1",
        " upneg obj 1",
        " upneg0 obj 1",
        " miup obj 1",
        " big obj 1",
        "BOUNDS",
        " UP BND up 5",
        " LO BND lo -2",
        " FX BND fx 3.5",
        " MI BND mi",
        " UP BND pl 9",
        " PL BND pl",
        " FR BND fr",
        " BV BND bv",
        " BV BND bv2 1",
        " LI BND li 2",
        " UI BND ui 7",
        " UP BND upneg -4",
        " LO BND upneg0 0",
        " UP BND upneg0 -4",
        " MI BND miup",
        " UP BND miup -1",
        " LO BND big -1e30",
        " UP BND big Inf",
        "ENDATA",
    ];
    let m = read(&text(&lines));
    for (col, want) in [
        ("up", (0.0, 5.0, false)),
        ("lo", (-2.0, INF, false)),
        ("fx", (3.5, 3.5, false)),
        ("mi", (-INF, INF, false)),
        ("pl", (0.0, INF, false)),
        ("fr", (-INF, INF, false)),
        ("bv", (0.0, 1.0, true)),
        ("bv2", (0.0, 1.0, true)),
        ("li", (2.0, INF, true)),
        ("ui", (0.0, 7.0, true)),
        ("upneg", (-INF, -4.0, false)),
        ("upneg0", (0.0, -4.0, false)),
        ("miup", (-INF, -1.0, false)),
        ("big", (-INF, INF, false)),
    ] {
        assert_eq!(bounds(&m, col), want, "{col}");
    }
    let at = |l: &str| lines.iter().position(|x| *x == l).unwrap() + 1;
    let warned: Vec<usize> = m.warnings.iter().map(|w| w.line).collect();
    let want = [
        at(" UP BND upneg -4"),
        at(" UP BND upneg0 -4"),
        at("ENDATA"),
    ];
    assert_eq!(warned, want, "{:?}", m.warnings);
    assert!(
        m.warnings[0].message.contains("lower bound set to -inf"),
        "{}",
        m.warnings[0]
    );
    assert!(
        m.warnings[1].message.contains("explicit lower bound 0"),
        "{}",
        m.warnings[1]
    );
    assert!(
        m.warnings[2].message.contains("upneg0"),
        "{}",
        m.warnings[2]
    );
}

#[test]
fn bounds_without_set_names() {
    let m = read(&text(&[
        "NAME s", "ROWS", " N obj", "COLUMNS", " x obj 1", " y obj 1", " z obj 1", "BOUNDS",
        " BV x 1", " MI y", " UP y 3", " FR z", "ENDATA",
    ]));
    assert_eq!(bounds(&m, "x"), (0.0, 1.0, true));
    assert_eq!(bounds(&m, "y"), (-INF, 3.0, false));
    assert_eq!(bounds(&m, "z"), (-INF, INF, false));
}

#[test]
fn negative_upper_bound_rule_on_a_solved_problem() {
    // min −x with UP −2 and the default lower bound: x ∈ (−∞, −2], optimum 2.
    let m = read("NAME n\nROWS\n N obj\nCOLUMNS\n x obj -1\nBOUNDS\n UP B x -2\nENDATA\n");
    let s = m.problem.solve().unwrap();
    assert!((s.objective - 2.0).abs() < 1e-9);
    // With an explicit LO 0 first the bounds cross: infeasible.
    let m =
        read("NAME n\nROWS\n N obj\nCOLUMNS\n x obj -1\nBOUNDS\n LO B x 0\n UP B x -2\nENDATA\n");
    assert_eq!(m.problem.solve().unwrap().status, Status::Infeasible);
}

#[test]
fn integer_markers_and_free_rows() {
    let m = read(&text(&[
        "NAME i",
        "ROWS",
        " N obj",
        " N other",
        " L c",
        "COLUMNS",
        " x obj 1 c 1",
        " MARKER 'MARKER' 'INTORG'",
        " y obj 1 c 1",
        " z other 5",
        " MARKER 'MARKER' 'INTEND'",
        " w obj 1 c 1",
        "RHS",
        " rhs other 3 c 2",
        "ENDATA",
    ]));
    let ints: Vec<bool> = m.problem.variables.iter().map(|v| v.integer).collect();
    assert_eq!(ints, [false, true, true, false]);
    assert_eq!(bounds(&m, "y"), (0.0, INF, true));
    assert_eq!(m.problem.rows.len(), 1, "the second N row is dropped");
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
    let e = m.problem.solve().unwrap_err();
    assert!(
        matches!(&e, SolveError::Milp { count: 2, first } if first == "y"),
        "{e}"
    );
}

#[test]
fn comments_blank_lines_and_crlf() {
    let m = read(
        "* a comment\r\n\r\nNAME c\r\nROWS\r\n N obj\r\n\tL c\r\nCOLUMNS\r\n x obj 1 c 2\r\nENDATA\r\n",
    );
    assert_eq!(m.problem.rows[0].coefficients, [(0, 2.0)]);
    assert_eq!(row_bounds(&m, "c"), (-INF, 0.0), "no RHS means 0");
}

#[test]
fn no_objective_row_is_a_feasibility_problem() {
    let m = read("NAME f\nROWS\n G c\nCOLUMNS\n x c 1\nRHS\n rhs c 2\nENDATA\n");
    assert_eq!(m.problem.objective_name, "");
    let s = m.problem.solve().unwrap();
    assert_eq!((s.status, s.objective), (Status::Optimal, 0.0));
    assert!(s.values[0] >= 2.0 - 1e-9);
}

const HEAD: &str = "NAME t\nROWS\n N obj\n L c\nCOLUMNS\n x obj 1 c 1\n";

fn error(text: &[u8]) -> (usize, MpsErrorKind) {
    match read_mps(text) {
        Err(MpsError::Syntax { line, kind }) => (line, kind),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn malformed_inputs_give_located_errors() {
    use MpsErrorKind as K;
    let h = |tail: &str| format!("{HEAD}{tail}");
    let cases: Vec<(String, usize, K)> = vec![
        ("NAME t\nFOO\n".into(), 2, K::UnknownSection("FOO".into())),
        (
            "* c\n\nNAME t\nFOO\n".into(),
            4,
            K::UnknownSection("FOO".into()),
        ),
        (
            "NAME t\nROWS\n N obj\n L c\n G c\n".into(),
            5,
            K::DuplicateRow("c".into()),
        ),
        ("NAME t\nROWS\n X c\n".into(), 3, K::RowType("X".into())),
        (
            "NAME t\nROWS\n L\n".into(),
            3,
            K::FieldCount {
                section: "ROWS",
                found: 1,
                expected: "2 (type, name)",
            },
        ),
        (h(" y nope 1\n"), 7, K::UnknownRow("nope".into())),
        (h(" y c 1.2.3\n"), 7, K::BadNumber("1.2.3".into())),
        (h(" y c nan\n"), 7, K::BadNumber("nan".into())),
        (h(" y c inf\n"), 7, K::NotFinite("inf".into())),
        (
            h(" y c 1 c 2\n"),
            7,
            K::DuplicateEntry {
                column: "y".into(),
                row: "c".into(),
            },
        ),
        (
            h(" y c 1\n x obj 2\n"),
            8,
            K::ColumnNotContiguous("x".into()),
        ),
        (
            h(" M 'MARKER' 'INTEND'\n"),
            7,
            K::MarkerOrder("'INTEND' without 'INTORG'"),
        ),
        (h(" M 'MARKER' 'FOO'\n"), 7, K::BadMarker("'FOO'".into())),
        (
            h(" M 'MARKER' 'INTORG'\n y c 1\nRHS\n"),
            9,
            K::UnclosedMarker,
        ),
        (
            h("RHS\n R1 c 1\n R2 c 2\n"),
            9,
            K::SecondSet {
                section: "RHS",
                first: "R1".into(),
                found: "R2".into(),
            },
        ),
        (
            h("RHS\n R1 c 1\n R1 c 2\n"),
            9,
            K::Repeated {
                section: "RHS",
                row: "c".into(),
            },
        ),
        (
            h("RHS\n R1 obj 1 obj 2\n"),
            8,
            K::Repeated {
                section: "RHS",
                row: "obj".into(),
            },
        ),
        (
            h("RANGES\n R obj 1\n"),
            8,
            K::RangeOnObjective("obj".into()),
        ),
        (h("BOUNDS\n XX B x 1\n"), 8, K::BoundType("XX".into())),
        (h("BOUNDS\n SC B x 1\n"), 8, K::SemiContinuous("x".into())),
        (h("BOUNDS\n UP B y 1\n"), 8, K::UnknownColumn("y".into())),
        (
            h("BOUNDS\n UP B x -inf\n"),
            8,
            K::BadBound {
                kind: "UP".into(),
                column: "x".into(),
                value: "-inf".into(),
            },
        ),
        (
            h("BOUNDS\n FX B x 1e30\n"),
            8,
            K::BadBound {
                kind: "FX".into(),
                column: "x".into(),
                value: "inf".into(),
            },
        ),
        (h("BOUNDS\n UP B x\n"), 8, K::UnknownColumn("B".into())),
        (
            h("BOUNDS\n UP B1 x 1\n LO B2 x 0\n"),
            9,
            K::SecondSet {
                section: "BOUNDS",
                first: "B1".into(),
                found: "B2".into(),
            },
        ),
        (HEAD.into(), 7, K::MissingEndata),
        (" x y\n".into(), 1, K::DataOutsideSection),
        ("NAME t\n x y\n".into(), 2, K::DataOutsideSection),
        ("NAME t\nROWS\nROWS\n".into(), 3, K::SectionTwice("ROWS")),
        (
            "NAME t\nCOLUMNS\n".into(),
            2,
            K::Misplaced {
                section: "COLUMNS",
                reason: "it must come after ROWS",
            },
        ),
        (
            "ROWS\nNAME t\n".into(),
            2,
            K::Misplaced {
                section: "NAME",
                reason: "it must come first",
            },
        ),
        (
            "NAME t\nROWS\nRHS\n".into(),
            3,
            K::Misplaced {
                section: "RHS",
                reason: "it must come after COLUMNS",
            },
        ),
        (
            "NAME t\nROWS extra\n".into(),
            2,
            K::HeaderArguments {
                section: "ROWS",
                found: "extra".into(),
            },
        ),
        ("OBJSENSE\n UP\n".into(), 2, K::ObjSense("UP".into())),
        ("OBJSENSE MAX\n MIN\n".into(), 2, K::SenseTwice),
    ];
    for (text, line, kind) in cases {
        assert_eq!(error(text.as_bytes()), (line, kind.clone()), "{text}");
        let message = read_mps(text.as_bytes()).unwrap_err().to_string();
        assert!(message.starts_with(&format!("line {line}: ")), "{message}");
    }
    assert_eq!(
        error(b"NAME t\nROWS\n N \xff\n"),
        (3, MpsErrorKind::NotUtf8)
    );
}

#[test]
fn file_helper_reads_plain_and_gzip_by_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.mps");
    std::fs::write(&plain, FIXED).unwrap();
    let gz = dir.path().join("packed.mps"); // no .gz: detected by content
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(FIXED.as_bytes()).unwrap();
    enc.finish().unwrap();
    assert_eq!(read_mps_file(&plain).unwrap(), read_mps_file(&gz).unwrap());

    let missing = dir.path().join("missing.mps");
    assert!(matches!(
        read_mps_file(&missing),
        Err(MpsError::Open { .. })
    ));
    let bad = dir.path().join("bad.mps");
    std::fs::write(&bad, "NAME t\nFOO\n").unwrap();
    let e = read_mps_file(&bad).unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(
        e.to_string()
            .contains("bad.mps: line 2: unknown section `FOO`"),
        "{e}"
    );
}

/// A small problem for the round trip: bounds and rows on a grid of halves
/// so that every value prints and parses exactly.
#[derive(Debug, Clone)]
struct Spec {
    max: bool,
    constant: f64,
    vars: Vec<(f64, f64, f64, bool)>,
    rows: Vec<(Vec<Option<f64>>, f64, f64, u8)>,
}

fn half() -> impl Strategy<Value = f64> {
    (-20i32..=20).prop_map(|v| f64::from(v) / 2.0)
}

fn spec() -> impl Strategy<Value = Spec> {
    let bound = prop_oneof![Just(0.0), Just(-INF), Just(INF), half()];
    let var = (bound.clone(), bound, half(), any::<bool>()).prop_map(|(a, b, cost, int)| {
        let (a, b) = (
            if a == INF { 0.0 } else { a },
            if b == -INF { 0.0 } else { b },
        );
        let (l, u) = if a <= b { (a, b) } else { (b, a) };
        (l, u, cost, int)
    });
    (any::<bool>(), half(), proptest::collection::vec(var, 1..6)).prop_flat_map(
        |(max, constant, vars)| {
            let n = vars.len();
            let row = (
                proptest::collection::vec(proptest::option::of(half()), n),
                half(),
                0u8..4,
                0u8..6,
            )
                .prop_map(|(coefs, b, kind, repr)| {
                    let (l, u) = match kind {
                        0 => (b, b),
                        1 => (-INF, b),
                        2 => (b, INF),
                        _ => (b, b + 2.5),
                    };
                    (coefs, l, u, repr)
                });
            proptest::collection::vec(row, 0..5).prop_map(move |rows| Spec {
                max,
                constant,
                vars: vars.clone(),
                rows,
            })
        },
    )
}

/// Writes `s` as MPS, choosing among the equivalent RANGES forms by `repr`.
fn write_mps(s: &Spec) -> String {
    let mut t = String::from("NAME          RT\n");
    if s.max {
        t += "OBJSENSE\n    MAX\n";
    }
    t += "ROWS\n N  obj\n";
    let mut rhs = Vec::new();
    let mut ranges = Vec::new();
    for (i, (_, l, u, repr)) in s.rows.iter().enumerate() {
        let (ty, b, r) = match (l.is_finite(), u.is_finite(), l == u) {
            (_, _, true) => ('E', *l, None),
            (false, _, _) => ('L', *u, None),
            (_, false, _) => ('G', *l, None),
            _ => {
                let w = u - l;
                match repr % 6 {
                    0 => ('L', *u, Some(w)),
                    1 => ('L', *u, Some(-w)),
                    2 => ('G', *l, Some(w)),
                    3 => ('G', *l, Some(-w)),
                    4 => ('E', *l, Some(w)),
                    _ => ('E', *u, Some(-w)),
                }
            }
        };
        writeln!(t, " {ty}  r{i}").unwrap();
        rhs.push(format!("    RHS       r{i}  {b}"));
        if let Some(r) = r {
            ranges.push(format!("    RNG       r{i}  {r}"));
        }
    }
    t += "COLUMNS\n";
    let mut in_block = false;
    for (j, (_, _, cost, int)) in s.vars.iter().enumerate() {
        if *int != in_block {
            t += if *int {
                "    M  'MARKER'  'INTORG'\n"
            } else {
                "    M  'MARKER'  'INTEND'\n"
            };
            in_block = *int;
        }
        writeln!(t, "    x{j}  obj  {cost}").unwrap();
        for (i, row) in s.rows.iter().enumerate() {
            if let Some(Some(a)) = row.0.get(j) {
                writeln!(t, "    x{j}  r{i}  {a}").unwrap();
            }
        }
    }
    if in_block {
        t += "    M  'MARKER'  'INTEND'\n";
    }
    t += "RHS\n";
    writeln!(t, "    RHS       obj  {}", -s.constant).unwrap();
    for line in rhs {
        t += &line;
        t.push('\n');
    }
    if !ranges.is_empty() {
        t += "RANGES\n";
        for line in ranges {
            t += &line;
            t.push('\n');
        }
    }
    t += "BOUNDS\n";
    for (j, (l, u, _, _)) in s.vars.iter().enumerate() {
        if l == u {
            writeln!(t, " FX BND x{j} {l}").unwrap();
            continue;
        }
        if *l == -INF {
            writeln!(t, " MI BND x{j}").unwrap();
        } else if *l != 0.0 {
            writeln!(t, " LO BND x{j} {l}").unwrap();
        }
        if u.is_finite() {
            writeln!(t, " UP BND x{j} {u}").unwrap();
        }
    }
    t + "ENDATA\n"
}

fn expected(s: &Spec) -> LpProblem {
    let mut p = LpProblem::new("RT");
    p.objective_name = "obj".into();
    p.objective_constant = s.constant;
    p.sense = if s.max {
        Sense::Maximize
    } else {
        Sense::Minimize
    };
    for (j, (l, u, cost, int)) in s.vars.iter().enumerate() {
        p.add_variable(format!("x{j}"), *l, *u, *cost);
        p.variables[j].integer = *int;
    }
    for (i, (coefs, l, u, _)) in s.rows.iter().enumerate() {
        let c = coefs
            .iter()
            .enumerate()
            .filter_map(|(j, a)| a.map(|a| (j, a)))
            .collect();
        p.add_row(format!("r{i}"), c, *l, *u);
    }
    p
}

/// Lines likely to reach deep into the reader, and some junk.
fn line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("NAME"),
        Just("ROWS"),
        Just("COLUMNS"),
        Just("RHS"),
        Just("RANGES"),
        Just("BOUNDS"),
        Just("ENDATA"),
        Just("OBJSENSE"),
        Just("MAX"),
        Just("N"),
        Just("E"),
        Just("L"),
        Just("G"),
        Just("obj"),
        Just("c"),
        Just("d"),
        Just("x"),
        Just("y"),
        Just("'MARKER'"),
        Just("'INTORG'"),
        Just("'INTEND'"),
        Just("UP"),
        Just("LO"),
        Just("FX"),
        Just("MI"),
        Just("PL"),
        Just("FR"),
        Just("BV"),
        Just("LI"),
        Just("UI"),
        Just("SC"),
        Just("1"),
        Just("-2.5"),
        Just("0"),
        Just("1e30"),
        Just("-1e31"),
        Just("nan"),
        Just("inf"),
        Just("1e400"),
        Just("*"),
        Just("é"),
    ];
    (any::<bool>(), proptest::collection::vec(token, 0..6))
        .prop_map(|(data, tokens)| format!("{}{}", if data { " " } else { "" }, tokens.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn round_trip(s in spec()) {
        let text = write_mps(&s);
        let m = read_mps(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&m.problem, &expected(&s), "{}", text);
        prop_assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn random_lines_never_panic(prefix in 0usize..12, lines in proptest::collection::vec(line(), 0..25), end in any::<bool>()) {
        let skeleton: Vec<&str> = FIXED.lines().take(prefix).collect();
        let mut text = skeleton.join("\n") + "\n" + &lines.join("\n");
        if end {
            text += "\nENDATA\n";
        }
        let total = text.lines().count() + 1;
        match read_mps(text.as_bytes()) {
            Ok(m) => {
                prop_assert!(m.problem.validate().is_ok(), "{:?}", m.problem);
                // Solving must not panic either (answers, failures and MILP refusals all fine).
                let _ = m.problem.solve();
            }
            Err(e) => prop_assert!(e.line().is_some_and(|l| (1..=total).contains(&l)), "{e}"),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_mps(bytes.as_slice());
        let mut text = FIXED.as_bytes()[..200].to_vec();
        text.extend_from_slice(&bytes);
        let _ = read_mps(text.as_slice());
    }
}
