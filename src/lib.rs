//! The APOS demo: a simulated refinery unit ([`plant`]) and the glue that
//! points an edge node at it ([`demo`]), plus the benchmark kit ([`bench`]).

pub mod bench;
pub mod demo;
pub mod plant;
