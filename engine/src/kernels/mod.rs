//! The engine's hot loops, one module per numeric mode. Nothing else in the crate loops over weights.

pub(crate) mod float;
