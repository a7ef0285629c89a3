//! The hub's Prometheus exposition.

use web::metrics::Exposition;

use super::WebState;

pub fn render(_st: &WebState) -> String {
    let e = Exposition::new();
    e.render()
}
