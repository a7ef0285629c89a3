//! Custom KPIs as expressions over tags and window aggregates, with the
//! maintained `evalexpr` crate (no home-made parser).
//!
//! Variables are the names the caller declares known, e.g.
//! `heater.fuel_gas_flow.mean` or `line1.good_count.delta`; an expression is
//! checked when the configuration loads (syntax, unknown names with a
//! suggestion, a trial evaluation for types and functions), so a bad one
//! is a configuration error, not a run-time surprise.

use std::collections::HashMap;

use evalexpr::{ContextWithMutableVariables, HashMapContext, Node, Value, build_operator_tree};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExprError {
    #[error("cannot parse the expression: {0}")]
    Syntax(String),
    #[error("unknown name `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error("the expression does not evaluate to a number: {0}")]
    Eval(String),
    #[error("no value for `{0}` in this window")]
    Missing(String),
}

/// A checked expression, ready to evaluate.
#[derive(Debug, Clone)]
pub struct KpiExpr {
    pub text: String,
    tree: Node,
    variables: Vec<String>,
}

/// Two expressions are equal when their text is (configuration reloads
/// compare configurations).
impl PartialEq for KpiExpr {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}

impl KpiExpr {
    /// Parse and check `text`; `known` lists every name it may use.
    pub fn compile(text: &str, known: &[String]) -> Result<KpiExpr, ExprError> {
        let tree = build_operator_tree(text).map_err(|e| ExprError::Syntax(e.to_string()))?;
        let mut variables: Vec<String> = tree
            .iter_variable_identifiers()
            .map(str::to_string)
            .collect();
        variables.sort();
        variables.dedup();
        for v in &variables {
            if !known.contains(v) {
                let suggestion = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(k, v), k))
                    .filter(|(s, _)| *s > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| k.clone());
                return Err(ExprError::Unknown {
                    name: v.clone(),
                    suggestion,
                });
            }
        }
        let e = KpiExpr {
            text: text.to_string(),
            tree,
            variables,
        };
        // A trial run with every variable at 1.0 catches unknown functions
        // and type errors (e.g. a comparison where a number is needed).
        let ones: HashMap<String, f64> = e.variables.iter().map(|v| (v.clone(), 1.0)).collect();
        e.eval(&ones)?;
        Ok(e)
    }

    /// The names this expression reads.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    pub fn eval(&self, values: &HashMap<String, f64>) -> Result<f64, ExprError> {
        let mut ctx = HashMapContext::new();
        for v in &self.variables {
            let x = values.get(v).ok_or_else(|| ExprError::Missing(v.clone()))?;
            ctx.set_value(v.clone(), Value::Float(*x))
                .map_err(|e| ExprError::Eval(e.to_string()))?;
        }
        match self.tree.eval_with_context(&ctx) {
            Ok(Value::Float(f)) => Ok(f),
            Ok(Value::Int(i)) => Ok(i as f64),
            Ok(other) => Err(ExprError::Eval(format!("got {other:?}"))),
            Err(e) => Err(ExprError::Eval(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn known() -> Vec<String> {
        [
            "heater.fuel_gas_flow.mean",
            "unit.product.delta",
            "heater.duty.mean",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn specific_energy_from_aggregates() {
        let e = KpiExpr::compile(
            "heater.duty.mean * 1000 / max(unit.product.delta, 1)",
            &known(),
        )
        .unwrap();
        let v: HashMap<String, f64> = [
            ("heater.duty.mean".to_string(), 47.5),
            ("unit.product.delta".to_string(), 95.0),
        ]
        .into();
        assert!((e.eval(&v).unwrap() - 500.0).abs() < 1e-12);
        assert_eq!(e.variables(), ["heater.duty.mean", "unit.product.delta"]);
        // A missing input is an error, not a silent number.
        let partial: HashMap<String, f64> = [("heater.duty.mean".to_string(), 1.0)].into();
        assert_eq!(
            e.eval(&partial),
            Err(ExprError::Missing("unit.product.delta".into()))
        );
    }

    #[test]
    fn bad_expressions_are_refused_at_load_with_a_reason() {
        assert!(matches!(
            KpiExpr::compile("heater.duty.mean * (2", &known()),
            Err(ExprError::Syntax(_))
        ));
        assert_eq!(
            KpiExpr::compile("heater.duty.maen / 2", &known())
                .unwrap_err()
                .to_string(),
            "unknown name `heater.duty.maen` (did you mean `heater.duty.mean`?)"
        );
        assert!(matches!(
            KpiExpr::compile("nosuchfn(heater.duty.mean)", &known()),
            Err(ExprError::Eval(_))
        ));
        assert!(matches!(
            KpiExpr::compile("heater.duty.mean > 2", &known()),
            Err(ExprError::Eval(_))
        ));
    }
}
