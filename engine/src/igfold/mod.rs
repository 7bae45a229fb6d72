//! IgFold 1.0.1 with AntiBERTy 0.1.3 (Ruffolo et al. 2023).
//!
//! The IgFold weights and code it ports are under the Johns Hopkins University academic
//! software licence (non-commercial use); the licence text ships next to the fetched
//! weights. AntiBERTy 0.1.3 is MIT-licensed.

pub mod antiberty;
pub mod antibody;
pub mod ensemble;
pub mod geometry;
mod graph_transformer;
mod ipa;
pub mod network;
pub mod output;
pub mod refine;
mod triangle;
pub mod weights;
