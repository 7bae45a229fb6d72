//! ferrofold models and pipelines.

pub mod af2;
pub mod chunk;
pub mod igfold;
pub mod nn;
