//! What the forecasting API reads: models per node, forecasts, forecast
//! against actual, accuracy (the edges' and the hub's own) and the latest
//! explanation (docs/hub-api.md, "forecasting").

/// An explanation as stored: a JSON array of `{"feature","contribution"}`
/// (non-finite contributions, which the protocol check refuses, as null).
pub(super) fn explanation_json(e: &[(String, f64)]) -> String {
    let items: Vec<serde_json::Value> = e
        .iter()
        .map(|(f, c)| {
            let c = serde_json::Number::from_f64(*c)
                .map_or(serde_json::Value::Null, serde_json::Value::Number);
            serde_json::json!({"feature": f, "contribution": c})
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}
