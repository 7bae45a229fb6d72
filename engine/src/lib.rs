//! ferrofold models and pipelines.

pub mod af2;
pub mod igfold;
pub mod nn;
