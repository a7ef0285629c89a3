//! The APOS demo: a simulated refinery unit ([`plant`]) and the glue that
//! points an edge node at it ([`demo`]).

pub mod demo;
pub mod plant;
