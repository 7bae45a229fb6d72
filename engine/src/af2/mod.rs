//! AlphaFold2 monomer (Jumper et al. 2021, supplementary information), one module per
//! algorithm, loading the official parameter layout (Haiku names, stacked blocks).
//!
//! Checked module by module against the official JAX code run with random parameters
//! (tests/data/af2, made by tools/reference/af2).

pub mod attention;
pub mod config;
pub mod embeddings;
pub mod evoformer;
pub mod evoformer_stack;
pub mod features;
pub mod heads;
pub mod model;
pub mod outer_product_mean;
pub mod output;
pub mod pair_stack;
pub mod pipeline;
pub mod structure;
pub mod templates;
pub mod transition;
pub mod triangle_multiplication;

#[cfg(test)]
pub(crate) mod golden;
