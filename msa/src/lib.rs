//! Sequence search for ferrofold: a memory-mapped sequence database, a k-mer prefilter,
//! SIMD Smith–Waterman, Karlin–Altschul E-values, iterative profile search and A3M output.
//! Stages are separate steps with their own outputs, as in MMseqs2.

pub mod align;
pub mod alphabet;
pub mod db;
pub mod error;
pub mod filter;
pub mod kmer;
pub mod matrix;
pub mod output;
pub mod prefilter;
pub mod profile;
pub mod search;
pub mod stats;
#[cfg(test)]
mod test_rng;

pub use error::{MsaError, Result};
