//! `[recommendations]` and `[[optimization]]`: setpoint optimization
//! problems (docs/optimization.md).
//!
//! ```toml
//! [recommendations]
//! key_file = "recommend.key"   # Ed25519, made (0600) at first start; default beside the database
//! valid_for = "30m"            # how long an edge may approve one
//!
//! [[optimization]]
//! name = "cdu-margin"
//! site = "plant1"
//! node = "cdu-edge-1"
//! objective = "maximize"       # or "minimize"
//! unit = "$/h"
//! every = "15m"                # on a schedule (omit: on demand and triggers only)
//! window = "1m"                # the window width the models read
//! history = "7d"               # training period of fitted models
//! margin_sigmas = 2.0
//! send = true                  # send to the edge's approval queue
//!
//! [[optimization.decision]]
//! tag = "heater.outlet_temp_sp"
//! unit = "°C"
//! min = 340.0
//! max = 380.0
//! max_move = 10.0
//!
//! [[optimization.output]]
//! tag = "product.naphtha_t95"
//! unit = "°C"
//! inputs = ["heater.outlet_temp_sp", "column.reflux_ratio_sp"]  # fitted from history
//! # intercept = 52.0                                             # … or given
//! # coefficients = { "heater.outlet_temp_sp" = 0.36, "column.reflux_ratio_sp" = -4.1 }
//!
//! [[optimization.term]]        # objective: Σ price × value
//! tag = "product.naphtha_flow"
//! price = 620.0
//!
//! [[optimization.constraint]]
//! name = "naphtha 95 % spec"
//! tag = "product.naphtha_t95"
//! max = 180.0
//!
//! [[optimization.trigger]]     # also run when this crosses a limit
//! tag = "ambient.temp"
//! above = 25.0
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use models::optimize::fit::Method;
use models::optimize::recommend::{Constraint, Decision, ObjectiveSense, Term};
use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecommendations {
    key_file: Option<Spanned<String>>,
    valid_for: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProblem {
    name: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    objective: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    history: Option<Spanned<String>>,
    margin_sigmas: Option<Spanned<f64>>,
    hours_per_year: Option<Spanned<f64>>,
    bias_correction: Option<Spanned<bool>>,
    ridge: Option<Spanned<f64>>,
    send: Option<Spanned<bool>>,
    min_benefit: Option<Spanned<f64>>,
    #[serde(default, rename = "decision")]
    decisions: Vec<Spanned<RawDecision>>,
    #[serde(default, rename = "output")]
    outputs: Vec<Spanned<RawOutput>>,
    #[serde(default, rename = "term")]
    terms: Vec<Spanned<RawTerm>>,
    #[serde(default, rename = "constraint")]
    constraints: Vec<Spanned<RawConstraint>>,
    #[serde(default, rename = "trigger")]
    triggers: Vec<Spanned<RawTrigger>>,
    /// An ONNX process model instead of linear outputs (CMA-ES).
    surrogate: Option<Spanned<RawSurrogate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSurrogate {
    model: Spanned<String>,
    inputs: Spanned<Vec<String>>,
    outputs: Spanned<Vec<String>>,
    units: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecision {
    tag: Spanned<String>,
    label: Option<String>,
    unit: Option<String>,
    min: Spanned<f64>,
    max: Spanned<f64>,
    max_move: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    tag: Spanned<String>,
    label: Option<String>,
    unit: Option<String>,
    inputs: Option<Spanned<Vec<String>>>,
    intercept: Option<Spanned<f64>>,
    coefficients: Option<Spanned<BTreeMap<String, f64>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTerm {
    tag: Spanned<String>,
    price: Spanned<f64>,
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConstraint {
    name: Option<String>,
    tag: Spanned<String>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    tag: Spanned<String>,
    above: Option<f64>,
    below: Option<f64>,
}

/// `[recommendations]` and every `[[optimization]]`.
#[derive(Debug, Clone)]
pub struct Optimization {
    /// The hub's Ed25519 signing key (PKCS#8, 0600), made when missing.
    pub key_file: PathBuf,
    pub valid_for: Duration,
    pub problems: Vec<ProblemConfig>,
}

/// One `[[optimization]]`.
#[derive(Debug, Clone)]
pub struct ProblemConfig {
    pub name: String,
    pub site: String,
    pub node: String,
    pub sense: ObjectiveSense,
    pub unit: String,
    pub every: Option<Duration>,
    pub window: Duration,
    pub history: Duration,
    pub margin_sigmas: f64,
    pub hours_per_year: f64,
    pub bias_correction: bool,
    pub method: Method,
    pub send: bool,
    /// A recommendation worth less (objective units per hour) is recorded,
    /// not sent: an operator is not asked to approve noise.
    pub min_benefit: f64,
    pub decisions: Vec<Decision>,
    pub outputs: Vec<OutputSpec>,
    pub terms: Vec<Term>,
    pub constraints: Vec<Constraint>,
    pub triggers: Vec<Trigger>,
    /// `[optimization.surrogate]`: the outputs come from this ONNX model,
    /// optimized by CMA-ES (no shadow prices).
    pub surrogate: Option<SurrogateSpec>,
}

/// An ONNX process model: `inputs` (decisions and disturbances, in the
/// model's order) → `outputs`.
#[derive(Debug, Clone)]
pub struct SurrogateSpec {
    pub model: PathBuf,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub units: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub tag: String,
    pub label: String,
    pub unit: String,
    pub model: ModelSpec,
}

#[derive(Debug, Clone)]
pub enum ModelSpec {
    /// Fitted from the node's history over `history`.
    Fit { inputs: Vec<String> },
    /// Given in the configuration.
    User {
        inputs: Vec<String>,
        intercept: f64,
        coefficients: Vec<f64>,
    },
}

impl ModelSpec {
    pub fn inputs(&self) -> &[String] {
        match self {
            ModelSpec::Fit { inputs } | ModelSpec::User { inputs, .. } => inputs,
        }
    }
}

/// Run the problem when `tag` crosses above or below a value.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub tag: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
}

impl ProblemConfig {
    /// Every tag the problem reads: decisions, model inputs, outputs, terms,
    /// constraints, triggers.
    pub fn tags(&self) -> Vec<String> {
        let mut t: Vec<String> = self.decisions.iter().map(|d| d.tag.clone()).collect();
        if let Some(s) = &self.surrogate {
            t.extend(s.inputs.iter().cloned());
            t.extend(s.outputs.iter().cloned());
        }
        for o in &self.outputs {
            t.push(o.tag.clone());
            t.extend(o.model.inputs().iter().cloned());
        }
        t.extend(self.terms.iter().map(|x| x.tag.clone()));
        t.extend(self.constraints.iter().map(|x| x.tag.clone()));
        t.extend(self.triggers.iter().map(|x| x.tag.clone()));
        t.sort();
        t.dedup();
        t
    }

    /// Model inputs that are not decisions: held at their current values.
    pub fn disturbances(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .outputs
            .iter()
            .flat_map(|o| o.model.inputs().iter().cloned())
            .chain(self.surrogate.iter().flat_map(|s| s.inputs.iter().cloned()))
            .filter(|i| !self.decisions.iter().any(|d| &d.tag == i))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}

pub(super) fn validate(
    c: &mut Ctx<'_>,
    recs: Option<&Spanned<RawRecommendations>>,
    raw: &[Spanned<RawProblem>],
    storage_path: &Path,
) -> Option<Optimization> {
    if raw.is_empty() && recs.is_none() {
        return None;
    }
    let beside = storage_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("recommend.key");
    let (key_file, valid_for) = match recs {
        None => (beside, Duration::from_secs(1800)),
        Some(r) => {
            let r = r.get_ref();
            let key = r
                .key_file
                .as_ref()
                .map_or(beside, |k| c.resolve(k.get_ref()));
            let valid_for = c.duration(
                "recommendations › valid_for",
                r.valid_for.as_ref(),
                Duration::from_secs(1800),
                (Duration::from_secs(60), Duration::from_secs(7 * 86_400)),
                "how long an edge may approve a recommendation, e.g. \"30m\"",
            );
            (key, valid_for)
        }
    };
    let mut problems: Vec<ProblemConfig> = Vec::new();
    for p in raw {
        if let Some(v) = problem(c, p)
            && !problems.iter().any(|o| o.name == v.name)
        {
            problems.push(v);
        } else if let Some(n) = &p.get_ref().name
            && problems.iter().any(|o| &o.name == n.get_ref())
        {
            c.err(
                n.span(),
                "optimization › name",
                &format!("{:?} is defined twice", n.get_ref()),
                "give each [[optimization]] its own name",
            );
        }
    }
    Some(Optimization {
        key_file,
        valid_for,
        problems,
    })
}

fn problem(c: &mut Ctx<'_>, p: &Spanned<RawProblem>) -> Option<ProblemConfig> {
    let span = p.span();
    let r = p.get_ref();
    let id = |c: &mut Ctx<'_>, key: &str, v: &Option<Spanned<String>>| -> Option<String> {
        match v {
            None => {
                c.err(
                    span.clone(),
                    &format!("optimization › {key}"),
                    &format!("an [[optimization]] without `{key}`"),
                    "every problem names itself, the site and the node whose setpoints it moves",
                );
                None
            }
            Some(s) => match protocol::topic::check_id(s.get_ref()) {
                Ok(()) => Some(s.get_ref().clone()),
                Err(e) => {
                    c.err(
                        s.span(),
                        &format!("optimization › {key}"),
                        &e.to_string(),
                        "letters, digits, `_` and `-`",
                    );
                    None
                }
            },
        }
    };
    let name = id(c, "name", &r.name);
    let site = id(c, "site", &r.site);
    let node = id(c, "node", &r.node);
    let label = format!("optimization {:?}", name.as_deref().unwrap_or("(unnamed)"));
    let sense = match r.objective.as_ref().map(|o| (o, o.get_ref().as_str())) {
        None | Some((_, "maximize")) => ObjectiveSense::Maximize,
        Some((_, "minimize")) => ObjectiveSense::Minimize,
        Some((o, other)) => {
            c.err(
                o.span(),
                &format!("{label} › objective"),
                &format!("{other:?} is not an objective sense"),
                "write \"maximize\" (margin, throughput) or \"minimize\" (cost, energy)",
            );
            ObjectiveSense::Maximize
        }
    };
    let every = r.every.as_ref().map(|e| {
        c.duration(
            &format!("{label} › every"),
            Some(e),
            Duration::from_secs(900),
            (Duration::from_secs(10), Duration::from_secs(7 * 86_400)),
            "how often the problem runs, e.g. \"15m\"",
        )
    });
    let window = c.duration(
        &format!("{label} › window"),
        r.window.as_ref(),
        Duration::from_secs(60),
        (Duration::from_secs(1), Duration::from_secs(86_400)),
        "the width of the synced windows the models read, e.g. \"1m\" (one of the edge's [sync] windows)",
    );
    let history = c.duration(
        &format!("{label} › history"),
        r.history.as_ref(),
        Duration::from_secs(7 * 86_400),
        (Duration::from_secs(600), Duration::from_secs(366 * 86_400)),
        "how far back fitted models look, e.g. \"7d\"",
    );
    let num = |c: &mut Ctx<'_>,
               key: &str,
               v: &Option<Spanned<f64>>,
               default: f64,
               ok: fn(f64) -> bool,
               help: &str|
     -> f64 {
        match v {
            None => default,
            Some(x) if ok(*x.get_ref()) => *x.get_ref(),
            Some(x) => {
                c.err(
                    x.span(),
                    &format!("{label} › {key}"),
                    &format!("{} is out of range", x.get_ref()),
                    help,
                );
                default
            }
        }
    };
    let margin_sigmas = num(
        c,
        "margin_sigmas",
        &r.margin_sigmas,
        2.0,
        |x| (0.0..=10.0).contains(&x),
        "0 … 10 residual standard deviations; 2 is the default",
    );
    let hours_per_year = num(
        c,
        "hours_per_year",
        &r.hours_per_year,
        models::optimize::recommend::DEFAULT_HOURS_PER_YEAR,
        |x| x > 0.0 && x <= 8784.0,
        "on-stream hours per year, at most 8784",
    );
    let ridge = num(
        c,
        "ridge",
        &r.ridge,
        0.0,
        |x| x.is_finite() && x >= 0.0,
        "the ridge penalty λ ≥ 0; 0 is ordinary least squares",
    );
    let min_benefit = num(
        c,
        "min_benefit",
        &r.min_benefit,
        0.0,
        |x| x.is_finite() && x >= 0.0,
        "the least benefit per hour worth an operator's approval, in the objective's unit; 0 sends every move that pays",
    );
    let method = if ridge > 0.0 {
        Method::Ridge { lambda: ridge }
    } else {
        Method::Ols
    };
    let mut decisions = Vec::new();
    for d in &r.decisions {
        let dr = d.get_ref();
        let (lo, hi) = (*dr.min.get_ref(), *dr.max.get_ref());
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            c.err(
                dr.max.span(),
                &format!("{label} › decision {:?}", dr.tag.get_ref()),
                &format!("min {lo} is not below max {hi}"),
                "the bounds the optimizer may move the setpoint within",
            );
            continue;
        }
        let max_move = match &dr.max_move {
            Some(m) if !(*m.get_ref() > 0.0 && m.get_ref().is_finite()) => {
                c.err(
                    m.span(),
                    &format!("{label} › decision {:?} › max_move", dr.tag.get_ref()),
                    "must be above 0",
                    "the largest move from the current value one recommendation may propose",
                );
                None
            }
            m => m.as_ref().map(|m| *m.get_ref()),
        };
        decisions.push(Decision {
            tag: dr.tag.get_ref().clone(),
            label: dr.label.clone().unwrap_or_else(|| dr.tag.get_ref().clone()),
            unit: dr.unit.clone().unwrap_or_default(),
            min: lo,
            max: hi,
            max_move,
        });
    }
    if decisions.is_empty() {
        c.err(
            span.clone(),
            &format!("{label} › decision"),
            "no decision variables",
            "add an [[optimization.decision]] for each setpoint the problem may move",
        );
    }
    let mut outputs = Vec::new();
    for o in &r.outputs {
        let or = o.get_ref();
        let f = format!("{label} › output {:?}", or.tag.get_ref());
        let model = match (&or.inputs, &or.intercept, &or.coefficients) {
            (Some(i), None, None) if !i.get_ref().is_empty() => ModelSpec::Fit {
                inputs: i.get_ref().clone(),
            },
            (None, Some(b), Some(k)) if !k.get_ref().is_empty() => ModelSpec::User {
                inputs: k.get_ref().keys().cloned().collect(),
                intercept: *b.get_ref(),
                coefficients: k.get_ref().values().copied().collect(),
            },
            _ => {
                c.err(o.span(), &f, "a model needs either `inputs` (fitted from history) or `intercept` and `coefficients` (given)", "e.g. inputs = [\"heater.outlet_temp_sp\"], or intercept = 52.0 and coefficients = { \"heater.outlet_temp_sp\" = 0.36 }");
                continue;
            }
        };
        outputs.push(OutputSpec {
            tag: or.tag.get_ref().clone(),
            label: or.label.clone().unwrap_or_else(|| or.tag.get_ref().clone()),
            unit: or.unit.clone().unwrap_or_default(),
            model,
        });
    }
    let surrogate = r.surrogate.as_ref().and_then(|s| {
        let sr = s.get_ref();
        let f = format!("{label} › surrogate");
        if !outputs.is_empty() {
            c.err(s.span(), &f, "a surrogate and [[optimization.output]] models together", "the surrogate gives every output: remove the [[optimization.output]] tables, or the surrogate");
            return None;
        }
        let missing: Vec<&str> = decisions
            .iter()
            .filter(|d| !sr.inputs.get_ref().contains(&d.tag))
            .map(|d| d.tag.as_str())
            .collect();
        if !missing.is_empty() || sr.outputs.get_ref().is_empty() {
            c.err(sr.inputs.span(), &f, &format!("the model's inputs lack the decision(s) {}, or it has no outputs", missing.join(", ")), "`inputs` lists every model input in the model's order (decisions and measured disturbances); `outputs` its outputs");
            return None;
        }
        Some(SurrogateSpec {
            model: c.resolve(sr.model.get_ref()),
            inputs: sr.inputs.get_ref().clone(),
            outputs: sr.outputs.get_ref().clone(),
            units: sr.units.clone().unwrap_or_default(),
        })
    });
    if r.surrogate.is_some() && surrogate.is_none() {
        return None;
    }
    let known = |t: &str| {
        decisions.iter().any(|d| d.tag == t)
            || outputs.iter().any(|o| o.tag == t)
            || surrogate
                .as_ref()
                .is_some_and(|s| s.outputs.iter().any(|o| o == t))
    };
    let mut terms = Vec::new();
    for t in &r.terms {
        let tr = t.get_ref();
        if !known(tr.tag.get_ref()) {
            c.err(tr.tag.span(), &format!("{label} › term"), &format!("{:?} is neither a decision nor an output", tr.tag.get_ref()), "objective terms price a decision or a modelled output: add it as an [[optimization.output]]");
            continue;
        }
        if !tr.price.get_ref().is_finite() {
            c.err(
                tr.price.span(),
                &format!("{label} › term › price"),
                "not a finite number",
                "a price per unit of the tag, in the objective's unit",
            );
            continue;
        }
        terms.push(Term {
            tag: tr.tag.get_ref().clone(),
            price: *tr.price.get_ref(),
            label: tr.label.clone().unwrap_or_else(|| tr.tag.get_ref().clone()),
        });
    }
    if terms.is_empty() {
        c.err(span.clone(), &format!("{label} › term"), "no objective terms", "add [[optimization.term]]s: tag and price (e.g. a product's value per m³, fuel's cost per kg as a negative price)");
    }
    let mut constraints = Vec::new();
    for k in &r.constraints {
        let kr = k.get_ref();
        if !known(kr.tag.get_ref()) {
            c.err(
                kr.tag.span(),
                &format!("{label} › constraint"),
                &format!("{:?} is neither a decision nor an output", kr.tag.get_ref()),
                "constraints limit a decision or a modelled output",
            );
            continue;
        }
        if kr.min.is_none() && kr.max.is_none() {
            c.err(
                k.span(),
                &format!("{label} › constraint {:?}", kr.tag.get_ref()),
                "neither `min` nor `max`",
                "give the limit, e.g. max = 180.0",
            );
            continue;
        }
        let unit = kr
            .unit
            .clone()
            .or_else(|| {
                outputs
                    .iter()
                    .find(|o| o.tag == *kr.tag.get_ref())
                    .map(|o| o.unit.clone())
            })
            .or_else(|| {
                surrogate
                    .as_ref()
                    .and_then(|s| s.units.get(kr.tag.get_ref()).cloned())
            })
            .unwrap_or_default();
        constraints.push(Constraint {
            name: kr.name.clone().unwrap_or_else(|| kr.tag.get_ref().clone()),
            tag: kr.tag.get_ref().clone(),
            lower: kr.min.as_ref().map(|x| *x.get_ref()),
            upper: kr.max.as_ref().map(|x| *x.get_ref()),
            unit,
        });
    }
    let triggers = r
        .triggers
        .iter()
        .filter_map(|t| {
            let tr = t.get_ref();
            if tr.above.is_none() && tr.below.is_none() {
                c.err(
                    t.span(),
                    &format!("{label} › trigger"),
                    "neither `above` nor `below`",
                    "e.g. above = 25.0: the problem runs when the tag crosses it",
                );
                return None;
            }
            Some(Trigger {
                tag: tr.tag.get_ref().clone(),
                above: tr.above,
                below: tr.below,
            })
        })
        .collect();
    Some(ProblemConfig {
        name: name?,
        site: site?,
        node: node?,
        sense,
        unit: r
            .unit
            .as_ref()
            .map_or_else(|| "$/h".to_owned(), |u| u.get_ref().clone()),
        every,
        window,
        history,
        margin_sigmas,
        hours_per_year,
        bias_correction: r.bias_correction.as_ref().is_none_or(|b| *b.get_ref()),
        method,
        send: r.send.as_ref().is_none_or(|b| *b.get_ref()),
        min_benefit,
        decisions,
        outputs,
        terms,
        constraints,
        triggers,
        surrogate,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    const HEAD: &str = "schema_version = 1\n[storage]\npath = \"/tmp/x/fleet.duckdb\"\n";

    #[test]
    fn a_problem_parses_into_decisions_models_terms_and_limits() {
        let text = format!("{HEAD}{}", crate::config::tests_support::DEMO_LIKE_PROBLEM);
        let cfg = crate::config::parse(Path::new("hub.toml"), &text).unwrap();
        let o = cfg.optimization.unwrap();
        assert_eq!(o.key_file, Path::new("/tmp/x/recommend.key"));
        let p = &o.problems[0];
        assert_eq!(
            (p.name.as_str(), p.decisions.len(), p.outputs.len()),
            ("m", 2, 2)
        );
        assert!(matches!(&p.outputs[0].model, ModelSpec::Fit { inputs } if inputs.len() == 2));
        assert!(
            matches!(&p.outputs[1].model, ModelSpec::User { coefficients, .. } if coefficients == &[0.4])
        );
        assert_eq!(p.disturbances(), vec!["ambient.temp".to_owned()]);
        assert_eq!(p.constraints[0].upper, Some(180.0));
        assert_eq!(p.every, Some(Duration::from_secs(900)));
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let text = format!(
            "{HEAD}[[optimization]]\nname = \"m\"\nsite = \"s\"\nnode = \"n\"\nobjective = \"maximise\"\n\
             [[optimization.decision]]\ntag = \"a\"\nmin = 5.0\nmax = 1.0\n\
             [[optimization.decision]]\ntag = \"b\"\nmin = 0.0\nmax = 1.0\n\
             [[optimization.output]]\ntag = \"y\"\n\
             [[optimization.term]]\ntag = \"nope\"\nprice = 1.0\n\
             [[optimization.constraint]]\ntag = \"b\"\n"
        );
        let err = crate::config::parse(Path::new("hub.toml"), &text)
            .unwrap_err()
            .to_string();
        for want in [
            "\"maximise\" is not an objective sense",
            "hub.toml:8:13",
            "min 5 is not below max 1",
            "hub.toml:12:7",
            "either `inputs` (fitted from history) or `intercept` and `coefficients`",
            "\"nope\" is neither a decision nor an output",
            "neither `min` nor `max`",
            "no objective terms",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }
}
