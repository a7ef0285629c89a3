//! Insights: what changed in the fleet and why, ranked, each with its numbers and a chart link.
