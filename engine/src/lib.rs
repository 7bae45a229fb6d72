//! ferrofold models and pipelines.

pub mod igfold;
pub mod nn;
